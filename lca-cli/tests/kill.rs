//! A run killed at any moment (SIGKILL, no chance to clean up) leaves the
//! previous complete output or none, never a corrupt file: every output is
//! written to a temporary file and renamed into place. `--resume` then
//! completes it with exactly the results of an uninterrupted run.

use std::path::Path;
use std::process::{Command, Stdio};

mod common;
use common::{lca_command, read_results, repo};
use std::time::{Duration, Instant};

fn run(out: &Path) -> Command {
    let mut command = lca_command();
    command
        .args(["run", "--quiet", "--out"])
        .arg(out)
        .arg(repo("examples/recipes/lca-synthetic.toml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// The results without the run-dependent provenance, or `None` when absent.
fn results(out: &Path) -> Option<serde_json::Value> {
    read_results(&out.join("results.json")).map(|(results, _)| results)
}

/// Every visible output file is whole: JSON parses, Markdown and HTML end
/// as the writer ends them, archives end with their central directory.
fn check_outputs(out: &Path, reference: &serde_json::Value, moment: &str) {
    if let Some(found) = results(out) {
        assert!(
            &found == reference,
            "{moment}: results.json differs from a complete run"
        );
    }
    if let Ok(md) = std::fs::read_to_string(out.join("report.md")) {
        assert!(
            md.trim_end().ends_with('.') && md.contains("Total time"),
            "{moment}: report.md is cut"
        );
    }
    if let Ok(html) = std::fs::read_to_string(out.join("report.html")) {
        assert!(
            html.trim_end().ends_with("</html>"),
            "{moment}: report.html is cut"
        );
    }
    if let Ok(entries) = std::fs::read_dir(out.join("probes")) {
        for entry in entries {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue; // a temporary file the kill left behind
            }
            let bytes = std::fs::read(&path).unwrap();
            // End of central directory record: signature, then 18 bytes.
            let tail = &bytes[bytes.len().saturating_sub(22)..];
            assert!(
                tail.starts_with(b"PK\x05\x06"),
                "{moment}: {name} is not a whole archive"
            );
        }
    }
}

#[test]
fn a_run_killed_at_any_moment_leaves_whole_outputs_or_none() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    // A complete run first: its output is what a killed rerun must keep.
    let started = Instant::now();
    assert!(run(&out).status().unwrap().success());
    let duration = started.elapsed();
    let reference = results(&out).expect("the first run wrote results");
    check_outputs(&out, &reference, "after the complete run");

    // Then kill reruns at moments spread over the whole run, into the same
    // directory and into a fresh one.
    let moments = 8;
    for i in 0..moments {
        let at = duration.mul_f64((i as f64 + 0.5) / moments as f64 * 1.1);
        for (target, label) in [
            (&out, "rerun"),
            (&dir.path().join(format!("fresh{i}")), "fresh"),
        ] {
            let mut child = run(target).spawn().unwrap();
            std::thread::sleep(at);
            let _ = child.kill();
            let _ = child.wait();
            let moment = format!("{label} killed after {:.2} s", at.as_secs_f64());
            check_outputs(target, &reference, &moment);
            if label == "rerun" {
                assert!(
                    results(target).is_some(),
                    "{moment}: the previous results were lost"
                );
            } else {
                // Resuming the killed run reuses what it finished and ends
                // with exactly the results of an uninterrupted run.
                let status = run(target).arg("--resume").status().unwrap();
                assert!(status.success(), "{moment}: the resumed run failed");
                assert!(
                    results(target).as_ref() == Some(&reference),
                    "{moment}: the resumed run's results differ"
                );
            }
        }
    }
    // A killed run leaves nothing a later run trips over.
    std::thread::sleep(Duration::from_millis(10));
    assert!(run(&out).status().unwrap().success());
    check_outputs(&out, &reference, "after a final complete run");
}
