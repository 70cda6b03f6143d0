//! NeuroX's JSON activation files: read exactly as NeuroX reads them, and
//! written byte for byte as NeuroX writes them (fixtures written by NeuroX
//! 1.0.9 itself; see `golden/formats/expected.json`).

mod common;

use std::path::{Path, PathBuf};

use lca_core::data::Split;
use lca_core::ndarray::Array2;
use lca_core::{Component, RunContext};
use serde_json::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/formats")
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join("expected.json")).unwrap()).unwrap()
}

#[test]
fn json_activations_load_to_neurox_matrices() {
    let acts = lca_builtin::neurox::read_json(&dir().join("activations.json")).unwrap();
    let e = expected();
    assert_eq!(acts.layers, [0, 1]);
    assert_eq!(acts.hidden, 4);
    // NeuroX 1.0.9 reads doubles; HEAD casts them to float32, as lca does.
    let v109 = &e["files"]["activations.json"]["load_activations"];
    assert_eq!(v109["num_layers"], 2);
    let head =
        &e["head_a9ac7cd_load_activations"]["activations.json|dtype=None"]["per_sentence_TxLH"];
    for (i, sentence) in acts.sentences.iter().enumerate() {
        assert_eq!(
            sentence.values,
            common::matrix_f32(&v109["per_sentence_TxLH"][i]),
            "sentence {i} vs 1.0.9"
        );
        assert_eq!(
            sentence.values,
            common::matrix_f32(&head[i]),
            "sentence {i} vs HEAD"
        );
        let words: Vec<&str> = e["words_per_sentence"][i]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_str().unwrap())
            .collect();
        assert_eq!(sentence.tokens, words);
    }
}

#[test]
fn json_writer_is_byte_identical_to_neurox() {
    let e = expected();
    let (layers, hidden) = (2usize, 4usize);
    let mut words = Vec::new();
    let mut blocks = Vec::new();
    for (i, block) in e["written_activations_LxTxH_f32"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let sentence: Vec<String> = e["words_per_sentence"][i]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_str().unwrap().to_string())
            .collect();
        let t = sentence.len();
        // [L, T, H] → [T, L·H], layer-major, as NeuroX flattens.
        let mut m = Array2::<f32>::zeros((t, layers * hidden));
        for l in 0..layers {
            let layer = common::matrix_f32(&block[l]);
            for r in 0..t {
                for u in 0..hidden {
                    m[[r, l * hidden + u]] = layer[[r, u]];
                }
            }
        }
        words.push(sentence);
        blocks.push(m);
    }
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("activations.json");
    let sentences: Vec<_> = words
        .iter()
        .zip(&blocks)
        .map(|(w, m)| (w.as_slice(), m.view()))
        .collect();
    lca_builtin::neurox::write_json(&path, &[0, 1], hidden, &sentences).unwrap();
    let ours = std::fs::read_to_string(&path).unwrap();
    let theirs = std::fs::read_to_string(dir().join("activations.json")).unwrap();
    assert_eq!(ours, theirs);
}

fn build_source(text: &str) -> lca_core::Result<Box<dyn lca_core::ActivationSource>> {
    let table: lca_core::toml::Table = text.parse().unwrap();
    match lca_builtin::registry()
        .get(lca_core::registry::ComponentKind::Source, "neurox_json")?
        .build(&table)?
    {
        Component::Source(s) => Ok(s),
        _ => panic!("not a source"),
    }
}

fn recipe(sentences: &str, labels: &str) -> String {
    format!(
        "activations = {:?}\ncorpus = {:?}\nlabels = {:?}\ndev = 0.0\ntest = 0.0\n",
        dir().join("activations.json").display().to_string(),
        dir().join(sentences).display().to_string(),
        dir().join(labels).display().to_string(),
    )
}

#[test]
fn the_neurox_source_gives_the_matrix_neurox_trains_on() {
    let source = build_source(&recipe("sentences.txt", "labels.txt")).unwrap();
    let d = source
        .load(&RunContext::new(1, 1).for_step("source.acts"))
        .unwrap();
    let e = &expected()["load_data_and_create_tensors"]["from_json"];
    let x = common::matrix_f32(&e["X"]);
    assert_eq!(
        d.acts().view(),
        x.view(),
        "the rows NeuroX's create_tensors builds"
    );
    let label_of: Vec<&str> = d
        .labels()
        .ids()
        .iter()
        .map(|&c| d.classes().name(c))
        .collect();
    let theirs: Vec<&str> = e["tokens"]["target"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s.as_array().unwrap())
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(label_of, theirs);
    assert_eq!(d.neurons().layers(), [0, 1]);
    assert_eq!(d.split(Split::Train).labels.len(), 8);
}

