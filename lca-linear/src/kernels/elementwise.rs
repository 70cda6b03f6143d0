//! Element-wise functions of a transformer layer, fused with the additions
//! around them: `gelu(x + bias)` after the first MLP product, and a masked,
//! scaled softmax over attention scores, inside a whole self-attention of
//! one sequence (its products are too small for a general matrix product
//! to pay off).
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

/// `e^x` for `x ≤ 0`: `x = k·ln 2 + r` with `|r| ≤ ln 2 / 2`, a degree-7
/// Taylor polynomial for `e^r` (remainder below 6e-9 relative) and `2^k`
/// built in the exponent bits. Below −87 (where `e^x` leaves the normal
/// `f32` range) it returns `e^−87`, which no sum of probabilities can tell
/// from zero.
#[inline(always)]
pub(crate) fn exp_nonpositive(x: f32) -> f32 {
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

dispatched! {
    /// `v ← gelu(v + bias[j])` for every row of `values` (rows of
    /// `bias.len()` values, the last dimension of the tensor).
    pub fn bias_gelu(values: &mut [f32], bias: &[f32], how: Gelu) => bias_gelu_portable;
}

/// The nonlinearity of a gated MLP: `act(gate) · up`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// SiLU, `x·σ(x)` (SwiGLU: Llama, Mistral, Qwen).
    Silu,
    /// GELU (GeGLU: Gemma uses the `tanh` form).
    Gelu(Gelu),
}

/// `x·σ(x)` without overflow: `e^−|x|` is the only exponential.
#[inline(always)]
fn silu(x: f32) -> f32 {
    let e = exp_nonpositive(-x.abs());
    let inv = 1.0 / (1.0 + e);
    if x >= 0.0 { x * inv } else { x * e * inv }
}

dispatched! {
    /// `out[i] = act(gate[i]) · up[i]` for every row: `gate_up` holds rows of
    /// `2·inner` values, the gate's `inner` first, then the up projection's;
    /// `out` rows of `inner`.
    pub fn gated(gate_up: &[f32], inner: usize, how: Gate, out: &mut [f32]) => gated_portable;
}

#[inline(always)]
fn gated_portable(gate_up: &[f32], inner: usize, how: Gate, out: &mut [f32]) {
    if inner == 0 {
        return;
    }
    for (pair, out) in gate_up
        .chunks_exact(2 * inner)
        .zip(out.chunks_exact_mut(inner))
    {
        let (gate, up) = pair.split_at(inner);
        for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
            *o = match how {
                Gate::Silu => silu(g),
                Gate::Gelu(kind) => gelu(g, kind),
            } * u;
        }
    }
}

dispatched! {
    /// Root-mean-square normalisation of every row of `x` (rows of
    /// `weight.len()` values) into `out`: `x / √(mean(x²) + eps) · (offset +
    /// weight)`. `offset` is 0 for Llama-style norms and 1 for Gemma's, which
    /// store the weight less one. The mean of squares is summed in 16 fixed
    /// lanes, so every build gives the same bits.
    pub fn rms_norm(
        x: &[f32],
        weight: &[f32],
        eps: f32,
        offset: f32,
        out: &mut [f32],
    ) => rms_norm_portable;
}

dispatched! {
    /// [`rms_norm`] in place.
    pub fn rms_norm_in_place(
        values: &mut [f32],
        weight: &[f32],
        eps: f32,
        offset: f32,
    ) => rms_norm_in_place_portable;
}

/// `1 / √(mean(row²) + eps)`, the squares summed in 16 fixed lanes.
#[inline(always)]
fn inverse_rms(row: &[f32], eps: f32) -> f32 {
    let mut sums = [0.0f32; WIDE];
    let mut blocks = row.chunks_exact(WIDE);
    for block in blocks.by_ref() {
        for (s, &v) in sums.iter_mut().zip(block) {
            *s = v.mul_add(v, *s);
        }
    }
    for (s, &v) in sums.iter_mut().zip(blocks.remainder()) {
        *s = v.mul_add(v, *s);
    }
    let mean = sums.iter().sum::<f32>() / row.len() as f32;
    1.0 / (mean + eps).sqrt()
}

