//! Transformer models that report their activations at three sites of
//! every layer, one family per file.
//!
//! ```text
//! residual 0 = embeddings ─▶ block 1 ─▶ residual 1 ─▶ … ─▶ block L ─▶ residual L
//! block l:   attention l = the attention's output projection, before the residual add
//!            mlp l       = the MLP's intermediate units after the nonlinearity
//!                          (act(fc) for GPT-2 and BERT, act(gate)·up for gated MLPs)
//! ```
//!
//! Residual states follow Hugging Face's `output_hidden_states`: layer 0 is
//! the embedding output and, for decoders with a final norm, the last state
//! is taken after that norm. Block `l` (numbered from 1, so that block `l`
//! writes residual `l`) is `layers.{l-1}` in the checkpoint.
//!
//! candle-transformers' models return only the last layer, so each family
//! is written here from its architecture, reading Hugging Face checkpoint
//! names, with the dense products, attention and element-wise steps of
//! `lca_linear` on the run's thread pool.

mod bert;
mod dense;
mod gpt2;
mod llama;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use lca_core::data::Site;
use lca_core::{Error, Result};
use serde::Deserialize;

pub(crate) use dense::CandleResult;
pub use dense::{Compute, Weights};

use lca_linear::kernels::elementwise::{Heads, Visibility};

use self::dense::{Dense, Form};
use crate::gguf::Gguf;
use crate::hub::ModelFiles;
use crate::ops::attention;

/// A model family: the `model_type`s it reads and how to load them.
pub struct Family {
    /// Short name, as `lca list` shows it.
    pub name: &'static str,
    /// The `model_type` values of `config.json` it reads.
    pub model_types: &'static [&'static str],
    /// What it covers and how it is built.
    pub about: &'static str,
    /// The sizes its `config.json` describes, without the weights.
    shape: fn(&str) -> Result<Shape>,
    load: fn(&str, VarBuilder<'_>, &Form) -> Result<Box<dyn Architecture>>,
}

/// Every family the `transformer` source reads.
pub const FAMILIES: [Family; 3] = [bert::FAMILY, gpt2::FAMILY, llama::FAMILY];

