//! Network Dissection IoU from statistics that merge, in two passes.
//!
//! The `iou` ranker binarises each neuron at its own threshold, the k-th
//! largest of its N training activations (k = max(1, ⌈α·N⌉)), and compares
//! the mask with each class's tokens. Both halves merge exactly:
//!
//! 1. [`TopValues`]: the k largest values of each neuron over some rows.
//!    The k largest of a union are the k largest of the parts' k largest, so
//!    parts merge in any grouping into the same values, bit for bit. The
//!    threshold is the smallest of the k once all rows are merged.
//! 2. [`MaskCounts`]: given the thresholds, the number of rows in each
//!    neuron's mask, in total and per class. Counts add.
//!
//! Both passes read rows in blocks, so a matrix mapped from a store larger
//! than memory is read sequentially. [`TopValues`] holds k × neurons values:
//! with Network Dissection's α = 0.005 that is 0.5% of the matrix.
//!
//! The ranking ([`iou_ranking`]) is the `iou` ranker's, which calls the same
//! functions, so scores from merged statistics equal the in-memory ones.

use std::cmp::Ordering;

use ndarray::{ArrayView2, Axis};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::{NeuronRanking, RowBlocks};
use crate::error::{Error, Result};

/// Bytes of `f32` rows read at a time by the `of_matrix` functions here and
/// in `stats`: small enough to stay in cache while its columns are summed.
const BLOCK_BYTES: usize = 4 << 20;
/// Fewest rows per block, so that very wide matrices still merge few blocks.
const MIN_BLOCK_ROWS: usize = 64;
/// Rows one thread counts at a time in [`MaskCounts::push_rows`].
const COUNT_CHUNK_ROWS: usize = 512;

/// The size of each neuron's mask over `rows` rows at top fraction
/// `quantile`: `max(1, ⌈quantile · rows⌉)`, at most `rows`.
pub fn mask_size(quantile: f64, rows: usize) -> usize {
    ((quantile * rows as f64).ceil() as usize).clamp(1, rows.max(1))
}

/// The largest `k` values of each neuron over some rows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopValues {
    /// Values kept per neuron once `rows ≥ k`.
    pub k: usize,
    /// Neurons (columns).
    pub neurons: usize,
    /// Rows seen.
    pub rows: u64,
    /// Neuron-major: `held()` values per neuron, largest first (by
    /// `f32::total_cmp`). Written as `f64`, which holds every `f32` exactly.
    #[serde(with = "f32_as_f64")]
    pub values: Vec<f32>,
}

impl TopValues {
    /// The top values of no rows.
    pub fn new(k: usize, neurons: usize) -> Self {
        TopValues {
            k: k.max(1),
            neurons,
            rows: 0,
            values: Vec::new(),
        }
    }

    /// Values held per neuron: `min(k, rows)`.
    pub fn held(&self) -> usize {
        (self.rows.min(self.k as u64)) as usize
    }

    /// The top `k` values of each column of `block`.
    pub fn of_rows(k: usize, block: ArrayView2<'_, f32>) -> Self {
        let mut top = TopValuesBuilder::new(k, block.ncols());
        top.push_rows(block);
        top.finish()
    }

    /// The top `k` values of each column of `x`, read a block of rows at a
    /// time.
    pub fn of_matrix(k: usize, x: impl RowBlocks) -> Self {
        let mut top = TopValuesBuilder::new(k, x.shape().1);
        for_row_blocks(x, |_, block| {
            top.push_rows(block);
            Ok(())
        })
        .expect("pushing rows cannot fail");
        top.finish()
    }

    /// Adds the top values of other rows (disjoint from these).
    ///
    /// # Errors
    /// When the two keep a different number of values or neurons.
    pub fn merge(&mut self, other: &TopValues) -> Result<()> {
        if other.k != self.k || other.neurons != self.neurons {
            return Err(Error::input(format!(
                "the top {} values of {} neurons cannot be merged with the top {} values of {} \
                 neurons: they come from different data or quantiles",
                other.k, other.neurons, self.k, self.neurons
            )));
        }
        let (a, b) = (self.held(), other.held());
        let k = self.k;
        let merged: Vec<Vec<f32>> = (0..self.neurons)
            .into_par_iter()
            .map(|j| {
                merge_largest(
                    &self.values[j * a..(j + 1) * a],
                    &other.values[j * b..(j + 1) * b],
                    k,
                )
            })
            .collect();
        self.rows += other.rows;
        self.values = merged.concat();
        Ok(())
    }

