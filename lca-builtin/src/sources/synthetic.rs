//! `synthetic`: activations with planted neurons whose identity is known.

use std::collections::BTreeMap;

use ndarray::{Array2, Axis};
use rayon::prelude::*;
use serde::Deserialize;

use lca_core::component::{ActivationSource, Component};
use lca_core::context::RunContext;
use lca_core::data::{
    ActivationMatrix, ClassVocab, Dataset, GroundTruth, Labels, NeuronIndex, SplitSpec, SplitUnit,
    Tokens, assign_splits,
};
use lca_core::error::Result;
use lca_core::params::{ParamDoc, ParamType, ensure, parse_params};
use lca_core::registry::{ComponentInfo, ComponentKind, Descriptor, Inputs};
use lca_core::rng::Rng;

const NAME: &str = "synthetic";

/// Parameters of the planted-neuron generator.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyntheticParams {
    /// Rows.
    pub tokens: usize,
    /// Columns.
    pub neurons: usize,
    /// Layers the columns are split into (layer-major).
    pub layers: usize,
    /// Classes.
    pub classes: usize,
    /// Planted neurons per class.
    pub per_class: usize,
    /// Mean shift of a planted neuron on tokens of its class.
    pub shift: f64,
    /// Standard deviation of the Gaussian noise on every neuron.
    pub noise: f64,
    /// Correlated copies of each planted neuron (redundancy).
    pub copies: usize,
    /// Standard deviation of the extra noise on a copy.
    pub copy_noise: f64,
    /// Fraction of tokens for the dev split.
    pub dev: f64,
    /// Fraction of tokens for the test split.
    pub test: f64,
    /// Fixed seed; by default the step seed derived from the run seed.
    pub seed: Option<u64>,
    /// Word types per class (0: no words). Each token gets a word of its
    /// class, so control tasks over word types can be built.
    pub words_per_class: usize,
    /// Tokens per sentence (sentence boundaries for the words).
    pub sentence_length: usize,
}

impl Default for SyntheticParams {
    fn default() -> Self {
        SyntheticParams {
            tokens: 5000,
            neurons: 500,
            layers: 1,
            classes: 5,
            per_class: 2,
            shift: 2.0,
            noise: 1.0,
            copies: 0,
            copy_noise: 0.1,
            dev: 0.1,
            test: 0.1,
            seed: None,
            words_per_class: 50,
            sentence_length: 20,
        }
    }
}

fn param_docs() -> Vec<ParamDoc> {
    use ParamType::*;
    vec![
        ParamDoc::new("tokens", Integer, "5000", "≥ 10", "number of tokens (rows)"),
        ParamDoc::new(
            "neurons",
            Integer,
            "500",
            "≥ 1",
            "number of neurons (columns)",
        ),
        ParamDoc::new(
            "layers",
            Integer,
            "1",
            "≥ 1, divides `neurons`",
            "layers the neurons are split into, layer-major",
        ),
        ParamDoc::new(
            "classes",
            Integer,
            "5",
            "2 ≤ x ≤ 1000",
            "number of classes, drawn uniformly per token",
        ),
        ParamDoc::new(
            "per_class",
            Integer,
            "2",
            "≥ 0",
            "planted neurons per class",
        ),
        ParamDoc::new(
            "shift",
            Float,
            "2.0",
            "≥ 0",
            "mean shift of a planted neuron on tokens of its class",
        ),
        ParamDoc::new(
            "noise",
            Float,
            "1.0",
            "> 0",
            "standard deviation of the Gaussian noise on every neuron",
        ),
        ParamDoc::new(
            "copies",
            Integer,
            "0",
            "≥ 0",
            "correlated copies of each planted neuron (redundancy)",
        ),
        ParamDoc::new(
            "copy_noise",
            Float,
            "0.1",
            "≥ 0",
            "standard deviation of the extra noise on each copy",
        ),
        ParamDoc::new(
            "dev",
            Float,
            "0.1",
            "0 ≤ x < 1",
            "fraction of tokens in the dev split",
        ),
        ParamDoc::new(
            "test",
            Float,
            "0.1",
            "0 ≤ x < 1",
            "fraction of tokens in the test split",
        ),
        ParamDoc::new(
            "seed",
            Integer,
            "run seed",
            "≥ 0",
            "fixed generator seed; by default derived from the run seed",
        ),
        ParamDoc::new(
            "words_per_class",
            Integer,
            "50",
            "0 ≤ x ≤ 100000",
            "word types per class; each token gets a word of its class (0: no words)",
        ),
        ParamDoc::new(
            "sentence_length",
            Integer,
            "20",
            "≥ 1",
            "tokens per sentence",
        ),
    ]
}

