//! Running a compiled recipe and collecting its results.

use std::collections::{BTreeMap, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::checkpoint::Checkpoints;
use crate::component::{
    Component, EvalInput, NamedRanking, Probe, ProbeInput, RankInput, SharedProbe,
};
use crate::context::RunContext;
use crate::data::{Dataset, DatasetSummary, Evaluation, NeuronId, NeuronRanking, Split};
use crate::error::{Error, Result};
use crate::recipe::{Plan, Step};
use crate::registry::{ComponentKind, Origin};

/// Version tag of the results format.
pub const RESULTS_FORMAT: &str = "lca-results/1";

/// Hears about progress while a plan runs.
pub trait Observer {
    /// A step is about to run (`index` counts from 0).
    fn started(&mut self, _step: &Step, _index: usize, _total: usize) {}
    /// A step finished successfully.
    fn finished(&mut self, _step: &Step, _seconds: f64) {}
    /// A step's result was taken from the checkpoint of an earlier run
    /// instead of being computed again.
    fn reused(&mut self, step: &Step, seconds: f64) {
        self.finished(step, seconds);
    }
    /// Asked before each step: a reason to stop the run here (a time limit,
    /// an interrupt), or `None` to go on.
    fn should_stop(&mut self) -> Option<String> {
        None
    }
}

/// An observer that ignores everything.
#[derive(Debug, Default)]
pub struct Silent;

impl Observer for Silent {}

/// Everything a run produced. Everything except [`Provenance`] depends only
/// on the recipe, its inputs and the seed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// [`RESULTS_FORMAT`].
    pub format: String,
    /// The recipe that was run.
    pub recipe: RecipeRecord,
    /// The run seed.
    pub seed: u64,
    /// Every step with its parameters and wiring, in execution order.
    pub steps: Vec<StepRecord>,
    /// What each source produced.
    pub sources: BTreeMap<String, DatasetSummary>,
    /// Trained probes.
    pub probes: BTreeMap<String, ProbeRecord>,
    /// Rankings.
    pub rankings: BTreeMap<String, RankingRecord>,
    /// Evaluations.
    pub evaluations: BTreeMap<String, EvaluationRecord>,
    /// Versions, origins and timings: the parts that differ between machines.
    pub provenance: Provenance,
    /// Probe arrays to write next to the results (not part of the JSON).
    #[serde(skip)]
    pub probe_arrays: BTreeMap<String, ProbeArrays>,
    /// Set when the run was stopped before its last step: these results
    /// are partial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<Stopped>,
}

/// Why and where a run stopped early.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stopped {
    /// The reason, such as the time limit running out.
    pub reason: String,
    /// Steps that finished, in order.
    pub finished: Vec<String>,
    /// Steps that did not run.
    pub cut: Vec<String>,
}

/// The recipe as run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecipeRecord {
    /// `[run] name`, or the file stem.
    pub name: String,
    /// `[run] description`.
    pub description: Option<String>,
    /// Full text.
    pub text: String,
}

/// One step of the plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// `kind.id`.
    pub key: String,
    /// Kind.
    pub kind: ComponentKind,
    /// Recipe id.
    pub id: String,
    /// Component name.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Parameters as given.
    pub params: serde_json::Value,
    /// Source read (empty for sources).
    pub source: String,
    /// Probe read.
    pub probe: Option<String>,
    /// Rankings read.
    pub rankings: Vec<String>,
    /// Probes read.
    pub probes: Vec<String>,
}

/// A trained probe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeRecord {
    /// Component name.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Source it was trained on.
    pub source: String,
    /// Accuracy per split (splits with no rows are omitted).
    pub accuracy: BTreeMap<Split, f64>,
    /// Training diagnostics reported by the probe.
    pub details: serde_json::Value,
    /// Weight matrix shape (classes, neurons), for linear probes.
    #[serde(default)]
    pub weights_shape: Option<(usize, usize)>,
    /// Weights that are exactly zero, for linear probes.
    #[serde(default)]
    pub zero_weights: Option<usize>,
    /// The `.npz` file (relative to the results) holding the weights, bias,
    /// and per-split predictions and probabilities.
    #[serde(default)]
    pub arrays: Option<String>,
}

