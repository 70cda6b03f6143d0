//! Planted matrices as plain arrays, for solver tests.

use ndarray::Array2;

use lca_builtin::{SyntheticParams, generate};

/// The synthetic model of the planted helpers: every other parameter at its
/// default, `test` of the tokens held out, no dev split.
pub(crate) fn params(
    tokens: usize,
    neurons: usize,
    classes: usize,
    per_class: usize,
    test: f64,
) -> SyntheticParams {
    SyntheticParams {
        tokens,
        neurons,
        classes,
        per_class,
        split: lca_core::data::SplitFractions { dev: 0.0, test },
        ..Default::default()
    }
}

/// Deterministic values in [−2, 2) from `seed` (xorshift), for kernel
/// tests that need varied inputs but no distribution.
pub fn noise(len: usize, seed: u64) -> Vec<f64> {
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

/// Activations and labels of a planted dataset.
pub fn planted_xy(
    tokens: usize,
    neurons: usize,
    classes: usize,
    per_class: usize,
    seed: u64,
) -> (Array2<f32>, Vec<u32>) {
    let d = generate(&params(tokens, neurons, classes, per_class, 0.0), seed, "t")
        .expect("valid parameters");
    (d.acts().view().into_owned(), d.labels().ids().to_vec())
}

/// The planted columns of the same dataset.
pub fn planted_columns(
    tokens: usize,
    neurons: usize,
    classes: usize,
    per_class: usize,
    seed: u64,
) -> Vec<u32> {
    let d = generate(&params(tokens, neurons, classes, per_class, 0.0), seed, "t")
        .expect("valid parameters");
    d.truth().expect("planted").informative.clone()
}

/// Data shaped like real probing tasks rather than an easy planted matrix:
/// many classes with Zipf-like frequencies (a few frequent, many rare),
/// neurons correlated through shared latent factors, and classes that
/// share informative neurons, so the optimum is sparse but not trivially
/// separable. Every class occurs at least once.
pub fn realistic_xy(
    tokens: usize,
    neurons: usize,
    classes: usize,
    seed: u64,
) -> (Array2<f32>, Vec<u32>) {
    let mut rng = lca_core::rng::Rng::new(seed);
    const FACTORS: usize = 6;
    let loadings: Vec<f64> = (0..neurons * FACTORS).map(|_| 0.6 * rng.normal()).collect();
    // Class k is drawn with weight 1/(k+1): the last classes are rare.
    let weights: Vec<f64> = (0..classes).map(|k| 1.0 / (k as f64 + 1.0)).collect();
    let total: f64 = weights.iter().sum();
    let mut labels: Vec<u32> = (0..tokens)
        .map(|_| {
            let mut u = rng.uniform() * total;
            let mut k = 0;
            while k + 1 < classes && u >= weights[k] {
                u -= weights[k];
                k += 1;
            }
            k as u32
        })
        .collect();
    for (k, label) in labels.iter_mut().take(classes).enumerate() {
        *label = k as u32;
    }
    let mut x = Array2::<f32>::zeros((tokens, neurons));
    for (i, &label) in labels.iter().enumerate() {
        let factors: Vec<f64> = (0..FACTORS).map(|_| rng.normal()).collect();
        for j in 0..neurons {
            let shared: f64 = (0..FACTORS)
                .map(|f| loadings[j * FACTORS + f] * factors[f])
                .sum();
            x[[i, j]] = (shared + rng.normal()) as f32;
        }
        // Each class moves two neurons, shared with other classes.
        let k = label as usize;
        for (j, shift) in [((3 * k) % neurons, 1.2), ((7 * k + 1) % neurons, -0.8)] {
            x[[i, j]] += shift;
        }
    }
    (x, labels)
}
