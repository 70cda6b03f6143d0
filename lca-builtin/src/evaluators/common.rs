//! Helpers shared by the evaluators: scoring a probe on a split, retraining
//! on a subset of neurons, zeroing neurons out, sizing subsets.

use ndarray::Axis;

use lca_core::component::{Probe, TrainedProbe, WarmStart};
use lca_core::context::RunContext;
use lca_core::data::{Dataset, Split, SplitData};
use lca_core::error::{Error, Result};
use lca_core::params::rule::{Rule, non_empty, percent};
use lca_core::rng::Rng;

/// A split that must not be empty, with a message saying how to get one.
pub(crate) fn require_split<'d>(
    data: &'d Dataset<'_>,
    split: Split,
    evaluator: &str,
) -> Result<SplitData<'d>> {
    let part = data.split(split);
    if part.labels.is_empty() {
        return Err(Error::input(format!(
            "`{evaluator}` needs a non-empty {split} split, but source `{}` has none; set `{split}` above 0 on the source",
            data.name()
        )));
    }
    Ok(part)
}

lca_core::params! {
    /// The split an evaluator measures on: one declaration for every
    /// evaluator that takes it.
    pub(crate) struct MeasuredOn {
        /// split the scores are measured on
        split: Split = Split::Test,
    }
}

/// Percentages of all neurons: a non-empty list, each in (0, 100].
pub(crate) fn percents() -> Rule<Vec<f64>> {
    non_empty::<f64>().and(percent())
}

/// Fraction of rows whose predicted class is the label.
pub(crate) fn accuracy(predicted: &[u32], labels: &[u32]) -> f64 {
    if labels.is_empty() {
        return 0.0;
    }
    predicted.iter().zip(labels).filter(|(p, y)| p == y).count() as f64 / labels.len() as f64
}

/// Accuracy on `split` of always answering the training split's most
/// frequent class (ties: the lower class id): what a probe reaches without
/// any information from the activations.
pub(crate) fn majority_accuracy(data: &Dataset<'_>, split: Split) -> f64 {
    let train = data.split(Split::Train);
    let counts = lca_core::data::count_classes(train.labels, data.n_classes());
    let majority = (0..counts.len())
        .max_by(|&a, &b| counts[a].cmp(&counts[b]).then(b.cmp(&a)))
        .unwrap_or(0) as u32;
    let part = data.split(split);
    accuracy(&vec![majority; part.labels.len()], part.labels)
}

/// Accuracy of a trained probe on a split.
pub(crate) fn probe_accuracy(
    probe: &dyn TrainedProbe,
    data: &Dataset<'_>,
    split: Split,
) -> Result<f64> {
    let part = data.split(split);
    let predicted = probe.predict_blocks(&part.acts)?;
    Ok(accuracy(&predicted, part.labels))
}

/// A trained probe to start a retrain from, and the data's neurons it was
/// trained on (`None`: all of them, in order).
#[derive(Clone, Copy)]
pub(crate) struct StartFrom<'p> {
    pub(crate) probe: &'p dyn TrainedProbe,
    pub(crate) columns: Option<&'p [usize]>,
}

impl<'p> StartFrom<'p> {
    /// A probe trained on all the data's neurons.
    pub(crate) fn all(probe: &'p dyn TrainedProbe) -> Self {
        StartFrom {
            probe,
            columns: None,
        }
    }

    /// The warm start for a probe on `columns`: this probe's weights for the
    /// neurons both share, zero for the others. `None` for a probe without
    /// weights.
    fn warm_start(&self, columns: &[usize], n_neurons: usize) -> Option<WarmStart> {
        let mut position = vec![None; n_neurons];
        match self.columns {
            None => position
                .iter_mut()
                .enumerate()
                .for_each(|(j, p)| *p = Some(j)),
            Some(seen) => {
                for (i, &c) in seen.iter().enumerate() {
                    *position.get_mut(c)? = Some(i);
                }
            }
        }
        let mapping: Vec<Option<usize>> = columns
            .iter()
            .map(|&c| position.get(c).copied().flatten())
            .collect();
        WarmStart::from_probe(self.probe, &mapping)
    }
}

