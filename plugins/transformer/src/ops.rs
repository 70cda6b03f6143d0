//! The encoder's element-wise steps as in-place operations on candle
//! tensors, each fused with the additions around it, and its self-attention.
//!
//! candle runs a bias add, a residual add, a GELU and a scaled, masked
//! softmax as separate passes that each allocate a new tensor, and splits
//! large element-wise passes over a thread pool of its own that ignores the
//! run's thread count. Here the output of a matrix product is finished in
//! place, in one pass, on the run's rayon pool (the caller installs it),
//! with the vectorised kernels of `lca_linear`. Attention is one task per
//! sequence straight from the query-key-value product: candle's version
//! copied the heads apart and back together on one thread and ran its small
//! batched products there too.

use candle_core::{CpuStorage, InplaceOp1, InplaceOp2, Layout, Storage, Tensor};
use lca_linear::kernels::elementwise::{self, Gelu, Heads, Visibility, bias_gelu};
use rayon::prelude::*;

/// Rows handed to one rayon task: enough work to amortise the task, few
/// enough that two threads share a batch evenly.
const ROWS_PER_TASK: usize = 16;

/// The contiguous `f32` values of a tensor, or an error naming the step.
fn values_mut<'s>(
    storage: &'s mut CpuStorage,
    layout: &Layout,
    step: &str,
) -> candle_core::Result<&'s mut [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (CpuStorage::F32(values), Some((start, end))) => Ok(&mut values[start..end]),
        _ => candle_core::bail!("{step}: expected a contiguous f32 tensor"),
    }
}

fn values<'s>(
    storage: &'s CpuStorage,
    layout: &Layout,
    step: &str,
) -> candle_core::Result<&'s [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (CpuStorage::F32(values), Some((start, end))) => Ok(&values[start..end]),
        _ => candle_core::bail!("{step}: expected a contiguous f32 tensor"),
    }
}

/// The values of a tensor's storage when they are contiguous `f32` on the
/// CPU.
pub(crate) fn contiguous_values<'s>(storage: &'s Storage, layout: &Layout) -> Option<&'s [f32]> {
    match storage {
        Storage::Cpu(CpuStorage::F32(values)) => layout
            .contiguous_offsets()
            .map(|(start, end)| &values[start..end]),
        _ => None,
    }
}

/// Lends the contiguous `f32` values of a tensor to `f`, or errs naming
/// the step.
pub(crate) fn with_values<R>(
    tensor: &Tensor,
    step: &str,
    f: impl FnOnce(&[f32]) -> candle_core::Result<R>,
) -> candle_core::Result<R> {
    let (storage, layout) = tensor.storage_and_layout();
    match &*storage {
        Storage::Cpu(cpu) => f(values(cpu, layout, step)?),
        _ => candle_core::bail!("{step}: expected a contiguous f32 tensor"),
    }
}

/// The row width must divide the tensor; a mismatch is a bug in the
/// caller's shapes, reported rather than read out of bounds.
fn check_rows(len: usize, width: usize, step: &str) -> candle_core::Result<()> {
    if width == 0 || !len.is_multiple_of(width) {
        candle_core::bail!("{step}: {len} values do not form rows of {width}");
    }
    Ok(())
}

/// Applies `f` to the rows (of `width` values) of a contiguous `f32`
/// tensor, [`ROWS_PER_TASK`] rows per rayon task.
fn for_row_chunks(
    storage: &mut CpuStorage,
    layout: &Layout,
    step: &str,
    width: usize,
    f: impl Fn(&mut [f32]) + Sync + Send,
) -> candle_core::Result<()> {
    let x = values_mut(storage, layout, step)?;
    check_rows(x.len(), width, step)?;
    x.par_chunks_mut(width * ROWS_PER_TASK).for_each(f);
    Ok(())
}

/// A new `[rows, out_width]` tensor from the rows of `x` (`[rows,
/// in_width]`): `f(input rows, output rows)` on [`ROWS_PER_TASK`] rows at a
/// time, on the run's rayon pool.
pub(crate) fn map_rows(
    x: &Tensor,
    in_width: usize,
    out_width: usize,
    step: &str,
    f: impl Fn(&[f32], &mut [f32]) + Sync + Send,
) -> candle_core::Result<Tensor> {
    let out = with_values(x, step, |values| {
        check_rows(values.len(), in_width, step)?;
        let rows = values.len() / in_width;
        Ok(lca_linear::kernels::filled_in_parallel(
            rows * out_width,
            out_width * ROWS_PER_TASK,
            || (),
            |(), task, out| {
                let rows = out.len() / out_width;
                f(
                    &values[task * ROWS_PER_TASK * in_width..][..rows * in_width],
                    out,
                );
            },
        ))
    })?;
    let rows = out.len().checked_div(out_width).unwrap_or(0);
    Tensor::from_vec(out, (rows, out_width), x.device())
}

