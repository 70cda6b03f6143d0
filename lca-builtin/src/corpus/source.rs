//! What every corpus-backed activation source shares: the recipe parameters
//! that choose a corpus, a task and a sample of sentences, and the assembly
//! of per-word activations into a [`Dataset`] with splits that keep
//! sentences (or whole files) together.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{Corpus, Task, read_brown, read_conllu, read_neurox_files};
use lca_core::context::RunContext;
use lca_core::data::{
    ActivationMatrix, ClassVocab, Dataset, Labels, NeuronIndex, SplitSpec, SplitUnit, Tokens,
    assign_splits, reorder_sentence_starts,
};
use lca_core::error::{Error, Result};
use lca_core::params::{ParamDoc, ParamType, ensure, invalid};
use lca_core::rng::Rng;

/// Corpus parameters as a recipe writes them. Flatten them into a source's
/// own parameter struct and list [`CorpusParams::docs`] with its parameters.
#[derive(Clone, Debug, Deserialize)]
pub struct CorpusParams {
    /// A corpus file or (for Brown) directory.
    pub corpus: PathBuf,
    /// `brown`, `conllu` or `neurox`; inferred when absent.
    #[serde(default)]
    pub format: Option<String>,
    /// The labels file of the NeuroX format.
    #[serde(default)]
    pub labels: Option<PathBuf>,
    /// The CoNLL-U column with the annotation.
    #[serde(default = "upos")]
    pub column: String,
    /// How tags become labels.
    #[serde(default = "tags")]
    pub task: String,
    /// Use at most this many sentences.
    #[serde(default)]
    pub sentences: Option<i64>,
    /// Which sentences when `sentences` is set: `first` or `random`.
    #[serde(default = "first")]
    pub sample: String,
    /// Skip sentences with more words than this.
    #[serde(default)]
    pub max_words: Option<i64>,
    /// Seed of the sample and the split.
    #[serde(default)]
    pub seed: Option<i64>,
}

fn upos() -> String {
    "upos".into()
}
fn tags() -> String {
    "tags".into()
}
fn first() -> String {
    "first".into()
}

impl CorpusParams {
    /// The parameter table of the corpus parameters.
    pub fn docs() -> Vec<ParamDoc> {
        use ParamType::*;
        vec![
            ParamDoc::new(
                "corpus",
                Path,
                "required",
                "a file, or a directory of Brown files",
                "the annotated corpus: Brown (word/TAG lines), CoNLL-U, or a NeuroX sentence file",
            ),
            ParamDoc::new(
                "format",
                String,
                "inferred",
                "\"brown\", \"conllu\" or \"neurox\"",
                "corpus format; a directory is Brown, *.conllu is CoNLL-U, a `labels` file means NeuroX",
            ),
            ParamDoc::new(
                "labels",
                Path,
                "none",
                "a text file",
                "NeuroX format: the label file, one line of labels per sentence",
            ),
            ParamDoc::new(
                "column",
                String,
                "\"upos\"",
                "a CoNLL-U column name (upos, xpos, deprel, …)",
                "CoNLL-U format: the column that holds the annotation",
            ),
            ParamDoc::new(
                "task",
                String,
                "\"tags\"",
                "tags, universal_pos, brown_pos, suffix, capitalization",
                "what each word is labelled with: the tags as written, Brown tags mapped to universal or \
                 simplified POS, or a lexical property of the word itself",
            ),
            ParamDoc::new(
                "sentences",
                Integer,
                "all",
                "≥ 1",
                "use at most this many sentences",
            ),
            ParamDoc::new(
                "sample",
                String,
                "\"first\"",
                "\"first\" or \"random\"",
                "which sentences `sentences` keeps: the first ones, or a seeded random sample kept in corpus order",
            ),
            ParamDoc::new(
                "max_words",
                Integer,
                "no limit",
                "≥ 1",
                "skip sentences with more words than this (before sampling)",
            ),
            ParamDoc::new(
                "seed",
                Integer,
                "the step's seed",
                "≥ 0",
                "seed of the sentence sample and the train/dev/test split; sources with the same seed and \
                 corpus settings get the same sentences and splits",
            ),
        ]
    }

