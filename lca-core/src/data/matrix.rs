//! The activation matrix: tokens × neurons, `f32`.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;

use ndarray::{Array2, ArrayView2, Axis, CowArray, Ix2, Slice};

use crate::error::{Error, Result};

/// Rows are tokens, columns are neurons.
///
/// The storage is private so that backings can be added without touching
/// the component traits. Values are `f32` in memory, or `f32`, `f16` or
/// `bf16` mapped from a store's shards. Code that reads activations goes
/// through [`Self::block`], [`Self::blocks`] or [`Self::view`], which borrow
/// where the backing holds `f32` and convert otherwise; a component that
/// must not hold the whole matrix (a store may be larger than memory)
/// reads it in row blocks.
///
/// The lifetime lets a matrix borrow memory it does not own, which is how a
/// plugin sees the host's activations without a copy.
#[derive(Clone, Debug)]
pub struct ActivationMatrix<'a> {
    store: Store<'a>,
}

/// Row-major values whose memory belongs to someone else: a buffer that a
/// plugin allocated and handed over, which the host keeps instead of
/// copying it into an allocation of its own.
pub trait ValueBuffer: Send + Sync + 'static {
    /// The values, row-major.
    fn values(&self) -> &[f32];
}

impl std::fmt::Debug for dyn ValueBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ValueBuffer({} values)", self.values().len())
    }
}

/// A 16-bit floating-point format of stored activations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HalfFormat {
    /// IEEE 754 binary16: 11 significant bits, magnitudes up to 65,504.
    F16,
    /// bfloat16: 8 significant bits, the range of `f32`.
    Bf16,
}

impl HalfFormat {
    /// The format's name, as stores and recipes spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            HalfFormat::F16 => "f16",
            HalfFormat::Bf16 => "bf16",
        }
    }

    /// Converts `bits` (values of this format) into `out`, which has the
    /// same length.
    ///
    /// # Panics
    /// If the lengths differ.
    pub fn to_f32(self, bits: &[u16], out: &mut [f32]) {
        use half::slice::{HalfBitsSliceExt as _, HalfFloatSliceExt as _};
        assert_eq!(bits.len(), out.len(), "one f32 per half value");
        match self {
            HalfFormat::F16 => bits
                .reinterpret_cast::<half::f16>()
                .convert_to_f32_slice(out),
            HalfFormat::Bf16 => bits
                .reinterpret_cast::<half::bf16>()
                .convert_to_f32_slice(out),
        }
    }
}

/// Row-major 16-bit values (bit patterns of a [`HalfFormat`]) whose memory
/// belongs to someone else: a store's shards mapped from disk.
pub trait HalfBuffer: Send + Sync + 'static {
    /// The values' bit patterns, row-major.
    fn bits(&self) -> &[u16];
}

impl std::fmt::Debug for dyn HalfBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HalfBuffer({} values)", self.bits().len())
    }
}

/// Half values copied into memory, when a borrowed half matrix is made
/// owned.
struct OwnedHalves(Vec<u16>);

impl HalfBuffer for OwnedHalves {
    fn bits(&self) -> &[u16] {
        &self.0
    }
}

#[derive(Clone, Debug)]
enum Store<'a> {
    /// Owned, shared between the datasets derived from it.
    Shared(Arc<Array2<f32>>),
    /// Owned by a buffer from elsewhere, shared like `Shared`.
    External {
        buffer: Arc<dyn ValueBuffer>,
        rows: usize,
        cols: usize,
    },
    /// Borrowed, row-major contiguous. Held as a slice (not an `ArrayView2`)
    /// so that the matrix stays covariant in `'a`.
    Borrowed {
        data: &'a [f32],
        rows: usize,
        cols: usize,
    },
    /// 16-bit values owned by a buffer from elsewhere, converted to `f32`
    /// a block at a time as they are read.
    HalfExternal {
        buffer: Arc<dyn HalfBuffer>,
        format: HalfFormat,
        rows: usize,
        cols: usize,
    },
    /// 16-bit values, borrowed.
    HalfBorrowed {
        bits: &'a [u16],
        format: HalfFormat,
        rows: usize,
        cols: usize,
    },
}

