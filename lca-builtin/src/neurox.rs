//! NeuroX's activation files, both ways, and datasets from them.
//!
//! NeuroX stores one activation block per sentence: `[layers, words,
//! hidden]`, flattened on reading to `[words, layers·hidden]` with column =
//! layer position × hidden + unit. Its JSON-lines format holds one object
//! per sentence,
//!
//! ```text
//! {"linex_index": 0, "features": [{"token": "The", "layers": [{"index": 0, "values": [0.1, …]}, …]}, …]}
//! ```
//!
//! with values rounded to 8 decimals. [`write_json`] writes byte for byte
//! what NeuroX writes for the same numbers, so NeuroX can read what `lca`
//! extracts. HDF5 files are read by the `lca-plugin-hdf5` plugin, which
//! hands its blocks to [`activations_dataset`] like the JSON reader does.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayView2};

use crate::corpus::{Corpus, CorpusParams, CorpusSpec, CorpusSplit, SplitParams, corpus_dataset};
use lca_core::component::{ActivationSource, Component};
use lca_core::context::RunContext;
use lca_core::data::{ActivationMatrix, Dataset, NeuronId, NeuronIndex, SplitFractions, Splits};
use lca_core::error::{Error, Result};
use lca_core::params::{Params as _, invalid};
use lca_core::registry::{ComponentInfo, ComponentKind, Descriptor, Inputs, applied};
use serde::Deserialize;

/// The activations of one sentence.
#[derive(Clone, Debug, PartialEq)]
pub struct SentenceActivations {
    /// The tokens as the file names them (NeuroX writes the detokenized
    /// word pieces, so case may differ from the corpus).
    pub tokens: Vec<String>,
    /// `[tokens, layers·hidden]`, layer-major.
    pub values: Array2<f32>,
}

/// A NeuroX activation file, read.
#[derive(Clone, Debug, PartialEq)]
pub struct NeuroxActivations {
    /// The file it came from.
    pub path: PathBuf,
    /// Layer numbers, in column order (0 = embeddings).
    pub layers: Vec<u32>,
    /// Units per layer.
    pub hidden: usize,
    /// One entry per sentence, in file order.
    pub sentences: Vec<SentenceActivations>,
}

impl NeuroxActivations {
    /// The neuron of each column.
    pub fn neuron_index(&self) -> NeuronIndex {
        NeuronIndex::from_ids(
            self.layers
                .iter()
                .flat_map(|&layer| {
                    (0..self.hidden as u32).map(move |unit| NeuronId::new(layer, unit))
                })
                .collect(),
        )
    }
}

#[derive(Deserialize)]
struct JsonSentence {
    linex_index: i64,
    features: Vec<JsonToken>,
}

#[derive(Deserialize)]
struct JsonToken {
    token: String,
    layers: Vec<JsonLayer>,
}

#[derive(Deserialize)]
struct JsonLayer {
    index: u32,
    values: Vec<f64>,
}

