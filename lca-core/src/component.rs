//! The four component traits: activation sources, probes, rankers and
//! evaluators.
//!
//! They are object-safe so that plugins can provide them, and every call gets
//! a [`RunContext`] that carries the seed and thread count. Implementations
//! return errors for bad data and never panic on it; the host still catches
//! panics, but a panic is reported as a bug in the component.

use std::fmt;
use std::sync::Arc;

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};

use crate::context::RunContext;
use crate::data::{
    ActivationMatrix, ClassVocab, Dataset, DatasetOutline, Evaluation, NeuronIndex, NeuronRanking,
};
use crate::error::{Error, Result};

/// Produces a dataset: activations with labels, neuron index and splits.
pub trait ActivationSource: Send + Sync + fmt::Debug {
    /// Loads or computes the dataset.
    ///
    /// # Errors
    /// Missing or malformed files, and data that breaks the dataset
    /// invariants; the message names the file and line.
    fn load(&self, cx: &RunContext) -> Result<Dataset<'static>>;

    /// Produces the dataset's activations a block of rows at a time into
    /// `sink`, never holding them all, and returns the rest of the dataset.
    /// `lca store create` uses it so that an extraction larger than memory
    /// goes to disk as it is computed, and resumes after an interruption.
    ///
    /// The source calls [`RowSink::begin`] once, then pushes rows in the
    /// dataset's order (the order [`ActivationSource::load`] would give),
    /// from row [`RowSink::rows_held`] or earlier, without gaps, and
    /// finally returns the outline of the same dataset `load` returns.
    ///
    /// The default streams nothing and returns `Ok(None)`: the caller then
    /// calls `load`. Sources that read a file whole need nothing more.
    ///
    /// # Errors
    /// As `load`, and whatever the sink returns, which the source passes on.
    fn stream(&self, cx: &RunContext, sink: &mut dyn RowSink) -> Result<Option<DatasetOutline>> {
        let _ = (cx, sink);
        Ok(None)
    }
}

/// Where a streaming source puts its rows (see [`ActivationSource::stream`]).
pub trait RowSink: Send {
    /// Announces the matrix: `rows` rows of the `neurons` columns. Called
    /// once, before any rows.
    ///
    /// # Errors
    /// When the sink cannot take such a matrix.
    fn begin(&mut self, rows: usize, neurons: &NeuronIndex) -> Result<()>;

    /// Rows before this one need not be computed after [`RowSink::begin`]:
    /// the sink holds them from an earlier attempt that was interrupted, or
    /// does not want them (a store written in parts). The source may skip
    /// them.
    fn rows_held(&self) -> usize;

    /// Rows from this one on are not wanted (a store written in parts keeps
    /// one range of rows): the source may stop computing there. Blocks may
    /// still run past it; the sink ignores those rows.
    fn rows_wanted_end(&self) -> usize {
        usize::MAX
    }

    /// The rows the sink keeps at once (a store's shard), after
    /// [`RowSink::begin`]: a source that computes in blocks of about this
    /// many rows loses at most one block to an interruption.
    fn block_rows(&self) -> usize;

