//! The `transformer` activation source: per-word activations of every layer
//! of a Hugging Face transformer, encoder (BERT family) or decoder (GPT-2,
//! Llama family), for the words of an annotated corpus.
//!
//! ```text
//! words ──tokenizer──▶ pieces ──model──▶ residual h₀ (embeddings) … h_L, mlp 1 … L, attention 1 … L
//! word vector = first | last | mean of its pieces' activations, for each chosen layer site
//! row = [site₁ l₁ | site₁ l₂ | … | site₂ l₁ | …]   (neuron = layer, site, unit)
//! ```
//!
//! Words are the corpus's own tokens, handed to an encoder's tokenizer
//! pre-split, and to a decoder's as text (see [`words`]).
//! Sentences longer than the model's window are cut into windows of whole
//! words (or truncated, if asked), with a count in the report. Extractions
//! are cached on disk under a key made of the model's files, the words and
//! the settings.

pub mod cache;
pub mod extract;
pub mod gguf;
pub mod hub;
mod mapped;
pub mod model;
mod ops;
#[doc(hidden)]
pub mod tiny;
pub mod words;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lca_builtin::corpus::{
    Corpus, CorpusParams, CorpusSpec, CorpusSplit, SplitParams, corpus_dataset, corpus_outline,
};
use lca_core::data::{ActivationMatrix, DatasetOutline, NeuronId, NeuronIndex, Site};
use lca_core::ndarray::ArrayView2;
use lca_core::params::rule::{Rule, distinct};
use lca_core::params::{Params as _, invalid};
use lca_core::registry::{ComponentInfo, ComponentKind, Descriptor, Inputs, applied};
use lca_core::{ActivationSource, Component, Dataset, Error, Result, RowSink, RunContext};
use tokenizers::Tokenizer;

use crate::cache::{KeyBuilder, Miss, Precision, Stored};
use crate::extract::Aggregation;
use crate::hub::ModelFiles;
use crate::model::{Architecture, Compute, Shape, Weights};
use crate::words::{Joining, LongSentences, Specials, Window};

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
        /// where in each layer to read neurons: `residual` (the hidden
        /// state a layer hands on), `mlp` (the MLP's intermediate units
        /// after the nonlinearity) or `attention` (the attention output
        /// before the residual add); columns follow this order
        site: Vec<SiteName> = vec![SiteName::Residual] => Rule::new(
            "not empty, no repeats",
            |s: &Vec<SiteName>| !s.is_empty() && distinct().passes(s),
        ),
        /// residual states to keep, in this order; 0 is the embedding output
        #[shown = "all"]
        layers: Option<Vec<usize>> = None => layer_list("0 (embeddings) … number of layers"),
        /// blocks whose MLP units to keep (site `mlp`), in this order,
        /// numbered from 1 (block l writes residual state l)
        #[shown = "all"]
        mlp_layers: Option<Vec<usize>> = None => layer_list("1 … number of layers"),
        /// blocks whose attention output to keep (site `attention`), numbered
        /// from 1
        #[shown = "all"]
        attention_layers: Option<Vec<usize>> = None => layer_list("1 … number of layers"),
        /// how a word's pieces become one vector
        aggregation: Aggregation = Aggregation::Last,
        /// run the model with its special tokens ([CLS] … [SEP], or a
        /// decoder's BOS) around each sentence, as it was trained; they get
        /// no rows of their own
        special_tokens: bool = true,
        /// sentences longer than the window: cut into windows of whole
        /// words, or drop the words that do not fit
        long_sentences: LongSentences = LongSentences::Split,
        /// longest input in pieces, special tokens included (at most the
        /// model's window; 3 leaves room for special tokens and a word)
        #[shown = "the model's window, at most 512"]
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
        /// how the dense-layer weights are held: f32; bf16 (half the
        /// memory, products in bf16); quantized (a GGUF file's blocks,
        /// each layer expanded for its product: activations as in f32 at
        /// the file's size). See docs/sources.md for an 8B model
        weights: Weights = Weights::F32,
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

