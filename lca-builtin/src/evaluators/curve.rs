//! `accuracy_curve`: accuracy against the number of top neurons kept, one
//! curve per ranking, so that methods can be compared on one plot.
//!
//! ```text
//! for each k in the grid (clipped to the neuron count):
//!   retrain:  a fresh probe trained on the top k neurons of the ranking
//!   zero_out: the trained probe with every other neuron set to 0
//! random: the same for k random neurons (mean of `random_repeats` draws)
//! ```

use super::common::{
    KeepMode, MeasuredOn, mean_sd, probe_accuracy, random_columns, refit_bytes, require_split,
    side_by_side, top,
};
use lca_core::component::{Component, EvalInput, Evaluator};
use lca_core::context::RunContext;
use lca_core::data::{Cell, Evaluation, Figure, Plot, Series, Split, Table};
use lca_core::error::Result;
use lca_core::params::Params as _;
use lca_core::registry::{ComponentInfo, ComponentKind, Descriptor, Inputs, Need, applied};

const NAME: &str = "accuracy_curve";

lca_core::params! {
    /// Parameters of `accuracy_curve`.
    struct Params {
        /// numbers of top neurons kept (sizes above the neuron count are
        /// clipped)
        neurons: Vec<usize> = vec![5, 10, 20, 50, 100, 200, 500, 1000] => non_empty().and(range(1..)),
        /// retrain: a fresh probe on the kept neurons; zero_out: the trained
        /// probe with the rest set to 0
        modes: Vec<KeepMode> = vec![KeepMode::Retrain, KeepMode::ZeroOut] => non_empty(),
        /// random subsets per size for the random baseline curve (0: no
        /// baseline)
        random_repeats: usize = 3 => range(0..=100),
        #[flatten]
        measured: MeasuredOn,
    }
}

pub(super) fn descriptor() -> Descriptor {
    Descriptor {
        info: ComponentInfo {
            kind: ComponentKind::Evaluator,
            name: NAME.into(),
            summary: "Accuracy against the number of top neurons, per ranking (retrain and zero-out curves)".into(),
            params: Params::docs(),
            example: "[evaluator.curves]\ntype = \"accuracy_curve\"\nrankings = [\"lca\", \"probeless\"]\nprobes = [\"lca\"]\nneurons = [10, 50, 100]\n".into(),
            inputs: Inputs { rankings: Need::Required, probes: Need::Required, min_rankings: 1, ..Inputs::default() },
        },
        build: |table| {
            let p = Params::parse(NAME, table)?;
            Ok(Component::Evaluator(Box::new(AccuracyCurve {
                neurons: p.neurons,
                modes: p.modes,
                repeats: p.random_repeats,
                split: p.measured.split,
            })))
        },
        applied: applied::<Params>,
    }
}

/// Accuracy against the number of top neurons.
#[derive(Clone, Debug)]
pub(crate) struct AccuracyCurve {
    neurons: Vec<usize>,
    modes: Vec<KeepMode>,
    repeats: usize,
    split: Split,
}

impl AccuracyCurve {
    /// The grid clipped to `n`, sorted, without repeats.
    fn grid(&self, n: usize) -> Vec<usize> {
        let mut ks: Vec<usize> = self.neurons.iter().map(|&k| k.min(n)).collect();
        ks.sort_unstable();
        ks.dedup();
        ks
    }
}

