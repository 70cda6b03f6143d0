//! Helpers shared by the tests that drive the `lca` binary.
// Each test crate uses a different subset.
#![allow(dead_code)]

use std::env::consts::{DLL_PREFIX, DLL_SUFFIX};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The `lca` binary of this build.
pub(crate) fn lca_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lca"))
}

/// `target/<profile>/deps`, where Cargo puts the plugin libraries of the
/// dev-dependencies.
pub(crate) fn deps_dir() -> PathBuf {
    lca_exe().parent().unwrap().join("deps")
}

/// A library built as a dev-dependency, by crate name.
pub(crate) fn library(name: &str) -> PathBuf {
    let path = deps_dir().join(format!("{DLL_PREFIX}{name}{DLL_SUFFIX}"));
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// A path in the repository.
pub(crate) fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join(path)
}

/// `lca` with this build's plugins and none from the developer's environment.
pub(crate) fn lca_command() -> Command {
    let mut command = Command::new(lca_exe());
    command
        .env_remove("LCA_PLUGIN_PATH")
        .arg("--plugin-dir")
        .arg(deps_dir());
    command
}

/// A `.npy` file (format 1.0) of little-endian f32 values, rows × cols.
pub(crate) fn npy(rows: usize, cols: usize, values: &[f32]) -> Vec<u8> {
    let mut bytes = npy_header(rows, cols);
    bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    bytes
}

/// The header of a row-major float32 `.npy` file of `rows` × `cols`.
pub(crate) fn npy_header(rows: usize, cols: usize) -> Vec<u8> {
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    let pad = 64 - (10 + header.len() + 1) % 64;
    header.push_str(&" ".repeat(pad));
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes
}

/// Runs `command` and asserts that it succeeded, showing its standard error
/// otherwise.
pub(crate) fn succeed(command: &mut Command) -> std::process::Output {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The JSON file `path` split into the results and their run-dependent
/// `provenance` section, or `None` when the file is absent.
pub(crate) fn read_results(path: &Path) -> Option<(serde_json::Value, serde_json::Value)> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut value: serde_json::Value =
        serde_json::from_str(&text).expect("the results file is complete JSON");
    let provenance = value
        .as_object_mut()
        .unwrap()
        .remove("provenance")
        .expect("a provenance section");
    Some((value, provenance))
}

/// Writes a store at `dir/store` from the recipe `recipe_toml` (one
/// source), with `extra` flags, and returns its path and size in bytes.
pub(crate) fn create_store(dir: &Path, recipe_toml: &str, extra: &[&str]) -> (PathBuf, u64) {
    let recipe = dir.join("store-source.toml");
    std::fs::write(&recipe, recipe_toml).unwrap();
    let store = dir.join("store");
    succeed(
        lca_command()
            .args(["store", "create", "--quiet"])
            .args(extra)
            .arg("--out")
            .arg(&store)
            .arg(&recipe),
    );
    let size = std::fs::read_dir(&store)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    (store, size)
}

/// The informative neurons a planted store's manifest records.
pub(crate) fn planted_neurons(store: &Path) -> Vec<u64> {
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(store.join("manifest.json")).unwrap())
            .unwrap();
    manifest["truth"]["informative"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}
