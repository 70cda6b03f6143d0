//! `store`: an activation store written by `lca store create` or
//! `lca store import` (docs/store.md), with its words, labels and splits.

use std::path::PathBuf;

use lca_core::component::{ActivationSource, Component};
use lca_core::context::RunContext;
use lca_core::data::Dataset;
use lca_core::error::Result;
use lca_core::params::Params as _;
use lca_core::registry::{ComponentInfo, ComponentKind, Descriptor, Inputs, applied};
use lca_store::Store;

const NAME: &str = "store";

lca_core::params! {
    /// Parameters of `store`.
    struct StoreParams {
        /// the store's folder (the one holding manifest.json)
        path: PathBuf,
        /// which of the store's tasks labels the rows
        #[shown = "the store's default task"]
        task: Option<String> = None,
        /// check every shard's SHA-256 before use (reads the whole store
        /// once; `lca store verify` does the same on its own)
        verify: bool = false,
    }
}

pub(crate) fn descriptor() -> Descriptor {
    Descriptor {
        info: ComponentInfo {
            kind: ComponentKind::Source,
            name: NAME.into(),
            summary: "Activations, words, labels and splits from an lca activation store".into(),
            params: StoreParams::docs(),
            example: "[source.acts]\ntype = \"store\"\npath = \"stores/minilm-brown\"\n".into(),
            inputs: Inputs::default(),
        },
        build: |table| {
            Ok(Component::Source(Box::new(StoreSource(
                StoreParams::parse(NAME, table)?,
            ))))
        },
        applied: applied::<StoreParams>,
    }
}

/// Reads a store.
#[derive(Clone, Debug)]
struct StoreSource(StoreParams);

impl ActivationSource for StoreSource {
    fn load(&self, cx: &RunContext) -> Result<Dataset<'static>> {
        let p = &self.0;
        let store = Store::open(&p.path)?;
        if p.verify {
            store.verify(cx.progress().map(AsRef::as_ref))?;
        }
        store.dataset(NAME, p.task.as_deref())
    }
}
