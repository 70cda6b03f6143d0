//! `minimal_subset`: the fewest top-ranked neurons that recover the probe.

use super::common::{
    StartFrom, majority_accuracy, probe_accuracy, refit_bytes, require_split, retrain,
    side_by_side, top,
};
use lca_core::component::{
    Component, EvalInput, Evaluator, NamedRanking, ProbeInput, TrainedProbe,
};
use lca_core::context::RunContext;
use lca_core::data::{Cell, Dataset, Evaluation, Split, Table};
use lca_core::error::Result;
use lca_core::params::Params as _;
use lca_core::registry::{ComponentInfo, ComponentKind, Descriptor, Inputs, Need, applied};

const NAME: &str = "minimal_subset";

/// The authors' grid (`run_max_features.py`): 0.1%…10% in 0.1% steps, then
/// 15, 20, …, 50, 60, 70, 80, 90%.
pub fn authors_grid() -> Vec<f64> {
    let mut grid: Vec<f64> = (1..=100).map(|i| f64::from(i) / 10.0).collect();
    grid.extend([
        15.0, 20.0, 25.0, 30.0, 35.0, 40.0, 45.0, 50.0, 60.0, 70.0, 80.0, 90.0,
    ]);
    grid
}

lca_core::params! {
    /// Parameters of `minimal_subset`.
    struct Params {
        /// allowed relative drop from the oracle, in percent
        delta: f64 = 1.0 => range(0.0..100.0),
        /// subset sizes to try, in percent of all neurons
        #[shown = "0.1…10 by 0.1, then 15…90"]
        grid: Option<Vec<f64>> = None => Rule::each("0 < x ≤ 100", |x: &f64| *x > 0.0 && *x <= 100.0).and(Rule::new(
            "increasing, not empty",
            |g: &Option<Vec<f64>>| g.as_ref().is_none_or(|g| !g.is_empty() && g.windows(2).all(|w| w[0] < w[1])),
        )),
        /// split the stopping rule is checked on
        select_on: Split = Split::Dev,
        /// split the chosen subset is reported on
        report_on: Split = Split::Test,
    }
}

pub(super) fn descriptor() -> Descriptor {
    Descriptor {
        info: ComponentInfo {
            kind: ComponentKind::Evaluator,
            name: NAME.into(),
            summary: "Smallest top-n set whose retrained probe stays within δ% of the full probe".into(),
            params: Params::docs(),
            example: "[evaluator.minimal]\ntype = \"minimal_subset\"\nrankings = [\"lca\"]\nprobes = [\"lca\"]\ndelta = 1.0\n".into(),
            inputs: Inputs { rankings: Need::Required, probes: Need::Required, min_rankings: 1, ..Inputs::default() },
        },
        build: |table| {
            let p = Params::parse(NAME, table)?;
            Ok(Component::Evaluator(Box::new(MinimalSubset {
                delta: p.delta,
                grid: p.grid.unwrap_or_else(authors_grid),
                select_on: p.select_on,
                report_on: p.report_on,
            })))
        },
        applied: applied::<Params>,
    }
}

/// The minimal-neuron-set search of the LCA papers.
///
/// ```text
/// oracle = accuracy of the probe on all neurons (select_on split)
/// for q in the grid: n = ⌊q·D/100⌋ (sizes already tried are skipped)
///     retrain a probe on the top n neurons (starting from the previous
///     size's probe, with the new neurons at zero)
///     stop at the first n with accuracy > oracle · (1 − δ/100)
/// report n and the accuracy of that probe on the report_on split
/// ```
#[derive(Clone, Debug)]
pub struct MinimalSubset {
    delta: f64,
    grid: Vec<f64>,
    select_on: Split,
    report_on: Split,
}

/// The sizes one search tried, each with its accuracy on the selection
/// split and whether it met the target; then the size found, with its
/// accuracy on the selection and report splits.
type SearchPath = (Vec<(usize, f64, bool)>, Option<(usize, f64, f64)>);

