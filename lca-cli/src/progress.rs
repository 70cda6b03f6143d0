//! Progress output while a recipe runs.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use lca_core::recipe::Step;
use lca_core::run::Observer;

/// Shows a bar on a terminal, and one line per finished step otherwise.
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    quiet: bool,
}

impl Progress {
    pub(crate) fn new(total: usize, quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(total as u64);
            bar.set_style(
                ProgressStyle::with_template("{spinner:.green} [{pos}/{len}] {wide_msg} {elapsed}")
                    .expect("valid template")
                    .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ "),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Progress { bar, quiet }
    }

    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    fn line(&self, text: String) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None if !self.quiet => eprintln!("{text}"),
            None => {}
        }
    }
}

impl Observer for Progress {
    fn started(&mut self, step: &Step, _index: usize, _total: usize) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{} ({})", step.key(), step.type_name));
        }
    }

    fn finished(&mut self, step: &Step, seconds: f64) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
        self.line(format!(
            "  done  {:<28} {:<20} {:>8.2}s",
            step.key(),
            step.type_name,
            seconds
        ));
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