    /// Validates the parameters of `component`.
    ///
    /// # Errors
    /// [`Error::InvalidParam`] naming the bad parameter.
    pub fn validate(&self, component: &str) -> Result<CorpusSpec> {
        let format = match self.format.as_deref() {
            Some("brown") => CorpusFormat::Brown,
            Some("conllu") => CorpusFormat::Conllu,
            Some("neurox") => CorpusFormat::Neurox,
            Some(other) => {
                return Err(invalid(
                    component,
                    "format",
                    format!("{other:?}"),
                    "\"brown\", \"conllu\" or \"neurox\"",
                ));
            }
            None if self.labels.is_some() => CorpusFormat::Neurox,
            None if self.corpus.extension().is_some_and(|e| e == "conllu") => CorpusFormat::Conllu,
            None if self.corpus.is_dir() => CorpusFormat::Brown,
            None => {
                return Err(invalid(
                    component,
                    "format",
                    "missing",
                    "\"brown\", \"conllu\" or \"neurox\" (it could not be inferred from the corpus path)",
                ));
            }
        };
        if format == CorpusFormat::Neurox && self.labels.is_none() {
            return Err(invalid(
                component,
                "labels",
                "missing",
                "a label file: the NeuroX format keeps labels in a file of their own",
            ));
        }
        if format != CorpusFormat::Neurox && self.labels.is_some() {
            return Err(invalid(
                component,
                "labels",
                format!(
                    "{:?}",
                    self.labels.as_ref().map(|p| p.display().to_string())
                ),
                "no labels file: only the NeuroX format has one; the other formats carry their tags",
            ));
        }
        let task = Task::parse(&self.task).map_err(|_| {
            invalid(
                component,
                "task",
                format!("{:?}", self.task),
                "tags, universal_pos, brown_pos, suffix or capitalization",
            )
        })?;
        let count = |name: &str, v: Option<i64>| -> Result<Option<usize>> {
            match v {
                Some(n) => {
                    ensure(component, name, n >= 1, n, "≥ 1")?;
                    Ok(Some(n as usize))
                }
                None => Ok(None),
            }
        };
        let random = match self.sample.as_str() {
            "first" => false,
            "random" => true,
            other => {
                return Err(invalid(
                    component,
                    "sample",
                    format!("{other:?}"),
                    "\"first\" or \"random\"",
                ));
            }
        };
        if let Some(seed) = self.seed {
            ensure(component, "seed", seed >= 0, seed, "≥ 0")?;
        }
        Ok(CorpusSpec {
            seed: self.seed.map(|s| s as u64),
            path: self.corpus.clone(),
            format,
            labels: self.labels.clone(),
            column: self.column.clone(),
            task,
            sentences: count("sentences", self.sentences)?,
            random_sample: random,
            max_words: count("max_words", self.max_words)?,
        })
    }
}

/// A corpus file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CorpusFormat {
    /// The tagged Brown corpus (`word/TAG`).
    Brown,
    /// CoNLL-U.
    Conllu,
    /// NeuroX sentence and label files.
    Neurox,
}

impl CorpusFormat {
    /// The name recipes use.
    pub fn name(self) -> &'static str {
        match self {
            CorpusFormat::Brown => "brown",
            CorpusFormat::Conllu => "conllu",
            CorpusFormat::Neurox => "neurox",
        }
    }
}

