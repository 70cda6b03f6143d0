//! The transformer source on tiny random models built inside the test: no
//! download, milliseconds per run.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use lca_core::data::{Site, Split};
use lca_core::{Component, Dataset, Progress, RunContext};
use lca_plugin_transformer::model::{self, Batch, Compute, Weights};
use lca_plugin_transformer::tiny::{self, Family};
use lca_plugin_transformer::{descriptor, hub, load_model};

const CORPUS: &str = "\
The/at quick/jj brown/jj fox/nn jumps/vbz over/in the/at lazy/jj dog/nn ./.
A/at cat/nn sat/vbd on/in the/at mat/nn ./.
She/pps was/bedz unbelievable/jj !/.
They/ppss read/vbd books/nns and/cc walked/vbd ,/, and/cc talked/vbd quickly/rb ./.
The/at dog's/nn$ house/nn is/bez big/jj ./.
It/pps ran/vbd ./.
";

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(family: Family) -> Self {
        let dir = tempfile::tempdir().unwrap();
        tiny::write(&dir.path().join("model"), family, 7).unwrap();
        std::fs::create_dir_all(dir.path().join("brown")).unwrap();
        std::fs::write(dir.path().join("brown").join("ca01"), CORPUS).unwrap();
        Fixture { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn recipe(&self, extra: &str) -> String {
        format!(
            "model = {:?}\ncorpus = {:?}\ntask = \"universal_pos\"\ncache_dir = {:?}\ndev = 0.2\ntest = 0.2\n{extra}",
            self.path("model").display().to_string(),
            self.path("brown").display().to_string(),
            self.path("cache").display().to_string(),
        )
    }

    fn load(&self, extra: &str) -> lca_core::Result<Dataset<'static>> {
        self.load_with(extra, &RunContext::new(3, 2))
    }

    fn load_with(&self, extra: &str, cx: &RunContext) -> lca_core::Result<Dataset<'static>> {
        let table: lca_core::toml::Table = self.recipe(extra).parse().unwrap();
        let Component::Source(source) = (descriptor().build)(&table)? else {
            panic!("not a source")
        };
        source.load(&cx.for_step("source.tiny"))
    }
}

