//! `lca-testkit`: the conformance suite every ranker must pass, probe state
//! checks, planted data, golden-fixture readers, the file-reader fuzz
//! harness and a row sink for streaming sources.
//!
//! Plugin crates run the suite in-process on their native ranker, and the
//! workspace tests run it again through the loaded plugin library, so a
//! ranker behaves the same whichever way it is called. Components take this
//! crate as a dev-dependency only.

pub mod data;
pub mod degenerate;
pub mod fuzz;
mod params;
mod sink;

pub use params::{check_documented_defaults, example_params, example_table, runnable_example};
pub use sink::CollectingSink;

use lca_builtin::generate;
use lca_core::component::{RankInput, Ranker, SharedProbe};
use lca_core::context::RunContext;
use lca_core::data::{
    ActivationMatrix, Dataset, Labels, NeuronIndex, NeuronRanking, Splits, check_permutation,
};
use lca_core::rng::Rng;

/// A small planted dataset.
pub fn planted(
    tokens: usize,
    neurons: usize,
    classes: usize,
    per_class: usize,
    seed: u64,
) -> Dataset<'static> {
    let p = data::params(tokens, neurons, classes, per_class, 0.2);
    generate(&p, seed, "planted").expect("valid synthetic parameters")
}

/// A dataset of the given activations and class ids, one layer, in row
/// order: the first rows train, then `dev` and `test` fractions of them.
/// Class `k` is named `c<k>`.
///
/// # Panics
/// If the labels do not match the rows or the fractions leave no training
/// rows.
pub fn dataset_from(
    acts: ndarray::Array2<f32>,
    labels: Vec<u32>,
    dev: f64,
    test: f64,
) -> Dataset<'static> {
    let rows = acts.nrows();
    let cols = acts.ncols();
    let n_dev = (rows as f64 * dev).round() as usize;
    let n_test = (rows as f64 * test).round() as usize;
    let names: Vec<String> = labels.iter().map(|y| format!("c{y}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    Dataset::new(
        "arrays",
        ActivationMatrix::from_array(acts),
        NeuronIndex::layer_major(cols, 1).expect("at least one neuron"),
        Labels::from_names(&names),
        None,
        Splits {
            train: rows - n_dev - n_test,
            dev: n_dev,
            test: n_test,
        },
    )
    .expect("a consistent dataset")
}

/// What a ranker promises beyond the basic contract.
#[derive(Clone, Copy, Debug)]
pub struct RankerTraits {
    /// The ranking follows the data: permuting the neuron columns permutes
    /// the ranking the same way. False for data-blind rankers such as `random`.
    pub equivariant: bool,
    /// The ranker needs a trained probe; the suite trains one on its planted
    /// data with this function, and shows the same probe (columns selected
    /// accordingly) to the ranker on permuted and subset data.
    pub probe: Option<fn(&Dataset<'_>) -> SharedProbe>,
    /// The ranker reads another ranking; the suite computes one on its planted
    /// data with this function and permutes it along with the neurons.
    pub ranking: Option<fn(&Dataset<'_>) -> NeuronRanking>,
}

impl Default for RankerTraits {
    fn default() -> Self {
        RankerTraits {
            equivariant: true,
            probe: None,
            ranking: None,
        }
    }
}

/// A trained probe seen through a selection of its input columns: what the
/// same probe looks like on a dataset whose neurons were permuted or
/// subset. Probe-based rankers are tested with it, so that equivariance is
/// checked on the ranker, not on the (floating-point) training.
#[derive(Debug)]
struct ColumnView {
    inner: SharedProbe,
    columns: Vec<usize>,
    weights: Option<ndarray::Array2<f32>>,
    bias: Option<ndarray::Array1<f32>>,
}

impl ColumnView {
    fn new(inner: SharedProbe, columns: Vec<usize>) -> Self {
        let weights = inner
            .weights()
            .map(|w| w.select(ndarray::Axis(1), &columns));
        let bias = inner.bias().map(|b| b.to_owned());
        ColumnView {
            inner,
            columns,
            weights,
            bias,
        }
    }
}

impl lca_core::component::TrainedProbe for ColumnView {
    fn classes(&self) -> &lca_core::data::ClassVocab {
        self.inner.classes()
    }
    fn n_features(&self) -> usize {
        self.columns.len()
    }
    fn predict_proba(
        &self,
        x: ndarray::ArrayView2<'_, f32>,
    ) -> lca_core::Result<ndarray::Array2<f32>> {
        // Scatter the selected columns back into the full width.
        let mut full = ndarray::Array2::<f32>::zeros((x.nrows(), self.inner.n_features()));
        for (k, &c) in self.columns.iter().enumerate() {
            full.column_mut(c).assign(&x.column(k));
        }
        self.inner.predict_proba(full.view())
    }
    fn weights(&self) -> Option<ndarray::ArrayView2<'_, f32>> {
        self.weights.as_ref().map(|w| w.view())
    }
    fn bias(&self) -> Option<ndarray::ArrayView1<'_, f32>> {
        self.bias.as_ref().map(|b| b.view())
    }
}

