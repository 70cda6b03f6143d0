//! A tiny random encoder with a real WordPiece tokenizer, written to a
//! model folder like any Hugging Face checkpoint. Tests run it without a
//! download; the committed fixture under `tests/fixtures/` was written by
//! the `tiny-model` example and checked against Python transformers.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use lca_core::rng::Rng;
use lca_core::{Error, Result};
use safetensors::tensor::{Dtype, TensorView};
use tokenizers::Tokenizer;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::processors::roberta::RobertaProcessing;

/// Which family the tiny model imitates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// BERT: positions from 0, `[CLS]` … `[SEP]`.
    Bert,
    /// RoBERTa: positions from `pad + 1`, `<s>` … `</s>`.
    Roberta,
    /// DistilBERT: its own parameter names, no token types.
    DistilBert,
}

/// The vocabulary: specials first, then words and continuation pieces.
pub const VOCAB: &[&str] = &[
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "a", "cat", "dog", "sat", "ran", "on",
    "mat", "and", "quick", "brown", "fox", "jump", "##s", "##ed", "##ing", "##ly", "over", "lazy",
    "walk", "talk", "un", "##believ", "##able", ".", ",", "!", "?", "'", "it", "is", "was", "in",
    "of", "to", "he", "she", "they", "house", "tree", "big", "small", "red", "green", "blue",
    "runs", "##er", "##est", "play", "read", "book", "time", "day", "night", "good",
];

/// Hidden width.
pub const HIDDEN: usize = 32;
/// Encoder layers.
pub const LAYERS: usize = 2;
const HEADS: usize = 4;
const INTERMEDIATE: usize = 64;
const POSITIONS: usize = 40;

fn vocab() -> Vec<String> {
    VOCAB.iter().map(|w| w.to_string()).collect()
}