#[inline(always)]
fn rms_norm_portable(x: &[f32], weight: &[f32], eps: f32, offset: f32, out: &mut [f32]) {
    let width = weight.len();
    if width == 0 {
        return;
    }
    for (row, out) in x.chunks_exact(width).zip(out.chunks_exact_mut(width)) {
        let inv = inverse_rms(row, eps);
        for ((o, &v), &w) in out.iter_mut().zip(row).zip(weight) {
            *o = (v * inv) * (offset + w);
        }
    }
}

#[inline(always)]
fn rms_norm_in_place_portable(values: &mut [f32], weight: &[f32], eps: f32, offset: f32) {
    let width = weight.len();
    if width == 0 {
        return;
    }
    for row in values.chunks_exact_mut(width) {
        let inv = inverse_rms(row, eps);
        for (v, &w) in row.iter_mut().zip(weight) {
            *v = (*v * inv) * (offset + w);
        }
    }
}

/// How the query, key and value heads of one attention are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heads {
    /// Query heads.
    pub query: usize,
    /// Key and value heads: as many as `query`, or fewer, each shared by
    /// `query / key_value` consecutive query heads (grouped-query
    /// attention).
    pub key_value: usize,
    /// Values per head.
    pub width: usize,
}

impl Heads {
    /// Equal numbers of query and key/value heads.
    pub fn multi(heads: usize, width: usize) -> Self {
        Heads {
            query: heads,
            key_value: heads,
            width,
        }
    }

    /// Values in one token's row of queries, keys and values.
    pub fn row(&self) -> usize {
        (self.query + 2 * self.key_value) * self.width
    }

    /// Values in one token's row of output.
    pub fn output(&self) -> usize {
        self.query * self.width
    }

    /// True when the layout is usable: at least one head of each kind, and
    /// query heads in whole groups.
    pub fn is_valid(&self) -> bool {
        self.query > 0
            && self.key_value > 0
            && self.width > 0
            && self.query.is_multiple_of(self.key_value)
    }
}

/// Which keys a query sees, besides the padding mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Visibility {
    /// Every key (encoders).
    All,
    /// Its own position and earlier ones (decoders); with a window, only the
    /// last `window` of them, itself included (sliding-window attention).
    Causal {
        /// Keys visible to each query, or `None` for all earlier ones.
        window: Option<usize>,
    },
}

impl Visibility {
    /// The queries that see key `j` (as 32-bit lane indices; past the last
    /// token too, for padded vectors of queries).
    #[inline(always)]
    fn queries_seeing(self, j: usize) -> std::ops::Range<u32> {
        match self {
            Visibility::All => 0..u32::MAX,
            Visibility::Causal { window } => {
                let j = j as u32;
                j..window.map_or(u32::MAX, |w| j.saturating_add(w.max(1) as u32))
            }
        }
    }

    /// The keys query `t` sees, of `tokens`.
    #[inline(always)]
    fn keys(self, t: usize, tokens: usize) -> std::ops::Range<usize> {
        match self {
            Visibility::All => 0..tokens,
            Visibility::Causal { window } => {
                let end = t + 1;
                window.map_or(0, |w| end.saturating_sub(w.max(1)))..end
            }
        }
    }
}

dispatched! {
    /// Multi-head self-attention of one sequence: `softmax(q kᵀ·scale +
    /// additive) v` for every query head, over the keys `visible` lets it see.
    /// `qkv` holds the sequence's `tokens` rows of queries, keys and values side
    /// by side (`heads.row()` values each: all query heads, then all key heads,
    /// then all value heads, each head `heads.width` wide); `additive` has one
    /// value per key position (0, or a large negative number for padding); the
    /// query heads' outputs go side by side into `context` (`tokens ×
    /// heads.output()`). `scratch` is reused between calls.
    ///
    /// Every product is a fused multiply-add in a fixed order, so all builds
    /// give the same bits.
    pub fn attention(
        qkv: &[f32],
        additive: &[f32],
        heads: Heads,
        visible: Visibility,
        scale: f32,
        scratch: &mut Vec<f32>,
        context: &mut [f32],
    ) => attention_portable;
}

