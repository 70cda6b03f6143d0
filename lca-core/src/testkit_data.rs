//! Small planted matrices for unit tests inside this crate.

use ndarray::Array2;

use crate::builtin::{SyntheticParams, generate};

fn params(tokens: usize, neurons: usize, classes: usize, per_class: usize) -> SyntheticParams {
    SyntheticParams {
        tokens,
        neurons,
        classes,
        per_class,
        dev: 0.0,
        test: 0.0,
        ..Default::default()
    }
}

/// Activations and labels of a planted dataset.
pub(crate) fn planted_xy(
    tokens: usize,
    neurons: usize,
    classes: usize,
    per_class: usize,
    seed: u64,
) -> (Array2<f32>, Vec<u32>) {
    let d = generate(&params(tokens, neurons, classes, per_class), seed, "t")
        .expect("valid parameters");
    (d.acts().view().into_owned(), d.labels().ids().to_vec())
}

/// The planted columns of the same dataset.
pub(crate) fn planted_columns(
    tokens: usize,
    neurons: usize,
    classes: usize,
    per_class: usize,
    seed: u64,
) -> Vec<u32> {
    let d = generate(&params(tokens, neurons, classes, per_class), seed, "t")
        .expect("valid parameters");
    d.truth().expect("planted").informative.clone()
}

/// A nearest-centroid classifier: a linear probe with `w_c = μ_c` and
/// `b_c = −½‖μ_c‖²`, trained on the training split. For evaluator tests
/// that need a probe without the solver.
#[derive(Debug)]
pub(crate) struct CentroidProbe;

#[derive(Debug)]
pub(crate) struct TrainedCentroids {
    classes: crate::data::ClassVocab,
    weights: ndarray::Array2<f32>,
    bias: ndarray::Array1<f32>,
}

impl crate::component::Probe for CentroidProbe {
    fn fit(
        &self,
        data: &crate::data::Dataset<'_>,
        _cx: &crate::context::RunContext,
    ) -> crate::error::Result<Box<dyn crate::component::TrainedProbe>> {
        let train = data.split(crate::data::Split::Train);
        let (c, d) = (data.n_classes(), data.n_neurons());
        let mut weights = ndarray::Array2::<f32>::zeros((c, d));
        let counts = crate::data::count_classes(train.labels, c);
        for (row, &y) in train.acts.rows().into_iter().zip(train.labels) {
            let mut w = weights.row_mut(y as usize);
            w += &row.mapv(|v| v / counts[y as usize] as f32);
        }
        let bias = weights
            .rows()
            .into_iter()
            .map(|w| -0.5 * w.dot(&w))
            .collect();
        Ok(Box::new(TrainedCentroids {
            classes: data.classes().clone(),
            weights,
            bias,
        }))
    }
}

impl crate::component::TrainedProbe for TrainedCentroids {
    fn classes(&self) -> &crate::data::ClassVocab {
        &self.classes
    }
    fn n_features(&self) -> usize {
        self.weights.ncols()
    }
    fn predict_proba(
        &self,
        x: ndarray::ArrayView2<'_, f32>,
    ) -> crate::error::Result<ndarray::Array2<f32>> {
        let mut z = x.dot(&self.weights.t()) + &self.bias;
        for mut row in z.rows_mut() {
            let max = row.fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            row.mapv_inplace(|v| (v - max).exp());
            let sum = row.sum();
            row /= sum;
        }
        Ok(z)
    }
    fn weights(&self) -> Option<ndarray::ArrayView2<'_, f32>> {
        Some(self.weights.view())
    }
}

/// A centroid probe's specification and its fit on `data`, as evaluators
/// receive them.
pub(crate) fn centroid_probe(
    data: &crate::data::Dataset<'_>,
) -> (
    std::sync::Arc<dyn crate::component::Probe>,
    crate::component::SharedProbe,
) {
    let spec = std::sync::Arc::new(CentroidProbe);
    let trained =
        crate::component::Probe::fit(&CentroidProbe, data, &crate::context::RunContext::new(0, 1))
            .expect("centroids fit");
    (spec, std::sync::Arc::from(trained))
}
