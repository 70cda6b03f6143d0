//! The column products of the working-set solver's coordinate descent, on
//! contiguous columns of equal length (one value per row).
//!
//! Every coordinate step reads a few whole columns, so these loops carry
//! most of a probe's time. A sum kept in one vector register waits for its
//! own previous addition (four cycles of FMA latency) at every step, which
//! leaves the loads idle most of the time; these sums therefore run in 32
//! fixed lanes (lane = row mod 32): four AVX2 registers, two AVX-512
//! registers, or an array of 32 in the portable code. The lanes are folded
//! in one fixed order (lane l with l + 16, then l with l + 8, then the
//! 8-lane order of [`super::hsum`]) and the rows after the last full group
//! of 32 are added one by one. Each instruction set therefore performs the
//! same roundings in the same order: AVX-512, AVX2/FMA and the portable path
//! give bit-identical results, on any machine.

#![allow(unsafe_code)]
#![allow(clippy::needless_range_loop)]

use super::{LANES, fma, hsum};

/// Lanes of every column sum.
const COLUMN_LANES: usize = 32;

/// Runs the widest build the CPU has ([`super::isa`]).
macro_rules! dispatch {
    ($name:ident, $($arg:expr),*) => {{
        // SAFETY (both calls): the CPU supports the features the function
        // is compiled for.
        #[cfg(target_arch = "x86_64")]
        match super::isa() {
            super::Isa::Avx512 => return unsafe { avx512::$name($($arg),*) },
            super::Isa::Avx2 => return unsafe { avx2::$name($($arg),*) },
            super::Isa::Portable => {}
        }
        portable::$name($($arg),*)
    }};
}

/// `Σ_r a[r] · b[r]`.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    dispatch!(dot, a, b)
}

/// `Σ_r a[r] · w[r] · b[r]`.
pub fn weighted_dot(a: &[f32], w: &[f32], b: &[f32]) -> f32 {
    dispatch!(weighted_dot, a, w, b)
}

/// `y[r] += alpha · x[r]`.
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    dispatch!(axpy, alpha, x, y);
}

/// `Σ_r a[r] · w[r] · (b[r] − c[r])`.
pub fn weighted_dot_difference(a: &[f32], w: &[f32], b: &[f32], c: &[f32]) -> f32 {
    dispatch!(weighted_dot_difference, a, w, b, c)
}

/// `y[r] += alpha · w[r] · x[r]`.
pub fn weighted_axpy(alpha: f32, w: &[f32], x: &[f32], y: &mut [f32]) {
    dispatch!(weighted_axpy, alpha, w, x, y);
}

/// Applies one coordinate step and reads the next coordinate's product in
/// the same pass: `u[r] += alpha · x[r]`, `s[r] += alpha · w[r] · x[r]`, then
/// returns `Σ_r a[r] · w[r] · (u[r] − s[r])` with the updated values. The
/// same numbers as `axpy`, `weighted_axpy` and `weighted_dot_difference` one
/// after the other, with the shared vectors read once instead of three times.
pub fn step_then_weighted_dot_difference(
    alpha: f32,
    x: &[f32],
    a: &[f32],
    w: &[f32],
    u: &mut [f32],
    s: &mut [f32],
) -> f32 {
    dispatch!(step_then_weighted_dot_difference, alpha, x, a, w, u, s)
}

/// Folds the 32 lanes in the order every instruction set follows.
#[inline(always)]
fn fold(acc: &[f32; COLUMN_LANES]) -> f32 {
    let mut half = [0.0f32; 16];
    for l in 0..16 {
        half[l] = acc[l] + acc[l + 16];
    }
    let mut quarter = [0.0f32; LANES];
    for l in 0..LANES {
        quarter[l] = half[l] + half[l + LANES];
    }
    hsum(&quarter)
}

mod portable {
    //! The reference loops: lane `l` of `acc` holds the rows `r ≡ l (mod 32)`.
    use super::{COLUMN_LANES, fma, fold};

