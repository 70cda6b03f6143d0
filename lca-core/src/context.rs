//! The run context handed to every component call.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use crate::rng::{Rng, derive_seed};

/// Seed, thread count and identity of the step being run.
///
/// All randomness in a component must come from [`RunContext::rng`] or
/// [`RunContext::seed`], and all parallel work must run inside
/// [`RunContext::install`], so that a recipe gives the same result for the same
/// seed on any machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunContext {
    seed: u64,
    threads: usize,
    step: String,
    progress: ProgressSlot,
}

/// Hears how long work is going (extraction, for instance) and its warnings.
/// The command line draws it as a progress bar; plugins reach the host's
/// through the run context, so every bar and warning goes through one place.
pub trait Progress: Send + Sync {
    /// A task of `total` units (`words`, `sentences`, …) begins.
    fn start(&self, label: &str, total: u64, unit: &str);
    /// `delta` more units are done.
    fn advance(&self, delta: u64);
    /// The task is over.
    fn finish(&self);
    /// Something the user should know, though the work goes on.
    fn warn(&self, message: &str);
    /// What happened, for the record (a cache reused, a file written).
    fn info(&self, _message: &str) {}
    /// Whether the run has been asked to stop (a time limit ran out, the
    /// user pressed Ctrl-C): long work should then return
    /// [`crate::Error::Cancelled`] at its next convenient point.
    fn cancelled(&self) -> bool {
        false
    }
}

/// The optional progress sink; it takes no part in equality, as it does not
/// change what a step computes.
#[derive(Clone, Default)]
struct ProgressSlot(Option<Arc<dyn Progress>>);

impl fmt::Debug for ProgressSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "progress sink"
        } else {
            "no progress sink"
        })
    }
}

impl PartialEq for ProgressSlot {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for ProgressSlot {}

impl RunContext {
    /// A context for a whole run. `threads == 0` means one thread per core;
    /// more than [`THREADS_PER_CORE`] per core (or [`MAX_THREADS`]) are not
    /// started, since they only add switching.
    pub fn new(seed: u64, threads: usize) -> Self {
        let cores = default_threads();
        let threads = if threads == 0 {
            cores
        } else {
            threads
                .min(cores.saturating_mul(THREADS_PER_CORE))
                .min(MAX_THREADS)
        };
        RunContext {
            seed,
            threads,
            step: String::new(),
            progress: ProgressSlot::default(),
        }
    }

    /// The context for one step (such as `ranker.corr`): the same thread count
    /// and a seed derived from the run seed and the step id, so that adding or
    /// reordering other steps does not change this step's random stream.
    pub fn for_step(&self, step: &str) -> Self {
        RunContext {
            seed: derive_seed(self.seed, step),
            threads: self.threads,
            step: step.into(),
            progress: self.progress.clone(),
        }
    }

    /// Rebuilds a context from its parts (used when crossing a plugin boundary).
    pub fn from_parts(seed: u64, threads: usize, step: impl Into<String>) -> Self {
        RunContext {
            seed,
            threads: threads.clamp(1, MAX_THREADS),
            step: step.into(),
            progress: ProgressSlot::default(),
        }
    }

    /// The same context (seed, step, progress) with `threads` workers, for
    /// work run side by side with other work of the same step.
    pub fn with_threads(&self, threads: usize) -> Self {
        RunContext {
            threads: threads.clamp(1, MAX_THREADS),
            ..self.clone()
        }
    }

    /// The same context reporting progress to `sink`.
    pub fn with_progress(mut self, sink: Arc<dyn Progress>) -> Self {
        self.progress = ProgressSlot(Some(sink));
        self
    }

    /// The progress sink, if the caller gave one.
    pub fn progress(&self) -> Option<&Arc<dyn Progress>> {
        self.progress.0.as_ref()
    }

    /// Tells the user what happened, through the progress sink (nothing is
    /// printed without one).
    pub fn info(&self, message: &str) {
        if let Some(sink) = self.progress() {
            sink.info(message);
        }
    }

    /// Tells the user something without stopping: through the progress sink,
    /// or on standard error when there is none.
    pub fn warn(&self, message: &str) {
        match self.progress() {
            Some(sink) => sink.warn(message),
            None => eprintln!("warning: {message}"),
        }
    }

    /// Whether the run has been asked to stop; see [`RunContext::check_cancelled`].
    pub fn cancelled(&self) -> bool {
        self.progress().is_some_and(|sink| sink.cancelled())
    }

    /// `Err(Error::Cancelled)` once the run has been asked to stop (a time
    /// limit, Ctrl-C). Long loops call it between iterations so that a
    /// stopped run ends promptly instead of finishing the step.
    ///
    /// # Errors
    /// [`crate::Error::Cancelled`] when the run must stop.
    pub fn check_cancelled(&self) -> crate::Result<()> {
        if self.cancelled() {
            Err(crate::Error::Cancelled)
        } else {
            Ok(())
        }
    }

