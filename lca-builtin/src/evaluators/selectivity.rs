//! `selectivity`: task accuracy minus control-task accuracy (Hewitt & Liang).

use std::collections::HashMap;

use super::common::{
    MeasuredOn, StartFrom, count_for_percent, probe_accuracy, refit_bytes, require_split,
    retrain_accuracy, side_by_side, top,
};
use lca_core::component::{Component, EvalInput, Evaluator};
use lca_core::context::RunContext;
use lca_core::data::{Cell, Dataset, Evaluation, Labels, Split, Table, count_classes};
use lca_core::error::{Error, Result};
use lca_core::params::Params as _;
use lca_core::registry::{ComponentInfo, ComponentKind, Descriptor, Inputs, Need, applied};
use lca_core::rng::Rng;

const NAME: &str = "selectivity";

/// Where control labels are drawn from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlDistribution {
    /// The empirical label distribution of the training split.
    SameAsTask,
    /// Uniform over the task's classes.
    Uniform,
}

/// Control-task labels (Hewitt & Liang 2019): every word type gets one label,
/// drawn once, at the type's first occurrence in row order (train, then dev,
/// then test), from `distribution`. Returns a class id per row.
///
/// # Errors
/// When the dataset has no words.
pub fn control_labels(
    data: &Dataset<'_>,
    distribution: ControlDistribution,
    case_sensitive: bool,
    rng: &mut Rng,
) -> Result<Vec<u32>> {
    let tokens = data.tokens().ok_or_else(|| {
        Error::input(format!(
            "control tasks need the words of each token, but source `{}` has none; give the source a words file",
            data.name()
        ))
    })?;
    let n_classes = data.n_classes();
    let weights: Vec<f64> = match distribution {
        ControlDistribution::SameAsTask => {
            count_classes(data.split(Split::Train).labels, n_classes)
                .iter()
                .map(|&c| c as f64)
                .collect()
        }
        ControlDistribution::Uniform => vec![1.0; n_classes],
    };
    let total: f64 = weights.iter().sum();
    let mut cdf = Vec::with_capacity(n_classes);
    let mut running = 0.0;
    for w in &weights {
        running += w / total;
        cdf.push(running);
    }
    let mut assigned: HashMap<String, u32> = HashMap::new();
    let labels = tokens
        .words()
        .iter()
        .map(|word| {
            let key = if case_sensitive {
                word.clone()
            } else {
                word.to_lowercase()
            };
            *assigned.entry(key).or_insert_with(|| {
                let u = rng.uniform();
                // The number of cdf entries ≤ u; the last class catches rounding.
                (cdf.partition_point(|&c| c <= u) as u32).min(n_classes as u32 - 1)
            })
        })
        .collect();
    Ok(labels)
}

lca_core::param_enum! {
    /// Where control labels are drawn from.
    enum SampleFrom {
        /// The training label distribution.
        Same = "same",
        /// Every class equally often.
        Uniform = "uniform",
    }
}

lca_core::params! {
    /// Parameters of `selectivity`.
    struct Params {
        /// size of the neuron subset taken from each wired ranking, in percent
        percent: f64 = 10.0 => percent(),
        /// control labels follow the training label distribution, or are
        /// uniform
        sample_from: SampleFrom = SampleFrom::Same,
        /// whether `The` and `the` are one word type
        case_sensitive: bool = true,
        #[flatten]
        measured: MeasuredOn,
    }
}

pub(super) fn descriptor() -> Descriptor {
    Descriptor {
        info: ComponentInfo {
            kind: ComponentKind::Evaluator,
            name: NAME.into(),
            summary: "Selectivity: task accuracy minus control-task accuracy, for all neurons and top subsets".into(),
            params: Params::docs(),
            example: "[evaluator.selectivity]\ntype = \"selectivity\"\nprobes = [\"lca\"]\nrankings = [\"lca\"]\npercent = 10\n".into(),
            inputs: Inputs { rankings: Need::Optional, probes: Need::Required, ..Inputs::default() },
        },
        build: |table| {
            let p = Params::parse(NAME, table)?;
            let distribution = match p.sample_from {
                SampleFrom::Same => ControlDistribution::SameAsTask,
                SampleFrom::Uniform => ControlDistribution::Uniform,
            };
            Ok(Component::Evaluator(Box::new(Selectivity {
                percent: p.percent,
                distribution,
                case_sensitive: p.case_sensitive,
                split: p.measured.split,
            })))
        },
        applied: applied::<Params>,
    }
}

/// Selectivity of probes on all neurons and on each ranking's top subset.
///
/// ```text
/// control task: each word type gets a fixed random label (see `control_labels`)
/// selectivity  = accuracy(task) − accuracy(control)
///                (same probe type, same neurons, same split)
/// ```
#[derive(Clone, Debug)]
pub struct Selectivity {
    percent: f64,
    distribution: ControlDistribution,
    case_sensitive: bool,
    split: Split,
}

