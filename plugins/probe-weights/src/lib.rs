//! The `probe_weights` ranker: Linguistic Correlation Analysis's neuron
//! ordering (Dalvi et al. 2019; Durrani et al. 2023), from the weights of a
//! trained linear probe.
//!
//! ```text
//! a_c = |W[c, :]|, T_c = Σ_j a_cj
//! top set of class c at p: shortest prefix of a_c sorted descending whose
//!   running sum reaches p·T_c (the crossing neuron included)
//! ordering: for p = 0, 1/S, …, 1 append the union's new neurons
//! ```
//!
//! It reproduces NeuroX's `get_neuron_ordering` (or, with `granularity`,
//! `get_neuron_ordering_granular`) exactly up to the order inside a step,
//! which is deterministic here: largest share of a class's mass first, then
//! lower index. Neurons with zero weight in every class come last. The
//! ranking carries per-class rankings (by |w|, ties by higher index) and the
//! cutoffs (`details.cutoffs`: length of the ordering after each step).
//!
//! The `mean_abs_weight` ranker is the "Linear" method of Antverg &
//! Belinkov (2022): the same probe's weights, averaged over classes.
//!
//! ```text
//! overall score  s_j  = (1/C) Σ_c |W[c, j]|
//! per-class      s_cj = |W[c, j]|
//! ```
//!
//! Ties are broken by the lower neuron index.

use lca_builtin::select::ClassMasses;
use lca_core::data::ClassRanking;
use lca_core::params::Params as _;
use lca_core::registry::{ComponentInfo, ComponentKind, Descriptor, Inputs, Need, applied};
use lca_core::{Component, Error, NeuronRanking, RankInput, Ranker, Result, RunContext};
const NAME: &str = "probe_weights";
const MEAN_ABS: &str = "mean_abs_weight";

lca_core::params! {
    /// Parameters of `probe_weights`.
    struct Params {
        /// steps of the mass fraction p from 0 to 1 (1000 in the redundancy
        /// experiments)
        search_stride: usize = 100 => range(1..=100_000),
        /// emit steps in chunks of about this many neurons (NeuroX's granular
        /// variant)
        granularity: Option<usize> = None => range(1..),
    }
}

/// The component descriptor.
pub fn descriptor() -> Descriptor {
    Descriptor {
        info: ComponentInfo {
            kind: ComponentKind::Ranker,
            name: NAME.into(),
            summary: "LCA ordering: neurons by the per-class mass of a linear probe's weights"
                .into(),
            params: Params::docs(),
            example:
                "[ranker.lca]\ntype = \"probe_weights\"\nprobe = \"lca\"\nsearch_stride = 100\n"
                    .into(),
            inputs: Inputs {
                probe: Need::Required,
                ..Inputs::default()
            },
        },
        build: |table| {
            let p = Params::parse(NAME, table)?;
            Ok(Component::Ranker(Box::new(ProbeWeights {
                search_stride: p.search_stride,
                granularity: p.granularity,
            })))
        },
        applied: applied::<Params>,
    }
}

/// The `mean_abs_weight` descriptor.
pub fn mean_abs_descriptor() -> Descriptor {
    Descriptor {
        info: ComponentInfo {
            kind: ComponentKind::Ranker,
            name: MEAN_ABS.into(),
            summary: "\"Linear\" ranking: a linear probe's absolute weights averaged over classes"
                .into(),
            params: Vec::new(),
            example: "[ranker.linear]\ntype = \"mean_abs_weight\"\nprobe = \"lca\"\n".into(),
            inputs: Inputs {
                probe: Need::Required,
                ..Inputs::default()
            },
        },
        build: |table| {
            <()>::parse(MEAN_ABS, table)?;
            Ok(Component::Ranker(Box::new(MeanAbsWeight)))
        },
        applied: applied::<()>,
    }
}

