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

const LANES: usize = 8;

/// `out[r·c + k] = Σ_j x[r·d + j] · w[k·d + j]` for every row `r` of `x`.
pub fn logits(x: &[f32], d: usize, w: &[f32], c: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports the features the function is compiled for.
            return unsafe { avx2::logits(x, d, w, c, out) };
        }
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
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports the features the function is compiled for.
            return unsafe { avx2::gradient(p, x, d, c, grad, upcoming) };
        }
    }
    let _ = upcoming;
    gradient_impl(p, x, d, c, grad);
}

/// The sparse products of the working-set solver over one tile of rows.
/// The tile is column-major: `columns[i·tile + r]` is row `r` of the `i`-th
/// working-set neuron, whose (class, weight) pairs are
/// `starts[i]..starts[i + 1]` of `classes` and `weights`. Logits and
/// residuals are column-major by class with the same `tile` stride, and
/// only the first `rows` rows of the tile are read.
pub struct SparseTile<'a> {
    /// Working-set columns of the tile.
    pub columns: &'a [f32],
    /// Row stride of every column.
    pub tile: usize,
    /// Rows in use.
    pub rows: usize,
    /// Pair ranges per neuron (one more entry than neurons).
    pub starts: &'a [usize],
    /// Class of every pair.
    pub classes: &'a [usize],
}

/// `logits[k·tile + r] += Σ_pairs weight · column[r]` for the pairs of
/// class `k` (the logits of the tile's rows from sparse weights).
pub fn sparse_logits(tile: &SparseTile<'_>, weights: &[f32], logits: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports the features the function is compiled for.
            return unsafe { avx2::sparse_logits(tile, weights, logits) };
        }
    }
    sparse_logits_impl(tile, weights, logits);
}

/// `grad[p] += Σ_r column[r] · residuals[class(p)·tile + r]` for every pair
/// `p` (the gradient of the working-set weights over the tile's rows).
pub fn sparse_gradient(tile: &SparseTile<'_>, residuals: &[f32], grad: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports the features the function is compiled for.
            return unsafe { avx2::sparse_gradient(tile, residuals, grad) };
        }
    }
    sparse_gradient_impl(tile, residuals, grad);
}

#[inline(always)]
fn sparse_logits_impl(tile: &SparseTile<'_>, weights: &[f32], logits: &mut [f32]) {
    let rows = tile.rows;
    for i in 0..tile.starts.len() - 1 {
        let column = &tile.columns[i * tile.tile..i * tile.tile + rows];
        for p in tile.starts[i]..tile.starts[i + 1] {
            let weight = weights[p];
            if weight == 0.0 {
                continue;
            }
            let k = tile.classes[p];
            let out = &mut logits[k * tile.tile..k * tile.tile + rows];
            for (o, &v) in out.iter_mut().zip(column) {
                *o = fma(weight, v, *o);
            }
        }
    }
}