/// `ranking` re-expressed for a dataset whose column c is old column `columns[c]`
/// (columns not selected are dropped).
fn ranking_on_columns(ranking: &NeuronRanking, columns: &[usize]) -> NeuronRanking {
    let mut new_index = vec![None; ranking.len()];
    for (c, &old) in columns.iter().enumerate() {
        new_index[old] = Some(c as u32);
    }
    let order: Vec<u32> = ranking
        .order()
        .iter()
        .filter_map(|&old| new_index[old as usize])
        .collect();
    match ranking.scores() {
        Some(scores) => {
            NeuronRanking::with_scores(order, columns.iter().map(|&old| scores[old]).collect())
        }
        None => NeuronRanking::from_order(order),
    }
    .expect("a selection of a permutation is a permutation")
}

fn rank(
    ranker: &dyn Ranker,
    data: &Dataset<'_>,
    probe: Option<SharedProbe>,
    input_ranking: Option<&NeuronRanking>,
    cx: &RunContext,
) -> Result<NeuronRanking, String> {
    let named = input_ranking
        .map(|r| {
            vec![lca_core::component::NamedRanking {
                id: "input",
                ranking: r,
            }]
        })
        .unwrap_or_default();
    let mut input = RankInput::new(data).with_rankings(named);
    if let Some(probe) = probe {
        input = input.with_probe(probe);
    }
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ranker.rank(&input, cx)));
    match caught {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(format!("returned an error: {e}")),
        Err(_) => Err("panicked".into()),
    }
}

/// Whether `mapped` equals `expected` up to the order of neurons with equal
/// scores (ties may legitimately be broken by neuron index).
fn same_up_to_ties(mapped: &[u32], expected: &NeuronRanking) -> bool {
    let Some(scores) = expected.scores() else {
        return mapped == expected.order();
    };
    let order = expected.order();
    let mut start = 0;
    while start < order.len() {
        let score = scores[order[start] as usize];
        let end = (start..order.len())
            .find(|&i| scores[order[i] as usize] != score)
            .unwrap_or(order.len());
        let mut a: Vec<u32> = mapped[start..end].to_vec();
        let mut b: Vec<u32> = order[start..end].to_vec();
        a.sort_unstable();
        b.sort_unstable();
        if a != b {
            return false;
        }
        start = end;
    }
    true
}

