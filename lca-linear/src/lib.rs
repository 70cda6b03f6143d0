//! Multinomial logistic regression with an elastic-net penalty: the probe
//! solver behind the `elastic_net`, `lasso`, `ridge` and `unregularized`
//! probes.
//!
//! ```text
//! minimise  F(W, b) = (1/N) Σ_i CE(softmax(W x_i + b), y_i) + λ1 Σ|W| + λ2 R(W)
//!
//!   R(W) = ‖W‖_F          (L2Form::Frobenius, as NeuroX: not squared)
//!   R(W) = ‖W‖_F²         (L2Form::Squared, the textbook elastic net)
//! ```
//!
//! The bias is not penalised. Three solvers:
//!
//! - [`Solver::NeuroxAdam`]: what NeuroX does. Mini-batch Adam on the
//!   per-batch loss (mean CE over the batch plus the full penalty), batches of
//!   consecutive rows, no shuffling by default, a fixed number of epochs. The
//!   arithmetic is f64, which reproduces NeuroX's float32 torch weights to
//!   about 1e-7. Subgradients of |w| are used, so there are no exact zeros.
//! - [`Solver::Fista`]: accelerated proximal gradient (Beck & Teboulle 2009)
//!   on the full objective, with backtracking on the step size and
//!   gradient-based adaptive restart (O'Donoghue & Candès 2015). The L1 and
//!   Frobenius terms are handled by their proximal operator, so weights
//!   become exactly zero. It stops when the objective improves by less than
//!   `tol` (relative) in three consecutive iterations, or after `max_iter`.
//!   Logits are linear in `W`, so the logits of the extrapolated point are
//!   combined from stored logits and each iteration reads the activation
//!   matrix once. Rows are processed in fixed chunks whose partial sums are
//!   added in a fixed order, so the result does not depend on the thread count.
//! - [`Solver::WorkingSet`]: proximal Newton with coordinate descent on the
//!   weights that can be nonzero at the optimum, checked against the
//!   optimality conditions of all weights (see the `working_set` module).
//!
//! Optional standardisation divides each neuron by its training standard
//! deviation after centring; it is applied on the fly (never materialised),
//! and the weights stay in the standardised space, where their magnitudes are
//! comparable across neurons.

#[doc(hidden)]
pub mod gaussian;
pub mod kernels;
mod working_set;

pub use working_set::WorkingSetSettings;

use std::collections::BTreeMap;

use ndarray::{Array1, Array2, ArrayView2, Axis, CowArray, Ix2, s};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use lca_core::context::RunContext;
use lca_core::data::RowBlocks;
use lca_core::error::{Error, Result};

/// The form of the L2 term.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum L2Form {
    /// `λ2 ‖W‖_F`, as NeuroX (not squared).
    Frobenius,
    /// `λ2 ‖W‖_F²`, the textbook elastic net.
    Squared,
}

/// The penalty.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Penalty {
    /// Weight of `Σ|W|`.
    pub l1: f64,
    /// Weight of the L2 term.
    pub l2: f64,
    /// Form of the L2 term.
    pub l2_form: L2Form,
}

impl Penalty {
    /// No penalty.
    pub const NONE: Penalty = Penalty {
        l1: 0.0,
        l2: 0.0,
        l2_form: L2Form::Frobenius,
    };

    /// The penalty's value at `w`.
    pub fn value(&self, w: &Array2<f64>) -> f64 {
        self.value_of(w.iter())
    }

    /// The penalty's value at the weights `values` yields (weights left
    /// out are zero and add nothing).
    fn value_of<'a>(&self, values: impl Iterator<Item = &'a f64> + Clone) -> f64 {
        let mut total = 0.0;
        if self.l1 > 0.0 {
            total += self.l1 * values.clone().map(|v| v.abs()).sum::<f64>();
        }
        if self.l2 > 0.0 {
            let sq: f64 = values.map(|v| v * v).sum();
            total += self.l2
                * match self.l2_form {
                    L2Form::Frobenius => sq.sqrt(),
                    L2Form::Squared => sq,
                };
        }
        total
    }
}

/// Settings of the NeuroX-compatible mini-batch Adam solver.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamSettings {
    /// Passes over the training rows.
    pub epochs: usize,
    /// Rows per batch (consecutive rows).
    pub batch_size: usize,
    /// Adam step size.
    pub learning_rate: f64,
    /// Shuffle rows (seeded) at every epoch; NeuroX does not.
    pub shuffle: bool,
}

impl Default for AdamSettings {
    fn default() -> Self {
        AdamSettings {
            epochs: 10,
            batch_size: 32,
            learning_rate: 1e-3,
            shuffle: false,
        }
    }
}

/// Settings of the accelerated proximal-gradient solver.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct FistaSettings {
    /// Stop when the objective improves by less than this, relative, in
    /// three consecutive iterations.
    pub tol: f64,
    /// Give up after this many iterations (reported as not converged).
    pub max_iter: usize,
}

impl Default for FistaSettings {
    fn default() -> Self {
        FistaSettings {
            tol: 1e-3,
            max_iter: 500,
        }
    }
}

/// Which solver to use.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "solver", rename_all = "snake_case")]
pub enum Solver {
    /// NeuroX's mini-batch Adam.
    NeuroxAdam(AdamSettings),
    /// Accelerated proximal gradient to a tolerance.
    Fista(FistaSettings),
    /// Proximal Newton on a working set of weights, checked against the
    /// optimality conditions of all of them.
    WorkingSet(WorkingSetSettings),
}

/// Where the weights start.
#[derive(Clone, Debug, PartialEq)]
pub enum Init {
    /// All zeros (the natural start for the convex problem).
    Zeros,
    /// Uniform in ±1/√D for weights and bias, as PyTorch initialises a linear
    /// layer (drawn from the step's seed; torch's own stream cannot be
    /// reproduced).
    TorchLike,
    /// Given weights (classes × neurons) and bias, in the solver's space.
    Given(Array2<f64>, Array1<f64>),
}

/// Everything a fit needs besides the data.
#[derive(Clone, Debug, PartialEq)]
pub struct FitOptions {
    /// The penalty.
    pub penalty: Penalty,
    /// The solver.
    pub solver: Solver,
    /// Centre and scale every neuron by its training mean and deviation.
    pub standardize: bool,
    /// Starting point.
    pub init: Init,
}

/// What the solver reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FitReport {
    /// `neurox_adam` or `fista`.
    pub solver: String,
    /// Optimiser steps (mini-batches for Adam, iterations for FISTA).
    pub iterations: usize,
    /// Passes over the activation matrix (a pass over a subsample counts as
    /// its fraction of the rows).
    pub data_passes: f64,
    /// Final value of the full objective F(W, b) on the training rows.
    pub objective: f64,
    /// Whether the stopping tolerance was met (always true for Adam, which
    /// runs a fixed number of epochs).
    pub converged: bool,
    /// Weights that are exactly zero.
    pub zero_weights: usize,
    /// For Adam: NeuroX's printed epoch loss (sum of batch losses / rows).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub epoch_losses: Vec<f64>,
}

/// Format tag of a stored [`LogisticModel`].
const MODEL_FORMAT: &str = "lca-logistic-model/1";

/// A trained multinomial logistic model.
#[derive(Clone, Debug)]
pub struct LogisticModel {
    /// Weights in the solver's space (standardised if requested), classes × neurons.
    pub weights: Array2<f32>,
    /// Bias per class, in the solver's space.
    pub bias: Array1<f32>,
    /// Centring and scaling applied to inputs, when standardised.
    pub scaling: Option<Scaling>,
    /// Solver report.
    pub report: FitReport,
    effective_weights: Array2<f32>,
    effective_bias: Array1<f32>,
}

