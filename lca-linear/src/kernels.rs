//! The two products every solver pass spends its time in, for a small number
//! of classes: logits `Z = X Wᵀ` and the gradient update `G += Pᵀ X`.
//!
//! General GEMM routines copy ("pack") both operands for every call, which
//! for these skinny shapes (a handful of classes against thousands of
//! neurons) costs more than the arithmetic. These kernels read each row of
//! `X` straight from its storage. Sums run in 8 fixed lanes (lane = index
//! mod 8), then lanes are added in a fixed order, so results do not depend on
//! the instruction set or the thread count. On x86-64 with AVX2 and FMA the
//! same code is compiled for those instructions and chosen at run time;
//! elsewhere it runs as portable (slower) code with identical results.

#![allow(unsafe_code)]
// Indexed loops over the fixed lanes and class groups read as the maths does.
#![allow(clippy::needless_range_loop)]

/// `$f::<K>(args)` with the constant `K` the run-time block size `$k`, for
/// kernels built for blocks of 1 to 6 (classes, or rows); a larger `$k`
/// takes 6.
macro_rules! for_block_size {
    ($k:expr, $f:ident($($arg:expr),* $(,)?)) => {
        match $k {
            1 => $f::<1>($($arg),*),
            2 => $f::<2>($($arg),*),
            3 => $f::<3>($($arg),*),
            4 => $f::<4>($($arg),*),
            5 => $f::<5>($($arg),*),
            _ => $f::<6>($($arg),*),
        }
    };
}

/// Public functions whose portable bodies run compiled for the widest
/// instruction set the CPU has: each item
/// `fn name(arg: Type, …) -> Ret => body;` defines `name`, which calls
/// `body` (an `#[inline(always)]` function) from a wrapper that carries the
/// target features itself, so each build gets its own vectorised copy
/// however large the body (a body called through a closure was left out of
/// line once it grew, and then ran without FMA). One signature serves the
/// public function and both wrappers.
macro_rules! dispatched {
    ($(
        $(#[$meta:meta])*
        $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $portable:path;
    )*) => {$(
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                fn avx512($($arg: $ty),*) $(-> $ret)? {
                    $portable($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $portable($($arg),*)
                }
                // SAFETY (both calls): the CPU supports the features the
                // wrapper is compiled for.
                match crate::kernels::isa() {
                    crate::kernels::Isa::Avx512 => return unsafe { avx512($($arg),*) },
                    crate::kernels::Isa::Avx2 => return unsafe { avx2($($arg),*) },
                    crate::kernels::Isa::Portable => {}
                }
            }
            $portable($($arg),*)
        }
    )*};
}

pub mod bf16;
mod columns;
pub mod elementwise;
pub mod gaussian;

pub use columns::{
    axpy, dot, step_then_weighted_dot_difference, weighted_axpy, weighted_dot,
    weighted_dot_difference,
};

const LANES: usize = 8;

/// The instruction sets the kernels have builds for. Crates with kernels of
/// their own dispatch on the same detection, so one process never mixes
/// builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// Plain Rust, any CPU.
    Portable,
    /// x86-64 with AVX2 and FMA.
    Avx2,
    /// x86-64 with AVX-512F (and AVX2 and FMA).
    Avx512,
}

/// A vector of `len` values, written by `fill(state, part index, part)` on
/// parts of `chunk` values on the rayon pool's threads (`state` from
/// `init`, one per rayon work item, as [`rayon`]'s `for_each_init`). Each
/// part is zeroed by the task that fills it, just before, so the zeros are
/// in cache when the task writes its values. (The allocator zeroes a
/// recycled block on the calling thread: with two threads that serial pass
/// was a tenth of an encoder's run. Zeroing still costs about 8% of a bf16
/// run on one thread, the lines' first touch.)
pub fn filled_in_parallel<S>(
    len: usize,
    chunk: usize,
    init: impl Fn() -> S + Sync + Send,
    fill: impl Fn(&mut S, usize, &mut [f32]) + Sync + Send,
) -> Vec<f32> {
    use rayon::prelude::*;
    let mut out: Vec<f32> = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk.max(1))
        .enumerate()
        .for_each_init(init, |state, (index, part)| {
            part.fill(std::mem::MaybeUninit::new(0.0));
            // SAFETY: every value of `part` was written just above, and
            // `MaybeUninit<f32>` has the layout of `f32`.
            let part = unsafe { &mut *(part as *mut [std::mem::MaybeUninit<f32>] as *mut [f32]) };
            fill(state, index, part);
        });
    // SAFETY: the parts cover the first `len` values, each written above.
    unsafe { out.set_len(len) };
    out
}