impl MinimalSubset {
    /// The search along the grid for one ranking and probe.
    fn search(
        &self,
        probe: &ProbeInput,
        ranking: &NamedRanking<'_>,
        data: &Dataset<'_>,
        target: f64,
        cx: &RunContext,
    ) -> Result<SearchPath> {
        let n = data.n_neurons();
        let mut tried: Vec<usize> = Vec::new();
        let mut path = Vec::new();
        // Each size starts from the previous size's probe: the top sets are
        // nested, so only the new neurons start at zero.
        let mut previous: Option<(Vec<usize>, Box<dyn TrainedProbe>)> = None;
        for &q in &self.grid {
            let k = ((q / 100.0 * n as f64).floor() as usize).min(n);
            if k == 0 || tried.contains(&k) {
                continue;
            }
            tried.push(k);
            let columns = top(ranking.ranking.order(), k);
            let start = previous.as_ref().map(|(seen, trained)| StartFrom {
                probe: trained.as_ref(),
                columns: Some(seen),
            });
            let (subset, trained) = retrain(probe.spec.as_ref(), data, &columns, start, cx)?;
            // One fit scores both splits: the selection split decides, the
            // report split is what the table reports.
            let acc = probe_accuracy(trained.as_ref(), &subset, self.select_on)?;
            let meets = acc > target;
            path.push((k, acc, meets));
            if meets {
                let reported = probe_accuracy(trained.as_ref(), &subset, self.report_on)?;
                return Ok((path, Some((k, acc, reported))));
            }
            previous = Some((columns, trained));
        }
        Ok((path, None))
    }
}

