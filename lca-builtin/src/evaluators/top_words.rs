//! `top_words`: what a neuron responds to, in words.
//!
//! For each chosen neuron (the first `top` of every ranking, plus any named
//! in `neurons`), over every token of the source:
//!
//! ```text
//! z_t   = |(a_t − mean(a)) / sd(a)|           (population sd)
//! s_w   = mean of z_t over the tokens of word type w
//! score = s_w / max_w s_w, kept above `min_score`, best `words` first
//! ```
//!
//! as NeuroX's `get_top_words` does (ties keep the order of first
//! appearance). It also shows the neuron's activation over the `sentences`
//! sentences where it peaks highest, at most `window` words around the peak.

use std::collections::HashMap;

use lca_core::component::{Component, EvalInput, Evaluator};
use lca_core::context::RunContext;
use lca_core::data::{Cell, Evaluation, Figure, NeuronId, Plot, Table, gather_columns};
use lca_core::error::{Error, Result};
use lca_core::params::Params as _;
use lca_core::registry::{ComponentInfo, ComponentKind, Descriptor, Inputs, Need, applied};

const NAME: &str = "top_words";

lca_core::params! {
    /// Parameters of `top_words`.
    struct Params {
        /// neurons taken from the head of each ranking
        top: usize = 1,
        /// further neurons to show, such as "L3:127"
        neurons: Vec<String> = vec![] => Rule::new(
            "\"L<layer>:<unit>\" or a column index",
            |names: &Vec<String>| names.iter().all(|s| parse_neuron(s).is_some()),
        ),
        /// top words listed per neuron
        words: usize = 15 => range(1..),
        /// words scoring at most this (relative to the best word) are left
        /// out, as in NeuroX
        min_score: f64 = 0.1 => range(0.0..1.0),
        /// sentences shown with the neuron's activation
        sentences: usize = 4 => range(0..=50),
        /// most words shown per sentence, centred on the peak
        window: usize = 24 => range(3..),
    }
}

pub(super) fn descriptor() -> Descriptor {
    Descriptor {
        info: ComponentInfo {
            kind: ComponentKind::Evaluator,
            name: NAME.into(),
            summary: "Top-activating words of chosen neurons (NeuroX get_top_words) and their activation over sample sentences".into(),
            params: Params::docs(),
            example: "[evaluator.words]\ntype = \"top_words\"\nrankings = [\"lca\"]\ntop = 2\nneurons = [\"L3:127\"]\n".into(),
            inputs: Inputs { rankings: Need::Optional, ..Inputs::default() },
        },
        build: |table| {
            let p = Params::parse(NAME, table)?;
            // The rule checked that every name parses.
            let neurons = p.neurons.iter().filter_map(|s| parse_neuron(s)).collect();
            Ok(Component::Evaluator(Box::new(TopWords {
                top: p.top,
                neurons,
                words: p.words,
                min_score: p.min_score,
                sentences: p.sentences,
                window: p.window,
            })))
        },
        applied: applied::<Params>,
    }
}

/// A neuron as a recipe names it.
#[derive(Clone, Debug, PartialEq)]
enum NeuronRef {
    Id(NeuronId),
    Column(usize),
}

fn parse_neuron(text: &str) -> Option<NeuronRef> {
    let text = text.trim();
    if text.starts_with(['L', 'l']) {
        return NeuronId::parse(text).map(NeuronRef::Id);
    }
    text.parse().ok().map(NeuronRef::Column)
}

/// Top words and sample sentences of chosen neurons.
#[derive(Clone, Debug)]
pub(crate) struct TopWords {
    top: usize,
    neurons: Vec<NeuronRef>,
    words: usize,
    min_score: f64,
    sentences: usize,
    window: usize,
}

