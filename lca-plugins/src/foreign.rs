//! The host side: boundary objects wrapped as native `lca-core` components,
//! so the runner never sees FFI types. Every result coming back is checked
//! again (permutations, shapes, finite numbers) and every error names the
//! plugin and component it came from.

use std::fmt;

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{ROption, RResult, RStr, RString, RVec};
use lca_core::data::{ClassVocab, DatasetOutline, NeuronIndex};
use lca_core::ndarray::{Array1, Array2, ArrayView1, ArrayView2};
use lca_core::{
    ActivationSource, Dataset, EvalInput, Evaluation, Evaluator, NeuronRanking, Probe, RankInput,
    Ranker, Result, RowSink, RunContext, TrainedProbe, WarmStart,
};
use lca_core::{Error, registry::ComponentKind};
use serde::Deserialize;

use crate::abi::{
    FfiError, FfiEvaluatorBox, FfiMatrix, FfiNamedRanking, FfiProbeBox, FfiProbeInput,
    FfiRankerBox, FfiRowSink, FfiRowSink_TO, FfiSourceBox, FfiTrainedProbeBox,
};
use crate::convert::{
    DatasetParts, context_to_ffi, dataset_from_owned_ffi, error_from_ffi, error_to_ffi,
    matrix_from_ffi, matrix_to_ffi, outline_from_ffi, owned_matrix_from_ffi, ranking_from_ffi,
    ranking_to_ffi,
};
use crate::probe_adapter::{probe_to_ffi, trained_probe_to_ffi};

/// Who is on the other side of a boundary object, for messages.
#[derive(Clone, Debug)]
pub(crate) struct Who {
    /// `ranker \`correlation\` of plugin lca-plugin-correlation 0.1.0`.
    pub(crate) label: String,
    /// The component name, for parameter errors.
    pub(crate) component: String,
}

impl Who {
    pub(crate) fn plugin(
        kind: ComponentKind,
        component: &str,
        plugin: &str,
        version: &str,
    ) -> Self {
        Who {
            label: format!("{kind} `{component}` of plugin {plugin} {version}"),
            component: component.to_string(),
        }
    }

    /// An object the host handed to a plugin and got back (a probe passed to
    /// a plugin evaluator).
    pub(crate) fn host(what: &str) -> Self {
        Who {
            label: format!("host {what}"),
            component: what.to_string(),
        }
    }

    fn err(&self, e: FfiError) -> Error {
        error_from_ffi(e, &self.label, &self.component)
    }

    fn invalid(&self, message: impl fmt::Display) -> Error {
        Error::InvalidOutput {
            component: self.label.clone(),
            message: message.to_string(),
        }
    }
}

/// A source from a plugin.
pub(crate) struct ForeignSource {
    inner: FfiSourceBox,
    who: Who,
}

/// A probe specification from a plugin.
pub(crate) struct ForeignProbe {
    inner: FfiProbeBox,
    who: Who,
}

/// A trained probe from a plugin; what never changes is fetched once.
pub(crate) struct ForeignTrainedProbe {
    inner: FfiTrainedProbeBox,
    who: Who,
    classes: ClassVocab,
    n_features: usize,
    details: serde_json::Value,
    weights: Option<Array2<f32>>,
    bias: Option<Array1<f32>>,
}

/// A ranker from a plugin.
pub(crate) struct ForeignRanker {
    inner: FfiRankerBox,
    who: Who,
}

/// An evaluator from a plugin.
pub(crate) struct ForeignEvaluator {
    inner: FfiEvaluatorBox,
    who: Who,
}

macro_rules! debug_by_label {
    ($($t:ty),*) => {$(
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.who.label)
            }
        }
    )*};
}
debug_by_label!(
    ForeignSource,
    ForeignProbe,
    ForeignTrainedProbe,
    ForeignRanker,
    ForeignEvaluator
);

impl ForeignSource {
    pub(crate) fn new(inner: FfiSourceBox, who: Who) -> Self {
        ForeignSource { inner, who }
    }
}

impl ActivationSource for ForeignSource {
    fn load(&self, cx: &RunContext) -> Result<Dataset<'static>> {
        let owned = self
            .inner
            .load(context_to_ffi(cx))
            .into_result()
            .map_err(|e| self.who.err(e))?;
        dataset_from_owned_ffi(owned).map_err(|e| self.who.invalid(e))
    }

    fn stream(&self, cx: &RunContext, sink: &mut dyn RowSink) -> Result<Option<DatasetOutline>> {
        let mut adapter = PluginSideSink(sink);
        let outline = self
            .inner
            .stream(
                context_to_ffi(cx),
                FfiRowSink_TO::from_ptr(&mut adapter, TD_Opaque),
            )
            .into_result()
            .map_err(|e| self.who.err(e))?;
        match outline {
            ROption::RSome(json) => outline_from_ffi(&json)
                .map(Some)
                .map_err(|e| self.who.invalid(e)),
            ROption::RNone => Ok(None),
        }
    }
}