impl Evaluator for AccuracyCurve {
    fn evaluate(&self, input: &EvalInput<'_>, cx: &RunContext) -> Result<Evaluation> {
        let data = input.data;
        require_split(data, self.split, NAME)?;
        let n = data.n_neurons();
        let ks = self.grid(n);
        let mut e = Evaluation::default();
        let mut table = Table::new(
            format!(
                "Accuracy on {} against the number of top neurons",
                self.split
            ),
            &["probe", "mode", "ranking", "neurons", "accuracy"],
        );
        for probe in &input.probes {
            let all = probe_accuracy(probe.trained.as_ref(), data, self.split)?;
            e.metrics.insert(format!("accuracy_all.{}", probe.id), all);
            for &mode in &self.modes {
                // Every point of every curve, scored side by side: the top
                // neurons of each ranking, then the random draws.
                let mut subsets: Vec<Vec<usize>> = Vec::new();
                for ranking in &input.rankings {
                    subsets.extend(ks.iter().map(|&k| top(ranking.ranking.order(), k)));
                }
                for &k in &ks {
                    for r in 0..self.repeats {
                        let mut rng = cx.rng_for(&format!("random/{k}/{r}"));
                        subsets.push(random_columns(&mut rng, n, k));
                    }
                }
                let largest = ks.iter().copied().max().unwrap_or(0);
                let bytes = match mode {
                    KeepMode::Retrain => refit_bytes(data, largest),
                    KeepMode::ZeroOut => 0,
                };
                let scores = side_by_side(&subsets, bytes, cx, |cols, cx| {
                    mode.score(probe, data, cols, self.split, cx)
                })?;
                let mut scores = scores.into_iter();
                let mut series = Vec::new();
                for ranking in &input.rankings {
                    let mut points = Vec::with_capacity(ks.len());
                    for (&k, acc) in ks.iter().zip(scores.by_ref()) {
                        table.push(vec![
                            Cell::from(probe.id.as_str()),
                            Cell::from(mode.as_str()),
                            Cell::from(ranking.id),
                            k.into(),
                            acc.into(),
                        ]);
                        e.metrics.insert(
                            format!("{}.{}.{}.{k}", mode.as_str(), ranking.id, probe.id),
                            acc,
                        );
                        points.push((k as f64, acc));
                    }
                    series.push(Series {
                        name: ranking.id.to_string(),
                        points,
                    });
                }
                if self.repeats > 0 {
                    let mut points = Vec::with_capacity(ks.len());
                    for &k in &ks {
                        let draws: Vec<f64> = scores.by_ref().take(self.repeats).collect();
                        let (mean, sd) = mean_sd(&draws);
                        table.push(vec![
                            Cell::from(probe.id.as_str()),
                            Cell::from(mode.as_str()),
                            Cell::from(format!("random (mean of {}, sd {sd:.4})", self.repeats)),
                            k.into(),
                            mean.into(),
                        ]);
                        e.metrics
                            .insert(format!("{}.random.{}.{k}", mode.as_str(), probe.id), mean);
                        points.push((k as f64, mean));
                    }
                    series.push(Series {
                        name: "random".into(),
                        points,
                    });
                }
                series.push(Series {
                    name: "all neurons".into(),
                    points: vec![(ks[0] as f64, all), (n as f64, all)],
                });
                e.figures.push(Figure {
                    title: format!(
                        "Accuracy on {} against top neurons kept ({}, probe {})",
                        self.split,
                        mode.as_str().replace('_', "-"),
                        probe.id
                    ),
                    section: "accuracy".into(),
                    plot: Plot::Lines {
                        x_label: "neurons kept".into(),
                        y_label: "accuracy".into(),
                        x_log: true,
                        series,
                    },
                });
            }
        }
        e.tables.push(table);
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::centroid_probe::centroid_probe;
    use crate::{SyntheticParams, generate};
    use lca_core::component::{NamedRanking, ProbeInput};
    use lca_core::data::NeuronRanking;

    #[test]
    fn planted_top_neurons_beat_random_and_curves_are_drawn() {
        let data = generate(
            &SyntheticParams {
                tokens: 1500,
                neurons: 60,
                classes: 3,
                per_class: 2,
                split: lca_core::data::SplitFractions {
                    test: 0.3,
                    ..Default::default()
                },
                ..Default::default()
            },
            4,
            "t",
        )
        .unwrap();
        let truth: Vec<u32> = data.truth().unwrap().informative.clone();
        let mut order = truth.clone();
        order.extend((0..60u32).filter(|j| !truth.contains(j)));
        let good = NeuronRanking::from_order(order).unwrap();
        let (spec, trained) = centroid_probe(&data);
        let input = EvalInput::new(&data)
            .with_rankings(vec![NamedRanking {
                id: "good",
                ranking: &good,
            }])
            .with_probes(vec![ProbeInput {
                id: "p".into(),
                spec,
                trained,
            }]);
        let curve = AccuracyCurve {
            neurons: vec![6, 1000, 3, 6],
            modes: vec![KeepMode::Retrain, KeepMode::ZeroOut],
            repeats: 2,
            split: Split::Test,
        };
        let e = curve.evaluate(&input, &RunContext::new(1, 1)).unwrap();
        e.validate().unwrap();
        // Sizes: clipped, sorted, deduplicated.
        assert_eq!(curve.grid(60), vec![3, 6, 60]);
        assert!(e.metrics["retrain.good.p.6"] > e.metrics["retrain.random.p.6"] + 0.2);
        assert_eq!(e.figures.len(), 2);
        match &e.figures[0].plot {
            Plot::Lines { series, .. } => {
                let names: Vec<&str> = series.iter().map(|s| s.name.as_str()).collect();
                assert_eq!(names, ["good", "random", "all neurons"]);
                assert_eq!(series[0].points.len(), 3);
            }
            other => panic!("{other:?}"),
        }
    }
}
