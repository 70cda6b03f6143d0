//! Mutation fuzzing of the NeuroX HDF5 reader: damaged files must give an
//! error naming the file, never a panic, a crash or a hang. The harness is
//! `lca_testkit::fuzz`; the target runs for `LCA_FUZZ_SECONDS` seconds.
//!
//! The HDF5 C library parses the container itself, and fuzzing found files
//! that make it crash (SIGSEGV), loop forever, or allocate whatever size a
//! damaged header declares. The reader therefore checks declared sizes
//! against the file and runs the library in a child process with a time
//! limit. What the library does on a given damaged file differs between its
//! versions, and even between runs of one version, so the regression files
//! below only require a clean error naming the file; the guard itself is
//! tested with readers this file controls (one that sleeps, one that aborts,
//! one that panics).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lca_builtin::neurox::NeuroxActivations;
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

// Regressions: inputs the fuzzer found, named after what they found. Each
// must give an error that names the file, whatever the library does on it.

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

#[test]
fn a_file_that_segfaulted_the_hdf5_library_is_an_error() {
    error_for("segfaults-the-hdf5-library.hdf5");
}

#[test]
fn a_file_that_looped_the_hdf5_library_is_an_error() {
    error_for("loops-the-hdf5-library.hdf5");
}

#[test]
fn a_block_larger_than_the_file_is_refused_before_allocating_it() {
    let err = error_for("declares-a-huge-block.hdf5");
    assert!(
        err.contains("far more than this 10240-byte file holds"),
        "{err}"
    );
}

// The guard, on readers whose behaviour is certain.

#[cfg(unix)]
fn guarded(limit: Duration, reader: fn(&Path) -> lca_core::Result<NeuroxActivations>) -> String {
    let path = here("golden/activations.hdf5");
    let err = match lca_plugin_hdf5::read_isolated_with(&path, limit, reader) {
        Ok(_) => panic!("the guard should report an error"),
        Err(err) => err.to_string(),
    };
    assert!(err.contains(&path.display().to_string()), "{err}");
    err
}

#[cfg(unix)]
#[test]
fn a_reader_that_never_finishes_is_stopped_at_the_time_limit() {
    let started = Instant::now();
    let err = guarded(Duration::from_secs(1), |_| {
        std::thread::sleep(Duration::from_secs(600));
        unreachable!("the reader is stopped long before")
    });
    assert!(
        err.contains("did not finish reading this file within 1 s")
            && err.contains("LCA_HDF5_SECONDS"),
        "{err}"
    );
    // Stopped at the limit, not when the reader would have finished.
    assert!(
        started.elapsed() < Duration::from_secs(300),
        "{:?}",
        started.elapsed()
    );
}

#[cfg(unix)]
#[test]
fn a_reader_killed_by_a_signal_is_an_error() {
    let err = guarded(Duration::from_secs(60), |_| std::process::abort());
    assert!(
        err.contains(&format!(
            "the HDF5 library crashed (signal {SIGABRT}) while reading this file"
        )),
        "{err}"
    );
}

/// The signal `abort` raises, on every Unix `lca` runs on.
#[cfg(unix)]
const SIGABRT: i32 = 6;

#[cfg(unix)]
#[test]
fn a_reader_that_panics_is_an_error() {
    let err = guarded(Duration::from_secs(60), |_| panic!("a reader bug"));
    assert!(err.contains("the HDF5 reader panicked"), "{err}");
}

#[cfg(unix)]
#[test]
fn the_guard_passes_a_sound_reading_through() {
    let path = here("golden/activations.hdf5");
    let direct = lca_plugin_hdf5::read_in_process(&path).unwrap();
    let guarded = lca_plugin_hdf5::read_isolated_with(&path, Duration::from_secs(60), |p| {
        lca_plugin_hdf5::read_in_process(p)
    })
    .unwrap();
    assert_eq!(direct.sentences.len(), guarded.sentences.len());
    assert_eq!(
        (direct.hidden, &direct.layers),
        (guarded.hidden, &guarded.layers)
    );
    for (a, b) in direct.sentences.iter().zip(&guarded.sentences) {
        assert_eq!(a.tokens, b.tokens);
        assert_eq!(a.values, b.values);
    }
}
