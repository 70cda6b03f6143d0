//! Corpus file readers.

use std::path::{Path, PathBuf};

use super::{Corpus, Sentence};
use lca_core::error::{Error, Result};
use lca_core::io::read_utf8;

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Lines with Windows line endings accepted, numbered from 1.
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.strip_suffix('\r').unwrap_or(l)))
}

/// NeuroX's format: a sentence file with one sentence per line (tokens
/// separated by whitespace) and a labels file with the labels of each
/// sentence on the same line.
///
/// # Errors
/// A line whose token and label counts differ (naming both files, the line
/// and the counts), files of different lengths, empty lines, bad UTF-8.
pub fn read_neurox_files(sentences: &Path, labels: &Path) -> Result<Corpus> {
    let fix = "save the file as UTF-8";
    let s_text = read_utf8(sentences, "read", fix)?;
    let l_text = read_utf8(labels, "read", fix)?;
    for (path, text, holds) in [
        (
            sentences,
            &s_text,
            "one sentence per line, words separated by spaces",
        ),
        (
            labels,
            &l_text,
            "one line of labels per sentence, aligned with the words",
        ),
    ] {
        if text.trim().is_empty() {
            return Err(Error::format(
                path,
                None,
                format!("is empty; it must hold {holds}"),
            ));
        }
    }
    let s_lines: Vec<(usize, &str)> = lines(&s_text).collect();
    let l_lines: Vec<(usize, &str)> = lines(&l_text).collect();
    // A final empty line is the file's trailing newline, not a sentence.
    let trim = |v: &[(usize, &str)]| {
        v.len()
            - v.iter()
                .rev()
                .take_while(|(_, l)| l.trim().is_empty())
                .count()
    };
    let (ns, nl) = (trim(&s_lines), trim(&l_lines));
    if ns != nl {
        return Err(Error::format(
            labels,
            None,
            format!(
                "has {nl} lines of labels but {} has {ns} sentences; the two files must have one line per sentence",
                sentences.display()
            ),
        ));
    }
    let file = file_name(sentences);
    let mut corpus = Corpus::default();
    for (&(line, s), &(_, l)) in s_lines[..ns].iter().zip(&l_lines[..nl]) {
        let words: Vec<String> = s.split_whitespace().map(String::from).collect();
        let tags: Vec<String> = l.split_whitespace().map(String::from).collect();
        if words.is_empty() {
            return Err(Error::format(
                sentences,
                Some(line),
                "is an empty sentence; remove the line from both files",
            ));
        }
        if words.len() != tags.len() {
            return Err(Error::format(
                labels,
                Some(line),
                format!(
                    "has {} labels but line {line} of {} has {} tokens; every token needs exactly one label",
                    tags.len(),
                    sentences.display(),
                    words.len()
                ),
            ));
        }
        corpus.sentences.push(Sentence {
            words,
            tags,
            file: file.clone(),
            line,
        });
    }
    if corpus.sentences.is_empty() {
        return Err(Error::format(sentences, None, "contains no sentences"));
    }
    Ok(corpus)
}

/// The columns of CoNLL-U, by name.
const CONLLU_COLUMNS: [&str; 10] = [
    "id", "form", "lemma", "upos", "xpos", "feats", "head", "deprel", "deps", "misc",
];

