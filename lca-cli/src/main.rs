//! `lca`: neuron-level interpretation of language models, from TOML recipes.

#![forbid(unsafe_code)]

mod cli;
mod commands;
mod progress;
mod stop;
mod store;

use std::process::ExitCode;

use clap::Parser;

/// A command-line error as one paragraph: clap's message and its tip, with
/// the usage block and the pointer to `--help` folded into one sentence.
fn command_line_error(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let kept: Vec<String> = text
        .split("\n\n")
        .map(str::trim)
        .filter(|p| {
            !p.is_empty() && !p.starts_with("Usage:") && !p.starts_with("For more information")
        })
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    format!(
        "{}; `lca help` lists the commands and their options",
        kept.join(". ")
    )
}

fn main() -> ExitCode {
    let args = match cli::Args::try_parse() {
        Ok(args) => args,
        // Help and version (exit 0), and the help shown when nothing was
        // asked (exit 2), are clap's own pages.
        Err(e)
            if !e.use_stderr()
                || e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand =>
        {
            e.exit()
        }
        Err(e) => {
            eprintln!("{}", command_line_error(&e));
            return ExitCode::from(2);
        }
    };
    match commands::dispatch(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", lca_cli::paragraph(&e));
            ExitCode::from(2)
        }
    }
}
