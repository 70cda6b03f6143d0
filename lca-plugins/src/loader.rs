//! Finding and loading plugin libraries.
//!
//! Each library is loaded by file with abi_stable's
//! `lib_header_from_path(..).init_root_module()`, which checks the interface
//! version and the layout of every type that crosses the boundary. (The
//! directory loader `RootModule::load_from_directory` caches one module per
//! type and would hand back the first plugin for every later one.) Libraries
//! stay loaded for the life of the process.

use std::collections::BTreeSet;
use std::env::consts::{DLL_PREFIX, DLL_SUFFIX};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use abi_stable::library::{LibraryError, RootModule, lib_header_from_path};
use abi_stable::std_types::RStr;
use lca_core::registry::{ComponentInfo, ComponentKind, Factory, Origin, Registry};
use lca_core::{Component, Error, Result};

use crate::abi::{ABI_VERSION, PluginModRef};
use crate::foreign::{ForeignEvaluator, ForeignProbe, ForeignRanker, ForeignSource, Who};

/// File names of plugin libraries start with this (after the platform's
/// library prefix, `lib` on Linux).
pub const FILE_STEM_PREFIX: &str = "lca_plugin_";

/// Environment variable with extra plugin directories, separated like `PATH`.
pub const PATH_VAR: &str = "LCA_PLUGIN_PATH";

/// A loaded plugin library.
#[derive(Clone)]
pub struct LoadedPlugin {
    /// Plugin name.
    pub name: String,
    /// Plugin version.
    pub version: String,
    /// The library file.
    pub file: PathBuf,
    /// Its components.
    pub components: Vec<ComponentInfo>,
    module: PluginModRef,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("file", &self.file)
            .field("components", &self.components.len())
            .finish()
    }
}

/// True for file names that follow the plugin naming convention:
/// `liblca_plugin_<name>.so` on Linux, `.dylib` on macOS,
/// `lca_plugin_<name>.dll` on Windows.
pub fn is_plugin_file_name(name: &str) -> bool {
    name.strip_prefix(DLL_PREFIX)
        .and_then(|n| n.strip_prefix(FILE_STEM_PREFIX))
        .and_then(|n| n.strip_suffix(DLL_SUFFIX))
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
}

/// The plugin files in `dirs`, in search order: directories in the order
/// given, files sorted by name within each. A file name already found in an
/// earlier directory is skipped, as with `PATH`, so a stale copy further down
/// the search path never shadows a fresh one.
///
/// # Errors
/// When a directory cannot be read.
pub fn discover(dirs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut seen = BTreeSet::new();
    let mut found = Vec::new();
    for dir in dirs {
        let entries =
            std::fs::read_dir(dir).map_err(|e| Error::io("read plugin directory", dir, e))?;
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_type()
                    .map(|t| t.is_file() || t.is_symlink())
                    .unwrap_or(false)
            })
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| is_plugin_file_name(n))
            .collect();
        names.sort();
        for name in names {
            if seen.insert(name.clone()) {
                found.push(dir.join(name));
            }
        }
    }
    Ok(found)
}

/// The default search path: the `--plugin-dir` directories (which must
/// exist), then `LCA_PLUGIN_PATH`, then the directory of the running
/// executable (entries of the last two that do not exist are skipped).
///
/// # Errors
/// When an explicit directory does not exist.
pub fn search_path(explicit: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    for dir in explicit {
        if !dir.is_dir() {
            return Err(Error::Plugin(format!(
                "plugin directory {} does not exist or is not a directory; check the --plugin-dir argument",
                dir.display()
            )));
        }
        dirs.push(dir.clone());
    }
    if let Some(paths) = std::env::var_os(PATH_VAR) {
        dirs.extend(std::env::split_paths(&paths).filter(|p| p.is_dir()));
    }
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
    {
        dirs.push(exe_dir);
    }
    Ok(dirs)
}

/// Loads one plugin library.
///
/// # Errors
/// A one-paragraph [`Error::Plugin`] saying why, naming the file and the fix.
pub fn load_file(path: &Path) -> Result<LoadedPlugin> {
    let file = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let loaded = catch_unwind(AssertUnwindSafe(
        || -> std::result::Result<PluginModRef, LibraryError> {
            lib_header_from_path(&file)?.init_root_module::<PluginModRef>()
        },
    ));
    let module = match loaded {
        Ok(Ok(module)) => module,
        Ok(Err(e)) => return Err(Error::Plugin(explain(&file, &e))),
        Err(payload) => {
            return Err(Error::Plugin(format!(
                "loading plugin {} panicked ({}); the library is broken or was built for another lca version, rebuild it",
                file.display(),
                lca_core::run::panic_message(payload.as_ref())
            )));
        }
    };
    let info = catch_unwind(AssertUnwindSafe(|| (module.info())())).map_err(|_| {
        Error::Plugin(format!(
            "plugin {} panicked while describing itself; it is broken, rebuild or remove it",
            file.display()
        ))
    })?;
    if info.name.is_empty() {
        return Err(Error::Plugin(format!(
            "plugin {} failed to describe its components ({}); fix the plugin's export_plugin! list",
            file.display(),
            info.version
        )));
    }
    let components: Vec<ComponentInfo> = serde_json::from_str(info.components.as_str()).map_err(|e| {
        Error::Plugin(format!("plugin {} described its components in a form this lca does not understand ({e}); rebuild it against this lca", file.display()))
    })?;
    Ok(LoadedPlugin {
        name: info.name.into_string(),
        version: info.version.into_string(),
        file,
        components,
        module,
    })
}

