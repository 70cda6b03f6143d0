//! Batched forward passes and subword-to-word aggregation.

use std::borrow::Cow;
use std::ops::Range;

use lca_core::data::Site;
use lca_core::{Result, RunContext};

use crate::model::{self, Architecture, Batch, CandleResult};
use crate::words::Window;

lca_core::param_enum! {
    /// How the pieces of a word become one vector.
    pub enum Aggregation {
        /// The first piece.
        First = "first",
        /// The last piece (NeuroX's default).
        Last = "last",
        /// The unweighted mean of the pieces.
        Average = "average",
    }
}

/// What to extract and how.
#[derive(Clone, Debug)]
pub struct Plan<'a> {
    /// Layer sites to keep, in output order (residual layer 0 = embeddings).
    pub wanted: &'a [(Site, usize)],
    /// Word vectors from pieces.
    pub aggregation: Aggregation,
    /// Windows per forward pass.
    pub batch_size: usize,
}

/// Runs every window through the model and writes one row per word into
/// `out` (`rows × Σ site widths`, row-major, the wanted layer sites side by
/// side). `first_row[i]` is the row of the first word of window `i`.
/// Windows are batched by length to keep padding small. Returns the number
/// of words with no pieces (zero rows).
///
/// # Errors
/// When the model fails, for example on ids outside its vocabulary.
pub fn run(
    model: &dyn Architecture,
    windows: &[Window],
    first_row: &[usize],
    plan: &Plan<'_>,
    out: &mut [f32],
    cx: &RunContext,
) -> Result<usize> {
    let shape = model.shape();
    let widths: Vec<usize> = plan
        .wanted
        .iter()
        .map(|&(site, _)| shape.width(site))
        .collect();
    let offsets: Vec<usize> = widths
        .iter()
        .scan(0, |at, w| {
            let start = *at;
            *at += w;
            Some(start)
        })
        .collect();
    let cols: usize = widths.iter().sum();
    let pad = shape.pad_token_id;
    // Longest first: the first batch shows the worst memory use at once.
    let mut order: Vec<usize> = (0..windows.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(windows[i].ids.len()), i));
    let progress = cx.progress();
    let mut empty_words = 0;
    for batch in order.chunks(plan.batch_size.max(1)) {
        cx.check_cancelled()?;
        let width = batch
            .iter()
            .map(|&i| windows[i].ids.len())
            .max()
            .unwrap_or(0);
        if width == 0 {
            continue;
        }
        let mut ids = vec![pad; batch.len() * width];
        let lengths: Vec<usize> = batch.iter().map(|&i| windows[i].ids.len()).collect();
        for (b, &i) in batch.iter().enumerate() {
            let w = &windows[i];
            ids[b * width..b * width + w.ids.len()].copy_from_slice(&w.ids);
        }
        let input = Batch {
            ids: &ids,
            lengths: &lengths,
            tokens: width,
        };
        let states = cx.install(|| model::activations(model, &input, plan.wanted))?;
        // Each state read where the tensor holds it (a copy only of one
        // that is not contiguous).
        let held: Vec<_> = states.iter().map(|s| s.storage_and_layout()).collect();
        let mut selected: Vec<Cow<'_, [f32]>> = Vec::with_capacity(states.len());
        for ((storage, layout), state) in held.iter().zip(&states) {
            selected.push(match crate::ops::contiguous_values(storage, layout) {
                Some(values) => Cow::Borrowed(values),
                None => Cow::Owned(state.flatten_all().lca()?.to_vec1::<f32>().lca()?),
            });
        }
        let mut words_done = 0;
        for (b, &i) in batch.iter().enumerate() {
            let w = &windows[i];
            for (k, span) in w.spans.iter().enumerate() {
                let row = first_row[i] + k;
                let target = &mut out[row * cols..(row + 1) * cols];
                if span.is_empty() {
                    target.fill(0.0);
                    empty_words += 1;
                    continue;
                }
                for ((state, &units), &at) in selected.iter().zip(&widths).zip(&offsets) {
                    let at_piece =
                        |p: usize| &state[(b * width + p) * units..(b * width + p + 1) * units];
                    aggregate(
                        plan.aggregation,
                        span.clone(),
                        at_piece,
                        &mut target[at..at + units],
                    );
                }
            }
            words_done += w.spans.len();
        }
        if let Some(p) = progress {
            p.advance(words_done as u64);
        }
    }
    Ok(empty_words)
}

fn aggregate<'s>(
    how: Aggregation,
    span: Range<usize>,
    at: impl Fn(usize) -> &'s [f32],
    out: &mut [f32],
) {
    match how {
        Aggregation::First => out.copy_from_slice(at(span.start)),
        Aggregation::Last => out.copy_from_slice(at(span.end - 1)),
        Aggregation::Average => {
            out.fill(0.0);
            let n = span.len() as f32;
            for p in span {
                for (o, v) in out.iter_mut().zip(at(p)) {
                    *o += v;
                }
            }
            out.iter_mut().for_each(|o| *o /= n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregation_of_a_three_piece_word() {
        let states = [[1.0f32, 2.0], [3.0, 4.0], [5.0, 9.0], [7.0, 8.0]];
        let at = |p: usize| &states[p][..];
        let mut out = [0.0; 2];
        aggregate(Aggregation::First, 1..4, at, &mut out);
        assert_eq!(out, [3.0, 4.0]);
        aggregate(Aggregation::Last, 1..4, at, &mut out);
        assert_eq!(out, [7.0, 8.0]);
        aggregate(Aggregation::Average, 1..4, at, &mut out);
        assert_eq!(out, [5.0, 7.0]);
    }
}