    /// Rows `first..first + block.nrows()`. Rows the sink already holds
    /// are ignored, so a block may start before [`RowSink::rows_held`].
    ///
    /// # Errors
    /// When a block leaves a gap, has the wrong width, or cannot be kept.
    fn push(&mut self, first: usize, block: ArrayView2<'_, f32>) -> Result<()>;
}

/// A probe specification: how to train a classifier on activations.
pub trait Probe: Send + Sync + fmt::Debug {
    /// Trains on the training split of `data`. May use the dev split for model
    /// selection; must not look at the test split.
    ///
    /// # Errors
    /// Degenerate data (fewer than two classes, no rows).
    fn fit(&self, data: &Dataset<'_>, cx: &RunContext) -> Result<Box<dyn TrainedProbe>>;

    /// Trains as [`Probe::fit`] does, starting the solver from `start`
    /// instead of its usual initial point. Evaluators use it to warm-start a
    /// retrain from a probe they already have: the previous size of a subset
    /// search, the previous penalty of a regularisation path, the full probe
    /// restricted to an ablation's neurons.
    ///
    /// For a convex probe the start changes the answer only within the
    /// solver's tolerance. Probes for which a start means nothing, or that
    /// must reproduce a fixed initialisation, ignore it: the default calls
    /// [`Probe::fit`].
    ///
    /// # Errors
    /// As [`Probe::fit`]; also when `start` does not match the data's classes
    /// and neurons.
    fn fit_from(
        &self,
        data: &Dataset<'_>,
        start: &WarmStart,
        cx: &RunContext,
    ) -> Result<Box<dyn TrainedProbe>> {
        let _ = start;
        self.fit(data, cx)
    }

    /// The same probe with some parameters changed (for example `l1` and `l2`
    /// in a regularisation search). `changes` uses the recipe's keys; the new
    /// values are validated as in a recipe.
    ///
    /// # Errors
    /// When a change is invalid, or the probe does not support it.
    fn reconfigure(&self, changes: &toml::Table) -> Result<Arc<dyn Probe>> {
        let keys: Vec<&str> = changes.keys().map(String::as_str).collect();
        Err(Error::input(format!(
            "this probe cannot be reconfigured (asked to change {})",
            keys.join(", ")
        )))
    }

    /// Rebuilds a trained probe from the bytes its [`TrainedProbe::state`]
    /// gave, so that a resumed run need not retrain it. The result must
    /// predict, weigh and describe itself exactly as the stored probe did.
    ///
    /// # Errors
    /// When the bytes are not a state of this probe, or the probe cannot be
    /// restored (then it is retrained).
    fn restore(&self, _state: &[u8]) -> Result<Box<dyn TrainedProbe>> {
        Err(Error::input(
            "this probe cannot be restored from a stored state",
        ))
    }
}

/// Bytes of `f32` per block when a probe predicts a whole matrix.
const PREDICT_BLOCK_BYTES: usize = 4 << 20;

/// A trained probe: a classifier from neuron activations to classes.
pub trait TrainedProbe: Send + Sync + fmt::Debug {
    /// The classes, in the order of the probability columns and weight rows.
    fn classes(&self) -> &ClassVocab;

    /// Number of input neurons it was trained on.
    fn n_features(&self) -> usize;

    /// Class probabilities, one row per input row, columns in class order.
    ///
    /// # Errors
    /// When `x` has the wrong number of columns.
    fn predict_proba(&self, x: ArrayView2<'_, f32>) -> Result<Array2<f32>>;

    /// The most probable class of each row (ties go to the lower class id).
    ///
    /// # Errors
    /// When `x` has the wrong number of columns.
    fn predict(&self, x: ArrayView2<'_, f32>) -> Result<Vec<u32>> {
        let proba = self.predict_proba(x)?;
        Ok(proba
            .axis_iter(Axis(0))
            .map(|row| argmax(row.iter().copied()))
            .collect())
    }

    /// [`Self::predict_proba`] of every row of `x`, read a block of rows at
    /// a time, so that a matrix mapped from disk or held in 16 bits is never
    /// converted whole. Rows are predicted independently, so the result is
    /// the one of a single call.
    ///
    /// # Errors
    /// When `x` has the wrong number of columns, or a block's prediction has
    /// the wrong shape.
    fn predict_proba_blocks(&self, x: &ActivationMatrix<'_>) -> Result<Array2<f32>> {
        let classes = self.classes().len();
        let mut out = Array2::<f32>::zeros((x.n_rows(), classes));
        let step = crate::data::rows_per_block(x.n_cols(), PREDICT_BLOCK_BYTES);
        for (rows, block) in x.blocks(0..x.n_rows(), step) {
            let proba = self.predict_proba(block.view())?;
            if proba.dim() != (rows.len(), classes) {
                return Err(Error::input(format!(
                    "the probe returned a {} × {} matrix of probabilities for {} rows and {classes} classes",
                    proba.nrows(),
                    proba.ncols(),
                    rows.len()
                )));
            }
            out.slice_axis_mut(Axis(0), ndarray::Slice::from(rows))
                .assign(&proba);
        }
        Ok(out)
    }

    /// [`Self::predict`] of every row of `x`, a block of rows at a time
    /// (see [`Self::predict_proba_blocks`]).
    ///
    /// # Errors
    /// When `x` has the wrong number of columns.
    fn predict_blocks(&self, x: &ActivationMatrix<'_>) -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity(x.n_rows());
        let step = crate::data::rows_per_block(x.n_cols(), PREDICT_BLOCK_BYTES);
        for (_, block) in x.blocks(0..x.n_rows(), step) {
            out.extend(self.predict(block.view())?);
        }
        Ok(out)
    }

    /// Weights, classes × neurons, for linear probes.
    fn weights(&self) -> Option<ArrayView2<'_, f32>> {
        None
    }

