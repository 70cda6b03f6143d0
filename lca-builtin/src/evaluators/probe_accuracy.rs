//! `probe_accuracy`: how well each wired probe classifies, overall and per class.

use lca_core::component::{Component, EvalInput, Evaluator};
use lca_core::context::RunContext;
use lca_core::data::{Cell, Evaluation, Split, Table, count_classes};
use lca_core::error::Result;
use lca_core::params::Params as _;
use lca_core::registry::{ComponentInfo, ComponentKind, Descriptor, Inputs, Need, applied};

const NAME: &str = "probe_accuracy";

lca_core::params! {
    /// Parameters of `probe_accuracy`.
    struct Params {
        /// splits to score; per-class scores are shown for the last one
        /// (empty splits are skipped)
        splits: Vec<Split> = vec![Split::Dev, Split::Test] => non_empty(),
    }
}

pub(super) fn descriptor() -> Descriptor {
    Descriptor {
        info: ComponentInfo {
            kind: ComponentKind::Evaluator,
            name: NAME.into(),
            summary: "Accuracy, macro/micro F1 and per-class scores of probes on dev and test"
                .into(),
            params: Params::docs(),
            example: "[evaluator.accuracy]\ntype = \"probe_accuracy\"\nprobes = [\"lca\"]\n".into(),
            inputs: Inputs {
                probes: Need::Required,
                ..Inputs::default()
            },
        },
        build: |table| {
            let p = Params::parse(NAME, table)?;
            Ok(Component::Evaluator(Box::new(ProbeAccuracy {
                splits: p.splits,
            })))
        },
        applied: applied::<Params>,
    }
}

/// Classification quality of probes.
///
/// ```text
/// accuracy      = correct / tokens                 (= micro-F1 for one label per token)
/// recall_c      = correct_c / support_c            (NeuroX's per-class accuracy)
/// precision_c   = correct_c / predicted_c
/// macro-F1      = mean over classes seen in labels or predictions of 2PR/(P+R)
/// ```
///
/// Tokens whose class never occurs in the training split cannot be
/// predicted correctly by a probe that learned from it; they are counted as
/// "unseen in training" (NeuroX maps them to an unknown class).
#[derive(Clone, Debug)]
pub struct ProbeAccuracy {
    splits: Vec<Split>,
}

/// Per-class counts of one split.
struct Confusion {
    support: Vec<usize>,
    predicted: Vec<usize>,
    correct: Vec<usize>,
}

impl Confusion {
    fn new(predicted: &[u32], labels: &[u32], n_classes: usize) -> Self {
        let mut c = Confusion {
            support: vec![0; n_classes],
            predicted: vec![0; n_classes],
            correct: vec![0; n_classes],
        };
        for (&p, &y) in predicted.iter().zip(labels) {
            c.support[y as usize] += 1;
            c.predicted[p as usize] += 1;
            if p == y {
                c.correct[y as usize] += 1;
            }
        }
        c
    }

    fn recall(&self, k: usize) -> Option<f64> {
        (self.support[k] > 0).then(|| self.correct[k] as f64 / self.support[k] as f64)
    }

    fn precision(&self, k: usize) -> Option<f64> {
        (self.predicted[k] > 0).then(|| self.correct[k] as f64 / self.predicted[k] as f64)
    }

    fn f1(&self, k: usize) -> Option<f64> {
        if self.support[k] == 0 && self.predicted[k] == 0 {
            return None;
        }
        let (p, r) = (
            self.precision(k).unwrap_or(0.0),
            self.recall(k).unwrap_or(0.0),
        );
        Some(if p + r > 0.0 {
            2.0 * p * r / (p + r)
        } else {
            0.0
        })
    }

    fn macro_f1(&self) -> f64 {
        let scores: Vec<f64> = (0..self.support.len()).filter_map(|k| self.f1(k)).collect();
        if scores.is_empty() {
            0.0
        } else {
            scores.iter().sum::<f64>() / scores.len() as f64
        }
    }
}

fn opt(v: Option<f64>) -> Cell {
    v.map_or(Cell::Empty, Cell::Float)
}

impl Evaluator for ProbeAccuracy {
    fn evaluate(&self, input: &EvalInput<'_>, _cx: &RunContext) -> Result<Evaluation> {
        let data = input.data;
        let classes = data.classes();
        let train_counts = count_classes(data.split(Split::Train).labels, classes.len());
        let mut e = Evaluation::default();
        let mut overall = Table::new(
            "Probe accuracy",
            &[
                "probe",
                "split",
                "tokens",
                "accuracy",
                "macro-F1",
                "micro-F1",
                "tokens of classes unseen in training",
            ],
        );
        for probe in &input.probes {
            let mut last: Option<(Split, Confusion)> = None;
            for &split in &self.splits {
                let part = data.split(split);
                if part.labels.is_empty() {
                    continue;
                }
                let predicted = probe.trained.predict_blocks(&part.acts)?;
                let confusion = Confusion::new(&predicted, part.labels, classes.len());
                let correct: usize = confusion.correct.iter().sum();
                let acc = correct as f64 / part.labels.len() as f64;
                let unseen: usize = (0..classes.len())
                    .filter(|&k| train_counts[k] == 0)
                    .map(|k| confusion.support[k])
                    .sum();
                let macro_f1 = confusion.macro_f1();
                overall.push(vec![
                    Cell::from(probe.id.as_str()),
                    Cell::from(split.to_string()),
                    part.labels.len().into(),
                    acc.into(),
                    macro_f1.into(),
                    acc.into(),
                    unseen.into(),
                ]);
                e.metrics
                    .insert(format!("accuracy.{}.{split}", probe.id), acc);
                e.metrics
                    .insert(format!("macro_f1.{}.{split}", probe.id), macro_f1);
                if unseen > 0 {
                    e.notes.push(format!(
                        "{unseen} {split} tokens of probe `{}` belong to classes absent from the training split; they count as errors.",
                        probe.id
                    ));
                }
                last = Some((split, confusion));
            }
            if let Some((split, confusion)) = last {
                let mut per_class = Table::new(
                    format!("Per-class scores of `{}` on {split}", probe.id),
                    &[
                        "class",
                        "train tokens",
                        "tokens",
                        "accuracy (recall)",
                        "precision",
                        "F1",
                    ],
                );
                for (k, name) in classes.names().iter().enumerate() {
                    per_class.push(vec![
                        Cell::from(name.as_str()),
                        train_counts[k].into(),
                        confusion.support[k].into(),
                        opt(confusion.recall(k)),
                        opt(confusion.precision(k)),
                        opt(confusion.f1(k)),
                    ]);
                }
                e.tables.push(per_class);
            }
        }
        e.tables.insert(0, overall);
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_confusion() {
        // labels  0 0 1 1 2 ; predicted 0 1 1 1 0
        let c = Confusion::new(&[0, 1, 1, 1, 0], &[0, 0, 1, 1, 2], 4);
        assert_eq!(c.recall(0), Some(0.5));
        assert_eq!(c.precision(0), Some(0.5));
        assert_eq!(c.recall(1), Some(1.0));
        assert_eq!(c.precision(1), Some(2.0 / 3.0));
        assert_eq!(c.f1(2), Some(0.0));
        assert_eq!(c.f1(3), None);
        // F1: class 0 = 0.5, class 1 = 0.8, class 2 = 0 → macro 0.4333.
        assert!((c.macro_f1() - (0.5 + 0.8 + 0.0) / 3.0).abs() < 1e-12);
    }
}
