//! Nonlinear probes from smartcore: `random_forest`, `knn` and
//! `naive_bayes` (Gaussian).
//!
//! A linear probe can only read what is linearly encoded; a nonlinear probe
//! reads more, and may also memorise. Hewitt & Liang's selectivity (task
//! accuracy minus control-task accuracy) tells the two apart, so the
//! `selectivity` evaluator run on these probes next to the logistic ones
//! shows whether a property is encoded linearly in the chosen neurons.
//!
//! ```text
//! random_forest  bootstrap trees on √D random neurons per split; predicts the
//!                majority vote (the probability is 1 for the predicted class)
//! knn            the k nearest training tokens (Euclidean); the probability
//!                of a class is its share of the k votes
//! naive_bayes    per-class Gaussian for each neuron, independent neurons
//!                (the probability is 1 for the predicted class)
//! ```
//!
//! Training uses the training split, or a seeded sample of `max_rows` of it:
//! k-NN keeps every training row and compares each prediction with all of
//! them, and forests grow with the rows. None of these probes has weights,
//! so rankers that read weights (`probe_weights`, `mean_abs_weight`) refuse
//! them with a clear error. They are not stored in checkpoints, so a resumed
//! run trains them again.

#![forbid(unsafe_code)]

use std::sync::Arc;

use lca_core::data::{ClassVocab, Split};
use lca_core::ndarray::{Array2, ArrayView2};
use lca_core::params::Params as _;
use lca_core::registry::{ComponentInfo, ComponentKind, Descriptor, Inputs, applied};
use lca_core::rng::Rng;
use lca_core::{Component, Dataset, Error, Probe, Result, RunContext, TrainedProbe};
use smartcore::ensemble::random_forest_classifier::{
    RandomForestClassifier, RandomForestClassifierParameters,
};
use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::metrics::distance::euclidian::Euclidian;
use smartcore::naive_bayes::gaussian::{GaussianNB, GaussianNBParameters};
use smartcore::neighbors::knn_classifier::{KNNClassifier, KNNClassifierParameters};

lca_core::params! {
    /// Parameters of `random_forest`.
    struct ForestParams {
        /// trees in the forest
        trees: usize = 100 => range(1..=1000),
        /// deepest a tree grows (0: no limit)
        max_depth: usize = 0 => range(0..=1000),
        /// fewest training tokens in a leaf
        min_leaf: usize = 1 => range(1..),
        /// fixed seed of the bootstrap samples and neuron draws; by default
        /// the step's seed
        #[shown = "the step's seed"]
        seed: Option<u64> = None,
        #[flatten]
        rows: RowLimit,
    }
}

lca_core::params! {
    /// Parameters of `knn`.
    struct KnnParams {
        /// neighbours that vote
        k: usize = 5 => range(1..=1000),
        /// weigh each vote by the inverse distance instead of equally
        distance_weighted: bool = false,
        #[flatten]
        rows: RowLimit,
    }
}

lca_core::params! {
    /// How many training tokens a nonlinear probe learns from: one
    /// declaration for the three probes.
    struct RowLimit {
        /// train on a seeded sample of at most this many training tokens
        /// (all of them when there are fewer)
        max_rows: usize = 10_000 => range(10..),
    }
}

/// Which smartcore model a probe trains.
#[derive(Clone, Debug)]
enum Model {
    Forest {
        trees: u16,
        max_depth: Option<u16>,
        min_leaf: usize,
        seed: Option<u64>,
    },
    Knn {
        k: usize,
        distance_weighted: bool,
    },
    NaiveBayes,
}

/// A nonlinear probe: a model and how many training rows it reads.
#[derive(Clone, Debug)]
pub struct NonlinearProbe {
    name: &'static str,
    model: Model,
    max_rows: usize,
}

fn info(
    name: &str,
    summary: &str,
    params: Vec<lca_core::params::ParamDoc>,
    example: &str,
) -> ComponentInfo {
    ComponentInfo {
        kind: ComponentKind::Probe,
        name: name.into(),
        summary: summary.into(),
        params,
        example: example.into(),
        inputs: Inputs::default(),
    }
}

/// The three probe descriptors.
pub fn descriptors() -> Vec<Descriptor> {
    vec![
        forest_descriptor(),
        knn_descriptor(),
        naive_bayes_descriptor(),
    ]
}

