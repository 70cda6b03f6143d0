//! Every case of the bad-input corpus (`tests/bad-inputs/`, written by its
//! `generate.py`) through the `lca` binary: exit code 2, one paragraph that
//! starts with `error:` and names what `expect.toml` lists (the file, the
//! place, what was expected), no panic or backtrace, and no results left
//! behind that could pass for a finished run.

use std::path::{Path, PathBuf};

mod common;
use common::lca_command;

fn corpus_dir() -> PathBuf {
    common::repo("tests/bad-inputs")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn files_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_named(&path, name));
        } else if path.file_name().is_some_and(|n| n == name) {
            found.push(path);
        }
    }
    found
}

/// Runs one case in a scratch copy; returns a description of what went
/// wrong, if anything.
fn check_case(case: &Path) -> Option<String> {
    let name = case.file_name().unwrap().to_string_lossy().into_owned();
    let expect: toml::Table = std::fs::read_to_string(case.join("expect.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let command = expect["command"].as_str().unwrap();
    let wanted: Vec<&str> = expect["contains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join(&name);
    copy_dir(case, &dir);
    let extra: Vec<&str> = expect
        .get("args")
        .and_then(|a| a.as_array())
        .map(|a| a.iter().map(|v| v.as_str().unwrap()).collect())
        .unwrap_or_default();
    let output = lca_command()
        .current_dir(&dir)
        .args(
            [command, "recipe.toml", "--quiet"]
                .iter()
                .filter(|a| command == "run" || **a != "--quiet"),
        )
        .args(&extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let mut problems = Vec::new();
    if output.status.code() != Some(2) {
        problems.push(format!("exit code {:?}, expected 2", output.status.code()));
    }
    if !stderr.starts_with("error: ") {
        problems.push("the message does not start with `error: `".into());
    }
    if stderr.contains("panicked at") || stderr.contains("stack backtrace") {
        problems.push("a panic leaked".into());
    }
    if stderr.trim().contains("\n\n") {
        problems.push("the message is more than one paragraph".into());
    }
    for w in &wanted {
        if !stderr.contains(w) {
            problems.push(format!("the message does not say {w:?}"));
        }
    }
    let results = files_named(&dir, "results.json");
    if !results.is_empty() {
        problems.push(format!("results were written: {results:?}"));
    }
    (!problems.is_empty()).then(|| format!("{name}: {}\n  stderr: {stderr}", problems.join("; ")))
}

#[test]
fn every_bad_input_gets_a_clear_error_and_leaves_nothing_behind() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("expect.toml").is_file())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 20,
        "the corpus has only {} cases",
        cases.len()
    );
    let failures: Vec<String> = cases.iter().filter_map(|c| check_case(c)).collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn windows_line_endings_are_accepted() {
    // The corpus-count-mismatch files, repaired, with CRLF line ends.
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("crlf");
    copy_dir(&corpus_dir().join("corpus-count-mismatch"), &dir);
    std::fs::write(
        dir.join("labels.txt"),
        "DT NN VBD\r\nDT NN VBD RB\r\nPRP VBD JJ\r\n",
    )
    .unwrap();
    let sentences = std::fs::read_to_string(dir.join("sentences.txt")).unwrap();
    std::fs::write(dir.join("sentences.txt"), sentences.replace('\n', "\r\n")).unwrap();
    let output = lca_command()
        .current_dir(&dir)
        .args(["run", "recipe.toml", "--quiet", "--out", "out"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("out/results.json")).unwrap())
            .unwrap();
    assert_eq!(results["sources"]["acts"]["tokens"], 10);
    // No class name carries a stray carriage return.
    let classes = results["sources"]["acts"]["classes"].to_string();
    assert!(!classes.contains("\\r"), "{classes}");
}

/// Rows × 6 activations where neuron 0 follows the class, neuron 2 is dead
/// (always 0) and the others are pseudo-random.
fn acts_with_a_dead_neuron(labels: &[u32]) -> Vec<f32> {
    let mut state = 7u64;
    let mut values = Vec::new();
    for &y in labels {
        for neuron in 0..6 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let noise = (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            values.push(match neuron {
                0 => y as f32 + noise * 0.1,
                2 => 0.0,
                _ => noise,
            });
        }
    }
    values
}

/// Writes `acts.npy` (rows × cols), `labels.txt` (one label per line, no
/// blank lines), optional `words.txt` and a recipe whose npy source reads
/// them followed by `components`, then runs it into `out/`, which must succeed.
fn run_npy_recipe(
    dir: &std::path::Path,
    (rows, cols, values): (usize, usize, &[f32]),
    labels: &[&str],
    with_words: bool,
    components: &str,
) -> std::process::Output {
    std::fs::write(dir.join("acts.npy"), common::npy(rows, cols, values)).unwrap();
    let text: String = labels.iter().map(|label| format!("{label}\n")).collect();
    std::fs::write(dir.join("labels.txt"), text).unwrap();
    let mut source =
        "[source.acts]\ntype = \"npy\"\npath = \"acts.npy\"\nlabels = \"labels.txt\"\n".to_string();
    if with_words {
        let words: String = (0..rows).map(|r| format!("w{r}\n")).collect();
        std::fs::write(dir.join("words.txt"), words).unwrap();
        source.push_str("words = \"words.txt\"\n");
    }
    std::fs::write(dir.join("recipe.toml"), source + components).unwrap();
    common::succeed(
        lca_command()
            .current_dir(dir)
            .args(["run", "recipe.toml", "--out", "out"]),
    )
}

#[test]
fn labels_without_blank_lines_are_one_sentence_and_dead_neurons_come_last() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let labels: Vec<u32> = (0..60).map(|r| r % 3).collect();
    let names: Vec<&str> = labels
        .iter()
        .map(|&y| ["DT", "NN", "VB"][y as usize])
        .collect();
    let output = run_npy_recipe(
        dir,
        (60, 6, &acts_with_a_dead_neuron(&labels)),
        &names,
        true,
        "[ranker.corr]\ntype = \"correlation\"\n[ranker.iou]\ntype = \"iou\"\n[ranker.ap]\ntype = \"iou_neurox\"\n",
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no blank lines separate sentences"),
        "{stderr}"
    );
    assert!(
        stderr.contains("1 of 6 neurons are constant on the training split (neurons 2)"),
        "{stderr}"
    );
    let (results, _) = common::read_results(&dir.join("out/results.json")).unwrap();
    assert_eq!(results["sources"]["acts"]["constant_neurons"], 1);
    for ranker in ["corr", "iou", "ap"] {
        let order = results["rankings"][ranker]["ranking"]["order"]
            .as_array()
            .unwrap();
        assert_eq!(order[0], 0, "{ranker}: the class neuron first");
        assert_eq!(order[5], 2, "{ranker}: the dead neuron last");
    }
    let report = std::fs::read_to_string(dir.join("out/report.md")).unwrap();
    assert!(report.contains("5 of 6 neurons vary on the training split (1 constant, ranked last)"));
}

#[test]
fn data_without_information_says_so_and_reports_no_agreement() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    // Every row the same: no neuron varies.
    let labels: Vec<&str> = (0..40).map(|r| ["A", "B"][r % 2]).collect();
    let output = run_npy_recipe(
        dir,
        (40, 4, &[0.5; 160]),
        &labels,
        false,
        "[ranker.corr]\ntype = \"correlation\"\n[ranker.probeless]\ntype = \"probeless\"\n\
         [evaluator.agreement]\ntype = \"ranking_overlap\"\nrankings = [\"corr\", \"probeless\"]\nk = [1, 2]\n",
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("carry no information"), "{stderr}");
    let (results, _) = common::read_results(&dir.join("out/results.json")).unwrap();
    let agreement = &results["evaluations"]["agreement"]["evaluation"];
    assert!(
        agreement["metrics"].as_object().unwrap().is_empty(),
        "no agreement on all-tied rankings: {agreement}"
    );
    let report = std::fs::read_to_string(dir.join("out/report.md")).unwrap();
    assert!(
        report.contains("NOT: acts: 0 of 4 neurons vary"),
        "{report}"
    );
}
