//! What Python calls: a whole recipe, or one component (ranker, probe,
//! evaluator) on a dataset of numpy arrays. A component called here gets the
//! same checks and the same seed as the step `<kind>.<name>` of a recipe, so
//! `lca.rank("random", data, seed=s)` and a recipe with `[ranker.random]`
//! and seed `s` give the same ranking.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lca_core::component::{
    Component, EvalInput, NamedRanking, Probe, ProbeInput, RankInput, SharedProbe,
};
use lca_core::data::Split;
use lca_core::recipe;
use lca_core::run::{self, Observer, ProbeArrays, Results};
use lca_core::{ComponentKind, NeuronRanking, RunContext, io};
use numpy::{IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::arrays::ArrayData;
use crate::components::{PluginPlaces, components};
use crate::errors::{any_error, core_error, message};
use crate::interrupt::{Sink, emit_warnings, run_interruptible};

/// Stops a run before its next step once Ctrl-C was pressed.
struct StopOnInterrupt(Arc<Sink>);

impl Observer for StopOnInterrupt {
    fn should_stop(&mut self) -> Option<String> {
        self.0
            .stop_requested()
            .then(|| "interrupted (Ctrl-C)".to_string())
    }
}

/// The run context of a call: the seed and threads asked, and a sink that
/// hears Ctrl-C.
fn context(seed: Option<u64>, threads: Option<usize>, sink: &Arc<Sink>) -> RunContext {
    RunContext::new(seed.unwrap_or(0), threads.unwrap_or(0)).with_progress(sink.clone())
}

/// A component's parameters, given by Python as a JSON object.
fn parameters(json: &str) -> PyResult<toml::Table> {
    serde_json::from_str::<toml::Table>(json).map_err(|e| {
        message(format!(
            "the parameters cannot be used as a recipe table ({e}); give numbers, strings, \
             booleans, lists and dicts, and leave out None"
        ))
    })
}

/// A component of `kind` built from its name and parameters.
fn build(
    py: Python<'_>,
    places: &PluginPlaces,
    kind: ComponentKind,
    name: &str,
    params_json: &str,
) -> PyResult<Component> {
    let components = components(py, places)?;
    let registered = components.registry.get(kind, name).map_err(core_error)?;
    registered
        .build(&parameters(params_json)?)
        .map_err(core_error)
}

/// A finished run: its results, and the reports made from them on demand.
#[pyclass(module = "lca._lca", frozen)]
pub(crate) struct RunOutput {
    results: Results,
}

#[pymethods]
impl RunOutput {
    /// `results.json`'s text.
    fn json(&self) -> PyResult<String> {
        serde_json::to_string(&self.results).map_err(|e| message(e.to_string()))
    }

    /// The Markdown report.
    fn markdown(&self) -> String {
        lca_cli::report::markdown(&self.results)
    }

    /// The HTML report, one self-contained page.
    fn html(&self) -> String {
        lca_cli::html::html(&self.results)
    }

    /// Each probe's arrays: weights, bias, and per split the predictions and
    /// class probabilities.
    fn probe_arrays<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let all = PyDict::new(py);
        for (id, arrays) in &self.results.probe_arrays {
            all.set_item(id, arrays_dict(py, arrays)?)?;
        }
        Ok(all)
    }

    /// Writes `results.json`, both reports and the probes' arrays into
    /// `out`, as `lca run` does.
    fn write(&self, out: PathBuf) -> PyResult<Vec<String>> {
        io::ensure_writable_dir(&out).map_err(core_error)?;
        let paths = lca_cli::outputs::write_outputs(&self.results, &out).map_err(any_error)?;
        Ok(paths.iter().map(|p| p.display().to_string()).collect())
    }
}

fn arrays_dict<'py>(py: Python<'py>, arrays: &ProbeArrays) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    if let Some(w) = &arrays.weights {
        dict.set_item("weights", w.clone().into_pyarray(py))?;
    }
    if let Some(b) = &arrays.bias {
        dict.set_item("bias", b.clone().into_pyarray(py))?;
    }
    for (split, predicted) in &arrays.predictions {
        dict.set_item(
            format!("predictions_{split}"),
            predicted.clone().into_pyarray(py),
        )?;
    }
    for (split, proba) in &arrays.probabilities {
        dict.set_item(
            format!("probabilities_{split}"),
            proba.clone().into_pyarray(py),
        )?;
    }
    Ok(dict)
}

