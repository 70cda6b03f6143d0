//! Scoring the candidates of one greedy step: for every candidate neuron,
//! Σ_i log p(y_i | x_i,S∪{j}) over the scored rows.
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

#![allow(unsafe_code)]

use lca_core::ndarray::ArrayView2;
use lca_linear::kernels::exp_nonpositive;
use rayon::prelude::*;

/// Rows per block: a block's log densities (classes × 64 × 8 bytes) stay in
/// the first- or second-level cache.
const BLOCK: usize = 64;

/// Neurons whose residuals are initialised together: one cache line of a
/// row of activations.
const NEURON_TILE: usize = 16;

/// The blocks of rows, as (first row, length); all but the last are full.
fn blocks(rows: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..rows)
        .step_by(BLOCK)
        .map(move |start| (start, BLOCK.min(rows - start)))
}

/// Every neuron's residuals on the scored rows, per class, given the
/// selected neurons: x − μ_c minus its projection on the selected neurons
/// under the class's covariance.
///
/// Laid out neuron-major, then by block of rows, then class, then row
/// (`[j][block][k][i]`): one candidate's block is one contiguous run, so a
/// group of candidates streams from memory in a few sequential runs (a
/// class-major layout made every block a scattered 256-byte read, which the
/// prefetcher could not follow).
pub(crate) struct Residuals {
    data: Vec<f32>,
    rows: usize,
    classes: usize,
}

impl Residuals {
    /// x − μ_c for every neuron, class and scored row.
    pub(crate) fn new(x: ArrayView2<'_, f32>, scored: &[usize], means: &[&[f64]]) -> Residuals {
        let (d, classes, rows) = (x.ncols(), means.len(), scored.len());
        let per_neuron = rows * classes;
        let mut data = vec![0.0f32; d * per_neuron];
        if per_neuron > 0 {
            data.par_chunks_mut(per_neuron * NEURON_TILE)
                .enumerate()
                .for_each(|(tile, chunk)| {
                    let first = tile * NEURON_TILE;
                    let mut column = [0.0f64; BLOCK];
                    for (start, len) in blocks(rows) {
                        for (t, neuron) in chunk.chunks_exact_mut(per_neuron).enumerate() {
                            let j = first + t;
                            // The tile's neurons share the cache lines of
                            // these rows, so the strided reads load each once.
                            for (v, &r) in column.iter_mut().zip(&scored[start..start + len]) {
                                *v = f64::from(x[[r, j]]);
                            }
                            let run = &mut neuron[start * classes..(start + len) * classes];
                            for (out, mean) in run.chunks_exact_mut(len).zip(means) {
                                let mu = mean[j];
                                for (o, &v) in out.iter_mut().zip(&column[..len]) {
                                    *o = (v - mu) as f32;
                                }
                            }
                        }
                    }
                });
        }
        Residuals {
            data,
            rows,
            classes,
        }
    }

    /// Neuron `j`'s residuals, in the layout the scoring reads.
    pub(crate) fn neuron(&self, j: usize) -> &[f32] {
        let per_neuron = self.rows * self.classes;
        &self.data[j * per_neuron..(j + 1) * per_neuron]
    }

    /// Calls `f(row, residual)` for neuron `j` and class `k`, rows in order.
    pub(crate) fn for_each_row(&self, j: usize, k: usize, mut f: impl FnMut(usize, f32)) {
        let neuron = self.neuron(j);
        for (start, len) in blocks(self.rows) {
            let run = &neuron[start * self.classes + k * len..][..len];
            for (i, &r) in run.iter().enumerate() {
                f(start + i, r);
            }
        }
    }

    /// For every neuron `j` not in `skip`, and every class `k`: residual_j
    /// −= coefficient(k, j) · residual_chosen.
    pub(crate) fn subtract_multiples(
        &mut self,
        chosen: usize,
        skip: &[bool],
        coefficient: impl Fn(usize, usize) -> f32 + Sync,
    ) {
        let (rows, classes) = (self.rows, self.classes);
        let per_neuron = rows * classes;
        if per_neuron == 0 {
            return;
        }
        let chosen = self.neuron(chosen).to_vec();
        self.data
            .par_chunks_exact_mut(per_neuron)
            .enumerate()
            .filter(|(j, _)| !skip[*j])
            .for_each(|(j, neuron)| {
                let coefficients: Vec<f32> = (0..classes).map(|k| coefficient(k, j)).collect();
                for (start, len) in blocks(rows) {
                    for (k, &c) in coefficients.iter().enumerate() {
                        if c == 0.0 {
                            continue;
                        }
                        let at = start * classes + k * len;
                        for (r, &rk) in neuron[at..at + len].iter_mut().zip(&chosen[at..at + len]) {
                            *r -= c * rk;
                        }
                    }
                }
            });
    }
}

