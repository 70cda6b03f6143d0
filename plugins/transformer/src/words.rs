//! From corpus words to model inputs: word pieces, the span of each word,
//! and windows that fit the model.
//!
//! Words are the corpus's tokens. For encoders they reach the tokenizer
//! already split (pre-tokenized input), so a word is never re-split on
//! whitespace and every piece knows which word it came from.
//!
//! Decoder tokenizers (byte-level BPE, SentencePiece) keep the space before
//! a word inside its first piece (`Ġcat`, `▁cat`), and were trained on
//! running text. For them the words are joined with single spaces, the text
//! is tokenized as a whole, and each piece goes to the word its character
//! offsets overlap; a piece of spaces alone belongs to the word after it.

use std::ops::Range;

use lca_core::{Error, Result};
use tokenizers::Tokenizer;

/// The special tokens the tokenizer puts around a single sequence
/// (`[CLS]` … `[SEP]` for BERT, `<s>` … `</s>` for RoBERTa).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Specials {
    /// Ids before the word pieces.
    pub prefix: Vec<u32>,
    /// Ids after them.
    pub suffix: Vec<u32>,
}

impl Specials {
    /// Reads them off the encoding of a one-word sequence.
    ///
    /// # Errors
    /// When the tokenizer cannot encode.
    pub fn of(tokenizer: &Tokenizer) -> Result<Self> {
        let words: &[&str] = &["a"];
        let encoding = tokenizer
            .encode(words, true)
            .map_err(|e| Error::input(format!("the tokenizer failed on a probe word: {e}")))?;
        let mask = encoding.get_special_tokens_mask();
        let ids = encoding.get_ids();
        let first = mask.iter().position(|&m| m == 0).unwrap_or(ids.len());
        let last = mask.iter().rposition(|&m| m == 0).map_or(first, |p| p + 1);
        Ok(Specials {
            prefix: ids[..first].to_vec(),
            suffix: ids[last..].to_vec(),
        })
    }

    fn len(&self) -> usize {
        self.prefix.len() + self.suffix.len()
    }
}

/// One sentence in word pieces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pieces {
    /// Piece ids, without special tokens.
    pub ids: Vec<u32>,
    /// The pieces of each word (empty when the tokenizer drops the word).
    pub spans: Vec<Range<usize>>,
}

/// How a sentence's words reach the tokenizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Joining {
    /// As separate words (encoders).
    PreSplit,
    /// As one text, words joined by single spaces (decoders).
    Text,
}

/// Tokenizes one sentence given as words.
///
/// # Errors
/// When the tokenizer fails, or gives a word pieces that are not contiguous.
pub fn pieces(tokenizer: &Tokenizer, words: &[String], joining: Joining) -> Result<Pieces> {
    let failed = |e| Error::input(format!("the tokenizer failed: {e}"));
    let (ids, word_of) = match joining {
        Joining::PreSplit => {
            let encoding = tokenizer.encode(words, false).map_err(failed)?;
            let word_of = encoding
                .get_word_ids()
                .iter()
                .map(|w| w.map(|w| w as usize))
                .collect();
            (encoding.get_ids().to_vec(), word_of)
        }
        Joining::Text => {
            let mut text = String::new();
            let mut ranges = Vec::with_capacity(words.len());
            for (i, word) in words.iter().enumerate() {
                if i > 0 {
                    text.push(' ');
                }
                let start = text.len();
                text.push_str(word);
                ranges.push(start..text.len());
            }
            let encoding = tokenizer.encode(text.as_str(), false).map_err(failed)?;
            let word_of = words_of_pieces(encoding.get_offsets(), &ranges);
            (encoding.get_ids().to_vec(), word_of)
        }
    };
    let mut spans = vec![0..0; words.len()];
    let mut seen = vec![false; words.len()];
    for (position, word) in word_of.iter().enumerate() {
        let Some(word) = *word else {
            continue;
        };
        let span = spans.get_mut(word).ok_or_else(|| {
            Error::input(format!(
                "the tokenizer returned word {word} for a sentence of {} words",
                words.len()
            ))
        })?;
        if !seen[word] {
            seen[word] = true;
            *span = position..position + 1;
        } else if span.end == position {
            span.end += 1;
        } else {
            return Err(Error::input(format!(
                "the tokenizer split word {word} ({:?}) into pieces that are not adjacent",
                words[word]
            )));
        }
    }
    Ok(Pieces { ids, spans })
}