impl Evaluator for MinimalSubset {
    fn evaluate(&self, input: &EvalInput<'_>, cx: &RunContext) -> Result<Evaluation> {
        let data = input.data;
        require_split(data, self.select_on, NAME)?;
        require_split(data, self.report_on, NAME)?;
        let n = data.n_neurons();
        let mut e = Evaluation::default();
        let mut summary = Table::new(
            "Minimal neuron subsets",
            &[
                "ranking",
                "probe",
                &format!("oracle ({})", self.select_on),
                "target",
                "neurons",
                "% of all",
                &format!("accuracy ({})", self.select_on),
                &format!("accuracy ({})", self.report_on),
                &format!("oracle ({})", self.report_on),
            ],
        );
        let mut search = Table::new(
            "Minimal-subset search path",
            &[
                "ranking",
                "probe",
                "neurons",
                "% of all",
                "accuracy",
                "meets target",
            ],
        );
        for probe in &input.probes {
            let oracle = probe_accuracy(probe.trained.as_ref(), data, self.select_on)?;
            let oracle_report = probe_accuracy(probe.trained.as_ref(), data, self.report_on)?;
            let target = oracle * (1.0 - self.delta / 100.0);
            let baseline = majority_accuracy(data, self.select_on);
            if oracle <= baseline {
                // Any subset, even one neuron, "recovers" a probe that learned
                // nothing, which would read as a perfectly localised property.
                e.notes.push(format!(
                    "No minimal subset for probe `{}`: on {} it reaches {oracle:.4}, no better \
                     than always answering the most frequent class ({baseline:.4}), so the \
                     activations carry no information it could use and no subset is smaller \
                     than another.",
                    probe.id, self.select_on
                ));
                continue;
            }
            // Each ranking's search is sequential (each size starts from the
            // previous size's probe, and the search stops at the first size
            // that meets the target); the rankings' searches run side by
            // side.
            let largest = self
                .grid
                .iter()
                .map(|&q| ((q / 100.0 * n as f64).floor() as usize).min(n))
                .max()
                .unwrap_or(0);
            let searches = side_by_side(
                &input.rankings,
                refit_bytes(data, largest),
                cx,
                |ranking, cx| self.search(probe, ranking, data, target, cx),
            )?;
            for (ranking, (path, found)) in input.rankings.iter().zip(searches) {
                for (k, acc, meets) in path {
                    search.push(vec![
                        Cell::from(ranking.id),
                        Cell::from(probe.id.as_str()),
                        k.into(),
                        (100.0 * k as f64 / n as f64).into(),
                        acc.into(),
                        Cell::from(if meets { "yes" } else { "no" }),
                    ]);
                }
                let key = format!("{}.{}", ranking.id, probe.id);
                match found {
                    Some((k, acc, reported)) => {
                        summary.push(vec![
                            Cell::from(ranking.id),
                            Cell::from(probe.id.as_str()),
                            oracle.into(),
                            target.into(),
                            k.into(),
                            (100.0 * k as f64 / n as f64).into(),
                            acc.into(),
                            reported.into(),
                            oracle_report.into(),
                        ]);
                        e.metrics.insert(format!("neurons.{key}"), k as f64);
                        e.metrics
                            .insert(format!("percent.{key}"), 100.0 * k as f64 / n as f64);
                        e.metrics.insert(format!("accuracy.{key}"), reported);
                    }
                    None => {
                        summary.push(vec![
                            Cell::from(ranking.id),
                            Cell::from(probe.id.as_str()),
                            oracle.into(),
                            target.into(),
                            Cell::from("not reached"),
                            Cell::Empty,
                            Cell::Empty,
                            Cell::Empty,
                            oracle_report.into(),
                        ]);
                        e.notes.push(format!(
                            "`{}` with probe `{}`: no size in the grid reached {:.4}; the minimal set is all {n} neurons.",
                            ranking.id, probe.id, target
                        ));
                    }
                }
            }
        }
        e.tables.push(summary);
        e.tables.push(search);
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::centroid_probe::CentroidProbe;
    use crate::{SyntheticParams, generate};
    use lca_core::component::{NamedRanking, Probe, ProbeInput, WarmStart};
    use lca_core::data::{Dataset, NeuronRanking};
    use ndarray::{Array2, s};
    use std::sync::{Arc, Mutex};

    /// Centroids that record each start they are given and each result.
    #[derive(Debug, Default)]
    struct Recording {
        fits: Mutex<Vec<(Option<WarmStart>, Array2<f32>)>>,
    }

    impl Recording {
        fn record(
            &self,
            data: &Dataset<'_>,
            start: Option<&WarmStart>,
            cx: &RunContext,
        ) -> Result<Box<dyn TrainedProbe>> {
            let trained = CentroidProbe.fit(data, cx)?;
            let weights = trained.weights().expect("linear").to_owned();
            self.fits.lock().unwrap().push((start.cloned(), weights));
            Ok(trained)
        }
    }

    impl Probe for Recording {
        fn fit(&self, data: &Dataset<'_>, cx: &RunContext) -> Result<Box<dyn TrainedProbe>> {
            self.record(data, None, cx)
        }
        fn fit_from(
            &self,
            data: &Dataset<'_>,
            start: &WarmStart,
            cx: &RunContext,
        ) -> Result<Box<dyn TrainedProbe>> {
            self.record(data, Some(start), cx)
        }
    }

    #[test]
    fn each_size_starts_from_the_previous_sizes_probe() {
        let data = generate(
            &SyntheticParams {
                tokens: 600,
                neurons: 40,
                classes: 3,
                per_class: 2,
                ..Default::default()
            },
            2,
            "t",
        )
        .unwrap();
        // Uninformative neurons first, so that no small set reaches the
        // oracle and the search walks the whole grid.
        let informative = data.truth().unwrap().informative.clone();
        let mut order: Vec<u32> = (0..40u32).filter(|j| !informative.contains(j)).collect();
        order.extend(&informative);
        let ranking = NeuronRanking::from_order(order).unwrap();
        let recording = Arc::new(Recording::default());
        let trained = Arc::from(CentroidProbe.fit(&data, &RunContext::new(0, 1)).unwrap());
        let input = EvalInput::new(&data)
            .with_rankings(vec![NamedRanking {
                id: "r",
                ranking: &ranking,
            }])
            .with_probes(vec![ProbeInput {
                id: "p".into(),
                spec: recording.clone(),
                trained,
            }]);
        let search = MinimalSubset {
            delta: 0.0,
            grid: vec![5.0, 10.0, 25.0, 50.0],
            select_on: Split::Test,
            report_on: Split::Test,
        };
        search.evaluate(&input, &RunContext::new(0, 1)).unwrap();
        let fits = recording.fits.lock().unwrap();
        let sizes: Vec<usize> = fits.iter().map(|(_, w)| w.ncols()).collect();
        assert!(sizes.len() >= 2, "sizes tried: {sizes:?}");
        assert!(fits[0].0.is_none(), "the first size starts cold");
        for pair in fits.windows(2) {
            let (previous, (start, weights)) = (&pair[0].1, &pair[1]);
            let start = start.as_ref().expect("later sizes start warm");
            let k = previous.ncols();
            assert_eq!(start.weights.ncols(), weights.ncols());
            assert_eq!(start.weights.slice(s![.., ..k]), previous.view());
            assert!(start.weights.slice(s![.., k..]).iter().all(|&v| v == 0.0));
        }
    }

    #[test]
    fn the_authors_grid_has_112_sizes() {
        let g = authors_grid();
        assert_eq!(g.len(), 112);
        assert_eq!(g[0], 0.1);
        assert_eq!(g[99], 10.0);
        assert_eq!(*g.last().unwrap(), 90.0);
        assert!(g.windows(2).all(|w| w[0] < w[1]));
    }
}
