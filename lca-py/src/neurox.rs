//! The numeric core of `lca.neurox`, NeuroX's functions under their names:
//! the neuron selectors on a weight matrix (classes × neurons) with NeuroX's
//! float32 arithmetic, and its JSON-lines activation reader.

use std::path::PathBuf;

use lca_builtin::neurox;
use lca_builtin::select::ClassMasses;
use numpy::{IntoPyArray, PyArray2, PyReadonlyArray2};
use pyo3::prelude::*;

use crate::errors::{core_error, message};

type Selection = (Vec<u32>, Vec<Vec<u32>>);

/// Per sentence its matrix and its tokens, and the number of layers.
type SentenceActivations<'py> = (Vec<Bound<'py, PyArray2<f32>>>, Vec<Vec<String>>, usize);

fn masses(weights: &PyReadonlyArray2<'_, f32>) -> PyResult<ClassMasses> {
    ClassMasses::new(weights.as_array()).map_err(core_error)
}

/// `get_neuron_ordering` (without `granularity`) or
/// `get_neuron_ordering_granular`: the ordering and its cutoffs.
#[pyfunction]
#[pyo3(signature = (weights, search_stride, granularity=None))]
pub(crate) fn lca_ordering(
    weights: PyReadonlyArray2<'_, f32>,
    search_stride: usize,
    granularity: Option<usize>,
) -> PyResult<(Vec<u32>, Vec<usize>)> {
    let masses = masses(&weights)?;
    let ordering = match granularity {
        None => masses.ordering(search_stride),
        Some(g) => masses.ordering_granular(g, search_stride),
    }
    .map_err(core_error)?;
    Ok((ordering.order, ordering.cutoffs))
}

/// `get_top_neurons` (or `get_bottom_neurons` with `bottom`): the union of
/// the per-class sets, sorted, and each class's set.
#[pyfunction]
#[pyo3(signature = (weights, percentage, bottom=false))]
pub(crate) fn mass_selection(
    weights: PyReadonlyArray2<'_, f32>,
    percentage: f64,
    bottom: bool,
) -> PyResult<Selection> {
    if !(percentage.is_finite() && percentage >= 0.0) {
        return Err(message(format!(
            "percentage {percentage} is not a fraction of the weight mass; give a number from 0 to 1"
        )));
    }
    let masses = masses(&weights)?;
    Ok(if bottom {
        masses.bottom(percentage)
    } else {
        masses.top(percentage)
    })
}

/// `get_top_neurons_hard_threshold`: per class, |w| > max|w| / `fraction`.
#[pyfunction]
pub(crate) fn above_max_fraction(
    weights: PyReadonlyArray2<'_, f32>,
    fraction: f64,
) -> PyResult<Selection> {
    if !(fraction.is_finite() && fraction > 0.0) {
        return Err(message(format!(
            "fraction {fraction} must be a number above 0 (neurons above max|w| / fraction are kept)"
        )));
    }
    Ok(masses(&weights)?.above_fraction_of_max(fraction))
}

/// A NeuroX JSON-lines activation file: per sentence its tokens and its
/// `[tokens, layers·hidden]` matrix, and the number of layers.
#[pyfunction]
pub(crate) fn read_activations_json<'py>(
    py: Python<'py>,
    path: PathBuf,
) -> PyResult<SentenceActivations<'py>> {
    let read = py.detach(|| neurox::read_json(&path)).map_err(core_error)?;
    let layers = read.layers.len();
    let mut matrices = Vec::with_capacity(read.sentences.len());
    let mut tokens = Vec::with_capacity(read.sentences.len());
    for sentence in read.sentences {
        matrices.push(sentence.values.into_pyarray(py));
        tokens.push(sentence.tokens);
    }
    Ok((matrices, tokens, layers))
}
