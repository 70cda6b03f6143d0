//! An independent check of the `ridge` probe: smartcore's logistic
//! regression, solved by L-BFGS, on the same data reaches the same optimum.
//!
//! smartcore minimises Σ_i CE_i + (α/2)‖W‖_F² (bias free, one weight row per
//! class when there are more than two classes). The ridge probe with
//! `l2_form = "squared"` minimises (1/N) Σ_i CE_i + λ2 ‖W‖_F², which is the
//! same problem divided by N when α = 2 N λ2. Both objectives are evaluated
//! here in f64 from the returned weights, independently of either solver.

use lca_core::data::Split;
use lca_core::ndarray::{Array1, Array2, ArrayView2};
use lca_core::{Component, Dataset, RunContext};
use smartcore::linalg::basic::arrays::Array;
use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::linear::logistic_regression::{LogisticRegression, LogisticRegressionParameters};

/// Every row's logits `W x + b`, in f64.
fn logits(x: ArrayView2<'_, f32>, w: &Array2<f64>, b: &Array1<f64>) -> Array2<f64> {
    x.mapv(f64::from).dot(&w.t()) + b
}

/// (1/N) Σ CE + λ2 ‖W‖², in f64.
fn objective(x: ArrayView2<'_, f32>, y: &[u32], w: &Array2<f64>, b: &Array1<f64>, l2: f64) -> f64 {
    let z = logits(x, w, b);
    let mut loss = 0.0;
    for (row, &label) in z.rows().into_iter().zip(y) {
        let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let log_sum = max + row.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
        loss += log_sum - row[label as usize];
    }
    loss / y.len() as f64 + l2 * w.iter().map(|v| v * v).sum::<f64>()
}

fn predictions(x: ArrayView2<'_, f32>, w: &Array2<f64>, b: &Array1<f64>) -> Vec<usize> {
    logits(x, w, b)
        .rows()
        .into_iter()
        .map(|row| {
            row.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(c, _)| c)
                .unwrap()
        })
        .collect()
}

fn ridge(params: &str, data: &Dataset<'_>) -> (Array2<f64>, Array1<f64>) {
    let descriptor = lca_plugin_logistic::descriptors()
        .into_iter()
        .find(|d| d.info.name == "ridge")
        .unwrap();
    let Component::Probe(probe) = (descriptor.build)(&params.parse().unwrap()).unwrap() else {
        unreachable!("ridge is a probe")
    };
    let trained = probe.fit(data, &RunContext::new(1, 1)).unwrap();
    let w = trained.weights().unwrap().mapv(f64::from);
    let b = Array1::from(
        trained
            .bias()
            .unwrap()
            .iter()
            .map(|&v| f64::from(v))
            .collect::<Vec<_>>(),
    );
    (w, b)
}

#[test]
fn ridge_reaches_the_optimum_smartcore_finds() {
    // Five classes, overlapping (noise twice the shift): the optimum is
    // unique and interior, and predictions are not all trivially right.
    let data = lca_testkit::planted(1500, 24, 5, 2, 21);
    let train = data.split(Split::Train);
    let acts = train.acts.view();
    let (x, y) = (acts.view(), train.labels);
    let n = y.len() as f64;
    for l2 in [0.01, 0.001] {
        let (w, b) = ridge(
            &format!("l2 = {l2}\nl2_form = \"squared\"\ntol = 1e-10\nmax_iter = 20000"),
            &data,
        );

        let values: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
        let matrix = DenseMatrix::new(x.nrows(), x.ncols(), values, false).unwrap();
        let labels: Vec<u32> = y.to_vec();
        let params = LogisticRegressionParameters::default().with_alpha(2.0 * n * l2);
        let model = LogisticRegression::fit(&matrix, &labels, params).unwrap();
        let coefficients = model.coefficients();
        let (k, d) = coefficients.shape();
        assert_eq!((k, d), (5, 24), "every class is in the training split");
        let w_sc = Array2::from_shape_fn((k, d), |(c, j)| *coefficients.get((c, j)));
        let b_sc = Array1::from_shape_fn(k, |c| *model.intercept().get((c, 0)));

        let ours = objective(x, y, &w, &b, l2);
        let theirs = objective(x, y, &w_sc, &b_sc, l2);
        assert!(
            (ours - theirs).abs() <= 1e-6 * theirs,
            "λ2 = {l2}: ridge objective {ours}, smartcore {theirs}"
        );
        // The optimum is unique, so the weights agree too, up to the
        // solvers' tolerances (the weaker the penalty, the flatter the
        // optimum) and the probe's f32 storage.
        let gap = (&w - &w_sc).mapv(f64::abs).fold(0.0f64, |a, &v| a.max(v));
        let scale = w_sc.mapv(f64::abs).fold(1.0f64, |a, &v| a.max(v));
        assert!(
            gap < 1e-3 * scale,
            "λ2 = {l2}: weights differ by {gap} (largest {scale})"
        );
        assert_eq!(
            predictions(x, &w, &b),
            predictions(x, &w_sc, &b_sc),
            "λ2 = {l2}: predictions differ"
        );
        let predicted: Vec<u32> = model.predict(&matrix).unwrap();
        let mine: Vec<u32> = predictions(x, &w, &b).iter().map(|&c| c as u32).collect();
        assert_eq!(
            mine, predicted,
            "λ2 = {l2}: smartcore's own predictions differ"
        );
    }
}