/// Reads NeuroX's JSON-lines activations. Values are parsed as NeuroX
/// parses them (a double, then cast to `f32`). Layer numbers come from the
/// `index` fields.
///
/// # Errors
/// Malformed lines, sentences out of order, or tokens whose layers or widths
/// differ, naming the file and line.
pub fn read_json(path: &Path) -> Result<NeuroxActivations> {
    let text = lca_core::io::read_utf8(
        path,
        "read",
        "NeuroX writes JSON as UTF-8; is this the right file?",
    )?;
    let mut shape: Option<(Vec<u32>, usize)> = None;
    let mut sentences = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let number = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |message: String| Error::format(path, Some(number), message);
        let sentence: JsonSentence = serde_json::from_str(line)
            .map_err(|e| bad(format!("is not a NeuroX activation record ({e}); expected {{\"linex_index\": …, \"features\": […]}}")))?;
        if sentence.linex_index != sentences.len() as i64 {
            return Err(bad(format!(
                "holds sentence {} where sentence {} was expected; NeuroX writes sentences in order, one per line",
                sentence.linex_index,
                sentences.len()
            )));
        }
        let mut tokens = Vec::with_capacity(sentence.features.len());
        let mut values = Vec::new();
        for (t, feature) in sentence.features.iter().enumerate() {
            let layers: Vec<u32> = feature.layers.iter().map(|l| l.index).collect();
            let hidden = feature.layers.first().map_or(0, |l| l.values.len());
            match &shape {
                None => shape = Some((layers.clone(), hidden)),
                Some((expected, width)) => {
                    if *expected != layers {
                        return Err(bad(format!(
                            "token {t} ({:?}) has layers {layers:?}, but the file began with layers {expected:?}",
                            feature.token
                        )));
                    }
                    if *width != hidden {
                        return Err(bad(format!(
                            "token {t} ({:?}) has {hidden} values per layer, but the file began with {width}",
                            feature.token
                        )));
                    }
                }
            }
            for l in &feature.layers {
                if l.values.len() != hidden {
                    return Err(bad(format!(
                        "token {t} ({:?}) has {} values in layer {} but {hidden} in its first layer",
                        feature.token,
                        l.values.len(),
                        l.index
                    )));
                }
                values.extend(l.values.iter().map(|&v| v as f32));
            }
            tokens.push(feature.token.clone());
        }
        let cols = shape.as_ref().map_or(0, |(l, h)| l.len() * h);
        let values =
            Array2::from_shape_vec((tokens.len(), cols), values).expect("rows of equal width");
        sentences.push(SentenceActivations { tokens, values });
    }
    let Some((layers, hidden)) = shape else {
        return Err(Error::format(path, None, "holds no activations"));
    };
    if hidden == 0 {
        return Err(Error::format(path, None, "has layers with no values"));
    }
    Ok(NeuroxActivations {
        path: path.to_path_buf(),
        layers,
        hidden,
        sentences,
    })
}