/// NeuroX's `get_top_words` on one neuron's activations: (word, score,
/// tokens) best first.
pub(crate) fn top_words(
    words: &[String],
    activations: &[f32],
    min_score: f64,
) -> Vec<(String, f64, usize)> {
    let n = activations.len() as f64;
    let mean = activations.iter().map(|&a| f64::from(a)).sum::<f64>() / n;
    let sd = (activations
        .iter()
        .map(|&a| (f64::from(a) - mean).powi(2))
        .sum::<f64>()
        / n)
        .sqrt();
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut sums: Vec<(&str, f64, usize)> = Vec::new();
    for (word, &a) in words.iter().zip(activations) {
        let z = if sd > 0.0 {
            ((f64::from(a) - mean) / sd).abs()
        } else {
            0.0
        };
        let slot = *index.entry(word.as_str()).or_insert_with(|| {
            sums.push((word.as_str(), 0.0, 0));
            sums.len() - 1
        });
        sums[slot].1 += z;
        sums[slot].2 += 1;
    }
    let means: Vec<(String, f64, usize)> = sums
        .into_iter()
        .map(|(w, s, c)| (w.to_string(), s / c as f64, c))
        .collect();
    let max = means.iter().map(|m| m.1).fold(0.0, f64::max);
    if max <= 0.0 {
        return Vec::new();
    }
    let mut scored: Vec<(String, f64, usize)> = means
        .into_iter()
        .map(|(w, s, c)| (w, s / max, c))
        .filter(|m| m.1 > min_score)
        .collect();
    // Stable: equal scores keep the order of first appearance.
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    scored
}

impl TopWords {
    fn chosen(&self, input: &EvalInput<'_>) -> Result<Vec<(usize, String)>> {
        let data = input.data;
        let mut chosen: Vec<(usize, String)> = Vec::new();
        let mut push = |column: usize, why: String| {
            if !chosen.iter().any(|(c, _)| *c == column) {
                chosen.push((column, why));
            }
        };
        for ranking in &input.rankings {
            for (rank, &j) in ranking.ranking.top(self.top).iter().enumerate() {
                push(j as usize, format!("#{} of `{}`", rank + 1, ranking.id));
            }
        }
        for neuron in &self.neurons {
            let column = match neuron {
                NeuronRef::Column(c) if *c < data.n_neurons() => *c,
                NeuronRef::Id(id) => data
                    .neurons()
                    .ids()
                    .iter()
                    .position(|x| x == id)
                    .ok_or_else(|| {
                        Error::input(format!(
                            "`{NAME}`: source `{}` has no neuron {id}; its layers are {:?}",
                            data.name(),
                            data.neurons().layers()
                        ))
                    })?,
                NeuronRef::Column(c) => {
                    return Err(Error::input(format!(
                        "`{NAME}`: neuron column {c} is out of range; source `{}` has {} neurons",
                        data.name(),
                        data.n_neurons()
                    )));
                }
            };
            push(column, "named in the recipe".into());
        }
        if chosen.is_empty() {
            return Err(Error::input(format!(
                "`{NAME}` has no neuron to show: wire rankings (with `top` ≥ 1) or list `neurons`"
            )));
        }
        Ok(chosen)
    }

    /// The sentences where the neuron peaks highest, cut to the window.
    fn sample(
        &self,
        words: &[String],
        starts: &[usize],
        column: &[f32],
    ) -> Vec<Vec<(String, f64)>> {
        let mut bounds: Vec<(usize, usize)> = starts
            .iter()
            .enumerate()
            .map(|(i, &s)| (s, starts.get(i + 1).copied().unwrap_or(words.len())))
            .filter(|(s, e)| e > s)
            .collect();
        let peak = |&(s, e): &(usize, usize)| {
            (s..e)
                .max_by(|&a, &b| column[a].abs().total_cmp(&column[b].abs()).then(b.cmp(&a)))
                .expect("non-empty sentence")
        };
        bounds.sort_by(|a, b| {
            column[peak(b)]
                .abs()
                .total_cmp(&column[peak(a)].abs())
                .then(a.0.cmp(&b.0))
        });
        bounds
            .iter()
            .take(self.sentences)
            .map(|b| {
                let p = peak(b);
                let start = p.saturating_sub(self.window / 2).max(b.0);
                let end = (start + self.window).min(b.1);
                let start = end.saturating_sub(self.window).max(b.0);
                (start..end)
                    .map(|t| (words[t].clone(), f64::from(column[t])))
                    .collect()
            })
            .collect()
    }
}

