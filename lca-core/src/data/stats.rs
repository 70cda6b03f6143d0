//! Class statistics that can be computed in pieces and merged: the way
//! rankings scale past one pass over one machine's memory.
//!
//! [`ClassStats`] holds, for every neuron, the row count, mean and sum of
//! squared deviations (M2), and for every class its row count and the sum of
//! each neuron over its rows. That is enough for the correlation ranker
//! (Pearson r of each neuron with each class indicator) and the probeless
//! ranker (differences of class means). Statistics of disjoint row sets
//! merge with Chan, Golub and LeVeque's pairwise update, so shards processed
//! separately (on other threads, processes or machines) combine into the
//! statistics of all their rows, in any grouping.
//!
//! Sums are `f64`. Merging in a different grouping changes the last bits of
//! the sums, not the ranking, unless two neurons' scores agree to about
//! 1e-12 relative.

use ndarray::ArrayView2;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::masks::for_row_blocks;
use crate::data::{NeuronRanking, RowBlocks};
use crate::error::{Error, Result};

/// Columns one thread takes at a time in [`ClassStats::of_rows`].
const COLUMN_GROUP: usize = 64;

/// The sums of one group of columns of a block.
struct ColumnGroup {
    first: usize,
    mean: Vec<f64>,
    m2: Vec<f64>,
    min: Vec<f32>,
    max: Vec<f32>,
    /// `classes × columns of the group`.
    class_sums: Vec<f64>,
}

/// Mergeable per-neuron and per-class sums of some rows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassStats {
    /// Class names; labels index them.
    pub classes: Vec<String>,
    /// Neurons (columns).
    pub neurons: usize,
    /// Rows seen.
    pub rows: u64,
    /// Rows seen per class.
    pub class_rows: Vec<u64>,
    /// Mean of each neuron over the rows seen.
    pub mean: Vec<f64>,
    /// Sum of squared deviations from the mean, per neuron.
    pub m2: Vec<f64>,
    /// Sum of each neuron over each class's rows, class-major
    /// (`classes × neurons`).
    pub class_sums: Vec<f64>,
    /// Smallest value of each neuron (empty before any row, and in files
    /// written before it was kept): exact, so constant neurons are known.
    #[serde(default)]
    pub min: Vec<f32>,
    /// Largest value of each neuron (empty as `min`).
    #[serde(default)]
    pub max: Vec<f32>,
}

impl ClassStats {
    /// Statistics of no rows.
    pub fn new(classes: Vec<String>, neurons: usize) -> Self {
        let k = classes.len();
        ClassStats {
            classes,
            neurons,
            rows: 0,
            class_rows: vec![0; k],
            mean: vec![0.0; neurons],
            m2: vec![0.0; neurons],
            class_sums: vec![0.0; k * neurons],
            min: Vec::new(),
            max: Vec::new(),
        }
    }