/// `x · weightᵀ` for row-major `x` (`rows × inputs`) and `weight`
/// (`outputs × inputs`): a new row-major `rows × outputs` vector, computed
/// by the `gemm` crate on the rayon pool's threads. The product writes
/// every output without reading it, so the output is never zeroed first
/// (a zeroing pass over every product's output, on one thread, was 4% of
/// an encoder's run).
///
/// # Panics
/// When the lengths do not match the shapes.
pub fn product_transposed(
    x: &[f32],
    weight: &[f32],
    rows: usize,
    inputs: usize,
    outputs: usize,
) -> Vec<f32> {
    assert_eq!(x.len(), rows * inputs, "product: input shape");
    assert_eq!(weight.len(), outputs * inputs, "product: weight shape");
    let len = rows * outputs;
    if inputs == 0 || len == 0 {
        // An empty sum: the product would write nothing.
        return vec![0.0; len];
    }
    let threads = rayon::current_num_threads();
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    let mut out: Vec<f32> = Vec::with_capacity(len);
    // SAFETY: the pointers cover `rows × inputs`, `outputs × inputs` and
    // `rows × outputs` values with the strides given (rows of `x` and of
    // the output are contiguous; column `n` of `weightᵀ` is row `n` of
    // `weight`). With `read_dst` false the output is only written, every
    // one of its values (the sums are not empty), so all `len` values are
    // initialised when it returns.
    unsafe {
        gemm::gemm(
            rows,
            outputs,
            inputs,
            out.as_mut_ptr(),
            1,
            outputs as isize,
            false,
            x.as_ptr(),
            1,
            inputs as isize,
            weight.as_ptr(),
            inputs as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
        out.set_len(len);
    }
    out
}

/// The widest build this CPU can run (the standard library caches the
/// detection, so this is a few loads).
pub fn isa() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return if std::arch::is_x86_feature_detected!("avx512f") {
                Isa::Avx512
            } else {
                Isa::Avx2
            };
        }
    }
    Isa::Portable
}

/// `out[r·c + k] = Σ_j x[r·d + j] · w[k·d + j]` for every row `r` of `x`.
pub fn logits(x: &[f32], d: usize, w: &[f32], c: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if isa() >= Isa::Avx2 {
        // SAFETY: the CPU supports the features the function is compiled for.
        return unsafe { avx2::logits(x, d, w, c, out) };
    }
    logits_impl(x, d, w, c, out);
}

/// `grad[k·d + j] += Σ_r p[r·c + k] · x[r·d + j]` over the rows of `x`.
/// `upcoming` is the data the caller will read next: it is prefetched into
/// the cache while this arithmetic runs from cache, so the memory bus stays
/// busy (a pass over a large matrix is otherwise memory-bound half the time).
pub fn accumulate_gradient(
    p: &[f32],
    x: &[f32],
    d: usize,
    c: usize,
    grad: &mut [f32],
    upcoming: &[f32],
) {
    // SAFETY (both calls): the CPU supports the features the function is
    // compiled for.
    #[cfg(target_arch = "x86_64")]
    match isa() {
        Isa::Avx512 => return unsafe { avx512::gradient(p, x, d, c, grad, upcoming) },
        Isa::Avx2 => return unsafe { avx2::gradient(p, x, d, c, grad, upcoming) },
        Isa::Portable => {}
    }
    let _ = upcoming;
    gradient_impl(p, x, d, c, grad);
}

