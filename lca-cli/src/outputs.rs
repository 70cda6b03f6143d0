//! Writing a finished run: the probes' arrays, `results.json` and the two
//! reports, each file atomically.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use lca_core::io;
use lca_core::run::Results;

use crate::{html, report};

/// Writes the probes' arrays, `results.json` and the two reports; returns
/// the paths of the last three.
pub fn write_outputs(results: &Results, out: &Path) -> Result<[PathBuf; 3]> {
    for (id, arrays) in &results.probe_arrays {
        arrays.write_npz(&out.join("probes").join(format!("{id}.npz")))?;
    }
    let json = serde_json::to_vec_pretty(results).context("serialising the results")?;
    let paths = OUTPUTS.map(|name| out.join(name));
    io::write_atomic(&paths[0], &json)?;
    io::write_atomic(&paths[1], report::markdown(results).as_bytes())?;
    io::write_atomic(&paths[2], html::html(results).as_bytes())?;
    Ok(paths)
}

/// What a complete run writes into its output directory.
pub const OUTPUTS: [&str; 3] = ["results.json", "report.md", "report.html"];
