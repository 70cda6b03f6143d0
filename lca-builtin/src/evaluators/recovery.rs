//! `planted_recovery`: how many planted neurons each ranking puts on top.

use lca_core::component::{Component, EvalInput, Evaluator};
use lca_core::context::RunContext;
use lca_core::data::{Cell, Evaluation, Table};
use lca_core::error::{Error, Result};
use lca_core::params::Params as _;
use lca_core::registry::{ComponentInfo, ComponentKind, Descriptor, Inputs, Need, applied};

const NAME: &str = "planted_recovery";

lca_core::params! {
    /// Parameters of `planted_recovery`.
    struct Params {
        /// cut-offs at which precision and recall are reported
        #[shown = "[number of planted neurons]"]
        k: Option<Vec<usize>> = None => range(1..),
    }
}

pub(super) fn descriptor() -> Descriptor {
    Descriptor {
        info: ComponentInfo {
            kind: ComponentKind::Evaluator,
            name: NAME.into(),
            summary: "Precision@k and recall@k of the planted neurons (synthetic data only)".into(),
            params: Params::docs(),
            example: "[evaluator.recovery]\ntype = \"planted_recovery\"\nsource = \"planted\"\nrankings = [\"corr\", \"rand\"]\n".into(),
            inputs: Inputs { rankings: Need::Required, min_rankings: 1, ..Inputs::default() },
        },
        build: |table| {
            let p = Params::parse(NAME, table)?;
            Ok(Component::Evaluator(Box::new(PlantedRecovery { ks: p.k.unwrap_or_default() })))
        },
        applied: applied::<Params>,
    }
}

/// Scores rankings against the known informative neurons of synthetic data.
///
/// ```text
/// precision@k = |top_k ∩ planted| / k        recall@k = |top_k ∩ planted| / |planted|
/// ```
#[derive(Clone, Debug)]
pub struct PlantedRecovery {
    ks: Vec<usize>,
}

impl Evaluator for PlantedRecovery {
    fn evaluate(&self, input: &EvalInput<'_>, _cx: &RunContext) -> Result<Evaluation> {
        let truth = input.data.truth().ok_or_else(|| {
            Error::input(format!(
                "source `{}` has no planted neurons to recover; `planted_recovery` only works on synthetic data",
                input.data.name()
            ))
        })?;
        let n = input.data.n_neurons();
        let mut is_planted = vec![false; n];
        for &j in &truth.informative {
            is_planted[j as usize] = true;
        }
        let n_planted = truth.informative.len();
        let ks = if self.ks.is_empty() {
            vec![n_planted.max(1)]
        } else {
            self.ks.clone()
        };
        let mut evaluation = Evaluation::default();
        let mut table = Table::new(
            "Planted-neuron recovery",
            &[
                "ranking",
                "k",
                "planted in top k",
                "precision@k",
                "recall@k",
                "rank covering all planted",
            ],
        );
        for named in &input.rankings {
            let order = named.ranking.order();
            // 1-based position of the last planted neuron: how deep one must go
            // to see them all.
            let covering = order
                .iter()
                .rposition(|&j| is_planted[j as usize])
                .map_or(0, |p| p + 1);
            for &k in &ks {
                let k = k.min(n);
                let hits = order[..k]
                    .iter()
                    .filter(|&&j| is_planted[j as usize])
                    .count();
                let precision = hits as f64 / k as f64;
                let recall = if n_planted == 0 {
                    0.0
                } else {
                    hits as f64 / n_planted as f64
                };
                table.push(vec![
                    Cell::from(named.id),
                    k.into(),
                    hits.into(),
                    precision.into(),
                    recall.into(),
                    covering.into(),
                ]);
                evaluation
                    .metrics
                    .insert(format!("precision_at_{k}.{}", named.id), precision);
            }
        }
        evaluation.tables.push(table);
        evaluation.notes.push(format!(
            "{n_planted} of {n} neurons are informative (planted neurons and their copies); \
             a perfect ranking has precision@{n_planted} = 1."
        ));
        Ok(evaluation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SyntheticParams, generate};
    use lca_core::component::NamedRanking;
    use lca_core::data::NeuronRanking;

    #[test]
    fn perfect_and_reversed_rankings() {
        let data = generate(
            &SyntheticParams {
                tokens: 50,
                neurons: 20,
                classes: 2,
                per_class: 2,
                ..Default::default()
            },
            1,
            "t",
        )
        .unwrap();
        let planted = data.truth().unwrap().informative.clone();
        let mut scores = vec![0.0; 20];
        for &j in &planted {
            scores[j as usize] = 1.0;
        }
        let good = NeuronRanking::from_scores(scores.clone()).unwrap();
        let bad = NeuronRanking::from_scores(scores.iter().map(|s| -s).collect()).unwrap();
        let input = EvalInput::new(&data).with_rankings(vec![
            NamedRanking {
                id: "good",
                ranking: &good,
            },
            NamedRanking {
                id: "bad",
                ranking: &bad,
            },
        ]);
        let e = PlantedRecovery { ks: vec![] }
            .evaluate(&input, &RunContext::new(0, 1))
            .unwrap();
        assert_eq!(e.metrics["precision_at_4.good"], 1.0);
        assert_eq!(e.metrics["precision_at_4.bad"], 0.0);
        assert_eq!(e.tables[0].rows[0][5], Cell::Int(4));
        assert_eq!(e.tables[0].rows[1][5], Cell::Int(20));
        e.validate().unwrap();
    }
}
