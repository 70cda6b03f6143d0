//! `lca run --resume`: the finished steps of an earlier run into the same
//! output directory are reused when nothing that determines them changed,
//! and the results are exactly those of an uninterrupted run.

use std::path::{Path, PathBuf};
use std::process::Output;

mod common;
use common::{lca_command, npy, read_results, repo, succeed};

fn run(recipe: &Path, out: &Path, extra: &[&str]) -> Output {
    succeed(
        lca_command()
            .arg("run")
            .arg("--out")
            .arg(out)
            .args(extra)
            .arg(recipe),
    )
}

/// The results without the run-dependent provenance, and the reused steps.
fn results(out: &Path) -> (serde_json::Value, Vec<String>) {
    let (value, provenance) = read_results(&out.join("results.json")).expect("results.json");
    let reused = provenance["reused"]
        .as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
        .unwrap_or_default();
    (value, reused)
}

fn step_keys(results: &serde_json::Value) -> Vec<String> {
    results["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["key"].as_str().unwrap().to_string())
        .collect()
}

fn checkpoint_dir(out: &Path) -> PathBuf {
    out.join(".lca-checkpoint")
}

/// Leaves only the checkpoints of `keep`, as a run killed after them would.
fn keep_checkpoints(out: &Path, keep: &[String]) {
    for entry in std::fs::read_dir(checkpoint_dir(out)).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let key = name.trim_end_matches(".json").trim_end_matches(".state");
        if !keep.iter().any(|k| k == key) {
            std::fs::remove_file(&path).unwrap();
        }
    }
    for output in ["results.json", "report.md", "report.html"] {
        let _ = std::fs::remove_file(out.join(output));
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_run_resumed_after_any_step_gives_the_uninterrupted_results() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let recipe = repo("examples/recipes/lca-synthetic.toml");
    run(&recipe, &out, &["--quiet"]);
    let (reference, reused) = results(&out);
    assert!(reused.is_empty(), "a first run reuses nothing: {reused:?}");
    let keys = step_keys(&reference);
    assert!(keys.len() > 10);

    // Interrupted after the first `done` steps: those are reused (sources
    // are always reloaded), the rest run, and nothing differs.
    for done in [1, 3, 5, 9, keys.len()] {
        keep_checkpoints(&out, &keys[..done]);
        let output = run(&recipe, &out, &["--resume"]);
        let (found, reused) = results(&out);
        assert!(
            found == reference,
            "resumed after {done} steps: results differ"
        );
        let expected: Vec<String> = keys[..done]
            .iter()
            .filter(|k| !k.starts_with("source."))
            .cloned()
            .collect();
        assert_eq!(reused, expected, "resumed after {done} steps");
        if !expected.is_empty() {
            assert!(
                stderr(&output).contains(&format!("reused {} of {}", expected.len(), keys.len())),
                "{}",
                stderr(&output)
            );
        }
    }
}

#[test]
fn damaged_checkpoints_are_redone_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let recipe = repo("examples/recipes/lca-synthetic.toml");
    run(&recipe, &out, &["--quiet"]);
    let (reference, _) = results(&out);

    let ck = checkpoint_dir(&out);
    let state = ck.join("probe.lasso.state");
    let mut bytes = std::fs::read(&state).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&state, bytes).unwrap();
    let entry = ck.join("ranker.rand.json");
    let text = std::fs::read(&entry).unwrap();
    std::fs::write(&entry, &text[..text.len() / 2]).unwrap();

    let output = run(&recipe, &out, &["--resume"]);
    let err = stderr(&output);
    assert!(
        err.contains("probe.lasso: not reused: its checkpoint")
            && err.contains("probe.lasso.state is damaged"),
        "{err}"
    );
    assert!(
        err.contains("ranker.rand: not reused: its checkpoint")
            && err.contains("ranker.rand.json is damaged"),
        "{err}"
    );
    let (found, reused) = results(&out);
    assert!(
        found == reference,
        "results differ after redoing damaged steps"
    );
    assert!(!reused.contains(&"probe.lasso".to_string()));
    assert!(!reused.contains(&"ranker.rand".to_string()));
    assert!(reused.contains(&"probe.lca".to_string()), "{reused:?}");
    // The redone steps were kept again, whole.
    let (_, reused) = {
        run(&recipe, &out, &["--resume", "--quiet"]);
        results(&out)
    };
    assert!(reused.contains(&"probe.lasso".to_string()), "{reused:?}");
}

