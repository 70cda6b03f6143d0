//! A dataset: activations, labels, optional words, splits and ground truth.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use serde::{Deserialize, Serialize};

use super::{ActivationMatrix, ClassVocab, Labels, NeuronIndex, rows_per_block};
use crate::error::{Error, Result};
use crate::rng::Rng;

/// The words behind the rows, with sentence boundaries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    words: Vec<String>,
    sentence_starts: Vec<usize>,
}

impl Tokens {
    /// Words with the row at which each sentence starts.
    ///
    /// # Errors
    /// Fails unless the starts begin at 0, increase strictly and stay in range.
    pub fn new(words: Vec<String>, sentence_starts: Vec<usize>) -> Result<Self> {
        check_sentence_starts(&sentence_starts, words.len())?;
        Ok(Tokens {
            words,
            sentence_starts,
        })
    }

    /// Words as one sentence.
    pub fn single_sentence(words: Vec<String>) -> Self {
        let starts = if words.is_empty() { vec![] } else { vec![0] };
        Tokens {
            words,
            sentence_starts: starts,
        }
    }

    /// The words, one per row.
    pub fn words(&self) -> &[String] {
        &self.words
    }

    /// The first row of each sentence.
    pub fn sentence_starts(&self) -> &[usize] {
        &self.sentence_starts
    }

    /// Number of words.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// True when there are no words.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }
}

fn check_sentence_starts(starts: &[usize], n_rows: usize) -> Result<()> {
    if n_rows > 0 && starts.first() != Some(&0) {
        return Err(Error::input("sentence boundaries must start at row 0"));
    }
    if let Some(w) = starts.windows(2).find(|w| w[0] >= w[1]) {
        return Err(Error::input(format!(
            "sentence boundaries must increase strictly, found {} then {}",
            w[0], w[1]
        )));
    }
    if let Some(&last) = starts.last()
        && last >= n_rows
    {
        return Err(Error::input(format!(
            "a sentence starts at row {last} but there are only {n_rows} rows"
        )));
    }
    Ok(())
}

/// One of the three data splits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Used to train probes and compute rankings.
    Train,
    /// Used for model selection (such as the minimal-subset search).
    Dev,
    /// Held out for the final numbers.
    Test,
}

impl Split {
    /// All splits in row order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Dev, Split::Test];
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Split {
    /// The split as recipes write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Dev => "dev",
            Split::Test => "test",
        }
    }
}

/// Recipes name splits as `"train"`, `"dev"` or `"test"`.
impl crate::params::ParamValue for Split {
    type Scalar = Split;
    const TYPE: crate::params::ParamType = crate::params::ParamType::String;

    fn from_toml(value: &toml::Value) -> std::result::Result<Self, String> {
        let text = value.as_str();
        Split::ALL
            .into_iter()
            .find(|s| Some(s.as_str()) == text)
            .ok_or_else(|| {
                format!(
                    "\"train\", \"dev\" or \"test\", found {}",
                    crate::params::short_toml(value)
                )
            })
    }

    fn to_toml(&self) -> Option<toml::Value> {
        Some(toml::Value::String(self.as_str().into()))
    }

    fn scalars(&self) -> Vec<&Split> {
        vec![self]
    }

    fn allowed() -> Option<String> {
        Some(crate::params::one_of(Split::ALL.map(Split::as_str)))
    }
}

/// Split sizes. Rows are stored in split order (train, then dev, then test),
/// so every split is a contiguous block that can be viewed without a copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Splits {
    /// Training rows.
    pub train: usize,
    /// Development rows.
    pub dev: usize,
    /// Test rows.
    pub test: usize,
}

impl Splits {
    /// Every row in the training split.
    pub fn all_train(n_rows: usize) -> Self {
        Splits {
            train: n_rows,
            dev: 0,
            test: 0,
        }
    }

    /// Total rows.
    pub fn total(&self) -> usize {
        self.train + self.dev + self.test
    }

