//! Tag statistics of a Brown corpus directory: how its tags map to the
//! universal and simplified tagsets.
//!
//! ```text
//! cargo run --release -p lca-core --example brown_tags -- .cache/data/brown
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use lca_builtin::corpus::{brown_simplified, brown_universal, read_brown};

fn main() {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| ".cache/data/brown".into()),
    );
    let corpus = read_brown(&[dir]).unwrap_or_else(|e| panic!("{e}"));
    let mut universal: BTreeMap<&str, usize> = BTreeMap::new();
    let mut simplified: BTreeMap<String, usize> = BTreeMap::new();
    let mut unmapped: BTreeMap<String, usize> = BTreeMap::new();
    for s in &corpus.sentences {
        for tag in &s.tags {
            let u = brown_universal(tag);
            *universal.entry(u).or_default() += 1;
            *simplified.entry(brown_simplified(tag)).or_default() += 1;
            if u == "X" && !tag.starts_with("fw-") {
                *unmapped.entry(tag.clone()).or_default() += 1;
            }
        }
    }
    println!(
        "{} sentences, {} tokens",
        corpus.sentences.len(),
        corpus.n_tokens()
    );
    println!("universal: {universal:?}");
    println!("{} simplified tags", simplified.len());
    println!("mapped to X without fw-: {unmapped:?}");
}