#[test]
fn a_changed_parameter_or_seed_redoes_what_depends_on_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let original = std::fs::read_to_string(repo("examples/recipes/lca-synthetic.toml")).unwrap();
    let recipe = dir.path().join("recipe.toml");
    std::fs::write(&recipe, &original).unwrap();
    run(&recipe, &out, &["--quiet"]);

    // The lasso probe's penalty changes: it and everything reading it run
    // again; the elastic-net side is reused.
    assert!(original.contains("l1 = 0.005"));
    std::fs::write(&recipe, original.replace("l1 = 0.005", "l1 = 0.004")).unwrap();
    let output = run(&recipe, &out, &["--resume", "--quiet"]);
    let (changed, reused) = results(&out);
    for redone in ["probe.lasso", "ranker.lasso"] {
        assert!(!reused.contains(&redone.to_string()), "{redone} was reused");
    }
    for kept in ["probe.lca", "ranker.lca", "ranker.lca_independent"] {
        assert!(reused.contains(&kept.to_string()), "{kept} was not reused");
    }
    // What was redone is what a fresh run computes.
    let fresh = dir.path().join("fresh");
    run(&recipe, &fresh, &["--quiet"]);
    assert!(results(&fresh).0 == changed, "{}", stderr(&output));

    // Another seed changes every step.
    run(&recipe, &out, &["--resume", "--quiet", "--seed", "8"]);
    let (_, reused) = results(&out);
    assert!(reused.is_empty(), "{reused:?}");
}

#[test]
fn changed_input_data_redoes_everything_downstream() {
    let dir = tempfile::tempdir().unwrap();
    let (rows, cols) = (120, 6);
    let labels: Vec<&str> = (0..rows).map(|i| ["NN", "VB", "DT"][i % 3]).collect();
    let mut values: Vec<f32> = (0..rows * cols)
        .map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0)
        .collect();
    for (row, _) in labels.iter().enumerate() {
        values[row * cols + row % 3] += 2.0; // neuron c carries class c
    }
    std::fs::write(dir.path().join("acts.npy"), npy(rows, cols, &values)).unwrap();
    std::fs::write(dir.path().join("labels.txt"), labels.join("\n")).unwrap();
    let recipe = dir.path().join("recipe.toml");
    std::fs::write(
        &recipe,
        r#"
[source.acts]
type = "npy"
path = "acts.npy"
labels = "labels.txt"
layers = 2
split_by = "token"

[probe.en]
type = "elastic_net"

[ranker.lca]
type = "probe_weights"
probe = "en"

[ranker.corr]
type = "correlation"

[evaluator.ablation]
type = "ablation"
rankings = ["lca", "corr"]
probes = ["en"]
percent = [50]
"#,
    )
    .unwrap();
    let out = dir.path().join("out");
    run(&recipe, &out, &["--quiet"]);
    run(&recipe, &out, &["--quiet", "--resume"]);
    let (_, reused) = results(&out);
    assert_eq!(
        reused,
        [
            "probe.en",
            "ranker.lca",
            "ranker.corr",
            "evaluator.ablation"
        ],
        "unchanged data: every step is reused"
    );

    // One activation moves by one unit in the last place.
    values[cols + 2] = f32::from_bits(values[cols + 2].to_bits() + 1);
    std::fs::write(dir.path().join("acts.npy"), npy(rows, cols, &values)).unwrap();
    run(&recipe, &out, &["--quiet", "--resume"]);
    let (_, reused) = results(&out);
    assert!(reused.is_empty(), "changed data, yet reused {reused:?}");
}