/// The descriptor of `synthetic`.
pub(crate) fn descriptor() -> Descriptor {
    Descriptor {
        info: ComponentInfo {
            kind: ComponentKind::Source,
            name: NAME.into(),
            summary: "Gaussian activations with planted class-informative neurons (known ground truth)".into(),
            params: param_docs(),
            example: "[source.planted]\ntype = \"synthetic\"\ntokens = 5000\nneurons = 500\nclasses = 5\nper_class = 2\nshift = 2.0\n".into(),
            inputs: Inputs::default(),
        },
        build: |table| Ok(Component::Source(Box::new(SyntheticSource::new(parse_params(NAME, &param_docs(), table)?)?))),
    }
}

/// The planted-neuron source.
#[derive(Clone, Debug)]
pub struct SyntheticSource {
    params: SyntheticParams,
}

impl SyntheticSource {
    /// Validates the parameters.
    ///
    /// # Errors
    /// [`lca_core::Error::InvalidParam`] for out-of-range values.
    pub fn new(p: SyntheticParams) -> Result<Self> {
        ensure(
            NAME,
            "tokens",
            p.tokens >= 10,
            p.tokens,
            "at least 10 tokens",
        )?;
        ensure(
            NAME,
            "neurons",
            p.neurons >= 1,
            p.neurons,
            "at least 1 neuron",
        )?;
        ensure(
            NAME,
            "layers",
            p.layers >= 1 && p.neurons.is_multiple_of(p.layers),
            p.layers,
            &format!("a divisor of neurons = {}", p.neurons),
        )?;
        ensure(
            NAME,
            "classes",
            (2..=1000).contains(&p.classes),
            p.classes,
            "2 ≤ classes ≤ 1000",
        )?;
        let informative = p.classes * p.per_class * (1 + p.copies);
        ensure(
            NAME,
            "per_class",
            informative <= p.neurons,
            p.per_class,
            &format!(
                "classes × per_class × (1 + copies) = {informative} planted neurons to fit in neurons = {}",
                p.neurons
            ),
        )?;
        ensure(
            NAME,
            "shift",
            p.shift.is_finite() && p.shift >= 0.0,
            p.shift,
            "a finite number ≥ 0",
        )?;
        ensure(
            NAME,
            "noise",
            p.noise.is_finite() && p.noise > 0.0,
            p.noise,
            "a finite number > 0",
        )?;
        ensure(
            NAME,
            "copy_noise",
            p.copy_noise.is_finite() && p.copy_noise >= 0.0,
            p.copy_noise,
            "a finite number ≥ 0",
        )?;
        SplitSpec::check_fractions(NAME, p.dev, p.test)?;
        ensure(
            NAME,
            "words_per_class",
            p.words_per_class <= 100_000,
            p.words_per_class,
            "at most 100000",
        )?;
        ensure(
            NAME,
            "sentence_length",
            p.sentence_length >= 1,
            p.sentence_length,
            "at least 1",
        )?;
        Ok(SyntheticSource { params: p })
    }
}

impl ActivationSource for SyntheticSource {
    fn load(&self, cx: &RunContext) -> Result<Dataset<'static>> {
        let seed = self.params.seed.unwrap_or(cx.seed());
        cx.install(|| generate(&self.params, seed, cx.step()))
    }
}