fn explain(file: &Path, e: &LibraryError) -> String {
    let shown = file.display();
    match e {
        LibraryError::OpenError { err, .. } => format!(
            "cannot load plugin {shown}: {err}. It is not a loadable shared library for this platform; \
             rebuild it with `cargo build --release` or remove it from the plugin directory"
        ),
        LibraryError::GetSymbolError { .. } | LibraryError::InvalidAbiHeader(_) => format!(
            "{shown} is not an lca plugin: it does not export the lca plugin entry point \
             (plugins are built with `lca_plugins::export_plugin!`). Remove it from the plugin directory, \
             or rename it so that it does not match the plugin naming convention ({DLL_PREFIX}{FILE_STEM_PREFIX}<name>{DLL_SUFFIX})"
        ),
        LibraryError::IncompatibleVersionNumber {
            expected_version,
            actual_version,
            ..
        } => format!(
            "plugin {shown} was built against lca plugin ABI {actual_version}, but this lca uses ABI {expected_version}. \
             Rebuild the plugin against lca-plugins {ABI_VERSION} (run `cargo build --release` in its crate), \
             or use the lca release it was built for"
        ),
        LibraryError::AbiInstability(report) => {
            let first = report
                .to_string()
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("")
                .chars()
                .take(160)
                .collect::<String>();
            format!(
                "plugin {shown} was built against a different layout of the lca plugin interface than this lca \
                 (same ABI version {ABI_VERSION}, different types; first difference: {first}). \
                 It was probably built from a modified or mismatched lca-plugins: rebuild it against this lca's sources"
            )
        }
        LibraryError::ParseVersionError(v) => format!(
            "plugin {shown} declares an unreadable ABI version ({v:?}); rebuild it against this lca"
        ),
        LibraryError::RootModule { err, .. } => {
            format!("plugin {shown} failed while initialising ({err}); fix or rebuild the plugin")
        }
        LibraryError::InvalidCAbi { .. } => format!(
            "plugin {shown} was built with an incompatible compiler C ABI; rebuild it with the same Rust toolchain as lca"
        ),
        other => format!("cannot load plugin {shown}: {other}"),
    }
}

impl LoadedPlugin {
    /// The origin recorded for this plugin's components.
    pub fn origin(&self) -> Origin {
        Origin::Plugin {
            plugin: self.name.clone(),
            version: self.version.clone(),
            file: self.file.clone(),
        }
    }

    /// Registers every component of this plugin.
    ///
    /// # Errors
    /// When a name is already taken ([`Error::DuplicateComponent`] names both
    /// origins).
    pub fn register_into(&self, registry: &mut Registry) -> Result<()> {
        for info in &self.components {
            let factory = PluginFactory {
                module: self.module,
                kind: info.kind,
                name: info.name.clone(),
                who: Who::plugin(info.kind, &info.name, &self.name, &self.version),
            };
            registry.register(info.clone(), self.origin(), Arc::new(factory))?;
        }
        Ok(())
    }
}

/// Loads every plugin in `files` into `registry`.
///
/// # Errors
/// The first library that cannot be loaded or registered.
pub fn load_into(registry: &mut Registry, files: &[PathBuf]) -> Result<Vec<LoadedPlugin>> {
    let mut loaded = Vec::new();
    for file in files {
        let plugin = load_file(file)?;
        plugin.register_into(registry)?;
        loaded.push(plugin);
    }
    Ok(loaded)
}

struct PluginFactory {
    module: PluginModRef,
    kind: ComponentKind,
    name: String,
    who: Who,
}

impl PluginFactory {
    fn params_text(&self, params: &lca_core::toml::Table) -> Result<String> {
        lca_core::toml::to_string(params).map_err(|e| {
            Error::input(format!(
                "parameters of `{}` cannot be written as TOML: {e}",
                self.name
            ))
        })
    }
}

