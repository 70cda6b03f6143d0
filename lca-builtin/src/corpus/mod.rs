//! Annotated corpora: readers for NeuroX sentence/label files, CoNLL-U and
//! the tagged Brown corpus, tag mappings, tasks derived from words, and
//! seeded splits that keep sentences (or files) whole.
//!
//! Words are always the corpus's own tokens, never re-split on whitespace, so
//! they stay aligned with their labels. Every mismatch between tokens and
//! labels is an error naming the file, the line and both counts.

mod brown;
mod readers;
mod source;
mod tasks;

pub use brown::{BROWN_UNIVERSAL_SOURCE, brown_simplified, brown_universal};
pub use readers::{read_brown, read_brown_until, read_conllu, read_neurox_files};
pub use source::{
    CorpusFormat, CorpusParams, CorpusSpec, CorpusSplit, SplitBy, SplitParams, corpus_dataset,
    corpus_outline, sentence_rows,
};
pub use tasks::{SUFFIXES, Task, capitalization, suffix};

use serde::{Deserialize, Serialize};

/// One sentence: its words, one label per word, and where it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sentence {
    /// The tokens, as in the corpus.
    pub words: Vec<String>,
    /// The annotation of each token (a tag, before any task mapping).
    pub tags: Vec<String>,
    /// File the sentence was read from (used for splits by file).
    pub file: String,
    /// 1-based line of the sentence in that file.
    pub line: usize,
}

/// A corpus: sentences in reading order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Corpus {
    /// The sentences.
    pub sentences: Vec<Sentence>,
}

impl Corpus {
    /// Number of tokens.
    pub fn n_tokens(&self) -> usize {
        self.sentences.iter().map(|s| s.words.len()).sum()
    }

    /// The first `n` sentences.
    pub fn truncated(mut self, n: usize) -> Self {
        self.sentences.truncate(n);
        self
    }

    /// A stable digest of the words and tags, for cache keys.
    pub fn digest(&self) -> String {
        let mut h = lca_core::rng::stable_hash("corpus");
        for s in &self.sentences {
            for (w, t) in s.words.iter().zip(&s.tags) {
                h = lca_core::rng::derive_seed(h, w);
                h = lca_core::rng::derive_seed(h, t);
            }
            h = lca_core::rng::derive_seed(h, "\n");
        }
        format!("{h:016x}")
    }
}