/// The large arrays of a trained probe, written next to the results.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProbeArrays {
    /// Classes × neurons.
    pub weights: Option<ndarray::Array2<f32>>,
    /// Per class.
    pub bias: Option<ndarray::Array1<f32>>,
    /// Predicted class per row, per split.
    pub predictions: Vec<(Split, Vec<u32>)>,
    /// Class probabilities per row, per split.
    pub probabilities: Vec<(Split, ndarray::Array2<f32>)>,
}

impl ProbeArrays {
    /// Writes the arrays as an `.npz` archive, atomically: `weights`, `bias`,
    /// `predictions_<split>` and `probabilities_<split>`. Creates the folder.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn write_npz(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
        }
        // Built in memory and written in one piece, so that a full disk is
        // one clear error rather than a failure inside the archive writer.
        let mut npz = ndarray_npy::NpzWriter::new(std::io::Cursor::new(Vec::new()));
        let archive_error = |e: &dyn std::fmt::Display| {
            Error::format(path, None, format!("could not build the archive: {e}"))
        };
        if let Some(w) = &self.weights {
            npz.add_array("weights", w).map_err(|e| archive_error(&e))?;
        }
        if let Some(b) = &self.bias {
            npz.add_array("bias", b).map_err(|e| archive_error(&e))?;
        }
        for (split, predicted) in &self.predictions {
            npz.add_array(
                format!("predictions_{split}"),
                &ndarray::Array1::from(predicted.clone()),
            )
            .map_err(|e| archive_error(&e))?;
        }
        for (split, proba) in &self.probabilities {
            npz.add_array(format!("probabilities_{split}"), proba)
                .map_err(|e| archive_error(&e))?;
        }
        let bytes = npz.finish().map_err(|e| archive_error(&e))?.into_inner();
        crate::io::write_atomic(path, &bytes)
    }
}

/// A ranking with the neurons' identities.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RankingRecord {
    /// Component name.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Source it ranks.
    pub source: String,
    /// Probe it read.
    pub probe: Option<String>,
    /// The first neurons with layer, unit and score.
    pub top: Vec<RankedNeuron>,
    /// The first neurons of each class's ranking, with layer and unit.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub class_top: BTreeMap<String, Vec<NeuronId>>,
    /// The full ranking.
    pub ranking: NeuronRanking,
}

/// One entry of a ranking's head.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RankedNeuron {
    /// 1-based rank.
    pub rank: usize,
    /// Column in the source's matrix.
    pub neuron: u32,
    /// Layer and unit.
    #[serde(flatten)]
    pub id: NeuronId,
    /// Score, when the method gives one.
    pub score: Option<f64>,
}

/// An evaluation with its wiring.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvaluationRecord {
    /// Component name.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Source it read.
    pub source: String,
    /// Rankings it read.
    pub rankings: Vec<String>,
    /// Probes it read.
    pub probes: Vec<String>,
    /// The result.
    pub evaluation: Evaluation,
}

/// Machine-dependent facts about a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// Version of `lca-core`.
    pub lca_version: String,
    /// Worker threads.
    pub threads: usize,
    /// Where each step's component came from.
    pub origins: BTreeMap<String, Origin>,
    /// Seconds per step.
    pub timings: BTreeMap<String, f64>,
    /// Seconds for the whole run.
    pub total_seconds: f64,
    /// Steps whose results were taken from an earlier run's checkpoints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reused: Vec<String>,
}

/// How many ranked neurons each ranking record lists with their identity.
pub const TOP_LISTED: usize = 50;

/// Neurons listed per class in the results.
pub const CLASS_TOP_LISTED: usize = 10;

/// Runs every step of `plan` in order.
///
/// # Errors
/// The first failing step's error, wrapped with the step's description; a
/// panic inside a component becomes [`Error::Panicked`].
pub fn execute(plan: &Plan, cx: &RunContext, observer: &mut dyn Observer) -> Result<Results> {
    execute_with(plan, cx, observer, None)
}