/// The values of a backing, borrowed: all of them, in one of two widths.
enum Values<'s> {
    F32(ArrayView2<'s, f32>),
    Half(&'s [u16], HalfFormat),
}

impl ActivationMatrix<'static> {
    /// Takes ownership of an array (converted to row-major if needed).
    pub fn from_array(array: Array2<f32>) -> Self {
        let array = if array.is_standard_layout() {
            array
        } else {
            array.as_standard_layout().into_owned()
        };
        ActivationMatrix {
            store: Store::Shared(Arc::new(array)),
        }
    }

    /// Builds a matrix from row-major data.
    pub fn from_row_major(rows: usize, cols: usize, data: Vec<f32>) -> Result<Self> {
        let found = data.len();
        let array = Array2::from_shape_vec((rows, cols), data).map_err(|_| Error::Shape {
            what: "activation matrix data".into(),
            expected: format!("{rows} × {cols} = {} values", rows * cols),
            found: format!("{found} values"),
        })?;
        Ok(Self::from_array(array))
    }

    /// Keeps row-major values held by `buffer`, without copying them.
    ///
    /// # Errors
    /// When the buffer does not hold `rows × cols` values.
    pub fn from_buffer(rows: usize, cols: usize, buffer: Arc<dyn ValueBuffer>) -> Result<Self> {
        check_len(rows, cols, buffer.values().len())?;
        Ok(ActivationMatrix {
            store: Store::External { buffer, rows, cols },
        })
    }

    /// Keeps row-major 16-bit values held by `buffer`, without copying or
    /// converting them: rows are converted to `f32` when read.
    ///
    /// # Errors
    /// When the buffer does not hold `rows × cols` values.
    pub fn from_half_buffer(
        rows: usize,
        cols: usize,
        format: HalfFormat,
        buffer: Arc<dyn HalfBuffer>,
    ) -> Result<Self> {
        check_len(rows, cols, buffer.bits().len())?;
        Ok(ActivationMatrix {
            store: Store::HalfExternal {
                buffer,
                format,
                rows,
                cols,
            },
        })
    }

    /// The same matrix with its rows in the given order (row `i` of the
    /// result is row `order[i]` here). A matrix that owns its rows alone is
    /// permuted in place, one row of extra memory; otherwise the rows are
    /// copied into a new matrix.
    ///
    /// # Panics
    /// If `order` is not a permutation of the rows.
    pub fn permute_rows(self, order: &[usize]) -> Self {
        let (rows, cols) = (self.n_rows(), self.n_cols());
        let mut seen = vec![false; rows];
        assert!(
            order.len() == rows
                && order
                    .iter()
                    .all(|&r| r < rows && !std::mem::replace(&mut seen[r], true)),
            "a row order must be a permutation of the {rows} rows"
        );
        match self.store {
            Store::Shared(mut array) => {
                match Arc::get_mut(&mut array).and_then(|a| a.as_slice_mut()) {
                    Some(values) => {
                        permute_rows_in_place(values, cols, order);
                        ActivationMatrix {
                            store: Store::Shared(array),
                        }
                    }
                    None => ActivationMatrix {
                        store: Store::Shared(array),
                    }
                    .select_rows(order),
                }
            }
            store => ActivationMatrix { store }.select_rows(order),
        }
    }
}

/// Row `i` becomes old row `order[i]`, following each cycle of the
/// permutation with one saved row.
fn permute_rows_in_place(values: &mut [f32], cols: usize, order: &[usize]) {
    if cols == 0 {
        return;
    }
    let mut placed = vec![false; order.len()];
    let mut saved = vec![0.0f32; cols];
    for start in 0..order.len() {
        if placed[start] || order[start] == start {
            continue;
        }
        saved.copy_from_slice(&values[start * cols..(start + 1) * cols]);
        let mut at = start;
        loop {
            placed[at] = true;
            let from = order[at];
            if from == start {
                values[at * cols..(at + 1) * cols].copy_from_slice(&saved);
                break;
            }
            values.copy_within(from * cols..(from + 1) * cols, at * cols);
            at = from;
        }
    }
}

fn check_len(rows: usize, cols: usize, found: usize) -> Result<()> {
    if rows.checked_mul(cols) != Some(found) {
        return Err(Error::Shape {
            what: "activation matrix data".into(),
            expected: format!("{rows} × {cols} = {} values", rows.saturating_mul(cols)),
            found: format!("{found} values"),
        });
    }
    Ok(())
}

/// Values per block when a whole matrix is read block by block (1 MiB of
/// `f32`): small enough to stay in cache, large enough that the per-block
/// cost does not show.
const BLOCK_VALUES: usize = 1 << 18;

/// Rows per block of [`BLOCK_VALUES`] values.
fn block_rows(cols: usize) -> usize {
    rows_per_block(cols, BLOCK_VALUES * 4)
}

/// How many rows of `cols` neurons make a block of at most `bytes` bytes of
/// `f32` (at least one row): the block size of a pass that must hold one
/// block in memory, converted or copied, whatever the matrix's width.
pub fn rows_per_block(cols: usize, bytes: usize) -> usize {
    (bytes / (4 * cols.max(1))).max(1)
}

impl<'a> ActivationMatrix<'a> {
    /// Borrows row-major contiguous data without copying.
    pub fn from_slice(rows: usize, cols: usize, data: &'a [f32]) -> Result<Self> {
        check_len(rows, cols, data.len())?;
        Ok(ActivationMatrix {
            store: Store::Borrowed { data, rows, cols },
        })
    }

    /// Borrows row-major 16-bit values without copying or converting them.
    ///
    /// # Errors
    /// When `bits` does not hold `rows × cols` values.
    pub fn from_half_slice(
        rows: usize,
        cols: usize,
        format: HalfFormat,
        bits: &'a [u16],
    ) -> Result<Self> {
        check_len(rows, cols, bits.len())?;
        Ok(ActivationMatrix {
            store: Store::HalfBorrowed {
                bits,
                format,
                rows,
                cols,
            },
        })
    }

    /// `(rows, columns)`.
    pub fn dim(&self) -> (usize, usize) {
        match &self.store {
            Store::Shared(a) => a.dim(),
            Store::Borrowed { rows, cols, .. }
            | Store::External { rows, cols, .. }
            | Store::HalfExternal { rows, cols, .. }
            | Store::HalfBorrowed { rows, cols, .. } => (*rows, *cols),
        }
    }

