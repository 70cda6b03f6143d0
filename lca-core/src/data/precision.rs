//! NeuroX's average precision from histograms that merge, with a certified
//! error bound.
//!
//! The `iou_neurox` ranker scores neuron *j* for class *c* by the average
//! precision of the tokens ranked by the neuron's activation (|x| below a
//! threshold read as 0), one step of the curve per distinct value:
//! `AP = Σ_steps (p_s / P) · TP_s / seen_s`. That needs each neuron's values
//! in one sorted order with their labels; no summary smaller than the column
//! holds it exactly. [`ApHistograms`] keeps instead, per neuron, how many
//! tokens of each class fall in each bin of a fixed, data-independent grid:
//! the bins are the values' `f32` bit patterns cut to `bits` mantissa bits
//! (2^bits bins per octave, so a bin is at most 2^−bits of its values
//! wide; 23 bits give one bin per distinct value). Counts add, so parts
//! merge exactly in any grouping.
//!
//! Bins are ordered as their values, so the only unknown is the order
//! within a bin. With `a` tokens of the class and `b` tokens in all above a
//! bin that holds `p` of the class and `q` others, the bin adds to `AP · P`:
//!
//! ```text
//! tied (the AP of the binned values)   p · (a + p) / (b + p + q)
//! at least (the others first, ranked)  Σ_{i=1..p} (a + i) / (b + q + i)
//! at most (the class first, tied)      p · (a + p) / (b + p)
//! ```
//!
//! and the AP of the exact values, however they order and tie within each
//! bin, lies between the sums of the bounds. A bin that holds one value
//! (the zero bin, and every bin at 23 bits) adds its tied value to both. The score is the tied value,
//! which is the exact AP when each bin holds one distinct value; the
//! bounds say how far it may be from the exact one.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::NeuronRanking;
use crate::error::{Error, Result};

/// The `iou_neurox` ranking from per-class average precisions
/// (`per_class[c][j]`): overall, the class `positive`'s AP, or each
/// neuron's best; the details name which, and the threshold.
///
/// # Errors
/// When the scores do not fit the classes or are not finite.
pub fn average_precision_ranking(
    per_class: Vec<Vec<f64>>,
    classes: &[String],
    positive: Option<usize>,
    threshold: f64,
) -> Result<NeuronRanking> {
    let n = per_class.first().map_or(0, Vec::len);
    let overall: Vec<f64> = match positive {
        Some(c) => per_class[c].clone(),
        None => (0..n)
            .map(|j| per_class.iter().map(|row| row[j]).fold(0.0, f64::max))
            .collect(),
    };
    let mut details = serde_json::Map::new();
    details.insert("threshold".into(), threshold.into());
    details.insert(
        "overall".into(),
        match positive {
            Some(c) => format!("average precision for class {}", classes[c]),
            None => "best average precision over classes".into(),
        }
        .into(),
    );
    Ok(NeuronRanking::from_class_scores(overall, per_class, classes)?.with_details(details))
}

/// Tokens of each class per bin of each neuron, over some rows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApHistograms {
    /// Class names; labels index them.
    pub classes: Vec<String>,
    /// Mantissa bits kept in a bin's key (0 to 23).
    pub bits: u8,
    /// Activations with |x| below this count as 0.
    pub threshold: f64,
    /// Rows seen.
    pub rows: u64,
    /// Rows seen per class.
    pub class_rows: Vec<u64>,
    /// Smallest value of each neuron after the threshold (empty before any
    /// row): a neuron with one value scores 0, as in the ranker.
    pub min: Vec<f32>,
    /// Largest value of each neuron after the threshold.
    pub max: Vec<f32>,
    /// Each neuron's bins.
    pub neurons: Vec<NeuronBins>,
}

/// One neuron's counts: entries sorted by bin key, then class.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NeuronBins {
    /// Bin keys, increasing with the values they hold.
    pub keys: Vec<i32>,
    /// The class of each entry.
    pub classes: Vec<u32>,
    /// Tokens of that class in that bin.
    pub counts: Vec<u64>,
}

/// Average precision per class and neuron, with bounds on the exact one.
#[derive(Clone, Debug, PartialEq)]
pub struct ApScores {
    /// The AP of the binned values, `[class][neuron]`.
    pub ap: Vec<Vec<f64>>,
    /// A lower bound on the AP of the exact values.
    pub lower: Vec<Vec<f64>>,
    /// An upper bound on it.
    pub upper: Vec<Vec<f64>>,
}