/// Runs every step of `plan` in order, keeping a checkpoint of each finished
/// step in `checkpoints` and, when it resumes, reusing those that still
/// match (see [`crate::checkpoint`]). The results are the same as
/// [`execute`]'s, apart from [`Provenance`].
///
/// # Errors
/// As [`execute`]. A checkpoint that cannot be written or read is a warning,
/// never an error: the run goes on without it.
pub fn execute_with(
    plan: &Plan,
    cx: &RunContext,
    observer: &mut dyn Observer,
    checkpoints: Option<&Checkpoints>,
) -> Result<Results> {
    let started = Instant::now();
    let mut work = Workspace {
        checkpoints,
        ..Workspace::default()
    };
    let mut results = Results {
        format: RESULTS_FORMAT.into(),
        recipe: RecipeRecord {
            name: plan.run.name.clone().unwrap_or_else(|| {
                plan.path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default()
            }),
            description: plan.run.description.clone(),
            text: plan.text.clone(),
        },
        seed: cx.seed(),
        steps: plan.steps.iter().map(step_record).collect(),
        sources: BTreeMap::new(),
        probes: BTreeMap::new(),
        rankings: BTreeMap::new(),
        evaluations: BTreeMap::new(),
        probe_arrays: BTreeMap::new(),
        stopped: None,
        provenance: Provenance {
            lca_version: env!("CARGO_PKG_VERSION").into(),
            threads: cx.threads(),
            origins: plan
                .steps
                .iter()
                .map(|s| (s.key(), s.origin.clone()))
                .collect(),
            timings: BTreeMap::new(),
            total_seconds: 0.0,
            reused: Vec::new(),
        },
    };

    let total = plan.steps.len();
    for (index, step) in plan.steps.iter().enumerate() {
        if let Some(reason) = observer.should_stop() {
            results.stopped = Some(Stopped {
                reason,
                finished: plan.steps[..index].iter().map(Step::key).collect(),
                cut: plan.steps[index..].iter().map(Step::key).collect(),
            });
            break;
        }
        observer.started(step, index, total);
        let step_started = Instant::now();
        let step_cx = cx.for_step(&step.key());
        let outcome = guarded(step, || run_step(step, &step_cx, &mut work, &mut results));
        let reused = match outcome {
            Ok(reused) => reused,
            // Asked to stop during the step: whatever it returned (most
            // likely `Error::Cancelled`), the step is cut, not failed.
            Err(_) if let Some(reason) = observer.should_stop() => {
                results.stopped = Some(Stopped {
                    reason,
                    finished: plan.steps[..index].iter().map(Step::key).collect(),
                    cut: plan.steps[index..].iter().map(Step::key).collect(),
                });
                break;
            }
            Err(e) => return Err(e.context(step.describe())),
        };
        let seconds = step_started.elapsed().as_secs_f64();
        results.provenance.timings.insert(step.key(), seconds);
        if reused {
            results.provenance.reused.push(step.key());
            observer.reused(step, seconds);
        } else {
            observer.finished(step, seconds);
        }
    }
    results.rankings = work.rankings;
    results.provenance.total_seconds = started.elapsed().as_secs_f64();
    Ok(results)
}

/// Warns once per source about neurons that are constant on its training
/// split; all of them constant means the data can say nothing.
fn warn_constant_neurons(
    source: &str,
    constant: &[u32],
    summary: &crate::data::DatasetSummary,
    cx: &RunContext,
) {
    if constant.is_empty() {
        return;
    }
    if constant.len() == summary.neurons {
        cx.warn(&format!(
            "source `{source}`: all {} neurons are constant on the training split, so the \
             activations carry no information about the labels; every ranking is a tie, \
             broken by neuron index, and agreements and subset sizes mean nothing. Check \
             the extraction (layer, site, model) that produced these activations",
            summary.neurons
        ));
    } else {
        let shown: Vec<String> = constant.iter().take(8).map(u32::to_string).collect();
        let more = if constant.len() > 8 { ", …" } else { "" };
        cx.warn(&format!(
            "source `{source}`: {} of {} neurons are constant on the training split \
             (neurons {}{more}); they carry no information, so every ranking puts them \
             last, in index order",
            constant.len(),
            summary.neurons,
            shown.join(", ")
        ));
    }
}

