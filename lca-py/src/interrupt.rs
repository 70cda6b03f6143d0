//! Running long work off the Python thread, so that Ctrl-C in a notebook
//! stops it: the work runs on a worker thread while this thread, without
//! the interpreter lock, looks for pending signals a few times a second. On
//! an interrupt the run is asked to stop (steps and solvers check between
//! units of work), and once the worker has returned the caller gets
//! `KeyboardInterrupt`, as for any Python code.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use lca_core::context::Progress;
use pyo3::prelude::*;

use crate::errors::LcaError;

/// How often the waiting thread looks for signals.
const POLL: Duration = Duration::from_millis(25);

/// The progress sink of work started from Python: no bars, the warnings
/// kept for Python's `warnings` module, and the stop flag.
#[derive(Default)]
pub(crate) struct Sink {
    stop: AtomicBool,
    warnings: Mutex<Vec<String>>,
}

impl Sink {
    pub(crate) fn new() -> Arc<Sink> {
        Arc::new(Sink::default())
    }

    /// The warnings given so far, in order, emptied.
    pub(crate) fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut *self.warnings.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub(crate) fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

impl Progress for Sink {
    fn start(&self, _label: &str, _total: u64, _unit: &str) {}
    fn advance(&self, _delta: u64) {}
    fn finish(&self) {}
    fn warn(&self, message: &str) {
        self.warnings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(message.to_string());
    }
    fn cancelled(&self) -> bool {
        self.stop_requested()
    }
}

/// Runs `work` on a worker thread and waits for it, turning Ctrl-C into a
/// stop request and then into Python's `KeyboardInterrupt`. A panic in the
/// work becomes `LcaError` rather than taking the interpreter down.
pub(crate) fn run_interruptible<T: Send>(
    py: Python<'_>,
    sink: &Sink,
    work: impl FnOnce() -> T + Send,
) -> PyResult<T> {
    std::thread::scope(|scope| {
        // The worker says when it is done (or, by dropping the sender, that
        // it panicked), so a short call returns at once rather than at the
        // next poll: a probe trained by passes makes hundreds of calls.
        let (done, mut finished) = mpsc::channel::<()>();
        let worker = scope.spawn(move || {
            let out = work();
            let _ = done.send(());
            out
        });
        let mut interrupt = None;
        loop {
            // The receiver is not shared with the detached closure but
            // moved in and back out: it may be sent, not shared.
            let (waited, receiver) = py.detach(move || (finished.recv_timeout(POLL), finished));
            finished = receiver;
            if !matches!(waited, Err(mpsc::RecvTimeoutError::Timeout)) {
                break;
            }
            if interrupt.is_none()
                && let Err(e) = py.check_signals()
            {
                sink.stop.store(true, Ordering::SeqCst);
                interrupt = Some(e);
            }
        }
        let outcome = worker.join();
        if let Some(e) = interrupt {
            return Err(e);
        }
        outcome.map_err(|payload| {
            LcaError::new_err(format!(
                "internal error: {}; please report it with the call that caused it",
                lca_core::run::panic_message(payload.as_ref())
            ))
        })
    })
}

/// Hands the warnings collected during a call to Python's `warnings`.
pub(crate) fn emit_warnings(py: Python<'_>, sink: &Sink) -> PyResult<()> {
    let warnings = py.import("warnings")?;
    for message in sink.take_warnings() {
        warnings.call_method1("warn", (message,))?;
    }
    Ok(())
}
