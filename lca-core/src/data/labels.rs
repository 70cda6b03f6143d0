//! Class vocabularies and per-token labels.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Class names with ids. Ids follow the sorted order of the names, so the same
/// set of labels always gets the same ids, whatever order they were read in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassVocab {
    names: Vec<String>,
}

impl ClassVocab {
    /// A vocabulary of the distinct names, sorted.
    pub fn from_names<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let set: BTreeSet<String> = names.into_iter().map(Into::into).collect();
        ClassVocab {
            names: set.into_iter().collect(),
        }
    }

    /// A vocabulary that keeps the given order (which must be duplicate-free).
    ///
    /// # Errors
    /// Fails on duplicate names.
    pub fn in_order(names: Vec<String>) -> Result<Self> {
        let distinct: BTreeSet<&String> = names.iter().collect();
        if distinct.len() != names.len() {
            return Err(Error::input("class names must be distinct"));
        }
        Ok(ClassVocab { names })
    }

    /// Number of classes.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when there are no classes.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The id of a class name.
    pub fn id(&self, name: &str) -> Option<u32> {
        // Sorted vocabularies allow a binary search; ordered ones do not.
        self.names.iter().position(|n| n == name).map(|i| i as u32)
    }

    /// The name of a class id.
    ///
    /// # Panics
    /// Panics if the id is out of range.
    #[track_caller]
    pub fn name(&self, id: u32) -> &str {
        &self.names[id as usize]
    }

    /// All names in id order.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// One class id per token, with the vocabulary that names them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Labels {
    ids: Vec<u32>,
    vocab: ClassVocab,
}

impl Labels {
    /// Labels from ids.
    ///
    /// # Errors
    /// Fails if an id is not in the vocabulary.
    pub fn new(ids: Vec<u32>, vocab: ClassVocab) -> Result<Self> {
        if let Some((token, &id)) = ids
            .iter()
            .enumerate()
            .find(|(_, id)| **id as usize >= vocab.len())
        {
            return Err(Error::input(format!(
                "label id {id} of token {token} is outside the {} known classes",
                vocab.len()
            )));
        }
        Ok(Labels { ids, vocab })
    }

    /// Labels from names; the vocabulary is their sorted distinct set.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Self {
        let vocab = ClassVocab::from_names(names.iter().map(|n| n.as_ref().to_string()));
        let ids = names
            .iter()
            .map(|n| vocab.id(n.as_ref()).expect("name is in its own vocabulary"))
            .collect();
        Labels { ids, vocab }
    }

    /// Class id per token.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// The vocabulary.
    pub fn vocab(&self) -> &ClassVocab {
        &self.vocab
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Tokens per class, in id order.
    pub fn counts(&self) -> Vec<usize> {
        count_classes(&self.ids, self.vocab.len())
    }

    /// The labels of the given tokens.
    pub fn select(&self, rows: &[usize]) -> Self {
        Labels {
            ids: rows.iter().map(|&r| self.ids[r]).collect(),
            vocab: self.vocab.clone(),
        }
    }
}

/// Tokens per class id.
pub fn count_classes(ids: &[u32], n_classes: usize) -> Vec<usize> {
    let mut counts = vec![0; n_classes];
    for &id in ids {
        counts[id as usize] += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_sorted_names_whatever_the_input_order() {
        let a = Labels::from_names(&["VB", "NN", "DT", "NN"]);
        let b = Labels::from_names(&["NN", "DT", "VB"]);
        assert_eq!(a.vocab(), b.vocab());
        assert_eq!(a.vocab().names(), &["DT", "NN", "VB"]);
        assert_eq!(a.ids(), &[2, 1, 0, 1]);
        assert_eq!(a.counts(), vec![1, 2, 1]);
    }

    #[test]
    fn out_of_range_id_is_rejected() {
        let vocab = ClassVocab::from_names(["a", "b"]);
        assert!(Labels::new(vec![0, 2], vocab).is_err());
    }
}