/// CoNLL-U: the words (FORM) and one annotation column (`upos`, `xpos` or
/// any other column by name). Comment lines, multiword-token ranges (`1-2`)
/// and empty nodes (`1.1`) are skipped.
///
/// # Errors
/// Lines with other than 10 tab-separated fields, an unknown column name.
pub fn read_conllu(path: &Path, column: &str) -> Result<Corpus> {
    let index = CONLLU_COLUMNS
        .iter()
        .position(|c| *c == column)
        .ok_or_else(|| {
            Error::input(format!(
                "unknown CoNLL-U column `{column}`; use one of {}",
                CONLLU_COLUMNS.join(", ")
            ))
        })?;
    let text = read_utf8(path, "read", "save the file as UTF-8")?;
    let file = file_name(path);
    let mut corpus = Corpus::default();
    let mut current: Option<Sentence> = None;
    for (line, l) in lines(&text) {
        if l.trim().is_empty() {
            if let Some(s) = current.take() {
                corpus.sentences.push(s);
            }
            continue;
        }
        if l.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = l.split('\t').collect();
        if fields.len() != 10 {
            return Err(Error::format(
                path,
                Some(line),
                format!(
                    "has {} tab-separated fields; CoNLL-U token lines have 10",
                    fields.len()
                ),
            ));
        }
        if fields[0].contains('-') || fields[0].contains('.') {
            continue;
        }
        let s = current.get_or_insert_with(|| Sentence {
            words: vec![],
            tags: vec![],
            file: file.clone(),
            line,
        });
        s.words.push(fields[1].to_string());
        s.tags.push(fields[index].to_string());
    }
    if let Some(s) = current {
        corpus.sentences.push(s);
    }
    if corpus.sentences.is_empty() {
        return Err(Error::format(path, None, "contains no sentences"));
    }
    Ok(corpus)
}

/// The tagged Brown corpus in NLTK's format: one sentence per line, tokens
/// `word/tag` separated by spaces (the tag is after the last `/`). `paths`
/// may list files or directories (whose files named like `ca01` are read in
/// name order).
///
/// # Errors
/// A token without a tag (naming the file and line), unreadable files.
pub fn read_brown(paths: &[PathBuf]) -> Result<Corpus> {
    read_brown_until(paths, |_| false)
}

/// As [`read_brown`], stopping after the first file for which
/// `enough(that file's sentences)` is true: a sample of the first sentences
/// reads only the files that hold them (the whole corpus is 500 files).
///
/// # Errors
/// As [`read_brown`], for the files read.
pub fn read_brown_until(
    paths: &[PathBuf],
    mut enough: impl FnMut(&[Sentence]) -> bool,
) -> Result<Corpus> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut names: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| Error::io("read directory", p, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(is_brown_file_name)
                })
                .collect();
            names.sort();
            if names.is_empty() {
                return Err(Error::format(
                    p,
                    None,
                    "holds no Brown corpus files (named like ca01)",
                ));
            }
            files.extend(names);
        } else {
            files.push(p.clone());
        }
    }
    let mut corpus = Corpus::default();
    for path in files {
        let first = corpus.sentences.len();
        let text = read_utf8(
            &path,
            "read",
            "the Brown corpus files are ASCII; re-download them",
        )?;
        let file = file_name(&path);
        for (line, l) in lines(&text) {
            let l = l.trim();
            if l.is_empty() {
                continue;
            }
            let mut words = Vec::new();
            let mut tags = Vec::new();
            for token in l.split_whitespace() {
                match token.rsplit_once('/') {
                    Some((word, tag)) if !word.is_empty() && !tag.is_empty() => {
                        words.push(word.to_string());
                        tags.push(tag.to_string());
                    }
                    _ => {
                        return Err(Error::format(
                            &path,
                            Some(line),
                            format!(
                                "token {token:?} is not word/TAG; every Brown token carries its tag after a slash"
                            ),
                        ));
                    }
                }
            }
            corpus.sentences.push(Sentence {
                words,
                tags,
                file: file.clone(),
                line,
            });
        }
        if enough(&corpus.sentences[first..]) {
            break;
        }
    }
    Ok(corpus)
}