    /// Statistics of `block`'s rows, labelled by `labels`.
    ///
    /// # Errors
    /// When the sizes disagree or a label is not a class.
    pub fn of_rows(
        classes: Vec<String>,
        block: ArrayView2<'_, f32>,
        labels: &[u32],
    ) -> Result<Self> {
        let mut stats = ClassStats::new(classes, block.ncols());
        if block.nrows() != labels.len() {
            return Err(Error::Shape {
                what: "labels of a block of rows".into(),
                expected: block.nrows().to_string(),
                found: labels.len().to_string(),
            });
        }
        let k = stats.classes.len();
        if let Some(bad) = labels.iter().find(|&&l| l as usize >= k) {
            return Err(Error::input(format!(
                "label {bad} is not one of the {k} classes"
            )));
        }
        let n = block.nrows();
        if n == 0 {
            return Ok(stats);
        }
        stats.rows = n as u64;
        for &l in labels {
            stats.class_rows[l as usize] += 1;
        }
        // Columns are independent: groups of them go to the threads, and
        // each column is summed in row order by one thread, so the result
        // does not depend on the thread count.
        let d = stats.neurons;
        let groups: Vec<ColumnGroup> = (0..d)
            .step_by(COLUMN_GROUP)
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|first| {
                let columns = first..(first + COLUMN_GROUP).min(d);
                let mut group = ColumnGroup {
                    first,
                    mean: Vec::with_capacity(columns.len()),
                    m2: Vec::with_capacity(columns.len()),
                    min: Vec::with_capacity(columns.len()),
                    max: Vec::with_capacity(columns.len()),
                    class_sums: vec![0.0; k * columns.len()],
                };
                let width = columns.len();
                for (i, j) in columns.enumerate() {
                    let column = block.column(j);
                    let mut sum = 0.0f64;
                    let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
                    for (&v, &l) in column.iter().zip(labels) {
                        sum += f64::from(v);
                        group.class_sums[l as usize * width + i] += f64::from(v);
                        lo = lo.min(v);
                        hi = hi.max(v);
                    }
                    let mean = sum / n as f64;
                    // Deviations from the block's own mean: no cancellation
                    // on activations with a large offset.
                    group
                        .m2
                        .push(column.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum());
                    group.mean.push(mean);
                    group.min.push(lo);
                    group.max.push(hi);
                }
                group
            })
            .collect();
        stats.min = vec![0.0; d];
        stats.max = vec![0.0; d];
        for group in groups {
            let width = group.mean.len();
            let at = group.first..group.first + width;
            stats.min[at.clone()].copy_from_slice(&group.min);
            stats.max[at.clone()].copy_from_slice(&group.max);
            stats.mean[at.clone()].copy_from_slice(&group.mean);
            stats.m2[at].copy_from_slice(&group.m2);
            for c in 0..k {
                let to = c * d + group.first;
                stats.class_sums[to..to + width]
                    .copy_from_slice(&group.class_sums[c * width..(c + 1) * width]);
            }
        }
        Ok(stats)
    }

    /// Statistics of all of `x`'s rows, read a block of rows at a time and
    /// merged in row order: the same result at any thread count, and a
    /// matrix mapped from disk is read sequentially, never column by column
    /// across all of it, so it may be larger than memory.
    ///
    /// # Errors
    /// As [`Self::of_rows`].
    pub fn of_matrix(classes: Vec<String>, x: impl RowBlocks, labels: &[u32]) -> Result<Self> {
        let (rows, cols) = x.shape();
        let mut stats = ClassStats::new(classes.clone(), cols);
        if rows != labels.len() {
            // The shape error names the whole matrix, not a block.
            return ClassStats::of_rows(classes, x.rows_f32(0..rows).view(), labels);
        }
        for_row_blocks(x, |start, block| {
            stats.merge(&ClassStats::of_rows(
                classes.clone(),
                block,
                &labels[start..start + block.nrows()],
            )?)
        })?;
        Ok(stats)
    }

    /// Adds the statistics of other rows (disjoint from these).
    ///
    /// # Errors
    /// When the two describe different classes or neuron counts.
    pub fn merge(&mut self, other: &ClassStats) -> Result<()> {
        if other.classes != self.classes || other.neurons != self.neurons {
            return Err(Error::input(format!(
                "statistics of {} neurons and classes [{}] cannot be merged with statistics of \
                 {} neurons and classes [{}]: they come from different data or tasks",
                other.neurons,
                other.classes.join(", "),
                self.neurons,
                self.classes.join(", ")
            )));
        }
        if other.rows == 0 {
            return Ok(());
        }
        if self.rows == 0 {
            *self = other.clone();
            return Ok(());
        }
        let (na, nb) = (self.rows as f64, other.rows as f64);
        let n = na + nb;
        for j in 0..self.neurons {
            let delta = other.mean[j] - self.mean[j];
            self.mean[j] += delta * nb / n;
            self.m2[j] += other.m2[j] + delta * delta * na * nb / n;
        }
        self.rows += other.rows;
        for (a, b) in self.class_rows.iter_mut().zip(&other.class_rows) {
            *a += b;
        }
        for (a, b) in self.class_sums.iter_mut().zip(&other.class_sums) {
            *a += b;
        }
        // Extremes are known only when both parts kept them.
        if self.min.is_empty() || other.min.is_empty() {
            self.min.clear();
            self.max.clear();
        } else {
            self.min
                .iter_mut()
                .zip(&other.min)
                .for_each(|(a, &b)| *a = a.min(b));
            self.max
                .iter_mut()
                .zip(&other.max)
                .for_each(|(a, &b)| *a = a.max(b));
        }
        Ok(())
    }

    /// The neurons constant over the rows counted (smallest value equal to
    /// the largest), which a run ranks last whatever their score; `None`
    /// when the extremes were not kept (a file from an older `lca`), and
    /// every neuron when no row was counted.
    pub fn constant_neurons(&self) -> Option<Vec<u32>> {
        if self.rows == 0 {
            return Some((0..self.neurons as u32).collect());
        }
        if self.min.len() != self.neurons {
            return None;
        }
        Some(
            (0..self.neurons)
                .filter(|&j| self.min[j] >= self.max[j])
                .map(|j| j as u32)
                .collect(),
        )
    }

    /// The mean of each neuron over each class's rows; `None` for a class
    /// with no rows.
    pub fn class_means(&self) -> Vec<Option<Vec<f64>>> {
        (0..self.classes.len())
            .map(|c| {
                let count = self.class_rows[c];
                (count > 0).then(|| {
                    self.class_sums[c * self.neurons..(c + 1) * self.neurons]
                        .iter()
                        .map(|s| s / count as f64)
                        .collect()
                })
            })
            .collect()
    }

    /// Pearson r of each neuron with each class indicator,
    /// `classes × neurons`: see [`class_correlation`].
    pub fn correlations(&self) -> Vec<Vec<f64>> {
        let n = self.rows as usize;
        let means = self.class_means();
        (0..self.classes.len())
            .map(|c| {
                (0..self.neurons)
                    .map(|j| {
                        let sd = (self.m2[j] / n.max(1) as f64).sqrt();
                        let class_mean = means[c].as_ref().map_or(0.0, |m| m[j]);
                        class_correlation(
                            class_mean,
                            self.mean[j],
                            sd,
                            self.class_rows[c] as usize,
                            n,
                        )
                    })
                    .collect()
            })
            .collect()
    }

    /// The `correlation` ranker's ranking: by max over classes of |r| (of
    /// r when `signed`), with one ranking per class.
    ///
    /// # Errors
    /// When fewer than two classes have rows.
    pub fn correlation_ranking(&self, signed: bool) -> Result<NeuronRanking> {
        self.require_two_classes()?;
        let mut per_class = self.correlations();
        if !signed {
            per_class.iter_mut().flatten().for_each(|r| *r = r.abs());
        }
        NeuronRanking::by_best_class(per_class, &self.classes)
    }

    /// The `probeless` ranker's ranking: see [`probeless_scores`].
    ///
    /// # Errors
    /// When fewer than two classes have rows.
    pub fn probeless_ranking(&self) -> Result<NeuronRanking> {
        self.require_two_classes()?;
        let (per_class, overall) = probeless_scores(&self.class_means(), self.neurons);
        NeuronRanking::from_class_scores(overall, per_class, &self.classes)
    }

    fn require_two_classes(&self) -> Result<()> {
        let present = self.class_rows.iter().filter(|&&c| c > 0).count();
        if present < 2 {
            return Err(Error::input(format!(
                "the statistics cover {} row(s) of {present} class(es); ranking neurons by \
                 class needs rows of at least two classes",
                self.rows
            )));
        }
        Ok(())
    }
}

