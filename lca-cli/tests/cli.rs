//! The `lca` binary end to end: commands, outputs, exit codes and every
//! error message a user can meet in this area.

use std::env::consts::{DLL_PREFIX, DLL_SUFFIX};
use std::process::{Command, Output};

mod common;
use common::{deps_dir, lca_exe, library, repo};

/// `lca` with the test build's plugins and none from the developer's environment.
fn lca(args: &[&str]) -> Output {
    let mut command = Command::new(lca_exe());
    command
        .env_remove("LCA_PLUGIN_PATH")
        .arg("--plugin-dir")
        .arg(deps_dir())
        .args(args);
    command.output().expect("lca runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[track_caller]
fn assert_fails(output: &Output) -> String {
    let stderr = text(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(2),
        "stdout: {}\nstderr: {stderr}",
        text(&output.stdout)
    );
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(
        !stderr.contains("panicked at") && !stderr.contains("stack backtrace"),
        "a panic leaked: {stderr}"
    );
    stderr
}

#[track_caller]
fn assert_succeeds(output: &Output) -> String {
    assert!(
        output.status.success(),
        "stdout: {}\nstderr: {}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

#[test]
fn list_shows_builtins_and_plugins_with_their_origin() {
    let out = assert_succeeds(&lca(&["list"]));
    assert!(
        out.contains("synthetic") && out.contains("built-in"),
        "{out}"
    );
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("correlation "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("lca-plugin-correlation 0.1.0"), "{line}");
    assert!(
        out.contains("random") && out.contains("lca-plugin-random 0.1.0"),
        "{out}"
    );
    let file = library("lca_plugin_correlation");
    assert!(
        out.contains(&file.canonicalize().unwrap().display().to_string()),
        "the plugin file is shown: {out}"
    );

    let json = assert_succeeds(&lca(&["list", "ranker", "--json"]));
    let list: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    assert!(list.iter().all(|c| c["kind"] == "ranker"), "{json}");
    let corr = list.iter().find(|c| c["name"] == "correlation").unwrap();
    assert_eq!(corr["origin"]["plugin"], "lca-plugin-correlation");

    let err = assert_fails(&lca(&["list", "widgets"]));
    assert!(err.contains("unknown component kind `widgets`"), "{err}");
}

#[test]
fn example_prints_valid_toml_with_the_parameter_table() {
    let out = assert_succeeds(&lca(&["example", "synthetic"]));
    assert!(
        out.contains("#   per_class") && out.contains("planted neurons per class"),
        "{out}"
    );
    let parsed: toml::Table = out.parse().expect("the whole output is TOML");
    assert_eq!(
        parsed["source"]["planted"]["type"].as_str(),
        Some("synthetic")
    );
    let out = assert_succeeds(&lca(&["example", "correlation"]));
    assert!(
        out.contains("ranker, plugin lca-plugin-correlation 0.1.0"),
        "{out}"
    );
    let err = assert_fails(&lca(&["example", "corelation"]));
    assert!(
        err.contains("no component is named `corelation`; did you mean `correlation`?"),
        "{err}"
    );
}

#[test]
fn validate_reports_every_problem_with_line_and_column() {
    let recipe = repo("tests/recipes/broken.toml");
    let err = assert_fails(&lca(&["validate", recipe.to_str().unwrap()]));
    let expected = [
        ("3:8", "run.seed", "`seed` must be an integer from 0"),
        (
            "4:1",
            "run.thread",
            "unknown key `thread` in [run]; did you mean `threads`?",
        ),
        (
            "9:1",
            "source.planted.noise",
            "parameter `noise` = -0.5 is not allowed",
        ),
        (
            "10:1",
            "source.planted.clases",
            "unknown parameter `clases`; did you mean `classes`?",
        ),
        (
            "13:8",
            "ranker.corr.type",
            "unknown ranker type `corelation`; did you mean `correlation`?",
        ),
        (
            "17:10",
            "ranker.rand.source",
            "no source has the id `plantd`; did you mean `planted`?",
        ),
        (
            "21:12",
            "evaluator.recovery.rankings",
            "no ranker has the id `missing`",
        ),
    ];
    for (position, at, message) in expected {
        let line = format!("broken.toml:{position}: {at}: ");
        let found = err
            .lines()
            .find(|l| l.contains(&line))
            .unwrap_or_else(|| panic!("no line with {line}:\n{err}"));
        assert!(found.contains(message), "{found}");
    }
    assert!(err.contains("has 7 problems"), "{err}");

    let ok = assert_succeeds(&lca(&[
        "validate",
        repo("examples/recipes/planted-synthetic.toml")
            .to_str()
            .unwrap(),
    ]));
    assert!(
        ok.contains("is valid: 1 source(s), 0 probe(s), 2 ranker(s), 2 evaluator(s)"),
        "{ok}"
    );
}

#[test]
fn run_writes_results_and_report_and_correlation_beats_random() {
    let out = tempfile::tempdir().unwrap();
    let recipe = repo("examples/recipes/planted-synthetic.toml");
    let stdout = assert_succeeds(&lca(&[
        "run",
        recipe.to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
        "--quiet",
    ]));
    assert!(
        stdout.contains("recovery: precision_at_48.corr = 1"),
        "{stdout}"
    );

    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("results.json")).unwrap()).unwrap();
    let metrics = &results["evaluations"]["recovery"]["evaluation"]["metrics"];
    assert_eq!(metrics["precision_at_48.corr"], 1.0);
    assert!(
        metrics["precision_at_48.rand"].as_f64().unwrap() < 0.2,
        "{metrics}"
    );
    assert_eq!(
        results["rankings"]["corr"]["ranking"]["order"]
            .as_array()
            .unwrap()
            .len(),
        1024
    );
    assert_eq!(
        results["provenance"]["origins"]["ranker.corr"]["plugin"],
        "lca-plugin-correlation"
    );
    assert_eq!(
        results["provenance"]["origins"]["ranker.corr"]["version"],
        "0.1.0"
    );
    assert!(
        results["recipe"]["text"]
            .as_str()
            .unwrap()
            .contains("[ranker.corr]")
    );

    let report = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    for section in [
        "# Planted neurons",
        "## Sources",
        "## Rankings",
        "### `corr`: correlation",
        "## Evaluations",
        "Planted-neuron recovery",
        "## Provenance",
    ] {
        assert!(report.contains(section), "missing {section}:\n{report}");
    }

    // The report regenerates from the results alone, identically.
    let again = tempfile::tempdir().unwrap();
    let results_path = out.path().join("results.json");
    assert_succeeds(&lca(&[
        "report",
        results_path.to_str().unwrap(),
        "--out",
        again.path().to_str().unwrap(),
    ]));
    assert_eq!(
        std::fs::read_to_string(again.path().join("report.md")).unwrap(),
        report
    );
}

#[test]
fn the_custom_ranker_tutorial_recipe_runs() {
    let out = tempfile::tempdir().unwrap();
    let recipe = repo("examples/custom-ranker/recipe.toml");
    assert_succeeds(&lca(&[
        "run",
        recipe.to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
        "--quiet",
    ]));
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("results.json")).unwrap()).unwrap();
    let metrics = &results["evaluations"]["recovery"]["evaluation"]["metrics"];
    assert_eq!(metrics["precision_at_8.var_ratio"], 1.0, "{metrics}");
    assert_eq!(
        results["provenance"]["origins"]["ranker.var"]["plugin"],
        "lca-plugin-variance"
    );
}