/// Runs a recipe: from its file (`text` None) or from text, with `path`
/// anchoring its relative paths. Writes nothing; `RunOutput.write` does.
#[pyfunction]
#[pyo3(signature = (path, text=None, threads=None, seed=None, plugin_dirs=Vec::new(), plugin_files=Vec::new()))]
pub(crate) fn run_recipe(
    py: Python<'_>,
    path: PathBuf,
    text: Option<String>,
    threads: Option<usize>,
    seed: Option<u64>,
    plugin_dirs: Vec<PathBuf>,
    plugin_files: Vec<PathBuf>,
) -> PyResult<RunOutput> {
    let plan = compile_recipe(py, &path, text, plugin_dirs, plugin_files)?;
    let sink = Sink::new();
    let cx = RunContext::new(
        seed.unwrap_or(plan.run.seed),
        threads.unwrap_or(plan.run.threads),
    )
    .with_progress(sink.clone());
    let results = run_interruptible(py, &sink, || {
        run::execute(&plan, &cx, &mut StopOnInterrupt(sink.clone()))
    })?;
    emit_warnings(py, &sink)?;
    let results = results.map_err(core_error)?;
    if let Some(stopped) = &results.stopped {
        // Only a stop request ends a run early, and it raised above.
        return Err(message(format!(
            "the run stopped early: {}",
            stopped.reason
        )));
    }
    Ok(RunOutput { results })
}

/// The recipe in `path`, or `text` read as if it were that file, compiled
/// with the components of the plugin places given.
pub(crate) fn compile_recipe(
    py: Python<'_>,
    path: &Path,
    text: Option<String>,
    plugin_dirs: Vec<PathBuf>,
    plugin_files: Vec<PathBuf>,
) -> PyResult<recipe::Plan> {
    let places = PluginPlaces::new(plugin_dirs, plugin_files);
    let components = components(py, &places)?;
    match text {
        Some(text) => recipe::compile(path, &text, &components.registry),
        None => recipe::compile_file(path, &components.registry),
    }
    .map_err(core_error)
}

/// The rankings given by Python as `(id, ranking JSON)`, checked.
fn input_rankings(rankings: Vec<(String, String)>) -> PyResult<Vec<(String, NeuronRanking)>> {
    rankings
        .into_iter()
        .map(|(id, json)| {
            serde_json::from_str::<NeuronRanking>(&json)
                .map(|r| (id.clone(), r))
                .map_err(|e| message(format!("ranking `{id}` is not a ranking: {e}")))
        })
        .collect()
}

fn named<'r>(
    rankings: &'r [(String, NeuronRanking)],
    neurons: usize,
) -> PyResult<Vec<NamedRanking<'r>>> {
    rankings
        .iter()
        .map(|(id, ranking)| {
            if ranking.len() != neurons {
                return Err(message(format!(
                    "ranking `{id}` covers {} neurons but the data has {neurons}; pass rankings \
                     of this data",
                    ranking.len()
                )));
            }
            Ok(NamedRanking { id, ranking })
        })
        .collect()
}

/// Ranks the neurons of `data` with the ranker `name`; returns the ranking
/// as JSON (the form `results.json` keeps).
#[pyfunction]
#[pyo3(signature = (name, params, data, probe=None, rankings=Vec::new(), threads=None, seed=None, plugin_dirs=Vec::new(), plugin_files=Vec::new()))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn rank(
    py: Python<'_>,
    name: &str,
    params: &str,
    data: &ArrayData,
    probe: Option<PyRef<'_, FittedProbe>>,
    rankings: Vec<(String, String)>,
    threads: Option<usize>,
    seed: Option<u64>,
    plugin_dirs: Vec<PathBuf>,
    plugin_files: Vec<PathBuf>,
) -> PyResult<String> {
    let places = PluginPlaces::new(plugin_dirs, plugin_files);
    let Component::Ranker(ranker) = build(py, &places, ComponentKind::Ranker, name, params)? else {
        return Err(message(format!("`{name}` is not a ranker")));
    };
    let inputs = input_rankings(rankings)?;
    let trained = probe.map(|p| p.trained.clone());
    let sink = Sink::new();
    let cx = context(seed, threads, &sink).for_step(&format!("ranker.{name}"));
    let ranking = data.with_dataset(py, |dataset| {
        let named = named(&inputs, dataset.n_neurons())?;
        let outcome = run_interruptible(py, &sink, || {
            let mut input = RankInput::new(dataset).with_rankings(named);
            if let Some(trained) = trained {
                input = input.with_probe(trained);
            }
            let ranking = ranker.rank(&input, &cx)?;
            if ranking.len() != dataset.n_neurons() {
                return Err(lca_core::Error::InvalidOutput {
                    component: format!("ranker `{name}`"),
                    message: format!(
                        "the ranking covers {} neurons but the data has {}",
                        ranking.len(),
                        dataset.n_neurons()
                    ),
                });
            }
            // As in a run: a constant neuron carries no information.
            Ok(ranking.with_uninformative_last(&dataset.constant_train_neurons()))
        })?;
        outcome.map_err(core_error)
    });
    emit_warnings(py, &sink)?;
    serde_json::to_string(&ranking?).map_err(|e| message(e.to_string()))
}

