//! A transformer encoder (BERT, MiniLM, RoBERTa, XLM-R, DistilBERT) that returns every
//! hidden state: the embedding output as layer 0, then each encoder layer.
//!
//! candle-transformers' BERT returns only the last layer, so the encoder is
//! written here from the architecture (Devlin et al. 2019; Liu et al. 2019),
//! reading Hugging Face checkpoint names.

use candle_core::{DType, Module, Tensor};
use candle_nn::{LayerNorm, VarBuilder};
use lca_linear::kernels::bf16::{self, PackedWeights};
use lca_linear::kernels::elementwise::{Gelu, Heads, Visibility};
use serde::Deserialize;

use lca_core::{Error, Result};

use crate::ops::{AddBias, AddBiasGelu, AddBiasResidual, attention, with_values};

/// The parts of a Hugging Face `config.json` the encoder needs.
#[derive(Clone, Debug, Deserialize)]
pub struct Config {
    /// `bert`, `roberta`, `xlm-roberta`, …
    #[serde(default)]
    pub model_type: String,
    /// Token vocabulary size.
    pub vocab_size: usize,
    /// Width of every hidden state (DistilBERT: `dim`).
    #[serde(alias = "dim")]
    pub hidden_size: usize,
    /// Encoder layers (DistilBERT: `n_layers`).
    #[serde(alias = "n_layers")]
    pub num_hidden_layers: usize,
    /// Attention heads (DistilBERT: `n_heads`).
    #[serde(alias = "n_heads")]
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer (DistilBERT: `hidden_dim`).
    #[serde(alias = "hidden_dim")]
    pub intermediate_size: usize,
    /// Activation of the feed-forward layer (DistilBERT: `activation`).
    #[serde(default = "gelu", alias = "activation")]
    pub hidden_act: String,
    /// Positions the model can attend over.
    pub max_position_embeddings: usize,
    /// Token-type vocabulary.
    #[serde(default = "two")]
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    #[serde(default = "eps")]
    pub layer_norm_eps: f64,
    /// Padding token id.
    #[serde(default)]
    pub pad_token_id: u32,
    /// Absolute positions only.
    #[serde(default)]
    pub position_embedding_type: Option<String>,
}

fn gelu() -> String {
    "gelu".into()
}
fn two() -> usize {
    2
}
fn eps() -> f64 {
    1e-12
}

impl Config {
    /// RoBERTa-style models number positions from `pad_token_id + 1`.
    pub fn is_roberta(&self) -> bool {
        matches!(
            self.model_type.as_str(),
            "roberta" | "xlm-roberta" | "camembert"
        )
    }

    /// DistilBERT names its parameters differently and has no token types.
    pub fn is_distilbert(&self) -> bool {
        self.model_type == "distilbert"
    }

    /// Tokens a sequence may hold, special tokens included.
    pub fn max_tokens(&self) -> usize {
        if self.is_roberta() {
            self.max_position_embeddings - self.pad_token_id as usize - 1
        } else {
            self.max_position_embeddings
        }
    }

    /// Checks what this encoder supports.
    ///
    /// # Errors
    /// For other architectures or relative position embeddings.
    pub fn check(&self) -> Result<()> {
        let supported = [
            "bert",
            "roberta",
            "xlm-roberta",
            "camembert",
            "distilbert",
            "",
        ];
        if !supported.contains(&self.model_type.as_str()) {
            return Err(Error::input(format!(
                "model type `{}` is not supported; the transformer source reads BERT-family encoders (bert, roberta, xlm-roberta, distilbert)",
                self.model_type
            )));
        }
        if let Some(kind) = &self.position_embedding_type
            && kind != "absolute"
        {
            return Err(Error::input(format!(
                "position_embedding_type `{kind}` is not supported, only `absolute`"
            )));
        }
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(Error::input(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            )));
        }
        Ok(())
    }
}

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

enum Activation {
    GeluErf,
    GeluTanh,
    Relu,
    Silu,
}

