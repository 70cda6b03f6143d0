//! The `transformer` activation source: per-word activations of every layer
//! of a Hugging Face transformer encoder, for the words of an annotated
//! corpus.
//!
//! ```text
//! words ──tokenizer──▶ pieces ──encoder──▶ hidden states h₀ (embeddings), h₁ … h_L
//! word vector = first | last | mean of its pieces' states, for each chosen layer
//! row = [h_l1 | h_l2 | …]   (neuron = position of the layer in `layers` × hidden + unit)
//! ```
//!
//! Words are the corpus's own tokens, handed to the tokenizer pre-split.
//! Sentences longer than the model's window are cut into windows of whole
//! words (or truncated, if asked), with a count in the report. Extractions
//! are cached on disk under a key made of the model's files, the words and
//! the settings.

pub mod cache;
pub mod extract;
pub mod hub;
pub mod model;
mod ops;
#[doc(hidden)]
pub mod tiny;
pub mod words;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use lca_builtin::corpus::{
    Corpus, CorpusParams, CorpusSpec, CorpusSplit, SplitParams, corpus_dataset,
};
use lca_core::data::{ActivationMatrix, NeuronId, NeuronIndex};
use lca_core::params::{Params as _, invalid};
use lca_core::registry::{ComponentInfo, ComponentKind, Descriptor, Inputs, applied};
use lca_core::{ActivationSource, Component, Dataset, Error, Result, RunContext};
use tokenizers::Tokenizer;

use crate::cache::{KeyBuilder, Miss, Precision, Stored};
use crate::extract::Aggregation;
use crate::hub::ModelFiles;
use crate::model::{Compute, Config, Encoder};
use crate::words::{LongSentences, Specials};

const NAME: &str = "transformer";

lca_core::params! {
    /// Parameters of `transformer`.
    struct TransformerParams {
        /// model folder with config.json, model.safetensors (or
        /// pytorch_model.bin) and tokenizer.json
        #[shown = "one of model, model_id"]
        model: Option<PathBuf> = None => Rule::note("a folder"),
        /// a Hugging Face model id, looked up in the local Hugging Face cache
        /// (no download)
        #[shown = "one of model, model_id"]
        model_id: Option<String> = None => Rule::note("`org/name`"),
        /// revision of `model_id`
        revision: String = "main".into() => Rule::note("a branch or commit"),
        /// hidden states to keep, in this order; 0 is the embedding output
        #[shown = "all"]
        layers: Option<Vec<usize>> = None => Rule::new(
            "0 (embeddings) … number of layers, not empty, no repeats",
            |l: &Option<Vec<usize>>| {
                l.as_ref().is_none_or(|l| !l.is_empty() && distinct().passes(l))
            },
        ),
        /// how a word's pieces become one vector
        aggregation: Aggregation = Aggregation::Last,
        /// run the model with its special tokens ([CLS] … [SEP]) around each
        /// sentence, as it was trained; they get no rows of their own
        special_tokens: bool = true,
        /// sentences longer than the window: cut into windows of whole
        /// words, or drop the words that do not fit
        long_sentences: LongSentences = LongSentences::Split,
        /// longest input in pieces, special tokens included (at most the
        /// model's window; 3 leaves room for special tokens and a word)
        #[shown = "the model's window"]
        max_tokens: Option<usize> = None => range(3..),
        /// sentences (windows) per forward pass
        batch_size: usize = 32 => range(1..),
        /// precision activations are kept and cached in (f16 halves memory
        /// and disk)
        dtype: Precision = Precision::F32,
        /// precision of the dense-layer products: bf16 is 1.4–1.6× faster
        /// where the CPU has AVX512-BF16 (activations differ from f32 by under
        /// 1% of each neuron's spread; see docs/sources.md) and falls back to
        /// f32 where it has not
        compute: Compute = Compute::F32,
        /// reuse and store extractions on disk
        cache: bool = true,
        /// where cached extractions live
        #[shown = "\".cache/activations\" (in the working folder)"]
        cache_dir: Option<PathBuf> = None => Rule::note("a folder"),
        #[flatten]
        corpus: CorpusParams,
        #[flatten]
        split: SplitParams,
    }
}

