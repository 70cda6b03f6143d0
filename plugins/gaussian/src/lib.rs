//! The `gaussian` ranker: greedy selection by a Gaussian probe's mutual
//! information (Torroba Hennigen, Williams & Cotterell 2020).
//!
//! The model, the search and its speed are described in
//! `lca_linear::gaussian`, which `lca store rank --method gaussian` shares:
//! each class is a Gaussian over the selected neurons (the MAP estimate
//! under a data-dependent Normal-Inverse-Wishart prior), and each step adds
//! the neuron that most raises the mutual information between the classes
//! and the selected neurons, scored on `max_rows` training rows (a seeded
//! sample when there are more; the covariances always use every training
//! row). `diagonal = true` keeps only the variances (naive Bayes).

use lca_core::data::Split;
use lca_core::params::Params as _;
use lca_core::registry::{ComponentInfo, ComponentKind, Descriptor, Inputs, applied};
use lca_core::{Component, NeuronRanking, RankInput, Ranker, Result, RunContext};
pub use lca_linear::gaussian::{Selection, greedy_selection, greedy_selection_until};

const NAME: &str = "gaussian";

lca_core::params! {
    /// Parameters of `gaussian`.
    struct GaussianParams {
        /// how many neurons to select greedily (capped at the neuron count);
        /// the rest follow by their last MI as candidates
        neurons: usize = 100 => range(1..),
        /// training rows that score the candidates (a seeded sample when
        /// there are more); memory is classes × rows × neurons × 4 bytes
        max_rows: usize = 4000 => range(10..),
        /// ignore covariances between neurons (naive Bayes)
        diagonal: bool = false,
    }
}

/// The component descriptor.
pub fn descriptor() -> Descriptor {
    Descriptor {
        info: ComponentInfo {
            kind: ComponentKind::Ranker,
            name: NAME.into(),
            summary: "Gaussian probe (Torroba Hennigen et al.): greedy selection by mutual information, rank-one updates".into(),
            params: GaussianParams::docs(),
            example: "[ranker.gaussian]\ntype = \"gaussian\"\nsource = \"planted\"\nneurons = 50\n".into(),
            inputs: Inputs::default(),
        },
        build: |table| {
            let p = GaussianParams::parse(NAME, table)?;
            Ok(Component::Ranker(Box::new(GaussianRanker::from(p))))
        },
        applied: applied::<GaussianParams>,
    }
}

/// Greedy mutual-information selection with a Gaussian probe.
#[derive(Clone, Debug)]
pub struct GaussianRanker {
    /// Greedy steps.
    pub neurons: usize,
    /// Rows that score candidates.
    pub max_rows: usize,
    /// Naive Bayes instead of full covariances.
    pub diagonal: bool,
}

impl From<GaussianParams> for GaussianRanker {
    fn from(p: GaussianParams) -> Self {
        GaussianRanker {
            neurons: p.neurons,
            max_rows: p.max_rows,
            diagonal: p.diagonal,
        }
    }
}

/// The ranker with every parameter at its declared default.
impl Default for GaussianRanker {
    fn default() -> Self {
        GaussianParams::defaults()
            .expect("every parameter has a default")
            .into()
    }
}

impl Ranker for GaussianRanker {
    fn rank(&self, input: &RankInput<'_>, cx: &RunContext) -> Result<NeuronRanking> {
        let data = input.data;
        data.require_two_train_classes()?;
        let train = data.split(Split::Train);
        let n = train.labels.len();
        let d = data.n_neurons();
        let scored: Vec<usize> = if n <= self.max_rows {
            (0..n).collect()
        } else {
            let mut rows = cx.rng_for("gaussian-rows").sample_indices(n, self.max_rows);
            rows.sort_unstable();
            rows
        };
        let steps = self.neurons.min(d);
        // Each class present keeps a residual per scored row and neuron.
        let classes = lca_core::data::count_classes(train.labels, data.n_classes())
            .iter()
            .filter(|&&c| c > 0)
            .count();
        lca_linear::gaussian::ensure_residuals_fit(classes, scored.len(), d)?;
        let selection = cx
            .install(|| {
                greedy_selection_until(
                    train.acts.view().view(),
                    train.labels,
                    data.n_classes(),
                    &scored,
                    steps,
                    self.diagonal,
                    &|| cx.cancelled(),
                )
            })
            .ok_or(lca_core::Error::Cancelled)?;
        selection.ranking(d, self.diagonal)
    }
}

