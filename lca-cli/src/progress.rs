//! Progress output while a recipe runs: one bar for the steps and, below it,
//! one for long work inside a step (such as extracting activations), which
//! components report through the run context.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use lca_core::recipe::Step;
use lca_core::run::Observer;

/// Shows bars on a terminal, and plain lines otherwise.
pub(crate) struct Progress {
    steps: Option<ProgressBar>,
    tasks: Arc<TaskProgress>,
    quiet: bool,
    stop: Option<Arc<crate::stop::StopSignal>>,
}

impl Progress {
    pub(crate) fn new(total: usize, quiet: bool) -> Self {
        let live = !quiet && std::io::stderr().is_terminal();
        let multi = live.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        let steps = multi.as_ref().map(|multi| {
            let bar = multi.add(ProgressBar::new(total as u64));
            bar.set_style(
                ProgressStyle::with_template("{spinner:.green} [{pos}/{len}] {wide_msg} {elapsed}")
                    .expect("valid template")
                    .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ "),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Progress {
            steps,
            tasks: Arc::new(TaskProgress {
                multi,
                quiet,
                current: Mutex::new(None),
                stop: OnceLock::new(),
            }),
            quiet,
            stop: None,
        }
    }

    /// Stops the run before the next step once `stop` says so.
    pub(crate) fn with_stop(mut self, stop: Arc<crate::stop::StopSignal>) -> Self {
        let _ = self.tasks.stop.set(stop.clone());
        self.stop = Some(stop);
        self
    }

    /// The sink that components report long work and warnings to.
    pub(crate) fn task_sink(&self) -> Arc<dyn lca_core::Progress> {
        self.tasks.clone()
    }

    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.steps {
            bar.finish_and_clear();
        }
    }

    fn line(&self, text: String) {
        match &self.steps {
            Some(bar) => bar.println(text),
            None if !self.quiet => eprintln!("{text}"),
            None => {}
        }
    }
}

impl Observer for Progress {
    fn should_stop(&mut self) -> Option<String> {
        self.stop.as_ref().and_then(|s| s.reason())
    }

    fn started(&mut self, step: &Step, _index: usize, _total: usize) {
        if let Some(stop) = &self.stop {
            stop.entered(step.key());
        }
        if let Some(bar) = &self.steps {
            bar.set_message(format!("{} ({})", step.key(), step.type_name));
        }
    }

    fn finished(&mut self, step: &Step, seconds: f64) {
        self.done_line(step, seconds, "done");
    }

    fn reused(&mut self, step: &Step, seconds: f64) {
        self.done_line(step, seconds, "reused");
    }
}

impl Progress {
    fn done_line(&mut self, step: &Step, seconds: f64, verb: &str) {
        if let Some(bar) = &self.steps {
            bar.inc(1);
        }
        self.line(format!(
            "  {verb:<8}{:<28} {:<20} {:>8.2}s",
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

/// A task inside a step.
struct Task {
    label: String,
    unit: String,
    total: u64,
    done: u64,
    started: Instant,
    bar: Option<ProgressBar>,
}

/// Long work inside a step: a bar with a rate on a terminal, a line at the
/// start and end otherwise. Warnings are always shown.
struct TaskProgress {
    multi: Option<MultiProgress>,
    quiet: bool,
    current: Mutex<Option<Task>>,
    /// Tells components that the run must stop.
    stop: OnceLock<Arc<crate::stop::StopSignal>>,
}

impl TaskProgress {
    fn current(&self) -> std::sync::MutexGuard<'_, Option<Task>> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn per_second(count: u64, seconds: f64) -> String {
    if seconds > 0.0 {
        format!("{:.0}", count as f64 / seconds)
    } else {
        "-".into()
    }
}

impl lca_core::Progress for TaskProgress {
    fn start(&self, label: &str, total: u64, unit: &str) {
        let bar = self.multi.as_ref().map(|multi| {
            let bar = multi.add(ProgressBar::new(total));
            let template = format!(
                "  {{msg}} [{{bar:30.cyan/blue}}] {{human_pos}}/{{human_len}} {unit} \
                 ({{per_sec}}, eta {{eta}})"
            );
            bar.set_style(
                ProgressStyle::with_template(&template)
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar.set_message(label.to_string());
            bar
        });
        if bar.is_none() && !self.quiet {
            eprintln!("  {label}: {total} {unit}");
        }
        *self.current() = Some(Task {
            label: label.into(),
            unit: unit.into(),
            total,
            done: 0,
            started: Instant::now(),
            bar,
        });
    }

    fn advance(&self, delta: u64) {
        if let Some(task) = self.current().as_mut() {
            task.done += delta;
            if let Some(bar) = &task.bar {
                bar.inc(delta);
            }
        }
    }

    fn finish(&self) {
        if let Some(task) = self.current().take() {
            let seconds = task.started.elapsed().as_secs_f64();
            let summary = format!(
                "  {}: {} of {} {} in {seconds:.1}s ({} {}/s)",
                task.label,
                task.done,
                task.total,
                task.unit,
                per_second(task.done, seconds),
                task.unit
            );
            match &task.bar {
                Some(bar) => {
                    bar.finish_and_clear();
                    if let Some(multi) = &self.multi {
                        multi.remove(bar);
                        let _ = multi.println(summary);
                    }
                }
                None if !self.quiet => eprintln!("{summary}"),
                None => {}
            }
        }
    }

    fn info(&self, message: &str) {
        if self.quiet {
            return;
        }
        let text = format!("  {message}");
        match &self.multi {
            Some(multi) => {
                let _ = multi.println(text);
            }
            None => eprintln!("{text}"),
        }
    }

    fn cancelled(&self) -> bool {
        self.stop.get().is_some_and(|s| s.reason().is_some())
    }

    fn warn(&self, message: &str) {
        let text = format!("warning: {message}");
        match &self.multi {
            Some(multi) => {
                let _ = multi.println(text);
            }
            None => eprintln!("{text}"),
        }
    }
}