/// The host's sink handed to a plugin's streaming source.
struct PluginSideSink<'a>(&'a mut dyn RowSink);

impl FfiRowSink for PluginSideSink<'_> {
    fn begin(&mut self, rows: u64, neurons_json: RStr<'_>) -> RResult<(), FfiError> {
        let result = serde_json::from_str::<NeuronIndex>(neurons_json.as_str())
            .map_err(|e| {
                Error::input(format!(
                    "malformed neuron index across the plugin boundary: {e}"
                ))
            })
            .and_then(|neurons| self.0.begin(rows as usize, &neurons));
        result.map_err(|e| error_to_ffi(&e)).into()
    }

    fn rows_held(&self) -> u64 {
        self.0.rows_held() as u64
    }

    fn block_rows(&self) -> u64 {
        self.0.block_rows() as u64
    }

    fn rows_wanted_end(&self) -> u64 {
        u64::try_from(self.0.rows_wanted_end()).unwrap_or(u64::MAX)
    }

    fn push(&mut self, first: u64, block: FfiMatrix<'_>) -> RResult<(), FfiError> {
        let result = matrix_from_ffi(block).and_then(|view| self.0.push(first as usize, view));
        result.map_err(|e| error_to_ffi(&e)).into()
    }
}

impl ForeignProbe {
    pub(crate) fn new(inner: FfiProbeBox, who: Who) -> Self {
        ForeignProbe { inner, who }
    }

    /// A trained probe the plugin returned (from `fit` or `restore`).
    fn trained(
        &self,
        result: RResult<FfiTrainedProbeBox, FfiError>,
    ) -> Result<Box<dyn TrainedProbe>> {
        let trained = result.into_result().map_err(|e| self.who.err(e))?;
        Ok(Box::new(ForeignTrainedProbe::new(
            trained,
            self.who.clone(),
        )?))
    }
}

impl Probe for ForeignProbe {
    fn fit(&self, data: &Dataset<'_>, cx: &RunContext) -> Result<Box<dyn TrainedProbe>> {
        let parts = DatasetParts::new(data);
        self.trained(self.inner.fit(parts.ffi(), context_to_ffi(cx)))
    }

    fn fit_from(
        &self,
        data: &Dataset<'_>,
        start: &WarmStart,
        cx: &RunContext,
    ) -> Result<Box<dyn TrainedProbe>> {
        let parts = DatasetParts::new(data);
        let (weights, rows, cols) = matrix_to_ffi(start.weights.view());
        let weights = FfiMatrix {
            data: weights.as_ref().into(),
            rows: rows as u64,
            cols: cols as u64,
        };
        let bias = start.bias.to_vec();
        self.trained(self.inner.fit_from(
            parts.ffi(),
            weights,
            bias.as_slice().into(),
            context_to_ffi(cx),
        ))
    }

    fn reconfigure(&self, changes: &lca_core::toml::Table) -> Result<std::sync::Arc<dyn Probe>> {
        let text = lca_core::toml::to_string(changes).map_err(|e| {
            Error::input(format!("parameter changes cannot be written as TOML: {e}"))
        })?;
        let probe = self
            .inner
            .reconfigure(text.as_str().into())
            .into_result()
            .map_err(|e| self.who.err(e))?;
        Ok(std::sync::Arc::new(ForeignProbe::new(
            probe,
            self.who.clone(),
        )))
    }

    fn restore(&self, state: &[u8]) -> Result<Box<dyn TrainedProbe>> {
        self.trained(self.inner.restore(state.into()))
    }
}

#[derive(Deserialize)]
struct ProbeDescription {
    classes: ClassVocab,
    n_features: usize,
    #[serde(default)]
    details: serde_json::Value,
}