lca_plugins::export_plugin! {
    name: "lca-plugin-gaussian",
    version: env!("CARGO_PKG_VERSION"),
    components: [descriptor()],
}

#[cfg(test)]
// Index loops over neurons and classes read as the formulas do.
#[allow(clippy::needless_range_loop)]
mod tests {
    use super::*;
    use lca_core::ndarray::{Array2, ArrayView2};
    use lca_testkit::{RankerTraits, check_ranker, planted, planted_precision};

    /// MI of a neuron set straight from the definition: per class, the
    /// Gaussian on Σ_c[S,S] evaluated with a fresh Cholesky factorisation.
    fn slow_mi(x: ArrayView2<'_, f32>, y: &[u32], n_classes: usize, set: &[usize]) -> f64 {
        let (n, d) = x.dim();
        let mut total = 0.0;
        let counts = lca_core::data::count_classes(y, n_classes);
        let mut models = Vec::new();
        for c in 0..n_classes {
            let rows: Vec<usize> = (0..n).filter(|&r| y[r] as usize == c).collect();
            let nc = rows.len() as f64;
            let mean: Vec<f64> = set
                .iter()
                .map(|&j| rows.iter().map(|&r| f64::from(x[[r, j]])).sum::<f64>() / nc)
                .collect();
            let s = set.len();
            let mut sigma = vec![vec![0.0; s]; s];
            for a in 0..s {
                for b in 0..s {
                    let scatter: f64 = rows
                        .iter()
                        .map(|&r| {
                            (f64::from(x[[r, set[a]]]) - mean[a])
                                * (f64::from(x[[r, set[b]]]) - mean[b])
                        })
                        .sum();
                    let prior = if a == b { scatter / (nc - 1.0) } else { 0.0 };
                    sigma[a][b] = (scatter + prior) / (nc + 2.0 * d as f64 + 4.0);
                }
            }
            // Cholesky.
            let mut l = vec![vec![0.0; s]; s];
            for a in 0..s {
                for b in 0..=a {
                    let dot: f64 = (0..b).map(|k| l[a][k] * l[b][k]).sum();
                    if a == b {
                        l[a][a] = (sigma[a][a] - dot).sqrt();
                    } else {
                        l[a][b] = (sigma[a][b] - dot) / l[b][b];
                    }
                }
            }
            models.push((mean, l, (counts[c] as f64 / n as f64).ln()));
        }
        let entropy: f64 = counts
            .iter()
            .map(|&k| k as f64 / n as f64)
            .map(|p| -p * p.ln())
            .sum();
        for r in 0..n {
            let logs: Vec<f64> = models
                .iter()
                .map(|(mean, l, log_prior)| {
                    let s = mean.len();
                    let mut z = vec![0.0; s];
                    for a in 0..s {
                        let dot: f64 = (0..a).map(|k| l[a][k] * z[k]).sum();
                        z[a] = (f64::from(x[[r, set[a]]]) - mean[a] - dot) / l[a][a];
                    }
                    let log_det: f64 = (0..s).map(|a| l[a][a].ln()).sum();
                    log_prior
                        - 0.5 * z.iter().map(|v| v * v).sum::<f64>()
                        - log_det
                        - 0.5 * s as f64 * (2.0 * std::f64::consts::PI).ln()
                })
                .collect();
            let max = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = max + logs.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
            total += logs[y[r] as usize] - lse;
        }
        (entropy + total / n as f64) / std::f64::consts::LN_2
    }