/// Writes activations in NeuroX's JSON-lines format, byte for byte as
/// NeuroX's writer would: values rounded to 8 decimals and printed as
/// Python prints floats, strings escaped to ASCII. Written atomically.
///
/// # Errors
/// When a sentence's width is not `layers × hidden`, or the file cannot be
/// written.
pub fn write_json(
    path: &Path,
    layers: &[u32],
    hidden: usize,
    sentences: &[(&[String], ArrayView2<'_, f32>)],
) -> Result<()> {
    let mut out = String::new();
    for (i, (tokens, values)) in sentences.iter().enumerate() {
        if values.ncols() != layers.len() * hidden || values.nrows() != tokens.len() {
            return Err(Error::Shape {
                what: format!("NeuroX export of sentence {i}"),
                expected: format!("{} tokens × {} values", tokens.len(), layers.len() * hidden),
                found: format!("{} × {}", values.nrows(), values.ncols()),
            });
        }
        let _ = write!(out, "{{\"linex_index\": {i}, \"features\": [");
        for (t, token) in tokens.iter().enumerate() {
            if t > 0 {
                out.push_str(", ");
            }
            out.push_str("{\"token\": ");
            python_json_string(&mut out, token);
            out.push_str(", \"layers\": [");
            for (l, layer) in layers.iter().enumerate() {
                if l > 0 {
                    out.push_str(", ");
                }
                let _ = write!(out, "{{\"index\": {layer}, \"values\": [");
                for u in 0..hidden {
                    if u > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(&python_float_repr(round_decimals(
                        f64::from(values[[t, l * hidden + u]]),
                        8,
                    )));
                }
                out.push_str("]}");
            }
            out.push_str("]}");
        }
        out.push_str("]}\n");
    }
    lca_core::io::write_atomic(path, out.as_bytes())
}

/// Python's `round(x, digits)`: the double nearest to `x` rounded to
/// `digits` decimals, with ties to even on the exact binary value.
pub fn round_decimals(x: f64, digits: usize) -> f64 {
    if !x.is_finite() {
        return x;
    }
    // Rust formats the exact binary value, rounding half to even, as Python
    // does; parsing gives the nearest double.
    let rounded: f64 = format!("{x:.digits$}")
        .parse()
        .expect("a formatted float parses");
    if rounded == 0.0 {
        0.0_f64.copysign(x)
    } else {
        rounded
    }
}

/// Python's `repr` of a float: the shortest digits that round-trip, fixed
/// notation for exponents from -4 to 15 and scientific otherwise
/// (`3e-05`, `1.0000000200408773e+20`, `-0.0`).
pub fn python_float_repr(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    if x == 0.0 {
        return if x.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    // `{:e}` gives the shortest round-trip digits: "-1.2345e-7".
    let sci = format!("{x:e}");
    let (mantissa, exponent) = sci.split_once('e').expect("LowerExp has an exponent");
    let exponent: i32 = exponent.parse().expect("an integer exponent");
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if negative { "-" } else { "" };
    if (-4..16).contains(&exponent) {
        let point = exponent + 1; // digits before the decimal point
        let text = if point <= 0 {
            format!("0.{}{digits}", "0".repeat((-point) as usize))
        } else if point as usize >= digits.len() {
            format!("{digits}{}.0", "0".repeat(point as usize - digits.len()))
        } else {
            format!(
                "{}.{}",
                &digits[..point as usize],
                &digits[point as usize..]
            )
        };
        format!("{sign}{text}")
    } else {
        let mantissa = if digits.len() == 1 {
            digits
        } else {
            format!("{}.{}", &digits[..1], &digits[1..])
        };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        format!("{sign}{mantissa}e{exp_sign}{:02}", exponent.abs())
    }
}

/// A JSON string as Python's `json.dumps` writes it (`ensure_ascii`).
fn python_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Pairs per-sentence activations with a corpus and builds a dataset.
/// Sentence `i` of the activations belongs to sentence `i` of the corpus;
/// every sentence must have exactly one row per word.
///
/// # Errors
/// A count mismatch, naming both files, the line and both counts (NeuroX
/// silently drops such sentences).
pub fn activations_dataset(
    name: &str,
    acts: NeuroxActivations,
    corpus: &Corpus,
    spec: &CorpusSpec,
    split: &CorpusSplit,
    cx: &RunContext,
) -> Result<Dataset<'static>> {
    let values = activation_rows(&acts, corpus, spec)?;
    let cols = acts.layers.len() * acts.hidden;
    let neurons = acts.neuron_index();
    let matrix = ActivationMatrix::from_row_major(corpus.n_tokens(), cols, values)?;
    let mut details = spec.details(corpus);
    details.insert("activations".into(), acts.path.display().to_string());
    details.insert(
        "layers".into(),
        format!("{:?}, {} units each", acts.layers, acts.hidden),
    );
    let dataset = corpus_dataset(
        name,
        corpus,
        spec.task,
        matrix,
        neurons,
        split,
        &mut spec.rng(cx, "split"),
    )?
    .with_details(details);
    dataset.check_finite()?;
    Ok(dataset)
}

/// The activations of `corpus`'s words, row-major, one row per word in
/// reading order.
///
/// # Errors
/// When the sentence counts or a sentence's word count differ, naming both
/// files and the line.
fn activation_rows(
    acts: &NeuroxActivations,
    corpus: &Corpus,
    spec: &CorpusSpec,
) -> Result<Vec<f32>> {
    if acts.sentences.len() != corpus.sentences.len() {
        return Err(Error::format(
            &acts.path,
            None,
            format!(
                "holds {} sentences but the corpus {} has {}; the activations must come from exactly these sentences, in order",
                acts.sentences.len(),
                spec.path.display(),
                corpus.sentences.len()
            ),
        ));
    }
    let cols = acts.layers.len() * acts.hidden;
    let mut values = Vec::with_capacity(corpus.n_tokens() * cols);
    for (i, (a, s)) in acts.sentences.iter().zip(&corpus.sentences).enumerate() {
        if a.values.nrows() != s.words.len() {
            // NeuroX's extractor splits on single spaces, its loader (and
            // this reader) on any whitespace: name that cause when it is it.
            let raw = std::fs::read_to_string(&spec.path)
                .ok()
                .and_then(|t| t.lines().nth(s.line.saturating_sub(1)).map(String::from));
            let odd = raw.as_deref().and_then(|l| {
                if l.contains('\t') {
                    Some("a tab")
                } else if l.trim().contains("  ") {
                    Some("a double space")
                } else {
                    None
                }
            });
            if let Some(odd) = odd {
                return Err(Error::format(
                    &spec.path,
                    Some(s.line),
                    format!(
                        "has {odd} between words: NeuroX's extractor splits sentences on single spaces and stored {} rows of activations for this line, \
                         but split on any whitespace it has {} words; replace every run of spaces and tabs by one space and extract the activations again",
                        a.values.nrows(),
                        s.words.len()
                    ),
                ));
            }
            return Err(Error::format(
                &acts.path,
                None,
                format!(
                    "sentence {i} has {} rows of activations but line {} of {} has {} words; every word needs exactly one row \
                     (was the file extracted from another version of the corpus, or with special tokens?)",
                    a.values.nrows(),
                    s.line,
                    s.file,
                    s.words.len()
                ),
            ));
        }
        values.extend(a.values.iter().copied());
    }
    Ok(values)
}

/// Reads a NeuroX activation file of a known format.
pub type ActivationReader = fn(&Path, Option<&[u32]>) -> Result<NeuroxActivations>;

lca_core::params! {
    /// The parameters of the NeuroX activation sources (JSON lines here,
    /// HDF5 in its plugin).
    pub struct NeuroxSourceParams {
        /// NeuroX activations (JSON lines or HDF5, as the source type says),
        /// one block per corpus sentence, in corpus order
        activations: PathBuf => Rule::note("a file"),
        /// layer numbers of the stored blocks (NeuroX's filter_layers or
        /// decompose_layers files do not record them)
        #[shown = "as stored"]
        layers: Option<Vec<u32>> = None => Rule::note("one number ≥ 0 per stored layer"),
        /// dev split from its own files instead of a fraction: NeuroX
        /// activations of `dev_corpus` (the main files are then the
        /// training split, kept in corpus order)
        #[shown = "drawn from the corpus"]
        dev_activations: Option<PathBuf> = None => Rule::note("a file"),
        /// the corpus of `dev_activations`, in the format of `corpus`
        #[shown = "none"]
        dev_corpus: Option<PathBuf> = None => Rule::note("a file"),
        /// NeuroX format: the label file of `dev_corpus`
        #[shown = "none"]
        dev_labels: Option<PathBuf> = None => Rule::note("a text file"),
        /// test split from its own files, as `dev_activations`
        #[shown = "drawn from the corpus"]
        test_activations: Option<PathBuf> = None => Rule::note("a file"),
        /// the corpus of `test_activations`
        #[shown = "none"]
        test_corpus: Option<PathBuf> = None => Rule::note("a file"),
        /// NeuroX format: the label file of `test_corpus`
        #[shown = "none"]
        test_labels: Option<PathBuf> = None => Rule::note("a text file"),
        #[flatten]
        corpus: CorpusParams,
        #[flatten]
        split: SplitParams,
    }
}

/// A held-out split given as files: its activations and its corpus.
#[derive(Clone, Debug)]
struct HeldOutFiles {
    activations: PathBuf,
    corpus: CorpusSpec,
}

/// The held-out files of `split`, when its activations are given.
fn held_out_files(
    component: &str,
    split: &str,
    train: &CorpusSpec,
    [activations, corpus, labels]: [&Option<PathBuf>; 3],
) -> Result<Option<HeldOutFiles>> {
    let Some(activations) = activations else {
        crate::sources::held_out_companions_need_main(
            component,
            split,
            "activations",
            [("corpus", corpus), ("labels", labels)],
        )?;
        return Ok(None);
    };
    let Some(corpus) = corpus else {
        return Err(invalid(
            component,
            &format!("{split}_corpus"),
            "missing",
            &format!(
                "the corpus of {} (the sentences it holds, in order)",
                activations.display()
            ),
        ));
    };
    let neurox = train.labels.is_some();
    if neurox != labels.is_some() {
        let expected = if neurox {
            "the label file of the split's corpus, as `labels` is for the training corpus"
        } else {
            "no label file: only the NeuroX format has one"
        };
        return Err(invalid(
            component,
            &format!("{split}_labels"),
            if neurox { "missing" } else { "set" },
            expected,
        ));
    }
    let mut spec = train.clone();
    spec.path = corpus.clone();
    spec.labels = labels.clone();
    Ok(Some(HeldOutFiles {
        activations: activations.clone(),
        corpus: spec,
    }))
}

/// A source of NeuroX activations plus a corpus.
#[derive(Clone, Debug)]
pub struct NeuroxSource {
    activations: PathBuf,
    layers: Option<Vec<u32>>,
    corpus: CorpusSpec,
    split: CorpusSplit,
    reader: ActivationReader,
    /// Dev and test files, when given instead of fractions.
    held_out: [Option<HeldOutFiles>; 2],
}

impl NeuroxSource {
    /// Validates the parameters of source `name`, read with `reader`.
    ///
    /// # Errors
    /// [`Error::InvalidParam`] naming the bad parameter.
    pub fn new(
        name: &'static str,
        p: NeuroxSourceParams,
        reader: ActivationReader,
    ) -> Result<Self> {
        let corpus = p.corpus.validate(name)?;
        let split = p.split.validate(name)?;
        let dev = held_out_files(
            name,
            "dev",
            &corpus,
            [&p.dev_activations, &p.dev_corpus, &p.dev_labels],
        )?;
        let test = held_out_files(
            name,
            "test",
            &corpus,
            [&p.test_activations, &p.test_corpus, &p.test_labels],
        )?;
        if (dev.is_some() || test.is_some())
            && (split.dev, split.test)
                != (
                    SplitFractions::default().dev,
                    SplitFractions::default().test,
                )
        {
            return Err(invalid(
                name,
                "dev",
                format!("{} (test = {})", split.dev, split.test),
                "no `dev` or `test` fraction when dev_activations or test_activations gives \
                 the held-out splits as files; remove the fractions",
            ));
        }
        Ok(NeuroxSource {
            activations: p.activations,
            layers: p.layers,
            corpus,
            split,
            reader,
            held_out: [dev, test],
        })
    }
}

impl ActivationSource for NeuroxSource {
    fn load(&self, cx: &RunContext) -> Result<Dataset<'static>> {
        let acts = (self.reader)(&self.activations, self.layers.as_deref())?;
        let corpus = self.corpus.read(cx)?;
        let name = cx.step().trim_start_matches("source.");
        if self.held_out.iter().all(Option::is_none) {
            return activations_dataset(name, acts, &corpus, &self.corpus, &self.split, cx);
        }
        // Train, dev and test files, joined in that order.
        let mut values = activation_rows(&acts, &corpus, &self.corpus)?;
        let mut joined = corpus;
        let mut sizes = [joined.n_tokens(), 0, 0];
        for (slot, files) in self.held_out.iter().enumerate() {
            let Some(files) = files else { continue };
            let part_acts = (self.reader)(&files.activations, self.layers.as_deref())?;
            if (&part_acts.layers, part_acts.hidden) != (&acts.layers, acts.hidden) {
                return Err(Error::format(
                    &files.activations,
                    None,
                    format!(
                        "holds layers {:?} of {} units but {} holds layers {:?} of {}; the splits \
                         must come from the same model and layers",
                        part_acts.layers,
                        part_acts.hidden,
                        acts.path.display(),
                        acts.layers,
                        acts.hidden
                    ),
                ));
            }
            let part_corpus = files.corpus.read(cx)?;
            values.extend(activation_rows(&part_acts, &part_corpus, &files.corpus)?);
            sizes[slot + 1] = part_corpus.n_tokens();
            joined.sentences.extend(part_corpus.sentences);
        }
        let neurons = acts.neuron_index();
        let matrix = ActivationMatrix::from_row_major(
            joined.n_tokens(),
            acts.layers.len() * acts.hidden,
            values,
        )?;
        let mut details = self.corpus.details(&joined);
        details.insert("activations".into(), acts.path.display().to_string());
        for (split, files) in ["dev", "test"].iter().zip(&self.held_out) {
            if let Some(files) = files {
                details.insert(
                    format!("{split} activations"),
                    files.activations.display().to_string(),
                );
                details.insert(
                    format!("{split} corpus"),
                    files.corpus.path.display().to_string(),
                );
            }
        }
        details.insert(
            "layers".into(),
            format!("{:?}, {} units each", acts.layers, acts.hidden),
        );
        let split = CorpusSplit {
            given: Some(Splits {
                train: sizes[0],
                dev: sizes[1],
                test: sizes[2],
            }),
            ..self.split
        };
        let dataset = corpus_dataset(
            name,
            &joined,
            self.corpus.task,
            matrix,
            neurons,
            &split,
            &mut self.corpus.rng(cx, "split"),
        )?
        .with_details(details);
        dataset.check_finite()?;
        Ok(dataset)
    }
}

/// Relabels the layers of `acts` when the recipe names them.
///
/// # Errors
/// When the count differs from the stored layers.
pub fn relabel_layers(
    mut acts: NeuroxActivations,
    layers: Option<&[u32]>,
    component: &str,
) -> Result<NeuroxActivations> {
    if let Some(layers) = layers {
        if layers.len() != acts.layers.len() {
            return Err(invalid(
                component,
                "layers",
                format!("{layers:?}"),
                &format!(
                    "{} layer numbers, one per layer stored in {}",
                    acts.layers.len(),
                    acts.path.display()
                ),
            ));
        }
        acts.layers = layers.to_vec();
    }
    Ok(acts)
}

fn read_json_source(path: &Path, layers: Option<&[u32]>) -> Result<NeuroxActivations> {
    relabel_layers(read_json(path)?, layers, JSON_NAME)
}

const JSON_NAME: &str = "neurox_json";

/// The descriptor of `neurox_json`.
pub(crate) fn json_descriptor() -> Descriptor {
    Descriptor {
        info: ComponentInfo {
            kind: ComponentKind::Source,
            name: JSON_NAME.into(),
            summary: "Activations from a NeuroX JSON-lines file, with its sentence and label files".into(),
            params: NeuroxSourceParams::docs(),
            example: "[source.acts]\ntype = \"neurox_json\"\nactivations = \"activations.json\"\ncorpus = \"sentences.txt\"\nlabels = \"labels.txt\"\n".into(),
            inputs: Inputs::default(),
        },
        build: |table| {
            let p = NeuroxSourceParams::parse(JSON_NAME, table)?;
            Ok(Component::Source(Box::new(NeuroxSource::new(JSON_NAME, p, read_json_source)?)))
        },
        applied: applied::<NeuroxSourceParams>,
    }
}

/// Per-sentence blocks of a dataset, in dataset order, for export.
pub fn dataset_sentences<'d>(
    data: &'d Dataset<'_>,
) -> Result<Vec<(std::ops::Range<usize>, &'d [String])>> {
    let tokens = data.tokens().ok_or_else(|| {
        Error::input(format!(
            "source `{}` has no words; NeuroX files need the words of each sentence",
            data.name()
        ))
    })?;
    let starts = tokens.sentence_starts();
    let words = tokens.words();
    let mut out = Vec::with_capacity(starts.len().max(1));
    let bounds: Vec<usize> = if starts.is_empty() {
        vec![0]
    } else {
        starts.to_vec()
    };
    for (i, &start) in bounds.iter().enumerate() {
        let end = bounds.get(i + 1).copied().unwrap_or(words.len());
        out.push((start..end, &words[start..end]));
    }
    Ok(out)
}