    /// Each neuron's mask threshold: the smallest of its top values, the
    /// k-th largest once all rows are merged. `None` before any row.
    pub fn thresholds(&self) -> Option<Vec<f32>> {
        let held = self.held();
        (held > 0).then(|| {
            (0..self.neurons)
                .map(|j| self.values[(j + 1) * held - 1])
                .collect()
        })
    }

    /// Checks that the fields fit together, as after reading a file.
    ///
    /// # Errors
    /// When they do not.
    pub fn check(&self) -> Result<()> {
        let sorted = self.held() == 0
            || self.values.chunks(self.held()).all(|column| {
                column
                    .windows(2)
                    .all(|w| w[0].total_cmp(&w[1]) != Ordering::Less)
            });
        if self.k == 0 || self.values.len() != self.held() * self.neurons || !sorted {
            return Err(Error::input(format!(
                "the top values hold {} numbers for {} neurons, {} rows and k = {}, or are out of \
                 order; compute them again",
                self.values.len(),
                self.neurons,
                self.rows,
                self.k
            )));
        }
        Ok(())
    }
}

/// Gathers the top values of rows pushed a block at a time.
///
/// Each neuron's candidates go into a buffer of up to 2k values; a full
/// buffer is cut to its k largest, whose smallest then bars every value not
/// above it. Each value is handled a constant number of times on average,
/// whatever the block size.
#[derive(Clone, Debug)]
pub struct TopValuesBuilder {
    k: usize,
    rows: u64,
    buffers: Vec<Vec<f32>>,
    /// The k-th largest value of each neuron so far, once k are known.
    cutoffs: Vec<Option<f32>>,
}

impl TopValuesBuilder {
    /// A builder that keeps the `k` largest values of each of `neurons`.
    pub fn new(k: usize, neurons: usize) -> Self {
        TopValuesBuilder {
            k: k.max(1),
            rows: 0,
            buffers: vec![Vec::new(); neurons],
            cutoffs: vec![None; neurons],
        }
    }

    /// Takes more rows into account.
    ///
    /// # Panics
    /// When `block` has another number of columns.
    pub fn push_rows(&mut self, block: ArrayView2<'_, f32>) {
        assert_eq!(
            block.ncols(),
            self.buffers.len(),
            "a block of another width"
        );
        let k = self.k;
        self.buffers
            .par_iter_mut()
            .zip(self.cutoffs.par_iter_mut())
            .enumerate()
            .for_each(|(j, (buffer, cutoff))| {
                for &v in block.column(j) {
                    if cutoff.is_none_or(|c| v.total_cmp(&c) == Ordering::Greater) {
                        buffer.push(v);
                        if buffer.len() >= 2 * k {
                            buffer.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
                            buffer.truncate(k);
                            *cutoff = Some(buffer[k - 1]);
                        }
                    }
                }
            });
        self.rows += block.nrows() as u64;
    }

    /// The top values of the rows pushed.
    pub fn finish(self) -> TopValues {
        let k = self.k;
        let neurons = self.buffers.len();
        let columns: Vec<Vec<f32>> = self
            .buffers
            .into_par_iter()
            .map(|mut buffer| {
                largest_first(&mut buffer, k);
                buffer
            })
            .collect();
        let top = TopValues {
            k,
            neurons,
            rows: self.rows,
            values: columns.concat(),
        };
        debug_assert_eq!(top.values.len(), top.held() * neurons);
        top
    }
}

/// Sorts `values` largest first and keeps at most `k` of them.
fn largest_first(values: &mut Vec<f32>, k: usize) {
    if values.len() > k {
        values.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
        values.truncate(k);
    }
    values.sort_unstable_by(|a, b| b.total_cmp(a));
}

/// The `k` largest of two lists sorted largest first, largest first.
fn merge_largest(a: &[f32], b: &[f32], k: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(k.min(a.len() + b.len()));
    let (mut i, mut j) = (0, 0);
    while out.len() < k && (i < a.len() || j < b.len()) {
        let take_a = j == b.len() || (i < a.len() && a[i].total_cmp(&b[j]) != Ordering::Less);
        if take_a {
            out.push(a[i]);
            i += 1;
        } else {
            out.push(b[j]);
            j += 1;
        }
    }
    out
}

