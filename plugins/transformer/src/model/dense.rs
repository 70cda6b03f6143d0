//! The parts every family shares: dense layers with weights in f32,
//! bfloat16 or a GGUF file's quantized blocks, their activations, norms, and
//! candle's errors as `lca`'s.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;

use candle_core::quantized::{QStorage, QTensor};
use candle_core::{Device, Tensor};
use candle_nn::{LayerNorm, VarBuilder};
use lca_core::{Error, Result};
use lca_linear::kernels::bf16::{self, PackedWeights};
use lca_linear::kernels::elementwise::{self, Gate, Gelu};
use rayon::prelude::*;

use crate::ops::{AddBias, AddBiasGelu, AddBiasResidual, map_rows, with_values};

fn cerr(e: candle_core::Error) -> Error {
    Error::input(format!("transformer computation failed: {e}"))
}

/// Maps candle errors into `lca` errors.
pub(crate) trait CandleResult<T> {
    fn lca(self) -> Result<T>;
}

impl<T> CandleResult<T> for candle_core::Result<T> {
    fn lca(self) -> Result<T> {
        self.map_err(cerr)
    }
}

/// The nonlinearity of an MLP, by its Hugging Face name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Activation {
    Gelu(Gelu),
    Relu,
    Silu,
}

impl Activation {
    pub(crate) fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "gelu" => Activation::Gelu(Gelu::Erf),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::Gelu(Gelu::Tanh),
            "relu" => Activation::Relu,
            "silu" | "swish" => Activation::Silu,
            other => {
                return Err(Error::input(format!(
                    "activation `{other}` is not supported (gelu, gelu_new, gelu_pytorch_tanh, \
                     gelu_fast, relu, silu)"
                )));
            }
        })
    }

    /// The gate of a gated MLP with this nonlinearity.
    pub(crate) fn gate(self) -> Result<Gate> {
        match self {
            Activation::Silu => Ok(Gate::Silu),
            Activation::Gelu(kind) => Ok(Gate::Gelu(kind)),
            Activation::Relu => Err(Error::input(
                "a gated MLP with `relu` is not supported (silu or gelu)",
            )),
        }
    }

    /// `x ← act(x + bias)`, in place on the product `x`.
    pub(crate) fn apply_with_bias(&self, x: &Tensor, bias: &[f32]) -> candle_core::Result<Tensor> {
        match self {
            Activation::Gelu(kind) => x.inplace_op1(&AddBiasGelu(bias, *kind))?,
            Activation::Relu => {
                x.inplace_op1(&AddBias(bias))?;
                return x.relu();
            }
            Activation::Silu => {
                x.inplace_op1(&AddBias(bias))?;
                return x.silu();
            }
        }
        Ok(x.clone())
    }
}

lca_core::param_enum! {
    /// Precision of the models' dense-layer products.
    pub enum Compute {
        /// 32-bit floats throughout (within 1e-4 of the reference
        /// implementation).
        F32 = "f32",
        /// Inputs and weights of the dense layers rounded to bfloat16,
        /// products summed in `f32`, with the AVX512-BF16 instructions;
        /// `f32` on CPUs without them.
        Bf16 = "bf16",
    }
}

impl Compute {
    /// What this CPU will run: `bf16` only where it has the instructions.
    pub fn effective(self) -> Compute {
        match self {
            Compute::Bf16 if bf16::supported() => Compute::Bf16,
            _ => Compute::F32,
        }
    }
}

lca_core::param_enum! {
    /// How the dense-layer weights are held in memory, which is most of a
    /// model's memory (see docs/sources.md for an 8B model).
    pub enum Weights {
        /// 32-bit floats: 4 bytes a parameter.
        F32 = "f32",
        /// Rounded to bfloat16 as each block is read: 2 bytes a parameter.
        /// Products are in bfloat16 with `f32` sums where the CPU has
        /// AVX512-BF16, and in `f32` from the bfloat16 values where it has
        /// not.
        Bf16 = "bf16",
        /// A GGUF file's blocks as stored (about 0.6 bytes a parameter in
        /// Q4_1, 1.1 in Q8_0); each layer is expanded to `f32` just before
        /// its product, so activations equal those of `f32` weights.
        Quantized = "quantized",
    }
}

