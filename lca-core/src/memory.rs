//! Memory checks before large allocations: a size computed from parameters
//! or a file header is checked against what the machine has, so that a
//! typo (`tokens = 10000000000`) is an error that says how much was asked,
//! not an abort inside the allocator.

use crate::error::{Error, Result};
pub use crate::units::human_bytes;

/// Memory the system can still give this process, in bytes, where the
/// platform says; `None` elsewhere. On Linux: `MemAvailable`, or less when
/// the process runs under a memory limit (a cgroup: a container, a batch
/// job's allocation, `systemd-run -p MemoryMax=`) that leaves less above
/// the memory it holds already.
pub fn available_bytes() -> Option<u64> {
    let system = meminfo_bytes("MemAvailable:");
    let under_limit = cgroup_limit_bytes().map(|limit| {
        let held = status_bytes("RssAnon:").unwrap_or(0);
        limit.saturating_sub(held)
    });
    match (system, under_limit) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The most memory this process may use, in bytes: the machine's memory,
/// or the memory limit of its cgroup when lower; `None` where the platform
/// does not say. Unlike [`available_bytes`], this does not change while the
/// process runs, so what is sized from it is the same from run to run in
/// one environment.
pub fn limit_bytes() -> Option<u64> {
    let total = meminfo_bytes("MemTotal:");
    match (total, cgroup_limit_bytes()) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A `kB` line of `/proc/meminfo`, in bytes.
fn meminfo_bytes(key: &str) -> Option<u64> {
    kib_line(&std::fs::read_to_string("/proc/meminfo").ok()?, key)
}

/// A `kB` line of `/proc/self/status`, in bytes.
fn status_bytes(key: &str) -> Option<u64> {
    kib_line(&std::fs::read_to_string("/proc/self/status").ok()?, key)
}

fn kib_line(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// The lowest memory limit of this process's cgroup and its ancestors
/// (cgroup v2 `memory.max`, or v1 `memory.limit_in_bytes`), in bytes;
/// `None` when there is none.
pub fn cgroup_limit_bytes() -> Option<u64> {
    let membership = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    cgroup_limit_in(&membership, std::path::Path::new("/sys/fs/cgroup"))
}

/// [`cgroup_limit_bytes`] for the membership lines of `/proc/self/cgroup`,
/// with the cgroup file systems under `root`.
fn cgroup_limit_in(membership: &str, root: &std::path::Path) -> Option<u64> {
    // v1 ("4:memory:/path", the controller possibly listed with others),
    // or else v2 ("0::/path").
    let v1 = membership.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        controllers
            .split(',')
            .any(|c| c == "memory")
            .then(|| (root.join("memory"), path, "memory.limit_in_bytes"))
    });
    let v2 = || {
        membership
            .lines()
            .find_map(|line| line.strip_prefix("0::"))
            .map(|path| (root.to_path_buf(), path, "memory.max"))
    };
    let (mount, path, file) = v1.or_else(v2)?;
    let mut lowest: Option<u64> = None;
    let mut dir = mount.join(path.trim_start_matches('/'));
    loop {
        let limit = std::fs::read_to_string(dir.join(file))
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
            // v1 writes "no limit" as a number near 2^63; v2 as "max".
            .filter(|&bytes| bytes < 1 << 62);
        if let Some(bytes) = limit {
            lowest = Some(lowest.map_or(bytes, |l| l.min(bytes)));
        }
        if dir == mount || !dir.pop() || !dir.starts_with(&mount) {
            break;
        }
    }
    lowest
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
    fn a_cgroup_limit_is_the_lowest_along_the_path_in_either_version() {
        let root = tempfile::tempdir().unwrap();
        let write = |dir: &str, file: &str, text: &str| {
            let dir = root.path().join(dir);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(file), text).unwrap();
        };
        // v1: the job's group under a parent with a higher limit.
        write("memory", "memory.limit_in_bytes", "9223372036854771712\n");
        write("memory/batch", "memory.limit_in_bytes", "2147483648\n");
        write("memory/batch/job", "memory.limit_in_bytes", "536870912\n");
        let v1 = "9:name=systemd:/\n4:cpu,memory:/batch/job\n0::/\n";
        assert_eq!(cgroup_limit_in(v1, root.path()), Some(512 << 20));
        // A parent's lower limit binds the child.
        write("memory/batch", "memory.limit_in_bytes", "268435456\n");
        assert_eq!(cgroup_limit_in(v1, root.path()), Some(256 << 20));
        // v2: "max" is no limit.
        write("user.slice", "memory.max", "max\n");
        let v2 = "0::/user.slice\n";
        assert_eq!(cgroup_limit_in(v2, root.path()), None);
        write("user.slice/run", "memory.max", "1073741824\n");
        assert_eq!(
            cgroup_limit_in("0::/user.slice/run\n", root.path()),
            Some(1 << 30)
        );
        // No memory controller at all.
        assert_eq!(cgroup_limit_in("1:cpu:/\n", root.path()), None);
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
