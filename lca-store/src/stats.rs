//! Class statistics of a store's shards, in files that merge: the scale-out
//! path. Each worker computes the statistics of some shards; any grouping of
//! merges gives the statistics of all of them, from which the correlation
//! and probeless rankings follow, and with two passes the IoU ranking (the
//! top values of each neuron first, then its mask counts under the merged
//! thresholds). The Gaussian ranking follows from class means and scatter
//! matrices of chosen neurons with a seeded row sample
//! ([`GaussianMoments`]), in the same one pass.

use std::ops::Range;
use std::path::Path;

use lca_core::data::{
    ApHistograms, ClassStats, GaussianMoments, MaskCounts, RowSample, TopValues, TopValuesBuilder,
    mask_size,
};
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
    /// The first IoU pass: each neuron's top values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iou_top: Option<IouTop>,
    /// The second IoU pass: each neuron's mask counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iou_masks: Option<IouMasks>,
    /// Class means and scatter matrices of some neurons, and a row sample:
    /// what the Gaussian ranking reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gaussian: Option<GaussianMoments>,
    /// Per neuron, tokens of each class per bin of its values: what NeuroX's
    /// average precision reads, with a bound on its error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_precision: Option<ApHistograms>,
}

/// What a statistics pass computes besides the class sums.
#[derive(Clone, Copy, Debug, Default)]
pub struct StatsParts<'a> {
    /// One of the IoU passes, or none.
    pub iou: IouPass<'a>,
    /// The Gaussian moments of some neurons.
    pub gaussian: Option<&'a GaussianPass>,
    /// Average-precision histograms: mantissa bits per bin and the
    /// threshold below which |x| counts as 0.
    pub average_precision: Option<(u8, f64)>,
}

/// What the Gaussian part of a statistics pass covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GaussianPass {
    /// The columns whose moments to sum (the ranking's candidates).
    pub neurons: Vec<usize>,
    /// Rows to draw for scoring candidates, over the whole store's rows
    /// counted.
    pub sample_rows: usize,
    /// The seed of the draw.
    pub seed: u64,
}

/// The top `⌈quantile · N⌉` values of each neuron, N the rows counted in
/// the whole store (not only in the shards of this file).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IouTop {
    /// The fraction of each neuron's rows in its mask.
    pub quantile: f64,
    /// The values.
    pub top: TopValues,
}

/// Each neuron's mask counts under the thresholds of merged [`IouTop`]s.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IouMasks {
    /// The fraction of each neuron's rows in its mask.
    pub quantile: f64,
    /// The counts.
    pub counts: MaskCounts,
}

/// Which IoU pass a statistics pass makes.
#[derive(Clone, Copy, Debug, Default)]
pub enum IouPass<'a> {
    /// Nothing more.
    #[default]
    None,
    /// The top values of each neuron, for masks of this top fraction.
    TopValues {
        /// The top fraction (Network Dissection's 0.005).
        quantile: f64,
    },
    /// The mask counts under the thresholds of these merged top values,
    /// which must cover every shard of the store.
    Masks(&'a StatsFile),
}

