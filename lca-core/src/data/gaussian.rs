//! The class-conditional moments the Gaussian ranker needs, as statistics
//! that merge.
//!
//! The `gaussian` ranker fits one multivariate Gaussian per class over the
//! candidate neurons and scores candidates on a sample of training rows.
//! Everything it reads from the data is in [`GaussianMoments`]:
//!
//! - per class, the row count, the mean of each neuron and the scatter
//!   matrix Σ_t (x_t − μ_c)(x_t − μ_c)ᵀ (its upper triangle). Parts merge
//!   by the pairwise update of Chan, Golub & LeVeque:
//!   `S = S_a + S_b + (n_a·n_b/n)·δδᵀ`, δ = μ_b − μ_a;
//! - each neuron's smallest and largest value, so that constant neurons
//!   are known exactly;
//! - a seeded sample of the rows (their values, labels and positions),
//!   drawn from positions fixed by the seed and the number of rows counted
//!   in the whole store, so that each part holds the sampled rows in its
//!   range and the parts' samples are disjoint.
//!
//! Sums merged in another grouping round differently, by about 1e-16
//! relative; the ranking's ties are 1e-6 bits wide, far above that.
//! Memory is classes × k(k+1)/2 scatter entries for k candidate neurons.

use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::rng::Rng;

/// The label of the random stream that draws the scored rows.
const SAMPLE_STREAM: &str = "gaussian-rows";

/// Class-conditional moments of some neurons, and a seeded sample of rows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GaussianMoments {
    /// Class names; labels index them.
    pub classes: Vec<String>,
    /// The columns of the matrix these moments cover, in order.
    pub neurons: Vec<usize>,
    /// Rows seen.
    pub rows: u64,
    /// Rows seen per class.
    pub class_rows: Vec<u64>,
    /// Mean of each neuron per class, class-major (`classes × k`).
    pub means: Vec<f64>,
    /// Per class, the upper triangle of its scatter matrix, row by row
    /// (`classes × k(k+1)/2`).
    pub scatter: Vec<f64>,
    /// Smallest value of each neuron (empty before any row).
    pub min: Vec<f32>,
    /// Largest value of each neuron (empty before any row).
    pub max: Vec<f32>,
    /// The sampled rows seen so far.
    pub sample: RowSample,
}

/// Rows drawn by a seed from the rows of a whole pass, and those of them
/// seen so far.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RowSample {
    /// The seed of the draw.
    pub seed: u64,
    /// Rows the whole pass counts (the population drawn from).
    pub population: u64,
    /// Rows drawn: `min(size, population)`.
    pub size: usize,
    /// Positions (among the rows counted) of the sampled rows seen, increasing.
    pub positions: Vec<u64>,
    /// Their labels.
    pub labels: Vec<u32>,
    /// Their values of the covered neurons, row-major. Written as `f64`,
    /// which holds every `f32` exactly.
    #[serde(with = "crate::data::masks::f32_as_f64")]
    pub values: Vec<f32>,
}

/// Index of `(i, j)`, `i ≤ j`, in the row-by-row upper triangle of a
/// `k × k` matrix.
fn packed(k: usize, i: usize, j: usize) -> usize {
    i * k - i * (i + 1) / 2 + j
}

impl RowSample {
    /// The positions drawn from `population` rows, increasing.
    pub fn draw(seed: u64, population: u64, size: usize) -> Vec<u64> {
        let n = usize::try_from(population).unwrap_or(usize::MAX);
        let size = size.min(n);
        let mut positions: Vec<u64> = if size == n {
            (0..population).collect()
        } else {
            Rng::derived(seed, SAMPLE_STREAM)
                .sample_indices(n, size)
                .into_iter()
                .map(|p| p as u64)
                .collect()
        };
        positions.sort_unstable();
        positions
    }

    /// Whether every drawn row has been seen.
    pub fn is_complete(&self) -> bool {
        self.positions.len() == self.size
    }
}

