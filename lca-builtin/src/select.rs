//! Neuron selection from a linear probe's weights: the core of LCA.
//!
//! For class `c`, let `a_c = |W[c, :]|` (float32) and `T_c = Σ_j a_cj`.
//!
//! ```text
//! per-class top set at mass fraction p:
//!   sort a_c descending (ties: higher neuron index first);
//!   S[k] = running float32 sum of the first k+1 sorted values;
//!   θ = f32(f64(T_c) · p);
//!   select the prefix up to and including the first k with S[k] ≥ θ
//!   (all neurons when no k qualifies).
//! top set at p = the union over classes.
//!
//! global ordering with stride S: for s = 0, 1, …, S, append the neurons of
//! the top set at p = s/S that are not yet ordered; `cutoffs[s]` is the
//! length of the ordering after step s.
//! ```
//!
//! This reproduces NeuroX (`get_top_neurons`, `get_bottom_neurons`,
//! `get_top_neurons_hard_threshold`, `get_neuron_ordering`,
//! `get_neuron_ordering_granular`) exactly, including the summation order of
//! `T_c` (numpy's pairwise float32 sum), with these documented differences:
//!
//! - **Order inside a step.** NeuroX emits the neurons that enter at the same
//!   step in Python set order. Here they are ordered by their largest share
//!   of a class's mass, `max_c a_cj / T_c`, descending, then by index.
//! - **A full permutation.** Neurons with zero weight in every class may never
//!   enter the NeuroX ordering. Here they are appended after the last step,
//!   by index, and counted as `never_entered`.
//! - **Ties** in the per-class sort follow the stable rule above; NeuroX's
//!   introsort leaves the order of equal weights unspecified for more than
//!   16 neurons.

use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

use lca_core::error::{Error, Result};

/// numpy's float32 `np.sum` of a contiguous vector: pairwise summation in
/// blocks of 8192 values, block results added left to right from zero.
pub fn numpy_sum_f32(values: &[f32]) -> f32 {
    let mut total = 0.0f32;
    for block in values.chunks(8192) {
        total += pairwise_sum(block);
    }
    total
}