    /// Number of tokens.
    pub fn n_rows(&self) -> usize {
        self.dim().0
    }

    /// Number of neurons.
    pub fn n_cols(&self) -> usize {
        self.dim().1
    }

    /// The 16-bit format the values are held in, or `None` for `f32`.
    pub fn half_format(&self) -> Option<HalfFormat> {
        match &self.store {
            Store::HalfExternal { format, .. } | Store::HalfBorrowed { format, .. } => {
                Some(*format)
            }
            _ => None,
        }
    }

    /// The values' 16-bit bit patterns, row-major, when the backing holds
    /// them that way.
    pub fn half_bits(&self) -> Option<(&[u16], HalfFormat)> {
        match self.values() {
            Values::Half(bits, format) => Some((bits, format)),
            Values::F32(_) => None,
        }
    }

    fn values(&self) -> Values<'_> {
        let (rows, cols) = self.dim();
        let view = |data| {
            ArrayView2::from_shape((rows, cols), data).expect("shape checked on construction")
        };
        match &self.store {
            Store::Shared(a) => Values::F32(a.view()),
            Store::Borrowed { data, .. } => Values::F32(view(data)),
            Store::External { buffer, .. } => Values::F32(view(buffer.values())),
            Store::HalfExternal { buffer, format, .. } => Values::Half(buffer.bits(), *format),
            Store::HalfBorrowed { bits, format, .. } => Values::Half(bits, *format),
        }
    }

    /// The whole matrix as `f32`: borrowed for `f32` backings, converted
    /// (a copy of all of it) for 16-bit ones. Components that may meet a
    /// matrix larger than memory read [`Self::blocks`] instead.
    pub fn view(&self) -> CowArray<'_, f32, Ix2> {
        self.block(0..self.n_rows())
    }

    /// The rows `rows` as `f32`: borrowed for `f32` backings, converted for
    /// 16-bit ones.
    ///
    /// # Panics
    /// Panics if the range is out of bounds.
    #[track_caller]
    pub fn block(&self, rows: Range<usize>) -> CowArray<'_, f32, Ix2> {
        match self.values() {
            Values::F32(view) => CowArray::from(view.slice_axis_move(Axis(0), Slice::from(rows))),
            Values::Half(bits, format) => {
                let cols = self.n_cols();
                assert!(
                    rows.start <= rows.end && rows.end <= self.n_rows(),
                    "rows {rows:?} are out of bounds for a matrix of {} rows",
                    self.n_rows()
                );
                let mut out = vec![0.0f32; rows.len() * cols];
                format.to_f32(&bits[rows.start * cols..rows.end * cols], &mut out);
                CowArray::from(
                    Array2::from_shape_vec((rows.len(), cols), out).expect("rows × columns values"),
                )
            }
        }
    }

    /// The rows `rows` as a matrix that borrows this one's values, in their
    /// own width (no conversion, no copy).
    ///
    /// # Panics
    /// Panics if the range is out of bounds.
    #[track_caller]
    pub fn rows(&self, rows: Range<usize>) -> ActivationMatrix<'_> {
        assert!(
            rows.start <= rows.end && rows.end <= self.n_rows(),
            "rows {rows:?} are out of bounds for a matrix of {} rows",
            self.n_rows()
        );
        let cols = self.n_cols();
        let span = rows.start * cols..rows.end * cols;
        let store = match self.values() {
            Values::F32(view) => match view.to_slice() {
                Some(data) => Store::Borrowed {
                    data: &data[span],
                    rows: rows.len(),
                    cols,
                },
                None => {
                    return ActivationMatrix::from_array(
                        view.slice_axis(Axis(0), Slice::from(rows)).to_owned(),
                    );
                }
            },
            Values::Half(bits, format) => Store::HalfBorrowed {
                bits: &bits[span],
                format,
                rows: rows.len(),
                cols,
            },
        };
        ActivationMatrix { store }
    }

    /// Consecutive row blocks of at most `block_rows` rows covering `rows`:
    /// the way to stream a matrix that may not fit in memory.
    pub fn blocks(
        &self,
        rows: Range<usize>,
        block_rows: usize,
    ) -> impl Iterator<Item = (Range<usize>, CowArray<'_, f32, Ix2>)> + '_ {
        let step = block_rows.max(1);
        (rows.start..rows.end).step_by(step).map(move |start| {
            let r = start..(start + step).min(rows.end);
            (r.clone(), self.block(r))
        })
    }

    /// The data as one row-major `f32` slice, when the backing holds it that
    /// way.
    pub fn as_slice(&self) -> Option<&[f32]> {
        match self.values() {
            Values::F32(view) => view.to_slice(),
            Values::Half(..) => None,
        }
    }

    /// The data as one row-major vector: moved out when this matrix is its
    /// only owner (what a source hands over), copied otherwise.
    pub fn into_row_major(self) -> Vec<f32> {
        match self.store {
            Store::Shared(array) => match Arc::try_unwrap(array) {
                Ok(array) if array.is_standard_layout() => match array.into_raw_vec_and_offset() {
                    (data, Some(0) | None) => data,
                    (data, Some(offset)) => data[offset..].to_vec(),
                },
                Ok(array) => array.iter().copied().collect(),
                Err(shared) => shared.iter().copied().collect(),
            },
            Store::Borrowed { data, .. } => data.to_vec(),
            Store::External { buffer, .. } => buffer.values().to_vec(),
            store => ActivationMatrix { store }.to_contiguous().into_owned(),
        }
    }

    /// The data as one row-major `f32` slice, converting if the backing does
    /// not hold it that way.
    pub fn to_contiguous(&self) -> Cow<'_, [f32]> {
        match self.as_slice() {
            Some(slice) => Cow::Borrowed(slice),
            None => {
                let mut out = vec![0.0f32; self.n_rows() * self.n_cols()];
                self.convert_rows(0..self.n_rows(), &mut out);
                Cow::Owned(out)
            }
        }
    }

    /// A new `f32` matrix with the given columns, in the given order, read a
    /// block of rows at a time.
    ///
    /// # Errors
    /// Fails if a column is out of range.
    pub fn select_columns(&self, columns: &[usize]) -> Result<ActivationMatrix<'static>> {
        if let Some(&bad) = columns.iter().find(|&&c| c >= self.n_cols()) {
            return Err(Error::input(format!(
                "column {bad} does not exist: the matrix has {} neurons",
                self.n_cols()
            )));
        }
        Ok(ActivationMatrix::from_array(gather_columns(self, columns)))
    }

    /// A new `f32` matrix with the given rows, in the given order.
    ///
    /// # Panics
    /// Panics if a row is out of range.
    pub fn select_rows(&self, rows: &[usize]) -> ActivationMatrix<'static> {
        match self.values() {
            Values::F32(view) => ActivationMatrix::from_array(view.select(Axis(0), rows)),
            Values::Half(bits, format) => {
                let cols = self.n_cols();
                let mut out = vec![0.0f32; rows.len() * cols];
                if cols > 0 {
                    for (&r, row) in rows.iter().zip(out.chunks_exact_mut(cols)) {
                        format.to_f32(&bits[r * cols..(r + 1) * cols], row);
                    }
                }
                ActivationMatrix::from_row_major(rows.len(), cols, out)
                    .expect("rows × columns values")
            }
        }
    }

    /// An owned copy that no longer borrows (cheap when already owned). A
    /// borrowed 16-bit matrix stays 16-bit.
    pub fn into_owned(self) -> ActivationMatrix<'static> {
        let store = match self.store {
            Store::Shared(a) => Store::Shared(a),
            Store::External { buffer, rows, cols } => Store::External { buffer, rows, cols },
            Store::HalfExternal {
                buffer,
                format,
                rows,
                cols,
            } => Store::HalfExternal {
                buffer,
                format,
                rows,
                cols,
            },
            Store::HalfBorrowed {
                bits,
                format,
                rows,
                cols,
            } => Store::HalfExternal {
                buffer: Arc::new(OwnedHalves(bits.to_vec())),
                format,
                rows,
                cols,
            },
            Store::Borrowed { data, rows, cols } => {
                return ActivationMatrix::from_row_major(rows, cols, data.to_vec())
                    .expect("shape checked on construction");
            }
        };
        ActivationMatrix { store }
    }

    /// The first non-finite value, as `(row, column, value)`.
    pub fn find_non_finite(&self) -> Option<(usize, usize, f32)> {
        let (rows, cols) = self.dim();
        for (range, block) in self.blocks(0..rows, block_rows(cols)) {
            // Most matrices are clean, so scan the flat data first.
            let clean = match block.as_slice() {
                Some(flat) => flat.iter().all(|v| v.is_finite()),
                None => block.iter().all(|v| v.is_finite()),
            };
            if !clean {
                return block
                    .indexed_iter()
                    .find(|(_, v)| !v.is_finite())
                    .map(|((r, c), v)| (range.start + r, c, *v));
            }
        }
        None
    }
}

