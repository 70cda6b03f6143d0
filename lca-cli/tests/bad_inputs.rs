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
    let output = lca_command()
        .current_dir(&dir)
        .args(
            [command, "recipe.toml", "--quiet"]
                .iter()
                .filter(|a| command == "run" || **a != "--quiet"),
        )
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
