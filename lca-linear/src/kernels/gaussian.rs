//! The Gaussian probe's candidate scores: for every candidate neuron,
//! Σ_i log p(y_i | x_i,S∪{j}) over the scored rows, where each class's
//! log density is a base value (the selected neurons) plus the candidate's
//! conditional normal term.
//!
//! The work is rows × classes × candidates exponentials per step, so it is
//! laid out for vector registers: the per-class values of a block of rows
//! are contiguous (class-major), the exponentials are plain arithmetic, and
//! the loops run across rows, so each lane holds one row.
//!
//! **One pass, in single precision.** The softmax normaliser of row i is
//! written as
//!
//! ```text
//! Σ_k e^(b_k + ℓ_k − h_k r_k²) = e^(m_i + L) · Σ_k w_k · e^(ℓ_k − L − h_k r_k²)
//! ```
//!
//! with b the base values, m_i = max_k b_k, w_k = e^(b_k − m_i) (the same for
//! every candidate of a step, so their logarithms are computed once per
//! step: [`Weights`]), ℓ_k = −½ log(2π v_k) and L = max_k ℓ_k (the
//! candidate's own constants). Every exponent, log w_k + ℓ_k − L − h_k r_k²,
//! is then at most 0, and one of them is near 0, so the sum needs no running
//! maximum: one pass per class, in `f32` (sixteen rows per AVX-512
//! register), whose rounding (about 1e-7 relative) matches that of the `f32`
//! residuals. The weight stays in the exponent rather than multiplying the
//! exponential, so no product is ever subnormal (which costs a microcode
//! assist per element on Intel CPUs). The row's own class term and the
//! totals are in `f64`. A row whose sum falls below [`TINY_SUM`] (every
//! class far off, an outlier) is summed again in `f64` with the usual
//! maximum.
//!
//! **Classes out of reach are skipped.** A class whose log weight is below
//! −[`REACH`] on every row of a block adds at most e^−45 per row to the sum,
//! whatever the candidate (every other factor is at most 1). Such classes
//! are left out of the block's sums. Each row keeps a bound τ on the weight
//! left out, and a row whose sum is not at least τ × [`TAIL_RATIO`] is
//! summed again in `f64` over every class, so a skip never moves a row's sum
//! by more than a billionth. Scored rows are sorted by class, so a block
//! holds rows of one or two classes, and the classes within reach of its
//! rows are few once some neurons are selected. (The update below still
//! runs over every class: the skipped classes come back into reach when a
//! later neuron favours them.)
//!
//! **The previous step's update rides along.** When a neuron is selected,
//! every candidate's residuals lose a multiple of the chosen neuron's
//! residuals (a rank-one update). That update reads and writes every
//! residual, as the scoring reads them; done in its own pass it cost a
//! quarter of the search. Here the scoring applies it to each run of 64
//! values just before it reads them, while they are in the first-level
//! cache.
//!
//! A block of rows is scored for a group of candidates in turn, so the
//! block's weights and the chosen neuron's residuals stay in cache while the
//! candidates' residuals stream past. Each candidate's total is still summed
//! row by row in order, so the result does not depend on the grouping, the
//! thread count or the instruction set: every build does the same
//! operations on each element.

use super::elementwise::exp_nonpositive as exp_nonpositive_f32;
use super::exp_nonpositive;

/// Rows per block: a block's weights and residuals (classes × 64 × 4 bytes
/// each) stay in the first- or second-level cache.
pub const ROW_BLOCK: usize = 64;

/// The blocks of `rows` rows, as (first row, length); all but the last hold
/// [`ROW_BLOCK`] rows.
pub fn row_blocks(rows: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..rows)
        .step_by(ROW_BLOCK)
        .map(move |start| (start, ROW_BLOCK.min(rows - start)))
}

/// Rows whose softmax sums are multiplied before one logarithm. Every sum
/// lies in [[`TINY_SUM`], classes], so a product of 8 stays within the
/// range of `f64` for any class count a label set has (below 10^38).
const PRODUCT_ROWS: usize = 8;

