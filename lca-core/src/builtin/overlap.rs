//! `ranking_overlap`: how much the top-k sets of several rankings agree.

use std::collections::HashSet;

use serde::Deserialize;

use crate::component::{Component, EvalInput, Evaluator};
use crate::context::RunContext;
use crate::data::{Cell, Evaluation, Table};
use crate::error::Result;
use crate::params::{ParamDoc, ParamType, ensure, parse_params};
use crate::registry::{ComponentInfo, ComponentKind, Descriptor, Inputs, Need};

const NAME: &str = "ranking_overlap";

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OverlapParams {
    #[serde(default = "default_ks")]
    k: Vec<i64>,
}

fn default_ks() -> Vec<i64> {
    vec![10, 50, 100]
}

fn param_docs() -> Vec<ParamDoc> {
    vec![ParamDoc::new(
        "k",
        ParamType::IntegerList,
        "[10, 50, 100]",
        "each ≥ 1",
        "top-k sizes to compare",
    )]
}

pub(super) fn descriptor() -> Descriptor {
    Descriptor {
        info: ComponentInfo {
            kind: ComponentKind::Evaluator,
            name: NAME.into(),
            summary: "Top-k overlap and Jaccard index between every pair of rankings".into(),
            params: param_docs(),
            example: "[evaluator.agreement]\ntype = \"ranking_overlap\"\nsource = \"planted\"\nrankings = [\"corr\", \"rand\"]\nk = [10, 50]\n".into(),
            inputs: Inputs { rankings: Need::Required, min_rankings: 2, ..Inputs::default() },
        },
        build: |table| {
            let p: OverlapParams = parse_params(NAME, &param_docs(), table)?;
            ensure(NAME, "k", !p.k.is_empty(), "[]", "at least one cut-off")?;
            for &k in &p.k {
                ensure(NAME, "k", k >= 1, k, "every cut-off ≥ 1")?;
            }
            Ok(Component::Evaluator(Box::new(RankingOverlap { ks: p.k.iter().map(|&k| k as usize).collect() })))
        },
    }
}

/// Pairwise agreement of top-k sets.
///
/// ```text
/// overlap@k = |A_k ∩ B_k| / k        jaccard@k = |A_k ∩ B_k| / |A_k ∪ B_k|
/// ```
#[derive(Clone, Debug)]
pub struct RankingOverlap {
    ks: Vec<usize>,
}

impl Evaluator for RankingOverlap {
    fn evaluate(&self, input: &EvalInput<'_>, _cx: &RunContext) -> Result<Evaluation> {
        let n = input.data.n_neurons();
        let mut evaluation = Evaluation::default();
        let mut table = Table::new(
            "Top-k overlap between rankings",
            &[
                "ranking A",
                "ranking B",
                "k",
                "shared",
                "overlap",
                "jaccard",
            ],
        );
        for (i, a) in input.rankings.iter().enumerate() {
            for b in &input.rankings[i + 1..] {
                for &k in &self.ks {
                    let k = k.min(n);
                    let top_a: HashSet<u32> = a.ranking.top(k).iter().copied().collect();
                    let shared = b
                        .ranking
                        .top(k)
                        .iter()
                        .filter(|j| top_a.contains(j))
                        .count();
                    let overlap = shared as f64 / k as f64;
                    let jaccard = shared as f64 / (2 * k - shared) as f64;
                    table.push(vec![
                        Cell::from(a.id),
                        Cell::from(b.id),
                        k.into(),
                        shared.into(),
                        overlap.into(),
                        jaccard.into(),
                    ]);
                    evaluation
                        .metrics
                        .insert(format!("overlap_at_{k}.{}.{}", a.id, b.id), overlap);
                }
            }
        }
        evaluation.tables.push(table);
        Ok(evaluation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtin::{SyntheticParams, generate};
    use crate::component::NamedRanking;
    use crate::data::NeuronRanking;

    #[test]
    fn hand_computed_overlap() {
        let data = generate(
            &SyntheticParams {
                tokens: 20,
                neurons: 6,
                classes: 2,
                per_class: 1,
                ..Default::default()
            },
            1,
            "t",
        )
        .unwrap();
        let a = NeuronRanking::from_order(vec![0, 1, 2, 3, 4, 5]).unwrap();
        let b = NeuronRanking::from_order(vec![1, 5, 0, 2, 3, 4]).unwrap();
        let input = EvalInput::new(&data).with_rankings(vec![
            NamedRanking {
                id: "a",
                ranking: &a,
            },
            NamedRanking {
                id: "b",
                ranking: &b,
            },
        ]);
        let e = RankingOverlap { ks: vec![2, 3, 10] }
            .evaluate(&input, &RunContext::new(0, 1))
            .unwrap();
        // top-2: {0,1} vs {1,5} share 1; top-3: {0,1,2} vs {1,5,0} share 2; k=10 clips to 6.
        assert_eq!(e.metrics["overlap_at_2.a.b"], 0.5);
        assert_eq!(e.metrics["overlap_at_3.a.b"], 2.0 / 3.0);
        assert_eq!(e.metrics["overlap_at_6.a.b"], 1.0);
        assert_eq!(e.tables[0].rows[1][5], Cell::Float(0.5));
    }
}