/// Vector lanes the attention loops are written in (one AVX-512 register,
/// two AVX2 ones).
const WIDE: usize = 16;

#[inline(always)]
fn attention_portable(
    qkv: &[f32],
    additive: &[f32],
    heads: Heads,
    visible: Visibility,
    scale: f32,
    scratch: &mut Vec<f32>,
    context: &mut [f32],
) {
    let tokens = additive.len();
    if tokens == 0 || !heads.is_valid() {
        return;
    }
    let part = heads.width;
    let width = heads.output();
    let group = heads.query / heads.key_value;
    // The scores are built transposed: one row per key, the queries along
    // it (`stride` of them, padded to whole vectors). The softmax over each
    // query's keys then runs down the rows in whole vectors, 16 queries at
    // once, with no sum or maximum across a vector's lanes; and each key's
    // weights for a block of queries sit side by side.
    let stride = tokens.next_multiple_of(WIDE);
    scratch.resize(part * stride + tokens * stride + stride, 0.0);
    let (queries, rest) = scratch.split_at_mut(part * stride);
    let (weights, inverse) = rest.split_at_mut(tokens * stride);
    let sequence = Sequence {
        qkv,
        row: heads.row(),
    };
    for head in 0..heads.query {
        let kv = head / group;
        let q_at = head * part;
        let k_at = width + kv * part;
        let v_at = width + heads.key_value * part + kv * part;
        transpose_head(&sequence, q_at, part, tokens, stride, queries);
        let mut first = 0;
        while first < tokens {
            let count = (tokens - first).min(4);
            let block = ScoreBlock {
                first,
                k_at,
                part,
                stride,
            };
            match count {
                4 => block.compute::<4>(&sequence, queries, weights),
                3 => block.compute::<3>(&sequence, queries, weights),
                2 => block.compute::<2>(&sequence, queries, weights),
                _ => block.compute::<1>(&sequence, queries, weights),
            }
            first += count;
        }
        softmax_down_keys(weights, additive, visible, scale, stride, inverse);
        let values = Values {
            sequence: &sequence,
            weights,
            inverse,
            stride,
            visible,
            tokens,
        };
        let mut first = 0;
        while first < tokens {
            let count = (tokens - first).min(QUERY_BLOCK);
            match count {
                4 => values.weigh::<4>(first, q_at, v_at, part, context, width),
                3 => values.weigh::<3>(first, q_at, v_at, part, context, width),
                2 => values.weigh::<2>(first, q_at, v_at, part, context, width),
                _ => values.weigh::<1>(first, q_at, v_at, part, context, width),
            }
            first += count;
        }
    }
}

/// One head (columns `at..at + part`) of every token, transposed into
/// `out` (`part` rows of `stride`, zero past the last token), 16 tokens by
/// 16 columns at a time: each token's values are read as whole vectors,
/// and each transposed row is written as one.
#[inline(always)]
fn transpose_head(
    sequence: &Sequence<'_>,
    at: usize,
    part: usize,
    tokens: usize,
    stride: usize,
    out: &mut [f32],
) {
    for first in (0..stride).step_by(WIDE) {
        let count = tokens.saturating_sub(first).min(WIDE);
        let mut d = 0;
        while d < part {
            let columns = (part - d).min(WIDE);
            let mut tile = [[0.0f32; WIDE]; WIDE];
            for (i, tile) in tile.iter_mut().enumerate().take(count) {
                let values = &sequence.row(first + i)[at + d..][..columns];
                if columns == WIDE {
                    *tile = values.try_into().unwrap_or_else(|_| unreachable!());
                } else {
                    tile[..columns].copy_from_slice(values);
                }
            }
            for c in 0..columns {
                let row: &mut [f32; WIDE] = (&mut out[(d + c) * stride + first..][..WIDE])
                    .try_into()
                    .unwrap_or_else(|_| unreachable!());
                for (i, value) in row.iter_mut().enumerate() {
                    *value = tile[i][c];
                }
            }
            d += columns;
        }
    }
}