/// Sums below this are redone in `f64`: the `f32` exponentials stop at
/// e^−87 ≈ 1.6e-38, so a sum must be far above that for what the floor adds
/// (at most classes × 1.6e-38) to be below its rounding.
const TINY_SUM: f32 = 1e-25;

/// How far (nats) below a row's most likely class a class's log weight must
/// be, on every row of a block, to be skipped there.
const REACH: f32 = 45.0;

/// A row whose sum is below `TAIL_RATIO` × the weight its skipped classes
/// hold is summed again over every class.
const TAIL_RATIO: f64 = 1e9;

/// What a step's base values give every candidate: log weights, each
/// block's classes within reach, and what the others hold per row.
pub struct Weights {
    /// base − the row's largest base, of each class and row, in the
    /// residuals' blocked layout.
    log_weights: Vec<f32>,
    /// The row's largest base value, per row.
    row_max: Vec<f64>,
    /// Per block of rows, the classes summed.
    reach: Vec<Vec<usize>>,
    /// Per row, a bound on Σ e^(log weight) over the classes its block skips.
    tail: Vec<f64>,
}

impl Weights {
    /// The weights of base values `base` (class-major, `classes × rows`)
    /// for rows of the classes `class_of`.
    pub fn of(base: &[f64], class_of: &[usize], classes: usize) -> Weights {
        let rows = class_of.len();
        let mut log_weights = vec![0.0f32; classes * rows];
        let mut row_max = vec![f64::NEG_INFINITY; rows];
        for k in 0..classes {
            for (m, &b) in row_max.iter_mut().zip(&base[k * rows..(k + 1) * rows]) {
                *m = m.max(b);
            }
        }
        let mut reach = Vec::new();
        let mut tail = vec![0.0f64; rows];
        let mut skipped_max = [f32::NEG_INFINITY; ROW_BLOCK];
        for (start, len) in row_blocks(rows) {
            let mut within = vec![false; classes];
            for &own in &class_of[start..start + len] {
                within[own] = true;
            }
            let skipped_max = &mut skipped_max[..len];
            skipped_max.fill(f32::NEG_INFINITY);
            let mut skipped = 0usize;
            for (k, within) in within.iter_mut().enumerate() {
                let out = &mut log_weights[start * classes + k * len..][..len];
                let base = &base[k * rows + start..][..len];
                for ((w, &b), &m) in out.iter_mut().zip(base).zip(&row_max[start..start + len]) {
                    *w = (b - m) as f32;
                    *within |= *w >= -REACH;
                }
                if !*within {
                    skipped += 1;
                    for (s, &w) in skipped_max.iter_mut().zip(&*out) {
                        *s = s.max(w);
                    }
                }
            }
            // The skipped classes' weight, bounded by their count times
            // the largest (one exponential per row).
            if skipped > 0 {
                for (t, &w) in tail[start..start + len].iter_mut().zip(&*skipped_max) {
                    *t = skipped as f64 * f64::from(w).exp();
                }
            }
            reach.push((0..classes).filter(|&k| within[k]).collect());
        }
        Weights {
            log_weights,
            row_max,
            reach,
            tail,
        }
    }

    /// The mean number of classes summed per block.
    #[cfg(test)]
    fn mean_reach(&self) -> f64 {
        self.reach.iter().map(Vec::len).sum::<usize>() as f64 / self.reach.len().max(1) as f64
    }
}

/// What every candidate of a step shares.
pub struct Step<'a> {
    /// log π_c + log N(x_S; …) of each class and scored row, class-major:
    /// `base[k·rows + i]`.
    pub base: &'a [f64],
    /// The weights of `base`.
    pub weights: &'a Weights,
    /// The class index of each scored row (one entry per row).
    pub class_of: &'a [usize],
    /// Classes present.
    pub classes: usize,
    /// The residuals of the neuron chosen in the previous step (blocked
    /// layout), whose multiples every candidate's residuals lose before they
    /// are scored; `None` when there is no update to apply.
    pub chosen: Option<&'a [f32]>,
}