/// The word of each piece, from the pieces' byte offsets in the text and
/// the words' byte ranges: the first word a piece overlaps, or, for a piece
/// of spaces alone, the next word.
fn words_of_pieces(offsets: &[(usize, usize)], words: &[Range<usize>]) -> Vec<Option<usize>> {
    let mut word = 0;
    offsets
        .iter()
        .map(|&(start, end)| {
            // Pieces come in text order, so the search only moves on.
            while word < words.len() && words[word].end <= start && words[word].end < end {
                word += 1;
            }
            (word < words.len()).then_some(word)
        })
        .collect()
}

lca_core::param_enum! {
    /// What to do with a sentence whose pieces do not fit the model's window.
    pub enum LongSentences {
        /// Cut it into consecutive windows of whole words, each run on its own.
        Split = "split",
        /// Keep the words that fit in one window; drop the rest of the sentence.
        Truncate = "truncate",
    }
}

/// One model input: some consecutive words of one sentence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    /// The sentence, by index.
    pub sentence: usize,
    /// Its words, by index within the sentence.
    pub words: Range<usize>,
    /// Token ids, special tokens included when asked for.
    pub ids: Vec<u32>,
    /// Positions in `ids` of each word of `words`.
    pub spans: Vec<Range<usize>>,
}

/// Windows of a sentence and how many of its words they keep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Windowed {
    /// The windows, in word order.
    pub windows: Vec<Window>,
    /// Words kept: all of them, unless truncated.
    pub kept: usize,
    /// Words whose own pieces were cut because a single word is longer than
    /// the window (only the pieces that fit are used).
    pub cut_words: usize,
}

