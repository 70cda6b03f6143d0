//! Neuron rankings: permutations of the neurons, most salient first.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// An ordering of all neurons, most salient first, with optional scores and
/// per-class orderings.
///
/// Every constructor checks that the order is a permutation of `0..n` and that
/// scores are finite, so code holding a `NeuronRanking` can rely on both.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawRanking")]
pub struct NeuronRanking {
    order: Vec<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scores: Option<Vec<f64>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    per_class: Vec<ClassRanking>,
    /// Method-specific facts (such as the cutoffs of an LCA ordering).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    details: serde_json::Map<String, serde_json::Value>,
}

/// The ranking of all neurons for one class.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawClassRanking")]
pub struct ClassRanking {
    class: String,
    order: Vec<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scores: Option<Vec<f64>>,
}

#[derive(Deserialize)]
struct RawRanking {
    order: Vec<u32>,
    #[serde(default)]
    scores: Option<Vec<f64>>,
    #[serde(default)]
    per_class: Vec<ClassRanking>,
    #[serde(default)]
    details: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct RawClassRanking {
    class: String,
    order: Vec<u32>,
    #[serde(default)]
    scores: Option<Vec<f64>>,
}

impl TryFrom<RawRanking> for NeuronRanking {
    type Error = Error;
    fn try_from(raw: RawRanking) -> Result<Self> {
        let ranking = match raw.scores {
            Some(scores) => NeuronRanking::with_scores(raw.order, scores)?,
            None => NeuronRanking::from_order(raw.order)?,
        };
        Ok(ranking
            .with_per_class(raw.per_class)?
            .with_details(raw.details))
    }
}

impl TryFrom<RawClassRanking> for ClassRanking {
    type Error = Error;
    fn try_from(raw: RawClassRanking) -> Result<Self> {
        let n = raw.order.len();
        check_permutation(&raw.order, n)?;
        if let Some(scores) = &raw.scores {
            check_scores(scores, n)?;
        }
        Ok(ClassRanking {
            class: raw.class,
            order: raw.order,
            scores: raw.scores,
        })
    }
}

/// Checks that `order` is a permutation of `0..n`.
///
/// # Errors
/// Names the first problem: wrong length, an out-of-range or a repeated neuron.
pub fn check_permutation(order: &[u32], n: usize) -> Result<()> {
    if order.len() != n {
        return Err(Error::input(format!(
            "a ranking must list each of the {n} neurons once, but it has {} entries",
            order.len()
        )));
    }
    let mut seen = vec![false; n];
    for &j in order {
        let Some(slot) = seen.get_mut(j as usize) else {
            return Err(Error::input(format!(
                "a ranking names neuron {j}, but there are only {n} neurons (0..{n})"
            )));
        };
        if *slot {
            return Err(Error::input(format!(
                "a ranking lists neuron {j} twice, so it is not a permutation"
            )));
        }
        *slot = true;
    }
    Ok(())
}

fn check_scores(scores: &[f64], n: usize) -> Result<()> {
    if scores.len() != n {
        return Err(Error::input(format!(
            "a ranking must have one score per neuron ({n}), but it has {}",
            scores.len()
        )));
    }
    if let Some((j, s)) = scores.iter().enumerate().find(|(_, s)| !s.is_finite()) {
        return Err(Error::input(format!(
            "the score of neuron {j} is {s}; scores must be finite"
        )));
    }
    Ok(())
}

/// Indices sorted by descending score; ties keep ascending index order, so the
/// result never depends on the sort algorithm.
pub fn order_by_descending(scores: &[f64]) -> Vec<u32> {
    let mut order: Vec<u32> = (0..scores.len() as u32).collect();
    order.sort_by(|&a, &b| {
        scores[b as usize]
            .total_cmp(&scores[a as usize])
            .then(a.cmp(&b))
    });
    order
}

impl NeuronRanking {
    /// A ranking from an explicit order.
    ///
    /// # Errors
    /// Fails unless `order` is a permutation of `0..order.len()`.
    pub fn from_order(order: Vec<u32>) -> Result<Self> {
        check_permutation(&order, order.len())?;
        Ok(NeuronRanking {
            order,
            scores: None,
            per_class: Vec::new(),
            details: Default::default(),
        })
    }

    /// A ranking by descending score (ties: lower neuron index first).
    ///
    /// # Errors
    /// Fails on non-finite scores.
    pub fn from_scores(scores: Vec<f64>) -> Result<Self> {
        check_scores(&scores, scores.len())?;
        let order = order_by_descending(&scores);
        Ok(NeuronRanking {
            order,
            scores: Some(scores),
            per_class: Vec::new(),
            details: Default::default(),
        })
    }