/// What an unseen key's score becomes: far enough below any score that it
/// never is the maximum, and its weight is 0 (see [`NEGLIGIBLE`]).
const UNSEEN: f32 = -1e30;

/// Below this (a score minus its query's maximum), a key's weight is 0:
/// e^-80 is 2e-35, 28 binary orders under the last bit of the sum, which is
/// at least 1. Exact zeros also keep subnormal numbers out of the weighted
/// sums (e^-87 times a probability is subnormal, and every product with a
/// subnormal costs a microcode assist).
const NEGLIGIBLE: f32 = -80.0;

/// The softmax over keys of every query's scores. `weights` holds one row
/// per key with the queries along it (`stride` of them) and `additive` one
/// value per key. Each score becomes `e^(s·scale + additive − max)` over
/// the keys its query sees, 0 for the others, and `inverse` gets one over
/// each query's sum. Every step is elementwise across the queries, so the
/// loops run in whole vectors in every build, each lane summing its keys in
/// ascending order.
#[inline(always)]
fn softmax_down_keys(
    weights: &mut [f32],
    additive: &[f32],
    visible: Visibility,
    scale: f32,
    stride: usize,
    inverse: &mut [f32],
) {
    let tokens = additive.len();
    for start in (0..stride).step_by(WIDE) {
        // Lane indices in 32 bits, so a mask compares 16 lanes at once.
        let lanes: [u32; WIDE] = std::array::from_fn(|lane| (start + lane) as u32);
        let mut maxima = [f32::MIN; WIDE];
        for (j, (row, &a)) in weights.chunks_exact_mut(stride).zip(additive).enumerate() {
            let seeing = visible.queries_seeing(j);
            let vector: &mut [f32; WIDE] = (&mut row[start..start + WIDE])
                .try_into()
                .unwrap_or_else(|_| unreachable!());
            // Worked on in registers: a copy the compiler sees whole.
            let mut v = *vector;
            for lane in 0..WIDE {
                let seen = (seeing.start <= lanes[lane]) & (lanes[lane] < seeing.end);
                v[lane] = if seen {
                    v[lane].mul_add(scale, a)
                } else {
                    UNSEEN
                };
                maxima[lane] = larger(maxima[lane], v[lane]);
            }
            *vector = v;
        }
        let mut sums = [0.0f32; WIDE];
        for row in weights.chunks_exact_mut(stride).take(tokens) {
            let vector: &mut [f32; WIDE] = (&mut row[start..start + WIDE])
                .try_into()
                .unwrap_or_else(|_| unreachable!());
            let mut v = *vector;
            for lane in 0..WIDE {
                let x = v[lane] - maxima[lane];
                v[lane] = if x < NEGLIGIBLE {
                    0.0
                } else {
                    exp_nonpositive(x)
                };
                sums[lane] += v[lane];
            }
            *vector = v;
        }
        for (inverse, sum) in inverse[start..start + WIDE].iter_mut().zip(sums) {
            *inverse = 1.0 / sum;
        }
    }
}

/// The larger of two scores, as one vector instruction (`f32::max` also
/// orders NaN, which keeps the compiler from vectorising the loop; scores
/// are finite).
#[inline(always)]
fn larger(a: f32, b: f32) -> f32 {
    if b > a { b } else { a }
}

/// Queries whose weighted values are summed together: each value vector
/// read serves all of them, and their sums are independent chains of
/// multiply-adds, which keeps the vector units busy (one query alone waits
/// on each addition's latency).
const QUERY_BLOCK: usize = 4;

/// One sequence's query-key-value rows.
struct Sequence<'a> {
    qkv: &'a [f32],
    /// Values per token.
    row: usize,
}

