//! Building the component registry: built-ins plus plugins.

use anyhow::{Context, Result};
use lca_core::Registry;
use lca_plugins::LoadedPlugin;

use std::path::PathBuf;

/// The registry with every component, the plugins loaded, and warnings about
/// libraries on the search path that could not be loaded.
pub struct Components {
    /// Every component, built-in or from a plugin.
    pub registry: Registry,
    /// The plugin libraries loaded, kept so their code stays mapped.
    pub plugins: Vec<LoadedPlugin>,
    /// Libraries on the search path that were skipped, one line each.
    pub warnings: Vec<String>,
}

/// Where plugins come from.
#[derive(Clone, Debug, Default)]
pub struct PluginArgs {
    /// Directories searched before `LCA_PLUGIN_PATH` and the directory of
    /// the running program.
    pub dirs: Vec<PathBuf>,
    /// Libraries loaded whatever their names.
    pub files: Vec<PathBuf>,
}

/// Loads built-ins, `--plugin` files (any failure is fatal) and the plugins
/// found on the search path (a library that fails to load is reported and
/// skipped, so one broken file does not block unrelated work; two libraries
/// that provide the same component name are an error).
pub fn load(args: &PluginArgs) -> Result<Components> {
    let mut registry = Registry::new();
    lca_builtin::register(&mut registry)?;
    let mut plugins = Vec::new();
    let mut warnings = Vec::new();
    for file in &args.files {
        let plugin = lca_plugins::load_file(file)
            .with_context(|| format!("loading plugin {}", file.display()))?;
        plugin.register_into(&mut registry)?;
        plugins.push(plugin);
    }
    let dirs = lca_plugins::search_path(&args.dirs)?;
    for file in lca_plugins::discover(&dirs)? {
        let canonical = file.canonicalize().unwrap_or_else(|_| file.clone());
        if plugins.iter().any(|p: &LoadedPlugin| p.file == canonical) {
            continue;
        }
        match lca_plugins::load_file(&file) {
            Ok(plugin) => {
                plugin.register_into(&mut registry)?;
                plugins.push(plugin);
            }
            Err(e) => warnings.push(format!("skipped a plugin: {e}")),
        }
    }
    Ok(Components {
        registry,
        plugins,
        warnings,
    })
}

impl Components {
    /// Prints the warnings to standard error.
    pub fn print_warnings(&self) {
        for w in &self.warnings {
            eprintln!("warning: {w}");
        }
    }
}