impl GaussianMoments {
    /// Moments of no rows over the columns `neurons`, whose sample will
    /// draw `sample_size` of the `population` rows of the whole pass.
    pub fn new(
        classes: Vec<String>,
        neurons: Vec<usize>,
        seed: u64,
        population: u64,
        sample_size: usize,
    ) -> Self {
        let (c, k) = (classes.len(), neurons.len());
        GaussianMoments {
            classes,
            rows: 0,
            class_rows: vec![0; c],
            means: vec![0.0; c * k],
            scatter: vec![0.0; c * k * (k + 1) / 2],
            min: Vec::new(),
            max: Vec::new(),
            neurons,
            sample: RowSample {
                seed,
                population,
                size: usize::try_from(population)
                    .unwrap_or(usize::MAX)
                    .min(sample_size),
                positions: Vec::new(),
                labels: Vec::new(),
                values: Vec::new(),
            },
        }
    }

    /// Candidate neurons.
    pub fn k(&self) -> usize {
        self.neurons.len()
    }

    /// Adds the rows of `block`, the counted rows from position `first` on,
    /// with their labels. `drawn` holds the positions of the whole sample
    /// ([`RowSample::draw`]), so that each block takes its own.
    ///
    /// # Errors
    /// When a label is not a class, a covered column is not in the block, or
    /// the rows do not follow those seen.
    pub fn push_rows(
        &mut self,
        first: u64,
        block: ArrayView2<'_, f32>,
        labels: &[u32],
        drawn: &[u64],
    ) -> Result<()> {
        let (c, k) = (self.classes.len(), self.k());
        if labels.len() != block.nrows() {
            return Err(Error::input(format!(
                "{} labels for a block of {} rows",
                labels.len(),
                block.nrows()
            )));
        }
        if let Some(&bad) = self.neurons.iter().find(|&&j| j >= block.ncols()) {
            return Err(Error::input(format!(
                "column {bad} is not in a block of {} columns",
                block.ncols()
            )));
        }
        if let Some(&bad) = labels.iter().find(|&&l| l as usize >= c) {
            return Err(Error::input(format!(
                "label id {bad} is not one of the {c} classes"
            )));
        }
        if self.sample.positions.last().is_some_and(|&p| p >= first) {
            return Err(Error::input(
                "rows must be added in increasing positions, each once".to_string(),
            ));
        }
        // The block's own moments per class, then one pairwise merge.
        let mut part = GaussianMoments::new(self.classes.clone(), self.neurons.clone(), 0, 0, 0);
        part.sample.seed = self.sample.seed;
        part.sample.population = self.sample.population;
        part.sample.size = self.sample.size;
        // Bucket the rows by class in one scan of the labels.
        let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); c];
        for (r, &label) in labels.iter().enumerate() {
            by_class[label as usize].push(r);
        }
        for (class, rows) in by_class.iter().enumerate() {
            if rows.is_empty() {
                continue;
            }
            let n = rows.len();
            let mut centred = Array2::<f64>::zeros((n, k));
            let mean = &mut part.means[class * k..(class + 1) * k];
            for &r in rows {
                let row = block.row(r);
                for (m, &j) in mean.iter_mut().zip(&self.neurons) {
                    *m += f64::from(row[j]);
                }
            }
            mean.iter_mut().for_each(|m| *m /= n as f64);
            for (mut out, &r) in centred.rows_mut().into_iter().zip(rows) {
                let row = block.row(r);
                for ((o, &j), m) in out.iter_mut().zip(&self.neurons).zip(mean.iter()) {
                    *o = f64::from(row[j]) - m;
                }
            }
            let product = centred.t().dot(&centred);
            let tri = &mut part.scatter[class * k * (k + 1) / 2..(class + 1) * k * (k + 1) / 2];
            for i in 0..k {
                for j in i..k {
                    tri[packed(k, i, j)] = product[[i, j]];
                }
            }
            part.class_rows[class] = n as u64;
        }
        part.rows = labels.len() as u64;
        if part.rows > 0 {
            part.min = vec![f32::INFINITY; k];
            part.max = vec![f32::NEG_INFINITY; k];
        }
        for row in block.rows() {
            for ((lo, hi), &j) in part.min.iter_mut().zip(&mut part.max).zip(&self.neurons) {
                *lo = lo.min(row[j]);
                *hi = hi.max(row[j]);
            }
        }
        let end = first + labels.len() as u64;
        let from = drawn.partition_point(|&p| p < first);
        let to = drawn.partition_point(|&p| p < end);
        for &position in &drawn[from..to] {
            let r = (position - first) as usize;
            part.sample.positions.push(position);
            part.sample.labels.push(labels[r]);
            let row = block.row(r);
            part.sample
                .values
                .extend(self.neurons.iter().map(|&j| row[j]));
        }
        self.merge(&part)
    }

    /// Adds the moments of other, disjoint rows.
    ///
    /// # Errors
    /// When the two differ in classes, neurons or sample draw, or their
    /// samples share a row.
    pub fn merge(&mut self, other: &GaussianMoments) -> Result<()> {
        if other.classes != self.classes || other.neurons != self.neurons {
            return Err(Error::input(
                "Gaussian moments of different classes or neurons cannot be merged; compute \
                 both with the same task and `--gaussian-neurons`"
                    .to_string(),
            ));
        }
        {
            let (a, b) = (&self.sample, &other.sample);
            if (a.seed, a.population, a.size) != (b.seed, b.population, b.size) {
                return Err(Error::input(format!(
                    "Gaussian row samples of different draws cannot be merged (seed {}, {} of {} \
                 rows against seed {}, {} of {}); compute both with the same `--seed` and \
                 `--gaussian-rows` over the same store and split",
                    a.seed, a.size, a.population, b.seed, b.size, b.population
                )));
            }
            if let Some(p) = b
                .positions
                .iter()
                .find(|p| a.positions.binary_search(p).is_ok())
            {
                return Err(Error::input(format!(
                    "row {p} is in both Gaussian row samples; merge statistics of disjoint rows only"
                )));
            }
        }
        let k = self.k();
        let tri_len = k * (k + 1) / 2;
        for class in 0..self.classes.len() {
            let (na, nb) = (self.class_rows[class], other.class_rows[class]);
            if nb == 0 {
                continue;
            }
            let n = (na + nb) as f64;
            let weight = na as f64 * nb as f64 / n;
            let means = &mut self.means[class * k..(class + 1) * k];
            let theirs = &other.means[class * k..(class + 1) * k];
            let delta: Vec<f64> = theirs
                .iter()
                .zip(means.iter())
                .map(|(b, a)| b - a)
                .collect();
            let ours = &mut self.scatter[class * tri_len..(class + 1) * tri_len];
            let add = &other.scatter[class * tri_len..(class + 1) * tri_len];
            for i in 0..k {
                for j in i..k {
                    let at = packed(k, i, j);
                    ours[at] += add[at] + weight * delta[i] * delta[j];
                }
            }
            for (m, d) in means.iter_mut().zip(&delta) {
                *m += d * nb as f64 / n;
            }
            self.class_rows[class] = na + nb;
        }
        self.rows += other.rows;
        if self.min.is_empty() {
            self.min.clone_from(&other.min);
            self.max.clone_from(&other.max);
        } else if !other.min.is_empty() {
            for (lo, &o) in self.min.iter_mut().zip(&other.min) {
                *lo = lo.min(o);
            }
            for (hi, &o) in self.max.iter_mut().zip(&other.max) {
                *hi = hi.max(o);
            }
        }
        // Keep the sample in increasing positions whatever the merge order.
        // Blocks pushed in order only append, which keeps a pass linear.
        let follows = |a: &RowSample, b: &RowSample| match (a.positions.last(), b.positions.first())
        {
            (Some(last), Some(first)) => last < first,
            _ => true,
        };
        if follows(&self.sample, &other.sample) {
            let sample = &mut self.sample;
            sample.positions.extend_from_slice(&other.sample.positions);
            sample.labels.extend_from_slice(&other.sample.labels);
            sample.values.extend_from_slice(&other.sample.values);
            return Ok(());
        }
        let mut rows: Vec<(u64, u32, &[f32])> =
            Vec::with_capacity(self.sample.positions.len() + other.sample.positions.len());
        let width = k.max(1);
        for s in [&self.sample, &other.sample] {
            rows.extend(
                s.positions
                    .iter()
                    .zip(&s.labels)
                    .zip(s.values.chunks(width).chain(std::iter::repeat(&[][..])))
                    .map(|((&p, &l), v)| (p, l, v)),
            );
        }
        rows.sort_unstable_by_key(|r| r.0);
        let merged = RowSample {
            positions: rows.iter().map(|r| r.0).collect(),
            labels: rows.iter().map(|r| r.1).collect(),
            values: rows.iter().flat_map(|r| r.2.iter().copied()).collect(),
            ..self.sample.clone()
        };
        self.sample = merged;
        Ok(())
    }

    /// Entry `(i, j)` of class `class`'s scatter matrix.
    pub fn scatter_at(&self, class: usize, i: usize, j: usize) -> f64 {
        let k = self.k();
        let (i, j) = if i <= j { (i, j) } else { (j, i) };
        self.scatter[class * k * (k + 1) / 2 + packed(k, i, j)]
    }

    /// Whether each covered neuron is constant over the rows seen (none
    /// seen counts as constant).
    pub fn constant(&self) -> Vec<bool> {
        if self.min.is_empty() {
            return vec![true; self.k()];
        }
        self.min
            .iter()
            .zip(&self.max)
            .map(|(lo, hi)| lo >= hi)
            .collect()
    }

    /// Checks that the sizes agree (for moments read from a file).
    ///
    /// # Errors
    /// When they do not.
    pub fn check(&self) -> Result<()> {
        let (c, k) = (self.classes.len(), self.k());
        let s = &self.sample;
        let consistent = self.class_rows.len() == c
            && self.class_rows.iter().sum::<u64>() == self.rows
            && self.means.len() == c * k
            && self.scatter.len() == c * k * (k + 1) / 2
            && self.min.len() == self.max.len()
            && (self.min.len() == k || (self.rows == 0 && self.min.is_empty()))
            && s.labels.len() == s.positions.len()
            && s.values.len() == s.positions.len() * k
            && s.positions.len() <= s.size
            && s.positions.windows(2).all(|w| w[0] < w[1])
            && s.labels.iter().all(|&l| (l as usize) < c);
        if consistent {
            Ok(())
        } else {
            Err(Error::input(
                "the Gaussian moments' sizes do not fit their neurons and classes".to_string(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::merge_testing::{merged_in_order, row_parts};
    use ndarray::{Array2, Axis, Slice};
    use proptest::prelude::*;

    fn data(rows: usize, cols: usize, seed: u64) -> (Array2<f32>, Vec<u32>) {
        let mut rng = crate::rng::Rng::new(seed);
        let y: Vec<u32> = (0..rows).map(|_| rng.below(3) as u32).collect();
        let x = Array2::from_shape_fn((rows, cols), |(r, j)| {
            (rng.normal() * (1.0 + j as f64) + 1000.0 + f64::from(y[r]) * (j as f64)) as f32
        });
        (x, y)
    }

    fn classes() -> Vec<String> {
        vec!["a".into(), "b".into(), "c".into()]
    }

    #[test]
    fn packed_indices_walk_the_upper_triangle_in_order() {
        let k = 5;
        let mut next = 0;
        for i in 0..k {
            for j in i..k {
                assert_eq!(packed(k, i, j), next);
                next += 1;
            }
        }
        assert_eq!(next, k * (k + 1) / 2);
    }

    #[test]
    fn moments_equal_a_direct_two_pass_computation() {
        let (x, y) = data(157, 6, 3);
        let neurons = vec![4, 0, 2];
        let drawn = RowSample::draw(9, 157, 20);
        let mut m = GaussianMoments::new(classes(), neurons.clone(), 9, 157, 20);
        m.push_rows(0, x.view(), &y, &drawn).unwrap();
        for class in 0..3 {
            let rows: Vec<usize> = (0..157).filter(|&r| y[r] as usize == class).collect();
            assert_eq!(m.class_rows[class], rows.len() as u64);
            let mean: Vec<f64> = neurons
                .iter()
                .map(|&j| {
                    rows.iter().map(|&r| f64::from(x[[r, j]])).sum::<f64>() / rows.len() as f64
                })
                .collect();
            for (a, b) in m.means[class * 3..class * 3 + 3].iter().zip(&mean) {
                assert!((a - b).abs() < 1e-9, "{a} {b}");
            }
            for i in 0..3 {
                for j in 0..3 {
                    let direct: f64 = rows
                        .iter()
                        .map(|&r| {
                            (f64::from(x[[r, neurons[i]]]) - mean[i])
                                * (f64::from(x[[r, neurons[j]]]) - mean[j])
                        })
                        .sum();
                    let ours = m.scatter_at(class, i, j);
                    assert!(
                        (ours - direct).abs() <= 1e-9 * direct.abs().max(1.0),
                        "{ours} {direct}"
                    );
                }
            }
        }
        assert_eq!(m.sample.positions, drawn);
        assert_eq!(m.sample.size, 20);
        for (n, &p) in m.sample.positions.iter().enumerate() {
            assert_eq!(m.sample.labels[n], y[p as usize]);
            assert_eq!(m.sample.values[n * 3], x[[p as usize, 4]]);
        }
        assert_eq!(
            m.min[1],
            x.column(0).iter().copied().fold(f32::INFINITY, f32::min)
        );
        assert_eq!(m.constant(), vec![false; 3]);
        m.check().unwrap();
    }

    #[test]
    fn a_constant_neuron_is_known_exactly_and_an_empty_class_stays_empty() {
        let mut x = Array2::<f32>::zeros((40, 2));
        x.column_mut(0).fill(0.1);
        x.column_mut(1)
            .iter_mut()
            .enumerate()
            .for_each(|(r, v)| *v = r as f32);
        let y = vec![0u32; 40];
        let mut m = GaussianMoments::new(classes(), vec![0, 1], 0, 40, 100);
        m.push_rows(0, x.view(), &y, &RowSample::draw(0, 40, 100))
            .unwrap();
        assert_eq!(m.constant(), vec![true, false]);
        assert_eq!(m.class_rows, vec![40, 0, 0]);
        assert!(m.means[2..].iter().all(|&v| v == 0.0));
        assert!(m.sample.is_complete());
        assert_eq!(m.sample.size, 40);
        // No rows: no extremes, every neuron constant, and a merge adopts
        // the other part's.
        let mut none = GaussianMoments::new(classes(), vec![0, 1], 0, 40, 100);
        none.push_rows(40, x.slice_axis(Axis(0), Slice::from(0..0)), &[], &[])
            .unwrap();
        assert!(none.min.is_empty());
        assert_eq!(none.constant(), vec![true, true]);
        none.check().unwrap();
        none.merge(&m).unwrap();
        assert_eq!(
            (none.min.clone(), none.max.clone()),
            (m.min.clone(), m.max.clone())
        );
    }

    #[test]
    fn bad_blocks_and_merges_are_refused() {
        let (x, y) = data(30, 3, 1);
        let mut m = GaussianMoments::new(classes(), vec![0, 5], 0, 30, 5);
        assert!(m.push_rows(0, x.view(), &y, &[]).is_err());
        let mut m = GaussianMoments::new(classes(), vec![0, 1], 0, 30, 5);
        assert!(m.push_rows(0, x.view(), &y[1..], &[]).is_err());
        let other = GaussianMoments::new(classes(), vec![0, 1], 1, 30, 5);
        assert!(m.merge(&other).is_err());
        let drawn = RowSample::draw(0, 30, 30);
        let mut a = GaussianMoments::new(classes(), vec![0, 1], 0, 30, 30);
        a.push_rows(0, x.view(), &y, &drawn).unwrap();
        let b = a.clone();
        assert!(a.merge(&b).unwrap_err().to_string().contains("both"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn any_grouping_merges_into_one_pass(
            cuts in proptest::collection::vec(0usize..120, 0..5),
            reverse in any::<bool>(),
        ) {
            let (x, y) = data(120, 4, 7);
            let neurons = vec![3, 1, 2];
            let drawn = RowSample::draw(5, 120, 17);
            let mut whole = GaussianMoments::new(classes(), neurons.clone(), 5, 120, 17);
            whole.push_rows(0, x.view(), &y, &drawn).unwrap();
            let parts: Vec<GaussianMoments> = row_parts(&cuts, 120)
                .into_iter()
                .map(|rows| {
                    let mut p = GaussianMoments::new(classes(), neurons.clone(), 5, 120, 17);
                    let first = rows.start as u64;
                    p.push_rows(first, x.slice_axis(Axis(0), Slice::from(rows.clone())), &y[rows], &drawn)
                        .unwrap();
                    p
                })
                .collect();
            let merged = merged_in_order(parts, reverse, |a, b| a.merge(b).unwrap());
            prop_assert_eq!(merged.rows, whole.rows);
            prop_assert_eq!(&merged.class_rows, &whole.class_rows);
            prop_assert_eq!(&merged.sample, &whole.sample);
            prop_assert_eq!(&merged.min, &whole.min);
            prop_assert_eq!(&merged.max, &whole.max);
            for (a, b) in merged.means.iter().zip(&whole.means) {
                prop_assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0));
            }
            for (a, b) in merged.scatter.iter().zip(&whole.scatter) {
                prop_assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{} {}", a, b);
            }
        }
    }
}