    /// `Σ_r x_r · y_r` over the terms `(x_r, y_r) = term(r)`, `r < n`.
    #[inline(always)]
    fn lane_sum(n: usize, mut term: impl FnMut(usize) -> (f32, f32)) -> f32 {
        let mut acc = [0.0f32; COLUMN_LANES];
        let full = n / COLUMN_LANES * COLUMN_LANES;
        for start in (0..full).step_by(COLUMN_LANES) {
            for (l, slot) in acc.iter_mut().enumerate() {
                let (x, y) = term(start + l);
                *slot = fma(x, y, *slot);
            }
        }
        let mut sum = fold(&acc);
        for r in full..n {
            let (x, y) = term(r);
            sum = fma(x, y, sum);
        }
        sum
    }

    pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
        lane_sum(a.len().min(b.len()), |r| (a[r], b[r]))
    }

    pub(super) fn weighted_dot(a: &[f32], w: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(w.len()).min(b.len());
        lane_sum(n, |r| (a[r] * w[r], b[r]))
    }

    pub(super) fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
        for (o, &v) in y.iter_mut().zip(x) {
            *o = fma(alpha, v, *o);
        }
    }

    pub(super) fn weighted_dot_difference(a: &[f32], w: &[f32], b: &[f32], c: &[f32]) -> f32 {
        let n = a.len().min(w.len()).min(b.len()).min(c.len());
        lane_sum(n, |r| (a[r] * w[r], b[r] - c[r]))
    }

    pub(super) fn weighted_axpy(alpha: f32, w: &[f32], x: &[f32], y: &mut [f32]) {
        for ((o, &v), &weight) in y.iter_mut().zip(x).zip(w) {
            *o = fma(alpha, weight * v, *o);
        }
    }

    pub(super) fn step_then_weighted_dot_difference(
        alpha: f32,
        x: &[f32],
        a: &[f32],
        w: &[f32],
        u: &mut [f32],
        s: &mut [f32],
    ) -> f32 {
        let n = x.len().min(a.len()).min(w.len()).min(u.len()).min(s.len());
        lane_sum(n, |r| {
            u[r] = fma(alpha, x[r], u[r]);
            s[r] = fma(alpha, w[r] * x[r], s[r]);
            (a[r] * w[r], u[r] - s[r])
        })
    }
}