    /// The rows of a split.
    pub fn range(&self, split: Split) -> Range<usize> {
        match split {
            Split::Train => 0..self.train,
            Split::Dev => self.train..self.train + self.dev,
            Split::Test => self.train + self.dev..self.total(),
        }
    }

    /// The size of a split.
    pub fn len(&self, split: Split) -> usize {
        self.range(split).len()
    }
}

/// Whether a split keeps sentences together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SplitUnit {
    /// Whole sentences go to one split (the default when sentences are known).
    Sentence,
    /// Individual tokens.
    Token,
}

/// How rows are assigned to splits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitSpec {
    /// Fraction of units for development.
    pub dev: f64,
    /// Fraction of units for test.
    pub test: f64,
    /// Shuffle units (seeded) before assigning; otherwise the tail is held out.
    pub shuffle: bool,
    /// Unit of assignment.
    pub unit: SplitUnit,
}

impl SplitSpec {
    /// Checks the dev and test fractions of a component's parameters.
    ///
    /// # Errors
    /// [`Error::InvalidParam`] naming the fraction that is out of range.
    pub fn check_fractions(component: &str, dev: f64, test: f64) -> Result<()> {
        use crate::params::ensure;
        ensure(
            component,
            "dev",
            (0.0..1.0).contains(&dev),
            dev,
            "0 ≤ dev < 1",
        )?;
        ensure(
            component,
            "test",
            (0.0..1.0).contains(&test),
            test,
            "0 ≤ test < 1",
        )?;
        ensure(
            component,
            "test",
            dev + test < 1.0,
            dev + test,
            "dev + test < 1, leaving data to train on",
        )
    }
}

crate::params! {
    /// How much of the data is held out: one declaration for every source
    /// that splits its rows, sentences or files.
    #[derive(Copy, PartialEq)]
    pub struct SplitFractions {
        /// fraction of units (sentences, files or tokens) in the dev split
        dev: f64 = 0.1 => range(0.0..1.0),
        /// fraction of units in the test split
        test: f64 = 0.1 => range(0.0..1.0),
    }
}

impl Default for SplitFractions {
    fn default() -> Self {
        <Self as crate::params::Params>::defaults().expect("every fraction has a default")
    }
}

impl SplitFractions {
    /// Checks what one rule cannot: that something is left to train on.
    ///
    /// # Errors
    /// [`Error::InvalidParam`] when `dev + test ≥ 1`.
    pub fn check(&self, component: &str) -> Result<()> {
        SplitSpec::check_fractions(component, self.dev, self.test)
    }
}

impl Default for SplitSpec {
    fn default() -> Self {
        SplitSpec {
            dev: 0.1,
            test: 0.1,
            shuffle: true,
            unit: SplitUnit::Sentence,
        }
    }
}

/// Ground truth that a synthetic source knows: which neurons carry the signal.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroundTruth {
    /// Every informative neuron (planted neurons and their correlated copies), sorted.
    pub informative: Vec<u32>,
    /// Planted neurons per class name.
    pub by_class: BTreeMap<String, Vec<u32>>,
    /// Correlated copies as `(copy, original)`.
    pub copies: Vec<(u32, u32)>,
}

/// Activations with everything needed to analyse them.
///
/// Invariants, checked on construction: the matrix, labels, neuron index and
/// words agree in size; splits cover every row; ground-truth neurons exist.
#[derive(Clone, Debug)]
pub struct Dataset<'a> {
    name: String,
    acts: ActivationMatrix<'a>,
    neurons: NeuronIndex,
    labels: Labels,
    tokens: Option<Tokens>,
    splits: Splits,
    truth: Option<GroundTruth>,
    details: BTreeMap<String, String>,
    /// A digest of `acts` that the source vouches for (see
    /// [`Dataset::with_acts_digest`]); `None` when the values must be hashed.
    acts_digest: Option<String>,
}