/// Row-major activations that a computation reads a block of rows at a
/// time: an `f32` array view, or an [`ActivationMatrix`] of any backing (a
/// 16-bit one is converted block by block, never whole). Kernels that take
/// this instead of an `ArrayView2` work on a store larger than memory in
/// any width.
pub trait RowBlocks: Sync {
    /// `(rows, columns)`.
    fn shape(&self) -> (usize, usize);

    /// The rows `rows` as `f32`, row-major (standard layout).
    ///
    /// # Panics
    /// If the range is out of bounds.
    fn rows_f32(&self, rows: Range<usize>) -> CowArray<'_, f32, Ix2>;

    /// The rows `rows` as one row-major `f32` slice, when they are held
    /// that way (no conversion or copy needed).
    fn f32_slice(&self, rows: Range<usize>) -> Option<&[f32]>;

    /// The rows `rows` as one row-major `f32` slice: borrowed when they are
    /// held that way, otherwise converted into `scratch`, whose allocation
    /// is kept from call to call, so a pass over a 16-bit matrix converts
    /// each block without allocating or clearing memory for it.
    fn rows_in<'s>(&'s self, rows: Range<usize>, scratch: &'s mut Vec<f32>) -> &'s [f32] {
        if let Some(slice) = self.f32_slice(rows.clone()) {
            return slice;
        }
        let len = rows.len() * self.shape().1;
        if scratch.len() < len {
            scratch.resize(len, 0.0);
        }
        let out = &mut scratch[..len];
        self.convert_rows(rows, out);
        out
    }

