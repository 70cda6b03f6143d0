//! Memory checks before large allocations: a size computed from parameters
//! or a file header is checked against what the machine has, so that a
//! typo (`tokens = 10000000000`) is an error that says how much was asked,
//! not an abort inside the allocator.

use crate::error::{Error, Result};
pub use crate::units::human_bytes;

/// Memory the system can still give this process, in bytes, where the
/// platform says (`MemAvailable` on Linux); `None` elsewhere.
pub fn available_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// The size in bytes of `count` values of `each` bytes, or `None` when it
/// does not fit in a `u64`.
pub fn bytes_of(count: u64, each: u64) -> Option<u64> {
    count.checked_mul(each)
}

/// Checks that `bytes` (`None`: more than a `u64` counts) fit in the memory
/// available now, before `what` is allocated.
///
/// # Errors
/// [`Error::InvalidInput`] naming `what`, the size asked and the size
/// available, with `fix` as the way out.
pub fn ensure_fits(what: &str, bytes: Option<u64>, fix: &str) -> Result<()> {
    let Some(bytes) = bytes else {
        return Err(Error::input(format!(
            "{what} would need more than {} of memory, which no machine has; {fix}",
            human_bytes(u64::MAX)
        )));
    };
    // Addresses on every supported target are 64-bit or narrower.
    if usize::try_from(bytes).is_err() || isize::try_from(bytes).is_err() {
        return Err(Error::input(format!(
            "{what} would need {} of memory, more than this platform can address; {fix}",
            human_bytes(bytes)
        )));
    }
    match available_bytes() {
        Some(available) if bytes > available => Err(Error::input(format!(
            "{what} would need {} of memory, but only {} is available; {fix}",
            human_bytes(bytes),
            human_bytes(available)
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
        assert_eq!(human_bytes(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn what_cannot_fit_is_an_error_naming_the_need_and_the_fix() {
        assert!(ensure_fits("a test buffer", Some(1024), "ask for less").is_ok());
        let err = ensure_fits("the matrix", bytes_of(u64::MAX / 2, 4), "lower `tokens`")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("the matrix would need more than") && err.contains("lower `tokens`"),
            "{err}"
        );
        if let Some(available) = available_bytes() {
            let err = ensure_fits(
                "the matrix",
                Some(available.saturating_mul(2).min(i64::MAX as u64)),
                "lower `tokens`",
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains("is available") && err.contains("GiB"), "{err}");
        }
    }
}