fn guarded<T>(step: &Step, work: impl FnOnce() -> Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(work)) {
        Ok(result) => result,
        Err(payload) => Err(Error::Panicked {
            component: step.describe(),
            message: panic_message(payload.as_ref()),
        }),
    }
}

/// The text of a panic payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a non-text payload".into())
}

fn step_record(step: &Step) -> StepRecord {
    StepRecord {
        key: step.key(),
        kind: step.kind,
        id: step.id.clone(),
        type_name: step.type_name.clone(),
        params: serde_json::to_value(&step.params).unwrap_or(serde_json::Value::Null),
        source: step.source.clone(),
        probe: step.probe.clone(),
        rankings: step.rankings.clone(),
        probes: step.probes.clone(),
    }
}

/// What the steps so far produced.
#[derive(Default)]
struct Workspace<'p, 'c> {
    datasets: HashMap<&'p str, Dataset<'static>>,
    probes: HashMap<&'p str, (Arc<dyn Probe>, SharedProbe)>,
    rankings: BTreeMap<String, RankingRecord>,
    /// Per source, the neurons constant on its training split.
    constant: HashMap<&'p str, Vec<u32>>,
    checkpoints: Option<&'c Checkpoints>,
    /// Fingerprint per step key, when checkpoints are kept.
    fingerprints: HashMap<String, String>,
}

impl Workspace<'_, '_> {
    /// The fingerprint of a non-source step, from its inputs' fingerprints,
    /// remembered for the steps that read this one.
    fn fingerprint_step(&mut self, step: &Step, cx: &RunContext) -> Result<Option<String>> {
        let Some(checkpoints) = self.checkpoints else {
            return Ok(None);
        };
        let mut inputs = vec![format!("source.{}", step.source)];
        inputs.extend(step.probe.iter().map(|p| format!("probe.{p}")));
        inputs.extend(step.rankings.iter().map(|r| format!("ranker.{r}")));
        inputs.extend(step.probes.iter().map(|p| format!("probe.{p}")));
        let inputs: Vec<&str> = inputs
            .iter()
            .map(|key| self.fingerprints[key].as_str())
            .collect();
        let fingerprint = checkpoints.fingerprint(step, cx.seed(), &inputs, None)?;
        self.fingerprints.insert(step.key(), fingerprint.clone());
        Ok(Some(fingerprint))
    }

    /// Keeps a step's result; a failure only costs the ability to resume.
    fn keep<T: Serialize>(
        &self,
        step: &Step,
        cx: &RunContext,
        fingerprint: Option<&str>,
        record: &T,
        state: Option<&[u8]>,
    ) {
        if let (Some(checkpoints), Some(fingerprint)) = (self.checkpoints, fingerprint)
            && let Err(e) = checkpoints.save(&step.key(), fingerprint, record, state)
        {
            cx.warn(&format!(
                "{}: cannot keep a checkpoint ({e}); if the run is interrupted, this step \
                 will run again",
                step.key()
            ));
        }
    }

    /// A stored result of `step`, when resuming and it still applies.
    fn stored<T: serde::de::DeserializeOwned>(
        &self,
        step: &Step,
        cx: &RunContext,
        fingerprint: Option<&str>,
    ) -> Option<T> {
        let (checkpoints, fingerprint) = (self.checkpoints?, fingerprint?);
        match checkpoints.load(&step.key(), fingerprint) {
            Ok(found) => found,
            Err(why) => {
                cx.warn(&format!(
                    "{}: not reused: {why}; running it again",
                    step.key()
                ));
                None
            }
        }
    }

