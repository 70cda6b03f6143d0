//! The activation store: activation sets on disk, larger than memory if
//! need be.
//!
//! A store is a folder:
//!
//! ```text
//! manifest.json            format, value type, neurons, splits, tasks,
//!                          details, and each shard's rows, size and SHA-256
//! rows.json                words, sentence starts, labels per task
//! shard-000000.safetensors rows 0..n as one tensor `activations`
//! shard-000001.safetensors …
//! ```
//!
//! Shards are plain safetensors files (f32, f16 or bf16), readable by any
//! safetensors library. [`StoreWriter`] writes rows as they arrive, one
//! shard in memory at a time, every file atomically and the manifest last.
//! [`Store`] opens a store, checks it, and reads rows or whole datasets;
//! shards are memory-mapped, so reading never needs the whole store in
//! memory. [`Store::class_stats`] computes class statistics of a range of
//! shards into a [`StatsFile`]; such files merge into the statistics of all
//! their shards, from which the correlation and probeless rankings follow.
//! A store can also be written in parts, by separate processes or
//! machines into one folder, and joined ([`join_parts`]) into the store one
//! writer would have written.
//! docs/store.md describes the format and the commands around it.

mod manifest;
mod mapped;
mod parts;
mod read;
mod stats;
mod write;

pub use manifest::{
    Dtype, FORMAT, FileEntry, MANIFEST_FILE, Manifest, PROGRESS_FILE, ROWS_FILE, RowsMeta,
    ShardEntry, TENSOR, TaskEntry,
};
pub use parts::{PartRecord, join_parts, part_file, part_shards};
pub use read::Store;
pub use stats::{GaussianPass, IouMasks, IouPass, IouTop, STATS_FORMAT, StatsFile, StatsParts};
pub use write::{
    DEFAULT_SHARD_BYTES, StoreMeta, StoreSink, StoreWriter, rows_per_shard, write_dataset,
};
