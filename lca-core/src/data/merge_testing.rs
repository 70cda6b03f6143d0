//! Helpers for the property tests of mergeable statistics: cut rows into
//! parts at arbitrary places, and merge the parts' statistics back.

use std::ops::Range;

/// The row ranges that `cuts` make of `0..rows` (cuts outside it, and
/// repeated ones, are dropped; no range is empty).
pub(crate) fn row_parts(cuts: &[usize], rows: usize) -> Vec<Range<usize>> {
    let mut bounds: Vec<usize> = cuts.iter().copied().filter(|&c| c < rows).collect();
    bounds.extend([0, rows]);
    bounds.sort_unstable();
    bounds.dedup();
    bounds.windows(2).map(|w| w[0]..w[1]).collect()
}

/// `parts` merged left to right, or right to left when `reverse`.
pub(crate) fn merged_in_order<T: Clone>(
    mut parts: Vec<T>,
    reverse: bool,
    merge: impl Fn(&mut T, &T),
) -> T {
    if reverse {
        parts.reverse();
    }
    let mut merged = parts[0].clone();
    for part in &parts[1..] {
        merge(&mut merged, part);
    }
    merged
}

/// `parts` merged in a balanced tree: neighbours pairwise, then their
/// sums, as a tree reduce on a cluster would.
pub(crate) fn merged_in_pairs<T: Clone>(mut parts: Vec<T>, merge: impl Fn(&mut T, &T)) -> T {
    while parts.len() > 1 {
        parts = parts
            .chunks(2)
            .map(|pair| {
                let mut first = pair[0].clone();
                if let Some(second) = pair.get(1) {
                    merge(&mut first, second);
                }
                first
            })
            .collect();
    }
    parts.remove(0)
}
