//! Correlation clustering of neurons (Dalvi et al. 2020): which neurons carry
//! the same information.
//!
//! ```text
//! ρ_ij = Pearson correlation of neurons i and j over tokens (constant neuron: 0)
//! d_ij = 1 − |ρ_ij|   (or 1 − ρ_ij when `absolute` is false)
//! agglomerative clustering with average (UPGMA), complete or single linkage,
//! cut where merges exceed the distance threshold
//! ```
//!
//! Clustering uses the nearest-neighbour chain algorithm with Lance–Williams
//! updates: O(n²) time and one n × n distance matrix, so thousands of neurons
//! are practical. The linkages here are monotone, so the flat clusters at
//! threshold t are exactly the components joined by merges of height ≤ t
//! (SciPy's `fcluster(criterion="distance")`).

use ndarray::{Array2, ArrayView2, Axis};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use lca_core::context::RunContext;
use lca_core::error::{Error, Result};

lca_core::param_enum! {
    /// How the distance between two clusters is defined.
    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum Linkage {
        /// Mean pairwise distance (UPGMA), NeuroX's default.
        Average = "average",
        /// Largest pairwise distance.
        Complete = "complete",
        /// Smallest pairwise distance.
        Single = "single",
    }
}

/// One merge of two clusters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Merge {
    /// A leaf of the first cluster.
    pub a: usize,
    /// A leaf of the second cluster.
    pub b: usize,
    /// Distance at which they merged.
    pub height: f64,
}

/// Columns above which the correlation matrix is computed in f32 (f64 below).
const F64_LIMIT: usize = 4096;

/// Pearson correlations between the columns of `x` (rows are samples), with
/// NaN (a constant column) set to 0 and a unit diagonal. Computed as
/// `ZᵀZ / N` of standardised columns; f64 up to 4096 columns, f32 GEMM above
/// (about 1e-6 relative error), parallel over column blocks in a fixed order.
pub fn correlation_matrix(x: ArrayView2<'_, f32>, cx: &RunContext) -> Array2<f64> {
    let (n, d) = x.dim();
    let stats: Vec<(f64, f64)> = cx.install(|| {
        x.axis_iter(Axis(1))
            .into_par_iter()
            .map(|col| {
                let mean = col.iter().map(|&v| f64::from(v)).sum::<f64>() / n.max(1) as f64;
                let var = col
                    .iter()
                    .map(|&v| (f64::from(v) - mean).powi(2))
                    .sum::<f64>()
                    / n.max(1) as f64;
                (mean, var.sqrt())
            })
            .collect()
    });
    let standardise = |r: usize, j: usize| {
        let (mean, sd) = stats[j];
        if sd > 0.0 {
            (f64::from(x[[r, j]]) - mean) / sd
        } else {
            0.0
        }
    };
    let scale = 1.0 / n.max(1) as f64;
    let mut rho = if d <= F64_LIMIT {
        let z = Array2::from_shape_fn((n, d), |(r, j)| standardise(r, j));
        z.t().dot(&z) * scale
    } else {
        let z = Array2::from_shape_fn((n, d), |(r, j)| standardise(r, j) as f32);
        // Column blocks of the result, each one GEMM: deterministic per entry.
        let block = 512;
        let parts: Vec<Array2<f32>> = cx.install(|| {
            (0..d)
                .step_by(block)
                .collect::<Vec<_>>()
                .into_par_iter()
                .map(|start| {
                    let end = (start + block).min(d);
                    z.t().dot(&z.slice(ndarray::s![.., start..end]))
                })
                .collect()
        });
        let mut rho = Array2::<f64>::zeros((d, d));
        for (i, part) in parts.into_iter().enumerate() {
            let start = i * block;
            for ((r, c), v) in part.indexed_iter() {
                rho[[r, start + c]] = f64::from(*v) * scale;
            }
        }
        rho
    };
    for i in 0..d {
        for j in 0..i {
            let v = (rho[[i, j]] + rho[[j, i]]) / 2.0;
            let v = if v.is_finite() {
                v.clamp(-1.0, 1.0)
            } else {
                0.0
            };
            rho[[i, j]] = v;
            rho[[j, i]] = v;
        }
        rho[[i, i]] = 1.0;
    }
    rho
}

