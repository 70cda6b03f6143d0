//! Writing a store shard by shard.
//!
//! Rows arrive in blocks of any size and are encoded as they come, so the
//! writer holds at most one shard; when it knows how many rows it will be
//! given, it holds a few pieces of one, each shard streaming to disk while
//! it fills. Every file is written to a temporary name and renamed, and the
//! manifest is written last: a folder without `manifest.json` is an
//! unfinished store, which readers refuse.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use half::{bf16, f16, slice::HalfFloatSliceExt as _};
use lca_core::data::{Dataset, DatasetOutline, GroundTruth, NeuronIndex, Splits};
use lca_core::error::{Error, Result};
use lca_core::{RowSink, io};
use ndarray::{ArrayView2, s};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::manifest::{
    Dtype, FORMAT, FileEntry, MANIFEST_FILE, Manifest, PAGE, PROGRESS_FILE, ROWS_FILE, RowsMeta,
    ShardEntry, TENSOR, TaskEntry, metadata_problem, shard_file,
};
use crate::parts::{PartRecord, part_shards};
use crate::read::file_sha256;

/// Shards hold about this many bytes unless told otherwise: large enough
/// that reads are sequential, small enough that one fits in memory easily.
pub const DEFAULT_SHARD_BYTES: usize = 256 << 20;

/// The largest magnitude an f16 holds.
const F16_MAX: f32 = 65_504.0;

