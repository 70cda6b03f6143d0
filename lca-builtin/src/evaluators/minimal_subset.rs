//! `minimal_subset`: the fewest top-ranked neurons that recover the probe.

use super::common::{majority_accuracy, probe_accuracy, require_split, retrain_accuracies, top};
use lca_core::component::{Component, EvalInput, Evaluator};
use lca_core::context::RunContext;
use lca_core::data::{Cell, Evaluation, Split, Table};
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
///     retrain a fresh probe on the top n neurons
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
            for ranking in &input.rankings {
                let mut tried = Vec::new();
                let mut found = None;
                for &q in &self.grid {
                    let k = ((q / 100.0 * n as f64).floor() as usize).min(n);
                    if k == 0 || tried.contains(&k) {
                        continue;
                    }
                    tried.push(k);
                    let columns = top(ranking.ranking.order(), k);
                    // One fit scores both splits: the selection split decides,
                    // the report split is what the table reports.
                    let scores = retrain_accuracies(
                        probe.spec.as_ref(),
                        data,
                        &columns,
                        &[self.select_on, self.report_on],
                        cx,
                    )?;
                    let (acc, reported) = (scores[0], scores[1]);
                    let meets = acc > target;
                    search.push(vec![
                        Cell::from(ranking.id),
                        Cell::from(probe.id.as_str()),
                        k.into(),
                        (100.0 * k as f64 / n as f64).into(),
                        acc.into(),
                        Cell::from(if meets { "yes" } else { "no" }),
                    ]);
                    if meets {
                        found = Some((k, acc, reported));
                        break;
                    }
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
