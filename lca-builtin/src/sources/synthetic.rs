//! `synthetic`: activations with planted neurons whose identity is known.

use std::collections::BTreeMap;

use lca_core::component::{ActivationSource, Component, RowSink};
use lca_core::context::RunContext;
use lca_core::data::{
    ActivationMatrix, ClassVocab, Dataset, DatasetOutline, GroundTruth, Labels, NeuronIndex,
    SplitFractions, SplitSpec, SplitUnit, Splits, Tokens, assign_splits,
};
use lca_core::error::Result;
use lca_core::params::{Params as _, ensure};
use lca_core::registry::{ComponentInfo, ComponentKind, Descriptor, Inputs, applied};
use lca_core::rng::Rng;
use ndarray::{Array2, Axis};
use rayon::prelude::*;

const NAME: &str = "synthetic";

lca_core::params! {
    /// Parameters of the planted-neuron generator.
    #[derive(PartialEq)]
    pub struct SyntheticParams {
        /// number of tokens (rows)
        tokens: usize = 5000 => range(10..),
        /// number of neurons (columns)
        neurons: usize = 500 => range(1..),
        /// layers the neurons are split into, layer-major (a divisor of
        /// `neurons`)
        layers: usize = 1 => range(1..),
        /// number of classes, drawn uniformly per token
        classes: usize = 5 => range(2..=1000),
        /// planted neurons per class
        per_class: usize = 2,
        /// mean shift of a planted neuron on tokens of its class
        shift: f64 = 2.0 => range(0.0..),
        /// standard deviation of the Gaussian noise on every neuron
        noise: f64 = 1.0 => above(0.0),
        /// correlated copies of each planted neuron (redundancy)
        copies: usize = 0,
        /// standard deviation of the extra noise on each copy
        copy_noise: f64 = 0.1 => range(0.0..),
        /// fixed generator seed; by default derived from the run seed
        #[shown = "run seed"]
        seed: Option<u64> = None,
        /// word types per class; each token gets a word of its class (0: no
        /// words)
        words_per_class: usize = 50 => range(0..=100_000),
        /// tokens per sentence
        sentence_length: usize = 20 => range(1..),
        #[flatten]
        split: SplitFractions,
    }
}

impl Default for SyntheticParams {
    fn default() -> Self {
        Self::defaults().expect("every parameter has a default")
    }
}

/// The descriptor of `synthetic`.
pub(crate) fn descriptor() -> Descriptor {
    Descriptor {
        info: ComponentInfo {
            kind: ComponentKind::Source,
            name: NAME.into(),
            summary: "Gaussian activations with planted class-informative neurons (known ground truth)".into(),
            params: SyntheticParams::docs(),
            example: "[source.planted]\ntype = \"synthetic\"\ntokens = 5000\nneurons = 500\nclasses = 5\nper_class = 2\nshift = 2.0\n".into(),
            inputs: Inputs::default(),
        },
        build: |table| Ok(Component::Source(Box::new(SyntheticSource::new(SyntheticParams::parse(NAME, table)?)?))),
        applied: applied::<SyntheticParams>,
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
        p.validate(NAME)?;
        ensure(
            NAME,
            "layers",
            p.neurons.is_multiple_of(p.layers),
            p.layers,
            &format!("a divisor of neurons = {}", p.neurons),
        )?;
        let informative = p
            .classes
            .checked_mul(p.per_class)
            .and_then(|n| n.checked_mul(p.copies.checked_add(1)?));
        ensure(
            NAME,
            "per_class",
            informative.is_some_and(|n| n <= p.neurons),
            p.per_class,
            &format!(
                "classes × per_class × (1 + copies) = {} planted neurons to fit in neurons = {}",
                informative.map_or_else(|| "more than 2^64".to_string(), |n| n.to_string()),
                p.neurons
            ),
        )?;
        p.split.check(NAME)?;
        Ok(SyntheticSource { params: p })
    }
}