/// The `random_forest` descriptor.
pub fn forest_descriptor() -> Descriptor {
    Descriptor {
        info: info(
            "random_forest",
            "Random-forest probe (smartcore): nonlinear, majority vote of bootstrap trees",
            ForestParams::docs(),
            "[probe.forest]\ntype = \"random_forest\"\ntrees = 100\n",
        ),
        build: |table| {
            let p = ForestParams::parse("random_forest", table)?;
            Ok(Component::Probe(Arc::new(NonlinearProbe {
                name: "random_forest",
                model: Model::Forest {
                    // The rule caps both below u16::MAX.
                    trees: p.trees as u16,
                    max_depth: (p.max_depth > 0).then_some(p.max_depth as u16),
                    min_leaf: p.min_leaf,
                    seed: p.seed,
                },
                max_rows: p.rows.max_rows,
            })))
        },
        applied: applied::<ForestParams>,
    }
}

/// The `knn` descriptor.
pub fn knn_descriptor() -> Descriptor {
    Descriptor {
        info: info(
            "knn",
            "k-nearest-neighbour probe (smartcore): nonlinear, votes of the closest training tokens",
            KnnParams::docs(),
            "[probe.knn]\ntype = \"knn\"\nk = 5\n",
        ),
        build: |table| {
            let p = KnnParams::parse("knn", table)?;
            Ok(Component::Probe(Arc::new(NonlinearProbe {
                name: "knn",
                model: Model::Knn {
                    k: p.k,
                    distance_weighted: p.distance_weighted,
                },
                max_rows: p.rows.max_rows,
            })))
        },
        applied: applied::<KnnParams>,
    }
}

/// The `naive_bayes` descriptor.
pub fn naive_bayes_descriptor() -> Descriptor {
    Descriptor {
        info: info(
            "naive_bayes",
            "Gaussian naive Bayes probe (smartcore): one Gaussian per class and neuron",
            RowLimit::docs(),
            "[probe.bayes]\ntype = \"naive_bayes\"\n",
        ),
        build: |table| {
            let p = RowLimit::parse("naive_bayes", table)?;
            Ok(Component::Probe(Arc::new(NonlinearProbe {
                name: "naive_bayes",
                model: Model::NaiveBayes,
                max_rows: p.max_rows,
            })))
        },
        applied: applied::<RowLimit>,
    }
}

/// A fitted smartcore model.
enum Fitted {
    Forest(RandomForestClassifier<f32, u32, DenseMatrix<f32>, Vec<u32>>),
    Knn(KNNClassifier<f32, u32, DenseMatrix<f32>, Vec<u32>, Euclidian<f32>>),
    NaiveBayes(GaussianNB<f32, u32, DenseMatrix<f32>, Vec<u32>>),
}

/// A trained nonlinear probe.
pub struct TrainedNonlinear {
    name: &'static str,
    classes: ClassVocab,
    /// Classes present in the training rows, ascending: smartcore's order.
    seen: Vec<u32>,
    n_features: usize,
    fitted: Fitted,
    details: serde_json::Value,
}

impl std::fmt::Debug for TrainedNonlinear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrainedNonlinear")
            .field("probe", &self.name)
            .field("classes", &self.classes.len())
            .field("n_features", &self.n_features)
            .finish()
    }
}

/// A smartcore matrix of `x`, row-major, without NaN.
fn dense(x: ArrayView2<'_, f32>) -> Result<DenseMatrix<f32>> {
    let (rows, cols) = x.dim();
    let values: Vec<f32> = x.iter().copied().collect();
    DenseMatrix::new(rows, cols, values, false).map_err(|e| Error::input(e.to_string()))
}

fn failed(probe: &str, what: &str, e: smartcore::error::Failed) -> Error {
    Error::input(format!("`{probe}` could not {what}: {e}"))
}

