//! GGUF, the single-file format local LLMs ship in (llama.cpp): the
//! architecture and tokenizer in its metadata, the weights in blocks of one
//! of ggml's quantization types.
//!
//! A GGUF file becomes what a Hugging Face folder gives: a `config.json`
//! text for the family's own parser, the weights dequantized to `f32` under
//! Hugging Face names, and a tokenizer built as transformers builds it from
//! the same metadata (so that both see the same ids). candle reads the file
//! and dequantizes every block type it knows (F32, F16, BF16, Q4_0, Q4_1,
//! Q5_0, Q5_1, Q8_0, Q2_K … Q8_K).
//!
//! llama.cpp stores the query and key weights of `llama` files with the
//! rows of each head interleaved for its rotary kernel; they are put back in
//! Hugging Face's order on load. Other architectures are stored as is.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::{QStorage, QTensor};
use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use lca_core::{Error, Result};
use serde_json::{Value as Json, json};
use tokenizers::Tokenizer;

/// Architectures read from GGUF, as `general.architecture` names them.
pub const ARCHITECTURES: [&str; 4] = ["llama", "mistral", "qwen2", "qwen3"];

/// What a GGUF file's tensors give a model.
pub struct GgufWeights {
    /// Embeddings, norms and biases, in `f32`.
    pub tensors: VarBuilder<'static>,
    /// The dense layers' weights, as stored.
    pub dense: HashMap<String, QTensor>,
    /// llama.cpp's rotary frequency factors (Llama 3), if the file has them.
    pub rope_frequency_factors: Option<Vec<f32>>,
}

/// An open GGUF file: its metadata and tensor directory.
pub struct Gguf {
    path: PathBuf,
    content: Content,
}

/// Token types of `tokenizer.ggml.token_type`.
const CONTROL: u32 = 3;
const USER_DEFINED: u32 = 4;

