//! Opening, checking and reading a store.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use half::{bf16, f16, slice::HalfFloatSliceExt as _};
use lca_core::Progress;
use lca_core::data::{
    ActivationMatrix, ClassVocab, Dataset, HalfBuffer, HalfFormat, Labels, NeuronId, NeuronIndex,
    Splits, Tokens, ValueBuffer,
};
use lca_core::error::{Error, Result};
use lca_core::io;
use memmap2::Mmap;
use ndarray::{Array2, ArrayView2};
use sha2::{Digest, Sha256};

use crate::manifest::{
    Dtype, FORMAT, MANIFEST_FILE, Manifest, RowsMeta, ShardEntry, TENSOR, metadata_problem,
};
use crate::mapped;

/// An opened store: its manifest and row metadata, checked for consistency;
/// shards are mapped when read.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    manifest: Manifest,
    rows: RowsMeta,
    neurons: NeuronIndex,
}

/// One shard, mapped, with where its values start.
#[derive(Debug)]
struct MappedShard {
    map: Mmap,
    start: usize,
    rows: usize,
    cols: usize,
    dtype: Dtype,
}

impl MappedShard {
    fn bytes(&self) -> &[u8] {
        let len = self.rows * self.cols * self.dtype.bytes();
        &self.map[self.start..self.start + len]
    }

    /// Rows `rows` (relative to the shard) as f32, appended to `out`.
    fn append_rows(&self, rows: Range<usize>, out: &mut Vec<f32>) {
        let width = self.cols * self.dtype.bytes();
        let bytes = &self.bytes()[rows.start * width..rows.end * width];
        let from = out.len();
        out.resize(from + rows.len() * self.cols, 0.0);
        let out = &mut out[from..];
        match self.dtype {
            Dtype::F32 => out
                .iter_mut()
                .zip(bytes.chunks_exact(4))
                .for_each(|(o, b)| *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            Dtype::F16 => {
                let halves: Vec<f16> = bytes
                    .chunks_exact(2)
                    .map(|b| f16::from_le_bytes([b[0], b[1]]))
                    .collect();
                halves.convert_to_f32_slice(out);
            }
            Dtype::Bf16 => {
                let halves: Vec<bf16> = bytes
                    .chunks_exact(2)
                    .map(|b| bf16::from_le_bytes([b[0], b[1]]))
                    .collect();
                halves.convert_to_f32_slice(out);
            }
        }
    }
}

/// Mapped values that a matrix uses in place: one shard, or several side by
/// side.
trait MappedBytes: std::fmt::Debug + Send + Sync + 'static {
    fn bytes(&self) -> &[u8];
}

impl MappedBytes for MappedShard {
    fn bytes(&self) -> &[u8] {
        MappedShard::bytes(self)
    }
}

impl MappedBytes for mapped::SideBySide {
    fn bytes(&self) -> &[u8] {
        mapped::SideBySide::bytes(self)
    }
}

/// Mapped values read as the matrix's own, f32 or 16-bit; built by
/// [`in_place`] only once the bytes are aligned for that type.
#[derive(Debug)]
struct InPlace<M>(M);

impl<M: MappedBytes> ValueBuffer for InPlace<M> {
    fn values(&self) -> &[f32] {
        bytemuck::cast_slice(self.0.bytes())
    }
}

impl<M: MappedBytes> HalfBuffer for InPlace<M> {
    fn bits(&self) -> &[u16] {
        bytemuck::cast_slice(self.0.bytes())
    }
}

/// A `rows × cols` matrix that reads `mapped` in place (16-bit values in
/// `half`'s format, f32 otherwise), or `None` when its bytes are not
/// aligned for that type.
fn in_place<M: MappedBytes>(
    mapped: M,
    rows: usize,
    cols: usize,
    half: Option<HalfFormat>,
) -> Option<Result<ActivationMatrix<'static>>> {
    let bytes = mapped.bytes();
    Some(match half {
        None => {
            bytemuck::try_cast_slice::<u8, f32>(bytes).ok()?;
            ActivationMatrix::from_buffer(rows, cols, Arc::new(InPlace(mapped)))
        }
        Some(format) => {
            bytemuck::try_cast_slice::<u8, u16>(bytes).ok()?;
            ActivationMatrix::from_half_buffer(rows, cols, format, Arc::new(InPlace(mapped)))
        }
    })
}

