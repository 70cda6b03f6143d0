//! The component registry (built-ins and plugins), loaded once per set of
//! plugin locations and kept for the life of the interpreter: loading a
//! plugin maps a library, and its code must stay mapped while any component
//! built from it lives.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use lca_cli::plugins::{self, Components, PluginArgs};
use pyo3::prelude::*;

use crate::errors::any_error;

/// Where plugins come from, as Python gave it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct PluginPlaces {
    pub(crate) dirs: Vec<PathBuf>,
    pub(crate) files: Vec<PathBuf>,
}

impl PluginPlaces {
    pub(crate) fn new(dirs: Vec<PathBuf>, files: Vec<PathBuf>) -> Self {
        PluginPlaces { dirs, files }
    }
}

type Loaded = Vec<(PluginPlaces, Arc<Components>)>;

static LOADED: Mutex<Loaded> = Mutex::new(Vec::new());

/// The registry for these plugin places, loading it the first time. Skipped
/// libraries become Python warnings, once.
pub(crate) fn components(py: Python<'_>, places: &PluginPlaces) -> PyResult<Arc<Components>> {
    let mut loaded = LOADED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, components)) = loaded.iter().find(|(p, _)| p == places) {
        return Ok(components.clone());
    }
    let args = PluginArgs {
        dirs: places.dirs.clone(),
        files: places.files.clone(),
    };
    let components = Arc::new(plugins::load(&args).map_err(any_error)?);
    let warnings = py.import("warnings")?;
    for w in &components.warnings {
        warnings.call_method1("warn", (w.clone(),))?;
    }
    loaded.push((places.clone(), components.clone()));
    Ok(components)
}
