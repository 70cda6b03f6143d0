//! Activation stores from Python: their manifest, the statistics of a range
//! of shards, merging statistics, and rankings from merged statistics. The
//! same operations as `lca store info|stats|merge-stats|rank`, and the
//! pieces `lca.distributed` hands to Ray workers.

use std::path::{Path, PathBuf};

use lca_cli::stats_ranking::{StatsRanking, rank_statistics};
use lca_cli::store_writing::{StoreOptions, Written, recipe_source, write_source};
use lca_core::RunContext;
use lca_linear::{SoftmaxSums, softmax_pass};
use lca_store::{Dtype, GaussianPass, IouPass, StatsFile, StatsParts, Store, part_shards};
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::{any_error, core_error, message};
use crate::interrupt::{Sink, emit_warnings, run_interruptible};
use crate::steps::compile_recipe;

/// Statistics of some shards of a store, ready to merge with the others'
/// and to rank from. Pickles as the statistics file's text, so it travels
/// between processes (Ray tasks) as a file would.
#[pyclass(module = "lca._lca", frozen)]
pub(crate) struct Statistics {
    file: StatsFile,
}

fn origin() -> &'static Path {
    Path::new("<statistics from Python>")
}

#[pymethods]
impl Statistics {
    /// Statistics read from a file written by `lca store stats` or `save`.
    #[staticmethod]
    fn load(path: PathBuf) -> PyResult<Statistics> {
        Ok(Statistics {
            file: StatsFile::read(&path).map_err(core_error)?,
        })
    }

    /// Statistics from the bytes `to_bytes` gave.
    #[staticmethod]
    fn from_bytes(bytes: &[u8]) -> PyResult<Statistics> {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| message("these bytes are not the text of lca statistics"))?;
        Ok(Statistics {
            file: StatsFile::from_json(text, origin()).map_err(core_error)?,
        })
    }

    /// The statistics file's text, as bytes.
    fn to_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let json = self.file.to_json().map_err(core_error)?;
        Ok(PyBytes::new(py, &json))
    }

    /// Pickling: the statistics file's text, read back by `from_bytes`.
    fn __reduce__<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<(Bound<'py, PyAny>, (Bound<'py, PyBytes>,))> {
        let rebuild = py.get_type::<Statistics>().getattr("from_bytes")?;
        Ok((rebuild, (self.to_bytes(py)?,)))
    }

    /// Writes the statistics file (atomically).
    fn save(&self, path: PathBuf) -> PyResult<()> {
        self.file.write(&path).map_err(core_error)
    }

    /// These statistics and `other`'s, of disjoint shards, as one.
    fn merged(&self, other: &Statistics) -> PyResult<Statistics> {
        let mut file = self.file.clone();
        file.merge(&other.file).map_err(core_error)?;
        Ok(Statistics { file })
    }

    /// Rows counted.
    #[getter]
    fn rows(&self) -> u64 {
        self.file.stats.rows
    }

    /// The SHA-256 of every shard counted.
    #[getter]
    fn shards(&self) -> Vec<String> {
        self.file.shards.clone()
    }

    /// The task whose labels are the classes.
    #[getter]
    fn task(&self) -> String {
        self.file.task.clone()
    }

    /// The neurons, one per column.
    #[getter]
    fn neurons(&self) -> Vec<String> {
        self.file.neurons.clone()
    }

    /// The classes.
    #[getter]
    fn classes(&self) -> Vec<String> {
        self.file.stats.classes.clone()
    }

    /// Which parts beyond the class sums these statistics hold.
    #[getter]
    fn parts(&self) -> Vec<&'static str> {
        let f = &self.file;
        [
            (f.iou_top.is_some(), "iou_top"),
            (f.iou_masks.is_some(), "iou_masks"),
            (f.gaussian.is_some(), "gaussian"),
            (f.average_precision.is_some(), "average_precision"),
        ]
        .into_iter()
        .filter_map(|(held, name)| held.then_some(name))
        .collect()
    }

    /// Ranks every neuron by `method` (`correlation`, `probeless`, `iou`,
    /// `gaussian` or `average_precision`); returns the ranking as JSON.
    #[pyo3(signature = (method, signed=false, detector_iou=0.04, neurons=100, diagonal=false, positive=None))]
    #[allow(clippy::too_many_arguments)]
    fn rank(
        &self,
        py: Python<'_>,
        method: &str,
        signed: bool,
        detector_iou: f64,
        neurons: usize,
        diagonal: bool,
        positive: Option<String>,
    ) -> PyResult<String> {
        if neurons == 0 {
            return Err(message(
                "neurons=0: the Gaussian ranking needs at least 1 neuron to select",
            ));
        }
        if !(0.0..=1.0).contains(&detector_iou) {
            return Err(message(format!(
                "detector_iou={detector_iou} is not an IoU; give a number from 0 to 1, such as 0.04"
            )));
        }
        let options = StatsRanking {
            signed,
            detector_iou,
            steps: neurons,
            diagonal,
            positive,
        };
        let file = &self.file;
        let ranking = py
            .detach(|| rank_statistics(file, method, &options))
            .map_err(any_error)?;
        serde_json::to_string(&ranking).map_err(|e| message(e.to_string()))
    }
}