/// The component descriptor.
pub fn descriptor() -> Descriptor {
    Descriptor {
        info: ComponentInfo {
            kind: ComponentKind::Source,
            name: NAME.into(),
            summary: "Per-word activations of every layer of a BERT-family transformer on an annotated corpus".into(),
            params: TransformerParams::docs(),
            example: "[source.minilm]\ntype = \"transformer\"\nmodel = \"../../.cache/models/all-MiniLM-L6-v2\"\n\
                      corpus = \"../../.cache/data/brown\"\nformat = \"brown\"\ntask = \"universal_pos\"\nsentences = 2000\n"
                .into(),
            inputs: Inputs::default(),
        },
        build: |table| Ok(Component::Source(Box::new(TransformerSource::new(TransformerParams::parse(NAME, table)?)?))),
        applied: applied::<TransformerParams>,
    }
}

/// Where the model comes from.
#[derive(Clone, Debug)]
enum ModelSource {
    Dir(PathBuf),
    Hub { id: String, revision: String },
}

/// Validated settings.
#[derive(Clone, Debug)]
pub struct TransformerSource {
    model: ModelSource,
    layers: Option<Vec<usize>>,
    aggregation: Aggregation,
    special_tokens: bool,
    long_sentences: LongSentences,
    max_tokens: Option<usize>,
    batch_size: usize,
    precision: Precision,
    compute: Compute,
    cache_dir: Option<PathBuf>,
    corpus: CorpusSpec,
    split: CorpusSplit,
}

impl TransformerSource {
    fn new(p: TransformerParams) -> Result<Self> {
        let model = match (p.model, p.model_id) {
            (Some(dir), None) => ModelSource::Dir(dir),
            (None, Some(id)) => ModelSource::Hub {
                id,
                revision: p.revision,
            },
            (Some(_), Some(_)) => {
                return Err(invalid(
                    NAME,
                    "model_id",
                    "set together with `model`",
                    "only one of `model` and `model_id`",
                ));
            }
            (None, None) => {
                return Err(invalid(
                    NAME,
                    "model",
                    "missing",
                    "a model folder (`model`) or a Hugging Face id (`model_id`)",
                ));
            }
        };
        Ok(TransformerSource {
            model,
            layers: p.layers,
            aggregation: p.aggregation,
            special_tokens: p.special_tokens,
            long_sentences: p.long_sentences,
            max_tokens: p.max_tokens,
            batch_size: p.batch_size,
            precision: p.dtype,
            compute: p.compute,
            cache_dir: p.cache.then(|| {
                p.cache_dir
                    .unwrap_or_else(|| PathBuf::from(".cache/activations"))
            }),
            corpus: p.corpus.validate(NAME)?,
            split: p.split.validate(NAME)?,
        })
    }

    fn files(&self) -> Result<ModelFiles> {
        match &self.model {
            ModelSource::Dir(dir) => hub::from_dir(dir),
            ModelSource::Hub { id, revision } => hub::from_cache(id, revision, &hub::cache_roots()),
        }
    }
}

/// A loaded model with its tokenizer.
pub struct LoadedModel {
    /// The encoder.
    pub encoder: Encoder,
    /// The tokenizer, without padding or truncation.
    pub tokenizer: Tokenizer,
    /// Where it came from.
    pub files: ModelFiles,
}