/// Validated corpus parameters: which sentences, labelled how.
#[derive(Clone, Debug, PartialEq)]
pub struct CorpusSpec {
    /// File or directory.
    pub path: PathBuf,
    /// Its format.
    pub format: CorpusFormat,
    /// NeuroX label file.
    pub labels: Option<PathBuf>,
    /// CoNLL-U column.
    pub column: String,
    /// How tags become labels.
    pub task: Task,
    /// Keep at most this many sentences.
    pub sentences: Option<usize>,
    /// Sample them at random (seeded) instead of taking the first.
    pub random_sample: bool,
    /// Skip longer sentences.
    pub max_words: Option<usize>,
    /// Seed of the sample and split; the step's when absent.
    pub seed: Option<u64>,
}

impl CorpusSpec {
    /// The generator of a named stream (`sample`, `split`): from the recipe's
    /// `seed` when set, else from the step's seed.
    pub fn rng(&self, cx: &RunContext, label: &str) -> Rng {
        match self.seed {
            Some(seed) => Rng::derived(seed, label),
            None => cx.rng_for(label),
        }
    }

    /// Reads the corpus and keeps the requested sentences, in corpus order.
    /// The sample is drawn from the `sample` stream of [`CorpusSpec::rng`].
    ///
    /// # Errors
    /// Reader errors (file and line), or no sentence left.
    pub fn read(&self, cx: &RunContext) -> Result<Corpus> {
        let mut corpus = match self.format {
            CorpusFormat::Brown => read_brown(std::slice::from_ref(&self.path))?,
            CorpusFormat::Conllu => read_conllu(&self.path, &self.column)?,
            CorpusFormat::Neurox => read_neurox_files(
                &self.path,
                self.labels
                    .as_deref()
                    .expect("validated: NeuroX has labels"),
            )?,
        };
        if let Some(max) = self.max_words {
            corpus.sentences.retain(|s| s.words.len() <= max);
        }
        if let Some(n) = self.sentences
            && n < corpus.sentences.len()
        {
            if self.random_sample {
                let mut picked: Vec<usize> = (0..corpus.sentences.len()).collect();
                self.rng(cx, "sample").shuffle(&mut picked);
                picked.truncate(n);
                picked.sort_unstable();
                let mut keep = vec![false; corpus.sentences.len()];
                for i in picked {
                    keep[i] = true;
                }
                let mut flags = keep.into_iter();
                corpus.sentences.retain(|_| flags.next().unwrap_or(false));
            } else {
                corpus.sentences.truncate(n);
            }
        }
        if corpus.sentences.is_empty() {
            return Err(Error::format(
                &self.path,
                None,
                "has no sentences left after `max_words` and `sentences`; raise `max_words`",
            ));
        }
        Ok(corpus)
    }

    /// Facts about the corpus for reports.
    pub fn details(&self, corpus: &Corpus) -> BTreeMap<String, String> {
        let mut d = BTreeMap::new();
        d.insert("corpus".into(), display_path(&self.path));
        d.insert("corpus format".into(), self.format.name().into());
        d.insert("task".into(), self.task.name().into());
        d.insert(
            "sentences".into(),
            format!(
                "{}{}",
                corpus.sentences.len(),
                if self.random_sample && self.sentences.is_some() {
                    " (seeded random sample)"
                } else {
                    ""
                }
            ),
        );
        d
    }
}

fn display_path(p: &Path) -> String {
    p.display().to_string()
}

/// Split parameters as a recipe writes them (flatten them into a source's
/// parameters and list [`SplitParams::docs`]).
#[derive(Clone, Debug, Deserialize)]
pub struct SplitParams {
    /// Fraction for dev.
    #[serde(default = "tenth")]
    pub dev: f64,
    /// Fraction for test.
    #[serde(default = "tenth")]
    pub test: f64,
    /// Shuffle units before splitting.
    #[serde(default = "yes")]
    pub shuffle: bool,
    /// `sentence` or `file`.
    #[serde(default = "sentence")]
    pub split_by: String,
}

fn tenth() -> f64 {
    0.1
}
fn yes() -> bool {
    true
}
fn sentence() -> String {
    "sentence".into()
}

/// What a split keeps together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitBy {
    /// Whole sentences.
    Sentence,
    /// Whole corpus files (no file contributes to two splits).
    File,
}

