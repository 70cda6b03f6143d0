//! BERT-family encoders (BERT, MiniLM, RoBERTa, XLM-R, CamemBERT,
//! DistilBERT): learned absolute positions, post-LayerNorm blocks, a GELU
//! MLP (Devlin et al. 2019; Liu et al. 2019; Sanh et al. 2019).

use candle_core::{Module, Tensor};
use candle_nn::{LayerNorm, VarBuilder};
use lca_core::data::Site;
use lca_core::{Error, Result};
use lca_linear::kernels::elementwise::{Heads, Visibility};
use serde::Deserialize;

use super::dense::{self, Activation, Dense, Form, layer_norm};
use super::{Architecture, Batch, Family, Recorder, Shape, row_of, table};

/// The family.
pub(super) const FAMILY: Family = Family {
    name: "bert",
    model_types: &[
        "bert",
        "roberta",
        "xlm-roberta",
        "camembert",
        "distilbert",
        "",
    ],
    about: "BERT-family encoders (BERT, MiniLM, RoBERTa, XLM-R, CamemBERT, DistilBERT): \
            bidirectional attention, post-LayerNorm, GELU MLP",
    shape: |text| {
        let config: Config = super::parse_config(text)?;
        config.check()?;
        Ok(config.shape())
    },
    load: |text, vb, form| {
        let config: Config = super::parse_config(text)?;
        Ok(Box::new(Encoder::load(vb, config, form)?))
    },
};

/// The parts of a Hugging Face `config.json` the encoder needs.
#[derive(Clone, Debug, Deserialize)]
pub(super) struct Config {
    /// `bert`, `roberta`, `xlm-roberta`, …
    #[serde(default)]
    model_type: String,
    /// Token vocabulary size.
    vocab_size: usize,
    /// Width of every hidden state (DistilBERT: `dim`).
    #[serde(alias = "dim")]
    hidden_size: usize,
    /// Encoder layers (DistilBERT: `n_layers`).
    #[serde(alias = "n_layers")]
    num_hidden_layers: usize,
    /// Attention heads (DistilBERT: `n_heads`).
    #[serde(alias = "n_heads")]
    num_attention_heads: usize,
    /// Width of the feed-forward layer (DistilBERT: `hidden_dim`).
    #[serde(alias = "hidden_dim")]
    intermediate_size: usize,
    /// Activation of the feed-forward layer (DistilBERT: `activation`).
    #[serde(default = "gelu", alias = "activation")]
    hidden_act: String,
    /// Positions the model can attend over.
    max_position_embeddings: usize,
    /// Token-type vocabulary.
    #[serde(default = "two")]
    type_vocab_size: usize,
    /// LayerNorm epsilon.
    #[serde(default = "eps")]
    layer_norm_eps: f64,
    /// Padding token id.
    #[serde(default)]
    pad_token_id: u32,
    /// Absolute positions only.
    #[serde(default)]
    position_embedding_type: Option<String>,
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
    fn is_roberta(&self) -> bool {
        matches!(
            self.model_type.as_str(),
            "roberta" | "xlm-roberta" | "camembert"
        )
    }

    /// DistilBERT names its parameters differently and has no token types.
    fn is_distilbert(&self) -> bool {
        self.model_type == "distilbert"
    }

    /// Tokens a sequence may hold, special tokens included.
    fn max_tokens(&self) -> usize {
        if self.is_roberta() {
            self.max_position_embeddings
                .saturating_sub(self.pad_token_id as usize + 1)
        } else {
            self.max_position_embeddings
        }
    }

    fn shape(&self) -> Shape {
        Shape {
            model_type: if self.model_type.is_empty() {
                "bert".into()
            } else {
                self.model_type.clone()
            },
            vocab: self.vocab_size,
            layers: self.num_hidden_layers,
            hidden: self.hidden_size,
            mlp: self.intermediate_size,
            max_tokens: self.max_tokens(),
            pad_token_id: self.pad_token_id,
            causal: false,
        }
    }