    /// Writes the rows `rows` as `f32`, row-major, into `out` (which holds
    /// exactly that many values).
    ///
    /// # Panics
    /// If the range is out of bounds or `out` has another length.
    fn convert_rows(&self, rows: Range<usize>, out: &mut [f32]) {
        let block = self.rows_f32(rows);
        out.iter_mut().zip(block.iter()).for_each(|(o, &v)| *o = v);
    }

    /// Calls `each(first_row, block)` on consecutive blocks covering `rows`
    /// in order, each at most about 1 MiB of `f32` (at least one row): how
    /// a pass reads a 16-bit matrix without converting more than a block
    /// at a time, whatever the width.
    fn for_each_block(&self, rows: Range<usize>, mut each: impl FnMut(usize, ArrayView2<'_, f32>))
    where
        Self: Sized,
    {
        let cols = self.shape().1;
        let step = block_rows(cols);
        let mut scratch = Vec::new();
        for start in rows.clone().step_by(step) {
            let end = (start + step).min(rows.end);
            let values = self.rows_in(start..end, &mut scratch);
            let block =
                ArrayView2::from_shape((end - start, cols), values).expect("rows × columns values");
            each(start, block);
        }
    }
}

impl<S> RowBlocks for ndarray::ArrayBase<S, Ix2>
where
    S: ndarray::Data<Elem = f32> + Sync,
{
    fn shape(&self) -> (usize, usize) {
        self.dim()
    }

    fn rows_f32(&self, rows: Range<usize>) -> CowArray<'_, f32, Ix2> {
        let part = self.slice_axis(Axis(0), Slice::from(rows));
        if part.is_standard_layout() {
            CowArray::from(part)
        } else {
            CowArray::from(part.as_standard_layout().into_owned())
        }
    }

    fn f32_slice(&self, rows: Range<usize>) -> Option<&[f32]> {
        let cols = self.ncols();
        let all = self.as_slice()?;
        all.get(rows.start * cols..rows.end * cols)
    }
}

impl RowBlocks for ActivationMatrix<'_> {
    fn shape(&self) -> (usize, usize) {
        self.dim()
    }

    fn rows_f32(&self, rows: Range<usize>) -> CowArray<'_, f32, Ix2> {
        self.block(rows)
    }

    fn f32_slice(&self, rows: Range<usize>) -> Option<&[f32]> {
        let cols = self.n_cols();
        self.as_slice()?.get(rows.start * cols..rows.end * cols)
    }

    fn convert_rows(&self, rows: Range<usize>, out: &mut [f32]) {
        let cols = self.n_cols();
        match self.values() {
            Values::Half(bits, format) => {
                format.to_f32(&bits[rows.start * cols..rows.end * cols], out);
            }
            Values::F32(view) => out
                .iter_mut()
                .zip(view.slice_axis(Axis(0), Slice::from(rows)).iter())
                .for_each(|(o, &v)| *o = v),
        }
    }
}

impl<T: RowBlocks + ?Sized> RowBlocks for &T {
    fn shape(&self) -> (usize, usize) {
        (**self).shape()
    }

    fn rows_f32(&self, rows: Range<usize>) -> CowArray<'_, f32, Ix2> {
        (**self).rows_f32(rows)
    }

    fn f32_slice(&self, rows: Range<usize>) -> Option<&[f32]> {
        (**self).f32_slice(rows)
    }

    fn convert_rows(&self, rows: Range<usize>, out: &mut [f32]) {
        (**self).convert_rows(rows, out);
    }
}

/// Reads one value of every cache line of `values`, in order, before a copy
/// that picks a few values from each row: that pattern the hardware
/// prefetcher does not follow, and each pick would wait for memory; read in
/// order first, the lines stream in and the copy finds them in cache.
pub fn bring_into_cache(values: &[f32]) {
    const PER_LINE: usize = 64 / std::mem::size_of::<f32>();
    let touched = values
        .iter()
        .step_by(PER_LINE)
        .fold(0.0f32, |sum, &v| sum + v);
    std::hint::black_box(touched);
}

/// The given columns of `x`, in the given order (repeats allowed), copied
/// a block of rows at a time: a matrix mapped from disk is then read once,
/// in order, where copying column by column would read all of it once per
/// column, and a 16-bit one is converted a block at a time. Called from a
/// rayon pool (a run's), the blocks are shared among its threads; from
/// elsewhere, they are copied on the calling thread.
///
/// # Panics
/// If a column is out of range.
pub fn gather_columns(x: impl RowBlocks, columns: &[usize]) -> Array2<f32> {
    use rayon::prelude::*;
    /// Rows per block: a few hundred kilobytes of a wide matrix.
    const BLOCK: usize = 64;
    let (rows, width) = x.shape();
    let k = columns.len();
    let mut out = vec![0.0f32; rows * k];
    let copy = |(block, part): (usize, &mut [f32])| {
        let start = block * BLOCK;
        let mut converted = Vec::new();
        let values = x.rows_in(start..start + part.len() / k, &mut converted);
        bring_into_cache(values);
        for (row, picked) in values.chunks_exact(width).zip(part.chunks_exact_mut(k)) {
            for (o, &c) in picked.iter_mut().zip(columns) {
                *o = row[c];
            }
        }
    };
    if k > 0 {
        if rayon::current_thread_index().is_some() {
            out.par_chunks_mut(BLOCK * k).enumerate().for_each(copy);
        } else {
            out.chunks_mut(BLOCK * k).enumerate().for_each(copy);
        }
    }
    Array2::from_shape_vec((rows, k), out).expect("rows × columns values")
}