impl Evaluator for Selectivity {
    fn evaluate(&self, input: &EvalInput<'_>, cx: &RunContext) -> Result<Evaluation> {
        let data = input.data;
        require_split(data, self.split, NAME)?;
        let control_ids = control_labels(
            data,
            self.distribution,
            self.case_sensitive,
            &mut cx.rng_for("control-task"),
        )?;
        let control = data
            .clone()
            .with_labels(Labels::new(control_ids, data.classes().clone())?)?;
        let n = data.n_neurons();
        let k = count_for_percent(self.percent, n);
        let mut e = Evaluation::default();
        let mut table = Table::new(
            format!("Selectivity on {}", self.split),
            &[
                "probe",
                "neurons",
                "count",
                "task accuracy",
                "control accuracy",
                "selectivity",
            ],
        );
        for probe in &input.probes {
            let task = probe_accuracy(probe.trained.as_ref(), data, self.split)?;
            let control_probe = probe.spec.fit(&control, cx)?;
            let control_acc = probe_accuracy(control_probe.as_ref(), &control, self.split)?;
            table.push(vec![
                Cell::from(probe.id.as_str()),
                Cell::from("all"),
                n.into(),
                task.into(),
                control_acc.into(),
                (task - control_acc).into(),
            ]);
            e.metrics
                .insert(format!("selectivity.{}.all", probe.id), task - control_acc);
            // Each retrain starts from its task's probe on all neurons; the
            // rankings' retrains run side by side.
            let scores = side_by_side(&input.rankings, refit_bytes(data, k), cx, |ranking, cx| {
                let columns = top(ranking.ranking.order(), k);
                let task = retrain_accuracy(
                    probe.spec.as_ref(),
                    data,
                    &columns,
                    self.split,
                    Some(StartFrom::all(probe.trained.as_ref())),
                    cx,
                )?;
                let control_acc = retrain_accuracy(
                    probe.spec.as_ref(),
                    &control,
                    &columns,
                    self.split,
                    Some(StartFrom::all(control_probe.as_ref())),
                    cx,
                )?;
                Ok((task, control_acc))
            })?;
            for (ranking, (task, control_acc)) in input.rankings.iter().zip(scores) {
                table.push(vec![
                    Cell::from(probe.id.as_str()),
                    Cell::from(format!("top {}% of `{}`", self.percent, ranking.id)),
                    k.into(),
                    task.into(),
                    control_acc.into(),
                    (task - control_acc).into(),
                ]);
                e.metrics.insert(
                    format!("selectivity.{}.{}", probe.id, ranking.id),
                    task - control_acc,
                );
            }
        }
        e.tables.push(table);
        let types = data.tokens().map(|t| {
            let mut words: Vec<&String> = t.words().iter().collect();
            words.sort();
            words.dedup();
            words.len()
        });
        e.notes.push(format!(
            "Control labels: one per word type ({} types), drawn from the {} label distribution; seeded.",
            types.unwrap_or(0),
            match self.distribution {
                ControlDistribution::SameAsTask => "training",
                ControlDistribution::Uniform => "uniform",
            }
        ));
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SyntheticParams, generate};

    #[test]
    fn a_word_type_keeps_its_label_and_labels_follow_the_distribution() {
        let p = SyntheticParams {
            tokens: 4000,
            neurons: 4,
            classes: 3,
            per_class: 1,
            words_per_class: 200,
            ..Default::default()
        };
        let data = generate(&p, 3, "t").unwrap();
        let labels = control_labels(
            &data,
            ControlDistribution::SameAsTask,
            true,
            &mut Rng::new(1),
        )
        .unwrap();
        let words = data.tokens().unwrap().words();
        let mut seen: HashMap<&String, u32> = HashMap::new();
        for (w, &l) in words.iter().zip(&labels) {
            assert_eq!(*seen.entry(w).or_insert(l), l, "word {w} changed label");
            assert!(l < 3);
        }
        // 600 types, three classes of roughly equal frequency.
        let counts = count_classes(&seen.values().copied().collect::<Vec<_>>(), 3);
        assert!(counts.iter().all(|&c| c > 150), "{counts:?}");
        let again = control_labels(
            &data,
            ControlDistribution::SameAsTask,
            true,
            &mut Rng::new(1),
        )
        .unwrap();
        assert_eq!(labels, again);
    }

    #[test]
    fn case_folding_merges_types() {
        let acts = lca_core::data::ActivationMatrix::from_array(ndarray::Array2::zeros((4, 1)));
        let tokens = lca_core::data::Tokens::new(
            vec!["The".into(), "the".into(), "THE".into(), "cat".into()],
            vec![0],
        )
        .unwrap();
        let data = Dataset::new(
            "d",
            acts,
            lca_core::data::NeuronIndex::layer_major(1, 1).unwrap(),
            Labels::from_names(&["a", "a", "b", "b"]),
            Some(tokens),
            lca_core::data::Splits::all_train(4),
        )
        .unwrap();
        let folded =
            control_labels(&data, ControlDistribution::Uniform, false, &mut Rng::new(0)).unwrap();
        assert_eq!(folded[0], folded[1]);
        assert_eq!(folded[1], folded[2]);
        let err = control_labels(
            &data.clone().renamed("x"),
            ControlDistribution::Uniform,
            true,
            &mut Rng::new(0),
        );
        assert!(err.is_ok());
    }
}
