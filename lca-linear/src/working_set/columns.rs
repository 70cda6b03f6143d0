//! The working set's neurons as contiguous solver-space columns, and how
//! they are read from the data with as few passes as possible.
//!
//! On a store larger than memory every pass over the activations is a read
//! from disk, so the solver avoids the pass that copying a new working set's
//! columns would take:
//! - the columns of the last working set are kept, and a neuron that stays
//!   in the set is copied from them;
//! - the check pass (which reads every row anyway) also copies a *reserve*:
//!   the neurons outside the set that are likeliest to join it next;
//! - only neurons found in neither are read in a pass of their own.
//!
//! Every route computes a value the same way, `(x − shift) · factor` in
//! `f32`, so the columns (and the solver's path) are the same bits whichever
//! route gave them.

use std::sync::Mutex;

use rayon::prelude::*;

use lca_core::data::RowBlocks;

use crate::{CHUNK_ROWS, Scaling};

/// Rows converted (when 16-bit) and copied at a time: small enough to stay
/// in cache with the columns' write positions.
const BLOCK_ROWS: usize = 64;

/// Neurons `neurons[i]`, centred and scaled, over every row: column `i` is
/// `data[i · rows .. (i + 1) · rows]`.
pub(super) struct Columns {
    pub(super) rows: usize,
    neurons: Vec<usize>,
    data: Vec<f32>,
}

/// The centring and scaling of a list of neurons, in `f32`, as every route
/// applies it.
struct Transform {
    shift: Vec<f32>,
    factor: Vec<f32>,
}

impl Transform {
    fn of(scaling: &Scaling, neurons: &[usize]) -> Self {
        Transform {
            shift: neurons.iter().map(|&j| scaling.mean[j] as f32).collect(),
            factor: neurons
                .iter()
                .map(|&j| (1.0 / scaling.scale[j]) as f32)
                .collect(),
        }
    }

    fn apply(&self, i: usize, value: f32) -> f32 {
        (value - self.shift[i]) * self.factor[i]
    }
}

impl Columns {
    /// Reads `neurons` from the row-major activations in one pass. Chunks
    /// of rows are read in parallel, each in order, so a matrix mapped from
    /// disk is read by every thread at once (on a store larger than memory,
    /// the kernel's work of bringing the pages in is what bounds the pass).
    pub(super) fn gather(x: &impl RowBlocks, scaling: &Scaling, neurons: &[usize]) -> Columns {
        let (rows, width) = x.shape();
        let (columns, ()) = Columns::filled_by(rows, scaling, neurons, |sink| {
            let starts: Vec<usize> = (0..rows).step_by(CHUNK_ROWS).collect();
            starts.into_par_iter().for_each(|start| {
                let end = (start + CHUNK_ROWS).min(rows);
                let mut converted = Vec::new();
                for block in (start..end).step_by(BLOCK_ROWS) {
                    let block = block..(block + BLOCK_ROWS).min(end);
                    let first = block.start;
                    let values = x.rows_in(block, &mut converted);
                    lca_core::data::bring_into_cache(values);
                    sink.copy_rows(first, values, width);
                }
            });
        });
        columns
    }

    /// The columns of `neurons` over `rows` rows: copied from `held` where
    /// one of them has the neuron (the first that has it), and read from
    /// `x` (one pass, only for the rest) otherwise. The second value says
    /// whether a pass was made. Every list of neurons is in ascending order.
    ///
    /// The first held set's buffer becomes the new one: its columns that
    /// stay are moved within it, so the memory in use while a set is built
    /// is the larger of the two sets plus the other held sets, instead of
    /// both sets side by side (the old and the next working set differ by a
    /// few hundred neurons out of up to a few thousand). The other held
    /// sets are let go before any pass.
    pub(super) fn assemble(
        x: &impl RowBlocks,
        scaling: &Scaling,
        neurons: &[usize],
        held: Vec<Columns>,
    ) -> (Columns, bool) {
        let rows = x.shape().0;
        debug_assert!(neurons.is_sorted());
        debug_assert!(held.iter().all(|h| h.rows == rows && h.neurons.is_sorted()));
        let mut held = held.into_iter();
        let (base_neurons, mut data) = match held.next() {
            Some(base) => (base.neurons, base.data),
            None => (Vec::new(), Vec::new()),
        };
        let others: Vec<Columns> = held.collect();
        // Where each wanted neuron's column is in the base, if there.
        let mut cursor = 0;
        let in_base: Vec<Option<usize>> = neurons
            .iter()
            .map(|&j| {
                while cursor < base_neurons.len() && base_neurons[cursor] < j {
                    cursor += 1;
                }
                (base_neurons.get(cursor) == Some(&j)).then_some(cursor)
            })
            .collect();
        let wanted = neurons.len() * rows;
        if data.len() < wanted {
            data.resize(wanted, 0.0);
        }
        // Both lists ascend, so a column moving left never lands on one that
        // has yet to move right, nor the reverse: the leftward moves run
        // first in ascending order, then the rightward ones in descending
        // order, and no column is overwritten before it has moved.
        let span = |i: usize| i * rows..(i + 1) * rows;
        for (i, &from) in in_base.iter().enumerate() {
            if let Some(o) = from.filter(|&o| o > i) {
                data.copy_within(span(o), i * rows);
            }
        }
        for (i, &from) in in_base.iter().enumerate().rev() {
            if let Some(o) = from.filter(|&o| o < i) {
                data.copy_within(span(o), i * rows);
            }
        }
        data.truncate(wanted);
        data.shrink_to_fit();
        // The rest from the other held sets, one cursor per set, or from
        // the data.
        let mut missing = Vec::new();
        let mut cursors = vec![0usize; others.len()];
        for (i, &j) in neurons.iter().enumerate() {
            if in_base[i].is_some() {
                continue;
            }
            let mut found = None;
            for (columns, cursor) in others.iter().zip(&mut cursors) {
                let listed = &columns.neurons;
                while *cursor < listed.len() && listed[*cursor] < j {
                    *cursor += 1;
                }
                if found.is_none() && listed.get(*cursor) == Some(&j) {
                    found = Some(columns.column(*cursor));
                }
            }
            match found {
                Some(column) => data[span(i)].copy_from_slice(column),
                None => missing.push(i),
            }
        }
        drop(others);
        let read = !missing.is_empty() && rows > 0;
        if read {
            let missing_neurons: Vec<usize> = missing.iter().map(|&i| neurons[i]).collect();
            let fresh = Columns::gather(x, scaling, &missing_neurons);
            for (k, &i) in missing.iter().enumerate() {
                data[span(i)].copy_from_slice(fresh.column(k));
            }
        }
        let columns = Columns {
            rows,
            neurons: neurons.to_vec(),
            data,
        };
        (columns, read)
    }