/// How a model's dense layers are read, held and multiplied.
pub(crate) struct Form {
    /// Precision of the products (already what this CPU can run).
    pub(crate) compute: Compute,
    /// How the weights are held.
    pub(crate) weights: Weights,
    /// A GGUF file's dense weights under Hugging Face names, each taken
    /// when its layer is loaded; empty for other checkpoints.
    blocks: RefCell<HashMap<String, QTensor>>,
}

impl Form {
    pub(crate) fn new(
        compute: Compute,
        weights: Weights,
        blocks: HashMap<String, QTensor>,
    ) -> Self {
        Form {
            compute,
            weights,
            blocks: RefCell::new(blocks),
        }
    }

    /// Whether weights read in `f32` are packed to bfloat16 once their
    /// block is loaded.
    fn packs(&self) -> bool {
        self.weights == Weights::Bf16 || self.compute == Compute::Bf16
    }

    /// The weight `outputs × inputs` under `vb`: the GGUF blocks kept or
    /// expanded as the form asks, or the checkpoint's tensor in `f32`.
    fn weight(
        &self,
        vb: &VarBuilder<'_>,
        outputs: usize,
        inputs: usize,
    ) -> candle_core::Result<Weight> {
        let name = format!("{}.weight", vb.prefix());
        let Some(blocks) = self.blocks.borrow_mut().remove(&name) else {
            return Ok(Weight::F32(vb.get((outputs, inputs), "weight")?));
        };
        if blocks.shape().dims() != [outputs, inputs] {
            candle_core::bail!(
                "{name} has shape {:?}, not [{outputs}, {inputs}]",
                blocks.shape().dims()
            );
        }
        Ok(match self.weights {
            Weights::Quantized => {
                Weight::Quantized(Quantized::split(&blocks, self.compute == Compute::Bf16)?)
            }
            Weights::F32 | Weights::Bf16 => Weight::F32(blocks.dequantize(&Device::Cpu)?),
        })
    }
}

/// Rows of a quantized weight per part: the unit of parallel expansion.
const QUANTIZED_ROWS: usize = 64;

/// A weight kept as GGUF blocks, in parts of [`QUANTIZED_ROWS`] rows so
/// that expanding it runs on every thread of the run's pool (candle's own
/// dequantization is sequential).
struct Quantized {
    parts: Vec<QTensor>,
    outputs: usize,
    inputs: usize,
    /// Expanded weights are packed for bfloat16 products.
    bf16: bool,
}

impl Quantized {
    /// Cuts `blocks` (`outputs × inputs`, whole blocks per row) into parts.
    fn split(blocks: &QTensor, bf16: bool) -> candle_core::Result<Self> {
        let (outputs, inputs) = blocks.shape().dims2()?;
        let dtype = blocks.dtype();
        if !inputs.is_multiple_of(dtype.block_size()) {
            candle_core::bail!(
                "rows of {inputs} values are not whole {dtype:?} blocks of {}",
                dtype.block_size()
            );
        }
        let row_bytes = inputs / dtype.block_size() * dtype.type_size();
        let data = blocks.data()?;
        if data.len() != outputs * row_bytes {
            candle_core::bail!("{} bytes are not {outputs} rows of {row_bytes}", data.len());
        }
        let parts = data
            .chunks(QUANTIZED_ROWS * row_bytes)
            .map(|bytes| {
                let storage = QStorage::from_data(Cow::Borrowed(bytes), &Device::Cpu, dtype)?;
                QTensor::new(storage, (bytes.len() / row_bytes, inputs))
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Quantized {
            parts,
            outputs,
            inputs,
            bf16,
        })
    }

    /// The weight in `f32`, row-major, expanded part by part in parallel.
    fn expand(&self) -> candle_core::Result<Vec<f32>> {
        let mut weight = vec![0.0f32; self.outputs * self.inputs];
        let mut pieces = Vec::with_capacity(self.parts.len());
        let mut rest = weight.as_mut_slice();
        for part in &self.parts {
            let (piece, tail) = rest.split_at_mut(part.shape().elem_count());
            pieces.push((part, piece));
            rest = tail;
        }
        pieces.into_par_iter().try_for_each(|(part, piece)| {
            let values = part.dequantize(&Device::Cpu)?;
            with_values(&values, "expanding quantized weights", |v| {
                piece.copy_from_slice(v);
                Ok(())
            })
        })?;
        Ok(weight)
    }
}

/// The weight of a dense layer in the form its product needs.
enum Weight {
    /// A candle tensor, `outputs × inputs`.
    F32(Tensor),
    /// Rounded to bfloat16 and packed for `lca_linear`'s product.
    Bf16(PackedWeights),
    /// GGUF blocks, expanded for each product.
    Quantized(Quantized),
}

/// `x Wᵀ` with `W` packed in bfloat16.
fn bf16_product(x: &Tensor, packed: &PackedWeights) -> candle_core::Result<Tensor> {
    let (rows, _) = x.dims2()?;
    let out = with_values(x, "bf16 product", |values| {
        if values.len() != rows * packed.inputs() {
            candle_core::bail!(
                "bf16 product: {} values are not {rows} rows of {}",
                values.len(),
                packed.inputs()
            );
        }
        Ok(bf16::product_to_vec(values, packed))
    })?;
    Tensor::from_vec(out, (rows, packed.outputs()), x.device())
}

/// `x Wᵀ` with `W` given as `f32` values, `outputs × inputs`.
fn f32_product(x: &Tensor, weight: &[f32], outputs: usize) -> candle_core::Result<Tensor> {
    let (rows, inputs) = x.dims2()?;
    if weight.len() != outputs * inputs {
        candle_core::bail!(
            "product: {} weights are not {outputs} rows of {inputs}",
            weight.len()
        );
    }
    let out = with_values(x, "product", |values| {
        Ok(lca_linear::kernels::product_transposed(
            values, weight, rows, inputs, outputs,
        ))
    })?;
    Tensor::from_vec(out, (rows, outputs), x.device())
}

/// A dense layer `y = x Wᵀ + b`; the bias is plain values (zeros where the
/// checkpoint has none) for the fused step after the product.
pub(crate) struct Dense {
    weight: Weight,
    pub(crate) bias: Vec<f32>,
}

impl Dense {
    /// Reads `weight` (`outputs × inputs`) and `bias`, which must exist.
    pub(crate) fn load(
        inputs: usize,
        outputs: usize,
        vb: VarBuilder<'_>,
    ) -> candle_core::Result<Self> {
        Ok(Dense {
            weight: Weight::F32(vb.get((outputs, inputs), "weight")?),
            bias: vb.get(outputs, "bias")?.to_vec1()?,
        })
    }