    #[test]
    fn incremental_mi_equals_a_fresh_fit_at_every_step() {
        let data = planted(240, 9, 3, 1, 6);
        let train = data.split(Split::Train);
        let acts = train.acts.view();
        let all: Vec<usize> = (0..train.labels.len()).collect();
        let sel = greedy_selection(acts.view(), train.labels, 3, &all, 6, false);
        for (step, scores) in sel.candidates.iter().enumerate() {
            for j in 0..9 {
                if sel.selected[..step].contains(&(j as u32)) {
                    assert!(scores[j].is_nan());
                    continue;
                }
                let mut set: Vec<usize> =
                    sel.selected[..step].iter().map(|&s| s as usize).collect();
                set.push(j);
                let want = slow_mi(acts.view(), train.labels, 3, &set);
                assert!(
                    (scores[j] - want).abs() < 1e-5,
                    "step {step}, neuron {j}: {} vs {want}",
                    scores[j]
                );
            }
        }
        // MI never decreases along the greedy path, and stays below H(π).
        assert!(
            sel.mi_bits.windows(2).all(|w| w[1] >= w[0] - 1e-9),
            "{:?}",
            sel.mi_bits
        );
        assert!(sel.mi_bits.iter().all(|&v| v <= sel.entropy_bits + 1e-9));
    }

    #[test]
    fn recovers_planted_neurons() {
        let data = planted(3000, 120, 4, 2, 3);
        let ranking = GaussianRanker {
            neurons: 12,
            ..GaussianRanker::default()
        }
        .rank(&RankInput::new(&data), &RunContext::new(1, 1))
        .unwrap();
        assert_eq!(planted_precision(&ranking, &data), 1.0);
        let mi = ranking.details()["mi_bits"].as_array().unwrap();
        assert_eq!(mi.len(), 12);
    }

    #[test]
    fn a_duplicated_neuron_adds_nothing_once_its_twin_is_selected() {
        let data = planted(600, 6, 3, 1, 11);
        let x = data.acts().view().to_owned();
        let mut wider = Array2::<f32>::zeros((x.nrows(), 7));
        wider.slice_mut(lca_core::ndarray::s![.., ..6]).assign(&x);
        let best = {
            let train_y = data.labels().ids();
            let all: Vec<usize> = (0..x.nrows()).collect();
            greedy_selection(x.view(), train_y, 3, &all, 1, false).selected[0] as usize
        };
        wider.column_mut(6).assign(&x.column(best));
        let y = data.labels().ids();
        let all: Vec<usize> = (0..x.nrows()).collect();
        let sel = greedy_selection(wider.view(), y, 3, &all, 3, false);
        assert_eq!(sel.selected[0] as usize, best);
        // Once one copy is in, the twin adds next to nothing (not exactly
        // nothing: the prior's diagonal keeps the pair from being singular),
        // so it is not the second pick.
        let gain = sel.candidates[1][6] - sel.mi_bits[0];
        assert!(
            gain.abs() < 0.01 * sel.mi_bits[0],
            "gain {gain} of {}",
            sel.mi_bits[0]
        );
        assert_ne!(sel.selected[1], 6);
    }

    #[test]
    fn passes_conformance() {
        check_ranker(&GaussianRanker::default(), RankerTraits::default()).unwrap();
        check_ranker(
            &GaussianRanker {
                neurons: 3,
                max_rows: 50,
                diagonal: true,
            },
            RankerTraits::default(),
        )
        .unwrap();
    }

    #[test]
    fn the_same_seed_gives_the_same_result_at_any_thread_count() {
        let data = planted(500, 20, 3, 1, 2);
        let ranker = GaussianRanker {
            neurons: 5,
            max_rows: 100,
            diagonal: false,
        };
        let a = ranker
            .rank(&RankInput::new(&data), &RunContext::new(7, 1))
            .unwrap();
        let b = ranker
            .rank(&RankInput::new(&data), &RunContext::new(7, 2))
            .unwrap();
        assert_eq!(a.order(), b.order());
        assert_eq!(a.details()["rows_scored"], 100);
    }
}
