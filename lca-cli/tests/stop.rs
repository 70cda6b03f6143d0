//! Stopping a run early: `--timeout` and Ctrl-C stop the step that is
//! running (components check for cancellation in their long loops) or,
//! between steps, the next one; what finished is kept in
//! `results.partial.json` with what was cut; a step stuck past the grace
//! period ends the process with a message naming it. Uses the faulty
//! fixture plugin's `slow` (cooperative) and `stuck` modes.

use std::path::Path;
use std::process::{Command, Output, Stdio};

mod common;
use common::{lca_exe, library, read_results};
use std::time::{Duration, Instant};

const RECIPE: &str = r#"
[source.s]
type = "faulty_source"

[ranker.slow]
type = "faulty_ranker"
mode = "MODE"
seconds = SECONDS

[ranker.after]
type = "faulty_ranker"
"#;

fn command(dir: &Path, seconds: f64, extra: &[&str]) -> Command {
    command_in_mode(dir, "slow", seconds, extra)
}

fn command_in_mode(dir: &Path, mode: &str, seconds: f64, extra: &[&str]) -> Command {
    let recipe = dir.join("recipe.toml");
    let text = RECIPE
        .replace("SECONDS", &seconds.to_string())
        .replace("MODE", mode);
    std::fs::write(&recipe, text).unwrap();
    let mut command = Command::new(lca_exe());
    command
        .env_remove("LCA_PLUGIN_PATH")
        .arg("--plugin")
        .arg(library("lca_fixture_faulty"))
        .args(["run", "--quiet", "--out"])
        .arg(dir.join("out"))
        .args(extra)
        .arg(&recipe);
    command
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs a 60 s step of `mode` with a 10 s time limit and the given grace
/// period; asserts that the run ended within `bound` with status 2, and
/// returns its standard error. The limit leaves loading the plugins and the
/// source step ample time even on a loaded machine, so the limit always
/// falls inside the 60 s step: with 0.2 s, and later 2 s, a busy CI machine
/// (every test binary running at once on two cores) sometimes spent the
/// limit before the step began, and the stuck step never ran.
fn stopped_in_time(dir: &Path, mode: &str, grace: &str, bound: Duration) -> String {
    let started = Instant::now();
    let output = command_in_mode(dir, mode, 60.0, &["--timeout", "10"])
        .env("LCA_STOP_GRACE_SECONDS", grace)
        .output()
        .unwrap();
    assert!(started.elapsed() < bound, "the run was not stopped in time");
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    err
}

#[test]
fn a_time_limit_stops_before_the_next_step_and_keeps_what_finished() {
    let dir = tempfile::tempdir().unwrap();
    let output = command_in_mode(dir.path(), "stuck", 3.0, &["--timeout", "0.3"])
        .output()
        .unwrap();
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    // (Warnings about stale libraries next to the binary may come first.)
    assert!(
        err.lines()
            .any(|l| l
                .starts_with("error: the time limit of 0.3 s ran out before step `ranker.after`")),
        "{err}"
    );
    assert!(
        err.contains("finished: source.s, ranker.slow; cut: ranker.after"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let out = dir.path().join("out");
    assert!(!out.join("results.json").exists());
    let (partial, _) = read_results(&out.join("results.partial.json")).expect("partial results");
    assert_eq!(
        partial["stopped"]["cut"],
        serde_json::json!(["ranker.after"])
    );
    assert!(
        partial["rankings"]["slow"].is_object(),
        "the finished ranking is kept"
    );
    // Without a limit the same recipe completes and the partial file goes.
    let output = command(dir.path(), 0.0, &[]).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(out.join("results.json").exists());
    assert!(!out.join("results.partial.json").exists());
}

#[test]
fn a_step_stuck_past_the_grace_period_ends_the_run_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    // The stuck step ignores the request; the grace period ends the run.
    let err = stopped_in_time(dir.path(), "stuck", "0.5", Duration::from_secs(40));
    assert!(
        err.contains("step `ranker.slow` did not return within"),
        "{err}"
    );
    assert!(!dir.path().join("out/results.json").exists());
}

#[cfg(unix)]
#[test]
fn ctrl_c_stops_cleanly_with_the_shell_status() {
    let dir = tempfile::tempdir().unwrap();
    let started = dir.path().join("slow-step-started");
    let child = command_in_mode(dir.path(), "stuck", 2.0, &[])
        .env("LCA_FIXTURE_STARTED", &started)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Once the slow step runs, interrupt the run as a terminal would.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !started.exists() {
        assert!(Instant::now() < deadline, "the slow step never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let output = child.wait_with_output().unwrap();
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(130), "{err}");
    assert!(
        err.contains("the run was interrupted (Ctrl-C) before step `ranker.after`"),
        "{err}"
    );
    assert!(dir.path().join("out/results.partial.json").exists());
    assert!(!dir.path().join("out/results.json").exists());
}

#[test]
fn a_stopped_run_resumes_without_redoing_what_finished() {
    let dir = tempfile::tempdir().unwrap();
    let output = command_in_mode(dir.path(), "stuck", 3.0, &["--timeout", "0.3"])
        .output()
        .unwrap();
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(err.contains("rerun with --resume"), "{err}");

    // The slow ranking finished before the limit: a resumed run reuses it
    // instead of running it again (the provenance says which steps it
    // reused), and completes the cut step. A wall-clock bound on the rerun
    // used to stand in for this and failed on a loaded CI machine.
    let output = command_in_mode(dir.path(), "stuck", 3.0, &["--resume"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let out = dir.path().join("out");
    assert!(!out.join("results.partial.json").exists());
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(
        results["provenance"]["reused"],
        serde_json::json!(["ranker.slow"])
    );
    assert!(results["rankings"]["after"].is_object());
}

#[test]
fn a_long_step_is_interrupted_from_inside_and_cut() {
    let dir = tempfile::tempdir().unwrap();
    // The step notices within its next check, long before the grace period.
    let err = stopped_in_time(dir.path(), "slow", "30", Duration::from_secs(30));
    assert!(
        err.contains(
            "ran out before step `ranker.slow`; finished: source.s; cut: ranker.slow, ranker.after"
        ),
        "{err}"
    );
    let (partial, _) =
        read_results(&dir.path().join("out/results.partial.json")).expect("partial results");
    assert_eq!(
        partial["stopped"]["cut"],
        serde_json::json!(["ranker.slow", "ranker.after"])
    );
}
