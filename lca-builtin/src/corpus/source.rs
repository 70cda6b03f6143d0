//! What every corpus-backed activation source shares: the recipe parameters
//! that choose a corpus, a task and a sample of sentences, and the assembly
//! of per-word activations into a [`Dataset`] with splits that keep
//! sentences (or whole files) together.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::{Corpus, Task, read_brown_until, read_conllu, read_neurox_files};
use lca_core::context::RunContext;
use lca_core::data::{
    ActivationMatrix, ClassVocab, Dataset, DatasetOutline, Labels, NeuronIndex, SplitFractions,
    SplitSpec, SplitUnit, Splits, Tokens, assign_splits, reorder_sentence_starts,
};
use lca_core::error::{Error, Result};
use lca_core::params::invalid;
use lca_core::rng::Rng;

lca_core::param_enum! {
    /// Which sentences `sentences` keeps.
    pub enum Sample {
        /// The first ones.
        First = "first",
        /// A seeded random sample, kept in corpus order.
        Random = "random",
    }
}

lca_core::params! {
    /// Corpus parameters as a recipe writes them: one declaration for every
    /// corpus-backed source, which includes them with `#[flatten]`.
    pub struct CorpusParams {
        /// the annotated corpus: Brown (word/TAG lines), CoNLL-U, or a NeuroX
        /// sentence file
        corpus: PathBuf => Rule::note("a file, or a directory of Brown files"),
        /// corpus format; a directory is Brown, *.conllu is CoNLL-U, a
        /// `labels` file means NeuroX
        #[shown = "inferred"]
        format: Option<CorpusFormat> = None,
        /// NeuroX format: the label file, one line of labels per sentence
        labels: Option<PathBuf> = None => Rule::note("a text file"),
        /// CoNLL-U format: the column that holds the annotation
        column: String = "upos".into() => Rule::note("a CoNLL-U column name (upos, xpos, deprel, …)"),
        /// what each word is labelled with: the tags as written, Brown tags
        /// mapped to universal or simplified POS, or a lexical property of
        /// the word itself
        task: Task = Task::Tags,
        /// use at most this many sentences
        #[shown = "all"]
        sentences: Option<usize> = None => range(1..),
        /// which sentences `sentences` keeps: the first ones, or a seeded
        /// random sample kept in corpus order
        sample: Sample = Sample::First,
        /// skip sentences with more words than this (before sampling)
        #[shown = "no limit"]
        max_words: Option<usize> = None => range(1..),
        /// seed of the sentence sample and the train/dev/test split; sources
        /// with the same seed and corpus settings get the same sentences and
        /// splits
        #[shown = "the step's seed"]
        seed: Option<u64> = None,
    }
}