/// Loads the model and tokenizer in `files`, for products in `compute`
/// (pass [`Compute::effective`] of what the user asked for).
///
/// # Errors
/// Unreadable or inconsistent files, named.
pub fn load_model(files: &ModelFiles, compute: Compute) -> Result<LoadedModel> {
    let config_text =
        std::fs::read_to_string(&files.config).map_err(|e| Error::io("read", &files.config, e))?;
    let config: Config = serde_json::from_str(&config_text).map_err(|e| {
        Error::format(
            &files.config,
            Some(e.line()),
            format!("is not a model configuration: {e}"),
        )
    })?;
    let device = Device::Cpu;
    let is_safetensors = files
        .weights
        .extension()
        .is_some_and(|e| e == "safetensors");
    let vb = if is_safetensors {
        let bytes =
            std::fs::read(&files.weights).map_err(|e| Error::io("read", &files.weights, e))?;
        VarBuilder::from_buffered_safetensors(bytes, DType::F32, &device)
    } else {
        VarBuilder::from_pth(&files.weights, DType::F32, &device)
    }
    .map_err(|e| {
        Error::format(
            &files.weights,
            None,
            format!("cannot be read as model weights: {e}"),
        )
    })?;
    let encoder = Encoder::load(vb, config, compute)
        .map_err(|e| Error::format(&files.weights, None, e.to_string()))?;
    let mut tokenizer = read_tokenizer(&files.tokenizer)?;
    tokenizer.with_padding(None);
    tokenizer.with_truncation(None).map_err(|e| {
        Error::format(
            &files.tokenizer,
            None,
            format!("cannot disable truncation: {e}"),
        )
    })?;
    Ok(LoadedModel {
        encoder,
        tokenizer,
        files: files.clone(),
    })
}

/// Reads a `tokenizer.json`. The tokenizers library panics on some malformed
/// files (its decoder section is parsed with `expect`), so the JSON is
/// checked first and the library's panics become errors naming the file.
fn read_tokenizer(path: &Path) -> Result<Tokenizer> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&text) {
        return Err(Error::format(
            path,
            Some(e.line()),
            format!("is not valid JSON (column {}): {e}", e.column()),
        ));
    }
    let not_a_tokenizer =
        |why: String| Error::format(path, None, format!("is not a tokenizer: {why}"));
    match std::panic::catch_unwind(|| text.parse::<Tokenizer>()) {
        Ok(Ok(tokenizer)) => Ok(tokenizer),
        Ok(Err(e)) => Err(not_a_tokenizer(e.to_string())),
        Err(payload) => Err(not_a_tokenizer(format!(
            "the tokenizers library failed on it ({})",
            lca_core::run::panic_message(payload.as_ref())
        ))),
    }
}

/// What one extraction produced and what happened on the way.
#[derive(Clone, Debug)]
pub struct Extracted {
    /// The activations and kept word counts.
    pub stored: Stored,
    /// Sentences cut into more than one window.
    pub split_sentences: usize,
    /// Sentences that lost words to truncation.
    pub truncated_sentences: usize,
    /// Words those sentences lost.
    pub dropped_words: usize,
    /// Words with no pieces (zero vectors).
    pub empty_words: usize,
    /// Words longer than the window, cut to the pieces that fit.
    pub cut_words: usize,
}

/// Settings of one extraction.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Hidden states to keep, in order (0 = embeddings).
    pub layers: Vec<usize>,
    /// Pieces → word.
    pub aggregation: Aggregation,
    /// Wrap each input in the model's special tokens.
    pub special_tokens: bool,
    /// Long-sentence policy.
    pub long_sentences: LongSentences,
    /// Window, special tokens included.
    pub max_tokens: usize,
    /// Windows per pass.
    pub batch_size: usize,
}