#[inline(always)]
fn sparse_gradient_impl(tile: &SparseTile<'_>, residuals: &[f32], grad: &mut [f64]) {
    let rows = tile.rows;
    let full = rows / LANES * LANES;
    for i in 0..tile.starts.len() - 1 {
        let column = &tile.columns[i * tile.tile..i * tile.tile + rows];
        for p in tile.starts[i]..tile.starts[i + 1] {
            let k = tile.classes[p];
            let residual = &residuals[k * tile.tile..k * tile.tile + rows];
            let mut acc = [0.0f32; LANES];
            let mut r = 0;
            while r < full {
                for l in 0..LANES {
                    acc[l] = fma(column[r + l], residual[r + l], acc[l]);
                }
                r += LANES;
            }
            let mut sum = hsum(&acc);
            for rr in full..rows {
                sum = fma(column[rr], residual[rr], sum);
            }
            grad[p] += f64::from(sum);
        }
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
    pub(super) fn sparse_logits(tile: &super::SparseTile<'_>, weights: &[f32], logits: &mut [f32]) {
        // The portable loop, compiled here with FMA and 256-bit vectors.
        super::sparse_logits_impl(tile, weights, logits);
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn sparse_gradient(
        tile: &super::SparseTile<'_>,
        residuals: &[f32],
        grad: &mut [f64],
    ) {
        super::sparse_gradient_impl(tile, residuals, grad);
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn logits(x: &[f32], d: usize, w: &[f32], c: usize, out: &mut [f32]) {
        let rows = x.len().checked_div(d).unwrap_or(0);
        assert!(
            x.len() >= rows * d && w.len() >= c * d && out.len() >= rows * c,
            "kernel slices too short"
        );
        for (first, k) in class_groups(c) {
            match k {
                1 => logits_group::<1>(x, d, w, c, first, rows, out),
                2 => logits_group::<2>(x, d, w, c, first, rows, out),
                3 => logits_group::<3>(x, d, w, c, first, rows, out),
                4 => logits_group::<4>(x, d, w, c, first, rows, out),
                5 => logits_group::<5>(x, d, w, c, first, rows, out),
                _ => logits_group::<6>(x, d, w, c, first, rows, out),
            }
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
        let rows = x.len().checked_div(d).unwrap_or(0);
        assert!(
            x.len() >= rows * d && p.len() >= rows * c && grad.len() >= c * d,
            "kernel slices too short"
        );
        let groups: Vec<(usize, usize)> = class_groups(c).collect();
        // Spread the prefetches of `upcoming` evenly over the work.
        let lines = upcoming.len().div_ceil(16);
        let tiles = (d / LANES).div_ceil(2).max(1) * groups.len();
        let per_tile = lines.div_ceil(tiles);
        let mut fetched = 0usize;
        for (first, k) in groups {
            let prefetch = Prefetch {
                data: upcoming,
                per_tile,
                next_line: &mut fetched,
            };
            match k {
                1 => gradient_group::<1>(p, x, d, c, first, rows, grad, prefetch),
                2 => gradient_group::<2>(p, x, d, c, first, rows, grad, prefetch),
                3 => gradient_group::<3>(p, x, d, c, first, rows, grad, prefetch),
                4 => gradient_group::<4>(p, x, d, c, first, rows, grad, prefetch),
                5 => gradient_group::<5>(p, x, d, c, first, rows, grad, prefetch),
                _ => gradient_group::<6>(p, x, d, c, first, rows, grad, prefetch),
            }
        }
    }

    /// Cache lines of upcoming data to request, a few per tile.
    struct Prefetch<'a, 'b> {
        data: &'a [f32],
        per_tile: usize,
        next_line: &'b mut usize,
    }

    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    fn gradient_group<const K: usize>(
        p: &[f32],
        x: &[f32],
        d: usize,
        c: usize,
        first: usize,
        rows: usize,
        grad: &mut [f32],
        prefetch: Prefetch<'_, '_>,
    ) {
        let full = d / LANES * LANES;
        let xp = x.as_ptr();
        let gp = grad.as_mut_ptr();
        let mut j = 0;
        while j < full {
            for _ in 0..prefetch.per_tile {
                let offset = *prefetch.next_line * 16;
                if offset < prefetch.data.len() {
                    // SAFETY: the address is inside `prefetch.data`; a
                    // prefetch never faults and has no visible effect.
                    unsafe {
                        _mm_prefetch::<_MM_HINT_T0>(prefetch.data.as_ptr().add(offset).cast());
                    };
                    *prefetch.next_line += 1;
                }
            }
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
        }
    }

    #[test]
    fn sparse_tile_kernels_match_naive_sums_and_the_portable_path() {
        // Three neurons with 2, 0 and 3 pairs over 4 classes; tiles of 13
        // rows (a tail after the 8 lanes) in a stride of 16.
        let starts = [0, 2, 2, 5];
        let classes = [0, 3, 1, 2, 3];
        let (tile, rows) = (16, 13);
        let columns = data(3 * tile, 7);
        let weights = [0.5f32, -1.25, 0.0, 2.0, 0.75];
        let residuals = data(4 * tile, 8);
        let sparse = SparseTile {
            columns: &columns,
            tile,
            rows,
            starts: &starts,
            classes: &classes,
        };
        let mut fast = vec![0.25f32; 4 * tile];
        let mut portable = fast.clone();
        sparse_logits(&sparse, &weights, &mut fast);
        sparse_logits_impl(&sparse, &weights, &mut portable);
        assert_eq!(fast, portable);
        let neuron_of = [0, 0, 2, 2, 2];
        for k in 0..4 {
            for r in 0..tile {
                let want = 0.25
                    + if r < rows {
                        (0..5)
                            .filter(|&p| classes[p] == k)
                            .map(|p| {
                                f64::from(weights[p]) * f64::from(columns[neuron_of[p] * tile + r])
                            })
                            .sum::<f64>()
                    } else {
                        0.0
                    };
                let got = f64::from(fast[k * tile + r]);
                assert!(
                    (got - want).abs() < 1e-5,
                    "logit [{k},{r}]: {got} vs {want}"
                );
            }
        }
        let mut grad_fast = vec![1.0f64; 5];
        let mut grad_portable = grad_fast.clone();
        sparse_gradient(&sparse, &residuals, &mut grad_fast);
        sparse_gradient_impl(&sparse, &residuals, &mut grad_portable);
        assert_eq!(grad_fast, grad_portable);
        for p in 0..5 {
            let want = 1.0
                + (0..rows)
                    .map(|r| {
                        f64::from(columns[neuron_of[p] * tile + r])
                            * f64::from(residuals[classes[p] * tile + r])
                    })
                    .sum::<f64>();
            assert!(
                (grad_fast[p] - want).abs() < 1e-5,
                "pair {p}: {} vs {want}",
                grad_fast[p]
            );
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
