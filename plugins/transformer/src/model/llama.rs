//! The Llama family of decoders: RMSNorm before attention and MLP, rotary
//! positions, grouped-query causal attention, a gated MLP (SwiGLU), and a
//! final RMSNorm. One file covers
//! - Llama 2 / 3 / 3.1 / 3.2 (with Llama 3's `rope_scaling`), SmolLM and
//!   SmolLM2, TinyLlama: `llama`;
//! - Mistral, whose attention may see only a sliding window of keys:
//!   `mistral`;
//! - Qwen2 / Qwen2.5, with a bias on the query, key and value projections:
//!   `qwen2`;
//! - Qwen3, with an RMSNorm on each query and key head: `qwen3`.
//!
//! Biases and the per-head norms are read wherever the checkpoint has them.

use candle_core::Tensor;
use candle_nn::VarBuilder;
use lca_core::data::Site;
use lca_core::{Error, Result};
use lca_linear::kernels::elementwise::{self, Gate, Heads, Visibility};
use serde::Deserialize;

use super::dense::{self, Activation, Dense, Form, RmsNorm};
use super::{Architecture, Batch, Family, Recorder, Shape, row_of, table};
use crate::ops::{RowsInPlace, map_rows};

/// The family.
pub(super) const FAMILY: Family = Family {
    name: "llama",
    model_types: &["llama", "mistral", "qwen2", "qwen3"],
    about: "Llama-family decoders (Llama 2/3, SmolLM, TinyLlama, Mistral, Qwen2/2.5, Qwen3): \
            causal grouped-query attention with rotary positions, RMSNorm, gated MLP; the \
            last residual state is after the final norm",
    shape: |text| {
        let config: Config = super::parse_config(text)?;
        Settings::of(&config)?;
        Ok(config.shape())
    },
    load: |text, vb, form| {
        let config: Config = super::parse_config(text)?;
        Ok(Box::new(Llama::load(vb, &config, form)?))
    },
};

/// The parts of a Llama-family `config.json` the model needs.
#[derive(Clone, Debug, Deserialize)]
struct Config {
    model_type: String,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    /// Key/value heads; absent means one per query head.
    #[serde(default)]
    num_key_value_heads: Option<usize>,
    /// Width of a head; absent means `hidden_size / num_attention_heads`.
    #[serde(default)]
    head_dim: Option<usize>,
    max_position_embeddings: usize,
    #[serde(default = "eps")]
    rms_norm_eps: f64,
    #[serde(default = "silu")]
    hidden_act: String,
    /// Older configurations keep the rotary base and scaling at the top.
    #[serde(default)]
    rope_theta: Option<f64>,
    #[serde(default)]
    rope_scaling: Option<RopeParameters>,
    /// transformers 5 keeps both here.
    #[serde(default)]
    rope_parameters: Option<RopeParameters>,
    #[serde(default)]
    partial_rotary_factor: Option<f64>,
    /// Mistral's window; `null` for none.
    #[serde(default)]
    sliding_window: Option<usize>,
    /// Qwen2/Qwen3 apply their `sliding_window` only when this is set.
    #[serde(default)]
    use_sliding_window: bool,
    #[serde(default)]
    pad_token_id: Option<u32>,
    /// Divisors of the rotary frequencies, one per pair: what a GGUF file's
    /// `rope_freqs` tensor holds for Llama 3.1 and later (not a Hugging
    /// Face key; the GGUF reader sets it).
    #[serde(default)]
    rope_frequency_factors: Option<Vec<f32>>,
}

fn eps() -> f64 {
    1e-6
}
fn silu() -> String {
    "silu".into()
}

/// Rotary settings, in either place a configuration keeps them.
#[derive(Clone, Debug, Default, Deserialize)]
struct RopeParameters {
    #[serde(default)]
    rope_type: Option<String>,
    /// The name older configurations use for `rope_type`.
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    rope_theta: Option<f64>,
    #[serde(default)]
    factor: Option<f64>,
    #[serde(default)]
    low_freq_factor: Option<f64>,
    #[serde(default)]
    high_freq_factor: Option<f64>,
    #[serde(default)]
    original_max_position_embeddings: Option<usize>,
}