/// One candidate neuron: its residuals given the selected neurons, for
/// every class and scored row, in blocks of [`ROW_BLOCK`] rows: the block
/// that starts at row `s` and holds `len` rows keeps class `k` at
/// `residuals[s·classes + k·len ..][..len]`; and the constants of its
/// conditional density per class.
pub struct Candidate<'a> {
    /// See above; updated in place by the step's pending update.
    pub residuals: &'a mut [f32],
    /// −½ log(2π v) per class, for the conditional variance v.
    pub log_norm: Vec<f64>,
    /// 1 / (2v) per class.
    pub half_precision: Vec<f64>,
    /// Per class, the multiple of the chosen neuron's residuals to subtract
    /// (read only when the step has a chosen neuron).
    pub multiples: Vec<f32>,
}

dispatched! {
    /// Σ_i log p(y_i | x_i,S∪{j}) (nats) for each candidate, in order, after
    /// applying the step's pending update to each candidate's residuals.
    pub fn log_likelihoods(
        step: &Step<'_>,
        candidates: &mut [Candidate<'_>],
    ) -> Vec<f64> => log_likelihoods_portable;
}

/// A candidate's constants, shifted so that the largest ℓ_k is 0.
struct Shifted {
    /// ℓ_k − L in `f64` (the own class's term) and `f32` (the sum).
    log_norm: Vec<f64>,
    log_norm_f32: Vec<f32>,
    half_precision_f32: Vec<f32>,
    /// L = max_k ℓ_k.
    shift: f64,
}

impl Shifted {
    fn of(candidate: &Candidate<'_>) -> Shifted {
        let shift = candidate
            .log_norm
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        let log_norm: Vec<f64> = candidate.log_norm.iter().map(|l| l - shift).collect();
        Shifted {
            log_norm_f32: log_norm.iter().map(|&l| l as f32).collect(),
            half_precision_f32: candidate.half_precision.iter().map(|&h| h as f32).collect(),
            log_norm,
            shift,
        }
    }
}

#[inline(always)]
fn log_likelihoods_portable(step: &Step<'_>, candidates: &mut [Candidate<'_>]) -> Vec<f64> {
    let (m, classes) = (step.class_of.len(), step.classes);
    let shifted: Vec<Shifted> = candidates.iter().map(Shifted::of).collect();
    let mut sums = [0.0f32; ROW_BLOCK];
    let mut totals = vec![0.0f64; candidates.len()];
    for (start, len) in row_blocks(m) {
        let span = start * classes..(start + len) * classes;
        let log_weights = &step.weights.log_weights[span.clone()];
        let reach = &step.weights.reach[start / ROW_BLOCK];
        let chosen = step.chosen.map(|c| &c[span.clone()]);
        let sums = &mut sums[..len];
        for ((candidate, constants), total) in candidates.iter_mut().zip(&shifted).zip(&mut totals)
        {
            let Candidate {
                residuals,
                half_precision,
                multiples,
                ..
            } = candidate;
            let block = &mut residuals[span.clone()];
            sums.fill(0.0);
            if let Some(chosen) = chosen {
                for (k, &multiple) in multiples.iter().enumerate() {
                    let run = &mut block[k * len..(k + 1) * len];
                    for (r, &c) in run.iter_mut().zip(&chosen[k * len..(k + 1) * len]) {
                        *r -= multiple * c;
                    }
                }
            }
            for &k in reach {
                let run = &block[k * len..(k + 1) * len];
                let (log_norm, half_precision) =
                    (constants.log_norm_f32[k], constants.half_precision_f32[k]);
                for ((s, &r), &w) in sums
                    .iter_mut()
                    .zip(run)
                    .zip(&log_weights[k * len..(k + 1) * len])
                {
                    *s += exp_nonpositive_f32((-r * r).mul_add(half_precision, log_norm) + w);
                }
            }
            for first in (0..len).step_by(PRODUCT_ROWS) {
                let last = (first + PRODUCT_ROWS).min(len);
                let mut product = 1.0f64;
                for i in first..last {
                    let row = start + i;
                    let own = step.class_of[row];
                    let sum = f64::from(sums[i]);
                    if sums[i] >= TINY_SUM && step.weights.tail[row] * TAIL_RATIO <= sum {
                        let r = f64::from(block[own * len + i]);
                        *total += step.base[own * m + row] - step.weights.row_max[row]
                            + (-r * r).mul_add(half_precision[own], constants.log_norm[own]);
                        product *= sum;
                    } else {
                        *total += exact_row(step, half_precision, constants, block, len, i, row);
                    }
                }
                *total -= product.ln();
            }
        }
    }
    totals
}