impl Store {
    /// The class statistics of shards `shards` under `task` (the default
    /// task when `None`), of their training rows only when `train_only`.
    /// Reads a block of rows at a time. `parts` adds one of the two IoU
    /// passes, the Gaussian moments and the average-precision histograms.
    ///
    /// # Errors
    /// When the task or a shard is not in the store, a shard cannot be
    /// read, or the top values of an IoU mask pass are not those of this
    /// store's task and split, merged over all its shards.
    pub fn class_stats(
        &self,
        task: Option<&str>,
        shards: Range<usize>,
        train_only: bool,
        parts: StatsParts<'_>,
    ) -> Result<StatsFile> {
        let StatsParts {
            iou,
            gaussian,
            average_precision,
        } = parts;
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
        let mut iou_top = match iou {
            IouPass::TopValues { quantile } => Some((
                quantile,
                TopValuesBuilder::new(mask_size(quantile, counted.len()), m.neurons.len()),
            )),
            _ => None,
        };
        let mut iou_masks = match iou {
            IouPass::Masks(file) => Some(IouMasks {
                quantile: file.iou_top.as_ref().map_or(0.0, |t| t.quantile),
                counts: MaskCounts::new(
                    entry.classes.clone(),
                    self.iou_thresholds(file, &task, train_only, counted.len())?,
                ),
            }),
            _ => None,
        };
        let mut moments = match gaussian {
            Some(pass) => Some(self.gaussian_moments(pass, &entry.classes, counted.len())?),
            None => None,
        };
        let mut histograms = match average_precision {
            Some((bits, threshold)) => Some(ApHistograms::new(
                entry.classes.clone(),
                m.neurons.len(),
                bits,
                threshold,
            )?),
            None => None,
        };
        let drawn = moments.as_ref().map_or_else(Vec::new, |m| {
            RowSample::draw(m.sample.seed, m.sample.population, m.sample.size)
        });
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
            if let Some((_, top)) = &mut iou_top {
                top.push_rows(block);
            }
            if let Some(iou) = &mut iou_masks {
                iou.counts.push_rows(block, labels)?;
            }
            if let Some(m) = &mut moments {
                m.push_rows(start as u64, block, labels, &drawn)?;
            }
            if let Some(h) = &mut histograms {
                h.push_rows(block, labels)?;
            }
            stats.merge(&ClassStats::of_rows(entry.classes.clone(), block, labels)?)
        })?;
        Ok(StatsFile {
            format: STATS_FORMAT.into(),
            task,
            train_only,
            neurons: m.neurons.clone(),
            shards: m.shards[shards].iter().map(|s| s.sha256.clone()).collect(),
            stats,
            iou_top: iou_top.map(|(quantile, top)| IouTop {
                quantile,
                top: top.finish(),
            }),
            iou_masks,
            gaussian: moments,
            average_precision: histograms,
        })
    }

    /// Empty Gaussian moments of `pass`'s neurons, checked against this
    /// store and the memory they take.
    fn gaussian_moments(
        &self,
        pass: &GaussianPass,
        classes: &[String],
        population: usize,
    ) -> Result<GaussianMoments> {
        let d = self.manifest().neurons.len();
        if let Some(&bad) = pass.neurons.iter().find(|&&j| j >= d) {
            return Err(Error::input(format!(
                "neuron {bad} is not in the store {}, which has {d} (numbered from 0); pick \
                 Gaussian neurons below {d}",
                self.dir().display()
            )));
        }
        let mut seen = vec![false; d];
        if let Some(&twice) = pass
            .neurons
            .iter()
            .find(|&&j| std::mem::replace(&mut seen[j], true))
        {
            return Err(Error::input(format!(
                "neuron {twice} is named twice among the Gaussian neurons; name each once"
            )));
        }
        let k = pass.neurons.len() as u64;
        let sample = pass.sample_rows.min(population) as u64;
        lca_core::memory::ensure_fits(
            &format!(
                "the Gaussian moments ({} classes × {k} × {k} neurons, and {sample} sampled rows)",
                classes.len()
            ),
            (classes.len() as u64)
                .checked_mul(k * (k + 1) / 2)
                .and_then(|v| v.checked_mul(8))
                .and_then(|v| v.checked_add(sample.checked_mul(k)?.checked_mul(4)?)),
            "name fewer Gaussian neurons (`--gaussian-neurons`), for example the top of a \
             correlation ranking",
        )?;
        Ok(GaussianMoments::new(
            classes.to_vec(),
            pass.neurons.clone(),
            pass.seed,
            population as u64,
            pass.sample_rows,
        ))
    }

    /// The mask thresholds from `file`'s top values, checked to be this
    /// store's, of `task` and the same split, over all `rows` counted rows.
    fn iou_thresholds(
        &self,
        file: &StatsFile,
        task: &str,
        train_only: bool,
        rows: usize,
    ) -> Result<Vec<f32>> {
        let m = self.manifest();
        let fix = "merge the files of `lca store stats --iou-quantile` over all the store's \
                   shards first, with the same task and split";
        let Some(iou) = &file.iou_top else {
            return Err(Error::input(format!(
                "the statistics given for the IoU thresholds hold no top values; {fix}"
            )));
        };
        let ours: Vec<&str> = m.shards.iter().map(|s| s.sha256.as_str()).collect();
        if file.task != task || file.train_only != train_only || file.neurons != m.neurons {
            return Err(Error::input(format!(
                "the IoU top values are of task `{}` ({}), and this pass counts task `{task}` \
                 ({}) of the store {}; {fix}",
                file.task,
                split_name(file.train_only),
                split_name(train_only),
                self.dir().display()
            )));
        }
        // Merged files count no shard twice, so all rows counted means
        // every shard that holds some of them.
        let foreign = file.shards.iter().any(|s| !ours.contains(&s.as_str()));
        if foreign || iou.top.rows != rows as u64 {
            return Err(Error::input(format!(
                "the IoU top values cover {} of the {rows} rows counted in the store {}{}; {fix}",
                iou.top.rows,
                self.dir().display(),
                if foreign {
                    ", and shards of another store"
                } else {
                    ""
                }
            )));
        }
        iou.top.thresholds().ok_or_else(|| {
            Error::input(format!(
                "the store {} has no rows to count under task `{task}` ({})",
                self.dir().display(),
                split_name(train_only)
            ))
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
        merge_part(
            &mut self.iou_top,
            &other.iou_top,
            |a, b| a.quantile == b.quantile,
            |a, b| a.top.merge(&b.top),
            "IoU top values (--iou-quantile) of the same quantile",
        )?;
        merge_part(
            &mut self.iou_masks,
            &other.iou_masks,
            |a, b| a.quantile == b.quantile,
            |a, b| a.counts.merge(&b.counts),
            "IoU mask counts (--iou-thresholds) from the same top values",
        )?;
        merge_part(
            &mut self.gaussian,
            &other.gaussian,
            |_, _| true,
            GaussianMoments::merge,
            "Gaussian moments (--gaussian-neurons)",
        )?;
        merge_part(
            &mut self.average_precision,
            &other.average_precision,
            |_, _| true,
            ApHistograms::merge,
            "average-precision histograms (--ap-bits)",
        )?;
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
        Self::from_json(&text, path)
    }

    /// Statistics from the text of a statistics file, checked as
    /// [`Self::read`] checks a file; `path` names where the text came from
    /// in messages.
    ///
    /// # Errors
    /// When the text is not a statistics file of this format.
    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        let file: StatsFile = serde_json::from_str(text).map_err(|e| {
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
            && s.class_rows.iter().sum::<u64>() == s.rows
            && s.min.len() == s.max.len()
            && (s.min.is_empty() || s.min.len() == s.neurons)
            && file.iou_top.as_ref().is_none_or(|t| {
                t.top.check().is_ok() && t.top.neurons == s.neurons && t.top.rows == s.rows
            })
            && file.iou_masks.as_ref().is_none_or(|m| {
                m.counts.check().is_ok()
                    && m.counts.neurons() == s.neurons
                    && m.counts.rows == s.rows
                    && m.counts.classes == s.classes
            })
            && file.gaussian.as_ref().is_none_or(|g| {
                g.check().is_ok()
                    && g.rows == s.rows
                    && g.classes == s.classes
                    && g.neurons.iter().all(|&j| j < s.neurons)
            })
            && file.average_precision.as_ref().is_none_or(|h| {
                h.check().is_ok()
                    && h.rows == s.rows
                    && h.classes == s.classes
                    && h.neurons.len() == s.neurons
            });
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
        io::write_atomic(path, &self.to_json()?)
    }

    /// The text of the statistics file.
    ///
    /// # Errors
    /// Only if a value cannot be written as JSON.
    pub fn to_json(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(|e| Error::input(format!("the statistics: {e}")))
    }
}

/// Merges an optional part of two files: both absent, or both present and
/// `compatible`; anything else is refused, naming what must match.
fn merge_part<T>(
    ours: &mut Option<T>,
    theirs: &Option<T>,
    compatible: impl Fn(&T, &T) -> bool,
    merge: impl Fn(&mut T, &T) -> Result<()>,
    what: &str,
) -> Result<()> {
    match (ours, theirs) {
        (None, None) => Ok(()),
        (Some(a), Some(b)) if compatible(a, b) => merge(a, b),
        _ => Err(Error::input(format!(
            "one statistics file holds {what} and the other does not: compute every part \
             with the same options"
        ))),
    }
}

fn split_name(train_only: bool) -> &'static str {
    if train_only {
        "training rows"
    } else {
        "all rows"
    }
}
