//! Every neuron's residuals given the selected neurons, in the layout the
//! scoring kernel (`lca_linear::kernels::gaussian`) reads.

use crate::kernels::gaussian::{ROW_BLOCK, row_blocks};
use ndarray::ArrayView2;
use rayon::prelude::*;

/// Neurons whose residuals are initialised together: one cache line of a
/// row of activations.
const NEURON_TILE: usize = 16;

/// Every neuron's residuals on the scored rows, per class, given the
/// selected neurons: x − μ_c minus its projection on the selected neurons
/// under the class's covariance.
///
/// Laid out neuron-major, then by block of rows, then class, then row
/// (`[j][block][k][i]`): one candidate's block is one contiguous run, so a
/// group of candidates streams from memory in a few sequential runs (a
/// class-major layout made every block a scattered 256-byte read, which the
/// prefetcher could not follow).
pub(crate) struct Residuals {
    data: Vec<f32>,
    rows: usize,
    classes: usize,
}

impl Residuals {
    /// x − μ_c for every neuron, class and scored row.
    pub(crate) fn new(x: ArrayView2<'_, f32>, scored: &[usize], means: &[&[f64]]) -> Residuals {
        let (d, classes, rows) = (x.ncols(), means.len(), scored.len());
        let per_neuron = rows * classes;
        let mut data = vec![0.0f32; d * per_neuron];
        if per_neuron > 0 {
            data.par_chunks_mut(per_neuron * NEURON_TILE)
                .enumerate()
                .for_each(|(tile, chunk)| {
                    let first = tile * NEURON_TILE;
                    let mut column = [0.0f64; ROW_BLOCK];
                    for (start, len) in row_blocks(rows) {
                        for (t, neuron) in chunk.chunks_exact_mut(per_neuron).enumerate() {
                            let j = first + t;
                            // The tile's neurons share the cache lines of
                            // these rows, so the strided reads load each once.
                            for (v, &r) in column.iter_mut().zip(&scored[start..start + len]) {
                                *v = f64::from(x[[r, j]]);
                            }
                            let run = &mut neuron[start * classes..(start + len) * classes];
                            for (out, mean) in run.chunks_exact_mut(len).zip(means) {
                                let mu = mean[j];
                                for (o, &v) in out.iter_mut().zip(&column[..len]) {
                                    *o = (v - mu) as f32;
                                }
                            }
                        }
                    }
                });
        }
        Residuals {
            data,
            rows,
            classes,
        }
    }

    /// Neuron `j`'s residuals, in the layout the scoring reads.
    pub(crate) fn neuron(&self, j: usize) -> &[f32] {
        let per_neuron = self.rows * self.classes;
        &self.data[j * per_neuron..(j + 1) * per_neuron]
    }

    /// Calls `f(row, residual)` for neuron `j` and class `k`, rows in order.
    pub(crate) fn for_each_row(&self, j: usize, k: usize, mut f: impl FnMut(usize, f32)) {
        let neuron = self.neuron(j);
        for (start, len) in row_blocks(self.rows) {
            let run = &neuron[start * self.classes + k * len..][..len];
            for (i, &r) in run.iter().enumerate() {
                f(start + i, r);
            }
        }
    }

    /// The residuals of the neurons `open` (increasing), each writable.
    pub(crate) fn neurons_mut(&mut self, open: &[usize]) -> Vec<&mut [f32]> {
        let per_neuron = self.rows * self.classes;
        if per_neuron == 0 {
            return open.iter().map(|_| Default::default()).collect();
        }
        let mut wanted = open.iter().peekable();
        self.data
            .chunks_mut(per_neuron)
            .enumerate()
            .filter_map(|(j, neuron)| wanted.next_if_eq(&&j).map(|_| neuron))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn residuals_read_back_per_class_in_row_order_and_open_neurons_are_writable() {
        // 150 rows (two full blocks and a short one), 3 classes, 20 neurons
        // (a full tile and a short one).
        let (rows, neurons) = (150, 20);
        let x = Array2::from_shape_fn((rows, neurons), |(r, j)| ((r * 31 + j * 7) % 17) as f32);
        let means: Vec<Vec<f64>> = (0..3)
            .map(|k| (0..neurons).map(|j| (k * j) as f64 * 0.5).collect())
            .collect();
        let mean_refs: Vec<&[f64]> = means.iter().map(Vec::as_slice).collect();
        let scored: Vec<usize> = (0..rows).rev().collect();
        let mut residuals = Residuals::new(x.view(), &scored, &mean_refs);
        let read = |residuals: &Residuals, j: usize, k: usize| {
            let mut seen = Vec::new();
            residuals.for_each_row(j, k, |i, r| seen.push((i, r)));
            seen
        };
        for (j, k) in [(0, 0), (3, 2), (19, 1)] {
            let seen = read(&residuals, j, k);
            assert_eq!(seen.len(), rows);
            for (n, (i, r)) in seen.into_iter().enumerate() {
                assert_eq!(i, n);
                assert_eq!(r, (f64::from(x[[scored[i], j]]) - means[k][j]) as f32);
            }
        }
        let open = [1, 5, 19];
        let mut neurons = residuals.neurons_mut(&open);
        assert_eq!(neurons.len(), 3);
        neurons[1][0] = 99.0;
        drop(neurons);
        assert_eq!(read(&residuals, 5, 0)[0].1, 99.0);
    }
}