/// The manifest of the store in `path`, as JSON.
#[pyfunction]
pub(crate) fn store_manifest(path: PathBuf) -> PyResult<String> {
    let store = Store::open(&path).map_err(core_error)?;
    serde_json::to_string(store.manifest()).map_err(|e| message(e.to_string()))
}

/// The statistics of shards `shards` (or part `part = (k, n)`, or all) of
/// the store in `path`.
#[pyfunction]
#[pyo3(signature = (path, task=None, shards=None, part=None, train_only=true, iou_quantile=None, iou_thresholds=None, gaussian_neurons=None, gaussian_rows=4000, seed=0, ap_bits=None, ap_threshold=0.05, threads=None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn store_stats(
    py: Python<'_>,
    path: PathBuf,
    task: Option<String>,
    shards: Option<(usize, usize)>,
    part: Option<(usize, usize)>,
    train_only: bool,
    iou_quantile: Option<f64>,
    iou_thresholds: Option<PyRef<'_, Statistics>>,
    gaussian_neurons: Option<Vec<usize>>,
    gaussian_rows: usize,
    seed: u64,
    ap_bits: Option<u8>,
    ap_threshold: f64,
    threads: Option<usize>,
) -> PyResult<Statistics> {
    let store = Store::open(&path).map_err(core_error)?;
    let count = store.manifest().shards.len();
    let shards = match (shards, part) {
        (Some(_), Some(_)) => return Err(message("give shards= or part=, not both")),
        (Some((start, end)), None) => start..end,
        (None, Some((k, n))) => {
            if n == 0 || k >= n {
                return Err(message(format!(
                    "part ({k}, {n}) is not one of n parts: give (k, n) with 0 <= k < n"
                )));
            }
            part_shards(k, n, count)
        }
        (None, None) => 0..count,
    };
    if let Some(q) = iou_quantile
        && !(q > 0.0 && q <= 1.0)
    {
        return Err(message(format!(
            "iou_quantile={q} is not a fraction of the rows; give a number above 0 and at most 1, \
             such as 0.005"
        )));
    }
    if !(ap_threshold.is_finite() && ap_threshold >= 0.0) {
        return Err(message(format!(
            "ap_threshold={ap_threshold} is not a threshold; give a number of at least 0, such as 0.05"
        )));
    }
    if ap_bits.is_some_and(|bits| bits > 23) {
        return Err(message(
            "ap_bits must be from 0 to 23 (the mantissa bits of an f32 kept per bin)",
        ));
    }
    if iou_quantile.is_some() && iou_thresholds.is_some() {
        return Err(message(
            "give iou_quantile= (the first IoU pass) or iou_thresholds= (the second), not both",
        ));
    }
    let thresholds = iou_thresholds.as_ref().map(|s| &s.file);
    let iou = match (iou_quantile, thresholds) {
        (Some(quantile), _) => IouPass::TopValues { quantile },
        (None, Some(file)) => IouPass::Masks(file),
        (None, None) => IouPass::None,
    };
    let gaussian = gaussian_neurons.map(|neurons| GaussianPass {
        neurons,
        sample_rows: gaussian_rows,
        seed,
    });
    let parts = StatsParts {
        iou,
        gaussian: gaussian.as_ref(),
        average_precision: ap_bits.map(|bits| (bits, ap_threshold)),
    };
    let sink = Sink::new();
    let task = task.as_deref();
    // Columns are summed on this many threads (all cores by default); a
    // worker sharing a machine with others takes its share.
    let pool = RunContext::new(seed, threads.unwrap_or(0));
    let file = run_interruptible(py, &sink, || {
        pool.install(|| store.class_stats(task, shards, train_only, parts))
    })?;
    emit_warnings(py, &sink)?;
    Ok(Statistics {
        file: file.map_err(core_error)?,
    })
}