impl Probe for NonlinearProbe {
    fn fit(&self, data: &Dataset<'_>, cx: &RunContext) -> Result<Box<dyn TrainedProbe>> {
        let train = data.split(Split::Train);
        let total = train.labels.len();
        if total == 0 {
            return Err(Error::input(format!(
                "`{}` needs training tokens, but the training split is empty",
                self.name
            )));
        }
        let mut rows: Vec<usize> = (0..total).collect();
        if total > self.max_rows {
            rows = cx.rng_for("rows").sample_indices(total, self.max_rows);
            rows.sort_unstable();
        }
        let x = train.acts.select_rows(&rows);
        let y: Vec<u32> = rows.iter().map(|&r| train.labels[r]).collect();
        let mut seen = y.clone();
        seen.sort_unstable();
        seen.dedup();
        if seen.len() < 2 {
            return Err(Error::input(format!(
                "`{}` needs at least two classes among the training tokens; found {}",
                self.name,
                seen.len()
            )));
        }
        cx.check_cancelled()?;
        let matrix = dense(x.view().view())?;
        let fitted = match &self.model {
            Model::Forest {
                trees,
                max_depth,
                min_leaf,
                seed,
            } => {
                let mut params = RandomForestClassifierParameters::default()
                    .with_n_trees(*trees)
                    .with_min_samples_leaf(*min_leaf)
                    .with_seed(
                        seed.unwrap_or_else(|| Rng::derived(cx.seed(), "forest").next_u64()),
                    );
                if let Some(depth) = max_depth {
                    params = params.with_max_depth(*depth);
                }
                Fitted::Forest(
                    RandomForestClassifier::fit(&matrix, &y, params)
                        .map_err(|e| failed(self.name, "train", e))?,
                )
            }
            Model::Knn {
                k,
                distance_weighted,
            } => {
                let weight = if *distance_weighted {
                    smartcore::neighbors::KNNWeightFunction::Distance
                } else {
                    smartcore::neighbors::KNNWeightFunction::Uniform
                };
                let params = KNNClassifierParameters::default()
                    .with_k((*k).min(y.len()))
                    .with_weight(weight);
                Fitted::Knn(
                    KNNClassifier::fit(&matrix, &y, params)
                        .map_err(|e| failed(self.name, "train", e))?,
                )
            }
            Model::NaiveBayes => Fitted::NaiveBayes(
                GaussianNB::fit(&matrix, &y, GaussianNBParameters::default())
                    .map_err(|e| failed(self.name, "train", e))?,
            ),
        };
        let details = serde_json::json!({
            "probe": self.name,
            "training tokens": rows.len(),
            "training tokens available": total,
            "model": format!("{:?}", self.model),
        });
        Ok(Box::new(TrainedNonlinear {
            name: self.name,
            classes: data.classes().clone(),
            seen,
            n_features: data.n_neurons(),
            fitted,
            details,
        }))
    }
}

impl TrainedNonlinear {
    /// One-hot rows for predicted class ids.
    fn one_hot(&self, predicted: &[u32]) -> Array2<f32> {
        let mut proba = Array2::<f32>::zeros((predicted.len(), self.classes.len()));
        for (r, &c) in predicted.iter().enumerate() {
            proba[[r, c as usize]] = 1.0;
        }
        proba
    }
}

impl TrainedProbe for TrainedNonlinear {
    fn classes(&self) -> &ClassVocab {
        &self.classes
    }

    fn n_features(&self) -> usize {
        self.n_features
    }

    fn predict_proba(&self, x: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        if x.ncols() != self.n_features {
            return Err(Error::input(format!(
                "`{}` was trained on {} neurons but is asked about {}",
                self.name,
                self.n_features,
                x.ncols()
            )));
        }
        if x.nrows() == 0 {
            return Ok(Array2::zeros((0, self.classes.len())));
        }
        let matrix = dense(x)?;
        match &self.fitted {
            Fitted::Forest(model) => {
                let predicted = model
                    .predict(&matrix)
                    .map_err(|e| failed(self.name, "predict", e))?;
                Ok(self.one_hot(&predicted))
            }
            Fitted::NaiveBayes(model) => {
                let predicted = model
                    .predict(&matrix)
                    .map_err(|e| failed(self.name, "predict", e))?;
                Ok(self.one_hot(&predicted))
            }
            Fitted::Knn(model) => {
                let shares = model
                    .predict_proba(&matrix)
                    .map_err(|e| failed(self.name, "predict", e))?;
                let mut proba = Array2::<f32>::zeros((shares.len(), self.classes.len()));
                for (r, row) in shares.iter().enumerate() {
                    for (&class, &share) in self.seen.iter().zip(row) {
                        proba[[r, class as usize]] = share as f32;
                    }
                }
                Ok(proba)
            }
        }
    }

    fn details(&self) -> serde_json::Value {
        self.details.clone()
    }
}

lca_plugins::export_plugin! {
    name: "lca-plugin-nonlinear",
    version: env!("CARGO_PKG_VERSION"),
    components: [forest_descriptor(), knn_descriptor(), naive_bayes_descriptor()],
}

#[cfg(test)]
mod tests {
    use super::*;
    use lca_core::component::argmax;
    use lca_testkit::planted;

    fn build(name: &str, params: &str) -> Arc<dyn Probe> {
        let table: lca_core::toml::Table = params.parse().unwrap();
        let descriptor = descriptors()
            .into_iter()
            .find(|d| d.info.name == name)
            .unwrap();
        match (descriptor.build)(&table).unwrap() {
            Component::Probe(p) => p,
            _ => unreachable!(),
        }
    }

