//! The parts every family shares: dense layers in f32 or bf16, their
//! activations, norms, and candle's errors as `lca`'s.

use candle_core::Tensor;
use candle_nn::{LayerNorm, VarBuilder};
use lca_core::{Error, Result};
use lca_linear::kernels::bf16::{self, PackedWeights};
use lca_linear::kernels::elementwise::{self, Gate, Gelu};

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

/// The weight of a dense layer in the form its product needs.
enum Weight {
    /// A candle tensor, `outputs × inputs`.
    F32(Tensor),
    /// Rounded to bfloat16 and packed for `lca_linear`'s product.
    Bf16(PackedWeights),
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

    /// Reads `weight`, and `bias` where the checkpoint has one.
    pub(crate) fn load_maybe_biased(
        inputs: usize,
        outputs: usize,
        vb: VarBuilder<'_>,
    ) -> candle_core::Result<Self> {
        let bias = if vb.contains_tensor("bias") {
            vb.get(outputs, "bias")?.to_vec1()?
        } else {
            vec![0.0; outputs]
        };
        Ok(Dense {
            weight: Weight::F32(vb.get((outputs, inputs), "weight")?),
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

    /// Stacks the outputs of several `f32` layers with the same input into
    /// one.
    pub(crate) fn stack(parts: &[Dense]) -> candle_core::Result<Self> {
        let weights = parts
            .iter()
            .map(|d| match &d.weight {
                Weight::F32(w) => Ok(w),
                Weight::Bf16(_) => candle_core::bail!("stacking is done before packing"),
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Dense {
            weight: Weight::F32(Tensor::cat(&weights, 0)?),
            bias: parts.iter().flat_map(|d| d.bias.iter().copied()).collect(),
        })
    }

    /// Outputs of the layer.
    pub(crate) fn outputs(&self) -> usize {
        self.bias.len()
    }

    /// Rounds the weight to bfloat16 and packs it for the bf16 product.
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
            Weight::F32(w) => x.matmul(&w.t()?),
            Weight::Bf16(packed) => {
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
        let y = self.forward(x)?;
        let branch = y.copy()?;
        y.inplace_op2(residual, &AddBiasResidual(&vec![0.0; self.outputs()]))?;
        Ok((y, Some(branch)))
    }
}

/// Packs every dense layer for bf16 products when `compute` asks for them.
pub(crate) fn pack<'a>(
    layers: impl IntoIterator<Item = &'a mut Dense>,
    compute: Compute,
) -> Result<()> {
    if compute == Compute::Bf16 {
        for dense in layers {
            dense.pack_bf16().lca()?;
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