/// A dataset without its activations: what a streaming source returns after
/// it has pushed its rows to a sink (see `ActivationSource::stream`). The
/// rows' order is the dataset's: train rows first, then dev, then test.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DatasetOutline {
    /// The source id.
    pub name: String,
    /// One entry per activation column.
    pub neurons: NeuronIndex,
    /// One class per row.
    pub labels: Labels,
    /// The words behind the rows, when known.
    pub tokens: Option<Tokens>,
    /// How the rows divide into train, dev and test.
    pub splits: Splits,
    /// The informative neurons of planted data.
    pub truth: Option<GroundTruth>,
    /// Where the data came from.
    pub details: BTreeMap<String, String>,
}

impl DatasetOutline {
    /// Rows the outline describes.
    pub fn n_rows(&self) -> usize {
        self.labels.len()
    }

    /// The dataset these activations complete.
    ///
    /// # Errors
    /// When `acts` does not have the outline's rows and neurons, or the
    /// outline breaks a dataset invariant.
    pub fn into_dataset<'a>(self, acts: ActivationMatrix<'a>) -> Result<Dataset<'a>> {
        let dataset = Dataset::new(
            self.name,
            acts,
            self.neurons,
            self.labels,
            self.tokens,
            self.splits,
        )?
        .with_details(self.details);
        match self.truth {
            Some(truth) => dataset.with_truth(truth),
            None => Ok(dataset),
        }
    }
}

/// A borrowed split of a dataset.
#[derive(Debug)]
pub struct SplitData<'d> {
    /// Activations of the split's rows, borrowed in the dataset's width:
    /// `.view()` gives them as one `f32` array (a conversion for a 16-bit
    /// store), `.blocks()` a block at a time.
    pub acts: ActivationMatrix<'d>,
    /// Class ids of the split's rows.
    pub labels: &'d [u32],
    /// Which rows of the dataset these are.
    pub rows: Range<usize>,
}

impl<'a> Dataset<'a> {
    /// Assembles a dataset and checks its invariants.
    ///
    /// # Errors
    /// Fails on any size disagreement.
    pub fn new(
        name: impl Into<String>,
        acts: ActivationMatrix<'a>,
        neurons: NeuronIndex,
        labels: Labels,
        tokens: Option<Tokens>,
        splits: Splits,
    ) -> Result<Self> {
        let name = name.into();
        let rows = acts.n_rows();
        let shape = |what: &str, expected: usize, found: usize| Error::Shape {
            what: format!("dataset `{name}`: {what}"),
            expected: expected.to_string(),
            found: found.to_string(),
        };
        if labels.len() != rows {
            return Err(shape("labels per activation row", rows, labels.len()));
        }
        if neurons.len() != acts.n_cols() {
            return Err(shape(
                "neuron index entries per activation column",
                acts.n_cols(),
                neurons.len(),
            ));
        }
        if let Some(tokens) = &tokens
            && tokens.len() != rows
        {
            return Err(shape("words per activation row", rows, tokens.len()));
        }
        if splits.total() != rows {
            return Err(shape("rows covered by the splits", rows, splits.total()));
        }
        if acts.n_cols() == 0 {
            return Err(Error::input(format!(
                "dataset `{name}` has no neurons (its activation matrix has {rows} rows and 0 \
                 columns); check the file's shape and the layers selected from it"
            )));
        }
        Ok(Dataset {
            name,
            acts,
            neurons,
            labels,
            tokens,
            splits,
            truth: None,
            details: BTreeMap::new(),
            acts_digest: None,
        })
    }

    /// Records facts about where the data came from (model, layers, corpus,
    /// extraction settings), shown with the source in reports.
    pub fn with_details(mut self, details: BTreeMap<String, String>) -> Self {
        self.details = details;
        self
    }

    /// Facts about where the data came from.
    pub fn details(&self) -> &BTreeMap<String, String> {
        &self.details
    }

