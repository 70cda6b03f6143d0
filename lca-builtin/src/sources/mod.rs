//! The activation sources that need no plugin: matrices from `.npy`, `.npz`
//! and `.safetensors` files, activation stores, and the synthetic planted-neuron model. (The
//! NeuroX JSON source lives with its format in [`crate::neurox`].)

mod npy;
mod store;
mod synthetic;

pub use npy::{NpySource, read_label_file, read_matrix_file};
pub use synthetic::{SyntheticParams, SyntheticSource, generate};

pub(crate) use npy::descriptor as npy_descriptor;
pub(crate) use store::descriptor as store_descriptor;
pub(crate) use synthetic::descriptor as synthetic_descriptor;

/// The files that come with a held-out split's main file (its labels, its
/// corpus) mean nothing without it: an error naming the first one set,
/// when the main file `main` of `split` is not.
pub(crate) fn held_out_companions_need_main(
    component: &str,
    split: &str,
    main: &str,
    companions: [(&str, &Option<std::path::PathBuf>); 2],
) -> lca_core::Result<()> {
    match companions.into_iter().find(|(_, v)| v.is_some()) {
        Some((name, _)) => Err(lca_core::params::invalid(
            component,
            &format!("{split}_{name}"),
            "set",
            &format!("{split}_{main} as well: the {split} {name} belong to its activations"),
        )),
        None => Ok(()),
    }
}
