//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args as ClapArgs, Parser, Subcommand};

/// Find the neurons of a language model that encode linguistic properties.
///
/// Recipes (TOML) wire activation sources, probes, rankers and evaluators
/// together; rankers and probes come from plugins. See docs/recipes.md.
#[derive(Debug, Parser)]
#[command(name = "lca", version, about, max_term_width = 100)]
pub(crate) struct Args {
    #[command(subcommand)]
    pub(crate) command: Command,
    #[command(flatten)]
    pub(crate) plugins: PluginFlags,
}

/// Where plugins come from.
#[derive(Debug, ClapArgs)]
pub(crate) struct PluginFlags {
    /// Also look for plugins in DIR (before LCA_PLUGIN_PATH and the directory of `lca`); repeatable.
    #[arg(long = "plugin-dir", value_name = "DIR", global = true)]
    pub(crate) dirs: Vec<PathBuf>,
    /// Load this plugin library, whatever its name; repeatable.
    #[arg(long = "plugin", value_name = "FILE", global = true)]
    pub(crate) files: Vec<PathBuf>,
}

impl PluginFlags {
    /// Where the flags say plugins come from.
    pub(crate) fn sources(&self) -> lca_cli::plugins::PluginArgs {
        lca_cli::plugins::PluginArgs {
            dirs: self.dirs.clone(),
            files: self.files.clone(),
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a recipe and write results.json, report.md and report.html.
    Run(RunArgs),
    /// Check a recipe without running it; reports every problem.
    Validate {
        /// The recipe file.
        recipe: PathBuf,
    },
    /// List the available components with their origin.
    List {
        /// Only this kind: source, probe, ranker or evaluator.
        kind: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print a component's example recipe snippet and parameter table.
    Example {
        /// Component name, such as `correlation`.
        name: String,
    },
    /// Create, inspect, check, import and export activation stores (docs/store.md).
    Store {
        #[command(subcommand)]
        command: crate::store::StoreCommand,
    },
    /// Regenerate report.md and report.html from a results.json, without rerunning.
    Report {
        /// The results file.
        results: PathBuf,
        /// Where to write the reports (default: next to the results).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, ClapArgs)]
pub(crate) struct RunArgs {
    /// The recipe file.
    pub(crate) recipe: PathBuf,
    /// Output directory (default: the recipe's `[run] out`, else runs/<recipe name>).
    #[arg(long, value_name = "DIR")]
    pub(crate) out: Option<PathBuf>,
    /// Worker threads, 0 to 4096 (default: the recipe's `[run] threads`,
    /// else one per core; more than four per core are not started).
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = parse_threads)]
    pub(crate) threads: Option<usize>,
    /// Override the recipe's seed (0 to 2^64 − 1).
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = parse_seed)]
    pub(crate) seed: Option<u64>,
    /// No progress output.
    #[arg(long, short)]
    pub(crate) quiet: bool,
    /// Stop the run after this many seconds: no further step starts, what
    /// finished is kept in results.partial.json (Ctrl-C does the same).
    #[arg(long, value_name = "SECONDS", allow_hyphen_values = true, value_parser = parse_timeout)]
    pub(crate) timeout: Option<f64>,
    /// Reuse the steps an earlier run into the same output directory
    /// finished (trained probes, rankings, evaluations), when their
    /// component, parameters, inputs, seed and code are unchanged.
    #[arg(long)]
    pub(crate) resume: bool,
}

/// `--threads`: the recipe's range. Negative numbers are read here rather
/// than by clap, whose advice for them (`-- -5`) does not apply.
fn parse_threads(text: &str) -> Result<usize, String> {
    let max = lca_core::context::MAX_THREADS;
    text.trim()
        .parse::<usize>()
        .ok()
        .filter(|&t| t <= max)
        .ok_or_else(|| {
            format!(
                "`{text}` is not a thread count; give a whole number from 0 (one per core) to {max}"
            )
        })
}

/// `--seed`: any unsigned 64-bit integer.
fn parse_seed(text: &str) -> Result<u64, String> {
    text.trim().parse::<u64>().map_err(|_| {
        format!(
            "`{text}` is not a seed; give a whole number from 0 to {}",
            u64::MAX
        )
    })
}

/// `--timeout`: positive and finite, at most a billion seconds.
fn parse_timeout(text: &str) -> Result<f64, String> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|t| t.is_finite() && *t > 0.0 && *t <= 1e9)
        .ok_or_else(|| {
            format!("`{text}` is not a time limit; give a number of seconds above 0 and at most 1e9, such as 600 or 0.5")
        })
}

#[cfg(test)]
mod value_tests {
    use super::*;

    #[test]
    fn numeric_flags_take_their_range_and_name_it_otherwise() {
        assert_eq!(parse_threads("0"), Ok(0));
        assert_eq!(parse_threads("4096"), Ok(4096));
        for bad in ["4097", "1000000", "-1", "x", "1.5", ""] {
            assert!(
                parse_threads(bad)
                    .unwrap_err()
                    .contains("0 (one per core) to 4096"),
                "{bad}"
            );
        }
        assert_eq!(parse_seed("18446744073709551615"), Ok(u64::MAX));
        assert!(parse_seed("-5").unwrap_err().contains("from 0 to"));
        assert!(parse_seed("18446744073709551616").is_err());
        assert_eq!(parse_timeout("0.5"), Ok(0.5));
        for bad in ["-5", "0", "nan", "inf", "1e10", "soon"] {
            let e = parse_timeout(bad).unwrap_err();
            assert!(e.contains("above 0") && !e.contains("--"), "{bad}: {e}");
        }
    }
}