/// Column `k` of every class's centred scatter matrix,
/// Σ_{t∈c} (x_t − μ_c)(x_tk − μ_ck), summed over rows as
/// Σ_t x_t (x_tk − μ_ck) − μ_c Σ_t (x_tk − μ_ck) (one centred factor keeps it
/// stable, and the inner loop is a scaled row added in `f64`).
pub struct ScatterColumns {
    width: usize,
    /// Class-major: `columns[c·width + j]`.
    columns: Vec<f64>,
    /// Σ_t (x_tk − μ_ck) per class.
    centred_sums: Vec<f64>,
}

impl ScatterColumns {
    /// No rows yet, for `classes` classes and rows of `width` values.
    pub fn new(classes: usize, width: usize) -> ScatterColumns {
        ScatterColumns {
            width,
            columns: vec![0.0; classes * width],
            centred_sums: vec![0.0; classes],
        }
    }

    /// Adds the rows of the row-major `data` (`width` values each), whose
    /// classes are `class_of`, to the sums for column `k`; `means` are the
    /// classes' means.
    pub fn add_rows(&mut self, data: &[f32], class_of: &[usize], k: usize, means: &[&[f64]]) {
        add_scatter_rows(self, data, class_of, k, means);
    }

    /// Adds another part's sums.
    pub fn add(&mut self, other: &ScatterColumns) {
        for (s, o) in self.columns.iter_mut().zip(&other.columns) {
            *s += o;
        }
        for (s, o) in self.centred_sums.iter_mut().zip(&other.centred_sums) {
            *s += o;
        }
    }

    /// Each class's scatter column.
    pub fn finish(self, means: &[&[f64]]) -> Vec<Vec<f64>> {
        self.columns
            .chunks_exact(self.width.max(1))
            .zip(means)
            .zip(&self.centred_sums)
            .map(|((column, mean), &centred_sum)| {
                column
                    .iter()
                    .zip(*mean)
                    .map(|(s, mu)| s - mu * centred_sum)
                    .collect()
            })
            .collect()
    }
}

dispatched! {
    fn add_scatter_rows(
        sums: &mut ScatterColumns,
        data: &[f32],
        class_of: &[usize],
        k: usize,
        means: &[&[f64]],
    ) => add_scatter_rows_portable;
}

#[inline(always)]
fn add_scatter_rows_portable(
    sums: &mut ScatterColumns,
    data: &[f32],
    class_of: &[usize],
    k: usize,
    means: &[&[f64]],
) {
    let width = sums.width;
    if width == 0 {
        return;
    }
    for (row, &c) in data.chunks_exact(width).zip(class_of) {
        let centred = f64::from(row[k]) - means[c][k];
        sums.centred_sums[c] += centred;
        for (s, &v) in sums.columns[c * width..(c + 1) * width].iter_mut().zip(row) {
            *s += f64::from(v) * centred;
        }
    }
}

