//! A probe without a solver, for evaluator unit tests.

/// A nearest-centroid classifier: a linear probe with `w_c = μ_c` and
/// `b_c = −½‖μ_c‖²`, trained on the training split. For evaluator tests
/// that need a probe without the solver.
#[derive(Debug)]
pub(crate) struct CentroidProbe;

#[derive(Debug)]
pub(crate) struct TrainedCentroids {
    classes: lca_core::data::ClassVocab,
    weights: ndarray::Array2<f32>,
    bias: ndarray::Array1<f32>,
}

impl lca_core::component::Probe for CentroidProbe {
    fn fit(
        &self,
        data: &lca_core::data::Dataset<'_>,
        _cx: &lca_core::context::RunContext,
    ) -> lca_core::error::Result<Box<dyn lca_core::component::TrainedProbe>> {
        let train = data.split(lca_core::data::Split::Train);
        let (c, d) = (data.n_classes(), data.n_neurons());
        let mut weights = ndarray::Array2::<f32>::zeros((c, d));
        let counts = lca_core::data::count_classes(train.labels, c);
        for (row, &y) in train.acts.view().rows().into_iter().zip(train.labels) {
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

impl lca_core::component::TrainedProbe for TrainedCentroids {
    fn classes(&self) -> &lca_core::data::ClassVocab {
        &self.classes
    }
    fn n_features(&self) -> usize {
        self.weights.ncols()
    }
    fn predict_proba(
        &self,
        x: ndarray::ArrayView2<'_, f32>,
    ) -> lca_core::error::Result<ndarray::Array2<f32>> {
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
    fn bias(&self) -> Option<ndarray::ArrayView1<'_, f32>> {
        Some(self.bias.view())
    }
}

/// A centroid probe's specification and its fit on `data`, as evaluators
/// receive them.
pub(crate) fn centroid_probe(
    data: &lca_core::data::Dataset<'_>,
) -> (
    std::sync::Arc<dyn lca_core::component::Probe>,
    lca_core::component::SharedProbe,
) {
    let spec = std::sync::Arc::new(CentroidProbe);
    let trained = lca_core::component::Probe::fit(
        &CentroidProbe,
        data,
        &lca_core::context::RunContext::new(0, 1),
    )
    .expect("centroids fit");
    (spec, std::sync::Arc::from(trained))
}