/// Trains a probe on the given neurons only: from `start` when given (see
/// [`Probe::fit_from`]; for a convex probe this changes the result only
/// within the solver's tolerance, and saves most of the work), else from the
/// probe's own initial point. Returns the subset's data with the probe.
pub(crate) fn retrain(
    spec: &dyn Probe,
    data: &Dataset<'_>,
    columns: &[usize],
    start: Option<StartFrom<'_>>,
    cx: &RunContext,
) -> Result<(Dataset<'static>, Box<dyn TrainedProbe>)> {
    cx.check_cancelled()?;
    // The copy shares its rows among the run's threads.
    let subset = cx.install(|| data.select_neurons(columns))?;
    let warm = start.and_then(|s| s.warm_start(columns, data.n_neurons()));
    let probe = match warm {
        Some(warm) => spec.fit_from(&subset, &warm, cx)?,
        None => spec.fit(&subset, cx)?,
    };
    Ok((subset, probe))
}

/// Trains a probe on the given neurons only (see [`retrain`]) and scores it
/// on `split`.
pub(crate) fn retrain_accuracy(
    spec: &dyn Probe,
    data: &Dataset<'_>,
    columns: &[usize],
    split: Split,
    start: Option<StartFrom<'_>>,
    cx: &RunContext,
) -> Result<f64> {
    let (subset, probe) = retrain(spec, data, columns, start, cx)?;
    probe_accuracy(probe.as_ref(), &subset, split)
}

/// Runs `work` on every item and returns the results in item order, up to
/// `cx.threads()` items at a time, each on a context of one thread, when
/// that many items' working memory (`bytes_each`) fits in half the memory
/// available; one at a time on `cx` otherwise.
///
/// For an evaluator's independent refits: a refit on a few hundred neurons
/// gains little from a second thread inside it (the solver's threads meet
/// after every coordinate), while refits side by side keep every core busy.
/// The solvers give the same result at any thread count, so the results do
/// not depend on how the items are shared out. The first error, in item
/// order, is returned; items not yet started then are not started.
pub(crate) fn side_by_side<T: Sync, R: Send>(
    items: &[T],
    bytes_each: u64,
    cx: &RunContext,
    work: impl Fn(&T, &RunContext) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let workers = cx.threads().min(items.len());
    let fits = lca_core::memory::available_bytes()
        .is_none_or(|free| bytes_each.saturating_mul(workers as u64) <= free / 2);
    if workers <= 1 || !fits {
        return items.iter().map(|item| work(item, cx)).collect();
    }
    let single = cx.with_threads(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failed = std::sync::atomic::AtomicBool::new(false);
    let slots: Vec<std::sync::Mutex<Option<Result<R>>>> =
        items.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                use std::sync::atomic::Ordering;
                while !failed.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let result = work(item, &single);
                    if result.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
                }
            });
        }
    });
    let mut results = Vec::with_capacity(items.len());
    for slot in slots {
        match slot.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(result) => results.push(result?),
            // Only after an earlier item failed, whose error the loop has
            // returned already; kept for completeness.
            None => return Err(Error::Cancelled),
        }
    }
    Ok(results)
}

/// Working memory of a refit on `neurons` neurons of `data`: the subset's
/// copy and the solver's columns and per-row state, with room to spare.
pub(crate) fn refit_bytes(data: &Dataset<'_>, neurons: usize) -> u64 {
    let rows = data.n_rows() as u64;
    let per_row = 4 * 3 * neurons as u64 + 48 * data.n_classes() as u64;
    rows.saturating_mul(per_row)
}

/// Accuracy of a trained probe when every neuron except `keep` is set to zero.
pub(crate) fn zeroed_accuracy(
    probe: &dyn TrainedProbe,
    data: &Dataset<'_>,
    keep: &[usize],
    split: Split,
) -> Result<f64> {
    let part = data.split(split);
    // A block of rows at a time: the zeroed copy then costs a block, not the
    // split, which matters for a store larger than memory.
    let mut predicted = Vec::with_capacity(part.labels.len());
    let step = lca_core::data::rows_per_block(part.acts.n_cols(), ZEROED_BLOCK_BYTES);
    for (_, block) in part.acts.blocks(0..part.acts.n_rows(), step) {
        let x = crate::ablate::zero_out_except(block.view(), keep)?;
        predicted.extend(probe.predict(x.view())?);
    }
    Ok(accuracy(&predicted, part.labels))
}

/// Bytes of rows zeroed and scored at a time by [`zeroed_accuracy`].
const ZEROED_BLOCK_BYTES: usize = 4 << 20;

