//! The same recipe and seed give byte-identical `results.json` (apart from
//! the `provenance` section: timings, versions, thread count, plugin files),
//! run after run and at any thread count. Checked on the two synthetic
//! recipes, which together use every built-in evaluator and every ranking
//! plugin, and on a pair of recipes that export activations in NeuroX's
//! format and read them back with the `neurox_json` and `npy` sources.

use std::path::Path;

mod common;
use common::{lca_command, npy, read_results, repo, succeed};

/// `results.json` of one run without its provenance section, as text.
fn results_without_provenance(recipe: &str, threads: &str, out: &Path) -> String {
    results_of(&repo(recipe), threads, out)
}

fn results_of(recipe: &Path, threads: &str, out: &Path) -> String {
    succeed(
        lca_command()
            .args(["run", "--quiet", "--threads", threads, "--out"])
            .arg(out)
            .arg(recipe),
    );
    let (results, provenance) = read_results(&out.join("results.json")).expect("results.json");
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

const EXPORT: &str = r#"
[run]
seed = 3

[source.planted]
type = "synthetic"
tokens = 900
neurons = 24
layers = 2
classes = 3
per_class = 2

[evaluator.export]
type = "neurox_export"
path = "EXPORT/planted.json"
"#;

const READ_BACK: &str = r#"
[run]
seed = 5

[source.json]
type = "neurox_json"
activations = "export/planted.json"
corpus = "export/planted.sentences.txt"
labels = "export/planted.labels.txt"

[source.npy]
type = "npy"
path = "acts.npy"
labels = "labels.txt"
layers = 2

[probe.plain]
type = "unregularized"
source = "json"
solver = "neurox_compatible"
epochs = 3

[probe.ridge]
type = "ridge"
source = "npy"

[ranker.weights]
type = "probe_weights"
probe = "plain"

[ranker.corr]
type = "correlation"
source = "npy"

[ranker.ridge]
type = "probe_weights"
probe = "ridge"

[evaluator.ablation]
type = "ablation"
source = "json"
rankings = ["weights"]
probes = ["plain"]
percent = [25, 50]

[evaluator.overlap]
type = "ranking_overlap"
source = "npy"
rankings = ["corr", "ridge"]
"#;

#[test]
fn exported_and_reread_activations_give_identical_results() {
    let dir = tempfile::tempdir().unwrap();
    // The export itself is byte-identical at 1 and 2 threads.
    let mut exported = Vec::new();
    for (threads, folder) in [("1", "export"), ("2", "export2")] {
        let recipe = dir.path().join(format!("export-{threads}.toml"));
        std::fs::write(&recipe, EXPORT.replace("EXPORT", folder)).unwrap();
        results_of(
            &recipe,
            threads,
            &dir.path().join(format!("out-export-{threads}")),
        );
        exported.push(std::fs::read(dir.path().join(folder).join("planted.json")).unwrap());
    }
    assert!(exported[0] == exported[1], "the exports differ");

    // The same matrix as an .npy file with a label file.
    // One label per line, a blank line between sentences.
    let sentences = std::fs::read_to_string(dir.path().join("export/planted.labels.txt")).unwrap();
    let labels: Vec<&str> = sentences.split_whitespace().collect();
    let label_file: Vec<String> = sentences
        .lines()
        .map(|line| line.split(' ').collect::<Vec<_>>().join("\n"))
        .collect();
    let values: Vec<f32> = std::str::from_utf8(&exported[0])
        .unwrap()
        .lines()
        .flat_map(|line| {
            let block: serde_json::Value = serde_json::from_str(line).unwrap();
            let words = block["features"].as_array().unwrap().clone();
            words.into_iter().map(|word| {
                word["layers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .flat_map(|layer| layer["values"].as_array().unwrap().clone())
                    .map(|v| v.as_f64().unwrap() as f32)
                    .collect::<Vec<f32>>()
            })
        })
        .flatten()
        .collect();
    assert_eq!(values.len(), labels.len() * 24);
    std::fs::write(dir.path().join("acts.npy"), npy(labels.len(), 24, &values)).unwrap();
    std::fs::write(dir.path().join("labels.txt"), label_file.join("\n\n")).unwrap();

    let recipe = dir.path().join("read-back.toml");
    std::fs::write(&recipe, READ_BACK).unwrap();
    let one = results_of(&recipe, "1", &dir.path().join("a"));
    let again = results_of(&recipe, "1", &dir.path().join("b"));
    let two = results_of(&recipe, "2", &dir.path().join("c"));
    assert!(one == again, "two runs at 1 thread differ");
    assert!(one == two, "1 and 2 threads differ");
    assert!(one.contains("\"overlap\"") && one.contains("\"ablation\""));
}
