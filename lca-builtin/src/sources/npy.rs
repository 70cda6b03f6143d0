//! `npy`: an activation matrix from `.npy`, `.npz` or `.safetensors`, with a
//! labels file and optionally a words file.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use lca_core::component::{ActivationSource, Component, RowSink};
use lca_core::context::RunContext;
use lca_core::data::{
    ActivationMatrix, ClassVocab, Dataset, DatasetOutline, Labels, NeuronIndex, SplitFractions,
    SplitSpec, SplitUnit, Splits, Tokens, assign_splits, reorder_sentence_starts,
};
use lca_core::error::{Error, Result};
use lca_core::params::{Params as _, invalid};
use lca_core::registry::{ComponentInfo, ComponentKind, Descriptor, Inputs, applied};
use ndarray::{Array1, Array2};
use ndarray_npy::{NpzReader, ReadNpyExt};

const NAME: &str = "npy";

lca_core::param_enum! {
    /// What happens to rows holding NaN or infinity.
    enum NonFinite {
        /// An error naming the first.
        Reject = "reject",
        /// Dropped, with their labels and words, and counted.
        Skip = "skip",
    }
}

lca_core::param_enum! {
    /// What a split keeps together.
    enum SplitBy {
        /// Whole sentences.
        Sentence = "sentence",
        /// Single tokens.
        Token = "token",
    }
}

lca_core::params! {
    /// Parameters of `npy`.
    struct NpyParams {
        /// activation matrix, tokens × neurons, float32 or float64 (.npy,
        /// .npz or .safetensors)
        path: PathBuf,
        /// which array of an .npz or .safetensors file to use
        #[shown = "the only array"]
        array: Option<String> = None,
        /// one label per line (blank line = sentence boundary), or an .npy
        /// vector of integer class ids
        labels: PathBuf,
        /// one word per line, aligned with the labels file
        words: Option<PathBuf> = None,
        /// layers in the matrix, laid out layer-major (neuron = layer ×
        /// hidden + unit); must divide the neuron count
        layers: usize = 1 => range(1..),
        /// number of the first layer in the matrix
        first_layer: u32 = 0,
        /// shuffle sentences (seeded) before splitting; false holds out the
        /// tail
        shuffle: bool = true,
        /// unit of the split
        split_by: SplitBy = SplitBy::Sentence,
        /// rows holding NaN or infinity: an error naming the first, or
        /// dropped (with their labels and words) and counted in a warning
        /// and the source details
        non_finite: NonFinite = NonFinite::Reject,
        /// dev split from its own files instead of a fraction: activations
        /// (laid out as `path`), with `dev_labels` and, when `words` is
        /// set, `dev_words`; `path` is then the training split, kept in
        /// file order
        #[shown = "drawn from `path`"]
        dev_path: Option<PathBuf> = None,
        /// labels of `dev_path`, in the form of `labels`
        #[shown = "none"]
        dev_labels: Option<PathBuf> = None,
        /// words of `dev_path`, in the form of `words`
        #[shown = "none"]
        dev_words: Option<PathBuf> = None,
        /// test split from its own files, as `dev_path`
        #[shown = "drawn from `path`"]
        test_path: Option<PathBuf> = None,
        /// labels of `test_path`
        #[shown = "none"]
        test_labels: Option<PathBuf> = None,
        /// words of `test_path`
        #[shown = "none"]
        test_words: Option<PathBuf> = None,
        #[flatten]
        split: SplitFractions,
    }
}

/// The labels and words of `files`, checked against the matrix's `rows`.
fn read_labels_and_words(
    files: &SplitFiles,
    rows: usize,
) -> Result<(LabelFile, Option<Vec<String>>)> {
    let labels = read_label_file(&files.labels)?;
    if labels.names.len() != rows {
        return Err(Error::format(
            &files.labels,
            None,
            format!(
                "the labels file has {} labels but {} has {rows} rows; each activation row needs exactly one label \
                 (check for a missing or extra line, or a labels file for different activations)",
                labels.names.len(),
                files.matrix.display()
            ),
        ));
    }
    let words = match &files.words {
        Some(path) => Some(read_words_file(path, &labels, &files.labels)?),
        None => None,
    };
    Ok((labels, words))
}

/// The files of one split given explicitly.
#[derive(Clone, Debug)]
struct SplitFiles {
    matrix: PathBuf,
    labels: PathBuf,
    words: Option<PathBuf>,
}

/// One file set read: rows, their labels and (optionally) words.
struct Part {
    matrix: Array2<f32>,
    labels: LabelFile,
    words: Option<Vec<String>>,
    /// Rows dropped for holding NaN or infinity (`non_finite = "skip"`).
    skipped: usize,
}

/// What a file set says of its rows besides their values: how many, how
/// wide, their labels and words, and how many were dropped.
struct RowFacts {
    rows: usize,
    cols: usize,
    labels: LabelFile,
    words: Option<Vec<String>>,
    /// Rows dropped for holding NaN or infinity (`non_finite = "skip"`).
    skipped: usize,
}

pub(crate) fn descriptor() -> Descriptor {
    Descriptor {
        info: ComponentInfo {
            kind: ComponentKind::Source,
            name: NAME.into(),
            summary: "Activation matrix from .npy/.npz/.safetensors plus a labels file".into(),
            params: NpyParams::docs(),
            example: "[source.acts]\ntype = \"npy\"\npath = \"activations.npy\"\nlabels = \"labels.txt\"\nlayers = 13\n".into(),
            inputs: Inputs::default(),
        },
        build: |table| Ok(Component::Source(Box::new(NpySource::new(NpyParams::parse(NAME, table)?)?))),
        applied: applied::<NpyParams>,
    }
}

/// Reads activations and labels from files.
#[derive(Clone, Debug)]
pub struct NpySource {
    params: NpyParams,
    unit: SplitUnit,
    /// Dev and test files, when given instead of fractions.
    held_out: [Option<SplitFiles>; 2],
}

impl NpySource {
    fn new(p: NpyParams) -> Result<Self> {
        p.split.check(NAME)?;
        let unit = match p.split_by {
            SplitBy::Sentence => SplitUnit::Sentence,
            SplitBy::Token => SplitUnit::Token,
        };
        let dev = split_files(&p, "dev", &p.dev_path, &p.dev_labels, &p.dev_words)?;
        let test = split_files(&p, "test", &p.test_path, &p.test_labels, &p.test_words)?;
        if (dev.is_some() || test.is_some()) && p.split != SplitFractions::default() {
            return Err(invalid(
                NAME,
                "dev",
                format!("{} (test = {})", p.split.dev, p.split.test),
                "no `dev` or `test` fraction when dev_path or test_path gives the held-out \
                 splits as files; remove the fractions",
            ));
        }
        Ok(NpySource {
            params: p,
            unit,
            held_out: [dev, test],
        })
    }

