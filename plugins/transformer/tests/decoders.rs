//! The transformer source on the committed tiny decoders: sites, layer
//! selection per site, neuron names, causal words, and what goes wrong.

use std::path::{Path, PathBuf};

use lca_core::data::{NeuronId, Site};
use lca_core::{Component, Dataset, RunContext};
use lca_plugin_transformer::model::{self, Batch, Compute, Weights};
use lca_plugin_transformer::words::{self, Joining, Specials};
use lca_plugin_transformer::{descriptor, hub, load_model};

const CORPUS: &str = "\
The/at quick/jj brown/jj fox/nn jumps/vbz over/in the/at lazy/jj dog/nn ./.
She/pps was/bedz unbelievable/jj !/.
They/ppss read/vbd books/nns and/cc walked/vbd ,/, and/cc talked/vbd quickly/rb ./.
The/at dog/nn 's/nn$ naïve/jj owner/nn paid/vbd $/nn 12.50/cd ./.
It/pps ran/vbd ./.
";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

struct Corpus {
    dir: tempfile::TempDir,
}

impl Corpus {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("brown")).unwrap();
        std::fs::write(dir.path().join("brown").join("ca01"), CORPUS).unwrap();
        Corpus { dir }
    }

    fn load(&self, model: &Path, extra: &str) -> lca_core::Result<Dataset<'static>> {
        let text = format!(
            "model = {:?}\ncorpus = {:?}\ntask = \"universal_pos\"\ncache_dir = {:?}\ndev = 0.2\ntest = 0.2\n{extra}",
            model.display().to_string(),
            self.dir.path().join("brown").display().to_string(),
            self.dir.path().join("cache").display().to_string(),
        );
        let table: lca_core::toml::Table = text.parse().unwrap();
        let Component::Source(source) = (descriptor().build)(&table)? else {
            panic!("not a source")
        };
        source.load(&RunContext::new(2, 2).for_step("source.tiny"))
    }
}

#[test]
fn mlp_and_residual_neurons_come_in_site_order_with_their_names() {
    let corpus = Corpus::new();
    let d = corpus
        .load(
            &fixture("tiny-llama"),
            "site = [\"mlp\", \"residual\"]\nmlp_layers = [2]\nlayers = [0, 2]",
        )
        .unwrap();
    // 48 MLP units of block 2, then 32 residual units of layers 0 and 2.
    assert_eq!(d.n_neurons(), 48 + 2 * 32);
    assert_eq!(d.n_rows(), 36);
    assert_eq!(d.neurons().id(0), NeuronId::at(Site::Mlp, 2, 0));
    assert_eq!(d.neurons().id(47).to_string(), "L2.mlp:47");
    assert_eq!(d.neurons().id(48), NeuronId::new(0, 0));
    assert_eq!(d.neurons().id(48 + 32 + 5).to_string(), "L2:5");
    let layers = d.details().get("layers").unwrap();
    assert!(
        layers.contains("mlp: 1 of 2 blocks") && layers.contains("2 of 3 hidden states"),
        "{layers}"
    );

    // The row of `fox` is its last piece's activations from one forward
    // pass of the sentence as text, BOS first.
    let model = load_model(
        &hub::from_dir(&fixture("tiny-llama")).unwrap(),
        Compute::F32,
        Weights::F32,
    )
    .unwrap();
    let sentence: Vec<String> = ["The", "quick", "brown", "fox", "jumps", "over"]
        .iter()
        .map(ToString::to_string)
        .collect();
    let pieces = words::pieces(&model.tokenizer, &sentence, Joining::Text).unwrap();
    let specials = Specials::of(&model.tokenizer).unwrap();
    assert_eq!(specials.prefix.len(), 1, "Llama 3 starts with BOS");
    let mut ids = specials.prefix.clone();
    ids.extend(&pieces.ids);
    let fox = specials.prefix.len() + pieces.spans[3].end - 1;
    let wanted = [(Site::Mlp, 2), (Site::Residual, 0), (Site::Residual, 2)];
    let batch = Batch {
        ids: &ids,
        lengths: &[ids.len()],
        tokens: ids.len(),
    };
    let states = model::activations(model.model.as_ref(), &batch, &wanted).unwrap();
    let by_hand: Vec<f32> = states
        .iter()
        .flat_map(|s| s.to_vec2::<f32>().unwrap()[fox].clone())
        .collect();
    let row = d
        .tokens()
        .unwrap()
        .words()
        .iter()
        .position(|w| w == "fox")
        .unwrap();
    let extracted = d.acts().view().row(row).to_vec();
    // The corpus sentence goes on after `over`; a causal model does not
    // look ahead, so `fox` is the same up to rounding in the products.
    let diff = extracted
        .iter()
        .zip(&by_hand)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(diff < 1e-5, "fox differs by {diff}");
}

