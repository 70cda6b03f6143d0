//! Tasks: what label each word gets.

use serde::{Deserialize, Serialize};

use super::Corpus;
use super::brown::{brown_simplified, brown_universal};
use lca_core::error::{Error, Result};

/// Suffixes of the `suffix` task, longest first within each ending so that
/// the longest match wins (`-ation` before `-tion` before `-ion`).
pub const SUFFIXES: [&str; 24] = [
    "ization", "ation", "tion", "sion", "ment", "ness", "ship", "ance", "ence", "able", "ible",
    "less", "ous", "ful", "ive", "ize", "ity", "ing", "est", "ly", "ed", "er", "al", "s",
];

/// The `suffix` task: the longest suffix from [`SUFFIXES`] that ends the
/// lower-cased word while leaving a stem of at least 3 letters; `NONE` when
/// no suffix applies or the word is not alphabetic (numbers, punctuation,
/// hyphenated compounds). A purely orthographic rule: it needs no annotation.
pub fn suffix(word: &str) -> &'static str {
    if !word.chars().all(|c| c.is_alphabetic()) {
        return "NONE";
    }
    let lower = word.to_lowercase();
    let letters = lower.chars().count();
    SUFFIXES
        .iter()
        .filter(|s| lower.ends_with(*s) && letters >= s.chars().count() + 3)
        .max_by_key(|s| s.len())
        .copied()
        .unwrap_or("NONE")
}

/// The `capitalization` task: `lower`, `Capitalized`, `UPPER`, `mIxed`,
/// `number` (digits, possibly with separators) or `other` (punctuation and
/// symbols).
pub fn capitalization(word: &str) -> &'static str {
    let letters: Vec<char> = word.chars().filter(|c| c.is_alphabetic()).collect();
    if letters.is_empty() {
        return if word.chars().any(|c| c.is_ascii_digit()) {
            "number"
        } else {
            "other"
        };
    }
    let upper = letters.iter().filter(|c| c.is_uppercase()).count();
    if upper == 0 {
        "lower"
    } else if upper == letters.len() {
        if letters.len() == 1 {
            "Capitalized"
        } else {
            "UPPER"
        }
    } else if letters[0].is_uppercase() && upper == 1 {
        "Capitalized"
    } else {
        "mIxed"
    }
}

lca_core::param_enum! {
    /// How a corpus's tags become labels.
    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum Task {
        /// The tags as written.
        Tags = "tags",
        /// Brown tags mapped to the 12 universal tags.
        BrownUniversal = "universal_pos",
        /// Brown tags without decorations (`np$-tl` → `NP$`).
        BrownSimplified = "brown_pos",
        /// The word's suffix (no annotation needed).
        Suffix = "suffix",
        /// The word's capitalization (no annotation needed).
        Capitalization = "capitalization",
    }
}

impl Task {
    /// Parses a task name.
    ///
    /// # Errors
    /// For unknown names, listing the known ones.
    pub fn parse(name: &str) -> Result<Self> {
        Task::ALL
            .iter()
            .copied()
            .find(|t| t.as_str() == name)
            .ok_or_else(|| {
                Error::input(format!(
                    "unknown task `{name}`; use tags, universal_pos, brown_pos, suffix or capitalization"
                ))
            })
    }

    /// The name recipes use.
    pub fn name(self) -> &'static str {
        self.as_str()
    }

    /// The label of one token.
    pub fn label(self, word: &str, tag: &str) -> String {
        match self {
            Task::Tags => tag.to_string(),
            Task::BrownUniversal => brown_universal(tag).to_string(),
            Task::BrownSimplified => brown_simplified(tag),
            Task::Suffix => suffix(word).to_string(),
            Task::Capitalization => capitalization(word).to_string(),
        }
    }

    /// Labels for every token of a corpus, sentence by sentence.
    pub fn labels(self, corpus: &Corpus) -> Vec<Vec<String>> {
        corpus
            .sentences
            .iter()
            .map(|s| {
                s.words
                    .iter()
                    .zip(&s.tags)
                    .map(|(w, t)| self.label(w, t))
                    .collect()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffix_takes_the_longest_match_with_a_real_stem() {
        assert_eq!(suffix("organization"), "ization");
        assert_eq!(
            suffix("nation"),
            "NONE",
            "stem `n` is too short for -ation; `na` for -tion"
        );
        assert_eq!(suffix("creation"), "ation");
        assert_eq!(suffix("walking"), "ing");
        assert_eq!(suffix("sing"), "NONE");
        assert_eq!(suffix("Quickly"), "ly");
        assert_eq!(suffix("cats"), "s");
        assert_eq!(suffix("is"), "NONE");
        assert_eq!(suffix("1960s"), "NONE");
        assert_eq!(suffix("well-known"), "NONE");
    }

    #[test]
    fn capitalization_classes() {
        assert_eq!(capitalization("the"), "lower");
        assert_eq!(capitalization("The"), "Capitalized");
        assert_eq!(capitalization("I"), "Capitalized");
        assert_eq!(capitalization("NASA"), "UPPER");
        assert_eq!(capitalization("iPhone"), "mIxed");
        assert_eq!(capitalization("McDonald"), "mIxed");
        assert_eq!(capitalization("1,000"), "number");
        assert_eq!(capitalization("--"), "other");
    }

    #[test]
    fn unknown_task_lists_the_known_ones() {
        assert!(
            Task::parse("pos")
                .unwrap_err()
                .to_string()
                .contains("universal_pos")
        );
        for name in [
            "tags",
            "universal_pos",
            "brown_pos",
            "suffix",
            "capitalization",
        ] {
            assert_eq!(Task::parse(name).unwrap().name(), name);
        }
    }
}
