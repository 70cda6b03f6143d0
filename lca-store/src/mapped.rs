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

/// One part of a side-by-side mapping: `len` bytes of `path` from `offset`.
pub(crate) struct Part<'p> {
    pub(crate) path: &'p Path,
    pub(crate) offset: u64,
    pub(crate) len: usize,
}

/// Several files' byte ranges mapped one after another into one contiguous
/// read-only region, so that the values of a store's shards read as one
/// slice without being copied. Unmapped when dropped.
#[derive(Debug)]
pub(crate) struct SideBySide {
    base: *mut libc::c_void,
    reserved: usize,
    len: usize,
}

// SAFETY: the region is read-only for its whole life and owned by this
// value alone, so sharing or sending it between threads is sound.
unsafe impl Send for SideBySide {}
// SAFETY: as above.
unsafe impl Sync for SideBySide {}

impl SideBySide {
    /// The mapped bytes, parts in order.
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `base` points to `reserved >= len` mapped, readable bytes,
        // which live as long as `self` (see `map_side_by_side`).
        unsafe { std::slice::from_raw_parts(self.base.cast::<u8>(), self.len) }
    }
}

impl Drop for SideBySide {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the region reserved in `map_side_by_side`,
        // which nothing borrows any more.
        unsafe {
            libc::munmap(self.base, self.reserved);
        }
    }
}

/// Maps `parts` side by side, or `None` when they cannot be: the kernel maps
/// whole pages, so every part must start at a page boundary of its file and
/// every part but the last must be a whole number of pages long.
///
/// # Errors
/// When a file cannot be opened or the kernel refuses a mapping.
pub(crate) fn map_side_by_side(parts: &[Part<'_>]) -> Result<Option<SideBySide>> {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let Ok(page) = usize::try_from(page) else {
        return Ok(None);
    };
    let aligned = |n: u64| page != 0 && n.is_multiple_of(page as u64);
    let fits = parts.iter().enumerate().all(|(i, p)| {
        aligned(p.offset) && (i + 1 == parts.len() || aligned(p.len as u64)) && p.len > 0
    });
    let len: usize = parts.iter().map(|p| p.len).sum();
    if !fits || len == 0 {
        return Ok(None);
    }
    let files = parts
        .iter()
        .map(|p| File::open(p.path).map_err(|e| Error::io("open", p.path, e)))
        .collect::<Result<Vec<File>>>()?;
    let reserved = len.div_ceil(page) * page;
    // SAFETY: reserves fresh address space that nothing else uses; it is
    // inaccessible until the files are mapped over it.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            reserved,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        let e = std::io::Error::last_os_error();
        return Err(Error::io("reserve address space for", parts[0].path, e));
    }
    let region = SideBySide {
        base,
        reserved,
        len,
    };
    let mut at = 0usize;
    for (part, file) in parts.iter().zip(&files) {
        use std::os::fd::AsRawFd as _;
        let offset = libc::off_t::try_from(part.offset)
            .map_err(|_| Error::input(format!("{} is too large to map", part.path.display())))?;
        // SAFETY: MAP_FIXED replaces only pages of the region reserved above,
        // which this function owns; `at + part.len <= reserved`. The soundness
        // of reading a mapped file is argued in `map`: shards are never
        // rewritten in place.
        let mapped = unsafe {
            libc::mmap(
                base.cast::<u8>().add(at).cast(),
                part.len,
                libc::PROT_READ,
                libc::MAP_SHARED | libc::MAP_FIXED,
                file.as_raw_fd(),
                offset,
            )
        };
        if mapped == libc::MAP_FAILED {
            let e = std::io::Error::last_os_error();
            return Err(Error::io("map", part.path, e));
        }
        at += part.len;
    }
    Ok(Some(region))
}