/// Pearson r between a neuron and the indicator of a class:
/// `(μ_c − μ) · sqrt(p / (1 − p)) / σ`, with `p = count / n`. 0 for a
/// neuron that does not vary, and for a class with no rows or all of them.
pub fn class_correlation(class_mean: f64, mean: f64, sd: f64, count: usize, n: usize) -> f64 {
    if count == 0 || count == n || sd <= f64::EPSILON * mean.abs().max(1.0) {
        return 0.0;
    }
    let p = count as f64 / n as f64;
    ((class_mean - mean) * (p / (1.0 - p)).sqrt() / sd).clamp(-1.0, 1.0)
}

/// The probeless scores from class means (`None` for a class without rows,
/// which takes part in no sum): per class `s_zj = Σ_{c ≠ z} |μ_zj − μ_cj|`,
/// overall `s_j = Σ_{c < c'} |μ_cj − μ_c'j|`.
pub fn probeless_scores(means: &[Option<Vec<f64>>], n_neurons: usize) -> (Vec<Vec<f64>>, Vec<f64>) {
    let present: Vec<(usize, &Vec<f64>)> = means
        .iter()
        .enumerate()
        .filter_map(|(c, m)| m.as_ref().map(|m| (c, m)))
        .collect();
    let mut per_class = vec![vec![0.0f64; n_neurons]; means.len()];
    let mut overall = vec![0.0f64; n_neurons];
    for (a, &(ca, ma)) in present.iter().enumerate() {
        for &(cb, mb) in &present[a + 1..] {
            for j in 0..n_neurons {
                let gap = (ma[j] - mb[j]).abs();
                per_class[ca][j] += gap;
                per_class[cb][j] += gap;
                overall[j] += gap;
            }
        }
    }
    (per_class, overall)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::merge_testing::{merged_in_order, merged_in_pairs, row_parts};
    use ndarray::{Array2, Axis, Slice};
    use proptest::prelude::*;

    #[test]
    fn constant_neurons_are_known_exactly_across_merges() {
        // Neuron 0 is 0.1 everywhere (its mean is not exactly 0.1), neuron 1
        // varies in the second half only, neuron 2 everywhere.
        let x = Array2::from_shape_fn((10, 3), |(r, j)| match j {
            0 => 0.1f32,
            1 => {
                if r < 5 {
                    2.0
                } else {
                    r as f32
                }
            }
            _ => r as f32,
        });
        let y = vec![0u32, 1, 0, 1, 0, 1, 0, 1, 0, 1];
        let names = vec!["a".to_string(), "b".to_string()];
        let first = ClassStats::of_rows(
            names.clone(),
            x.slice_axis(Axis(0), Slice::from(0..5)),
            &y[..5],
        )
        .unwrap();
        assert_eq!(first.constant_neurons(), Some(vec![0, 1]));
        let mut merged = first.clone();
        merged
            .merge(
                &ClassStats::of_rows(
                    names.clone(),
                    x.slice_axis(Axis(0), Slice::from(5..10)),
                    &y[5..],
                )
                .unwrap(),
            )
            .unwrap();
        assert_eq!(merged.constant_neurons(), Some(vec![0]));
        assert_eq!(
            ClassStats::new(names.clone(), 3).constant_neurons(),
            Some(vec![0, 1, 2])
        );
        // A file from before the extremes were kept: unknown, and merging
        // it leaves them unknown.
        let mut old = first.clone();
        old.min.clear();
        old.max.clear();
        assert_eq!(old.constant_neurons(), None);
        merged.merge(&old).unwrap();
        assert_eq!(merged.constant_neurons(), None);
    }

    fn classes(k: usize) -> Vec<String> {
        (0..k).map(|c| format!("C{c}")).collect()
    }

    #[test]
    fn hand_computed_example() {
        // Neuron 0: 1, 3 on class 0 and 5, 7 on class 1; neuron 1 constant.
        let x =
            Array2::from_shape_vec((4, 2), vec![1.0, 2.0, 3.0, 2.0, 5.0, 2.0, 7.0, 2.0]).unwrap();
        let stats = ClassStats::of_rows(classes(2), x.view(), &[0, 0, 1, 1]).unwrap();
        assert_eq!(stats.mean, [4.0, 2.0]);
        assert_eq!(stats.m2, [20.0, 0.0]);
        assert_eq!(stats.class_means()[0], Some(vec![2.0, 2.0]));
        // r = (2 − 4) · sqrt(0.5 / 0.5) / sqrt(5) for class 0.
        let r = stats.correlations();
        assert!((r[0][0] + 2.0 / 5f64.sqrt()).abs() < 1e-15);
        assert!((r[1][0] - 2.0 / 5f64.sqrt()).abs() < 1e-15);
        assert_eq!(r[0][1], 0.0, "a constant neuron scores 0");
        let (per_class, overall) = probeless_scores(&stats.class_means(), 2);
        assert_eq!(overall, [4.0, 0.0]);
        assert_eq!(per_class[1], [4.0, 0.0]);
        assert_eq!(stats.correlation_ranking(false).unwrap().order(), [0, 1]);
    }

    #[test]
    fn one_class_is_an_error_and_different_tasks_do_not_merge() {
        let x = Array2::<f32>::zeros((3, 2));
        let stats = ClassStats::of_rows(classes(2), x.view(), &[1, 1, 1]).unwrap();
        let err = stats.probeless_ranking().unwrap_err().to_string();
        assert!(err.contains("at least two classes"), "{err}");
        let mut other = ClassStats::new(classes(3), 2);
        assert!(other.merge(&stats).is_err());
        assert!(ClassStats::of_rows(classes(2), x.view(), &[0, 2, 1]).is_err());
    }

    #[test]
    fn a_matrix_read_in_blocks_matches_one_pass_at_any_thread_count() {
        // 150 columns span three column groups; 30,000 rows of 150 columns
        // span several row blocks. Values sit on a large offset, where a
        // naive sum of squares would cancel.
        let (rows, cols) = (30_000, 150);
        let x = Array2::from_shape_fn((rows, cols), |(r, c)| {
            1000.0 + ((r * 31 + c * 17) % 97) as f32 * 0.01 + (r % 5 == c % 5) as u8 as f32
        });
        let labels: Vec<u32> = (0..rows).map(|r| (r % 5) as u32).collect();
        let in_pool = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| ClassStats::of_matrix(classes(5), x.view(), &labels).unwrap())
        };
        let blocked = in_pool(1);
        assert_eq!(blocked, in_pool(3), "bit-identical at 1 and 3 threads");
        assert_eq!(blocked.rows, rows as u64);
        for j in 0..cols {
            let column: Vec<f64> = x.column(j).iter().map(|&v| f64::from(v)).collect();
            let mean = column.iter().sum::<f64>() / rows as f64;
            let m2: f64 = column.iter().map(|v| (v - mean).powi(2)).sum();
            assert!((blocked.mean[j] - mean).abs() < 1e-9 * mean, "mean of {j}");
            assert!((blocked.m2[j] - m2).abs() < 1e-9 * m2, "M2 of {j}");
        }
        let r = blocked.correlations();
        // Columns 0 and 5 carry class 0 (rows r % 5 == 0 get +1).
        assert!(r[0][0] > 0.5 && r[0][5] > 0.5, "{} {}", r[0][0], r[0][5]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Statistics of row blocks merged in any grouping (left to right,
        /// or pairs first) give one pass's sums to rounding, and the same
        /// rankings.
        #[test]
        fn merging_in_any_grouping_gives_the_one_pass_ranking(
            seed in 0u64..10_000,
            rows in 8usize..120,
            cuts in proptest::collection::vec(1usize..119, 0..6),
            offset in -100.0f32..100.0,
        ) {
            let mut rng = crate::rng::Rng::new(seed);
            let neurons = 7;
            let labels: Vec<u32> = (0..rows).map(|r| (r % 3) as u32).collect();
            let x = Array2::from_shape_fn((rows, neurons), |(r, j)| {
                offset + rng.normal() as f32 + if j == labels[r] as usize { 1.5 } else { 0.0 }
            });
            let one = ClassStats::of_rows(classes(3), x.view(), &labels).unwrap();
            let parts: Vec<ClassStats> = row_parts(&cuts, rows)
                .into_iter()
                .map(|part| {
                    ClassStats::of_rows(classes(3), x.slice_axis(Axis(0), Slice::from(part.clone())), &labels[part])
                        .unwrap()
                })
                .collect();
            let left = merged_in_order(parts.clone(), false, |a, b| a.merge(b).unwrap());
            let pairs = merged_in_pairs(parts, |a, b| a.merge(b).unwrap());
            for merged in [&left, &pairs] {
                prop_assert_eq!(merged.rows, one.rows);
                prop_assert_eq!(&merged.class_rows, &one.class_rows);
                for j in 0..neurons {
                    let scale = one.m2[j].abs().max(1.0);
                    prop_assert!((merged.m2[j] - one.m2[j]).abs() <= 1e-9 * scale);
                    prop_assert!((merged.mean[j] - one.mean[j]).abs() <= 1e-9 * one.mean[j].abs().max(1.0));
                }
                let order = |r: Result<NeuronRanking>| r.unwrap().order().to_vec();
                prop_assert_eq!(
                    order(merged.correlation_ranking(false)),
                    order(one.correlation_ranking(false))
                );
                prop_assert_eq!(
                    order(merged.probeless_ranking()),
                    order(one.probeless_ranking())
                );
            }
        }
    }
}
