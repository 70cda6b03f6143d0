//! Element-wise functions of a transformer layer, fused with the additions
//! around them: `gelu(x + bias)` after the first MLP product, and a masked,
//! scaled softmax over attention scores.
//!
//! The C library computes `erf` and `exp` one value at a time, with
//! branches, and in an encoder forward pass those calls cost more than the
//! attention products (one GELU per intermediate unit per token). Here both
//! are branch-free polynomial arithmetic on `f32`, so each build fills its
//! vector registers; every build does the same operations on each element,
//! so results do not depend on the instruction set.
//!
//! Accuracy (checked in the tests below against `f64` references):
//! - `exp`: a few units in the last place over the range used;
//! - `gelu` with `erf`: absolute error below 3e-7·max(1, |x|) (Abramowitz
//!   and Stegun's 7.1.26 for `erfc`, evaluated without cancellation);
//! - `gelu` with `tanh`: absolute error below 3e-7·max(1, |x|).
//!
//! That is far inside the 1e-4 the encoder's hidden states must keep from
//! the reference implementation.

/// Which GELU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gelu {
    /// `x·Φ(x)` with the exact normal CDF (`erf`).
    Erf,
    /// The `tanh` approximation of GPT-2 and `gelu_new`.
    Tanh,
}

/// Runs the portable body compiled for the widest instruction set the CPU
/// has. The bodies are `#[inline(always)]`, so each wrapper gets its own
/// vectorised copy.
macro_rules! dispatch {
    ($portable:ident($($arg:expr),*)) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f,avx2,fma")]
            fn avx512(f: impl FnOnce()) {
                f()
            }
            #[target_feature(enable = "avx2,fma")]
            fn avx2(f: impl FnOnce()) {
                f()
            }
            use super::{Isa, isa};
            // SAFETY (both calls): the CPU supports the features the
            // wrapper is compiled for.
            match isa() {
                Isa::Avx512 => return unsafe { avx512(|| $portable($($arg),*)) },
                Isa::Avx2 => return unsafe { avx2(|| $portable($($arg),*)) },
                Isa::Portable => {}
            }
        }
        $portable($($arg),*)
    }};
}

/// `e^x` for `x ≤ 0`: `x = k·ln 2 + r` with `|r| ≤ ln 2 / 2`, a degree-7
/// Taylor polynomial for `e^r` (remainder below 6e-9 relative) and `2^k`
/// built in the exponent bits. Below −87 (where `e^x` leaves the normal
/// `f32` range) it returns `e^−87`, which no sum of probabilities can tell
/// from zero.
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5·2^23 rounds to an integer, kept in the low mantissa bits.
    const SHIFTER: f32 = 12_582_912.0;
    let x = x.max(-87.0);
    let shifted = x.mul_add(std::f32::consts::LOG2_E, SHIFTER);
    let k = shifted - SHIFTER;
    let r = (-k).mul_add(LN2_LO, (-k).mul_add(LN2_HI, x));
    let mut p: f32 = 1.0 / 5_040.0;
    for coefficient in [
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p.mul_add(r, coefficient);
    }
    let scale = f32::from_bits(shifted.to_bits().wrapping_add(127) << 23);
    p * scale
}

/// GELU of one value.
#[inline(always)]
fn gelu(x: f32, how: Gelu) -> f32 {
    match how {
        Gelu::Erf => {
            // erfc(z) for z = |x|/√2 ≥ 0 as t·P(t)·e^(−z²), t = 1/(1 + p·z).
            const P: f32 = 0.327_591_1;
            const A: [f32; 5] = [
                1.061_405_4,
                -1.453_152,
                1.421_413_7,
                -0.284_496_72,
                0.254_829_6,
            ];
            let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
            let t = 1.0 / P.mul_add(z, 1.0);
            let mut poly = A[0];
            for a in &A[1..] {
                poly = poly.mul_add(t, *a);
            }
            let half_erfc = 0.5 * t * poly * exp_nonpositive(-z * z);
            // Φ(x) = 1 − erfc/2 above zero, erfc/2 below: no cancellation
            // in the tail that matters for negative inputs.
            if x >= 0.0 {
                x - x * half_erfc
            } else {
                x * half_erfc
            }
        }
        Gelu::Tanh => {
            const C: f32 = 0.797_884_6; // √(2/π)
            let u = C * x.mul_add(0.044_715 * x * x, x);
            // e = e^(−2|u|): tanh|u| = (1 − e)/(1 + e), and
            // 1 + tanh(u) = 2e/(1 + e) when u < 0.
            let e = exp_nonpositive(-2.0 * u.abs());
            let inv = 1.0 / (1.0 + e);
            if x >= 0.0 { x * inv } else { x * e * inv }
        }
    }
}