    /// A ranking with an explicit order and per-neuron scores (indexed by
    /// neuron, not by rank).
    ///
    /// # Errors
    /// Fails on a non-permutation, a length mismatch or non-finite scores.
    pub fn with_scores(order: Vec<u32>, scores: Vec<f64>) -> Result<Self> {
        check_permutation(&order, order.len())?;
        check_scores(&scores, order.len())?;
        Ok(NeuronRanking {
            order,
            scores: Some(scores),
            per_class: Vec::new(),
            details: Default::default(),
        })
    }

    /// The same ranking with the `uninformative` neurons (ascending, such as
    /// the constant ones) moved to the end, in ascending index order; the
    /// others keep their relative order. Their scores, when there are scores,
    /// become the lowest score of the rest (0 when nothing else is left), so
    /// that the scores still agree with the order. Per-class rankings get
    /// the same treatment.
    pub fn with_uninformative_last(mut self, uninformative: &[u32]) -> Self {
        if uninformative.is_empty() {
            return self;
        }
        let n = self.order.len();
        let mut is_out = vec![false; n];
        for &j in uninformative {
            if let Some(flag) = is_out.get_mut(j as usize) {
                *flag = true;
            }
        }
        let reorder = |order: &mut Vec<u32>, scores: Option<&mut Vec<f64>>| {
            let mut kept: Vec<u32> = order
                .iter()
                .copied()
                .filter(|&j| !is_out[j as usize])
                .collect();
            if let Some(scores) = scores {
                let floor = kept
                    .iter()
                    .map(|&j| scores[j as usize])
                    .fold(f64::INFINITY, f64::min);
                let floor = if floor.is_finite() { floor } else { 0.0 };
                for j in 0..n {
                    if is_out[j] {
                        scores[j] = floor;
                    }
                }
            }
            kept.extend((0..n as u32).filter(|&j| is_out[j as usize]));
            *order = kept;
        };
        reorder(&mut self.order, self.scores.as_mut());
        for class in &mut self.per_class {
            reorder(&mut class.order, class.scores.as_mut());
        }
        self
    }

    /// A ranking that skips every check. Only for test fixtures that must
    /// produce invalid rankings to exercise the host's validation.
    #[doc(hidden)]
    pub fn __unchecked_for_tests(order: Vec<u32>, scores: Option<Vec<f64>>) -> Self {
        NeuronRanking {
            order,
            scores,
            per_class: Vec::new(),
            details: Default::default(),
        }
    }

    /// A ranking by `overall` with one ranking per class from `per_class`
    /// (one row of scores per class, in the order of `classes`).
    ///
    /// # Errors
    /// Fails on non-finite scores or rows of the wrong length.
    pub fn from_class_scores(
        overall: Vec<f64>,
        per_class: Vec<Vec<f64>>,
        classes: &[String],
    ) -> Result<Self> {
        let per_class = per_class
            .into_iter()
            .zip(classes)
            .map(|(scores, class)| ClassRanking::from_scores(class.clone(), scores))
            .collect::<Result<Vec<_>>>()?;
        NeuronRanking::from_scores(overall)?.with_per_class(per_class)
    }

    /// A ranking by each neuron's best class score (the maximum over the
    /// rows of `per_class`), with one ranking per class.
    ///
    /// # Errors
    /// As [`Self::from_class_scores`].
    pub fn by_best_class(per_class: Vec<Vec<f64>>, classes: &[String]) -> Result<Self> {
        let n = per_class.first().map_or(0, Vec::len);
        let overall = (0..n)
            .map(|j| {
                per_class
                    .iter()
                    .map(|row| row[j])
                    .fold(f64::NEG_INFINITY, f64::max)
            })
            .collect();
        NeuronRanking::from_class_scores(overall, per_class, classes)
    }

    /// Adds per-class rankings.
    ///
    /// # Errors
    /// Fails if a class ranking covers a different number of neurons or a class
    /// appears twice.
    pub fn with_per_class(mut self, per_class: Vec<ClassRanking>) -> Result<Self> {
        for (i, c) in per_class.iter().enumerate() {
            if c.order.len() != self.order.len() {
                return Err(Error::input(format!(
                    "the ranking for class `{}` covers {} neurons, the overall ranking {}",
                    c.class,
                    c.order.len(),
                    self.order.len()
                )));
            }
            if per_class[..i].iter().any(|o| o.class == c.class) {
                return Err(Error::input(format!(
                    "class `{}` has two rankings",
                    c.class
                )));
            }
        }
        self.per_class = per_class;
        Ok(self)
    }

    /// Adds method-specific details (merged into any already present).
    pub fn with_details(mut self, details: serde_json::Map<String, serde_json::Value>) -> Self {
        self.details.extend(details);
        self
    }