/// Row of `word` (the first occurrence) and its activations.
fn row_of(d: &Dataset<'_>, word: &str) -> Vec<f32> {
    let row = d
        .tokens()
        .unwrap()
        .words()
        .iter()
        .position(|w| w == word)
        .unwrap();
    d.acts().view().row(row).to_vec()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn one_row_per_corpus_word_with_every_layer() {
    let f = Fixture::new(Family::Bert);
    let d = f.load("").unwrap();
    assert_eq!(
        d.n_rows(),
        40,
        "one row per word; `dog's` and `unbelievable` are one word each"
    );
    assert_eq!(d.n_neurons(), (tiny::LAYERS + 1) * tiny::HIDDEN);
    assert_eq!(d.neurons().layers(), [0, 1, 2]);
    assert!(d.classes().id("NOUN").is_some() && d.classes().id("VERB").is_some());
    assert!(!d.split(Split::Test).labels.is_empty());
    assert_eq!(
        d.details().get("aggregation").map(String::as_str),
        Some("last")
    );
}

/// The word vector of `word` computed by hand: the sentence through the
/// encoder alone, then the pieces picked out by position.
fn by_hand(f: &Fixture, sentence: &[&str], word: usize, how: &str) -> Vec<f32> {
    let model = load_model(
        &hub::from_dir(&f.path("model")).unwrap(),
        Compute::F32,
        Weights::F32,
    )
    .unwrap();
    let words: Vec<String> = sentence.iter().map(|w| w.to_string()).collect();
    let encoding = model.tokenizer.encode(words.as_slice(), true).unwrap();
    let ids = encoding.get_ids().to_vec();
    let positions: Vec<usize> = encoding
        .get_word_ids()
        .iter()
        .enumerate()
        .filter(|(_, w)| **w == Some(word as u32))
        .map(|(p, _)| p)
        .collect();
    assert!(!positions.is_empty());
    let n = ids.len();
    let wanted: Vec<(Site, usize)> = (0..=model.model.shape().layers)
        .map(|l| (Site::Residual, l))
        .collect();
    let batch = Batch {
        ids: &ids,
        lengths: &[n],
        tokens: n,
    };
    let states = model::activations(model.model.as_ref(), &batch, &wanted).unwrap();
    let mut out = Vec::new();
    for state in states {
        let rows: Vec<Vec<f32>> = state.to_vec2().unwrap();
        let pick: Vec<f32> = match how {
            "first" => rows[positions[0]].clone(),
            "last" => rows[*positions.last().unwrap()].clone(),
            _ => (0..tiny::HIDDEN)
                .map(|u| {
                    positions.iter().map(|&p| rows[p][u]).sum::<f32>() / positions.len() as f32
                })
                .collect(),
        };
        out.extend(pick);
    }
    out
}

#[test]
fn aggregation_picks_the_right_pieces() {
    let f = Fixture::new(Family::Bert);
    let sentence = ["She", "was", "unbelievable", "!"];
    for how in ["first", "last", "average"] {
        let d = f
            .load(&format!("aggregation = {how:?}\ncache = false"))
            .unwrap();
        let expected = by_hand(&f, &sentence, 2, how);
        let diff = max_diff(&row_of(&d, "unbelievable"), &expected);
        assert!(diff < 1e-5, "{how}: differs by {diff}");
    }
    let first = f.load("aggregation = \"first\"\ncache = false").unwrap();
    let last = f.load("aggregation = \"last\"\ncache = false").unwrap();
    assert!(
        max_diff(
            &row_of(&first, "unbelievable"),
            &row_of(&last, "unbelievable")
        ) > 1e-3
    );
    // A one-piece word is the same under every aggregation.
    assert!(max_diff(&row_of(&first, "She"), &row_of(&last, "She")) < 1e-6);
}

#[test]
fn padding_in_a_batch_changes_nothing() {
    for family in [Family::Bert, Family::Roberta, Family::DistilBert] {
        let f = Fixture::new(family);
        let one = f.load("batch_size = 1\ncache = false").unwrap();
        let many = f.load("batch_size = 6\ncache = false").unwrap();
        let (a, b) = (one.acts().to_contiguous(), many.acts().to_contiguous());
        let diff = max_diff(&a, &b);
        assert!(
            diff < 1e-5,
            "{family:?}: batching changed activations by {diff}"
        );
        assert_eq!(
            one.tokens().unwrap().words(),
            many.tokens().unwrap().words()
        );
    }
}

#[test]
fn layer_selection_keeps_the_listed_states_in_order() {
    let f = Fixture::new(Family::Bert);
    let all = f.load("cache = false").unwrap();
    let some = f.load("layers = [2, 0]\ncache = false").unwrap();
    assert_eq!(some.n_neurons(), 2 * tiny::HIDDEN);
    assert_eq!(some.neurons().id(0).layer, 2);
    assert_eq!(some.neurons().id(tiny::HIDDEN).layer, 0);
    let h = tiny::HIDDEN;
    let (a, s) = (row_of(&all, "fox"), row_of(&some, "fox"));
    assert_eq!(&s[..h], &a[2 * h..3 * h]);
    assert_eq!(&s[h..], &a[..h]);
    let err = f.load("layers = [3]").unwrap_err().to_string();
    assert!(err.contains("layers") && err.contains("0 … 2"), "{err}");
}

#[derive(Default)]
struct Recorder {
    infos: Mutex<Vec<String>>,
    warnings: Mutex<Vec<String>>,
    advanced: Mutex<u64>,
    started: Mutex<Vec<(String, u64)>>,
}

impl Progress for Recorder {
    fn start(&self, label: &str, total: u64, _unit: &str) {
        self.started.lock().unwrap().push((label.into(), total));
    }
    fn advance(&self, delta: u64) {
        *self.advanced.lock().unwrap() += delta;
    }
    fn finish(&self) {}
    fn warn(&self, message: &str) {
        self.warnings.lock().unwrap().push(message.into());
    }
    fn info(&self, message: &str) {
        self.infos.lock().unwrap().push(message.into());
    }
}

impl Fixture {
    /// Loads and says whether the activations came from the cache.
    fn load_reused(&self, extra: &str) -> (Dataset<'static>, bool) {
        let recorder = Arc::new(Recorder::default());
        let cx = RunContext::new(3, 2).with_progress(recorder.clone());
        let d = self.load_with(extra, &cx).unwrap();
        let infos = recorder.infos.lock().unwrap().clone();
        let reused = infos
            .iter()
            .any(|i| i.starts_with("reused the activations cached in"));
        let cached = infos
            .iter()
            .any(|i| i.starts_with("cached the activations in"));
        assert!(reused != cached, "{infos:?}");
        (d, reused)
    }
}

#[test]
fn long_sentences_are_split_or_truncated_with_a_count() {
    let f = Fixture::new(Family::Bert);
    let recorder = Arc::new(Recorder::default());
    let cx = RunContext::new(3, 1).with_progress(recorder.clone());
    let split = f.load_with("max_tokens = 8\ncache = false", &cx).unwrap();
    assert_eq!(split.n_rows(), 40, "splitting keeps every word");
    assert!(
        split.details()["sentences split into windows"]
            .parse::<usize>()
            .unwrap()
            >= 2
    );
    assert_eq!(
        *recorder.advanced.lock().unwrap(),
        40,
        "progress counts words"
    );
    assert_eq!(recorder.started.lock().unwrap()[0].1, 40);
    let warnings = recorder.warnings.lock().unwrap().clone();
    assert!(
        warnings.iter().any(|w| w.contains("split into windows")),
        "{warnings:?}"
    );

    let truncated = f
        .load("max_tokens = 8\nlong_sentences = \"truncate\"\ncache = false")
        .unwrap();
    let dropped: usize = truncated.details()["words dropped by truncation"]
        .parse()
        .unwrap();
    assert!(dropped > 0);
    assert_eq!(truncated.n_rows(), 40 - dropped);
    // Whatever was kept is what a sentence that fits gives.
    assert!(max_diff(&row_of(&truncated, "sat"), &row_of(&split, "sat")) < 1e-5);
}

#[test]
fn the_cache_is_reused_and_a_damaged_entry_is_rebuilt() {
    let f = Fixture::new(Family::Bert);
    let (first, reused) = f.load_reused("");
    assert!(!reused);
    let entries: Vec<PathBuf> = std::fs::read_dir(f.path("cache"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let (second, reused) = f.load_reused("");
    assert!(reused);
    assert_eq!(first.acts().to_contiguous(), second.acts().to_contiguous());
    assert_eq!(first.tokens(), second.tokens());

    // Another setting is another entry.
    let (_, reused) = f.load_reused("aggregation = \"first\"");
    assert!(!reused);
    assert_eq!(std::fs::read_dir(f.path("cache")).unwrap().count(), 2);

    // Cut the first entry short: it is detected, reported and rebuilt.
    let bytes = std::fs::read(&entries[0]).unwrap();
    std::fs::write(&entries[0], &bytes[..bytes.len() / 2]).unwrap();
    let recorder = Arc::new(Recorder::default());
    let cx = RunContext::new(3, 2).with_progress(recorder.clone());
    let rebuilt = f.load_with("", &cx).unwrap();
    assert!(recorder.infos.lock().unwrap()[0].starts_with("cached the activations in"));
    assert_eq!(rebuilt.acts().to_contiguous(), first.acts().to_contiguous());
    let warnings = recorder.warnings.lock().unwrap().clone();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("partial write") && w.contains("extracting again")),
        "{warnings:?}"
    );
    assert_eq!(
        std::fs::read(&entries[0]).unwrap().len(),
        bytes.len(),
        "the entry was written again"
    );
}

#[test]
fn f16_storage_rounds_the_same_on_a_fresh_and_a_cached_run() {
    let f = Fixture::new(Family::Bert);
    let (fresh, reused) = f.load_reused("dtype = \"f16\"");
    assert!(!reused);
    let (cached, reused) = f.load_reused("dtype = \"f16\"");
    assert!(reused);
    assert_eq!(fresh.acts().to_contiguous(), cached.acts().to_contiguous());
    let exact = f.load("cache = false").unwrap();
    let diff = max_diff(&fresh.acts().to_contiguous(), &exact.acts().to_contiguous());
    assert!(diff > 0.0 && diff < 1e-2, "f16 rounding differs by {diff}");
}

/// `compute = "bf16"` changes the activations a little, says what ran,
/// and is cached apart from f32. On a CPU without AVX512-BF16 it runs in
/// f32, warns, and shares f32's entry: that is checked instead.
#[test]
fn bf16_compute_is_close_to_f32_and_cached_apart() {
    let f = Fixture::new(Family::Bert);
    let (exact, _) = f.load_reused("");
    let recorder = Arc::new(Recorder::default());
    let cx = RunContext::new(3, 2).with_progress(recorder.clone());
    let bf16 = f.load_with("compute = \"bf16\"", &cx).unwrap();
    let ran = bf16.details()["compute"].clone();
    let warnings = recorder.warnings.lock().unwrap().clone();
    let entries = std::fs::read_dir(f.path("cache")).unwrap().count();
    let diff = max_diff(&bf16.acts().to_contiguous(), &exact.acts().to_contiguous());
    if Compute::Bf16.effective() == Compute::Bf16 {
        assert_eq!(ran, "bf16");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(entries, 2, "bf16 has a cache entry of its own");
        assert!(diff > 0.0 && diff < 0.15, "bf16 differs from f32 by {diff}");
        let (again, reused) = f.load_reused("compute = \"bf16\"");
        assert!(reused);
        assert_eq!(again.acts().to_contiguous(), bf16.acts().to_contiguous());
    } else {
        assert_eq!(ran, "f32");
        assert!(
            warnings.iter().any(|w| w.contains("AVX512-BF16")),
            "{warnings:?}"
        );
        assert_eq!(entries, 1, "the f32 fallback reuses the f32 entry");
        assert_eq!(diff, 0.0);
    }
}

#[test]
fn the_same_seed_gives_the_same_dataset() {
    let f = Fixture::new(Family::Bert);
    let a = f.load("sentences = 4\nsample = \"random\"").unwrap();
    let b = f.load("sentences = 4\nsample = \"random\"").unwrap();
    assert_eq!(a.tokens(), b.tokens());
    assert_eq!(a.splits(), b.splits());
    assert_eq!(a.acts().to_contiguous(), b.acts().to_contiguous());
}

#[test]
fn bad_settings_and_missing_models_are_explained() {
    let f = Fixture::new(Family::Bert);
    let build = |text: &str| {
        let table: lca_core::toml::Table = text.parse().unwrap();
        (descriptor().build)(&table).err().map(|e| e.to_string())
    };
    let corpus = format!("corpus = {:?}\n", f.path("brown").display().to_string());
    let err = build(&corpus).unwrap();
    assert!(err.contains("`model`") && err.contains("model_id"), "{err}");
    let err = build(&format!("{corpus}model = \"m\"\naggregation = \"max\"")).unwrap();
    assert!(
        err.contains("aggregation") && err.contains("average"),
        "{err}"
    );
    let err = build(&format!("{corpus}model = \"m\"\nmodell = 1")).unwrap();
    assert!(err.contains("did you mean `model`"), "{err}");

    let err = f
        .load_with_model("model = \"/nonexistent/model\"")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/nonexistent/model") && err.contains("fetch-assets"),
        "{err}"
    );
    let err = f
        .load_with_model("model_id = \"org/not-downloaded\"")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("models--org--not-downloaded") && err.contains("never downloads"),
        "{err}"
    );
}