#[test]
fn a_panicking_plugin_is_an_error_and_no_results_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("panic.toml");
    std::fs::write(&recipe, "[source.s]\ntype = \"synthetic\"\ntokens = 100\nneurons = 10\n[ranker.bad]\ntype = \"faulty_ranker\"\nmode = \"panic\"\n").unwrap();
    let out = dir.path().join("out");
    let fixture = library("lca_fixture_faulty");
    let err = assert_fails(&lca(&[
        "--plugin",
        fixture.to_str().unwrap(),
        "run",
        recipe.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]));
    assert!(
        err.contains("ranker `bad` (faulty_ranker, plugin lca-fixture-faulty 0.1.0"),
        "{err}"
    );
    assert!(
        err.contains("panicked: the fixture was asked to panic (at "),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "one paragraph: {err}");
    assert!(!out.join("results.json").exists() && !out.join("report.md").exists());
}

#[test]
fn libraries_that_are_not_compatible_plugins_are_refused_with_one_paragraph() {
    let cases = [
        (
            "lca_fixture_old_abi",
            format!(
                "was built against lca plugin ABI 0.0.9, but this lca uses ABI {}",
                lca_plugins::abi::ABI_VERSION
            ),
        ),
        (
            "lca_fixture_other_layout",
            "was built against a different layout of the lca plugin interface".into(),
        ),
        (
            "lca_fixture_not_a_plugin",
            "is not an lca plugin: it does not export the lca plugin entry point".into(),
        ),
    ];
    for (name, expected) in cases {
        let file = library(name);
        let err = assert_fails(&lca(&["--plugin", file.to_str().unwrap(), "list"]));
        assert!(err.contains(&expected), "{name}: {err}");
        assert!(err.contains(name), "{name}: the file is named: {err}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{name}: one paragraph: {err}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("fake.so");
    std::fs::write(&fake, "not a library").unwrap();
    let err = assert_fails(&lca(&["--plugin", fake.to_str().unwrap(), "list"]));
    assert!(err.contains("not a loadable shared library"), "{err}");
}

#[test]
fn a_broken_library_in_a_plugin_directory_is_skipped_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir
        .path()
        .join(format!("{DLL_PREFIX}lca_plugin_broken{DLL_SUFFIX}"));
    std::fs::copy(library("lca_fixture_not_a_plugin"), &broken).unwrap();
    // Only files that follow the naming convention are considered.
    std::fs::copy(
        library("lca_fixture_old_abi"),
        dir.path().join("libsomething_else.so"),
    )
    .unwrap();
    let output = lca(&[
        "--plugin-dir",
        dir.path().to_str().unwrap(),
        "list",
        "ranker",
    ]);
    let stdout = assert_succeeds(&output);
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("warning: skipped a plugin:") && stderr.contains("lca_plugin_broken"),
        "{stderr}"
    );
    assert!(!stderr.contains("something_else"), "{stderr}");
    assert!(stdout.contains("correlation"), "{stdout}");
}