    /// Bias per class, for linear probes.
    fn bias(&self) -> Option<ArrayView1<'_, f32>> {
        None
    }

    /// Training diagnostics for the report (iterations, final objective...).
    fn details(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    /// The trained probe as bytes for [`Probe::restore`], kept so that an
    /// interrupted run can resume without retraining; `None` when the probe
    /// cannot be stored.
    fn state(&self) -> Option<Vec<u8>> {
        None
    }
}

/// A starting point for [`Probe::fit_from`]: weights (classes × the data's
/// neurons) and a bias per class, in the form [`TrainedProbe::weights`] and
/// [`TrainedProbe::bias`] give them.
#[derive(Clone, Debug, PartialEq)]
pub struct WarmStart {
    /// Weights, classes × neurons.
    pub weights: Array2<f32>,
    /// Bias per class.
    pub bias: Array1<f32>,
}

impl WarmStart {
    /// The start a linear probe gives for a subset of its neurons:
    /// `columns[j]` is the probe's neuron that becomes neuron `j`, or `None`
    /// for a neuron the probe did not see, which starts at zero. `None` when
    /// the probe is not linear.
    pub fn from_probe(probe: &dyn TrainedProbe, columns: &[Option<usize>]) -> Option<Self> {
        let (weights, bias) = (probe.weights()?, probe.bias()?);
        if columns.iter().flatten().any(|&c| c >= weights.ncols()) {
            return None;
        }
        let mut start = Array2::zeros((weights.nrows(), columns.len()));
        for (j, column) in columns.iter().enumerate() {
            if let Some(c) = column {
                start.column_mut(j).assign(&weights.column(*c));
            }
        }
        Some(WarmStart {
            weights: start,
            bias: bias.to_owned(),
        })
    }
}

/// A trained probe shared between the steps that read it.
pub type SharedProbe = Arc<dyn TrainedProbe>;

/// Index of the largest value; the first one on ties, 0 for an empty input.
pub fn argmax(values: impl Iterator<Item = f32>) -> u32 {
    let mut best = (0u32, f32::NEG_INFINITY);
    for (i, v) in values.enumerate() {
        if v > best.1 {
            best = (i as u32, v);
        }
    }
    best.0
}

/// What a ranker receives.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RankInput<'a> {
    /// The data to rank neurons on. Rankers use the training split.
    pub data: &'a Dataset<'a>,
    /// The trained probe wired to this ranker, if any.
    pub probe: Option<SharedProbe>,
    /// Rankings wired to this ranker (for methods that combine or filter
    /// other rankings), in recipe order.
    pub rankings: Vec<NamedRanking<'a>>,
}

impl<'a> RankInput<'a> {
    /// Input without a probe.
    pub fn new(data: &'a Dataset<'a>) -> Self {
        RankInput {
            data,
            probe: None,
            rankings: Vec::new(),
        }
    }

    /// Adds input rankings.
    pub fn with_rankings(mut self, rankings: Vec<NamedRanking<'a>>) -> Self {
        self.rankings = rankings;
        self
    }

    /// Adds a trained probe.
    pub fn with_probe(mut self, probe: SharedProbe) -> Self {
        self.probe = Some(probe);
        self
    }

    /// The probe, or an error saying the ranker needs one.
    ///
    /// # Errors
    /// When no probe was wired.
    pub fn require_probe(&self, ranker: &str) -> Result<&SharedProbe> {
        self.probe.as_ref().ok_or_else(|| {
            Error::input(format!("ranker `{ranker}` needs a trained probe: add `probe = \"<probe id>\"` to its recipe entry"))
        })
    }
}

/// Orders neurons by salience.
pub trait Ranker: Send + Sync + fmt::Debug {
    /// Ranks every neuron of `input.data`.
    ///
    /// The result must be a permutation of all neurons; the host checks it.
    ///
    /// # Errors
    /// Degenerate data, or a missing probe when one is required.
    fn rank(&self, input: &RankInput<'_>, cx: &RunContext) -> Result<NeuronRanking>;
}

/// A ranking passed to an evaluator, with its recipe id.
#[derive(Clone, Copy, Debug)]
pub struct NamedRanking<'a> {
    /// The ranker's id in the recipe.
    pub id: &'a str,
    /// The ranking.
    pub ranking: &'a NeuronRanking,
}

/// A probe passed to an evaluator: its specification (to retrain) and the
/// probe trained on the full data.
#[derive(Clone, Debug)]
pub struct ProbeInput {
    /// The probe's id in the recipe.
    pub id: String,
    /// The untrained specification, for retraining on subsets.
    pub spec: Arc<dyn Probe>,
    /// The probe trained on all neurons.
    pub trained: SharedProbe,
}

/// What an evaluator receives.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct EvalInput<'a> {
    /// The data.
    pub data: &'a Dataset<'a>,
    /// Rankings wired to the evaluator, in recipe order.
    pub rankings: Vec<NamedRanking<'a>>,
    /// Probes wired to the evaluator, in recipe order.
    pub probes: Vec<ProbeInput>,
}