/// The value the ranker scores: |x| below `threshold` reads as 0.
fn thresholded(v: f32, threshold: f64) -> f32 {
    if f64::from(v.abs()) < threshold {
        0.0
    } else {
        v
    }
}

/// The bin of a thresholded value: 0 for zero, and the bit pattern of |v|
/// cut to `bits` mantissa bits, plus one and signed, otherwise. Keys order
/// as the values do.
fn bin_key(v: f32, bits: u8) -> i32 {
    if v == 0.0 {
        return 0;
    }
    let magnitude = (v.abs().to_bits() >> (23 - u32::from(bits))) as i32 + 1;
    if v > 0.0 { magnitude } else { -magnitude }
}

/// Σ_{i=1..p} (a + i) / (b + i) for a ≤ b: directly for small p, else as
/// p − (b − a)·(H(b + p) − H(b)) with harmonic numbers from the digamma
/// function.
fn ratio_sum(a: f64, b: f64, p: u64) -> f64 {
    if p <= 64 {
        return (1..=p).map(|i| (a + i as f64) / (b + i as f64)).sum();
    }
    let p = p as f64;
    p - (b - a) * (digamma(b + p + 1.0) - digamma(b + 1.0))
}

/// ψ(x) for x ≥ 1: the recurrence up to 10, then the asymptotic series.
fn digamma(mut x: f64) -> f64 {
    let mut shift = 0.0;
    while x < 10.0 {
        shift -= 1.0 / x;
        x += 1.0;
    }
    let x2 = 1.0 / (x * x);
    shift + x.ln()
        - 0.5 / x
        - x2 * (1.0 / 12.0 - x2 * (1.0 / 120.0 - x2 * (1.0 / 252.0 - x2 * (1.0 / 240.0))))
}

impl ApHistograms {
    /// Histograms of no rows for `neurons` neurons.
    ///
    /// # Errors
    /// When `bits` is above 23 or `threshold` is negative or not finite.
    pub fn new(classes: Vec<String>, neurons: usize, bits: u8, threshold: f64) -> Result<Self> {
        if bits > 23 {
            return Err(Error::input(format!(
                "{bits} mantissa bits is more than an f32 has; give 0 to 23"
            )));
        }
        if !(threshold.is_finite() && threshold >= 0.0) {
            return Err(Error::input(format!(
                "the average-precision threshold {threshold} is not a number of at least 0"
            )));
        }
        Ok(ApHistograms {
            class_rows: vec![0; classes.len()],
            classes,
            bits,
            threshold,
            rows: 0,
            min: Vec::new(),
            max: Vec::new(),
            neurons: vec![NeuronBins::default(); neurons],
        })
    }

    /// Adds the rows of `block` (one column per neuron) with their labels.
    ///
    /// # Errors
    /// When the block's width or the labels do not fit, or a label is not a
    /// class.
    pub fn push_rows(&mut self, block: ndarray::ArrayView2<'_, f32>, labels: &[u32]) -> Result<()> {
        let c = self.classes.len();
        if block.ncols() != self.neurons.len() || labels.len() != block.nrows() {
            return Err(Error::input(format!(
                "a block of {} × {} with {} labels does not fit histograms of {} neurons",
                block.nrows(),
                block.ncols(),
                labels.len(),
                self.neurons.len()
            )));
        }
        if let Some(&bad) = labels.iter().find(|&&l| l as usize >= c) {
            return Err(Error::input(format!(
                "label id {bad} is not one of the {c} classes"
            )));
        }
        if block.nrows() == 0 {
            return Ok(());
        }
        let (bits, threshold) = (self.bits, self.threshold);
        if self.min.is_empty() {
            self.min = vec![f32::INFINITY; self.neurons.len()];
            self.max = vec![f32::NEG_INFINITY; self.neurons.len()];
        }
        self.neurons
            .par_iter_mut()
            .zip(self.min.par_iter_mut().zip(self.max.par_iter_mut()))
            .enumerate()
            .for_each(|(j, (bins, (lo, hi)))| {
                let mut part: Vec<(i32, u32)> = block
                    .column(j)
                    .iter()
                    .zip(labels)
                    .map(|(&v, &y)| {
                        let v = thresholded(v, threshold);
                        *lo = lo.min(v);
                        *hi = hi.max(v);
                        (bin_key(v, bits), y)
                    })
                    .collect();
                part.sort_unstable();
                let mut counted = NeuronBins::default();
                for (key, class) in part {
                    if counted.keys.last() == Some(&key) && counted.classes.last() == Some(&class) {
                        *counted.counts.last_mut().expect("an entry") += 1;
                    } else {
                        counted.keys.push(key);
                        counted.classes.push(class);
                        counted.counts.push(1);
                    }
                }
                *bins = bins.merged(&counted);
            });
        for &l in labels {
            self.class_rows[l as usize] += 1;
        }
        self.rows += labels.len() as u64;
        Ok(())
    }