impl Fixture {
    fn load_with_model(&self, model: &str) -> lca_core::Result<Dataset<'static>> {
        let text = format!(
            "{model}\ncorpus = {:?}\ncache = false\n",
            self.path("brown").display().to_string()
        );
        let table: lca_core::toml::Table = text.parse().unwrap();
        let Component::Source(source) = (descriptor().build)(&table)? else {
            panic!("not a source")
        };
        source.load(&RunContext::new(1, 1).for_step("source.tiny"))
    }
}

#[test]
fn the_tiny_model_is_deterministic() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    tiny::write(a.path(), Family::Bert, 7).unwrap();
    tiny::write(b.path(), Family::Bert, 7).unwrap();
    for name in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "vocab.txt",
    ] {
        assert_eq!(
            std::fs::read(a.path().join(name)).unwrap(),
            std::fs::read(b.path().join(name)).unwrap(),
            "{name}"
        );
    }
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// An extraction already in the cache is not streamed: the source declines
/// and its caller loads the cached matrix instead of computing it again.
#[test]
fn a_cached_extraction_is_loaded_rather_than_streamed() {
    let f = Fixture::new(Family::Bert);
    let table: lca_core::toml::Table = f.recipe("").parse().unwrap();
    let Component::Source(source) = (descriptor().build)(&table).unwrap() else {
        panic!("not a source")
    };
    let cx = RunContext::new(3, 2).for_step("source.tiny");
    let mut sink = lca_testkit::CollectingSink::new(0, 10);
    assert!(source.stream(&cx, &mut sink).unwrap().is_some());
    assert!(!f.path("cache").exists(), "streaming writes no cache entry");
    source.load(&cx).unwrap();
    let mut sink = lca_testkit::CollectingSink::new(0, 10);
    assert!(source.stream(&cx, &mut sink).unwrap().is_none());
    assert_eq!(sink.pushes, 0);
}