/// Writes `config.json`, `model.safetensors`, `tokenizer.json` and
/// `vocab.txt` of a tiny random model into `dir`. The same `seed` always
/// writes the same bytes.
///
/// # Errors
/// When the folder cannot be written.
pub fn write(dir: &Path, family: Family, seed: u64) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create folder", dir, e))?;
    let vocab = vocab();
    // [PAD] is id 0 in both; RoBERTa numbers positions from pad + 1.
    let pad = 0u32;
    let positions = match family {
        Family::Bert | Family::DistilBert => POSITIONS,
        Family::Roberta => POSITIONS + pad as usize + 1,
    };
    let config = if family == Family::DistilBert {
        serde_json::json!({
            "architectures": ["DistilBertModel"],
            "model_type": "distilbert",
            "vocab_size": vocab.len(),
            "dim": HIDDEN,
            "n_layers": LAYERS,
            "n_heads": HEADS,
            "hidden_dim": INTERMEDIATE,
            "activation": "gelu",
            "dropout": 0.0,
            "attention_dropout": 0.0,
            "max_position_embeddings": positions,
            "sinusoidal_pos_embds": false,
            "pad_token_id": pad,
        })
    } else {
        serde_json::json!({
        "architectures": [if family == Family::Bert { "BertModel" } else { "RobertaModel" }],
        "model_type": if family == Family::Bert { "bert" } else { "roberta" },
        "vocab_size": vocab.len(),
        "hidden_size": HIDDEN,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "intermediate_size": INTERMEDIATE,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "max_position_embeddings": positions,
        "type_vocab_size": if family == Family::Bert { 2 } else { 1 },
        "layer_norm_eps": 1e-12,
        "pad_token_id": pad,
        "position_embedding_type": "absolute",
        })
    };
    let write_file = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| Error::io("write", &path, e))
    };
    write_file(
        "config.json",
        serde_json::to_string_pretty(&config)
            .expect("json")
            .as_bytes(),
    )?;
    write_file("vocab.txt", (vocab.join("\n") + "\n").as_bytes())?;

    let mut rng = Rng::new(seed);
    let mut tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)> = BTreeMap::new();
    let mut add = |name: String, shape: Vec<usize>, scale: f64, offset: f64| {
        let n = shape.iter().product();
        let values = (0..n)
            .map(|_| (offset + scale * rng.normal()) as f32)
            .collect();
        tensors.insert(name, (shape, values));
    };
    let h = HIDDEN;
    add(
        "embeddings.word_embeddings.weight".into(),
        vec![vocab.len(), h],
        0.5,
        0.0,
    );
    add(
        "embeddings.position_embeddings.weight".into(),
        vec![positions, h],
        0.5,
        0.0,
    );
    if family != Family::DistilBert {
        add(
            "embeddings.token_type_embeddings.weight".into(),
            vec![if family == Family::Bert { 2 } else { 1 }, h],
            0.5,
            0.0,
        );
    }
    // Parameter names by role, in the order they are drawn.
    let names: [&str; 8] = if family == Family::DistilBert {
        [
            "attention.q_lin",
            "attention.k_lin",
            "attention.v_lin",
            "attention.out_lin",
            "sa_layer_norm",
            "ffn.lin1",
            "ffn.lin2",
            "output_layer_norm",
        ]
    } else {
        [
            "attention.self.query",
            "attention.self.key",
            "attention.self.value",
            "attention.output.dense",
            "attention.output.LayerNorm",
            "intermediate.dense",
            "output.dense",
            "output.LayerNorm",
        ]
    };
    let layers = if family == Family::DistilBert {
        "transformer.layer"
    } else {
        "encoder.layer"
    };
    add("embeddings.LayerNorm.weight".into(), vec![h], 0.1, 1.0);
    add("embeddings.LayerNorm.bias".into(), vec![h], 0.1, 0.0);
    for l in 0..LAYERS {
        let p = format!("{layers}.{l}.");
        for part in &names[..4] {
            add(format!("{p}{part}.weight"), vec![h, h], 0.3, 0.0);
            add(format!("{p}{part}.bias"), vec![h], 0.1, 0.0);
        }
        add(format!("{p}{}.weight", names[4]), vec![h], 0.1, 1.0);
        add(format!("{p}{}.bias", names[4]), vec![h], 0.1, 0.0);
        add(
            format!("{p}{}.weight", names[5]),
            vec![INTERMEDIATE, h],
            0.3,
            0.0,
        );
        add(
            format!("{p}{}.bias", names[5]),
            vec![INTERMEDIATE],
            0.1,
            0.0,
        );
        add(
            format!("{p}{}.weight", names[6]),
            vec![h, INTERMEDIATE],
            0.3,
            0.0,
        );
        add(format!("{p}{}.bias", names[6]), vec![h], 0.1, 0.0);
        add(format!("{p}{}.weight", names[7]), vec![h], 0.1, 1.0);
        add(format!("{p}{}.bias", names[7]), vec![h], 0.1, 0.0);
    }
    if family != Family::DistilBert {
        add("pooler.dense.weight".into(), vec![h, h], 0.3, 0.0);
        add("pooler.dense.bias".into(), vec![h], 0.1, 0.0);
    }
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(name, (shape, values))| {
            (
                name,
                shape,
                values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = bytes
        .iter()
        .map(|(name, shape, data)| {
            (
                name.clone(),
                TensorView::new(Dtype::F32, shape.clone(), data).expect("consistent tensor"),
            )
        })
        .collect();
    let mut metadata = HashMap::new();
    metadata.insert("format".to_string(), "pt".to_string());
    let file = safetensors::serialize(views, Some(metadata))
        .map_err(|e| Error::input(format!("serialising the tiny model: {e}")))?;
    write_file("model.safetensors", &file)?;

    let vocab_file = dir.join("vocab.txt");
    let wordpiece = WordPiece::from_file(&vocab_file.to_string_lossy())
        .unk_token("[UNK]".into())
        .build()
        .map_err(|e| Error::input(format!("building the tiny tokenizer: {e}")))?;
    let mut tokenizer = Tokenizer::new(wordpiece);
    tokenizer
        .with_normalizer(Some(BertNormalizer::new(true, true, None, true)))
        .map_err(|e| Error::input(format!("building the tiny tokenizer: {e}")))?;
    tokenizer.with_pre_tokenizer(Some(BertPreTokenizer));
    match family {
        Family::Bert | Family::DistilBert => {
            tokenizer.with_post_processor(Some(BertProcessing::new(
                ("[SEP]".into(), 3),
                ("[CLS]".into(), 2),
            )));
        }
        Family::Roberta => {
            // RoBERTa's own specials are <s> and </s>; the tiny model reuses
            // [CLS] and [SEP] in their places.
            tokenizer.with_post_processor(Some(
                RobertaProcessing::new(("[SEP]".into(), 3), ("[CLS]".into(), 2))
                    .trim_offsets(false)
                    .add_prefix_space(false),
            ));
        }
    }
    let path = dir.join("tokenizer.json");
    tokenizer
        .save(&path, true)
        .map_err(|e| Error::io("write", &path, std::io::Error::other(e.to_string())))
}