    /// Attaches ground truth.
    ///
    /// # Errors
    /// Fails if a listed neuron does not exist.
    pub fn with_truth(mut self, truth: GroundTruth) -> Result<Self> {
        let n = self.n_neurons();
        let all = truth
            .informative
            .iter()
            .chain(truth.by_class.values().flatten())
            .chain(truth.copies.iter().flat_map(|(a, b)| [a, b]));
        if let Some(bad) = all.into_iter().find(|&&j| j as usize >= n) {
            return Err(Error::input(format!(
                "ground truth names neuron {bad}, but there are {n} neurons"
            )));
        }
        self.truth = Some(truth);
        Ok(self)
    }

    /// Replaces the labels (for example with a control task).
    ///
    /// # Errors
    /// Fails if the number of labels differs.
    pub fn with_labels(mut self, labels: Labels) -> Result<Self> {
        if labels.len() != self.n_rows() {
            return Err(Error::Shape {
                what: format!("dataset `{}`: replacement labels", self.name),
                expected: self.n_rows().to_string(),
                found: labels.len().to_string(),
            });
        }
        self.labels = labels;
        Ok(self)
    }

    /// Everything but the activations.
    pub fn outline(&self) -> DatasetOutline {
        DatasetOutline {
            name: self.name.clone(),
            neurons: self.neurons.clone(),
            labels: self.labels.clone(),
            tokens: self.tokens.clone(),
            splits: self.splits,
            truth: self.truth.clone(),
            details: self.details.clone(),
        }
    }

    /// The dataset's name (the source id in a recipe).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Vouches for the activations with `digest`, a string that changes
    /// whenever they do (a store gives the content hashes of its shards).
    /// [`Self::fingerprint`] then hashes the digest instead of every value:
    /// on a store larger than memory, hashing the values would read all of
    /// it from disk at every run. Datasets derived with other activations
    /// (such as [`Self::select_neurons`]) do not inherit it.
    pub fn with_acts_digest(mut self, digest: impl Into<String>) -> Self {
        self.acts_digest = Some(digest.into());
        self
    }

    /// Renames the dataset.
    pub fn renamed(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The activations.
    pub fn acts(&self) -> &ActivationMatrix<'a> {
        &self.acts
    }