/// The streamed extraction (what `lca store create` writes) is the loaded
/// dataset, row for row, in the same order, with the same words, labels,
/// splits and details; a sink that already holds rows is not sent them
/// again, and blocks follow the sink's size.
#[test]
fn a_streamed_extraction_gives_the_loaded_dataset_in_blocks() {
    let bert = Fixture::new(Family::Bert);
    // Enough sentences for several blocks of 32 one-window batches.
    let corpus = bert.path("long");
    std::fs::create_dir_all(&corpus).unwrap();
    std::fs::write(corpus.join("ca01"), CORPUS.repeat(20)).unwrap();
    let cases = [
        (bert.path("model"), "max_tokens = 8\n"),
        (fixture("tiny-llama"), "max_tokens = 6\n"),
    ];
    for (model, extra) in cases {
        let table: lca_core::toml::Table = format!(
            "model = {:?}\ncorpus = {:?}\ntask = \"universal_pos\"\ndev = 0.2\ntest = 0.2\n\
             batch_size = 1\ncache = false\n{extra}",
            model.display().to_string(),
            corpus.display().to_string(),
        )
        .parse()
        .unwrap();
        let Component::Source(source) = (descriptor().build)(&table).unwrap() else {
            panic!("not a source")
        };
        let cx = RunContext::new(3, 2).for_step("source.tiny");
        let loaded = source.load(&cx).unwrap();
        assert!(
            loaded
                .details()
                .contains_key("sentences split into windows"),
            "{model:?}: the window is short enough to split sentences"
        );
        for (held, block) in [(0, 1000), (0, 5), (13, 4), (loaded.n_rows(), 4)] {
            let mut sink = lca_testkit::CollectingSink::new(held, block);
            let outline = source
                .stream(&cx, &mut sink)
                .unwrap()
                .expect("the transformer source streams");
            let what = format!("{model:?}, {held} rows held, blocks of {block}");
            assert_eq!(
                sink.announced,
                Some((loaded.n_rows(), loaded.n_neurons())),
                "{what}"
            );
            assert_eq!(sink.rows.len(), loaded.n_rows() - held, "{what}");
            let view = loaded.acts().view();
            for (i, row) in sink.rows.iter().enumerate() {
                assert_eq!(
                    row.as_slice(),
                    view.row(held + i).as_slice().unwrap(),
                    "{what}: row {}",
                    held + i
                );
            }
            // Blocks hold 32 batches of windows at least, so the small
            // sizes give several blocks and the large one a single block.
            let expected = match (held, block) {
                (h, _) if h == loaded.n_rows() => 0..=0,
                (_, 1000) => 1..=1,
                _ => 3..=usize::MAX,
            };
            assert!(
                expected.contains(&sink.pushes),
                "{what}: {} pushes",
                sink.pushes
            );
            let dataset = outline.into_dataset(loaded.acts().clone()).unwrap();
            assert_eq!(dataset.labels(), loaded.labels(), "{what}");
            assert_eq!(dataset.tokens(), loaded.tokens(), "{what}");
            assert_eq!(dataset.splits(), loaded.splits(), "{what}");
            assert_eq!(dataset.neurons(), loaded.neurons(), "{what}");
            assert_eq!(dataset.details(), loaded.details(), "{what}");
        }
    }
}