    /// Reads one set of files: the matrix, its labels and words, checked
    /// against each other, with non-finite rows handled as configured.
    fn read_part(&self, cx: &RunContext, files: &SplitFiles) -> Result<Part> {
        let p = &self.params;
        let mut matrix = read_matrix_file(&files.matrix, p.array.as_deref())?;
        if p.non_finite == NonFinite::Reject {
            check_finite_rows(&files.matrix, &matrix)?;
        }
        let rows = matrix.nrows();
        let (mut labels, mut words) = read_labels_and_words(files, rows)?;
        let mut skipped_rows = 0;
        if p.non_finite == NonFinite::Skip {
            let skipped = skip_non_finite_rows(&mut matrix, &mut labels, words.as_mut());
            if let Some(&first) = skipped.first() {
                if skipped.len() == rows {
                    return Err(Error::format(
                        &files.matrix,
                        None,
                        "every row holds NaN or infinity, so `non_finite = \"skip\"` leaves nothing to analyse",
                    ));
                }
                cx.warn(&format!(
                    "{}: skipped {} of {rows} rows holding NaN or infinity (the first is row {first}, counting from 0), with their labels",
                    files.matrix.display(),
                    skipped.len()
                ));
                skipped_rows = skipped.len();
            }
        }
        Ok(Part {
            matrix,
            labels,
            words,
            skipped: skipped_rows,
        })
    }

    /// The training files followed by the held-out ones, as one part whose
    /// rows are in split order, and the split sizes.
    fn read_given_splits(&self, cx: &RunContext, mut train: Part) -> Result<(Part, Splits)> {
        let mut sizes = [train.matrix.nrows(), 0, 0];
        // Each file is at least one sentence: a file without blank lines
        // is one, and sentences never run across files.
        let ensure_starts = |part: &mut Part| {
            if part.labels.sentence_starts.is_empty() {
                part.labels.sentence_starts.push(0);
            }
        };
        ensure_starts(&mut train);
        for (slot, files) in self.held_out.iter().enumerate() {
            let Some(files) = files else { continue };
            let mut part = self.read_part(cx, files)?;
            if part.matrix.ncols() != train.matrix.ncols() {
                return Err(Error::format(
                    &files.matrix,
                    None,
                    format!(
                        "has {} neurons per row but {} has {}; the splits must come from the same \
                         model, layers and layout",
                        part.matrix.ncols(),
                        self.params.path.display(),
                        train.matrix.ncols()
                    ),
                ));
            }
            if train.labels.numeric_order.is_some() != part.labels.numeric_order.is_some() {
                return Err(Error::format(
                    &files.labels,
                    None,
                    format!(
                        "gives labels in another form than {} (integer ids in .npy against text); \
                         give every split's labels in the same form",
                        self.params.labels.display()
                    ),
                ));
            }
            ensure_starts(&mut part);
            let offset = train.matrix.nrows();
            train.skipped += part.skipped;
            sizes[slot + 1] = part.matrix.nrows();
            train.matrix =
                ndarray::concatenate(ndarray::Axis(0), &[train.matrix.view(), part.matrix.view()])
                    .map_err(|e| Error::input(format!("cannot join the splits: {e}")))?;
            train.labels.names.extend(part.labels.names);
            train
                .labels
                .sentence_starts
                .extend(part.labels.sentence_starts.iter().map(|s| s + offset));
            if let (Some(order), Some(more)) =
                (&mut train.labels.numeric_order, part.labels.numeric_order)
            {
                order.extend(more);
                order.sort_by_key(|id| id.parse::<i64>().unwrap_or(i64::MAX));
                order.dedup();
            }
            if let (Some(words), Some(more)) = (&mut train.words, part.words) {
                words.extend(more);
            }
        }
        if train.labels.sentence_starts.len() == 1 {
            train.labels.sentence_starts.clear();
        }
        let splits = Splits {
            train: sizes[0],
            dev: sizes[1],
            test: sizes[2],
        };
        Ok((train, splits))
    }
}

/// The files of the `split` held out, when its matrix is given; an error
/// when a file of the set is missing or given without its matrix.
fn split_files(
    p: &NpyParams,
    split: &str,
    matrix: &Option<PathBuf>,
    labels: &Option<PathBuf>,
    words: &Option<PathBuf>,
) -> Result<Option<SplitFiles>> {
    let Some(matrix) = matrix else {
        super::held_out_companions_need_main(
            NAME,
            split,
            "path",
            [("labels", labels), ("words", words)],
        )?;
        return Ok(None);
    };
    let Some(labels) = labels else {
        return Err(invalid(
            NAME,
            &format!("{split}_labels"),
            "missing",
            &format!("the labels of {} (one per row)", matrix.display()),
        ));
    };
    if p.words.is_some() != words.is_some() {
        let (name, why) = if p.words.is_some() {
            (
                format!("{split}_words"),
                "the words of the split, since `words` is set",
            )
        } else {
            (
                "words".to_string(),
                "the training words too, since a held-out split has words",
            )
        };
        return Err(invalid(NAME, &name, "missing", why));
    }
    Ok(Some(SplitFiles {
        matrix: matrix.clone(),
        labels: labels.clone(),
        words: words.clone(),
    }))
}

impl NpySource {
    /// The dataset the rows of a file set make, without their activations:
    /// neurons, labels, words and splits (drawn as `load` draws them), and
    /// the order of the file's rows in it.
    fn arrange(
        &self,
        cx: &RunContext,
        facts: RowFacts,
        given: Option<Splits>,
    ) -> Result<(DatasetOutline, Vec<usize>)> {
        let RowFacts {
            rows,
            cols,
            labels,
            words,
            skipped,
        } = facts;
        let p = &self.params;
        let mut details = std::collections::BTreeMap::new();
        if skipped > 0 {
            details.insert(
                "rows skipped (NaN or infinity)".to_string(),
                skipped.to_string(),
            );
        }
        let neurons = NeuronIndex::layer_major_from(cols, p.layers, p.first_layer).map_err(|_| {
            Error::format(
                &p.path,
                None,
                format!(
                    "the matrix has {} neurons, which is not a whole number of neurons per layer for layers = {}; \
                     set `layers` to the number of layers the file holds",
                    cols,
                    p.layers
                ),
            )
        })?;
        let spec = SplitSpec {
            dev: p.split.dev,
            test: p.split.test,
            shuffle: p.shuffle,
            unit: self.unit,
        };
        let starts =
            (!labels.sentence_starts.is_empty()).then_some(labels.sentence_starts.as_slice());
        if given.is_none()
            && starts.is_none()
            && self.unit == SplitUnit::Sentence
            && p.split.dev + p.split.test > 0.0
        {
            cx.info(&format!(
                "{}: no blank lines separate sentences, so the file is one sentence and the \
                 splits are drawn by token; add blank lines between sentences to keep them whole",
                p.labels.display()
            ));
        }
        let (order, splits) = match given {
            // Given as files: kept in file order, train then dev then test.
            Some(splits) => ((0..rows).collect(), splits),
            None => assign_splits(rows, starts, &spec, &mut cx.rng_for("split"))?,
        };
        let identity = order.iter().enumerate().all(|(i, &r)| i == r);
        let reorder = |v: &[String]| order.iter().map(|&r| v[r].clone()).collect::<Vec<_>>();
        let label_names = if identity {
            labels.names.clone()
        } else {
            reorder(&labels.names)
        };
        let tokens = match words {
            // Without blank lines the file is one sentence, split by token.
            Some(words) if labels.sentence_starts.is_empty() => {
                Some(Tokens::single_sentence(if identity {
                    words
                } else {
                    reorder(&words)
                }))
            }
            Some(words) => {
                let starts = reorder_sentence_starts(&labels.sentence_starts, rows, &order);
                let words = if identity { words } else { reorder(&words) };
                Some(Tokens::new(words, starts).map_err(|e| {
                    Error::format(
                        p.words.as_deref().unwrap_or(&p.labels),
                        None,
                        format!(
                            "its sentences do not line up with the labels file's ({e}); give both \
                             files the same blank lines between sentences"
                        ),
                    )
                })?)
            }
            None => None,
        };
        let vocab = match &labels.numeric_order {
            Some(names) => ClassVocab::in_order(names.clone())?,
            None => ClassVocab::from_names(label_names.iter().cloned()),
        };
        let ids = label_names
            .iter()
            .map(|n| vocab.id(n).expect("label in its vocabulary"))
            .collect();
        let outline = DatasetOutline {
            name: cx.step().trim_start_matches("source.").to_string(),
            neurons,
            labels: Labels::new(ids, vocab)?,
            tokens,
            splits,
            truth: None,
            details,
        };
        Ok((outline, order))
    }