/// The merges of agglomerative clustering on a symmetric distance matrix,
/// by the nearest-neighbour chain algorithm.
///
/// # Errors
/// When the matrix is not square.
pub fn linkage(distances: Array2<f64>, linkage: Linkage) -> Result<Vec<Merge>> {
    let n = distances.nrows();
    if distances.ncols() != n {
        return Err(Error::input("a distance matrix must be square"));
    }
    let mut dist = distances;
    let mut active = vec![true; n];
    let mut size = vec![1usize; n];
    let mut merges = Vec::with_capacity(n.saturating_sub(1));
    let mut chain: Vec<usize> = Vec::with_capacity(n);
    let mut remaining = n;
    while remaining > 1 {
        if chain.is_empty() {
            chain.push(active.iter().position(|a| *a).expect("an active cluster"));
        }
        loop {
            let a = *chain.last().expect("non-empty chain");
            let previous = if chain.len() >= 2 {
                Some(chain[chain.len() - 2])
            } else {
                None
            };
            // Nearest active neighbour; on ties keep the previous chain element
            // (this guarantees termination), then the lowest index.
            let mut best = previous;
            let mut best_d = previous.map_or(f64::INFINITY, |p| dist[[a, p]]);
            for k in 0..n {
                if k == a || !active[k] {
                    continue;
                }
                let dk = dist[[a, k]];
                if dk < best_d {
                    best_d = dk;
                    best = Some(k);
                }
            }
            let b = best.expect("another active cluster");
            if Some(b) == previous {
                chain.pop();
                chain.pop();
                let (keep, gone) = (a.min(b), a.max(b));
                merges.push(Merge {
                    a: keep,
                    b: gone,
                    height: best_d,
                });
                let (na, nb) = (size[keep] as f64, size[gone] as f64);
                for k in 0..n {
                    if !active[k] || k == keep || k == gone {
                        continue;
                    }
                    let (dka, dkb) = (dist[[k, keep]], dist[[k, gone]]);
                    let merged = match linkage {
                        Linkage::Average => (na * dka + nb * dkb) / (na + nb),
                        Linkage::Complete => dka.max(dkb),
                        Linkage::Single => dka.min(dkb),
                    };
                    dist[[k, keep]] = merged;
                    dist[[keep, k]] = merged;
                }
                active[gone] = false;
                size[keep] += size[gone];
                remaining -= 1;
                break;
            }
            chain.push(b);
        }
    }
    Ok(merges)
}

/// Flat cluster labels (0-based, numbered by first appearance along the
/// neuron index) from the merges of height ≤ `threshold`.
pub fn cut(n: usize, merges: &[Merge], threshold: f64) -> Vec<usize> {
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    for m in merges.iter().filter(|m| m.height <= threshold) {
        let (ra, rb) = (find(&mut parent, m.a), find(&mut parent, m.b));
        if ra != rb {
            parent[ra.max(rb)] = ra.min(rb);
        }
    }
    let mut label_of_root = vec![usize::MAX; n];
    let mut next = 0;
    (0..n)
        .map(|i| {
            let root = find(&mut parent, i);
            if label_of_root[root] == usize::MAX {
                label_of_root[root] = next;
                next += 1;
            }
            label_of_root[root]
        })
        .collect()
}