    pub(super) fn column(&self, i: usize) -> &[f32] {
        &self.data[i * self.rows..(i + 1) * self.rows]
    }

    /// Columns for `neurons`, filled by `fill` through a [`ColumnSink`]
    /// (which must cover every row).
    pub(super) fn filled_by<T>(
        rows: usize,
        scaling: &Scaling,
        neurons: &[usize],
        fill: impl FnOnce(&ColumnSink<'_>) -> T,
    ) -> (Columns, T) {
        let mut data = vec![0.0f32; neurons.len() * rows];
        let result = {
            let sink = ColumnSink::new(scaling, neurons, rows, &mut data);
            fill(&sink)
        };
        let columns = Columns {
            rows,
            neurons: neurons.to_vec(),
            data,
        };
        (columns, result)
    }

    /// The neurons held, in column order.
    pub(super) fn neurons(&self) -> &[usize] {
        &self.neurons
    }
}

/// Columns filled during a pass that reads every row for another purpose
/// (the solver's check): each chunk of rows copies its part of every
/// column from the rows it has in cache. The chunks of a pass are disjoint,
/// so they write disjoint pieces, each behind its own (never contended)
/// lock.
pub(super) struct ColumnSink<'a> {
    transform: Transform,
    neurons: &'a [usize],
    /// `pieces[chunk][i]`: rows `chunk · CHUNK_ROWS ..` of column `i`.
    pieces: Vec<Mutex<Vec<&'a mut [f32]>>>,
}

