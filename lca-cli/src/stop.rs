//! Stopping a run early, cleanly: on `--timeout` or Ctrl-C no further step
//! starts, the steps that finished are kept (`results.partial.json`), and the
//! message says what was cut. A step that does not return within a grace
//! period after the signal (a plugin stuck in a long call) ends the process
//! with a message naming it; a second Ctrl-C ends it at once.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const RUNNING: u8 = 0;
const TIMED_OUT: u8 = 1;
const INTERRUPTED: u8 = 2;

/// Exit status after an interrupt, as shells report SIGINT.
const INTERRUPT_STATUS: i32 = 130;

/// Seconds a step may take to return after the stop signal before the
/// process ends without it (`LCA_STOP_GRACE_SECONDS` overrides, for tests).
fn grace() -> Duration {
    let seconds = std::env::var("LCA_STOP_GRACE_SECONDS")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
        .unwrap_or(10.0);
    Duration::from_secs_f64(seconds)
}

/// Shared between the run, the timer and the Ctrl-C handler.
#[derive(Debug, Default)]
pub(crate) struct StopSignal {
    state: AtomicU8,
    finished: AtomicBool,
    limit: Mutex<Option<f64>>,
    current_step: Mutex<String>,
}

impl StopSignal {
    /// Arms the time limit and the Ctrl-C handler.
    pub(crate) fn install(timeout: Option<f64>) -> Arc<StopSignal> {
        let signal = Arc::new(StopSignal::default());
        *signal.limit.lock().expect("not poisoned") = timeout;
        if let Some(seconds) = timeout {
            let timer = signal.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs_f64(seconds));
                timer.trigger(TIMED_OUT, 2);
            });
        }
        let handler = signal.clone();
        // A second handler cannot be installed in one process (tests run the
        // binary, so this only happens once); failing to install one only
        // means Ctrl-C keeps its default behaviour.
        let _ = ctrlc::set_handler(move || {
            if handler.state.load(Ordering::SeqCst) == INTERRUPTED {
                eprintln!("\nerror: interrupted twice; stopping now without writing anything");
                std::process::exit(INTERRUPT_STATUS);
            }
            handler.trigger(INTERRUPTED, INTERRUPT_STATUS);
        });
        signal
    }

    /// Records the signal and ends the process if the current step does not
    /// return in time.
    fn trigger(self: &Arc<Self>, state: u8, status: i32) {
        if self
            .state
            .compare_exchange(RUNNING, state, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return;
        }
        let watcher = self.clone();
        std::thread::spawn(move || {
            let wait = grace();
            std::thread::sleep(wait);
            if !watcher.finished.load(Ordering::SeqCst) {
                let step = watcher.current_step.lock().expect("not poisoned").clone();
                eprintln!(
                    "error: {}, and step `{step}` did not return within {:.0} s after it; stopped without writing results (the steps before it are kept as checkpoints: rerun with --resume to reuse them, with a longer --timeout), or check the component of `{step}`",
                    watcher.reason().unwrap_or_default(),
                    wait.as_secs_f64()
                );
                std::process::exit(status);
            }
        });
    }

    /// Why the run must stop, if it must.
    pub(crate) fn reason(&self) -> Option<String> {
        match self.state.load(Ordering::SeqCst) {
            TIMED_OUT => Some(format!(
                "the time limit of {} s ran out",
                self.limit
                    .lock()
                    .expect("not poisoned")
                    .map(lca_cli::number::number)
                    .unwrap_or_default()
            )),
            INTERRUPTED => Some("the run was interrupted (Ctrl-C)".into()),
            _ => None,
        }
    }

    /// The exit status for the reason the run stopped.
    pub(crate) fn status(&self) -> i32 {
        if self.state.load(Ordering::SeqCst) == INTERRUPTED {
            INTERRUPT_STATUS
        } else {
            2
        }
    }

    /// The step now running, for messages.
    pub(crate) fn entered(&self, step: String) {
        *self.current_step.lock().expect("not poisoned") = step;
    }

    /// The run returned: no need to end the process from outside.
    pub(crate) fn done(&self) {
        self.finished.store(true, Ordering::SeqCst);
    }
}
