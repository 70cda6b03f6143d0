//! Tag mappings for the Brown corpus.
//!
//! Brown tags (Francis & Kučera, *Brown Corpus Manual*, 1964/1979) are
//! lowercase in NLTK's distribution and decorated: `-tl` (in a title), `-hl`
//! (in a headline), `-nc` (cited word), a `fw-` prefix (foreign word), `*`
//! (negation, as in `do*` for *don't*), `$` (possessive) and `+` joining the
//! tags of a contraction (`ppss+md` for *I'd*).
//!
//! - [`brown_simplified`] strips the decorations, keeps the first part of a
//!   contraction and the possessive, and upper-cases: `np$-tl` → `NP$`,
//!   `ppss+md` → `PPSS`, `fw-nn` → `NN`, `do*` → `DO`.
//! - [`brown_universal`] maps the simplified tag to the 12 tags of the
//!   universal part-of-speech tagset (Petrov, Das & McDonald, *A Universal
//!   Part-of-Speech Tagset*, LREC 2012): NOUN, VERB, ADJ, ADV, PRON, DET,
//!   ADP, NUM, CONJ, PRT, `.` and X. Foreign words (`fw-`) map to X. The
//!   table below is this project's own, written from the tag definitions of
//!   the Brown manual.

/// Where the universal mapping comes from, for reports.
pub const BROWN_UNIVERSAL_SOURCE: &str = "Brown tags (Francis & Kučera, Brown Corpus Manual) mapped to the universal tagset of Petrov, Das & McDonald (LREC 2012) by lca's own table";

/// The simplified Brown tag (see the module docs).
pub fn brown_simplified(tag: &str) -> String {
    let mut t = tag.to_ascii_lowercase();
    if let Some(rest) = t.strip_prefix("fw-") {
        t = rest.to_string();
    }
    let first = t.split('+').next().unwrap_or(&t).to_string();
    let mut base = first;
    while let Some(rest) = ["-tl", "-hl", "-nc"]
        .iter()
        .find_map(|s| base.strip_suffix(s))
    {
        base = rest.to_string();
    }
    // `*` marks negation inside a tag (do* = don't); alone it is the tag of
    // `not` and `n't`.
    let stripped = base.replace('*', "");
    if stripped.is_empty() {
        base.to_ascii_uppercase()
    } else {
        stripped.to_ascii_uppercase()
    }
}

/// The universal tag of a Brown tag (see the module docs).
pub fn brown_universal(tag: &str) -> &'static str {
    if tag.to_ascii_lowercase().starts_with("fw-") {
        return "X";
    }
    let simple = brown_simplified(tag);
    let s = simple.trim_end_matches('$');
    if s == "*" {
        return "ADV";
    }
    // Punctuation tags are the punctuation marks themselves.
    if !s.is_empty() && s.chars().all(|c| !c.is_ascii_alphanumeric()) {
        return ".";
    }
    match s {
        // Determiners and articles: a, the, this, each, either, no, which…
        "AT" | "ABX" | "DT" | "DTI" | "DTS" | "DTX" | "WDT" | "EX" => "DET",
        // Pre-qualifiers and pre-quantifiers (quite, rather; all, half),
        // particles, infinitival `to`.
        "ABL" | "ABN" | "RP" | "TO" => "PRT",
        // Post-determiners (many, several, next), adjectives, ordinals.
        "AP" | "JJ" | "JJR" | "JJS" | "JJT" | "OD" => "ADJ",
        // Forms of be, do, have, modals and lexical verbs.
        "BE" | "BED" | "BEDZ" | "BEG" | "BEM" | "BEN" | "BER" | "BEZ" | "DO" | "DOD" | "DOZ"
        | "HV" | "HVD" | "HVG" | "HVN" | "HVZ" | "MD" | "VB" | "VBD" | "VBG" | "VBN" | "VBZ" => {
            "VERB"
        }
        "CC" => "CONJ",
        // Subordinating conjunctions pattern with prepositions as adpositions.
        "CS" | "IN" => "ADP",
        "CD" => "NUM",
        // Nouns, proper nouns, adverbial nouns (home, west), nominal pronouns
        // (everybody) and cited words.
        "NN" | "NNS" | "NP" | "NPS" | "NR" | "NRS" | "PN" | "NC" => "NOUN",
        // Personal, possessive, reflexive and wh- pronouns.
        "PP" | "PPL" | "PPLS" | "PPO" | "PPS" | "PPSS" | "WPO" | "WPS" | "WP" => "PRON",
        // Qualifiers (very), adverbs, nominal adverbs (here, then), wh-adverbs.
        "QL" | "QLP" | "RB" | "RBR" | "RBT" | "RN" | "WQL" | "WRB" => "ADV",
        // Interjections and anything unrecognised.
        _ => "X",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simplification_strips_decorations() {
        assert_eq!(brown_simplified("np$-tl"), "NP$");
        assert_eq!(brown_simplified("ppss+md"), "PPSS");
        assert_eq!(brown_simplified("fw-nn"), "NN");
        assert_eq!(brown_simplified("do*"), "DO");
        assert_eq!(brown_simplified("nn-tl-hl"), "NN");
        assert_eq!(brown_simplified("."), ".");
        assert_eq!(brown_simplified("--"), "--");
        assert_eq!(brown_simplified("'"), "'");
        assert_eq!(brown_simplified("*-hl"), "*");
    }

    #[test]
    fn universal_tags_of_common_brown_tags() {
        let cases = [
            ("at", "DET"),
            ("nn", "NOUN"),
            ("nns", "NOUN"),
            ("np$", "NOUN"),
            ("np-tl", "NOUN"),
            ("vbd", "VERB"),
            ("md", "VERB"),
            ("bez", "VERB"),
            ("jj", "ADJ"),
            ("od", "ADJ"),
            ("rb", "ADV"),
            ("ql", "ADV"),
            ("in", "ADP"),
            ("cs", "ADP"),
            ("cc", "CONJ"),
            ("cd", "NUM"),
            ("pps", "PRON"),
            ("pp$", "PRON"),
            ("ppss+md", "PRON"),
            ("to", "PRT"),
            ("rp", "PRT"),
            (".", "."),
            (",", "."),
            ("``", "."),
            ("(", "."),
            ("fw-nn", "X"),
            ("uh", "X"),
            ("dti", "DET"),
            ("wdt", "DET"),
            ("wrb", "ADV"),
            ("*", "ADV"),
        ];
        for (tag, want) in cases {
            assert_eq!(brown_universal(tag), want, "{tag}");
        }
    }
}
