//! Greedy selection by a Gaussian probe's mutual information (Torroba
//! Hennigen, Williams & Cotterell 2020): the search behind the `gaussian`
//! ranker, and behind `lca store rank --method gaussian`.
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
//! neuron that maximises MI(S ∪ {j}); candidates within 1e-6 bits of the
//! best count as tied and the lowest index wins (NeuroX keeps the first
//! strict maximum). The scores are exact to about 1e-7 bits (the residuals
//! and the softmax sums are single precision), so a narrower tie would let
//! rounding pick between two equally good neurons. After `steps` steps the
//! rest follow in the order of their MI as candidates in the last step.
//!
//! **Speed.** NeuroX refits a |S|-dimensional Gaussian per candidate and
//! class at every step (cubic in |S|). Here each class keeps, for every
//! neuron, its residual given the selected neurons and its conditional
//! variance; adding a neuron is a rank-one update of both (one step of a
//! Cholesky factorisation), so scoring a candidate costs O(M·C) and a step
//! O(M·C·D), whatever |S| is; that loop runs in vector registers, with the
//! residuals laid out for it ([`crate::kernels::gaussian`]). The residuals
//! take C·M·D·4 bytes for M scored rows.
//!
//! **Two sources of moments.** The search reads the data through the
//! class counts, means and scatter matrices, and the scored rows. In
//! memory ([`greedy_selection_until`]) the scatter column of each selected
//! neuron is summed from the rows when it is chosen, every class's in one
//! pass. From statistics that merge ([`greedy_selection_from_moments`]) the
//! scatter matrices are summed up front, per shard, and the scored rows are
//! a seeded sample drawn across shards.
//!
//! **Degenerate neurons.** A neuron constant within a class has zero
//! variance there; its conditional variance is floored at 1e-10 × the
//! class's mean variance (NeuroX's density would be undefined). A neuron
//! constant on all training rows is never selected.

mod residuals;

use lca_core::data::{GaussianMoments, NeuronRanking};
use lca_core::error::{Error, Result};
use ndarray::ArrayView2;
use rayon::prelude::*;

use crate::kernels::gaussian;

/// MI differences below this (bits) are ties: ten times the scores'
/// rounding.
const TIE_BITS: f64 = 1e-6;

/// Candidates scored together over each block of rows (a unit of parallel
/// work, too).
const CANDIDATE_GROUP: usize = 16;

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

impl Selection {
    /// The ranking of `d` neurons: the selected ones in the order chosen,
    /// then the rest by their score at the last step, constant ones (never
    /// scored) last, in index order. Its details name the selection.
    ///
    /// # Errors
    /// When a selected neuron is not below `d`.
    pub fn ranking(&self, d: usize, diagonal: bool) -> Result<NeuronRanking> {
        let mut order = self.selected.clone();
        let mut is_selected = vec![false; d];
        for &j in &self.selected {
            if let Some(s) = is_selected.get_mut(j as usize) {
                *s = true;
            }
        }
        let last_score = |j: u32| self.candidates.last().map_or(0.0, |last| last[j as usize]);
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
        let mut details = lca_core::serde_json::Map::new();
        details.insert("selected".into(), self.selected.len().into());
        details.insert("mi_bits".into(), self.mi_bits.clone().into());
        details.insert("entropy_bits".into(), self.entropy_bits.into());
        details.insert("rows_scored".into(), self.rows_scored.into());
        details.insert("diagonal".into(), diagonal.into());
        Ok(NeuronRanking::from_order(order)?.with_details(details))
    }
}

/// Refuses residuals (classes × scored rows × neurons × 4 bytes) that would
/// not fit in memory.
///
/// # Errors
/// When they would not.
pub fn ensure_residuals_fit(classes: usize, rows: usize, neurons: usize) -> Result<()> {
    lca_core::memory::ensure_fits(
        &format!(
            "the Gaussian ranker's residuals ({classes} classes × {rows} rows × {neurons} neurons)"
        ),
        (classes as u64)
            .checked_mul(rows as u64)
            .and_then(|c| c.checked_mul(neurons as u64))
            .and_then(|c| lca_core::memory::bytes_of(c, 4)),
        "lower `max_rows`, or rank fewer neurons or classes",
    )
}

/// Column `k` of each class's scatter matrix, Σ_{t∈c} (x_t − μ_c)(x_tk − μ_ck),
/// for the classes present (indexed from 0 in class order).
trait Scatter: Sync {
    fn columns(&self, k: usize) -> Vec<Vec<f64>>;
}

