//! The same recipe and seed give byte-identical `results.json` (apart from
//! the `provenance` section: timings, versions, thread count, plugin files),
//! run after run and at any thread count. Checked on the two synthetic
//! recipes that together use every built-in evaluator and every ranking
//! plugin.

use std::path::Path;

mod common;
use common::{lca_command, repo};

/// `results.json` of one run without its provenance section, as text.
fn results_without_provenance(recipe: &str, threads: &str, out: &Path) -> String {
    let output = lca_command()
        .args(["run", "--quiet", "--threads", threads, "--out"])
        .arg(out)
        .arg(repo(recipe))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{recipe}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let provenance = results
        .as_object_mut()
        .unwrap()
        .remove("provenance")
        .expect("a provenance section");
    assert!(provenance["timings"].is_object());
    serde_json::to_string_pretty(&results).unwrap()
}

#[test]
fn results_are_identical_across_runs_and_thread_counts() {
    for recipe in [
        "examples/recipes/lca-synthetic.toml",
        "examples/recipes/variants-synthetic.toml",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let one = results_without_provenance(recipe, "1", &dir.path().join("a"));
        let again = results_without_provenance(recipe, "1", &dir.path().join("b"));
        let two = results_without_provenance(recipe, "2", &dir.path().join("c"));
        assert!(one == again, "{recipe}: two runs at 1 thread differ");
        assert!(one == two, "{recipe}: 1 and 2 threads differ");
        // And the run is not trivially empty.
        assert!(one.contains("\"evaluations\""), "{recipe}");
    }
}