    /// A trained probe restored from its checkpoint, when resuming and it
    /// still applies.
    fn stored_probe(
        &self,
        step: &Step,
        probe: &dyn Probe,
        data: &Dataset<'_>,
        cx: &RunContext,
        fingerprint: Option<&str>,
    ) -> Option<SharedProbe> {
        let (checkpoints, fingerprint) = (self.checkpoints?, fingerprint?);
        let not_reused = |why: String| {
            cx.warn(&format!(
                "{}: not reused: {why}; training it again",
                step.key()
            ));
            None
        };
        let state = match checkpoints.load_with_state::<serde_json::Value>(&step.key(), fingerprint)
        {
            Ok(Some((_, state))) => state,
            Ok(None) => return None,
            Err(why) => return not_reused(why),
        };
        let restored = catch_unwind(AssertUnwindSafe(|| probe.restore(&state)));
        match restored {
            Ok(Ok(trained)) => {
                let trained: SharedProbe = Arc::from(trained);
                match check_probe(trained.as_ref(), data) {
                    Ok(()) => Some(trained),
                    Err(why) => {
                        not_reused(format!("the restored probe does not fit the data: {why}"))
                    }
                }
            }
            Ok(Err(e)) => not_reused(format!("the probe could not be restored: {e}")),
            Err(payload) => not_reused(format!(
                "restoring the probe panicked: {}",
                panic_message(payload.as_ref())
            )),
        }
    }
}

/// Runs one step; `Ok(true)` when its result came from a checkpoint.
fn run_step<'p>(
    step: &'p Step,
    cx: &RunContext,
    work: &mut Workspace<'p, '_>,
    results: &mut Results,
) -> Result<bool> {
    let invalid = |message: String| Error::InvalidOutput {
        component: step.describe(),
        message,
    };
    let mut reused = false;
    match &step.component {
        Component::Source(source) => {
            let dataset = source.load(cx)?.renamed(step.id.clone());
            if let Some(checkpoints) = work.checkpoints {
                let data = dataset.fingerprint();
                let fingerprint = checkpoints.fingerprint(step, cx.seed(), &[], Some(&data))?;
                work.fingerprints.insert(step.key(), fingerprint);
            }
            let constant = dataset.constant_train_neurons();
            let summary = dataset.summary_with_constant(&constant);
            warn_constant_neurons(&step.id, &constant, &summary, cx);
            results.sources.insert(step.id.clone(), summary);
            work.constant.insert(step.id.as_str(), constant);
            work.datasets.insert(step.id.as_str(), dataset);
        }
        Component::Probe(probe) => {
            let fingerprint = work.fingerprint_step(step, cx)?;
            let data = &work.datasets[step.source.as_str()];
            let restored =
                work.stored_probe(step, probe.as_ref(), data, cx, fingerprint.as_deref());
            reused = restored.is_some();
            let trained: SharedProbe = match restored {
                Some(trained) => trained,
                None => {
                    let trained: SharedProbe = Arc::from(probe.fit(data, cx)?);
                    check_probe(trained.as_ref(), data).map_err(invalid)?;
                    trained
                }
            };
            let (accuracy, arrays) = probe_outputs(trained.as_ref(), data, &step.describe())?;
            let record = ProbeRecord {
                type_name: step.type_name.clone(),
                source: step.source.clone(),
                accuracy,
                details: trained.details(),
                weights_shape: arrays.weights.as_ref().map(|w| w.dim()),
                zero_weights: arrays
                    .weights
                    .as_ref()
                    .map(|w| w.iter().filter(|v| **v == 0.0).count()),
                arrays: Some(format!("probes/{}.npz", step.id)),
            };
            if !reused && fingerprint.is_some() {
                match trained.state() {
                    Some(state) => {
                        work.keep(step, cx, fingerprint.as_deref(), &record, Some(&state));
                    }
                    None => cx.info(&format!(
                        "{}: this probe cannot be stored, so a resumed run trains it again",
                        step.key()
                    )),
                }
            }
            results.probes.insert(step.id.clone(), record);
            results.probe_arrays.insert(step.id.clone(), arrays);
            work.probes
                .insert(step.id.as_str(), (probe.clone(), trained));
        }
        Component::Ranker(ranker) => {
            let fingerprint = work.fingerprint_step(step, cx)?;
            let data = &work.datasets[step.source.as_str()];
            let stored = work
                .stored::<RankingRecord>(step, cx, fingerprint.as_deref())
                .filter(|r| r.ranking.len() == data.n_neurons() && r.source == step.source);
            let record = match stored {
                Some(record) => {
                    reused = true;
                    record
                }
                None => {
                    let record = rank_step(step, ranker.as_ref(), data, work, cx)?;
                    work.keep(step, cx, fingerprint.as_deref(), &record, None);
                    record
                }
            };
            work.rankings.insert(step.id.clone(), record);
        }
        Component::Evaluator(evaluator) => {
            let fingerprint = work.fingerprint_step(step, cx)?;
            let stored = work
                .stored::<EvaluationRecord>(step, cx, fingerprint.as_deref())
                .filter(|r| r.evaluation.validate().is_ok());
            let record = match stored {
                Some(record) => {
                    reused = true;
                    record
                }
                None => {
                    let data = &work.datasets[step.source.as_str()];
                    let named = named_rankings(&step.rankings, &work.rankings, data)?;
                    let probe_inputs = step
                        .probes
                        .iter()
                        .map(|id| {
                            let (spec, trained) = &work.probes[id.as_str()];
                            ProbeInput {
                                id: id.clone(),
                                spec: spec.clone(),
                                trained: trained.clone(),
                            }
                        })
                        .collect();
                    let input = EvalInput::new(data)
                        .with_rankings(named)
                        .with_probes(probe_inputs);
                    let evaluation = evaluator.evaluate(&input, cx)?;
                    evaluation.validate().map_err(|e| invalid(e.to_string()))?;
                    let record = EvaluationRecord {
                        type_name: step.type_name.clone(),
                        source: step.source.clone(),
                        rankings: step.rankings.clone(),
                        probes: step.probes.clone(),
                        evaluation,
                    };
                    work.keep(step, cx, fingerprint.as_deref(), &record, None);
                    record
                }
            };
            results.evaluations.insert(step.id.clone(), record);
        }
    }
    Ok(reused)
}