impl ForeignTrainedProbe {
    pub(crate) fn new(inner: FfiTrainedProbeBox, who: Who) -> Result<Self> {
        let description: ProbeDescription = serde_json::from_str(inner.describe().as_str())
            .map_err(|e| who.invalid(format!("its trained probe did not describe itself ({e})")))?;
        let weights = match inner.weights().into_option() {
            Some(w) => Some(owned_matrix_from_ffi(w).map_err(|e| who.invalid(e))?),
            None => None,
        };
        let bias = inner
            .bias()
            .into_option()
            .map(|b| Array1::from(b.into_vec()));
        Ok(ForeignTrainedProbe {
            inner,
            who,
            classes: description.classes,
            n_features: description.n_features,
            details: description.details,
            weights,
            bias,
        })
    }
}

impl TrainedProbe for ForeignTrainedProbe {
    fn classes(&self) -> &ClassVocab {
        &self.classes
    }

    fn n_features(&self) -> usize {
        self.n_features
    }

    fn predict_proba(&self, x: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        let (data, rows, cols) = matrix_to_ffi(x);
        let m = FfiMatrix {
            data: data.as_ref().into(),
            rows: rows as u64,
            cols: cols as u64,
        };
        let out = self
            .inner
            .predict_proba(m)
            .into_result()
            .map_err(|e| self.who.err(e))?;
        let proba = owned_matrix_from_ffi(out).map_err(|e| self.who.invalid(e))?;
        if proba.dim() != (rows, self.classes.len()) {
            return Err(self.who.invalid(format!(
                "predict_proba returned a {} × {} matrix for {rows} rows and {} classes",
                proba.nrows(),
                proba.ncols(),
                self.classes.len()
            )));
        }
        Ok(proba)
    }

    fn weights(&self) -> Option<ArrayView2<'_, f32>> {
        self.weights.as_ref().map(|w| w.view())
    }

    fn bias(&self) -> Option<ArrayView1<'_, f32>> {
        self.bias.as_ref().map(|b| b.view())
    }

    fn details(&self) -> serde_json::Value {
        self.details.clone()
    }

    fn state(&self) -> Option<Vec<u8>> {
        self.inner.state().into_option().map(RVec::into_vec)
    }
}

impl ForeignRanker {
    pub(crate) fn new(inner: FfiRankerBox, who: Who) -> Self {
        ForeignRanker { inner, who }
    }
}

impl Ranker for ForeignRanker {
    fn rank(&self, input: &RankInput<'_>, cx: &RunContext) -> Result<NeuronRanking> {
        let parts = DatasetParts::new(input.data);
        let probe: ROption<FfiTrainedProbeBox> =
            input.probe.clone().map(trained_probe_to_ffi).into();
        let ranking = self
            .inner
            .rank(
                parts.ffi(),
                probe,
                named_to_ffi(&input.rankings),
                context_to_ffi(cx),
            )
            .into_result()
            .map_err(|e| self.who.err(e))?;
        let ranking = ranking_from_ffi(ranking).map_err(|e| self.who.invalid(e))?;
        if ranking.len() != input.data.n_neurons() {
            return Err(self.who.invalid(format!(
                "the ranking covers {} neurons but the data has {}",
                ranking.len(),
                input.data.n_neurons()
            )));
        }
        Ok(ranking)
    }
}

impl ForeignEvaluator {
    pub(crate) fn new(inner: FfiEvaluatorBox, who: Who) -> Self {
        ForeignEvaluator { inner, who }
    }
}

impl Evaluator for ForeignEvaluator {
    fn evaluate(&self, input: &EvalInput<'_>, cx: &RunContext) -> Result<Evaluation> {
        let parts = DatasetParts::new(input.data);
        let rankings = named_to_ffi(&input.rankings);
        let probes: RVec<FfiProbeInput> = input
            .probes
            .iter()
            .map(|p| FfiProbeInput {
                id: RString::from(p.id.as_str()),
                spec: probe_to_ffi(p.spec.clone()),
                trained: trained_probe_to_ffi(p.trained.clone()),
            })
            .collect();
        let json = self
            .inner
            .evaluate(parts.ffi(), rankings, probes, context_to_ffi(cx))
            .into_result()
            .map_err(|e| self.who.err(e))?;
        let evaluation: Evaluation = serde_json::from_str(json.as_str()).map_err(|e| {
            self.who
                .invalid(format!("its evaluation is not valid JSON ({e})"))
        })?;
        evaluation.validate().map_err(|e| self.who.invalid(e))?;
        Ok(evaluation)
    }
}

fn named_to_ffi(rankings: &[lca_core::NamedRanking<'_>]) -> RVec<FfiNamedRanking> {
    rankings
        .iter()
        .map(|r| FfiNamedRanking {
            id: RString::from(r.id),
            ranking: ranking_to_ffi(r.ranking),
        })
        .collect()
}