/// For each column of `x`, whether all its values are equal (true for every
/// column when `x` has no rows).
pub fn constant_columns(x: ndarray::ArrayView2<'_, f32>) -> Vec<bool> {
    let Some(first) = x.rows().into_iter().next() else {
        return vec![true; x.ncols()];
    };
    let mut constant = vec![true; x.ncols()];
    for row in x.rows() {
        for ((c, &v), &f) in constant.iter_mut().zip(row).zip(first) {
            *c &= v == f;
        }
    }
    constant
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn blocks_cover_the_requested_rows_in_order() {
        let m = ActivationMatrix::from_array(Array2::from_shape_fn((10, 3), |(r, c)| {
            (r * 3 + c) as f32
        }));
        let blocks: Vec<_> = m.blocks(2..9, 3).collect();
        assert_eq!(
            blocks.iter().map(|b| b.0.clone()).collect::<Vec<_>>(),
            vec![2..5, 5..8, 8..9]
        );
        assert_eq!(blocks[2].1[[0, 2]], 26.0);
    }

    #[test]
    fn borrowed_and_owned_agree() {
        let data: Vec<f32> = (0..6).map(|v| v as f32).collect();
        let borrowed = ActivationMatrix::from_slice(2, 3, &data).unwrap();
        let owned = ActivationMatrix::from_row_major(2, 3, data.clone()).unwrap();
        assert_eq!(borrowed.view(), owned.view());
        assert_eq!(borrowed.as_slice().unwrap(), &data[..]);
        assert_eq!(borrowed.clone().into_owned().view(), owned.view());
    }

    #[test]
    fn into_row_major_moves_a_sole_owner_and_copies_otherwise() {
        let data: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let alone = ActivationMatrix::from_row_major(4, 3, data.clone()).unwrap();
        let at = alone.as_slice().unwrap().as_ptr();
        let moved = alone.into_row_major();
        assert_eq!((moved.as_ptr(), &moved), (at, &data));
        let shared = ActivationMatrix::from_row_major(4, 3, data.clone()).unwrap();
        let other = shared.clone();
        let copied = shared.into_row_major();
        assert_ne!(copied.as_ptr(), other.as_slice().unwrap().as_ptr());
        assert_eq!(copied, data);
        let borrowed = ActivationMatrix::from_slice(4, 3, &data).unwrap();
        assert_eq!(borrowed.into_row_major(), data);
        let transposed =
            ActivationMatrix::from_array(array![[1.0f32, 2.0], [3.0, 4.0]].reversed_axes());
        assert_eq!(transposed.into_row_major(), vec![1.0, 3.0, 2.0, 4.0]);
    }

    #[test]
    fn rows_are_permuted_in_place_when_owned_alone_and_copied_when_shared() {
        let (rows, cols) = (9, 4);
        let values: Vec<f32> = (0..rows * cols).map(|v| v as f32).collect();
        // Cycles of lengths 1, 2 and 6.
        let order = [0, 2, 1, 4, 5, 6, 7, 8, 3];
        let expected = ActivationMatrix::from_row_major(rows, cols, values.clone())
            .unwrap()
            .select_rows(&order);
        let alone = ActivationMatrix::from_row_major(rows, cols, values.clone()).unwrap();
        let at = alone.as_slice().unwrap().as_ptr();
        let permuted = alone.permute_rows(&order);
        assert_eq!(permuted.as_slice().unwrap().as_ptr(), at);
        assert_eq!(permuted.view(), expected.view());
        let shared = ActivationMatrix::from_row_major(rows, cols, values).unwrap();
        let keep = shared.clone();
        let copied = shared.permute_rows(&order);
        assert_eq!(copied.view(), expected.view());
        assert_eq!(
            keep.view()[[1, 0]],
            4.0,
            "the other holder still sees the old order"
        );
    }

    use proptest::prelude::*;

    proptest! {
        #[test]
        fn permuting_in_place_equals_selecting(
            order in (0usize..60).prop_flat_map(|n| proptest::sample::subsequence((0..n).collect::<Vec<_>>(), n).prop_shuffle()),
            cols in 0usize..5,
        ) {
            let rows = order.len();
            let values: Vec<f32> = (0..rows * cols).map(|v| v as f32).collect();
            let expected = ActivationMatrix::from_row_major(rows, cols, values.clone()).unwrap().select_rows(&order);
            let permuted = ActivationMatrix::from_row_major(rows, cols, values).unwrap().permute_rows(&order);
            prop_assert_eq!(permuted.view(), expected.view());
        }
    }

    #[test]
    #[should_panic(expected = "permutation")]
    fn a_row_order_with_a_repeat_is_refused() {
        let m = ActivationMatrix::from_row_major(3, 1, vec![1.0, 2.0, 3.0]).unwrap();
        let _ = m.permute_rows(&[0, 0, 1]);
    }

    #[derive(Debug)]
    struct Buffer(Vec<f32>);

    impl ValueBuffer for Buffer {
        fn values(&self) -> &[f32] {
            &self.0
        }
    }

    #[test]
    fn a_foreign_buffer_is_kept_without_a_copy() {
        let buffer = Arc::new(Buffer(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
        let at = buffer.0.as_ptr();
        let m = ActivationMatrix::from_buffer(2, 3, buffer).unwrap();
        assert_eq!(m.as_slice().unwrap().as_ptr(), at);
        assert_eq!(m.view(), array![[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]]);
        assert_eq!(m.clone().into_owned().as_slice().unwrap().as_ptr(), at);
        assert_eq!(
            m.clone().permute_rows(&[1, 0]).view(),
            array![[4.0f32, 5.0, 6.0], [1.0, 2.0, 3.0]]
        );
        assert_eq!(m.into_row_major(), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert!(ActivationMatrix::from_buffer(4, 3, Arc::new(Buffer(vec![0.0; 6]))).is_err());
    }

    /// A half matrix of `rows × cols` values that f16 and bf16 hold
    /// exactly, with its f32 twin.
    fn half_and_f32(format: HalfFormat, rows: usize, cols: usize) -> (Vec<u16>, Array2<f32>) {
        let values: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 7) % 23) as f32 * 0.25 - 2.0)
            .collect();
        let bits: Vec<u16> = values
            .iter()
            .map(|&v| match format {
                HalfFormat::F16 => half::f16::from_f32(v).to_bits(),
                HalfFormat::Bf16 => half::bf16::from_f32(v).to_bits(),
            })
            .collect();
        (bits, Array2::from_shape_vec((rows, cols), values).unwrap())
    }

    #[derive(Debug)]
    struct Halves(Vec<u16>);

    impl HalfBuffer for Halves {
        fn bits(&self) -> &[u16] {
            &self.0
        }
    }

    #[test]
    fn gathered_columns_are_the_same_on_the_calling_thread_and_in_a_pool() {
        let (rows, width) = (1000, 13);
        let values: Vec<f32> = (0..rows * width).map(|i| i as f32 * 0.5 - 7.0).collect();
        let x = Array2::from_shape_vec((rows, width), values).unwrap();
        let columns = [12, 0, 5, 5, 3];
        let expected = Array2::from_shape_fn((rows, columns.len()), |(r, i)| x[[r, columns[i]]]);
        let alone = gather_columns(x.view(), &columns);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let shared = pool.install(|| gather_columns(x.view(), &columns));
        assert_eq!(alone, expected);
        assert_eq!(shared, expected);
        let (bits, half_values) = half_and_f32(HalfFormat::F16, 130, 4);
        let half = ActivationMatrix::from_half_slice(130, 4, HalfFormat::F16, &bits).unwrap();
        let picked = pool.install(|| gather_columns(&half, &[3, 1]));
        assert_eq!(picked.column(0), half_values.column(3));
        assert_eq!(picked.column(1), half_values.column(1));
        assert_eq!(gather_columns(x.view(), &[]).dim(), (rows, 0));
    }

    #[test]
    fn a_half_matrix_reads_as_its_f32_values_without_converting_whole() {
        for format in [HalfFormat::F16, HalfFormat::Bf16] {
            let (bits, expected) = half_and_f32(format, 9, 4);
            let borrowed = ActivationMatrix::from_half_slice(9, 4, format, &bits).unwrap();
            let owned =
                ActivationMatrix::from_half_buffer(9, 4, format, Arc::new(Halves(bits.clone())))
                    .unwrap();
            for m in [&borrowed, &owned] {
                assert_eq!(m.dim(), (9, 4));
                assert_eq!(m.half_format(), Some(format));
                assert!(m.as_slice().is_none(), "no f32 slice of half values");
                assert_eq!(m.view(), expected);
                assert_eq!(m.block(2..5), rows_of(&expected, 2..5));
                let blocks: Vec<_> = m.blocks(1..9, 3).map(|(r, b)| (r, b.to_owned())).collect();
                assert_eq!(blocks.len(), 3);
                assert_eq!(blocks[2].1, rows_of(&expected, 7..9));
                // A window of rows stays in 16 bits and borrows.
                let window = m.rows(3..7);
                assert_eq!(
                    window.half_bits().unwrap().0.as_ptr(),
                    bits_of(m)[12..].as_ptr()
                );
                assert_eq!(window.view(), rows_of(&expected, 3..7));
                assert_eq!(
                    m.select_columns(&[3, 0, 3]).unwrap().view(),
                    gather_columns(expected.view(), &[3, 0, 3])
                );
                assert_eq!(
                    m.select_rows(&[8, 1]).view(),
                    expected.select(Axis(0), &[8, 1])
                );
                assert_eq!(m.to_contiguous().as_ref(), expected.as_slice().unwrap());
                assert_eq!(m.clone().into_row_major(), expected.as_slice().unwrap());
                assert_eq!(m.find_non_finite(), None);
                let kept = m.clone().into_owned();
                assert_eq!(kept.half_format(), Some(format), "made owned, still 16-bit");
                assert_eq!(kept.view(), expected);
                let order = [8, 0, 1, 2, 3, 4, 5, 6, 7];
                assert_eq!(
                    kept.permute_rows(&order).view(),
                    expected.select(Axis(0), &order)
                );
                // Kernels that read row blocks see the same values.
                assert_eq!(RowBlocks::shape(m), (9, 4));
                assert_eq!(m.rows_f32(4..6), rows_of(&expected, 4..6));
                assert!(m.f32_slice(0..2).is_none());
            }
        }
    }

    fn rows_of(x: &Array2<f32>, rows: Range<usize>) -> ArrayView2<'_, f32> {
        x.slice_axis(Axis(0), Slice::from(rows))
    }

    fn bits_of<'m>(m: &'m ActivationMatrix<'_>) -> &'m [u16] {
        m.half_bits().unwrap().0
    }

    #[test]
    fn a_non_finite_half_value_is_found_where_it_is() {
        let mut bits = vec![half::f16::from_f32(1.0).to_bits(); 3000 * 200];
        bits[2500 * 200 + 17] = half::f16::INFINITY.to_bits();
        let m = ActivationMatrix::from_half_slice(3000, 200, HalfFormat::F16, &bits).unwrap();
        assert_eq!(m.find_non_finite(), Some((2500, 17, f32::INFINITY)));
        assert!(ActivationMatrix::from_half_slice(3, 3, HalfFormat::Bf16, &bits[..8]).is_err());
    }

    #[test]
    fn rows_in_borrows_f32_rows_and_converts_half_rows_into_one_reused_buffer() {
        let (bits, expected) = half_and_f32(HalfFormat::F16, 40, 6);
        let f32_matrix = ActivationMatrix::from_array(expected.clone());
        let mut scratch = Vec::new();
        let borrowed = f32_matrix.rows_in(3..9, &mut scratch);
        assert_eq!(
            borrowed.as_ptr(),
            f32_matrix.as_slice().unwrap()[18..].as_ptr()
        );
        assert!(scratch.is_empty(), "f32 rows are not copied");
        let half = ActivationMatrix::from_half_slice(40, 6, HalfFormat::F16, &bits).unwrap();
        let first = half.rows_in(0..20, &mut scratch).to_vec();
        assert_eq!(
            first,
            rows_of(&expected, 0..20)
                .iter()
                .copied()
                .collect::<Vec<_>>()
        );
        let buffer = scratch.as_ptr();
        let again = half.rows_in(25..31, &mut scratch);
        assert_eq!(again, rows_of(&expected, 25..31).as_slice().unwrap());
        assert_eq!(again.as_ptr(), buffer, "the buffer is reused");
        let mut seen = Vec::new();
        half.for_each_block(5..40, |start, block| seen.push((start, block.to_owned())));
        let joined: Vec<f32> = seen.iter().flat_map(|(_, b)| b.iter().copied()).collect();
        assert_eq!(
            joined,
            rows_of(&expected, 5..40)
                .iter()
                .copied()
                .collect::<Vec<_>>()
        );
        assert_eq!(seen[0].0, 5);
    }

    #[test]
    fn array_views_read_as_row_blocks_in_any_layout() {
        let x = Array2::from_shape_fn((5, 3), |(r, c)| (r * 3 + c) as f32);
        let transposed = x.t().as_standard_layout().into_owned();
        let back = transposed.t();
        assert!(!back.is_standard_layout());
        assert_eq!(back.rows_f32(1..4), rows_of(&x, 1..4));
        assert!(back.rows_f32(1..4).is_standard_layout());
        assert!(back.f32_slice(0..1).is_none());
        assert_eq!(x.view().f32_slice(1..2).unwrap(), &[3.0, 4.0, 5.0]);
    }

    #[test]
    fn shape_mismatch_is_an_error() {
        let err = ActivationMatrix::from_row_major(2, 3, vec![0.0; 5]).unwrap_err();
        assert!(err.to_string().contains("2 × 3 = 6 values"), "{err}");
    }

    #[test]
    fn select_columns_copies_in_order() {
        let m = ActivationMatrix::from_array(array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]);
        let s = m.select_columns(&[2, 0]).unwrap();
        assert_eq!(s.view(), array![[3.0, 1.0], [6.0, 4.0]]);
        assert!(m.select_columns(&[3]).is_err());
    }

    #[test]
    fn finds_nan() {
        let m = ActivationMatrix::from_array(array![[1.0, 2.0], [f32::NAN, 0.0]]);
        let (r, c, v) = m.find_non_finite().unwrap();
        assert_eq!((r, c), (1, 0));
        assert!(v.is_nan());
    }

    #[test]
    fn constant_columns_are_those_with_one_value() {
        let x = array![[1.0, 2.0, 0.0], [1.0, 3.0, 0.0], [1.0, 2.0, 0.0]];
        assert_eq!(constant_columns(x.view()), vec![true, false, true]);
        let empty = Array2::<f32>::zeros((0, 2));
        assert_eq!(constant_columns(empty.view()), vec![true, true]);
    }
}