impl Sequence<'_> {
    #[inline(always)]
    fn row(&self, t: usize) -> &[f32] {
        &self.qkv[t * self.row..(t + 1) * self.row]
    }
}

/// The scores of the keys `first …` (rows of the output) against every
/// (padded) query of a head, whose queries are transposed.
struct ScoreBlock {
    first: usize,
    /// Where the head's keys start in a token's row.
    k_at: usize,
    part: usize,
    stride: usize,
}

impl ScoreBlock {
    /// `R` keys at once: `R` independent sums per 16 queries.
    #[inline(always)]
    fn compute<const R: usize>(
        &self,
        sequence: &Sequence<'_>,
        queries: &[f32],
        scores: &mut [f32],
    ) {
        let keys: [&[f32]; R] = std::array::from_fn(|r| {
            &sequence.row(self.first + r)[self.k_at..self.k_at + self.part]
        });
        // Two blocks of 16 queries at a time where there are two: 2·R
        // independent sums keep the multiply-adds' latency covered.
        let mut start = 0;
        while start + 2 * WIDE <= self.stride {
            let mut low = [[0.0f32; WIDE]; R];
            let mut high = [[0.0f32; WIDE]; R];
            for d in 0..self.part {
                let at = d * self.stride + start;
                let low_queries: &[f32; WIDE] = queries[at..at + WIDE]
                    .try_into()
                    .unwrap_or_else(|_| unreachable!());
                let high_queries: &[f32; WIDE] = queries[at + WIDE..at + 2 * WIDE]
                    .try_into()
                    .unwrap_or_else(|_| unreachable!());
                for r in 0..R {
                    let k = keys[r][d];
                    for lane in 0..WIDE {
                        low[r][lane] = k.mul_add(low_queries[lane], low[r][lane]);
                        high[r][lane] = k.mul_add(high_queries[lane], high[r][lane]);
                    }
                }
            }
            for r in 0..R {
                let row = &mut scores[(self.first + r) * self.stride + start..][..2 * WIDE];
                row[..WIDE].copy_from_slice(&low[r]);
                row[WIDE..].copy_from_slice(&high[r]);
            }
            start += 2 * WIDE;
        }
        if start < self.stride {
            let mut sums = [[0.0f32; WIDE]; R];
            for d in 0..self.part {
                let queries = &queries[d * self.stride + start..][..WIDE];
                for (sums, key) in sums.iter_mut().zip(&keys) {
                    let k = key[d];
                    for (s, &q) in sums.iter_mut().zip(queries) {
                        *s = k.mul_add(q, *s);
                    }
                }
            }
            for (r, sums) in sums.iter().enumerate() {
                scores[(self.first + r) * self.stride + start..][..WIDE].copy_from_slice(sums);
            }
        }
    }
}

/// A head's attention weights (row `j` of `weights`: key `j`'s unnormalised
/// weight for every query, 0 where the query does not see it), one over
/// each query's sum of them, and the sequence whose values they weigh.
struct Values<'a> {
    sequence: &'a Sequence<'a>,
    weights: &'a [f32],
    inverse: &'a [f32],
    stride: usize,
    visible: Visibility,
    tokens: usize,
}