    /// The activations, giving up the rest of the dataset.
    pub fn into_acts(self) -> ActivationMatrix<'a> {
        self.acts
    }

    /// Layer and unit of every column.
    pub fn neurons(&self) -> &NeuronIndex {
        &self.neurons
    }

    /// The labels of every row.
    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    /// The class vocabulary.
    pub fn classes(&self) -> &ClassVocab {
        self.labels.vocab()
    }

    /// The words, when the source knows them.
    pub fn tokens(&self) -> Option<&Tokens> {
        self.tokens.as_ref()
    }

    /// Split sizes.
    pub fn splits(&self) -> Splits {
        self.splits
    }

    /// Ground truth, for synthetic data.
    pub fn truth(&self) -> Option<&GroundTruth> {
        self.truth.as_ref()
    }

    /// Number of rows (tokens).
    pub fn n_rows(&self) -> usize {
        self.acts.n_rows()
    }

    /// Number of neurons.
    pub fn n_neurons(&self) -> usize {
        self.acts.n_cols()
    }

    /// Number of classes.
    pub fn n_classes(&self) -> usize {
        self.labels.vocab().len()
    }

    /// One split, borrowed.
    pub fn split(&self, split: Split) -> SplitData<'_> {
        let rows = self.splits.range(split);
        SplitData {
            acts: self.acts.rows(rows.clone()),
            labels: &self.labels.ids()[rows.clone()],
            rows,
        }
    }

    /// A copy restricted to the given neurons, in the given order (ground truth
    /// is dropped because its neuron numbers no longer apply).
    ///
    /// # Errors
    /// Fails if a column is out of range.
    pub fn select_neurons(&self, columns: &[usize]) -> Result<Dataset<'static>> {
        let acts = self.acts.select_columns(columns)?;
        Ok(Dataset {
            name: self.name.clone(),
            acts,
            neurons: self.neurons.select(columns),
            labels: self.labels.clone(),
            tokens: self.tokens.clone(),
            splits: self.splits,
            truth: None,
            details: self.details.clone(),
            acts_digest: None,
        })
    }

    /// A dataset that owns all its data.
    pub fn into_owned(self) -> Dataset<'static> {
        Dataset {
            name: self.name,
            acts: self.acts.into_owned(),
            neurons: self.neurons,
            labels: self.labels,
            tokens: self.tokens,
            splits: self.splits,
            truth: self.truth,
            details: self.details,
            acts_digest: self.acts_digest,
        }
    }

    /// Rejects NaN and infinite activations, naming the first one.
    ///
    /// # Errors
    /// Fails on the first non-finite value.
    pub fn check_finite(&self) -> Result<()> {
        match self.acts.find_non_finite() {
            None => Ok(()),
            Some((row, col, value)) => Err(Error::input(format!(
                "dataset `{}` has a non-finite activation ({value}) at token {row}, neuron {col} ({}); \
                 remove or repair the value before analysis",
                self.name,
                self.neurons.id(col)
            ))),
        }
    }

    /// The neurons whose activation is the same on every training row, in
    /// ascending order. Such a neuron carries no information about any
    /// label, so every ranking puts it last (see `docs/methods.md`); dead
    /// ReLU units and padding dimensions are the usual cause.
    pub fn constant_train_neurons(&self) -> Vec<u32> {
        let rows = self.splits.range(Split::Train);
        if rows.is_empty() {
            return Vec::new();
        }
        use rayon::prelude::*;
        let first: Vec<f32> = self.acts.block(rows.start..rows.start + 1).row(0).to_vec();
        let width = self.n_neurons();
        // Blocks are read in parallel: on a store larger than memory each
        // thread then brings in its own pages from disk.
        let step = rows_per_block(width, 4 << 20);
        let starts: Vec<usize> = rows.clone().step_by(step).collect();
        let constant = starts
            .into_par_iter()
            .map(|start| {
                let mut constant = vec![true; width];
                let block = self.acts.block(start..(start + step).min(rows.end));
                for row in block.rows() {
                    for ((c, &v), &f) in constant.iter_mut().zip(row).zip(&first) {
                        *c &= v == f;
                    }
                }
                constant
            })
            .reduce(
                || vec![true; width],
                |mut a, b| {
                    a.iter_mut().zip(b).for_each(|(a, b)| *a &= b);
                    a
                },
            );
        (0..constant.len() as u32)
            .filter(|&j| constant[j as usize])
            .collect()
    }

    /// Requires at least two classes in the training split.
    ///
    /// # Errors
    /// Fails when the split is empty or holds a single class.
    pub fn require_two_train_classes(&self) -> Result<()> {
        let train = self.split(Split::Train);
        if train.labels.is_empty() {
            return Err(Error::input(format!(
                "dataset `{}` has an empty training split",
                self.name
            )));
        }
        let first = train.labels[0];
        if train.labels.iter().all(|&l| l == first) {
            return Err(Error::input(format!(
                "dataset `{}` has a single class (`{}`) in its training split; \
                 neuron rankings need at least two classes",
                self.name,
                self.classes().name(first)
            )));
        }
        Ok(())
    }

    /// A BLAKE3 digest of everything in the dataset (activations bit for
    /// bit, or the digest their source vouched for them with, labels,
    /// classes, neuron index, words, splits, ground truth and details, but
    /// not its name), in hex: equal digests mean the same data.
    /// Used to tell whether work done on an earlier load still applies.
    pub fn fingerprint(&self) -> String {
        let mut hash = blake3::Hasher::new();
        hash.update(b"lca-dataset/2");
        hash.update(&(self.n_rows() as u64).to_le_bytes());
        hash.update(&(self.n_neurons() as u64).to_le_bytes());
        let mut bytes = Vec::new();
        let step = rows_per_block(self.n_neurons(), 16 << 20);
        // Activations vouched for by their source are known by their digest.
        let hashed_rows = match &self.acts_digest {
            Some(digest) => {
                hash.update(b"activations vouched for by their source:");
                hash.update(digest.as_bytes());
                0
            }
            None => self.n_rows(),
        };
        for (_, block) in self.acts.blocks(0..hashed_rows, step) {
            // The values' little-endian bytes: the memory itself where the
            // machine is little-endian, a copy otherwise.
            match block.as_slice() {
                Some(values) if cfg!(target_endian = "little") => {
                    hash.update_rayon(bytemuck::cast_slice(values));
                }
                _ => {
                    bytes.clear();
                    bytes.extend(block.iter().flat_map(|v| v.to_le_bytes()));
                    hash.update_rayon(&bytes);
                }
            }
        }
        bytes.clear();
        bytes.extend(self.labels.ids().iter().flat_map(|v| v.to_le_bytes()));
        hash.update(&bytes);
        let meta = serde_json::json!({
            "classes": self.labels.vocab(),
            "neurons": self.neurons,
            "tokens": self.tokens,
            "splits": self.splits,
            "truth": self.truth,
            "details": self.details,
        });
        hash.update(meta.to_string().as_bytes());
        crate::io::hex(hash.finalize().as_bytes())
    }

    /// A summary for reports.
    pub fn summary(&self) -> DatasetSummary {
        self.summary_with_constant(&self.constant_train_neurons())
    }

    /// As [`Self::summary`], given [`Self::constant_train_neurons`] computed
    /// already: finding them reads every training row, which for a store
    /// larger than memory is a pass over the disk.
    pub fn summary_with_constant(&self, constant: &[u32]) -> DatasetSummary {
        let counts = self.labels.counts();
        DatasetSummary {
            name: self.name.clone(),
            tokens: self.n_rows(),
            neurons: self.n_neurons(),
            layers: self.neurons.layers(),
            sentences: self.tokens.as_ref().map(|t| t.sentence_starts().len()),
            classes: self
                .classes()
                .names()
                .iter()
                .zip(counts)
                .map(|(name, count)| (name.clone(), count))
                .collect(),
            splits: self.splits,
            truth: self.truth.clone(),
            details: self.details.clone(),
            constant_neurons: constant.len(),
        }
    }
}

