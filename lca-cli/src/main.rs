//! `lca`: neuron-level interpretation of language models, from TOML recipes.

#![forbid(unsafe_code)]

mod cli;
mod commands;
mod findings;
mod html;
mod number;
mod plugins;
mod progress;
mod report;
mod stop;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    match commands::dispatch(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", paragraph(&e));
            ExitCode::from(2)
        }
    }
}

/// One readable paragraph: the error and its causes, without repeats.
pub(crate) fn paragraph(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if parts.iter().any(|p| p.contains(&text)) {
            continue;
        }
        parts.push(text);
    }
    parts.join(": ")
}