    /// Method-specific details, such as the cutoffs of an LCA ordering.
    pub fn details(&self) -> &serde_json::Map<String, serde_json::Value> {
        &self.details
    }

    /// Number of neurons ranked.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// True for a ranking of zero neurons.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Neurons, most salient first.
    pub fn order(&self) -> &[u32] {
        &self.order
    }

    /// The first `k` neurons (all of them if `k` exceeds the count).
    pub fn top(&self, k: usize) -> &[u32] {
        &self.order[..k.min(self.order.len())]
    }

    /// Scores indexed by neuron, when the method produces them.
    pub fn scores(&self) -> Option<&[f64]> {
        self.scores.as_deref()
    }

    /// Per-class rankings, when the method produces them.
    pub fn per_class(&self) -> &[ClassRanking] {
        &self.per_class
    }

    /// Position of every neuron in the order (0 = most salient).
    pub fn positions(&self) -> Vec<usize> {
        let mut pos = vec![0; self.order.len()];
        for (rank, &j) in self.order.iter().enumerate() {
            pos[j as usize] = rank;
        }
        pos
    }
}

impl ClassRanking {
    /// A class ranking by descending score.
    ///
    /// # Errors
    /// Fails on non-finite scores.
    pub fn from_scores(class: impl Into<String>, scores: Vec<f64>) -> Result<Self> {
        check_scores(&scores, scores.len())?;
        Ok(ClassRanking {
            class: class.into(),
            order: order_by_descending(&scores),
            scores: Some(scores),
        })
    }

    /// A class ranking with an explicit order and per-neuron scores.
    ///
    /// # Errors
    /// Fails on a non-permutation, a length mismatch or non-finite scores.
    pub fn with_scores(
        class: impl Into<String>,
        order: Vec<u32>,
        scores: Vec<f64>,
    ) -> Result<Self> {
        check_permutation(&order, order.len())?;
        check_scores(&scores, order.len())?;
        Ok(ClassRanking {
            class: class.into(),
            order,
            scores: Some(scores),
        })
    }

    /// A class ranking from an explicit order.
    ///
    /// # Errors
    /// Fails unless `order` is a permutation.
    pub fn from_order(class: impl Into<String>, order: Vec<u32>) -> Result<Self> {
        check_permutation(&order, order.len())?;
        Ok(ClassRanking {
            class: class.into(),
            order,
            scores: None,
        })
    }

    /// The class name.
    pub fn class(&self) -> &str {
        &self.class
    }

    /// Neurons, most salient for this class first.
    pub fn order(&self) -> &[u32] {
        &self.order
    }

    /// Scores indexed by neuron.
    pub fn scores(&self) -> Option<&[f64]> {
        self.scores.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn scores_sort_descending_with_index_ties() {
        let r = NeuronRanking::from_scores(vec![0.5, 2.0, 0.5, -1.0]).unwrap();
        assert_eq!(r.order(), &[1, 0, 2, 3]);
        assert_eq!(r.positions(), vec![1, 0, 2, 3]);
        assert_eq!(r.top(2), &[1, 0]);
        assert_eq!(r.top(10).len(), 4);
    }

    #[test]
    fn non_permutations_are_rejected_with_the_reason() {
        let dup = NeuronRanking::from_order(vec![0, 1, 1])
            .unwrap_err()
            .to_string();
        assert!(dup.contains("neuron 1 twice"), "{dup}");
        let range = NeuronRanking::from_order(vec![0, 5])
            .unwrap_err()
            .to_string();
        assert!(range.contains("neuron 5"), "{range}");
        let nan = NeuronRanking::from_scores(vec![0.0, f64::NAN])
            .unwrap_err()
            .to_string();
        assert!(nan.contains("neuron 1 is NaN"), "{nan}");
    }

    #[test]
    fn deserialisation_validates() {
        assert!(serde_json::from_str::<NeuronRanking>(r#"{"order":[1,0]}"#).is_ok());
        assert!(serde_json::from_str::<NeuronRanking>(r#"{"order":[1,1]}"#).is_err());
        assert!(
            serde_json::from_str::<NeuronRanking>(
                r#"{"order":[1,0],"per_class":[{"class":"a","order":[0]}]}"#
            )
            .is_err()
        );
    }

    proptest! {
        #[test]
        fn from_scores_is_always_a_sorted_permutation(scores in proptest::collection::vec(-1e6f64..1e6, 0..200)) {
            let r = NeuronRanking::from_scores(scores.clone()).unwrap();
            check_permutation(r.order(), scores.len()).unwrap();
            for w in r.order().windows(2) {
                prop_assert!(scores[w[0] as usize] >= scores[w[1] as usize]);
            }
        }
    }
}