/// The rows of each neuron's mask (activation ≥ its threshold), in total
/// and per class.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MaskCounts {
    /// Class names; labels index them.
    pub classes: Vec<String>,
    /// Each neuron's threshold. Written as `f64`, which holds every `f32`.
    #[serde(with = "f32_as_f64")]
    pub thresholds: Vec<f32>,
    /// Rows seen.
    pub rows: u64,
    /// Rows seen per class.
    pub class_rows: Vec<u64>,
    /// Rows in each neuron's mask.
    pub mask_rows: Vec<u64>,
    /// Rows of each class in each neuron's mask, class-major
    /// (`classes × neurons`).
    pub inside: Vec<u64>,
}

impl MaskCounts {
    /// The counts of no rows.
    pub fn new(classes: Vec<String>, thresholds: Vec<f32>) -> Self {
        let (k, d) = (classes.len(), thresholds.len());
        MaskCounts {
            classes,
            thresholds,
            rows: 0,
            class_rows: vec![0; k],
            mask_rows: vec![0; d],
            inside: vec![0; k * d],
        }
    }

    /// Neurons (columns).
    pub fn neurons(&self) -> usize {
        self.thresholds.len()
    }

    /// Counts `block`'s rows, labelled by `labels`, into these.
    ///
    /// # Errors
    /// When the sizes disagree or a label is not a class.
    pub fn push_rows(&mut self, block: ArrayView2<'_, f32>, labels: &[u32]) -> Result<()> {
        if block.nrows() != labels.len() || block.ncols() != self.neurons() {
            return Err(Error::Shape {
                what: "a block of rows and its labels".into(),
                expected: format!("{} rows × {} neurons", labels.len(), self.neurons()),
                found: format!("{} × {}", block.nrows(), block.ncols()),
            });
        }
        let k = self.classes.len();
        if let Some(bad) = labels.iter().find(|&&l| l as usize >= k) {
            return Err(Error::input(format!(
                "label {bad} is not one of the {k} classes"
            )));
        }
        // Counts add exactly, so chunks of rows go to the threads, each
        // thread's job counts its chunks into one tally, and the tallies are
        // summed: the same result at any thread count.
        let part = block
            .axis_chunks_iter(Axis(0), COUNT_CHUNK_ROWS)
            .into_par_iter()
            .zip(labels.par_chunks(COUNT_CHUNK_ROWS))
            .fold(
                || MaskCounts::new(self.classes.clone(), self.thresholds.clone()),
                |mut part, (rows, labels)| {
                    part.count(rows, labels);
                    part
                },
            )
            .reduce_with(|mut a, b| {
                a.add(&b);
                a
            });
        if let Some(part) = part {
            self.add(&part);
        }
        Ok(())
    }

    /// Counts rows whose labels are known to be classes.
    fn count(&mut self, block: ArrayView2<'_, f32>, labels: &[u32]) {
        let d = self.neurons();
        for (row, &label) in block.axis_iter(Axis(0)).zip(labels) {
            self.class_rows[label as usize] += 1;
            let inside = &mut self.inside[label as usize * d..(label as usize + 1) * d];
            // Without branches, so that the loop vectorises.
            for (((&v, &t), mask), inside) in row
                .iter()
                .zip(&self.thresholds)
                .zip(&mut self.mask_rows)
                .zip(inside)
            {
                let hit = u64::from(v >= t);
                *mask += hit;
                *inside += hit;
            }
        }
        self.rows += labels.len() as u64;
    }

    /// Adds counts under the same classes and thresholds.
    fn add(&mut self, other: &MaskCounts) {
        self.rows += other.rows;
        for (a, b) in self
            .class_rows
            .iter_mut()
            .chain(&mut self.mask_rows)
            .chain(&mut self.inside)
            .zip(
                other
                    .class_rows
                    .iter()
                    .chain(&other.mask_rows)
                    .chain(&other.inside),
            )
        {
            *a += b;
        }
    }

    /// The counts of all of `x`'s rows, read a block of rows at a time.
    ///
    /// # Errors
    /// As [`Self::push_rows`].
    pub fn of_matrix(
        classes: Vec<String>,
        thresholds: Vec<f32>,
        x: impl RowBlocks,
        labels: &[u32],
    ) -> Result<Self> {
        let mut counts = MaskCounts::new(classes, thresholds);
        if x.shape().0 != labels.len() {
            // The shape error names the whole matrix, not a block.
            counts.push_rows(x.rows_f32(0..x.shape().0).view(), labels)?;
        }
        for_row_blocks(x, |start, block| {
            counts.push_rows(block, &labels[start..start + block.nrows()])
        })?;
        Ok(counts)
    }