/// Per-neuron centring and scaling.
#[derive(Clone, Debug, PartialEq)]
pub struct Scaling {
    /// Subtracted first.
    pub mean: Array1<f64>,
    /// Then divided by (1 for constant neurons).
    pub scale: Array1<f64>,
}

impl Scaling {
    /// Two passes over fixed row chunks (the mean, then the squared
    /// deviations from it), each summed in chunk order: the same at every
    /// thread count, and a matrix mapped from disk is read sequentially
    /// rather than one column at a time.
    fn fit(x: &impl RowBlocks) -> Self {
        let (rows, d) = x.shape();
        let n = rows.max(1) as f64;
        let column_sums = |term: &(dyn Fn(usize, f32) -> f64 + Sync)| -> Vec<f64> {
            let mut totals = vec![0.0f64; d];
            fold_chunks(
                rows,
                |start, end| {
                    let mut sums = vec![0.0f64; d];
                    x.for_each_block(start..end, |_, block| {
                        for row in block.outer_iter() {
                            for (j, (total, &v)) in sums.iter_mut().zip(row.iter()).enumerate() {
                                *total += term(j, v);
                            }
                        }
                    });
                    sums
                },
                |_, part| totals.iter_mut().zip(&part).for_each(|(t, p)| *t += p),
            );
            totals
        };
        let mean: Vec<f64> = column_sums(&|_, v| f64::from(v))
            .into_iter()
            .map(|total| total / n)
            .collect();
        let scale: Vec<f64> = column_sums(&|j, v| (f64::from(v) - mean[j]).powi(2))
            .into_iter()
            .map(|total| {
                let sd = (total / n).sqrt();
                if sd > 0.0 { sd } else { 1.0 }
            })
            .collect();
        Scaling {
            mean: Array1::from(mean),
            scale: Array1::from(scale),
        }
    }
}

/// Weights and bias that apply to raw inputs: `W_eff = W / σ`,
/// `b_eff = b − W_eff μ`.
fn effective(
    w: &Array2<f64>,
    b: &Array1<f64>,
    scaling: Option<&Scaling>,
) -> (Array2<f64>, Array1<f64>) {
    match scaling {
        None => (w.clone(), b.clone()),
        Some(s) => {
            let w_eff = w / &s.scale;
            let b_eff = b - &w_eff.dot(&s.mean);
            (w_eff, b_eff)
        }
    }
}

impl LogisticModel {
    fn new(w: Array2<f64>, b: Array1<f64>, scaling: Option<Scaling>, report: FitReport) -> Self {
        let (we, be) = effective(&w, &b, scaling.as_ref());
        LogisticModel {
            weights: w.mapv(|v| v as f32),
            bias: b.mapv(|v| v as f32),
            scaling,
            report,
            effective_weights: we.mapv(|v| v as f32),
            effective_bias: be.mapv(|v| v as f32),
        }
    }

    /// The model as a safetensors archive that [`LogisticModel::from_bytes`]
    /// restores bit for bit, so a restored probe predicts exactly as the
    /// trained one. `metadata` adds text entries (a probe keeps its classes
    /// and details there); the `format` and `report` keys are taken.
    ///
    /// # Errors
    /// When serialisation fails.
    pub fn to_bytes(&self, metadata: &BTreeMap<String, String>) -> Result<Vec<u8>> {
        use safetensors::Dtype;
        use safetensors::tensor::TensorView;
        let f32_bytes = |a: &[f32]| a.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>();
        let f64_bytes = |a: &[f64]| a.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>();
        let mut tensors: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)> = vec![
            (
                "weights",
                Dtype::F32,
                self.weights.shape().to_vec(),
                f32_bytes(&self.weights.iter().copied().collect::<Vec<_>>()),
            ),
            (
                "bias",
                Dtype::F32,
                vec![self.bias.len()],
                f32_bytes(&self.bias.to_vec()),
            ),
            (
                "effective_weights",
                Dtype::F32,
                self.effective_weights.shape().to_vec(),
                f32_bytes(&self.effective_weights.iter().copied().collect::<Vec<_>>()),
            ),
            (
                "effective_bias",
                Dtype::F32,
                vec![self.effective_bias.len()],
                f32_bytes(&self.effective_bias.to_vec()),
            ),
        ];
        if let Some(scaling) = &self.scaling {
            tensors.push((
                "scaling_mean",
                Dtype::F64,
                vec![scaling.mean.len()],
                f64_bytes(&scaling.mean.to_vec()),
            ));
            tensors.push((
                "scaling_scale",
                Dtype::F64,
                vec![scaling.scale.len()],
                f64_bytes(&scaling.scale.to_vec()),
            ));
        }
        let views = tensors
            .iter()
            .map(|(name, dtype, shape, bytes)| {
                TensorView::new(*dtype, shape.clone(), bytes).map(|view| (*name, view))
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::input(format!("cannot store the logistic model: {e}")))?;
        let mut info: std::collections::HashMap<String, String> = metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        info.insert("format".into(), MODEL_FORMAT.into());
        info.insert(
            "report".into(),
            serde_json::to_string(&self.report).expect("a report serialises"),
        );
        safetensors::serialize(views, Some(info))
            .map_err(|e| Error::input(format!("cannot store the logistic model: {e}")))
    }

    /// Restores a model written by [`LogisticModel::to_bytes`], with the
    /// extra metadata it was given.
    ///
    /// # Errors
    /// When the bytes are not such an archive, or its arrays disagree in size.
    pub fn from_bytes(bytes: &[u8]) -> Result<(Self, BTreeMap<String, String>)> {
        let bad = |why: String| Error::input(format!("not a stored logistic model: {why}"));
        let (_, header) =
            safetensors::SafeTensors::read_metadata(bytes).map_err(|e| bad(e.to_string()))?;
        let mut metadata: BTreeMap<String, String> = header
            .metadata()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        if metadata.remove("format").as_deref() != Some(MODEL_FORMAT) {
            return Err(bad(format!("its format is not {MODEL_FORMAT}")));
        }
        let report: FitReport = metadata
            .remove("report")
            .and_then(|r| serde_json::from_str(&r).ok())
            .ok_or_else(|| bad("the solver report is missing".into()))?;
        let tensors =
            safetensors::SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
        let read = |name: &str, dtype: safetensors::Dtype| -> Result<(Vec<usize>, Vec<u8>)> {
            let view = tensors
                .tensor(name)
                .map_err(|_| bad(format!("array `{name}` is missing")))?;
            if view.dtype() != dtype {
                return Err(bad(format!("array `{name}` is {:?}", view.dtype())));
            }
            Ok((view.shape().to_vec(), view.data().to_vec()))
        };
        let f32s = |bytes: Vec<u8>| -> Vec<f32> {
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect()
        };
        let f64s = |bytes: Vec<u8>| -> Vec<f64> {
            bytes
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect()
        };
        let matrix = |name: &str| -> Result<Array2<f32>> {
            let (shape, data) = read(name, safetensors::Dtype::F32)?;
            match shape[..] {
                [rows, cols] => Array2::from_shape_vec((rows, cols), f32s(data))
                    .map_err(|e| bad(format!("array `{name}`: {e}"))),
                _ => Err(bad(format!("array `{name}` is not a matrix"))),
            }
        };
        let vector = |name: &str| -> Result<Array1<f32>> {
            let (_, data) = read(name, safetensors::Dtype::F32)?;
            Ok(Array1::from(f32s(data)))
        };
        let weights = matrix("weights")?;
        let effective_weights = matrix("effective_weights")?;
        let bias = vector("bias")?;
        let effective_bias = vector("effective_bias")?;
        let scaling = match tensors.tensor("scaling_mean") {
            Err(_) => None,
            Ok(_) => Some(Scaling {
                mean: Array1::from(f64s(read("scaling_mean", safetensors::Dtype::F64)?.1)),
                scale: Array1::from(f64s(read("scaling_scale", safetensors::Dtype::F64)?.1)),
            }),
        };
        let (classes, neurons) = weights.dim();
        let consistent = effective_weights.dim() == (classes, neurons)
            && bias.len() == classes
            && effective_bias.len() == classes
            && scaling
                .as_ref()
                .is_none_or(|s| s.mean.len() == neurons && s.scale.len() == neurons);
        if !consistent {
            return Err(bad("its arrays disagree in size".into()));
        }
        let model = LogisticModel {
            weights,
            bias,
            scaling,
            report,
            effective_weights,
            effective_bias,
        };
        Ok((model, metadata))
    }

