//! Mutation fuzzing of the recipe compiler and of every file reader in
//! `lca-builtin` (the harness is `lca_testkit::fuzz`; the plugin crates
//! fuzz their own readers with it). Each target runs for `LCA_FUZZ_SECONDS`
//! seconds; an input that panics is saved under `target/fuzz-crashes/` and
//! the test fails naming it; each crash found becomes a regression test at
//! the end of this file.

use std::path::{Path, PathBuf};

use lca_testkit::fuzz::fuzz;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn read(path: &str) -> Vec<u8> {
    std::fs::read(repo(path)).unwrap()
}

#[test]
fn recipe_compiler_never_panics() {
    let seeds: Vec<Vec<u8>> = std::fs::read_dir(repo("examples/recipes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert!(seeds.len() >= 4);
    let registry = lca_builtin::registry();
    fuzz("recipe", &seeds, "recipe.toml", |path| {
        let text = String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned();
        let _ = lca_core::recipe::compile(path, &text, &registry);
    });
}

#[test]
fn npy_reader_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seed.npy");
    let x = ndarray::Array2::from_shape_fn((7, 5), |(r, c)| (r * 5 + c) as f32 / 3.0);
    ndarray_npy::write_npy(&path, &x).unwrap();
    let x64 = x.mapv(f64::from);
    let path64 = dir.path().join("seed64.npy");
    ndarray_npy::write_npy(&path64, &x64).unwrap();
    let seeds = vec![
        std::fs::read(&path).unwrap(),
        std::fs::read(&path64).unwrap(),
    ];
    fuzz("npy", &seeds, "acts.npy", |p| {
        let _ = lca_builtin::read_matrix_file(p, None);
    });
}

#[test]
fn label_file_reader_never_panics() {
    let seeds = vec![
        b"DT\nNN\nVB\n\nDT\nJJ\n".to_vec(),
        read("tests/bad-inputs/npy-label-count-mismatch/labels.txt"),
    ];
    fuzz("labels", &seeds, "labels.txt", |p| {
        let _ = lca_builtin::read_label_file(p);
    });
}

#[test]
fn neurox_json_reader_never_panics() {
    let seeds = vec![read("lca-builtin/tests/golden/formats/activations.json")];
    fuzz("neurox-json", &seeds, "activations.json", |p| {
        let _ = lca_builtin::neurox::read_json(p);
    });
}

#[test]
fn neurox_text_readers_never_panic() {
    let sentences = read("lca-builtin/tests/golden/formats/sentences.txt");
    let labels = read("lca-builtin/tests/golden/formats/labels.txt");
    let dir = tempfile::tempdir().unwrap();
    let fixed_labels = dir.path().join("labels.txt");
    std::fs::write(&fixed_labels, &labels).unwrap();
    let fixed_sentences = dir.path().join("sentences.txt");
    std::fs::write(&fixed_sentences, &sentences).unwrap();
    fuzz("neurox-sentences", &[sentences], "sentences.txt", |p| {
        let _ = lca_builtin::corpus::read_neurox_files(p, &fixed_labels);
    });
    fuzz("neurox-labels", &[labels], "labels.txt", |p| {
        let _ = lca_builtin::corpus::read_neurox_files(&fixed_sentences, p);
    });
}

#[test]
fn conllu_reader_never_panics() {
    let seed = "# sent_id = 1\n1\tThe\tthe\tDET\tDT\t_\t2\tdet\t_\t_\n2\tcat\tcat\tNOUN\tNN\t_\t3\tnsubj\t_\t_\n3\tsat\tsit\tVERB\tVBD\t_\t0\troot\t_\t_\n\n1-2\tdon't\t_\t_\t_\t_\t_\t_\t_\t_\n1\tdo\tdo\tAUX\tVBP\t_\t0\troot\t_\t_\n2\tn't\tnot\tPART\tRB\t_\t1\tadvmod\t_\t_\n2.1\tx\tx\tX\tX\t_\t_\t_\t_\t_\n\n";
    fuzz(
        "conllu",
        &[seed.as_bytes().to_vec()],
        "corpus.conllu",
        |p| {
            let _ = lca_builtin::corpus::read_conllu(p, "upos");
            let _ = lca_builtin::corpus::read_conllu(p, "deprel");
        },
    );
}

#[test]
fn brown_reader_never_panics() {
    let seed = "\n\n\tThe/at Fulton/np-tl County/nn-tl Grand/jj-tl Jury/nn-tl said/vbd ./.\n\n\n\tIt/pps recommended/vbd that/cs Fulton/np legislators/nns act/vb ``/`` to/to have/hv these/dts laws/nns studied/vbn ''/'' ./.\n";
    fuzz("brown", &[seed.as_bytes().to_vec()], "ca01", |p| {
        let _ = lca_builtin::corpus::read_brown(&[p.to_path_buf()]);
    });
}

#[test]
fn npz_and_safetensors_readers_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let x = ndarray::Array2::from_shape_fn((4, 3), |(r, c)| (r + c) as f32 - 1.5);
    let npz_path = dir.path().join("seed.npz");
    let mut npz = ndarray_npy::NpzWriter::new(std::fs::File::create(&npz_path).unwrap());
    npz.add_array("acts", &x).unwrap();
    npz.finish().unwrap();
    fuzz(
        "npz",
        &[std::fs::read(&npz_path).unwrap()],
        "acts.npz",
        |p| {
            let _ = lca_builtin::read_matrix_file(p, None);
            let _ = lca_builtin::read_matrix_file(p, Some("acts"));
        },
    );
    let data: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![4, 3], &data).unwrap();
    let bytes = safetensors::serialize([("acts", view)], None).unwrap();
    fuzz("safetensors", &[bytes], "acts.safetensors", |p| {
        let _ = lca_builtin::read_matrix_file(p, None);
    });
}