impl Evaluator for TopWords {
    fn evaluate(&self, input: &EvalInput<'_>, _cx: &RunContext) -> Result<Evaluation> {
        let data = input.data;
        let tokens = data.tokens().ok_or_else(|| {
            Error::input(format!(
                "`{NAME}` needs the words of source `{}`, which has none; use a corpus-backed source (transformer, neurox_json, npy with `words`)",
                data.name()
            ))
        })?;
        let chosen = self.chosen(input)?;
        // Only the chosen neurons' columns, gathered a block of rows at a
        // time: the matrix may be a store larger than memory.
        let columns: Vec<usize> = chosen.iter().map(|(column, _)| *column).collect();
        let values_of = gather_columns(data.acts(), &columns);
        let mut e = Evaluation::default();
        let mut summary = Table::new(
            "Top words of the chosen neurons",
            &["neuron", "chosen as", "top words (score)"],
        );
        for (index, (column, why)) in chosen.into_iter().enumerate() {
            let id = data.neurons().id(column);
            let values: Vec<f32> = values_of.column(index).to_vec();
            let ranked = top_words(tokens.words(), &values, self.min_score);
            let mut table = Table::new(
                format!("Top words of neuron {id} ({why})"),
                &["rank", "word", "score", "tokens"],
            );
            for (rank, (word, score, count)) in ranked.iter().take(self.words).enumerate() {
                table.push(vec![
                    (rank + 1).into(),
                    Cell::from(word.as_str()),
                    (*score).into(),
                    (*count).into(),
                ]);
            }
            summary.push(vec![
                Cell::from(id.to_string()),
                Cell::from(why.as_str()),
                Cell::from(
                    ranked
                        .iter()
                        .take(5)
                        .map(|(w, s, _)| format!("{w} ({s:.2})"))
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
            ]);
            e.tables.push(table);
            if self.sentences > 0 {
                let sentences = self.sample(tokens.words(), tokens.sentence_starts(), &values);
                let scale = sentences
                    .iter()
                    .flatten()
                    .map(|(_, v)| v.abs())
                    .fold(0.0, f64::max);
                e.figures.push(Figure {
                    title: format!("Activation of neuron {id} ({why}) where it peaks"),
                    section: "neurons".into(),
                    plot: Plot::Text {
                        neuron: id.to_string(),
                        sentences,
                        scale,
                    },
                });
            }
        }
        e.tables.insert(0, summary);
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn hand_computed_top_words() {
        // mean 1, population sd 1: z = [1, 1, 1, 1] for [0, 2, 0, 2].
        // With a = [0, 0, 0, 4]: mean 1, sd √3: z = [1/√3, 1/√3, 1/√3, √3].
        let w = words(&["the", "cat", "the", "dog"]);
        let ranked = top_words(&w, &[0.0, 0.0, 0.0, 4.0], 0.1);
        assert_eq!(ranked[0].0, "dog");
        assert!((ranked[0].1 - 1.0).abs() < 1e-12);
        // "the" and "cat" both score 1/3 relative; the tie keeps first appearance.
        assert_eq!(ranked[1].0, "the");
        assert_eq!(ranked[2].0, "cat");
        assert!((ranked[1].1 - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(ranked[1].2, 2);
        // A threshold above 1/3 keeps only the best word.
        assert_eq!(top_words(&w, &[0.0, 0.0, 0.0, 4.0], 0.5).len(), 1);
        // A constant neuron has no top words.
        assert!(top_words(&w, &[1.0; 4], 0.1).is_empty());
    }

    #[test]
    fn neurons_are_named_by_layer_and_unit_or_column() {
        assert_eq!(
            parse_neuron("L3:127"),
            Some(NeuronRef::Id(NeuronId::new(3, 127)))
        );
        assert_eq!(parse_neuron("42"), Some(NeuronRef::Column(42)));
        assert_eq!(parse_neuron("L3"), None);
        assert_eq!(
            parse_neuron("L3.mlp:9"),
            Some(NeuronRef::Id(NeuronId::at(lca_core::data::Site::Mlp, 3, 9)))
        );
        assert_eq!(parse_neuron("x"), None);
    }

    #[test]
    fn samples_centre_on_the_peak_and_take_the_highest_sentences() {
        let w = words(&["a", "b", "c", "d", "e", "f", "g"]);
        let t = TopWords {
            top: 1,
            neurons: Vec::new(),
            words: 5,
            min_score: 0.1,
            sentences: 1,
            window: 3,
        };
        // Sentences [0, 4) and [4, 7); the second holds the peak (index 5).
        let column = [0.1, 0.2, 0.3, 0.4, 0.0, -2.0, 0.5];
        let sample = t.sample(&w, &[0, 4], &column);
        assert_eq!(sample.len(), 1);
        let shown: Vec<&str> = sample[0].iter().map(|(w, _)| w.as_str()).collect();
        assert_eq!(shown, ["e", "f", "g"]);
        assert_eq!(sample[0][1].1, -2.0);
    }
}