/// Clusters the neurons (columns) of `x` by correlation.
///
/// # Errors
/// Only for internal shape problems.
pub fn cluster_neurons(
    x: ArrayView2<'_, f32>,
    absolute: bool,
    link: Linkage,
    threshold: f64,
    cx: &RunContext,
) -> Result<Vec<usize>> {
    let rho = correlation_matrix(x, cx);
    let distances = rho.mapv(|r| if absolute { 1.0 - r.abs() } else { 1.0 - r });
    let merges = linkage(distances, link)?;
    Ok(cut(x.ncols(), &merges, threshold))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Textbook agglomerative clustering, O(n³): merge the closest pair of
    /// clusters by the linkage's definition, until the closest is above t.
    fn naive(dist: &Array2<f64>, link: Linkage, t: f64) -> Vec<usize> {
        let n = dist.nrows();
        let mut clusters: Vec<Vec<usize>> = (0..n).map(|i| vec![i]).collect();
        loop {
            let mut best: Option<(f64, usize, usize)> = None;
            for a in 0..clusters.len() {
                for b in a + 1..clusters.len() {
                    let pairs = clusters[a]
                        .iter()
                        .flat_map(|&i| clusters[b].iter().map(move |&j| dist[[i, j]]));
                    let d = match link {
                        Linkage::Average => {
                            let v: Vec<f64> = pairs.collect();
                            v.iter().sum::<f64>() / v.len() as f64
                        }
                        Linkage::Complete => pairs.fold(f64::NEG_INFINITY, f64::max),
                        Linkage::Single => pairs.fold(f64::INFINITY, f64::min),
                    };
                    if best.is_none_or(|(bd, _, _)| d < bd) {
                        best = Some((d, a, b));
                    }
                }
            }
            match best {
                Some((d, a, b)) if d <= t => {
                    let moved = clusters.remove(b);
                    clusters[a].extend(moved);
                }
                _ => break,
            }
        }
        let mut labels = vec![0; n];
        let mut order: Vec<&Vec<usize>> = clusters.iter().collect();
        order.sort_by_key(|c| *c.iter().min().unwrap());
        for (k, c) in order.iter().enumerate() {
            for &i in c.iter() {
                labels[i] = k;
            }
        }
        labels
    }

    #[test]
    fn nn_chain_matches_the_textbook_algorithm() {
        let mut rng = lca_core::rng::Rng::new(3);
        for trial in 0..20 {
            let n = 3 + trial % 9;
            let points: Vec<(f64, f64)> = (0..n).map(|_| (rng.uniform(), rng.uniform())).collect();
            let dist = Array2::from_shape_fn((n, n), |(i, j)| {
                ((points[i].0 - points[j].0).powi(2) + (points[i].1 - points[j].1).powi(2)).sqrt()
            });
            for link in [Linkage::Average, Linkage::Complete, Linkage::Single] {
                for t in [0.1, 0.3, 0.6] {
                    let merges = linkage(dist.clone(), link).unwrap();
                    assert_eq!(merges.len(), n - 1);
                    assert_eq!(
                        cut(n, &merges, t),
                        naive(&dist, link, t),
                        "{link:?} t={t} n={n}"
                    );
                }
            }
        }
    }

    #[test]
    fn correlated_columns_cluster_together() {
        let mut rng = lca_core::rng::Rng::new(1);
        let x = Array2::from_shape_fn((500, 4), |_| rng.normal() as f32);
        let mut x = x;
        let base = x.column(0).to_owned();
        x.column_mut(1).assign(&base.mapv(|v| -2.0 * v + 1.0));
        let labels = cluster_neurons(
            x.view(),
            true,
            Linkage::Average,
            0.3,
            &RunContext::new(0, 1),
        )
        .unwrap();
        assert_eq!(labels[0], labels[1]);
        assert_ne!(labels[0], labels[2]);
        assert_ne!(labels[2], labels[3]);
        let signed = cluster_neurons(
            x.view(),
            false,
            Linkage::Average,
            0.3,
            &RunContext::new(0, 1),
        )
        .unwrap();
        assert_ne!(
            signed[0], signed[1],
            "anti-correlated neurons are far apart in signed mode"
        );
    }
}