/// `v ← gelu(v + bias[j])` for every row of `values` (rows of
/// `bias.len()` values, the last dimension of the tensor).
pub fn bias_gelu(values: &mut [f32], bias: &[f32], how: Gelu) {
    dispatch!(bias_gelu_portable(values, bias, how));
}

/// Softmax of every row of `scores` (rows of `additive.len()` values) after
/// `s ← s·scale + additive[j]`: the attention probabilities of one sequence,
/// whose padding positions carry a large negative `additive`. Each row is
/// shifted by its maximum first, so no exponential overflows.
pub fn masked_softmax(scores: &mut [f32], additive: &[f32], scale: f32) {
    dispatch!(masked_softmax_portable(scores, additive, scale));
}

#[inline(always)]
fn bias_gelu_portable(values: &mut [f32], bias: &[f32], how: Gelu) {
    for row in values.chunks_exact_mut(bias.len().max(1)) {
        for (v, b) in row.iter_mut().zip(bias) {
            *v = gelu(*v + b, how);
        }
    }
}

#[inline(always)]
fn masked_softmax_portable(scores: &mut [f32], additive: &[f32], scale: f32) {
    for row in scores.chunks_exact_mut(additive.len().max(1)) {
        let mut max = f32::MIN;
        for (s, a) in row.iter_mut().zip(additive) {
            *s = s.mul_add(scale, *a);
            max = max.max(*s);
        }
        let mut sum = 0.0f32;
        for s in row.iter_mut() {
            *s = exp_nonpositive(*s - max);
            sum += *s;
        }
        let inv = 1.0 / sum;
        row.iter_mut().for_each(|s| *s *= inv);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// erf to double precision: Abramowitz and Stegun 7.1.5's series up to
    /// |z| = 3 (where its alternating terms lose at most four digits), and
    /// beyond that 1 − erfc with erfc(z) = 2/√π ∫_z^∞ e^(−t²) dt by Simpson's
    /// rule over [z, z + 8].
    fn erf_reference(z: f64) -> f64 {
        if z.abs() > 3.0 {
            let (a, steps) = (z.abs(), 20_000);
            let h = 8.0 / steps as f64;
            let f = |i: usize| (-(a + i as f64 * h).powi(2)).exp();
            let inner: f64 = (1..steps)
                .map(|i| f(i) * if i % 2 == 1 { 4.0 } else { 2.0 })
                .sum();
            let erfc = (f(0) + inner + f(steps)) * h / 3.0 * 2.0 / std::f64::consts::PI.sqrt();
            return z.signum() * (1.0 - erfc);
        }
        let mut term = z;
        let mut sum = z;
        for n in 1..200 {
            term *= -z * z / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    fn grid() -> Vec<f32> {
        (-4000..=4000).map(|i| i as f32 * 0.004).collect()
    }

    #[test]
    fn exponential_is_within_a_few_ulps_down_to_the_normal_range() {
        for i in 0..87_000 {
            let x = -(i as f32) * 0.001;
            let got = f64::from(exp_nonpositive(x));
            let want = f64::from(x).exp();
            assert!(
                ((got - want) / want).abs() < 4e-7,
                "exp({x}) = {got}, want {want}"
            );
        }
        assert!(exp_nonpositive(-1e30) > 0.0 && exp_nonpositive(-1e30) < 1e-37);
        assert_eq!(exp_nonpositive(0.0), 1.0);
    }

    #[test]
    fn gelu_matches_the_exact_formulas() {
        let xs = grid();
        for how in [Gelu::Erf, Gelu::Tanh] {
            let mut got = xs.clone();
            bias_gelu(&mut got, &[0.0; 1], how);
            for (&x, &g) in xs.iter().zip(&got) {
                let x64 = f64::from(x);
                let want = match how {
                    Gelu::Erf => 0.5 * x64 * (1.0 + erf_reference(x64 / 2f64.sqrt())),
                    Gelu::Tanh => {
                        let u =
                            (2.0 / std::f64::consts::PI).sqrt() * (x64 + 0.044715 * x64.powi(3));
                        0.5 * x64 * (1.0 + u.tanh())
                    }
                };
                let error = (f64::from(g) - want).abs();
                assert!(
                    error < 3e-7 * x64.abs().max(1.0),
                    "{how:?} gelu({x}) = {g}, want {want}"
                );
            }
        }
    }

    #[test]
    fn gelu_adds_the_bias_per_column_and_handles_extremes() {
        let mut values = vec![0.0f32, 1.0, -1.0, 2.0, 0.5, -3.0];
        let bias = [1.0f32, -1.0, 0.5];
        let mut expected = values.clone();
        for (i, v) in expected.iter_mut().enumerate() {
            *v = gelu(*v + bias[i % 3], Gelu::Erf);
        }
        bias_gelu(&mut values, &bias, Gelu::Erf);
        assert_eq!(values, expected);
        let mut extremes = vec![-1e6f32, 1e6, -40.0, 40.0, f32::MIN, f32::MAX];
        bias_gelu(&mut extremes, &[0.0], Gelu::Erf);
        assert_eq!(
            [extremes[1], extremes[3], extremes[5]],
            [1e6, 40.0, f32::MAX]
        );
        for v in [extremes[0], extremes[2], extremes[4]] {
            assert!(v <= 0.0 && v > -1e-30, "{v}");
        }
    }

    #[test]
    fn softmax_rows_sum_to_one_and_ignore_masked_positions() {
        let additive = [0.0f32, 0.0, 0.0, f32::MIN];
        let mut scores = vec![1.0f32, 2.0, 3.0, 100.0, -5.0, 0.0, 5.0, 7.0];
        masked_softmax(&mut scores, &additive, 0.5);
        for row in scores.chunks(4) {
            let sum: f32 = row.iter().sum();
            assert!((sum - 1.0).abs() < 1e-6);
            assert!(row[3] < 1e-30);
        }
        // Row 1: softmax(0.5, 1.0, 1.5).
        let z: f64 = [0.5f64, 1.0, 1.5].iter().map(|v| v.exp()).sum();
        for (j, v) in [0.5f64, 1.0, 1.5].iter().enumerate() {
            assert!((f64::from(scores[j]) - v.exp() / z).abs() < 1e-7);
        }
    }

    #[test]
    fn every_build_gives_the_portable_bits() {
        let xs: Vec<f32> = grid().iter().map(|x| x * 3.1).collect();
        let bias: Vec<f32> = (0..7).map(|j| j as f32 * 0.3 - 1.0).collect();
        let values = &xs[..xs.len() / 7 * 7];
        for how in [Gelu::Erf, Gelu::Tanh] {
            let (mut dispatched, mut portable) = (values.to_vec(), values.to_vec());
            bias_gelu(&mut dispatched, &bias, how);
            bias_gelu_portable(&mut portable, &bias, how);
            assert_eq!(dispatched, portable, "{how:?}");
        }
        let (mut dispatched, mut portable) = (values.to_vec(), values.to_vec());
        masked_softmax(&mut dispatched, &bias, 0.125);
        masked_softmax_portable(&mut portable, &bias, 0.125);
        assert_eq!(dispatched, portable);
    }
}
