//! The plugin-author side: wrapping native `lca-core` components into
//! boundary objects, and the root module behind [`crate::export_plugin!`].
//!
//! Every method of every adapter runs inside `guard`, which turns a panic
//! into an error value.

use std::sync::{Arc, OnceLock};

use abi_stable::prefix_type::PrefixTypeTrait;
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{ROption, RResult, RSlice, RStr, RString, RVec};
use lca_core::component::{NamedRanking, ProbeInput};
use lca_core::data::NeuronIndex;
use lca_core::ndarray::ArrayView2;
use lca_core::{
    ActivationSource, Component, ComponentKind, Descriptor, EvalInput, Evaluator, RankInput,
    Ranker, RowSink,
};

use crate::abi::{
    FfiContext, FfiDataset, FfiError, FfiEvaluator, FfiEvaluator_TO, FfiEvaluatorBox, FfiMatrix,
    FfiNamedRanking, FfiOwnedDataset, FfiPluginInfo, FfiProbeBox, FfiProbeInput, FfiRanker,
    FfiRanker_TO, FfiRankerBox, FfiRanking, FfiRowSinkMut, FfiSource, FfiSource_TO, FfiSourceBox,
    FfiTrainedProbeBox, PluginMod, PluginModRef,
};
use crate::convert::{
    context_from_ffi, dataset_from_ffi, dataset_to_owned_ffi, error_from_ffi, matrix_to_ffi,
    outline_to_ffi, ranking_from_ffi, ranking_to_ffi, table_from_ffi,
};
use crate::foreign::{ForeignProbe, ForeignTrainedProbe, Who};
use crate::guard::{guard, install_quiet_panic_hook};
use crate::probe_adapter::probe_to_ffi;

/// What a plugin library exports: its name, version and components.
#[derive(Debug)]
pub struct PluginDefinition {
    /// Plugin name, conventionally the crate name (`lca-plugin-variance`).
    pub name: &'static str,
    /// Plugin version, conventionally `env!("CARGO_PKG_VERSION")`.
    pub version: &'static str,
    /// The components it provides.
    pub components: Vec<Descriptor>,
}

// ---------------------------------------------------------------------------
// Adapters: native component → boundary object.

struct SourceAdapter(Box<dyn ActivationSource>);

impl FfiSource for SourceAdapter {
    fn load(&self, cx: FfiContext<'_>) -> RResult<FfiOwnedDataset, FfiError> {
        guard(|| {
            let cx = context_from_ffi(cx);
            let dataset = cx.install(|| self.0.load(&cx))?;
            Ok(dataset_to_owned_ffi(dataset))
        })
    }

    fn stream(
        &self,
        cx: FfiContext<'_>,
        sink: FfiRowSinkMut<'_>,
    ) -> RResult<ROption<RString>, FfiError> {
        guard(|| {
            let cx = context_from_ffi(cx);
            let mut sink = HostSink(sink);
            let outline = cx.install(|| self.0.stream(&cx, &mut sink))?;
            Ok(match outline {
                Some(outline) => ROption::RSome(outline_to_ffi(&outline)),
                None => ROption::RNone,
            })
        })
    }
}

/// The host's row sink, as the plugin's source sees it.
struct HostSink<'a>(FfiRowSinkMut<'a>);

impl RowSink for HostSink<'_> {
    fn begin(&mut self, rows: usize, neurons: &NeuronIndex) -> lca_core::Result<()> {
        let json = serde_json::to_string(neurons).expect("a neuron index serialises");
        self.0
            .begin(rows as u64, RStr::from_str(&json))
            .into_result()
            .map_err(|e| error_from_ffi(e, "the host", "row sink"))
    }

    fn rows_held(&self) -> usize {
        self.0.rows_held() as usize
    }

    fn block_rows(&self) -> usize {
        self.0.block_rows() as usize
    }

    fn rows_wanted_end(&self) -> usize {
        usize::try_from(self.0.rows_wanted_end()).unwrap_or(usize::MAX)
    }

    fn push(&mut self, first: usize, block: ArrayView2<'_, f32>) -> lca_core::Result<()> {
        let (data, rows, cols) = matrix_to_ffi(block);
        let matrix = FfiMatrix {
            data: RSlice::from_slice(&data),
            rows: rows as u64,
            cols: cols as u64,
        };
        self.0
            .push(first as u64, matrix)
            .into_result()
            .map_err(|e| error_from_ffi(e, "the host", "row sink"))
    }
}

struct RankerAdapter(Box<dyn Ranker>);