impl Activation {
    fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "gelu" => Activation::GeluErf,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            "silu" | "swish" => Activation::Silu,
            other => {
                return Err(Error::input(format!(
                    "activation `{other}` is not supported"
                )));
            }
        })
    }

    /// `x ← act(x + bias)`, in place on the product `x`.
    fn apply_with_bias(&self, x: &Tensor, bias: &[f32]) -> candle_core::Result<Tensor> {
        match self {
            Activation::GeluErf => x.inplace_op1(&AddBiasGelu(bias, Gelu::Erf))?,
            Activation::GeluTanh => x.inplace_op1(&AddBiasGelu(bias, Gelu::Tanh))?,
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
    /// Precision of the encoder's dense-layer products.
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

/// A dense layer `y = x Wᵀ + b`; the bias is plain values for the fused
/// step after the product.
struct Dense {
    weight: Weight,
    bias: Vec<f32>,
}

impl Dense {
    fn load(inputs: usize, outputs: usize, vb: VarBuilder<'_>) -> candle_core::Result<Self> {
        Ok(Dense {
            weight: Weight::F32(vb.get((outputs, inputs), "weight")?),
            bias: vb.get(outputs, "bias")?.to_vec1()?,
        })
    }

    /// Stacks the outputs of several `f32` layers with the same input into
    /// one.
    fn stack(parts: &[Dense]) -> candle_core::Result<Self> {
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
    fn product(&self, x: &Tensor) -> candle_core::Result<Tensor> {
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
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = self.product(x)?;
        y.inplace_op1(&AddBias(&self.bias))?;
        Ok(y)
    }

    /// `x Wᵀ + b + residual`.
    fn forward_plus(&self, x: &Tensor, residual: &Tensor) -> candle_core::Result<Tensor> {
        let y = self.product(x)?;
        y.inplace_op2(residual, &AddBiasResidual(&self.bias))?;
        Ok(y)
    }
}

struct Layer {
    /// Queries, keys and values as one product (`3·hidden` outputs).
    query_key_value: Dense,
    attention_out: Dense,
    attention_norm: LayerNorm,
    intermediate: Dense,
    output: Dense,
    output_norm: LayerNorm,
}

/// Where a family keeps the parameters of its layers.
struct LayerNames {
    layers: &'static str,
    query: &'static str,
    key: &'static str,
    value: &'static str,
    attention_out: &'static str,
    attention_norm: &'static str,
    intermediate: &'static str,
    output: &'static str,
    output_norm: &'static str,
}

const BERT_NAMES: LayerNames = LayerNames {
    layers: "encoder.layer",
    query: "attention.self.query",
    key: "attention.self.key",
    value: "attention.self.value",
    attention_out: "attention.output.dense",
    attention_norm: "attention.output.LayerNorm",
    intermediate: "intermediate.dense",
    output: "output.dense",
    output_norm: "output.LayerNorm",
};

const DISTILBERT_NAMES: LayerNames = LayerNames {
    layers: "transformer.layer",
    query: "attention.q_lin",
    key: "attention.k_lin",
    value: "attention.v_lin",
    attention_out: "attention.out_lin",
    attention_norm: "sa_layer_norm",
    intermediate: "ffn.lin1",
    output: "ffn.lin2",
    output_norm: "output_layer_norm",
};

/// The encoder.
pub struct Encoder {
    config: Config,
    activation: Activation,
    /// Embedding tables, row-major (`vocabulary × hidden`, …): gathered
    /// and summed in plain code, one pass per batch.
    word: Vec<f32>,
    position: Vec<f32>,
    /// Row 0 of the token-type table (every token has type 0); DistilBERT
    /// has none.
    token_type: Option<Vec<f32>>,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
}

fn layer_norm(size: usize, eps: f64, vb: VarBuilder<'_>) -> candle_core::Result<LayerNorm> {
    // Old checkpoints call the parameters gamma and beta.
    let (weight, bias) = if vb.contains_tensor("weight") {
        (vb.get(size, "weight")?, vb.get(size, "bias")?)
    } else {
        (vb.get(size, "gamma")?, vb.get(size, "beta")?)
    };
    Ok(LayerNorm::new(weight, bias, eps))
}

impl Encoder {
    /// Loads the weights. `vb` points at the checkpoint root; a `bert.` or
    /// `roberta.` prefix is detected.
    ///
    /// `compute` is the precision of the dense layers' products; pass
    /// [`Compute::effective`] of what the user asked for.
    ///
    /// # Errors
    /// Missing or misshapen tensors, named.
    pub fn load(vb: VarBuilder<'_>, config: Config, compute: Compute) -> Result<Self> {
        config.check()?;
        let vb = ["bert", "roberta", "distilbert", "model"]
            .iter()
            .map(|p| vb.pp(*p))
            .find(|v| v.contains_tensor("embeddings.word_embeddings.weight"))
            .unwrap_or(vb);
        let load = || -> candle_core::Result<Encoder> {
            let h = config.hidden_size;
            let e = vb.pp("embeddings");
            let table = |rows: usize, name: &str| -> candle_core::Result<Vec<f32>> {
                e.get((rows, h), &format!("{name}.weight"))?
                    .flatten_all()?
                    .to_vec1()
            };
            let word = table(config.vocab_size, "word_embeddings")?;
            let position = table(config.max_position_embeddings, "position_embeddings")?;
            // DistilBERT has no token types.
            let token_type = if e.contains_tensor("token_type_embeddings.weight") {
                let mut types = table(config.type_vocab_size, "token_type_embeddings")?;
                types.truncate(h);
                Some(types)
            } else {
                None
            };
            let names = if config.is_distilbert() {
                &DISTILBERT_NAMES
            } else {
                &BERT_NAMES
            };
            let embedding_norm = layer_norm(h, config.layer_norm_eps, e.pp("LayerNorm"))?;
            let mut layers = Vec::with_capacity(config.num_hidden_layers);
            for i in 0..config.num_hidden_layers {
                let l = vb.pp(format!("{}.{i}", names.layers));
                let linear = |i, o, name| Dense::load(i, o, l.pp(name));
                let norm = |name| layer_norm(h, config.layer_norm_eps, l.pp(name));
                layers.push(Layer {
                    query_key_value: Dense::stack(&[
                        linear(h, h, names.query)?,
                        linear(h, h, names.key)?,
                        linear(h, h, names.value)?,
                    ])?,
                    attention_out: linear(h, h, names.attention_out)?,
                    attention_norm: norm(names.attention_norm)?,
                    intermediate: linear(h, config.intermediate_size, names.intermediate)?,
                    output: linear(config.intermediate_size, h, names.output)?,
                    output_norm: norm(names.output_norm)?,
                });
            }
            Ok(Encoder {
                activation: Activation::GeluErf,
                word,
                position,
                token_type,
                embedding_norm,
                layers,
                config: config.clone(),
            })
        };
        let mut encoder = load().map_err(|e| {
            Error::input(format!("the checkpoint does not fit its config.json: {e}"))
        })?;
        encoder.activation = Activation::parse(&encoder.config.hidden_act)?;
        if compute == Compute::Bf16 {
            for layer in &mut encoder.layers {
                for dense in [
                    &mut layer.query_key_value,
                    &mut layer.attention_out,
                    &mut layer.intermediate,
                    &mut layer.output,
                ] {
                    dense.pack_bf16().lca()?;
                }
            }
        }
        Ok(encoder)
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Every hidden state, `[batch, tokens, hidden]` each: the embedding
    /// output first, then one per layer. `mask` is 1 for real tokens and 0
    /// for padding.
    ///
    /// # Errors
    /// On shape problems (a bug) or ids out of range.
    pub fn hidden_states(&self, ids: &Tensor, mask: &Tensor) -> Result<Vec<Tensor>> {
        self.forward(ids, mask).lca()
    }

    fn forward(&self, ids: &Tensor, mask: &Tensor) -> candle_core::Result<Vec<Tensor>> {
        let (batch, tokens) = ids.dims2()?;
        let ids = ids.to_dtype(DType::U32)?.flatten_all()?.to_vec1::<u32>()?;
        let mask = mask.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let h = self.config.hidden_size;
        let rows = batch * tokens;
        let embedded = Tensor::from_vec(
            self.embed(&ids, batch, tokens)?,
            (rows, h),
            &candle_core::Device::Cpu,
        )?;
        let mut hidden = self.embedding_norm.forward(&embedded)?;
        // Additive mask: 0 where attention is allowed, the most negative
        // float where it is not (what Hugging Face adds).
        let additive: Vec<f32> = mask.iter().map(|&m| (1.0 - m) * f32::MIN).collect();
        let heads = self.config.num_attention_heads;
        let head_dim = h / heads;
        let scale = 1.0 / (head_dim as f32).sqrt();
        let as_state = |t: &Tensor| t.reshape((batch, tokens, h));
        let mut states = Vec::with_capacity(self.layers.len() + 1);
        states.push(as_state(&hidden)?);
        for layer in &self.layers {
            let qkv = layer.query_key_value.forward(&hidden)?;
            let context = attention(
                &qkv,
                batch,
                Heads::multi(heads, head_dim),
                Visibility::All,
                &additive,
                scale,
            )?;
            let attended = layer
                .attention_norm
                .forward(&layer.attention_out.forward_plus(&context, &hidden)?)?;
            let inner = self.activation.apply_with_bias(
                &layer.intermediate.product(&attended)?,
                &layer.intermediate.bias,
            )?;
            hidden = layer
                .output_norm
                .forward(&layer.output.forward_plus(&inner, &attended)?)?;
            states.push(as_state(&hidden)?);
        }
        Ok(states)
    }

    /// Word + token-type + position embeddings of every token, summed in
    /// Hugging Face's order, `rows × hidden`.
    fn embed(&self, ids: &[u32], batch: usize, tokens: usize) -> candle_core::Result<Vec<f32>> {
        let h = self.config.hidden_size;
        let pad = self.config.pad_token_id;
        let roberta = self.config.is_roberta();
        let mut out = vec![0.0f32; batch * tokens * h];
        for (b, (sequence, rows)) in ids
            .chunks_exact(tokens.max(1))
            .zip(out.chunks_exact_mut((tokens * h).max(1)))
            .enumerate()
        {
            // RoBERTa counts positions of real tokens up from pad + 1;
            // padding keeps the pad index. BERT counts from 0.
            let mut next = pad as usize;
            for (t, (&id, row)) in sequence.iter().zip(rows.chunks_exact_mut(h)).enumerate() {
                let position = if !roberta {
                    t
                } else if id == pad {
                    pad as usize
                } else {
                    next += 1;
                    next
                };
                let word = self
                    .word
                    .get(id as usize * h..(id as usize + 1) * h)
                    .ok_or_else(|| {
                        candle_core::Error::Msg(format!(
                            "token id {id} (sequence {b}, position {t}) is outside the vocabulary of {}",
                            self.config.vocab_size
                        ))
                    })?;
                let positional = self
                    .position
                    .get(position * h..(position + 1) * h)
                    .ok_or_else(|| {
                        candle_core::Error::Msg(format!(
                            "position {position} is beyond the model's {} positions",
                            self.config.max_position_embeddings
                        ))
                    })?;
                row.copy_from_slice(word);
                if let Some(types) = &self.token_type {
                    row.iter_mut().zip(types).for_each(|(v, t)| *v += t);
                }
                row.iter_mut().zip(positional).for_each(|(v, p)| *v += p);
            }
        }
        Ok(out)
    }
}
