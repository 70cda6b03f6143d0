//! The `gaussian` ranker: greedy selection by a Gaussian probe's mutual
//! information (Torroba Hennigen, Williams & Cotterell 2020).
//!
//! Each class *c* is a multivariate Gaussian over the selected neurons *S*,
//! with the MAP estimate under the data-dependent Normal-Inverse-Wishart
//! prior (μ0 = x̄_c, κ0 = 0.01, ν0 = D + 2, Λ0 = diag of the class's
//! unbiased variances), computed on the training split:
//!
//! ```text
//! μ_c = x̄_c
//! Σ_c = (diag(var_c) + Σ_{t∈c} (x_t − x̄_c)(x_t − x̄_c)ᵀ) / (n_c + 2D + 4)
//! π_c = n_c / N
//! p(c | x_S) ∝ π_c · N(x_S; μ_c[S], Σ_c[S,S])
//! MI(S) = (H(π) + (1/M) Σ_t log p(y_t | x_tS)) / ln 2          bits
//! ```
//!
//! D is the number of neurons. Starting from S = ∅, each step adds the
//! neuron that maximises MI(S ∪ {j}); candidates within 1e-9 bits of the
//! best count as tied and the lowest index wins (NeuroX keeps the first
//! strict maximum). After `neurons` steps the rest follow in the order of
//! their MI as candidates in the last step.
//!
//! **Speed.** NeuroX refits a |S|-dimensional Gaussian per candidate and
//! class at every step (cubic in |S|). Here each class keeps, for every
//! neuron, its residual given the selected neurons and its conditional
//! variance; adding a neuron is a rank-one update of both (one step of a
//! Cholesky factorisation), so scoring a candidate costs O(M·C) and a step
//! O(M·C·D), whatever |S| is; that loop runs in vector registers, with the
//! residuals laid out for it (`lca_linear::kernels::gaussian`). The residuals take C·M·D·4 bytes: `max_rows`
//! bounds M with a seeded sample of training rows (the covariances always
//! use every training row).
//!
//! **Degenerate neurons.** A neuron constant within a class has zero
//! variance there; its conditional variance is floored at 1e-10 × the
//! class's mean variance (NeuroX's density would be undefined).
//! `diagonal = true` keeps only the variances (naive Bayes).

use lca_core::data::Split;
use lca_core::ndarray::ArrayView2;
use lca_core::params::Params as _;
use lca_core::registry::{ComponentInfo, ComponentKind, Descriptor, Inputs, applied};
use lca_core::{Component, NeuronRanking, RankInput, Ranker, Result, RunContext, serde_json};
use lca_linear::kernels::gaussian;
use rayon::prelude::*;
const NAME: &str = "gaussian";

/// MI differences below this (bits) are ties.
const TIE_BITS: f64 = 1e-9;

/// Candidates scored together over each block of rows (a unit of parallel
/// work, too).
const CANDIDATE_GROUP: usize = 16;

mod residuals;

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

/// The greedy selection's result.
#[derive(Clone, Debug)]
pub struct Selection {
    /// Selected neurons, in the order chosen.
    pub selected: Vec<u32>,
    /// MI (bits) of the selected set after each step.
    pub mi_bits: Vec<f64>,
    /// For each step, every candidate's MI (`NaN` for neurons already selected).
    pub candidates: Vec<Vec<f64>>,
    /// Entropy of the class prior (bits).
    pub entropy_bits: f64,
    /// Rows that scored the candidates.
    pub rows_scored: usize,
}

/// One class's Gaussian, restricted to what the greedy search needs.
struct ClassModel {
    /// Training rows of the class (indices into the training split).
    rows: Vec<usize>,
    mean: Vec<f64>,
    /// Unbiased variances (the prior's diagonal).
    var: Vec<f64>,
    denominator: f64,
    log_prior: f64,
    /// Conditional variances given the selected neurons.
    cond_var: Vec<f64>,
    floor: f64,
    /// Scaled conditional covariance columns of the neurons selected so
    /// far (the Cholesky factor's columns), neuron-indexed.
    factor: Vec<Vec<f64>>,
}

