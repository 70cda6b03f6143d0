//! What a store's `manifest.json` and `rows.json` hold.
//!
//! The manifest is small and readable: the value type, the neurons, the
//! splits, the class names of each task, where the data came from, and one
//! entry per shard with its row count, size and SHA-256. `rows.json`, whose
//! hash the manifest records, holds what grows with the corpus: the words,
//! the sentence boundaries and each task's label per row.

use std::collections::BTreeMap;

use lca_core::data::{GroundTruth, Splits};
use serde::{Deserialize, Serialize};

/// Version of the layout; readers refuse any other.
pub const FORMAT: &str = "lca-store/1";

/// The manifest's file name inside a store.
pub const MANIFEST_FILE: &str = "manifest.json";

/// The per-row metadata's file name inside a store.
pub const ROWS_FILE: &str = "rows.json";

/// The record of an unfinished store's shards, which lets an interrupted
/// writer go on (see `StoreWriter::resume`); removed once the manifest is
/// written.
pub const PROGRESS_FILE: &str = "progress.json";

/// Whether a file in a store's folder is the record of a finished part
/// (`part-K-of-N.json`), which `lca store join` reads.
pub(crate) fn is_part_record(name: &str) -> bool {
    name.starts_with("part-") && name.ends_with(".json")
}

/// The file name of shard `index`: shards are named by their position.
pub(crate) fn shard_file(index: usize) -> String {
    format!("shard-{index:06}.safetensors")
}

/// The name of the one tensor in every shard.
pub const TENSOR: &str = "activations";

/// Where a shard's values start in its file, and what a full shard's values
/// fill, in bytes: the page size of the common 64-bit platforms, so that a
/// reader can map the shards of an f32 store side by side as one matrix.
pub(crate) const PAGE: usize = 4096;

/// How a store holds activation values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    /// 32-bit floats: exact.
    F32,
    /// IEEE half floats: half the disk, about 3 significant digits; values
    /// beyond ±65,504 become infinite.
    F16,
    /// bfloat16: half the disk, f32's range, about 2 significant digits.
    Bf16,
}

impl Dtype {
    /// Every type, in the order documentation lists them.
    pub const ALL: [Dtype; 3] = [Dtype::F32, Dtype::F16, Dtype::Bf16];

    /// The name used in manifests and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::F16 => "f16",
            Dtype::Bf16 => "bf16",
        }
    }

    /// The 16-bit format of the values, or `None` for f32.
    pub fn half_format(self) -> Option<lca_core::data::HalfFormat> {
        match self {
            Dtype::F32 => None,
            Dtype::F16 => Some(lca_core::data::HalfFormat::F16),
            Dtype::Bf16 => Some(lca_core::data::HalfFormat::Bf16),
        }
    }

    /// Reads [`Self::as_str`]'s form.
    pub fn parse(name: &str) -> Option<Dtype> {
        Dtype::ALL.into_iter().find(|d| d.as_str() == name)
    }

    /// Bytes per value.
    pub fn bytes(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::Bf16 => 2,
        }
    }

    /// The safetensors name of the type.
    pub fn safetensors(self) -> &'static str {
        match self {
            Dtype::F32 => "F32",
            Dtype::F16 => "F16",
            Dtype::Bf16 => "BF16",
        }
    }
}

/// One shard: a safetensors file holding rows `first_row..first_row + rows`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardEntry {
    /// File name inside the store.
    pub file: String,
    /// Rows it holds.
    pub rows: usize,
    /// Its size in bytes.
    pub bytes: u64,
    /// SHA-256 of the whole file, in hex.
    pub sha256: String,
}

/// A file of the store other than a shard, with its hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// File name inside the store.
    pub file: String,
    /// SHA-256 of the file, in hex.
    pub sha256: String,
}

/// The classes of one labelling of the rows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskEntry {
    /// Class names; a row's label is an index into them.
    pub classes: Vec<String>,
}

/// `manifest.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// How values are held.
    pub dtype: Dtype,
    /// Activation rows (tokens or words), over all shards.
    pub rows: usize,
    /// One name per column, as `L3:127` or `L12.mlp:4031`.
    pub neurons: Vec<String>,
    /// The split of the rows, when the store was written from a dataset
    /// that had one.
    pub splits: Option<Splits>,
    /// The task whose labels a reader takes when it names none.
    pub default_task: String,
    /// Each task's classes; the labels are in `rows.json`.
    pub tasks: BTreeMap<String, TaskEntry>,
    /// Where the data came from: model, layers, corpus, extraction settings.
    pub details: BTreeMap<String, String>,
    /// The neurons known to carry the signal, for planted data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truth: Option<GroundTruth>,
    /// The per-row metadata file.
    pub rows_file: FileEntry,
    /// The shards, in row order.
    pub shards: Vec<ShardEntry>,
}

/// `rows.json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RowsMeta {
    /// One word per row, when the source had words.
    pub words: Option<Vec<String>>,
    /// The first row of each sentence, when the source had words.
    pub sentence_starts: Option<Vec<usize>>,
    /// Each task's label per row, as indices into its classes.
    pub labels: BTreeMap<String, Vec<u32>>,
}

impl Manifest {
    /// Bytes of activation data over all shards (headers included).
    pub fn data_bytes(&self) -> u64 {
        self.shards.iter().map(|s| s.bytes).sum()
    }
}

/// What is wrong, if anything, with metadata meant for `rows` rows: words,
/// sentence starts, splits and each task's labels must all describe exactly
/// those rows. Shared by the writer (before it writes a manifest) and the
/// reader (after it reads one).
pub(crate) fn metadata_problem(
    rows: usize,
    splits: Option<Splits>,
    default_task: &str,
    tasks: &BTreeMap<String, TaskEntry>,
    meta: &RowsMeta,
) -> Option<String> {
    if let Some(words) = &meta.words
        && words.len() != rows
    {
        return Some(format!("{} words for {rows} rows", words.len()));
    }
    if let Some(starts) = &meta.sentence_starts {
        let ordered = starts.first().is_none_or(|&s| s == 0)
            && starts.windows(2).all(|w| w[0] < w[1])
            && starts.last().is_none_or(|&s| s < rows.max(1));
        if !ordered {
            return Some("sentence starts that are not increasing row numbers from 0".into());
        }
    }
    if let Some(splits) = splits
        && splits.total() != rows
    {
        return Some(format!(
            "splits covering {} rows, not {rows}",
            splits.total()
        ));
    }
    if !tasks.contains_key(default_task) {
        return Some(format!(
            "a default task `{default_task}` that has no classes"
        ));
    }
    for (task, entry) in tasks {
        let Some(labels) = meta.labels.get(task) else {
            return Some(format!("no labels for task `{task}`"));
        };
        if labels.len() != rows {
            return Some(format!(
                "{} labels of task `{task}` for {rows} rows",
                labels.len()
            ));
        }
        if let Some(l) = labels.iter().find(|&&l| l as usize >= entry.classes.len()) {
            return Some(format!(
                "label {l} in task `{task}`, which has {} classes",
                entry.classes.len()
            ));
        }
    }
    None
}
