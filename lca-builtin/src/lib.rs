//! `lca-builtin`: the components compiled into `lca`, and the file formats
//! and algorithms they share with plugins.
//!
//! - [`sources`]: `npy`, `store` and `synthetic`; [`neurox`]: NeuroX's JSON and text
//!   formats and the `neurox_json` source; [`corpus`]: Brown, CoNLL-U and
//!   NeuroX corpus readers, tasks and splits;
//! - [`evaluators`]: the evaluators of the LCA protocol and of the
//!   comparison between methods;
//! - [`select`], [`cluster`], [`ablate`]: neuron selection, correlation
//!   clustering and ablation, exactly as NeuroX computes them, public so that
//!   plugins use the same code.
//!
//! Nothing registers itself: a tool calls [`register`] (the `lca` binary
//! does, before it loads plugins).
//!
//! ```
//! let registry = lca_builtin::registry();
//! assert!(registry.names(lca_core::ComponentKind::Source).contains(&"synthetic".to_string()));
//! ```

// `deny`, not `forbid`: ndarray's `s!` macro allows unsafe internally.
#![deny(unsafe_code)]

pub mod ablate;
pub mod cluster;
pub mod corpus;
pub mod evaluators;
pub mod neurox;
pub mod select;
pub mod sources;

#[cfg(test)]
mod centroid_probe;

pub use evaluators::{ClusterSettings, authors_grid, control_labels, neuron_clusters};
pub use sources::{SyntheticParams, generate, read_label_file, read_matrix_file};

use lca_core::Registry;
use lca_core::registry::{Descriptor, Origin};

/// Every built-in component, in the order `lca list` shows them: sources,
/// then evaluators.
pub fn descriptors() -> Vec<Descriptor> {
    let mut all = vec![
        sources::npy_descriptor(),
        sources::store_descriptor(),
        neurox::json_descriptor(),
        sources::synthetic_descriptor(),
    ];
    all.extend(evaluators::descriptors());
    all
}

/// Adds every built-in component to `registry`.
///
/// # Errors
/// When a component of the same name is already registered (a plugin
/// loaded first that claims a built-in name).
pub fn register(registry: &mut Registry) -> lca_core::Result<()> {
    for descriptor in descriptors() {
        registry.register_native(descriptor, Origin::builtin())?;
    }
    Ok(())
}

/// A registry holding the built-in components and nothing else.
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    register(&mut registry).expect("built-in component names are unique");
    registry
}
