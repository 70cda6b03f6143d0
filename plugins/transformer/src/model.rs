//! A transformer encoder (BERT, MiniLM, RoBERTa, XLM-R, DistilBERT) that returns every
//! hidden state: the embedding output as layer 0, then each encoder layer.
//!
//! candle-transformers' BERT returns only the last layer, so the encoder is
//! written here from the architecture (Devlin et al. 2019; Liu et al. 2019),
//! reading Hugging Face checkpoint names.

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder};
use serde::Deserialize;

use lca_core::{Error, Result};

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

    fn apply(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Activation::GeluErf => x.gelu_erf(),
            Activation::GeluTanh => x.gelu(),
            Activation::Relu => x.relu(),
            Activation::Silu => x.silu(),
        }
    }
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
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
    word: Embedding,
    position: Embedding,
    token_type: Option<Embedding>,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
    device: Device,
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
    /// # Errors
    /// Missing or misshapen tensors, named.
    pub fn load(vb: VarBuilder<'_>, config: Config) -> Result<Self> {
        config.check()?;
        let vb = ["bert", "roberta", "distilbert", "model"]
            .iter()
            .map(|p| vb.pp(*p))
            .find(|v| v.contains_tensor("embeddings.word_embeddings.weight"))
            .unwrap_or(vb);
        let load = || -> candle_core::Result<Encoder> {
            let h = config.hidden_size;
            let e = vb.pp("embeddings");
            let word = candle_nn::embedding(config.vocab_size, h, e.pp("word_embeddings"))?;
            let position = candle_nn::embedding(
                config.max_position_embeddings,
                h,
                e.pp("position_embeddings"),
            )?;
            // DistilBERT has no token types.
            let token_type = if e.contains_tensor("token_type_embeddings.weight") {
                Some(candle_nn::embedding(
                    config.type_vocab_size,
                    h,
                    e.pp("token_type_embeddings"),
                )?)
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
                let linear = |i, o, name| candle_nn::linear(i, o, l.pp(name));
                let norm = |name| layer_norm(h, config.layer_norm_eps, l.pp(name));
                layers.push(Layer {
                    query: linear(h, h, names.query)?,
                    key: linear(h, h, names.key)?,
                    value: linear(h, h, names.value)?,
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
                device: vb.device().clone(),
                config: config.clone(),
            })
        };
        let mut encoder = load().map_err(|e| {
            Error::input(format!("the checkpoint does not fit its config.json: {e}"))
        })?;
        encoder.activation = Activation::parse(&encoder.config.hidden_act)?;
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
        let positions = if self.config.is_roberta() {
            // As RoBERTa counts them: tokens other than padding number up
            // from pad + 1; padding keeps the pad index.
            let pad = self.config.pad_token_id;
            let mut positions = Vec::with_capacity(batch * tokens);
            for row in ids.to_vec2::<u32>()? {
                let mut next = pad;
                for id in row {
                    if id == pad {
                        positions.push(pad);
                    } else {
                        next += 1;
                        positions.push(next);
                    }
                }
            }
            Tensor::from_vec(positions, (batch, tokens), &self.device)?
        } else {
            Tensor::arange(0u32, tokens as u32, &self.device)?
                .unsqueeze(0)?
                .broadcast_as((batch, tokens))?
                .contiguous()?
        };
        // Summed in Hugging Face's order: words, token types, positions.
        let mut embedded = self.word.forward(ids)?;
        if let Some(token_type) = &self.token_type {
            let types = Tensor::zeros((batch, tokens), DType::U32, &self.device)?;
            embedded = embedded.add(&token_type.forward(&types)?)?;
        }
        let embedded = embedded.add(&self.position.forward(&positions)?)?;
        let mut hidden = self.embedding_norm.forward(&embedded)?;
        // Additive mask: 0 where attention is allowed, the most negative
        // float where it is not (what Hugging Face adds).
        let blocked = (1.0 - mask.to_dtype(DType::F32)?)?;
        let additive = (blocked * f64::from(f32::MIN))?.reshape((batch, 1, 1, tokens))?;
        let heads = self.config.num_attention_heads;
        let head_dim = self.config.hidden_size / heads;
        let scale = 1.0 / (head_dim as f64).sqrt();
        let mut states = Vec::with_capacity(self.layers.len() + 1);
        states.push(hidden.clone());
        for layer in &self.layers {
            let split = |t: Tensor| -> candle_core::Result<Tensor> {
                t.reshape((batch, tokens, heads, head_dim))?
                    .transpose(1, 2)?
                    .contiguous()
            };
            let q = split(layer.query.forward(&hidden)?)?;
            let k = split(layer.key.forward(&hidden)?)?;
            let v = split(layer.value.forward(&hidden)?)?;
            let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&additive)?;
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            let context = probs.matmul(&v)?.transpose(1, 2)?.contiguous()?.reshape((
                batch,
                tokens,
                heads * head_dim,
            ))?;
            let attended = layer
                .attention_norm
                .forward(&layer.attention_out.forward(&context)?.add(&hidden)?)?;
            let inner = self
                .activation
                .apply(&layer.intermediate.forward(&attended)?)?;
            hidden = layer
                .output_norm
                .forward(&layer.output.forward(&inner)?.add(&attended)?)?;
            states.push(hidden.clone());
        }
        Ok(states)
    }
}