impl Values<'_> {
    /// The outputs of the head at `q_at` for queries `first..first + Q`:
    /// for each, `Σ_j w_j · v_j` over the keys it sees, times one over the
    /// sum of its weights, the value columns `v_at..v_at + part`, into
    /// `context` (rows of `width`).
    ///
    /// Each output is one chain of multiply-adds over the block's keys in
    /// ascending order (a key a query does not see adds `0 · v`, which
    /// leaves the sum as it was), then one product.
    #[inline(always)]
    fn weigh<const Q: usize>(
        &self,
        first: usize,
        q_at: usize,
        v_at: usize,
        part: usize,
        context: &mut [f32],
        width: usize,
    ) {
        // Every key any query of the block sees.
        let seen: [std::ops::Range<usize>; Q] =
            std::array::from_fn(|q| self.visible.keys(first + q, self.tokens));
        let from = seen.iter().map(|r| r.start).min().unwrap_or(0);
        let to = seen.iter().map(|r| r.end).max().unwrap_or(0);
        let mut d = 0;
        while d < part {
            let left = part - d;
            let at = v_at + d;
            let done = match left / WIDE {
                0 => {
                    // A head width that is not a whole number of vectors:
                    // the last columns a query at a time.
                    for q in 0..Q {
                        let out = &mut context[(first + q) * width + q_at + d..][..left];
                        out.fill(0.0);
                        for j in from..to {
                            let w = self.weights[j * self.stride + first + q];
                            let values = self.value(j, at, left);
                            for (o, &v) in out.iter_mut().zip(values) {
                                *o = w.mul_add(v, *o);
                            }
                        }
                        let inverse = self.inverse[first + q];
                        out.iter_mut().for_each(|o| *o *= inverse);
                    }
                    left
                }
                1 => self.sums::<Q, 1>(from..to, at, first, q_at + d, context, width),
                _ => self.sums::<Q, 2>(from..to, at, first, q_at + d, context, width),
            };
            d += done;
        }
    }

    /// Columns `at..at + columns` of key `j`'s values.
    #[inline(always)]
    fn value(&self, j: usize, at: usize, columns: usize) -> &[f32] {
        &self.sequence.row(j)[at..at + columns]
    }

    /// `C` vectors of value columns from `at` for `Q` queries, over the
    /// keys `keys`; returns the columns done.
    #[inline(always)]
    fn sums<const Q: usize, const C: usize>(
        &self,
        keys: std::ops::Range<usize>,
        at: usize,
        first: usize,
        out_at: usize,
        context: &mut [f32],
        width: usize,
    ) -> usize {
        // Named functions rather than closures: only `#[inline(always)]`
        // code is sure to be compiled into the caller's vector build (a
        // closure left out of line would run without FMA).
        #[inline(always)]
        fn add<const C: usize>(sums: &mut [[f32; WIDE]; C], w: f32, values: &[f32]) {
            for (sums, values) in sums.iter_mut().zip(values.chunks_exact(WIDE)) {
                for (s, &v) in sums.iter_mut().zip(values) {
                    *s = w.mul_add(v, *s);
                }
            }
        }
        let columns = C * WIDE;
        let mut sums = [[[0.0f32; WIDE]; C]; Q];
        for j in keys {
            let values = self.value(j, at, columns);
            // The block's weights for key `j`, side by side.
            let w: &[f32; Q] = self.weights[j * self.stride + first..][..Q]
                .try_into()
                .unwrap_or_else(|_| unreachable!());
            for q in 0..Q {
                add(&mut sums[q], w[q], values);
            }
        }
        for (q, sums) in sums.iter().enumerate() {
            let inverse = self.inverse[first + q];
            let out = &mut context[(first + q) * width + out_at..][..columns];
            for (out, sums) in out.chunks_exact_mut(WIDE).zip(sums) {
                for (o, &s) in out.iter_mut().zip(sums) {
                    *o = s * inverse;
                }
            }
        }
        columns
    }
}

