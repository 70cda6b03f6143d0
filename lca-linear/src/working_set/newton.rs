//! The Newton direction of the working-set solver: coordinate descent on
//! the quadratic model of the loss, with the rows shared out among threads.
//!
//! Coordinate descent is sequential in its coordinates: each step needs the
//! products left by the one before. What can be shared is the rows. Every
//! thread owns a fixed range of row blocks and keeps the logit changes of
//! its rows; a step's column product is summed per block, the block sums
//! are published, and after one barrier every thread adds all of them in
//! block order. So every thread takes the same decisions, and the result is
//! the same whatever the number of threads (the blocks, not the threads,
//! decide how the sums are split).

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use rayon::prelude::*;

use super::Columns;
use crate::kernels;

/// Coordinate-descent sweeps per Newton direction at most (classes that
/// have settled are skipped, so most sweeps are short). A direction still
/// moving after that many is used as it is: the line search keeps every
/// step a descent step, and on strongly correlated neurons the late sweeps
/// refine the direction far less than the next Newton step does. On the
/// real POS benchmark, 30 instead of 100 saves a quarter of the probe's
/// time; at λ = 1e-5 no direction reaches the cap.
const MAX_SWEEPS: usize = 30;

/// Rows per block of a column product. Small enough that two threads get
/// nearly equal shares of a few tens of thousands of rows, large enough
/// that a block's sum costs far more than its bookkeeping; a multiple of
/// the kernels' 32 lanes.
const BLOCK_ROWS: usize = 2048;

/// Fewest blocks per thread worth a thread of its own: below that, the
/// barrier after every coordinate costs more than the rows save.
const MIN_BLOCKS_PER_THREAD: usize = 4;

/// What a Newton direction is computed from: the data term's gradient at
/// every pair and bias, and the class-major probabilities at the current
/// point.
pub(super) struct NewtonModel<'a> {
    pub grad: &'a [f64],
    pub grad_b: &'a [f64],
    pub probability: &'a [f32],
}

/// A Newton direction: coordinate descent, class after class, on the
/// quadratic model of the loss with the exact softmax Hessian
/// (`Σ_r x_r x_rᵀ ⊗ (diag(p_r) − p_r p_rᵀ) / n`), plus the L1 term and a
/// ridge of weight `ridge`. The classes are coupled through one vector per
/// row, `s_r = Σ_k p_rk u_rk` (with `u` the change of the logits), so a
/// coordinate costs a few passes over its column whatever the number of
/// classes. Returns the new values of the pairs and the bias changes, and
/// leaves in `u` (class-major, `u[k·n + r]`, as long as that) the change of
/// the logits they make, summed along the way (within the rounding of the
/// steps of a fresh product, and the same bits on any number of threads);
/// `trace` prints the sweeps and products it took.
#[allow(clippy::too_many_arguments)]
pub(super) fn newton_direction(
    columns: &Columns,
    by_class: &[Vec<(usize, usize)>],
    values: &[f64],
    model: &NewtonModel<'_>,
    (l1, ridge): (f64, f64),
    tolerance: f64,
    trace: bool,
    u: &mut [f32],
) -> (Vec<f64>, Vec<f64>) {
    let n = columns.rows;
    let nf = n.max(1) as f64;
    // Each bias's own curvature (its entry of the Hessian's diagonal), per
    // class in parallel. The pairs' entries are summed in the first sweep,
    // from the column the pair's first product has just brought into cache.
    let diagonal_b: Vec<f64> = (0..by_class.len())
        .into_par_iter()
        .map(|k| {
            let p_k = &model.probability[k * n..(k + 1) * n];
            p_k.iter().map(|&p| f64::from(curvature(p))).sum::<f64>() / nf
        })
        .collect();
    let c = by_class.len();
    let blocks = n.div_ceil(BLOCK_ROWS);
    let workers = rayon::current_num_threads()
        .min(blocks / MIN_BLOCKS_PER_THREAD)
        .max(1);
    let descent = Descent {
        columns,
        by_class,
        values,
        model,
        l1,
        ridge,
        tolerance,
        trace,
        diagonal_b: &diagonal_b,
        sums: [(); 2].map(|()| (0..blocks).map(|_| AtomicU64::new(0)).collect()),
        curvature_sums: [(); 2].map(|()| (0..blocks).map(|_| AtomicU64::new(0)).collect()),
        barrier: SpinBarrier::new(workers),
    };
    // Contiguous, nearly equal shares of the blocks; each thread gets its
    // rows of every class's logit changes.
    let share = |w: usize| w * blocks / workers..(w + 1) * blocks / workers;
    let mut changes: Vec<Vec<&mut [f32]>> = (0..workers).map(|_| Vec::with_capacity(c)).collect();
    let mut rest = u;
    for _ in 0..c {
        let (mut class, tail) = std::mem::take(&mut rest).split_at_mut(n);
        rest = tail;
        for (w, mine) in changes.iter_mut().enumerate() {
            let (part, others) = class.split_at_mut(rows_of(share(w), n).len());
            mine.push(part);
            class = others;
        }
    }
    let mut changes = changes.into_iter();
    let first = changes.next().expect("at least one worker");
    if workers == 1 {
        return descent.run(share(0), first);
    }
    std::thread::scope(|scope| {
        let descent = &descent;
        let helpers: Vec<_> = changes
            .enumerate()
            .map(|(w, mine)| scope.spawn(move || descent.run(share(w + 1), mine)))
            .collect();
        let result = descent.run(share(0), first);
        for helper in helpers {
            if let Err(panic) = helper.join() {
                std::panic::resume_unwind(panic);
            }
        }
        result
    })
}