    /// Reads `weight` as `form` holds it, and `bias` where the checkpoint
    /// has one.
    pub(crate) fn load_maybe_biased(
        inputs: usize,
        outputs: usize,
        vb: VarBuilder<'_>,
        form: &Form,
    ) -> candle_core::Result<Self> {
        let bias = if vb.contains_tensor("bias") {
            vb.get(outputs, "bias")?.to_vec1()?
        } else {
            vec![0.0; outputs]
        };
        Ok(Dense {
            weight: form.weight(&vb, outputs, inputs)?,
            bias,
        })
    }

    /// Reads a GPT-2 `Conv1D`: the same layer with its weight stored
    /// `inputs × outputs`.
    pub(crate) fn load_transposed(
        inputs: usize,
        outputs: usize,
        vb: VarBuilder<'_>,
    ) -> candle_core::Result<Self> {
        Ok(Dense {
            weight: Weight::F32(vb.get((inputs, outputs), "weight")?.t()?.contiguous()?),
            bias: vb.get(outputs, "bias")?.to_vec1()?,
        })
    }

    /// Stacks the outputs of several layers with the same input into one.
    /// The parts are all `f32` (not yet packed) or all quantized.
    pub(crate) fn stack<const N: usize>(parts: [Dense; N]) -> candle_core::Result<Self> {
        let bias = parts.iter().flat_map(|d| d.bias.iter().copied()).collect();
        let mut tensors = Vec::new();
        let mut quantized: Option<Quantized> = None;
        for part in parts {
            match (part.weight, &mut quantized) {
                (Weight::F32(w), None) => tensors.push(w),
                (Weight::Quantized(q), None) if tensors.is_empty() => quantized = Some(q),
                (Weight::Quantized(q), Some(stacked)) if stacked.inputs == q.inputs => {
                    stacked.outputs += q.outputs;
                    stacked.parts.extend(q.parts);
                }
                _ => candle_core::bail!(
                    "layers are stacked before packing, from weights held alike with one input width"
                ),
            }
        }
        let weight = match quantized {
            Some(q) => Weight::Quantized(q),
            None => Weight::F32(Tensor::cat(&tensors, 0)?),
        };
        Ok(Dense { weight, bias })
    }