/// The supported `model_type`s, for messages.
pub fn supported_types() -> String {
    FAMILIES
        .iter()
        .map(|f| {
            let types: Vec<&str> = f
                .model_types
                .iter()
                .copied()
                .filter(|t| !t.is_empty())
                .collect();
            format!("{} ({})", f.name, types.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The sizes of a loaded model that extraction needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shape {
    /// `model_type` of its configuration.
    pub model_type: String,
    /// Rows of the token embedding: ids must stay below.
    pub vocab: usize,
    /// Blocks (residual states are one more).
    pub layers: usize,
    /// Width of the residual stream and of the attention output.
    pub hidden: usize,
    /// Intermediate units of each MLP.
    pub mlp: usize,
    /// Tokens one input may hold, special tokens included.
    pub max_tokens: usize,
    /// Id used for padding.
    pub pad_token_id: u32,
    /// True for decoders: each position sees only itself and the positions
    /// before it.
    pub causal: bool,
}

impl Shape {
    /// Units of one layer's `site`.
    pub fn width(&self, site: Site) -> usize {
        match site {
            Site::Residual | Site::Attention => self.hidden,
            Site::Mlp => self.mlp,
        }
    }

    /// The layers `site` has: 0 (embeddings) … L for the residual stream,
    /// 1 … L for the sites inside blocks.
    pub fn layers_of(&self, site: Site) -> std::ops::RangeInclusive<usize> {
        match site {
            Site::Residual => 0..=self.layers,
            Site::Mlp | Site::Attention => 1..=self.layers,
        }
    }
}

/// A right-padded batch of token ids.
#[derive(Clone, Copy, Debug)]
pub struct Batch<'a> {
    /// `sequences × tokens` ids, row-major.
    pub ids: &'a [u32],
    /// Real tokens of each sequence; the rest of its row is padding.
    pub lengths: &'a [usize],
    /// Positions per sequence, padding included.
    pub tokens: usize,
}

impl Batch<'_> {
    /// Sequences in the batch.
    pub fn sequences(&self) -> usize {
        self.lengths.len()
    }

    /// Rows of every activation: one per position.
    pub fn rows(&self) -> usize {
        self.lengths.len() * self.tokens
    }

    /// The attention mask to add to scores: 0 for real keys, the most
    /// negative float for padding (what Hugging Face adds).
    pub fn additive_mask(&self) -> Vec<f32> {
        let mut mask = vec![f32::MIN; self.rows()];
        for (row, &n) in mask.chunks_exact_mut(self.tokens.max(1)).zip(self.lengths) {
            row[..n.min(self.tokens)].fill(0.0);
        }
        mask
    }

    /// Fails unless the ids fill the batch.
    fn check(&self) -> candle_core::Result<()> {
        if self.ids.len() != self.rows() || self.lengths.iter().any(|&n| n > self.tokens) {
            candle_core::bail!(
                "a batch of {} sequences × {} tokens has {} ids",
                self.sequences(),
                self.tokens,
                self.ids.len()
            );
        }
        Ok(())
    }
}

/// The activations one forward pass keeps: the wanted layer sites, each
/// `[rows, width]`, and nothing else.
pub struct Recorder {
    wanted: Vec<(Site, usize)>,
    got: Vec<Option<Tensor>>,
}

impl Recorder {
    /// Keeps `wanted`, in this order.
    pub fn new(wanted: &[(Site, usize)]) -> Self {
        Recorder {
            wanted: wanted.to_vec(),
            got: vec![None; wanted.len()],
        }
    }

    /// True when layer `layer`'s `site` is kept.
    pub fn wants(&self, site: Site, layer: usize) -> bool {
        self.wanted.contains(&(site, layer))
    }

    /// Keeps what `value` computes when the site is wanted. Tensors share
    /// their storage, so a kept tensor must not be written to afterwards:
    /// the models finish products in place only before they record them.
    fn record(
        &mut self,
        site: Site,
        layer: usize,
        value: impl FnOnce() -> candle_core::Result<Tensor>,
    ) -> candle_core::Result<()> {
        if let Some(slot) = self.wanted.iter().position(|&w| w == (site, layer)) {
            self.got[slot] = Some(value()?);
        }
        Ok(())
    }

    /// The kept activations, in the order asked for.
    ///
    /// # Errors
    /// When the model has no such layer site.
    pub fn finish(self) -> Result<Vec<Tensor>> {
        self.wanted
            .iter()
            .zip(self.got)
            .map(|(&(site, layer), got)| {
                got.ok_or_else(|| {
                    Error::input(format!(
                        "the model has no {site} activations at layer {layer}"
                    ))
                })
            })
            .collect()
    }
}

/// A model family's forward pass.
pub trait Architecture: Send + Sync {
    /// Its sizes.
    fn shape(&self) -> &Shape;

    /// Runs `batch` and hands every wanted activation to `recorder`.
    ///
    /// # Errors
    /// On ids outside the vocabulary or positions beyond the model's.
    fn forward(&self, batch: &Batch<'_>, recorder: &mut Recorder) -> candle_core::Result<()>;
}

/// A block's attention: `softmax(q kᵀ·scale) v` over the keys `visible`
/// lets each query see, through the output projection `output`, plus the
/// `residual`. The projection's output before the residual add is recorded
/// as block `layer`'s attention site when it is wanted.
#[allow(clippy::too_many_arguments)]
fn attend(
    qkv: &Tensor,
    batch: &Batch<'_>,
    heads: Heads,
    visible: Visibility,
    additive: &[f32],
    scale: f32,
    output: &Dense,
    residual: &Tensor,
    recorder: &mut Recorder,
    layer: usize,
) -> candle_core::Result<Tensor> {
    let context = attention(qkv, batch.sequences(), heads, visible, additive, scale)?;
    let (summed, branch) =
        output.forward_plus_branch(&context, residual, recorder.wants(Site::Attention, layer))?;
    if let Some(branch) = branch {
        recorder.record(Site::Attention, layer, || Ok(branch))?;
    }
    Ok(summed)
}

/// Runs `batch` and returns the activations of `wanted`, in order.
///
/// # Errors
/// As [`Architecture::forward`], or for a layer site the model lacks.
pub fn activations(
    model: &dyn Architecture,
    batch: &Batch<'_>,
    wanted: &[(Site, usize)],
) -> Result<Vec<Tensor>> {
    let mut recorder = Recorder::new(wanted);
    batch.check().lca()?;
    model.forward(batch, &mut recorder).lca()?;
    recorder.finish()
}

/// The configuration as `config.json` text: the file itself, or what a GGUF
/// file's metadata says.
fn config_text(files: &ModelFiles) -> Result<String> {
    if files.is_gguf() {
        Gguf::open(&files.config)?.config()
    } else {
        std::fs::read_to_string(&files.config).map_err(|e| Error::io("read", &files.config, e))
    }
}

/// The fields of `config.json` that pick the family.
#[derive(Deserialize)]
struct Kind {
    #[serde(default)]
    model_type: String,
}

/// Reads the model's sizes from its `config.json`, without the weights.
///
/// # Errors
/// When the file cannot be read or describes no supported model.
pub fn shape_of(files: &ModelFiles) -> Result<Shape> {
    let text = config_text(files)?;
    let family = family_of(files, &text)?;
    (family.shape)(&text).map_err(|e| Error::format(&files.config, None, e.to_string()))
}

/// Reads `config.json` far enough to name the model's family.
///
/// # Errors
/// When it is not JSON, or names a family this source does not read.
pub fn family_of(files: &ModelFiles, text: &str) -> Result<&'static Family> {
    let kind: Kind = serde_json::from_str(text).map_err(|e| {
        Error::format(
            &files.config,
            Some(e.line()),
            format!("is not a model configuration: {e}"),
        )
    })?;
    FAMILIES
        .iter()
        .find(|f| f.model_types.contains(&kind.model_type.as_str()))
        .ok_or_else(|| {
            Error::format(
                &files.config,
                None,
                format!(
                    "names model_type `{}`, which the transformer source does not read. \
                     It reads: {}. Use a model of one of these families, or extract the \
                     activations elsewhere and read them with the `npy` source",
                    kind.model_type,
                    supported_types()
                ),
            )
        })
}

/// Parses a family's configuration, naming the file on failure.
pub(crate) fn parse_config<T: serde::de::DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| {
        Error::input(format!(
            "config.json (line {}) does not describe this model family: {e}",
            e.line()
        ))
    })
}