impl ClassModel {
    /// The class's mean, variances and prior from its training rows; the
    /// conditional variances still need [`ClassModel::apply_floor`].
    fn fit(x: ArrayView2<'_, f32>, rows: Vec<usize>) -> ClassModel {
        let (n, d) = x.dim();
        let nc = rows.len() as f64;
        let mut mean = vec![0.0f64; d];
        for &r in &rows {
            for (s, &v) in mean.iter_mut().zip(x.row(r)) {
                *s += f64::from(v);
            }
        }
        mean.iter_mut().for_each(|s| *s /= nc);
        let mut var = vec![0.0f64; d];
        for &r in &rows {
            for ((s, &v), mu) in var.iter_mut().zip(x.row(r)).zip(&mean) {
                *s += (f64::from(v) - mu).powi(2);
            }
        }
        // Scatter diagonal (n_c − 1)·var plus the prior's var.
        let scatter_diag = var.clone();
        let unbiased = if rows.len() > 1 { nc - 1.0 } else { 1.0 };
        var.iter_mut().for_each(|s| *s /= unbiased);
        let denominator = nc + 2.0 * d as f64 + 4.0;
        let diag: Vec<f64> = scatter_diag
            .iter()
            .zip(&var)
            .map(|(s, v)| (s + v) / denominator)
            .collect();
        ClassModel {
            rows,
            mean,
            var,
            denominator,
            log_prior: (nc / n as f64).ln(),
            cond_var: diag,
            floor: 0.0,
            factor: Vec::new(),
        }
    }

    /// The scatter Σ_t (x_tj − μ_j)² of each neuron over the class's rows.
    fn scatter(&self) -> impl Iterator<Item = f64> + '_ {
        let unbiased = if self.rows.len() > 1 {
            self.rows.len() as f64 - 1.0
        } else {
            1.0
        };
        self.var.iter().map(move |v| v * unbiased)
    }

    /// Floors the variances at a small fraction of their mean, and at least
    /// at `pooled_floor`, so that a class without spread of its own (one
    /// row, identical rows) keeps finite densities.
    fn apply_floor(&mut self, pooled_floor: f64) {
        let d = self.cond_var.len().max(1) as f64;
        self.floor = (1e-10 * self.cond_var.iter().sum::<f64>() / d).max(pooled_floor);
        let floor = self.floor;
        self.cond_var.iter_mut().for_each(|v| *v = v.max(floor));
    }

    /// Column `k` of Σ_c, from every training row of the class:
    /// Σ_t x_t (x_tk − μ_k), less μ Σ_t (x_tk − μ_k), which is the centred
    /// scatter (one centred factor keeps it stable) in a loop that runs in
    /// vector registers.
    fn covariance_column(&self, x: ArrayView2<'_, f32>, k: usize) -> Vec<f64> {
        let d = x.ncols();
        let mut col = vec![0.0f64; d];
        let mut dk_sum = 0.0f64;
        for &r in &self.rows {
            let row = x.row(r);
            let row = row.as_slice().expect("activation rows are contiguous");
            let dk = f64::from(row[k]) - self.mean[k];
            dk_sum += dk;
            for (c, &v) in col.iter_mut().zip(row) {
                *c += f64::from(v) * dk;
            }
        }
        for (c, mu) in col.iter_mut().zip(&self.mean) {
            *c -= mu * dk_sum;
        }
        col[k] += self.var[k];
        for c in &mut col {
            *c /= self.denominator;
        }
        col
    }

    /// Column `k` of the class's covariance conditional on the neurons
    /// selected so far (one step of a Cholesky factorisation).
    fn conditional_covariance_column(&self, x: ArrayView2<'_, f32>, k: usize) -> Vec<f64> {
        let mut column = self.covariance_column(x, k);
        for f in &self.factor {
            let fk = f[k];
            for (c, &fj) in column.iter_mut().zip(f) {
                *c -= fj * fk;
            }
        }
        column
    }
}

/// 1e-10 × the mean variance over all neurons (1e-10 when there is none),
/// from the classes' means and scatters: the total scatter is the sum of
/// the within-class scatters and n_c (μ_c − μ)².
fn pooled_variance_floor(classes: &[ClassModel], n: usize, d: usize) -> f64 {
    let n = n.max(1) as f64;
    let mut mean = vec![0.0f64; d];
    for class in classes {
        let nc = class.rows.len() as f64;
        for (s, mu) in mean.iter_mut().zip(&class.mean) {
            *s += nc * mu;
        }
    }
    mean.iter_mut().for_each(|s| *s /= n);
    let mut scatter = vec![0.0f64; d];
    for class in classes {
        let nc = class.rows.len() as f64;
        for (((s, within), mu_c), mu) in scatter
            .iter_mut()
            .zip(class.scatter())
            .zip(&class.mean)
            .zip(&mean)
        {
            *s += within + nc * (mu_c - mu).powi(2);
        }
    }
    let mean_var = scatter.iter().sum::<f64>() / n / d.max(1) as f64;
    1e-10
        * if mean_var.is_finite() && mean_var > 0.0 {
            mean_var
        } else {
            1.0
        }
}

