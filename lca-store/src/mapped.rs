//! Shard files mapped into memory rather than read: the one `unsafe` call of
//! the store.
//!
//! A store may be larger than memory. Mapped pages belong to the page cache,
//! which the kernel drops and refills as rows are read, so reading a store
//! never needs memory for all of it.

use std::fs::File;
use std::path::Path;

use lca_core::error::{Error, Result};
use memmap2::Mmap;

/// Maps `path` read-only.
///
/// # Errors
/// When the file cannot be opened or mapped.
pub(crate) fn map(path: &Path) -> Result<Mmap> {
    let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
    // SAFETY: a mapping is sound while the file is not changed under it.
    // Shards are written once, under a temporary name, and renamed into
    // place; lca never rewrites one in place, so a reader sees a whole file.
    // A file truncated by another program would fault on access rather than
    // be read out of bounds, and its size is checked against the manifest
    // before mapping.
    unsafe { Mmap::map(&file) }.map_err(|e| Error::io("map", path, e))
}