/// A trained probe's accuracy on each split that has rows, with its
/// weights, predictions and class probabilities.
///
/// # Errors
/// When the probe fails to predict, or returns probabilities of the wrong
/// shape ([`Error::InvalidOutput`], naming `component`).
pub fn probe_outputs(
    trained: &dyn crate::component::TrainedProbe,
    data: &Dataset<'_>,
    component: &str,
) -> Result<(BTreeMap<Split, f64>, ProbeArrays)> {
    let mut accuracy = BTreeMap::new();
    let mut arrays = ProbeArrays {
        weights: trained.weights().map(|w| w.to_owned()),
        bias: trained.bias().map(|b| b.to_owned()),
        ..ProbeArrays::default()
    };
    for split in Split::ALL {
        let part = data.split(split);
        if part.labels.is_empty() {
            continue;
        }
        let proba = trained.predict_proba_blocks(&part.acts)?;
        if proba.dim() != (part.labels.len(), data.n_classes()) {
            return Err(Error::InvalidOutput {
                component: component.to_string(),
                message: format!(
                    "predict_proba returned a {} × {} matrix for {} rows and {} classes",
                    proba.nrows(),
                    proba.ncols(),
                    part.labels.len(),
                    data.n_classes()
                ),
            });
        }
        let predicted: Vec<u32> = proba
            .rows()
            .into_iter()
            .map(|r| crate::component::argmax(r.iter().copied()))
            .collect();
        let correct = predicted
            .iter()
            .zip(part.labels)
            .filter(|(p, y)| p == y)
            .count();
        accuracy.insert(split, correct as f64 / part.labels.len() as f64);
        arrays.predictions.push((split, predicted));
        arrays.probabilities.push((split, proba));
    }
    Ok((accuracy, arrays))
}