fn log_normal(r: f64, var: f64) -> f64 {
    -0.5 * ((2.0 * std::f64::consts::PI * var).ln() + r * r / var)
}

/// Greedy forward selection of `steps` neurons on the training rows `x`
/// (labels `y`, class ids below `n_classes`), scoring candidates on the rows
/// `scored` (indices into `x`).
pub fn greedy_selection(
    x: ArrayView2<'_, f32>,
    y: &[u32],
    n_classes: usize,
    scored: &[usize],
    steps: usize,
    diagonal: bool,
) -> Selection {
    greedy_selection_until(x, y, n_classes, scored, steps, diagonal, &|| false)
        .expect("never stopped")
}

/// [`greedy_selection`] that asks `stop` before each step and gives up
/// (`None`) when it says so.
pub fn greedy_selection_until(
    x: ArrayView2<'_, f32>,
    y: &[u32],
    n_classes: usize,
    scored: &[usize],
    steps: usize,
    diagonal: bool,
    stop: &(dyn Fn() -> bool + Sync),
) -> Option<Selection> {
    // Rows as contiguous slices (a copy only for an unusual layout).
    let x = x.as_standard_layout();
    let x = x.view();
    let (n, d) = x.dim();
    let m = scored.len();
    let counts = lca_core::data::count_classes(y, n_classes);
    // A neuron constant on the training rows adds nothing to any class's
    // density, so it is never chosen; it keeps a candidate score of NaN.
    let constant = lca_core::data::constant_columns(x);
    let mut classes: Vec<ClassModel> = (0..n_classes)
        .filter(|&c| counts[c] > 0)
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|c| {
            let rows: Vec<usize> = (0..n).filter(|&r| y[r] as usize == c).collect();
            ClassModel::fit(x, rows)
        })
        .collect();
    // Floor for conditional variances, when a class has no spread of its own
    // (one row, identical rows): a small fraction of the pooled variance, so
    // that densities stay finite.
    let pooled_floor = pooled_variance_floor(&classes, n, d);
    classes
        .iter_mut()
        .for_each(|class| class.apply_floor(pooled_floor));
    let k_classes = classes.len();
    let means: Vec<&[f64]> = classes.iter().map(|c| c.mean.as_slice()).collect();
    let mut residuals = residuals::Residuals::new(x, scored, &means);
    let class_of: Vec<usize> = {
        let mut index = vec![usize::MAX; n_classes];
        let mut next = 0;
        for c in 0..n_classes {
            if counts[c] > 0 {
                index[c] = next;
                next += 1;
            }
        }
        scored.iter().map(|&r| index[y[r] as usize]).collect()
    };
    let entropy: f64 = classes
        .iter()
        .map(|c| -c.log_prior * c.log_prior.exp())
        .sum();
    // log π_c + log N(x_S; …) per class and scored row, class-major.
    let mut base: Vec<f64> = classes
        .iter()
        .flat_map(|c| std::iter::repeat_n(c.log_prior, m))
        .collect();
    let mut selected: Vec<u32> = Vec::new();
    let mut is_selected = vec![false; d];
    let mut mi_bits = Vec::new();
    let mut candidates = Vec::new();
    for _ in 0..steps.min(d) {
        if stop() {
            return None;
        }
        let open: Vec<usize> = (0..d)
            .filter(|&j| !is_selected[j] && !constant[j])
            .collect();
        let step = gaussian::Step {
            base: &base,
            class_of: &class_of,
            classes: k_classes,
        };
        // Groups of candidates share each block of rows while it is in cache.
        let log_likelihoods: Vec<f64> = open
            .par_chunks(CANDIDATE_GROUP)
            .flat_map_iter(|group| {
                let group: Vec<gaussian::Candidate<'_>> = group
                    .iter()
                    .map(|&j| gaussian::Candidate {
                        residuals: residuals.neuron(j),
                        log_norm: classes
                            .iter()
                            .map(|c| -0.5 * (2.0 * std::f64::consts::PI * c.cond_var[j]).ln())
                            .collect(),
                        half_precision: classes.iter().map(|c| 0.5 / c.cond_var[j]).collect(),
                    })
                    .collect();
                gaussian::log_likelihoods(&step, &group)
            })
            .collect();
        let mut scores = vec![f64::NAN; d];
        for (&j, total) in open.iter().zip(log_likelihoods) {
            let bits = (entropy + total / m as f64) / std::f64::consts::LN_2;
            // Densities that underflow on extreme data leave a candidate
            // unusable, not the search.
            scores[j] = if bits.is_nan() {
                f64::NEG_INFINITY
            } else {
                bits
            };
        }
        let best_value = scores
            .iter()
            .filter(|v| !v.is_nan())
            .fold(f64::NEG_INFINITY, |a, &b| a.max(b));
        let Some(best) =
            (0..d).find(|&j| !is_selected[j] && !constant[j] && scores[j] >= best_value - TIE_BITS)
        else {
            // Only constant neurons are left.
            break;
        };
        selected.push(best as u32);
        is_selected[best] = true;
        mi_bits.push(scores[best]);
        candidates.push(scores);
        // The chosen neuron joins every class's density.
        for (k, (class, base)) in classes
            .iter()
            .zip(base.chunks_exact_mut(m.max(1)))
            .enumerate()
        {
            let var = class.cond_var[best];
            residuals.for_each_row(best, k, |i, r| {
                base[i] += log_normal(f64::from(r), var);
            });
        }
        if diagonal || selected.len() == d {
            continue;
        }
        // Rank-one update of residuals and conditional variances.
        let columns: Vec<Vec<f64>> = classes
            .par_iter()
            .map(|class| class.conditional_covariance_column(x, best))
            .collect();
        let pivots: Vec<f64> = classes.iter().map(|c| c.cond_var[best]).collect();
        residuals.subtract_multiples(best, &is_selected, |k, j| {
            (columns[k][j] / pivots[k]) as f32
        });
        for ((class, column), pivot) in classes.iter_mut().zip(columns).zip(pivots) {
            for j in (0..d).filter(|&j| !is_selected[j]) {
                class.cond_var[j] =
                    (class.cond_var[j] - column[j] * column[j] / pivot).max(class.floor);
            }
            let scale = pivot.sqrt();
            class
                .factor
                .push(column.iter().map(|c| c / scale).collect());
        }
    }
    Some(Selection {
        selected,
        mi_bits,
        candidates,
        entropy_bits: entropy / std::f64::consts::LN_2,
        rows_scored: m,
    })
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
            .count() as u64;
        lca_core::memory::ensure_fits(
            &format!(
                "the Gaussian ranker's residuals ({classes} classes × {} rows × {d} neurons)",
                scored.len()
            ),
            classes
                .checked_mul(scored.len() as u64)
                .and_then(|c| c.checked_mul(d as u64))
                .and_then(|c| lca_core::memory::bytes_of(c, 4)),
            "lower `max_rows`, or rank fewer neurons or classes",
        )?;
        let selection = cx
            .install(|| {
                greedy_selection_until(
                    train.acts.view(),
                    train.labels,
                    data.n_classes(),
                    &scored,
                    steps,
                    self.diagonal,
                    &|| cx.cancelled(),
                )
            })
            .ok_or(lca_core::Error::Cancelled)?;
        // The unselected neurons follow, by their score at the last step;
        // constant ones (NaN) last, in index order.
        let mut order = selection.selected.clone();
        let mut is_selected = vec![false; d];
        for &j in &selection.selected {
            is_selected[j as usize] = true;
        }
        let last_score = |j: u32| {
            selection
                .candidates
                .last()
                .map_or(0.0, |last| last[j as usize])
        };
        let key = |j: u32| {
            let v = last_score(j);
            if v.is_nan() { f64::NEG_INFINITY } else { v }
        };
        let mut rest: Vec<u32> = (0..d as u32)
            .filter(|&j| !is_selected[j as usize])
            .collect();
        rest.sort_by(|&a, &b| {
            let nan = |j: u32| last_score(j).is_nan();
            nan(a)
                .cmp(&nan(b))
                .then(key(b).total_cmp(&key(a)))
                .then(a.cmp(&b))
        });
        order.extend(rest);
        let mut details = serde_json::Map::new();
        details.insert("selected".into(), selection.selected.len().into());
        details.insert("mi_bits".into(), selection.mi_bits.clone().into());
        details.insert("entropy_bits".into(), selection.entropy_bits.into());
        details.insert("rows_scored".into(), selection.rows_scored.into());
        details.insert("diagonal".into(), self.diagonal.into());
        Ok(NeuronRanking::from_order(order)?.with_details(details))
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
    use lca_core::ndarray::Array2;
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
        let all: Vec<usize> = (0..train.labels.len()).collect();
        let sel = greedy_selection(train.acts.view(), train.labels, 3, &all, 6, false);
        for (step, scores) in sel.candidates.iter().enumerate() {
            for j in 0..9 {
                if sel.selected[..step].contains(&(j as u32)) {
                    assert!(scores[j].is_nan());
                    continue;
                }
                let mut set: Vec<usize> =
                    sel.selected[..step].iter().map(|&s| s as usize).collect();
                set.push(j);
                let want = slow_mi(train.acts.view(), train.labels, 3, &set);
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