#[test]
fn a_sentence_with_too_few_activations_is_named() {
    let source = build_source(&recipe("sentences_mismatch.txt", "labels_mismatch.txt")).unwrap();
    let err = source
        .load(&RunContext::new(1, 1).for_step("source.acts"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("activations.json"), "{err}");
    assert!(
        err.contains("2 rows of activations")
            && err.contains("line 2 of sentences_mismatch.txt has 3 words"),
        "{err}"
    );
}

#[test]
fn malformed_json_names_the_line() {
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("bad.json");
    let good = std::fs::read_to_string(dir().join("activations.json")).unwrap();
    let mut lines: Vec<&str> = good.lines().collect();
    lines[1] = "{\"linex_index\": 1, \"features\": [}";
    std::fs::write(&path, lines.join("\n")).unwrap();
    let err = lca_builtin::neurox::read_json(&path)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bad.json:2:") && err.contains("not a NeuroX activation record"),
        "{err}"
    );
    lines.swap(0, 2);
    std::fs::write(&path, lines.join("\n")).unwrap();
    let err = lca_builtin::neurox::read_json(&path)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bad.json:1:") && err.contains("sentence 2 where sentence 0"),
        "{err}"
    );
}

#[test]
fn exported_files_load_back_into_the_same_dataset() {
    let source = build_source(&recipe("sentences.txt", "labels.txt")).unwrap();
    let d = source
        .load(&RunContext::new(1, 1).for_step("source.acts"))
        .unwrap();
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("sub").join("export.json");
    let table: lca_core::toml::Table = format!("path = {:?}", path.display().to_string())
        .parse()
        .unwrap();
    let Component::Evaluator(export) = lca_builtin::registry()
        .get(
            lca_core::registry::ComponentKind::Evaluator,
            "neurox_export",
        )
        .unwrap()
        .build(&table)
        .unwrap()
    else {
        panic!("not an evaluator")
    };
    let evaluation = export
        .evaluate(&lca_core::EvalInput::new(&d), &RunContext::new(1, 1))
        .unwrap();
    assert_eq!(evaluation.metrics["sentences"], 3.0);
    let written = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        written,
        std::fs::read_to_string(dir().join("activations.json")).unwrap(),
        "the same bytes NeuroX wrote"
    );
    assert_eq!(
        std::fs::read_to_string(out.path().join("sub/export.labels.txt")).unwrap(),
        "DT NN VBD\nDT NN\nDT NN VBD\n"
    );
    assert_eq!(
        std::fs::read_to_string(out.path().join("sub/export.sentences.txt")).unwrap(),
        "The cat sat\nA dog\nThe cat sat\n"
    );
}

#[test]
fn held_out_splits_can_be_given_as_their_own_files() {
    let path = |name: &str| dir().join(name).display().to_string();
    let held_out = |split: &str| {
        format!(
            "{split}_activations = {:?}\n{split}_corpus = {:?}\n{split}_labels = {:?}\n",
            path("activations.json"),
            path("sentences.txt"),
            path("labels.txt")
        )
    };
    let base = format!(
        "activations = {:?}\ncorpus = {:?}\nlabels = {:?}\n",
        path("activations.json"),
        path("sentences.txt"),
        path("labels.txt")
    );
    let source = build_source(&format!("{base}{}{}", held_out("dev"), held_out("test"))).unwrap();
    let d = source
        .load(&RunContext::new(1, 1).for_step("source.acts"))
        .unwrap();
    let x = common::matrix_f32(&expected()["load_data_and_create_tensors"]["from_json"]["X"]);
    // The same files three times: each split is NeuroX's matrix, in corpus order.
    for split in [Split::Train, Split::Dev, Split::Test] {
        assert_eq!(d.split(split).acts.view(), x.view(), "{split}");
    }
    assert_eq!(d.tokens().unwrap().sentence_starts().len(), 9);

    // Incomplete or contradictory settings are errors naming the parameter.
    let err = |extra: &str| {
        build_source(&format!("{base}{extra}"))
            .err()
            .unwrap()
            .to_string()
    };
    let e = err(&format!("dev_activations = {:?}", path("activations.json")));
    assert!(e.contains("`dev_corpus` = missing"), "{e}");
    let e = err(&format!(
        "test_activations = {:?}\ntest_corpus = {:?}",
        path("activations.json"),
        path("sentences.txt")
    ));
    assert!(e.contains("`test_labels` = missing"), "{e}");
    let e = err(&format!("dev_corpus = {:?}", path("sentences.txt")));
    assert!(e.contains("dev_activations as well"), "{e}");
    let e = err(&format!("{}dev = 0.3", held_out("dev")));
    assert!(e.contains("no `dev` or `test` fraction"), "{e}");
}