impl Gguf {
    /// Reads the header, metadata and tensor directory (not the weights).
    ///
    /// # Errors
    /// When the file is unreadable, truncated or not GGUF.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
        let mut reader = BufReader::new(file);
        let content = guarded(path, || Content::read(&mut reader)).map_err(|why| {
            Error::format(
                path,
                None,
                format!(
                    "is not a readable GGUF file ({why}); it may be truncated or of another \
                     format. Download it again, or point `model` at a Hugging Face folder"
                ),
            )
        })?;
        Ok(Gguf {
            path: path.to_path_buf(),
            content,
        })
    }

    fn fail(&self, why: impl std::fmt::Display) -> Error {
        Error::format(&self.path, None, why.to_string())
    }

    fn value(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    fn text(&self, key: &str) -> Result<&str> {
        match self.value(key) {
            Some(Value::String(s)) => Ok(s),
            Some(other) => Err(self.fail(format!("metadata `{key}` is not text: {other:?}"))),
            None => Err(self.fail(format!("has no metadata `{key}`"))),
        }
    }

    fn number(&self, key: &str) -> Result<Option<f64>> {
        self.value(key)
            .map(|v| {
                number(v).ok_or_else(|| self.fail(format!("metadata `{key}` is not a number")))
            })
            .transpose()
    }

    fn count(&self, key: &str) -> Result<Option<usize>> {
        Ok(self
            .number(key)?
            .and_then(|v| (v >= 0.0 && v.fract() == 0.0 && v < 1e12).then_some(v as usize)))
    }

    fn required(&self, key: &str) -> Result<usize> {
        self.count(key)?
            .ok_or_else(|| self.fail(format!("has no metadata `{key}` (a whole number)")))
    }

    /// Each element of the list `key` through `read`, which names what it
    /// expects when an element is something else.
    fn list<T>(
        &self,
        key: &str,
        read: impl Fn(&Value) -> Option<T>,
        expected: &str,
    ) -> Result<Option<Vec<T>>> {
        let Some(value) = self.value(key) else {
            return Ok(None);
        };
        let Value::Array(items) = value else {
            return Err(self.fail(format!("metadata `{key}` is not a list")));
        };
        items
            .iter()
            .map(|v| {
                read(v).ok_or_else(|| {
                    self.fail(format!(
                        "metadata `{key}` holds something other than {expected}"
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    fn strings(&self, key: &str) -> Result<Option<Vec<String>>> {
        self.list(
            key,
            |v| match v {
                Value::String(s) => Some(s.clone()),
                _ => None,
            },
            "text",
        )
    }

    fn numbers(&self, key: &str) -> Result<Option<Vec<f64>>> {
        self.list(key, number, "numbers")
    }

    /// `general.architecture`, checked.
    fn architecture(&self) -> Result<&str> {
        let arch = self.text("general.architecture")?;
        if !ARCHITECTURES.contains(&arch) {
            return Err(self.fail(format!(
                "holds a `{arch}` model; GGUF files of these architectures are read: {}",
                ARCHITECTURES.join(", ")
            )));
        }
        Ok(arch)
    }

    /// The model's `config.json`, in Hugging Face's names, from the
    /// metadata.
    ///
    /// # Errors
    /// For other architectures or missing sizes.
    pub fn config(&self) -> Result<String> {
        let arch = self.architecture()?;
        let key = |name: &str| format!("{arch}.{name}");
        let heads = self.required(&key("attention.head_count"))?;
        let hidden = self.required(&key("embedding_length"))?;
        let tokens = self.strings("tokenizer.ggml.tokens")?.map(|t| t.len());
        let vocab = match self.count(&key("vocab_size"))? {
            Some(v) => v,
            None => tokens.ok_or_else(|| {
                self.fail("states no vocabulary size and holds no tokenizer".to_string())
            })?,
        };
        let head_dim = match self.count(&key("attention.key_length"))? {
            Some(d) => Some(d),
            None if arch == "llama" || arch == "mistral" => {
                self.count(&key("rope.dimension_count"))?
            }
            None => None,
        };
        let mut config = json!({
            "model_type": if arch == "mistral" { "llama" } else { arch },
            "vocab_size": vocab,
            "hidden_size": hidden,
            "intermediate_size": self.required(&key("feed_forward_length"))?,
            "num_hidden_layers": self.required(&key("block_count"))?,
            "num_attention_heads": heads,
            "num_key_value_heads": self.count(&key("attention.head_count_kv"))?.unwrap_or(heads),
            "max_position_embeddings": self.required(&key("context_length"))?,
            "rms_norm_eps": self.number(&key("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-6),
            "rope_theta": self.number(&key("rope.freq_base"))?.unwrap_or(10_000.0),
            "hidden_act": "silu",
        });
        if let Some(d) = head_dim {
            config["head_dim"] = json!(d);
        }
        if let Some(pad) = self.count("tokenizer.ggml.padding_token_id")? {
            config["pad_token_id"] = json!(pad);
        }
        match self.value(&key("rope.scaling.type")) {
            None => {}
            Some(Value::String(kind)) if kind == "none" => {}
            Some(Value::String(kind)) if kind == "linear" => {
                config["rope_scaling"] = json!({
                    "rope_type": "linear",
                    "factor": self.number(&key("rope.scaling.factor"))?.unwrap_or(1.0),
                });
            }
            Some(other) => {
                return Err(self.fail(format!(
                    "uses rope scaling {other:?}, which is not supported (linear, or the \
                     frequency factors of Llama 3)"
                )));
            }
        }
        Ok(config.to_string())
    }

    /// Every tensor the model uses, under Hugging Face names: the dense
    /// layers' weights as the file's blocks (each layer expands or keeps
    /// them as its [`Weights`](crate::model::Weights) asks when it loads),
    /// the rest dequantized to `f32`; and llama.cpp's rotary frequency
    /// factors if the file has them.
    ///
    /// # Errors
    /// When a tensor cannot be read, or its type is unknown.
    pub fn weights(&self, heads: usize, key_value_heads: usize) -> Result<GgufWeights> {
        let arch = self.architecture()?;
        let permuted = arch == "llama" || arch == "mistral";
        let file = File::open(&self.path).map_err(|e| Error::io("open", &self.path, e))?;
        let mut reader = BufReader::new(file);
        let device = Device::Cpu;
        let mut tensors = HashMap::new();
        let mut dense = HashMap::new();
        let mut factors = None;
        let mut names: Vec<&String> = self.content.tensor_infos.keys().collect();
        names.sort();
        for name in names {
            let target = match hf_name(name) {
                Some(target) => target,
                None if name == "rope_freqs.weight" => "rope_freqs".to_string(),
                None => continue,
            };
            let info = &self.content.tensor_infos[name];
            let elements = info
                .shape
                .dims()
                .iter()
                .try_fold(1usize, |n, &d| n.checked_mul(d));
            if elements.is_none_or(|n| n > 1 << 40) {
                return Err(self.fail(format!(
                    "tensor `{name}` has an impossible shape {:?}",
                    info.shape
                )));
            }
            let unreadable = |why| self.fail(format!("tensor `{name}` cannot be read: {why}"));
            let blocks = guarded(&self.path, || {
                self.content.tensor(&mut reader, name, &device)
            })
            .map_err(unreadable)?;
            if target.ends_with("_proj.weight") {
                let blocks = if permuted && name.contains(".attn_q.") {
                    guarded(&self.path, || unpermute(&blocks, heads))
                } else if permuted && name.contains(".attn_k.") {
                    guarded(&self.path, || unpermute(&blocks, key_value_heads))
                } else {
                    Ok(blocks)
                }
                .map_err(|why| self.fail(why))?;
                dense.insert(target, blocks);
                continue;
            }
            let tensor = guarded(&self.path, || {
                blocks.dequantize(&device)?.to_dtype(DType::F32)
            })
            .map_err(unreadable)?;
            if target == "rope_freqs" {
                factors = Some(
                    tensor
                        .flatten_all()
                        .and_then(|t| t.to_vec1::<f32>())
                        .map_err(|e| self.fail(e))?,
                );
                continue;
            }
            tensors.insert(target, tensor);
        }
        Ok(GgufWeights {
            tensors: VarBuilder::from_tensors(tensors, DType::F32, &device),
            dense,
            rope_frequency_factors: factors,
        })
    }

    /// The tokenizer the metadata describes, as transformers builds it.
    ///
    /// # Errors
    /// When the file has no tokenizer, or one of another kind.
    pub fn tokenizer(&self) -> Result<Tokenizer> {
        let kind = self.text("tokenizer.ggml.model")?;
        let tokens = self
            .strings("tokenizer.ggml.tokens")?
            .ok_or_else(|| self.fail("has no tokenizer.ggml.tokens"))?;
        let types: Vec<u32> = self
            .numbers("tokenizer.ggml.token_type")?
            .unwrap_or_default()
            .into_iter()
            .map(|t| t as u32)
            .collect();
        let merges = self.strings("tokenizer.ggml.merges")?.ok_or_else(|| {
            self.fail("has no tokenizer.ggml.merges; tokenizers without merges are not read")
        })?;
        let merges: Vec<Json> = merges
            .iter()
            .map(|m| match m.split_once(' ') {
                Some((a, b)) => Ok(json!([a, b])),
                None => Err(self.fail(format!("has a merge without a space: {m:?}"))),
            })
            .collect::<Result<_>>()?;
        let token_id = |key: &str| -> Result<Option<usize>> {
            Ok(self.count(key)?.filter(|&id| id < tokens.len()))
        };
        let bos = token_id("tokenizer.ggml.bos_token_id")?;
        let add_bos = match self.value("tokenizer.ggml.add_bos_token") {
            Some(Value::Bool(b)) => *b,
            // SentencePiece vocabularies that do not say get BOS, as
            // llama.cpp gives it.
            _ => kind == "llama",
        };
        let byte_level = match kind {
            "gpt2" => true,
            "llama" => false,
            other => {
                return Err(self.fail(format!(
                    "has a `{other}` tokenizer; GGUF tokenizers of kind gpt2 (byte-level BPE) and \
                     llama (SentencePiece BPE) are read"
                )));
            }
        };
        let bytes = byte_alphabet();
        let alphabet: HashSet<char> = bytes.iter().copied().collect();
        // A byte-level vocabulary is spelled in the byte alphabet; a token
        // written as plain text is respelled from its UTF-8 bytes.
        let spelled: Vec<String> = tokens
            .iter()
            .map(|t| {
                if !byte_level || t.chars().all(|c| alphabet.contains(&c)) {
                    t.clone()
                } else {
                    t.bytes().map(|b| bytes[b as usize]).collect()
                }
            })
            .collect();
        let vocab: serde_json::Map<String, Json> = spelled
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), json!(i)))
            .collect();
        let mut added = Vec::new();
        for (id, (token, &kind_of)) in tokens
            .iter()
            .zip(types.iter().chain(std::iter::repeat(&1)))
            .enumerate()
        {
            let special = match kind_of {
                // A control token spelled outside the byte alphabet is a
                // mislabel in byte-level files; transformers skips it too.
                CONTROL if !byte_level || token.chars().all(|c| alphabet.contains(&c)) => true,
                USER_DEFINED => false,
                _ => continue,
            };
            added.push(json!({
                "id": id, "content": token, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": special,
            }));
        }
        let post_processor = match bos.filter(|_| add_bos) {
            Some(id) => json!({
                "type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": tokens[id], "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": tokens[id], "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                         {"SpecialToken": {"id": tokens[id], "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {tokens[id].clone(): {"id": tokens[id], "ids": [id], "tokens": [tokens[id]]}},
            }),
            None => json!({
                "type": "TemplateProcessing",
                "single": [{"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {},
            }),
        };
        let spec = if byte_level {
            let pre = self.value("tokenizer.ggml.pre").and_then(|v| match v {
                Value::String(s) => split_pattern(s),
                _ => None,
            });
            let pre_tokenizer = match pre {
                Some(pattern) => json!({"type": "Sequence", "pretokenizers": [
                    {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false},
                    {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false},
                ]}),
                None => {
                    json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true})
                }
            };
            json!({
                "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
                "normalizer": null, "pre_tokenizer": pre_tokenizer, "post_processor": post_processor,
                "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
                "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
                          "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false,
                          "ignore_merges": false, "vocab": vocab, "merges": merges},
            })
        } else {
            let unk = token_id("tokenizer.ggml.unknown_token_id")?.map(|id| tokens[id].clone());
            json!({
                "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
                "normalizer": null,
                "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false},
                "post_processor": post_processor,
                "decoder": {"type": "Sequence", "decoders": [
                    {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
                    {"type": "ByteFallback"}, {"type": "Fuse"},
                    {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
                "model": {"type": "BPE", "dropout": null, "unk_token": unk, "continuing_subword_prefix": null,
                          "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true,
                          "ignore_merges": false, "vocab": vocab, "merges": merges},
            })
        };
        let text = spec.to_string();
        match std::panic::catch_unwind(|| text.parse::<Tokenizer>()) {
            Ok(Ok(tokenizer)) => Ok(tokenizer),
            Ok(Err(e)) => Err(self.fail(format!("holds a tokenizer that cannot be built: {e}"))),
            Err(_) => Err(self.fail("holds a tokenizer that cannot be built")),
        }
    }
}

/// Runs candle's reader, turning its errors and panics into text.
fn guarded<T>(
    path: &Path,
    read: impl FnOnce() -> candle_core::Result<T>,
) -> std::result::Result<T, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(e.to_string()),
        Err(payload) => Err(format!(
            "the reader failed on {} ({})",
            path.display(),
            lca_core::run::panic_message(payload.as_ref())
        )),
    }
}

fn number(value: &Value) -> Option<f64> {
    Some(match value {
        Value::U8(v) => f64::from(*v),
        Value::I8(v) => f64::from(*v),
        Value::U16(v) => f64::from(*v),
        Value::I16(v) => f64::from(*v),
        Value::U32(v) => f64::from(*v),
        Value::I32(v) => f64::from(*v),
        Value::U64(v) => *v as f64,
        Value::I64(v) => *v as f64,
        Value::F32(v) => f64::from(*v),
        Value::F64(v) => *v,
        _ => return None,
    })
}

/// The Hugging Face name of a llama.cpp tensor the models read.
fn hf_name(name: &str) -> Option<String> {
    let top = BTreeMap::from([
        ("token_embd.weight", "model.embed_tokens.weight"),
        ("output_norm.weight", "model.norm.weight"),
    ]);
    if let Some(target) = top.get(name) {
        return Some((*target).to_string());
    }
    let rest = name.strip_prefix("blk.")?;
    let (layer, part) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, suffix) = part.rsplit_once('.')?;
    let target = match module {
        "attn_norm" => "input_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "attn_q_norm" => "self_attn.q_norm",
        "attn_k_norm" => "self_attn.k_norm",
        "ffn_norm" => "post_attention_layernorm",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{target}.{suffix}"))
}

/// Undoes llama.cpp's interleaving of the rows of each head: its row
/// `2i + j` of a head (`j` ∈ {0, 1}) is Hugging Face's row `j·width/2 + i`.
/// Rows are moved as they are stored (whole blocks), whatever their type.
fn unpermute(weight: &QTensor, heads: usize) -> candle_core::Result<QTensor> {
    let (rows, inputs) = weight.shape().dims2()?;
    if heads == 0 || !rows.is_multiple_of(2 * heads) {
        candle_core::bail!("{rows} rows do not split into {heads} heads of pairs");
    }
    let data = weight.data()?;
    if !data.len().is_multiple_of(rows) {
        candle_core::bail!("{} bytes do not form {rows} rows", data.len());
    }
    let row_bytes = data.len() / rows;
    let half = rows / heads / 2;
    let mut moved = Vec::with_capacity(data.len());
    for head in 0..heads {
        for j in 0..2 {
            for i in 0..half {
                let from = (head * 2 * half + 2 * i + j) * row_bytes;
                moved.extend_from_slice(&data[from..from + row_bytes]);
            }
        }
    }
    let storage =
        QStorage::from_data(std::borrow::Cow::Owned(moved), &Device::Cpu, weight.dtype())?;
    QTensor::new(storage, (rows, inputs))
}

/// GPT-2's printable spelling of each byte, indexed by byte.
fn byte_alphabet() -> Vec<char> {
    let printable =
        |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut next = 256;
    (0..256u32)
        .map(|b| {
            if printable(b) {
                char::from_u32(b).unwrap_or('?')
            } else {
                let c = char::from_u32(next).unwrap_or('?');
                next += 1;
                c
            }
        })
        .collect()
}

/// The text split a byte-level vocabulary was trained with, by llama.cpp's
/// `tokenizer.ggml.pre` name; `None` keeps GPT-2's.
fn split_pattern(pre: &str) -> Option<&'static str> {
    const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const TEKKEN: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const GPT4O: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    Some(match pre {
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" | "jina-v5-nano" | "dbrx" | "smaug-bpe" => LLAMA3,
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "megrez" => QWEN2,
        "tekken" => TEKKEN,
        "gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2" => GPT4O,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Tensor;
    use candle_core::quantized::GgmlDType;

    /// `values` as stored rows of `inputs` values in `dtype`.
    fn stored(values: Vec<f32>, inputs: usize, dtype: GgmlDType) -> QTensor {
        let rows = values.len() / inputs;
        let tensor = Tensor::from_vec(values, (rows, inputs), &Device::Cpu).unwrap();
        QTensor::quantize(&tensor, dtype).unwrap()
    }

    fn rows_of(weight: &QTensor) -> Vec<Vec<f32>> {
        weight
            .dequantize(&Device::Cpu)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap()
    }

    #[test]
    fn unpermuting_puts_interleaved_pairs_back_in_halves() {
        // One head of 4 rows: llama.cpp's order is (0, 2, 1, 3) of ours.
        let ours = unpermute(&stored(vec![0., 2., 1., 3.], 1, GgmlDType::F32), 1).unwrap();
        assert_eq!(rows_of(&ours), [[0.], [1.], [2.], [3.]]);
        // Two heads apart.
        let two = stored(vec![0., 2., 1., 3., 4., 6., 5., 7.], 1, GgmlDType::F32);
        let ours = unpermute(&two, 2).unwrap();
        let expected: Vec<Vec<f32>> = (0..8).map(|r| vec![r as f32]).collect();
        assert_eq!(rows_of(&ours), expected);
        assert!(unpermute(&two, 3).is_err());
    }

    #[test]
    fn unpermuting_moves_quantized_rows_whole() {
        // Rows of 32 values, one Q8_0 block each, row r filled with r.
        let rows: Vec<f32> = [0., 2., 1., 3.]
            .iter()
            .flat_map(|&r| std::iter::repeat_n(r, 32))
            .collect();
        let ours = unpermute(&stored(rows, 32, GgmlDType::Q8_0), 1).unwrap();
        assert_eq!(ours.dtype(), GgmlDType::Q8_0);
        for (r, row) in rows_of(&ours).iter().enumerate() {
            // Q8_0 keeps each block's scale in f16: within 0.1%.
            assert!(
                row.iter().all(|&v| (v - r as f32).abs() < 1e-2),
                "row {r}: {row:?}"
            );
        }
    }

    #[test]
    fn names_map_to_hugging_face() {
        assert_eq!(
            hf_name("blk.11.ffn_gate.weight").as_deref(),
            Some("model.layers.11.mlp.gate_proj.weight")
        );
        assert_eq!(
            hf_name("blk.0.attn_q.bias").as_deref(),
            Some("model.layers.0.self_attn.q_proj.bias")
        );
        assert_eq!(hf_name("output.weight"), None);
        assert_eq!(hf_name("blk.x.attn_q.weight"), None);
    }

    #[test]
    fn the_byte_alphabet_is_gpt2s() {
        let alphabet = byte_alphabet();
        assert_eq!(alphabet[b' ' as usize], 'Ġ');
        assert_eq!(alphabet[b'a' as usize], 'a');
        assert_eq!(alphabet[b'\n' as usize], 'Ċ');
        assert_eq!(alphabet.iter().collect::<HashSet<_>>().len(), 256);
    }
}