    /// Adds the counts of other rows (disjoint from these).
    ///
    /// # Errors
    /// When the two differ in classes or thresholds.
    pub fn merge(&mut self, other: &MaskCounts) -> Result<()> {
        let same_thresholds = other.thresholds.len() == self.thresholds.len()
            && other
                .thresholds
                .iter()
                .zip(&self.thresholds)
                .all(|(a, b)| a.to_bits() == b.to_bits());
        if other.classes != self.classes || !same_thresholds {
            return Err(Error::input(
                "mask counts of different classes or thresholds cannot be merged: count every \
                 part with the thresholds of the same merged top values",
            ));
        }
        self.add(other);
        Ok(())
    }

    /// IoU of every neuron's mask with every class, `classes × neurons`:
    /// see [`mask_iou`].
    pub fn iou_scores(&self) -> Vec<Vec<f64>> {
        let d = self.neurons();
        let mut scores = vec![vec![0.0; d]; self.classes.len()];
        for j in 0..d {
            let inside: Vec<u64> = (0..self.classes.len())
                .map(|c| self.inside[c * d + j])
                .collect();
            let column = mask_iou(self.mask_rows[j], &inside, &self.class_rows, self.rows);
            for (row, s) in scores.iter_mut().zip(column) {
                row[j] = s;
            }
        }
        scores
    }

    /// Checks that the fields fit together, as after reading a file.
    ///
    /// # Errors
    /// When they do not.
    pub fn check(&self) -> Result<()> {
        let (k, d) = (self.classes.len(), self.neurons());
        let fits = self.class_rows.len() == k
            && self.mask_rows.len() == d
            && self.inside.len() == k * d
            && self.class_rows.iter().sum::<u64>() == self.rows
            && self.mask_rows.iter().all(|&m| m <= self.rows);
        if !fits {
            return Err(Error::input(format!(
                "the mask counts do not fit {k} classes and {d} neurons; count them again"
            )));
        }
        Ok(())
    }
}

/// IoU of one neuron's mask of `mask_rows` rows, `inside[c]` of them of
/// class `c`, with each class of `class_rows[c]` rows, out of `rows` rows:
/// `inside / (mask + class − inside)`. A mask holding every row (a constant
/// neuron, or one tied at its minimum on more than the quantile) separates
/// nothing and scores 0 for every class, as does an empty union.
pub fn mask_iou(mask_rows: u64, inside: &[u64], class_rows: &[u64], rows: u64) -> Vec<f64> {
    if mask_rows == rows {
        return vec![0.0; inside.len()];
    }
    inside
        .iter()
        .zip(class_rows)
        .map(|(&both, &class)| {
            let union = mask_rows + class - both;
            if union == 0 {
                0.0
            } else {
                both as f64 / union as f64
            }
        })
        .collect()
}

