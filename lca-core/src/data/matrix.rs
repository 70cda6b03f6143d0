//! The activation matrix: tokens × neurons, `f32`.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;

use ndarray::{Array2, ArrayView2, Axis, CowArray, Ix2, Slice};

use crate::error::{Error, Result};

/// Rows are tokens, columns are neurons.
///
/// The storage is private so that new backings (a memory-mapped `f32` or
/// `f16` file for matrices larger than RAM) can be added without touching the
/// component traits. Code that reads activations goes through [`Self::block`],
/// [`Self::blocks`] or [`Self::view`], which borrow where the backing allows
/// and convert otherwise.
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

impl<'a> ActivationMatrix<'a> {
    /// Borrows row-major contiguous data without copying.
    pub fn from_slice(rows: usize, cols: usize, data: &'a [f32]) -> Result<Self> {
        check_len(rows, cols, data.len())?;
        Ok(ActivationMatrix {
            store: Store::Borrowed { data, rows, cols },
        })
    }

    /// Number of tokens.
    pub fn n_rows(&self) -> usize {
        self.raw_view().nrows()
    }

    /// Number of neurons.
    pub fn n_cols(&self) -> usize {
        self.raw_view().ncols()
    }

    fn raw_view(&self) -> ArrayView2<'_, f32> {
        match &self.store {
            Store::Shared(a) => a.view(),
            Store::Borrowed { data, rows, cols } => {
                ArrayView2::from_shape((*rows, *cols), data).expect("shape checked on construction")
            }
            Store::External { buffer, rows, cols } => {
                ArrayView2::from_shape((*rows, *cols), buffer.values())
                    .expect("shape checked on construction")
            }
        }
    }

    /// The whole matrix as `f32`. Borrowed for in-memory `f32` backings.
    pub fn view(&self) -> CowArray<'_, f32, Ix2> {
        CowArray::from(self.raw_view())
    }

    /// The rows `rows` as `f32`.
    ///
    /// # Panics
    /// Panics if the range is out of bounds.
    #[track_caller]
    pub fn block(&self, rows: Range<usize>) -> CowArray<'_, f32, Ix2> {
        CowArray::from(self.raw_view().slice_axis_move(Axis(0), Slice::from(rows)))
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

    /// The data as one row-major slice, when the backing holds it that way.
    pub fn as_slice(&self) -> Option<&[f32]> {
        match &self.store {
            Store::Shared(a) => a.as_slice(),
            Store::Borrowed { data, .. } => Some(data),
            Store::External { buffer, .. } => Some(buffer.values()),
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
        }
    }

    /// The data as one row-major slice, converting if the backing does not
    /// hold it that way.
    pub fn to_contiguous(&self) -> Cow<'_, [f32]> {
        match self.as_slice() {
            Some(slice) => Cow::Borrowed(slice),
            None => Cow::Owned(self.raw_view().iter().copied().collect()),
        }
    }

    /// A new matrix with the given columns, in the given order.
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
        Ok(ActivationMatrix::from_array(gather_columns(
            self.raw_view(),
            columns,
        )))
    }

    /// A new matrix with the given rows, in the given order.
    ///
    /// # Panics
    /// Panics if a row is out of range.
    pub fn select_rows(&self, rows: &[usize]) -> ActivationMatrix<'static> {
        ActivationMatrix::from_array(self.raw_view().select(Axis(0), rows))
    }

    /// An owned copy that no longer borrows (cheap when already owned).
    pub fn into_owned(self) -> ActivationMatrix<'static> {
        match self.store {
            Store::Shared(a) => ActivationMatrix {
                store: Store::Shared(a),
            },
            Store::External { buffer, rows, cols } => ActivationMatrix {
                store: Store::External { buffer, rows, cols },
            },
            Store::Borrowed { .. } => ActivationMatrix::from_array(self.raw_view().to_owned()),
        }
    }

    /// The first non-finite value, as `(row, column, value)`.
    pub fn find_non_finite(&self) -> Option<(usize, usize, f32)> {
        let view = self.raw_view();
        // Fast path: most matrices are clean, so scan the flat data first.
        let clean = match view.as_slice() {
            Some(flat) => flat.iter().all(|v| v.is_finite()),
            None => view.iter().all(|v| v.is_finite()),
        };
        if clean {
            return None;
        }
        view.indexed_iter()
            .find(|(_, v)| !v.is_finite())
            .map(|((r, c), v)| (r, c, *v))
    }
}

/// The given columns of `x`, in the given order (repeats allowed), copied
/// row by row: a matrix mapped from disk is then read once, in order, where
/// copying column by column would read all of it once per column.
///
/// # Panics
/// If a column is out of range.
pub fn gather_columns(x: ArrayView2<'_, f32>, columns: &[usize]) -> Array2<f32> {
    let mut out = Vec::with_capacity(x.nrows() * columns.len());
    for row in x.rows() {
        out.extend(columns.iter().map(|&c| row[c]));
    }
    Array2::from_shape_vec((x.nrows(), columns.len()), out).expect("rows × columns values")
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