/// Rotary position embedding: the inverse frequency of each rotated pair.
#[derive(Clone, Debug, PartialEq)]
struct Rope {
    inverse_frequencies: Vec<f32>,
}

impl Rope {
    /// The frequencies as transformers computes them, in `f32`, for `dim`
    /// rotated values per head.
    fn new(config: &Config, dim: usize) -> Result<Self> {
        let parameters = config
            .rope_parameters
            .clone()
            .or_else(|| config.rope_scaling.clone())
            .unwrap_or_default();
        let theta = parameters
            .rope_theta
            .or(config.rope_theta)
            .unwrap_or(10_000.0);
        let kind = parameters
            .rope_type
            .clone()
            .or(parameters.kind.clone())
            .unwrap_or_else(|| "default".into());
        let base: Vec<f32> = (0..dim / 2)
            .map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / dim as f32))
            .collect();
        let needs = |value: Option<f64>, name: &str| {
            value.ok_or_else(|| {
                Error::input(format!("rope type `{kind}` needs `{name}` in config.json"))
            })
        };
        let inverse_frequencies = match kind.as_str() {
            // Dynamic scaling changes nothing within the trained window,
            // which is as far as inputs go here.
            "default" | "dynamic" => base,
            "linear" => {
                let factor = needs(parameters.factor, "factor")? as f32;
                base.iter().map(|f| f / factor).collect()
            }
            "llama3" => {
                let factor = needs(parameters.factor, "factor")? as f32;
                let low = needs(parameters.low_freq_factor, "low_freq_factor")? as f32;
                let high = needs(parameters.high_freq_factor, "high_freq_factor")? as f32;
                let context = parameters
                    .original_max_position_embeddings
                    .unwrap_or(config.max_position_embeddings) as f32;
                if high <= low {
                    return Err(Error::input(format!(
                        "llama3 rope scaling needs high_freq_factor ({high}) above \
                         low_freq_factor ({low})"
                    )));
                }
                let (low_wavelength, high_wavelength) = (context / low, context / high);
                base.iter()
                    .map(|&f| {
                        let wavelength = 2.0 * std::f32::consts::PI / f;
                        let scaled = if wavelength > low_wavelength {
                            f / factor
                        } else {
                            f
                        };
                        if wavelength < high_wavelength || wavelength > low_wavelength {
                            scaled
                        } else {
                            // Between the two: a blend of scaled and not.
                            let smooth = (context / wavelength - low) / (high - low);
                            (1.0 - smooth) * scaled / factor + smooth * scaled
                        }
                    })
                    .collect()
            }
            other => {
                return Err(Error::input(format!(
                    "rope type `{other}` is not supported (default, linear, dynamic, llama3)"
                )));
            }
        };
        let inverse_frequencies = match &config.rope_frequency_factors {
            None => inverse_frequencies,
            Some(factors) if factors.len() == inverse_frequencies.len() => inverse_frequencies
                .iter()
                .zip(factors)
                .map(|(f, d)| f / d)
                .collect(),
            Some(factors) => {
                return Err(Error::input(format!(
                    "{} rotary frequency factors for {} rotated pairs",
                    factors.len(),
                    inverse_frequencies.len()
                )));
            }
        };
        Ok(Rope {
            inverse_frequencies,
        })
    }

    /// `cos` and `sin` of every position below `tokens` and every pair,
    /// `tokens × pairs` each. The angle is rounded to `f32` as transformers
    /// rounds it.
    fn table(&self, tokens: usize) -> (Vec<f32>, Vec<f32>) {
        let pairs = self.inverse_frequencies.len();
        let mut cos = Vec::with_capacity(tokens * pairs);
        let mut sin = Vec::with_capacity(tokens * pairs);
        for t in 0..tokens {
            for &f in &self.inverse_frequencies {
                let angle = f64::from(t as f32 * f);
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        (cos, sin)
    }
}

/// Rotates every head of `values` (heads of `width`, the first `2·pairs`
/// values of each rotated as transformers' `rotate_half` does: value `i`
/// pairs with value `i + pairs`).
fn rotate(values: &mut [f32], width: usize, cos: &[f32], sin: &[f32]) {
    let pairs = cos.len();
    for head in values.chunks_exact_mut(width) {
        let (first, second) = head[..2 * pairs].split_at_mut(pairs);
        for (((a, b), &c), &s) in first.iter_mut().zip(second).zip(cos).zip(sin) {
            let (x, y) = (*a, *b);
            *a = x * c - y * s;
            *b = y * c + x * s;
        }
    }
}

/// What a configuration asks of the attention and the MLP, checked.
struct Settings {
    heads: Heads,
    window: Option<usize>,
    gate: Gate,
    rope: Rope,
}

impl Settings {
    fn of(config: &Config) -> Result<Self> {
        let h = config.hidden_size;
        let query_heads = config.num_attention_heads;
        let key_value_heads = config.num_key_value_heads.unwrap_or(query_heads);
        let head_dim = match config.head_dim {
            Some(d) => d,
            None => {
                super::check_heads(h, query_heads)?;
                h / query_heads
            }
        };
        let heads = Heads {
            query: query_heads,
            key_value: key_value_heads,
            width: head_dim,
        };
        if !heads.is_valid() {
            return Err(Error::input(format!(
                "{query_heads} attention heads cannot share {key_value_heads} key/value heads \
                 of width {head_dim}: the query heads must be a multiple of them"
            )));
        }
        let rotary = match config.partial_rotary_factor {
            Some(f) if f > 0.0 && f <= 1.0 => (head_dim as f64 * f) as usize / 2 * 2,
            Some(f) => {
                return Err(Error::input(format!(
                    "partial_rotary_factor {f} is outside (0, 1]"
                )));
            }
            None => head_dim,
        };
        let window = match config.model_type.as_str() {
            "mistral" => config.sliding_window,
            _ if config.use_sliding_window => {
                return Err(Error::input(format!(
                    "`use_sliding_window = true` ({}) is not supported: its windows differ \
                     between layers",
                    config.model_type
                )));
            }
            _ => None,
        };
        Ok(Settings {
            heads,
            window,
            gate: Activation::parse(&config.hidden_act)?.gate()?,
            rope: Rope::new(config, rotary)?,
        })
    }
}

impl Config {
    fn shape(&self) -> Shape {
        Shape {
            model_type: self.model_type.clone(),
            vocab: self.vocab_size,
            layers: self.num_hidden_layers,
            hidden: self.hidden_size,
            mlp: self.intermediate_size,
            max_tokens: self.max_position_embeddings,
            pad_token_id: self.pad_token_id.unwrap_or(0),
            causal: true,
        }
    }
}

struct Block {
    input_norm: RmsNorm,
    /// Queries, keys and values as one product.
    query_key_value: Dense,
    /// Qwen3's norms of each query and key head.
    query_norm: Option<RmsNorm>,
    key_norm: Option<RmsNorm>,
    attention_out: Dense,
    post_attention_norm: RmsNorm,
    /// Gate and up projections as one product, gate first.
    gate_up: Dense,
    down: Dense,
}

pub(super) struct Llama {
    shape: Shape,
    heads: Heads,
    visible: Visibility,
    gate: Gate,
    rope: Rope,
    embedding: Vec<f32>,
    blocks: Vec<Block>,
    final_norm: RmsNorm,
}

impl Llama {
    fn load(vb: VarBuilder<'_>, config: &Config, form: &Form) -> Result<Self> {
        let Settings {
            heads,
            window,
            gate,
            rope,
        } = Settings::of(config)?;
        let h = config.hidden_size;
        let head_dim = heads.width;
        let (query_heads, key_value_heads) = (heads.query, heads.key_value);
        let vb = super::root(vb, &["model"], "embed_tokens.weight");
        let eps = config.rms_norm_eps;
        let inner = config.intermediate_size;
        let (q_width, kv_width) = (query_heads * head_dim, key_value_heads * head_dim);
        let load = || -> candle_core::Result<Llama> {
            let mut blocks = Vec::with_capacity(config.num_hidden_layers);
            for i in 0..config.num_hidden_layers {
                let b = vb.pp(format!("layers.{i}"));
                let attn = b.pp("self_attn");
                let linear = |inputs, outputs, at: &VarBuilder<'_>, name: &str| {
                    Dense::load_maybe_biased(inputs, outputs, at.pp(name), form)
                };
                let head_norm = |name: &str| {
                    let at = attn.pp(name);
                    if at.contains_tensor("weight") {
                        RmsNorm::load(head_dim, eps, at).map(Some)
                    } else {
                        Ok(None)
                    }
                };
                let mlp = b.pp("mlp");
                let mut block = Block {
                    input_norm: RmsNorm::load(h, eps, b.pp("input_layernorm"))?,
                    query_key_value: Dense::stack([
                        linear(h, q_width, &attn, "q_proj")?,
                        linear(h, kv_width, &attn, "k_proj")?,
                        linear(h, kv_width, &attn, "v_proj")?,
                    ])?,
                    query_norm: head_norm("q_norm")?,
                    key_norm: head_norm("k_norm")?,
                    attention_out: linear(q_width, h, &attn, "o_proj")?,
                    post_attention_norm: RmsNorm::load(h, eps, b.pp("post_attention_layernorm"))?,
                    gate_up: Dense::stack([
                        linear(h, inner, &mlp, "gate_proj")?,
                        linear(h, inner, &mlp, "up_proj")?,
                    ])?,
                    down: linear(inner, h, &mlp, "down_proj")?,
                };
                dense::pack(
                    [
                        &mut block.query_key_value,
                        &mut block.attention_out,
                        &mut block.gate_up,
                        &mut block.down,
                    ],
                    form,
                )?;
                blocks.push(block);
            }
            Ok(Llama {
                shape: config.shape(),
                heads,
                visible: Visibility::Causal { window },
                gate,
                rope: rope.clone(),
                embedding: table(&vb, config.vocab_size, h, "embed_tokens.weight")?,
                blocks,
                final_norm: RmsNorm::load(h, eps, vb.pp("norm"))?,
            })
        };
        load()
            .map_err(|e| Error::input(format!("the checkpoint does not fit its config.json: {e}")))
    }

    /// Normalises (Qwen3) and rotates the query and key heads of every row
    /// of `qkv`, in place; row `r` is position `r mod tokens`.
    /// `table` is the rotary table of the batch's positions (computed once
    /// per forward pass, shared by every block).
    fn position_heads(
        &self,
        block: &Block,
        qkv: &Tensor,
        tokens: usize,
        (cos, sin): &(Vec<f32>, Vec<f32>),
    ) -> candle_core::Result<()> {
        let pairs = self.rope.inverse_frequencies.len();
        let width = self.heads.width;
        let q_width = self.heads.output();
        let k_width = self.heads.key_value * width;
        let f = |row_index: usize, row: &mut [f32]| {
            let t = row_index % tokens.max(1);
            let (cos, sin) = (&cos[t * pairs..][..pairs], &sin[t * pairs..][..pairs]);
            let (queries, rest) = row.split_at_mut(q_width);
            let keys = &mut rest[..k_width];
            if let Some(norm) = &block.query_norm {
                norm.apply(queries);
            }
            if let Some(norm) = &block.key_norm {
                norm.apply(keys);
            }
            rotate(queries, width, cos, sin);
            rotate(keys, width, cos, sin);
        };
        qkv.inplace_op1(&RowsInPlace {
            width: self.heads.row(),
            step: "rotary positions",
            f: &f,
        })
    }
}