impl ActivationSource for SyntheticSource {
    fn load(&self, cx: &RunContext) -> Result<Dataset<'static>> {
        let p = &self.params;
        // The matrix, plus labels and words of the same length.
        let cells = (p.tokens as u64).checked_mul(p.neurons as u64);
        lca_core::memory::ensure_fits(
            &format!("the `{NAME}` source's {} × {} matrix", p.tokens, p.neurons),
            cells.and_then(|c| lca_core::memory::bytes_of(c, 4)),
            "lower `tokens` or `neurons`",
        )?;
        let seed = self.params.seed.unwrap_or(cx.seed());
        cx.install(|| generate(&self.params, seed, cx.step()))
    }

    /// The rows a group of blocks at a time, so a store of any size can be
    /// written from this source (each block of rows draws from its own
    /// stream, so the rows are those `load` gives).
    fn stream(&self, cx: &RunContext, sink: &mut dyn RowSink) -> Result<Option<DatasetOutline>> {
        let p = &self.params;
        let seed = p.seed.unwrap_or(cx.seed());
        let layout = Layout::of(p, seed)?;
        let neurons = NeuronIndex::layer_major(p.neurons, p.layers)?;
        sink.begin(p.tokens, &neurons)?;
        let end = sink.rows_wanted_end().min(p.tokens);
        // About a shard of rows at a time, whole blocks.
        let group = sink.block_rows().div_ceil(BLOCK).max(1);
        let mut first_block = sink.rows_held() / BLOCK;
        let progress = cx.progress();
        if let Some(bar) = progress {
            bar.start(
                "generating planted rows",
                (end.saturating_sub(first_block * BLOCK)) as u64,
                "rows",
            );
        }
        while first_block * BLOCK < end {
            cx.check_cancelled()?;
            let blocks = first_block..(first_block + group).min(end.div_ceil(BLOCK));
            let first = blocks.start * BLOCK;
            let last = (blocks.end * BLOCK).min(p.tokens);
            let mut rows = Array2::<f32>::zeros((last - first, p.neurons));
            cx.install(|| fill_rows(p, seed, &layout, blocks.start, rows.view_mut()));
            sink.push(first, rows.view())?;
            if let Some(bar) = progress {
                bar.advance((last - first) as u64);
            }
            first_block = blocks.end;
        }
        if let Some(bar) = progress {
            bar.finish();
        }
        Ok(Some(DatasetOutline {
            name: cx.step().to_string(),
            neurons,
            labels: Labels::new(layout.labels, layout.vocab)?,
            tokens: layout.tokens,
            splits: layout.splits,
            truth: Some(layout.truth),
            details: BTreeMap::new(),
        }))
    }
}

/// Rows per block: each block of rows draws from its own derived stream.
const BLOCK: usize = 256;

/// Everything about the planted data but its values: labels, words, which
/// neurons are planted for which class, copies, and the splits.
struct Layout {
    labels: Vec<u32>,
    vocab: ClassVocab,
    tokens: Option<Tokens>,
    /// Column → the class it is planted for.
    planted_class: Vec<Option<u32>>,
    /// `(copy, original)` columns.
    copies: Vec<(u32, u32)>,
    truth: GroundTruth,
    splits: Splits,
}

impl Layout {
    fn of(p: &SyntheticParams, seed: u64) -> Result<Layout> {
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
        let mut planted_class = vec![None; p.neurons];
        for (i, &j) in planted.iter().enumerate() {
            planted_class[j] = Some((i / p.per_class) as u32);
        }
        let copies: Vec<(u32, u32)> = copy_columns
            .iter()
            .enumerate()
            .map(|(i, &c)| (c as u32, planted[i % n_planted.max(1)] as u32))
            .collect();
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
            dev: p.split.dev,
            test: p.split.test,
            shuffle: false,
            unit: SplitUnit::Token,
        };
        let (_, splits) = assign_splits(p.tokens, None, &spec, &mut Rng::new(seed))?;
        Ok(Layout {
            labels,
            vocab,
            tokens,
            planted_class,
            truth: GroundTruth {
                informative,
                by_class,
                copies: copies.clone(),
            },
            copies,
            splits,
        })
    }
}