#[test]
fn every_family_extracts_every_site_by_default() {
    let corpus = Corpus::new();
    for (name, hidden, mlp, layers) in [
        ("tiny-gpt2", 32, 128, 2),
        ("tiny-llama2", 32, 40, 2),
        ("tiny-mistral", 32, 48, 2),
        ("tiny-qwen2", 32, 48, 3),
        ("tiny-qwen3", 32, 48, 2),
    ] {
        let d = corpus
            .load(
                &fixture(name),
                "site = [\"residual\", \"mlp\", \"attention\"]",
            )
            .unwrap();
        assert_eq!(
            d.n_neurons(),
            (layers + 1) * hidden + layers * mlp + layers * hidden,
            "{name}"
        );
        let groups: Vec<String> = d
            .neurons()
            .groups()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(groups.len(), 3 * layers + 1, "{name}: {groups:?}");
        assert!(d.acts().view().iter().all(|v| v.is_finite()), "{name}");
        assert!(
            d.acts().view().iter().any(|&v| v != 0.0),
            "{name}: activations are not all zero"
        );
    }
}

#[test]
fn sites_are_cached_apart_and_reused() {
    let corpus = Corpus::new();
    let model = fixture("tiny-gpt2");
    let residual = corpus.load(&model, "").unwrap();
    let mlp = corpus.load(&model, "site = [\"mlp\"]").unwrap();
    assert_ne!(
        residual.details().get("cache key"),
        mlp.details().get("cache key")
    );
    assert_eq!(mlp.n_neurons(), 2 * 128);
    let again = corpus.load(&model, "site = [\"mlp\"]").unwrap();
    assert_eq!(again.acts().to_contiguous(), mlp.acts().to_contiguous());
    assert_eq!(again.neurons(), mlp.neurons());
}

#[test]
fn bad_sites_layers_and_architectures_are_explained() {
    let corpus = Corpus::new();
    let model = fixture("tiny-llama");
    let err = corpus
        .load(&model, "site = [\"mlp\"]\nmlp_layers = [0, 1]")
        .unwrap_err()
        .to_string();
    assert!(err.contains("mlp_layers") && err.contains("1 … 2"), "{err}");
    let err = corpus.load(&model, "layers = [3]").unwrap_err().to_string();
    assert!(err.contains("layers") && err.contains("0 … 2"), "{err}");
    let err = corpus
        .load(&model, "attention_layers = [1]")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("attention_layers") && err.contains("site"),
        "{err}"
    );
    let err = corpus
        .load(&model, "site = [\"ffn\"]")
        .unwrap_err()
        .to_string();
    assert!(err.contains("residual") && err.contains("mlp"), "{err}");
    let err = corpus
        .load(&model, "site = [\"mlp\", \"mlp\"]")
        .unwrap_err()
        .to_string();
    assert!(err.contains("no repeats"), "{err}");

    // A model family this source does not read.
    let other = tempfile::tempdir().unwrap();
    for file in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(model.join(file), other.path().join(file)).unwrap();
    }
    std::fs::write(
        other.path().join("config.json"),
        r#"{"model_type": "mamba", "vocab_size": 320}"#,
    )
    .unwrap();
    let err = corpus.load(other.path(), "").unwrap_err().to_string();
    assert!(
        err.contains("`mamba`")
            && err.contains("config.json")
            && err.contains("gpt2")
            && err.contains("qwen3")
            && err.contains("bert"),
        "{err}"
    );
    // A configuration whose heads do not fit.
    let config = std::fs::read_to_string(model.join("config.json"))
        .unwrap()
        .replace("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3");
    std::fs::write(other.path().join("config.json"), config).unwrap();
    let err = corpus.load(other.path(), "").unwrap_err().to_string();
    assert!(err.contains("key/value heads"), "{err}");
    // Weights that do not fit the configuration.
    let config = std::fs::read_to_string(model.join("config.json"))
        .unwrap()
        .replace("\"intermediate_size\": 48", "\"intermediate_size\": 50");
    std::fs::write(other.path().join("config.json"), config).unwrap();
    let err = corpus.load(other.path(), "").unwrap_err().to_string();
    assert!(
        err.contains("model.safetensors") && err.contains("does not fit"),
        "{err}"
    );
}