#[test]
fn two_libraries_with_the_same_component_name_is_an_error_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join(format!(
        "{DLL_PREFIX}lca_plugin_correlation_copy{DLL_SUFFIX}"
    ));
    std::fs::copy(library("lca_plugin_correlation"), &copy).unwrap();
    let err = assert_fails(&lca(&[
        "--plugin-dir",
        dir.path().to_str().unwrap(),
        "list",
    ]));
    assert!(
        err.contains("ranker `correlation` is provided twice"),
        "{err}"
    );
    assert!(
        err.contains("lca_plugin_correlation_copy")
            && err.contains("deps/liblca_plugin_correlation"),
        "{err}"
    );
}

#[test]
fn plugins_are_found_through_the_environment_variable() {
    let output = Command::new(lca_exe())
        .env("LCA_PLUGIN_PATH", deps_dir())
        .args(["list", "ranker"])
        .output()
        .unwrap();
    let stdout = assert_succeeds(&output);
    assert!(stdout.contains("lca-plugin-random"), "{stdout}");
}

#[test]
fn an_unusable_output_directory_fails_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let out = file.join("results");
    let recipe = repo("examples/recipes/planted-synthetic.toml");
    let err = assert_fails(&lca(&[
        "run",
        recipe.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]));
    assert!(
        err.contains("the output directory is not usable; choose another with --out"),
        "{err}"
    );
    assert!(err.contains("a-file/results"), "{err}");
}