    /// Whether `stream` can read the file a block at a time: a plain
    /// row-major `.npy` file, splits drawn from it, non-finite rows refused.
    fn streamable(&self) -> bool {
        let p = &self.params;
        let npy = p
            .path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
        npy && self.held_out.iter().all(Option::is_none) && p.non_finite == NonFinite::Reject
    }
}

impl ActivationSource for NpySource {
    fn load(&self, cx: &RunContext) -> Result<Dataset<'static>> {
        let p = &self.params;
        let train_files = SplitFiles {
            matrix: p.path.clone(),
            labels: p.labels.clone(),
            words: p.words.clone(),
        };
        let train = self.read_part(cx, &train_files)?;
        let (part, given) = if self.held_out.iter().any(Option::is_some) {
            let (part, splits) = self.read_given_splits(cx, train)?;
            (part, Some(splits))
        } else {
            (train, None)
        };
        let Part {
            matrix,
            labels,
            words,
            skipped,
        } = part;
        let facts = RowFacts {
            rows: matrix.nrows(),
            cols: matrix.ncols(),
            labels,
            words,
            skipped,
        };
        let (outline, order) = self.arrange(cx, facts, given)?;
        let identity = order.iter().enumerate().all(|(i, &r)| i == r);
        let acts = if identity {
            ActivationMatrix::from_array(matrix)
        } else {
            ActivationMatrix::from_array(matrix).permute_rows(&order)
        };
        // Finiteness was checked (or non-finite rows dropped) on the file's
        // rows, before any shuffling.
        outline.into_dataset(acts)
    }

    /// Reads a plain `.npy` file a block of rows at a time, in the dataset's
    /// row order, so that `lca store import` writes a file larger than
    /// memory; other files and options are loaded whole (`None`).
    fn stream(&self, cx: &RunContext, sink: &mut dyn RowSink) -> Result<Option<DatasetOutline>> {
        if !self.streamable() {
            return Ok(None);
        }
        let p = &self.params;
        let header = npy_header(&p.path)?;
        if header.fortran_order {
            return Ok(None);
        }
        let files = SplitFiles {
            matrix: p.path.clone(),
            labels: p.labels.clone(),
            words: p.words.clone(),
        };
        let (labels, words) = read_labels_and_words(&files, header.rows)?;
        let (outline, order) = self.arrange(
            cx,
            RowFacts {
                rows: header.rows,
                cols: header.cols,
                labels,
                words,
                skipped: 0,
            },
            None,
        )?;
        sink.begin(header.rows, &outline.neurons)?;
        let block_rows = sink.block_rows().max(1);
        let held = sink.rows_held().min(header.rows);
        let file = open(&p.path)?;
        if let Some(progress) = cx.progress() {
            progress.start("reading activations", header.rows as u64, "rows");
            progress.advance((held - held % block_rows) as u64);
        }
        let result = (|| -> Result<()> {
            let end = sink.rows_wanted_end().min(header.rows);
            for first in (held - held % block_rows..end).step_by(block_rows) {
                cx.check_cancelled()?;
                let rows = &order[first..(first + block_rows).min(header.rows)];
                let block = read_npy_rows(&p.path, &file, &header, rows)?;
                sink.push(first, block.view())?;
                if let Some(progress) = cx.progress() {
                    progress.advance(rows.len() as u64);
                }
            }
            Ok(())
        })();
        if let Some(progress) = cx.progress() {
            progress.finish();
        }
        result?;
        Ok(Some(outline))
    }
}

/// The file rows `rows` of a row-major `.npy` file, as `f32`, read with
/// one positioned read per run of consecutive rows (a sentence, after a
/// shuffle). Values are checked as `load` checks them.
fn read_npy_rows(
    path: &Path,
    file: &File,
    header: &NpyHeader,
    rows: &[usize],
) -> Result<Array2<f32>> {
    use std::os::unix::fs::FileExt as _;
    let (cols, item) = (header.cols, header.item());
    let row_bytes = cols * item;
    let mut out = Array2::<f32>::zeros((rows.len(), cols));
    let mut bytes = Vec::new();
    let mut at = 0;
    while at < rows.len() {
        let mut run = 1;
        while at + run < rows.len() && rows[at + run] == rows[at] + run {
            run += 1;
        }
        bytes.resize(run * row_bytes, 0);
        let offset = header.data_start + (rows[at] * row_bytes) as u64;
        file.read_exact_at(&mut bytes, offset)
            .map_err(|e| Error::io("read", path, e))?;
        for (i, raw) in bytes.chunks_exact(row_bytes).enumerate() {
            let file_row = rows[at] + i;
            let mut row = out.row_mut(at + i);
            for (col, (value, raw)) in row.iter_mut().zip(raw.chunks_exact(item)).enumerate() {
                *value = if item == 4 {
                    f32::from_le_bytes(raw.try_into().expect("4 bytes"))
                } else {
                    let wide = f64::from_le_bytes(raw.try_into().expect("8 bytes"));
                    if wide.is_finite() && wide.abs() > f64::from(f32::MAX) {
                        return Err(overflow_error(path, wide, file_row, col));
                    }
                    wide as f32
                };
                if !value.is_finite() {
                    return Err(non_finite_error(path, *value, file_row, col, None));
                }
            }
        }
        at += run;
    }
    Ok(out)
}

