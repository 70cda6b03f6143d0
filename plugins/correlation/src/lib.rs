//! The `correlation` ranker: how strongly each neuron tracks each class.
//!
//! For neuron *j* and class *c*, with `y_c` the 0/1 indicator of class *c*,
//! on the training split:
//!
//! ```text
//! r_cj = pearson(x_j, y_c) = (μ_cj − μ_j) · sqrt(p_c / (1 − p_c)) / σ_j
//!
//!   μ_j   mean of neuron j          σ_j  its standard deviation (population)
//!   μ_cj  mean of neuron j on tokens of class c
//!   p_c   fraction of tokens in class c
//!
//! per-class score  s_cj = |r_cj|          (r_cj when signed = true)
//! overall score    s_j  = max_c s_cj
//! ```
//!
//! A neuron that never varies scores 0, as does a class absent from the
//! training split. Ties are broken by the lower neuron index. The sums are
//! accumulated in `f64`, one neuron column per task in a fixed row order, so
//! the result does not depend on the thread count.

use lca_core::data::RowBlocks;
use lca_core::data::{ClassStats, Split};
use lca_core::params::Params as _;
use lca_core::registry::{ComponentInfo, ComponentKind, Descriptor, Inputs, applied};
use lca_core::{Component, Dataset, NeuronRanking, RankInput, Ranker, Result, RunContext};
const NAME: &str = "correlation";

lca_core::params! {
    /// Parameters of `correlation`.
    struct CorrelationParams {
        /// rank by positive correlation only (r) instead of its magnitude
        /// (|r|)
        signed: bool = false,
    }
}

/// The component descriptor.
pub fn descriptor() -> Descriptor {
    Descriptor {
        info: ComponentInfo {
            kind: ComponentKind::Ranker,
            name: NAME.into(),
            summary: "Absolute Pearson correlation of each neuron with each class indicator (max over classes)".into(),
            params: CorrelationParams::docs(),
            example: "[ranker.corr]\ntype = \"correlation\"\nsource = \"planted\"\n".into(),
            inputs: Inputs::default(),
        },
        build: |table| {
            let p = CorrelationParams::parse(NAME, table)?;
            Ok(Component::Ranker(Box::new(CorrelationRanker { signed: p.signed })))
        },
        applied: applied::<CorrelationParams>,
    }
}

/// Ranks neurons by their correlation with the class indicators.
#[derive(Clone, Debug, Default)]
pub struct CorrelationRanker {
    /// Use `r` instead of `|r|`.
    pub signed: bool,
}

/// Pearson correlation of every neuron (columns) with every class indicator:
/// a `classes × neurons` table, row-major. Computed from the mergeable class
/// statistics of `lca-core`, read a block of rows at a time, so a matrix
/// mapped from a store larger than memory is read sequentially.
///
/// # Errors
/// When `labels` do not match the rows or name a class beyond `n_classes`.
pub fn class_correlations(
    x: impl RowBlocks,
    labels: &[u32],
    n_classes: usize,
) -> Result<Vec<Vec<f64>>> {
    let classes = (0..n_classes).map(|c| c.to_string()).collect();
    Ok(ClassStats::of_matrix(classes, x, labels)?.correlations())
}

impl CorrelationRanker {
    fn scores(&self, data: &Dataset<'_>) -> Result<Vec<Vec<f64>>> {
        data.require_two_train_classes()?;
        let train = data.split(Split::Train);
        let r = class_correlations(&train.acts, train.labels, data.n_classes())?;
        Ok(if self.signed {
            r
        } else {
            r.into_iter()
                .map(|row| row.into_iter().map(f64::abs).collect())
                .collect()
        })
    }
}

impl Ranker for CorrelationRanker {
    fn rank(&self, input: &RankInput<'_>, cx: &RunContext) -> Result<NeuronRanking> {
        let per_class = cx.install(|| self.scores(input.data))?;
        NeuronRanking::by_best_class(per_class, input.data.classes().names())
    }
}

lca_plugins::export_plugin! {
    name: "lca-plugin-correlation",
    version: env!("CARGO_PKG_VERSION"),
    components: [descriptor()],
}

#[cfg(test)]
mod tests {
    use super::*;
    use lca_core::ndarray::Array2;
    use lca_testkit::{RankerTraits, check_ranker, planted, planted_precision};
    use proptest::prelude::*;

    /// Textbook Pearson correlation, for reference.
    fn pearson(a: &[f64], b: &[f64]) -> f64 {
        let n = a.len() as f64;
        let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
        let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
        let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
        let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
        cov / (va * vb).sqrt()
    }

