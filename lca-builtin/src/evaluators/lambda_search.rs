//! `lambda_search`: choose the regularisation pair by the ablation gaps.

use super::common::{
    bottom, count_for_percent, mean_sd, probe_accuracy, random_columns, require_split, top,
    zeroed_accuracy,
};
use crate::select::ClassMasses;
use lca_core::component::{Component, EvalInput, Evaluator, TrainedProbe, WarmStart};
use lca_core::context::RunContext;
use lca_core::data::{Cell, Evaluation, Split, Table};
use lca_core::error::{Error, Result};
use lca_core::params::Params as _;
use lca_core::registry::{ComponentInfo, ComponentKind, Descriptor, Inputs, Need, applied};

const NAME: &str = "lambda_search";

lca_core::params! {
    /// Parameters of `lambda_search`.
    struct Params {
        /// values of λ1 to try
        l1: Vec<f64> = vec![0.0, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1] => non_empty().and(range(0.0..)),
        /// values of λ2 to try
        l2: Vec<f64> = vec![0.0, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1] => non_empty().and(range(0.0..)),
        /// share of neurons kept in the zero-out masks, in percent
        percent: f64 = 20.0 => percent(),
        /// weight of the top − random gap
        alpha: f64 = 1.0 => range(0.0..),
        /// weight of the random − bottom gap
        beta: f64 = 1.0 => range(0.0..),
        /// eligible pairs lose at most this many accuracy points against
        /// λ1 = λ2 = 0
        max_accuracy_drop: f64 = 1.0 => range(0.0..),
        /// random masks averaged per pair
        random_repeats: usize = 3 => range(1..=100),
        /// split the accuracies are measured on
        split: Split = Split::Dev,
    }
}

pub(super) fn descriptor() -> Descriptor {
    Descriptor {
        info: ComponentInfo {
            kind: ComponentKind::Evaluator,
            name: NAME.into(),
            summary: "Grid search over (λ1, λ2) scored by the top/random/bottom zero-out gaps".into(),
            params: Params::docs(),
            example: "[evaluator.lambdas]\ntype = \"lambda_search\"\nprobes = [\"lca\"]\nl1 = [0, 1e-4, 1e-3]\nl2 = [0, 1e-4, 1e-3]\n".into(),
            inputs: Inputs { probes: Need::Required, ..Inputs::default() },
        },
        build: |table| {
            let p = Params::parse(NAME, table)?;
            let split = p.split;
            Ok(Component::Evaluator(Box::new(LambdaSearch { p, split })))
        },
        applied: applied::<Params>,
    }
}

/// The ablation-driven λ search of the LCA papers.
///
/// ```text
/// for each (λ1, λ2), strongest first: train the probe (from the previous
///   pair's probe); rank neurons by LCA (stride 100);
///   A_t, A_r, A_b = accuracy keeping only the top / random / bottom N% (zero-out)
///   score = α (A_t − A_r) + β (A_r − A_b)
/// choose the highest score among pairs whose full accuracy is within
/// `max_accuracy_drop` points of the unregularised probe
/// ```
#[derive(Clone, Debug)]
pub struct LambdaSearch {
    p: Params,
    split: Split,
}

struct Row {
    l1: f64,
    l2: f64,
    accuracy: f64,
    top: f64,
    random: f64,
    bottom: f64,
    score: f64,
}