/// The probe's weights, checked against the data.
fn probe_weights<'p>(
    probe: &'p lca_core::SharedProbe,
    data: &lca_core::Dataset<'_>,
    ranker: &str,
) -> Result<lca_core::ndarray::ArrayView2<'p, f32>> {
    let weights = probe.weights().ok_or_else(|| {
        Error::input(format!("`{ranker}` needs a linear probe with weights (elastic_net, lasso, ridge or unregularized)"))
    })?;
    if weights.ncols() != data.n_neurons() {
        return Err(Error::input(format!(
            "the probe has weights for {} neurons but the data has {}; wire a probe trained on the same source",
            weights.ncols(),
            data.n_neurons()
        )));
    }
    Ok(weights)
}

/// Mean absolute weight over classes.
#[derive(Clone, Copy, Debug, Default)]
pub struct MeanAbsWeight;

impl Ranker for MeanAbsWeight {
    fn rank(&self, input: &RankInput<'_>, _cx: &RunContext) -> Result<NeuronRanking> {
        let probe = input.require_probe(MEAN_ABS)?;
        let weights = probe_weights(probe, input.data, MEAN_ABS)?;
        let c = weights.nrows().max(1) as f64;
        let overall: Vec<f64> = weights
            .columns()
            .into_iter()
            .map(|col| col.iter().map(|&w| f64::from(w.abs())).sum::<f64>() / c)
            .collect();
        let per_class = probe
            .classes()
            .names()
            .iter()
            .zip(weights.rows())
            .map(|(name, row)| {
                ClassRanking::from_scores(
                    name.clone(),
                    row.iter().map(|&w| f64::from(w.abs())).collect(),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        NeuronRanking::from_scores(overall)?.with_per_class(per_class)
    }
}

/// LCA's weight-mass ordering.
#[derive(Clone, Debug)]
pub struct ProbeWeights {
    /// Steps of p.
    pub search_stride: usize,
    /// Chunk size of the granular variant.
    pub granularity: Option<usize>,
}

impl Ranker for ProbeWeights {
    fn rank(&self, input: &RankInput<'_>, _cx: &RunContext) -> Result<NeuronRanking> {
        let probe = input.require_probe(NAME)?;
        let weights = probe_weights(probe, input.data, NAME)?;
        let masses = ClassMasses::new(weights)?;
        let ordering = match self.granularity {
            Some(g) => masses.ordering_granular(g, self.search_stride)?,
            None => masses.ordering(self.search_stride)?,
        };
        let per_class = probe
            .classes()
            .names()
            .iter()
            .enumerate()
            .map(|(c, name)| {
                let scores = masses
                    .abs_weights(c)
                    .iter()
                    .map(|&v| f64::from(v))
                    .collect();
                ClassRanking::with_scores(name.clone(), masses.descending(c).to_vec(), scores)
            })
            .collect::<Result<Vec<_>>>()?;
        let mut details = serde_json::Map::new();
        details.insert("search_stride".into(), self.search_stride.into());
        if let Some(g) = self.granularity {
            details.insert("granularity".into(), g.into());
        }
        details.insert("cutoffs".into(), ordering.cutoffs.clone().into());
        details.insert("never_entered".into(), ordering.never_entered.into());
        details.insert(
            "class_mass".into(),
            (0..masses.n_classes())
                .map(|c| f64::from(masses.total(c)))
                .collect::<Vec<_>>()
                .into(),
        );
        // Score: 1 − p at which the neuron enters (−1 if it never does), so
        // neurons of the same step share a score and ties are explicit.
        let mut scores = vec![-1.0f64; ordering.order.len()];
        let mut start = 0;
        for (s, &end) in ordering.cutoffs.iter().enumerate() {
            for &j in &ordering.order[start..end] {
                scores[j as usize] =
                    1.0 - s as f64 / ordering.cutoffs.len().saturating_sub(1).max(1) as f64;
            }
            start = end;
        }
        Ok(NeuronRanking::with_scores(ordering.order, scores)?
            .with_per_class(per_class)?
            .with_details(details))
    }
}

lca_plugins::export_plugin! {
    name: "lca-plugin-probe-weights",
    version: env!("CARGO_PKG_VERSION"),
    components: [descriptor(), mean_abs_descriptor()],
}

#[cfg(test)]
mod tests {
    use super::*;
    use lca_core::data::ClassVocab;
    use lca_core::data::Split;
    use lca_core::ndarray::{Array2, ArrayView2};
    use lca_core::{Dataset, SharedProbe, TrainedProbe};
    use lca_linear::{FitOptions, Init, L2Form, Penalty, Solver, fit};
    use lca_testkit::{RankerTraits, check_ranker, planted, planted_precision};
    use std::sync::Arc;

    /// A minimal linear probe around the shared solver.
    #[derive(Debug)]
    struct Linear {
        classes: ClassVocab,
        model: lca_linear::LogisticModel,
    }

    impl TrainedProbe for Linear {
        fn classes(&self) -> &ClassVocab {
            &self.classes
        }
        fn n_features(&self) -> usize {
            self.model.n_features()
        }
        fn predict_proba(&self, x: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
            self.model.predict_proba(x)
        }
        fn weights(&self) -> Option<ArrayView2<'_, f32>> {
            Some(self.model.weights.view())
        }
    }

    fn train(data: &Dataset<'_>) -> SharedProbe {
        let train = data.split(Split::Train);
        let options = FitOptions {
            penalty: Penalty {
                l1: 1e-3,
                l2: 1e-3,
                l2_form: L2Form::Frobenius,
            },
            solver: Solver::Fista(Default::default()),
            standardize: false,
            init: Init::Zeros,
        };
        let model = fit(
            train.acts.view(),
            train.labels,
            data.n_classes(),
            &options,
            &RunContext::new(0, 1),
        )
        .unwrap();
        Arc::new(Linear {
            classes: data.classes().clone(),
            model,
        })
    }

    #[test]
    fn planted_neurons_come_first() {
        let data = planted(4000, 300, 5, 2, 13);
        let input = RankInput::new(&data).with_probe(train(&data));
        let ranking = ProbeWeights {
            search_stride: 100,
            granularity: None,
        }
        .rank(&input, &RunContext::new(0, 1))
        .unwrap();
        assert_eq!(planted_precision(&ranking, &data), 1.0);
        assert_eq!(ranking.per_class().len(), 5);
        let cutoffs = ranking.details()["cutoffs"].as_array().unwrap();
        assert_eq!(cutoffs.len(), 101);
        // Step 0 holds each class's argmax: at most one neuron per class.
        assert!(cutoffs[0].as_u64().unwrap() <= 5);
    }

    #[test]
    fn passes_conformance() {
        let traits = RankerTraits {
            probe: Some(|d| train(d)),
            ..RankerTraits::default()
        };
        check_ranker(
            &ProbeWeights {
                search_stride: 100,
                granularity: None,
            },
            traits,
        )
        .unwrap();
        check_ranker(
            &ProbeWeights {
                search_stride: 10,
                granularity: Some(3),
            },
            traits,
        )
        .unwrap();
        check_ranker(&MeanAbsWeight, traits).unwrap();
    }

    #[test]
    fn mean_abs_weight_averages_the_absolute_weights() {
        let data = planted(4000, 300, 5, 2, 13);
        let probe = train(&data);
        let input = RankInput::new(&data).with_probe(probe.clone());
        let ranking = MeanAbsWeight.rank(&input, &RunContext::new(0, 1)).unwrap();
        assert_eq!(planted_precision(&ranking, &data), 1.0);
        let w = probe.weights().unwrap();
        let scores = ranking.scores().unwrap();
        for j in [0usize, 7, 299] {
            let want: f64 = w.column(j).iter().map(|&v| f64::from(v.abs())).sum::<f64>() / 5.0;
            assert!((scores[j] - want).abs() < 1e-12, "neuron {j}");
        }
        for (c, class) in ranking.per_class().iter().enumerate() {
            assert_eq!(class.scores().unwrap()[3], f64::from(w[[c, 3]].abs()));
        }
    }

    #[test]
    fn without_a_probe_the_error_says_how_to_wire_one() {
        let data = planted(50, 5, 2, 1, 1);
        let err = ProbeWeights {
            search_stride: 100,
            granularity: None,
        }
        .rank(&RankInput::new(&data), &RunContext::new(0, 1))
        .unwrap_err();
        assert!(
            err.to_string().contains("add `probe = \"<probe id>\"`"),
            "{err}"
        );
    }
}