/// Fills `out` with the rows of the blocks from `first_block` on (its rows
/// are those blocks' rows, the last block possibly cut short), the blocks
/// in parallel.
fn fill_rows(
    p: &SyntheticParams,
    seed: u64,
    layout: &Layout,
    first_block: usize,
    mut out: ndarray::ArrayViewMut2<'_, f32>,
) {
    out.axis_chunks_iter_mut(Axis(0), BLOCK)
        .into_par_iter()
        .enumerate()
        .for_each(|(i, mut block)| {
            let b = first_block + i;
            let mut rng = Rng::derived(seed, &format!("rows/{b}"));
            for (r, mut row) in block.axis_iter_mut(Axis(0)).enumerate() {
                let y = layout.labels[b * BLOCK + r];
                for (j, v) in row.iter_mut().enumerate() {
                    let signal = match layout.planted_class[j] {
                        Some(c) if c == y => p.shift,
                        _ => 0.0,
                    };
                    *v = (p.noise * rng.normal() + signal) as f32;
                }
                for &(copy, original) in &layout.copies {
                    row[copy as usize] =
                        row[original as usize] + (p.copy_noise * rng.normal()) as f32;
                }
            }
        });
}

/// Generates the planted dataset. The result depends only on the parameters
/// and the seed, not on the thread count: each block of rows draws from its
/// own derived stream.
///
/// # Errors
/// Only if the parameters were not validated.
pub fn generate(p: &SyntheticParams, seed: u64, name: &str) -> Result<Dataset<'static>> {
    let layout = Layout::of(p, seed)?;
    let mut x = Array2::<f32>::zeros((p.tokens, p.neurons));
    fill_rows(p, seed, &layout, 0, x.view_mut());
    let dataset = Dataset::new(
        name,
        ActivationMatrix::from_array(x),
        NeuronIndex::layer_major(p.neurons, p.layers)?,
        Labels::new(layout.labels, layout.vocab)?,
        layout.tokens,
        layout.splits,
    )?;
    dataset.with_truth(layout.truth)
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

    /// Keeps the rows pushed to it from `held` on.
    struct Collect {
        held: usize,
        block: usize,
        rows: Vec<(usize, Array2<f32>)>,
    }

    impl RowSink for Collect {
        fn begin(&mut self, _rows: usize, _neurons: &NeuronIndex) -> Result<()> {
            Ok(())
        }
        fn rows_held(&self) -> usize {
            self.held
        }
        fn block_rows(&self) -> usize {
            self.block
        }
        fn push(&mut self, first: usize, block: ndarray::ArrayView2<'_, f32>) -> Result<()> {
            self.rows.push((first, block.to_owned()));
            Ok(())
        }
    }

    #[test]
    fn streamed_rows_are_the_loaded_rows_from_any_resumed_point() {
        let p = SyntheticParams {
            tokens: 1300,
            ..params()
        };
        let source = SyntheticSource { params: p.clone() };
        let cx = RunContext::new(5, 2).for_step("source.big");
        let whole = source.load(&cx).unwrap();
        let x = whole.acts().view();
        for (held, block) in [(0, 1000), (0, 1), (700, 300)] {
            let mut sink = Collect {
                held,
                block,
                rows: Vec::new(),
            };
            let outline = source.stream(&cx, &mut sink).unwrap().unwrap();
            // Whole blocks of 256 rows, from the one holding row `held`.
            let mut next = held / 256 * 256;
            for (first, rows) in &sink.rows {
                assert_eq!(*first, next);
                assert_eq!(
                    rows.view(),
                    x.slice(ndarray::s![next..next + rows.nrows(), ..])
                );
                next += rows.nrows();
            }
            assert_eq!(next, 1300);
            let streamed = outline.into_dataset(whole.acts().clone()).unwrap();
            assert_eq!(streamed.fingerprint(), whole.fingerprint());
            assert_eq!(streamed.truth(), whole.truth());
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
