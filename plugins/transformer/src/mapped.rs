//! Model files mapped into memory rather than read: the one place outside
//! the solver kernels and the plugin ABI where `lca` needs `unsafe`.
//!
//! A model held in bfloat16 must never have its whole file in memory beside
//! the packed weights (an 8B model would need twice its size), so
//! safetensors files are mapped: their pages belong to the page cache and
//! are dropped as each layer is packed.

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use std::path::PathBuf;

/// The tensors of `files` (one safetensors file, or the shards of one
/// model), read on demand from a mapping; values keep their stored type
/// until a layer asks for them in `dtype`.
pub(crate) fn safetensors(
    files: &[PathBuf],
    dtype: DType,
    device: &Device,
) -> candle_core::Result<VarBuilder<'static>> {
    // SAFETY: a mapping is sound while the file is not changed under it;
    // model files are not written while a model loads (a file replaced
    // meanwhile would be read inconsistently, not out of bounds, as the
    // safetensors header is checked against the mapped length).
    unsafe { VarBuilder::from_mmaped_safetensors(files, dtype, device) }
}
