//! Native probes as boundary objects. Kept apart from the other adapters
//! because both directions of the bridge need them: a plugin returns its
//! probes through them, and the host passes its probes to plugin rankers and
//! evaluators through them.

use std::sync::Arc;

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{ROption, RResult, RSlice, RStr, RString, RVec};
use lca_core::ndarray::Array1;
use lca_core::{Probe, SharedProbe, WarmStart};
use serde_json::json;

use crate::abi::{
    FfiContext, FfiDataset, FfiError, FfiMatrix, FfiOwnedMatrix, FfiProbe, FfiProbe_TO,
    FfiProbeBox, FfiTrainedProbe, FfiTrainedProbe_TO, FfiTrainedProbeBox,
};
use crate::convert::{
    context_from_ffi, dataset_from_ffi, matrix_from_ffi, owned_matrix_to_ffi, table_from_ffi,
};
use crate::guard::guard;

/// A native probe specification, callable from the other side.
struct ProbeAdapter(Arc<dyn Probe>);

impl FfiProbe for ProbeAdapter {
    fn fit(
        &self,
        data: FfiDataset<'_>,
        cx: FfiContext<'_>,
    ) -> RResult<FfiTrainedProbeBox, FfiError> {
        guard(|| {
            let cx = context_from_ffi(cx);
            let data = dataset_from_ffi(data)?;
            let trained = cx.install(|| self.0.fit(&data, &cx))?;
            Ok(trained_probe_to_ffi(Arc::from(trained)))
        })
    }

    fn fit_from(
        &self,
        data: FfiDataset<'_>,
        weights: FfiMatrix<'_>,
        bias: RSlice<'_, f32>,
        cx: FfiContext<'_>,
    ) -> RResult<FfiTrainedProbeBox, FfiError> {
        guard(|| {
            let cx = context_from_ffi(cx);
            let data = dataset_from_ffi(data)?;
            let start = WarmStart {
                weights: matrix_from_ffi(weights)?.to_owned(),
                bias: Array1::from(bias.as_slice().to_vec()),
            };
            let trained = cx.install(|| self.0.fit_from(&data, &start, &cx))?;
            Ok(trained_probe_to_ffi(Arc::from(trained)))
        })
    }

    fn reconfigure(&self, changes: RStr<'_>) -> RResult<FfiProbeBox, FfiError> {
        guard(|| {
            let changes = table_from_ffi(changes, "parameter changes")?;
            Ok(probe_to_ffi(self.0.reconfigure(&changes)?))
        })
    }

    fn restore(&self, state: RSlice<'_, u8>) -> RResult<FfiTrainedProbeBox, FfiError> {
        guard(|| {
            let trained = self.0.restore(state.as_slice())?;
            Ok(trained_probe_to_ffi(Arc::from(trained)))
        })
    }
}

struct TrainedProbeAdapter(SharedProbe);

impl FfiTrainedProbe for TrainedProbeAdapter {
    fn describe(&self) -> RString {
        // Describing cannot fail; a panic yields an empty description, which
        // the host rejects with a clear message.
        guard(|| {
            let p = &self.0;
            Ok(json!({ "classes": p.classes(), "n_features": p.n_features(), "details": p.details() }).to_string().into())
        })
        .unwrap_or_else(|_| RString::new())
    }

    fn predict_proba(&self, x: FfiMatrix<'_>) -> RResult<FfiOwnedMatrix, FfiError> {
        guard(|| {
            let x = matrix_from_ffi(x)?;
            Ok(owned_matrix_to_ffi(self.0.predict_proba(x)?))
        })
    }

    fn weights(&self) -> ROption<FfiOwnedMatrix> {
        guard(|| Ok(self.0.weights().map(|w| owned_matrix_to_ffi(w.to_owned()))))
            .unwrap_or_else(|_| None)
            .into()
    }

    fn bias(&self) -> ROption<RVec<f32>> {
        guard(|| Ok(self.0.bias().map(|b| RVec::from(b.to_vec()))))
            .unwrap_or_else(|_| None)
            .into()
    }

    fn state(&self) -> ROption<RVec<u8>> {
        // A probe that panics while storing itself is simply not stored.
        guard(|| Ok(self.0.state().map(RVec::from)))
            .unwrap_or_else(|_| None)
            .into()
    }
}

pub(crate) fn probe_to_ffi(probe: Arc<dyn Probe>) -> FfiProbeBox {
    FfiProbe_TO::from_value(ProbeAdapter(probe), TD_Opaque)
}

/// Wraps a trained probe for the boundary.
pub(crate) fn trained_probe_to_ffi(probe: SharedProbe) -> FfiTrainedProbeBox {
    FfiTrainedProbe_TO::from_value(TrainedProbeAdapter(probe), TD_Opaque)
}