impl FfiRanker for RankerAdapter {
    fn rank(
        &self,
        data: FfiDataset<'_>,
        probe: ROption<FfiTrainedProbeBox>,
        rankings: RVec<FfiNamedRanking>,
        cx: FfiContext<'_>,
    ) -> RResult<FfiRanking, FfiError> {
        guard(|| {
            let cx = context_from_ffi(cx);
            let data = dataset_from_ffi(data)?;
            let owned = rankings_from_ffi(rankings)?;
            let named = owned
                .iter()
                .map(|(id, ranking)| NamedRanking { id, ranking })
                .collect();
            let mut input = RankInput::new(&data).with_rankings(named);
            if let Some(probe) = probe.into_option() {
                let probe = ForeignTrainedProbe::new(probe, Who::host("trained probe"))?;
                input = input.with_probe(Arc::new(probe));
            }
            let ranking = cx.install(|| self.0.rank(&input, &cx))?;
            Ok(ranking_to_ffi(&ranking))
        })
    }
}

struct EvaluatorAdapter(Box<dyn Evaluator>);

impl FfiEvaluator for EvaluatorAdapter {
    fn evaluate(
        &self,
        data: FfiDataset<'_>,
        rankings: RVec<FfiNamedRanking>,
        probes: RVec<FfiProbeInput>,
        cx: FfiContext<'_>,
    ) -> RResult<RString, FfiError> {
        guard(|| {
            let cx = context_from_ffi(cx);
            let data = dataset_from_ffi(data)?;
            let owned = rankings_from_ffi(rankings)?;
            let named = owned
                .iter()
                .map(|(id, ranking)| NamedRanking { id, ranking })
                .collect();
            let mut probe_inputs = Vec::with_capacity(probes.len());
            for p in probes {
                let id = p.id.into_string();
                let trained =
                    ForeignTrainedProbe::new(p.trained, Who::host(&format!("probe `{id}`")))?;
                probe_inputs.push(ProbeInput {
                    spec: Arc::new(ForeignProbe::new(
                        p.spec,
                        Who::host(&format!("probe `{id}`")),
                    )),
                    trained: Arc::new(trained),
                    id,
                });
            }
            let input = EvalInput::new(&data)
                .with_rankings(named)
                .with_probes(probe_inputs);
            let evaluation = cx.install(|| self.0.evaluate(&input, &cx))?;
            // JSON has no NaN: catch it here, where the message can say so.
            evaluation
                .validate()
                .map_err(|e| lca_core::Error::Plugin(format!("its evaluation is invalid: {e}")))?;
            serde_json::to_string(&evaluation)
                .map(RString::from)
                .map_err(|e| {
                    lca_core::Error::input(format!("the evaluation cannot be written as JSON: {e}"))
                })
        })
    }
}

fn rankings_from_ffi(
    rankings: RVec<FfiNamedRanking>,
) -> lca_core::Result<Vec<(String, lca_core::NeuronRanking)>> {
    rankings
        .into_iter()
        .map(|r| Ok((r.id.into_string(), ranking_from_ffi(r.ranking)?)))
        .collect()
}

/// Wraps a source for the boundary.
pub(crate) fn source_to_ffi(source: Box<dyn ActivationSource>) -> FfiSourceBox {
    FfiSource_TO::from_value(SourceAdapter(source), TD_Opaque)
}

/// Wraps a ranker for the boundary.
pub(crate) fn ranker_to_ffi(ranker: Box<dyn Ranker>) -> FfiRankerBox {
    FfiRanker_TO::from_value(RankerAdapter(ranker), TD_Opaque)
}

/// Wraps an evaluator for the boundary.
pub(crate) fn evaluator_to_ffi(evaluator: Box<dyn Evaluator>) -> FfiEvaluatorBox {
    FfiEvaluator_TO::from_value(EvaluatorAdapter(evaluator), TD_Opaque)
}

// ---------------------------------------------------------------------------
// The root module of a plugin library.

static DEFINITION: OnceLock<PluginDefinition> = OnceLock::new();

fn definition() -> &'static PluginDefinition {
    DEFINITION
        .get()
        .expect("the root module is initialised before any call")
}

/// Builds the root module. Called once, by the code [`crate::export_plugin!`]
/// generates, when the host loads the library.
#[doc(hidden)]
pub fn root_module(define: fn() -> PluginDefinition) -> PluginModRef {
    install_quiet_panic_hook();
    DEFINITION.get_or_init(define);
    PluginMod {
        info,
        new_source,
        new_probe,
        new_ranker,
        new_evaluator,
        applied_params,
    }
    .leak_into_prefix()
}

extern "C" fn info() -> FfiPluginInfo {
    let described = guard(|| {
        let def = definition();
        let infos: Vec<_> = def.components.iter().map(|d| &d.info).collect();
        Ok(FfiPluginInfo {
            name: def.name.into(),
            version: def.version.into(),
            components: serde_json::to_string(&infos)
                .expect("component infos serialise")
                .into(),
        })
    });
    // A panic while describing leaves an empty component list and the panic
    // text as the version, which the loader reports.
    described.unwrap_or_else(|e| FfiPluginInfo {
        name: RString::new(),
        version: e.message,
        components: "[]".into(),
    })
}

