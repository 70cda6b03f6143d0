//! `ranking_overlap`: how much several rankings agree, by their top-k sets
//! and as whole orders.
//!
//! ```text
//! overlap@k(A, B)    = |A_k ∩ B_k| / k
//! jaccard@k(A, B)    = |A_k ∩ B_k| / |A_k ∪ B_k|
//! AvgOverlap(M, k)   = mean over the other rankings B of jaccard@k(M, B)
//! NeuronVote(M, k)   = jaccard(M_k, V_k), V = Borda count of the other
//!                      rankings' top-`vote_depth` lists: neuron n scores
//!                      Σ_B (depth − pos_B(n)) over the lists it is in
//!                      (pos from 0; ties by lower neuron index)
//! Spearman ρ(A, B)   = 1 − 6 Σ_n (pos_A(n) − pos_B(n))² / (N (N² − 1))
//! Kendall τ(A, B)    = 1 − 4 · discordant pairs / (N (N − 1))
//! ```
//!
//! AvgOverlap and NeuronVote are Fan et al.'s (2023) agreement measures.
//! Rankings are permutations, so neither correlation needs a tie correction.

use std::collections::HashSet;

use lca_core::component::{Component, EvalInput, Evaluator};
use lca_core::context::RunContext;
use lca_core::data::{Cell, Evaluation, Figure, Plot, Table};
use lca_core::error::Result;
use lca_core::params::Params as _;
use lca_core::registry::{ComponentInfo, ComponentKind, Descriptor, Inputs, Need, applied};

const NAME: &str = "ranking_overlap";

lca_core::params! {
    /// Parameters of `ranking_overlap`.
    struct Params {
        /// top-k sizes to compare
        k: Vec<usize> = vec![10, 50, 100] => non_empty().and(range(1..)),
        /// length of the other rankings' lists that NeuronVote's Borda count
        /// reads
        vote_depth: usize = 100 => range(1..),
    }
}

pub(super) fn descriptor() -> Descriptor {
    Descriptor {
        info: ComponentInfo {
            kind: ComponentKind::Evaluator,
            name: NAME.into(),
            summary: "Agreement of rankings: top-k overlap and Jaccard, AvgOverlap, NeuronVote, Spearman and Kendall".into(),
            params: Params::docs(),
            example: "[evaluator.agreement]\ntype = \"ranking_overlap\"\nsource = \"planted\"\nrankings = [\"corr\", \"rand\"]\nk = [10, 50]\n".into(),
            inputs: Inputs { rankings: Need::Required, min_rankings: 2, ..Inputs::default() },
        },
        build: |table| {
            let p = Params::parse(NAME, table)?;
            Ok(Component::Evaluator(Box::new(RankingOverlap { ks: p.k, vote_depth: p.vote_depth })))
        },
        applied: applied::<Params>,
    }
}

/// Agreement between rankings (formulas in the module docs).
#[derive(Clone, Debug)]
pub struct RankingOverlap {
    ks: Vec<usize>,
    vote_depth: usize,
}

fn jaccard(a: &[u32], b: &[u32]) -> f64 {
    let set: HashSet<u32> = a.iter().copied().collect();
    let shared = b.iter().filter(|j| set.contains(j)).count();
    let union = a.len() + b.len() - shared;
    if union == 0 {
        1.0
    } else {
        shared as f64 / union as f64
    }
}

/// The top `k` of the Borda count over `lists` (each read to `depth`).
fn borda_top(lists: &[&[u32]], depth: usize, n: usize, k: usize) -> Vec<u32> {
    let mut votes = vec![0.0f64; n];
    let mut voted = vec![false; n];
    for list in lists {
        for (pos, &j) in list.iter().take(depth).enumerate() {
            votes[j as usize] += (depth - pos) as f64;
            voted[j as usize] = true;
        }
    }
    let mut order: Vec<u32> = (0..n as u32).filter(|&j| voted[j as usize]).collect();
    order.sort_by(|&a, &b| {
        votes[b as usize]
            .total_cmp(&votes[a as usize])
            .then(a.cmp(&b))
    });
    order.truncate(k);
    order
}