#[test]
fn broken_gguf_files_and_foreign_tokenizers_are_explained() {
    let corpus = Corpus::new();
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read(fixture("tiny-llama2-gguf").join("model.gguf")).unwrap();

    // Cut short: the header promises tensors the file does not hold.
    let truncated = dir.path().join("truncated.gguf");
    std::fs::write(&truncated, &original[..original.len() / 2]).unwrap();
    let err = corpus.load(&truncated, "").unwrap_err().to_string();
    assert!(
        err.contains("truncated.gguf") && err.contains("cannot be read"),
        "{err}"
    );
    // Cut inside the header.
    let stub = dir.path().join("stub.gguf");
    std::fs::write(&stub, &original[..40]).unwrap();
    let err = corpus.load(&stub, "").unwrap_err().to_string();
    assert!(
        err.contains("stub.gguf") && err.contains("not a readable GGUF"),
        "{err}"
    );

    // A block type ggml does not have: the type field after the tensor's
    // name, its dimension count and its dimensions.
    let name = b"blk.0.attn_q.weight";
    let at = original
        .windows(name.len())
        .position(|w| w == name)
        .unwrap()
        + name.len();
    let dims = u32::from_le_bytes(original[at..at + 4].try_into().unwrap()) as usize;
    let kind = at + 4 + 8 * dims;
    let mut unknown = original.clone();
    unknown[kind..kind + 4].copy_from_slice(&99u32.to_le_bytes());
    let path = dir.path().join("unknown.gguf");
    std::fs::write(&path, unknown).unwrap();
    let err = corpus.load(&path, "").unwrap_err().to_string();
    assert!(err.contains("unknown.gguf") && err.contains("99"), "{err}");

    // A Hugging Face folder with another model's tokenizer, whose ids run
    // past the embedding (360 tokens against 320 rows).
    let mixed = dir.path().join("mixed");
    std::fs::create_dir(&mixed).unwrap();
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture("tiny-llama").join(file), mixed.join(file)).unwrap();
    }
    std::fs::copy(
        fixture("tiny-llama2").join("tokenizer.json"),
        mixed.join("tokenizer.json"),
    )
    .unwrap();
    let err = corpus.load(&mixed, "").unwrap_err().to_string();
    assert!(
        err.contains("tokenizer.json") && err.contains("another model") && err.contains("320"),
        "{err}"
    );
}

#[test]
fn a_gguf_model_and_its_folder_give_the_same_activations() {
    let corpus = Corpus::new();
    let folder = corpus
        .load(&fixture("tiny-qwen2-gguf"), "site = [\"mlp\"]")
        .unwrap();
    let file = corpus
        .load(
            &fixture("tiny-qwen2-gguf").join("model.gguf"),
            "site = [\"mlp\"]",
        )
        .unwrap();
    assert_eq!(folder.acts().to_contiguous(), file.acts().to_contiguous());
    assert_eq!(folder.n_neurons(), 2 * 96);
    assert_eq!(
        folder.details().get("model type").map(String::as_str),
        Some("qwen2")
    );
}

