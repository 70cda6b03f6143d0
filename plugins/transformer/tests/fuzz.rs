//! Mutation fuzzing of the transformer plugin's file readers: the activation
//! cache, a model folder's configuration, weights and tokenizer, and GGUF
//! files. Each
//! must turn any damaged file into an error (the cache into a miss that is
//! rebuilt), never a panic. The harness is `lca_testkit::fuzz`; each
//! target runs for `LCA_FUZZ_SECONDS` seconds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lca_plugin_transformer::cache::{self, Precision, Stored};
use lca_plugin_transformer::model::{Compute, Weights};
use lca_plugin_transformer::{hub, load_model};
use lca_testkit::fuzz::fuzz;

#[test]
fn cache_reader_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let stored = Stored {
        values: (0..6 * 8).map(|i| i as f32 / 7.0 - 3.0).collect(),
        rows: 6,
        cols: 8,
        kept: vec![2, 4],
    };
    let settings = BTreeMap::from([("model".to_string(), "tiny".to_string())]);
    let mut seeds = Vec::new();
    for (name, precision) in [("f32", Precision::F32), ("f16", Precision::F16)] {
        let path = dir.path().join(name);
        cache::write(&path, "the-key", &stored, precision, &settings).unwrap();
        let (read, _, _) = cache::read(&path, "the-key").expect("a written entry reads back");
        assert_eq!(read.kept, stored.kept);
        seeds.push(std::fs::read(&path).unwrap());
    }
    fuzz("transformer-cache", &seeds, "entry.safetensors", |path| {
        let _ = cache::read(path, "the-key");
    });
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Mutates one file of the tiny model folders, keeping the others whole,
/// and loads the model.
fn fuzz_model_file(file: &str) {
    let families = [
        "tiny-bert",
        "tiny-roberta",
        "tiny-distilbert",
        "tiny-gpt2",
        "tiny-llama",
        "tiny-qwen3",
    ];
    let dir = tempfile::tempdir().unwrap();
    let folders: Vec<PathBuf> = families
        .iter()
        .map(|family| {
            let folder = dir.path().join(family);
            std::fs::create_dir_all(&folder).unwrap();
            for entry in std::fs::read_dir(fixture(family)).unwrap() {
                let entry = entry.unwrap();
                std::fs::copy(entry.path(), folder.join(entry.file_name())).unwrap();
            }
            let files = hub::from_dir(&folder).unwrap();
            assert!(
                load_model(&files, Compute::F32, Weights::F32).is_ok(),
                "{family} loads before mutation"
            );
            folder
        })
        .collect();
    // One seed per family; the harness writes the mutated file into its own
    // scratch folder, which is copied over the family's file before loading.
    let seeds: Vec<Vec<u8>> = folders
        .iter()
        .map(|f| std::fs::read(f.join(file)).unwrap())
        .collect();
    let target = format!("transformer-{file}");
    let next = std::cell::Cell::new(0usize);
    fuzz(&target, &seeds, file, |mutated| {
        let folder = &folders[next.get() % folders.len()];
        next.set(next.get() + 1);
        std::fs::copy(mutated, folder.join(file)).unwrap();
        if let Ok(files) = hub::from_dir(folder) {
            let _ = load_model(&files, Compute::F32, Weights::F32);
        }
    });
}

#[test]
fn model_configuration_reader_never_panics() {
    fuzz_model_file("config.json");
}

#[test]
fn model_weights_reader_never_panics() {
    fuzz_model_file("model.safetensors");
}

#[test]
fn tokenizer_reader_never_panics() {
    fuzz_model_file("tokenizer.json");
}

/// A GGUF file holds configuration, tokenizer and weights at once; the
/// seeds cover both tokenizer kinds, quantized blocks of every type and
/// both query/key layouts.
#[test]
fn gguf_reader_never_panics() {
    let seeds: Vec<Vec<u8>> = ["tiny-llama2-gguf", "tiny-qwen2-gguf", "tiny-llama-gguf"]
        .iter()
        .map(|name| std::fs::read(fixture(name).join("model.gguf")).unwrap())
        .collect();
    fuzz("transformer-gguf", &seeds, "model.gguf", |mutated| {
        if let Ok(files) = hub::from_dir(mutated) {
            let _ = load_model(&files, Compute::F32, Weights::F32);
        }
    });
}

// Regressions: inputs the fuzzer found, named after what they found.

/// `"decoder":,` made the tokenizers library panic inside its decoder
/// parser instead of reporting the syntax error.
#[test]
fn a_tokenizer_with_a_decoder_without_value_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture("tiny-bert")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    std::fs::copy(
        fixture("fuzz-regressions/tokenizer-decoder-without-value.json"),
        dir.path().join("tokenizer.json"),
    )
    .unwrap();
    let err = load_model(
        &hub::from_dir(dir.path()).unwrap(),
        Compute::F32,
        Weights::F32,
    )
    .err()
    .expect("a damaged tokenizer is an error")
    .to_string();
    assert!(
        err.contains("tokenizer.json:26: is not valid JSON (column 13)"),
        "{err}"
    );
}