/// Spearman's ρ between two permutations given as orders.
pub(crate) fn spearman(a: &[u32], b: &[u32]) -> f64 {
    let n = a.len();
    if n < 2 {
        return 1.0;
    }
    let pos_b = positions(b);
    let d2: f64 = a
        .iter()
        .enumerate()
        .map(|(pa, &j)| (pa as f64 - pos_b[j as usize] as f64).powi(2))
        .sum();
    let nf = n as f64;
    1.0 - 6.0 * d2 / (nf * (nf * nf - 1.0))
}

/// Kendall's τ between two permutations given as orders, counting
/// discordant pairs by merge sort in O(N log N).
pub(crate) fn kendall(a: &[u32], b: &[u32]) -> f64 {
    let n = a.len();
    if n < 2 {
        return 1.0;
    }
    let pos_b = positions(b);
    // B's positions read in A's order: each inversion is a discordant pair.
    let mut seq: Vec<usize> = a.iter().map(|&j| pos_b[j as usize]).collect();
    let discordant = count_inversions(&mut seq);
    let nf = n as f64;
    1.0 - 4.0 * discordant as f64 / (nf * (nf - 1.0))
}

fn positions(order: &[u32]) -> Vec<usize> {
    let mut pos = vec![0usize; order.len()];
    for (p, &j) in order.iter().enumerate() {
        pos[j as usize] = p;
    }
    pos
}

fn count_inversions(seq: &mut [usize]) -> u64 {
    let n = seq.len();
    if n < 2 {
        return 0;
    }
    let mid = n / 2;
    let mut count = count_inversions(&mut seq[..mid]) + count_inversions(&mut seq[mid..]);
    let mut merged = Vec::with_capacity(n);
    let (mut i, mut j) = (0, mid);
    while i < mid && j < n {
        if seq[i] <= seq[j] {
            merged.push(seq[i]);
            i += 1;
        } else {
            // Every element left in the first half is greater.
            count += (mid - i) as u64;
            merged.push(seq[j]);
            j += 1;
        }
    }
    merged.extend_from_slice(&seq[i..mid]);
    merged.extend_from_slice(&seq[j..n]);
    seq.copy_from_slice(&merged);
    count
}

/// The rankings' orders without the `constant` neurons (ascending), with
/// the others renumbered `0..n − |constant|` so that positions stay dense.
fn informative_orders(input: &EvalInput<'_>, constant: &[u32]) -> Vec<Vec<u32>> {
    let n = input.data.n_neurons();
    let mut renumbered = vec![u32::MAX; n];
    let mut next = 0u32;
    for (j, slot) in renumbered.iter_mut().enumerate() {
        if constant.binary_search(&(j as u32)).is_err() {
            *slot = next;
            next += 1;
        }
    }
    input
        .rankings
        .iter()
        .map(|r| {
            r.ranking
                .order()
                .iter()
                .map(|&j| renumbered[j as usize])
                .filter(|&j| j != u32::MAX)
                .collect()
        })
        .collect()
}