/// The number of neurons for a percentage of `n` (rounded down, at least 1).
pub(crate) fn count_for_percent(percent: f64, n: usize) -> usize {
    ((percent / 100.0 * n as f64).floor() as usize).clamp(1, n.max(1))
}

/// `k` distinct random neurons of `n`, sorted.
pub(crate) fn random_columns(rng: &mut Rng, n: usize, k: usize) -> Vec<usize> {
    let mut cols = rng.sample_indices(n, k.min(n));
    cols.sort_unstable();
    cols
}

/// Mean and sample standard deviation.
pub(crate) fn mean_sd(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    if values.is_empty() {
        return (0.0, 0.0);
    }
    let mean = values.iter().sum::<f64>() / n;
    let var = if values.len() > 1 {
        values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// The first `k` neurons of a ranking, as column indices.
pub(crate) fn top(order: &[u32], k: usize) -> Vec<usize> {
    order.iter().take(k).map(|&j| j as usize).collect()
}

/// The last `k` neurons of a ranking.
pub(crate) fn bottom(order: &[u32], k: usize) -> Vec<usize> {
    order[order.len().saturating_sub(k)..]
        .iter()
        .map(|&j| j as usize)
        .collect()
}

/// Mean of each column of a split: used by tests and evaluators alike.
#[allow(dead_code)]
pub(crate) fn column_means(part: &SplitData<'_>) -> Vec<f64> {
    part.acts
        .view()
        .mean_axis(Axis(0))
        .map(|m| m.iter().map(|&v| f64::from(v)).collect())
        .unwrap_or_default()
}

lca_core::param_enum! {
    /// How an evaluator scores a subset of neurons.
    pub(crate) enum KeepMode {
        /// The trained probe with every other neuron set to 0.
        ZeroOut = "zero_out",
        /// A fresh probe trained on the subset.
        Retrain = "retrain",
    }
}

impl KeepMode {
    /// Accuracy on `split` keeping only `columns`, this way.
    pub(crate) fn score(
        self,
        probe: &lca_core::component::ProbeInput,
        data: &Dataset<'_>,
        columns: &[usize],
        split: Split,
        cx: &RunContext,
    ) -> Result<f64> {
        match self {
            KeepMode::ZeroOut => zeroed_accuracy(probe.trained.as_ref(), data, columns, split),
            // The probe on all neurons, restricted to the kept ones, is the
            // natural start for a retrain on them.
            KeepMode::Retrain => retrain_accuracy(
                probe.spec.as_ref(),
                data,
                columns,
                split,
                Some(StartFrom::all(probe.trained.as_ref())),
                cx,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn side_by_side_keeps_item_order_and_runs_each_item_on_one_thread() {
        let items: Vec<usize> = (0..37).collect();
        for threads in [1, 2, 5] {
            let cx = RunContext::new(7, threads);
            let results = side_by_side(&items, 1, &cx, |&i, cx| {
                let inner = cx.install(rayon::current_num_threads);
                Ok((i * i, cx.threads(), inner, cx.seed()))
            })
            .unwrap();
            let squares: Vec<usize> = results.iter().map(|r| r.0).collect();
            assert_eq!(squares, items.iter().map(|i| i * i).collect::<Vec<_>>());
            let side = cx.threads() > 1;
            for &(_, given, inner, seed) in &results {
                assert_eq!(given, if side { 1 } else { cx.threads() });
                assert_eq!(inner, given);
                assert_eq!(seed, cx.seed(), "the step's seed is kept");
            }
        }
    }

    #[test]
    fn side_by_side_returns_the_first_error_in_item_order() {
        let items: Vec<usize> = (0..20).collect();
        let cx = RunContext::new(1, 2);
        let outcome = side_by_side(&items, 1, &cx, |&i, _| {
            if i == 3 || i == 11 {
                Err(Error::input(format!("item {i}")))
            } else {
                Ok(i)
            }
        });
        let message = outcome.unwrap_err().to_string();
        assert!(message.contains("item 3"), "{message}");
    }

    #[test]
    fn side_by_side_runs_one_at_a_time_when_the_memory_would_not_hold_them() {
        let items = [0, 1, 2];
        let cx = RunContext::new(1, 2);
        let given = side_by_side(&items, u64::MAX / 2, &cx, |_, cx| Ok(cx.threads())).unwrap();
        let expect = if lca_core::memory::available_bytes().is_some() {
            2
        } else {
            1
        };
        assert_eq!(given, vec![expect; 3]);
    }
}