/// Cuts a sentence into model inputs of at most `max_tokens` ids each,
/// specials included. A single word longer than the window keeps only the
/// pieces that fit.
///
/// With `left_context` (causal models), every window after the first
/// starts with as many whole words before its own as fit in half the
/// window: they give its words the left context they would have had in one
/// long input, and get no rows of their own (they are the previous
/// window's). Windows then advance by at least half a window.
pub fn windows(
    sentence: usize,
    pieces: &Pieces,
    specials: Option<&Specials>,
    max_tokens: usize,
    policy: LongSentences,
    left_context: bool,
) -> Windowed {
    let empty = Specials::default();
    let specials = specials.unwrap_or(&empty);
    let budget = max_tokens.saturating_sub(specials.len()).max(1);
    let mut out = Windowed {
        windows: Vec::new(),
        kept: pieces.spans.len(),
        cut_words: 0,
    };
    let mut start = 0;
    while start < pieces.spans.len() {
        // Whole words before `start`, as many as fit in half the budget.
        let mut context = start;
        let mut used = 0;
        if left_context {
            while context > 0 && used + pieces.spans[context - 1].len() <= budget / 2 {
                context -= 1;
                used += pieces.spans[context].len();
            }
        }
        let fill = |mut used: usize| {
            let mut end = start;
            while end < pieces.spans.len() && used + pieces.spans[end].len() <= budget {
                used += pieces.spans[end].len();
                end += 1;
            }
            end
        };
        let mut end = fill(used);
        if end == start && context < start {
            // A long word fits without the context, not after it.
            context = start;
            end = fill(0);
        }
        let oversized = end == start;
        if oversized {
            end = start + 1;
            out.cut_words += 1;
        }
        let mut ids = specials.prefix.clone();
        for span in &pieces.spans[context..start] {
            ids.extend_from_slice(&pieces.ids[span.clone()]);
        }
        let mut spans = Vec::with_capacity(end - start);
        for span in &pieces.spans[start..end] {
            let take = span.len().min(budget);
            let at = ids.len();
            ids.extend_from_slice(&pieces.ids[span.start..span.start + take]);
            spans.push(at..at + take);
        }
        ids.extend_from_slice(&specials.suffix);
        out.windows.push(Window {
            sentence,
            words: start..end,
            ids,
            spans,
        });
        if policy == LongSentences::Truncate && end < pieces.spans.len() {
            out.kept = end;
            break;
        }
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_go_to_the_word_they_overlap_and_spaces_to_the_next() {
        // "The cat's hat": words at 0..3, 4..9, 10..13.
        let words = [0..3, 4..9, 10..13];
        // "The", "Ġcat", "'s", "Ġ", "hat"
        let offsets = [(0, 3), (3, 7), (7, 9), (9, 10), (10, 13)];
        assert_eq!(
            words_of_pieces(&offsets, &words),
            [Some(0), Some(1), Some(1), Some(2), Some(2)]
        );
        // A tokenizer that trims the space from offsets: "cat" at 4..7.
        let trimmed = [(0, 3), (4, 7), (7, 9), (10, 13)];
        assert_eq!(
            words_of_pieces(&trimmed, &words),
            [Some(0), Some(1), Some(1), Some(2)]
        );
        // Two byte pieces of one character share its offsets.
        let bytes = [(0, 3), (4, 6), (4, 6), (6, 9), (10, 13)];
        assert_eq!(
            words_of_pieces(&bytes, &words),
            [Some(0), Some(1), Some(1), Some(1), Some(2)]
        );
    }

    fn p(lengths: &[usize]) -> Pieces {
        let mut ids = Vec::new();
        let mut spans = Vec::new();
        for (w, &n) in lengths.iter().enumerate() {
            let start = ids.len();
            ids.extend(std::iter::repeat_n(100 + w as u32, n));
            spans.push(start..ids.len());
        }
        Pieces { ids, spans }
    }

    fn specials() -> Specials {
        Specials {
            prefix: vec![1],
            suffix: vec![2],
        }
    }

    #[test]
    fn a_short_sentence_is_one_window_with_its_specials() {
        let w = windows(
            3,
            &p(&[1, 2, 0, 1]),
            Some(&specials()),
            16,
            LongSentences::Split,
            false,
        );
        assert_eq!(w.kept, 4);
        assert_eq!(w.windows.len(), 1);
        let only = &w.windows[0];
        assert_eq!(only.sentence, 3);
        assert_eq!(only.ids, [1, 100, 101, 101, 103, 2]);
        assert_eq!(only.spans, [1..2, 2..4, 4..4, 4..5]);
    }

    #[test]
    fn split_keeps_every_word_in_windows_that_fit() {
        // Budget 6 - 2 specials = 4 pieces per window.
        let w = windows(
            0,
            &p(&[2, 2, 1, 3, 1]),
            Some(&specials()),
            6,
            LongSentences::Split,
            false,
        );
        assert_eq!(w.kept, 5);
        let ranges: Vec<_> = w.windows.iter().map(|w| w.words.clone()).collect();
        assert_eq!(ranges, [0..2, 2..4, 4..5]);
        assert!(
            w.windows
                .iter()
                .all(|w| w.ids.len() <= 6 && w.ids[0] == 1 && *w.ids.last().unwrap() == 2)
        );
        assert_eq!(w.windows[1].spans, [1..2, 2..5]);
    }

    #[test]
    fn truncate_keeps_the_first_window_only() {
        let w = windows(
            0,
            &p(&[2, 2, 1, 3, 1]),
            Some(&specials()),
            6,
            LongSentences::Truncate,
            false,
        );
        assert_eq!(w.kept, 2);
        assert_eq!(w.windows.len(), 1);
    }

    #[test]
    fn a_word_longer_than_the_window_keeps_the_pieces_that_fit() {
        let w = windows(0, &p(&[1, 9, 1]), None, 4, LongSentences::Split, false);
        assert_eq!(w.cut_words, 1);
        assert_eq!(w.kept, 3);
        let lens: Vec<_> = w.windows.iter().map(|w| w.ids.len()).collect();
        assert_eq!(lens, [1, 4, 1]);
    }

    #[test]
    fn causal_windows_start_with_the_words_before_them() {
        // Budget 8 - 2 specials = 6 pieces; context at most 3 pieces.
        let pieces = p(&[2, 1, 2, 1, 2, 1, 3, 1]);
        let w = windows(0, &pieces, Some(&specials()), 8, LongSentences::Split, true);
        let rows: Vec<_> = w.windows.iter().map(|w| w.words.clone()).collect();
        // Every word has exactly one row, in order.
        assert_eq!(rows.first().unwrap().start, 0);
        assert!(rows.windows(2).all(|r| r[0].end == r[1].start));
        assert_eq!(rows.last().unwrap().end, 8);
        assert_eq!(rows[0], 0..4);
        // The second window starts with words 2 and 3 (3 pieces) as context,
        // then its own words 4 and 5.
        let second = &w.windows[1];
        assert_eq!(second.words, 4..6);
        assert_eq!(second.ids, [1, 102, 102, 103, 104, 104, 105, 2]);
        assert_eq!(second.spans, [4..6, 6..7]);
        assert!(w.windows.iter().all(|w| w.ids.len() <= 8));
        // A word that fits only without context gets the window to itself.
        let long = windows(0, &p(&[2, 5]), None, 6, LongSentences::Split, true);
        assert_eq!(long.cut_words, 0);
        assert_eq!(long.windows[1].ids, [101; 5]);
    }
}