impl Evaluator for RankingOverlap {
    fn evaluate(&self, input: &EvalInput<'_>, _cx: &RunContext) -> Result<Evaluation> {
        // Constant neurons are last in every ranking, in index order; left
        // in, they would count as agreement that no method reached.
        let constant = input.data.constant_train_neurons();
        let orders = informative_orders(input, &constant);
        let n = input.data.n_neurons() - constant.len();
        let mut evaluation = Evaluation::default();
        if n < 2 {
            evaluation.notes.push(format!(
                "No agreement measured: {} of the {} neurons are constant on the training \
                 split, so every ranking is a tie broken by neuron index, and agreement \
                 between ties means nothing",
                constant.len(),
                input.data.n_neurons()
            ));
            return Ok(evaluation);
        }
        if !constant.is_empty() {
            evaluation.notes.push(format!(
                "The {} neurons constant on the training split are left out: every ranking \
                 puts them last, which is agreement no method reached. Top-k sets and \
                 correlations cover the other {n}",
                constant.len()
            ));
        }
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
            for (b, order_b) in input.rankings.iter().zip(&orders).skip(i + 1) {
                for &k in &self.ks {
                    let k = k.min(n);
                    let top_a: HashSet<u32> = orders[i][..k].iter().copied().collect();
                    let shared = order_b[..k].iter().filter(|j| top_a.contains(j)).count();
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
        let orders: Vec<&[u32]> = orders.iter().map(Vec::as_slice).collect();
        self.agreement(input, &orders, n, &mut evaluation);
        Ok(evaluation)
    }
}

impl RankingOverlap {
    /// Fan et al.'s measures, rank correlations and the heatmaps, over
    /// `orders` of `n` neurons.
    fn agreement(&self, input: &EvalInput<'_>, orders: &[&[u32]], n: usize, e: &mut Evaluation) {
        let ids: Vec<String> = input.rankings.iter().map(|r| r.id.to_string()).collect();
        let mut fan = Table::new(
            format!(
                "Agreement with the other rankings (AvgOverlap; NeuronVote over their top {})",
                self.vote_depth
            ),
            &["ranking", "k", "AvgOverlap", "NeuronVote"],
        );
        for &k in &self.ks {
            let k = k.min(n);
            let mut matrix = vec![vec![0.0; ids.len()]; ids.len()];
            for a in 0..ids.len() {
                for b in 0..ids.len() {
                    matrix[a][b] = jaccard(&orders[a][..k], &orders[b][..k]);
                }
            }
            for (m, id) in ids.iter().enumerate() {
                let others: Vec<&[u32]> = (0..ids.len())
                    .filter(|&b| b != m)
                    .map(|b| orders[b])
                    .collect();
                let avg = (0..ids.len())
                    .filter(|&b| b != m)
                    .map(|b| matrix[m][b])
                    .sum::<f64>()
                    / others.len() as f64;
                let vote = jaccard(&orders[m][..k], &borda_top(&others, self.vote_depth, n, k));
                fan.push(vec![
                    Cell::from(id.as_str()),
                    k.into(),
                    avg.into(),
                    vote.into(),
                ]);
                e.metrics.insert(format!("avg_overlap_at_{k}.{id}"), avg);
                e.metrics.insert(format!("neuron_vote_at_{k}.{id}"), vote);
            }
            e.figures.push(Figure {
                title: format!("Jaccard index of the top {k} neurons"),
                section: "agreement".into(),
                plot: Plot::Heatmap {
                    rows: ids.clone(),
                    columns: ids.clone(),
                    values: matrix,
                    min: 0.0,
                    max: 1.0,
                },
            });
        }
        let mut correlations = Table::new(
            "Rank correlation of the full rankings",
            &["ranking A", "ranking B", "Spearman ρ", "Kendall τ"],
        );
        let mut rho_matrix = vec![vec![1.0; ids.len()]; ids.len()];
        for a in 0..ids.len() {
            for b in a + 1..ids.len() {
                let rho = spearman(orders[a], orders[b]);
                let tau = kendall(orders[a], orders[b]);
                rho_matrix[a][b] = rho;
                rho_matrix[b][a] = rho;
                correlations.push(vec![
                    Cell::from(ids[a].as_str()),
                    Cell::from(ids[b].as_str()),
                    rho.into(),
                    tau.into(),
                ]);
                e.metrics
                    .insert(format!("spearman.{}.{}", ids[a], ids[b]), rho);
                e.metrics
                    .insert(format!("kendall.{}.{}", ids[a], ids[b]), tau);
            }
        }
        e.tables.push(fan);
        e.tables.push(correlations);
        e.figures.push(Figure {
            title: "Spearman correlation of the full rankings".into(),
            section: "agreement".into(),
            plot: Plot::Heatmap {
                rows: ids.clone(),
                columns: ids,
                values: rho_matrix,
                min: -1.0,
                max: 1.0,
            },
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SyntheticParams, generate};
    use lca_core::component::NamedRanking;
    use lca_core::data::NeuronRanking;

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
        let e = RankingOverlap {
            ks: vec![2, 3, 10],
            vote_depth: 3,
        }
        .evaluate(&input, &RunContext::new(0, 1))
        .unwrap();
        // top-2: {0,1} vs {1,5} share 1; top-3: {0,1,2} vs {1,5,0} share 2; k=10 clips to 6.
        assert_eq!(e.metrics["overlap_at_2.a.b"], 0.5);
        assert_eq!(e.metrics["overlap_at_3.a.b"], 2.0 / 3.0);
        assert_eq!(e.metrics["overlap_at_6.a.b"], 1.0);
        assert_eq!(e.tables[0].rows[1][5], Cell::Float(0.5));
        // With two rankings, AvgOverlap is their Jaccard index, and the vote
        // of the other is its own top list: top-2 {0,1} vs {1,5} → 1/3.
        assert_eq!(e.metrics["avg_overlap_at_2.a"], 1.0 / 3.0);
        assert_eq!(e.metrics["neuron_vote_at_2.a"], 1.0 / 3.0);
        // Positions a: 0..6; b: 1→0, 5→1, 0→2, 2→3, 3→4, 4→5.
        // d = [2, 1, 1, 1, 1, 4] for neurons 0..5: Σd² = 4+1+1+1+1+16 = 24.
        assert!((e.metrics["spearman.a.b"] - (1.0 - 6.0 * 24.0 / (6.0 * 35.0))).abs() < 1e-12);
        // Discordant pairs: (0,1), (0,5), (2,5), (3,5), (4,5) = 5 of 15.
        assert!((e.metrics["kendall.a.b"] - (1.0 - 4.0 * 5.0 / 30.0)).abs() < 1e-12);
        assert_eq!(e.figures.len(), 4);
        e.validate().unwrap();
    }

    /// Kendall's τ by checking every pair.
    fn slow_kendall(a: &[u32], b: &[u32]) -> f64 {
        let pa = positions(a);
        let pb = positions(b);
        let n = a.len();
        let mut concordant = 0i64;
        let mut discordant = 0i64;
        for i in 0..n {
            for j in i + 1..n {
                let s = (pa[i] as i64 - pa[j] as i64) * (pb[i] as i64 - pb[j] as i64);
                if s > 0 {
                    concordant += 1;
                } else {
                    discordant += 1;
                }
            }
        }
        (concordant - discordant) as f64 / (concordant + discordant) as f64
    }

    proptest::proptest! {
        #[test]
        fn kendall_matches_pairwise_counting(seed in 0u64..500, n in 2usize..60) {
            let mut rng = lca_core::rng::Rng::new(seed);
            let mut a: Vec<u32> = (0..n as u32).collect();
            let mut b = a.clone();
            rng.shuffle(&mut a);
            rng.shuffle(&mut b);
            proptest::prop_assert!((kendall(&a, &b) - slow_kendall(&a, &b)).abs() < 1e-12);
            proptest::prop_assert!((kendall(&a, &a) - 1.0).abs() < 1e-12);
            proptest::prop_assert!((spearman(&a, &a) - 1.0).abs() < 1e-12);
            let reversed: Vec<u32> = a.iter().rev().copied().collect();
            proptest::prop_assert!((kendall(&a, &reversed) + 1.0).abs() < 1e-12);
            proptest::prop_assert!((spearman(&a, &reversed) + 1.0).abs() < 1e-12);
        }
    }

    #[test]
    fn borda_count_prefers_neurons_high_on_many_lists() {
        let x: &[u32] = &[3, 1, 2, 0];
        let y: &[u32] = &[1, 3, 0, 2];
        let z: &[u32] = &[1, 2, 3, 0];
        // depth 2: 3 → 2 + 1 = 3; 1 → 1 + 2 + 2 = 5; 2 → 1.
        assert_eq!(borda_top(&[x, y, z], 2, 4, 3), vec![1, 3, 2]);
    }
}
