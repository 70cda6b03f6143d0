//! Panic containment at the boundary: every call from one side of the plugin
//! ABI into the other runs inside [`guard`], which turns a panic into an
//! error value. A panic must never reach an `extern "C"` frame, where it
//! would abort the host.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Mutex, Once};

use abi_stable::std_types::{RErr, ROk, RResult};

use crate::abi::FfiError;
use crate::convert::{error_to_ffi, panic_to_ffi};

/// Where the last panic happened, recorded by the plugin's panic hook: per
/// thread, so that panics on parallel calls do not take each other's
/// locations, and globally for a panic on a worker thread that reaches the
/// caller through a thread pool.
static LAST_PANIC_LOCATION: Mutex<Option<String>> = Mutex::new(None);

thread_local! {
    static THREAD_PANIC_LOCATION: std::cell::RefCell<Option<String>> =
        const { std::cell::RefCell::new(None) };
}

/// Replaces this library's panic hook with one that records the location
/// instead of printing: the host reports the panic as an error, with that
/// location. Each plugin library has its own copy of the standard library and
/// so its own hook; the host's hook is untouched.
pub(crate) fn install_quiet_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            if let Some(location) = info.location() {
                let text = format!(
                    "{}:{}:{}",
                    location.file(),
                    location.line(),
                    location.column()
                );
                THREAD_PANIC_LOCATION.with(|l| *l.borrow_mut() = Some(text.clone()));
                *LAST_PANIC_LOCATION
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(text);
            }
        }));
    });
}

/// Runs `work`, turning a panic into an [`FfiError`].
pub(crate) fn guard<T>(work: impl FnOnce() -> lca_core::Result<T>) -> RResult<T, FfiError> {
    match catch_unwind(AssertUnwindSafe(work)) {
        Ok(Ok(value)) => ROk(value),
        Ok(Err(e)) => RErr(error_to_ffi(&e)),
        Err(payload) => {
            let mut message = lca_core::run::panic_message(payload.as_ref());
            let here = THREAD_PANIC_LOCATION.with(|l| l.borrow_mut().take());
            let location = here.or_else(|| {
                LAST_PANIC_LOCATION
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take()
            });
            if let Some(location) = location {
                message.push_str(&format!(" (at {location})"));
            }
            RErr(panic_to_ffi(message))
        }
    }
}