    /// Checks what this encoder supports.
    ///
    /// # Errors
    /// For other architectures or relative position embeddings.
    fn check(&self) -> Result<()> {
        if let Some(kind) = &self.position_embedding_type
            && kind != "absolute"
        {
            return Err(Error::input(format!(
                "position_embedding_type `{kind}` is not supported, only `absolute`"
            )));
        }
        super::check_heads(self.hidden_size, self.num_attention_heads)
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
pub(super) struct Encoder {
    config: Config,
    shape: Shape,
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

impl Encoder {
    /// Loads the weights. `vb` points at the checkpoint root; a `bert.`,
    /// `roberta.` or `distilbert.` prefix is detected.
    fn load(vb: VarBuilder<'_>, config: Config, form: &Form) -> Result<Self> {
        config.check()?;
        let vb = super::root(
            vb,
            &["bert", "roberta", "distilbert", "model"],
            "embeddings.word_embeddings.weight",
        );
        let load = || -> candle_core::Result<Encoder> {
            let h = config.hidden_size;
            let e = vb.pp("embeddings");
            let word = table(&e, config.vocab_size, h, "word_embeddings.weight")?;
            let position = table(
                &e,
                config.max_position_embeddings,
                h,
                "position_embeddings.weight",
            )?;
            // DistilBERT has no token types.
            let token_type = if e.contains_tensor("token_type_embeddings.weight") {
                let mut types = table(
                    &e,
                    config.type_vocab_size,
                    h,
                    "token_type_embeddings.weight",
                )?;
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
                let mut layer = Layer {
                    query_key_value: Dense::stack([
                        linear(h, h, names.query)?,
                        linear(h, h, names.key)?,
                        linear(h, h, names.value)?,
                    ])?,
                    attention_out: linear(h, h, names.attention_out)?,
                    attention_norm: norm(names.attention_norm)?,
                    intermediate: linear(h, config.intermediate_size, names.intermediate)?,
                    output: linear(config.intermediate_size, h, names.output)?,
                    output_norm: norm(names.output_norm)?,
                };
                dense::pack(
                    [
                        &mut layer.query_key_value,
                        &mut layer.attention_out,
                        &mut layer.intermediate,
                        &mut layer.output,
                    ],
                    form,
                )?;
                layers.push(layer);
            }
            Ok(Encoder {
                activation: Activation::Relu,
                shape: config.shape(),
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
        Ok(encoder)
    }

    /// Word + token-type + position embeddings of every token, summed in
    /// Hugging Face's order, `rows × hidden`.
    fn embed(&self, batch: &Batch<'_>) -> candle_core::Result<Vec<f32>> {
        let h = self.config.hidden_size;
        let pad = self.config.pad_token_id;
        let roberta = self.config.is_roberta();
        let tokens = batch.tokens;
        let mut out = vec![0.0f32; batch.rows() * h];
        for (sequence, rows) in batch
            .ids
            .chunks_exact(tokens.max(1))
            .zip(out.chunks_exact_mut((tokens * h).max(1)))
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
                row.copy_from_slice(row_of(&self.word, h, id as usize, "token id")?);
                if let Some(types) = &self.token_type {
                    row.iter_mut().zip(types).for_each(|(v, t)| *v += t);
                }
                let positional = row_of(&self.position, h, position, "position")?;
                row.iter_mut().zip(positional).for_each(|(v, p)| *v += p);
            }
        }
        Ok(out)
    }
}

impl Architecture for Encoder {
    fn shape(&self) -> &Shape {
        &self.shape
    }

    fn forward(&self, batch: &Batch<'_>, recorder: &mut Recorder) -> candle_core::Result<()> {
        let h = self.config.hidden_size;
        let rows = batch.rows();
        let embedded = Tensor::from_vec(self.embed(batch)?, (rows, h), &candle_core::Device::Cpu)?;
        let mut hidden = self.embedding_norm.forward(&embedded)?;
        let additive = batch.additive_mask();
        let heads = self.config.num_attention_heads;
        let head_dim = h / heads;
        let scale = 1.0 / (head_dim as f32).sqrt();
        recorder.record(Site::Residual, 0, || Ok(hidden.clone()))?;
        for (l, layer) in self.layers.iter().enumerate() {
            let number = l + 1;
            let qkv = layer.query_key_value.forward(&hidden)?;
            let summed = super::attend(
                &qkv,
                batch,
                Heads::multi(heads, head_dim),
                Visibility::All,
                &additive,
                scale,
                &layer.attention_out,
                &hidden,
                recorder,
                number,
            )?;
            let attended = layer.attention_norm.forward(&summed)?;
            let inner = self.activation.apply_with_bias(
                &layer.intermediate.product(&attended)?,
                &layer.intermediate.bias,
            )?;
            recorder.record(Site::Mlp, number, || Ok(inner.clone()))?;
            hidden = layer
                .output_norm
                .forward(&layer.output.forward_plus(&inner, &attended)?)?;
            recorder.record(Site::Residual, number, || Ok(hidden.clone()))?;
        }
        Ok(())
    }
}