    /// Number of input neurons.
    pub fn n_features(&self) -> usize {
        self.weights.ncols()
    }

    /// Logits for raw inputs.
    ///
    /// # Errors
    /// When `x` has the wrong number of columns.
    pub fn logits(&self, x: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        if x.ncols() != self.n_features() {
            return Err(Error::Shape {
                what: "probe input".into(),
                expected: format!("{} neurons", self.n_features()),
                found: format!("{} neurons", x.ncols()),
            });
        }
        let x = x.as_standard_layout();
        let (rows, d) = x.dim();
        let c = self.effective_weights.nrows();
        let mut z = Array2::<f32>::zeros((rows, c));
        kernels::logits(
            x.as_slice().expect("standard layout"),
            d,
            self.effective_weights
                .as_slice()
                .expect("row-major weights"),
            c,
            z.as_slice_mut().expect("row-major logits"),
        );
        z += &self.effective_bias;
        Ok(z)
    }

    /// Class probabilities for raw inputs.
    ///
    /// # Errors
    /// When `x` has the wrong number of columns.
    pub fn predict_proba(&self, x: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        let mut z = self.logits(x)?;
        for mut row in z.axis_iter_mut(Axis(0)) {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0f64;
            for v in row.iter_mut() {
                let e = f64::from(*v - max).exp();
                sum += e;
                *v = e as f32;
            }
            row.mapv_inplace(|v| (f64::from(v) / sum) as f32);
        }
        Ok(z)
    }
}

/// Checks the training data's shape and labels (finiteness is
/// [`check_finite`]'s job).
fn check_training_data(x: &impl RowBlocks, y: &[u32], n_classes: usize) -> Result<()> {
    let (rows, cols) = x.shape();
    if rows != y.len() {
        return Err(Error::Shape {
            what: "training labels".into(),
            expected: rows.to_string(),
            found: y.len().to_string(),
        });
    }
    if rows == 0 {
        return Err(Error::input(
            "the training split is empty; a probe needs training rows",
        ));
    }
    if cols == 0 {
        return Err(Error::input(
            "the data has no neurons; a probe needs at least one",
        ));
    }
    if let Some(&bad) = y.iter().find(|&&c| c as usize >= n_classes) {
        return Err(Error::input(format!(
            "label id {bad} is outside the {n_classes} classes"
        )));
    }
    let present = lca_core::data::count_classes(y, n_classes)
        .iter()
        .filter(|&&c| c > 0)
        .count();
    if present < 2 {
        return Err(Error::input(format!(
            "the training split has {present} class(es); a classifier needs at least two"
        )));
    }
    Ok(())
}

/// Rejects NaN and infinite activations, naming the first one.
fn check_finite(x: &impl RowBlocks) -> Result<()> {
    let mut found = None;
    x.for_each_block(0..x.shape().0, |start, block| {
        if found.is_some() {
            return;
        }
        let finite = match block.as_slice() {
            Some(s) => s.iter().all(|v| v.is_finite()),
            None => block.iter().all(|v| v.is_finite()),
        };
        if !finite {
            found = block
                .indexed_iter()
                .find(|(_, v)| !v.is_finite())
                .map(|((r, c), v)| (start + r, c, *v));
        }
    });
    match found {
        Some((r, c, v)) => Err(Error::input(format!(
            "the training activations contain {v} at row {r}, neuron {c}; NaN and infinite values cannot be fitted"
        ))),
        None => Ok(()),
    }
}

/// Fits the model on `x` (rows) and `y` (class ids below `n_classes`).
///
/// # Errors
/// Fewer than two classes present, empty data, non-finite values, or an
/// initial point of the wrong shape.
pub fn fit(
    x: impl RowBlocks,
    y: &[u32],
    n_classes: usize,
    options: &FitOptions,
    cx: &RunContext,
) -> Result<LogisticModel> {
    let x = &x;
    check_training_data(x, y, n_classes)?;
    let d = x.shape().1;
    let scaling = options.standardize.then(|| cx.install(|| Scaling::fit(x)));
    let (w0, b0) = match &options.init {
        Init::Zeros => (Array2::zeros((n_classes, d)), Array1::zeros(n_classes)),
        Init::TorchLike => {
            let bound = 1.0 / (d as f64).sqrt();
            let mut rng = cx.rng_for("probe-init");
            let w = Array2::from_shape_simple_fn((n_classes, d), || {
                (2.0 * rng.uniform() - 1.0) * bound
            });
            let b = Array1::from_shape_simple_fn(n_classes, || (2.0 * rng.uniform() - 1.0) * bound);
            (w, b)
        }
        Init::Given(w, b) => {
            if w.dim() != (n_classes, d) || b.len() != n_classes {
                return Err(Error::Shape {
                    what: "initial probe weights".into(),
                    expected: format!("{n_classes} × {d} and {n_classes}"),
                    found: format!("{} × {} and {}", w.nrows(), w.ncols(), b.len()),
                });
            }
            (w.clone(), b.clone())
        }
    };
    let (w, b, report) = match options.solver {
        Solver::NeuroxAdam(settings) => {
            check_finite(x)?;
            // Mini-batches of shuffled rows read the data in no order, so
            // this solver takes it in memory, as f32.
            let whole = x.rows_f32(0..x.shape().0);
            adam(
                whole.view(),
                y,
                scaling.as_ref(),
                &options.penalty,
                settings,
                w0,
                b0,
                cx,
            )?
        }
        Solver::WorkingSet(settings) => cx.install(|| {
            working_set::solve(
                x,
                y,
                scaling.as_ref(),
                &options.penalty,
                settings,
                (w0, b0),
                cx,
            )
        })?,
        Solver::Fista(settings) => cx.install(|| {
            fista(
                x,
                y,
                scaling.as_ref(),
                &options.penalty,
                settings,
                (w0, b0),
                cx,
            )
        })?,
    };
    if w.iter().chain(b.iter()).any(|v| !v.is_finite()) {
        return Err(Error::input(
            "the probe's weights diverged to NaN or infinity; lower the learning rate or check the activations' scale",
        ));
    }
    Ok(LogisticModel::new(w, b, scaling, report))
}

/// In-place softmax of one row of logits; returns log Σ exp (for the loss).
fn softmax_in_place(row: &mut [f64]) -> f64 {
    let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in row.iter_mut() {
        *v /= sum;
    }
    max + sum.ln()
}

