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
    pub(crate) plugins: PluginArgs,
}

/// Where plugins come from.
#[derive(Debug, ClapArgs)]
pub(crate) struct PluginArgs {
    /// Also look for plugins in DIR (before LCA_PLUGIN_PATH and the directory of `lca`); repeatable.
    #[arg(long = "plugin-dir", value_name = "DIR", global = true)]
    pub(crate) dirs: Vec<PathBuf>,
    /// Load this plugin library, whatever its name; repeatable.
    #[arg(long = "plugin", value_name = "FILE", global = true)]
    pub(crate) files: Vec<PathBuf>,
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
    /// Worker threads (default: the recipe's `[run] threads`, else one per core).
    #[arg(long, value_name = "N")]
    pub(crate) threads: Option<usize>,
    /// Override the recipe's seed.
    #[arg(long, value_name = "N")]
    pub(crate) seed: Option<u64>,
    /// No progress output.
    #[arg(long, short)]
    pub(crate) quiet: bool,
    /// Stop the run after this many seconds: no further step starts, what
    /// finished is kept in results.partial.json (Ctrl-C does the same).
    #[arg(long, value_name = "SECONDS")]
    pub(crate) timeout: Option<f64>,
    /// Reuse the steps an earlier run into the same output directory
    /// finished (trained probes, rankings, evaluations), when their
    /// component, parameters, inputs, seed and code are unchanged.
    #[arg(long)]
    pub(crate) resume: bool,
}