/// Extracts activations for every word of `corpus`.
///
/// # Errors
/// Tokenizer or model failures.
pub fn extract(
    model: &LoadedModel,
    corpus: &Corpus,
    settings: &Settings,
    cx: &RunContext,
) -> Result<Extracted> {
    let specials = if settings.special_tokens {
        Some(Specials::of(&model.tokenizer)?)
    } else {
        None
    };
    let mut windows = Vec::new();
    let mut first_row = Vec::new();
    let mut kept = Vec::with_capacity(corpus.sentences.len());
    let (mut split_sentences, mut truncated_sentences, mut dropped_words, mut cut_words) =
        (0, 0, 0, 0);
    let mut row = 0;
    for (i, sentence) in corpus.sentences.iter().enumerate() {
        let pieces = words::pieces(&model.tokenizer, &sentence.words).map_err(|e| {
            Error::format(
                std::path::Path::new(&sentence.file),
                Some(sentence.line),
                format!("cannot be tokenized: {e}"),
            )
        })?;
        let w = words::windows(
            i,
            &pieces,
            specials.as_ref(),
            settings.max_tokens,
            settings.long_sentences,
        );
        if w.windows.len() > 1 {
            split_sentences += 1;
        }
        if w.kept < sentence.words.len() {
            truncated_sentences += 1;
            dropped_words += sentence.words.len() - w.kept;
        }
        cut_words += w.cut_words;
        for window in w.windows {
            first_row.push(row + window.words.start);
            windows.push(window);
        }
        row += w.kept;
        kept.push(w.kept as u32);
    }
    let hidden = model.encoder.config().hidden_size;
    let cols = settings.layers.len() * hidden;
    lca_core::memory::ensure_fits(
        &format!("the {row} × {cols} activation matrix"),
        (row as u64)
            .checked_mul(cols as u64)
            .and_then(|c| lca_core::memory::bytes_of(c, 4)),
        "extract fewer `layers`, or fewer `sentences` of the corpus",
    )?;
    let mut values = vec![0f32; row * cols];
    if let Some(p) = cx.progress() {
        p.start("extracting activations", row as u64, "words");
    }
    let plan = extract::Plan {
        layers: &settings.layers,
        aggregation: settings.aggregation,
        batch_size: settings.batch_size,
    };
    let result = extract::run(&model.encoder, &windows, &first_row, &plan, &mut values, cx);
    if let Some(p) = cx.progress() {
        p.finish();
    }
    let empty_words = result?;
    Ok(Extracted {
        stored: Stored {
            values,
            rows: row,
            cols,
            kept,
        },
        split_sentences,
        truncated_sentences,
        dropped_words,
        empty_words,
        cut_words,
    })
}

/// The corpus without the words that truncation dropped.
fn keep_words(corpus: &Corpus, kept: &[u32]) -> Corpus {
    let mut out = corpus.clone();
    for (s, &k) in out.sentences.iter_mut().zip(kept) {
        s.words.truncate(k as usize);
        s.tags.truncate(k as usize);
    }
    out.sentences.retain(|s| !s.words.is_empty());
    out
}

impl TransformerSource {
    fn settings(&self, config: &Config) -> Result<Settings> {
        let states = config.num_hidden_layers + 1;
        let layers = match &self.layers {
            Some(list) => {
                if let Some(&bad) = list.iter().find(|&&l| l >= states) {
                    return Err(invalid(
                        NAME,
                        "layers",
                        bad,
                        &format!(
                            "0 … {} (this model has {} layers after the embeddings)",
                            states - 1,
                            states - 1
                        ),
                    ));
                }
                list.clone()
            }
            None => (0..states).collect(),
        };
        let window = config.max_tokens();
        let max_tokens = match self.max_tokens {
            Some(m) if m > window => {
                return Err(invalid(
                    NAME,
                    "max_tokens",
                    m,
                    &format!("at most {window}, the model's window"),
                ));
            }
            Some(m) => m,
            None => window,
        };
        Ok(Settings {
            layers,
            aggregation: self.aggregation,
            special_tokens: self.special_tokens,
            long_sentences: self.long_sentences,
            max_tokens,
            batch_size: self.batch_size,
        })
    }

