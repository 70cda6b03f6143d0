//! Hidden states against Hugging Face transformers (golden files written by
//! `scripts/golden/transformer-golden.sh`). The tiny models are committed
//! fixtures; all-MiniLM-L6-v2 is fetched by `scripts/fetch-assets.sh`, so
//! its test is ignored by default and run by `.ci/run` after the fetch.

use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use candle_core::DType;
use lca_core::RunContext;
use lca_core::data::Site;
use lca_plugin_transformer::model::{self, Batch, Compute, Weights};
use lca_plugin_transformer::words::{self, Joining, Specials};
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
    let shape = model.model.shape();
    let wanted: Vec<(Site, usize)> = (0..=shape.layers).map(|l| (Site::Residual, l)).collect();
    let ids: Vec<&[u32]> = golden.sentences.iter().map(|s| s.ids.as_slice()).collect();
    let states = run_batch(model, &ids, &wanted);
    assert_eq!(
        states.len(),
        golden.sentences[0].states.len(),
        "number of hidden states"
    );
    let mut worst: f64 = 0.0;
    for (l, state) in states.iter().enumerate() {
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

/// Runs the sentences' ids as one right-padded batch and returns each
/// wanted layer site as `[sentence][token][unit]`.
fn run_batch(
    model: &LoadedModel,
    sentences: &[&[u32]],
    wanted: &[(Site, usize)],
) -> Vec<Vec<Vec<Vec<f32>>>> {
    let shape = model.model.shape();
    let width = sentences.iter().map(|s| s.len()).max().unwrap();
    let mut ids = vec![shape.pad_token_id; sentences.len() * width];
    for (b, s) in sentences.iter().enumerate() {
        ids[b * width..b * width + s.len()].copy_from_slice(s);
    }
    let lengths: Vec<usize> = sentences.iter().map(|s| s.len()).collect();
    let batch = Batch {
        ids: &ids,
        lengths: &lengths,
        tokens: width,
    };
    let states = model::activations(model.model.as_ref(), &batch, wanted).unwrap();
    states
        .into_iter()
        .map(|state| {
            let units = state.dims2().unwrap().1;
            state
                .to_dtype(DType::F32)
                .unwrap()
                .reshape((sentences.len(), width, units))
                .unwrap()
                .to_vec3()
                .unwrap()
        })
        .collect()
}

fn check(model_dir: &Path, golden: &str) {
    check_in(model_dir, golden, Compute::F32, TOLERANCE);
}

/// Compares the hidden states computed in `compute` with the golden ones.
/// `Compute::Bf16` is passed as is (not [`Compute::effective`]), so on a
/// CPU without AVX512-BF16 the portable bf16 products run.
fn check_in(model_dir: &Path, golden: &str, compute: Compute, tolerance: f64) {
    let model = load_model(&hub::from_dir(model_dir).unwrap(), compute, Weights::F32).unwrap();
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

/// Activations of every site, as `scripts/golden/decoder_fixtures.py` writes
/// them.
#[derive(Deserialize)]
struct SiteGolden {
    model_type: String,
    /// For large models, the units stored per site (all when absent).
    #[serde(default)]
    dims: BTreeMap<String, Vec<usize>>,
    sentences: Vec<SiteSentence>,
}

#[derive(Deserialize)]
struct SiteSentence {
    words: Vec<String>,
    ids: Vec<u32>,
    /// site → [layer][token][unit]; residual layer 0 is the embeddings,
    /// the other sites start at block 1. Only the sites listed are checked.
    sites: BTreeMap<String, Vec<Vec<Vec<f64>>>>,
    /// site → [layer][token]: the L2 norm over every unit, where `dims`
    /// keeps only some.
    #[serde(default)]
    norms: BTreeMap<String, Vec<Vec<f64>>>,
}

/// Compares every site of every layer with the golden values and returns
/// the largest difference relative to `1 + |value|`.
fn compare_sites(model: &LoadedModel, golden: &SiteGolden) -> f64 {
    let shape = model.model.shape();
    assert_eq!(shape.model_type, golden.model_type);
    // Tokenization: the same ids, special tokens included.
    let joining = if shape.causal {
        Joining::Text
    } else {
        Joining::PreSplit
    };
    let specials = Specials::of(&model.tokenizer).unwrap();
    for s in &golden.sentences {
        let pieces = words::pieces(&model.tokenizer, &s.words, joining).unwrap();
        let mut ids = specials.prefix.clone();
        ids.extend(&pieces.ids);
        ids.extend(&specials.suffix);
        assert_eq!(ids, s.ids, "ids of {:?}", s.words);
        assert!(
            pieces.spans.iter().all(|span| !span.is_empty()),
            "every word of {:?} has pieces: {:?}",
            s.words,
            pieces.spans
        );
    }
    let mut wanted = Vec::new();
    for site in Site::ALL {
        if golden.sentences[0].sites.contains_key(site.as_str()) {
            wanted.extend(shape.layers_of(site).map(|l| (site, l)));
        }
    }
    let ids: Vec<&[u32]> = golden.sentences.iter().map(|s| s.ids.as_slice()).collect();
    let states = run_batch(model, &ids, &wanted);
    let mut worst: f64 = 0.0;
    for (&(site, layer), state) in wanted.iter().zip(&states) {
        let first = *shape.layers_of(site).start();
        for (b, s) in golden.sentences.iter().enumerate() {
            let expected = &s.sites[site.as_str()][layer - first];
            let units: Vec<usize> = match golden.dims.get(site.as_str()) {
                Some(dims) => dims.clone(),
                None => (0..shape.width(site)).collect(),
            };
            assert_eq!(expected[0].len(), units.len(), "{site} width");
            let close = |got: f64, want: f64| (got - want).abs() / (1.0 + want.abs());
            for (t, want) in expected.iter().enumerate() {
                for (&u, &want) in units.iter().zip(want) {
                    worst = worst.max(close(f64::from(state[b][t][u]), want));
                }
                if let Some(norms) = s.norms.get(site.as_str()) {
                    let norm = state[b][t]
                        .iter()
                        .map(|&v| f64::from(v).powi(2))
                        .sum::<f64>()
                        .sqrt();
                    worst = worst.max(close(norm, norms[layer - first][t]));
                }
            }
        }
    }
    worst
}

fn check_sites(name: &str, compute: Compute, tolerance: f64) {
    check_sites_holding(name, compute, Weights::F32, tolerance);
}

fn check_sites_holding(name: &str, compute: Compute, weights: Weights, tolerance: f64) {
    let dir = crate_dir().join("tests/fixtures").join(name);
    let model = load_model(&hub::from_dir(&dir).unwrap(), compute, weights).unwrap();
    let golden = if model.model.shape().causal {
        format!("{name}.json")
    } else {
        format!("{name}-sites.json")
    };
    check_model_sites(name, &model, &golden, compute, tolerance);
}

fn check_model_sites(
    name: &str,
    model: &LoadedModel,
    golden: &str,
    compute: Compute,
    tolerance: f64,
) {
    let path = crate_dir().join("tests/golden").join(golden);
    let golden: SiteGolden =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for threads in [1, 2] {
        let worst = RunContext::new(threads, 2).install(|| compare_sites(model, &golden));
        eprintln!(
            "{name} ({compute:?}, {threads} threads): largest relative difference {worst:.2e}"
        );
        assert!(
            worst < tolerance,
            "{name} ({compute:?}) differs from transformers by {worst:e} (relative)"
        );
    }
}

#[test]
fn tiny_gpt2_matches_transformers_at_every_site() {
    check_sites("tiny-gpt2", Compute::F32, TOLERANCE);
}

#[test]
fn tiny_llama3_matches_transformers_at_every_site() {
    check_sites("tiny-llama", Compute::F32, TOLERANCE);
}

#[test]
fn tiny_llama2_with_a_sentencepiece_tokenizer_matches_transformers_at_every_site() {
    check_sites("tiny-llama2", Compute::F32, TOLERANCE);
}

#[test]
fn tiny_mistral_with_a_sliding_window_matches_transformers_at_every_site() {
    check_sites("tiny-mistral", Compute::F32, TOLERANCE);
}

#[test]
fn tiny_qwen2_matches_transformers_at_every_site() {
    check_sites("tiny-qwen2", Compute::F32, TOLERANCE);
}

#[test]
fn tiny_qwen3_matches_transformers_at_every_site() {
    check_sites("tiny-qwen3", Compute::F32, TOLERANCE);
}

/// GGUF files with weights in every quantization type, against
/// transformers loading the same files (`gguf_file=`).
#[test]
fn tiny_gguf_models_match_transformers_at_every_site() {
    for name in ["tiny-llama-gguf", "tiny-llama2-gguf", "tiny-qwen2-gguf"] {
        check_sites(name, Compute::F32, TOLERANCE);
    }
}

/// Quantized weights are kept as the file's blocks and expanded for each
/// product: the activations are those of the dequantized model, exactly.
/// Held in bfloat16, they stay within the bf16 products' tolerance.
#[test]
fn tiny_gguf_models_hold_their_weights_quantized_or_in_bf16() {
    for name in ["tiny-llama-gguf", "tiny-llama2-gguf", "tiny-qwen2-gguf"] {
        let files = hub::from_dir(&crate_dir().join("tests/fixtures").join(name)).unwrap();
        for compute in [Compute::F32, Compute::Bf16] {
            let quantized = load_model(&files, compute, Weights::Quantized).unwrap();
            let reference = load_model(&files, compute, Weights::F32).unwrap();
            assert_same_activations(name, &reference, &quantized);
        }
        check_sites_holding(name, Compute::F32, Weights::Quantized, TOLERANCE);
        check_sites_holding(name, Compute::F32, Weights::Bf16, BF16_TOLERANCE);
    }
}

/// Safetensors weights held in bfloat16 (packed as each block loads).
#[test]
fn tiny_models_with_bf16_weights_stay_close_to_transformers() {
    for name in ["tiny-gpt2", "tiny-llama", "tiny-qwen2", "tiny-bert"] {
        check_sites_holding(name, Compute::F32, Weights::Bf16, BF16_TOLERANCE);
    }
}

#[test]
fn quantized_weights_need_a_gguf_file() {
    let files = hub::from_dir(&crate_dir().join("tests/fixtures/tiny-llama")).unwrap();
    let err = load_model(&files, Compute::F32, Weights::Quantized)
        .map(drop)
        .expect_err("safetensors cannot be held quantized")
        .to_string();
    assert!(
        err.contains("GGUF") && err.contains("bf16") && err.contains("tiny-llama"),
        "{err}"
    );
}

#[test]
fn tiny_encoders_match_transformers_at_every_site() {
    for name in ["tiny-bert", "tiny-roberta", "tiny-distilbert"] {
        check_sites(name, Compute::F32, TOLERANCE);
    }
}

#[test]
fn tiny_decoders_in_bf16_stay_close_to_transformers() {
    for name in ["tiny-gpt2", "tiny-llama", "tiny-qwen3"] {
        check_sites(name, Compute::Bf16, BF16_TOLERANCE);
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

/// SmolLM2-135M-Instruct in GGUF Q4_1 from `scripts/fetch-assets.sh` (or
/// `LCA_SMOLLM2`): its dequantized forward pass against transformers on
/// the same file, residual stream and MLP units of every layer.
#[test]
#[ignore = "needs the model from scripts/fetch-assets.sh; run by .ci/run"]
fn smollm2_from_gguf_matches_transformers() {
    let path = std::env::var_os("LCA_SMOLLM2")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            crate_dir()
                .join("../../.cache/models/SmolLM2-135M-Instruct/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    assert!(
        path.is_file(),
        "SmolLM2 is not at {}; run scripts/fetch-assets.sh or set LCA_SMOLLM2",
        path.display()
    );
    let files = hub::from_dir(&path).unwrap();
    let model = load_model(&files, Compute::F32, Weights::F32).unwrap();
    let shape = model.model.shape();
    assert_eq!((shape.layers, shape.hidden, shape.mlp), (30, 576, 1536));
    check_model_sites(
        "SmolLM2-135M",
        &model,
        "smollm2.json",
        Compute::F32,
        TOLERANCE,
    );
    // Kept in Q4_1 blocks, the same model gives the same activations.
    let quantized = load_model(&files, Compute::F32, Weights::Quantized).unwrap();
    assert_same_activations("SmolLM2-135M", &model, &quantized);
    // Held in bfloat16, 30 blocks deep: the largest value-by-value
    // difference reaches a third of a unit (rounding compounds through the
    // residual stream), so the check is on the whole: the RMS difference
    // from the f32 activations against their RMS, at every site.
    let bf16 = load_model(&files, Compute::F32, Weights::Bf16).unwrap();
    let ratio = rms_difference(&model, &bf16);
    eprintln!("SmolLM2-135M with bf16 weights: RMS difference / RMS activation {ratio:.2e}");
    assert!(
        ratio < 0.03,
        "bf16 weights move SmolLM2's activations by {ratio:e} (RMS)"
    );
}

/// Activations of every site of every layer on a batch of two sentences
/// (one padded), one vector per layer site.
fn all_activations(m: &LoadedModel) -> Vec<(String, Vec<f32>)> {
    let shape = m.model.shape().clone();
    let ids: Vec<u32> = (0..14).map(|i| (i * 7 + 3) % shape.vocab as u32).collect();
    let batch = Batch {
        ids: &ids,
        lengths: &[7, 5],
        tokens: 7,
    };
    let wanted: Vec<(Site, usize)> = [Site::Residual, Site::Mlp, Site::Attention]
        .into_iter()
        .flat_map(|site| shape.layers_of(site).map(move |l| (site, l)))
        .collect();
    let got = RunContext::new(1, 2)
        .install(|| model::activations(m.model.as_ref(), &batch, &wanted))
        .unwrap();
    wanted
        .iter()
        .zip(got)
        .map(|((site, layer), t)| {
            let values = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            (format!("{site} {layer}"), values)
        })
        .collect()
}

/// The largest, over layer sites, of the RMS difference between `a`'s and
/// `b`'s activations divided by the RMS of `a`'s.
fn rms_difference(a: &LoadedModel, b: &LoadedModel) -> f64 {
    let rms = |v: &mut dyn Iterator<Item = f64>| {
        let (sum, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x * x, n + 1));
        (sum / n.max(1) as f64).sqrt()
    };
    all_activations(a)
        .iter()
        .zip(all_activations(b))
        .map(|((_, x), (_, y))| {
            let diff = rms(&mut x.iter().zip(&y).map(|(p, q)| f64::from(p - q)));
            diff / rms(&mut x.iter().map(|&p| f64::from(p))).max(f64::MIN_POSITIVE)
        })
        .fold(0.0, f64::max)
}

/// Every site of every layer of `a` and `b`, compared value for value.
fn assert_same_activations(name: &str, a: &LoadedModel, b: &LoadedModel) {
    assert_eq!(a.model.shape(), b.model.shape(), "{name}");
    for ((site, x), (_, y)) in all_activations(a).iter().zip(all_activations(b)) {
        assert!(*x == y, "{name}: {site} differs between the two");
    }
}
