//! Class statistics of a store's shards, in files that merge: the scale-out
//! path. Each worker computes the statistics of some shards; any grouping of
//! merges gives the statistics of all of them, from which the correlation
//! and probeless rankings follow.

use std::ops::Range;
use std::path::Path;

use lca_core::data::ClassStats;
use lca_core::error::{Error, Result};
use lca_core::io;
use serde::{Deserialize, Serialize};

use crate::read::Store;

/// Version of the statistics file layout.
pub const STATS_FORMAT: &str = "lca-stats/1";

/// Rows read at a time: bounded memory whatever the shard size.
const BLOCK_ROWS: usize = 4096;

/// A statistics file: the sums, and what they cover.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatsFile {
    /// Always [`STATS_FORMAT`].
    pub format: String,
    /// The task whose labels split the rows into classes.
    pub task: String,
    /// Whether only the training split's rows are counted.
    pub train_only: bool,
    /// The neurons, one per column, as the store names them.
    pub neurons: Vec<String>,
    /// The SHA-256 of every shard counted, so that no shard is counted
    /// twice when files merge.
    pub shards: Vec<String>,
    /// The sums.
    pub stats: ClassStats,
}

impl Store {
    /// The class statistics of shards `shards` under `task` (the default
    /// task when `None`), of their training rows only when `train_only`.
    /// Reads a block of rows at a time.
    ///
    /// # Errors
    /// When the task or a shard is not in the store, or a shard cannot be
    /// read.
    pub fn class_stats(
        &self,
        task: Option<&str>,
        shards: Range<usize>,
        train_only: bool,
    ) -> Result<StatsFile> {
        let m = self.manifest();
        if shards.start > shards.end || shards.end > m.shards.len() {
            return Err(Error::input(format!(
                "shards {}..{} are not in the store {}, which has {} (numbered from 0)",
                shards.start,
                shards.end,
                self.dir().display(),
                m.shards.len()
            )));
        }
        let task = task.unwrap_or(&m.default_task).to_string();
        let entry = m.tasks.get(&task).ok_or_else(|| {
            Error::input(format!(
                "the store {} has no task `{task}`; `lca store info` lists its tasks",
                self.dir().display()
            ))
        })?;
        let labels = &self.rows_meta().labels[&task];
        let counted = match (train_only, m.splits) {
            (true, Some(splits)) => 0..splits.train,
            _ => 0..m.rows,
        };
        let mut stats = ClassStats::new(entry.classes.clone(), m.neurons.len());
        // The shards' rows that are counted (none when they lie past it).
        let first: usize = m.shards[..shards.start].iter().map(|s| s.rows).sum();
        let last = first
            + m.shards[shards.clone()]
                .iter()
                .map(|s| s.rows)
                .sum::<usize>();
        let start = first.max(counted.start);
        let rows = start..last.min(counted.end).max(start);
        self.for_each_block(rows, BLOCK_ROWS, |start, block| {
            let labels = &labels[start..start + block.nrows()];
            stats.merge(&ClassStats::of_rows(entry.classes.clone(), block, labels)?)
        })?;
        Ok(StatsFile {
            format: STATS_FORMAT.into(),
            task,
            train_only,
            neurons: m.neurons.clone(),
            shards: m.shards[shards].iter().map(|s| s.sha256.clone()).collect(),
            stats,
        })
    }
}

impl StatsFile {
    /// Adds the statistics of other shards of the same store and task.
    ///
    /// # Errors
    /// When the two cover a shard in common, or differ in task, split,
    /// neurons or classes.
    pub fn merge(&mut self, other: &StatsFile) -> Result<()> {
        if other.task != self.task
            || other.train_only != self.train_only
            || other.neurons != self.neurons
        {
            return Err(Error::input(format!(
                "statistics of task `{}` ({}, {} neurons) cannot be merged with those of task \
                 `{}` ({}, {} neurons): compute both from the same store, task and split",
                other.task,
                split_name(other.train_only),
                other.neurons.len(),
                self.task,
                split_name(self.train_only),
                self.neurons.len()
            )));
        }
        if let Some(twice) = other.shards.iter().find(|s| self.shards.contains(s)) {
            return Err(Error::input(format!(
                "the shard with SHA-256 {twice} is counted in both statistics; merge statistics \
                 of disjoint shard ranges only"
            )));
        }
        self.stats.merge(&other.stats)?;
        self.shards.extend(other.shards.iter().cloned());
        Ok(())
    }

    /// Reads a statistics file.
    ///
    /// # Errors
    /// When the file cannot be read or is not a statistics file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = io::read_utf8(path, "read the statistics file", "check the path")?;
        let file: StatsFile = serde_json::from_str(&text).map_err(|e| {
            Error::format(
                path,
                Some(e.line()),
                format!("not an lca statistics file: {e}; write it with `lca store stats`"),
            )
        })?;
        if file.format != STATS_FORMAT {
            return Err(Error::format(
                path,
                None,
                format!(
                    "its format is `{}`, and this lca reads `{STATS_FORMAT}`; compute it again",
                    file.format
                ),
            ));
        }
        let s = &file.stats;
        let k = s.classes.len();
        let consistent = s.neurons == file.neurons.len()
            && s.mean.len() == s.neurons
            && s.m2.len() == s.neurons
            && s.class_rows.len() == k
            && s.class_sums.len() == k * s.neurons
            && s.class_rows.iter().sum::<u64>() == s.rows;
        if !consistent {
            return Err(Error::format(
                path,
                None,
                "its sums do not fit its neurons and classes; compute it again with `lca store stats`",
            ));
        }
        Ok(file)
    }

    /// Writes the file atomically.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn write(&self, path: &Path) -> Result<()> {
        let json =
            serde_json::to_vec(self).map_err(|e| Error::input(format!("the statistics: {e}")))?;
        io::write_atomic(path, &json)
    }
}

fn split_name(train_only: bool) -> &'static str {
    if train_only {
        "training rows"
    } else {
        "all rows"
    }
}
