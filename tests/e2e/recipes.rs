//! Recipes compiled and run in-process with the plugins loaded.

use lca_core::recipe;
use lca_core::run::{self, Silent};
use lca_core::{Error, RunContext};
use lca_tests::{registry_with, repo_root};

const PLUGINS: [&str; 3] = [
    "lca_plugin_correlation",
    "lca_plugin_random",
    "lca_plugin_variance",
];

#[test]
fn the_flagship_recipe_recovers_planted_neurons() {
    let registry = registry_with(&PLUGINS);
    let path = repo_root().join("examples/recipes/planted-synthetic.toml");
    let plan = recipe::compile_file(&path, &registry).unwrap();
    let results = run::execute(&plan, &RunContext::new(plan.run.seed, 2), &mut Silent).unwrap();
    let recovery = &results.evaluations["recovery"].evaluation.metrics;
    assert_eq!(recovery["precision_at_48.corr"], 1.0);
    assert!(recovery["precision_at_48.rand"] < 0.2, "{recovery:?}");
    assert_eq!(results.rankings["corr"].ranking.len(), 1024);
}

#[test]
fn same_seed_same_results_at_any_thread_count() {
    let registry = registry_with(&PLUGINS);
    let path = repo_root().join("examples/custom-ranker/recipe.toml");
    let plan = recipe::compile_file(&path, &registry).unwrap();
    let deterministic = |threads| {
        let mut r =
            run::execute(&plan, &RunContext::new(plan.run.seed, threads), &mut Silent).unwrap();
        r.provenance.timings.clear();
        r.provenance.total_seconds = 0.0;
        r.provenance.threads = 0;
        serde_json::to_string(&r).unwrap()
    };
    let one = deterministic(1);
    assert_eq!(one, deterministic(1));
    assert_eq!(one, deterministic(2));
    let changed = run::execute(&plan, &RunContext::new(plan.run.seed + 1, 1), &mut Silent).unwrap();
    assert_ne!(
        serde_json::to_string(&changed.rankings).unwrap(),
        serde_json::to_string(&serde_json::from_str::<run::Results>(&one).unwrap().rankings)
            .unwrap()
    );
}

#[test]
fn a_failing_plugin_step_names_the_step_and_the_plugin() {
    let registry = registry_with(&["lca_fixture_faulty"]);
    let text = "[source.s]\ntype = \"faulty_source\"\n[ranker.bad]\ntype = \"faulty_ranker\"\nmode = \"panic\"\n";
    let plan = recipe::compile("inline.toml".as_ref(), text, &registry).unwrap();
    let err = run::execute(&plan, &RunContext::new(0, 1), &mut Silent).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err.root(), Error::Panicked { .. }), "{text}");
    assert!(
        text.starts_with("ranker `bad` (faulty_ranker, plugin lca-fixture-faulty"),
        "{text}"
    );
}

#[test]
fn linear_and_nonlinear_probes_side_by_side() {
    let registry = registry_with(&[
        "lca_plugin_correlation",
        "lca_plugin_logistic",
        "lca_plugin_nonlinear",
    ]);
    let path = repo_root().join("examples/recipes/linear-vs-nonlinear.toml");
    let plan = recipe::compile_file(&path, &registry).unwrap();
    let results = run::execute(&plan, &RunContext::new(plan.run.seed, 2), &mut Silent).unwrap();
    let accuracy = &results.evaluations["accuracy"].evaluation.metrics;
    let selectivity = &results.evaluations["selectivity"].evaluation.metrics;
    for probe in ["ridge", "forest", "knn", "bayes"] {
        // Four classes: chance is 0.25; the planted neurons make each probe
        // far better, through its loaded library.
        let key = accuracy
            .keys()
            .find(|k| k.contains(probe) && k.contains("test") && k.contains("accuracy"))
            .unwrap_or_else(|| panic!("no test accuracy for {probe}: {accuracy:?}"));
        assert!(accuracy[key] > 0.6, "{probe}: {key} = {}", accuracy[key]);
        assert!(
            selectivity.keys().any(|k| k.contains(probe)),
            "no selectivity for {probe}: {selectivity:?}"
        );
    }
}
