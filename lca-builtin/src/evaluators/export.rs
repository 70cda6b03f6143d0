//! `neurox_export`: writes a source's activations, words and labels as
//! NeuroX files, so NeuroX (or anything that reads its formats) can work on
//! exactly the data `lca` analysed.

use std::path::PathBuf;

use crate::neurox::{export_neurox, write_json};
use lca_core::component::{Component, EvalInput, Evaluator};
use lca_core::context::RunContext;
use lca_core::data::Evaluation;
use lca_core::error::Result;
use lca_core::params::Params as _;
use lca_core::registry::{ComponentInfo, ComponentKind, Descriptor, Inputs, applied};

const NAME: &str = "neurox_export";

lca_core::params! {
    /// Parameters of `neurox_export`.
    struct Params {
        /// the NeuroX JSON-lines activations to write; `<stem>.sentences.txt`
        /// and `<stem>.labels.txt` are written beside it
        path: PathBuf => Rule::new(
            "a file name ending in .json (NeuroX picks the reader by extension)",
            |p: &PathBuf| p.extension().is_some_and(|e| e == "json"),
        ),
    }
}

pub(super) fn descriptor() -> Descriptor {
    Descriptor {
        info: ComponentInfo {
            kind: ComponentKind::Evaluator,
            name: NAME.into(),
            summary: "Writes a source's activations, sentences and labels in NeuroX's formats".into(),
            params: Params::docs(),
            example: "[evaluator.export]\ntype = \"neurox_export\"\nsource = \"minilm\"\npath = \"exports/minilm.json\"\n".into(),
            inputs: Inputs::default(),
        },
        build: |table| {
            let p = Params::parse(NAME, table)?;
            Ok(Component::Evaluator(Box::new(NeuroxExport { path: p.path })))
        },
        applied: applied::<Params>,
    }
}

/// Writes NeuroX files.
#[derive(Clone, Debug)]
pub struct NeuroxExport {
    path: PathBuf,
}

impl Evaluator for NeuroxExport {
    fn evaluate(&self, input: &EvalInput<'_>, _cx: &RunContext) -> Result<Evaluation> {
        export_neurox(input.data, &self.path, write_json)
    }
}