lca_core::param_enum! {
    /// A site of a layer, as recipes name it.
    pub enum SiteName {
        /// The residual stream.
        Residual = "residual",
        /// The MLP's intermediate units.
        Mlp = "mlp",
        /// The attention output.
        Attention = "attention",
    }
}

impl SiteName {
    fn site(self) -> Site {
        match self {
            SiteName::Residual => Site::Residual,
            SiteName::Mlp => Site::Mlp,
            SiteName::Attention => Site::Attention,
        }
    }
}

/// A list of layers: not empty, no repeats (the model checks the range).
fn layer_list(range: &'static str) -> Rule<Option<Vec<usize>>> {
    let description = match range {
        "0 (embeddings) … number of layers" => {
            "0 (embeddings) … number of layers, not empty, no repeats"
        }
        _ => "1 … number of layers, not empty, no repeats",
    };
    Rule::new(description, |l: &Option<Vec<usize>>| {
        l.as_ref()
            .is_none_or(|l| !l.is_empty() && distinct().passes(l))
    })
}

/// Inputs are cut to at most this many pieces unless `max_tokens` asks for
/// more: decoders' windows run to 100k tokens and attention grows with the
/// square of the length.
const DEFAULT_WINDOW: usize = 512;

/// The component descriptor.
pub fn descriptor() -> Descriptor {
    Descriptor {
        info: ComponentInfo {
            kind: ComponentKind::Source,
            name: NAME.into(),
            summary: format!(
                "Per-word activations of a transformer's layers at the residual, mlp or attention site, on an annotated corpus. Families: {}",
                model::supported_types()
            ),
            params: TransformerParams::docs(),
            example: "[source.minilm]\ntype = \"transformer\"\nmodel = \"../../.cache/models/all-MiniLM-L6-v2\"\n\
                      corpus = \"../../.cache/data/brown\"\nformat = \"brown\"\ntask = \"universal_pos\"\nsentences = 2000\n\
                      # a decoder's MLP neurons and residual stream:\n\
                      # model = \"models/SmolLM2-135M\"\n# site = [\"mlp\", \"residual\"]\n# mlp_layers = [10, 20, 30]\n"
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
    sites: Vec<Site>,
    layers: Option<Vec<usize>>,
    mlp_layers: Option<Vec<usize>>,
    attention_layers: Option<Vec<usize>>,
    aggregation: Aggregation,
    special_tokens: bool,
    long_sentences: LongSentences,
    max_tokens: Option<usize>,
    batch_size: usize,
    precision: Precision,
    compute: Compute,
    weights: Weights,
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
            sites: p.site.into_iter().map(SiteName::site).collect(),
            layers: p.layers,
            mlp_layers: p.mlp_layers,
            attention_layers: p.attention_layers,
            aggregation: p.aggregation,
            special_tokens: p.special_tokens,
            long_sentences: p.long_sentences,
            max_tokens: p.max_tokens,
            batch_size: p.batch_size,
            precision: p.dtype,
            compute: p.compute,
            weights: p.weights,
            cache_dir: p.cache.then(|| {
                p.cache_dir
                    .unwrap_or_else(|| PathBuf::from(".cache/activations"))
            }),
            corpus: p.corpus.validate(NAME)?,
            split: p.split.validate(NAME)?,
        })
    }

    /// The products this CPU runs: bfloat16 weights are multiplied in
    /// bfloat16 wherever the CPU can.
    fn effective_compute(&self) -> Compute {
        match self.weights {
            Weights::Bf16 => Compute::Bf16.effective(),
            Weights::F32 | Weights::Quantized => self.compute.effective(),
        }
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
    /// The model.
    pub model: Box<dyn Architecture>,
    /// The tokenizer, without padding or truncation.
    pub tokenizer: Tokenizer,
    /// Where it came from.
    pub files: ModelFiles,
}