/// `weights` through the source: GGUF blocks kept give the f32 matrix
/// exactly (in a cache entry of their own, named in the details), bf16
/// weights a close one, and a safetensors model cannot be kept quantized.
#[test]
fn weights_are_held_as_the_source_asks() {
    let corpus = Corpus::new();
    let model = fixture("tiny-llama-gguf");
    let f32 = corpus
        .load(&model, "site = [\"mlp\", \"attention\"]")
        .unwrap();
    let quantized = corpus
        .load(
            &model,
            "site = [\"mlp\", \"attention\"]\nweights = \"quantized\"",
        )
        .unwrap();
    assert_eq!(f32.acts().to_contiguous(), quantized.acts().to_contiguous());
    assert_eq!(
        quantized.details().get("weights").map(String::as_str),
        Some("quantized")
    );
    assert_ne!(
        f32.details().get("cache key"),
        quantized.details().get("cache key")
    );
    let bf16 = corpus
        .load(
            &model,
            "site = [\"mlp\", \"attention\"]\nweights = \"bf16\"",
        )
        .unwrap();
    let (a, b) = (f32.acts().to_contiguous(), bf16.acts().to_contiguous());
    let largest = a.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = a
        .iter()
        .zip(b.iter())
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(
        worst > 0.0 && worst < 0.05 * largest,
        "{worst} of {largest}"
    );
    let err = corpus
        .load(&fixture("tiny-qwen3"), "weights = \"quantized\"")
        .map(drop)
        .expect_err("safetensors are not blocks")
        .to_string();
    assert!(err.contains("GGUF") && err.contains("bf16"), "{err}");
}

/// Sharded safetensors (`model.safetensors.index.json`), with one shard
/// stored in bf16 and one in f16: the same model as the single f32 file, up
/// to the rounding of the stored weights.
#[test]
fn sharded_and_half_precision_weights_load() {
    use candle_core::{DType, Device};
    let corpus = Corpus::new();
    let original = fixture("tiny-qwen2");
    let tensors =
        candle_core::safetensors::load(original.join("model.safetensors"), &Device::Cpu).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for file in ["config.json", "tokenizer.json"] {
        std::fs::copy(original.join(file), dir.path().join(file)).unwrap();
    }
    let save = |exact: bool| {
        let mut shards = [
            std::collections::HashMap::new(),
            std::collections::HashMap::new(),
        ];
        let mut map = serde_json::Map::new();
        let mut names: Vec<&String> = tensors.keys().collect();
        names.sort();
        for (i, name) in names.into_iter().enumerate() {
            let (shard, dtype) = if i % 2 == 0 {
                (0, DType::BF16)
            } else {
                (1, DType::F16)
            };
            let tensor = if exact {
                tensors[name].clone()
            } else {
                tensors[name].to_dtype(dtype).unwrap()
            };
            shards[shard].insert(name.clone(), tensor);
            let file = format!("model-0000{}-of-00002.safetensors", shard + 1);
            map.insert(name.clone(), serde_json::json!(file));
        }
        for (i, shard) in shards.iter().enumerate() {
            let path = dir
                .path()
                .join(format!("model-0000{}-of-00002.safetensors", i + 1));
            candle_core::safetensors::save(shard, path).unwrap();
        }
        std::fs::write(
            dir.path().join("model.safetensors.index.json"),
            serde_json::json!({"metadata": {}, "weight_map": map}).to_string(),
        )
        .unwrap();
    };
    let whole = corpus.load(&original, "cache = false").unwrap();
    save(true);
    let sharded = corpus.load(dir.path(), "cache = false").unwrap();
    assert_eq!(whole.acts().to_contiguous(), sharded.acts().to_contiguous());
    save(false);
    let half = corpus.load(dir.path(), "cache = false").unwrap();
    let (a, b) = (whole.acts().to_contiguous(), half.acts().to_contiguous());
    let worst = a
        .iter()
        .zip(b.iter())
        .map(|(x, y)| (x - y).abs() / (1.0 + x.abs()))
        .fold(0.0f32, f32::max);
    assert!(
        worst > 0.0 && worst < 0.1,
        "half-precision weights differ by {worst}"
    );
    // A shard the index names but the folder lacks.
    std::fs::remove_file(dir.path().join("model-00002-of-00002.safetensors")).unwrap();
    let err = corpus
        .load(dir.path(), "cache = false")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("model-00002-of-00002.safetensors") && err.contains("index.json"),
        "{err}"
    );
}