fn is_brown_file_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() == 4
        && b[0] == b'c'
        && b[1].is_ascii_lowercase()
        && b[2].is_ascii_digit()
        && b[3].is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &[u8]) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn neurox_files_with_tabs_double_spaces_and_crlf() {
        let dir = tempfile::tempdir().unwrap();
        let s = write(dir.path(), "s.txt", b"The  cat\tsat\r\nA dog\r\n");
        let l = write(dir.path(), "l.txt", b"DT NN VBD\r\nDT NN\r\n");
        let c = read_neurox_files(&s, &l).unwrap();
        assert_eq!(c.sentences[0].words, ["The", "cat", "sat"]);
        assert_eq!(c.sentences[1].tags, ["DT", "NN"]);
        assert_eq!(c.sentences[1].line, 2);
    }

    #[test]
    fn neurox_mismatch_names_the_line_and_both_counts() {
        let dir = tempfile::tempdir().unwrap();
        let s = write(dir.path(), "s.txt", b"The cat sat\nA dog\n");
        let l = write(dir.path(), "l.txt", b"DT NN\nDT NN\n");
        let err = read_neurox_files(&s, &l).unwrap_err().to_string();
        assert!(
            err.contains("l.txt:1:")
                && err.contains("has 2 labels")
                && err.contains("has 3 tokens"),
            "{err}"
        );
        let l = write(dir.path(), "l2.txt", b"DT NN VBD\n");
        let err = read_neurox_files(&s, &l).unwrap_err().to_string();
        assert!(
            err.contains("1 lines of labels") && err.contains("2 sentences"),
            "{err}"
        );
    }

    #[test]
    fn conllu_columns_and_skipped_lines() {
        let dir = tempfile::tempdir().unwrap();
        let text = "# sent_id = 1\n1-2\tdon't\t_\t_\t_\t_\t_\t_\t_\t_\n1\tdo\tdo\tAUX\tVBP\t_\t0\troot\t_\t_\n2\tn't\tnot\tPART\tRB\t_\t1\tadvmod\t_\t_\n2.1\tx\tx\tX\tX\t_\t_\t_\t_\t_\n\n1\tYes\tyes\tINTJ\tUH\t_\t0\troot\t_\t_\n";
        let p = write(dir.path(), "a.conllu", text.as_bytes());
        let c = read_conllu(&p, "upos").unwrap();
        assert_eq!(c.sentences.len(), 2);
        assert_eq!(c.sentences[0].words, ["do", "n't"]);
        assert_eq!(c.sentences[0].tags, ["AUX", "PART"]);
        assert_eq!(read_conllu(&p, "xpos").unwrap().sentences[1].tags, ["UH"]);
        let bad = write(dir.path(), "b.conllu", b"1\tdo\tAUX\n");
        let err = read_conllu(&bad, "upos").unwrap_err().to_string();
        assert!(
            err.contains("b.conllu:1:") && err.contains("3 tab-separated fields"),
            "{err}"
        );
        assert!(
            read_conllu(&p, "pos")
                .unwrap_err()
                .to_string()
                .contains("unknown CoNLL-U column `pos`")
        );
    }

    #[test]
    fn brown_tokens_split_at_the_last_slash() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "ca01",
            b"\n\n\tThe/at 1/2/cd cat/nn ./.\n\n\tHe/pps ran/vbd\n",
        );
        write(dir.path(), "README", b"not a corpus file");
        let c = read_brown(&[dir.path().to_path_buf()]).unwrap();
        assert_eq!(c.sentences.len(), 2);
        assert_eq!(c.sentences[0].words, ["The", "1/2", "cat", "."]);
        assert_eq!(c.sentences[0].tags, ["at", "cd", "nn", "."]);
        assert_eq!(c.sentences[0].file, "ca01");
        write(dir.path(), "ca02", b"\tbroken token/\n");
        let err = read_brown(&[dir.path().to_path_buf()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ca02:1:") && err.contains("not word/TAG"),
            "{err}"
        );
        // Reading until enough stops after the file that gives it: the
        // broken file after it is never read.
        let mut files = Vec::new();
        let c = read_brown_until(&[dir.path().to_path_buf()], |file| {
            files.push(file.len());
            true
        })
        .unwrap();
        assert_eq!(c.sentences.len(), 2);
        assert_eq!(files, [2]);
        assert!(read_brown_until(&[dir.path().to_path_buf()], |_| false).is_err());
    }
}