#[test]
fn a_missing_recipe_and_a_missing_plugin_directory_are_explained() {
    let err = assert_fails(&lca(&["validate", "/no/such/recipe.toml"]));
    assert!(
        err.contains("cannot read recipe /no/such/recipe.toml"),
        "{err}"
    );
    let err = assert_fails(&lca(&["--plugin-dir", "/no/such/dir", "list"]));
    assert!(
        err.contains("plugin directory /no/such/dir does not exist"),
        "{err}"
    );
}

#[test]
fn the_lca_recipe_runs_every_evaluator_from_the_cli() {
    let out = tempfile::tempdir().unwrap();
    let recipe = repo("examples/recipes/lca-synthetic.toml");
    assert_succeeds(&lca(&[
        "run",
        recipe.to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
        "--quiet",
    ]));
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("results.json")).unwrap()).unwrap();
    let metric = |evaluator: &str, name: &str| {
        results["evaluations"][evaluator]["evaluation"]["metrics"][name]
            .as_f64()
            .unwrap_or_else(|| panic!("{evaluator}: {name}"))
    };
    // The LCA ordering puts the planted neurons first; random does not. The
    // 24 are 12 informative neurons and a noisy copy of each: at the optimum
    // of this elastic net (reached by the working set, and by FISTA at
    // tol = 1e-7) one copy has too little weight of its own to make the top
    // 24, which only an under-converged solve hides.
    assert!(metric("recovery", "precision_at_24.lca") >= 23.0 / 24.0);
    assert!(metric("recovery", "precision_at_24.rand") < 0.3);
    // Top neurons beat random ones, which beat the bottom ones.
    for mode in ["zero_out", "retrain"] {
        let (t, r, b) = (
            metric("ablation", &format!("top.{mode}.lca.lca.10")),
            metric("ablation", &format!("random.{mode}.lca.lca.10")),
            metric("ablation", &format!("bottom.{mode}.lca.lca.10")),
        );
        assert!(
            t > r + 0.2 && r > b,
            "{mode}: top {t}, random {r}, bottom {b}"
        );
    }
    // A small subset recovers the probe; selectivity is positive.
    assert!(metric("minimal", "percent.lca.lca") <= 10.0);
    assert!(metric("selectivity", "selectivity.lca.all") > 0.2);
    assert!(metric("lambdas", "score.lca") > 0.0);
    assert_eq!(
        metric("redundancy", "clusters"),
        288.0,
        "the 12 copies join their originals"
    );
    // The solver report and the probe arrays are saved.
    assert_eq!(
        results["probes"]["lca"]["details"]["report"]["converged"],
        true
    );
    assert!(out.path().join("probes/lca.npz").is_file());
    let report = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    for section in [
        "Probe accuracy",
        "Ablation on test",
        "Minimal neuron subsets",
        "Selectivity on test",
        "Layers of `lca`",
        "λ search for probe `lca`",
        "Correlation clusters",
        "Per-class neuron sets",
    ] {
        assert!(report.contains(section), "missing {section}");
    }
}

#[test]
fn every_components_example_passes_validate() {
    let listed: serde_json::Value =
        serde_json::from_str(&assert_succeeds(&lca(&["list", "--json"]))).expect("JSON");
    let names: Vec<&str> = listed
        .as_array()
        .expect("a list")
        .iter()
        .map(|c| c["name"].as_str().expect("a name"))
        .collect();
    assert!(names.len() >= 30, "{names:?}");
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for name in names {
        let shown = assert_succeeds(&lca(&["example", name]));
        // The snippet is the part of the output that is not a comment.
        let snippet: String = shown
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        let recipe = lca_testkit::runnable_example(&snippet)
            .unwrap_or_else(|e| panic!("{name}: {e}\n{shown}"));
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, &recipe).unwrap();
        let out = lca(&["validate", path.to_str().unwrap()]);
        if !out.status.success() {
            failures.push(format!("{name}:\n{recipe}\n{}", text(&out.stderr)));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