/// A row's curvature for a class it has probability `p` of: `p (1 − p)`.
fn curvature(p: f32) -> f32 {
    let p = f64::from(p);
    (p * (1.0 - p)) as f32
}

fn soft_threshold(v: f64, threshold: f64) -> f64 {
    if v > threshold {
        v - threshold
    } else if v < -threshold {
        v + threshold
    } else {
        0.0
    }
}

/// The rows of the blocks `blocks` of [`BLOCK_ROWS`] rows, among `n`.
fn rows_of(blocks: Range<usize>, n: usize) -> Range<usize> {
    (blocks.start * BLOCK_ROWS).min(n)..(blocks.end * BLOCK_ROWS).min(n)
}

/// The problem every thread of one direction works on, and what they share.
struct Descent<'a> {
    columns: &'a Columns,
    by_class: &'a [Vec<(usize, usize)>],
    values: &'a [f64],
    model: &'a NewtonModel<'a>,
    l1: f64,
    ridge: f64,
    tolerance: f64,
    trace: bool,
    diagonal_b: &'a [f64],
    /// Per block, the bits of its latest product sum (f64). Two sets, used
    /// in turn: a thread may write the next step's sums while another still
    /// reads this step's.
    sums: [Vec<AtomicU64>; 2],
    /// Likewise for the curvature sums of a pair's first product.
    curvature_sums: [Vec<AtomicU64>; 2],
    barrier: SpinBarrier,
}

/// One thread's rows: the pending step and the vectors it updates.
struct Rows<'a> {
    /// The owned blocks.
    blocks: Range<usize>,
    /// Their rows.
    range: Range<usize>,
    /// The last accepted step, applied in the pass that reads the next
    /// product (one pass over the shared vectors instead of three).
    pending: Option<(&'a [f32], f32)>,
    /// Which set of `Descent::sums` the next product uses.
    turn: usize,
}