// ---------------------------------------------------------------------------
// NeuroX-compatible mini-batch Adam.

#[allow(clippy::too_many_arguments)]
fn adam(
    x: ArrayView2<'_, f32>,
    y: &[u32],
    scaling: Option<&Scaling>,
    penalty: &Penalty,
    s: AdamSettings,
    mut w: Array2<f64>,
    mut b: Array1<f64>,
    cx: &RunContext,
) -> Result<(Array2<f64>, Array1<f64>, FitReport)> {
    let (n, d) = x.dim();
    let c = w.nrows();
    let (beta1, beta2, eps) = (0.9f64, 0.999f64, 1e-8f64);
    let mut m_w = Array2::<f64>::zeros((c, d));
    let mut v_w = Array2::<f64>::zeros((c, d));
    let mut m_b = Array1::<f64>::zeros(c);
    let mut v_b = Array1::<f64>::zeros(c);
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = cx.rng_for("probe-shuffle");
    let mut step = 0usize;
    let mut epoch_losses = Vec::with_capacity(s.epochs);
    // A batch larger than the data is the whole data (full-batch Adam).
    let batch = s.batch_size.clamp(1, n.max(1));
    let mut xb = Array2::<f64>::zeros((batch, d));
    for _ in 0..s.epochs {
        cx.check_cancelled()?;
        if s.shuffle {
            rng.shuffle(&mut order);
        }
        let mut epoch_loss = 0.0;
        for start in (0..n).step_by(batch) {
            let rows = &order[start..(start + batch).min(n)];
            let bsz = rows.len();
            // The batch in f64, standardised if requested.
            let mut xb = xb.slice_mut(s![..bsz, ..]);
            for (i, &r) in rows.iter().enumerate() {
                let mut dst = xb.row_mut(i);
                let src = x.row(r);
                match scaling {
                    None => dst
                        .iter_mut()
                        .zip(src)
                        .for_each(|(t, &v)| *t = f64::from(v)),
                    Some(sc) => dst
                        .iter_mut()
                        .zip(src)
                        .zip(sc.mean.iter().zip(sc.scale.iter()))
                        .for_each(|((t, &v), (&mu, &sd))| *t = (f64::from(v) - mu) / sd),
                }
            }
            let mut z = xb.dot(&w.t());
            z += &b;
            let mut ce = 0.0;
            for (i, mut row) in z.axis_iter_mut(Axis(0)).enumerate() {
                let label = y[rows[i]] as usize;
                let logit = row[label];
                let lse = softmax_in_place(row.as_slice_mut().expect("row-major logits"));
                ce += lse - logit;
                row[label] -= 1.0;
            }
            let bsz_f = bsz as f64;
            let loss = ce / bsz_f + penalty.value(&w);
            epoch_loss += loss;
            // Gradients: (P − Y)ᵀ X / B, plus the penalty's (sub)gradient.
            z /= bsz_f;
            let mut g_w = z.t().dot(&xb);
            let g_b = z.sum_axis(Axis(0));
            if penalty.l1 > 0.0 {
                // d|w|/dw = sign(w) with sign(0) = 0, as torch's abs backward.
                g_w.zip_mut_with(&w, |g, &wv| *g += penalty.l1 * sign(wv));
            }
            if penalty.l2 > 0.0 {
                match penalty.l2_form {
                    L2Form::Frobenius => {
                        let norm = w.iter().map(|v| v * v).sum::<f64>().sqrt();
                        if norm > 0.0 {
                            g_w.scaled_add(penalty.l2 / norm, &w);
                        }
                    }
                    L2Form::Squared => g_w.scaled_add(2.0 * penalty.l2, &w),
                }
            }
            step += 1;
            let bias1 = 1.0 - beta1.powi(step as i32);
            let bias2 = 1.0 - beta2.powi(step as i32);
            let step_size = s.learning_rate / bias1;
            let sqrt_bias2 = bias2.sqrt();
            let update = |p: &mut f64, m: &mut f64, v: &mut f64, g: f64| {
                *m = beta1 * *m + (1.0 - beta1) * g;
                *v = beta2 * *v + (1.0 - beta2) * g * g;
                // ε is added after dividing √v by √(1 − β2^t), as torch does.
                *p -= step_size * *m / (v.sqrt() / sqrt_bias2 + eps);
            };
            ndarray::Zip::from(&mut w)
                .and(&mut m_w)
                .and(&mut v_w)
                .and(&g_w)
                .for_each(|p, m, v, &g| update(p, m, v, g));
            ndarray::Zip::from(&mut b)
                .and(&mut m_b)
                .and(&mut v_b)
                .and(&g_b)
                .for_each(|p, m, v, &g| update(p, m, v, g));
        }
        epoch_losses.push(epoch_loss / n as f64);
    }
    let objective = full_objective(&x, y, scaling, penalty, &w, &b);
    let report = FitReport {
        solver: "neurox_adam".into(),
        iterations: step,
        data_passes: s.epochs as f64 + 1.0,
        objective,
        converged: true,
        zero_weights: w.iter().filter(|v| **v == 0.0).count(),
        epoch_losses,
    };
    Ok((w, b, report))
}

fn sign(v: f64) -> f64 {
    if v > 0.0 {
        1.0
    } else if v < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// F(W, b) on all rows, in f64.
fn full_objective(
    x: &impl RowBlocks,
    y: &[u32],
    scaling: Option<&Scaling>,
    penalty: &Penalty,
    w: &Array2<f64>,
    b: &Array1<f64>,
) -> f64 {
    let (we, be) = effective(w, b, scaling);
    let we32 = we.mapv(|v| v as f32);
    let mut loss = 0.0;
    for (rows, block) in row_blocks(x) {
        let z = logits_block(block.view(), &we32, &be);
        for (i, row) in z.axis_iter(Axis(0)).enumerate() {
            let mut r = row.to_vec();
            let label = y[rows.start + i] as usize;
            loss += softmax_in_place(&mut r) - row[label];
        }
    }
    loss / x.shape().0 as f64 + penalty.value(w)
}

// ---------------------------------------------------------------------------
// FISTA.

/// Consecutive iterations below the tolerance that end a FISTA run.
const PATIENCE: usize = 3;

/// Rows per block processed while it is in cache.
const BLOCK_ROWS: usize = 16;
/// Rows per chunk: the unit of parallel work and of the fixed-order sum.
const CHUNK_ROWS: usize = 2048;

/// Computes `each(start, end)` for the consecutive chunks of [`CHUNK_ROWS`]
/// rows of `0..n` in parallel, and hands each result to `fold` in chunk
/// order. Chunks run in waves of a few per thread, so only a wave of
/// results is held at once: a chunk's partial sums can be classes ×
/// neurons, and a store can have thousands of chunks. The results and the
/// fold order do not depend on the thread count, so neither does the sum.
fn fold_chunks<T: Send>(
    n: usize,
    each: impl Fn(usize, usize) -> T + Sync,
    mut fold: impl FnMut(usize, T),
) {
    let starts: Vec<usize> = (0..n).step_by(CHUNK_ROWS).collect();
    let wave = 4 * rayon::current_num_threads().max(1);
    for group in starts.chunks(wave) {
        let parts: Vec<T> = group
            .par_iter()
            .map(|&start| each(start, (start + CHUNK_ROWS).min(n)))
            .collect();
        for (&start, part) in group.iter().zip(parts) {
            fold(start, part);
        }
    }
}

fn row_blocks<X: RowBlocks>(
    x: &X,
) -> impl Iterator<Item = (std::ops::Range<usize>, CowArray<'_, f32, Ix2>)> {
    let n = x.shape().0;
    (0..n).step_by(BLOCK_ROWS).map(move |start| {
        let end = (start + BLOCK_ROWS).min(n);
        (start..end, x.rows_f32(start..end))
    })
}

/// `rows` row-major rows of `d` values as a matrix view.
fn rows_view(values: &[f32], rows: usize, d: usize) -> ArrayView2<'_, f32> {
    ArrayView2::from_shape((rows, d), values).expect("rows × columns values")
}

