//! Dense-layer products in bfloat16 with `f32` sums: `y = x Wᵀ` with `x`
//! and `W` rounded to bfloat16 (8 significant bits) and every product
//! added into an `f32` sum.
//!
//! CPUs with AVX512-BF16 (Intel Cooper Lake and Sapphire Rapids on, AMD
//! Zen 4 on) multiply pairs of bfloat16 values and add both products into
//! an `f32` lane in one instruction, twice the multiply-adds of an `f32`
//! FMA of the same width. Intel CPUs with AMX (Sapphire Rapids on) go much
//! further with tiles of 16 × 32 pairs (module `amx`); on them the vector
//! instruction is no faster than an `f32` FMA, so the tiles run wherever
//! the kernel grants them ([`unit()`]). The encoder's dense layers are most
//! of its time, so this is the opt-in fast mode of the `transformer`
//! source.
//!
//! Layout. The weights are packed once, at load time, into panels of
//! [`PANEL`] outputs: for each pair of inputs `(2p, 2p+1)` a panel holds
//! the `PANEL` outputs' two weights side by side (one 32-bit word per
//! output, the even input in the low half), which is exactly one
//! instruction's operand. The rows of `x` are rounded to bfloat16 per task;
//! a row in bfloat16 is already a sequence of such pairs, so one 32-bit
//! broadcast feeds a whole panel.
//!
//! Blocking (AVX512-BF16; the tiles have their own, see `amx`). A task
//! takes `TASK_ROWS` rows. For each block of
//! `BLOCK_PAIRS` input pairs (16 KiB of a panel, which stays in the
//! first-level cache) it walks the panels and, within each, the rows
//! `MICRO_ROWS` at a time: 6 rows × 4 vectors = 24 accumulators, which
//! with the 4 weight vectors and a broadcast fits the 32 vector registers.
//!
//! Results. Each output is summed over the inputs in the same order
//! whatever the number of threads or tasks, so results do not depend on
//! the thread count. They do depend on how the CPU rounds inside the
//! paired multiply-add (Intel and AMD need not agree in the last bit), so
//! they are not promised identical across CPUs. Without AVX512-BF16 the
//! portable code computes the same products (one rounding per product
//! added), much more slowly; callers wanting speed check [`supported`] and
//! use `f32` products otherwise.

use rayon::prelude::*;

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod amx;

/// Outputs per panel: four 16-lane vectors.
pub const PANEL: usize = 64;
/// Rows per inner step (see the module notes on registers).
const MICRO_ROWS: usize = 6;
/// Input pairs per cache block: a panel block is `BLOCK_PAIRS × PANEL × 4`
/// bytes = 16 KiB.
const BLOCK_PAIRS: usize = 64;
/// Rows per rayon task: a multiple of [`MICRO_ROWS`], small enough that two
/// threads share a batch evenly, large enough that a task reuses each
/// weight block many times.
const TASK_ROWS: usize = 96;
/// Rows per rayon task on the AMX tiles: a task copies each block of
/// weights into tile order once and reuses it for all its rows, so it
/// takes more rows than a vector task (still several tasks per batch).
const TILE_TASK_ROWS: usize = 192;

/// Whether this CPU multiplies bfloat16 pairs in hardware (with AMX or
/// AVX512-BF16).
pub fn supported() -> bool {
    unit() != Unit::Portable
}

/// What runs the products.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Intel AMX tiles (`tdpbf16ps`), on Linux.
    Tiles,
    /// AVX512-BF16 vectors (`vdpbf16ps`).
    Vectors,
    /// Plain Rust, one product at a time.
    Portable,
}

/// The fastest unit this CPU and process can use: AMX where the CPU has it
/// and the kernel grants it, else AVX512-BF16, else the portable code.
pub fn unit() -> Unit {
    available_units()[0]
}

/// Every unit this CPU and process can use, fastest first (the portable
/// code last).
fn available_units() -> Vec<Unit> {
    let mut units = Vec::new();
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    if amx::available() {
        units.push(Unit::Tiles);
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bf16")
    {
        units.push(Unit::Vectors);
    }
    units.push(Unit::Portable);
    units
}

/// `x` rounded to the nearest bfloat16, ties to even; NaN stays NaN.
/// Branch-free, so loops over it vectorise.
#[inline(always)]
pub fn to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    let rounding = 0x7fff + ((bits >> 16) & 1);
    let rounded = (bits.wrapping_add(rounding) >> 16) as u16;
    // A NaN keeps its sign and becomes quiet, which rounding alone could
    // turn into an infinity.
    let quiet_nan = ((bits >> 16) as u16) | 0x0040;
    if x.is_nan() { quiet_nan } else { rounded }
}