/// Validated split parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CorpusSplit {
    /// Fraction of units for dev.
    pub dev: f64,
    /// Fraction of units for test.
    pub test: f64,
    /// Shuffle (seeded) before splitting.
    pub shuffle: bool,
    /// The unit.
    pub by: SplitBy,
}

impl SplitParams {
    /// The parameter table of the split parameters.
    pub fn docs() -> Vec<ParamDoc> {
        use ParamType::*;
        vec![
            ParamDoc::new(
                "dev",
                Float,
                "0.1",
                "0 ≤ x < 1",
                "fraction of units in the dev split",
            ),
            ParamDoc::new(
                "test",
                Float,
                "0.1",
                "0 ≤ x < 1",
                "fraction of units in the test split",
            ),
            ParamDoc::new(
                "shuffle",
                Bool,
                "true",
                "true or false",
                "shuffle units (seeded) before splitting; false holds out the tail",
            ),
            ParamDoc::new(
                "split_by",
                String,
                "\"sentence\"",
                "\"sentence\" or \"file\"",
                "unit of the split: whole sentences, or whole corpus files",
            ),
        ]
    }

    /// Validates the parameters of `component`.
    ///
    /// # Errors
    /// [`Error::InvalidParam`] naming the bad parameter.
    pub fn validate(&self, component: &str) -> Result<CorpusSplit> {
        SplitSpec::check_fractions(component, self.dev, self.test)?;
        let by = match self.split_by.as_str() {
            "sentence" => SplitBy::Sentence,
            "file" => SplitBy::File,
            other => {
                return Err(invalid(
                    component,
                    "split_by",
                    format!("{other:?}"),
                    "\"sentence\" or \"file\"",
                ));
            }
        };
        Ok(CorpusSplit {
            dev: self.dev,
            test: self.test,
            shuffle: self.shuffle,
            by,
        })
    }
}

/// Builds a dataset from a corpus and the activations of its words: row `i`
/// of `acts` belongs to the `i`-th word of the corpus in reading order.
/// Rows are reordered into train, dev and test, whole sentences (or files)
/// at a time, drawn from `rng`. Labels come from `task`; classes are in
/// sorted order.
///
/// # Errors
/// When the row count differs from the word count, or the split leaves no
/// training data.
pub fn corpus_dataset(
    name: &str,
    corpus: &Corpus,
    task: Task,
    acts: ActivationMatrix<'static>,
    neurons: NeuronIndex,
    split: &CorpusSplit,
    rng: &mut Rng,
) -> Result<Dataset<'static>> {
    let n_words = corpus.n_tokens();
    if acts.n_rows() != n_words {
        return Err(Error::Shape {
            what: format!("dataset `{name}`: activation rows per corpus word"),
            expected: n_words.to_string(),
            found: acts.n_rows().to_string(),
        });
    }
    let mut sentence_starts = Vec::with_capacity(corpus.sentences.len());
    let mut file_starts = Vec::new();
    let mut words = Vec::with_capacity(n_words);
    let mut names = Vec::with_capacity(n_words);
    let mut previous_file: Option<&str> = None;
    for s in &corpus.sentences {
        sentence_starts.push(words.len());
        if previous_file != Some(s.file.as_str()) {
            file_starts.push(words.len());
            previous_file = Some(&s.file);
        }
        for (w, t) in s.words.iter().zip(&s.tags) {
            names.push(task.label(w, t));
        }
        words.extend(s.words.iter().cloned());
    }
    let units = match split.by {
        SplitBy::Sentence => &sentence_starts,
        SplitBy::File => &file_starts,
    };
    let spec = SplitSpec {
        dev: split.dev,
        test: split.test,
        shuffle: split.shuffle,
        unit: SplitUnit::Sentence,
    };
    let (order, splits) = assign_splits(n_words, Some(units), &spec, rng)?;
    let identity = order.iter().enumerate().all(|(i, &r)| i == r);
    let reorder = |v: &[String]| order.iter().map(|&r| v[r].clone()).collect::<Vec<_>>();
    let (words, names, acts) = if identity {
        (words, names, acts)
    } else {
        (reorder(&words), reorder(&names), acts.select_rows(&order))
    };
    let starts = reorder_sentence_starts(&sentence_starts, n_words, &order);
    let vocab = ClassVocab::from_names(names.iter().cloned());
    let ids = names
        .iter()
        .map(|n| vocab.id(n).expect("label in its vocabulary"))
        .collect();
    Dataset::new(
        name,
        acts,
        neurons,
        Labels::new(ids, vocab)?,
        Some(Tokens::new(words, starts)?),
        splits,
    )
}