/// `f(row index, row)` on every row of a tensor (rows of `width`), in
/// place.
pub(crate) struct RowsInPlace<'a, F: Fn(usize, &mut [f32]) + Sync + Send> {
    pub(crate) width: usize,
    pub(crate) step: &'static str,
    pub(crate) f: &'a F,
}

impl<F: Fn(usize, &mut [f32]) + Sync + Send> InplaceOp1 for RowsInPlace<'_, F> {
    fn name(&self) -> &'static str {
        self.step
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let x = values_mut(storage, layout, self.step)?;
        check_rows(x.len(), self.width, self.step)?;
        x.par_chunks_mut(self.width * ROWS_PER_TASK)
            .enumerate()
            .for_each(|(chunk, rows)| {
                for (r, row) in rows.chunks_exact_mut(self.width).enumerate() {
                    (self.f)(chunk * ROWS_PER_TASK + r, row);
                }
            });
        Ok(())
    }
}

/// `x ← x + bias` on every row.
pub(crate) struct AddBias<'a>(pub &'a [f32]);

impl InplaceOp1 for AddBias<'_> {
    fn name(&self) -> &'static str {
        "add-bias"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        for_row_chunks(storage, layout, self.name(), self.0.len(), |rows| {
            for row in rows.chunks_exact_mut(self.0.len()) {
                row.iter_mut().zip(self.0).for_each(|(v, b)| *v += b);
            }
        })
    }
}

/// `x ← gelu(x + bias)` on every row.
pub(crate) struct AddBiasGelu<'a>(pub &'a [f32], pub Gelu);

impl InplaceOp1 for AddBiasGelu<'_> {
    fn name(&self) -> &'static str {
        "add-bias-gelu"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        for_row_chunks(storage, layout, self.name(), self.0.len(), |rows| {
            bias_gelu(rows, self.0, self.1);
        })
    }
}

/// `x ← x + bias + residual` on every row, with `residual` the second
/// tensor (of `x`'s shape).
pub(crate) struct AddBiasResidual<'a>(pub &'a [f32]);

impl InplaceOp2 for AddBiasResidual<'_> {
    fn name(&self) -> &'static str {
        "add-bias-residual"
    }

    fn cpu_fwd(
        &self,
        storage: &mut CpuStorage,
        layout: &Layout,
        residual: &CpuStorage,
        residual_layout: &Layout,
    ) -> candle_core::Result<()> {
        let x = values_mut(storage, layout, self.name())?;
        let residual = values(residual, residual_layout, self.name())?;
        let width = self.0.len();
        check_rows(x.len(), width, self.name())?;
        if residual.len() != x.len() {
            candle_core::bail!("{}: the residual has another shape", self.name());
        }
        let chunk = width * ROWS_PER_TASK;
        x.par_chunks_mut(chunk)
            .zip(residual.par_chunks(chunk))
            .for_each(|(rows, residual_rows)| {
                for (row, residual_row) in rows
                    .chunks_exact_mut(width)
                    .zip(residual_rows.chunks_exact(width))
                {
                    for ((v, b), r) in row.iter_mut().zip(self.0).zip(residual_row) {
                        *v = *v + b + r;
                    }
                }
            });
        Ok(())
    }
}

/// Multi-head self-attention of a padded batch: `qkv` is `[batch·tokens,
/// heads.row()]` (query, key and value heads side by side), `additive` one
/// mask value per sequence and position. Returns the query heads' outputs
/// side by side, `[batch·tokens, heads.output()]`. One rayon task per
/// sequence.
pub(crate) fn attention(
    qkv: &Tensor,
    batch: usize,
    heads: Heads,
    visible: Visibility,
    additive: &[f32],
    scale: f32,
) -> candle_core::Result<Tensor> {
    let (rows, row) = qkv.dims2()?;
    if batch == 0 || rows % batch != 0 || additive.len() != rows || row != heads.row() {
        candle_core::bail!(
            "attention: {rows} rows of {row} do not fit {batch} sequences of {heads:?}"
        );
    }
    let tokens = rows / batch;
    let width = heads.output();
    let context = with_values(qkv, "attention", |values| {
        Ok(lca_linear::kernels::filled_in_parallel(
            rows * width,
            tokens * width,
            Vec::new,
            |scratch, sequence, context| {
                let qkv = &values[sequence * tokens * row..][..tokens * row];
                let additive = &additive[sequence * tokens..][..tokens];
                elementwise::attention(qkv, additive, heads, visible, scale, scratch, context);
            },
        ))
    })?;
    Tensor::from_vec(context, (rows, width), qkv.device())
}