impl Descent<'_> {
    /// Runs the sweeps on the rows of `blocks`, keeping their logit changes
    /// in `u` (one slice per class); every thread returns the same pairs
    /// and bias changes.
    fn run(&self, blocks: Range<usize>, mut u: Vec<&mut [f32]>) -> (Vec<f64>, Vec<f64>) {
        let _guard = BreakOnPanic(&self.barrier);
        let n = self.columns.rows;
        let c = self.by_class.len();
        let range = rows_of(blocks.clone(), n);
        let rows = range.len();
        let ones = vec![1.0f32; rows];
        let mut new = self.values.to_vec();
        let mut delta_b = vec![0.0f64; c];
        u.iter_mut().for_each(|u_k| u_k.fill(0.0));
        let mut s = vec![0.0f32; rows];
        let mut mine = Rows {
            blocks,
            range: range.clone(),
            pending: None,
            turn: 0,
        };
        // Classes whose last sweep moved nothing beyond the tolerance rest
        // until every class rests; then one sweep over all of them checks
        // that the coupling has not moved them again.
        let mut active = vec![true; c];
        let mut held_at_zero = vec![false; new.len()];
        // Each pair's own curvature (its entry of the Hessian's diagonal),
        // summed with its first product, in the first sweep (which visits
        // every pair); the class's row curvatures are formed for it.
        let mut diagonal = vec![f64::NAN; new.len()];
        let mut class_curvature = vec![0.0f32; rows];
        let mut checking = false;
        let mut products = 0usize;
        let mut sweeps = 0usize;
        for _ in 0..MAX_SWEEPS {
            sweeps += 1;
            for (k, pairs) in self.by_class.iter().enumerate() {
                if !active[k] && !checking {
                    continue;
                }
                let p_k = &self.model.probability[k * n + range.start..k * n + range.end];
                let u_k = &mut *u[k];
                let mut largest = 0.0f64;
                let first_sweep = sweeps == 1;
                if first_sweep {
                    class_curvature
                        .iter_mut()
                        .zip(p_k)
                        .for_each(|(h, &p)| *h = curvature(p));
                }
                for &(i, p) in pairs {
                    if !first_sweep
                        && (diagonal[p] + self.ridge <= f64::MIN_POSITIVE
                            || (held_at_zero[p] && !checking))
                    {
                        continue;
                    }
                    let column = &self.columns.column(i)[range.clone()];
                    let v = new[p];
                    // The model's gradient: the data term's plus the
                    // Hessian times the change so far, (p_k u_k − p_k s)
                    // per row.
                    products += 1;
                    let with_curvature = first_sweep.then_some(&class_curvature[..]);
                    let (product, own) =
                        self.product(&mut mine, column, p_k, u_k, &mut s, with_curvature);
                    if let Some(own) = own {
                        diagonal[p] = own;
                    }
                    let a = diagonal[p];
                    let denominator = a + self.ridge;
                    if denominator <= f64::MIN_POSITIVE {
                        continue;
                    }
                    let g = self.model.grad[p] + product;
                    let moved = soft_threshold(a * v - g, self.l1) / denominator;
                    // A weight the L1 term holds at zero is left out of the
                    // sweeps until the next checking sweep (liblinear's
                    // shrinking): most pairs of a working set end at zero.
                    held_at_zero[p] = v == 0.0 && moved == 0.0;
                    let step = moved - v;
                    if step != 0.0 {
                        mine.pending = Some((column, step as f32));
                        new[p] = moved;
                        largest = largest.max(a * step.abs());
                    }
                }
                let bias_product = (self.diagonal_b[k] > f64::MIN_POSITIVE)
                    .then(|| self.product(&mut mine, &ones, p_k, u_k, &mut s, None).0);
                if let Some((previous, step)) = mine.pending.take() {
                    kernels::axpy(step, previous, u_k);
                    kernels::weighted_axpy(step, p_k, previous, &mut s);
                }
                if let Some(product) = bias_product {
                    let g = self.model.grad_b[k] + product;
                    let step = -g / self.diagonal_b[k];
                    delta_b[k] += step;
                    u_k.iter_mut().for_each(|v| *v += step as f32);
                    kernels::weighted_axpy(step as f32, p_k, &ones, &mut s);
                    largest = largest.max(self.diagonal_b[k] * step.abs());
                }
                active[k] = largest > self.tolerance;
            }
            let resting = active.iter().all(|&a| !a);
            if resting && checking {
                break;
            }
            checking = resting;
        }
        if self.trace && mine.blocks.start == 0 {
            eprintln!(
                "  Newton direction: {sweeps} sweeps, {products} coordinate products over {} pairs",
                new.len()
            );
        }
        (new, delta_b)
    }

    /// `Σ_r column_r · p_kr · (u_kr − s_r) / n` over all rows (after the
    /// pending step), and with `curvature` (this thread's rows' `h`),
    /// `Σ_r column_r² · h_r / n` too: this thread's blocks are summed here,
    /// the others' come from their threads.
    fn product<'c>(
        &self,
        mine: &mut Rows<'c>,
        column: &'c [f32],
        p_k: &[f32],
        u_k: &mut [f32],
        s: &mut [f32],
        curvature: Option<&[f32]>,
    ) -> (f64, Option<f64>) {
        let sums = &self.sums[mine.turn];
        let curvature_sums = &self.curvature_sums[mine.turn];
        mine.turn ^= 1;
        let pending = mine.pending.take();
        for block in mine.blocks.clone() {
            let start = block * BLOCK_ROWS - mine.range.start;
            let rows = start..(start + BLOCK_ROWS).min(mine.range.len());
            let (u_b, s_b) = (&mut u_k[rows.clone()], &mut s[rows.clone()]);
            let (column_b, p_b) = (&column[rows.clone()], &p_k[rows.clone()]);
            let sum = match pending {
                Some((previous, step)) => kernels::step_then_weighted_dot_difference(
                    step,
                    &previous[rows.clone()],
                    column_b,
                    p_b,
                    u_b,
                    s_b,
                ),
                None => kernels::weighted_dot_difference(column_b, p_b, u_b, s_b),
            };
            sums[block].store(f64::from(sum).to_bits(), Ordering::Relaxed);
            if let Some(h) = curvature {
                // The block's column was just read: it is in cache.
                let own = kernels::weighted_dot(column_b, &h[rows], column_b);
                curvature_sums[block].store(f64::from(own).to_bits(), Ordering::Relaxed);
            }
        }
        self.barrier.wait();
        // Both in block order, whatever the number of threads.
        let total = |sums: &[AtomicU64]| {
            sums.iter()
                .map(|bits| f64::from_bits(bits.load(Ordering::Relaxed)))
                .sum::<f64>()
                / self.columns.rows.max(1) as f64
        };
        (total(sums), curvature.map(|_| total(curvature_sums)))
    }
}