/// Reads a 2-D float matrix from `.npy`, `.npz` or `.safetensors`.
///
/// # Errors
/// Missing file, unknown extension, wrong dtype or rank, or an ambiguous
/// array name; the message names the file and the fix.
pub fn read_matrix_file(path: &Path, array: Option<&str>) -> Result<Array2<f32>> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let matrix = match ext.as_str() {
        "npy" => read_npy_f32(path)?,
        "npz" => read_npz(path, array)?,
        "safetensors" => read_safetensors(path, array)?,
        _ => {
            return Err(Error::format(
                path,
                None,
                "unknown activation file type; use a .npy, .npz or .safetensors file holding a tokens × neurons float matrix",
            ));
        }
    };
    let (rows, neurons) = matrix.dim();
    if rows == 0 || neurons == 0 {
        let missing = if neurons == 0 {
            "no neurons"
        } else {
            "no rows"
        };
        return Err(Error::format(
            path,
            None,
            format!(
                "holds a {rows} × {neurons} matrix: {missing}, so there is nothing to analyse; \
                 check the array's shape (tokens × neurons) where the activations were saved"
            ),
        ));
    }
    Ok(matrix)
}

fn open(path: &Path) -> Result<File> {
    File::open(path).map_err(|e| Error::io("open", path, e))
}

/// Reads straight into the array (no intermediate byte buffer, so the peak
/// is one copy of the matrix); float64 files are converted. The header is
/// checked first, so that a damaged file gets one sentence naming what is
/// wrong rather than the parser's trace, and so that the matrix is known to
/// fit in memory before it is allocated.
fn read_npy_f32(path: &Path) -> Result<Array2<f32>> {
    let header = npy_header(path)?;
    lca_core::memory::ensure_fits(
        &format!(
            "{}: the {} × {} matrix",
            path.display(),
            header.rows,
            header.cols
        ),
        header
            .rows
            .checked_mul(header.cols)
            .and_then(|c| lca_core::memory::bytes_of(c as u64, 4)),
        "split the activations into smaller files or select fewer layers when saving them, or \
         write them into a store with `lca store import`, which reads an .npy file a block of \
         rows at a time",
    )?;
    let read_error = |e: ndarray_npy::ReadNpyError| match e {
        ndarray_npy::ReadNpyError::Io(e) => Error::io("read", path, e),
        other => Error::format(
            path,
            None,
            format!(
                "cannot be read as a {} matrix ({}); save the activations as a tokens × neurons \
                 float32 matrix (numpy: np.save(path, x.astype(np.float32)))",
                header.kind,
                one_line(&other.to_string())
            ),
        ),
    };
    let reader = BufReader::new(open(path)?);
    if header.kind == "float32" {
        Array2::<f32>::read_npy(reader).map_err(read_error)
    } else {
        narrow_to_f32(path, &Array2::<f64>::read_npy(reader).map_err(read_error)?)
    }
}

/// A message on one line, however many lines a library wrote.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Converts float64 activations to float32. NaN and infinity pass through
/// (the `non_finite` setting decides about them); a finite value beyond
/// float32's range is an error, since it would silently become infinity.
pub(crate) fn narrow_to_f32(path: &Path, matrix: &Array2<f64>) -> Result<Array2<f32>> {
    let too_large = matrix
        .indexed_iter()
        .find(|(_, v)| v.is_finite() && v.abs() > f64::from(f32::MAX));
    if let Some(((row, col), &value)) = too_large {
        return Err(overflow_error(path, value, row, col));
    }
    Ok(matrix.mapv(|v| v as f32))
}

fn overflow_error(path: &Path, value: f64, row: usize, col: usize) -> Error {
    Error::format(
        path,
        None,
        format!(
            "the float64 value {value:e} at row {row}, column {col} (counting from 0) overflows \
             when converted to float32, whose largest value is {:e}; activations are analysed \
             as float32, so rescale them or check how they were computed",
            f32::MAX
        ),
    )
}

fn non_finite_error(
    path: &Path,
    value: f32,
    row: usize,
    col: usize,
    count: Option<usize>,
) -> Error {
    let count = count.map_or(String::new(), |n| {
        format!("; {n} non-finite value(s) in all")
    });
    Error::format(
        path,
        None,
        format!(
            "holds {value} at row {row}, neuron {col} (counting from 0{count}); NaN and infinite \
             activations cannot be analysed: repair or drop those rows, and their labels"
        ),
    )
}

/// What an `.npy` header declares.
struct NpyHeader {
    kind: &'static str,
    rows: usize,
    cols: usize,
    /// Where the values begin in the file.
    data_start: u64,
    /// Values stored column by column (numpy's `fortran_order`).
    fortran_order: bool,
}

impl NpyHeader {
    /// Bytes per value.
    fn item(&self) -> usize {
        if self.kind == "float32" { 4 } else { 8 }
    }
}

/// Reads and checks an `.npy` file's header against the rest of the file:
/// the signature, the header's length, its fields, the dtype (float32 or
/// float64, little-endian), the rank and the data size the shape implies.
fn npy_header(path: &Path) -> Result<NpyHeader> {
    use std::io::Read;
    let fail = |message: String| {
        Err(Error::format(
            path,
            None,
            format!(
                "{message}; save the activations as a tokens × neurons float32 matrix (numpy: \
                 np.save(path, x.astype(np.float32)))"
            ),
        ))
    };
    let file_len = std::fs::metadata(path)
        .map_err(|e| Error::io("read", path, e))?
        .len();
    let mut file = open(path)?;
    let mut lead = [0u8; 12];
    let got = file
        .read(&mut lead)
        .map_err(|e| Error::io("read", path, e))?;
    if got < 10 || &lead[..6] != b"\x93NUMPY" {
        return fail("is not an .npy file (it lacks the \\x93NUMPY signature)".into());
    }
    let (len, start) = match lead[6] {
        1 => (u64::from(u16::from_le_bytes([lead[8], lead[9]])), 10u64),
        2 | 3 if got >= 12 => (
            u64::from(u32::from_le_bytes([lead[8], lead[9], lead[10], lead[11]])),
            12,
        ),
        v => {
            return fail(format!(
                "has an .npy format version ({v}) this reader does not know, or a cut-off header"
            ));
        }
    };
    if start + len > file_len {
        return fail(format!(
            "is damaged: its header claims {len} bytes, but the file ends {} bytes after the \
             header starts",
            file_len.saturating_sub(start)
        ));
    }
    let mut text = vec![0u8; len as usize];
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(start))
        .and_then(|_| file.read_exact(&mut text))
        .map_err(|e| Error::io("read", path, e))?;
    let damaged = || {
        fail(
            "has a damaged header: it is not a dictionary of 'descr', 'fortran_order' and \
             'shape' as numpy writes it"
                .into(),
        )
    };
    let Ok(header) = std::str::from_utf8(&text) else {
        return damaged();
    };
    let field = |key: &str| {
        let at = header.find(&format!("'{key}'"))? + key.len() + 2;
        let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
        Some(rest.to_string())
    };
    let (Some(descr), Some(shape_text)) = (field("descr"), field("shape")) else {
        return damaged();
    };
    let Some(descr) = descr.strip_prefix('\'').and_then(|d| d.split('\'').next()) else {
        return damaged();
    };
    let Some(shape_text) = shape_text
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
    else {
        return damaged();
    };
    let Some(shape) = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u64>().ok())
        .collect::<Option<Vec<u64>>>()
    else {
        return damaged();
    };
    let kind = match descr.trim_start_matches(['<', '>', '|', '=']) {
        "f4" => "float32",
        "f8" => "float64",
        "f2" => "float16",
        "i1" => "int8",
        "i2" => "int16",
        "i4" => "int32",
        "i8" => "int64",
        "u1" => "uint8",
        "u2" => "uint16",
        "u4" => "uint32",
        "u8" => "uint64",
        "b1" => "bool",
        _ => "non-numeric",
    };
    if kind != "float32" && kind != "float64" {
        return fail(format!(
            "holds {kind} values (dtype '{descr}'), but activations must be float32 or float64"
        ));
    }
    if descr.starts_with('>') {
        return fail(format!(
            "holds big-endian {kind} values (dtype '{descr}'); only little-endian files are read \
             (numpy: x.astype('<f4'))"
        ));
    }
    if shape.len() != 2 {
        return fail(format!(
            "is a {}-D array of shape ({shape_text}), but activations must be a 2-D tokens × neurons matrix",
            shape.len()
        ));
    }
    let item = if kind == "float32" { 4 } else { 8 };
    let want = shape[0]
        .checked_mul(shape[1])
        .and_then(|c| c.checked_mul(item));
    let have = file_len - start - len;
    match want {
        Some(want) if have < want => {
            return fail(format!(
                "is truncated: its header promises {} × {} {kind} values ({want} bytes) but only \
                 {have} bytes follow; the file was cut short while being written or copied",
                shape[0], shape[1]
            ));
        }
        Some(want) if have > want => {
            return fail(format!(
                "holds more data than its header declares: the shape ({} × {}) makes {want} bytes \
                 of {kind} but {have} bytes follow, so the header and the data disagree on the \
                 matrix's size (the dtype, '{descr}', is fine); the header was written for \
                 another array",
                shape[0], shape[1]
            ));
        }
        None => {
            return fail(format!(
                "declares a shape ({} × {}) too large for any file",
                shape[0], shape[1]
            ));
        }
        Some(_) => {}
    }
    let fortran_order = field("fortran_order").is_some_and(|v| v.starts_with("True"));
    let (Ok(rows), Ok(cols)) = (usize::try_from(shape[0]), usize::try_from(shape[1])) else {
        return fail(format!(
            "declares a shape ({} × {}) too large for this machine",
            shape[0], shape[1]
        ));
    };
    Ok(NpyHeader {
        kind,
        rows,
        cols,
        data_start: start + len,
        fortran_order,
    })
}