/// Row ranges of the sentences of a corpus, in reading order.
pub fn sentence_rows(corpus: &Corpus) -> Vec<Range<usize>> {
    let mut start = 0;
    corpus
        .sentences
        .iter()
        .map(|s| {
            let r = start..start + s.words.len();
            start = r.end;
            r
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::Sentence;
    use ndarray::Array2;

    fn corpus() -> Corpus {
        let s = |file: &str, line, words: &[&str], tags: &[&str]| Sentence {
            words: words.iter().map(|w| w.to_string()).collect(),
            tags: tags.iter().map(|w| w.to_string()).collect(),
            file: file.into(),
            line,
        };
        Corpus {
            sentences: vec![
                s("ca01", 1, &["The", "dog"], &["at", "nn"]),
                s("ca01", 2, &["runs"], &["vbz"]),
                s("ca02", 1, &["A", "cat", "sat"], &["at", "nn", "vbd"]),
                s("ca03", 1, &["Walking"], &["vbg"]),
                s("ca03", 2, &["quickly", "."], &["rb", "."]),
            ],
        }
    }

    fn acts(rows: usize) -> ActivationMatrix<'static> {
        // Row r holds r, so a reordering shows in the values.
        ActivationMatrix::from_array(Array2::from_shape_fn((rows, 2), |(r, c)| {
            (r * 2 + c) as f32
        }))
    }

    fn build(
        corpus: &Corpus,
        task: Task,
        rows: usize,
        (dev, test, by): (f64, f64, SplitBy),
        seed: u64,
    ) -> Result<Dataset<'static>> {
        let split = CorpusSplit {
            dev,
            test,
            shuffle: true,
            by,
        };
        let neurons = NeuronIndex::layer_major(2, 1).unwrap();
        corpus_dataset(
            "c",
            corpus,
            task,
            acts(rows),
            neurons,
            &split,
            &mut Rng::new(seed),
        )
    }

    #[test]
    fn rows_follow_their_words_through_the_split() {
        let c = corpus();
        let split = (0.2, 0.2, SplitBy::Sentence);
        let d = build(&c, Task::BrownUniversal, 9, split, 7).unwrap();
        let all_words: Vec<&str> = c
            .sentences
            .iter()
            .flat_map(|s| s.words.iter().map(String::as_str))
            .collect();
        let words = d.tokens().unwrap().words();
        for (row, word) in words.iter().enumerate() {
            let original = all_words.iter().position(|w| w == word).unwrap();
            assert_eq!(
                d.acts().view()[[row, 0]],
                (original * 2) as f32,
                "row {row} ({word}) kept its activations"
            );
        }
        assert_eq!(d.splits().total(), 9);
        let starts = d.tokens().unwrap().sentence_starts();
        for split in [lca_core::data::Split::Dev, lca_core::data::Split::Test] {
            let range = d.splits().range(split);
            assert!(
                starts.contains(&range.start),
                "{split:?} begins at a sentence start"
            );
        }
        let noun = d.classes().id("NOUN").unwrap();
        let dog = words.iter().position(|w| w == "dog").unwrap();
        assert_eq!(d.labels().ids()[dog], noun);
    }

    #[test]
    fn split_by_file_never_divides_a_file() {
        let c = corpus();
        for seed in 0..20 {
            let split = (0.34, 0.33, SplitBy::File);
            let d = build(&c, Task::Tags, 9, split, seed).unwrap();
            let words = d.tokens().unwrap().words();
            let split_of = |w: &str| {
                let row = words.iter().position(|x| x == w).unwrap();
                [
                    lca_core::data::Split::Train,
                    lca_core::data::Split::Dev,
                    lca_core::data::Split::Test,
                ]
                .into_iter()
                .find(|s| d.splits().range(*s).contains(&row))
                .unwrap()
            };
            assert_eq!(
                split_of("The"),
                split_of("runs"),
                "ca01 stays whole (seed {seed})"
            );
            assert_eq!(
                split_of("Walking"),
                split_of("quickly"),
                "ca03 stays whole (seed {seed})"
            );
            assert!(d.splits().len(lca_core::data::Split::Train) > 0);
        }
    }

    #[test]
    fn same_seed_same_dataset() {
        let c = corpus();
        let split = (0.2, 0.2, SplitBy::Sentence);
        let make = |seed| {
            let d = build(&c, Task::Tags, 9, split, seed).unwrap();
            (d.tokens().unwrap().words().to_vec(), d.splits())
        };
        assert_eq!(make(3), make(3));
        assert!(
            (0..10).any(|s| make(s) != make(3)),
            "the seed moves sentences between splits"
        );
    }

    #[test]
    fn row_count_mismatch_is_an_error() {
        let split = (0.2, 0.2, SplitBy::Sentence);
        let err = build(&corpus(), Task::Tags, 8, split, 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains('9') && err.contains('8'), "{err}");
    }

    fn params(extra: &str) -> CorpusParams {
        let table: toml::Table = format!("corpus = \"x.conllu\"\n{extra}").parse().unwrap();
        table.try_into().unwrap()
    }

    #[test]
    fn corpus_parameters_are_validated() {
        assert_eq!(
            params("").validate("t").unwrap().format,
            CorpusFormat::Conllu
        );
        assert_eq!(
            params("labels = \"l.txt\"").validate("t").unwrap().format,
            CorpusFormat::Neurox
        );
        let err = params("format = \"brown\"\nlabels = \"l.txt\"")
            .validate("t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("labels"), "{err}");
        assert!(
            params("task = \"pos\"")
                .validate("t")
                .unwrap_err()
                .to_string()
                .contains("universal_pos")
        );
        assert!(
            params("sentences = 0")
                .validate("t")
                .unwrap_err()
                .to_string()
                .contains("sentences")
        );
        assert!(
            params("sample = \"all\"")
                .validate("t")
                .unwrap_err()
                .to_string()
                .contains("random")
        );
    }

    #[test]
    fn random_sample_is_seeded_and_keeps_corpus_order() {
        let dir = tempfile::tempdir().unwrap();
        let text: String = (0..50).map(|i| format!("w{i}/nn x/at\n")).collect();
        std::fs::write(dir.path().join("ca01"), text).unwrap();
        let table: toml::Table = format!(
            "corpus = {:?}\nsentences = 10\nsample = \"random\"",
            dir.path().display().to_string()
        )
        .parse()
        .unwrap();
        let spec = table
            .try_into::<CorpusParams>()
            .unwrap()
            .validate("t")
            .unwrap();
        assert_eq!(spec.format, CorpusFormat::Brown);
        let a = spec.read(&RunContext::new(5, 1)).unwrap();
        let b = spec.read(&RunContext::new(5, 1)).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.sentences.len(), 10);
        assert!(a.sentences.windows(2).all(|w| w[0].line < w[1].line));
        assert_ne!(
            a.sentences.iter().map(|s| s.line).collect::<Vec<_>>(),
            (1..=10).collect::<Vec<_>>()
        );
    }
}
