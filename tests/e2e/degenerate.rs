//! Degenerate data through the whole engine: every ranker and evaluator on
//! dead and constant neurons, repeated and identical rows, one row per
//! class, a single class in dev and a label per token. A run either
//! finishes with finite numbers and the constant neurons last in every
//! ranking, or stops with an error that says what is wrong with the data;
//! it never panics and never reports a plausible-looking wrong number.

use lca_core::recipe;
use lca_core::run::{self, Results, Silent};
use lca_core::{Error, RunContext};
use lca_testkit::degenerate::{Case, Kind, case};
use lca_tests::registry_with;
use proptest::prelude::*;

const PLUGINS: [&str; 10] = [
    "lca_plugin_correlation",
    "lca_plugin_gaussian",
    "lca_plugin_iou",
    "lca_plugin_logistic",
    "lca_plugin_probe_weights",
    "lca_plugin_probeless",
    "lca_plugin_random",
    "lca_plugin_redundancy",
    "lca_plugin_variance",
    "lca_plugin_nonlinear",
];

/// Every ranker, and the evaluators that read rankings and probes.
const COMPONENTS: &str = r#"
[probe.p]
type = "elastic_net"
l1 = 0.001
l2 = 0.001
[ranker.corr]
type = "correlation"
[ranker.rand]
type = "random"
[ranker.probeless]
type = "probeless"
[ranker.iou]
type = "iou"
[ranker.ap]
type = "iou_neurox"
[ranker.gauss]
type = "gaussian"
neurons = 4
[ranker.var]
type = "variance"
between_classes = true
[ranker.lca]
type = "probe_weights"
probe = "p"
[ranker.linear]
type = "mean_abs_weight"
probe = "p"
[ranker.indep]
type = "independent_neurons"
rankings = ["corr"]
[evaluator.accuracy]
type = "probe_accuracy"
probes = ["p"]
[evaluator.agreement]
type = "ranking_overlap"
rankings = ["corr", "probeless", "iou", "ap", "gauss", "var", "lca", "linear", "indep"]
k = [1, 2]
[evaluator.minimal]
type = "minimal_subset"
rankings = ["lca"]
probes = ["p"]
[evaluator.layers]
type = "layer_distribution"
rankings = ["lca", "corr"]
[evaluator.ablation]
type = "ablation"
rankings = ["lca", "corr"]
probes = ["p"]
percent = [50]
[evaluator.redundancy]
type = "redundancy"
rankings = ["corr"]
[evaluator.sets]
type = "neuron_sets"
probes = ["p"]
rankings = ["lca"]
top = [2]
"#;

fn run_case(c: &Case) -> Result<Results, Error> {
    let dir = tempfile::tempdir().unwrap();
    let text = format!("[source.d]\n{}{COMPONENTS}", c.write_npy_source(dir.path()));
    let registry = registry_with(&PLUGINS);
    let plan = recipe::compile("degenerate.toml".as_ref(), &text, &registry)
        .unwrap_or_else(|e| panic!("the recipe compiles: {e}"));
    run::execute(&plan, &RunContext::new(7, 1), &mut Silent)
}

/// What every finished run must satisfy.
fn check_results(c: &Case, results: &Results) -> Result<(), String> {
    let neurons = c.acts.ncols();
    let constant = &c.constant;
    if results.sources["d"].constant_neurons != constant.len() {
        return Err(format!(
            "summary counts {} constant neurons, expected {constant:?}",
            results.sources["d"].constant_neurons
        ));
    }
    for (name, record) in &results.rankings {
        let ranking = &record.ranking;
        lca_core::data::check_permutation(ranking.order(), neurons)
            .map_err(|e| format!("{name}: {e}"))?;
        if let Some(scores) = ranking.scores()
            && let Some(bad) = scores.iter().find(|s| !s.is_finite())
        {
            return Err(format!("{name}: score {bad}"));
        }
        // The constant neurons close the ranking, in index order.
        let tail = &ranking.order()[neurons - constant.len()..];
        if tail != constant.as_slice() {
            return Err(format!(
                "{name}: ends with {tail:?}, expected the constant neurons {constant:?} (order {:?})",
                ranking.order()
            ));
        }
    }
    for (name, record) in &results.evaluations {
        for (metric, value) in &record.evaluation.metrics {
            if !value.is_finite() {
                return Err(format!("{name}: {metric} = {value}"));
            }
        }
    }
    // No neuron agrees with another about nothing.
    if constant.len() + 1 >= neurons {
        let agreement = &results.evaluations["agreement"].evaluation;
        if agreement
            .metrics
            .keys()
            .any(|m| m.contains("spearman") || m.contains("kendall"))
        {
            return Err(format!(
                "rank agreement reported on data with at most one varying neuron: {:?}",
                agreement.metrics
            ));
        }
    }
    Ok(())
}

/// Errors a degenerate case may end with: about the data, naming it.
fn acceptable_error(c: &Case, e: &Error) -> Result<(), String> {
    let text = e.to_string();
    let about_data = matches!(
        e.root(),
        Error::InvalidInput(_) | Error::Format { .. } | Error::Shape { .. }
    );
    if !about_data || matches!(e.root(), Error::Panicked { .. }) {
        return Err(format!("{:?}: not an error about the data: {text}", c.kind));
    }
    Ok(())
}

fn check(c: &Case) -> Result<(), String> {
    match run_case(c) {
        Ok(results) => check_results(c, &results),
        Err(e) => acceptable_error(c, &e),
    }
}

#[test]
fn each_kind_of_degenerate_data_runs_or_explains_itself() {
    for kind in Kind::ALL {
        let c = case(kind, 16, 6, 11);
        check(&c).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
    }
    // Every kind with at least two rows of some class in its training
    // split finishes; the others may stop with an error about the data
    // (a variance within classes needs two rows of one class).
    for kind in [
        Kind::ConstantColumns,
        Kind::DuplicateRows,
        Kind::IdenticalRows,
        Kind::AllZeros,
        Kind::SingleClassInDev,
    ] {
        let c = case(kind, 16, 6, 11);
        let results = run_case(&c).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        assert_eq!(results.rankings.len(), 10, "{kind:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn every_ranker_puts_constant_neurons_last_with_finite_scores(
        kind in prop::sample::select(Kind::ALL.to_vec()),
        rows in 6usize..40,
        neurons in 3usize..10,
        seed in any::<u64>(),
    ) {
        let c = case(kind, rows, neurons, seed);
        if let Err(e) = check(&c) {
            return Err(TestCaseError::fail(e));
        }
    }
}
