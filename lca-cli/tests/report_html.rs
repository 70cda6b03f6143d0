//! `report.html` from a run of every ranking method, checked as a file and
//! as a browser sees it.
//!
//! The browser test opens the page in headless Chromium and reads back the
//! DOM it built; it needs Chromium, so it is ignored by default and
//! `scripts/test.sh` runs it after `scripts/install-system-deps.sh`.

use std::path::Path;
use std::process::Command;

mod common;
use common::{lca_command, lca_exe, repo};

/// Runs the synthetic side-by-side recipe into `out` and returns the HTML.
fn run_variants(out: &Path) -> String {
    let output = lca_command()
        .args(["run", "--quiet", "--out"])
        .arg(out)
        .arg(repo("examples/recipes/variants-synthetic.toml"))
        .output()
        .expect("lca runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read_to_string(out.join("report.html")).expect("report.html written")
}

const SECTIONS: [&str; 9] = [
    "summary",
    "findings",
    "accuracy",
    "layers",
    "agreement",
    "class-top",
    "neurons",
    "tables",
    "provenance",
];

/// The markup of one section (from its opening tag to the next section).
fn section<'h>(html: &'h str, id: &str) -> &'h str {
    let start = html
        .find(&format!("<section id=\"{id}\""))
        .unwrap_or_else(|| panic!("no section `{id}`"));
    let end = html[start + 1..]
        .find("<section ")
        .map_or(html.len(), |e| start + 1 + e);
    &html[start..end]
}

fn check_sections(html: &str) {
    for id in SECTIONS {
        section(html, id);
    }
    for id in ["accuracy", "layers", "agreement"] {
        assert!(
            section(html, id).contains("<svg"),
            "section `{id}` has no drawing"
        );
    }
    assert!(section(html, "accuracy").contains("<polyline"));
    assert!(section(html, "layers").contains("<rect"));
    assert!(section(html, "class-top").contains("<table"));
    assert!(section(html, "neurons").contains("class=\"sentence\""));
    assert!(section(html, "findings").contains("held"));
    for method in [
        "probeless",
        "gaussian",
        "iou",
        "ap",
        "linear",
        "correlation",
    ] {
        assert!(
            section(html, "accuracy").contains(&format!(">{method}</text>")),
            "no accuracy curve for `{method}`"
        );
    }
}

#[test]
fn the_report_is_one_self_contained_file_with_every_section() {
    let dir = tempfile::tempdir().unwrap();
    let html = run_variants(dir.path());
    check_sections(&html);
    // Nothing is fetched: no scripts, stylesheets, images or frames from
    // elsewhere (the SVG namespace is a name, not a request).
    let without_namespace = html.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    for forbidden in [
        "<script", "<link", "<img", "<iframe", "http://", "https://", "src=",
    ] {
        assert!(
            !without_namespace.contains(forbidden),
            "report.html contains {forbidden}"
        );
    }
    // `lca report` redraws the same page from the results alone.
    let first = html;
    let again = Command::new(lca_exe())
        .args(["report"])
        .arg(dir.path().join("results.json"))
        .output()
        .unwrap();
    assert!(again.status.success());
    let second = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert_eq!(first, second);
}

#[test]
#[ignore = "needs Chromium: run scripts/install-system-deps.sh, then cargo test -- --ignored"]
fn chromium_renders_every_section() {
    let dir = tempfile::tempdir().unwrap();
    run_variants(dir.path());
    let page = dir.path().join("report.html");
    let profile = dir.path().join("chromium-profile");
    let output = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--virtual-time-budget=2000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium is installed (scripts/install-system-deps.sh)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dom = String::from_utf8_lossy(&output.stdout);
    // The DOM Chromium built from the page, not the file: every section is
    // there with its drawings, and the SVG parsed into elements.
    check_sections(&dom);
    assert!(dom.contains("</svg>"));
    assert!(
        dom.matches("<figure>").count() >= 6,
        "too few figures rendered"
    );
}

#[test]
fn findings_say_plainly_when_a_claim_did_not_hold() {
    let dir = tempfile::tempdir().unwrap();
    run_variants(dir.path());
    let path = dir.path().join("results.json");
    let mut results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    // Make one ablation row's bottom neurons as good as the top ones, and one
    // minimal subset unreachable.
    let table = &mut results["evaluations"]["ablation"]["evaluation"]["tables"][0];
    let bottom = table["columns"]
        .as_array()
        .unwrap()
        .iter()
        .position(|c| c == "bottom")
        .unwrap();
    table["rows"][1][bottom] = serde_json::json!(0.99);
    let summary = &mut results["evaluations"]["minimal"]["evaluation"]["tables"][0];
    summary["rows"][0][4] = serde_json::json!("not reached");
    summary["rows"][0][5] = serde_json::Value::Null;
    // As if the data had MLP units beside a residual stream: the MLP holds
    // 60% of the neurons, 70% of `lca`'s selection and 40% of `lasso`'s;
    // the random baseline is no case.
    let metrics = &mut results["evaluations"]["layers"]["evaluation"]["metrics"];
    for (key, value) in [
        ("site_of_all.mlp", 0.6),
        ("site_share.lca.mlp", 0.7),
        ("mean_layer.lca.mlp", 2.5),
        ("mean_layer.lca.residual", 1.0),
        ("site_share.lasso.mlp", 0.4),
        ("site_share.random.mlp", 0.6),
    ] {
        metrics[key] = serde_json::json!(value);
    }
    std::fs::write(&path, serde_json::to_string(&results).unwrap()).unwrap();
    let output = Command::new(lca_exe())
        .arg("report")
        .arg(&path)
        .output()
        .unwrap();
    assert!(output.status.success());
    let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    // Four zero-out rows, one spoiled; six minimal subsets, one unreached.
    assert!(
        md.contains("top neurons beat random and bottom ones by a wide margin (at least 5 accuracy points): held in 3 of 4 cases."),
        "{md}"
    );
    assert!(md.contains("bottom 0.99"), "{md}");
    assert!(
        md.contains("within the tolerance: held in 5 of 6 cases."),
        "{md}"
    );
    assert!(
        md.contains("NOT: minimal: `lca` (probe `lca`) reached the target at no size of the grid"),
        "{md}"
    );
    assert!(
        md.contains("MLP units are at least as likely as residual-stream units to be among the top neurons: held in 1 of 2 cases."),
        "{md}"
    );
    assert!(
        md.contains("lca: 70% of the selected neurons are MLP units, which are 60% of all neurons; mean layer 2.5 in the MLP, 1 in the residual stream"),
        "{md}"
    );
    assert!(md.contains("NOT: lasso: 40%"), "{md}");
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(section(&html, "findings").contains("held in 3 of 4 cases"));
}