/// Runs a ranker and checks and describes its ranking.
fn rank_step(
    step: &Step,
    ranker: &dyn crate::component::Ranker,
    data: &Dataset<'_>,
    work: &Workspace<'_, '_>,
    cx: &RunContext,
) -> Result<RankingRecord> {
    let invalid = |message: String| Error::InvalidOutput {
        component: step.describe(),
        message,
    };
    let named = named_rankings(&step.rankings, &work.rankings, data)?;
    let mut input = RankInput::new(data).with_rankings(named);
    if let Some(p) = &step.probe {
        input = input.with_probe(work.probes[p.as_str()].1.clone());
    }
    let ranking = ranker.rank(&input, cx)?;
    if ranking.len() != data.n_neurons() {
        return Err(invalid(format!(
            "the ranking covers {} neurons but source `{}` has {}",
            ranking.len(),
            step.source,
            data.n_neurons()
        )));
    }
    // Whatever score a method gives a constant neuron (IoU can call a
    // neuron that is always "on" perfect for a frequent class), it carries
    // no information, so it goes last, in index order.
    let constant = work
        .constant
        .get(step.source.as_str())
        .map_or(&[][..], Vec::as_slice);
    let ranking = ranking.with_uninformative_last(constant);
    for class in ranking.per_class() {
        if data.classes().id(class.class()).is_none() {
            return Err(invalid(format!(
                "it ranks neurons for class `{}`, which the data does not have",
                class.class()
            )));
        }
    }
    let top = ranking
        .top(TOP_LISTED)
        .iter()
        .enumerate()
        .map(|(i, &j)| RankedNeuron {
            rank: i + 1,
            neuron: j,
            id: data.neurons().id(j as usize),
            score: ranking.scores().map(|s| s[j as usize]),
        })
        .collect();
    let class_top = ranking
        .per_class()
        .iter()
        .map(|c| {
            let ids = c.order().iter().take(CLASS_TOP_LISTED);
            let ids = ids.map(|&j| data.neurons().id(j as usize)).collect();
            (c.class().to_string(), ids)
        })
        .collect();
    Ok(RankingRecord {
        type_name: step.type_name.clone(),
        source: step.source.clone(),
        probe: step.probe.clone(),
        top,
        class_top,
        ranking,
    })
}

/// The rankings a step reads, checked against its data.
fn named_rankings<'r>(
    ids: &'r [String],
    rankings: &'r BTreeMap<String, RankingRecord>,
    data: &Dataset<'_>,
) -> Result<Vec<NamedRanking<'r>>> {
    ids.iter()
        .map(|id| {
            let ranking = &rankings[id].ranking;
            if ranking.len() != data.n_neurons() {
                return Err(Error::input(format!(
                    "ranking `{id}` covers {} neurons but source `{}` has {}; \
                     wire rankings of the same source",
                    ranking.len(),
                    data.name(),
                    data.n_neurons()
                )));
            }
            Ok(NamedRanking { id, ranking })
        })
        .collect()
}

/// Checks a trained probe against the data it was trained on.
///
/// # Errors
/// A message naming the mismatch.
pub fn check_probe(
    probe: &dyn crate::component::TrainedProbe,
    data: &Dataset<'_>,
) -> std::result::Result<(), String> {
    if probe.n_features() != data.n_neurons() {
        return Err(format!(
            "the probe expects {} neurons but the data has {}",
            probe.n_features(),
            data.n_neurons()
        ));
    }
    if probe.classes() != data.classes() {
        return Err(format!(
            "the probe's classes ({}) differ from the data's ({})",
            probe.classes().names().join(", "),
            data.classes().names().join(", ")
        ));
    }
    if let Some(w) = probe.weights() {
        if w.dim() != (data.n_classes(), data.n_neurons()) {
            return Err(format!(
                "the weights are {} × {}, expected classes × neurons = {} × {}",
                w.nrows(),
                w.ncols(),
                data.n_classes(),
                data.n_neurons()
            ));
        }
        if w.iter().any(|v| !v.is_finite()) {
            return Err("the weights contain NaN or infinite values".into());
        }
    }
    Ok(())
}
