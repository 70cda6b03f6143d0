//! The types that cross the plugin boundary.
//!
//! Everything here is `#[repr(C)]` and checked by abi_stable when a library is
//! loaded. The design keeps the boundary coarse and stable:
//!
//! - matrices cross as a slice plus shape, borrowed where possible;
//! - parameters cross as TOML text and everything descriptive (class names,
//!   neuron index, evaluation tables) as JSON text, so adding a parameter or a
//!   report field never changes the ABI;
//! - errors cross as [`FfiError`] values; panics are caught on the side that
//!   raised them and never cross.
//!
//! [`ABI_VERSION`] is the interface version. Its minor number must be bumped
//! (0.x) whenever anything in this module changes.

use std::fmt::Debug;

use abi_stable::library::RootModule;
use abi_stable::sabi_types::RMut;
use abi_stable::sabi_types::VersionStrings;
use abi_stable::std_types::{RArc, RBox, ROption, RResult, RSlice, RStr, RString, RVec};
use abi_stable::{StableAbi, declare_root_module_statics, sabi_trait};

/// Version of the plugin interface. Plugins built against another minor
/// version (0.x) are refused with an explanation.
pub const ABI_VERSION: &str = "0.9.0";

/// Error codes of [`FfiError`].
pub mod code {
    /// Any other failure.
    pub const OTHER: u32 = 0;
    /// A parameter has a bad value; `param`, `value` and `expected` are set.
    pub const INVALID_PARAM: u32 = 1;
    /// The input data cannot be used.
    pub const INVALID_INPUT: u32 = 2;
    /// The component panicked; the panic was caught.
    pub const PANICKED: u32 = 3;
    /// A file could not be read or written.
    pub const IO: u32 = 4;
}

/// An error crossing the boundary.
#[repr(C)]
#[derive(StableAbi, Clone, Debug)]
pub struct FfiError {
    /// One of the [`code`] constants.
    pub code: u32,
    /// The full message.
    pub message: RString,
    /// For [`code::INVALID_PARAM`]: the parameter.
    pub param: RString,
    /// For [`code::INVALID_PARAM`]: the value.
    pub value: RString,
    /// For [`code::INVALID_PARAM`]: what is allowed.
    pub expected: RString,
}

/// Seed, thread count, step id and the host's progress sink.
#[repr(C)]
#[derive(StableAbi, Clone, Debug)]
pub struct FfiContext<'a> {
    /// Step seed.
    pub seed: u64,
    /// Worker threads.
    pub threads: u64,
    /// Step id, such as `ranker.corr`.
    pub step: RStr<'a>,
    /// Where progress and warnings go (the host draws them).
    pub progress: ROption<FfiProgressBox>,
}

/// The host's progress sink, as plugins see it.
#[sabi_trait]
pub trait FfiProgress: Send + Sync + Clone + Debug {
    /// A task of `total` units begins.
    fn start(&self, label: RStr<'_>, total: u64, unit: RStr<'_>);
    /// `delta` more units are done.
    fn advance(&self, delta: u64);
    /// The task is over.
    fn finish(&self);
    /// A warning for the user.
    fn warn(&self, message: RStr<'_>);
    /// A note for the user.
    fn info(&self, message: RStr<'_>);
    /// Whether the run has been asked to stop.
    #[sabi(last_prefix_field)]
    fn cancelled(&self) -> bool;
}

/// An owned, shareable progress sink.
pub type FfiProgressBox = FfiProgress_TO<'static, RArc<()>>;

/// A borrowed row-major `f32` matrix.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub struct FfiMatrix<'a> {
    /// `rows × cols` values, row-major.
    pub data: RSlice<'a, f32>,
    /// Rows.
    pub rows: u64,
    /// Columns.
    pub cols: u64,
}

/// An owned row-major `f32` matrix.
#[repr(C)]
#[derive(StableAbi, Clone, Debug)]
pub struct FfiOwnedMatrix {
    /// `rows × cols` values, row-major.
    pub data: RVec<f32>,
    /// Rows.
    pub rows: u64,
    /// Columns.
    pub cols: u64,
}

/// Activations held in 16 bits (a store's mapped shards), borrowed: each
/// side converts rows to `f32` as it reads them.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub struct FfiHalfValues<'a> {
    /// `rows × cols` bit patterns, row-major; empty when the values are
    /// `f32` (in [`FfiDataset::acts`]).
    pub bits: RSlice<'a, u16>,
    /// [`half_format::NONE`], [`half_format::F16`] or [`half_format::BF16`].
    pub format: u8,
}

/// Codes of [`FfiHalfValues::format`].
pub mod half_format {
    /// The values are `f32`.
    pub const NONE: u8 = 0;
    /// IEEE binary16.
    pub const F16: u8 = 1;
    /// bfloat16.
    pub const BF16: u8 = 2;
}