fn logits_block(
    block: ArrayView2<'_, f32>,
    w_eff: &Array2<f32>,
    b_eff: &Array1<f64>,
) -> Array2<f64> {
    let (rows, d) = block.dim();
    let c = w_eff.nrows();
    let mut z32 = vec![0.0f32; rows * c];
    let x = block.as_slice().expect("row-major activations");
    kernels::logits(
        x,
        d,
        w_eff.as_slice().expect("row-major weights"),
        c,
        &mut z32,
    );
    let mut z = Array2::from_shape_vec((rows, c), z32)
        .expect("rows × classes")
        .mapv(f64::from);
    z += b_eff;
    z
}

/// One pass over the data for FISTA. Given the candidate point `W_new` (as
/// effective weights) and the stored logits of the previous iterate, it
/// returns the loss at `W_new`, its logits, and the loss and gradient at the
/// next extrapolated point `Y = W_new + β (W_new − W_prev)`.
struct PassOutput {
    loss_new: f64,
    z_new: Array2<f64>,
    loss_next: f64,
    grad_w_raw: Array2<f64>,
    grad_b: Array1<f64>,
}

fn fused_pass(
    x: &impl RowBlocks,
    y: &[u32],
    w_eff: &Array2<f32>,
    b_eff: &Array1<f64>,
    z_prev: &Array2<f64>,
    beta: f64,
) -> PassOutput {
    let (n, d) = x.shape();
    let c = w_eff.nrows();
    // All-zero weights (the usual start) make every logit the bias: the
    // product is skipped, which saves half of the first pass.
    let zero_weights = w_eff.iter().all(|&v| v == 0.0);
    // Fixed-order reduction: independent of how chunks were scheduled.
    let mut out = PassOutput {
        loss_new: 0.0,
        z_new: Array2::zeros((n, c)),
        loss_next: 0.0,
        grad_w_raw: Array2::zeros((c, d)),
        grad_b: Array1::zeros(c),
    };
    // (loss at W_new, loss at Y, weight gradient, bias gradient, logits)
    type ChunkPartial = (f64, f64, Array2<f32>, Array1<f64>, Array2<f64>);
    let chunk = |start: usize, end: usize| -> ChunkPartial {
        let mut loss_new = 0.0;
        let mut loss_next = 0.0;
        let mut grad = Array2::<f32>::zeros((c, d));
        let mut grad_b = Array1::<f64>::zeros(c);
        let mut z_chunk = Array2::<f64>::zeros((end - start, c));
        // Per-row scratch, reused (small problems are dominated by the
        // per-row work, not the products).
        let mut tmp: Vec<f64> = Vec::with_capacity(c);
        let mut zy: Vec<f64> = Vec::with_capacity(c);
        let mut converted = Vec::new();
        for block_start in (start..end).step_by(BLOCK_ROWS) {
            let block_end = (block_start + BLOCK_ROWS).min(end);
            let values = x.rows_in(block_start..block_end, &mut converted);
            let z = if zero_weights {
                let mut z = Array2::<f64>::zeros((block_end - block_start, c));
                z += b_eff;
                z
            } else {
                logits_block(rows_view(values, block_end - block_start, d), w_eff, b_eff)
            };
            let mut g = vec![0.0f32; (block_end - block_start) * c];
            for i in 0..(block_end - block_start) {
                let r = block_start + i;
                let label = y[r] as usize;
                let zn = z.row(i);
                tmp.clear();
                tmp.extend(zn.iter());
                loss_new += softmax_in_place(&mut tmp) - zn[label];
                // Logits of the extrapolated point, by linearity.
                zy.clear();
                zy.extend(
                    zn.iter()
                        .zip(z_prev.row(r))
                        .map(|(&a, &p)| a + beta * (a - p)),
                );
                let zy_label = zy[label];
                loss_next += softmax_in_place(&mut zy) - zy_label;
                zy[label] -= 1.0;
                for (k, v) in zy.iter().enumerate() {
                    g[i * c + k] = *v as f32;
                    grad_b[k] += v;
                }
                z_chunk.row_mut(r - start).assign(&zn);
            }
            let upcoming = if block_end < end {
                x.f32_slice(block_end..(block_end + BLOCK_ROWS).min(end))
                    .unwrap_or(&[])
            } else {
                &[]
            };
            kernels::accumulate_gradient(
                &g,
                values,
                d,
                c,
                grad.as_slice_mut().expect("row-major gradient"),
                upcoming,
            );
        }
        (loss_new, loss_next, grad, grad_b, z_chunk)
    };
    fold_chunks(n, chunk, |start, (ln, lx, g, gb, z)| {
        out.loss_new += ln;
        out.loss_next += lx;
        out.grad_w_raw.zip_mut_with(&g, |a, &b| *a += f64::from(b));
        out.grad_b += &gb;
        out.z_new
            .slice_mut(s![start..start + z.nrows(), ..])
            .assign(&z);
    });
    let nf = n as f64;
    out.loss_new /= nf;
    out.loss_next /= nf;
    out.grad_w_raw /= nf;
    out.grad_b /= nf;
    out
}

/// Gradient with respect to standardised weights from the raw-space one:
/// `(Gᵀ X − (Gᵀ 1) μᵀ) / σ`.
fn to_solver_space(
    grad_raw: Array2<f64>,
    grad_b: &Array1<f64>,
    scaling: Option<&Scaling>,
) -> Array2<f64> {
    match scaling {
        None => grad_raw,
        Some(sc) => {
            let mut g = grad_raw;
            for (mut row, &gb) in g.axis_iter_mut(Axis(0)).zip(grad_b.iter()) {
                row.zip_mut_with(&sc.mean, |v, &mu| *v -= gb * mu);
                row /= &sc.scale;
            }
            g
        }
    }
}

/// The proximal operator of `t·(λ1‖W‖₁ + λ2 R(W))`: soft-thresholding, then
/// (Frobenius) group shrinkage or (squared) scaling. For the Frobenius form
/// the composition is exact (sparse-group-lasso prox with one group).
fn prox(v: &mut Array2<f64>, t: f64, penalty: &Penalty) {
    prox_slice(
        v.as_slice_mut().expect("weights are contiguous"),
        t,
        penalty,
    );
}

