//! Conversions between `lca-core` values and their boundary forms.

use std::borrow::Cow;
use std::collections::BTreeMap;

use abi_stable::std_types::{RArc, ROption, RSlice, RStr, RString, RVec};
use lca_core::data::{
    ActivationMatrix, ClassRanking, ClassVocab, DatasetOutline, GroundTruth, HalfFormat, Labels,
    NeuronIndex, Splits, Tokens, ValueBuffer,
};
use lca_core::ndarray::{Array2, ArrayView2};
use std::sync::Arc;

use abi_stable::sabi_trait::TD_Opaque;
use lca_core::{Dataset, Error, NeuronRanking, Progress, Result, RunContext};
use serde::{Deserialize, Serialize};

use crate::abi::{
    FfiClassRanking, FfiContext, FfiDataset, FfiError, FfiHalfValues, FfiMatrix, FfiOwnedDataset,
    FfiOwnedMatrix, FfiProgress, FfiProgress_TO, FfiProgressBox, FfiRanking, code, half_format,
};

/// The descriptive part of a dataset, sent as JSON.
#[derive(Serialize, Deserialize)]
struct DatasetMeta {
    name: String,
    classes: ClassVocab,
    neurons: NeuronIndex,
    tokens: Option<Tokens>,
    splits: Splits,
    truth: Option<GroundTruth>,
    #[serde(default)]
    details: BTreeMap<String, String>,
}

/// Everything of a dataset but its activations and label ids, as JSON.
fn meta_json(dataset: &Dataset<'_>) -> String {
    let meta = DatasetMeta {
        name: dataset.name().to_string(),
        classes: dataset.classes().clone(),
        neurons: dataset.neurons().clone(),
        tokens: dataset.tokens().cloned(),
        splits: dataset.splits(),
        truth: dataset.truth().cloned(),
        details: dataset.details().clone(),
    };
    serde_json::to_string(&meta).expect("dataset metadata serialises")
}

/// A dataset prepared for crossing: the contiguous data and the JSON meta it
/// borrows from. Keep it alive while the [`FfiDataset`] is in use.
pub(crate) struct DatasetParts<'d> {
    data: Cow<'d, [f32]>,
    half: Option<(&'d [u16], HalfFormat)>,
    labels: &'d [u32],
    rows: usize,
    cols: usize,
    meta: String,
}

impl<'d> DatasetParts<'d> {
    pub(crate) fn new(dataset: &'d Dataset<'_>) -> Self {
        // 16-bit values cross as they are, so a store mapped in f16 or bf16
        // is never converted whole to reach a plugin.
        let half = dataset.acts().half_bits();
        DatasetParts {
            data: match half {
                Some(_) => Cow::Borrowed(&[]),
                None => dataset.acts().to_contiguous(),
            },
            half,
            labels: dataset.labels().ids(),
            rows: dataset.n_rows(),
            cols: dataset.n_neurons(),
            meta: meta_json(dataset),
        }
    }

    pub(crate) fn ffi(&self) -> FfiDataset<'_> {
        FfiDataset {
            acts: FfiMatrix {
                data: RSlice::from_slice(&self.data),
                rows: self.rows as u64,
                cols: self.cols as u64,
            },
            half: FfiHalfValues {
                bits: RSlice::from_slice(self.half.map_or(&[], |(bits, _)| bits)),
                format: match self.half {
                    None => half_format::NONE,
                    Some((_, HalfFormat::F16)) => half_format::F16,
                    Some((_, HalfFormat::Bf16)) => half_format::BF16,
                },
            },
            labels: RSlice::from_slice(self.labels),
            meta: RStr::from_str(&self.meta),
        }
    }
}

fn meta_dataset<'a>(
    acts: ActivationMatrix<'a>,
    labels: Vec<u32>,
    meta: &str,
) -> Result<Dataset<'a>> {
    let meta: DatasetMeta = serde_json::from_str(meta).map_err(|e| {
        Error::input(format!(
            "malformed dataset description across the plugin boundary: {e}"
        ))
    })?;
    let dataset = Dataset::new(
        meta.name,
        acts,
        meta.neurons,
        Labels::new(labels, meta.classes)?,
        meta.tokens,
        meta.splits,
    )?
    .with_details(meta.details);
    match meta.truth {
        Some(truth) => dataset.with_truth(truth),
        None => Ok(dataset),
    }
}