/// Drops the rows holding NaN or infinity from the matrix, the labels (and
/// their sentence boundaries and line numbers) and the words; returns the
/// dropped rows.
fn skip_non_finite_rows(
    matrix: &mut Array2<f32>,
    labels: &mut LabelFile,
    words: Option<&mut Vec<String>>,
) -> Vec<usize> {
    let bad: Vec<usize> = matrix
        .rows()
        .into_iter()
        .enumerate()
        .filter(|(_, row)| row.iter().any(|v| !v.is_finite()))
        .map(|(r, _)| r)
        .collect();
    if bad.is_empty() {
        return bad;
    }
    let n = matrix.nrows();
    let mut is_bad = vec![false; n];
    for &r in &bad {
        is_bad[r] = true;
    }
    let keep: Vec<usize> = (0..n).filter(|&r| !is_bad[r]).collect();
    *matrix = matrix.select(ndarray::Axis(0), &keep);
    let pick = |v: &Vec<String>| keep.iter().map(|&r| v[r].clone()).collect::<Vec<_>>();
    labels.names = pick(&labels.names);
    if !labels.lines.is_empty() {
        labels.lines = keep.iter().map(|&r| labels.lines[r]).collect();
    }
    if let Some(words) = words {
        *words = pick(words);
    }
    if !labels.sentence_starts.is_empty() {
        // A sentence now starts at its first kept row; emptied ones vanish.
        let mut new_index = vec![usize::MAX; n];
        for (i, &r) in keep.iter().enumerate() {
            new_index[r] = i;
        }
        let mut starts = Vec::new();
        for (s, &start) in labels.sentence_starts.iter().enumerate() {
            let end = labels.sentence_starts.get(s + 1).copied().unwrap_or(n);
            if let Some(first) = (start..end).find(|&r| !is_bad[r]) {
                starts.push(new_index[first]);
            }
        }
        labels.sentence_starts = starts;
    }
    bad
}

/// Rejects NaN and infinite activations, naming the row and column of the
/// first as they are in the file (before any shuffling).
fn check_finite_rows(path: &Path, matrix: &Array2<f32>) -> Result<()> {
    let found = match matrix.as_slice() {
        Some(flat) => flat
            .iter()
            .position(|v| !v.is_finite())
            .map(|i| (i / matrix.ncols().max(1), i % matrix.ncols().max(1))),
        None => matrix
            .indexed_iter()
            .find(|(_, v)| !v.is_finite())
            .map(|(at, _)| at),
    };
    match found {
        None => Ok(()),
        Some((r, c)) => {
            let count = matrix.iter().filter(|v| !v.is_finite()).count();
            Err(non_finite_error(path, matrix[[r, c]], r, c, Some(count)))
        }
    }
}

fn read_npz(path: &Path, array: Option<&str>) -> Result<Array2<f32>> {
    let mut npz = NpzReader::new(open(path)?)
        .map_err(|e| Error::format(path, None, format!("not a readable .npz archive ({e})")))?;
    let names = npz
        .names()
        .map_err(|e| Error::format(path, None, format!("cannot list arrays ({e})")))?;
    let name = pick_array(
        path,
        array,
        names
            .iter()
            .map(|n| n.trim_end_matches(".npy").to_string())
            .collect(),
    )?;
    let entry = names
        .iter()
        .find(|n| n.trim_end_matches(".npy") == name)
        .cloned()
        .unwrap_or(name.clone());
    if let Ok(a) = npz.by_name::<ndarray::OwnedRepr<f32>, ndarray::Ix2>(&entry) {
        return Ok(a);
    }
    let wide = npz
        .by_name::<ndarray::OwnedRepr<f64>, ndarray::Ix2>(&entry)
        .map_err(|e| {
            Error::format(
                path,
                None,
                format!(
                    "array `{name}` is not a 2-D float32 or float64 array ({})",
                    one_line(&e.to_string())
                ),
            )
        })?;
    narrow_to_f32(path, &wide)
}

fn read_safetensors(path: &Path, array: Option<&str>) -> Result<Array2<f32>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io("read", path, e))?;
    let tensors = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::format(path, None, format!("not a valid safetensors file ({e})")))?;
    let name = pick_array(
        path,
        array,
        tensors.names().into_iter().map(String::from).collect(),
    )?;
    let view = tensors
        .tensor(&name)
        .map_err(|e| Error::format(path, None, format!("cannot read tensor `{name}` ({e})")))?;
    let shape = view.shape().to_vec();
    if shape.len() != 2 {
        return Err(Error::format(
            path,
            None,
            format!("tensor `{name}` has shape {shape:?}; a 2-D tokens × neurons matrix is needed"),
        ));
    }
    let data: Vec<f32> = match view.dtype() {
        safetensors::Dtype::F32 => view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        safetensors::Dtype::F64 => {
            let wide: Vec<f64> = view
                .data()
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
                .collect();
            let wide = Array2::from_shape_vec((shape[0], shape[1]), wide)
                .map_err(|e| Error::format(path, None, format!("tensor `{name}`: {e}")))?;
            return narrow_to_f32(path, &wide);
        }
        other => {
            return Err(Error::format(
                path,
                None,
                format!(
                    "tensor `{name}` has dtype {other:?}; only F32 and F64 are supported, convert it to F32"
                ),
            ));
        }
    };
    Array2::from_shape_vec((shape[0], shape[1]), data)
        .map_err(|e| Error::format(path, None, format!("tensor `{name}`: {e}")))
}