/// Checks that a probe that stores itself ([`lca_core::TrainedProbe::state`])
/// is restored exactly: the same classes, weights, bias, details and
/// probabilities to the bit, and damaged bytes give an error, not a panic.
/// Returns whether the probe stores itself at all.
///
/// # Errors
/// A sentence naming the rule that failed.
pub fn check_probe_state(probe: &dyn lca_core::Probe) -> Result<bool, String> {
    let data = planted(300, 12, 3, 2, 5);
    let cx = RunContext::new(5, 1).for_step("probe.conformance");
    let trained = probe
        .fit(&data, &cx)
        .map_err(|e| format!("fit failed: {e}"))?;
    let Some(state) = trained.state() else {
        return Ok(false);
    };
    let restored = probe
        .restore(&state)
        .map_err(|e| format!("its own state does not restore: {e}"))?;
    let x = data.acts().view();
    let (a, b) = (
        trained.predict_proba(x.view()).map_err(|e| e.to_string())?,
        restored
            .predict_proba(x.view())
            .map_err(|e| e.to_string())?,
    );
    if a.dim() != b.dim() || a.iter().zip(&b).any(|(p, q)| p.to_bits() != q.to_bits()) {
        return Err("the restored probe predicts different probabilities".into());
    }
    if trained.classes() != restored.classes() || trained.n_features() != restored.n_features() {
        return Err("the restored probe has other classes or another width".into());
    }
    if trained.weights() != restored.weights() || trained.bias() != restored.bias() {
        return Err("the restored probe has other weights or bias".into());
    }
    if trained.details() != restored.details() {
        return Err("the restored probe describes itself differently".into());
    }
    for cut in [0, state.len() / 3, state.len().saturating_sub(1)] {
        let damaged = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            probe.restore(&state[..cut]).is_err()
        }));
        match damaged {
            Ok(true) => {}
            Ok(false) => return Err(format!("a state cut to {cut} bytes still restored")),
            Err(_) => return Err(format!("a state cut to {cut} bytes made restore panic")),
        }
    }
    Ok(true)
}

/// Runs the conformance suite and returns the first violated rule.
///
/// # Errors
/// A sentence naming the rule that failed.
pub fn check_ranker(ranker: &dyn Ranker, traits: RankerTraits) -> Result<(), String> {
    let data = planted(400, 30, 3, 2, 5);
    let cx = RunContext::new(11, 1).for_step("ranker.conformance");
    let base_probe: Option<SharedProbe> = traits.probe.map(|train| train(&data));
    let probe_on = |columns: &[usize]| {
        base_probe
            .clone()
            .map(|p| std::sync::Arc::new(ColumnView::new(p, columns.to_vec())) as SharedProbe)
    };
    let base_ranking: Option<NeuronRanking> = traits.ranking.map(|make| make(&data));
    let ranking_on = |columns: &[usize]| {
        base_ranking
            .as_ref()
            .map(|r| ranking_on_columns(r, columns))
    };

    // 1. A permutation of every neuron, with valid per-class rankings.
    let first = rank(
        ranker,
        &data,
        base_probe.clone(),
        base_ranking.as_ref(),
        &cx,
    )
    .map_err(|e| format!("on planted data the ranker {e}"))?;
    check_permutation(first.order(), data.n_neurons())
        .map_err(|e| format!("not a permutation: {e}"))?;
    for class in first.per_class() {
        if data.classes().id(class.class()).is_none() {
            return Err(format!(
                "it ranks for class `{}`, which the data does not have",
                class.class()
            ));
        }
    }

    // 2. Same seed, same output; thread count does not matter.
    let again = rank(
        ranker,
        &data,
        base_probe.clone(),
        base_ranking.as_ref(),
        &cx,
    )?;
    if again != first {
        return Err("two runs with the same seed gave different rankings".into());
    }
    let threaded = RunContext::from_parts(cx.seed(), 2, cx.step());
    if rank(
        ranker,
        &data,
        base_probe.clone(),
        base_ranking.as_ref(),
        &threaded,
    )? != first
    {
        return Err("1 and 2 threads gave different rankings".into());
    }

    // 3. Permuting the columns permutes the ranking (for data-driven rankers).
    if traits.equivariant {
        for round in 0..3 {
            let mut perm: Vec<usize> = (0..data.n_neurons()).collect();
            Rng::new(round).shuffle(&mut perm);
            let permuted = data.select_neurons(&perm).map_err(|e| e.to_string())?;
            let r = rank(
                ranker,
                &permuted,
                probe_on(&perm),
                ranking_on(&perm).as_ref(),
                &cx,
            )?;
            let mapped: Vec<u32> = r.order().iter().map(|&c| perm[c as usize] as u32).collect();
            if !same_up_to_ties(&mapped, &first) {
                return Err(format!(
                    "permuting the neuron columns (round {round}) did not permute the ranking the same way"
                ));
            }
        }
    }

    // 4. One neuron still gives a valid ranking of one.
    let one = data.select_neurons(&[0]).map_err(|e| e.to_string())?;
    let r = rank(ranker, &one, probe_on(&[0]), ranking_on(&[0]).as_ref(), &cx)
        .map_err(|e| format!("on a one-neuron dataset the ranker {e}"))?;
    if r.order() != [0] {
        return Err(format!(
            "on one neuron the ranking is {:?}, expected [0]",
            r.order()
        ));
    }

    // 5. A single training class must be an error or a valid ranking, never a panic.
    let acts = ActivationMatrix::from_array(ndarray::Array2::from_shape_fn((6, 3), |(r, c)| {
        (r + c) as f32
    }));
    let single = Dataset::new(
        "single",
        acts,
        NeuronIndex::layer_major(3, 1).expect("3 neurons"),
        Labels::from_names(&["a"; 6]),
        None,
        Splits::all_train(6),
    )
    .expect("valid dataset");
    if traits.probe.is_none() && traits.ranking.is_none() {
        let mut input = RankInput::new(&single);
        input.probe = None;
        let caught =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ranker.rank(&input, &cx)));
        match caught {
            Err(_) => {
                return Err(
                    "a single-class dataset made the ranker panic instead of returning an error"
                        .into(),
                );
            }
            Ok(Ok(r)) => {
                check_permutation(r.order(), 3)
                    .map_err(|e| format!("on single-class data: {e}"))?;
            }
            Ok(Err(_)) => {}
        }
    }
    Ok(())
}