/// Rows per part of the pass that sums scatter columns: a unit of parallel
/// work, fixed so that the sums do not depend on the thread count.
const SCATTER_ROWS: usize = 4096;

/// The scatter of the classes' rows in memory, summed when asked.
struct RowScatter<'a> {
    x: ArrayView2<'a, f32>,
    /// The index (among the classes present) of each row's class.
    class_of: Vec<usize>,
    means: Vec<Vec<f64>>,
}

impl Scatter for RowScatter<'_> {
    /// One pass over the rows in order (which the prefetcher follows; a
    /// pass per class over its scattered rows waited on memory), in parts
    /// of [`SCATTER_ROWS`] rows whose sums are added in order.
    fn columns(&self, k: usize) -> Vec<Vec<f64>> {
        let data = self.x.as_slice().expect("activation rows are contiguous");
        let (width, classes) = (self.x.ncols(), self.means.len());
        let means: Vec<&[f64]> = self.means.iter().map(Vec::as_slice).collect();
        let starts: Vec<usize> = (0..self.x.nrows()).step_by(SCATTER_ROWS).collect();
        let parts: Vec<gaussian::ScatterColumns> = starts
            .par_iter()
            .map(|&start| {
                let end = (start + SCATTER_ROWS).min(self.x.nrows());
                let mut part = gaussian::ScatterColumns::new(classes, width);
                part.add_rows(
                    &data[start * width..end * width],
                    &self.class_of[start..end],
                    k,
                    &means,
                );
                part
            })
            .collect();
        let mut total = gaussian::ScatterColumns::new(classes, width);
        for part in &parts {
            total.add(part);
        }
        total.finish(&means)
    }
}

/// The scatter matrices of merged statistics.
struct MomentScatter<'a> {
    moments: &'a GaussianMoments,
    /// The class id of each class present.
    class_ids: Vec<usize>,
}

impl Scatter for MomentScatter<'_> {
    fn columns(&self, k: usize) -> Vec<Vec<f64>> {
        self.class_ids
            .iter()
            .map(|&id| {
                (0..self.moments.k())
                    .map(|j| self.moments.scatter_at(id, j, k))
                    .collect()
            })
            .collect()
    }
}

/// One class's Gaussian, restricted to what the greedy search needs.
struct ClassModel {
    rows: f64,
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
    /// The class's variances and prior from its row count and scatter
    /// diagonal, over `n` rows in all; the conditional variances still need
    /// [`ClassModel::apply_floor`].
    fn new(rows: usize, scatter_diag: &[f64], n: usize) -> ClassModel {
        let d = scatter_diag.len();
        let nc = rows as f64;
        let unbiased = if rows > 1 { nc - 1.0 } else { 1.0 };
        let var: Vec<f64> = scatter_diag.iter().map(|s| s / unbiased).collect();
        let denominator = nc + 2.0 * d as f64 + 4.0;
        let cond_var = scatter_diag
            .iter()
            .zip(&var)
            .map(|(s, v)| (s + v) / denominator)
            .collect();
        ClassModel {
            rows: nc,
            var,
            denominator,
            log_prior: (nc / n as f64).ln(),
            cond_var,
            floor: 0.0,
            factor: Vec::new(),
        }
    }