/// The `f32` value of a bfloat16.
pub fn from_bf16(b: u16) -> f32 {
    f32::from_bits(u32::from(b) << 16)
}

/// Two bfloat16 values in one word, `even` in the low half.
#[inline(always)]
fn pair(even: f32, odd: f32) -> u32 {
    u32::from(to_bf16(even)) | (u32::from(to_bf16(odd)) << 16)
}

/// A weight matrix `W` (`outputs × inputs`) rounded to bfloat16 and packed
/// for [`product`].
#[derive(Clone, Debug)]
pub struct PackedWeights {
    outputs: usize,
    inputs: usize,
    /// `panels × pairs × PANEL` words; outputs past `outputs` are zero.
    words: Vec<u32>,
}

impl PackedWeights {
    /// Packs row-major `weight` (`outputs × inputs`). An odd last input is
    /// paired with a zero.
    ///
    /// # Panics
    /// If `weight.len() != outputs · inputs` (a caller's bug).
    pub fn pack(weight: &[f32], outputs: usize, inputs: usize) -> Self {
        assert_eq!(weight.len(), outputs * inputs, "weight shape");
        let pairs = inputs.div_ceil(2);
        let panels = outputs.div_ceil(PANEL);
        let mut words = vec![0u32; panels * pairs * PANEL];
        let at = |o: usize, i: usize| {
            if i < inputs {
                weight[o * inputs + i]
            } else {
                0.0
            }
        };
        for (panel, block) in words.chunks_exact_mut(pairs * PANEL).enumerate() {
            for (p, lanes) in block.chunks_exact_mut(PANEL).enumerate() {
                for (lane, word) in lanes.iter_mut().enumerate() {
                    let o = panel * PANEL + lane;
                    if o < outputs {
                        *word = pair(at(o, 2 * p), at(o, 2 * p + 1));
                    }
                }
            }
        }
        PackedWeights {
            outputs,
            inputs,
            words,
        }
    }

    /// Outputs (rows of `W`).
    pub fn outputs(&self) -> usize {
        self.outputs
    }

    /// Inputs (columns of `W`).
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    fn pairs(&self) -> usize {
        self.inputs.div_ceil(2)
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.words.len() * 4
    }

    /// `W` as row-major `f32` (`outputs × inputs`), each value the
    /// bfloat16 it was rounded to: for `f32` products on CPUs without
    /// AVX512-BF16, where the weights are kept in bfloat16 to save memory.
    /// Rows are unpacked in parallel on the caller's rayon pool.
    pub fn unpack(&self) -> Vec<f32> {
        let (inputs, pairs) = (self.inputs, self.pairs());
        let mut weight = vec![0.0f32; self.outputs * inputs];
        if inputs == 0 {
            return weight;
        }
        weight
            .par_chunks_mut(PANEL * inputs)
            .zip(self.words.par_chunks(pairs * PANEL))
            .for_each(|(rows, panel)| {
                for (lane, row) in rows.chunks_exact_mut(inputs).enumerate() {
                    for (i, value) in row.iter_mut().enumerate() {
                        let word = panel[(i / 2) * PANEL + lane];
                        let half = if i % 2 == 0 { word } else { word >> 16 };
                        *value = from_bf16(half as u16);
                    }
                }
            });
        weight
    }
}

/// `out = x Wᵀ` for row-major `x` (`rows × inputs`) into row-major `out`
/// (`rows × outputs`), on the caller's rayon pool.
///
/// # Panics
/// If the lengths do not fit the shapes (a caller's bug).
pub fn product(x: &[f32], weights: &PackedWeights, out: &mut [f32]) {
    let (inputs, outputs) = (weights.inputs, weights.outputs);
    assert!(inputs > 0 && x.len().is_multiple_of(inputs), "input shape");
    let rows = x.len() / inputs;
    assert_eq!(out.len(), rows * outputs, "output shape");
    if outputs == 0 {
        return;
    }
    product_on(unit(), x, weights, out);
}