/// A barrier for threads that meet after every coordinate, tens of
/// microseconds apart: waiting spins (a sleep and wake-up would cost as much
/// as the work), and yields the core after a while in case the machine has
/// more threads than cores.
struct SpinBarrier {
    parties: usize,
    arrived: AtomicUsize,
    generation: AtomicUsize,
    /// Set when a thread unwinds, so the others stop waiting for it.
    broken: AtomicBool,
}

impl SpinBarrier {
    fn new(parties: usize) -> SpinBarrier {
        SpinBarrier {
            parties,
            arrived: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
            broken: AtomicBool::new(false),
        }
    }

    /// Returns when all parties have called `wait` as often as this thread.
    /// Writes before the call are visible to every party after it.
    fn wait(&self) {
        if self.parties == 1 {
            return;
        }
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.parties {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
            return;
        }
        let mut spins = 0u32;
        while self.generation.load(Ordering::Acquire) == generation {
            assert!(
                !self.broken.load(Ordering::Relaxed),
                "another coordinate-descent thread failed"
            );
            if spins < 1 << 14 {
                spins += 1;
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

/// Breaks the barrier if its thread unwinds, so no other thread waits for
/// it forever.
struct BreakOnPanic<'a>(&'a SpinBarrier);

impl Drop for BreakOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.broken.store(true, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_barrier_orders_every_write_before_every_read_after_it() {
        const STEPS: usize = 2000;
        let barrier = SpinBarrier::new(3);
        let slots: Vec<AtomicU64> = (0..3).map(|_| AtomicU64::new(0)).collect();
        std::thread::scope(|scope| {
            for t in 0..3 {
                let (barrier, slots) = (&barrier, &slots);
                scope.spawn(move || {
                    for step in 1..=STEPS as u64 {
                        slots[t].store(step, Ordering::Relaxed);
                        barrier.wait();
                        for slot in slots {
                            // Nobody may write step + 1 before all have read.
                            assert_eq!(slot.load(Ordering::Relaxed), step);
                        }
                        barrier.wait();
                    }
                });
            }
        });
    }

    /// A direction on `n` rows of three neurons (the middle one constant,
    /// so its column is zero once centred) and three classes, computed on
    /// `threads` threads, with its logit changes.
    fn direction_on(n: usize, threads: usize) -> (Vec<f64>, Vec<f64>, Vec<f32>) {
        use crate::Scaling;
        use ndarray::{Array1, Array2};
        let mut rng = lca_core::rng::Rng::new(3);
        let x = Array2::from_shape_fn(
            (n, 3),
            |(_, j)| {
                if j == 1 { 2.0 } else { rng.normal() as f32 }
            },
        );
        let mean = [0.0, 2.0, 0.0];
        let scaling = Scaling {
            mean: Array1::from_vec(mean.to_vec()),
            scale: Array1::ones(3),
        };
        let columns = Columns::gather(&x.view(), &scaling, &[0, 1, 2]);
        // Pairs (neuron, pair index) of each class; every neuron in class 0.
        let by_class = vec![vec![(0, 0), (1, 1), (2, 2)], vec![(0, 3)], vec![(2, 4)]];
        let probability: Vec<f32> = (0..3 * n)
            .map(|i| [0.5f32, 0.3, 0.2][i / n] + 0.01 * ((i % 7) as f32 - 3.0))
            .collect();
        let model = NewtonModel {
            grad: &[0.2, -0.1, -0.05, 0.03, 0.07],
            grad_b: &[0.01, -0.02, 0.01],
            probability: &probability,
        };
        let mut u = vec![f32::NAN; 3 * n];
        let (values, delta_b) = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| {
                newton_direction(
                    &columns,
                    &by_class,
                    &[0.0; 5],
                    &model,
                    (1e-3, 0.0),
                    1e-9,
                    false,
                    &mut u,
                )
            });
        // The logit changes are those the returned pairs and biases make.
        for r in (0..n).step_by(11) {
            for (k, pairs) in by_class.iter().enumerate() {
                let moved: f64 = pairs
                    .iter()
                    .map(|&(i, p)| (f64::from(x[[r, i]]) - mean[i]) * values[p])
                    .sum();
                let want = delta_b[k] + moved;
                let got = f64::from(u[k * n + r]);
                assert!(
                    (got - want).abs() < 1e-5 * (1.0 + want.abs()),
                    "[{k}, {r}]: {got} against {want}"
                );
            }
        }
        (values, delta_b, u)
    }

    #[test]
    fn a_zero_column_does_not_move_and_threads_give_the_same_bits() {
        let n = 2 * MIN_BLOCKS_PER_THREAD * BLOCK_ROWS + 37;
        let (values, delta_b, u) = direction_on(n, 1);
        assert!(values.iter().chain(&delta_b).all(|v| v.is_finite()));
        assert_eq!(
            values[1], 0.0,
            "the constant neuron's pair has no curvature"
        );
        assert!(values[0] < 0.0 && values[3] != 0.0, "{values:?}");
        let shared = direction_on(n, 2);
        assert_eq!(shared, (values, delta_b, u));
    }
}