    #[test]
    fn hand_computed_example() {
        // Neuron 0 is exactly the indicator of class 1; neuron 1 is constant.
        let x =
            Array2::from_shape_vec((4, 2), vec![0.0, 5.0, 1.0, 5.0, 0.0, 5.0, 1.0, 5.0]).unwrap();
        let r = class_correlations(x.view(), &[0, 1, 0, 1], 2).unwrap();
        assert_eq!(r[1], vec![1.0, 0.0]);
        assert_eq!(r[0], vec![-1.0, 0.0]);
    }

    #[test]
    fn matches_the_textbook_formula() {
        let data = planted(300, 15, 4, 1, 9);
        let train = data.split(Split::Train);
        let acts = train.acts.view();
        let r = class_correlations(acts.view(), train.labels, 4).unwrap();
        for c in 0..4u32 {
            let indicator: Vec<f64> = train
                .labels
                .iter()
                .map(|&y| f64::from(u8::from(y == c)))
                .collect();
            for (j, &got) in r[c as usize].iter().enumerate() {
                let column: Vec<f64> = acts.column(j).iter().map(|&v| f64::from(v)).collect();
                let expected = pearson(&column, &indicator);
                assert!(
                    (got - expected).abs() < 1e-9,
                    "class {c} neuron {j}: {got} vs {expected}"
                );
            }
        }
    }

    #[test]
    fn recovers_planted_neurons() {
        let data = planted(3000, 200, 5, 2, 21);
        let ranking = CorrelationRanker::default()
            .rank(&RankInput::new(&data), &RunContext::new(1, 1))
            .unwrap();
        assert_eq!(planted_precision(&ranking, &data), 1.0);
        // Each class's own planted neurons lead its class ranking.
        let truth = data.truth().unwrap();
        for class in ranking.per_class() {
            let mut top: Vec<u32> = class.order()[..2].to_vec();
            top.sort_unstable();
            assert_eq!(
                &top,
                &truth.by_class[class.class()],
                "class {}",
                class.class()
            );
        }
    }

    #[test]
    fn passes_conformance() {
        check_ranker(&CorrelationRanker::default(), RankerTraits::default()).unwrap();
        check_ranker(&CorrelationRanker { signed: true }, RankerTraits::default()).unwrap();
    }

    #[test]
    fn single_class_is_an_error() {
        let data = planted(50, 4, 2, 1, 1);
        let one = data
            .clone()
            .with_labels(lca_core::data::Labels::from_names(&vec!["x"; 50]))
            .unwrap();
        let err = CorrelationRanker::default()
            .rank(&RankInput::new(&one), &RunContext::new(0, 1))
            .unwrap_err();
        assert!(err.to_string().contains("single class"), "{err}");
    }

    proptest! {
        #[test]
        fn permuting_columns_permutes_the_ranking(seed in 0u64..1000, n_neurons in 2usize..40) {
            let data = planted(120, n_neurons, 3, 0, seed);
            let mut perm: Vec<usize> = (0..n_neurons).collect();
            lca_core::rng::Rng::new(seed ^ 0x5eed).shuffle(&mut perm);
            let permuted = data.select_neurons(&perm).unwrap();
            let cx = RunContext::new(seed, 1);
            let a = CorrelationRanker::default().rank(&RankInput::new(&data), &cx).unwrap();
            let b = CorrelationRanker::default().rank(&RankInput::new(&permuted), &cx).unwrap();
            let mapped: Vec<u32> = b.order().iter().map(|&c| perm[c as usize] as u32).collect();
            prop_assert_eq!(mapped, a.order().to_vec());
        }

        #[test]
        fn bounded_and_invariant_to_affine_rescaling(
            values in proptest::collection::vec(-100.0f32..100.0, 40),
            scale in 0.1f32..10.0,
            shift in -50.0f32..50.0,
        ) {
            let labels: Vec<u32> = (0..20).map(|i| i % 3).collect();
            let x = Array2::from_shape_vec((20, 2), values).unwrap();
            let mut y = x.clone();
            y.column_mut(0).mapv_inplace(|v| v * scale + shift);
            let a = class_correlations(x.view(), &labels, 3).unwrap();
            let b = class_correlations(y.view(), &labels, 3).unwrap();
            for c in 0..3 {
                prop_assert!(a[c][0].abs() <= 1.0 && a[c][1].abs() <= 1.0);
                prop_assert!((a[c][0] - b[c][0]).abs() < 1e-4, "{} vs {}", a[c][0], b[c][0]);
            }
        }
    }
}