/// The kernels for one vector width, from that width's intrinsics. Lane
/// group `g` of a 32-row block is register `g` of the accumulator, so the
/// lanes hold the same rows as the portable loops'.
#[cfg(target_arch = "x86_64")]
macro_rules! vector_kernels {
    (
        features: $features:literal,
        vector: $v:ty,
        width: $width:expr,
        load: $load:ident,
        store: $store:ident,
        mul: $mul:ident,
        sub: $sub:ident,
        fmadd: $fmadd:ident,
        splat: $splat:ident,
        zero: $zero:ident $(,)?
    ) => {
        const REGISTERS: usize = super::COLUMN_LANES / $width;

        /// `Σ x·y` over full 32-row blocks, `(x, y) = term(row)`, in the
        /// lane order of the portable loops; returns the folded sum.
        #[inline]
        #[target_feature(enable = $features)]
        fn lane_sum(full: usize, mut term: impl FnMut(usize) -> ($v, $v)) -> f32 {
            let mut acc = [$zero(); REGISTERS];
            let mut r = 0;
            while r < full {
                for (g, slot) in acc.iter_mut().enumerate() {
                    let (x, y) = term(r + g * $width);
                    *slot = $fmadd(x, y, *slot);
                }
                r += super::COLUMN_LANES;
            }
            fold(acc)
        }

        /// The rows before the tail: whole 32-row blocks.
        fn full_blocks(n: usize) -> usize {
            n / super::COLUMN_LANES * super::COLUMN_LANES
        }

        #[target_feature(enable = $features)]
        pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
            let n = a.len().min(b.len());
            let full = full_blocks(n);
            // SAFETY: every row read is below `full ≤ n`.
            let mut sum = lane_sum(full, |r| unsafe {
                ($load(a.as_ptr().add(r)), $load(b.as_ptr().add(r)))
            });
            for r in full..n {
                sum = a[r].mul_add(b[r], sum);
            }
            sum
        }

        #[target_feature(enable = $features)]
        pub(super) fn weighted_dot(a: &[f32], w: &[f32], b: &[f32]) -> f32 {
            let n = a.len().min(w.len()).min(b.len());
            let full = full_blocks(n);
            // SAFETY: every row read is below `full ≤ n`.
            let mut sum = lane_sum(full, |r| unsafe {
                (
                    $mul($load(a.as_ptr().add(r)), $load(w.as_ptr().add(r))),
                    $load(b.as_ptr().add(r)),
                )
            });
            for r in full..n {
                sum = (a[r] * w[r]).mul_add(b[r], sum);
            }
            sum
        }

        #[target_feature(enable = $features)]
        pub(super) fn weighted_dot_difference(a: &[f32], w: &[f32], b: &[f32], c: &[f32]) -> f32 {
            let n = a.len().min(w.len()).min(b.len()).min(c.len());
            let full = full_blocks(n);
            // SAFETY: every row read is below `full ≤ n`.
            let mut sum = lane_sum(full, |r| unsafe {
                (
                    $mul($load(a.as_ptr().add(r)), $load(w.as_ptr().add(r))),
                    $sub($load(b.as_ptr().add(r)), $load(c.as_ptr().add(r))),
                )
            });
            for r in full..n {
                sum = (a[r] * w[r]).mul_add(b[r] - c[r], sum);
            }
            sum
        }

        #[target_feature(enable = $features)]
        pub(super) fn step_then_weighted_dot_difference(
            alpha: f32,
            x: &[f32],
            a: &[f32],
            w: &[f32],
            u: &mut [f32],
            s: &mut [f32],
        ) -> f32 {
            let n = x.len().min(a.len()).min(w.len()).min(u.len()).min(s.len());
            let full = full_blocks(n);
            let scale = $splat(alpha);
            let (up, sp) = (u.as_mut_ptr(), s.as_mut_ptr());
            // SAFETY: every row read or written is below `full ≤ n`, and
            // `u` and `s` are distinct mutable slices.
            let mut sum = lane_sum(full, |r| unsafe {
                let xv = $load(x.as_ptr().add(r));
                let wv = $load(w.as_ptr().add(r));
                let uv = $fmadd(scale, xv, $load(up.add(r)));
                let sv = $fmadd(scale, $mul(wv, xv), $load(sp.add(r)));
                $store(up.add(r), uv);
                $store(sp.add(r), sv);
                ($mul($load(a.as_ptr().add(r)), wv), $sub(uv, sv))
            });
            for r in full..n {
                u[r] = alpha.mul_add(x[r], u[r]);
                s[r] = alpha.mul_add(w[r] * x[r], s[r]);
                sum = (a[r] * w[r]).mul_add(u[r] - s[r], sum);
            }
            sum
        }

        #[target_feature(enable = $features)]
        pub(super) fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
            let n = x.len().min(y.len());
            let full = n / $width * $width;
            let scale = $splat(alpha);
            let mut r = 0;
            while r < full {
                // SAFETY: r + width ≤ full ≤ the length of both slices.
                unsafe {
                    let o = $fmadd(scale, $load(x.as_ptr().add(r)), $load(y.as_ptr().add(r)));
                    $store(y.as_mut_ptr().add(r), o);
                }
                r += $width;
            }
            for i in full..n {
                y[i] = alpha.mul_add(x[i], y[i]);
            }
        }

        #[target_feature(enable = $features)]
        pub(super) fn weighted_axpy(alpha: f32, w: &[f32], x: &[f32], y: &mut [f32]) {
            let n = w.len().min(x.len()).min(y.len());
            let full = n / $width * $width;
            let scale = $splat(alpha);
            let mut r = 0;
            while r < full {
                // SAFETY: r + width ≤ full ≤ the length of every slice.
                unsafe {
                    let v = $mul($load(w.as_ptr().add(r)), $load(x.as_ptr().add(r)));
                    let o = $fmadd(scale, v, $load(y.as_ptr().add(r)));
                    $store(y.as_mut_ptr().add(r), o);
                }
                r += $width;
            }
            for i in full..n {
                y[i] = alpha.mul_add(w[i] * x[i], y[i]);
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    vector_kernels! {
        features: "avx2,fma",
        vector: __m256,
        width: 8,
        load: _mm256_loadu_ps,
        store: _mm256_storeu_ps,
        mul: _mm256_mul_ps,
        sub: _mm256_sub_ps,
        fmadd: _mm256_fmadd_ps,
        splat: _mm256_set1_ps,
        zero: _mm256_setzero_ps,
    }

    /// Registers 0–3 hold lanes 0–7, 8–15, 16–23 and 24–31.
    #[target_feature(enable = "avx2,fma")]
    fn fold(acc: [__m256; REGISTERS]) -> f32 {
        let low = _mm256_add_ps(acc[0], acc[2]);
        let high = _mm256_add_ps(acc[1], acc[3]);
        eight_lanes(_mm256_add_ps(low, high))
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn eight_lanes(v: __m256) -> f32 {
        let mut lanes = [0.0f32; super::LANES];
        // SAFETY: `lanes` holds exactly 8 f32.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), v) };
        super::hsum(&lanes)
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    vector_kernels! {
        features: "avx512f,avx2,fma",
        vector: __m512,
        width: 16,
        load: _mm512_loadu_ps,
        store: _mm512_storeu_ps,
        mul: _mm512_mul_ps,
        sub: _mm512_sub_ps,
        fmadd: _mm512_fmadd_ps,
        splat: _mm512_set1_ps,
        zero: _mm512_setzero_ps,
    }

    /// Registers 0 and 1 hold lanes 0–15 and 16–31.
    #[target_feature(enable = "avx512f,avx2,fma")]
    fn fold(acc: [__m512; REGISTERS]) -> f32 {
        let half = _mm512_add_ps(acc[0], acc[1]);
        let low = _mm512_castps512_ps256(half);
        let high = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(half)));
        super::avx2::eight_lanes(_mm256_add_ps(low, high))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = lca_core::rng::Rng::new(seed);
        (0..n).map(|_| rng.normal() as f32).collect()
    }

    /// The lengths around the lane groups, with and without a tail.
    const LENGTHS: [usize; 9] = [0, 1, 7, 8, 13, 32, 64, 95, 1001];

    /// Every implementation this CPU can run, by name.
    type Sums = fn(&[f32], &[f32], &[f32], &[f32]) -> [f32; 4];

    fn implementations() -> Vec<(&'static str, Sums)> {
        fn sums<const ISA: u8>(a: &[f32], w: &[f32], b: &[f32], c: &[f32]) -> [f32; 4] {
            let (mut u, mut s) = (b.to_vec(), c.to_vec());
            macro_rules! on {
                ($module:ident) => {{
                    // SAFETY: only listed below when the CPU has the features.
                    #[allow(unused_unsafe)]
                    unsafe {
                        [
                            $module::dot(a, b),
                            $module::weighted_dot(a, w, b),
                            $module::weighted_dot_difference(a, w, b, c),
                            $module::step_then_weighted_dot_difference(
                                0.3, a, c, w, &mut u, &mut s,
                            ),
                        ]
                    }
                }};
            }
            match ISA {
                #[cfg(target_arch = "x86_64")]
                1 => on!(avx2),
                #[cfg(target_arch = "x86_64")]
                2 => on!(avx512),
                _ => on!(portable),
            }
        }
        let mut all: Vec<(&'static str, Sums)> = vec![("portable", sums::<0>)];
        #[cfg(target_arch = "x86_64")]
        {
            if super::super::isa() >= super::super::Isa::Avx2 {
                all.push(("avx2", sums::<1>));
            }
            if super::super::isa() == super::super::Isa::Avx512 {
                all.push(("avx512", sums::<2>));
            }
        }
        all
    }

    #[test]
    fn every_instruction_set_gives_the_same_bits_as_the_portable_loops() {
        for n in LENGTHS {
            let (a, b, c) = (data(n, 7), data(n, 9), data(n, 10));
            let w: Vec<f32> = data(n, 8).iter().map(|v| v.abs()).collect();
            let reference = portable_sums(&a, &w, &b, &c);
            for (name, sums) in implementations() {
                let got = sums(&a, &w, &b, &c).map(f32::to_bits);
                assert_eq!(got, reference.map(f32::to_bits), "{name}, n = {n}");
            }
        }
    }

    fn portable_sums(a: &[f32], w: &[f32], b: &[f32], c: &[f32]) -> [f32; 4] {
        implementations()[0].1(a, w, b, c)
    }

    #[test]
    fn column_kernels_match_naive_sums() {
        for n in LENGTHS {
            let a = data(n, 7);
            let w: Vec<f32> = data(n, 8).iter().map(|v| v.abs()).collect();
            let b = data(n, 9);
            let c = data(n, 10);
            let naive = |f: &dyn Fn(usize) -> f64| (0..n).map(f).sum::<f64>();
            let (af, wf, bf, cf) = (
                |r: usize| f64::from(a[r]),
                |r: usize| f64::from(w[r]),
                |r: usize| f64::from(b[r]),
                |r: usize| f64::from(c[r]),
            );
            let close = |got: f32, want: f64, what: &str| {
                assert!((f64::from(got) - want).abs() < 1e-4, "{what}, n = {n}");
            };
            close(dot(&a, &b), naive(&|r| af(r) * bf(r)), "dot");
            close(
                weighted_dot(&a, &w, &b),
                naive(&|r| af(r) * wf(r) * bf(r)),
                "weighted dot",
            );
            close(
                weighted_dot_difference(&a, &w, &b, &c),
                naive(&|r| af(r) * wf(r) * (bf(r) - cf(r))),
                "weighted dot difference",
            );
            let mut y = c.clone();
            weighted_axpy(0.5, &w, &a, &mut y);
            let mut portable_y = c.clone();
            portable::weighted_axpy(0.5, &w, &a, &mut portable_y);
            assert_eq!(y, portable_y);
            for r in 0..n {
                close(y[r], cf(r) + 0.5 * wf(r) * af(r), "weighted axpy");
            }
            let mut y = b.clone();
            axpy(-0.75, &a, &mut y);
            let mut portable_y = b.clone();
            portable::axpy(-0.75, &a, &mut portable_y);
            assert_eq!(y, portable_y);
            for r in 0..n {
                close(y[r], bf(r) - 0.75 * af(r), "axpy");
            }
        }
    }

    #[test]
    fn the_fused_step_equals_the_three_kernels_in_sequence_bit_for_bit() {
        for n in LENGTHS {
            let x = data(n, 11);
            let a = data(n, 12);
            let w: Vec<f32> = data(n, 13).iter().map(|v| v.abs()).collect();
            let (u0, s0) = (data(n, 14), data(n, 15));
            let (mut u_seq, mut s_seq) = (u0.clone(), s0.clone());
            axpy(0.3, &x, &mut u_seq);
            weighted_axpy(0.3, &w, &x, &mut s_seq);
            let want = weighted_dot_difference(&a, &w, &u_seq, &s_seq);
            let (mut u, mut s) = (u0.clone(), s0.clone());
            let got = step_then_weighted_dot_difference(0.3, &x, &a, &w, &mut u, &mut s);
            assert_eq!(got.to_bits(), want.to_bits(), "n = {n}");
            assert_eq!((&u, &s), (&u_seq, &s_seq), "n = {n}");
        }
    }
}
