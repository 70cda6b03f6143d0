//! Column operations of the ablation experiments: keep or remove neurons by
//! filtering them out or by zeroing them, and select whole layers.
//!
//! These follow NeuroX's `interpretation.ablation` helpers exactly (checked
//! against its outputs), except that NeuroX's deprecated loader filter, which
//! assumed a different bidirectional layout, has no counterpart.

use ndarray::{Array2, ArrayView2};

use lca_core::data::gather_columns;
use lca_core::error::{Error, Result};

fn check(x: ArrayView2<'_, f32>, columns: &[usize]) -> Result<()> {
    match columns.iter().find(|&&c| c >= x.ncols()) {
        Some(bad) => Err(Error::input(format!(
            "neuron {bad} does not exist: there are {} neurons",
            x.ncols()
        ))),
        None => Ok(()),
    }
}

/// The given columns, in the given order (repeats allowed).
///
/// # Errors
/// When a column is out of range.
pub fn keep_columns(x: ArrayView2<'_, f32>, columns: &[usize]) -> Result<Array2<f32>> {
    check(x, columns)?;
    Ok(gather_columns(x, columns))
}

/// Every column except the given ones, in ascending order.
///
/// # Errors
/// When a column is out of range.
pub fn remove_columns(x: ArrayView2<'_, f32>, columns: &[usize]) -> Result<Array2<f32>> {
    check(x, columns)?;
    let mut removed = vec![false; x.ncols()];
    for &c in columns {
        removed[c] = true;
    }
    let kept: Vec<usize> = (0..x.ncols()).filter(|&c| !removed[c]).collect();
    Ok(gather_columns(x, &kept))
}

/// Same shape, with every column except the given ones set to zero.
///
/// # Errors
/// When a column is out of range.
pub fn zero_out_except(x: ArrayView2<'_, f32>, columns: &[usize]) -> Result<Array2<f32>> {
    check(x, columns)?;
    let mut out = Array2::<f32>::zeros(x.dim());
    for &c in columns {
        out.column_mut(c).assign(&x.column(c));
    }
    Ok(out)
}

/// Same shape, with the given columns set to zero.
///
/// # Errors
/// When a column is out of range.
pub fn zero_out(x: ArrayView2<'_, f32>, columns: &[usize]) -> Result<Array2<f32>> {
    check(x, columns)?;
    let mut out = x.to_owned();
    for &c in columns {
        out.column_mut(c).fill(0.0);
    }
    Ok(out)
}

/// How the columns of a multi-layer matrix are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerLayout {
    /// Layer after layer: column = layer × hidden + unit.
    LayerMajor,
    /// A bidirectional model, interleaved: forward 0, backward 0, forward 1, …;
    /// select the forward halves.
    InterleavedForward,
    /// As [`LayerLayout::InterleavedForward`], selecting the backward halves.
    InterleavedBackward,
}

/// The columns of the given layers (0-based, in the given order, repeats
/// allowed) for a matrix of `n_columns` holding `n_layers` layers.
///
/// # Errors
/// When a layer is out of range or the columns do not split evenly.
pub fn layer_columns(
    n_columns: usize,
    n_layers: usize,
    layers: &[usize],
    layout: LayerLayout,
) -> Result<Vec<usize>> {
    let parts = match layout {
        LayerLayout::LayerMajor => n_layers,
        LayerLayout::InterleavedForward | LayerLayout::InterleavedBackward => 2 * n_layers,
    };
    if parts == 0 || !n_columns.is_multiple_of(parts) {
        return Err(Error::input(format!(
            "{n_columns} neurons do not split into {parts} equal parts for {n_layers} layers"
        )));
    }
    let width = n_columns / parts;
    let mut columns = Vec::new();
    for &layer in layers {
        if layer >= n_layers {
            return Err(Error::input(format!(
                "layer {layer} does not exist: there are {n_layers} layers (0..{n_layers})"
            )));
        }
        let start = match layout {
            LayerLayout::LayerMajor => layer * width,
            LayerLayout::InterleavedForward => 2 * layer * width,
            LayerLayout::InterleavedBackward => (2 * layer + 1) * width,
        };
        columns.extend(start..start + width);
    }
    Ok(columns)
}