/// A borrowed dataset from its boundary form, without copying activations.
pub(crate) fn dataset_from_ffi(d: FfiDataset<'_>) -> Result<Dataset<'_>> {
    let (rows, cols) = (d.acts.rows as usize, d.acts.cols as usize);
    let half =
        |format| ActivationMatrix::from_half_slice(rows, cols, format, d.half.bits.as_slice());
    let acts = match d.half.format {
        half_format::NONE => ActivationMatrix::from_slice(rows, cols, d.acts.data.as_slice())?,
        half_format::F16 => half(HalfFormat::F16)?,
        half_format::BF16 => half(HalfFormat::Bf16)?,
        other => {
            return Err(Error::input(format!(
                "unknown 16-bit format code {other} across the plugin boundary"
            )));
        }
    };
    meta_dataset(acts, d.labels.to_vec(), d.meta.as_str())
}

/// A dataset outline for returning from a streaming source.
pub(crate) fn outline_to_ffi(outline: &DatasetOutline) -> RString {
    RString::from(serde_json::to_string(outline).expect("a dataset outline serialises"))
}

/// A dataset outline a streaming source returned.
pub(crate) fn outline_from_ffi(json: &str) -> Result<DatasetOutline> {
    serde_json::from_str(json).map_err(|e| {
        Error::input(format!(
            "malformed dataset outline across the plugin boundary: {e}"
        ))
    })
}

/// An owned dataset for returning from a source. The activations move
/// across when the source's dataset owns them alone (the usual case), so a
/// source's matrix is never held twice.
pub(crate) fn dataset_to_owned_ffi(dataset: Dataset<'_>) -> FfiOwnedDataset {
    let (rows, cols) = (dataset.n_rows(), dataset.n_neurons());
    let labels = RVec::from(dataset.labels().ids().to_vec());
    let meta = RString::from(meta_json(&dataset));
    FfiOwnedDataset {
        acts: FfiOwnedMatrix {
            data: RVec::from(dataset.into_acts().into_row_major()),
            rows: rows as u64,
            cols: cols as u64,
        },
        labels,
        meta,
    }
}

/// An owned dataset from a source's boundary form. The activations stay in
/// the buffer the plugin allocated: turning it into a `Vec` would copy it,
/// because abi_stable cannot tell that both sides share one allocator.
pub(crate) fn dataset_from_owned_ffi(d: FfiOwnedDataset) -> Result<Dataset<'static>> {
    let acts = ActivationMatrix::from_buffer(
        d.acts.rows as usize,
        d.acts.cols as usize,
        Arc::new(ForeignValues(d.acts.data)),
    )?;
    meta_dataset(acts, d.labels.into_vec(), d.meta.as_str())
}

/// Values allocated by a plugin. abi_stable never unloads a library, so the
/// buffer's deallocator stays valid for as long as the host keeps it.
struct ForeignValues(RVec<f32>);

impl ValueBuffer for ForeignValues {
    fn values(&self) -> &[f32] {
        self.0.as_slice()
    }
}

pub(crate) fn matrix_to_ffi(x: ArrayView2<'_, f32>) -> (Cow<'_, [f32]>, usize, usize) {
    let (rows, cols) = x.dim();
    let data = match x.to_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(x.iter().copied().collect()),
    };
    (data, rows, cols)
}

pub(crate) fn matrix_from_ffi(m: FfiMatrix<'_>) -> Result<ArrayView2<'_, f32>> {
    ArrayView2::from_shape((m.rows as usize, m.cols as usize), m.data.as_slice()).map_err(|_| {
        Error::input(format!(
            "a {} × {} matrix needs {} values, got {}",
            m.rows,
            m.cols,
            m.rows * m.cols,
            m.data.len()
        ))
    })
}

pub(crate) fn owned_matrix_to_ffi(a: Array2<f32>) -> FfiOwnedMatrix {
    let (rows, cols) = a.dim();
    let data = if a.is_standard_layout() {
        a.into_raw_vec_and_offset().0
    } else {
        a.iter().copied().collect()
    };
    FfiOwnedMatrix {
        data: RVec::from(data),
        rows: rows as u64,
        cols: cols as u64,
    }
}

pub(crate) fn owned_matrix_from_ffi(m: FfiOwnedMatrix) -> Result<Array2<f32>> {
    let (rows, cols, found) = (m.rows as usize, m.cols as usize, m.data.len());
    Array2::from_shape_vec((rows, cols), m.data.into_vec()).map_err(|_| {
        Error::input(format!(
            "a {rows} × {cols} matrix needs {} values, got {found}",
            rows * cols
        ))
    })
}

pub(crate) fn context_to_ffi(cx: &RunContext) -> FfiContext<'_> {
    FfiContext {
        seed: cx.seed(),
        threads: cx.threads() as u64,
        step: RStr::from_str(cx.step()),
        progress: cx
            .progress()
            .map(|sink| FfiProgress_TO::from_ptr(RArc::new(HostProgress(sink.clone())), TD_Opaque))
            .into(),
    }
}

