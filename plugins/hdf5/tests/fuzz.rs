//! Mutation fuzzing of the NeuroX HDF5 reader: damaged files must give an
//! error naming the file, never a panic, a crash or a hang. The harness is
//! `lca_testkit::fuzz`; the target runs for `LCA_FUZZ_SECONDS` seconds.
//!
//! The HDF5 C library parses the container itself, and fuzzing found files
//! that make it crash (SIGSEGV), loop forever, or allocate whatever size a
//! damaged header declares. The reader therefore checks declared sizes
//! against the file and runs the library in a child process with a time
//! limit; the regressions below keep one file of each kind.

use std::path::{Path, PathBuf};

use lca_testkit::fuzz::fuzz;

/// Damaged files on which the HDF5 library loops are stopped after this.
fn limit_hdf5_time() {
    // SAFETY: every test of this process sets the same value.
    unsafe { std::env::set_var("LCA_HDF5_SECONDS", "2") };
}

fn here(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(path)
}

#[test]
fn hdf5_reader_never_panics() {
    limit_hdf5_time();
    let seeds: Vec<Vec<u8>> = [
        "golden/activations.hdf5",
        "golden/activations_decomposed-layer0.hdf5",
        "golden/activations_layers_1_0.hdf5",
    ]
    .iter()
    .map(|name| std::fs::read(here(name)).unwrap())
    .collect();
    for (i, seed) in seeds.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seed.hdf5");
        std::fs::write(&path, seed).unwrap();
        assert!(lca_plugin_hdf5::read(&path).is_ok(), "seed {i} reads");
    }
    fuzz("neurox-hdf5", &seeds, "activations.hdf5", |path| {
        let _ = lca_plugin_hdf5::read(path);
    });
}

// Regressions: inputs the fuzzer found, named after what they found.

fn error_for(file: &str) -> String {
    limit_hdf5_time();
    let path = here(&format!("fuzz-regressions/{file}"));
    let err = lca_plugin_hdf5::read(&path)
        .err()
        .unwrap_or_else(|| panic!("{file} was read"))
        .to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
    err
}

#[cfg(unix)]
#[test]
fn a_file_that_segfaults_the_hdf5_library_is_an_error() {
    let err = error_for("segfaults-the-hdf5-library.hdf5");
    assert!(
        err.contains("the HDF5 library crashed (signal 11) while reading this file"),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn a_file_that_loops_the_hdf5_library_is_stopped() {
    let err = error_for("loops-the-hdf5-library.hdf5");
    assert!(
        err.contains("did not finish reading this file within 2 s")
            && err.contains("LCA_HDF5_SECONDS"),
        "{err}"
    );
}

#[test]
fn a_block_larger_than_the_file_is_refused_before_allocating_it() {
    let err = error_for("declares-a-huge-block.hdf5");
    assert!(
        err.contains("far more than this 10240-byte file holds"),
        "{err}"
    );
}