/// Loads the model in `files`, with dense products in `compute` (pass
/// [`Compute::effective`] of what the user asked for) and weights held as
/// `weights` asks.
///
/// # Errors
/// Unreadable or inconsistent files, named; `quantized` weights of a
/// checkpoint that is not GGUF.
pub fn load(
    files: &ModelFiles,
    compute: Compute,
    weights: Weights,
) -> Result<Box<dyn Architecture>> {
    if files.is_gguf() {
        let file = Gguf::open(&files.weights)?;
        let mut config: serde_json::Value = serde_json::from_str(&file.config()?)
            .map_err(|e| Error::input(format!("GGUF configuration: {e}")))?;
        let family = family_of(files, &config.to_string())?;
        let count = |key: &str| config[key].as_u64().unwrap_or(0) as usize;
        let heads = count("num_attention_heads");
        let read = file.weights(heads, count("num_key_value_heads"))?;
        if let Some(factors) = read.rope_frequency_factors {
            config["rope_frequency_factors"] = serde_json::json!(factors);
        }
        let form = Form::new(compute, weights, read.dense);
        return (family.load)(&config.to_string(), read.tensors, &form)
            .map_err(|e| Error::format(&files.weights, None, e.to_string()));
    }
    let text = config_text(files)?;
    let family = family_of(files, &text)?;
    if weights == Weights::Quantized {
        return Err(Error::input(format!(
            "`weights = \"quantized\"` keeps the blocks of a GGUF file, and the model in {} \
             is not one. Use `weights = \"bf16\"` to halve its memory, or point `model` at a \
             GGUF file",
            files.dir.display()
        )));
    }
    let device = Device::Cpu;
    let shards = files.weight_files()?;
    let is_safetensors = shards[0].extension().is_some_and(|e| e == "safetensors");
    let unreadable = |path: &std::path::Path, e: candle_core::Error| {
        Error::format(path, None, format!("cannot be read as model weights: {e}"))
    };
    let vb = if is_safetensors {
        crate::mapped::safetensors(&shards, DType::F32, &device)
            .map_err(|e| unreadable(&shards[0], e))?
    } else {
        VarBuilder::from_pth(&shards[0], DType::F32, &device)
            .map_err(|e| unreadable(&shards[0], e))?
    };
    let form = Form::new(compute, weights, std::collections::HashMap::new());
    (family.load)(&text, vb, &form).map_err(|e| Error::format(&files.weights, None, e.to_string()))
}

/// The checkpoint's root: where `marker` is found, under one of
/// `prefixes` or at the top.
fn root<'a>(vb: VarBuilder<'a>, prefixes: &[&str], marker: &str) -> VarBuilder<'a> {
    prefixes
        .iter()
        .map(|p| vb.pp(*p))
        .find(|v| v.contains_tensor(marker))
        .unwrap_or(vb)
}

/// A table of `rows × width` values (an embedding), row-major.
fn table(
    vb: &VarBuilder<'_>,
    rows: usize,
    width: usize,
    name: &str,
) -> candle_core::Result<Vec<f32>> {
    vb.get((rows, width), name)?.flatten_all()?.to_vec1()
}

/// The row of `id` in a table of rows of `width`, or an error naming it.
fn row_of<'t>(
    table: &'t [f32],
    width: usize,
    id: usize,
    what: &str,
) -> candle_core::Result<&'t [f32]> {
    table.get(id * width..(id + 1) * width).ok_or_else(|| {
        candle_core::Error::Msg(format!(
            "{what} {id} is outside the model's {} {what}s",
            table.len() / width.max(1)
        ))
    })
}

/// Errs unless `heads` divide `width`.
fn check_heads(width: usize, heads: usize) -> Result<()> {
    if heads == 0 || !width.is_multiple_of(heads) {
        return Err(Error::input(format!(
            "the hidden size {width} is not divisible by the {heads} attention heads"
        )));
    }
    Ok(())
}