    /// The scatter Σ_t (x_tj − μ_j)² of each neuron over the class's rows.
    fn scatter(&self) -> impl Iterator<Item = f64> + '_ {
        let unbiased = if self.rows > 1.0 {
            self.rows - 1.0
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

    /// Column `k` of the class's covariance conditional on the neurons
    /// selected so far (one step of a Cholesky factorisation), from its
    /// scatter column.
    fn conditional_covariance_column(&self, mut column: Vec<f64>, k: usize) -> Vec<f64> {
        column[k] += self.var[k];
        for c in &mut column {
            *c /= self.denominator;
        }
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
fn pooled_variance_floor(classes: &[ClassModel], means: &[&[f64]], n: usize, d: usize) -> f64 {
    let n = n.max(1) as f64;
    let mut mean = vec![0.0f64; d];
    for (class, class_mean) in classes.iter().zip(means) {
        for (s, mu) in mean.iter_mut().zip(*class_mean) {
            *s += class.rows * mu;
        }
    }
    mean.iter_mut().for_each(|s| *s /= n);
    let mut scatter = vec![0.0f64; d];
    for (class, class_mean) in classes.iter().zip(means) {
        for (((s, within), mu_c), mu) in scatter
            .iter_mut()
            .zip(class.scatter())
            .zip(*class_mean)
            .zip(&mean)
        {
            *s += within + class.rows * (mu_c - mu).powi(2);
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

/// What the search reads, from either source.
struct Search<'a> {
    /// Training rows in all.
    n: usize,
    classes: Vec<ClassModel>,
    /// The means of the classes present.
    means: Vec<&'a [f64]>,
    scatter: &'a dyn Scatter,
    constant: Vec<bool>,
    /// Rows `scored` of `scored_x` score the candidates; `class_of` gives
    /// the index (among the classes present) of each one's class.
    scored_x: ArrayView2<'a, f32>,
    scored: &'a [usize],
    class_of: Vec<usize>,
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
    let n = x.nrows();
    let counts = lca_core::data::count_classes(y, n_classes);
    let present: Vec<usize> = (0..n_classes).filter(|&c| counts[c] > 0).collect();
    let rows: Vec<Vec<usize>> = present
        .iter()
        .map(|&c| (0..n).filter(|&r| y[r] as usize == c).collect())
        .collect();
    let moments: Vec<(Vec<f64>, Vec<f64>)> =
        rows.par_iter().map(|rows| class_moments(x, rows)).collect();
    let class_index = class_index(&present, n_classes);
    let scatter = RowScatter {
        x,
        class_of: y.iter().map(|&c| class_index[c as usize]).collect(),
        means: moments.iter().map(|(mean, _)| mean.clone()).collect(),
    };
    let classes = rows
        .iter()
        .zip(&moments)
        .map(|(rows, (_, diag))| ClassModel::new(rows.len(), diag, n))
        .collect();
    search(
        Search {
            n,
            classes,
            means: scatter.means.iter().map(Vec::as_slice).collect(),
            scatter: &scatter,
            // A neuron constant on the training rows adds nothing to any
            // class's density, so it is never chosen.
            constant: lca_core::data::constant_columns(x),
            scored_x: x,
            scored,
            class_of: scored.iter().map(|&r| class_index[y[r] as usize]).collect(),
        },
        steps,
        diagonal,
        stop,
    )
}

/// Greedy forward selection of `steps` of the neurons that `moments`
/// covers (the selection's indices are into `moments.neurons`), scoring
/// candidates on its row sample.
///
/// # Errors
/// When the moments count fewer than two classes, or their sample is not
/// complete (statistics of some shards only, not yet merged).
pub fn greedy_selection_from_moments(
    moments: &GaussianMoments,
    steps: usize,
    diagonal: bool,
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<Option<Selection>> {
    moments.check()?;
    let sample = &moments.sample;
    if !sample.is_complete() || moments.rows != sample.population {
        return Err(Error::input(format!(
            "the Gaussian moments cover {} of the {} rows their sample is drawn from ({} of {} \
             sampled rows); merge the statistics of every shard first",
            moments.rows,
            sample.population,
            sample.positions.len(),
            sample.size
        )));
    }
    let n_classes = moments.classes.len();
    let present: Vec<usize> = (0..n_classes)
        .filter(|&c| moments.class_rows[c] > 0)
        .collect();
    if present.len() < 2 {
        return Err(Error::input(format!(
            "the Gaussian ranking needs rows of at least two classes, and these statistics \
             count {} (of {n_classes})",
            present.len()
        )));
    }
    let k = moments.k();
    let n = usize::try_from(moments.rows).unwrap_or(usize::MAX);
    let classes = present
        .iter()
        .map(|&c| {
            let diag: Vec<f64> = (0..k).map(|j| moments.scatter_at(c, j, j)).collect();
            ClassModel::new(moments.class_rows[c] as usize, &diag, n)
        })
        .collect();
    let scored_x = ArrayView2::from_shape((sample.positions.len(), k), &sample.values)
        .map_err(|_| Error::input("the Gaussian row sample does not fit its neurons"))?;
    let scored: Vec<usize> = (0..sample.positions.len()).collect();
    let class_index = class_index(&present, n_classes);
    let scatter = MomentScatter {
        moments,
        class_ids: present.clone(),
    };
    Ok(search(
        Search {
            n,
            classes,
            means: present
                .iter()
                .map(|&c| &moments.means[c * k..(c + 1) * k])
                .collect(),
            scatter: &scatter,
            constant: moments.constant(),
            scored_x,
            scored: &scored,
            class_of: sample
                .labels
                .iter()
                .map(|&l| class_index[l as usize])
                .collect(),
        },
        steps,
        diagonal,
        stop,
    ))
}

/// The index of each class id among the classes present (`usize::MAX` for
/// absent ones).
fn class_index(present: &[usize], n_classes: usize) -> Vec<usize> {
    let mut index = vec![usize::MAX; n_classes];
    for (i, &c) in present.iter().enumerate() {
        index[c] = i;
    }
    index
}

/// A class's mean and scatter diagonal from its rows, in two passes.
fn class_moments(x: ArrayView2<'_, f32>, rows: &[usize]) -> (Vec<f64>, Vec<f64>) {
    let d = x.ncols();
    let nc = rows.len() as f64;
    let mut mean = vec![0.0f64; d];
    for &r in rows {
        for (s, &v) in mean.iter_mut().zip(x.row(r)) {
            *s += f64::from(v);
        }
    }
    mean.iter_mut().for_each(|s| *s /= nc);
    let mut diag = vec![0.0f64; d];
    for &r in rows {
        for ((s, &v), mu) in diag.iter_mut().zip(x.row(r)).zip(&mean) {
            *s += (f64::from(v) - mu).powi(2);
        }
    }
    (mean, diag)
}

/// Every residual's pending loss of a multiple of the chosen neuron's.
struct PendingUpdate {
    /// The chosen neuron's residuals, in the residuals' layout.
    chosen: Vec<f32>,
    /// Per class, the multiple each neuron loses (neuron-indexed).
    multiples: Vec<Vec<f32>>,
}

fn search(
    mut s: Search<'_>,
    steps: usize,
    diagonal: bool,
    stop: &(dyn Fn() -> bool + Sync),
) -> Option<Selection> {
    let d = s.constant.len();
    let m = s.scored.len();
    // Floor for conditional variances, when a class has no spread of its own
    // (one row, identical rows): a small fraction of the pooled variance, so
    // that densities stay finite.
    let pooled_floor = pooled_variance_floor(&s.classes, &s.means, s.n, d);
    s.classes
        .iter_mut()
        .for_each(|class| class.apply_floor(pooled_floor));
    let classes = &mut s.classes;
    let k_classes = classes.len();
    // Scored rows sorted by class, so that each block of rows is within
    // reach of few classes (see `kernels::gaussian`); the order of the rows
    // changes nothing else.
    let mut by_class: Vec<usize> = (0..m).collect();
    by_class.sort_by_key(|&i| (s.class_of[i], i));
    let scored: Vec<usize> = by_class.iter().map(|&i| s.scored[i]).collect();
    let class_of: Vec<usize> = by_class.iter().map(|&i| s.class_of[i]).collect();
    let mut residuals = residuals::Residuals::new(s.scored_x, &scored, &s.means);
    let entropy: f64 = classes
        .iter()
        .map(|c| -c.log_prior * c.log_prior.exp())
        .sum();
    // log π_c + log N(x_S; …) per class and scored row, class-major.
    let mut base: Vec<f64> = classes
        .iter()
        .flat_map(|c| std::iter::repeat_n(c.log_prior, m))
        .collect();
    // The rank-one update of the last selection, which the next step's
    // scoring applies to each candidate as it reads it.
    let mut pending: Option<PendingUpdate> = None;
    let mut selected: Vec<u32> = Vec::new();
    let mut is_selected = vec![false; d];
    let mut mi_bits = Vec::new();
    let mut candidates = Vec::new();
    for _ in 0..steps.min(d) {
        if stop() {
            return None;
        }
        let open: Vec<usize> = (0..d)
            .filter(|&j| !is_selected[j] && !s.constant[j])
            .collect();
        let update = pending.take();
        let weights = gaussian::Weights::of(&base, &class_of, k_classes);
        let step = gaussian::Step {
            base: &base,
            weights: &weights,
            class_of: &class_of,
            classes: k_classes,
            chosen: update.as_ref().map(|p| p.chosen.as_slice()),
        };
        let mut scoring: Vec<gaussian::Candidate<'_>> = residuals
            .neurons_mut(&open)
            .into_iter()
            .zip(&open)
            .map(|(residuals, &j)| gaussian::Candidate {
                residuals,
                log_norm: classes
                    .iter()
                    .map(|c| -0.5 * (2.0 * std::f64::consts::PI * c.cond_var[j]).ln())
                    .collect(),
                half_precision: classes.iter().map(|c| 0.5 / c.cond_var[j]).collect(),
                multiples: update
                    .as_ref()
                    .map_or_else(Vec::new, |p| p.multiples.iter().map(|m| m[j]).collect()),
            })
            .collect();
        // Groups of candidates share each block of rows while it is in cache.
        let log_likelihoods: Vec<f64> = scoring
            .par_chunks_mut(CANDIDATE_GROUP)
            .flat_map_iter(|group| gaussian::log_likelihoods(&step, group))
            .collect();
        drop(scoring);
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
        let Some(best) = (0..d)
            .find(|&j| !is_selected[j] && !s.constant[j] && scores[j] >= best_value - TIE_BITS)
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
            // log N(r; 0, v), its logarithm taken once per class.
            let var = class.cond_var[best];
            let log_norm = -0.5 * (2.0 * std::f64::consts::PI * var).ln();
            residuals.for_each_row(best, k, |i, r| {
                let r = f64::from(r);
                base[i] += log_norm - 0.5 * r * r / var;
            });
        }
        if diagonal || selected.len() == d {
            continue;
        }
        // Rank-one update of residuals and conditional variances.
        let scatter = s.scatter;
        let columns: Vec<Vec<f64>> = classes
            .par_iter()
            .zip(scatter.columns(best))
            .map(|(class, column)| class.conditional_covariance_column(column, best))
            .collect();
        let pivots: Vec<f64> = classes.iter().map(|c| c.cond_var[best]).collect();
        pending = Some(PendingUpdate {
            chosen: residuals.neuron(best).to_vec(),
            multiples: columns
                .iter()
                .zip(&pivots)
                .map(|(column, pivot)| column.iter().map(|c| (c / pivot) as f32).collect())
                .collect(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use lca_core::data::{RowSample, Split};
    use ndarray::{Axis, Slice};

    /// Moments of the training rows of `x` over all its neurons, summed in
    /// blocks of `block` rows, with every row in the sample.
    fn moments(x: ArrayView2<'_, f32>, y: &[u32], classes: usize, block: usize) -> GaussianMoments {
        let n = x.nrows() as u64;
        let names = (0..classes).map(|c| c.to_string()).collect();
        let drawn = RowSample::draw(1, n, x.nrows());
        let mut m = GaussianMoments::new(names, (0..x.ncols()).collect(), 1, n, x.nrows());
        for start in (0..x.nrows()).step_by(block) {
            let end = (start + block).min(x.nrows());
            let rows = x.slice_axis(Axis(0), Slice::from(start..end));
            m.push_rows(start as u64, rows, &y[start..end], &drawn)
                .unwrap();
        }
        m
    }

    #[test]
    fn merged_moments_select_what_the_rows_select() {
        for diagonal in [false, true] {
            let data = lca_testkit::planted(300, 12, 4, 2, 3);
            let train = data.split(Split::Train);
            let acts = train.acts.view();
            let (x, y) = (acts.view(), train.labels);
            let all: Vec<usize> = (0..y.len()).collect();
            let rows = greedy_selection(x, y, 4, &all, 8, diagonal);
            for block in [7, 64, 1000] {
                let from =
                    greedy_selection_from_moments(&moments(x, y, 4, block), 8, diagonal, &|| false)
                        .unwrap()
                        .unwrap();
                assert_eq!(from.selected, rows.selected, "blocks of {block}");
                assert_eq!(from.rows_scored, rows.rows_scored);
                for (a, b) in from.mi_bits.iter().zip(&rows.mi_bits) {
                    assert!((a - b).abs() < 1e-9, "{a} {b}");
                }
                let (ra, rb) = (
                    from.ranking(12, diagonal).unwrap(),
                    rows.ranking(12, diagonal).unwrap(),
                );
                assert_eq!(ra.order(), rb.order());
            }
        }
    }

    #[test]
    fn incomplete_or_one_class_moments_are_refused() {
        let data = lca_testkit::planted(200, 6, 3, 1, 5);
        let train = data.split(Split::Train);
        let acts = train.acts.view();
        let (x, y) = (acts.view(), train.labels);
        let mut part = moments(x, y, 3, 50);
        part.rows -= 1;
        part.class_rows[y[0] as usize] -= 1;
        let err = greedy_selection_from_moments(&part, 3, false, &|| false).unwrap_err();
        assert!(
            err.to_string()
                .contains("merge the statistics of every shard"),
            "{err}"
        );
        let one = vec![0u32; y.len()];
        let err = greedy_selection_from_moments(&moments(x, &one, 3, 50), 3, false, &|| false)
            .unwrap_err();
        assert!(err.to_string().contains("two classes"), "{err}");
    }

    #[test]
    fn the_ranking_puts_the_selection_first_and_constant_neurons_last() {
        let selection = Selection {
            selected: vec![3, 1],
            mi_bits: vec![0.5, 0.7],
            candidates: vec![vec![0.0; 5], vec![0.1, f64::NAN, 0.2, f64::NAN, f64::NAN]],
            entropy_bits: 1.0,
            rows_scored: 10,
        };
        let ranking = selection.ranking(5, false).unwrap();
        assert_eq!(ranking.order(), &[3, 1, 2, 0, 4]);
    }
}