/// Generates the planted dataset. The result depends only on the parameters
/// and the seed, not on the thread count: each block of rows draws from its
/// own derived stream.
///
/// # Errors
/// Only if the parameters were not validated.
pub fn generate(p: &SyntheticParams, seed: u64, name: &str) -> Result<Dataset<'static>> {
    let mut rng = Rng::derived(seed, "layout");
    let n_planted = p.classes * p.per_class;
    let chosen = rng.sample_indices(p.neurons, n_planted * (1 + p.copies));
    let (planted, copy_columns) = chosen.split_at(n_planted);
    let labels: Vec<u32> = (0..p.tokens)
        .map(|_| rng.below(p.classes as u64) as u32)
        .collect();
    let tokens = if p.words_per_class == 0 {
        None
    } else {
        let mut words_rng = Rng::derived(seed, "words");
        let words = labels
            .iter()
            .map(|&y| format!("c{y}w{}", words_rng.below(p.words_per_class as u64)))
            .collect();
        let starts = (0..p.tokens).step_by(p.sentence_length.max(1)).collect();
        Some(Tokens::new(words, starts)?)
    };

    // Column → class it is planted for, and copy column → original.
    let mut planted_class = vec![None; p.neurons];
    for (i, &j) in planted.iter().enumerate() {
        planted_class[j] = Some((i / p.per_class) as u32);
    }
    let copies: Vec<(u32, u32)> = copy_columns
        .iter()
        .enumerate()
        .map(|(i, &c)| (c as u32, planted[i % n_planted.max(1)] as u32))
        .collect();

    const BLOCK: usize = 256;
    let mut x = Array2::<f32>::zeros((p.tokens, p.neurons));
    x.axis_chunks_iter_mut(Axis(0), BLOCK)
        .into_par_iter()
        .enumerate()
        .for_each(|(b, mut block)| {
            let mut rng = Rng::derived(seed, &format!("rows/{b}"));
            for (r, mut row) in block.axis_iter_mut(Axis(0)).enumerate() {
                let y = labels[b * BLOCK + r];
                for (j, v) in row.iter_mut().enumerate() {
                    let signal = match planted_class[j] {
                        Some(c) if c == y => p.shift,
                        _ => 0.0,
                    };
                    *v = (p.noise * rng.normal() + signal) as f32;
                }
                for &(copy, original) in &copies {
                    row[copy as usize] =
                        row[original as usize] + (p.copy_noise * rng.normal()) as f32;
                }
            }
        });

    let width = (p.classes - 1).to_string().len();
    let class_name = |c: usize| format!("C{c:0width$}");
    let vocab = ClassVocab::in_order((0..p.classes).map(class_name).collect())?;
    let mut by_class = BTreeMap::new();
    for (i, chunk) in planted
        .chunks(p.per_class.max(1))
        .enumerate()
        .take(p.classes)
    {
        let mut cols: Vec<u32> = chunk.iter().map(|&j| j as u32).collect();
        cols.sort_unstable();
        by_class.insert(class_name(i), cols);
    }
    let mut informative: Vec<u32> = chosen.iter().map(|&j| j as u32).collect();
    informative.sort_unstable();

    let spec = SplitSpec {
        dev: p.dev,
        test: p.test,
        shuffle: false,
        unit: SplitUnit::Token,
    };
    let (_, splits) = assign_splits(p.tokens, None, &spec, &mut Rng::new(seed))?;
    let dataset = Dataset::new(
        name,
        ActivationMatrix::from_array(x),
        NeuronIndex::layer_major(p.neurons, p.layers)?,
        Labels::new(labels, vocab)?,
        tokens,
        splits,
    )?;
    dataset.with_truth(GroundTruth {
        informative,
        by_class,
        copies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> SyntheticParams {
        SyntheticParams {
            tokens: 600,
            neurons: 40,
            layers: 2,
            classes: 3,
            per_class: 2,
            copies: 1,
            ..Default::default()
        }
    }

    #[test]
    fn planted_neurons_shift_their_class_mean() {
        let d = generate(&params(), 7, "t").unwrap();
        let truth = d.truth().unwrap();
        assert_eq!(truth.informative.len(), 12);
        assert_eq!(truth.copies.len(), 6);
        let view = d.acts().view();
        for (class, cols) in &truth.by_class {
            let c = d.classes().id(class).unwrap();
            for &j in cols {
                let (mut inside, mut n_in, mut outside, mut n_out) = (0.0, 0, 0.0, 0);
                for (r, &y) in d.labels().ids().iter().enumerate() {
                    if y == c {
                        inside += f64::from(view[[r, j as usize]]);
                        n_in += 1;
                    } else {
                        outside += f64::from(view[[r, j as usize]]);
                        n_out += 1;
                    }
                }
                let gap = inside / n_in as f64 - outside / n_out as f64;
                assert!(
                    (gap - 2.0).abs() < 0.4,
                    "class {class} neuron {j}: gap {gap}"
                );
            }
        }
    }

    #[test]
    fn copies_track_their_original() {
        let d = generate(&params(), 7, "t").unwrap();
        let view = d.acts().view();
        for &(copy, original) in &d.truth().unwrap().copies {
            let diff: f64 = (0..d.n_rows())
                .map(|r| f64::from(view[[r, copy as usize]] - view[[r, original as usize]]).abs())
                .sum::<f64>()
                / d.n_rows() as f64;
            assert!(diff < 0.15, "mean |copy - original| = {diff}");
        }
    }

    #[test]
    fn same_seed_same_data_any_thread_count() {
        let a = RunContext::new(3, 1).install(|| generate(&params(), 11, "t").unwrap());
        let b = RunContext::new(3, 2).install(|| generate(&params(), 11, "t").unwrap());
        assert_eq!(a.acts().view(), b.acts().view());
        assert_eq!(a.labels(), b.labels());
        let c = generate(&params(), 12, "t").unwrap();
        assert_ne!(a.acts().view(), c.acts().view());
    }

    #[test]
    fn too_many_planted_neurons_is_a_parameter_error() {
        let p = SyntheticParams {
            neurons: 5,
            classes: 3,
            per_class: 2,
            ..Default::default()
        };
        let err = SyntheticSource::new(p).unwrap_err().to_string();
        assert!(
            err.contains("parameter `per_class`") && err.contains("6 planted neurons"),
            "{err}"
        );
    }

    #[test]
    fn splits_and_layers_follow_the_parameters() {
        let d = generate(&params(), 1, "t").unwrap();
        assert_eq!(d.splits().total(), 600);
        assert_eq!(d.splits().test, 60);
        assert_eq!(d.neurons().layers(), vec![0, 1]);
        assert_eq!(d.classes().names(), &["C0", "C1", "C2"]);
    }
}
