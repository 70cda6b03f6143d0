//! `ablation`: keep only the top, a random or the bottom N% of neurons.

use super::common::{
    KeepMode, MeasuredOn, bottom, count_for_percent, mean_sd, percents, probe_accuracy,
    random_columns, require_split, top,
};
use lca_core::component::{Component, EvalInput, Evaluator};
use lca_core::context::RunContext;
use lca_core::data::{Cell, Evaluation, Split, Table};
use lca_core::error::Result;
use lca_core::params::Params as _;
use lca_core::registry::{ComponentInfo, ComponentKind, Descriptor, Inputs, Need, applied};

const NAME: &str = "ablation";

lca_core::params! {
    /// Parameters of `ablation`.
    struct Params {
        /// share of neurons kept, in percent
        percent: Vec<f64> = vec![10.0, 15.0, 20.0] => percents(),
        /// zero_out: the trained probe with the other neurons set to 0;
        /// retrain: a fresh probe on the kept neurons
        modes: Vec<KeepMode> = vec![KeepMode::ZeroOut, KeepMode::Retrain] => non_empty(),
        /// random subsets drawn per size (mean and spread reported)
        random_repeats: usize = 5 => range(1..=100),
        #[flatten]
        measured: MeasuredOn,
    }
}

pub(super) fn descriptor() -> Descriptor {
    Descriptor {
        info: ComponentInfo {
            kind: ComponentKind::Evaluator,
            name: NAME.into(),
            summary: "Accuracy keeping only the top, random or bottom N% of neurons (zero-out and retrain)".into(),
            params: Params::docs(),
            example: "[evaluator.ablation]\ntype = \"ablation\"\nrankings = [\"lca\"]\nprobes = [\"lca\"]\npercent = [10, 15, 20]\n".into(),
            inputs: Inputs { rankings: Need::Required, probes: Need::Required, min_rankings: 1, ..Inputs::default() },
        },
        build: |table| {
            let p = Params::parse(NAME, table)?;
            Ok(Component::Evaluator(Box::new(Ablation {
                percent: p.percent,
                modes: p.modes,
                repeats: p.random_repeats,
                split: p.measured.split,
            })))
        },
        applied: applied::<Params>,
    }
}

/// Keep-top/random/bottom ablation, as in the LCA papers.
///
/// ```text
/// keep  = top N% of the ranking | N% drawn at random (repeated) | bottom N%
/// zero_out: accuracy of the trained probe with every other neuron set to 0
/// retrain:  accuracy of a new probe trained on the kept neurons only
/// ```
#[derive(Clone, Debug)]
pub struct Ablation {
    percent: Vec<f64>,
    modes: Vec<KeepMode>,
    repeats: usize,
    split: Split,
}

impl Evaluator for Ablation {
    fn evaluate(&self, input: &EvalInput<'_>, cx: &RunContext) -> Result<Evaluation> {
        let data = input.data;
        require_split(data, self.split, NAME)?;
        let n = data.n_neurons();
        let mut e = Evaluation::default();
        let mut table = Table::new(
            format!("Ablation on {}", self.split),
            &[
                "ranking",
                "probe",
                "mode",
                "kept %",
                "neurons",
                "top",
                "random (mean)",
                "random (sd)",
                "bottom",
            ],
        );
        for probe in &input.probes {
            let all = probe_accuracy(probe.trained.as_ref(), data, self.split)?;
            e.metrics.insert(format!("accuracy_all.{}", probe.id), all);
            for ranking in &input.rankings {
                table.push(vec![
                    Cell::from(ranking.id),
                    Cell::from(probe.id.as_str()),
                    Cell::from("all neurons"),
                    100.0.into(),
                    n.into(),
                    all.into(),
                    all.into(),
                    0.0.into(),
                    all.into(),
                ]);
                for &mode in &self.modes {
                    for &pct in &self.percent {
                        let k = count_for_percent(pct, n);
                        let score = |cols: &[usize]| mode.score(probe, data, cols, self.split, cx);
                        let top_acc = score(&top(ranking.ranking.order(), k))?;
                        let bottom_acc = score(&bottom(ranking.ranking.order(), k))?;
                        let mut random = Vec::with_capacity(self.repeats);
                        for r in 0..self.repeats {
                            let mut rng = cx.rng_for(&format!("{}/{pct}/{r}", ranking.id));
                            random.push(score(&random_columns(&mut rng, n, k))?);
                        }
                        let (mean, sd) = mean_sd(&random);
                        table.push(vec![
                            Cell::from(ranking.id),
                            Cell::from(probe.id.as_str()),
                            Cell::from(mode.as_str()),
                            pct.into(),
                            k.into(),
                            top_acc.into(),
                            mean.into(),
                            sd.into(),
                            bottom_acc.into(),
                        ]);
                        let key = format!("{}.{}.{}.{pct}", mode.as_str(), ranking.id, probe.id);
                        e.metrics.insert(format!("top.{key}"), top_acc);
                        e.metrics.insert(format!("random.{key}"), mean);
                        e.metrics.insert(format!("bottom.{key}"), bottom_acc);
                    }
                }
            }
        }
        e.tables.push(table);
        e.notes.push(format!(
            "Random subsets: {} draws per size, seeded; the spread is the sample standard deviation.",
            self.repeats
        ));
        Ok(e)
    }
}