fn pairwise_sum(a: &[f32]) -> f32 {
    let n = a.len();
    if n < 8 {
        let mut res = 0.0f32;
        for &v in a {
            res += v;
        }
        res
    } else if n <= 128 {
        let mut r = [0.0f32; 8];
        r.copy_from_slice(&a[..8]);
        let full = n - n % 8;
        let mut i = 8;
        while i < full {
            for (j, rj) in r.iter_mut().enumerate() {
                *rj += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &v in &a[full..] {
            res += v;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        pairwise_sum(&a[..n2]) + pairwise_sum(&a[n2..])
    }
}

/// Per-class weight mass, sorted, with running sums: everything the
/// selectors need, computed once.
#[derive(Clone, Debug)]
pub struct ClassMasses {
    /// `|W|`, classes × neurons.
    abs: Vec<Vec<f32>>,
    /// `T_c`, numpy's pairwise sum.
    totals: Vec<f32>,
    /// Neurons by descending |w|, ties by higher index first.
    descending: Vec<Vec<u32>>,
    /// Running float32 sums along `descending`.
    running: Vec<Vec<f32>>,
}

/// A global LCA ordering.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LcaOrdering {
    /// Every neuron, most salient first.
    pub order: Vec<u32>,
    /// Length of the ordering after each step s = 0..=S (NeuroX's cutoffs).
    pub cutoffs: Vec<usize>,
    /// Neurons that never entered (zero weight in every class) and were
    /// appended at the end.
    pub never_entered: usize,
}

impl ClassMasses {
    /// From a weight matrix, classes × neurons.
    ///
    /// # Errors
    /// For non-finite weights or an empty matrix.
    pub fn new(weights: ArrayView2<'_, f32>) -> Result<Self> {
        let (c, d) = weights.dim();
        if c == 0 || d == 0 {
            return Err(Error::input(
                "a weight matrix with no classes or no neurons cannot rank neurons",
            ));
        }
        if let Some(((r, j), v)) = weights.indexed_iter().find(|(_, v)| !v.is_finite()) {
            return Err(Error::input(format!(
                "the probe weight of class {r}, neuron {j} is {v}"
            )));
        }
        let abs: Vec<Vec<f32>> = weights
            .rows()
            .into_iter()
            .map(|r| r.iter().map(|v| v.abs()).collect())
            .collect();
        let totals = abs.iter().map(|a| numpy_sum_f32(a)).collect();
        let descending: Vec<Vec<u32>> = abs.iter().map(|a| descending_order(a)).collect();
        let running = abs
            .iter()
            .zip(&descending)
            .map(|(a, order)| {
                let mut sum = 0.0f32;
                order
                    .iter()
                    .map(|&j| {
                        sum += a[j as usize];
                        sum
                    })
                    .collect()
            })
            .collect();
        Ok(ClassMasses {
            abs,
            totals,
            descending,
            running,
        })
    }

    /// Number of classes.
    pub fn n_classes(&self) -> usize {
        self.abs.len()
    }

    /// Number of neurons.
    pub fn n_neurons(&self) -> usize {
        self.abs[0].len()
    }

    /// `|w|` of class `c`.
    pub fn abs_weights(&self, c: usize) -> &[f32] {
        &self.abs[c]
    }

    /// Neurons of class `c` by descending |w| (ties: higher index first).
    pub fn descending(&self, c: usize) -> &[u32] {
        &self.descending[c]
    }

    /// `T_c`, numpy's pairwise float32 sum.
    pub fn total(&self, c: usize) -> f32 {
        self.totals[c]
    }

    fn threshold(&self, c: usize, p: f64) -> f32 {
        (f64::from(self.totals[c]) * p) as f32
    }

    /// How many neurons class `c` selects at mass fraction `p`.
    pub fn top_count(&self, c: usize, p: f64) -> usize {
        let theta = self.threshold(c, p);
        // Running sums never decrease, so the first crossing is a partition point.
        let k = self.running[c].partition_point(|&s| s < theta);
        if k == self.running[c].len() { k } else { k + 1 }
    }

    /// NeuroX `get_top_neurons`: per-class prefixes (descending |w|) and
    /// their union, sorted.
    pub fn top(&self, p: f64) -> (Vec<u32>, Vec<Vec<u32>>) {
        let per_class: Vec<Vec<u32>> = (0..self.n_classes())
            .map(|c| self.descending[c][..self.top_count(c, p)].to_vec())
            .collect();
        (sorted_union(&per_class), per_class)
    }

    /// NeuroX `get_bottom_neurons`: the same prefix rule along ascending
    /// |w| (ties: lower index first).
    pub fn bottom(&self, p: f64) -> (Vec<u32>, Vec<Vec<u32>>) {
        let per_class: Vec<Vec<u32>> = (0..self.n_classes())
            .map(|c| {
                let mut ascending = self.descending[c].clone();
                ascending.reverse();
                let theta = self.threshold(c, p);
                let mut sum = 0.0f32;
                let mut take = ascending.len();
                for (k, &j) in ascending.iter().enumerate() {
                    sum += self.abs[c][j as usize];
                    if sum >= theta {
                        take = k + 1;
                        break;
                    }
                }
                ascending.truncate(take);
                ascending
            })
            .collect();
        (sorted_union(&per_class), per_class)
    }

    /// NeuroX `get_top_neurons_hard_threshold`: per class, the neurons with
    /// `|w| > max|w| / divisor` (strict), in index order. (NeuroX's docstring
    /// says "threshold × max"; its code divides, and so does this.)
    pub fn above_fraction_of_max(&self, divisor: f64) -> (Vec<u32>, Vec<Vec<u32>>) {
        let per_class: Vec<Vec<u32>> = self
            .abs
            .iter()
            .map(|a| {
                let max = a.iter().copied().fold(0.0f32, f32::max);
                let threshold = (f64::from(max) / divisor) as f32;
                (0..a.len() as u32)
                    .filter(|&j| a[j as usize] > threshold)
                    .collect()
            })
            .collect();
        (sorted_union(&per_class), per_class)
    }

    /// The step `s = 0..=stride` at which each neuron first enters, or
    /// `None` if it never does.
    fn entry_steps(&self, stride: usize) -> Vec<Option<usize>> {
        let mut entry = vec![None; self.n_neurons()];
        for c in 0..self.n_classes() {
            let mut covered = 0;
            for s in 0..=stride {
                let count = self.top_count(c, s as f64 / stride as f64);
                for &j in &self.descending[c][covered..count.max(covered)] {
                    let e = &mut entry[j as usize];
                    if e.is_none_or(|old| s < old) {
                        *e = Some(s);
                    }
                }
                covered = covered.max(count);
            }
        }
        entry
    }

    /// The deterministic order inside a step: largest share of a class's
    /// mass first, then lower index.
    fn in_step_order(&self, neurons: &mut [u32]) {
        let share = |j: u32| {
            (0..self.n_classes())
                .map(|c| {
                    if self.totals[c] > 0.0 {
                        f64::from(self.abs[c][j as usize]) / f64::from(self.totals[c])
                    } else {
                        0.0
                    }
                })
                .fold(0.0f64, f64::max)
        };
        neurons.sort_by(|&a, &b| share(b).total_cmp(&share(a)).then(a.cmp(&b)));
    }

    /// NeuroX `get_neuron_ordering` (see the module docs for the in-step
    /// order and the neurons that never enter).
    ///
    /// # Errors
    /// When `stride` is 0.
    pub fn ordering(&self, stride: usize) -> Result<LcaOrdering> {
        if stride == 0 {
            return Err(Error::input("the search stride must be at least 1"));
        }
        let entry = self.entry_steps(stride);
        let mut by_step: Vec<Vec<u32>> = vec![Vec::new(); stride + 1];
        let mut never = Vec::new();
        for (j, e) in entry.iter().enumerate() {
            match e {
                Some(s) => by_step[*s].push(j as u32),
                None => never.push(j as u32),
            }
        }
        let mut order = Vec::with_capacity(self.n_neurons());
        let mut cutoffs = Vec::with_capacity(stride + 1);
        for mut step in by_step {
            self.in_step_order(&mut step);
            order.extend(step);
            cutoffs.push(order.len());
        }
        let never_entered = never.len();
        order.extend(never);
        Ok(LcaOrdering {
            order,
            cutoffs,
            never_entered,
        })
    }

    /// NeuroX `get_neuron_ordering_granular`: walks target sizes
    /// 0, g, 2g, … ≤ D and, for each, the first step whose top set is at
    /// least that large, emitting the neurons not yet ordered. Neurons NeuroX
    /// would drop (entering after the last multiple of g, or when no step
    /// reaches a size) are appended at the end.
    ///
    /// # Errors
    /// When `granularity` or `stride` is 0.
    pub fn ordering_granular(&self, granularity: usize, stride: usize) -> Result<LcaOrdering> {
        if granularity == 0 || stride == 0 {
            return Err(Error::input(
                "granularity and search stride must be at least 1",
            ));
        }
        let entry = self.entry_steps(stride);
        // |U_s|: neurons entered by step s.
        let mut sizes = vec![0usize; stride + 1];
        for s in entry.iter().flatten() {
            sizes[*s] += 1;
        }
        for s in 1..=stride {
            sizes[s] += sizes[s - 1];
        }
        let mut seen = vec![false; self.n_neurons()];
        let mut order = Vec::with_capacity(self.n_neurons());
        let mut cutoffs = Vec::new();
        let mut s = 0usize;
        'targets: for target in (0..=self.n_neurons()).step_by(granularity) {
            while sizes[s] < target {
                s += 1;
                if s > stride {
                    break 'targets;
                }
            }
            let mut new: Vec<u32> = (0..self.n_neurons() as u32)
                .filter(|&j| !seen[j as usize] && entry[j as usize].is_some_and(|e| e <= s))
                .collect();
            if !new.is_empty() {
                self.in_step_order(&mut new);
                for &j in &new {
                    seen[j as usize] = true;
                }
                order.extend(new);
                cutoffs.push(order.len());
            }
        }
        let missing: Vec<u32> = (0..self.n_neurons() as u32)
            .filter(|&j| !seen[j as usize])
            .collect();
        let never_entered = missing.len();
        order.extend(missing);
        Ok(LcaOrdering {
            order,
            cutoffs,
            never_entered,
        })
    }
}

fn descending_order(a: &[f32]) -> Vec<u32> {
    let mut order: Vec<u32> = (0..a.len() as u32).collect();
    // Stable ascending sort, reversed: equal values end up higher index first.
    order.sort_by(|&x, &y| a[x as usize].total_cmp(&a[y as usize]));
    order.reverse();
    order
}

fn sorted_union(per_class: &[Vec<u32>]) -> Vec<u32> {
    let mut all: Vec<u32> = per_class.iter().flatten().copied().collect();
    all.sort_unstable();
    all.dedup();
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn neurox_unit_test_ordering() {
        // NeuroX's own test: W = [[4,1,5],[1,1,10]] orders [2, 0, 1];
        // neuron 0 enters at s = 51 and neuron 1 at s = 84.
        let masses = ClassMasses::new(array![[4.0f32, 1.0, 5.0], [1.0, 1.0, 10.0]].view()).unwrap();
        let o = masses.ordering(100).unwrap();
        assert_eq!(o.order, vec![2, 0, 1]);
        assert_eq!(o.cutoffs[50], 1);
        assert_eq!(o.cutoffs[51], 2);
        assert_eq!(o.cutoffs[83], 2);
        assert_eq!(o.cutoffs[84], 3);
    }

    #[test]
    fn paper_examples_of_top_and_bottom_sets() {
        let m = ClassMasses::new(array![[5.0f32, 1.0, 1.0], [1.0, 10.0, 1.0]].view()).unwrap();
        let (union, per_class) = m.top(0.5);
        assert_eq!(union, vec![0, 1]);
        assert_eq!(per_class, vec![vec![0], vec![1]]);
        let m = ClassMasses::new(array![[5.0f32, 4.0, 1.0], [10.0, 1.0, 1.0]].view()).unwrap();
        let (union, per_class) = m.bottom(0.1);
        assert_eq!(union, vec![1, 2]);
        assert_eq!(per_class, vec![vec![2], vec![1, 2]]);
        let (all, _) = m.top(1.1);
        assert_eq!(all, vec![0, 1, 2]);
    }

    #[test]
    fn p_zero_selects_each_class_argmax() {
        let m = ClassMasses::new(array![[0.1f32, -0.9, 0.3], [0.5, 0.0, -0.6]].view()).unwrap();
        let (union, per_class) = m.top(0.0);
        assert_eq!(per_class, vec![vec![1], vec![2]]);
        assert_eq!(union, vec![1, 2]);
    }

    #[test]
    fn zero_weight_neurons_are_appended_and_counted() {
        let m =
            ClassMasses::new(array![[1.0f32, 0.0, 2.0, 0.0], [0.0, 0.0, 3.0, 1.0]].view()).unwrap();
        let o = m.ordering(10).unwrap();
        assert_eq!(o.order.len(), 4);
        assert_eq!(o.never_entered, 1);
        assert_eq!(*o.order.last().unwrap(), 1);
    }

    #[test]
    fn pairwise_sum_follows_numpy_for_long_vectors() {
        // For exactly representable values every summation order agrees.
        let v: Vec<f32> = (0..20000).map(|i| (i % 7) as f32).collect();
        assert_eq!(
            numpy_sum_f32(&v),
            v.iter().map(|&x| f64::from(x)).sum::<f64>() as f32
        );
        assert_eq!(pairwise_sum(&[1.0, 2.0, 3.0]), 6.0);
    }
}
