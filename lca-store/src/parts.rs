//! A store written in parts, by separate processes or machines, and joined.
//!
//! Each part is a run of consecutive shards of the whole store, written
//! under the names, with the rows and bytes, that one writer of the whole
//! store gives them (see [`crate::StoreSink::in_part`]). The parts share one
//! folder (a shared filesystem, for parts on several machines). A finished
//! part leaves `part-K-of-N.json`, its record: the manifest the whole store
//! will have, with the part's shards only. [`join_parts`] checks that the
//! `N` records agree and tile the store, then writes the one manifest. The
//! joined store is the store one writer would have written, byte for byte.

use std::ops::Range;
use std::path::{Path, PathBuf};

use lca_core::error::{Error, Result};
use lca_core::io;
use serde::{Deserialize, Serialize};

use crate::manifest::{FORMAT, MANIFEST_FILE, Manifest, is_part_record, shard_file};

/// The shards of part `k` of `n` of `shards` shards: consecutive runs
/// whose sizes differ by at most one, the first `shards mod n` parts
/// holding one more. A part may hold none.
pub fn part_shards(k: usize, n: usize, shards: usize) -> Range<usize> {
    let (base, extra) = (shards / n, shards % n);
    let start = k * base + k.min(extra);
    start..start + base + usize::from(k < extra)
}

/// `part-K-of-N.json`: what one finished part holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartRecord {
    /// Always [`FORMAT`].
    pub format: String,
    /// K, from 0.
    pub index: usize,
    /// N.
    pub count: usize,
    /// The part's first row in the whole store.
    pub first_row: usize,
    /// The number of the part's first shard in the whole store.
    pub first_shard: usize,
    /// Rows of every shard but the store's last.
    pub shard_rows: usize,
    /// What the part was written from (a recipe's source step, its
    /// parameters and seed): every part of a store has the same.
    pub fingerprint: String,
    /// The whole store's manifest, listing this part's shards only.
    pub manifest: Manifest,
}

/// The record's file name.
pub fn part_file(index: usize, count: usize) -> String {
    format!("part-{index}-of-{count}.json")
}

/// The progress record of an unfinished part.
pub(crate) fn progress_file(index: usize, count: usize) -> String {
    format!("progress-{index}-of-{count}.json")
}

pub(crate) fn write_record(dir: &Path, record: &PartRecord) -> Result<()> {
    let json = serde_json::to_vec_pretty(record)
        .map_err(|e| Error::input(format!("the record of a store part: {e}")))?;
    io::write_atomic(&dir.join(part_file(record.index, record.count)), &json)
}

/// The part records in `dir`, by file name.
fn records(dir: &Path) -> Result<Vec<(PathBuf, PartRecord)>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io("list the folder", dir, e))?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list the folder", dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_part_record(&name) {
            continue;
        }
        let path = entry.path();
        let text = io::read_utf8(&path, "read a store part's record", "write the part again")?;
        let record: PartRecord = serde_json::from_str(&text).map_err(|e| {
            Error::format(
                &path,
                Some(e.line()),
                format!("not the record of a store part: {e}; write that part again"),
            )
        })?;
        if record.format != FORMAT {
            return Err(Error::format(
                &path,
                None,
                format!(
                    "is a part of format `{}`, and this lca joins `{FORMAT}`; write the \
                     parts again with this lca",
                    record.format
                ),
            ));
        }
        found.push((path, record));
    }
    found.sort_by_key(|(_, r)| (r.count, r.index));
    Ok(found)
}