    fn cache_key(
        &self,
        files: &ModelFiles,
        corpus: &Corpus,
        settings: &Settings,
    ) -> Result<String> {
        let mut key = KeyBuilder::default();
        key.part("format", cache::CACHE_FORMAT.as_bytes());
        for (name, path) in [
            ("config", &files.config),
            ("weights", &files.weights),
            ("tokenizer", &files.tokenizer),
        ] {
            key.part(name, cache::sha256_file(path)?.as_bytes());
        }
        let mut words = Vec::new();
        for s in &corpus.sentences {
            for w in &s.words {
                words.extend_from_slice(w.as_bytes());
                words.push(0x1f);
            }
            words.push(0x1e);
        }
        key.part("words", &words);
        key.part("layers", format!("{:?}", settings.layers).as_bytes());
        key.part("aggregation", settings.aggregation.as_str().as_bytes());
        key.part("special_tokens", &[u8::from(settings.special_tokens)]);
        key.part(
            "long_sentences",
            format!("{:?}", settings.long_sentences).as_bytes(),
        );
        key.part("max_tokens", &(settings.max_tokens as u64).to_le_bytes());
        key.part("dtype", self.precision.as_str().as_bytes());
        // f32 keys predate the option and stay as they were.
        let compute = self.compute.effective();
        if compute != Compute::F32 {
            key.part("compute", compute.as_str().as_bytes());
        }
        Ok(key.finish())
    }
}

impl ActivationSource for TransformerSource {
    fn load(&self, cx: &RunContext) -> Result<Dataset<'static>> {
        let corpus = self.corpus.read(cx)?;
        let files = self.files()?;
        let config_text = std::fs::read_to_string(&files.config)
            .map_err(|e| Error::io("read", &files.config, e))?;
        let config: Config = serde_json::from_str(&config_text).map_err(|e| {
            Error::format(
                &files.config,
                Some(e.line()),
                format!("is not a model configuration: {e}"),
            )
        })?;
        config.check()?;
        let settings = self.settings(&config)?;
        let compute = self.compute.effective();
        if compute != self.compute {
            cx.warn(&format!(
                "this CPU has no AVX512-BF16 instructions, so `compute = \"{}\"` runs as `f32`",
                self.compute.as_str()
            ));
        }
        let key = match &self.cache_dir {
            Some(_) => Some(self.cache_key(&files, &corpus, &settings)?),
            None => None,
        };
        let entry = self
            .cache_dir
            .as_ref()
            .zip(key.as_ref())
            .map(|(dir, key)| cache::entry_path(dir, key));
        let cached = match (&entry, &key) {
            (Some(path), Some(key)) => match cache::read(path, key) {
                Ok((stored, precision, meta))
                    if precision == self.precision
                        && stored.kept.len() == corpus.sentences.len() =>
                {
                    let notes = meta
                        .into_iter()
                        .filter_map(|(k, v)| k.strip_prefix(NOTE).map(|k| (k.to_string(), v)))
                        .collect::<BTreeMap<_, _>>();
                    Some((stored, notes))
                }
                Ok(_) => {
                    cx.warn(&format!(
                        "cache entry {} does not fit this corpus; extracting again",
                        path.display()
                    ));
                    None
                }
                Err(Miss::Absent) => None,
                Err(Miss::Corrupt(why)) => {
                    cx.warn(&format!(
                        "cache entry {} {why}; extracting again",
                        path.display()
                    ));
                    None
                }
            },
            _ => None,
        };
        let mut details = self.corpus.details(&corpus);
        let stored = match cached {
            Some((stored, notes)) => {
                details.extend(notes);
                if let Some(path) = &entry {
                    cx.info(&format!(
                        "reused the activations cached in {}",
                        path.display()
                    ));
                }
                stored
            }
            None => {
                let model = load_model(&files, compute)?;
                let mut extracted = extract(&model, &corpus, &settings, cx)?;
                self.precision.round(&mut extracted.stored.values);
                let notes = events(&extracted, &settings, cx);
                if let (Some(path), Some(key)) = (&entry, &key) {
                    let mut meta: BTreeMap<String, String> = notes
                        .iter()
                        .map(|(k, v)| (format!("{NOTE}{k}"), v.clone()))
                        .collect();
                    meta.insert("model".into(), files.dir.display().to_string());
                    meta.insert("layers".into(), format!("{:?}", settings.layers));
                    meta.insert("aggregation".into(), settings.aggregation.as_str().into());
                    match cache::write(path, key, &extracted.stored, self.precision, &meta) {
                        Ok(()) => cx.info(&format!("cached the activations in {}", path.display())),
                        Err(e) => cx.warn(&format!("could not cache the activations: {e}")),
                    }
                }
                details.extend(notes);
                extracted.stored
            }
        };
        let kept_corpus = keep_words(&corpus, &stored.kept);
        let hidden = config.hidden_size;
        let neurons = NeuronIndex::from_ids(
            settings
                .layers
                .iter()
                .flat_map(|&l| {
                    (0..hidden).map(move |u| NeuronId {
                        layer: l as u32,
                        unit: u as u32,
                    })
                })
                .collect(),
        );
        let acts = ActivationMatrix::from_row_major(stored.rows, stored.cols, stored.values)?;
        details.insert("model".into(), model_name(&self.model, &files));
        details.insert(
            "model type".into(),
            if config.model_type.is_empty() {
                "bert".into()
            } else {
                config.model_type.clone()
            },
        );
        details.insert(
            "layers".into(),
            format!(
                "{} of {} hidden states (0 = embeddings), {hidden} units each",
                settings.layers.len(),
                config.num_hidden_layers + 1
            ),
        );
        details.insert("aggregation".into(), settings.aggregation.as_str().into());
        details.insert(
            "window".into(),
            format!(
                "{} pieces, long sentences: {:?}",
                settings.max_tokens, settings.long_sentences
            )
            .to_lowercase(),
        );
        details.insert("precision".into(), self.precision.as_str().into());
        details.insert("compute".into(), compute.as_str().into());
        if let Some(key) = &key {
            details.insert("cache key".into(), key[..16].to_string());
        }
        let dataset = corpus_dataset(
            cx.step().trim_start_matches("source."),
            &kept_corpus,
            self.corpus.task,
            acts,
            neurons,
            &self.split,
            &mut self.corpus.rng(cx, "split"),
        )?
        .with_details(details);
        dataset.check_finite()?;
        Ok(dataset)
    }
}

