//! GPT-2 (Radford et al. 2019): learned absolute positions, pre-LayerNorm
//! blocks, causal attention, a GELU (`tanh`) MLP, and a final LayerNorm.
//! Its dense layers are stored as `Conv1D`, `inputs × outputs`.

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
    name: "gpt2",
    model_types: &["gpt2"],
    about: "GPT-2: causal attention, pre-LayerNorm, learned positions, GELU (tanh) MLP; \
            the last residual state is after the final LayerNorm",
    shape: |text| {
        let config: Config = super::parse_config(text)?;
        config.check()?;
        Ok(config.shape())
    },
    load: |text, vb, form| {
        let config: Config = super::parse_config(text)?;
        Ok(Box::new(Gpt2::load(vb, &config, form)?))
    },
};

/// The parts of GPT-2's `config.json` the model needs.
#[derive(Clone, Debug, Deserialize)]
struct Config {
    vocab_size: usize,
    n_positions: usize,
    n_embd: usize,
    n_layer: usize,
    n_head: usize,
    /// MLP width; `null` means 4 × `n_embd`.
    #[serde(default)]
    n_inner: Option<usize>,
    #[serde(default = "gelu_new")]
    activation_function: String,
    #[serde(default = "eps")]
    layer_norm_epsilon: f64,
    #[serde(default = "yes")]
    scale_attn_weights: bool,
    #[serde(default)]
    scale_attn_by_inverse_layer_idx: bool,
}

impl Config {
    fn check(&self) -> Result<()> {
        super::check_heads(self.n_embd, self.n_head)?;
        if self.scale_attn_by_inverse_layer_idx {
            return Err(Error::input(
                "scale_attn_by_inverse_layer_idx = true is not supported",
            ));
        }
        Activation::parse(&self.activation_function).map(|_| ())
    }

    fn shape(&self) -> Shape {
        Shape {
            model_type: "gpt2".into(),
            vocab: self.vocab_size,
            layers: self.n_layer,
            hidden: self.n_embd,
            mlp: self.n_inner.unwrap_or(4 * self.n_embd),
            max_tokens: self.n_positions,
            pad_token_id: 0,
            causal: true,
        }
    }
}

fn gelu_new() -> String {
    "gelu_new".into()
}
fn eps() -> f64 {
    1e-5
}
fn yes() -> bool {
    true
}

struct Block {
    norm_1: LayerNorm,
    /// Queries, keys and values as one product (`c_attn`).
    query_key_value: Dense,
    attention_out: Dense,
    norm_2: LayerNorm,
    fc: Dense,
    projection: Dense,
}

pub(super) struct Gpt2 {
    shape: Shape,
    heads: usize,
    scale: f32,
    activation: Activation,
    /// Token and position tables, row-major.
    token: Vec<f32>,
    position: Vec<f32>,
    blocks: Vec<Block>,
    final_norm: LayerNorm,
}

impl Gpt2 {
    fn load(vb: VarBuilder<'_>, config: &Config, form: &Form) -> Result<Self> {
        config.check()?;
        let activation = Activation::parse(&config.activation_function)?;
        let h = config.n_embd;
        let inner = config.n_inner.unwrap_or(4 * h);
        let vb = super::root(vb, &["transformer"], "wte.weight");
        let eps = config.layer_norm_epsilon;
        let load = || -> candle_core::Result<Gpt2> {
            let mut blocks = Vec::with_capacity(config.n_layer);
            for i in 0..config.n_layer {
                let b = vb.pp(format!("h.{i}"));
                let mut block = Block {
                    norm_1: layer_norm(h, eps, b.pp("ln_1"))?,
                    query_key_value: Dense::load_transposed(h, 3 * h, b.pp("attn.c_attn"))?,
                    attention_out: Dense::load_transposed(h, h, b.pp("attn.c_proj"))?,
                    norm_2: layer_norm(h, eps, b.pp("ln_2"))?,
                    fc: Dense::load_transposed(h, inner, b.pp("mlp.c_fc"))?,
                    projection: Dense::load_transposed(inner, h, b.pp("mlp.c_proj"))?,
                };
                dense::pack(
                    [
                        &mut block.query_key_value,
                        &mut block.attention_out,
                        &mut block.fc,
                        &mut block.projection,
                    ],
                    form,
                )?;
                blocks.push(block);
            }
            let head_dim = h / config.n_head;
            Ok(Gpt2 {
                shape: config.shape(),
                heads: config.n_head,
                scale: if config.scale_attn_weights {
                    1.0 / (head_dim as f32).sqrt()
                } else {
                    1.0
                },
                activation,
                token: table(&vb, config.vocab_size, h, "wte.weight")?,
                position: table(&vb, config.n_positions, h, "wpe.weight")?,
                blocks,
                final_norm: layer_norm(h, eps, vb.pp("ln_f"))?,
            })
        };
        load()
            .map_err(|e| Error::input(format!("the checkpoint does not fit its config.json: {e}")))
    }

    /// Token plus position embedding of every position, `rows × hidden`.
    fn embed(&self, batch: &Batch<'_>) -> candle_core::Result<Vec<f32>> {
        let h = self.shape.hidden;
        let mut out = vec![0.0f32; batch.rows() * h];
        for (t, (&id, row)) in batch.ids.iter().zip(out.chunks_exact_mut(h)).enumerate() {
            row.copy_from_slice(row_of(&self.token, h, id as usize, "token id")?);
            let position = row_of(&self.position, h, t % batch.tokens, "position")?;
            row.iter_mut().zip(position).for_each(|(v, p)| *v += p);
        }
        Ok(out)
    }
}

impl Architecture for Gpt2 {
    fn shape(&self) -> &Shape {
        &self.shape
    }

    fn forward(&self, batch: &Batch<'_>, recorder: &mut Recorder) -> candle_core::Result<()> {
        let h = self.shape.hidden;
        let mut hidden = Tensor::from_vec(
            self.embed(batch)?,
            (batch.rows(), h),
            &candle_core::Device::Cpu,
        )?;
        let additive = batch.additive_mask();
        let heads = Heads::multi(self.heads, h / self.heads);
        let last = self.blocks.len();
        recorder.record(Site::Residual, 0, || Ok(hidden.clone()))?;
        for (l, block) in self.blocks.iter().enumerate() {
            let number = l + 1;
            let qkv = block
                .query_key_value
                .forward(&block.norm_1.forward(&hidden)?)?;
            let attended = super::attend(
                &qkv,
                batch,
                heads,
                Visibility::Causal { window: None },
                &additive,
                self.scale,
                &block.attention_out,
                &hidden,
                recorder,
                number,
            )?;
            let inner = self.activation.apply_with_bias(
                &block.fc.product(&block.norm_2.forward(&attended)?)?,
                &block.fc.bias,
            )?;
            recorder.record(Site::Mlp, number, || Ok(inner.clone()))?;
            hidden = block.projection.forward_plus(&inner, &attended)?;
            if number < last {
                recorder.record(Site::Residual, number, || Ok(hidden.clone()))?;
            }
        }
        // The last state is reported after the final norm.
        recorder.record(Site::Residual, last, || self.final_norm.forward(&hidden))
    }
}