/// Joins the parts written into `dir` into one store: checks that the
/// records of all `N` parts are there, come from the same source, agree on
/// everything but their shards, and tile the rows; that every shard file
/// has its recorded size; then writes the manifest and removes the
/// records. Run `verify` for the hashes.
///
/// # Errors
/// When `dir` holds a store already, a part is missing or disagrees with
/// the others, or a shard file is missing or of another size; the error
/// names the part and how to write it again. Nothing is written then.
pub fn join_parts(dir: &Path) -> Result<Manifest> {
    if dir.join(MANIFEST_FILE).exists() {
        return Err(Error::input(format!(
            "{} already holds a store (it has a {MANIFEST_FILE}); its parts were joined \
             already, or it was written whole. Nothing was changed",
            dir.display()
        )));
    }
    let found = records(dir)?;
    let Some((_, first)) = found.first() else {
        return Err(Error::input(format!(
            "{} holds no part of a store (no part-K-of-N.json); write the parts with `lca \
             store create … --part K/N --out {}` first",
            dir.display(),
            dir.display()
        )));
    };
    let count = first.count;
    if let Some((path, other)) = found.iter().find(|(_, r)| r.count != count) {
        return Err(Error::format(
            path,
            None,
            format!(
                "is part of a store in {} parts, and {} is part of one in {count}; a folder \
                 holds the parts of one store: remove the parts of the other",
                other.count,
                part_file(first.index, count)
            ),
        ));
    }
    let missing: Vec<String> = (0..count)
        .filter(|k| !found.iter().any(|(_, r)| r.index == *k))
        .map(|k| format!("{k}/{count}"))
        .collect();
    if !missing.is_empty() {
        return Err(Error::input(format!(
            "{}: part(s) {} of the store are not finished (no record); run `lca store create \
             … --part K/N` for each of them, then join again. Nothing was written",
            dir.display(),
            missing.join(", ")
        )));
    }
    let mut shards = Vec::new();
    let mut row = 0;
    for (path, record) in &found {
        let mismatch = |what: &str| {
            Error::format(
                path,
                None,
                format!(
                    "disagrees with {} on {what}: the parts were written from different \
                     sources or settings. Write every part with the same recipe, seed and \
                     store options",
                    part_file(first.index, count)
                ),
            )
        };
        if record.fingerprint != first.fingerprint {
            return Err(mismatch("the source it was written from"));
        }
        if record.shard_rows != first.shard_rows {
            return Err(mismatch("the rows per shard"));
        }
        let mut bare = record.manifest.clone();
        bare.shards = first.manifest.shards.clone();
        if bare != first.manifest {
            return Err(mismatch("the store's type, neurons, rows or metadata"));
        }
        if record.first_shard != shards.len() || record.first_row != row {
            return Err(Error::format(
                path,
                None,
                format!(
                    "starts at shard {} (row {}), where the parts before it end at shard {} \
                     (row {row}); write this part again",
                    record.first_shard,
                    record.first_row,
                    shards.len()
                ),
            ));
        }
        for shard in &record.manifest.shards {
            let number = shards.len();
            let last = row + shard.rows == first.manifest.rows;
            let sized = shard.rows == record.shard_rows || (last && shard.rows < record.shard_rows);
            if shard.file != shard_file(number) || !sized {
                return Err(Error::format(
                    path,
                    None,
                    format!(
                        "lists {} of {} rows as shard {number}; write this part again",
                        shard.file, shard.rows
                    ),
                ));
            }
            let on_disk = std::fs::metadata(dir.join(&shard.file)).map(|m| m.len());
            if on_disk.as_ref().ok() != Some(&shard.bytes) {
                return Err(Error::format(
                    dir.join(&shard.file),
                    None,
                    format!(
                        "is {} where part {}/{count} recorded {} bytes; write that part again",
                        match on_disk {
                            Ok(bytes) => format!("{bytes} bytes"),
                            Err(_) => "missing".into(),
                        },
                        record.index,
                        shard.bytes
                    ),
                ));
            }
            row += shard.rows;
            shards.push(shard.clone());
        }
    }
    if row != first.manifest.rows {
        return Err(Error::input(format!(
            "{}: the parts hold {row} rows of the store's {}; write the parts again",
            dir.display(),
            first.manifest.rows
        )));
    }
    let rows_file = dir.join(&first.manifest.rows_file.file);
    let rows_hash = crate::read::file_sha256(&rows_file)?;
    if rows_hash != first.manifest.rows_file.sha256 {
        return Err(Error::format(
            &rows_file,
            None,
            "does not have the SHA-256 the parts recorded; write any part again to rewrite it",
        ));
    }
    let mut manifest = first.manifest.clone();
    manifest.shards = shards;
    let json = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| Error::input(format!("the store's manifest: {e}")))?;
    io::write_atomic(&dir.join(MANIFEST_FILE), &json)?;
    for (path, _) in &found {
        let _ = std::fs::remove_file(path);
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_shards_once_in_order() {
        for shards in 0..12 {
            for n in 1..9 {
                let parts: Vec<Range<usize>> = (0..n).map(|k| part_shards(k, n, shards)).collect();
                assert_eq!(parts[0].start, 0);
                assert_eq!(parts[n - 1].end, shards);
                assert!(parts.windows(2).all(|w| w[0].end == w[1].start));
                let sizes: Vec<usize> = parts.iter().map(ExactSizeIterator::len).collect();
                let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                assert!(hi - lo <= 1, "{shards} shards in {n} parts: {sizes:?}");
            }
        }
        assert_eq!(part_shards(2, 4, 10), 6..8);
    }
}