fn pick_array(path: &Path, wanted: Option<&str>, mut names: Vec<String>) -> Result<String> {
    names.sort();
    match wanted {
        Some(w) if names.iter().any(|n| n == w) => Ok(w.to_string()),
        Some(w) => Err(Error::format(
            path,
            None,
            format!("has no array `{w}`; it holds: {}", names.join(", ")),
        )),
        None if names.len() == 1 => Ok(names.remove(0)),
        None if names.is_empty() => Err(Error::format(path, None, "holds no arrays")),
        None => Err(Error::format(
            path,
            None,
            format!(
                "holds several arrays ({}); choose one with the `array` parameter",
                names.join(", ")
            ),
        )),
    }
}

/// A parsed labels file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelFile {
    /// One label per row.
    pub names: Vec<String>,
    /// Row at which each sentence starts (empty when the file has no blank lines).
    pub sentence_starts: Vec<usize>,
    /// For integer `.npy` labels: class names in numeric order.
    pub numeric_order: Option<Vec<String>>,
    /// The 1-based line of each row (text files only).
    pub lines: Vec<usize>,
}

/// Reads a labels file: one label per line with blank lines between
/// sentences, or an `.npy` vector of integer class ids. Windows line endings
/// are accepted.
///
/// # Errors
/// Unreadable or non-UTF-8 files, lines with more than one field, empty files.
pub fn read_label_file(path: &Path) -> Result<LabelFile> {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"))
    {
        return read_npy_labels(path);
    }
    let (fields, sentence_starts, lines) = read_one_per_line(path, "label")?;
    Ok(LabelFile {
        names: fields,
        sentence_starts,
        numeric_order: None,
        lines,
    })
}

fn read_npy_labels(path: &Path) -> Result<LabelFile> {
    let bytes = std::fs::read(path).map_err(|e| Error::io("read", path, e))?;
    let ids: Vec<i64> = if let Ok(a) = Array1::<i64>::read_npy(bytes.as_slice()) {
        a.to_vec()
    } else if let Ok(a) = Array1::<i32>::read_npy(bytes.as_slice()) {
        a.iter().map(|&v| i64::from(v)).collect()
    } else {
        return Err(Error::format(
            path,
            None,
            "not a 1-D int64 or int32 array of class ids",
        ));
    };
    if let Some((i, v)) = ids.iter().enumerate().find(|(_, v)| **v < 0) {
        return Err(Error::format(
            path,
            None,
            format!("label {i} is {v}; class ids must be ≥ 0"),
        ));
    }
    let mut distinct = ids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    Ok(LabelFile {
        names: ids.iter().map(i64::to_string).collect(),
        sentence_starts: Vec::new(),
        numeric_order: Some(distinct.iter().map(i64::to_string).collect()),
        lines: Vec::new(),
    })
}

fn read_words_file(path: &Path, labels: &LabelFile, labels_path: &Path) -> Result<Vec<String>> {
    let (words, starts, lines) = read_one_per_line(path, "word")?;
    if words.len() != labels.names.len() {
        return Err(Error::format(
            path,
            None,
            format!(
                "has {} words but {} has {} labels; the two files must list the same tokens line by line",
                words.len(),
                labels_path.display(),
                labels.names.len()
            ),
        ));
    }
    if !labels.sentence_starts.is_empty() && starts != labels.sentence_starts {
        let first = starts
            .iter()
            .zip(&labels.sentence_starts)
            .position(|(a, b)| a != b)
            .unwrap_or(starts.len().min(labels.sentence_starts.len()));
        let line = starts.get(first).and_then(|&row| lines.get(row)).copied();
        return Err(Error::format(
            path,
            line,
            format!(
                "sentence {} starts at a different token than in {}; blank lines must be at the same places in both files",
                first + 1,
                labels_path.display()
            ),
        ));
    }
    Ok(words)
}