/// The layer numbers of a dataset's columns when they are whole layers in
/// layer-major order (as NeuroX files need), with the hidden width.
pub fn whole_layers(neurons: &NeuronIndex) -> Option<(Vec<u32>, usize)> {
    let ids = neurons.ids();
    let first = ids.first()?;
    let hidden = ids.iter().take_while(|id| id.layer == first.layer).count();
    if hidden == 0 || !ids.len().is_multiple_of(hidden) {
        return None;
    }
    let mut layers = Vec::new();
    for chunk in ids.chunks(hidden) {
        let layer = chunk[0].layer;
        let whole = chunk
            .iter()
            .enumerate()
            .all(|(u, id)| id.layer == layer && id.unit as usize == u);
        if !whole || layers.contains(&layer) {
            return None;
        }
        layers.push(layer);
    }
    Some((layers, hidden))
}

/// Writes NeuroX's text files beside the activations file `path`:
/// `<stem>.sentences.txt` (one sentence per line, words joined by spaces)
/// and `<stem>.labels.txt` (the labels of its words, likewise), for the
/// sentences `sentences` of `data`. Returns both paths.
///
/// # Errors
/// When a file cannot be written.
pub fn write_sentences_and_labels(
    data: &Dataset<'_>,
    sentences: &[(std::ops::Range<usize>, &[String])],
    path: &Path,
) -> Result<(PathBuf, PathBuf)> {
    let classes = data.classes();
    let ids = data.labels().ids();
    let mut text_sentences = String::new();
    let mut text_labels = String::new();
    for (rows, words) in sentences {
        text_sentences.push_str(&words.join(" "));
        text_sentences.push('\n');
        let labels: Vec<&str> = ids[rows.clone()].iter().map(|&c| classes.name(c)).collect();
        text_labels.push_str(&labels.join(" "));
        text_labels.push('\n');
    }
    let sibling = |suffix: &str| {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        path.with_file_name(format!("{stem}.{suffix}"))
    };
    let (sentences_path, labels_path) = (sibling("sentences.txt"), sibling("labels.txt"));
    lca_core::io::write_atomic(&sentences_path, text_sentences.as_bytes())?;
    lca_core::io::write_atomic(&labels_path, text_labels.as_bytes())?;
    Ok((sentences_path, labels_path))
}