/// [`product`] on a given unit, which must be available (see
/// [`available_units`]).
fn product_on(unit: Unit, x: &[f32], weights: &PackedWeights, out: &mut [f32]) {
    let (inputs, outputs) = (weights.inputs, weights.outputs);
    let rows = x.len() / inputs;
    if outputs == 0 || rows == 0 {
        return;
    }
    let task_rows = task_rows(unit);
    out.par_chunks_mut(task_rows * outputs)
        .zip(x.par_chunks(task_rows * inputs))
        .for_each(|(out, x)| task_on(unit, x, weights, out));
}

/// Rows per task on `unit`.
fn task_rows(unit: Unit) -> usize {
    match unit {
        Unit::Tiles => TILE_TASK_ROWS,
        _ => TASK_ROWS,
    }
}

/// One task's rows `x` into `out`.
fn task_on(unit: Unit, x: &[f32], weights: &PackedWeights, out: &mut [f32]) {
    match unit {
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        // SAFETY: the CPU has AMX and the process may use it.
        Unit::Tiles => unsafe { amx::task(x, weights, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX-512F and AVX512-BF16.
        Unit::Vectors => unsafe { avx512::task(x, weights, out) },
        _ => portable_task(&pack_rows(x, weights.inputs), weights, out),
    }
}

/// [`product`] into a new vector, each task's part of it zeroed by that
/// task (see [`super::filled_in_parallel`]).
pub fn product_to_vec(x: &[f32], weights: &PackedWeights) -> Vec<f32> {
    let (inputs, outputs) = (weights.inputs, weights.outputs);
    assert!(inputs > 0 && x.len().is_multiple_of(inputs), "input shape");
    let rows = x.len() / inputs;
    let unit = unit();
    let task_rows = task_rows(unit);
    super::filled_in_parallel(
        rows * outputs,
        task_rows * outputs,
        || (),
        |(), task, out| {
            let x = &x[task * task_rows * inputs..][..out.len() / outputs * inputs];
            task_on(unit, x, weights, out);
        },
    )
}

/// Rows of `x` as bfloat16 pairs, `pairs` words per row.
#[inline(always)]
fn pack_rows(x: &[f32], inputs: usize) -> Vec<u32> {
    let pairs = inputs.div_ceil(2);
    let mut words = vec![0u32; x.len() / inputs * pairs];
    for (row, packed) in x.chunks_exact(inputs).zip(words.chunks_exact_mut(pairs)) {
        pack_row(row, packed);
    }
    words
}

/// One row as bfloat16 pairs into `packed` (`row.len().div_ceil(2)`
/// words; an odd last input is paired with a zero).
#[inline(always)]
fn pack_row(row: &[f32], packed: &mut [u32]) {
    let even = row.chunks_exact(2);
    if let [last] = even.remainder() {
        packed[row.len() / 2] = pair(*last, 0.0);
    }
    for (word, p) in packed.iter_mut().zip(even) {
        *word = pair(p[0], p[1]);
    }
}

/// The same sums one product at a time: for each pair, the odd input's
/// product then the even one's, each rounded into the `f32` sum (the order
/// of Intel's definition of the paired multiply-add).
fn portable_task(rows: &[u32], weights: &PackedWeights, out: &mut [f32]) {
    let pairs = weights.pairs();
    let outputs = weights.outputs;
    for (row, y) in rows.chunks_exact(pairs).zip(out.chunks_exact_mut(outputs)) {
        for (o, y) in y.iter_mut().enumerate() {
            let panel = &weights.words[(o / PANEL) * pairs * PANEL..];
            let lane = o % PANEL;
            let mut sum = 0.0f32;
            for (p, &a) in row.iter().enumerate() {
                let w = panel[p * PANEL + lane];
                sum += from_bf16((a >> 16) as u16) * from_bf16((w >> 16) as u16);
                sum += from_bf16(a as u16) * from_bf16(w as u16);
            }
            *y = sum;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{BLOCK_PAIRS, MICRO_ROWS, PANEL, PackedWeights, pack_rows};
    use std::arch::x86_64::*;

    /// One task: rows `x` times every panel into `out`.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) fn task(x: &[f32], weights: &PackedWeights, out: &mut [f32]) {
        // Rounded here, so the conversion is compiled for AVX-512 too.
        let rows = &pack_rows(x, weights.inputs)[..];
        let pairs = weights.pairs();
        let outputs = weights.outputs;
        let count = rows.len() / pairs;
        debug_assert_eq!(out.len(), count * outputs);
        let panels = outputs.div_ceil(PANEL);
        let mut start = 0;
        while start < pairs {
            let block = BLOCK_PAIRS.min(pairs - start);
            for panel in 0..panels {
                let valid = PANEL.min(outputs - panel * PANEL);
                let masks: [__mmask16; 4] = std::array::from_fn(|v| {
                    let lanes = valid.saturating_sub(16 * v).min(16);
                    ((1u32 << lanes) - 1) as __mmask16
                });
                let b = &weights.words[(panel * pairs + start) * PANEL..][..block * PANEL];
                let mut row = 0;
                while row < count {
                    let micro = MICRO_ROWS.min(count - row);
                    let a = &rows[row * pairs + start..];
                    let c = &mut out[row * outputs + panel * PANEL..];
                    let first = start == 0;
                    // SAFETY (every arm): the slices hold `micro` rows of
                    // `pairs` words (`a`) and of `outputs` values (`c`),
                    // and `b` holds `block` pairs of the panel; the masks
                    // keep the stores inside the row.
                    unsafe {
                        for_block_size!(
                            micro,
                            micro_kernel(a, pairs, b, block, c, outputs, masks, first)
                        );
                    }
                    row += micro;
                }
            }
            start += block;
        }
    }

    /// `R` rows × one panel over `block` input pairs, added to `c` (or
    /// written, on the first block).
    ///
    /// # Safety
    /// `a` holds `R` rows at stride `a_stride` with `block` words each; `b`
    /// holds `block × PANEL` words; `c` holds `R` rows at stride `c_stride`
    /// covering the lanes set in `masks`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn micro_kernel<const R: usize>(
        a: &[u32],
        a_stride: usize,
        b: &[u32],
        block: usize,
        c: &mut [f32],
        c_stride: usize,
        masks: [__mmask16; 4],
        first: bool,
    ) {
        debug_assert!(a.len() >= (R - 1) * a_stride + block);
        debug_assert!(b.len() >= block * PANEL);
        let (a, b, c) = (a.as_ptr(), b.as_ptr(), c.as_mut_ptr());
        // SAFETY: in-bounds by this function's contract; loads and stores
        // of lanes outside `masks` are suppressed.
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); 4]; R];
            if !first {
                for (r, acc) in acc.iter_mut().enumerate() {
                    for (v, acc) in acc.iter_mut().enumerate() {
                        *acc = _mm512_maskz_loadu_ps(masks[v], c.add(r * c_stride + 16 * v));
                    }
                }
            }
            for p in 0..block {
                let w = b.add(p * PANEL);
                let weights: [__m512bh; 4] = std::array::from_fn(|v| {
                    std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(
                        w.add(16 * v).cast(),
                    ))
                });
                for (r, acc) in acc.iter_mut().enumerate() {
                    let x = std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(
                        *a.add(r * a_stride + p) as i32,
                    ));
                    for (acc, &w) in acc.iter_mut().zip(&weights) {
                        *acc = _mm512_dpbf16_ps(*acc, x, w);
                    }
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                for (v, &acc) in acc.iter().enumerate() {
                    _mm512_mask_storeu_ps(c.add(r * c_stride + 16 * v), masks[v], acc);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Varied values in [−2, 2) from a fixed seed.
    fn values(n: usize, seed: u64) -> Vec<f32> {
        lca_testkit::data::noise(n, seed)
            .into_iter()
            .map(|v| v as f32)
            .collect()
    }

    /// The exact sums of the bfloat16-rounded inputs, in `f64`, and the
    /// sums of magnitudes that bound their rounding error.
    fn reference(x: &[f32], w: &[f32], inputs: usize) -> (Vec<f64>, Vec<f64>) {
        let round = |v: f32| f64::from(from_bf16(to_bf16(v)));
        let mut sums = Vec::new();
        let mut magnitudes = Vec::new();
        for row in x.chunks_exact(inputs) {
            for weight in w.chunks_exact(inputs) {
                let terms = row.iter().zip(weight).map(|(&a, &b)| round(a) * round(b));
                sums.push(terms.clone().sum());
                magnitudes.push(terms.map(f64::abs).sum());
            }
        }
        (sums, magnitudes)
    }

    #[test]
    fn unpacking_gives_back_the_rounded_weights() {
        for (outputs, inputs) in [(1, 1), (3, 5), (PANEL + 7, 9), (2 * PANEL, 16)] {
            let w = values(outputs * inputs, 7);
            let unpacked = PackedWeights::pack(&w, outputs, inputs).unpack();
            let rounded: Vec<f32> = w.iter().map(|&v| from_bf16(to_bf16(v))).collect();
            assert_eq!(unpacked, rounded, "{outputs} × {inputs}");
        }
    }

    #[test]
    fn rounding_is_to_nearest_even() {
        assert_eq!(to_bf16(1.0), 0x3f80);
        // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to even (1).
        assert_eq!(to_bf16(1.0 + 2f32.powi(-8)), 0x3f80);
        // 1 + 3·2^-8 lies halfway between 1 + 2^-7 and 1 + 2^-6: to even.
        assert_eq!(to_bf16(1.0 + 3.0 * 2f32.powi(-8)), 0x3f82);
        assert_eq!(to_bf16(1.0 + 2f32.powi(-8) + 2f32.powi(-20)), 0x3f81);
        assert_eq!(to_bf16(-2.5), 0xc020);
        assert_eq!(to_bf16(f32::INFINITY), 0x7f80);
        assert_eq!(
            to_bf16(f32::MAX),
            0x7f80,
            "rounds past the largest bfloat16"
        );
        assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
        assert!(from_bf16(to_bf16(-f32::NAN)).is_nan());
        for v in values(1000, 3) {
            let back = from_bf16(to_bf16(v));
            assert!((back - v).abs() <= v.abs() * 2f32.powi(-8), "{v} → {back}");
        }
    }

    #[test]
    fn products_match_exact_sums_of_the_rounded_values() {
        // Shapes with partial panels, an odd input count, partial micro
        // blocks, several cache blocks and several tasks, and for the tiles
        // partial row, output and input-pair tiles.
        for &(rows, inputs, outputs) in &[
            (1, 1, 1),
            (7, 3, 5),
            (13, 130, 70),
            (100, 384, 64),
            (200, 257, 129),
            (40, 50, 300),
        ] {
            let x = values(rows * inputs, rows as u64);
            let w = values(outputs * inputs, inputs as u64);
            let packed = PackedWeights::pack(&w, outputs, inputs);
            let (sums, magnitudes) = reference(&x, &w, inputs);
            let mut fast = vec![f32::NAN; rows * outputs];
            product(&x, &packed, &mut fast);
            assert_eq!(product_to_vec(&x, &packed), fast);
            let pairs = inputs.div_ceil(2);
            // Every unit this machine has (the portable code everywhere).
            for unit in available_units() {
                let mut out = vec![f32::NAN; rows * outputs];
                product_on(unit, &x, &packed, &mut out);
                for (k, (&f, (&s, &m))) in out.iter().zip(sums.iter().zip(&magnitudes)).enumerate()
                {
                    // Each of the 2·pairs additions rounds once (relative
                    // 2^-24).
                    let bound = m * 2.0 * pairs as f64 * 2f64.powi(-24) + 1e-30;
                    assert!(
                        (f64::from(f) - s).abs() <= bound,
                        "{unit:?}, {rows}×{inputs}×{outputs} at {k}: {f} vs {s}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_units_are_listed_fastest_first_and_the_portable_code_is_always_there() {
        let units = available_units();
        assert_eq!(units.last(), Some(&Unit::Portable));
        assert_eq!(units[0], unit());
        assert_eq!(supported(), units.len() > 1);
    }

    #[test]
    fn thread_count_does_not_change_the_bits() {
        let (rows, inputs, outputs) = (500, 200, 150);
        let x = values(rows * inputs, 11);
        let packed = PackedWeights::pack(&values(outputs * inputs, 12), outputs, inputs);
        for unit in available_units() {
            let run = |threads| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let mut out = vec![0.0; rows * outputs];
                pool.install(|| product_on(unit, &x, &packed, &mut out));
                out
            };
            assert_eq!(run(1), run(3), "{unit:?}");
        }
    }

    #[test]
    fn empty_inputs_and_outputs() {
        let packed = PackedWeights::pack(&[], 0, 4);
        let mut out = [];
        product(&[1.0; 8], &packed, &mut out);
        let packed = PackedWeights::pack(&[1.0; 8], 2, 4);
        let mut out = [];
        product(&[], &packed, &mut out);
        assert_eq!(
            (packed.outputs(), packed.inputs(), packed.bytes()),
            (2, 4, 2 * PANEL * 4)
        );
    }
}