#[inline(always)]
fn bias_gelu_portable(values: &mut [f32], bias: &[f32], how: Gelu) {
    for row in values.chunks_exact_mut(bias.len().max(1)) {
        for (v, b) in row.iter_mut().zip(bias) {
            *v = gelu(*v + b, how);
        }
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
        let (tokens, heads) = (
            9,
            Heads {
                query: 6,
                key_value: 3,
                width: 21,
            },
        );
        let qkv: Vec<f32> = grid()[..tokens * heads.row()]
            .iter()
            .map(|x| x.sin())
            .collect();
        let additive = [0.0; 9];
        for visible in [Visibility::All, Visibility::Causal { window: Some(4) }] {
            let size = tokens * heads.output();
            let (mut dispatched, mut portable) = (vec![0.0; size], vec![0.0; size]);
            attention(
                &qkv,
                &additive,
                heads,
                visible,
                0.3,
                &mut Vec::new(),
                &mut dispatched,
            );
            attention_portable(
                &qkv,
                &additive,
                heads,
                visible,
                0.3,
                &mut Vec::new(),
                &mut portable,
            );
            assert_eq!(dispatched, portable);
        }
    }

    #[test]
    fn gated_units_and_rms_norm_match_f64() {
        let (rows, inner) = (3, 37);
        let gate_up: Vec<f32> = (0..rows * 2 * inner)
            .map(|i| ((i * 53 % 97) as f32 / 97.0 - 0.5) * 16.0)
            .collect();
        let mut out = vec![0.0; rows * inner];
        gated(&gate_up, inner, Gate::Silu, &mut out);
        for r in 0..rows {
            for i in 0..inner {
                let g = f64::from(gate_up[r * 2 * inner + i]);
                let u = f64::from(gate_up[r * 2 * inner + inner + i]);
                let want = g / (1.0 + (-g).exp()) * u;
                let got = f64::from(out[r * inner + i]);
                assert!(
                    (got - want).abs() < 1e-6 * want.abs().max(1.0),
                    "{got} {want}"
                );
            }
        }
        let weight: Vec<f32> = (0..inner).map(|i| 0.5 + i as f32 / 40.0).collect();
        let x = &gate_up[..rows * inner];
        let mut normed = vec![0.0; rows * inner];
        rms_norm(x, &weight, 1e-5, 0.0, &mut normed);
        let mut gemma = vec![0.0; rows * inner];
        rms_norm(x, &weight, 1e-5, 1.0, &mut gemma);
        for (r, row) in x.chunks_exact(inner).enumerate() {
            let mean: f64 = row.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / inner as f64;
            let inv = 1.0 / (mean + 1e-5).sqrt();
            for i in 0..inner {
                let base = f64::from(row[i]) * inv;
                let got = f64::from(normed[r * inner + i]);
                let want = base * f64::from(weight[i]);
                assert!((got - want).abs() < 1e-6, "{got} {want}");
                let want = base * (1.0 + f64::from(weight[i]));
                assert!((f64::from(gemma[r * inner + i]) - want).abs() < 1e-6);
            }
        }
        let mut in_place = x.to_vec();
        rms_norm_in_place(&mut in_place, &weight, 1e-5, 0.0);
        assert_eq!(in_place, normed);
        let mut zero = vec![f32::NAN; inner];
        rms_norm(&vec![0.0; inner], &weight, 1e-6, 0.0, &mut zero);
        assert!(zero.iter().all(|&v| v == 0.0));
    }

    /// Attention by the textbook formula in f64: every query against every
    /// key, with hidden keys left out of the softmax.
    fn attention_reference(
        qkv: &[f32],
        additive: &[f32],
        heads: Heads,
        visible: Visibility,
        scale: f64,
    ) -> Vec<f64> {
        let tokens = additive.len();
        let (row, part, width) = (heads.row(), heads.width, heads.output());
        let group = heads.query / heads.key_value;
        let at = |t: usize, i: usize| f64::from(qkv[t * row + i]);
        let sees = |i: usize, j: usize| match visible {
            Visibility::All => true,
            Visibility::Causal { window } => j <= i && window.is_none_or(|w| i - j < w),
        };
        let mut out = vec![0.0; tokens * width];
        for h in 0..heads.query {
            let k_at = width + (h / group) * part;
            let v_at = width + heads.key_value * part + (h / group) * part;
            for i in 0..tokens {
                let scores: Vec<Option<f64>> = (0..tokens)
                    .map(|j| {
                        sees(i, j).then(|| {
                            let dot: f64 = (0..part)
                                .map(|d| at(i, h * part + d) * at(j, k_at + d))
                                .sum();
                            dot * scale + f64::from(additive[j])
                        })
                    })
                    .collect();
                let max = scores.iter().flatten().copied().fold(f64::MIN, f64::max);
                let weights: Vec<f64> = scores
                    .iter()
                    .map(|s| s.map_or(0.0, |s| (s - max).exp()))
                    .collect();
                let total: f64 = weights.iter().sum();
                for d in 0..part {
                    out[i * width + h * part + d] = (0..tokens)
                        .map(|j| weights[j] / total * at(j, v_at + d))
                        .sum();
                }
            }
        }
        out
    }

    #[test]
    fn attention_matches_the_formula_and_ignores_padding() {
        // Head widths of one, two, three and four vector widths and odd
        // remainders; token counts around the 16-key blocks and the
        // 4-query blocks; shared key/value heads; every visibility.
        let layouts = [
            (11, 4, 4, 4),
            (17, 2, 2, 32),
            (6, 2, 1, 48),
            (33, 1, 1, 64),
            (5, 3, 3, 21),
            (19, 6, 2, 16),
            (21, 8, 1, 20),
        ];
        let visibilities = [
            Visibility::All,
            Visibility::Causal { window: None },
            Visibility::Causal { window: Some(3) },
            Visibility::Causal { window: Some(1) },
        ];
        for &(tokens, query, key_value, width) in &layouts {
            let heads = Heads {
                query,
                key_value,
                width,
            };
            let row = heads.row();
            let qkv: Vec<f32> = (0..tokens * row)
                .map(|i| ((i * 37 % 101) as f32 / 101.0 - 0.5) * 3.0)
                .collect();
            // The last two positions are padding.
            let real = tokens - 2;
            let additive: Vec<f32> = (0..tokens)
                .map(|t| if t < real { 0.0 } else { f32::MIN })
                .collect();
            for visible in visibilities {
                let mut context = vec![f32::NAN; tokens * heads.output()];
                let mut scratch = Vec::new();
                attention(
                    &qkv,
                    &additive,
                    heads,
                    visible,
                    0.25,
                    &mut scratch,
                    &mut context,
                );
                let expected = attention_reference(&qkv, &additive, heads, visible, 0.25);
                // Padded queries are never read; with a window they may see
                // padding only.
                for (k, (&got, &want)) in context
                    .iter()
                    .zip(&expected)
                    .enumerate()
                    .take(real * heads.output())
                {
                    assert!(
                        (f64::from(got) - want).abs() < 1e-5,
                        "{tokens}×{heads:?} {visible:?}, value {k}: {got} vs {want}"
                    );
                }
                // Changing a padded key's values changes nothing a real
                // query sees.
                let mut moved = qkv.clone();
                moved[real * row + heads.output()..(real + 1) * row].fill(7.0);
                let mut again = vec![0.0; tokens * heads.output()];
                attention(
                    &moved,
                    &additive,
                    heads,
                    visible,
                    0.25,
                    &mut scratch,
                    &mut again,
                );
                assert_eq!(
                    context[..real * heads.output()],
                    again[..real * heads.output()]
                );
            }
        }
    }

    #[test]
    fn a_causal_query_ignores_later_keys() {
        let heads = Heads::multi(2, 16);
        let tokens = 7;
        let qkv: Vec<f32> = (0..tokens * heads.row())
            .map(|i| ((i * 13 % 29) as f32 / 29.0 - 0.5) * 2.0)
            .collect();
        let additive = vec![0.0; tokens];
        let causal = Visibility::Causal { window: None };
        let mut context = vec![0.0; tokens * heads.output()];
        attention(
            &qkv,
            &additive,
            heads,
            causal,
            0.5,
            &mut Vec::new(),
            &mut context,
        );
        // The first three tokens alone give the same first three outputs.
        let mut prefix = vec![0.0; 3 * heads.output()];
        attention(
            &qkv[..3 * heads.row()],
            &additive[..3],
            heads,
            causal,
            0.5,
            &mut Vec::new(),
            &mut prefix,
        );
        assert_eq!(context[..3 * heads.output()], prefix[..]);
        // The first query sees itself only: its output is its own value.
        let value = &qkv[heads.output() * 2..heads.output() * 2 + heads.output()];
        assert_eq!(context[..heads.output()], value[..]);
    }
}
