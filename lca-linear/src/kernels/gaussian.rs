//! The Gaussian probe's candidate scores: for every candidate neuron,
//! Σ_i log p(y_i | x_i,S∪{j}) over the scored rows, where each class's
//! log density is a base value (the selected neurons) plus the candidate's
//! conditional normal term.
//!
//! The work is rows × classes × candidates exponentials per step, so it is
//! laid out for vector registers: the per-class log densities of a block of
//! rows are contiguous (class-major), the exponentials are plain arithmetic
//! ([`exp_nonpositive`]), and the loops run across rows, so each lane holds
//! one row. The C library's `exp` was the bottleneck before, mostly in its
//! slow path for results that underflow, which the far-off classes of every
//! row produce.
//!
//! A block of rows is scored for a group of candidates in turn, so the
//! block's base log densities stay in cache while the candidates' residuals
//! stream past. Each candidate's total is still summed row by row in order,
//! so the result does not depend on the grouping, the thread count or the
//! instruction set: every build does the same operations on each element.

use super::exp_nonpositive;

/// Rows per block: a block's log densities (classes × 64 × 8 bytes) stay in
/// the first- or second-level cache.
pub const ROW_BLOCK: usize = 64;

/// The blocks of `rows` rows, as (first row, length); all but the last hold
/// [`ROW_BLOCK`] rows.
pub fn row_blocks(rows: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..rows)
        .step_by(ROW_BLOCK)
        .map(move |start| (start, ROW_BLOCK.min(rows - start)))
}

/// Rows whose softmax normalisers are multiplied before one logarithm. Every
/// normaliser lies in [1, classes], so a product of 8 cannot overflow for
/// any class count a label set has (below 10^38).
const PRODUCT_ROWS: usize = 8;

/// What every candidate of a step shares.
pub struct Step<'a> {
    /// log π_c + log N(x_S; …) of each class and scored row, class-major:
    /// `base[k·rows + i]`.
    pub base: &'a [f64],
    /// The class index of each scored row (one entry per row).
    pub class_of: &'a [usize],
    /// Classes present.
    pub classes: usize,
}

/// One candidate neuron: its residuals given the selected neurons, for
/// every class and scored row, in blocks of [`ROW_BLOCK`] rows: the block
/// that starts at row `s` and holds `len` rows keeps class `k` at
/// `residuals[s·classes + k·len ..][..len]`; and the constants of its
/// conditional density per class.
pub struct Candidate<'a> {
    /// See above.
    pub residuals: &'a [f32],
    /// −½ log(2π v) per class, for the conditional variance v.
    pub log_norm: Vec<f64>,
    /// 1 / (2v) per class.
    pub half_precision: Vec<f64>,
}

/// Σ_i log p(y_i | x_i,S∪{j}) (nats) for each candidate, in order.
pub fn log_likelihoods(step: &Step<'_>, candidates: &[Candidate<'_>]) -> Vec<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        use super::{Isa, isa};
        // SAFETY (both calls): the CPU supports the features the function is
        // compiled for.
        match isa() {
            Isa::Avx512 => return unsafe { log_likelihoods_avx512(step, candidates) },
            Isa::Avx2 => return unsafe { log_likelihoods_avx2(step, candidates) },
            Isa::Portable => {}
        }
    }
    log_likelihoods_portable(step, candidates)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn log_likelihoods_avx512(step: &Step<'_>, candidates: &[Candidate<'_>]) -> Vec<f64> {
    log_likelihoods_portable(step, candidates)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn log_likelihoods_avx2(step: &Step<'_>, candidates: &[Candidate<'_>]) -> Vec<f64> {
    log_likelihoods_portable(step, candidates)
}