    fn accuracy(probe: &dyn TrainedProbe, data: &Dataset<'_>, split: Split) -> f64 {
        let part = data.split(split);
        let proba = probe.predict_proba_blocks(&part.acts).unwrap();
        let right = proba
            .rows()
            .into_iter()
            .zip(part.labels)
            .filter(|(row, y)| argmax(row.iter().copied()) == **y)
            .count();
        right as f64 / part.labels.len() as f64
    }

    #[test]
    fn every_probe_learns_planted_neurons() {
        // 4 classes, 2 planted neurons each among 30: chance is 0.25.
        let data = planted(2000, 30, 4, 2, 3);
        for (name, params) in [
            ("random_forest", "trees = 30\nseed = 1"),
            ("knn", "k = 7"),
            ("naive_bayes", ""),
        ] {
            let trained = build(name, params)
                .fit(&data, &RunContext::new(5, 1))
                .unwrap();
            let acc = accuracy(trained.as_ref(), &data, Split::Test);
            assert!(acc > 0.6, "{name}: test accuracy {acc}");
            assert!(trained.weights().is_none(), "{name} has no weights");
            let proba = trained
                .predict_proba_blocks(&data.split(Split::Test).acts)
                .unwrap();
            for row in proba.rows() {
                assert!((row.sum() - 1.0).abs() < 1e-5, "{name}: {row}");
            }
        }
    }

    #[test]
    fn a_nonlinear_property_beats_a_linear_probe() {
        // The class is the sign of x0 · x1 (XOR): no linear probe does better
        // than chance, a forest and k-NN do.
        let mut rng = Rng::new(9);
        let n = 1200;
        let mut acts = Array2::<f32>::zeros((n, 4));
        let mut labels = Vec::with_capacity(n);
        for r in 0..n {
            for c in 0..4 {
                acts[[r, c]] = rng.normal() as f32;
            }
            labels.push(u32::from(acts[[r, 0]] * acts[[r, 1]] > 0.0));
        }
        let data = lca_testkit::dataset_from(acts, labels, 0.0, 0.25);
        let train = data.split(Split::Train);
        let options = lca_linear::FitOptions {
            penalty: lca_linear::Penalty {
                l1: 0.0,
                l2: 1e-3,
                l2_form: lca_linear::L2Form::Squared,
            },
            solver: lca_linear::Solver::Fista(Default::default()),
            standardize: false,
            init: lca_linear::Init::Zeros,
        };
        let linear = lca_linear::fit(
            &train.acts,
            train.labels,
            2,
            &options,
            &RunContext::new(1, 1),
        )
        .unwrap();
        let test = data.split(Split::Test);
        let proba = linear.predict_proba(test.acts.view().view()).unwrap();
        let right = proba
            .rows()
            .into_iter()
            .zip(test.labels)
            .filter(|(row, y)| argmax(row.iter().copied()) == **y)
            .count();
        let linear_acc = right as f64 / test.labels.len() as f64;
        assert!(
            linear_acc < 0.65,
            "a linear probe reads XOR at {linear_acc}"
        );
        for (name, params) in [("random_forest", "trees = 50\nseed = 2"), ("knn", "k = 9")] {
            let trained = build(name, params)
                .fit(&data, &RunContext::new(1, 1))
                .unwrap();
            let acc = accuracy(trained.as_ref(), &data, Split::Test);
            assert!(acc > 0.85, "{name}: XOR accuracy {acc}");
        }
    }

    #[test]
    fn same_seed_same_forest_and_degenerate_data_is_an_error() {
        let data = planted(600, 12, 3, 1, 4);
        let a = build("random_forest", "trees = 10")
            .fit(&data, &RunContext::new(7, 1))
            .unwrap();
        let b = build("random_forest", "trees = 10")
            .fit(&data, &RunContext::new(7, 2))
            .unwrap();
        let test = data.split(Split::Test);
        let x = test.acts.view();
        assert_eq!(
            a.predict_proba(x.view()).unwrap(),
            b.predict_proba(x.view()).unwrap()
        );

        let one_class = lca_testkit::dataset_from(Array2::zeros((50, 3)), vec![0; 50], 0.0, 0.2);
        for name in ["random_forest", "knn", "naive_bayes"] {
            let err = build(name, "")
                .fit(&one_class, &RunContext::new(1, 1))
                .unwrap_err()
                .to_string();
            assert!(err.contains("at least two classes"), "{name}: {err}");
        }
        let err = (descriptors()[1].build)(&"k = 0".parse().unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("parameter `k` = 0"), "{err}");
    }
}