/// The `iou` ranker's ranking: by each neuron's best class IoU, one ranking
/// per class, and in the details the quantile, the detector IoU and per
/// class the neurons whose best class it is with IoU above `detector_iou`.
///
/// # Errors
/// When the scores do not fit the classes.
pub fn iou_ranking(
    per_class: Vec<Vec<f64>>,
    classes: &[String],
    quantile: f64,
    detector_iou: f64,
) -> Result<NeuronRanking> {
    let n = per_class.first().map_or(0, Vec::len);
    let overall: Vec<f64> = (0..n)
        .map(|j| per_class.iter().map(|row| row[j]).fold(0.0, f64::max))
        .collect();
    let mut detectors = vec![0usize; classes.len()];
    for (j, &best) in overall.iter().enumerate() {
        if best > detector_iou
            && let Some(c) = per_class.iter().position(|row| row[j] == best)
        {
            detectors[c] += 1;
        }
    }
    let mut details = serde_json::Map::new();
    details.insert("quantile".into(), quantile.into());
    details.insert("detector_iou".into(), detector_iou.into());
    details.insert(
        "detectors_per_class".into(),
        classes
            .iter()
            .zip(&detectors)
            .map(|(name, &count)| (name.clone(), serde_json::Value::from(count)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
    );
    Ok(NeuronRanking::from_class_scores(overall, per_class, classes)?.with_details(details))
}

/// Calls `f(first_row, block)` on blocks of about [`BLOCK_BYTES`] of `x`'s
/// rows, in order.
pub(crate) fn for_row_blocks(
    x: impl RowBlocks,
    mut f: impl FnMut(usize, ArrayView2<'_, f32>) -> Result<()>,
) -> Result<()> {
    let (rows, cols) = x.shape();
    let block_rows = (BLOCK_BYTES / (cols.max(1) * 4)).max(MIN_BLOCK_ROWS);
    for start in (0..rows).step_by(block_rows) {
        let end = (start + block_rows).min(rows);
        f(start, x.rows_f32(start..end).view())?;
    }
    Ok(())
}

/// `f32` values written as `f64`: JSON numbers read back as `f64` then
/// narrowed could round twice; an `f64` that holds an `f32` exactly cannot.
pub(crate) mod f32_as_f64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(values: &[f32], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(values.iter().map(|&v| f64::from(v)))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f32>, D::Error> {
        let wide = Vec::<f64>::deserialize(d)?;
        wide.into_iter()
            .map(|v| {
                let narrow = v as f32;
                if f64::from(narrow) == v || v.is_nan() {
                    Ok(narrow)
                } else {
                    Err(serde::de::Error::custom(format!(
                        "{v} is not a 32-bit float"
                    )))
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;
    use proptest::prelude::*;

    fn classes(k: usize) -> Vec<String> {
        (0..k).map(|c| format!("C{c}")).collect()
    }

    #[test]
    fn hand_computed_example() {
        // Neuron 0 is high on class 1; neuron 1 is constant; 8 rows, α = 0.25
        // gives masks of k = 2.
        let x = Array2::from_shape_vec(
            (8, 2),
            vec![
                0.1, 1.0, 0.2, 1.0, 0.3, 1.0, 0.4, 1.0, 0.9, 1.0, 0.8, 1.0, 0.5, 1.0, 0.0, 1.0,
            ],
        )
        .unwrap();
        let labels = [0, 0, 0, 0, 1, 1, 1, 0];
        let k = mask_size(0.25, 8);
        assert_eq!(k, 2);
        let top = TopValues::of_rows(k, x.view());
        assert_eq!(top.values, [0.9, 0.8, 1.0, 1.0]);
        let t = top.thresholds().unwrap();
        assert_eq!(t, [0.8, 1.0]);
        let counts = MaskCounts::of_matrix(classes(2), t, x.view(), &labels).unwrap();
        assert_eq!(counts.mask_rows, [2, 8]);
        assert_eq!(counts.inside, [0, 5, 2, 3]);
        let iou = counts.iou_scores();
        // Class 1 has 3 rows, the mask 2 of them: 2 / 3.
        assert_eq!(iou[1][0], 2.0 / 3.0);
        assert_eq!(iou[0][0], 0.0);
        assert_eq!(iou[1][1], 0.0, "a mask of every row scores 0");
        let ranking = iou_ranking(iou, &classes(2), 0.25, 0.5).unwrap();
        assert_eq!(ranking.order(), [0, 1]);
        assert_eq!(ranking.details()["detectors_per_class"]["C1"], 1);
    }

    #[test]
    fn the_top_values_keep_ties_and_signed_zeros() {
        let x = Array2::from_shape_vec((5, 1), vec![2.0, -0.0, 2.0, 0.0, 2.0]).unwrap();
        let top = TopValues::of_rows(4, x.view());
        assert_eq!(top.values[..3], [2.0, 2.0, 2.0]);
        assert_eq!(top.values[3].to_bits(), 0.0f32.to_bits());
        // Ties at the threshold all enter the mask.
        let t = TopValues::of_rows(1, x.view()).thresholds().unwrap();
        let counts = MaskCounts::of_matrix(classes(1), t, x.view(), &[0; 5]).unwrap();
        assert_eq!(counts.mask_rows, [3]);
    }

    #[test]
    fn mismatched_parts_do_not_merge() {
        let mut a = TopValues::new(3, 2);
        assert!(a.merge(&TopValues::new(4, 2)).is_err());
        let mut c = MaskCounts::new(classes(2), vec![0.0, 1.0]);
        assert!(
            c.merge(&MaskCounts::new(classes(2), vec![0.0, 2.0]))
                .is_err()
        );
        assert!(
            c.merge(&MaskCounts::new(classes(3), vec![0.0, 1.0]))
                .is_err()
        );
        let x = Array2::<f32>::zeros((2, 2));
        assert!(c.push_rows(x.view(), &[0, 5]).is_err());
    }

    #[test]
    fn values_round_trip_through_json_exactly() {
        let x = Array2::from_shape_vec((3, 2), vec![0.1, -1e-30, 3.4e38, -0.0, 1.0 / 3.0, 7.0])
            .unwrap();
        let top = TopValues::of_rows(2, x.view());
        let back: TopValues = serde_json::from_str(&serde_json::to_string(&top).unwrap()).unwrap();
        assert_eq!(
            back.values.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            top.values.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        back.check().unwrap();
        assert!(
            serde_json::from_str::<TopValues>(r#"{"k":1,"neurons":1,"rows":1,"values":[0.1]}"#)
                .is_err()
        );
    }

    /// The in-memory definition: threshold at the k-th largest, then count.
    fn direct_iou(
        x: &Array2<f32>,
        labels: &[u32],
        n_classes: usize,
        quantile: f64,
    ) -> Vec<Vec<f64>> {
        let n = x.nrows();
        let k = mask_size(quantile, n);
        let class_rows: Vec<u64> = (0..n_classes)
            .map(|c| labels.iter().filter(|&&l| l as usize == c).count() as u64)
            .collect();
        let mut scores = vec![vec![0.0; x.ncols()]; n_classes];
        for (j, original) in x.columns().into_iter().enumerate() {
            let mut column = original.to_vec();
            column.sort_by(|a, b| b.total_cmp(a));
            let t = column[k - 1];
            let mask: Vec<bool> = original.iter().map(|&v| v >= t).collect();
            let inside: Vec<u64> = (0..n_classes)
                .map(|c| {
                    (0..n)
                        .filter(|&i| mask[i] && labels[i] as usize == c)
                        .count() as u64
                })
                .collect();
            let m = mask.iter().filter(|&&b| b).count() as u64;
            for (c, s) in mask_iou(m, &inside, &class_rows, n as u64)
                .into_iter()
                .enumerate()
            {
                scores[c][j] = s;
            }
        }
        scores
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Parts of the rows, merged in any grouping, give one pass's top
        /// values and counts exactly, and the direct IoU.
        #[test]
        fn merging_in_any_grouping_gives_one_pass(
            rows in 1usize..60,
            neurons in 1usize..6,
            n_classes in 1usize..4,
            quantile in 0.01f64..1.0,
            cuts in proptest::collection::vec(0usize..60, 0..4),
            seed in 0u64..1000,
            coarse in any::<bool>(),
        ) {
            let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let mut next = || {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (state >> 33) as u32
            };
            // Coarse values make ties, at the threshold too.
            let x = Array2::from_shape_fn((rows, neurons), |_| {
                let v = next();
                if coarse { (v % 4) as f32 - 1.0 } else { (v as f32 / 1e9) - 2.0 }
            });
            let labels: Vec<u32> = (0..rows).map(|_| next() % n_classes as u32).collect();
            let k = mask_size(quantile, rows);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (rows + 1)).collect();
            cuts.extend([0, rows]);
            cuts.sort_unstable();
            let parts: Vec<(usize, usize)> = cuts.windows(2).map(|w| (w[0], w[1])).collect();
            let block = |a: usize, b: usize| x.slice_axis(Axis(0), ndarray::Slice::from(a..b));

            let whole = TopValues::of_matrix(k, x.view());
            let tops: Vec<TopValues> = parts.iter().map(|&(a, b)| TopValues::of_rows(k, block(a, b))).collect();
            // Left to right, and right to left.
            let mut left = TopValues::new(k, neurons);
            for t in &tops { left.merge(t).unwrap(); }
            let mut right = TopValues::new(k, neurons);
            for t in tops.iter().rev() { right.merge(t).unwrap(); }
            prop_assert_eq!(&left, &whole);
            prop_assert_eq!(&right, &whole);

            let t = whole.thresholds().unwrap();
            let one = MaskCounts::of_matrix(classes(n_classes), t.clone(), x.view(), &labels).unwrap();
            let mut merged = MaskCounts::new(classes(n_classes), t);
            for &(a, b) in parts.iter().rev() {
                let mut part = MaskCounts::new(classes(n_classes), merged.thresholds.clone());
                part.push_rows(block(a, b), &labels[a..b]).unwrap();
                merged.merge(&part).unwrap();
            }
            prop_assert_eq!(&merged, &one);
            prop_assert_eq!(one.iou_scores(), direct_iou(&x, &labels, n_classes, quantile));
        }
    }
}
