//! The activation sources that need no plugin: matrices from `.npy`, `.npz`
//! and `.safetensors` files, and the synthetic planted-neuron model. (The
//! NeuroX JSON source lives with its format in [`crate::neurox`].)

mod npy;
mod synthetic;

pub use npy::{NpySource, read_label_file, read_matrix_file};
pub use synthetic::{SyntheticParams, SyntheticSource, generate};

pub(crate) use npy::descriptor as npy_descriptor;
pub(crate) use synthetic::descriptor as synthetic_descriptor;
