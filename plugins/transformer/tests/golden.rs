//! Hidden states against Hugging Face transformers (golden files written by
//! `scripts/golden/transformer-golden.sh`). The tiny models are committed
//! fixtures; all-MiniLM-L6-v2 is fetched by `scripts/fetch-assets.sh`, so
//! its test is ignored by default and run by `.ci/run` after the fetch.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use lca_core::RunContext;
use lca_plugin_transformer::model::Compute;
use lca_plugin_transformer::{LoadedModel, hub, load_model};
use serde::Deserialize;

/// Agreement required with transformers, per value.
const TOLERANCE: f64 = 1e-4;
/// The same with bf16 products (see docs/sources.md for the measured error).
const BF16_TOLERANCE: f64 = 0.15;

#[derive(Deserialize)]
struct Golden {
    dims: Option<Vec<usize>>,
    sentences: Vec<GoldenSentence>,
}

#[derive(Deserialize)]
struct GoldenSentence {
    words: Vec<String>,
    ids: Vec<u32>,
    word_ids: Vec<Option<u32>>,
    /// [state][token][unit]
    states: Vec<Vec<Vec<f64>>>,
    /// [state][token]
    norms: Vec<Vec<f64>>,
}

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read_golden(name: &str) -> Golden {
    let path = crate_dir().join("tests/golden").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Runs every golden sentence through the model in one padded batch and
/// returns the largest difference from the golden values.
fn compare(model: &LoadedModel, golden: &Golden) -> f64 {
    // Tokenization: the same ids, and the same word for every piece.
    for s in &golden.sentences {
        let encoding = model.tokenizer.encode(s.words.as_slice(), true).unwrap();
        assert_eq!(encoding.get_ids(), s.ids.as_slice(), "ids of {:?}", s.words);
        assert_eq!(
            encoding.get_word_ids(),
            s.word_ids.as_slice(),
            "word ids of {:?}",
            s.words
        );
    }
    let width = golden.sentences.iter().map(|s| s.ids.len()).max().unwrap();
    let n = golden.sentences.len();
    let pad = model.encoder.config().pad_token_id;
    let mut ids = vec![pad; n * width];
    let mut mask = vec![0u32; n * width];
    for (b, s) in golden.sentences.iter().enumerate() {
        ids[b * width..b * width + s.ids.len()].copy_from_slice(&s.ids);
        mask[b * width..b * width + s.ids.len()].fill(1);
    }
    let ids = Tensor::from_vec(ids, (n, width), &Device::Cpu).unwrap();
    let mask = Tensor::from_vec(mask, (n, width), &Device::Cpu).unwrap();
    let states = model.encoder.hidden_states(&ids, &mask).unwrap();
    assert_eq!(
        states.len(),
        golden.sentences[0].states.len(),
        "number of hidden states"
    );
    let mut worst: f64 = 0.0;
    for (l, state) in states.iter().enumerate() {
        let state: Vec<Vec<Vec<f32>>> = state.to_dtype(DType::F32).unwrap().to_vec3().unwrap();
        for (b, s) in golden.sentences.iter().enumerate() {
            for (t, expected) in s.states[l].iter().enumerate() {
                let row = &state[b][t];
                let units: Vec<usize> = golden
                    .dims
                    .clone()
                    .unwrap_or_else(|| (0..row.len()).collect());
                for (k, &u) in units.iter().enumerate() {
                    worst = worst.max((f64::from(row[u]) - expected[k]).abs());
                }
                let norm = row
                    .iter()
                    .map(|v| f64::from(*v).powi(2))
                    .sum::<f64>()
                    .sqrt();
                worst = worst.max((norm - s.norms[l][t]).abs());
            }
        }
    }
    worst
}

fn check(model_dir: &Path, golden: &str) {
    check_in(model_dir, golden, Compute::F32, TOLERANCE);
}

/// Compares the hidden states computed in `compute` with the golden ones.
/// `Compute::Bf16` is passed as is (not [`Compute::effective`]), so on a
/// CPU without AVX512-BF16 the portable bf16 products run.
fn check_in(model_dir: &Path, golden: &str, compute: Compute, tolerance: f64) {
    let model = load_model(&hub::from_dir(model_dir).unwrap(), compute).unwrap();
    let golden = read_golden(golden);
    let worst = RunContext::new(1, 2).install(|| compare(&model, &golden));
    eprintln!("largest difference from transformers ({compute:?}): {worst:.2e}");
    assert!(
        worst < tolerance,
        "hidden states ({compute:?}) differ from transformers by {worst:e}"
    );
}

/// bf16 products: far looser than f32, but still the same model (a wrong
/// packing or a dropped block would be off by the size of the states).
#[test]
fn tiny_models_in_bf16_stay_close_to_transformers() {
    for name in ["tiny-bert", "tiny-roberta", "tiny-distilbert"] {
        check_in(
            &crate_dir().join("tests/fixtures").join(name),
            &format!("{name}.json"),
            Compute::Bf16,
            BF16_TOLERANCE,
        );
    }
}

#[test]
fn tiny_bert_matches_transformers() {
    check(
        &crate_dir().join("tests/fixtures/tiny-bert"),
        "tiny-bert.json",
    );
}

#[test]
fn tiny_roberta_matches_transformers() {
    check(
        &crate_dir().join("tests/fixtures/tiny-roberta"),
        "tiny-roberta.json",
    );
}

#[test]
fn tiny_distilbert_matches_transformers() {
    check(
        &crate_dir().join("tests/fixtures/tiny-distilbert"),
        "tiny-distilbert.json",
    );
}

/// The committed fixtures are what the generator writes today, so the
/// golden files describe the model the other tests build.
#[test]
fn the_fixtures_are_what_the_generator_writes() {
    use lca_plugin_transformer::tiny::{self, Family};
    for (name, family) in [
        ("tiny-bert", Family::Bert),
        ("tiny-roberta", Family::Roberta),
    ] {
        let fresh = tempfile::tempdir().unwrap();
        tiny::write(fresh.path(), family, 7).unwrap();
        for file in ["config.json", "model.safetensors", "vocab.txt"] {
            let committed =
                std::fs::read(crate_dir().join("tests/fixtures").join(name).join(file)).unwrap();
            assert_eq!(
                committed,
                std::fs::read(fresh.path().join(file)).unwrap(),
                "{name}/{file}"
            );
        }
    }
}

/// all-MiniLM-L6-v2 from `scripts/fetch-assets.sh` (or `LCA_MODEL_DIR`).
#[test]
#[ignore = "needs the model from scripts/fetch-assets.sh; run by .ci/run"]
fn minilm_matches_transformers() {
    let dir = std::env::var_os("LCA_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate_dir().join("../../.cache/models/all-MiniLM-L6-v2"));
    assert!(
        dir.join("model.safetensors").is_file(),
        "all-MiniLM-L6-v2 is not at {}; run scripts/fetch-assets.sh or set LCA_MODEL_DIR",
        dir.display()
    );
    check(&dir, "minilm.json");
    check_in(&dir, "minilm.json", Compute::Bf16, BF16_TOLERANCE);
}