/// Writes the source `source` (or the only one) of the recipe in `path`
/// (or of `text`, read as if it were that file) as a store in `out`, or
/// part `part = (k, n)` of one; returns what was written, as JSON: `kind`
/// (`store` or `part`), the `manifest` or the part's `record`,
/// `kept_rows`, `task` and `classes`.
#[pyfunction]
#[pyo3(signature = (path, out, text=None, source=None, part=None, dtype="f32", shard_mib=256, task=None, threads=None, plugin_dirs=Vec::new(), plugin_files=Vec::new()))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn store_create(
    py: Python<'_>,
    path: PathBuf,
    out: PathBuf,
    text: Option<String>,
    source: Option<String>,
    part: Option<(usize, usize)>,
    dtype: &str,
    shard_mib: usize,
    task: Option<String>,
    threads: Option<usize>,
    plugin_dirs: Vec<PathBuf>,
    plugin_files: Vec<PathBuf>,
) -> PyResult<String> {
    let dtype = Dtype::parse(dtype).ok_or_else(|| {
        message(format!(
            "dtype={dtype:?} is not a store type; give f32, f16 or bf16"
        ))
    })?;
    if !(1..=65_536).contains(&shard_mib) {
        return Err(message(format!(
            "shard_mib={shard_mib} is not a shard size; give 1 to 65536 MiB"
        )));
    }
    if let Some((k, n)) = part
        && k >= n
    {
        return Err(message(format!(
            "part ({k}, {n}) is not one of n parts: give (k, n) with 0 <= k < n"
        )));
    }
    let plan = compile_recipe(py, &path, text, plugin_dirs, plugin_files)?;
    let step = recipe_source(&plan, &path, source.as_deref())
        .map_err(|e| any_error(e.context("name the source to store with source=")))?;
    let options = StoreOptions {
        out,
        dtype,
        shard_bytes: shard_mib << 20,
        task,
        part,
    };
    let sink = Sink::new();
    let cx = RunContext::new(step.seed, threads.unwrap_or(0))
        .for_step(&step.key)
        .with_progress(sink.clone());
    let created = run_interruptible(py, &sink, || write_source(&step, &options, &cx))?;
    emit_warnings(py, &sink)?;
    let created = created.map_err(any_error)?;
    let (kind, key, written) = match &created.written {
        Written::Store(manifest) => ("store", "manifest", serde_json::to_value(manifest)),
        Written::Part(record) => ("part", "record", serde_json::to_value(record)),
    };
    let mut json = serde_json::json!({
        "kind": kind,
        "kept_rows": created.kept_rows,
        "task": created.task,
        "classes": created.classes,
    });
    json[key] = written.map_err(|e| message(e.to_string()))?;
    Ok(json.to_string())
}

/// Joins the parts written into `path` into one store; returns its
/// manifest as JSON.
#[pyfunction]
pub(crate) fn store_join(path: PathBuf) -> PyResult<String> {
    let manifest = lca_store::join_parts(&path).map_err(core_error)?;
    serde_json::to_string(&manifest).map_err(|e| message(e.to_string()))
}

/// A store opened once, for the many passes of a probe trained over its
/// shards (`lca.store.train_probe`, `lca.distributed.train_probe`): its
/// manifest and labels are read once, its shards mapped as passes need
/// them.
#[pyclass(module = "lca._lca", frozen)]
pub(crate) struct OpenStore {
    store: Store,
}

/// `(rows, Σ loss, correct rows, Σ weight gradient, Σ bias gradient)`.
type PassSums<'py> = (
    usize,
    f64,
    usize,
    Option<Bound<'py, PyArray2<f64>>>,
    Option<Bound<'py, PyArray1<f64>>>,
);