impl Evaluator for LambdaSearch {
    fn evaluate(&self, input: &EvalInput<'_>, cx: &RunContext) -> Result<Evaluation> {
        let data = input.data;
        require_split(data, self.split, NAME)?;
        let n = data.n_neurons();
        let k = count_for_percent(self.p.percent, n);
        let mut e = Evaluation::default();
        for probe in &input.probes {
            let mut baseline = None;
            let all_neurons: Vec<Option<usize>> = (0..n).map(Some).collect();
            let mut pairs: Vec<(f64, f64)> = self
                .p
                .l1
                .iter()
                .flat_map(|&a| self.p.l2.iter().map(move |&b| (a, b)))
                .collect();
            if !pairs.contains(&(0.0, 0.0)) {
                pairs.insert(0, (0.0, 0.0));
            }
            // Fitted from the strongest penalty down, each pair starting
            // from the previous one's probe (a regularisation path: the
            // sparse solutions come first and grow). Reported in grid order.
            let mut fit_order: Vec<usize> = (0..pairs.len()).collect();
            fit_order.sort_by(|&a, &b| {
                let (pa, pb) = (pairs[a], pairs[b]);
                pb.0.total_cmp(&pa.0).then(pb.1.total_cmp(&pa.1))
            });
            let mut fitted: Vec<Option<Row>> = (0..pairs.len()).map(|_| None).collect();
            let mut previous: Option<Box<dyn TrainedProbe>> = None;
            for index in fit_order {
                let (l1, l2) = pairs[index];
                let mut changes = toml::Table::new();
                changes.insert("l1".into(), l1.into());
                changes.insert("l2".into(), l2.into());
                let spec = probe.spec.reconfigure(&changes).map_err(|err| {
                    Error::input(format!(
                        "probe `{}` cannot be searched over both l1 and l2 ({err}); wire an `elastic_net` probe",
                        probe.id
                    ))
                })?;
                cx.check_cancelled()?;
                let trained = match previous
                    .as_ref()
                    .and_then(|p| WarmStart::from_probe(p.as_ref(), &all_neurons))
                {
                    Some(start) => spec.fit_from(data, &start, cx)?,
                    None => spec.fit(data, cx)?,
                };
                let accuracy = probe_accuracy(trained.as_ref(), data, self.split)?;
                let weights = trained.weights().ok_or_else(|| {
                    Error::input(format!(
                        "probe `{}` has no weights to rank neurons with",
                        probe.id
                    ))
                })?;
                let order = ClassMasses::new(weights)?.ordering(100)?.order;
                let top_acc = zeroed_accuracy(trained.as_ref(), data, &top(&order, k), self.split)?;
                let bottom_acc =
                    zeroed_accuracy(trained.as_ref(), data, &bottom(&order, k), self.split)?;
                let mut random = Vec::new();
                for r in 0..self.p.random_repeats {
                    let mut rng = cx.rng_for(&format!("{l1}/{l2}/{r}"));
                    random.push(zeroed_accuracy(
                        trained.as_ref(),
                        data,
                        &random_columns(&mut rng, n, k),
                        self.split,
                    )?);
                }
                let (random_acc, _) = mean_sd(&random);
                let score =
                    self.p.alpha * (top_acc - random_acc) + self.p.beta * (random_acc - bottom_acc);
                if l1 == 0.0 && l2 == 0.0 {
                    baseline = Some(accuracy);
                }
                fitted[index] = Some(Row {
                    l1,
                    l2,
                    accuracy,
                    top: top_acc,
                    random: random_acc,
                    bottom: bottom_acc,
                    score,
                });
                previous = Some(trained);
            }
            let rows: Vec<Row> = fitted.into_iter().flatten().collect();
            let baseline = baseline.expect("(0, 0) is always tried");
            let eligible = |r: &Row| (baseline - r.accuracy) * 100.0 <= self.p.max_accuracy_drop;
            let best = rows
                .iter()
                .filter(|r| eligible(r))
                .max_by(|a, b| {
                    a.score
                        .total_cmp(&b.score)
                        .then(b.l1.total_cmp(&a.l1))
                        .then(b.l2.total_cmp(&a.l2))
                })
                .expect("the unregularised pair is always eligible");
            let mut table = Table::new(
                format!(
                    "λ search for probe `{}` on {} (keep {}%)",
                    probe.id, self.split, self.p.percent
                ),
                &[
                    "l1", "l2", "accuracy", "top", "random", "bottom", "score", "eligible",
                    "chosen",
                ],
            );
            for r in &rows {
                let chosen = r.l1 == best.l1 && r.l2 == best.l2;
                table.push(vec![
                    r.l1.into(),
                    r.l2.into(),
                    r.accuracy.into(),
                    r.top.into(),
                    r.random.into(),
                    r.bottom.into(),
                    r.score.into(),
                    Cell::from(if eligible(r) { "yes" } else { "no" }),
                    Cell::from(if chosen { "◀" } else { "" }),
                ]);
            }
            e.tables.push(table);
            e.metrics.insert(format!("l1.{}", probe.id), best.l1);
            e.metrics.insert(format!("l2.{}", probe.id), best.l2);
            e.metrics.insert(format!("score.{}", probe.id), best.score);
            e.notes.push(format!(
                "Probe `{}`: chosen l1 = {}, l2 = {} (score {:.4}, accuracy {:.4} against {:.4} unregularised).",
                probe.id, best.l1, best.l2, best.score, best.accuracy, baseline
            ));
        }
        Ok(e)
    }
}
