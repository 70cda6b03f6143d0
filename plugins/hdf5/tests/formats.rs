//! NeuroX HDF5 files (written by NeuroX 1.0.9 with h5py 3.1) load to
//! exactly the matrices NeuroX's reader returns (`golden/expected.json`).

use std::path::{Path, PathBuf};

use lca_core::ndarray::Array2;
use lca_core::{Component, RunContext};
use serde_json::Value;

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(golden().join("expected.json")).unwrap()).unwrap()
}

fn matrix(v: &Value) -> Array2<f32> {
    let rows: Vec<Vec<f32>> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect();
    Array2::from_shape_fn((rows.len(), rows[0].len()), |(i, j)| rows[i][j])
}

#[test]
fn every_hdf5_fixture_loads_to_the_neurox_matrices() {
    let e = expected();
    for name in [
        "activations.hdf5",
        "activations_layers_1_0.hdf5",
        "activations_decomposed-layer0.hdf5",
        "activations_decomposed-layer1.hdf5",
    ] {
        let acts = lca_plugin_hdf5::read(&golden().join(name)).unwrap();
        let want = &e["files"][name]["load_activations"];
        assert_eq!(
            acts.layers.len() as u64,
            want["num_layers"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(acts.hidden, 4);
        let per_sentence = want["per_sentence_TxLH"].as_array().unwrap();
        assert_eq!(acts.sentences.len(), per_sentence.len(), "{name}");
        for (i, (ours, theirs)) in acts.sentences.iter().zip(per_sentence).enumerate() {
            assert_eq!(ours.values, matrix(theirs), "{name}, sentence {i}");
        }
        assert_eq!(acts.sentences[0].tokens, ["The", "cat", "sat"]);
        assert_eq!(
            acts.sentences[2].tokens,
            ["The", "cat", "sat"],
            "the occurrence suffix is not a token"
        );
    }
}

fn source(activations: &str, extra: &str) -> lca_core::Result<lca_core::Dataset<'static>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../lca-builtin/tests/golden/formats");
    let text = format!(
        "activations = {:?}\ncorpus = {:?}\nlabels = {:?}\ndev = 0.0\ntest = 0.0\n{extra}",
        golden().join(activations).display().to_string(),
        dir.join("sentences.txt").display().to_string(),
        dir.join("labels.txt").display().to_string(),
    );
    let table: lca_core::toml::Table = text.parse().unwrap();
    let Component::Source(s) = (lca_plugin_hdf5::descriptor().build)(&table)? else {
        panic!("not a source")
    };
    s.load(&RunContext::new(1, 1).for_step("source.h5"))
}

#[test]
fn the_source_gives_the_matrix_neurox_trains_on() {
    let d = source("activations.hdf5", "").unwrap();
    let x = matrix(&expected()["load_data_and_create_tensors"]["from_hdf5"]["X"]);
    assert_eq!(d.acts().view(), x.view());
    assert_eq!(d.neurons().layers(), [0, 1]);
}

#[test]
fn filtered_layers_are_named_by_the_recipe() {
    let d = source("activations_layers_1_0.hdf5", "layers = [1, 0]").unwrap();
    assert_eq!(d.neurons().id(0).layer, 1);
    assert_eq!(d.neurons().id(4).layer, 0);
    let err = source("activations_layers_1_0.hdf5", "layers = [1]")
        .unwrap_err()
        .to_string();
    assert!(err.contains("2 layer numbers"), "{err}");
}

#[test]
fn files_that_are_not_neurox_hdf5_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("fake.hdf5");
    std::fs::write(&fake, b"not hdf5 at all").unwrap();
    let err = lca_plugin_hdf5::read(&fake).unwrap_err().to_string();
    assert!(
        err.contains("fake.hdf5") && err.contains("not a readable HDF5 file"),
        "{err}"
    );
    let err = lca_plugin_hdf5::read(&dir.path().join("missing.hdf5"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing.hdf5"), "{err}");
}
