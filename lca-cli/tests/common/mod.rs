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
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    let pad = 64 - (10 + header.len() + 1) % 64;
    header.push_str(&" ".repeat(pad));
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
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