/// Loads the model and tokenizer in `files`, for products in `compute`
/// (pass [`Compute::effective`] of what the user asked for) with weights
/// held as `weights` asks.
///
/// # Errors
/// Unreadable or inconsistent files, named.
pub fn load_model(files: &ModelFiles, compute: Compute, weights: Weights) -> Result<LoadedModel> {
    let model = model::load(files, compute, weights)?;
    let mut tokenizer = if files.is_gguf() {
        gguf::Gguf::open(&files.tokenizer)?.tokenizer()?
    } else {
        read_tokenizer(&files.tokenizer)?
    };
    let vocab = model.shape().vocab;
    if let Some(largest) = tokenizer.get_vocab(true).values().max()
        && *largest as usize >= vocab
    {
        return Err(Error::format(
            &files.tokenizer,
            None,
            format!(
                "has token ids up to {largest}, but the model's embedding has {vocab} rows: the \
                 tokenizer belongs to another model. Use the tokenizer.json that came with the \
                 weights"
            ),
        ));
    }
    tokenizer.with_padding(None);
    tokenizer.with_truncation(None).map_err(|e| {
        Error::format(
            &files.tokenizer,
            None,
            format!("cannot disable truncation: {e}"),
        )
    })?;
    Ok(LoadedModel {
        model,
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
    /// What the window policy did.
    pub counts: WindowCounts,
}

/// What the window policy did to a corpus.
#[derive(Clone, Debug, Default)]
pub struct WindowCounts {
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
    /// Layer sites to keep, in column order (residual 0 = embeddings).
    pub wanted: Vec<(Site, usize)>,
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
    /// Windows after the first start with the words before them (causal
    /// models).
    pub left_context: bool,
}

impl Settings {
    /// Columns of the activation matrix.
    fn columns(&self, shape: &Shape) -> usize {
        self.wanted.iter().map(|&(s, _)| shape.width(s)).sum()
    }
}

/// A corpus cut into the model's windows.
struct Windowing {
    windows: Vec<Window>,
    /// The row of each window's first word: rows are the kept words of the
    /// corpus in reading order.
    first_row: Vec<usize>,
    /// Words kept of each sentence.
    kept: Vec<u32>,
    rows: usize,
    counts: WindowCounts,
}

/// Tokenizes every sentence and cuts it into windows.
fn windowing(model: &LoadedModel, corpus: &Corpus, settings: &Settings) -> Result<Windowing> {
    let joining = if model.model.shape().causal {
        Joining::Text
    } else {
        Joining::PreSplit
    };
    let specials = if settings.special_tokens {
        Some(Specials::of(&model.tokenizer)?)
    } else {
        None
    };
    let mut out = Windowing {
        windows: Vec::new(),
        first_row: Vec::new(),
        kept: Vec::with_capacity(corpus.sentences.len()),
        rows: 0,
        counts: WindowCounts::default(),
    };
    let counts = &mut out.counts;
    for (i, sentence) in corpus.sentences.iter().enumerate() {
        let pieces = words::pieces(&model.tokenizer, &sentence.words, joining).map_err(|e| {
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
            settings.left_context,
        );
        if w.windows.len() > 1 {
            counts.split_sentences += 1;
        }
        if w.kept < sentence.words.len() {
            counts.truncated_sentences += 1;
            counts.dropped_words += sentence.words.len() - w.kept;
        }
        counts.cut_words += w.cut_words;
        for window in w.windows {
            counts.empty_words += window.spans.iter().filter(|s| s.is_empty()).count();
            out.first_row.push(out.rows + window.words.start);
            out.windows.push(window);
        }
        out.rows += w.kept;
        out.kept.push(w.kept as u32);
    }
    Ok(out)
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
    let cut = windowing(model, corpus, settings)?;
    let row = cut.rows;
    let cols = settings.columns(model.model.shape());
    lca_core::memory::ensure_fits(
        &format!("the {row} × {cols} activation matrix"),
        (row as u64)
            .checked_mul(cols as u64)
            .and_then(|c| lca_core::memory::bytes_of(c, 4)),
        "extract fewer layers or sites, or fewer `sentences` of the corpus; or write the \
         activations to a store with `lca store create`, which never holds them all",
    )?;
    let mut values = vec![0f32; row * cols];
    if let Some(p) = cx.progress() {
        p.start("extracting activations", row as u64, "words");
    }
    let result = extract::run(
        model.model.as_ref(),
        &cut.windows,
        &cut.first_row,
        &extract_plan(settings),
        &mut values,
        cx,
    );
    if let Some(p) = cx.progress() {
        p.finish();
    }
    result?;
    Ok(Extracted {
        stored: Stored {
            values,
            rows: row,
            cols,
            kept: cut.kept,
        },
        counts: cut.counts,
    })
}

fn extract_plan(settings: &Settings) -> extract::Plan<'_> {
    extract::Plan {
        wanted: &settings.wanted,
        aggregation: settings.aggregation,
        batch_size: settings.batch_size,
    }
}

/// The most a streamed extraction computes at once, in bytes of values.
const STREAM_BLOCK_BYTES: usize = 256 << 20;

/// The batches of windows a streamed extraction computes at once, at least.
const STREAM_BLOCK_BATCHES: usize = 32;

/// Extracts the activations of `corpus` into `sink` a block of rows at a
/// time, in the order of the dataset's rows, and returns that order's
/// outline. Blocks the sink already holds are not computed again.
fn extract_streaming(
    model: &LoadedModel,
    corpus: &Corpus,
    settings: &Settings,
    precision: Precision,
    outline_of: impl FnOnce(&Corpus, &[u32]) -> Result<(DatasetOutline, Vec<usize>)>,
    sink: &mut dyn RowSink,
    cx: &RunContext,
) -> Result<(DatasetOutline, WindowCounts)> {
    let mut cut = windowing(model, corpus, settings)?;
    let (outline, order) = outline_of(corpus, &cut.kept)?;
    // Where each corpus row lands in the dataset. Splits move whole
    // sentences, so a window's words stay consecutive rows.
    let mut position = vec![0usize; order.len()];
    for (at, &row) in order.iter().enumerate() {
        position[row] = at;
    }
    let mut by_position: Vec<(usize, Window)> = cut
        .first_row
        .iter()
        .map(|&row| position.get(row).copied().unwrap_or(usize::MAX))
        .zip(std::mem::take(&mut cut.windows))
        .collect();
    by_position.sort_by_key(|(first, _)| *first);
    let mut next = 0;
    for (first, window) in &by_position {
        if *first != next && !window.spans.is_empty() {
            return Err(Error::input(format!(
                "the windows of the corpus do not tile its rows in the dataset's order (a \
                 window starts at row {first}, expected {next}); this is a bug in the \
                 transformer source"
            )));
        }
        next += window.spans.len();
    }
    let cols = settings.columns(model.model.shape());
    let neurons = outline.neurons.clone();
    sink.begin(cut.rows, &neurons)?;
    let held = sink.rows_held();
    let wanted_end = sink.rows_wanted_end();
    // A block is a shard of the sink's, or more: an interruption loses at
    // most the block being computed. It holds enough windows to batch them
    // by length (small blocks halved the throughput of MiniLM, with much
    // padding and part-filled batches), and never more than the cap.
    let block_rows = sink.block_rows().max(1);
    let block_windows = STREAM_BLOCK_BATCHES * settings.batch_size.max(1);
    let row_cap = (STREAM_BLOCK_BYTES / (cols.max(1) * 4)).max(1);
    if let Some(p) = cx.progress() {
        p.start("extracting activations", cut.rows as u64, "words");
    }
    let result = (|| -> Result<()> {
        let mut windows = by_position.into_iter().peekable();
        while let Some((block_first, first_window)) = windows.next() {
            if block_first >= wanted_end {
                break;
            }
            let mut block = vec![first_window];
            let mut firsts = vec![0];
            let mut rows = block[0].spans.len();
            while (rows < block_rows || block.len() < block_windows)
                && rows < row_cap
                && let Some((first, _)) = windows.peek()
            {
                firsts.push(first - block_first);
                let (_, window) = windows.next().expect("peeked");
                rows += window.spans.len();
                block.push(window);
            }
            if block_first + rows <= held {
                if let Some(p) = cx.progress() {
                    p.advance(rows as u64);
                }
                continue;
            }
            cx.check_cancelled()?;
            let mut values = vec![0f32; rows * cols];
            extract::run(
                model.model.as_ref(),
                &block,
                &firsts,
                &extract_plan(settings),
                &mut values,
                cx,
            )?;
            precision.round(&mut values);
            if let Some(at) = values.iter().position(|v| !v.is_finite()) {
                return Err(Error::input(format!(
                    "the model gave a non-finite activation ({}) at row {}, neuron {}; \
                     nothing past the last full shard was kept. Try `compute = \"f32\"` and \
                     `weights = \"f32\"`",
                    values[at],
                    block_first + at / cols,
                    neurons.id(at % cols)
                )));
            }
            let values = ArrayView2::from_shape((rows, cols), &values)
                .expect("a block holds rows × columns values");
            sink.push(block_first, values)?;
        }
        Ok(())
    })();
    if let Some(p) = cx.progress() {
        p.finish();
    }
    result?;
    Ok((outline, cut.counts))
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
    fn settings(&self, shape: &Shape) -> Result<Settings> {
        let mut wanted = Vec::new();
        for &site in &self.sites {
            let (name, asked) = match site {
                Site::Residual => ("layers", &self.layers),
                Site::Mlp => ("mlp_layers", &self.mlp_layers),
                Site::Attention => ("attention_layers", &self.attention_layers),
            };
            let range = shape.layers_of(site);
            let list = match asked {
                Some(list) => {
                    if let Some(&bad) = list.iter().find(|l| !range.contains(l)) {
                        return Err(invalid(
                            NAME,
                            name,
                            bad,
                            &format!(
                                "{} … {} (this model has {} layers; the {site} site has \
                                 layers {} … {})",
                                range.start(),
                                range.end(),
                                shape.layers,
                                range.start(),
                                range.end()
                            ),
                        ));
                    }
                    list.clone()
                }
                None => range.collect(),
            };
            wanted.extend(list.into_iter().map(|l| (site, l)));
        }
        for (name, asked, site) in [
            ("mlp_layers", &self.mlp_layers, Site::Mlp),
            ("attention_layers", &self.attention_layers, Site::Attention),
        ] {
            if asked.is_some() && !self.sites.contains(&site) {
                return Err(invalid(
                    NAME,
                    name,
                    "set",
                    &format!("only with `site` including \"{site}\""),
                ));
            }
        }
        let window = shape.max_tokens;
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
            None => window.min(DEFAULT_WINDOW),
        };
        Ok(Settings {
            wanted,
            aggregation: self.aggregation,
            special_tokens: self.special_tokens,
            long_sentences: self.long_sentences,
            max_tokens,
            batch_size: self.batch_size,
            left_context: shape.causal,
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
        if files.is_gguf() {
            key.part("gguf", cache::sha256_file(&files.weights)?.as_bytes());
        } else {
            for (name, path) in [
                ("config", &files.config),
                ("weights", &files.weights),
                ("tokenizer", &files.tokenizer),
            ] {
                key.part(name, cache::sha256_file(path)?.as_bytes());
            }
            // The shards an index names (one weights file adds nothing, so
            // keys of single-file models stay as they were).
            let shards = files.weight_files()?;
            if shards.len() > 1 || shards[0] != files.weights {
                for shard in &shards {
                    key.part("shard", cache::sha256_file(shard)?.as_bytes());
                }
            }
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
        // Residual-only keys are as they were before sites existed.
        if settings.wanted.iter().all(|(site, _)| site.is_residual()) {
            let layers: Vec<usize> = settings.wanted.iter().map(|&(_, l)| l).collect();
            key.part("layers", format!("{layers:?}").as_bytes());
        } else {
            let wanted: Vec<String> = settings
                .wanted
                .iter()
                .map(|(site, l)| format!("{site}{l}"))
                .collect();
            key.part("sites", wanted.join(",").as_bytes());
        }
        key.part("aggregation", settings.aggregation.as_str().as_bytes());
        key.part("special_tokens", &[u8::from(settings.special_tokens)]);
        key.part(
            "long_sentences",
            format!("{:?}", settings.long_sentences).as_bytes(),
        );
        key.part("max_tokens", &(settings.max_tokens as u64).to_le_bytes());
        if settings.left_context {
            key.part("left_context", b"half window");
        }
        key.part("dtype", self.precision.as_str().as_bytes());
        // f32 keys predate these options and stay as they were.
        let compute = self.effective_compute();
        if compute != Compute::F32 {
            key.part("compute", compute.as_str().as_bytes());
        }
        if self.weights != Weights::F32 {
            key.part("weights", self.weights.as_str().as_bytes());
        }
        Ok(key.finish())
    }
}

/// What both ways of producing the dataset start from.
struct Prepared {
    corpus: Corpus,
    files: ModelFiles,
    shape: Shape,
    settings: Settings,
    compute: Compute,
}

impl TransformerSource {
    fn prepare(&self, cx: &RunContext) -> Result<Prepared> {
        let corpus = self.corpus.read(cx)?;
        let files = self.files()?;
        let shape = model::shape_of(&files)?;
        let settings = self.settings(&shape)?;
        if self.compute.effective() != self.compute {
            cx.warn(&format!(
                "this CPU has no AVX512-BF16 instructions, so `compute = \"{}\"` runs as `f32`",
                self.compute.as_str()
            ));
        }
        Ok(Prepared {
            corpus,
            files,
            shape,
            settings,
            compute: self.effective_compute(),
        })
    }

    /// The dataset's details: the corpus's, the extraction notes, and the
    /// model and settings.
    fn details(
        &self,
        p: &Prepared,
        notes: BTreeMap<String, String>,
        key: Option<&str>,
    ) -> BTreeMap<String, String> {
        let (shape, settings) = (&p.shape, &p.settings);
        let mut details = self.corpus.details(&p.corpus);
        details.extend(notes);
        details.insert("model".into(), model_name(&self.model, &p.files));
        details.insert("model type".into(), shape.model_type.clone());
        details.insert("layers".into(), describe_layers(shape, &settings.wanted));
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
        details.insert("compute".into(), p.compute.as_str().into());
        details.insert("weights".into(), self.weights.as_str().into());
        if let Some(key) = key {
            details.insert("cache key".into(), key[..16].to_string());
        }
        details
    }
}

/// One column per unit of each wanted layer site.
fn neuron_index(shape: &Shape, wanted: &[(Site, usize)]) -> NeuronIndex {
    NeuronIndex::from_ids(
        wanted
            .iter()
            .flat_map(|&(site, l)| {
                (0..shape.width(site)).map(move |u| NeuronId::at(site, l as u32, u as u32))
            })
            .collect(),
    )
}

impl ActivationSource for TransformerSource {
    fn load(&self, cx: &RunContext) -> Result<Dataset<'static>> {
        let prepared = self.prepare(cx)?;
        let Prepared {
            corpus,
            files,
            shape,
            settings,
            compute,
        } = &prepared;
        let key = match &self.cache_dir {
            Some(_) => Some(self.cache_key(files, corpus, settings)?),
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
        let (stored, notes) = match cached {
            Some((stored, notes)) => {
                if let Some(path) = &entry {
                    cx.info(&format!(
                        "reused the activations cached in {}",
                        path.display()
                    ));
                }
                (stored, notes)
            }
            None => {
                let model = load_model(files, *compute, self.weights)?;
                let mut extracted = extract(&model, corpus, settings, cx)?;
                self.precision.round(&mut extracted.stored.values);
                let notes = events(&extracted.counts, settings, cx);
                if let (Some(path), Some(key)) = (&entry, &key) {
                    let mut meta: BTreeMap<String, String> = notes
                        .iter()
                        .map(|(k, v)| (format!("{NOTE}{k}"), v.clone()))
                        .collect();
                    meta.insert("model".into(), files.dir.display().to_string());
                    meta.insert("layers".into(), layer_sites(&settings.wanted));
                    meta.insert("aggregation".into(), settings.aggregation.as_str().into());
                    match cache::write(path, key, &extracted.stored, self.precision, &meta) {
                        Ok(()) => cx.info(&format!("cached the activations in {}", path.display())),
                        Err(e) => cx.warn(&format!("could not cache the activations: {e}")),
                    }
                }
                (extracted.stored, notes)
            }
        };
        let kept_corpus = keep_words(corpus, &stored.kept);
        let neurons = neuron_index(shape, &settings.wanted);
        let acts = ActivationMatrix::from_row_major(stored.rows, stored.cols, stored.values)?;
        let details = self.details(&prepared, notes, key.as_deref());
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

    fn stream(&self, cx: &RunContext, sink: &mut dyn RowSink) -> Result<Option<DatasetOutline>> {
        let p = self.prepare(cx)?;
        // An extraction in the cache fitted in memory when it was made, and
        // reading it beats computing it again: `load` does that.
        if let Some(dir) = &self.cache_dir
            && cache::entry_path(dir, &self.cache_key(&p.files, &p.corpus, &p.settings)?).exists()
        {
            return Ok(None);
        }
        let model = load_model(&p.files, p.compute, self.weights)?;
        let neurons = neuron_index(&p.shape, &p.settings.wanted);
        let outline_of = |corpus: &Corpus, kept: &[u32]| {
            corpus_outline(
                cx.step().trim_start_matches("source."),
                &keep_words(corpus, kept),
                self.corpus.task,
                neurons,
                &self.split,
                &mut self.corpus.rng(cx, "split"),
            )
        };
        let (mut outline, counts) = extract_streaming(
            &model,
            &p.corpus,
            &p.settings,
            self.precision,
            outline_of,
            sink,
            cx,
        )?;
        let notes = events(&counts, &p.settings, cx);
        outline.details = self.details(&p, notes, None);
        Ok(Some(outline))
    }
}

/// `residual 0, 1, 2; mlp 3` for the cache's metadata.
fn layer_sites(wanted: &[(Site, usize)]) -> String {
    let mut parts: Vec<String> = Vec::new();
    for site in Site::ALL {
        let layers: Vec<String> = wanted
            .iter()
            .filter(|(s, _)| *s == site)
            .map(|(_, l)| l.to_string())
            .collect();
        if !layers.is_empty() {
            parts.push(format!("{site} {}", layers.join(", ")));
        }
    }
    parts.join("; ")
}

/// What the report says about the extracted layers.
fn describe_layers(shape: &Shape, wanted: &[(Site, usize)]) -> String {
    let mut parts = Vec::new();
    for site in Site::ALL {
        let count = wanted.iter().filter(|(s, _)| *s == site).count();
        if count == 0 {
            continue;
        }
        let of = match site {
            Site::Residual => format!(
                "{count} of {} hidden states (0 = embeddings)",
                shape.layers + 1
            ),
            _ => format!("{site}: {count} of {} blocks", shape.layers),
        };
        parts.push(format!("{of}, {} units each", shape.width(site)));
    }
    parts.join("; ")
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
fn events(e: &WindowCounts, settings: &Settings, cx: &RunContext) -> BTreeMap<String, String> {
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