/// The descriptor of component `name` (of `kind`, when given) and its
/// parameters read from TOML text.
fn find(
    kind: Option<ComponentKind>,
    name: &str,
    params: RStr<'_>,
) -> lca_core::Result<(&'static Descriptor, lca_core::toml::Table)> {
    let def = definition();
    let descriptor = def
        .components
        .iter()
        .find(|d| d.info.name == name && kind.is_none_or(|k| d.info.kind == k))
        .ok_or_else(|| {
            let what = kind.map_or("component".to_string(), |k| k.to_string());
            lca_core::Error::Plugin(format!("plugin {} has no {what} named `{name}`", def.name))
        })?;
    let table = table_from_ffi(params, &format!("parameters of `{name}`"))?;
    Ok((descriptor, table))
}

fn build(kind: ComponentKind, name: RStr<'_>, params: RStr<'_>) -> lca_core::Result<Component> {
    let def = definition();
    let name = name.as_str();
    let (descriptor, table) = find(Some(kind), name, params)?;
    let component = (descriptor.build)(&table)?;
    if component.kind() != kind {
        return Err(lca_core::Error::Plugin(format!(
            "plugin {}: `{name}` is declared a {kind} but built a {}",
            def.name,
            component.kind()
        )));
    }
    Ok(component)
}

extern "C" fn new_source(name: RStr<'_>, params: RStr<'_>) -> RResult<FfiSourceBox, FfiError> {
    guard(|| match build(ComponentKind::Source, name, params)? {
        Component::Source(s) => Ok(source_to_ffi(s)),
        _ => unreachable!("kind checked in build"),
    })
}

extern "C" fn new_probe(name: RStr<'_>, params: RStr<'_>) -> RResult<FfiProbeBox, FfiError> {
    guard(|| match build(ComponentKind::Probe, name, params)? {
        Component::Probe(p) => Ok(probe_to_ffi(p)),
        _ => unreachable!("kind checked in build"),
    })
}

extern "C" fn new_ranker(name: RStr<'_>, params: RStr<'_>) -> RResult<FfiRankerBox, FfiError> {
    guard(|| match build(ComponentKind::Ranker, name, params)? {
        Component::Ranker(r) => Ok(ranker_to_ffi(r)),
        _ => unreachable!("kind checked in build"),
    })
}

extern "C" fn new_evaluator(
    name: RStr<'_>,
    params: RStr<'_>,
) -> RResult<FfiEvaluatorBox, FfiError> {
    guard(|| match build(ComponentKind::Evaluator, name, params)? {
        Component::Evaluator(e) => Ok(evaluator_to_ffi(e)),
        _ => unreachable!("kind checked in build"),
    })
}

extern "C" fn applied_params(name: RStr<'_>, params: RStr<'_>) -> RResult<RString, FfiError> {
    guard(|| {
        let (descriptor, table) = find(None, name.as_str(), params)?;
        let applied = (descriptor.applied)(&table)?;
        lca_core::toml::to_string(&applied)
            .map(RString::from)
            .map_err(|e| {
                lca_core::Error::input(format!("applied parameters cannot be written as TOML: {e}"))
            })
    })
}

/// Exports a plugin library's components. Call it once, at the top level of
/// the plugin crate's `lib.rs`; the crate must be built as a `cdylib`.
///
/// ```text
/// lca_plugins::export_plugin! {
///     name: "lca-plugin-variance",
///     version: env!("CARGO_PKG_VERSION"),
///     components: [variance::descriptor()],
/// }
/// ```
///
/// It generates the library's entry point; the plugin author writes no
/// `unsafe` and no `extern` code.
#[macro_export]
macro_rules! export_plugin {
    (name: $name:expr, version: $version:expr, components: [$($component:expr),* $(,)?] $(,)?) => {
        #[doc(hidden)]
        struct __LcaPlugin;

        impl $crate::__private::Definition for __LcaPlugin {
            fn define() -> $crate::export::PluginDefinition {
                $crate::export::PluginDefinition { name: $name, version: $version, components: vec![$($component),*] }
            }
        }

        // The symbol abi_stable's loader looks up (checked against
        // `abi_stable::library::ROOT_MODULE_LOADER_NAME` by a unit test).
        // Naming an exported symbol is the one unsafe act left here.
        #[doc(hidden)]
        #[unsafe(export_name = "_1as_0lib_1header_0root_bmodule_bloader")]
        pub static __LCA_PLUGIN_HEADER: $crate::__private::LibHeader =
            $crate::__private::header::<__LcaPlugin>();
    };
}