/// log p(y | x) of one row in `f64` over every class, with the usual
/// maximum: for the rare row whose `f32` sum is too small to trust.
#[inline(never)]
fn exact_row(
    step: &Step<'_>,
    half_precision: &[f64],
    constants: &Shifted,
    block: &[f32],
    len: usize,
    i: usize,
    row: usize,
) -> f64 {
    let m = step.class_of.len();
    let log_density = |k: usize| {
        let r = f64::from(block[k * len + i]);
        step.base[k * m + row] + constants.log_norm[k] + constants.shift - r * r * half_precision[k]
    };
    let max = (0..step.classes)
        .map(log_density)
        .fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = (0..step.classes)
        .map(|k| exp_nonpositive(log_density(k) - max))
        .sum();
    log_density(step.class_of[row]) - max - sum.ln()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lca_testkit::data::noise;

    /// `values[k][i]` in the blocked layout of `rows` rows.
    fn blocked(values: &[Vec<f32>], rows: usize) -> Vec<f32> {
        let classes = values.len();
        let mut out = vec![0.0f32; rows * classes];
        for (start, len) in row_blocks(rows) {
            for (k, values) in values.iter().enumerate() {
                out[start * classes + k * len..][..len]
                    .copy_from_slice(&values[start..start + len]);
            }
        }
        out
    }

    #[test]
    fn scores_after_the_update_match_the_formula_and_every_build_gives_the_same_bits() {
        // 150 rows: two full blocks and a short one; 7 classes.
        let (rows, classes, neurons) = (150, 7, 5);
        let plain = |seed: u64| -> Vec<Vec<f32>> {
            (0..classes)
                .map(|k| {
                    let values = noise(rows, seed * 100 + k as u64);
                    values.iter().map(|&v| v as f32).collect()
                })
                .collect()
        };
        let mut before: Vec<Vec<Vec<f32>>> = (0..neurons).map(|j| plain(j as u64 + 1)).collect();
        // Row 3 of candidate 0 is far from every class: its f32 sum
        // underflows and the row is summed again in f64.
        for k in 0..classes {
            before[0][k][3] = 1e3;
        }
        let chosen = plain(77);
        let multiples: Vec<Vec<f32>> = (0..neurons)
            .map(|j| {
                noise(classes, 40 + j as u64)
                    .iter()
                    .map(|&v| v as f32)
                    .collect()
            })
            .collect();
        // After the update, in the kernel's arithmetic.
        let after: Vec<Vec<Vec<f32>>> = (0..neurons)
            .map(|j| {
                (0..classes)
                    .map(|k| {
                        (0..rows)
                            .map(|i| before[j][k][i] - multiples[j][k] * chosen[k][i])
                            .collect()
                    })
                    .collect()
            })
            .collect();
        // Base densities that fall 40 nats per class away from the row's
        // own (±60), so that a block's far classes are out of reach.
        let spread = noise(classes * rows, 3);
        let base: Vec<f64> = (0..classes * rows)
            .map(|at| {
                let (k, i) = (at / rows, at % rows);
                let own = i * classes / rows;
                30.0 * spread[at] - 40.0 * k.abs_diff(own) as f64
            })
            .collect();
        // Sorted by class, as the search sorts them.
        let class_of: Vec<usize> = (0..rows).map(|i| i * classes / rows).collect();
        let weights = Weights::of(&base, &class_of, classes);
        assert!(
            weights.mean_reach() < classes as f64,
            "some classes are skipped"
        );
        let chosen_blocked = blocked(&chosen, rows);
        let step = Step {
            base: &base,
            weights: &weights,
            class_of: &class_of,
            classes,
            chosen: Some(&chosen_blocked),
        };
        let log_norm: Vec<Vec<f64>> = (0..neurons)
            .map(|j| noise(classes, 20 + j as u64))
            .collect();
        let half_precision: Vec<Vec<f64>> = (0..neurons)
            .map(|j| {
                noise(classes, 30 + j as u64)
                    .iter()
                    .map(|v| v.abs() + 0.1)
                    .collect()
            })
            .collect();
        let score = |dispatch: bool| {
            let mut residuals: Vec<Vec<f32>> = before.iter().map(|r| blocked(r, rows)).collect();
            let mut candidates: Vec<Candidate<'_>> = residuals
                .iter_mut()
                .enumerate()
                .map(|(j, residuals)| Candidate {
                    residuals,
                    log_norm: log_norm[j].clone(),
                    half_precision: half_precision[j].clone(),
                    multiples: multiples[j].clone(),
                })
                .collect();
            let totals = if dispatch {
                log_likelihoods(&step, &mut candidates)
            } else {
                log_likelihoods_portable(&step, &mut candidates)
            };
            (totals, residuals)
        };
        let (fast, updated) = score(true);
        let (portable, _) = score(false);
        assert_eq!(
            fast.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            portable.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        for j in 0..neurons {
            assert_eq!(
                updated[j],
                blocked(&after[j], rows),
                "candidate {j}'s residuals"
            );
            let mut want = 0.0;
            for i in 0..rows {
                let logs: Vec<f64> = (0..classes)
                    .map(|k| {
                        let r = f64::from(after[j][k][i]);
                        base[k * rows + i] + log_norm[j][k] - r * r * half_precision[j][k]
                    })
                    .collect();
                let max = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let lse = max + logs.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
                want += logs[class_of[i]] - lse;
            }
            // The f32 sums round at about 1e-7 per row; the outlier row,
            // whose log-likelihood is about −1e5, is exact in f64.
            assert!(
                (fast[j] - want).abs() <= 1e-6 * rows as f64,
                "candidate {j}: {} vs {want}",
                fast[j]
            );
        }
        assert!(fast[0] < -1e4, "the outlier row counts: {}", fast[0]);
    }

    /// The score of one candidate with a unit normal density in every
    /// class (ℓ = 0, h = ½) and no update, and the mean number of classes
    /// a block sums.
    fn unit_normal_scores(
        base: &[f64],
        class_of: &[usize],
        classes: usize,
        residuals: &mut [f32],
    ) -> (f64, f64) {
        let weights = Weights::of(base, class_of, classes);
        let step = Step {
            base,
            weights: &weights,
            class_of,
            classes,
            chosen: None,
        };
        let mut candidates = [Candidate {
            residuals,
            log_norm: vec![0.0; classes],
            half_precision: vec![0.5; classes],
            multiples: Vec::new(),
        }];
        (
            log_likelihoods(&step, &mut candidates)[0],
            weights.mean_reach(),
        )
    }

    #[test]
    fn a_skipped_class_that_dominates_a_row_is_summed_after_all() {
        // 64 rows of class 0; class 1 is 46 nats down on every row, out of
        // reach. The candidate puts every row 10 standard deviations from
        // class 0 and at the mean of class 1, so class 1 holds almost all of
        // the sum: log p(0 | x) = −50 − log(e^−50 + e^−46) per row.
        let (rows, classes) = (64, 2);
        let base: Vec<f64> = (0..classes * rows)
            .map(|at| if at < rows { 0.0 } else { -46.0 })
            .collect();
        let mut residuals: Vec<f32> = (0..classes * rows)
            .map(|at| if at < rows { 10.0 } else { 0.0 })
            .collect();
        let (total, reach) = unit_normal_scores(&base, &vec![0; rows], classes, &mut residuals);
        assert_eq!(reach, 1.0, "class 1 is skipped");
        let per_row = -50.0 - (f64::exp(-50.0) + f64::exp(-46.0)).ln();
        assert!(
            (total - rows as f64 * per_row).abs() < 1e-9 * rows as f64,
            "{total} vs {}",
            rows as f64 * per_row
        );
    }

    #[test]
    fn without_a_chosen_neuron_the_residuals_are_left_alone() {
        let (rows, classes) = (70, 3);
        let base = vec![0.0f64; classes * rows];
        let values: Vec<f32> = noise(rows * classes, 5).iter().map(|&v| v as f32).collect();
        let mut residuals = values.clone();
        let (total, reach) = unit_normal_scores(&base, &vec![1; rows], classes, &mut residuals);
        assert_eq!(reach, classes as f64);
        assert_eq!(residuals, values);
        let mut want = 0.0;
        for (start, len) in row_blocks(rows) {
            for i in 0..len {
                let r = |k: usize| f64::from(values[start * classes + k * len + i]);
                let lse = (0..classes)
                    .map(|k| (-0.5 * r(k) * r(k)).exp())
                    .sum::<f64>()
                    .ln();
                want += -0.5 * r(1) * r(1) - lse;
            }
        }
        assert!(
            (total - want).abs() < 1e-6 * rows as f64,
            "{total} vs {want}"
        );
    }
}