/// [`prox`] on the weights as one slice (zeros left out do not change it).
fn prox_slice(v: &mut [f64], t: f64, penalty: &Penalty) {
    if penalty.l1 > 0.0 {
        let thr = t * penalty.l1;
        v.iter_mut().for_each(|x| {
            *x = if *x > thr {
                *x - thr
            } else if *x < -thr {
                *x + thr
            } else {
                0.0
            }
        });
    }
    if penalty.l2 > 0.0 {
        match penalty.l2_form {
            L2Form::Frobenius => {
                let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
                let factor = if norm > 0.0 {
                    (1.0 - t * penalty.l2 / norm).max(0.0)
                } else {
                    0.0
                };
                v.iter_mut().for_each(|x| *x *= factor);
            }
            L2Form::Squared => {
                let factor = 1.0 / (1.0 + 2.0 * t * penalty.l2);
                v.iter_mut().for_each(|x| *x *= factor);
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn fista(
    x: &impl RowBlocks,
    y: &[u32],
    scaling: Option<&Scaling>,
    penalty: &Penalty,
    s: FistaSettings,
    (w0, b0): (Array2<f64>, Array1<f64>),
    cx: &RunContext,
) -> Result<(Array2<f64>, Array1<f64>, FitReport)> {
    let n = x.shape().0;
    let to_eff = |w: &Array2<f64>, b: &Array1<f64>| {
        let (we, be) = effective(w, b, scaling);
        (we.mapv(|v| v as f32), be)
    };
    // Initial pass: logits, loss and gradient at the start point.
    let (we, be) = to_eff(&w0, &b0);
    let zero_z = Array2::<f64>::zeros((n, w0.nrows()));
    let first = fused_pass(x, y, &we, &be, &zero_z, 0.0);
    if !first.loss_new.is_finite() || first.grad_w_raw.iter().any(|v| !v.is_finite()) {
        // Non-finite activations make the very first pass non-finite, so
        // the full scan (which names the value) only runs then.
        check_finite(x)?;
        return Err(Error::input(
            "the probe's loss is not finite at the start point; the activations are too large for single precision: standardise them",
        ));
    }
    let mut passes = 1;
    let mut w = w0;
    let mut b = b0;
    let mut z_w = first.z_new;
    let mut obj_w = first.loss_new + penalty.value(&w);
    // The extrapolated point Y and the loss and gradient there.
    let mut y_w = w.clone();
    let mut y_b = b.clone();
    let mut f_y = first.loss_next;
    let mut g_y = to_solver_space(first.grad_w_raw, &first.grad_b, scaling);
    let mut g_yb = first.grad_b;
    let mut t = 1.0f64;
    let mut momentum = 1.0f64;
    let mut small_steps = 0usize;
    let mut iterations = 0usize;
    let mut converged = false;
    let mut backtracked = false;
    let smooth_sq = |g: &Array2<f64>| g.iter().map(|v| v * v).sum::<f64>();
    // Squared L2 is handled inside the prox, so f is the data term only.
    while iterations < s.max_iter {
        cx.check_cancelled()?;
        iterations += 1;
        let next_momentum = (1.0 + (1.0 + 4.0 * momentum * momentum).sqrt()) / 2.0;
        let (w_new, b_new, out) = loop {
            let mut w_new = &y_w - &(&g_y * t);
            prox(&mut w_new, t, penalty);
            let b_new = &y_b - &(&g_yb * t);
            // Gradient-based restart: drop momentum when the step goes against it.
            let diff_w = &w_new - &w;
            let restart = (&y_w - &w_new)
                .iter()
                .zip(diff_w.iter())
                .map(|(a, b)| a * b)
                .sum::<f64>()
                + (&y_b - &b_new)
                    .iter()
                    .zip((&b_new - &b).iter())
                    .map(|(a, b)| a * b)
                    .sum::<f64>()
                > 0.0;
            let beta = if restart {
                0.0
            } else {
                (momentum - 1.0) / next_momentum
            };
            let (we, be) = to_eff(&w_new, &b_new);
            let out = fused_pass(x, y, &we, &be, &z_w, beta);
            passes += 1;
            // Sufficient decrease of the smooth part at the candidate.
            let dw = &w_new - &y_w;
            let db = &b_new - &y_b;
            let lin = (&g_y * &dw).sum() + (&g_yb * &db).sum();
            let quad = (smooth_sq(&dw) + db.iter().map(|v| v * v).sum::<f64>()) / (2.0 * t);
            if out.loss_new <= f_y + lin + quad + 1e-12 * f_y.abs().max(1.0) || t < 1e-12 {
                // Secant curvature along the step: how much of the quadratic
                // bound the loss actually used. It sets the next step.
                let used = (out.loss_new - f_y - lin) / quad.max(f64::MIN_POSITIVE);
                break (w_new, b_new, (out, beta, restart, used));
            }
            // The secant curvature says how far the step overshot: shrink
            // by that much (at least halve), not blindly by half.
            let used = (out.loss_new - f_y - lin) / quad.max(f64::MIN_POSITIVE);
            t *= (0.9 / used).clamp(0.1, 0.5);
        };
        let (out, beta, restart, used) = out;
        let obj_new = out.loss_new + penalty.value(&w_new);
        // Next extrapolated point, matching the logits used in the pass.
        y_w = &w_new + &((&w_new - &w) * beta);
        y_b = &b_new + &((&b_new - &b) * beta);
        f_y = out.loss_next;
        g_yb = out.grad_b.clone();
        g_y = to_solver_space(out.grad_w_raw, &out.grad_b, scaling);
        z_w = out.z_new;
        let improvement = (obj_w - obj_new) / obj_new.abs().max(1e-12);
        if std::env::var_os("LCA_TRACE_SOLVER").is_some() {
            eprintln!(
                "fista {iterations}: objective {obj_new:.6} step {t:.3e} beta {beta:.3} passes {passes}"
            );
        }
        w = w_new;
        b = b_new;
        obj_w = obj_new;
        momentum = if restart { 1.0 } else { next_momentum };
        small_steps = if improvement.abs() < s.tol {
            small_steps + 1
        } else {
            0
        };
        if small_steps >= PATIENCE {
            converged = true;
            break;
        }
        // Next step from the local curvature L ≈ used / t: aim at 0.5 / L,
        // never shorter than the accepted one and at most `growth` times
        // longer (small `used` means the loss is flatter than assumed).
        // Until the first overshoot the step may grow faster: the start
        // point's curvature is usually far above the solution's.
        backtracked |= passes > iterations + 1;
        let growth = if backtracked { 2.0 } else { 4.0 };
        t *= (0.5 / used.max(0.5 / growth)).clamp(1.0, growth);
    }
    let report = FitReport {
        solver: "fista".into(),
        iterations,
        data_passes: passes as f64,
        objective: obj_w,
        converged,
        zero_weights: w.iter().filter(|v| **v == 0.0).count(),
        epoch_losses: Vec::new(),
    };
    Ok((w, b, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lca_testkit::data::planted_xy;

    #[test]
    fn chunks_are_folded_in_order_in_waves_at_any_thread_count() {
        let n = 37 * CHUNK_ROWS + 5;
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let seen = std::sync::atomic::AtomicUsize::new(0);
            let mut folded = Vec::new();
            let mut most_ahead = 0;
            pool.install(|| {
                fold_chunks(
                    n,
                    |start, end| {
                        seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        (start, end)
                    },
                    |start, range| {
                        // Chunks computed but not folded yet: at most a wave.
                        let ahead = seen.load(std::sync::atomic::Ordering::SeqCst) - folded.len();
                        most_ahead = most_ahead.max(ahead);
                        assert_eq!(start, range.0);
                        folded.push(range);
                    },
                );
            });
            let expected: Vec<(usize, usize)> = (0..n)
                .step_by(CHUNK_ROWS)
                .map(|s| (s, (s + CHUNK_ROWS).min(n)))
                .collect();
            assert_eq!(folded, expected, "{threads} thread(s)");
            assert!(
                most_ahead <= 4 * threads,
                "{most_ahead} results held at {threads} thread(s)"
            );
        }
    }

    fn fista_options(l1: f64, l2: f64, l2_form: L2Form, tol: f64) -> FitOptions {
        FitOptions {
            penalty: Penalty { l1, l2, l2_form },
            solver: Solver::Fista(FistaSettings {
                tol,
                max_iter: 5000,
            }),
            standardize: false,
            init: Init::Zeros,
        }
    }

    /// Plain proximal gradient with a fixed, safe step: slow and obviously
    /// correct, for reference.
    fn ista_reference(
        x: &Array2<f32>,
        y: &[u32],
        c: usize,
        penalty: &Penalty,
        iterations: usize,
    ) -> f64 {
        let (n, d) = x.dim();
        let xs = x.mapv(f64::from);
        // L ≤ ½ λmax(X̃ᵀX̃)/N with X̃ = [X 1]; bound λmax by the Frobenius norm².
        let lipschitz = 0.5 * (xs.iter().map(|v| v * v).sum::<f64>() + n as f64) / n as f64;
        let t = 1.0 / lipschitz;
        let mut w = Array2::<f64>::zeros((c, d));
        let mut b = Array1::<f64>::zeros(c);
        for _ in 0..iterations {
            let mut z = xs.dot(&w.t()) + &b;
            for (i, mut row) in z.axis_iter_mut(Axis(0)).enumerate() {
                softmax_in_place(row.as_slice_mut().unwrap());
                row[y[i] as usize] -= 1.0;
            }
            z /= n as f64;
            let gw = z.t().dot(&xs);
            let gb = z.sum_axis(Axis(0));
            w = &w - &(gw * t);
            prox(&mut w, t, penalty);
            b = &b - &(gb * t);
        }
        full_objective(&x.view(), y, None, penalty, &w, &b)
    }

    /// A progress sink that says the run must stop.
    struct Stopping;

    impl lca_core::context::Progress for Stopping {
        fn start(&self, _: &str, _: u64, _: &str) {}
        fn advance(&self, _: u64) {}
        fn finish(&self) {}
        fn warn(&self, _: &str) {}
        fn cancelled(&self) -> bool {
            true
        }
    }

    #[test]
    fn both_solvers_stop_when_the_run_is_cancelled() {
        let (x, y) = planted_xy(200, 8, 3, 1, 4);
        let cx = RunContext::new(0, 1).with_progress(std::sync::Arc::new(Stopping));
        let mut opts = fista_options(0.01, 0.0, L2Form::Frobenius, 1e-6);
        let err = fit(x.view(), &y, 3, &opts, &cx).unwrap_err();
        assert!(matches!(err, Error::Cancelled), "{err}");
        opts.solver = Solver::NeuroxAdam(AdamSettings::default());
        let err = fit(x.view(), &y, 3, &opts, &cx).unwrap_err();
        assert!(matches!(err, Error::Cancelled), "{err}");
        // Without the request, the same fit completes.
        assert!(fit(x.view(), &y, 3, &opts, &RunContext::new(0, 1)).is_ok());
    }

    #[test]
    fn a_stored_model_predicts_bit_for_bit_as_the_trained_one() {
        let (x, y) = planted_xy(300, 10, 3, 1, 4);
        for standardize in [false, true] {
            let mut opts = fista_options(0.01, 0.01, L2Form::Frobenius, 1e-4);
            opts.standardize = standardize;
            let model = fit(x.view(), &y, 3, &opts, &RunContext::new(0, 1)).unwrap();
            let extra = BTreeMap::from([("classes".to_string(), "[\"a\"]".to_string())]);
            let bytes = model.to_bytes(&extra).unwrap();
            let (restored, metadata) = LogisticModel::from_bytes(&bytes).unwrap();
            assert_eq!(metadata, extra);
            assert_eq!(restored.report, model.report);
            assert_eq!(restored.weights, model.weights);
            assert_eq!(restored.bias, model.bias);
            assert_eq!(restored.scaling, model.scaling);
            let (a, b) = (
                model.predict_proba(x.view()).unwrap(),
                restored.predict_proba(x.view()).unwrap(),
            );
            assert!(a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()));
        }
        // Damaged bytes are an error, never a panic or a different model.
        let model = fit(
            x.view(),
            &y,
            3,
            &fista_options(0.01, 0.0, L2Form::Frobenius, 1e-3),
            &RunContext::new(0, 1),
        )
        .unwrap();
        let bytes = model.to_bytes(&BTreeMap::new()).unwrap();
        for cut in [0, 7, bytes.len() / 2, bytes.len() - 1] {
            assert!(
                LogisticModel::from_bytes(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn fista_reaches_the_reference_optimum() {
        let (x, y) = planted_xy(200, 8, 3, 1, 4);
        for (l1, l2, form) in [
            (0.01, 0.0, L2Form::Frobenius),
            (0.005, 0.02, L2Form::Frobenius),
            (0.0, 0.01, L2Form::Squared),
            (0.02, 0.01, L2Form::Squared),
        ] {
            let opts = fista_options(l1, l2, form, 1e-10);
            let model = fit(x.view(), &y, 3, &opts, &RunContext::new(0, 1)).unwrap();
            assert!(model.report.converged, "{:?}", model.report);
            let reference = ista_reference(&x, &y, 3, &opts.penalty, 20_000);
            let rel = (model.report.objective - reference) / reference;
            assert!(
                rel.abs() < 1e-6,
                "λ1={l1} λ2={l2} {form:?}: fista {} vs reference {reference}",
                model.report.objective
            );
        }
    }

    #[test]
    fn lasso_zeroes_the_noise_neurons_exactly() {
        let (x, y) = planted_xy(2000, 40, 4, 1, 7);
        let truth = lca_testkit::data::planted_columns(2000, 40, 4, 1, 7);
        let model = fit(
            x.view(),
            &y,
            4,
            &fista_options(0.02, 0.0, L2Form::Frobenius, 1e-6),
            &RunContext::new(0, 1),
        )
        .unwrap();
        for j in 0..40 {
            let column_nonzero = model.weights.column(j).iter().any(|&v| v != 0.0);
            assert_eq!(
                column_nonzero,
                truth.contains(&(j as u32)),
                "neuron {j}: weights {:?}",
                model.weights.column(j)
            );
        }
        assert!(model.report.zero_weights > 100, "{:?}", model.report);
    }

    #[test]
    fn thread_count_does_not_change_the_result() {
        let (x, y) = planted_xy(5000, 30, 3, 2, 2);
        let opts = fista_options(0.001, 0.001, L2Form::Frobenius, 1e-6);
        let a = fit(x.view(), &y, 3, &opts, &RunContext::new(0, 1)).unwrap();
        let b = fit(x.view(), &y, 3, &opts, &RunContext::new(0, 3)).unwrap();
        assert_eq!(a.weights, b.weights);
        assert_eq!(a.bias, b.bias);
        assert_eq!(a.report, b.report);
    }

    #[test]
    fn standardising_on_the_fly_equals_fitting_standardised_data() {
        let (mut x, y) = planted_xy(400, 6, 3, 1, 3);
        // Give neurons very different offsets and scales.
        for (j, mut col) in x.axis_iter_mut(Axis(1)).enumerate() {
            col.mapv_inplace(|v| v * (1.0 + 3.0 * j as f32) + 10.0 * j as f32);
        }
        let mut opts = fista_options(0.01, 0.01, L2Form::Frobenius, 1e-10);
        opts.standardize = true;
        let on_the_fly = fit(x.view(), &y, 3, &opts, &RunContext::new(0, 1)).unwrap();
        let sc = Scaling::fit(&x.view());
        let xs = Array2::from_shape_fn(x.dim(), |(i, j)| {
            ((f64::from(x[[i, j]]) - sc.mean[j]) / sc.scale[j]) as f32
        });
        opts.standardize = false;
        let explicit = fit(xs.view(), &y, 3, &opts, &RunContext::new(0, 1)).unwrap();
        // The logits of raw inputs with large offsets are computed in f32,
        // so agreement is to about 1e-4 relative, not to the last bit.
        for (a, b) in on_the_fly.weights.iter().zip(explicit.weights.iter()) {
            assert!((a - b).abs() < 1e-3 * b.abs().max(1.0), "{a} vs {b}");
        }
        let p1 = on_the_fly.predict_proba(x.view()).unwrap();
        let p2 = explicit.predict_proba(xs.view()).unwrap();
        for (a, b) in p1.iter().zip(p2.iter()) {
            assert!((a - b).abs() < 1e-3, "{a} vs {b}");
        }
    }

    #[test]
    fn degenerate_data_is_rejected() {
        let x = Array2::<f32>::zeros((4, 2));
        let err = fit(
            x.view(),
            &[1, 1, 1, 1],
            2,
            &fista_options(0.0, 0.0, L2Form::Frobenius, 1e-4),
            &RunContext::new(0, 1),
        )
        .unwrap_err();
        assert!(err.to_string().contains("1 class(es)"), "{err}");
        let mut x = Array2::<f32>::zeros((4, 2));
        x[[2, 1]] = f32::NAN;
        let err = fit(
            x.view(),
            &[0, 1, 0, 1],
            2,
            &fista_options(0.0, 0.0, L2Form::Frobenius, 1e-4),
            &RunContext::new(0, 1),
        )
        .unwrap_err();
        assert!(err.to_string().contains("row 2, neuron 1"), "{err}");
        let err = fit(
            Array2::<f32>::zeros((0, 2)).view(),
            &[],
            2,
            &fista_options(0.0, 0.0, L2Form::Frobenius, 1e-4),
            &RunContext::new(0, 1),
        )
        .unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
    }

    #[test]
    fn adam_zero_start_with_frobenius_penalty_stays_finite() {
        let (x, y) = planted_xy(100, 5, 2, 1, 1);
        let opts = FitOptions {
            penalty: Penalty {
                l1: 0.01,
                l2: 0.01,
                l2_form: L2Form::Frobenius,
            },
            solver: Solver::NeuroxAdam(AdamSettings::default()),
            standardize: false,
            init: Init::Zeros,
        };
        let model = fit(x.view(), &y, 2, &opts, &RunContext::new(0, 1)).unwrap();
        assert!(model.weights.iter().all(|v| v.is_finite()));
    }
}

/// Sums over some rows of a softmax probe's data term, for solvers that
/// run elsewhere and add the sums of several workers (see
/// [`softmax_pass`]).
#[derive(Clone, Debug)]
pub struct SoftmaxSums {
    /// Rows summed.
    pub rows: usize,
    /// Σ cross-entropy.
    pub loss: f64,
    /// Rows whose most likely class (the first, on ties) is their label.
    pub correct: usize,
    /// Σ (p − onehot) ⊗ x, classes × neurons, when asked for.
    pub grad_w: Option<Array2<f64>>,
    /// Σ (p − onehot), when the gradient was asked for.
    pub grad_b: Option<Array1<f64>>,
}

impl SoftmaxSums {
    /// Nothing summed yet, for `classes` × `neurons` weights.
    pub fn zero(classes: usize, neurons: usize, gradient: bool) -> Self {
        SoftmaxSums {
            rows: 0,
            loss: 0.0,
            correct: 0,
            grad_w: gradient.then(|| Array2::zeros((classes, neurons))),
            grad_b: gradient.then(|| Array1::zeros(classes)),
        }
    }

    /// Adds the sums of other rows.
    pub fn add(&mut self, other: &SoftmaxSums) {
        self.rows += other.rows;
        self.loss += other.loss;
        self.correct += other.correct;
        if let (Some(a), Some(b)) = (&mut self.grad_w, &other.grad_w) {
            *a += b;
        }
        if let (Some(a), Some(b)) = (&mut self.grad_b, &other.grad_b) {
            *a += b;
        }
    }
}

/// The sums of the cross-entropy of `softmax(W x + b)` over the rows of
/// `x` with labels `y`, the rows it classifies right, and (with
/// `gradient`) the sums of its gradient with respect to `W` and `b`: one
/// pass of a data-parallel solver. Rows are summed in fixed chunks whose
/// sums are added in order, so the result does not depend on the thread
/// count; a caller that adds the sums of consecutive row ranges in order
/// gets the same bits whatever the ranges.
///
/// # Errors
/// When the shapes disagree or a label is not a class of `w`.
pub fn softmax_pass(
    x: impl RowBlocks,
    y: &[u32],
    w: &Array2<f32>,
    b: &Array1<f64>,
    gradient: bool,
) -> Result<SoftmaxSums> {
    let (n, d) = x.shape();
    let c = w.nrows();
    if w.ncols() != d || b.len() != c || y.len() != n {
        return Err(Error::Shape {
            what: "a softmax pass".into(),
            expected: format!("{n} labels, weights of {d} neurons and {c} biases"),
            found: format!(
                "{} labels, weights of {} neurons and {} biases",
                y.len(),
                w.ncols(),
                b.len()
            ),
        });
    }
    if let Some(&label) = y.iter().find(|&&l| l as usize >= c) {
        return Err(Error::input(format!(
            "label {label} is not one of the probe's {c} classes"
        )));
    }
    let x = &x;
    let mut total = SoftmaxSums::zero(c, d, gradient);
    let chunk = |start: usize, end: usize| {
        let mut sums = SoftmaxSums::zero(c, d, gradient);
        sums.rows = end - start;
        let mut grad = gradient.then(|| vec![0.0f32; c * d]);
        let mut row_logits: Vec<f64> = Vec::with_capacity(c);
        let mut converted = Vec::new();
        for block_start in (start..end).step_by(BLOCK_ROWS) {
            let block_end = (block_start + BLOCK_ROWS).min(end);
            let values = x.rows_in(block_start..block_end, &mut converted);
            let z = logits_block(rows_view(values, block_end - block_start, d), w, b);
            let mut residual = vec![0.0f32; (block_end - block_start) * c];
            for (i, zr) in z.outer_iter().enumerate() {
                let label = y[block_start + i] as usize;
                let best = zr
                    .iter()
                    .enumerate()
                    .fold(
                        (0, f64::NEG_INFINITY),
                        |acc, (k, &v)| {
                            if v > acc.1 { (k, v) } else { acc }
                        },
                    )
                    .0;
                sums.correct += usize::from(best == label);
                row_logits.clear();
                row_logits.extend(zr.iter());
                sums.loss += softmax_in_place(&mut row_logits) - zr[label];
                if let Some(grad_b) = &mut sums.grad_b {
                    row_logits[label] -= 1.0;
                    for (k, v) in row_logits.iter().enumerate() {
                        residual[i * c + k] = *v as f32;
                        grad_b[k] += v;
                    }
                }
            }
            if let Some(grad) = &mut grad {
                kernels::accumulate_gradient(&residual, values, d, c, grad, &[]);
            }
        }
        if let (Some(total), Some(grad)) = (&mut sums.grad_w, grad) {
            total
                .iter_mut()
                .zip(grad)
                .for_each(|(t, g)| *t = f64::from(g));
        }
        sums
    };
    fold_chunks(n, chunk, |_, part| total.add(&part));
    Ok(total)
}