fn model_name(source: &ModelSource, files: &ModelFiles) -> String {
    match source {
        ModelSource::Dir(_) => files.dir.display().to_string(),
        ModelSource::Hub { id, revision } => format!("{id} ({revision})"),
    }
}

/// Prefix of the cache metadata that holds extraction notes.
const NOTE: &str = "note: ";

/// Counts what the window policy did, warns about it, and returns notes
/// for the report.
fn events(e: &Extracted, settings: &Settings, cx: &RunContext) -> BTreeMap<String, String> {
    let window = settings.max_tokens;
    // (count, report label, warning)
    let events = [
        (
            e.split_sentences,
            "sentences split into windows",
            format!(
                "{} sentences are longer than the {window}-piece window and were split into windows of whole words",
                e.split_sentences
            ),
        ),
        (
            e.truncated_sentences,
            "sentences truncated",
            format!(
                "{} sentences are longer than the {window}-piece window; {} of their words were dropped \
                 (long_sentences = \"truncate\")",
                e.truncated_sentences, e.dropped_words
            ),
        ),
        (
            e.empty_words,
            "words without pieces (zero vectors)",
            format!(
                "{} words have no pieces in this tokenizer and got zero vectors",
                e.empty_words
            ),
        ),
        (
            e.cut_words,
            "words cut to the window",
            format!(
                "{} words are longer than the window on their own; only their first pieces were used",
                e.cut_words
            ),
        ),
    ];
    let mut notes = BTreeMap::new();
    for (count, label, warning) in events {
        if count > 0 {
            cx.warn(&warning);
            notes.insert(label.to_string(), count.to_string());
        }
    }
    if e.dropped_words > 0 {
        notes.insert(
            "words dropped by truncation".into(),
            e.dropped_words.to_string(),
        );
    }
    notes
}

lca_plugins::export_plugin! {
    name: "lca-plugin-transformer",
    version: env!("CARGO_PKG_VERSION"),
    components: [descriptor()],
}