    /// Rounds an `f32` weight to bfloat16 and packs it for the bf16
    /// product.
    fn pack_bf16(&mut self) -> candle_core::Result<()> {
        if let Weight::F32(w) = &self.weight {
            let (outputs, inputs) = w.dims2()?;
            let values = w.flatten_all()?.to_vec1::<f32>()?;
            self.weight = Weight::Bf16(PackedWeights::pack(&values, outputs, inputs));
        }
        Ok(())
    }

    /// `x Wᵀ` for rows `x` (`[rows, inputs]`), bias not yet added.
    pub(crate) fn product(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match &self.weight {
            Weight::F32(w) => {
                let (outputs, _) = w.dims2()?;
                with_values(w, "product", |weight| f32_product(x, weight, outputs))
            }
            Weight::Bf16(packed) if bf16::supported() => bf16_product(x, packed),
            // Held in bfloat16 for memory; without the instructions the
            // `f32` product of the unpacked values is the fast one.
            Weight::Bf16(packed) => f32_product(x, &packed.unpack(), packed.outputs()),
            Weight::Quantized(q) => {
                let weight = q.expand()?;
                if q.bf16 {
                    bf16_product(x, &PackedWeights::pack(&weight, q.outputs, q.inputs))
                } else {
                    f32_product(x, &weight, q.outputs)
                }
            }
        }
    }

    /// `x Wᵀ + b`.
    pub(crate) fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = self.product(x)?;
        y.inplace_op1(&AddBias(&self.bias))?;
        Ok(y)
    }

    /// `x Wᵀ + b + residual`.
    pub(crate) fn forward_plus(
        &self,
        x: &Tensor,
        residual: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let y = self.product(x)?;
        y.inplace_op2(residual, &AddBiasResidual(&self.bias))?;
        Ok(y)
    }

    /// `x Wᵀ + b + residual`, and when `keep_branch`, a copy of `x Wᵀ + b`
    /// taken before the residual is added (the attention site).
    pub(crate) fn forward_plus_branch(
        &self,
        x: &Tensor,
        residual: &Tensor,
        keep_branch: bool,
    ) -> candle_core::Result<(Tensor, Option<Tensor>)> {
        if !keep_branch {
            return Ok((self.forward_plus(x, residual)?, None));
        }
        // The branch is recorded, so the sum goes to a new tensor rather
        // than into it.
        let branch = self.forward(x)?;
        let summed = (&branch + residual)?;
        Ok((summed, Some(branch)))
    }
}

/// Packs the `f32` weights of `layers` in bfloat16 when `form` asks for
/// it. Families call it as each block is loaded, so that at most one
/// block's weights are ever held in `f32` beside the packed ones.
pub(crate) fn pack<'a>(
    layers: impl IntoIterator<Item = &'a mut Dense>,
    form: &Form,
) -> candle_core::Result<()> {
    if form.packs() {
        for dense in layers {
            dense.pack_bf16()?;
        }
    }
    Ok(())
}

/// A LayerNorm; old checkpoints call its parameters gamma and beta.
pub(crate) fn layer_norm(
    size: usize,
    eps: f64,
    vb: VarBuilder<'_>,
) -> candle_core::Result<LayerNorm> {
    let (weight, bias) = if vb.contains_tensor("weight") {
        (vb.get(size, "weight")?, vb.get(size, "bias")?)
    } else {
        (vb.get(size, "gamma")?, vb.get(size, "beta")?)
    };
    Ok(LayerNorm::new(weight, bias, eps))
}

/// An RMSNorm over rows of `weight.len()`: `x / √(mean(x²) + eps) · w`.
pub(crate) struct RmsNorm {
    weight: Vec<f32>,
    eps: f32,
}

impl RmsNorm {
    pub(crate) fn load(size: usize, eps: f64, vb: VarBuilder<'_>) -> candle_core::Result<Self> {
        Ok(RmsNorm {
            weight: vb.get(size, "weight")?.to_vec1()?,
            eps: eps as f32,
        })
    }

    /// A new tensor: every row of `x` normalised.
    pub(crate) fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let width = self.weight.len();
        map_rows(x, width, width, "rms-norm", |rows, out| {
            elementwise::rms_norm(rows, &self.weight, self.eps, 0.0, out);
        })
    }

    /// Normalises `values` in place, in rows of the weight's width (the
    /// per-head query and key norms of Qwen3).
    pub(crate) fn apply(&self, values: &mut [f32]) {
        elementwise::rms_norm_in_place(values, &self.weight, self.eps, 0.0);
    }
}