fn manifest_error(dir: &Path, message: impl Into<String>) -> Error {
    Error::format(
        dir.join(MANIFEST_FILE),
        None,
        format!(
            "{}; the store is damaged or was not written by lca. Recreate it with \
             `lca store create` or `lca store import`",
            message.into()
        ),
    )
}

impl Store {
    /// Opens the store in `dir`: reads the manifest and `rows.json` and
    /// checks that they agree with each other and with the shards' sizes.
    /// The shards' contents are checked by [`Self::verify`].
    ///
    /// # Errors
    /// When a file is missing, malformed or inconsistent; the message names
    /// it.
    pub fn open(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST_FILE);
        if !path.exists() {
            return Err(Error::input(format!(
                "{} is not a store: it has no {MANIFEST_FILE}{}. Create one with `lca store \
                 create` or `lca store import`, or check the path",
                dir.display(),
                if has_parts(dir) {
                    " (it holds parts of a store written with `--part K/N`; once every part \
                     is written, join them with `lca store join`)"
                } else if dir.is_dir() {
                    " (a store whose creation was cut short has shards but no manifest; \
                     create it again)"
                } else {
                    ""
                }
            )));
        }
        let text = io::read_utf8(&path, "read the store manifest", "check the path")?;
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| {
            Error::format(
                &path,
                Some(e.line()),
                format!("not a store manifest: {e}; recreate the store"),
            )
        })?;
        if manifest.format != FORMAT {
            return Err(manifest_error(
                dir,
                format!(
                    "its format is `{}`, and this lca reads `{FORMAT}`",
                    manifest.format
                ),
            ));
        }
        let mut ids = Vec::with_capacity(manifest.neurons.len());
        for (column, name) in manifest.neurons.iter().enumerate() {
            ids.push(NeuronId::parse(name).ok_or_else(|| {
                manifest_error(
                    dir,
                    format!("neuron {column} is named `{name}`, not like `L3:127`"),
                )
            })?);
        }
        if ids.is_empty() {
            return Err(manifest_error(dir, "it lists no neurons"));
        }
        let shard_rows: usize = manifest.shards.iter().map(|s| s.rows).sum();
        if shard_rows != manifest.rows {
            return Err(manifest_error(
                dir,
                format!(
                    "its shards hold {shard_rows} rows but it declares {}",
                    manifest.rows
                ),
            ));
        }
        for shard in &manifest.shards {
            check_shard_file(dir, shard)?;
        }
        let rows_path = dir.join(&manifest.rows_file.file);
        let rows_bytes = std::fs::read(&rows_path).map_err(|e| Error::io("read", &rows_path, e))?;
        if io::hex(&Sha256::digest(&rows_bytes)) != manifest.rows_file.sha256 {
            return Err(Error::format(
                &rows_path,
                None,
                "its SHA-256 is not the one the manifest records: the file was changed or \
                 damaged. Recreate the store",
            ));
        }
        let rows: RowsMeta = serde_json::from_slice(&rows_bytes).map_err(|e| {
            Error::format(
                &rows_path,
                Some(e.line()),
                format!("not the store's row metadata: {e}"),
            )
        })?;
        check_rows(dir, &manifest, &rows)?;
        Ok(Store {
            dir: dir.to_path_buf(),
            manifest,
            rows,
            neurons: NeuronIndex::from_ids(ids),
        })
    }

    /// The store's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Words, sentence boundaries and labels.
    pub fn rows_meta(&self) -> &RowsMeta {
        &self.rows
    }

    /// The neurons, one per column.
    pub fn neurons(&self) -> &NeuronIndex {
        &self.neurons
    }

    /// Checks every shard's SHA-256 against the manifest, with a progress
    /// bar in bytes on `progress`.
    ///
    /// # Errors
    /// Names the first shard whose contents changed.
    pub fn verify(&self, progress: Option<&dyn Progress>) -> Result<()> {
        if let Some(bar) = progress {
            bar.start("verifying the store", self.manifest.data_bytes(), "bytes");
        }
        let checked = self.hash_shards(progress);
        if let Some(bar) = progress {
            bar.finish();
        }
        checked
    }

    fn hash_shards(&self, progress: Option<&dyn Progress>) -> Result<()> {
        for shard in &self.manifest.shards {
            let path = self.dir.join(&shard.file);
            let found = hash_file(&path, |bytes| {
                if let Some(bar) = progress {
                    bar.advance(bytes as u64);
                }
            })?;
            if found != shard.sha256 {
                return Err(Error::format(
                    path,
                    None,
                    format!(
                        "its SHA-256 is {found}, not the {} the manifest records: the shard \
                         was changed or damaged on disk. Recreate the store (or restore the \
                         file from a copy)",
                        shard.sha256
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Every shard's values mapped one after another, or `None` when the
    /// shards are not page-aligned (stores written by other tools, or shards
    /// of a size chosen by hand).
    fn map_side_by_side(&self) -> Result<Option<mapped::SideBySide>> {
        let mut spans = Vec::with_capacity(self.manifest.shards.len());
        for (index, shard) in self.manifest.shards.iter().enumerate() {
            let mapped = self.map_shard(index)?;
            spans.push((
                self.dir.join(&shard.file),
                mapped.start,
                mapped.bytes().len(),
            ));
        }
        let parts: Vec<mapped::Part<'_>> = spans
            .iter()
            .map(|(path, start, len)| mapped::Part {
                path,
                offset: *start as u64,
                len: *len,
            })
            .collect();
        mapped::map_side_by_side(&parts)
    }

    fn map_shard(&self, index: usize) -> Result<MappedShard> {
        let shard = &self.manifest.shards[index];
        let path = self.dir.join(&shard.file);
        check_shard_file(&self.dir, shard)?;
        let map = mapped::map(&path)?;
        let bad =
            |message: String| Error::format(&path, None, format!("{message}; recreate the store"));
        let (header_len, metadata) = safetensors::SafeTensors::read_metadata(&map)
            .map_err(|e| bad(format!("not a safetensors shard: {e}")))?;
        let info = metadata
            .info(TENSOR)
            .ok_or_else(|| bad(format!("it holds no tensor `{TENSOR}`")))?;
        let cols = self.neurons.len();
        let dtype = self.manifest.dtype;
        if format!("{:?}", info.dtype) != dtype.safetensors() {
            return Err(bad(format!(
                "its values are {:?}, but the manifest says {}",
                info.dtype,
                dtype.as_str()
            )));
        }
        if info.shape != [shard.rows, cols] {
            return Err(bad(format!(
                "its tensor is {:?}, but the manifest says {} rows × {cols} neurons",
                info.shape, shard.rows
            )));
        }
        let start = 8 + header_len + info.data_offsets.0;
        let len = info.data_offsets.1 - info.data_offsets.0;
        if len != shard.rows * cols * dtype.bytes() || start + len > map.len() {
            return Err(bad("its data does not match its header".into()));
        }
        Ok(MappedShard {
            map,
            start,
            rows: shard.rows,
            cols,
            dtype,
        })
    }

    /// Rows `rows` as f32, read shard by shard.
    ///
    /// # Errors
    /// When the range is beyond the store or a shard cannot be read.
    pub fn read_rows(&self, rows: Range<usize>) -> Result<Array2<f32>> {
        let cols = self.neurons.len();
        let mut out = Vec::with_capacity(rows.len() * cols);
        self.check_rows_in_store(&rows)?;
        for (index, _, within) in self.shard_spans(rows.clone()) {
            self.map_shard(index)?.append_rows(within, &mut out);
        }
        Ok(Array2::from_shape_vec((rows.len(), cols), out).expect("rows × neurons values"))
    }

    /// Calls `each` with consecutive blocks of at most `block_rows` rows
    /// covering `rows`, as f32, and the store row each block starts at.
    /// Each shard is mapped once and one block buffer is reused, so memory
    /// stays at one block whatever the range.
    ///
    /// # Errors
    /// When the range is beyond the store, a shard cannot be read, or
    /// `each` fails.
    pub fn for_each_block(
        &self,
        rows: Range<usize>,
        block_rows: usize,
        mut each: impl FnMut(usize, ArrayView2<'_, f32>) -> Result<()>,
    ) -> Result<()> {
        self.check_rows_in_store(&rows)?;
        let (cols, step) = (self.neurons.len(), block_rows.max(1));
        let mut buffer = Vec::with_capacity(step.min(rows.len()) * cols);
        for (index, shard_start, within) in self.shard_spans(rows) {
            let mapped = self.map_shard(index)?;
            for start in within.clone().step_by(step) {
                let end = (start + step).min(within.end);
                buffer.clear();
                mapped.append_rows(start..end, &mut buffer);
                let block = ArrayView2::from_shape((end - start, cols), &buffer[..])
                    .expect("rows × neurons values");
                each(shard_start + start, block)?;
            }
        }
        Ok(())
    }

    /// Each shard that `rows` touches: its index, its first store row, and
    /// the part of it (in rows of the shard) that `rows` covers.
    fn shard_spans(&self, rows: Range<usize>) -> Vec<(usize, usize, Range<usize>)> {
        let mut first = 0;
        let mut spans = Vec::new();
        for (index, shard) in self.manifest.shards.iter().enumerate() {
            let span = first..first + shard.rows;
            first = span.end;
            let (from, to) = (rows.start.max(span.start), rows.end.min(span.end));
            if from < to {
                spans.push((index, span.start, from - span.start..to - span.start));
            }
        }
        spans
    }

    fn check_rows_in_store(&self, rows: &Range<usize>) -> Result<()> {
        if rows.start > rows.end || rows.end > self.manifest.rows {
            return Err(Error::input(format!(
                "rows {}..{} are not in the store {}, which has {} rows",
                rows.start,
                rows.end,
                self.dir.display(),
                self.manifest.rows
            )));
        }
        Ok(())
    }

    /// The whole activation matrix, used in place: mapped rather than read,
    /// one shard as it is, several side by side when their values are
    /// page-aligned, as `lca store` writes them. The page cache then holds
    /// what is read, and the kernel drops it under memory pressure, so the
    /// matrix may be larger than memory. f16 and bf16 values stay in their
    /// width and are converted to f32 a block of rows at a time as they are
    /// read. Only shards whose values are not aligned (written by another
    /// tool) are read into memory, as f32.
    ///
    /// # Errors
    /// When a shard cannot be read.
    pub fn matrix(&self) -> Result<ActivationMatrix<'static>> {
        let (rows, cols) = (self.manifest.rows, self.neurons.len());
        let half = self.manifest.dtype.half_format();
        if cfg!(target_endian = "little") {
            let used = if self.manifest.shards.len() == 1 {
                in_place(self.map_shard(0)?, rows, cols, half)
            } else {
                self.map_side_by_side()?
                    .and_then(|region| in_place(region, rows, cols, half))
            };
            if let Some(matrix) = used {
                return matrix;
            }
        }
        Ok(ActivationMatrix::from_array(self.read_rows(0..rows)?))
    }

    /// The store as a dataset named `name`, labelled by `task` (the store's
    /// default task when `None`), split as stored (all rows train when the
    /// store has no split).
    ///
    /// # Errors
    /// When the task is not in the store or a shard cannot be read.
    pub fn dataset(&self, name: &str, task: Option<&str>) -> Result<Dataset<'static>> {
        let task = task.unwrap_or(&self.manifest.default_task);
        let entry = self.manifest.tasks.get(task).ok_or_else(|| {
            Error::input(format!(
                "the store {} has no task `{task}`; it has {}",
                self.dir.display(),
                lca_core::error::join_and(
                    &self
                        .manifest
                        .tasks
                        .keys()
                        .map(|t| format!("`{t}`"))
                        .collect::<Vec<_>>()
                )
            ))
        })?;
        let vocab = ClassVocab::in_order(entry.classes.clone())?;
        let labels = Labels::new(self.rows.labels[task].clone(), vocab)?;
        let tokens = match (&self.rows.words, &self.rows.sentence_starts) {
            (Some(words), Some(starts)) => Some(Tokens::new(words.clone(), starts.clone())?),
            (Some(words), None) => Some(Tokens::single_sentence(words.clone())),
            _ => None,
        };
        let splits = self
            .manifest
            .splits
            .unwrap_or(Splits::all_train(self.manifest.rows));
        let mut details = self.manifest.details.clone();
        details.insert("store".into(), self.dir.display().to_string());
        details.insert("store dtype".into(), self.manifest.dtype.as_str().into());
        let data = Dataset::new(
            name,
            self.matrix()?,
            self.neurons.clone(),
            labels,
            tokens,
            splits,
        )?
        .with_details(details)
        .with_acts_digest(self.values_digest()?);
        match &self.manifest.truth {
            Some(truth) => data.with_truth(truth.clone()),
            None => Ok(data),
        }
    }
}

impl Store {
    /// What identifies the values without reading them: their type and
    /// shape, and each shard's content hash (from the manifest) with its
    /// file's size and modification time. A shard rewritten after the store
    /// was written changes its time, so work done on the old values is not
    /// taken for work on the new ones; `lca store verify` checks the
    /// contents themselves.
    fn values_digest(&self) -> Result<String> {
        let mut hash = Sha256::new();
        hash.update(b"lca-store values/1");
        hash.update(self.manifest.dtype.as_str().as_bytes());
        hash.update((self.manifest.rows as u64).to_le_bytes());
        hash.update((self.neurons.len() as u64).to_le_bytes());
        for shard in &self.manifest.shards {
            let path = self.dir.join(&shard.file);
            let meta = std::fs::metadata(&path)
                .map_err(|e| Error::io("read the metadata of", &path, e))?;
            let modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |t| t.as_nanos());
            hash.update(shard.file.as_bytes());
            hash.update(shard.sha256.as_bytes());
            hash.update(meta.len().to_le_bytes());
            hash.update(modified.to_le_bytes());
        }
        Ok(io::hex(&hash.finalize()))
    }
}

/// The shard exists and has the size the manifest records.
fn check_shard_file(dir: &Path, shard: &ShardEntry) -> Result<()> {
    if shard.file.contains(['/', '\\']) || shard.file.starts_with('.') {
        return Err(manifest_error(
            dir,
            format!("shard `{}` is not a file name inside the store", shard.file),
        ));
    }
    let path = dir.join(&shard.file);
    let meta = std::fs::metadata(&path).map_err(|e| {
        Error::format(
            &path,
            None,
            format!(
                "the manifest lists this shard but it cannot be read ({e}); restore it or \
                 recreate the store"
            ),
        )
    })?;
    if meta.len() != shard.bytes {
        return Err(Error::format(
            &path,
            None,
            format!(
                "the shard has {} bytes, but the manifest records {}: it was cut short or \
                 replaced. Restore it or recreate the store",
                meta.len(),
                shard.bytes
            ),
        ));
    }
    Ok(())
}

/// `rows.json` describes exactly the manifest's rows and tasks.
fn check_rows(dir: &Path, manifest: &Manifest, rows: &RowsMeta) -> Result<()> {
    let problem = metadata_problem(
        manifest.rows,
        manifest.splits,
        &manifest.default_task,
        &manifest.tasks,
        rows,
    );
    match problem {
        None => Ok(()),
        Some(problem) => Err(manifest_error(
            dir,
            format!("it and {} describe {problem}", manifest.rows_file.file),
        )),
    }
}

/// The SHA-256 of a file, in hex.
///
/// # Errors
/// When the file cannot be read.
/// Whether `dir` holds the record of a finished store part.
fn has_parts(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| crate::manifest::is_part_record(&e.file_name().to_string_lossy()))
    })
}

pub(crate) fn file_sha256(path: &Path) -> Result<String> {
    hash_file(path, |_| {})
}

fn hash_file(path: &Path, mut advance: impl FnMut(usize)) -> Result<String> {
    let map = mapped::map(path)?;
    let mut hasher = Sha256::new();
    for chunk in map.chunks(16 << 20) {
        hasher.update(chunk);
        advance(chunk.len());
    }
    Ok(io::hex(&hasher.finalize()))
}