/// A borrowed dataset: activations and labels as slices, the rest as JSON.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub struct FfiDataset<'a> {
    /// Tokens × neurons: its shape always, its values when they are `f32`.
    pub acts: FfiMatrix<'a>,
    /// The values when they are held in 16 bits.
    pub half: FfiHalfValues<'a>,
    /// Class id per token.
    pub labels: RSlice<'a, u32>,
    /// JSON: name, classes, neuron index, words, splits and ground truth.
    pub meta: RStr<'a>,
}

/// An owned dataset, returned by sources.
#[repr(C)]
#[derive(StableAbi, Clone, Debug)]
pub struct FfiOwnedDataset {
    /// Tokens × neurons.
    pub acts: FfiOwnedMatrix,
    /// Class id per token.
    pub labels: RVec<u32>,
    /// JSON, as in [`FfiDataset::meta`].
    pub meta: RString,
}

/// A ranking of one class.
#[repr(C)]
#[derive(StableAbi, Clone, Debug)]
pub struct FfiClassRanking {
    /// Class name.
    pub class: RString,
    /// Neurons, most salient first.
    pub order: RVec<u32>,
    /// Score per neuron.
    pub scores: ROption<RVec<f64>>,
}

/// A neuron ranking.
#[repr(C)]
#[derive(StableAbi, Clone, Debug)]
pub struct FfiRanking {
    /// Neurons, most salient first.
    pub order: RVec<u32>,
    /// Score per neuron.
    pub scores: ROption<RVec<f64>>,
    /// Per-class rankings.
    pub per_class: RVec<FfiClassRanking>,
    /// JSON object of method-specific details.
    pub details: RString,
}

/// A ranking passed to an evaluator.
#[repr(C)]
#[derive(StableAbi, Clone, Debug)]
pub struct FfiNamedRanking {
    /// Recipe id of the ranker.
    pub id: RString,
    /// The ranking.
    pub ranking: FfiRanking,
}

/// A probe passed to an evaluator.
#[repr(C)]
#[derive(StableAbi)]
pub struct FfiProbeInput {
    /// Recipe id of the probe.
    pub id: RString,
    /// The specification, to retrain.
    pub spec: FfiProbeBox,
    /// The probe trained on all neurons.
    pub trained: FfiTrainedProbeBox,
}

/// What a plugin library says about itself.
#[repr(C)]
#[derive(StableAbi, Clone, Debug)]
pub struct FfiPluginInfo {
    /// Plugin name, such as `lca-plugin-correlation`.
    pub name: RString,
    /// Plugin version.
    pub version: RString,
    /// JSON list of `lca_core::ComponentInfo`.
    pub components: RString,
}

