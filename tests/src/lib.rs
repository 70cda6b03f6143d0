//! Helpers for the workspace integration tests: where the test build put the
//! plugin libraries, and a registry with them loaded.

use std::env::consts::{DLL_PREFIX, DLL_SUFFIX};
use std::path::{Path, PathBuf};

use lca_core::Registry;

/// The `deps` folder of the current build profile, where Cargo puts the
/// cdylibs of dev-dependencies.
pub fn deps_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().expect("test executable folder");
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.to_path_buf()
    } else {
        dir.join("deps")
    }
}

/// The path of a library built by this workspace, by library name
/// (`lca_plugin_correlation`).
///
/// # Panics
/// If the library was not built: add its crate as a dev-dependency.
pub fn library(name: &str) -> PathBuf {
    let file = format!("{DLL_PREFIX}{name}{DLL_SUFFIX}");
    let path = deps_dir().join(&file);
    assert!(
        path.is_file(),
        "{} was not built; list its crate as a dev-dependency of the test package",
        path.display()
    );
    path
}

/// Built-ins plus the given plugin libraries.
///
/// # Panics
/// If a library fails to load.
pub fn registry_with(libraries: &[&str]) -> Registry {
    let mut registry = lca_builtin::registry();
    for name in libraries {
        lca_plugins::load_file(&library(name))
            .expect("plugin loads")
            .register_into(&mut registry)
            .expect("plugin registers");
    }
    registry
}

/// The repository root.
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
}