impl Factory for PluginFactory {
    fn applied(&self, params: &lca_core::toml::Table) -> Result<lca_core::toml::Table> {
        let text = self.params_text(params)?;
        let fail = |e| crate::convert::error_from_ffi(e, &self.who.label, &self.name);
        let applied = catch_unwind(AssertUnwindSafe(|| {
            (self.module.applied_params())(RStr::from_str(&self.name), RStr::from_str(&text))
                .into_result()
                .map_err(fail)
        }))
        .map_err(|_| {
            Error::Plugin(format!(
                "{} cannot report its parameters: the plugin lacks an entry this lca needs; rebuild it against this lca",
                self.who.label
            ))
        })??;
        applied
            .as_str()
            .parse()
            .map_err(|e: lca_core::toml::de::Error| {
                Error::Plugin(format!(
                    "{} reported its parameters as invalid TOML: {}",
                    self.who.label,
                    e.message()
                ))
            })
    }

    fn build(&self, params: &lca_core::toml::Table) -> Result<Component> {
        let text = self.params_text(params)?;
        let (name, params) = (RStr::from_str(&self.name), RStr::from_str(&text));
        let who = self.who.clone();
        let fail = |e| crate::convert::error_from_ffi(e, &self.who.label, &self.name);
        let built = catch_unwind(AssertUnwindSafe(|| -> Result<Component> {
            Ok(match self.kind {
                ComponentKind::Source => {
                    let inner = (self.module.new_source())(name, params)
                        .into_result()
                        .map_err(fail)?;
                    Component::Source(Box::new(ForeignSource::new(inner, who)))
                }
                ComponentKind::Probe => {
                    let inner = (self.module.new_probe())(name, params)
                        .into_result()
                        .map_err(fail)?;
                    Component::Probe(Arc::new(ForeignProbe::new(inner, who)))
                }
                ComponentKind::Ranker => {
                    let inner = (self.module.new_ranker())(name, params)
                        .into_result()
                        .map_err(fail)?;
                    Component::Ranker(Box::new(ForeignRanker::new(inner, who)))
                }
                ComponentKind::Evaluator => {
                    let inner = (self.module.new_evaluator())(name, params)
                        .into_result()
                        .map_err(fail)?;
                    Component::Evaluator(Box::new(ForeignEvaluator::new(inner, who)))
                }
            })
        }));
        // Reading a constructor this library lacks (an older plugin) panics
        // in abi_stable's accessor; report it instead.
        built.unwrap_or_else(|_| {
            Err(Error::Plugin(format!(
                "{} could not be built: the plugin lacks an entry this lca needs; rebuild it against this lca",
                self.who.label
            )))
        })
    }
}

/// The root-module type name, used by the tests to check the exported symbol.
#[doc(hidden)]
pub fn root_module_name() -> &'static str {
    <PluginModRef as RootModule>::NAME
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn naming_convention() {
        let name = |stem: &str| format!("{DLL_PREFIX}{stem}{DLL_SUFFIX}");
        assert!(is_plugin_file_name(&name("lca_plugin_correlation")));
        assert!(!is_plugin_file_name(&name("lca_plugin_")));
        assert!(!is_plugin_file_name(&name("lca_plugins-1234abcd")));
        assert!(!is_plugin_file_name(&name("abi_stable_derive-0f1e")));
        assert!(!is_plugin_file_name("liblca_plugin_x.rlib"));
    }

    #[test]
    fn discover_lets_earlier_directories_win() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let file = format!("{DLL_PREFIX}lca_plugin_x{DLL_SUFFIX}");
        let other = format!("{DLL_PREFIX}lca_plugin_y{DLL_SUFFIX}");
        std::fs::write(a.path().join(&file), b"").unwrap();
        std::fs::write(b.path().join(&file), b"").unwrap();
        std::fs::write(b.path().join(&other), b"").unwrap();
        std::fs::write(b.path().join("README.md"), b"").unwrap();
        let found = discover(&[a.path().to_path_buf(), b.path().to_path_buf()]).unwrap();
        assert_eq!(found, vec![a.path().join(&file), b.path().join(&other)]);
    }

    #[test]
    fn a_file_that_is_not_a_library_gets_one_paragraph() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir
            .path()
            .join(format!("{DLL_PREFIX}lca_plugin_fake{DLL_SUFFIX}"));
        std::fs::write(&path, b"not a library").unwrap();
        let err = load_file(&path).unwrap_err().to_string();
        assert!(
            err.contains("cannot load plugin") && err.contains("not a loadable shared library"),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn missing_explicit_directory_is_an_error() {
        let err = search_path(&[PathBuf::from("/definitely/not/here")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/definitely/not/here") && err.contains("--plugin-dir"),
            "{err}"
        );
    }

    #[test]
    fn exported_symbol_name_matches_abi_stable() {
        assert_eq!(
            abi_stable::library::ROOT_MODULE_LOADER_NAME,
            "_1as_0lib_1header_0root_bmodule_bloader",
            "update the export_name in export_plugin! to this value"
        );
        assert_eq!(root_module_name(), "lca_plugin");
    }
}