#[pymethods]
impl OpenStore {
    #[new]
    fn new(path: PathBuf) -> PyResult<Self> {
        Ok(OpenStore {
            store: Store::open(&path).map_err(core_error)?,
        })
    }

    /// The sums of one pass of a softmax probe with `weights` (classes ×
    /// neurons) and `bias` over the rows of split `split` (`train`, `dev`
    /// or `test`) in part `part = (k, n)` of the shards (all by default):
    /// the rows, the summed cross-entropy, the rows classified right and,
    /// with `gradient`, the summed gradients. Task `task` gives the labels
    /// (the store's default task when `None`).
    #[pyo3(signature = (weights, bias, task=None, part=None, split="train", gradient=true, threads=None))]
    #[allow(clippy::too_many_arguments)]
    fn probe_pass<'py>(
        &self,
        py: Python<'py>,
        weights: PyReadonlyArray2<'py, f32>,
        bias: PyReadonlyArray1<'py, f64>,
        task: Option<&str>,
        part: Option<(usize, usize)>,
        split: &str,
        gradient: bool,
        threads: Option<usize>,
    ) -> PyResult<PassSums<'py>> {
        let m = self.store.manifest();
        let task = task.unwrap_or(&m.default_task);
        let classes = m
            .tasks
            .get(task)
            .ok_or_else(|| {
                message(format!(
                    "the store {} has no task `{task}`; lca.store.info lists its tasks",
                    self.store.dir().display()
                ))
            })?
            .classes
            .len();
        let w = weights.as_array().to_owned();
        let b = bias.as_array().to_owned();
        if w.dim() != (classes, m.neurons.len()) || b.len() != classes {
            return Err(message(format!(
                "weights of {} × {} and {} biases for a store of {classes} classes (task \
                 `{task}`) and {} neurons; give classes × neurons weights",
                w.nrows(),
                w.ncols(),
                b.len(),
                m.neurons.len()
            )));
        }
        let split_rows = match (split, m.splits) {
            ("train", Some(s)) => 0..s.train,
            ("dev", Some(s)) => s.train..s.train + s.dev,
            ("test", Some(s)) => s.train + s.dev..s.total(),
            ("train", None) => 0..m.rows,
            ("dev" | "test", None) => 0..0,
            _ => {
                return Err(message(format!(
                    "split={split:?} is not a split; give \"train\", \"dev\" or \"test\""
                )));
            }
        };
        let shards = match part {
            Some((k, n)) if k < n => part_shards(k, n, m.shards.len()),
            Some((k, n)) => {
                return Err(message(format!(
                    "part ({k}, {n}) is not one of n parts: give (k, n) with 0 <= k < n"
                )));
            }
            None => 0..m.shards.len(),
        };
        let first = |shard: usize| m.shards[..shard].iter().map(|s| s.rows).sum::<usize>();
        let (from, to) = (first(shards.start), first(shards.end));
        let rows =
            split_rows.start.max(from)..split_rows.end.min(to).max(split_rows.start.max(from));
        let labels = &self.store.rows_meta().labels[task];
        let sink = Sink::new();
        let pool = RunContext::new(0, threads.unwrap_or(0)).with_progress(sink.clone());
        let summed = run_interruptible(py, &sink, || {
            pool.install(|| {
                let mut total = SoftmaxSums::zero(classes, w.ncols(), gradient);
                self.store
                    .for_each_block(rows, PASS_BLOCK_ROWS, |start, block| {
                        pool.check_cancelled()?;
                        let y = &labels[start..start + block.nrows()];
                        total.add(&softmax_pass(block, y, &w, &b, gradient)?);
                        Ok(())
                    })?;
                Ok::<_, lca_core::Error>(total)
            })
        })?;
        let sums = summed.map_err(core_error)?;
        Ok((
            sums.rows,
            sums.loss,
            sums.correct,
            sums.grad_w.map(|g| g.into_pyarray(py)),
            sums.grad_b.map(|g| g.into_pyarray(py)),
        ))
    }
}

/// Rows a probe pass reads at once: a few MB of a wide store.
const PASS_BLOCK_ROWS: usize = 8192;