/// Rows per shard for `neurons` columns of `dtype` in about `shard_bytes`.
///
/// The count is rounded down to a multiple that makes a shard's values a
/// whole number of pages whenever the shard holds that many rows, so that a
/// reader can map the shards side by side as one matrix (see
/// `Store::matrix`).
pub fn rows_per_shard(neurons: usize, dtype: Dtype, shard_bytes: usize) -> usize {
    let row_bytes = neurons.max(1) * dtype.bytes();
    let rows = (shard_bytes / row_bytes).max(1);
    let page_rows = PAGE / gcd(row_bytes, PAGE);
    if rows >= page_rows {
        rows / page_rows * page_rows
    } else {
        rows
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Writes a store: blocks of rows in, shards out.
#[derive(Debug)]
pub struct StoreWriter {
    dir: PathBuf,
    dtype: Dtype,
    neurons: Vec<String>,
    shard_rows: usize,
    /// Encoded values of the shard being filled.
    pending: Vec<u8>,
    pending_rows: usize,
    shards: Vec<ShardEntry>,
    rows: usize,
    /// What identifies this store's content for a later resume, when the
    /// writer keeps a progress record (see [`StoreWriter::resume`]).
    resume_key: Option<ResumeKey>,
    /// The shard being finished (hashed, written, synced) beside the caller.
    in_flight: Option<std::thread::JoinHandle<Result<ShardEntry>>>,
    /// Rows the writer will be given in all, when the caller knows: each
    /// shard's size is then known when it starts, and its values stream to
    /// disk while it fills (see [`ShardStream`]).
    expected_rows: Option<usize>,
    /// The shard being filled, when it streams.
    streaming: Option<ShardStream>,
    /// The number of this writer's first shard in the whole store: 0,
    /// except for a part of a store written in parts.
    first_shard: usize,
    /// The progress record's file name (one per part).
    progress_file: String,
}

impl Drop for StoreWriter {
    /// A writer dropped unfinished (an error upstream, a cancelled run)
    /// still completes and records the shard it was writing, so that a
    /// resume keeps it. A shard still filling is abandoned: its thread
    /// removes the partial file.
    fn drop(&mut self) {
        let _ = self.settle();
        if let Some(stream) = self.streaming.take() {
            drop(stream.values);
            let _ = stream.done.join();
        }
    }
}

/// A shard written while it fills: a thread of its own writes the header,
/// then hashes and writes each piece of values the writer sends, in order,
/// and once the channel closes with every byte received, syncs the file and
/// renames it into place. With fewer bytes it removes the file instead.
#[derive(Debug)]
struct ShardStream {
    values: std::sync::mpsc::SyncSender<Vec<u8>>,
    done: std::thread::JoinHandle<Result<ShardEntry>>,
    /// Rows the shard holds once full.
    rows: usize,
    /// Bytes sent at a time ([`piece_bytes`]).
    piece: usize,
}

/// Bytes of encoded values sent to a streaming shard at a time, at most:
/// the writer and the shard's thread hold a few of these, never a whole
/// shard. Small shards get pieces of an eighth of their values, whole
/// pages (see [`piece_bytes`]).
const STREAM_PIECE: usize = 16 << 20;

/// The piece size for a shard of `value_bytes` bytes of values.
fn piece_bytes(value_bytes: usize) -> usize {
    (value_bytes / 8).clamp(16 * PAGE, STREAM_PIECE) / PAGE * PAGE
}

/// Pieces that may wait for the shard's thread before the writer waits.
const STREAM_QUEUE: usize = 2;

/// What a progress record must match for its shards to be reused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct ResumeKey {
    /// The caller's description of the content (a recipe step and seed).
    fingerprint: String,
    dtype: Dtype,
    neurons: Vec<String>,
    /// Rows the finished store will hold.
    rows: usize,
    shard_rows: usize,
    /// Part `k` of `n`, for a store written in parts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    part: Option<(usize, usize)>,
}

/// `progress.json`: the shards an unfinished store has so far.
#[derive(Debug, Serialize, Deserialize)]
struct ProgressRecord {
    format: String,
    key: ResumeKey,
    shards: Vec<ShardEntry>,
}

/// What the manifest records besides the shards.
#[derive(Clone, Debug, Default)]
pub struct StoreMeta {
    /// The split of the rows, if there is one.
    pub splits: Option<Splits>,
    /// The task a reader takes when it names none.
    pub default_task: String,
    /// Each task's class names.
    pub tasks: BTreeMap<String, TaskEntry>,
    /// Where the data came from.
    pub details: BTreeMap<String, String>,
    /// The neurons known to carry the signal, for planted data.
    pub truth: Option<GroundTruth>,
    /// Words, sentence boundaries and labels per row.
    pub rows: RowsMeta,
}

impl StoreWriter {
    /// Starts a store in `dir`, which must not hold one already.
    ///
    /// # Errors
    /// When `dir` holds a store or cannot be created, or `shard_rows` is 0.
    pub fn create(
        dir: &Path,
        dtype: Dtype,
        neurons: &NeuronIndex,
        shard_rows: usize,
    ) -> Result<Self> {
        if dir.join(MANIFEST_FILE).exists() {
            return Err(Error::input(format!(
                "{} already holds a store (it has a {MANIFEST_FILE}); nothing was written. \
                 Remove that folder or choose another one",
                dir.display()
            )));
        }
        if shard_rows == 0 {
            return Err(Error::input(
                "a store's shards need at least one row each; give a positive shard size",
            ));
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create folder", dir, e))?;
        io::ensure_writable_dir(dir)?;
        Ok(StoreWriter {
            dir: dir.to_path_buf(),
            dtype,
            neurons: neurons.ids().iter().map(ToString::to_string).collect(),
            shard_rows,
            pending: Vec::new(),
            pending_rows: 0,
            shards: Vec::new(),
            rows: 0,
            resume_key: None,
            in_flight: None,
            expected_rows: None,
            streaming: None,
            first_shard: 0,
            progress_file: PROGRESS_FILE.into(),
        })
    }

    /// Starts a store of `rows` rows in `dir`, or goes on with the one an
    /// interrupted writer left there.
    ///
    /// The writer records its finished shards in `progress.json` after each
    /// one. When `dir` holds such a record with the same `fingerprint`,
    /// type, neurons, row count and shard size, the shards it lists whose
    /// size and SHA-256 still match are kept and writing goes on after them
    /// ([`StoreWriter::rows`] says where); anything else there is written
    /// again. The fingerprint is the caller's promise that the content is
    /// the same: a recipe's source step, its parameters and its seed.
    ///
    /// # Errors
    /// As [`StoreWriter::create`].
    pub fn resume(
        dir: &Path,
        dtype: Dtype,
        neurons: &NeuronIndex,
        shard_rows: usize,
        fingerprint: &str,
        rows: usize,
    ) -> Result<Self> {
        Self::resume_part(dir, dtype, neurons, shard_rows, fingerprint, rows, None)
    }

    /// [`StoreWriter::resume`], or with `part = (k, n, first_shard)` the
    /// same for part `k` of `n` (see [`StoreSink::in_part`]): its shards
    /// are numbered from `first_shard` and recorded in a progress file of
    /// the part's own. `rows` is the whole store's row count either way,
    /// part of what identifies the content.
    fn resume_part(
        dir: &Path,
        dtype: Dtype,
        neurons: &NeuronIndex,
        shard_rows: usize,
        fingerprint: &str,
        rows: usize,
        part: Option<(usize, usize, usize)>,
    ) -> Result<Self> {
        let mut writer = Self::create(dir, dtype, neurons, shard_rows)?;
        if let Some((k, n, first_shard)) = part {
            writer.first_shard = first_shard;
            writer.progress_file = crate::parts::progress_file(k, n);
        }
        let key = ResumeKey {
            fingerprint: fingerprint.to_string(),
            dtype,
            neurons: writer.neurons.clone(),
            rows,
            shard_rows,
            part: part.map(|(k, n, _)| (k, n)),
        };
        writer.shards = reusable_shards(dir, &key, writer.first_shard, &writer.progress_file);
        writer.rows = writer.shards.iter().map(|s| s.rows).sum();
        writer.resume_key = Some(key);
        Ok(writer)
    }

    /// Rows written so far, including those not yet in a finished shard.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Announces that the writer will be given `rows` rows in all (counting
    /// those a resumed writer kept). Each shard then streams to disk while
    /// it fills, so that finishing the store leaves only the last piece to
    /// write; without it a shard is written once full. Giving a different
    /// number of rows is an error.
    pub fn expecting(mut self, rows: usize) -> Self {
        self.expected_rows = Some(rows);
        self
    }

    /// Appends rows; writes a shard each time one fills.
    ///
    /// # Errors
    /// When the block's width is not the store's, a value does not fit the
    /// store's type, or a shard cannot be written.
    pub fn push(&mut self, block: ArrayView2<'_, f32>) -> Result<()> {
        let cols = self.neurons.len();
        if block.ncols() != cols {
            return Err(Error::Shape {
                what: format!("rows written to the store in {}", self.dir.display()),
                expected: format!("{cols} columns"),
                found: format!("{} columns", block.ncols()),
            });
        }
        if let Some(expected) = self.expected_rows
            && self.rows + block.nrows() > expected
        {
            return Err(Error::input(format!(
                "{} rows were given to the store in {}, which was announced {expected}; \
                 this is a bug in the caller",
                self.rows + block.nrows(),
                self.dir.display()
            )));
        }
        let mut row = 0;
        while row < block.nrows() {
            if self.pending_rows == 0 && self.streaming.is_none() {
                self.open_stream()?;
            }
            let take = (self.shard_rows - self.pending_rows).min(block.nrows() - row);
            for (i, values) in block.rows().into_iter().skip(row).take(take).enumerate() {
                let copied;
                let values = match values.as_slice() {
                    Some(values) => values,
                    None => {
                        copied = values.to_vec();
                        &copied
                    }
                };
                self.encode(values, self.rows + i)?;
                // A streaming shard takes each piece as soon as it is
                // encoded, however large the block: the writer then holds
                // pieces, not the shard, and the disk works while rows come.
                if self
                    .streaming
                    .as_ref()
                    .is_some_and(|stream| self.pending.len() >= stream.piece)
                {
                    self.send_pending()?;
                }
            }
            self.pending_rows += take;
            self.rows += take;
            row += take;
            if self.pending_rows == self.shard_rows {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// Starts streaming the next shard, when its size is known.
    fn open_stream(&mut self) -> Result<()> {
        let Some(expected) = self.expected_rows else {
            return Ok(());
        };
        let rows = expected.saturating_sub(self.rows).min(self.shard_rows);
        if rows == 0 {
            return Ok(());
        }
        // The shard before may still be finishing.
        let number = self.first_shard + self.shards.len() + usize::from(self.in_flight.is_some());
        let file = shard_file(number);
        let path = self.dir.join(&file);
        let value_bytes = rows * self.neurons.len() * self.dtype.bytes();
        let header = shard_header(self.dtype, rows, self.neurons.len(), value_bytes);
        let piece = piece_bytes(value_bytes);
        let (values, pieces) = std::sync::mpsc::sync_channel::<Vec<u8>>(STREAM_QUEUE);
        let done = std::thread::Builder::new()
            .name("lca-store-shard".into())
            .spawn(move || {
                let mut hasher = Sha256::new();
                io::write_atomic_at(&path, |temp| {
                    stream_shard(temp, &header, pieces, value_bytes, piece, &mut hasher)
                        .map_err(|e| Error::io("write", &path, e))
                })?;
                Ok(ShardEntry {
                    file,
                    rows,
                    bytes: (header.len() + value_bytes) as u64,
                    sha256: io::hex(&hasher.finalize()),
                })
            })
            .map_err(|e| Error::io("start writing a shard of", &self.dir, e))?;
        self.pending = Vec::with_capacity(piece + piece / 4);
        self.streaming = Some(ShardStream {
            values,
            done,
            rows,
            piece,
        });
        Ok(())
    }

    /// Sends the encoded values so far to the streaming shard.
    fn send_pending(&mut self) -> Result<()> {
        let Some(stream) = &self.streaming else {
            return Ok(());
        };
        let capacity = stream.piece + stream.piece / 4;
        let piece = std::mem::replace(&mut self.pending, Vec::with_capacity(capacity));
        if stream.values.send(piece).is_err() {
            // The thread stopped early: its error says why.
            let stream = self.streaming.take().expect("checked above");
            return Err(match stream.done.join() {
                Ok(Err(e)) => e,
                _ => Error::input(format!(
                    "writing a shard of the store in {} stopped",
                    self.dir.display()
                )),
            });
        }
        Ok(())
    }

    fn encode(&mut self, values: &[f32], row: usize) -> Result<()> {
        match self.dtype {
            Dtype::F32 => {
                self.pending
                    .extend_from_slice(bytemuck::cast_slice::<f32, u8>(values));
            }
            Dtype::F16 => {
                if let Some(col) = values.iter().position(|v| v.abs() > F16_MAX) {
                    return Err(Error::input(format!(
                        "row {row}, neuron {} holds {}, beyond what f16 holds (±65,504); \
                         nothing past the last full shard was kept. Write the store as bf16 \
                         or f32 instead",
                        self.neurons[col], values[col]
                    )));
                }
                let mut half = vec![f16::ZERO; values.len()];
                half.convert_from_f32_slice(values);
                self.pending.extend_from_slice(bytemuck::cast_slice(&half));
            }
            Dtype::Bf16 => {
                let mut half = vec![bf16::ZERO; values.len()];
                half.convert_from_f32_slice(values);
                self.pending.extend_from_slice(bytemuck::cast_slice(&half));
            }
        }
        Ok(())
    }

    /// Writes the pending rows as a shard.
    fn flush(&mut self) -> Result<()> {
        if self.streaming.is_some() {
            return self.close_stream();
        }
        if self.pending_rows == 0 {
            return Ok(());
        }
        // One shard at a time goes to disk beside the caller: hashing and
        // writing it overlap the next rows arriving (an extraction's next
        // block), and the record lists it only once it is whole.
        self.settle()?;
        let file = shard_file(self.first_shard + self.shards.len());
        let path = self.dir.join(&file);
        let rows = self.pending_rows;
        let header = shard_header(self.dtype, rows, self.neurons.len(), self.pending.len());
        // The next shard's buffer is reserved at once (untouched pages cost
        // nothing) so that filling it never copies it to grow.
        let capacity = self.pending.capacity();
        let values = std::mem::replace(&mut self.pending, Vec::with_capacity(capacity));
        self.pending_rows = 0;
        let thread = std::thread::Builder::new()
            .name("lca-store-shard".into())
            .spawn(move || {
                let mut hasher = Sha256::new();
                hasher.update(&header);
                hasher.update(&values);
                io::write_atomic_parts(&path, &[&header, &values])?;
                Ok(ShardEntry {
                    file,
                    rows,
                    bytes: (header.len() + values.len()) as u64,
                    sha256: io::hex(&hasher.finalize()),
                })
            })
            .map_err(|e| Error::io("start writing a shard of", &self.dir, e))?;
        self.in_flight = Some(thread);
        Ok(())
    }

    /// Sends the streaming shard its last values and lets it finish beside
    /// the caller, as a shard written whole does.
    fn close_stream(&mut self) -> Result<()> {
        let rows = self.streaming.as_ref().map_or(0, |s| s.rows);
        if self.pending_rows != rows {
            return Err(Error::input(format!(
                "the store in {} was announced {} rows and given {}; this is a bug in the caller",
                self.dir.display(),
                self.expected_rows.unwrap_or(0),
                self.rows
            )));
        }
        self.send_pending()?;
        let stream = self.streaming.take().expect("a stream is open");
        drop(stream.values);
        self.settle()?;
        self.in_flight = Some(stream.done);
        self.pending_rows = 0;
        Ok(())
    }

    /// Waits for the shard being written, and records it.
    fn settle(&mut self) -> Result<()> {
        let Some(thread) = self.in_flight.take() else {
            return Ok(());
        };
        let shard = thread.join().map_err(|panic| {
            Error::input(format!(
                "writing a shard of the store in {} failed: {}",
                self.dir.display(),
                lca_core::run::panic_message(panic.as_ref())
            ))
        })??;
        self.shards.push(shard);
        if let Some(key) = &self.resume_key {
            let record = ProgressRecord {
                format: FORMAT.into(),
                key: key.clone(),
                shards: self.shards.clone(),
            };
            let json = serde_json::to_vec(&record).expect("a progress record serialises");
            io::write_atomic(&self.dir.join(&self.progress_file), &json)?;
        }
        Ok(())
    }

    /// Writes the last shard, `rows.json` and the manifest.
    ///
    /// # Errors
    /// When the metadata disagrees with the rows written, or a file cannot
    /// be written.
    pub fn finish(mut self, meta: StoreMeta) -> Result<Manifest> {
        let rows = self.rows;
        let manifest = self.finish_shards(meta, rows)?;
        let json = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| Error::input(format!("the store's manifest: {e}")))?;
        io::write_atomic(&self.dir.join(MANIFEST_FILE), &json)?;
        self.forget_progress();
        Ok(manifest)
    }

    /// Writes the last shard and `rows.json`, and returns the manifest of
    /// a store of `total_rows` rows (whose metadata `meta` describes) with
    /// this writer's shards.
    fn finish_shards(&mut self, meta: StoreMeta, total_rows: usize) -> Result<Manifest> {
        self.flush()?;
        self.settle()?;
        check_meta(&meta, total_rows)?;
        let rows_json = serde_json::to_vec(&meta.rows)
            .map_err(|e| Error::input(format!("the store's row metadata: {e}")))?;
        io::write_atomic(&self.dir.join(ROWS_FILE), &rows_json)?;
        Ok(Manifest {
            format: FORMAT.into(),
            dtype: self.dtype,
            rows: total_rows,
            neurons: std::mem::take(&mut self.neurons),
            splits: meta.splits,
            default_task: meta.default_task,
            tasks: meta.tasks,
            details: meta.details,
            truth: meta.truth,
            rows_file: FileEntry {
                file: ROWS_FILE.into(),
                sha256: io::hex(&Sha256::digest(&rows_json)),
            },
            shards: std::mem::take(&mut self.shards),
        })
    }

    /// Removes the progress record once what it records is in a manifest
    /// or a part record: it has nothing left to say.
    fn forget_progress(&self) {
        if self.resume_key.is_some() {
            let _ = std::fs::remove_file(self.dir.join(&self.progress_file));
        }
    }
}

/// The leading shards of an interrupted store that can be kept: those its
/// progress record lists, when the record's key is `key`, up to the first
/// one missing or changed on disk.
fn reusable_shards(
    dir: &Path,
    key: &ResumeKey,
    first_shard: usize,
    progress_file: &str,
) -> Vec<ShardEntry> {
    let Ok(text) = std::fs::read(dir.join(progress_file)) else {
        return Vec::new();
    };
    let Ok(record) = serde_json::from_slice::<ProgressRecord>(&text) else {
        return Vec::new();
    };
    if record.format != FORMAT || &record.key != key {
        return Vec::new();
    }
    let mut kept = Vec::new();
    for (i, shard) in record.shards.into_iter().enumerate() {
        // Shards are named by position; a record naming others is not ours.
        if shard.file != shard_file(first_shard + i) || shard.rows != key.shard_rows {
            break;
        }
        let path = dir.join(&shard.file);
        let intact = std::fs::metadata(&path).is_ok_and(|m| m.len() == shard.bytes)
            && file_sha256(&path).is_ok_and(|hash| hash == shard.sha256);
        if !intact {
            break;
        }
        kept.push(shard);
    }
    kept
}

/// A [`RowSink`] that writes a store: a streaming source's rows go to disk
/// shard by shard, and an interrupted store goes on where it stopped.
#[derive(Debug)]
pub struct StoreSink {
    dir: PathBuf,
    dtype: Dtype,
    shard_bytes: usize,
    fingerprint: String,
    writer: Option<StoreWriter>,
    held: usize,
    /// Part `k` of `n`, when the sink writes one part of a store.
    part: Option<(usize, usize)>,
    /// The rows of the whole dataset this sink keeps (all of them unless it
    /// writes a part), set by `begin`.
    wanted: Range<usize>,
}

impl StoreSink {
    /// A sink writing to `dir` in shards of about `shard_bytes`, resuming
    /// an interrupted store with the same `fingerprint` (see
    /// [`StoreWriter::resume`]).
    pub fn new(dir: &Path, dtype: Dtype, shard_bytes: usize, fingerprint: &str) -> Self {
        StoreSink {
            dir: dir.to_path_buf(),
            dtype,
            shard_bytes,
            fingerprint: fingerprint.to_string(),
            writer: None,
            held: 0,
            part: None,
            wanted: 0..0,
        }
    }

    /// Makes the sink write part `index` of `count` of the store: the
    /// `index`-th of `count` runs of consecutive shards (sizes differing by
    /// at most one, as [`part_shards`] cuts them), under the same file
    /// names, rows and bytes a sink writing the whole store gives them.
    /// [`StoreSink::finish_part`] then records the part, and
    /// [`crate::join_parts`] makes one store of all `count` parts once
    /// every one is written into the same folder. A part may hold no shard.
    ///
    /// # Panics
    /// When `index >= count`; callers check the numbers they are given.
    pub fn in_part(mut self, index: usize, count: usize) -> Self {
        assert!(index < count, "part {index} of {count}");
        self.part = Some((index, count));
        self
    }

    /// Rows an interrupted earlier attempt had written in full shards,
    /// which this sink keeps (known after `begin`).
    pub fn rows_resumed(&self) -> usize {
        self.held - self.wanted.start
    }

    /// Rows written so far, those of an earlier attempt included.
    pub fn rows(&self) -> usize {
        self.writer.as_ref().map_or(0, StoreWriter::rows)
    }

    /// Writes the last shard, `rows.json` and the manifest.
    ///
    /// # Errors
    /// When no rows came, the metadata disagrees with them, or a file
    /// cannot be written.
    pub fn finish(self, meta: StoreMeta) -> Result<Manifest> {
        if self.part.is_some() {
            return Err(Error::input(
                "a part of a store is finished with `finish_part`; this is a bug in lca",
            ));
        }
        self.into_writer()?.finish(meta)
    }

    /// Writes the part's last shard, `rows.json` (the whole store's, the
    /// same from every part) and the part's record, which
    /// [`crate::join_parts`] reads.
    ///
    /// # Errors
    /// As [`StoreSink::finish`]; also when the sink writes no part.
    pub fn finish_part(self, meta: StoreMeta) -> Result<PartRecord> {
        let Some((index, count)) = self.part else {
            return Err(Error::input(
                "a whole store is finished with `finish`; this is a bug in lca",
            ));
        };
        let first_row = self.wanted.start;
        let dir = self.dir.clone();
        let mut writer = self.into_writer()?;
        let key = writer.resume_key.clone().expect("a sink's writer resumes");
        let manifest = writer.finish_shards(meta, key.rows)?;
        let record = PartRecord {
            format: FORMAT.into(),
            index,
            count,
            first_row,
            first_shard: writer.first_shard,
            shard_rows: writer.shard_rows,
            fingerprint: key.fingerprint,
            manifest,
        };
        crate::parts::write_record(&dir, &record)?;
        writer.forget_progress();
        Ok(record)
    }

    fn into_writer(self) -> Result<StoreWriter> {
        self.writer.ok_or_else(|| {
            Error::input(format!(
                "the source gave no activations for the store in {}; nothing was written",
                self.dir.display()
            ))
        })
    }
}

impl RowSink for StoreSink {
    fn begin(&mut self, rows: usize, neurons: &NeuronIndex) -> Result<()> {
        if self.writer.is_some() {
            return Err(Error::input(
                "a source announced its rows twice to the store writer; this is a bug in the \
                 source",
            ));
        }
        let shard_rows = rows_per_shard(neurons.len(), self.dtype, self.shard_bytes);
        let all_shards = rows.div_ceil(shard_rows);
        let (part, wanted, shards) = match self.part {
            Some((k, n)) => {
                let shards = part_shards(k, n, all_shards);
                let wanted =
                    (shards.start * shard_rows).min(rows)..(shards.end * shard_rows).min(rows);
                (Some((k, n, shards.start)), wanted, shards)
            }
            None => (None, 0..rows, 0..all_shards),
        };
        // The bookkeeping files only this writer writes: a part's own
        // progress and part records (every part writes `rows.json`, so
        // another part may be writing it now), or the whole store's.
        let own_files = match self.part {
            Some((k, n)) => vec![
                crate::parts::progress_file(k, n),
                crate::parts::part_file(k, n),
            ],
            None => vec![
                PROGRESS_FILE.to_string(),
                MANIFEST_FILE.to_string(),
                ROWS_FILE.to_string(),
            ],
        };
        remove_partial_files(&self.dir, shards, &own_files);
        // The whole store's row count identifies a part's content with the
        // fingerprint; the writer itself counts the part's rows.
        let writer = StoreWriter::resume_part(
            &self.dir,
            self.dtype,
            neurons,
            shard_rows,
            &self.fingerprint,
            rows,
            part,
        )?
        .expecting(wanted.len());
        self.held = wanted.start + writer.rows();
        self.wanted = wanted;
        self.writer = Some(writer);
        Ok(())
    }

    fn rows_held(&self) -> usize {
        self.held
    }

    fn rows_wanted_end(&self) -> usize {
        self.wanted.end
    }

    fn block_rows(&self) -> usize {
        self.writer.as_ref().map_or(1, |w| w.shard_rows)
    }

    fn push(&mut self, first: usize, block: ArrayView2<'_, f32>) -> Result<()> {
        let writer = self.writer.as_mut().ok_or_else(|| {
            Error::input("a source pushed rows before announcing them; this is a bug in the source")
        })?;
        let next = self.wanted.start + writer.rows();
        if first > next {
            return Err(Error::input(format!(
                "a source pushed rows from {first} while the store in {} has {next}: rows \
                 {next}..{first} are missing; this is a bug in the source",
                self.dir.display()
            )));
        }
        let skip = next - first;
        let end = block.nrows().min(self.wanted.end.saturating_sub(first));
        if skip >= end {
            return Ok(());
        }
        writer.push(block.slice(s![skip..end, ..]))
    }
}

/// Writes a streamed shard to `temp`: `header`, then the pieces of values
/// as they come, hashing all of it in order, then syncs the file. Fails
/// when the pieces do not add up to `value_bytes` (the writer stopped).
///
/// The values go to disk around the page cache (`O_DIRECT`) where the file
/// system allows it, in whole pages from a page-aligned staging buffer: a
/// buffered write costs the kernel a page allocation and a copy for every
/// 4 KiB (about 1.3 s of system time for 460 MB on the development VM,
/// against 0.05 s direct), which an extraction sharing the cores with the
/// writer pays in throughput. What is left of the last page, and every
/// byte on a file system that refuses direct writes, is written buffered.
fn stream_shard(
    temp: &Path,
    header: &[u8],
    pieces: std::sync::mpsc::Receiver<Vec<u8>>,
    value_bytes: usize,
    piece: usize,
    hasher: &mut Sha256,
) -> std::io::Result<()> {
    use std::io::{Seek as _, SeekFrom, Write as _};
    use std::os::unix::fs::OpenOptionsExt as _;
    debug_assert!(header.len().is_multiple_of(PAGE));
    let mut buffered = std::fs::File::create(temp)?;
    let mut direct = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(temp)
        .ok();
    hasher.update(header);
    // Pages are moved through a staging area aligned to a page, found
    // inside an allocation one page larger than it.
    let stage_len = piece + PAGE;
    let mut raw = vec![0u8; stage_len + PAGE];
    let start = raw.as_ptr().align_offset(PAGE).min(PAGE);
    let stage = &mut raw[start..start + stage_len];
    let mut staged = 0usize;
    let mut offset = 0u64;
    let mut received = 0usize;
    let mut write = |bytes: &[u8], at: u64, whole_pages: bool| -> std::io::Result<()> {
        if whole_pages && let Some(file) = direct.as_mut() {
            file.seek(SeekFrom::Start(at))?;
            match file.write_all(bytes) {
                Ok(()) => return Ok(()),
                // A file system that takes the open but not the write.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => direct = None,
                Err(e) => return Err(e),
            }
        }
        buffered.seek(SeekFrom::Start(at))?;
        buffered.write_all(bytes)
    };
    // The header is not in the staging area, so not page-aligned in memory.
    write(header, 0, false)?;
    offset += header.len() as u64;
    for piece in pieces {
        hasher.update(&piece);
        received += piece.len();
        let mut rest = &piece[..];
        while !rest.is_empty() {
            let take = rest.len().min(stage_len - staged);
            stage[staged..staged + take].copy_from_slice(&rest[..take]);
            staged += take;
            rest = &rest[take..];
            let pages = staged / PAGE * PAGE;
            if staged == stage_len || (pages > 0 && rest.is_empty()) {
                write(&stage[..pages], offset, true)?;
                offset += pages as u64;
                stage.copy_within(pages..staged, 0);
                staged -= pages;
            }
        }
    }
    write(&stage[..staged], offset, false)?;
    if received != value_bytes {
        return Err(std::io::Error::other(format!(
            "the shard was left with {received} of its {value_bytes} bytes"
        )));
    }
    drop(direct);
    buffered.sync_all()
}

/// Removes what an interrupted writer left under temporary names: parts of
/// shards `shards` (a shard streams to disk while it fills, so a writer
/// killed then leaves part of one) and of the bookkeeping files `files`
/// (written whole under a temporary name and renamed, so a writer killed
/// mid-write leaves the temporary file). Only this writer's files: the
/// parts of a store written in parts share the folder.
fn remove_partial_files(dir: &Path, shards: Range<usize>, files: &[String]) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let ours: std::collections::HashSet<String> = shards
        .map(shard_file)
        .chain(files.iter().cloned())
        .collect();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let partial_of = name
            .strip_prefix('.')
            .and_then(|rest| rest.split_once(".tmp-"))
            .map(|(shard, _)| shard);
        if partial_of.is_some_and(|shard| ours.contains(shard)) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The start of a safetensors file with one tensor, [`TENSOR`], of
/// `rows × cols` in `value_bytes` bytes: the header's length and the header.
/// The values follow it in the file.
fn shard_header(dtype: Dtype, rows: usize, cols: usize, value_bytes: usize) -> Vec<u8> {
    let header = serde_json::json!({
        "__metadata__": { "format": FORMAT },
        TENSOR: {
            "dtype": dtype.safetensors(),
            "shape": [rows, cols],
            "data_offsets": [0, value_bytes],
        }
    });
    let mut header = serde_json::to_vec(&header).expect("a JSON value serialises");
    // Spaces pad the header so that the values start on a page boundary of
    // the file: an f32 shard can then be used in place once mapped, and
    // several shards can be mapped side by side.
    while !(8 + header.len()).is_multiple_of(PAGE) {
        header.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + header.len());
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(&header);
    out
}

/// The row metadata must describe exactly the rows written.
fn check_meta(meta: &StoreMeta, rows: usize) -> Result<()> {
    match metadata_problem(
        rows,
        meta.splits,
        &meta.default_task,
        &meta.tasks,
        &meta.rows,
    ) {
        None => Ok(()),
        Some(problem) => Err(Error::input(format!(
            "the store's metadata has {problem}; no manifest was written"
        ))),
    }
}

impl StoreMeta {
    /// The manifest's part for a dataset whose labels are task `task`.
    pub fn of(outline: DatasetOutline, task: &str) -> StoreMeta {
        let rows = RowsMeta {
            words: outline.tokens.as_ref().map(|t| t.words().to_vec()),
            sentence_starts: outline
                .tokens
                .as_ref()
                .map(|t| t.sentence_starts().to_vec()),
            labels: BTreeMap::from([(task.to_string(), outline.labels.ids().to_vec())]),
        };
        StoreMeta {
            splits: Some(outline.splits),
            default_task: task.into(),
            tasks: BTreeMap::from([(
                task.to_string(),
                TaskEntry {
                    classes: outline.labels.vocab().names().to_vec(),
                },
            )]),
            details: outline.details,
            truth: outline.truth,
            rows,
        }
    }
}

/// Writes a dataset as a store: its activations, neurons, words, splits and
/// labels (as task `task`), and its details.
///
/// # Errors
/// When `dir` holds a store already, or a file cannot be written.
pub fn write_dataset(
    data: &Dataset<'_>,
    dir: &Path,
    dtype: Dtype,
    shard_rows: usize,
    task: &str,
    mut on_rows: impl FnMut(usize),
) -> Result<Manifest> {
    let mut writer =
        StoreWriter::create(dir, dtype, data.neurons(), shard_rows)?.expecting(data.n_rows());
    let mut start = 0;
    while start < data.n_rows() {
        let end = (start + shard_rows).min(data.n_rows());
        writer.push(data.acts().block(start..end).view())?;
        on_rows(end);
        start = end;
    }
    writer.finish(StoreMeta::of(data.outline(), task))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer killed while it renamed a bookkeeping file into place
    /// leaves the temporary file; the next writer of the same files removes
    /// it, and leaves alone what belongs to other parts of the store.
    #[test]
    fn temporary_files_of_this_writer_are_removed_and_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        let names = [
            ".progress.json.tmp-301",
            ".manifest.json.tmp-302",
            ".rows.json.tmp-303",
            ".shard-000002.safetensors.tmp-304",
            ".shard-000009.safetensors.tmp-305",
            ".progress-1-of-2.json.tmp-306",
            "shard-000002.safetensors",
            "progress.json",
        ];
        for name in names {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let own = [PROGRESS_FILE, MANIFEST_FILE, ROWS_FILE].map(String::from);
        remove_partial_files(dir.path(), 0..5, &own);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                ".progress-1-of-2.json.tmp-306",
                ".shard-000009.safetensors.tmp-305",
                "progress.json",
                "shard-000002.safetensors",
            ]
        );
    }
}