/// Writes `data` as NeuroX files at `path`: its activations through
/// `write_activations` (JSON lines, or HDF5 in its plugin), given the layer
/// numbers, the width of a layer and each sentence's words and rows, then
/// the sentence and label files beside it. Returns what was written, as an
/// evaluation for reports.
///
/// # Errors
/// When `data` lacks words or whole layers in layer-major order, or a file
/// cannot be written.
pub fn export_neurox(
    data: &Dataset<'_>,
    path: &Path,
    write_activations: impl FnOnce(
        &Path,
        &[u32],
        usize,
        &[(&[String], ArrayView2<'_, f32>)],
    ) -> Result<()>,
) -> Result<lca_core::data::Evaluation> {
    use lca_core::data::{Cell, Evaluation, Table};
    let (layers, hidden) = whole_layers(data.neurons()).ok_or_else(|| {
        Error::input(format!(
            "source `{}` does not hold whole layers in layer-major order, which NeuroX files need",
            data.name()
        ))
    })?;
    let sentences = dataset_sentences(data)?;
    let acts = data.acts().view();
    let blocks: Vec<_> = sentences
        .iter()
        .map(|(rows, words)| (*words, acts.slice(ndarray::s![rows.clone(), ..])))
        .collect();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create folder", dir, e))?;
    }
    write_activations(path, &layers, hidden, &blocks)?;
    let (sentences_path, labels_path) = write_sentences_and_labels(data, &sentences, path)?;

    let mut evaluation = Evaluation::default();
    evaluation
        .metrics
        .insert("sentences".into(), sentences.len() as f64);
    evaluation
        .metrics
        .insert("tokens".into(), data.n_rows() as f64);
    let mut table = Table::new("NeuroX files written", &["file", "holds"]);
    let activations = format!("activations of {} layers × {hidden} units", layers.len());
    for (file, holds) in [
        (path, activations.as_str()),
        (&sentences_path, "one sentence per line"),
        (&labels_path, "one label per word, aligned"),
    ] {
        table.push(vec![
            Cell::from(file.display().to_string()),
            Cell::from(holds),
        ]);
    }
    evaluation.tables.push(table);
    evaluation.notes.push(format!(
        "{} sentences in the source's row order (train, then dev, then test). NeuroX reads them with \
         load_activations(\"{}\") and load_data(sentences, labels, activations, 512).",
        sentences.len(),
        path.display()
    ));
    Ok(evaluation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_python_prints_them() {
        let cases: [(f64, &str); 12] = [
            (0.1, "0.1"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (3e-05, "3e-05"),
            (-7.5e-07, "-7.5e-07"),
            (123456.7890625, "123456.7890625"),
            (1.0000000200408773e20, "1.0000000200408773e+20"),
            (1.0, "1.0"),
            (-2.5, "-2.5"),
            (1e16, "1e+16"),
            (1234567890123456.0, "1234567890123456.0"),
            (0.0001, "0.0001"),
        ];
        for (x, expected) in cases {
            assert_eq!(python_float_repr(x), expected, "{x:e}");
        }
    }

    #[test]
    fn rounding_to_eight_decimals_matches_python() {
        assert_eq!(round_decimals(f64::from(0.1f32), 8), 0.1);
        assert_eq!(round_decimals(f64::from(1e-9f32), 8), 0.0);
        assert_eq!(
            round_decimals(f64::from(5e-9f32), 8),
            0.0,
            "5e-9 in f32 is just below the tie"
        );
        assert!(round_decimals(-1e-12, 8).is_sign_negative());
        assert_eq!(round_decimals(f64::from(0.123_456_78_f32), 8), 0.12345678);
    }

    #[test]
    fn strings_escape_to_ascii() {
        let mut out = String::new();
        python_json_string(&mut out, "caf\u{e9} \"q\" \\ \u{1F600}\t");
        assert_eq!(out, "\"caf\\u00e9 \\\"q\\\" \\\\ \\ud83d\\ude00\\t\"");
    }

    #[test]
    fn whole_layers_are_recognised() {
        let idx = NeuronIndex::layer_major_from(6, 2, 3).unwrap();
        assert_eq!(whole_layers(&idx), Some((vec![3, 4], 3)));
        assert_eq!(whole_layers(&idx.select(&[0, 2, 1, 3, 4, 5])), None);
    }
}