impl<'a> EvalInput<'a> {
    /// Input with data only.
    pub fn new(data: &'a Dataset<'a>) -> Self {
        EvalInput {
            data,
            rankings: Vec::new(),
            probes: Vec::new(),
        }
    }

    /// Adds rankings.
    pub fn with_rankings(mut self, rankings: Vec<NamedRanking<'a>>) -> Self {
        self.rankings = rankings;
        self
    }

    /// Adds probes.
    pub fn with_probes(mut self, probes: Vec<ProbeInput>) -> Self {
        self.probes = probes;
        self
    }
}

/// Measures rankings, probes or data and reports tables.
pub trait Evaluator: Send + Sync + fmt::Debug {
    /// Runs the evaluation.
    ///
    /// # Errors
    /// Missing inputs (such as ground truth on real data) or degenerate data.
    fn evaluate(&self, input: &EvalInput<'_>, cx: &RunContext) -> Result<Evaluation>;
}

/// A built component of any kind.
#[derive(Debug)]
pub enum Component {
    /// An activation source.
    Source(Box<dyn ActivationSource>),
    /// A probe specification (shared: evaluators retrain it).
    Probe(Arc<dyn Probe>),
    /// A ranker.
    Ranker(Box<dyn Ranker>),
    /// An evaluator.
    Evaluator(Box<dyn Evaluator>),
}

impl Component {
    /// Its kind.
    pub fn kind(&self) -> crate::kind::ComponentKind {
        use crate::kind::ComponentKind as K;
        match self {
            Component::Source(_) => K::Source,
            Component::Probe(_) => K::Probe,
            Component::Ranker(_) => K::Ranker,
            Component::Evaluator(_) => K::Evaluator,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Linear(Array2<f32>, Array1<f32>, ClassVocab);

    impl TrainedProbe for Linear {
        fn classes(&self) -> &ClassVocab {
            &self.2
        }
        fn n_features(&self) -> usize {
            self.0.ncols()
        }
        fn predict_proba(&self, _x: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
            unreachable!("not used")
        }
        fn weights(&self) -> Option<ArrayView2<'_, f32>> {
            Some(self.0.view())
        }
        fn bias(&self) -> Option<ArrayView1<'_, f32>> {
            Some(self.1.view())
        }
    }

    #[test]
    fn a_warm_start_takes_the_shared_neurons_and_zeros_the_new_ones() {
        let classes = ClassVocab::in_order(vec!["a".into(), "b".into()]).unwrap();
        let probe = Linear(
            ndarray::array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]],
            ndarray::array![0.5, -0.5],
            classes,
        );
        let start = WarmStart::from_probe(&probe, &[Some(2), None, Some(0)]).unwrap();
        assert_eq!(
            start.weights,
            ndarray::array![[3.0, 0.0, 1.0], [6.0, 0.0, 4.0]]
        );
        assert_eq!(start.bias, ndarray::array![0.5, -0.5]);
        assert!(WarmStart::from_probe(&probe, &[Some(3)]).is_none());
    }

    #[test]
    fn argmax_takes_the_first_maximum() {
        assert_eq!(argmax([0.1, 0.7, 0.7, 0.2].into_iter()), 1);
        assert_eq!(argmax(std::iter::empty()), 0);
    }

    #[test]
    fn traits_are_object_safe_and_thread_safe() {
        fn assert_send_sync<T: Send + Sync + ?Sized>() {}
        assert_send_sync::<dyn ActivationSource>();
        assert_send_sync::<dyn Probe>();
        assert_send_sync::<dyn TrainedProbe>();
        assert_send_sync::<dyn Ranker>();
        assert_send_sync::<dyn Evaluator>();
        assert_send_sync::<Component>();
        assert_send_sync::<Dataset<'static>>();
    }
}