/// One field per line, blank lines separating sentences. Returns the fields,
/// the sentence starts (empty if there is a single block) and the 1-based line
/// of every field.
fn read_one_per_line(path: &Path, what: &str) -> Result<(Vec<String>, Vec<usize>, Vec<usize>)> {
    let text = lca_core::io::read_utf8(path, "read", "re-encode the file as UTF-8")?;
    let mut fields = Vec::new();
    let mut lines = Vec::new();
    let mut starts = Vec::new();
    let mut at_sentence_start = true;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r').trim();
        if line.is_empty() {
            at_sentence_start = true;
            continue;
        }
        if line.split_whitespace().nth(1).is_some() {
            return Err(Error::format(
                path,
                Some(i + 1),
                format!(
                    "has more than one {what} on a line ({line:?}); this reader expects one {what} per line \
                     with a blank line between sentences"
                ),
            ));
        }
        if at_sentence_start {
            starts.push(fields.len());
            at_sentence_start = false;
        }
        fields.push(line.to_string());
        lines.push(i + 1);
    }
    if fields.is_empty() {
        return Err(Error::format(path, None, format!("contains no {what}s")));
    }
    if starts.len() == 1 {
        starts.clear();
    }
    Ok((fields, starts, lines))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray_npy::WriteNpyExt;
    use std::io::Write;

    fn write(dir: &Path, name: &str, text: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::File::create(&path)
            .unwrap()
            .write_all(text)
            .unwrap();
        path
    }

    fn write_matrix(dir: &Path, rows: usize, cols: usize) -> PathBuf {
        let path = dir.join("acts.npy");
        let a = Array2::from_shape_fn((rows, cols), |(r, c)| (r * cols + c) as f32);
        a.write_npy(File::create(&path).unwrap()).unwrap();
        path
    }

    fn source(table: &str) -> Result<Dataset<'static>> {
        let table: toml::Table = table.parse().unwrap();
        let Component::Source(s) = (descriptor().build)(&table)? else {
            unreachable!()
        };
        s.load(&RunContext::new(1, 1).for_step("source.acts"))
    }

    #[test]
    fn labels_with_blank_lines_and_crlf() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "l.txt", b"NN\r\nVB\r\n\r\nDT\r\nNN\r\n");
        let l = read_label_file(&path).unwrap();
        assert_eq!(l.names, vec!["NN", "VB", "DT", "NN"]);
        assert_eq!(l.sentence_starts, vec![0, 2]);
        assert_eq!(l.lines, vec![1, 2, 4, 5]);
    }

    #[test]
    fn two_fields_on_a_line_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "l.txt", b"NN\nVB DT\n");
        let err = read_label_file(&path).unwrap_err().to_string();
        assert!(
            err.contains("l.txt:2:") && err.contains("more than one label"),
            "{err}"
        );
    }

    #[test]
    fn invalid_utf8_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "l.txt", b"NN\nV\xffB\n");
        let err = read_label_file(&path).unwrap_err().to_string();
        assert!(err.contains("l.txt:2:") && err.contains("UTF-8"), "{err}");
    }

    #[test]
    fn loads_and_splits_by_sentence() {
        let dir = tempfile::tempdir().unwrap();
        let acts = write_matrix(dir.path(), 6, 4);
        let labels = write(dir.path(), "l.txt", b"a\nb\n\na\nb\n\na\nb\n");
        let words = write(dir.path(), "w.txt", b"the\ncat\n\na\ndog\n\nsome\nfish\n");
        let d = source(&format!(
            "path = {acts:?}\nlabels = {labels:?}\nwords = {words:?}\nlayers = 2\ndev = 0.34\ntest = 0.34"
        ))
        .unwrap();
        assert_eq!(d.name(), "acts");
        assert_eq!(d.splits().total(), 6);
        assert_eq!(d.splits().train, 2);
        assert_eq!(d.neurons().layers(), vec![0, 1]);
        let tokens = d.tokens().unwrap();
        assert_eq!(tokens.sentence_starts(), &[0, 2, 4]);
        // Rows moved together with their words and labels.
        let view = d.acts().view();
        for (row, word) in tokens.words().iter().enumerate() {
            let original = ["the", "cat", "a", "dog", "some", "fish"]
                .iter()
                .position(|w| w == word)
                .unwrap();
            assert_eq!(view[[row, 0]], (original * 4) as f32);
        }
    }

    fn built(table: &str) -> Box<dyn ActivationSource> {
        let table: toml::Table = table.parse().unwrap();
        let Ok(Component::Source(s)) = (descriptor().build)(&table) else {
            unreachable!()
        };
        s
    }

    /// What `lca store import` writes from a plain `.npy` file, a block at a
    /// time, is what `load` gives: the same rows in the same (shuffled)
    /// order, words, labels and splits, whether the sink holds rows already
    /// or not, from float32 and float64 files.
    #[test]
    fn a_streamed_npy_file_gives_the_loaded_dataset_in_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let (rows, cols) = (60, 6);
        let values =
            Array2::from_shape_fn((rows, cols), |(r, c)| (r * cols + c) as f64 * 0.37 - 9.0);
        let f32_path = dir.path().join("acts32.npy");
        values
            .mapv(|v| v as f32)
            .write_npy(File::create(&f32_path).unwrap())
            .unwrap();
        let f64_path = dir.path().join("acts64.npy");
        values.write_npy(File::create(&f64_path).unwrap()).unwrap();
        // Sentences of 1 to 5 words, labels from 4 classes.
        let (mut labels, mut words) = (String::new(), String::new());
        for r in 0..rows {
            labels.push_str(&format!("C{}\n", (r * 7) % 4));
            words.push_str(&format!("w{r}\n"));
            if r % 5 == 3 || r % 7 == 0 {
                labels.push('\n');
                words.push('\n');
            }
        }
        let labels = write(dir.path(), "l.txt", labels.as_bytes());
        let words = write(dir.path(), "w.txt", words.as_bytes());
        let cx = RunContext::new(3, 1).for_step("source.acts");
        for path in [&f32_path, &f64_path] {
            let source = built(&format!(
                "path = {path:?}\nlabels = {labels:?}\nwords = {words:?}\nlayers = 2\ndev = 0.2\ntest = 0.2"
            ));
            let loaded = source.load(&cx).unwrap();
            let view = loaded.acts().view();
            for (held, block) in [(0, 7), (13, 5), (0, 1000), (rows, 4)] {
                let mut sink = lca_testkit::CollectingSink::new(held, block);
                let outline = source
                    .stream(&cx, &mut sink)
                    .unwrap()
                    .expect("a plain .npy file streams");
                assert_eq!(sink.announced, Some((rows, cols)));
                assert_eq!(sink.rows.len(), rows - held);
                for (i, row) in sink.rows.iter().enumerate() {
                    assert_eq!(
                        row.as_slice(),
                        view.row(held + i).as_slice().unwrap(),
                        "row {}",
                        held + i
                    );
                }
                assert_eq!(sink.pushes, (rows - held / block * block).div_ceil(block));
                let ours = loaded.outline();
                assert_eq!(outline.splits, ours.splits);
                assert_eq!(outline.labels, ours.labels);
                assert_eq!(outline.tokens, ours.tokens);
                assert_eq!(outline.neurons, ours.neurons);
                assert_eq!(outline.name, ours.name);
            }
        }
        // Files and options it cannot read by rows are loaded instead.
        let skip = built(&format!(
            "path = {f32_path:?}\nlabels = {labels:?}\nnon_finite = \"skip\""
        ));
        assert!(
            skip.stream(&cx, &mut lca_testkit::CollectingSink::new(0, 8))
                .unwrap()
                .is_none()
        );
    }

    /// A NaN met while streaming names the file's row, not the shuffled one.
    #[test]
    fn a_streamed_npy_file_names_its_first_non_finite_row() {
        let dir = tempfile::tempdir().unwrap();
        let mut values = Array2::from_shape_fn((20, 3), |(r, c)| (r + c) as f32);
        values[[17, 2]] = f32::NAN;
        let path = dir.path().join("acts.npy");
        values.write_npy(File::create(&path).unwrap()).unwrap();
        let labels = write(dir.path(), "l.txt", "a\nb\n".repeat(10).as_bytes());
        let source = built(&format!(
            "path = {path:?}\nlabels = {labels:?}\nshuffle = false"
        ));
        let cx = RunContext::new(1, 1).for_step("source.acts");
        let err = source
            .stream(&cx, &mut lca_testkit::CollectingSink::new(0, 4))
            .unwrap_err()
            .to_string();
        assert!(err.contains("row 17, neuron 2"), "{err}");
        assert!(err.contains("acts.npy"), "{err}");
    }

    fn write_matrix_named(dir: &Path, name: &str, rows: usize, cols: usize, base: f32) -> PathBuf {
        let path = dir.join(name);
        let a = Array2::from_shape_fn((rows, cols), |(r, c)| base + (r * cols + c) as f32);
        a.write_npy(File::create(&path).unwrap()).unwrap();
        path
    }

    #[test]
    fn held_out_splits_can_be_given_as_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let train = write_matrix_named(d, "train.npy", 4, 2, 0.0);
        let dev = write_matrix_named(d, "dev.npy", 2, 2, 100.0);
        let test = write_matrix_named(d, "test.npy", 3, 2, 200.0);
        let train_labels = write(d, "train.txt", b"a\nb\n\na\nb\n");
        let dev_labels = write(d, "dev.txt", b"a\nb\n");
        let test_labels = write(d, "test.txt", b"a\nb\nc\n");
        let train_words = write(d, "train.w", b"the\ncat\n\na\ndog\n");
        let dev_words = write(d, "dev.w", b"my\nfish\n");
        let test_words = write(d, "test.w", b"one\nred\nbird\n");
        let ds = source(&format!(
            "path = {train:?}\nlabels = {train_labels:?}\nwords = {train_words:?}\n\
             dev_path = {dev:?}\ndev_labels = {dev_labels:?}\ndev_words = {dev_words:?}\n\
             test_path = {test:?}\ntest_labels = {test_labels:?}\ntest_words = {test_words:?}"
        ))
        .unwrap();
        assert_eq!(
            ds.splits(),
            Splits {
                train: 4,
                dev: 2,
                test: 3
            }
        );
        // Kept in file order: train, then dev, then test.
        let view = ds.acts().view();
        assert_eq!(view[[0, 0]], 0.0);
        assert_eq!(view[[4, 0]], 100.0);
        assert_eq!(view[[6, 1]], 201.0);
        let tokens = ds.tokens().unwrap();
        assert_eq!(tokens.words()[4], "my");
        // A file is at least one sentence; sentences never span files.
        assert_eq!(tokens.sentence_starts(), &[0, 2, 4, 6]);
        // A class seen only in the test file is still a class.
        assert_eq!(ds.labels().vocab().len(), 3);

        // Only dev given: test is empty, not drawn from the training file.
        let ds = source(&format!(
            "path = {train:?}\nlabels = {train_labels:?}\n\
             dev_path = {dev:?}\ndev_labels = {dev_labels:?}"
        ))
        .unwrap();
        assert_eq!(
            (ds.splits().train, ds.splits().dev, ds.splits().test),
            (4, 2, 0)
        );
    }

    #[test]
    fn held_out_files_must_be_complete_and_agree() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let train = write_matrix_named(d, "train.npy", 4, 2, 0.0);
        let wide = write_matrix_named(d, "wide.npy", 2, 3, 0.0);
        let labels = write(d, "train.txt", b"a\nb\na\nb\n");
        let two = write(d, "two.txt", b"a\nb\n");
        let base = format!("path = {train:?}\nlabels = {labels:?}\n");
        let err = |extra: String| source(&(base.clone() + &extra)).unwrap_err().to_string();

        let e = err(format!("dev_path = {wide:?}"));
        assert!(e.contains("`dev_labels` = missing"), "{e}");
        let e = err(format!("test_labels = {two:?}"));
        assert!(
            e.contains("`test_labels`") && e.contains("test_path as well"),
            "{e}"
        );
        let e = err(format!("dev_path = {wide:?}\ndev_labels = {two:?}"));
        assert!(
            e.contains("wide.npy") && e.contains("has 3 neurons per row"),
            "{e}"
        );
        let e = err(format!(
            "dev_path = {wide:?}\ndev_labels = {two:?}\ndev = 0.2"
        ));
        assert!(e.contains("no `dev` or `test` fraction"), "{e}");
        let e = err(format!("dev_path = {wide:?}\ndev_labels = {labels:?}"));
        assert!(e.contains("train.txt") && e.contains("has 4 labels"), "{e}");
    }

    #[test]
    fn count_mismatch_names_both_files_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let acts = write_matrix(dir.path(), 3, 2);
        let labels = write(dir.path(), "l.txt", b"a\nb\n");
        let err = source(&format!("path = {acts:?}\nlabels = {labels:?}"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("l.txt") && err.contains("has 2 labels") && err.contains("has 3 rows"),
            "{err}"
        );
    }

    #[test]
    fn indivisible_layers_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        let acts = write_matrix(dir.path(), 2, 5);
        let labels = write(dir.path(), "l.txt", b"a\nb\n");
        let err = source(&format!(
            "path = {acts:?}\nlabels = {labels:?}\nlayers = 2\ndev = 0\ntest = 0.4"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("5 neurons") && err.contains("layers = 2"),
            "{err}"
        );
    }

    #[test]
    fn non_finite_rows_can_be_skipped_with_their_labels_and_words() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acts.npy");
        // Two sentences: rows 0-2 and 3-5; rows 1 and 3 are broken, row 5 too.
        let mut a = Array2::<f32>::from_shape_fn((6, 2), |(r, c)| (r * 2 + c) as f32);
        a[[1, 0]] = f32::NAN;
        a[[3, 1]] = f32::NEG_INFINITY;
        a[[5, 0]] = f32::NAN;
        a.write_npy(File::create(&path).unwrap()).unwrap();
        let labels = write(dir.path(), "l.txt", b"a\nb\na\n\nb\na\nb\n");
        let words = write(dir.path(), "w.txt", b"w0\nw1\nw2\n\nw3\nw4\nw5\n");
        let data = source(&format!(
            "path = {path:?}\nlabels = {labels:?}\nwords = {words:?}\nshuffle = false\ndev = 0\ntest = 0\nnon_finite = \"skip\""
        ))
        .unwrap();
        assert_eq!(data.n_rows(), 3);
        let tokens = data.tokens().unwrap();
        assert_eq!(tokens.words(), ["w0", "w2", "w4"]);
        assert_eq!(tokens.sentence_starts(), [0, 2]);
        let names: Vec<&str> = data
            .labels()
            .ids()
            .iter()
            .map(|&i| data.classes().name(i))
            .collect();
        assert_eq!(names, ["a", "a", "a"]);
        assert_eq!(data.acts().view()[[2, 1]], 9.0);
        assert_eq!(data.details()["rows skipped (NaN or infinity)"], "3");
    }

    #[test]
    fn nan_activation_is_rejected_with_its_row_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acts.npy");
        let mut a = Array2::<f32>::zeros((6, 2));
        a[[4, 1]] = f32::NAN;
        a[[5, 0]] = f32::INFINITY;
        a.write_npy(File::create(&path).unwrap()).unwrap();
        let labels = write(dir.path(), "l.txt", b"a\nb\na\nb\na\nb\n");
        // Shuffled splits reorder the rows; the message still names the
        // row as it is in the file.
        let err = source(&format!(
            "path = {path:?}\nlabels = {labels:?}\nshuffle = true\nsplit_by = \"token\"\ndev = 0.2\ntest = 0.2"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("acts.npy")
                && err.contains("NaN at row 4, neuron 1")
                && err.contains("2 non-finite value(s)"),
            "{err}"
        );
    }

    #[test]
    fn safetensors_and_npz_read_the_same_matrix() {
        let dir = tempfile::tempdir().unwrap();
        let a = Array2::from_shape_fn((3, 2), |(r, c)| (r * 2 + c) as f32);
        let bytes: Vec<u8> = a.iter().flat_map(|v| v.to_le_bytes()).collect();
        let view =
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![3, 2], &bytes)
                .unwrap();
        let st = dir.path().join("a.safetensors");
        safetensors::serialize_to_file([("acts", view)], None, &st).unwrap();
        assert_eq!(read_matrix_file(&st, None).unwrap(), a);
        let npz = dir.path().join("a.npz");
        let mut w = ndarray_npy::NpzWriter::new(File::create(&npz).unwrap());
        w.add_array("acts", &a).unwrap();
        w.add_array("other", &a).unwrap();
        w.finish().unwrap();
        assert_eq!(read_matrix_file(&npz, Some("acts")).unwrap(), a);
        let err = read_matrix_file(&npz, None).unwrap_err().to_string();
        assert!(err.contains("several arrays (acts, other)"), "{err}");
    }
}