/// A probe trained from Python: its specification (for evaluators that
/// retrain it) and the trained probe.
#[pyclass(module = "lca._lca", frozen)]
pub(crate) struct FittedProbe {
    name: String,
    spec: Arc<dyn Probe>,
    trained: SharedProbe,
    accuracy: BTreeMap<Split, f64>,
    arrays: ProbeArrays,
}

#[pymethods]
impl FittedProbe {
    /// The probe's component name.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// The class names, in the order of the weights' rows.
    #[getter]
    fn classes(&self) -> Vec<String> {
        self.trained.classes().names().to_vec()
    }

    /// Accuracy on each split that has rows.
    #[getter]
    fn accuracy(&self) -> BTreeMap<String, f64> {
        self.accuracy
            .iter()
            .map(|(split, a)| (split.to_string(), *a))
            .collect()
    }

    /// Training diagnostics, as JSON.
    fn details_json(&self) -> String {
        self.trained.details().to_string()
    }

    /// Weights, bias, and per split the predictions and probabilities.
    fn arrays<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        arrays_dict(py, &self.arrays)
    }

    /// Class probabilities of each row of `x` (C-ordered float32).
    fn predict_proba<'py>(
        &self,
        py: Python<'py>,
        x: Bound<'py, PyArray2<f32>>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        if x.shape()[1] != self.trained.n_features() {
            return Err(message(format!(
                "the probe was trained on {} neurons but the array has {} columns",
                self.trained.n_features(),
                x.shape()[1]
            )));
        }
        let view = x.readonly();
        let values = view.as_array();
        let trained = &self.trained;
        let proba = py
            .detach(|| trained.predict_proba(values))
            .map_err(core_error)?;
        Ok(proba.into_pyarray(py))
    }
}

/// Trains the probe `name` on `data`'s training rows and scores it on
/// every split.
#[pyfunction]
#[pyo3(signature = (name, params, data, threads=None, seed=None, plugin_dirs=Vec::new(), plugin_files=Vec::new()))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn fit_probe(
    py: Python<'_>,
    name: &str,
    params: &str,
    data: &ArrayData,
    threads: Option<usize>,
    seed: Option<u64>,
    plugin_dirs: Vec<PathBuf>,
    plugin_files: Vec<PathBuf>,
) -> PyResult<FittedProbe> {
    let places = PluginPlaces::new(plugin_dirs, plugin_files);
    let Component::Probe(spec) = build(py, &places, ComponentKind::Probe, name, params)? else {
        return Err(message(format!("`{name}` is not a probe")));
    };
    let sink = Sink::new();
    let cx = context(seed, threads, &sink).for_step(&format!("probe.{name}"));
    let component = format!("probe `{name}`");
    let fitted = data.with_dataset(py, |dataset| {
        let outcome = run_interruptible(py, &sink, || {
            let trained: SharedProbe = Arc::from(spec.fit(dataset, &cx)?);
            run::check_probe(trained.as_ref(), dataset).map_err(|message| {
                lca_core::Error::InvalidOutput {
                    component: component.clone(),
                    message,
                }
            })?;
            let (accuracy, arrays) = run::probe_outputs(trained.as_ref(), dataset, &component)?;
            Ok((trained, accuracy, arrays))
        })?;
        outcome.map_err(core_error)
    });
    emit_warnings(py, &sink)?;
    let (trained, accuracy, arrays) = fitted?;
    Ok(FittedProbe {
        name: name.to_string(),
        spec,
        trained,
        accuracy,
        arrays,
    })
}