    /// Adds the histograms of other, disjoint rows.
    ///
    /// # Errors
    /// When the two differ in classes, neurons, bits or threshold.
    pub fn merge(&mut self, other: &ApHistograms) -> Result<()> {
        if other.classes != self.classes
            || other.neurons.len() != self.neurons.len()
            || other.bits != self.bits
            || other.threshold != self.threshold
        {
            return Err(Error::input(format!(
                "average-precision histograms of {} bits, threshold {} cannot be merged with \
                 those of {} bits, threshold {} (or their classes or neurons differ); compute \
                 both with the same `--ap-bits` and `--ap-threshold`",
                other.bits, other.threshold, self.bits, self.threshold
            )));
        }
        self.neurons
            .par_iter_mut()
            .zip(&other.neurons)
            .for_each(|(ours, theirs)| *ours = ours.merged(theirs));
        if self.min.is_empty() {
            self.min.clone_from(&other.min);
            self.max.clone_from(&other.max);
        } else if !other.min.is_empty() {
            self.min
                .iter_mut()
                .zip(&other.min)
                .for_each(|(a, &b)| *a = a.min(b));
            self.max
                .iter_mut()
                .zip(&other.max)
                .for_each(|(a, &b)| *a = a.max(b));
        }
        for (a, b) in self.class_rows.iter_mut().zip(&other.class_rows) {
            *a += b;
        }
        self.rows += other.rows;
        Ok(())
    }

    /// Each neuron's AP for each class (a class without tokens, and a neuron
    /// with one value, score 0), with bounds on the AP of the exact values.
    pub fn scores(&self) -> ApScores {
        let c = self.classes.len();
        let per_neuron: Vec<[Vec<f64>; 3]> = self
            .neurons
            .par_iter()
            .enumerate()
            .map(|(j, bins)| {
                let mut sums = [vec![0.0f64; c], vec![0.0f64; c], vec![0.0f64; c]];
                if self.min.is_empty() || self.min[j] == self.max[j] {
                    return sums;
                }
                let mut true_pos = vec![0u64; c];
                let mut seen = 0u64;
                let mut end = bins.keys.len();
                while end > 0 {
                    // One bin, from the largest values down.
                    let key = bins.keys[end - 1];
                    let start = bins.keys[..end].partition_point(|&k| k < key);
                    let in_bin: u64 = bins.counts[start..end].iter().sum();
                    // The zero bin, and every bin at full precision, holds
                    // one value: its tokens are tied, not ordered.
                    let one_value = key == 0 || self.bits == 23;
                    for e in start..end {
                        let class = bins.classes[e] as usize;
                        let p = bins.counts[e];
                        let total = self.class_rows[class] as f64;
                        let (a, b, q) = (true_pos[class] as f64, seen as f64, (in_bin - p) as f64);
                        let pf = p as f64;
                        let recall_gain = pf / total;
                        // Evaluated as the ranker does, so that one bin per
                        // value gives its scores bit for bit.
                        let tied = recall_gain * (a + pf) / (b + pf + q);
                        sums[0][class] += tied;
                        if one_value {
                            sums[1][class] += tied;
                            sums[2][class] += tied;
                        } else {
                            sums[1][class] += ratio_sum(a, b + q, p) / total;
                            sums[2][class] += recall_gain * ((a + pf) / (b + pf));
                        }
                    }
                    for e in start..end {
                        true_pos[bins.classes[e] as usize] += bins.counts[e];
                    }
                    seen += in_bin;
                    end = start;
                }
                sums
            })
            .collect();
        let column = |which: usize| -> Vec<Vec<f64>> {
            (0..c)
                .map(|class| per_neuron.iter().map(|s| s[which][class]).collect())
                .collect()
        };
        ApScores {
            ap: column(0),
            lower: column(1),
            upper: column(2),
        }
    }

