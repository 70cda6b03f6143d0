//! Planted matrices as plain arrays, for solver tests.

use ndarray::Array2;

use lca_builtin::{SyntheticParams, generate};

/// The synthetic model of the planted helpers: every other parameter at its
/// default, `test` of the tokens held out, no dev split.
pub(crate) fn params(
    tokens: usize,
    neurons: usize,
    classes: usize,
    per_class: usize,
    test: f64,
) -> SyntheticParams {
    SyntheticParams {
        tokens,
        neurons,
        classes,
        per_class,
        split: lca_core::data::SplitFractions { dev: 0.0, test },
        ..Default::default()
    }
}

/// Activations and labels of a planted dataset.
pub fn planted_xy(
    tokens: usize,
    neurons: usize,
    classes: usize,
    per_class: usize,
    seed: u64,
) -> (Array2<f32>, Vec<u32>) {
    let d = generate(&params(tokens, neurons, classes, per_class, 0.0), seed, "t")
        .expect("valid parameters");
    (d.acts().view().into_owned(), d.labels().ids().to_vec())
}

/// The planted columns of the same dataset.
pub fn planted_columns(
    tokens: usize,
    neurons: usize,
    classes: usize,
    per_class: usize,
    seed: u64,
) -> Vec<u32> {
    let d = generate(&params(tokens, neurons, classes, per_class, 0.0), seed, "t")
        .expect("valid parameters");
    d.truth().expect("planted").informative.clone()
}