impl<'a> ColumnSink<'a> {
    /// A sink writing `neurons` into `data` (`neurons.len() × rows`,
    /// column-major).
    pub(super) fn new(
        scaling: &Scaling,
        neurons: &'a [usize],
        rows: usize,
        data: &'a mut [f32],
    ) -> ColumnSink<'a> {
        let chunks = rows.div_ceil(CHUNK_ROWS);
        let mut pieces: Vec<Vec<&mut [f32]>> = (0..chunks)
            .map(|_| Vec::with_capacity(neurons.len()))
            .collect();
        if rows > 0 {
            for column in data.chunks_exact_mut(rows) {
                for (chunk, piece) in column.chunks_mut(CHUNK_ROWS).enumerate() {
                    pieces[chunk].push(piece);
                }
            }
        }
        ColumnSink {
            transform: Transform::of(scaling, neurons),
            neurons,
            pieces: pieces.into_iter().map(Mutex::new).collect(),
        }
    }

    /// Copies rows `first..first + values.len() / width` (row-major, `width`
    /// neurons each) of every column. The rows must lie in one chunk.
    pub(super) fn copy_rows(&self, first: usize, values: &[f32], width: usize) {
        if self.neurons.is_empty() || values.is_empty() {
            return;
        }
        let chunk = first / CHUNK_ROWS;
        let offset = first - chunk * CHUNK_ROWS;
        let mut pieces = self.pieces[chunk].lock().expect("one chunk per thread");
        let rows = values.len() / width;
        // A neuron at a time: its rows are one short contiguous run of its
        // column (a cache line for the check's blocks of 16 rows), read down
        // the block's rows, which stay in cache for the next neuron.
        for (i, (piece, &j)) in pieces.iter_mut().zip(self.neurons).enumerate() {
            let out = &mut piece[offset..offset + rows];
            for (o, &value) in out.iter_mut().zip(values[j..].iter().step_by(width)) {
                *o = self.transform.apply(i, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;
    use lca_core::data::{ActivationMatrix, HalfFormat};
    use ndarray::{Array1, Array2};

    fn scaling(d: usize) -> Scaling {
        Scaling {
            mean: Array1::from_shape_fn(d, |j| 0.25 * j as f64 - 1.0),
            scale: Array1::from_shape_fn(d, |j| 0.5 + 0.3 * (j % 4) as f64),
        }
    }

    /// Every route gives a neuron's column the same bits, and `assemble`
    /// reads the data only for neurons it holds nowhere.
    fn every_route_agrees(x: &impl RowBlocks) {
        let (rows, width) = x.shape();
        let scaling = scaling(width);
        let wanted = [1, 4, 5, 9, 17, width - 1];
        let direct = Columns::gather(x, &scaling, &wanted);
        // The straightforward definition.
        let all = x.rows_f32(0..rows);
        for (i, &j) in wanted.iter().enumerate() {
            let shift = scaling.mean[j] as f32;
            let factor = (1.0 / scaling.scale[j]) as f32;
            let expected: Vec<u32> = all
                .column(j)
                .iter()
                .map(|&v| ((v - shift) * factor).to_bits())
                .collect();
            let found: Vec<u32> = direct.column(i).iter().map(|v| v.to_bits()).collect();
            assert_eq!(found, expected, "neuron {j}");
        }
        // Filled on a pass that reads every chunk, in any order.
        let (sunk, ()) = Columns::filled_by(rows, &scaling, &wanted, |sink| {
            let starts: Vec<usize> = (0..rows).step_by(CHUNK_ROWS).collect();
            for &start in starts.iter().rev() {
                let end = (start + CHUNK_ROWS).min(rows);
                for first in (start..end).step_by(16) {
                    let block = first..(first + 16).min(end);
                    let values = x.rows_f32(block.clone());
                    sink.copy_rows(first, values.as_slice().unwrap(), width);
                }
            }
        });
        assert_eq!(sunk.data, direct.data);
        // Assembled from two held sets and the data.
        let held = vec![
            Columns::gather(x, &scaling, &[0, 4, 9]),
            Columns::gather(x, &scaling, &[5, 9, 12]),
        ];
        let (assembled, read) = Columns::assemble(x, &scaling, &wanted, held);
        assert!(read, "neurons 1, 17 and the last are held nowhere");
        assert_eq!(assembled.data, direct.data);
        assert_eq!(assembled.neurons(), &wanted);
        let held = vec![direct];
        let (again, read) = Columns::assemble(x, &scaling, &[4, 17], held);
        assert!(!read, "every neuron is held");
        assert_eq!(again.column(1), assembled.column(4));
    }

    /// Sets built in the first held set's buffer, whatever the overlap:
    /// columns moving left, moving right, staying, dropped and added, the
    /// set growing and shrinking.
    #[test]
    fn columns_moved_within_the_held_buffer_match_a_fresh_read() {
        let (rows, width) = (CHUNK_ROWS + 21, 40);
        let mut rng = lca_core::rng::Rng::new(11);
        let x = Array2::from_shape_simple_fn((rows, width), || rng.normal() as f32);
        let x = x.view();
        let scaling = scaling(width);
        let subset = |rng: &mut lca_core::rng::Rng, p: f64| -> Vec<usize> {
            (0..width).filter(|_| rng.uniform() < p).collect()
        };
        for case in 0..40 {
            let base = subset(&mut rng, 0.1 + 0.02 * f64::from(case));
            let reserve = subset(&mut rng, 0.2);
            let wanted = subset(&mut rng, 0.9 - 0.02 * f64::from(case));
            let held = vec![
                Columns::gather(&x, &scaling, &base),
                Columns::gather(&x, &scaling, &reserve),
            ];
            let (assembled, read) = Columns::assemble(&x, &scaling, &wanted, held);
            let direct = Columns::gather(&x, &scaling, &wanted);
            assert_eq!(
                assembled.data, direct.data,
                "case {case}: {base:?} → {wanted:?}"
            );
            assert_eq!(assembled.data.len(), wanted.len() * rows);
            let held_somewhere = |j: &usize| base.contains(j) || reserve.contains(j);
            assert_eq!(read, !wanted.iter().all(held_somewhere), "case {case}");
        }
    }

    #[test]
    fn gathered_sunk_and_assembled_columns_are_the_same_bits() {
        let (rows, width) = (2 * CHUNK_ROWS + 37, 23);
        let mut rng = lca_core::rng::Rng::new(5);
        let x = Array2::from_shape_simple_fn((rows, width), || rng.normal() as f32);
        every_route_agrees(&x.view());
        let halves: Vec<u16> = x.iter().map(|&v| f16::from_f32(v).to_bits()).collect();
        let half =
            ActivationMatrix::from_half_slice(rows, width, HalfFormat::F16, &halves).unwrap();
        every_route_agrees(&half);
    }
}