/// What reports show about a dataset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetSummary {
    /// Source id.
    pub name: String,
    /// Rows.
    pub tokens: usize,
    /// Columns.
    pub neurons: usize,
    /// Distinct layers.
    pub layers: Vec<u32>,
    /// Sentences, when known.
    pub sentences: Option<usize>,
    /// Tokens per class.
    pub classes: BTreeMap<String, usize>,
    /// Split sizes.
    pub splits: Splits,
    /// Ground truth, for synthetic data.
    pub truth: Option<GroundTruth>,
    /// Where the data came from (model, corpus, extraction settings).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
    /// Neurons constant on the training split, which every ranking puts last.
    #[serde(default)]
    pub constant_neurons: usize,
}

/// Assigns rows to splits. Returns the new row order (train rows first, then
/// dev, then test; each part in its original order) and the split sizes.
///
/// Units are sentences when `sentence_starts` is given and the spec asks for
/// sentences, tokens otherwise.
///
/// # Errors
/// Fails when the fractions leave no training data.
pub fn assign_splits(
    n_rows: usize,
    sentence_starts: Option<&[usize]>,
    spec: &SplitSpec,
    rng: &mut Rng,
) -> Result<(Vec<usize>, Splits)> {
    let units: Vec<Range<usize>> = match (spec.unit, sentence_starts) {
        (SplitUnit::Sentence, Some(starts)) if !starts.is_empty() => starts
            .iter()
            .enumerate()
            .map(|(i, &s)| s..starts.get(i + 1).copied().unwrap_or(n_rows))
            .collect(),
        _ => (0..n_rows).map(|r| r..r + 1).collect(),
    };
    let n_units = units.len();
    let take = |fraction: f64| {
        let n = (fraction * n_units as f64).round() as usize;
        if fraction > 0.0 { n.max(1) } else { 0 }
    };
    let (n_dev, n_test) = (take(spec.dev), take(spec.test));
    if n_dev + n_test >= n_units {
        return Err(Error::input(format!(
            "splitting {n_units} units with dev = {} and test = {} leaves nothing to train on; \
             lower the dev/test fractions or provide more data",
            spec.dev, spec.test
        )));
    }
    let mut order: Vec<usize> = (0..n_units).collect();
    if spec.shuffle {
        rng.shuffle(&mut order);
    }
    // Each split keeps its units in corpus order, so the result does not
    // depend on the shuffle beyond which units go where.
    let n_train = n_units - n_dev - n_test;
    let mut parts = [
        order[..n_train].to_vec(),
        order[n_train..n_train + n_dev].to_vec(),
        order[n_train + n_dev..].to_vec(),
    ];
    let mut sizes = [0usize; 3];
    let mut rows = Vec::with_capacity(n_rows);
    for (part, size) in parts.iter_mut().zip(sizes.iter_mut()) {
        part.sort_unstable();
        for &u in part.iter() {
            *size += units[u].len();
            rows.extend(units[u].clone());
        }
    }
    Ok((
        rows,
        Splits {
            train: sizes[0],
            dev: sizes[1],
            test: sizes[2],
        },
    ))
}