/// An activation source.
#[sabi_trait]
pub trait FfiSource: Send + Sync {
    /// Loads the dataset.
    fn load(&self, cx: FfiContext<'_>) -> RResult<FfiOwnedDataset, FfiError>;
    /// Pushes the dataset's rows into `sink` and returns the rest of it as
    /// the JSON of an `lca_core::data::DatasetOutline`, or nothing when the
    /// source does not stream (see `lca_core::ActivationSource::stream`).
    #[sabi(last_prefix_field)]
    fn stream(
        &self,
        cx: FfiContext<'_>,
        sink: FfiRowSinkMut<'_>,
    ) -> RResult<ROption<RString>, FfiError>;
}

/// Where a streaming source puts its rows (`lca_core::RowSink`).
#[sabi_trait]
pub trait FfiRowSink: Send {
    /// `rows` rows of the neurons given as the JSON of an
    /// `lca_core::data::NeuronIndex` are coming.
    fn begin(&mut self, rows: u64, neurons_json: RStr<'_>) -> RResult<(), FfiError>;
    /// Rows already held from an interrupted attempt.
    fn rows_held(&self) -> u64;
    /// Rows the sink keeps at once.
    fn block_rows(&self) -> u64;
    /// Rows from this one on are not wanted.
    fn rows_wanted_end(&self) -> u64;
    /// Rows `first..first + block.rows`.
    #[sabi(last_prefix_field)]
    fn push(&mut self, first: u64, block: FfiMatrix<'_>) -> RResult<(), FfiError>;
}

/// A probe specification.
#[sabi_trait]
pub trait FfiProbe: Send + Sync {
    /// Trains on the dataset's training split.
    fn fit(
        &self,
        data: FfiDataset<'_>,
        cx: FfiContext<'_>,
    ) -> RResult<FfiTrainedProbeBox, FfiError>;
    /// The same probe with some parameters changed (TOML text).
    fn reconfigure(&self, changes_toml: RStr<'_>) -> RResult<FfiProbeBox, FfiError>;
    /// A trained probe rebuilt from the bytes its `state` gave.
    fn restore(&self, state: RSlice<'_, u8>) -> RResult<FfiTrainedProbeBox, FfiError>;
    /// Trains from a starting point: weights (classes × neurons) and bias.
    #[sabi(last_prefix_field)]
    fn fit_from(
        &self,
        data: FfiDataset<'_>,
        weights: FfiMatrix<'_>,
        bias: RSlice<'_, f32>,
        cx: FfiContext<'_>,
    ) -> RResult<FfiTrainedProbeBox, FfiError>;
}

/// A trained probe.
#[sabi_trait]
pub trait FfiTrainedProbe: Send + Sync {
    /// JSON: classes, number of features and training details.
    fn describe(&self) -> RString;
    /// Class probabilities per row.
    fn predict_proba(&self, x: FfiMatrix<'_>) -> RResult<FfiOwnedMatrix, FfiError>;
    /// Weights, classes × neurons, for linear probes.
    fn weights(&self) -> ROption<FfiOwnedMatrix>;
    /// Bias per class, for linear probes.
    fn bias(&self) -> ROption<RVec<f32>>;
    /// The probe as bytes for `FfiProbe::restore`, when it can be stored.
    #[sabi(last_prefix_field)]
    fn state(&self) -> ROption<RVec<u8>>;
}

/// A ranker.
#[sabi_trait]
pub trait FfiRanker: Send + Sync {
    /// Ranks every neuron.
    #[sabi(last_prefix_field)]
    fn rank(
        &self,
        data: FfiDataset<'_>,
        probe: ROption<FfiTrainedProbeBox>,
        rankings: RVec<FfiNamedRanking>,
        cx: FfiContext<'_>,
    ) -> RResult<FfiRanking, FfiError>;
}

/// An evaluator.
#[sabi_trait]
pub trait FfiEvaluator: Send + Sync {
    /// Evaluates; returns the `lca_core::Evaluation` as JSON.
    #[sabi(last_prefix_field)]
    fn evaluate(
        &self,
        data: FfiDataset<'_>,
        rankings: RVec<FfiNamedRanking>,
        probes: RVec<FfiProbeInput>,
        cx: FfiContext<'_>,
    ) -> RResult<RString, FfiError>;
}

/// A borrowed row sink.
pub type FfiRowSinkMut<'a> = FfiRowSink_TO<'a, RMut<'a, ()>>;
/// A boxed source.
pub type FfiSourceBox = FfiSource_TO<'static, RBox<()>>;
/// A boxed probe specification.
pub type FfiProbeBox = FfiProbe_TO<'static, RBox<()>>;
/// A boxed trained probe.
pub type FfiTrainedProbeBox = FfiTrainedProbe_TO<'static, RBox<()>>;
/// A boxed ranker.
pub type FfiRankerBox = FfiRanker_TO<'static, RBox<()>>;
/// A boxed evaluator.
pub type FfiEvaluatorBox = FfiEvaluator_TO<'static, RBox<()>>;

/// The root module every plugin library exports. Each constructor builds a
/// component from its name and its parameters as TOML text.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(panic))]
pub struct PluginMod {
    /// Name, version and components of the plugin.
    pub info: extern "C" fn() -> FfiPluginInfo,
    /// Builds a source.
    pub new_source:
        extern "C" fn(name: RStr<'_>, params_toml: RStr<'_>) -> RResult<FfiSourceBox, FfiError>,
    /// Builds a probe.
    pub new_probe:
        extern "C" fn(name: RStr<'_>, params_toml: RStr<'_>) -> RResult<FfiProbeBox, FfiError>,
    /// Builds a ranker.
    pub new_ranker:
        extern "C" fn(name: RStr<'_>, params_toml: RStr<'_>) -> RResult<FfiRankerBox, FfiError>,
    /// Builds an evaluator.
    pub new_evaluator:
        extern "C" fn(name: RStr<'_>, params_toml: RStr<'_>) -> RResult<FfiEvaluatorBox, FfiError>,
    /// The parameter values a component would run with, defaults included,
    /// as TOML text: how the host checks that documented defaults are the
    /// applied ones.
    #[sabi(last_prefix_field)]
    pub applied_params:
        extern "C" fn(name: RStr<'_>, params_toml: RStr<'_>) -> RResult<RString, FfiError>,
}

impl RootModule for PluginModRef {
    declare_root_module_statics! {PluginModRef}
    const BASE_NAME: &'static str = "lca_plugin";
    const NAME: &'static str = "lca_plugin";
    const VERSION_STRINGS: VersionStrings = VersionStrings::new(ABI_VERSION);
}