impl CorpusParams {
    /// Validates the parameters of `component`.
    ///
    /// # Errors
    /// [`Error::InvalidParam`] naming the bad parameter.
    pub fn validate(&self, component: &str) -> Result<CorpusSpec> {
        let format = match self.format {
            Some(format) => format,
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
        Ok(CorpusSpec {
            seed: self.seed,
            path: self.corpus.clone(),
            format,
            labels: self.labels.clone(),
            column: self.column.clone(),
            task: self.task,
            sentences: self.sentences,
            random_sample: self.sample == Sample::Random,
            max_words: self.max_words,
        })
    }
}

lca_core::param_enum! {
    /// A corpus file format.
    pub enum CorpusFormat {
        /// The tagged Brown corpus (`word/TAG`).
        Brown = "brown",
        /// CoNLL-U.
        Conllu = "conllu",
        /// NeuroX sentence and label files.
        Neurox = "neurox",
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
            CorpusFormat::Brown => {
                // The first sentences (of those that fit `max_words`) need
                // only the files that hold them.
                let mut wanted = if self.random_sample {
                    None
                } else {
                    self.sentences
                };
                read_brown_until(std::slice::from_ref(&self.path), |file| {
                    let Some(left) = wanted.as_mut() else {
                        return false;
                    };
                    let fitting = file
                        .iter()
                        .filter(|s| self.max_words.is_none_or(|max| s.words.len() <= max))
                        .count();
                    *left = left.saturating_sub(fitting);
                    *left == 0
                })?
            }
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
        d.insert("corpus format".into(), self.format.as_str().into());
        d.insert("task".into(), self.task.as_str().into());
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

lca_core::param_enum! {
    /// What a split keeps together.
    pub enum SplitBy {
        /// Whole sentences.
        Sentence = "sentence",
        /// Whole corpus files (no file contributes to two splits).
        File = "file",
    }
}

lca_core::params! {
    /// Split parameters of corpus-backed sources, included with
    /// `#[flatten]`.
    pub struct SplitParams {
        /// shuffle units (seeded) before splitting; false holds out the tail
        shuffle: bool = true,
        /// unit of the split: whole sentences, or whole corpus files
        split_by: SplitBy = SplitBy::Sentence,
        #[flatten]
        fractions: SplitFractions,
    }
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
    /// Split sizes in rows when the held-out splits came as files of
    /// their own: the corpus then holds train, dev and test in that order,
    /// and the fractions and shuffling do not apply.
    pub given: Option<Splits>,
}

impl SplitParams {
    /// Validates the parameters of `component`.
    ///
    /// # Errors
    /// [`Error::InvalidParam`] naming the bad parameter.
    pub fn validate(&self, component: &str) -> Result<CorpusSplit> {
        self.fractions.check(component)?;
        Ok(CorpusSplit {
            dev: self.fractions.dev,
            test: self.fractions.test,
            shuffle: self.shuffle,
            by: self.split_by,
            given: None,
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
    let (outline, order) = corpus_outline(name, corpus, task, neurons, split, rng)?;
    let identity = order.iter().enumerate().all(|(i, &r)| i == r);
    let acts = if identity {
        acts
    } else {
        acts.permute_rows(&order)
    };
    outline.into_dataset(acts)
}

/// What [`corpus_dataset`] builds, without the activations, and the order
/// of its rows: row `i` of the dataset is word `order[i]` of the corpus in
/// reading order. Whole sentences stay together, so a streaming source can
/// compute the activations of the corpus's sentences in this order.
///
/// # Errors
/// When the split leaves no training data.
pub fn corpus_outline(
    name: &str,
    corpus: &Corpus,
    task: Task,
    neurons: NeuronIndex,
    split: &CorpusSplit,
    rng: &mut Rng,
) -> Result<(DatasetOutline, Vec<usize>)> {
    let n_words = corpus.n_tokens();
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
    let (order, splits) = match split.given {
        Some(given) if given.total() == n_words => ((0..n_words).collect(), given),
        Some(given) => {
            return Err(Error::Shape {
                what: format!("dataset `{name}`: rows of the given splits"),
                expected: n_words.to_string(),
                found: given.total().to_string(),
            });
        }
        None => assign_splits(n_words, Some(units), &spec, rng)?,
    };
    let identity = order.iter().enumerate().all(|(i, &r)| i == r);
    let reorder = |v: &[String]| order.iter().map(|&r| v[r].clone()).collect::<Vec<_>>();
    let (words, names) = if identity {
        (words, names)
    } else {
        (reorder(&words), reorder(&names))
    };
    let starts = reorder_sentence_starts(&sentence_starts, n_words, &order);
    let vocab = ClassVocab::from_names(names.iter().cloned());
    let ids = names
        .iter()
        .map(|n| vocab.id(n).expect("label in its vocabulary"))
        .collect();
    let outline = DatasetOutline {
        name: name.to_string(),
        neurons,
        labels: Labels::new(ids, vocab)?,
        tokens: Some(Tokens::new(words, starts)?),
        splits,
        truth: None,
        details: BTreeMap::new(),
    };
    Ok((outline, order))
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
    use lca_core::params::Params as _;
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
            given: None,
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

    /// The corpus parameters read and validated, as a source does.
    fn spec(extra: &str) -> Result<CorpusSpec> {
        let table: toml::Table = format!("corpus = \"x.conllu\"\n{extra}").parse().unwrap();
        CorpusParams::parse("t", &table)?.validate("t")
    }

    #[test]
    fn corpus_parameters_are_validated() {
        assert_eq!(spec("").unwrap().format, CorpusFormat::Conllu);
        assert_eq!(
            spec("labels = \"l.txt\"").unwrap().format,
            CorpusFormat::Neurox
        );
        let err = spec("format = \"brown\"\nlabels = \"l.txt\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("labels"), "{err}");
        assert!(
            spec("task = \"pos\"")
                .unwrap_err()
                .to_string()
                .contains("universal_pos")
        );
        assert!(
            spec("sentences = 0")
                .unwrap_err()
                .to_string()
                .contains("sentences")
        );
        assert!(
            spec("sample = \"all\"")
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
        let spec = CorpusParams::parse("t", &table)
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