impl Architecture for Llama {
    fn shape(&self) -> &Shape {
        &self.shape
    }

    fn forward(&self, batch: &Batch<'_>, recorder: &mut Recorder) -> candle_core::Result<()> {
        let h = self.shape.hidden;
        let inner = self.shape.mlp;
        let mut embedded = vec![0.0f32; batch.rows() * h];
        for (&id, row) in batch.ids.iter().zip(embedded.chunks_exact_mut(h)) {
            row.copy_from_slice(row_of(&self.embedding, h, id as usize, "token id")?);
        }
        let mut hidden = Tensor::from_vec(embedded, (batch.rows(), h), &candle_core::Device::Cpu)?;
        let additive = batch.additive_mask();
        let scale = 1.0 / (self.heads.width as f32).sqrt();
        let last = self.blocks.len();
        let rotary = self.rope.table(batch.tokens);
        recorder.record(Site::Residual, 0, || Ok(hidden.clone()))?;
        for (l, block) in self.blocks.iter().enumerate() {
            let number = l + 1;
            let qkv = block
                .query_key_value
                .forward(&block.input_norm.forward(&hidden)?)?;
            self.position_heads(block, &qkv, batch.tokens, &rotary)?;
            let attended = super::attend(
                &qkv,
                batch,
                self.heads,
                self.visible,
                &additive,
                scale,
                &block.attention_out,
                &hidden,
                recorder,
                number,
            )?;
            let gate_up = block
                .gate_up
                .forward(&block.post_attention_norm.forward(&attended)?)?;
            let gate = self.gate;
            let units = map_rows(&gate_up, 2 * inner, inner, "gated MLP", |rows, out| {
                elementwise::gated(rows, inner, gate, out);
            })?;
            recorder.record(Site::Mlp, number, || Ok(units.clone()))?;
            hidden = block.down.forward_plus(&units, &attended)?;
            if number < last {
                recorder.record(Site::Residual, number, || Ok(hidden.clone()))?;
            }
        }
        recorder.record(Site::Residual, last, || self.final_norm.forward(&hidden))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(rope: &str) -> Config {
        serde_json::from_str(&format!(
            r#"{{"model_type": "llama", "vocab_size": 10, "hidden_size": 8,
                "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 1,
                "max_position_embeddings": 64, {rope}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn rope_frequencies_follow_the_configuration() {
        // θ = 100, 8 values: 1, 100^-1/4, 100^-1/2, 100^-3/4.
        let plain = Rope::new(&config(r#""rope_theta": 100.0"#), 8).unwrap();
        let want = [1.0, 0.316_227_77, 0.1, 0.031_622_775];
        for (got, want) in plain.inverse_frequencies.iter().zip(want) {
            assert!((got - want).abs() < 1e-7, "{got} {want}");
        }
        // transformers 5 keeps the same in rope_parameters.
        let nested = Rope::new(
            &config(r#""rope_parameters": {"rope_type": "default", "rope_theta": 100.0}"#),
            8,
        )
        .unwrap();
        assert_eq!(nested, plain);
        let linear = Rope::new(
            &config(r#""rope_theta": 100.0, "rope_scaling": {"type": "linear", "factor": 4.0}"#),
            8,
        )
        .unwrap();
        assert_eq!(linear.inverse_frequencies[2], 0.025);
        // Llama 3 with an original window of 16: wavelengths 2π, 19.9,
        // 62.8, 199 against 16/4 = 4 and 16/1 = 16. The last three are past
        // 16 and divided by 8; 2π is between, so blended with weight
        // (16/2π − 1)/(4 − 1).
        let llama3 = Rope::new(
            &config(
                r#""rope_theta": 100.0, "rope_scaling": {"rope_type": "llama3", "factor": 8.0,
                    "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                    "original_max_position_embeddings": 16}"#,
            ),
            8,
        )
        .unwrap();
        let smooth = (16.0 / (2.0 * std::f64::consts::PI) - 1.0) / 3.0;
        let blended = smooth + (1.0 - smooth) / 8.0;
        assert!((f64::from(llama3.inverse_frequencies[0]) - blended).abs() < 1e-6);
        for i in 1..4 {
            assert_eq!(
                llama3.inverse_frequencies[i],
                plain.inverse_frequencies[i] / 8.0
            );
        }
        let unknown = Rope::new(
            &config(r#""rope_scaling": {"rope_type": "yarn", "factor": 4.0}"#),
            8,
        )
        .unwrap_err()
        .to_string();
        assert!(unknown.contains("`yarn` is not supported"), "{unknown}");
    }

    #[test]
    fn rotation_pairs_each_value_with_the_one_half_a_head_away() {
        let mut head = [1.0, 2.0, 3.0, 4.0];
        let (c, s) = (0.6f32, 0.8f32);
        rotate(&mut head, 4, &[c, 1.0], &[s, 0.0]);
        assert_eq!(head, [1.0 * c - 3.0 * s, 2.0, 3.0 * c + 1.0 * s, 4.0]);
    }
}