/// Precision@k of a ranking against the planted neurons of `data`.
///
/// # Panics
/// If `data` has no ground truth.
pub fn planted_precision(ranking: &NeuronRanking, data: &Dataset<'_>) -> f64 {
    let truth = &data.truth().expect("planted data").informative;
    let k = truth.len();
    ranking.top(k).iter().filter(|j| truth.contains(j)).count() as f64 / k as f64
}

/// Readers for the JSON fixtures that golden tests compare against.
pub mod golden {
    use serde_json::Value;

    /// A JSON array of numbers.
    ///
    /// # Panics
    /// If `v` is not one (a broken fixture).
    pub fn floats(v: &Value) -> Vec<f64> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|x| x.as_f64().expect("number"))
            .collect()
    }

    /// A JSON array of non-negative integers.
    ///
    /// # Panics
    /// If `v` is not one (a broken fixture).
    pub fn ints(v: &Value) -> Vec<u32> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|x| x.as_u64().expect("integer") as u32)
            .collect()
    }

    /// A JSON matrix of numbers as f32 rows, the way NeuroX fixtures store
    /// activations.
    ///
    /// # Panics
    /// If `v` is not a non-empty array of equally long number arrays.
    pub fn matrix(v: &Value) -> ndarray::Array2<f32> {
        matrix_f64(v).mapv(|x| x as f32)
    }

    /// A JSON matrix of numbers as f64 rows (float32 values are stored as
    /// the shortest repr of the f32, so rounding back gives the exact bits).
    ///
    /// # Panics
    /// If `v` is not a non-empty array of equally long number arrays.
    pub fn matrix_f64(v: &Value) -> ndarray::Array2<f64> {
        let rows: Vec<Vec<f64>> = v.as_array().expect("matrix").iter().map(floats).collect();
        let (n, d) = (rows.len(), rows[0].len());
        ndarray::Array2::from_shape_fn((n, d), |(r, c)| rows[r][c])
    }

    /// `order` with each member of a tie group (`ties`: arrays of neuron
    /// indices with exactly equal scores) replaced by the group's smallest
    /// member, so orders that differ only inside tie groups compare equal.
    pub fn canonical(order: &[u32], ties: &Value) -> Vec<u32> {
        let groups: Vec<Vec<u32>> = ties
            .as_array()
            .map(|g| g.iter().map(ints).collect())
            .unwrap_or_default();
        order
            .iter()
            .map(|&j| {
                groups
                    .iter()
                    .find(|g| g.contains(&j))
                    .map_or(j, |g| *g.iter().min().expect("non-empty group"))
            })
            .collect()
    }
}