/// Sentence starts after reordering rows with whole sentences kept together.
pub fn reorder_sentence_starts(starts: &[usize], n_rows: usize, row_order: &[usize]) -> Vec<usize> {
    let mut is_start = vec![false; n_rows];
    for &s in starts {
        is_start[s] = true;
    }
    row_order
        .iter()
        .enumerate()
        .filter(|(_, r)| is_start[**r])
        .map(|(i, _)| i)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::NeuronIndex;
    use ndarray::Array2;

    fn tiny(rows: usize) -> Dataset<'static> {
        let acts = ActivationMatrix::from_array(Array2::zeros((rows, 2)));
        let names: Vec<String> = (0..rows).map(|i| format!("c{}", i % 2)).collect();
        Dataset::new(
            "tiny",
            acts,
            NeuronIndex::layer_major(2, 1).unwrap(),
            Labels::from_names(&names),
            None,
            Splits::all_train(rows),
        )
        .unwrap()
    }

    #[test]
    fn the_fingerprint_changes_with_any_value_and_only_then() {
        let with = |acts: Array2<f32>, names: &[&str]| {
            Dataset::new(
                "d",
                ActivationMatrix::from_array(acts),
                NeuronIndex::layer_major(2, 1).unwrap(),
                Labels::from_names(names),
                None,
                Splits::all_train(names.len()),
            )
            .unwrap()
        };
        let base = Array2::from_shape_vec((2, 2), vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let reference = with(base.clone(), &["a", "b"]).fingerprint();
        assert_eq!(reference.len(), 64);
        assert_eq!(with(base.clone(), &["a", "b"]).fingerprint(), reference);
        assert_eq!(
            with(base.clone(), &["a", "b"])
                .renamed("other")
                .fingerprint(),
            reference
        );
        let mut nudged = base.clone();
        nudged[[1, 1]] = f32::from_bits(4.0f32.to_bits() + 1);
        assert_ne!(with(nudged, &["a", "b"]).fingerprint(), reference);
        assert_ne!(with(base.clone(), &["b", "a"]).fingerprint(), reference);
        assert_ne!(with(base.clone(), &["a", "c"]).fingerprint(), reference);
        assert_ne!(tiny(2).fingerprint(), reference);

        // Activations vouched for by a digest are known by it alone...
        let vouched = with(base.clone(), &["a", "b"]).with_acts_digest("shards v1");
        let mut nudged = base.clone();
        nudged[[0, 0]] = -1.0;
        let vouched_other = with(nudged, &["a", "b"]).with_acts_digest("shards v1");
        assert_eq!(vouched.fingerprint(), vouched_other.fingerprint());
        assert_ne!(vouched.fingerprint(), reference);
        assert_ne!(
            with(base.clone(), &["a", "b"])
                .with_acts_digest("shards v2")
                .fingerprint(),
            vouched.fingerprint()
        );
        // ...with everything else still hashed,
        assert_ne!(
            with(base.clone(), &["b", "a"])
                .with_acts_digest("shards v1")
                .fingerprint(),
            vouched.fingerprint()
        );
        // and a dataset with other activations does not inherit the digest.
        let selected = vouched.select_neurons(&[1]).unwrap();
        let plain = with(base.clone(), &["a", "b"])
            .select_neurons(&[1])
            .unwrap();
        assert_eq!(selected.fingerprint(), plain.fingerprint());
        assert_eq!(
            vouched.clone().into_owned().fingerprint(),
            vouched.fingerprint()
        );
    }

    #[test]
    fn mismatched_label_count_names_both_counts() {
        let acts = ActivationMatrix::from_array(Array2::zeros((3, 2)));
        let err = Dataset::new(
            "d",
            acts,
            NeuronIndex::layer_major(2, 1).unwrap(),
            Labels::from_names(&["a", "b"]),
            None,
            Splits::all_train(3),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("labels per activation row") && text.contains("expected 3, found 2"),
            "{text}"
        );
    }

    #[test]
    fn splits_are_contiguous_and_cover_everything() {
        let s = Splits {
            train: 5,
            dev: 2,
            test: 3,
        };
        assert_eq!(s.range(Split::Train), 0..5);
        assert_eq!(s.range(Split::Dev), 5..7);
        assert_eq!(s.range(Split::Test), 7..10);
    }

    #[test]
    fn sentence_splits_keep_sentences_whole() {
        let starts = [0, 3, 5, 9];
        let spec = SplitSpec {
            dev: 0.25,
            test: 0.25,
            shuffle: true,
            unit: SplitUnit::Sentence,
        };
        let (order, splits) = assign_splits(12, Some(&starts), &spec, &mut Rng::new(1)).unwrap();
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..12).collect::<Vec<_>>());
        assert_eq!(splits.total(), 12);
        let new_starts = reorder_sentence_starts(&starts, 12, &order);
        assert_eq!(new_starts.len(), 4);
        // Every new sentence is a run of consecutive original rows.
        for (i, &s) in new_starts.iter().enumerate() {
            let end = new_starts.get(i + 1).copied().unwrap_or(12);
            assert!(order[s..end].windows(2).all(|w| w[1] == w[0] + 1));
        }
    }

    #[test]
    fn unshuffled_split_holds_out_the_tail() {
        let spec = SplitSpec {
            dev: 0.1,
            test: 0.2,
            shuffle: false,
            unit: SplitUnit::Token,
        };
        let (order, splits) = assign_splits(10, None, &spec, &mut Rng::new(0)).unwrap();
        assert_eq!(order, (0..10).collect::<Vec<_>>());
        assert_eq!(
            splits,
            Splits {
                train: 7,
                dev: 1,
                test: 2
            }
        );
    }

    #[test]
    fn fractions_that_leave_no_training_data_are_rejected() {
        let spec = SplitSpec {
            dev: 0.5,
            test: 0.5,
            shuffle: false,
            unit: SplitUnit::Token,
        };
        assert!(assign_splits(4, None, &spec, &mut Rng::new(0)).is_err());
    }

    #[test]
    fn single_class_is_reported() {
        let acts = ActivationMatrix::from_array(Array2::zeros((3, 2)));
        let d = Dataset::new(
            "d",
            acts,
            NeuronIndex::layer_major(2, 1).unwrap(),
            Labels::from_names(&["a", "a", "a"]),
            None,
            Splits::all_train(3),
        )
        .unwrap();
        let err = d.require_two_train_classes().unwrap_err().to_string();
        assert!(err.contains("single class (`a`)"), "{err}");
        assert!(tiny(4).require_two_train_classes().is_ok());
    }

    #[test]
    fn truth_must_name_existing_neurons() {
        let truth = GroundTruth {
            informative: vec![5],
            ..Default::default()
        };
        assert!(tiny(2).with_truth(truth).is_err());
    }
}