/// In-place softmax of one row of logits; returns log Σ exp. The same
/// values as with the C library's `exp` to within a few units in the last
/// place, but the exponentials are plain arithmetic, so they run in vector
/// registers (eight at a time with AVX-512). Every build does the same
/// operations on each element, so all give the same bits.
pub fn softmax(row: &mut [f64]) -> f64 {
    // SAFETY (both calls): the CPU supports the features the function is
    // compiled for.
    #[cfg(target_arch = "x86_64")]
    match isa() {
        Isa::Avx512 => return unsafe { softmax_avx512(row) },
        Isa::Avx2 => return unsafe { avx2::softmax(row) },
        Isa::Portable => {}
    }
    column::softmax(row)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn softmax_avx512(row: &mut [f64]) -> f64 {
    column::softmax(row)
}

dispatched! {
    /// The softmax of a tile of rows held class-major, in place:
    /// `tile[k·stride + t]` is row `t`'s logit of class `k`, for the
    /// `lse.len()` rows `t` and the `tile.len() / stride` classes. Writes each
    /// row's log Σ exp into `lse`; `sum` is scratch of the same length.
    ///
    /// The same operations on each row as [`softmax`], in the same order (the
    /// maximum and the sum run over the classes in ascending order), so the
    /// results are bit for bit those of [`softmax`] row by row; laid out this
    /// way, the exponentials of a vector register's rows are computed together
    /// with no scalar tail per row.
    pub fn softmax_class_major(
        tile: &mut [f64],
        stride: usize,
        lse: &mut [f64],
        sum: &mut [f64],
    ) => column::softmax_class_major;
}

pub use column::exp_nonpositive;

mod column {
    //! The portable softmax; the AVX2 build compiles the same loops.

    #[inline(always)]
    pub(super) fn softmax(row: &mut [f64]) -> f64 {
        let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        row.iter_mut().for_each(|v| *v = exp_nonpositive(*v - max));
        let sum: f64 = row.iter().sum();
        row.iter_mut().for_each(|v| *v /= sum);
        max + sum.ln()
    }

    #[inline(always)]
    pub(super) fn softmax_class_major(
        tile: &mut [f64],
        stride: usize,
        lse: &mut [f64],
        sum: &mut [f64],
    ) {
        let rows = lse.len();
        assert!(rows <= stride && sum.len() == rows, "a tile of {rows} rows");
        let max = lse;
        max.fill(f64::NEG_INFINITY);
        sum.fill(0.0);
        for class in tile.chunks_exact(stride) {
            for (m, &v) in max.iter_mut().zip(&class[..rows]) {
                *m = m.max(v);
            }
        }
        for class in tile.chunks_exact_mut(stride) {
            for ((v, &m), s) in class[..rows].iter_mut().zip(&*max).zip(sum.iter_mut()) {
                *v = exp_nonpositive(*v - m);
                *s += *v;
            }
        }
        for class in tile.chunks_exact_mut(stride) {
            for (v, &s) in class[..rows].iter_mut().zip(&*sum) {
                *v /= s;
            }
        }
        for (m, &s) in max.iter_mut().zip(&*sum) {
            *m += s.ln();
        }
    }

    /// `e^x` for `x ≤ 0`, within about 2 units in the last place: `x` is
    /// split as `k ln 2 + r` with `|r| ≤ ln 2 / 2`, `e^r` comes from its
    /// Taylor series to degree 13 (the remainder is below 1e-17), and `2^k`
    /// is built in the exponent bits.
    /// Below −708 (where `e^x` leaves the normal range) it returns `e^−708`,
    /// which no sum of probabilities can tell from zero.
    #[inline(always)]
    pub fn exp_nonpositive(x: f64) -> f64 {
        const LN2_HI: f64 = 6.931_471_803_691_238e-1;
        const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
        // Adding 1.5·2^52 rounds to an integer, kept in the low mantissa bits.
        const SHIFTER: f64 = 6_755_399_441_055_744.0;
        let x = if x < -708.0 { -708.0 } else { x };
        let shifted = x.mul_add(std::f64::consts::LOG2_E, SHIFTER);
        let k = shifted - SHIFTER;
        let r = (-k).mul_add(LN2_LO, (-k).mul_add(LN2_HI, x));
        // 1/13!, …, 1/2!, 1, 1 (Horner from the highest degree).
        const COEFFICIENTS: [f64; 13] = [
            1.0 / 6_227_020_800.0,
            1.0 / 479_001_600.0,
            1.0 / 39_916_800.0,
            1.0 / 3_628_800.0,
            1.0 / 362_880.0,
            1.0 / 40_320.0,
            1.0 / 5_040.0,
            1.0 / 720.0,
            1.0 / 120.0,
            1.0 / 24.0,
            1.0 / 6.0,
            0.5,
            1.0,
        ];
        let mut p = COEFFICIENTS[0];
        for &coefficient in &COEFFICIENTS[1..] {
            p = p.mul_add(r, coefficient);
        }
        p = p.mul_add(r, 1.0);
        let scale = f64::from_bits(shifted.to_bits().wrapping_add(1023) << 52);
        p * scale
    }
}

/// Splits `c` classes into groups of at most six, as evenly as possible (six
/// accumulators per row fit the sixteen vector registers).
fn class_groups(c: usize) -> impl Iterator<Item = (usize, usize)> {
    let groups = c.div_ceil(6).max(1);
    let base = c / groups;
    let extra = c % groups;
    (0..groups).scan(0, move |first, g| {
        let size = base + usize::from(g < extra);
        let start = *first;
        *first += size;
        (size > 0).then_some((start, size))
    })
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    //! The same arithmetic as the portable kernels, in AVX2/FMA intrinsics:
    //! per (row, class) 8 lanes accumulate j ≡ lane (mod 8) with FMA, lanes
    //! are added as ((0+1)+(2+3))+((4+5)+(6+7)), then the tail with scalar FMA.

    use std::arch::x86_64::*;

    use super::{LANES, class_groups, hsum};

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn softmax(row: &mut [f64]) -> f64 {
        super::column::softmax(row)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn logits(x: &[f32], d: usize, w: &[f32], c: usize, out: &mut [f32]) {
        let rows = x.len().checked_div(d).unwrap_or(0);
        assert!(
            x.len() >= rows * d && w.len() >= c * d && out.len() >= rows * c,
            "kernel slices too short"
        );
        for (first, k) in class_groups(c) {
            for_block_size!(k, logits_group(x, d, w, c, first, rows, out));
        }
    }

    #[target_feature(enable = "avx2,fma")]
    fn finish(acc: __m256, x: &[f32], w: &[f32], full: usize, d: usize) -> f32 {
        let mut lanes = [0.0f32; LANES];
        // SAFETY: `lanes` holds exactly 8 f32.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
        let mut sum = hsum(&lanes);
        for j in full..d {
            sum = x[j].mul_add(w[j], sum);
        }
        sum
    }

    #[target_feature(enable = "avx2,fma")]
    fn logits_group<const K: usize>(
        x: &[f32],
        d: usize,
        w: &[f32],
        c: usize,
        first: usize,
        rows: usize,
        out: &mut [f32],
    ) {
        let full = d / LANES * LANES;
        let wp = w.as_ptr();
        let xp = x.as_ptr();
        let mut r = 0;
        // Two rows at a time, so every weight vector loaded serves both.
        while r + 2 <= rows {
            let mut a0 = [_mm256_setzero_ps(); K];
            let mut a1 = [_mm256_setzero_ps(); K];
            let mut j = 0;
            while j < full {
                // SAFETY: j + 8 ≤ d, and the asserts above bound every row.
                unsafe {
                    let x0 = _mm256_loadu_ps(xp.add(r * d + j));
                    let x1 = _mm256_loadu_ps(xp.add((r + 1) * d + j));
                    for k in 0..K {
                        let wv = _mm256_loadu_ps(wp.add((first + k) * d + j));
                        a0[k] = _mm256_fmadd_ps(x0, wv, a0[k]);
                        a1[k] = _mm256_fmadd_ps(x1, wv, a1[k]);
                    }
                }
                j += LANES;
            }
            for k in 0..K {
                let wr = &w[(first + k) * d..(first + k + 1) * d];
                out[r * c + first + k] = finish(a0[k], &x[r * d..(r + 1) * d], wr, full, d);
                out[(r + 1) * c + first + k] =
                    finish(a1[k], &x[(r + 1) * d..(r + 2) * d], wr, full, d);
            }
            r += 2;
        }
        if r < rows {
            let mut a0 = [_mm256_setzero_ps(); K];
            let mut j = 0;
            while j < full {
                // SAFETY: as above.
                unsafe {
                    let x0 = _mm256_loadu_ps(xp.add(r * d + j));
                    for k in 0..K {
                        let wv = _mm256_loadu_ps(wp.add((first + k) * d + j));
                        a0[k] = _mm256_fmadd_ps(x0, wv, a0[k]);
                    }
                }
                j += LANES;
            }
            for k in 0..K {
                let wr = &w[(first + k) * d..(first + k + 1) * d];
                out[r * c + first + k] = finish(a0[k], &x[r * d..(r + 1) * d], wr, full, d);
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn gradient(
        p: &[f32],
        x: &[f32],
        d: usize,
        c: usize,
        grad: &mut [f32],
        upcoming: &[f32],
    ) {
        let tiles = (d / LANES).div_ceil(2);
        for_each_group(
            p,
            x,
            d,
            c,
            grad,
            upcoming,
            tiles,
            |rows, first, k, grad, prefetch| {
                for_block_size!(
                    k,
                    gradient_group(p, x, d, c, first, rows, grad, prefetch, 0)
                );
            },
        );
    }

    /// What every build of the gradient does around its tiles: checks the
    /// slices, splits the classes into groups and spreads the prefetches of
    /// `upcoming` evenly over `tiles` tiles per group; then runs
    /// `group(rows, first class, classes, grad, prefetch)` on each group.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub(super) fn for_each_group<'a>(
        p: &[f32],
        x: &[f32],
        d: usize,
        c: usize,
        grad: &mut [f32],
        upcoming: &'a [f32],
        tiles: usize,
        mut group: impl FnMut(usize, usize, usize, &mut [f32], Prefetch<'a, '_>),
    ) {
        let rows = x.len().checked_div(d).unwrap_or(0);
        assert!(
            x.len() >= rows * d && p.len() >= rows * c && grad.len() >= c * d,
            "kernel slices too short"
        );
        let groups: Vec<(usize, usize)> = class_groups(c).collect();
        let lines = upcoming.len().div_ceil(16);
        let per_tile = lines.div_ceil(tiles.max(1) * groups.len());
        let mut fetched = 0usize;
        for (first, k) in groups {
            let prefetch = Prefetch {
                data: upcoming,
                per_tile,
                next_line: &mut fetched,
            };
            group(rows, first, k, grad, prefetch);
        }
    }

    /// Cache lines of upcoming data to request, a few per tile.
    pub(super) struct Prefetch<'a, 'b> {
        pub(super) data: &'a [f32],
        pub(super) per_tile: usize,
        pub(super) next_line: &'b mut usize,
    }

    impl Prefetch<'_, '_> {
        /// Requests this tile's share of the upcoming lines.
        #[inline(always)]
        pub(super) fn issue(&mut self) {
            for _ in 0..self.per_tile {
                let offset = *self.next_line * 16;
                if offset < self.data.len() {
                    // SAFETY: the address is inside `data`; a prefetch
                    // never faults and has no visible effect.
                    unsafe {
                        _mm_prefetch::<_MM_HINT_T0>(self.data.as_ptr().add(offset).cast());
                    };
                    *self.next_line += 1;
                }
            }
        }
    }

    /// The gradient of classes `first..first + K` at columns `from..d`
    /// (`from` a multiple of 8).
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn gradient_group<const K: usize>(
        p: &[f32],
        x: &[f32],
        d: usize,
        c: usize,
        first: usize,
        rows: usize,
        grad: &mut [f32],
        mut prefetch: Prefetch<'_, '_>,
        from: usize,
    ) {
        let full = d / LANES * LANES;
        let xp = x.as_ptr();
        let gp = grad.as_mut_ptr();
        let mut j = from;
        while j < full {
            prefetch.issue();
            // Two tiles at a time where possible, so every broadcast
            // coefficient serves two vectors (one tile alone is bound by
            // loads, not arithmetic).
            if j + 2 * LANES <= full {
                let mut acc0 = [_mm256_setzero_ps(); K];
                let mut acc1 = [_mm256_setzero_ps(); K];
                for r in 0..rows {
                    // SAFETY: j + 16 ≤ d and r < rows, bounded by the assert above.
                    unsafe {
                        let x0 = _mm256_loadu_ps(xp.add(r * d + j));
                        let x1 = _mm256_loadu_ps(xp.add(r * d + j + LANES));
                        for k in 0..K {
                            let coefficient = _mm256_set1_ps(p[r * c + first + k]);
                            acc0[k] = _mm256_fmadd_ps(coefficient, x0, acc0[k]);
                            acc1[k] = _mm256_fmadd_ps(coefficient, x1, acc1[k]);
                        }
                    }
                }
                for k in 0..K {
                    // SAFETY: (first + k)·d + j + 16 ≤ c·d.
                    unsafe {
                        let g = gp.add((first + k) * d + j);
                        _mm256_storeu_ps(g, _mm256_add_ps(_mm256_loadu_ps(g), acc0[k]));
                        let g = g.add(LANES);
                        _mm256_storeu_ps(g, _mm256_add_ps(_mm256_loadu_ps(g), acc1[k]));
                    }
                }
                j += 2 * LANES;
                continue;
            }
            let mut acc = [_mm256_setzero_ps(); K];
            for r in 0..rows {
                // SAFETY: j + 8 ≤ d and r < rows, bounded by the assert above.
                unsafe {
                    let xv = _mm256_loadu_ps(xp.add(r * d + j));
                    for k in 0..K {
                        let coefficient = _mm256_set1_ps(p[r * c + first + k]);
                        acc[k] = _mm256_fmadd_ps(coefficient, xv, acc[k]);
                    }
                }
            }
            for k in 0..K {
                // SAFETY: (first + k)·d + j + 8 ≤ c·d.
                unsafe {
                    let g = gp.add((first + k) * d + j);
                    _mm256_storeu_ps(g, _mm256_add_ps(_mm256_loadu_ps(g), acc[k]));
                }
            }
            j += LANES;
        }
        super::gradient_tail::<K>(p, x, d, c, first, rows, full, grad);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    //! The gradient in AVX-512: each output still sums its rows in order,
    //! one fused multiply-add per row, so the results are those of the
    //! AVX2 and portable builds bit for bit; a register holds 16 columns
    //! instead of 8, and a tile 64.

    use std::arch::x86_64::*;

    use super::avx2::{Prefetch, for_each_group, gradient_group as narrow_group};

    /// Columns per tile: four 16-lane registers per class, so six classes
    /// take 24 of the 32 registers.
    const WIDE: usize = 64;

    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) fn gradient(
        p: &[f32],
        x: &[f32],
        d: usize,
        c: usize,
        grad: &mut [f32],
        upcoming: &[f32],
    ) {
        let tiles = d / WIDE + (d % WIDE).div_ceil(16);
        for_each_group(
            p,
            x,
            d,
            c,
            grad,
            upcoming,
            tiles,
            |rows, first, k, grad, prefetch| {
                for_block_size!(k, group(p, x, d, c, first, rows, grad, prefetch));
            },
        );
    }

    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx2,fma")]
    fn group<const K: usize>(
        p: &[f32],
        x: &[f32],
        d: usize,
        c: usize,
        first: usize,
        rows: usize,
        grad: &mut [f32],
        mut prefetch: Prefetch<'_, '_>,
    ) {
        let wide = d / WIDE * WIDE;
        let xp = x.as_ptr();
        let gp = grad.as_mut_ptr();
        let mut j = 0;
        while j < wide {
            prefetch.issue();
            let mut acc = [[_mm512_setzero_ps(); 4]; K];
            for r in 0..rows {
                // SAFETY: j + 64 ≤ d and r < rows, bounded by the assert
                // of `gradient`.
                unsafe {
                    let row = xp.add(r * d + j);
                    let x0 = _mm512_loadu_ps(row);
                    let x1 = _mm512_loadu_ps(row.add(16));
                    let x2 = _mm512_loadu_ps(row.add(32));
                    let x3 = _mm512_loadu_ps(row.add(48));
                    for (k, acc) in acc.iter_mut().enumerate() {
                        let coefficient = _mm512_set1_ps(p[r * c + first + k]);
                        acc[0] = _mm512_fmadd_ps(coefficient, x0, acc[0]);
                        acc[1] = _mm512_fmadd_ps(coefficient, x1, acc[1]);
                        acc[2] = _mm512_fmadd_ps(coefficient, x2, acc[2]);
                        acc[3] = _mm512_fmadd_ps(coefficient, x3, acc[3]);
                    }
                }
            }
            for (k, acc) in acc.iter().enumerate() {
                for (q, &sum) in acc.iter().enumerate() {
                    // SAFETY: (first + k)·d + j + 64 ≤ c·d.
                    unsafe {
                        let g = gp.add((first + k) * d + j + 16 * q);
                        _mm512_storeu_ps(g, _mm512_add_ps(_mm512_loadu_ps(g), sum));
                    }
                }
            }
            j += WIDE;
        }
        // The last columns, 16 and 8 at a time and then one by one.
        // SAFETY: the CPU has AVX2 and FMA, which this function requires.
        narrow_group::<K>(p, x, d, c, first, rows, grad, prefetch, wide);
    }
}

#[inline(always)]
fn fma(a: f32, b: f32, acc: f32) -> f32 {
    // Fused multiply-add rounds once, so the result is the same whether the
    // CPU does it in one instruction (the AVX2/FMA build) or in software.
    a.mul_add(b, acc)
}

/// Adds 8 lanes in a fixed order.
#[inline(always)]
fn hsum(a: &[f32; LANES]) -> f32 {
    ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]))
}

#[inline(always)]
fn logits_impl(x: &[f32], d: usize, w: &[f32], c: usize, out: &mut [f32]) {
    let rows = x.len().checked_div(d).unwrap_or(0);
    let full = d / LANES * LANES;
    for r in 0..rows {
        let xr = &x[r * d..(r + 1) * d];
        for k in 0..c {
            let wr = &w[k * d..(k + 1) * d];
            let mut acc = [0.0f32; LANES];
            let mut j = 0;
            while j < full {
                for l in 0..LANES {
                    acc[l] = fma(xr[j + l], wr[j + l], acc[l]);
                }
                j += LANES;
            }
            let mut sum = hsum(&acc);
            for jj in full..d {
                sum = fma(xr[jj], wr[jj], sum);
            }
            out[r * c + k] = sum;
        }
    }
}

#[inline(always)]
fn gradient_impl(p: &[f32], x: &[f32], d: usize, c: usize, grad: &mut [f32]) {
    let rows = x.len().checked_div(d).unwrap_or(0);
    let full = d / LANES * LANES;
    let mut j = 0;
    while j < full {
        for k in 0..c {
            let mut acc = [0.0f32; LANES];
            for r in 0..rows {
                let coefficient = p[r * c + k];
                for l in 0..LANES {
                    acc[l] = fma(coefficient, x[r * d + j + l], acc[l]);
                }
            }
            for l in 0..LANES {
                grad[k * d + j + l] += acc[l];
            }
        }
        j += LANES;
    }
    gradient_tail::<0>(p, x, d, c, 0, rows, full, grad);
}

/// The columns after the last full 8-lane tile, for classes
/// `first..first + K` (`K = 0` means every class).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn gradient_tail<const K: usize>(
    p: &[f32],
    x: &[f32],
    d: usize,
    c: usize,
    first: usize,
    rows: usize,
    full: usize,
    grad: &mut [f32],
) {
    let classes = if K == 0 { 0..c } else { first..first + K };
    for jj in full..d {
        for k in classes.clone() {
            let mut sum = 0.0f32;
            for r in 0..rows {
                sum = fma(p[r * c + k], x[r * d + jj], sum);
            }
            grad[k * d + jj] += sum;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_logits(x: &[f32], d: usize, w: &[f32], c: usize) -> Vec<f64> {
        let rows = x.len() / d;
        (0..rows)
            .flat_map(|r| {
                (0..c).map(move |k| {
                    (0..d)
                        .map(|j| f64::from(x[r * d + j]) * f64::from(w[k * d + j]))
                        .sum::<f64>()
                })
            })
            .collect()
    }

    fn data(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = lca_core::rng::Rng::new(seed);
        (0..n).map(|_| rng.normal() as f32).collect()
    }

    #[test]
    fn class_groups_cover_every_class_in_at_most_six() {
        for c in 1..40 {
            let groups: Vec<(usize, usize)> = class_groups(c).collect();
            assert_eq!(groups.iter().map(|g| g.1).sum::<usize>(), c);
            assert!(
                groups.iter().all(|g| (1..=6).contains(&g.1)),
                "{c}: {groups:?}"
            );
            assert!(groups.windows(2).all(|w| w[0].0 + w[0].1 == w[1].0));
        }
    }

    #[test]
    fn vector_and_portable_paths_give_identical_bits() {
        for (rows, d, c) in [
            (5, 37, 10),
            (64, 203, 13),
            (1, 9, 1),
            (4, 16, 7),
            (3, 40, 12),
            (2, 48, 6),
            (6, 64, 7),
            (9, 203, 19),
            (4, 2688, 13),
        ] {
            let x = data(rows * d, 4);
            let w = data(c * d, 5);
            let p = data(rows * c, 6);
            let mut fast = vec![0.0; rows * c];
            let mut portable = vec![0.0; rows * c];
            logits(&x, d, &w, c, &mut fast);
            logits_impl(&x, d, &w, c, &mut portable);
            assert_eq!(fast, portable, "logits {rows}×{d}×{c}");
            let mut g_fast = vec![0.5; c * d];
            let mut g_portable = vec![0.5; c * d];
            accumulate_gradient(&p, &x, d, c, &mut g_fast, &[]);
            gradient_impl(&p, &x, d, c, &mut g_portable);
            assert_eq!(g_fast, g_portable, "gradient {rows}×{d}×{c}");
            // Every build this CPU can run, whichever the dispatch picks.
            #[cfg(target_arch = "x86_64")]
            {
                type Build = fn(&[f32], &[f32], usize, usize, &mut [f32], &[f32]);
                let mut builds: Vec<(&str, Build)> = Vec::new();
                if isa() >= Isa::Avx2 {
                    // SAFETY: only called when the CPU has AVX2 and FMA.
                    builds.push(("avx2", |p, x, d, c, g, u| unsafe {
                        avx2::gradient(p, x, d, c, g, u);
                    }));
                }
                if isa() == Isa::Avx512 {
                    // SAFETY: only called when the CPU has AVX-512F.
                    builds.push(("avx512", |p, x, d, c, g, u| unsafe {
                        avx512::gradient(p, x, d, c, g, u);
                    }));
                }
                for (name, build) in builds {
                    let mut g = vec![0.5; c * d];
                    build(&p, &x, d, c, &mut g, &x);
                    assert_eq!(g, g_portable, "{name} gradient {rows}×{d}×{c}");
                }
            }
        }
    }

    #[test]
    fn the_vector_exponential_matches_the_c_library() {
        let mut worst = 0.0f64;
        let mut x = 0.0f64;
        while x > -750.0 {
            let (fast, libm) = (column::exp_nonpositive(x), x.exp());
            if x >= -708.0 {
                worst = worst.max(((fast - libm) / libm).abs());
            } else {
                assert!(fast < 1e-300, "e^{x} = {fast}");
            }
            x -= 0.013_7;
        }
        assert!(worst < 1e-15, "largest relative error {worst}");
        assert_eq!(column::exp_nonpositive(0.0), 1.0);
        let logits = [3.0, -1.5, 0.25, 40.0, -800.0, 2.0, 2.0, 0.0, 1e-3];
        let (mut fast, mut portable) = (logits.to_vec(), logits.to_vec());
        let (lse_fast, lse_portable) = (softmax(&mut fast), column::softmax(&mut portable));
        assert_eq!(fast, portable);
        assert_eq!(lse_fast, lse_portable);
        // A long row, through every build this CPU can run.
        let long: Vec<f64> = (0..301).map(|i| (i as f64 * 0.37).sin() * 30.0).collect();
        let mut reference = long.clone();
        let lse_reference = column::softmax(&mut reference);
        #[cfg(target_arch = "x86_64")]
        {
            type Build = fn(&mut [f64]) -> f64;
            let mut builds: Vec<(&str, Build)> = Vec::new();
            if isa() >= Isa::Avx2 {
                // SAFETY: only called when the CPU has AVX2 and FMA.
                builds.push(("avx2", |row| unsafe { avx2::softmax(row) }));
            }
            if isa() == Isa::Avx512 {
                // SAFETY: only called when the CPU has AVX-512F.
                builds.push(("avx512", |row| unsafe { softmax_avx512(row) }));
            }
            for (name, build) in builds {
                let mut row = long.clone();
                assert_eq!(build(&mut row).to_bits(), lse_reference.to_bits(), "{name}");
                assert_eq!(row, reference, "{name}");
            }
        }
        let max = 40.0f64;
        let sum: f64 = logits.iter().map(|v| (v - max).exp()).sum();
        assert!((lse_fast - (max + sum.ln())).abs() < 1e-13);
        for (p, v) in fast.iter().zip(logits) {
            let want = (v - max).exp() / sum;
            assert!(
                (p - want).abs() <= 1e-15 * want.max(1e-300) + 1e-300,
                "{p} vs {want}"
            );
        }
    }

    #[test]
    fn the_class_major_softmax_is_the_row_softmax_bit_for_bit() {
        for (rows, classes, stride) in [(1, 1, 1), (5, 3, 8), (64, 87, 64), (13, 25, 64), (9, 2, 9)]
        {
            let logits: Vec<f64> = (0..rows * classes)
                .map(|i| (i as f64 * 0.731).sin() * 25.0 - if i % 7 == 0 { 750.0 } else { 0.0 })
                .collect();
            let mut tile = vec![f64::NAN; stride * classes];
            for t in 0..rows {
                for k in 0..classes {
                    tile[k * stride + t] = logits[t * classes + k];
                }
            }
            let (mut lse, mut sum) = (vec![0.0; rows], vec![0.0; rows]);
            softmax_class_major(&mut tile, stride, &mut lse, &mut sum);
            for t in 0..rows {
                let mut row = logits[t * classes..(t + 1) * classes].to_vec();
                let want = column::softmax(&mut row);
                assert_eq!(
                    lse[t].to_bits(),
                    want.to_bits(),
                    "row {t} of {rows}×{classes}"
                );
                for k in 0..classes {
                    assert_eq!(tile[k * stride + t].to_bits(), row[k].to_bits());
                }
            }
            // The rows past the tile's are left as they were.
            for k in 0..classes {
                assert!(
                    tile[k * stride + rows..(k + 1) * stride]
                        .iter()
                        .all(|v| v.is_nan())
                );
            }
        }
    }

    #[test]
    fn kernels_match_naive_products_for_every_shape() {
        for (rows, d, c) in [
            (1, 1, 1),
            (3, 7, 2),
            (5, 8, 3),
            (7, 19, 10),
            (64, 100, 13),
            (2, 16, 8),
        ] {
            let x = data(rows * d, 1);
            let w = data(c * d, 2);
            let mut out = vec![0.0; rows * c];
            logits(&x, d, &w, c, &mut out);
            for (got, want) in out.iter().zip(naive_logits(&x, d, &w, c)) {
                assert!(
                    (f64::from(*got) - want).abs() < 1e-4 * (1.0 + want.abs()),
                    "{rows}×{d}×{c}: {got} vs {want}"
                );
            }
            let p = data(rows * c, 3);
            let mut grad = vec![1.0; c * d];
            accumulate_gradient(&p, &x, d, c, &mut grad, &x);
            for k in 0..c {
                for j in 0..d {
                    let want = 1.0
                        + (0..rows)
                            .map(|r| f64::from(p[r * c + k]) * f64::from(x[r * d + j]))
                            .sum::<f64>();
                    let got = f64::from(grad[k * d + j]);
                    assert!(
                        (got - want).abs() < 1e-4 * (1.0 + want.abs()),
                        "{rows}×{d}×{c} [{k},{j}]: {got} vs {want}"
                    );
                }
            }
        }
    }
}