    /// The seed of this step.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The number of worker threads this step may use.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The step id, such as `ranker.corr`; empty for a whole-run context.
    pub fn step(&self) -> &str {
        &self.step
    }

    /// A fresh generator for this step's seed.
    pub fn rng(&self) -> Rng {
        Rng::new(self.seed)
    }

    /// A generator for a named sub-stream of this step (for example one per
    /// repetition), independent of the other sub-streams.
    pub fn rng_for(&self, label: &str) -> Rng {
        Rng::derived(self.seed, label)
    }

    /// Runs `work` on a rayon pool with exactly [`RunContext::threads`] workers.
    ///
    /// Pools are cached for the life of the process. Each plugin library
    /// carries its own copy of this code and cache, so plugins honour the
    /// thread count too.
    ///
    /// Calls can nest across libraries (a plugin evaluator retrains a host
    /// probe, which calls back into a plugin). A nested call arrives on a
    /// thread this copy of rayon does not know, while the workers of the outer
    /// pool are blocked waiting for it; queueing it on that pool would
    /// deadlock. Calls can also run side by side (an evaluator's refits on
    /// threads of their own), where sharing a pool would make one wait for
    /// the other. So every call holds a pool of its own while it runs: the
    /// first one of its thread count that no other call holds.
    pub fn install<R: Send>(&self, work: impl FnOnce() -> R + Send) -> R {
        if rayon::current_thread_index().is_some() && rayon::current_num_threads() == self.threads {
            return work();
        }
        let held = HeldPool::take(self.threads);
        held.pool.install(work)
    }
}

/// The most worker threads a run asks for, from a recipe or the command line.
pub const MAX_THREADS: usize = 4096;

/// Worker threads started per core at most, whatever was asked.
pub const THREADS_PER_CORE: usize = 4;

fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1)
}

/// The pools (thread count, slot) held by a call of [`RunContext::install`]
/// in this copy of the library.
static HELD: Mutex<Vec<(usize, usize)>> = Mutex::new(Vec::new());

/// A pool one call holds while it runs; given back when dropped.
struct HeldPool {
    key: (usize, usize),
    pool: Arc<rayon::ThreadPool>,
}

impl HeldPool {
    /// The first pool of `threads` workers that no call holds.
    fn take(threads: usize) -> HeldPool {
        let mut held = HELD.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let slot = (0..)
            .find(|&slot| !held.contains(&(threads, slot)))
            .expect("a free slot");
        held.push((threads, slot));
        drop(held);
        HeldPool {
            key: (threads, slot),
            pool: pool(threads, slot),
        }
    }
}

impl Drop for HeldPool {
    fn drop(&mut self) {
        let mut held = HELD.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        held.retain(|&key| key != self.key);
    }
}

/// Pools by (thread count, slot).
type PoolCache = Mutex<HashMap<(usize, usize), Arc<rayon::ThreadPool>>>;

fn pool(threads: usize, slot: usize) -> Arc<rayon::ThreadPool> {
    static POOLS: OnceLock<PoolCache> = OnceLock::new();
    let pools = POOLS.get_or_init(Default::default);
    let mut pools = pools
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    pools
        .entry((threads, slot))
        .or_insert_with(|| {
            Arc::new(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .thread_name(|i| format!("lca-worker-{i}"))
                    .build()
                    .expect("building a rayon thread pool"),
            )
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_seeds_are_stable_and_distinct() {
        let cx = RunContext::new(42, 2);
        assert_eq!(
            cx.for_step("ranker.a").seed(),
            cx.for_step("ranker.a").seed()
        );
        assert_ne!(
            cx.for_step("ranker.a").seed(),
            cx.for_step("ranker.b").seed()
        );
        assert_eq!(cx.for_step("ranker.a").step(), "ranker.a");
    }

    #[test]
    fn calls_side_by_side_hold_pools_of_their_own() {
        // Two calls of one thread each, on threads of their own, each waiting
        // inside its pool for the other: on a shared pool the second would
        // wait for the first to end, which waits for the second.
        let cx = &RunContext::new(0, 1);
        let (a_sends, b_receives) = std::sync::mpsc::channel::<()>();
        let (b_sends, a_receives) = std::sync::mpsc::channel::<()>();
        let wait = std::time::Duration::from_secs(20);
        std::thread::scope(|scope| {
            let a = scope.spawn(move || {
                cx.install(move || {
                    a_sends.send(()).unwrap();
                    a_receives.recv_timeout(wait).is_ok()
                })
            });
            let b = scope.spawn(move || {
                cx.install(move || {
                    b_sends.send(()).unwrap();
                    b_receives.recv_timeout(wait).is_ok()
                })
            });
            assert!(
                a.join().unwrap() && b.join().unwrap(),
                "the calls shared a pool"
            );
        });
    }

    #[test]
    fn install_uses_the_requested_thread_count() {
        for threads in [1, 3] {
            let cx = RunContext::new(0, threads);
            assert_eq!(cx.install(rayon::current_num_threads), threads);
        }
    }
}
