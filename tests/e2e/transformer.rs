//! The transformer source loaded as a plugin library, in a recipe with a
//! probe, a ranker and evaluators: progress and warnings cross the plugin
//! boundary to the host, and the extraction's details reach the results.

use std::sync::{Arc, Mutex};

use lca_core::recipe;
use lca_core::run::{self, Silent};
use lca_core::{Progress, RunContext};
use lca_tests::{registry_with, repo_root};

const PLUGINS: [&str; 3] = [
    "lca_plugin_transformer",
    "lca_plugin_logistic",
    "lca_plugin_probe_weights",
];

#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<String>>,
    words: Mutex<u64>,
}

impl Progress for Recorder {
    fn start(&self, label: &str, total: u64, unit: &str) {
        self.events
            .lock()
            .unwrap()
            .push(format!("start {label} {total} {unit}"));
    }
    fn advance(&self, delta: u64) {
        *self.words.lock().unwrap() += delta;
    }
    fn finish(&self) {
        self.events.lock().unwrap().push("finish".into());
    }
    fn warn(&self, message: &str) {
        self.events.lock().unwrap().push(format!("warn {message}"));
    }
    fn info(&self, message: &str) {
        self.events.lock().unwrap().push(format!("info {message}"));
    }
}

/// Sentences made of the tiny model's vocabulary, tagged.
fn brown_file() -> String {
    let nouns = [
        "cat/nn", "dog/nn", "mat/nn", "fox/nn", "house/nn", "tree/nn", "book/nn",
    ];
    let verbs = [
        "sat/vbd",
        "ran/vbd",
        "runs/vbz",
        "read/vbd",
        "walked/vbd",
        "talked/vbd",
    ];
    let adjectives = [
        "big/jj", "small/jj", "red/jj", "green/jj", "lazy/jj", "quick/jj",
    ];
    let mut text = String::new();
    for i in 0..120 {
        let n = nouns[i % nouns.len()];
        let v = verbs[(i / 2) % verbs.len()];
        let a = adjectives[(i / 3) % adjectives.len()];
        text.push_str(&format!("\tthe/at {a} {n} {v} on/in a/at {n} ./.\n\n"));
    }
    text
}

#[test]
fn a_recipe_extracts_trains_ranks_and_exports_through_plugins() {
    let registry = registry_with(&PLUGINS);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("brown")).unwrap();
    std::fs::write(dir.path().join("brown/ca01"), brown_file()).unwrap();
    let model = repo_root().join("plugins/transformer/tests/fixtures/tiny-bert");
    let text = format!(
        r#"
[source.tiny]
type = "transformer"
model = {model:?}
corpus = "brown"
task = "universal_pos"
max_tokens = 8
cache_dir = "cache"

[probe.lca]
type = "elastic_net"
l1 = 0.001
l2 = 0.001

[ranker.lca]
type = "probe_weights"
probe = "lca"

[evaluator.accuracy]
type = "probe_accuracy"
probes = ["lca"]

[evaluator.layers]
type = "layer_distribution"
rankings = ["lca"]
top_percent = 10

[evaluator.export]
type = "neurox_export"
path = "export/tiny.json"
"#,
        model = model.display().to_string()
    );
    let recipe_path = dir.path().join("recipe.toml");
    std::fs::write(&recipe_path, &text).unwrap();
    let plan = recipe::compile_file(&recipe_path, &registry).unwrap();
    let recorder = Arc::new(Recorder::default());
    let cx = RunContext::new(5, 2).with_progress(recorder.clone());
    let results = run::execute(&plan, &cx, &mut Silent).unwrap();

    let source = &results.sources["tiny"];
    assert_eq!(source.tokens, 120 * 8);
    assert_eq!(source.neurons, 3 * 32);
    assert_eq!(source.details["aggregation"], "last");
    assert_eq!(
        source.details["sentences split into windows"], "120",
        "8-piece windows split every sentence"
    );
    let events = recorder.events.lock().unwrap().clone();
    assert_eq!(
        events.first().map(String::as_str),
        Some("start extracting activations 960 words"),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("warn 120 sentences are longer")),
        "{events:?}"
    );
    assert_eq!(
        *recorder.words.lock().unwrap(),
        960,
        "word counts crossed the plugin boundary"
    );

    let accuracy = results.evaluations["accuracy"].evaluation.metrics["accuracy.lca.test"];
    assert!(
        accuracy > 0.8,
        "a random tiny model still separates these tags: {accuracy}"
    );
    assert_eq!(results.rankings["lca"].ranking.len(), 96);
    assert!(!results.rankings["lca"].class_top["NOUN"].is_empty());
    let exported = std::fs::read_to_string(dir.path().join("export/tiny.json")).unwrap();
    assert_eq!(exported.lines().count(), 120);

    // The same recipe again reuses the cache, and gives the same results.
    let recorder = Arc::new(Recorder::default());
    let again = run::execute(
        &plan,
        &RunContext::new(5, 1).with_progress(recorder.clone()),
        &mut Silent,
    )
    .unwrap();
    let events = recorder.events.lock().unwrap().clone();
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("info reused the activations cached in")),
        "{events:?}"
    );
    assert_eq!(again.sources, results.sources);
    assert_eq!(
        again.rankings["lca"].ranking,
        results.rankings["lca"].ranking
    );
}