#[inline(always)]
fn log_likelihoods_portable(step: &Step<'_>, candidates: &[Candidate<'_>]) -> Vec<f64> {
    let (m, classes) = (step.class_of.len(), step.classes);
    let mut log_density = vec![0.0f64; classes * ROW_BLOCK];
    let mut max = [0.0f64; ROW_BLOCK];
    let mut normaliser = [0.0f64; ROW_BLOCK];
    let mut totals = vec![0.0f64; candidates.len()];
    for (start, len) in row_blocks(m) {
        let max = &mut max[..len];
        let normaliser = &mut normaliser[..len];
        for (candidate, total) in candidates.iter().zip(&mut totals) {
            max.fill(f64::NEG_INFINITY);
            for k in 0..classes {
                let base = &step.base[k * m + start..k * m + start + len];
                let residual = &candidate.residuals[start * classes + k * len..][..len];
                let out = &mut log_density[k * ROW_BLOCK..k * ROW_BLOCK + len];
                let (log_norm, half_precision) =
                    (candidate.log_norm[k], candidate.half_precision[k]);
                for (((o, &b), &r), row_max) in
                    out.iter_mut().zip(base).zip(residual).zip(max.iter_mut())
                {
                    let r = f64::from(r);
                    let v = (-r * r).mul_add(half_precision, b + log_norm);
                    *o = v;
                    *row_max = row_max.max(v);
                }
            }
            normaliser.fill(0.0);
            for k in 0..classes {
                let values = &log_density[k * ROW_BLOCK..k * ROW_BLOCK + len];
                for ((s, &v), &row_max) in normaliser.iter_mut().zip(values).zip(max.iter()) {
                    *s += exp_nonpositive(v - row_max);
                }
            }
            for first in (0..len).step_by(PRODUCT_ROWS) {
                let last = (first + PRODUCT_ROWS).min(len);
                let mut product = 1.0f64;
                for i in first..last {
                    let own = log_density[step.class_of[start + i] * ROW_BLOCK + i];
                    *total += own - max[i];
                    product *= normaliser[i];
                }
                *total -= product.ln();
            }
        }
    }
    totals
}

#[cfg(test)]
mod tests {
    use super::*;
    use lca_testkit::data::noise;

    #[test]
    fn blocked_scores_match_the_formula_and_every_build_gives_the_same_bits() {
        // 150 rows: two full blocks and a short one; 7 classes.
        let (rows, classes, neurons) = (150, 7, 5);
        // residual[j][k][i], then stored in the blocked layout.
        let plain: Vec<Vec<Vec<f32>>> = (0..neurons)
            .map(|j| {
                (0..classes)
                    .map(|k| {
                        noise(rows, (100 * j + k) as u64)
                            .iter()
                            .map(|&v| v as f32)
                            .collect()
                    })
                    .collect()
            })
            .collect();
        let blocked: Vec<Vec<f32>> = plain
            .iter()
            .map(|by_class| {
                let mut out = vec![0.0f32; rows * classes];
                for (start, len) in row_blocks(rows) {
                    for (k, values) in by_class.iter().enumerate() {
                        out[start * classes + k * len..][..len]
                            .copy_from_slice(&values[start..start + len]);
                    }
                }
                out
            })
            .collect();
        // Base densities far apart, so some classes underflow entirely.
        let base: Vec<f64> = noise(classes * rows, 3).iter().map(|v| v * 300.0).collect();
        let class_of: Vec<usize> = (0..rows).map(|i| (i * 5 + 1) % classes).collect();
        let step = Step {
            base: &base,
            class_of: &class_of,
            classes,
        };
        let candidates: Vec<Candidate<'_>> = (0..neurons)
            .map(|j| Candidate {
                residuals: &blocked[j],
                log_norm: noise(classes, 20 + j as u64),
                half_precision: noise(classes, 30 + j as u64)
                    .iter()
                    .map(|v| v.abs() + 0.1)
                    .collect(),
            })
            .collect();
        let fast = log_likelihoods(&step, &candidates);
        let portable = log_likelihoods_portable(&step, &candidates);
        assert_eq!(
            fast.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            portable.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        for (j, candidate) in candidates.iter().enumerate() {
            let mut want = 0.0;
            for i in 0..rows {
                let logs: Vec<f64> = (0..classes)
                    .map(|k| {
                        let r = f64::from(plain[j][k][i]);
                        base[k * rows + i] + candidate.log_norm[k]
                            - r * r * candidate.half_precision[k]
                    })
                    .collect();
                let max = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let lse = max + logs.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
                want += logs[class_of[i]] - lse;
            }
            assert!(
                (fast[j] - want).abs() <= 1e-12 * want.abs().max(1.0),
                "candidate {j}: {} vs {want}",
                fast[j]
            );
        }
    }
}