/// Rows whose softmax normalisers are multiplied before one logarithm. Every
/// normaliser lies in [1, classes], so a product of 8 cannot overflow for
/// any class count a label set has (below 10^38).
const PRODUCT_ROWS: usize = 8;

/// What every candidate of a step shares.
pub(crate) struct Step<'a> {
    /// log π_c + log N(x_S; …) of each class and scored row, class-major:
    /// `base[k·rows + i]`.
    pub base: &'a [f64],
    /// The class index of each scored row.
    pub class_of: &'a [usize],
    /// Scored rows.
    pub rows: usize,
    /// Classes present.
    pub classes: usize,
}

/// One candidate neuron: its residuals given the selected neurons (see
/// [`Residuals::neuron`]), and the constants of its conditional density.
pub(crate) struct Candidate<'a> {
    pub residuals: &'a [f32],
    /// −½ log(2π v) per class, for the conditional variance v.
    pub log_norm: Vec<f64>,
    /// 1 / (2v) per class.
    pub half_precision: Vec<f64>,
}

/// Σ_i log p(y_i | x_i,S∪{j}) (nats) for each candidate, in order.
pub(crate) fn log_likelihoods(step: &Step<'_>, candidates: &[Candidate<'_>]) -> Vec<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        use lca_linear::kernels::{Isa, isa};
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
    let (m, classes) = (step.rows, step.classes);
    let mut log_density = vec![0.0f64; classes * BLOCK];
    let mut max = [0.0f64; BLOCK];
    let mut normaliser = [0.0f64; BLOCK];
    let mut totals = vec![0.0f64; candidates.len()];
    for start in (0..m).step_by(BLOCK) {
        let len = BLOCK.min(m - start);
        let max = &mut max[..len];
        let normaliser = &mut normaliser[..len];
        for (candidate, total) in candidates.iter().zip(&mut totals) {
            max.fill(f64::NEG_INFINITY);
            for k in 0..classes {
                let base = &step.base[k * m + start..k * m + start + len];
                let residual = &candidate.residuals[start * classes + k * len..][..len];
                let out = &mut log_density[k * BLOCK..k * BLOCK + len];
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
                let values = &log_density[k * BLOCK..k * BLOCK + len];
                for ((s, &v), &row_max) in normaliser.iter_mut().zip(values).zip(max.iter()) {
                    *s += exp_nonpositive(v - row_max);
                }
            }
            for first in (0..len).step_by(PRODUCT_ROWS) {
                let last = (first + PRODUCT_ROWS).min(len);
                let mut product = 1.0f64;
                for i in first..last {
                    let own = log_density[step.class_of[start + i] * BLOCK + i];
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
    use lca_core::ndarray::Array2;

    /// Deterministic values in [−2, 2).
    fn noise(len: usize, seed: u64) -> Vec<f64> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 11) as f64 / (1u64 << 53) as f64 * 4.0 - 2.0
            })
            .collect()
    }

    #[test]
    fn blocked_scores_match_the_formula_and_every_build_gives_the_same_bits() {
        // 150 rows: two full blocks and a short one; 7 classes.
        let (rows, classes, neurons) = (150, 7, 5);
        let x = Array2::from_shape_vec(
            (rows, neurons),
            noise(rows * neurons, 1).iter().map(|&v| v as f32).collect(),
        )
        .unwrap();
        let means: Vec<Vec<f64>> = (0..classes)
            .map(|k| noise(neurons, 10 + k as u64))
            .collect();
        let mean_refs: Vec<&[f64]> = means.iter().map(Vec::as_slice).collect();
        let scored: Vec<usize> = (0..rows).rev().collect();
        let residuals = Residuals::new(x.view(), &scored, &mean_refs);
        // Base densities far apart, so some classes underflow entirely.
        let base: Vec<f64> = noise(classes * rows, 3).iter().map(|v| v * 300.0).collect();
        let class_of: Vec<usize> = (0..rows).map(|i| (i * 5 + 1) % classes).collect();
        let step = Step {
            base: &base,
            class_of: &class_of,
            rows,
            classes,
        };
        let candidates: Vec<Candidate<'_>> = (0..neurons)
            .map(|j| Candidate {
                residuals: residuals.neuron(j),
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
            for (i, &row) in scored.iter().enumerate() {
                let logs: Vec<f64> = (0..classes)
                    .map(|k| {
                        let r = f64::from(x[[row, j]]) - means[k][j];
                        // The stored residual is f32.
                        let r = f64::from(r as f32);
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
        // Residuals read back in row order, per class.
        let mut seen = Vec::new();
        residuals.for_each_row(3, 2, |i, r| seen.push((i, r)));
        assert_eq!(seen.len(), rows);
        for (i, r) in seen {
            assert_eq!(r, (f64::from(x[[scored[i], 3]]) - means[2][3]) as f32);
        }
    }
}