pub(crate) fn context_from_ffi(cx: FfiContext<'_>) -> RunContext {
    let base = RunContext::from_parts(cx.seed, cx.threads as usize, cx.step.as_str());
    match cx.progress {
        ROption::RSome(sink) => base.with_progress(Arc::new(RemoteProgress(sink))),
        ROption::RNone => base,
    }
}

/// A progress sink of this side, offered to the other side of the boundary.
/// A panic in it must not cross, so each call is caught; progress is
/// best-effort and a failed update is dropped.
#[derive(Clone)]
struct HostProgress(Arc<dyn Progress>);

impl std::fmt::Debug for HostProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HostProgress")
    }
}

fn quietly(work: impl FnOnce()) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
}

impl FfiProgress for HostProgress {
    fn start(&self, label: RStr<'_>, total: u64, unit: RStr<'_>) {
        quietly(|| self.0.start(label.as_str(), total, unit.as_str()));
    }
    fn advance(&self, delta: u64) {
        quietly(|| self.0.advance(delta));
    }
    fn finish(&self) {
        quietly(|| self.0.finish());
    }
    fn warn(&self, message: RStr<'_>) {
        quietly(|| self.0.warn(message.as_str()));
    }
    fn info(&self, message: RStr<'_>) {
        quietly(|| self.0.info(message.as_str()));
    }
    fn cancelled(&self) -> bool {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.0.cancelled()))
            .unwrap_or(false)
    }
}

/// The other side's progress sink, used as a native one.
struct RemoteProgress(FfiProgressBox);

impl Progress for RemoteProgress {
    fn start(&self, label: &str, total: u64, unit: &str) {
        self.0
            .start(RStr::from_str(label), total, RStr::from_str(unit));
    }
    fn advance(&self, delta: u64) {
        self.0.advance(delta);
    }
    fn finish(&self) {
        self.0.finish();
    }
    fn warn(&self, message: &str) {
        self.0.warn(RStr::from_str(message));
    }
    fn info(&self, message: &str) {
        self.0.info(RStr::from_str(message));
    }
    fn cancelled(&self) -> bool {
        self.0.cancelled()
    }
}

fn scores_to_ffi(scores: Option<&[f64]>) -> ROption<RVec<f64>> {
    scores.map(|s| RVec::from(s.to_vec())).into()
}

pub(crate) fn ranking_to_ffi(r: &NeuronRanking) -> FfiRanking {
    FfiRanking {
        order: RVec::from(r.order().to_vec()),
        scores: scores_to_ffi(r.scores()),
        per_class: r
            .per_class()
            .iter()
            .map(|c| FfiClassRanking {
                class: RString::from(c.class()),
                order: RVec::from(c.order().to_vec()),
                scores: scores_to_ffi(c.scores()),
            })
            .collect(),
        details: RString::from(serde_json::Value::Object(r.details().clone()).to_string()),
    }
}

