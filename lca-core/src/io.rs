//! Atomic file output.

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Writes `bytes` to `path` atomically: into a temporary file in the same
/// folder, flushed to disk, then renamed over the target. A reader sees the
/// old file or the new one, never a partial one, even if the process dies
/// half-way.
///
/// # Errors
/// When the folder cannot be written.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_parts(path, &[bytes])
}

/// Writes the concatenation of `parts` to `path` atomically, as
/// [`write_atomic`] does, without first joining them in memory.
///
/// # Errors
/// When the folder cannot be written.
pub fn write_atomic_parts(path: &Path, parts: &[&[u8]]) -> Result<()> {
    write_atomic_with(path, |mut file| {
        for part in parts {
            file.write_all(part)?;
        }
        Ok(file)
    })
    .map_err(|e| match e {
        // The size is known here; say it.
        Error::DiskFull { action, path, .. } => Error::DiskFull {
            action,
            path,
            needed: Some(parts.iter().map(|p| p.len() as u64).sum()),
        },
        other => other,
    })
}

/// Writes `path` atomically through `write`, which creates the file at the
/// temporary path it is given: for writers that open files themselves (a
/// C library such as HDF5). The file is renamed over `path` when `write`
/// succeeds, and removed otherwise.
///
/// # Errors
/// What `write` returns, or an error naming `path` when the rename fails.
pub fn write_atomic_at(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let temp = temporary_path(path);
    let result = write(&temp)
        .and_then(|()| fs::rename(&temp, path).map_err(|e| Error::io("write", path, e)));
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// A name beside `path`, hidden and unique to this process.
fn temporary_path(path: &Path) -> std::path::PathBuf {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("output");
    dir.join(format!(".{name}.tmp-{}", std::process::id()))
}

/// Writes `path` atomically through `write`, which fills the temporary file
/// it is given and hands it back: flushed to disk, then renamed over the
/// target, or removed if anything failed. For writers that produce their
/// own format (an `.npz` archive) rather than a byte buffer.
///
/// # Errors
/// When the folder cannot be written or `write` fails.
fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(fs::File) -> std::result::Result<fs::File, Box<dyn std::error::Error>>,
) -> Result<()> {
    let temp = temporary_path(path);
    let result = (|| -> std::result::Result<(), Box<dyn std::error::Error>> {
        let file = write(fs::File::create(&temp)?)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temp, path)?;
        Ok(())
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&temp);
        let source = match e.downcast::<std::io::Error>() {
            Ok(io) => *io,
            Err(other) => std::io::Error::other(other.to_string()),
        };
        Error::io("write", path, source)
    })
}

/// Lower-case hexadecimal digits of `bytes` (digests in file names and
/// fingerprints).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads a text file that must be UTF-8. An invalid byte is reported with
/// its line, and `fix` says what to do about it.
///
/// # Errors
/// When the file cannot be read or is not UTF-8.
pub fn read_utf8(path: &Path, action: &'static str, fix: &str) -> Result<String> {
    let bytes = fs::read(path).map_err(|e| Error::io(action, path, e))?;
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
        Error::format(path, Some(line), format!("is not valid UTF-8; {fix}"))
    })
}

/// Creates `dir` if needed and checks that files can be created in it.
///
/// # Errors
/// With a message that names the folder and suggests another one.
pub fn ensure_writable_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| Error::io("create output directory", dir, e))?;
    let probe = dir.join(format!(".lca-write-check-{}", std::process::id()));
    match fs::File::create(&probe) {
        Ok(_) => {
            let _ = fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(Error::io("write into output directory", dir, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_old_content_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.json");
        write_atomic(&path, b"old").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn invalid_utf8_is_located() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.txt");
        fs::write(&path, b"ok\nok\nbad \xff\n").unwrap();
        let err = read_utf8(&path, "read", "save it as UTF-8")
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with("x.txt:3: is not valid UTF-8; save it as UTF-8"),
            "{err}"
        );
    }

    #[test]
    fn unwritable_target_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("x.json");
        let err = write_atomic(&path, b"x").unwrap_err().to_string();
        assert!(err.contains("x.json"), "{err}");
    }
}