    /// Checks that the sizes and orders agree (for histograms read from a
    /// file).
    ///
    /// # Errors
    /// When they do not.
    pub fn check(&self) -> Result<()> {
        let c = self.classes.len() as u32;
        let d = self.neurons.len();
        let consistent = self.bits <= 23
            && self.class_rows.len() == self.classes.len()
            && self.class_rows.iter().sum::<u64>() == self.rows
            && self.min.len() == self.max.len()
            && (self.min.len() == d || (self.rows == 0 && self.min.is_empty()))
            && self.neurons.iter().all(|n| {
                n.keys.len() == n.classes.len()
                    && n.keys.len() == n.counts.len()
                    && n.classes.iter().all(|&k| k < c)
                    && n.counts.iter().sum::<u64>() == self.rows
                    && n.keys
                        .iter()
                        .zip(&n.classes)
                        .zip(n.keys.iter().zip(&n.classes).skip(1))
                        .all(|(a, b)| a < b)
            });
        if consistent {
            Ok(())
        } else {
            Err(Error::input(
                "the average-precision histograms do not fit their classes and rows".to_string(),
            ))
        }
    }
}

impl NeuronBins {
    /// The entries of both, counts of the same bin and class added.
    fn merged(&self, other: &NeuronBins) -> NeuronBins {
        let mut out = NeuronBins::default();
        let (mut i, mut k) = (0, 0);
        let entry = |bins: &NeuronBins, at: usize| (bins.keys[at], bins.classes[at]);
        while i < self.keys.len() || k < other.keys.len() {
            let take_ours =
                k == other.keys.len() || (i < self.keys.len() && entry(self, i) <= entry(other, k));
            let (key, class, mut count) = if take_ours {
                i += 1;
                (self.keys[i - 1], self.classes[i - 1], self.counts[i - 1])
            } else {
                k += 1;
                (other.keys[k - 1], other.classes[k - 1], other.counts[k - 1])
            };
            if take_ours && k < other.keys.len() && entry(other, k) == (key, class) {
                count += other.counts[k];
                k += 1;
            }
            out.keys.push(key);
            out.classes.push(class);
            out.counts.push(count);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::merge_testing::{merged_in_order, row_parts};
    use ndarray::{Array2, Axis, Slice};
    use proptest::prelude::*;

    /// AP straight from the definition, one curve step per distinct value
    /// (as the `iou_neurox` ranker computes it).
    fn exact_ap(values: &[f32], labels: &[u32], class: u32, threshold: f64) -> f64 {
        let mut rows: Vec<(f32, u32)> = values
            .iter()
            .map(|&v| thresholded(v, threshold))
            .zip(labels.iter().copied())
            .collect();
        rows.sort_by(|a, b| b.0.total_cmp(&a.0));
        if rows.first().map(|r| r.0) == rows.last().map(|r| r.0) {
            return 0.0;
        }
        let total = labels.iter().filter(|&&l| l == class).count() as f64;
        let (mut ap, mut tp, mut start) = (0.0, 0.0, 0);
        while start < rows.len() {
            let mut end = start;
            let mut gained = 0.0;
            while end < rows.len() && rows[end].0 == rows[start].0 {
                if rows[end].1 == class {
                    gained += 1.0;
                }
                end += 1;
            }
            tp += gained;
            if gained > 0.0 {
                ap += gained / total * (tp / end as f64);
            }
            start = end;
        }
        ap
    }

    fn data(rows: usize, cols: usize, seed: u64, grid: bool) -> (Array2<f32>, Vec<u32>) {
        let mut rng = crate::rng::Rng::new(seed);
        let y: Vec<u32> = (0..rows).map(|_| rng.below(4) as u32).collect();
        let x = Array2::from_shape_fn((rows, cols), |(r, j)| {
            let v = rng.normal() + if y[r] as usize == j % 4 { 1.0 } else { 0.0 };
            if grid {
                (v * 4.0).round() as f32 / 4.0
            } else {
                v as f32
            }
        });
        (x, y)
    }

    fn classes() -> Vec<String> {
        (0..4).map(|c| c.to_string()).collect()
    }

    #[test]
    fn keys_order_as_the_values_and_merge_a_bins_values() {
        let values = [-3.0f32, -1.0, -0.01, 0.0, 1e-30, 0.75, 1.0, 1.0625, 2.0];
        let keys: Vec<i32> = values.iter().map(|&v| bin_key(v, 2)).collect();
        assert!(keys.windows(2).all(|w| w[0] <= w[1]), "{keys:?}");
        assert_eq!(bin_key(1.0, 2), bin_key(1.0625, 2));
        assert_ne!(bin_key(1.0, 23), bin_key(1.0625, 23));
        assert_eq!(bin_key(-0.0, 5), 0);
    }

    #[test]
    fn digamma_sums_match_direct_sums() {
        for (a, b, p) in [
            (0.0, 0.0, 100),
            (3.0, 50.0, 65),
            (10.0, 1e5, 5000),
            (0.0, 7.0, 1000),
        ] {
            let direct: f64 = (1..=p).map(|i| (a + i as f64) / (b + i as f64)).sum();
            let ours = ratio_sum(a, b, p);
            assert!(
                (ours - direct).abs() < 1e-9 * direct.max(1.0),
                "{a} {b} {p}: {ours} {direct}"
            );
        }
    }

    #[test]
    fn one_bin_per_value_gives_the_exact_ap_and_coarse_bins_bound_it() {
        for (grid, bits) in [(true, 23u8), (true, 3), (false, 23), (false, 2), (false, 0)] {
            let (x, y) = data(400, 6, 5, grid);
            for threshold in [0.0, 0.3] {
                let mut h = ApHistograms::new(classes(), 6, bits, threshold).unwrap();
                h.push_rows(x.view(), &y).unwrap();
                h.check().unwrap();
                let s = h.scores();
                for c in 0..4 {
                    for j in 0..6 {
                        let column = x.column(j).to_vec();
                        let exact = exact_ap(&column, &y, c as u32, threshold);
                        let (lo, ap, hi) = (s.lower[c][j], s.ap[c][j], s.upper[c][j]);
                        assert!(lo <= ap + 1e-12 && ap <= hi + 1e-12, "{lo} {ap} {hi}");
                        assert!(
                            lo - 1e-12 <= exact && exact <= hi + 1e-12,
                            "bits {bits}: {lo} {exact} {hi}"
                        );
                        if bits == 23 {
                            assert!((ap - exact).abs() < 1e-12, "{ap} {exact}");
                            assert!(lo == ap && ap == hi, "{lo} {ap} {hi}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_single_valued_neuron_and_an_empty_class_score_zero() {
        let x = Array2::from_shape_fn((20, 2), |(r, j)| if j == 0 { 0.01 } else { r as f32 });
        let y: Vec<u32> = (0..20).map(|r| (r % 3) as u32).collect();
        let mut h = ApHistograms::new(classes(), 2, 4, 0.05).unwrap();
        h.push_rows(x.view(), &y).unwrap();
        let s = h.scores();
        assert!((0..4).all(|c| s.ap[c][0] == 0.0 && s.upper[c][0] == 0.0));
        assert_eq!(s.ap[3][1], 0.0);
        assert!(s.ap[0][1] > 0.0);
        assert!(ApHistograms::new(classes(), 2, 24, 0.0).is_err());
        assert!(ApHistograms::new(classes(), 2, 4, -1.0).is_err());
        let other = ApHistograms::new(classes(), 2, 5, 0.05).unwrap();
        assert!(h.merge(&other).is_err());
        assert!(h.push_rows(x.view(), &y[1..]).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn any_grouping_merges_into_one_pass_exactly(
            cuts in proptest::collection::vec(0usize..150, 0..5),
            reverse in any::<bool>(),
            bits in 0u8..=23,
        ) {
            let (x, y) = data(150, 5, 9, false);
            let mut whole = ApHistograms::new(classes(), 5, bits, 0.1).unwrap();
            whole.push_rows(x.view(), &y).unwrap();
            let parts: Vec<ApHistograms> = row_parts(&cuts, 150)
                .into_iter()
                .map(|rows| {
                    let mut p = ApHistograms::new(classes(), 5, bits, 0.1).unwrap();
                    p.push_rows(x.slice_axis(Axis(0), Slice::from(rows.clone())), &y[rows])
                        .unwrap();
                    p
                })
                .collect();
            let merged = merged_in_order(parts, reverse, |a, b| a.merge(b).unwrap());
            prop_assert_eq!(&merged, &whole);
            prop_assert_eq!(merged.scores(), whole.scores());
        }
    }
}