/// Rebuilds a ranking, checking every invariant (permutation, finite scores).
pub(crate) fn ranking_from_ffi(r: FfiRanking) -> Result<NeuronRanking> {
    let order = r.order.into_vec();
    let ranking = match r.scores.into_option() {
        Some(scores) => NeuronRanking::with_scores(order, scores.into_vec())?,
        None => NeuronRanking::from_order(order)?,
    };
    let per_class = r
        .per_class
        .into_iter()
        .map(|c| {
            let class = c.class.into_string();
            let order = c.order.into_vec();
            match c.scores.into_option() {
                Some(scores) => ClassRanking::with_scores(class, order, scores.into_vec()),
                None => ClassRanking::from_order(class, order),
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let details = match r.details.as_str() {
        "" => serde_json::Map::new(),
        text => match serde_json::from_str(text) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => return Err(Error::input("the ranking details are not a JSON object")),
        },
    };
    Ok(ranking.with_per_class(per_class)?.with_details(details))
}

/// An error for crossing the boundary.
pub(crate) fn error_to_ffi(e: &Error) -> FfiError {
    let mut ffi = FfiError {
        code: code::OTHER,
        message: RString::from(e.to_string()),
        param: RString::new(),
        value: RString::new(),
        expected: RString::new(),
    };
    match e.root() {
        Error::InvalidParam {
            param,
            value,
            expected,
            ..
        } => {
            ffi.code = code::INVALID_PARAM;
            ffi.param = RString::from(param.as_str());
            ffi.value = RString::from(value.as_str());
            ffi.expected = RString::from(expected.as_str());
        }
        Error::InvalidInput(_) | Error::Shape { .. } => ffi.code = code::INVALID_INPUT,
        Error::Io { .. } | Error::Format { .. } => ffi.code = code::IO,
        Error::Panicked { .. } => ffi.code = code::PANICKED,
        _ => {}
    }
    ffi
}

/// An error back from the boundary. `who` names the component and plugin.
pub(crate) fn error_from_ffi(e: FfiError, who: &str, component: &str) -> Error {
    let message = e.message.into_string();
    match e.code {
        code::INVALID_PARAM => Error::InvalidParam {
            component: component.to_string(),
            param: e.param.into_string(),
            value: e.value.into_string(),
            expected: e.expected.into_string(),
        },
        code::PANICKED => Error::Panicked {
            component: who.to_string(),
            message,
        },
        code::INVALID_INPUT => Error::InvalidInput(message).context(who),
        _ => Error::Plugin(format!("{who}: {message}")),
    }
}

/// A panic turned into a boundary error.
pub(crate) fn panic_to_ffi(message: String) -> FfiError {
    FfiError {
        code: code::PANICKED,
        message: RString::from(message),
        param: RString::new(),
        value: RString::new(),
        expected: RString::new(),
    }
}

/// A parameter table sent across the boundary as TOML text; `what` names it
/// in the error (`parameters of \`corr\``).
pub(crate) fn table_from_ffi(text: RStr<'_>, what: &str) -> Result<lca_core::toml::Table> {
    text.as_str()
        .parse()
        .map_err(|e: lca_core::toml::de::Error| {
            Error::input(format!("{what} are not valid TOML: {}", e.message()))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lca_testkit::planted;

    #[test]
    fn dataset_round_trips_without_copying_activations() {
        let d = planted(50, 8, 2, 1, 3);
        let parts = DatasetParts::new(&d);
        let ffi = parts.ffi();
        let back = dataset_from_ffi(ffi).unwrap();
        assert_eq!(back.acts().view(), d.acts().view());
        assert_eq!(back.labels(), d.labels());
        assert_eq!(back.truth(), d.truth());
        assert_eq!(back.splits(), d.splits());
        // Same memory: the plugin sees the host's matrix.
        assert_eq!(
            back.acts().as_slice().unwrap().as_ptr(),
            d.acts().as_slice().unwrap().as_ptr()
        );
        let owned = dataset_from_owned_ffi(dataset_to_owned_ffi(d.clone())).unwrap();
        assert_eq!(owned.acts().view(), d.acts().view());
        assert_eq!(owned.labels(), d.labels());
        // A source's own dataset moves across: the same memory, no copy.
        let alone = planted(50, 8, 2, 1, 4);
        let at = alone.acts().as_slice().unwrap().as_ptr();
        let moved = dataset_from_owned_ffi(dataset_to_owned_ffi(alone)).unwrap();
        assert_eq!(moved.acts().as_slice().unwrap().as_ptr(), at);
    }

    #[test]
    fn rankings_are_revalidated() {
        let r = NeuronRanking::from_scores(vec![0.1, 0.3, 0.2]).unwrap();
        assert_eq!(ranking_from_ffi(ranking_to_ffi(&r)).unwrap(), r);
        let mut bad = ranking_to_ffi(&r);
        bad.order = RVec::from(vec![0, 0, 1]);
        assert!(
            ranking_from_ffi(bad)
                .unwrap_err()
                .to_string()
                .contains("neuron 0 twice")
        );
    }

    #[test]
    fn invalid_param_keeps_its_fields() {
        let e = Error::InvalidParam {
            component: "c".into(),
            param: "k".into(),
            value: "0".into(),
            expected: "≥ 1".into(),
        };
        match error_from_ffi(error_to_ffi(&e), "plugin p", "c") {
            Error::InvalidParam {
                param,
                value,
                expected,
                ..
            } => assert_eq!(
                (param.as_str(), value.as_str(), expected.as_str()),
                ("k", "0", "≥ 1")
            ),
            other => panic!("{other}"),
        }
    }
}