/// Runs the evaluator `name` on `data` with the rankings `(id, JSON)` and
/// probes `(id, probe)` wired to it; returns the evaluation as JSON.
#[pyfunction]
#[pyo3(signature = (name, params, data, rankings=Vec::new(), probes=Vec::new(), threads=None, seed=None, plugin_dirs=Vec::new(), plugin_files=Vec::new()))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn evaluate(
    py: Python<'_>,
    name: &str,
    params: &str,
    data: &ArrayData,
    rankings: Vec<(String, String)>,
    probes: Vec<(String, PyRef<'_, FittedProbe>)>,
    threads: Option<usize>,
    seed: Option<u64>,
    plugin_dirs: Vec<PathBuf>,
    plugin_files: Vec<PathBuf>,
) -> PyResult<String> {
    let places = PluginPlaces::new(plugin_dirs, plugin_files);
    let Component::Evaluator(evaluator) =
        build(py, &places, ComponentKind::Evaluator, name, params)?
    else {
        return Err(message(format!("`{name}` is not an evaluator")));
    };
    let inputs = input_rankings(rankings)?;
    let probe_inputs: Vec<ProbeInput> = probes
        .iter()
        .map(|(id, p)| ProbeInput {
            id: id.clone(),
            spec: p.spec.clone(),
            trained: p.trained.clone(),
        })
        .collect();
    let sink = Sink::new();
    let cx = context(seed, threads, &sink).for_step(&format!("evaluator.{name}"));
    let evaluation = data.with_dataset(py, |dataset| {
        let named = named(&inputs, dataset.n_neurons())?;
        let outcome = run_interruptible(py, &sink, || {
            let input = EvalInput::new(dataset)
                .with_rankings(named)
                .with_probes(probe_inputs);
            let evaluation = evaluator.evaluate(&input, &cx)?;
            evaluation
                .validate()
                .map_err(|e| lca_core::Error::InvalidOutput {
                    component: format!("evaluator `{name}`"),
                    message: e.to_string(),
                })?;
            Ok(evaluation)
        })?;
        outcome.map_err(core_error)
    });
    emit_warnings(py, &sink)?;
    serde_json::to_string(&evaluation?).map_err(|e| message(e.to_string()))
}

/// Every component with its kind, name, summary, origin, parameters and
/// example, as JSON.
#[pyfunction]
#[pyo3(signature = (plugin_dirs=Vec::new(), plugin_files=Vec::new()))]
pub(crate) fn component_list(
    py: Python<'_>,
    plugin_dirs: Vec<PathBuf>,
    plugin_files: Vec<PathBuf>,
) -> PyResult<String> {
    let places = PluginPlaces::new(plugin_dirs, plugin_files);
    let components = components(py, &places)?;
    let list: Vec<serde_json::Value> = components
        .registry
        .iter()
        .map(|r| serde_json::json!({ "info": r.info, "origin": r.origin }))
        .collect();
    serde_json::to_string(&list).map_err(|e| message(e.to_string()))
}

/// A recipe given as a JSON object, as TOML text in the same table order.
#[pyfunction]
pub(crate) fn recipe_text(json: &str) -> PyResult<String> {
    let table = parameters(json)?;
    toml::to_string(&table)
        .map_err(|e| message(format!("the recipe cannot be written as TOML: {e}")))
}

/// Loads the source `name` built from `params` (JSON), as the recipe step
/// `source.<name>` would with the seed `seed`: its activations as a numpy
/// array (rows in train, dev, test order; the one copy the dataset then
/// borrows), the dataset around them, and its details as JSON.
#[pyfunction]
#[pyo3(signature = (name, params, seed=None, threads=None, plugin_dirs=Vec::new(), plugin_files=Vec::new()))]
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub(crate) fn load_source<'py>(
    py: Python<'py>,
    name: &str,
    params: &str,
    seed: Option<u64>,
    threads: Option<usize>,
    plugin_dirs: Vec<PathBuf>,
    plugin_files: Vec<PathBuf>,
) -> PyResult<(Bound<'py, PyArray2<f32>>, ArrayData, String)> {
    let places = PluginPlaces::new(plugin_dirs, plugin_files);
    let Component::Source(source) = build(py, &places, ComponentKind::Source, name, params)? else {
        return Err(message(format!("`{name}` is not a source")));
    };
    let sink = Sink::new();
    let cx = context(seed, threads, &sink).for_step(&format!("source.{name}"));
    let loaded = run_interruptible(py, &sink, || cx.install(|| source.load(&cx)))?;
    emit_warnings(py, &sink)?;
    let dataset = loaded.map_err(core_error)?;
    dataset.check_finite().map_err(core_error)?;
    let details = serde_json::to_string(dataset.details()).map_err(|e| message(e.to_string()))?;
    let outline = dataset.outline();
    let (rows, cols) = (dataset.n_rows(), dataset.n_neurons());
    let values = dataset.into_acts().into_row_major();
    let x = PyArray1::from_vec(py, values).reshape([rows, cols])?;
    let data = ArrayData::from_outline(&x, outline)?;
    Ok((x, data, details))
}
