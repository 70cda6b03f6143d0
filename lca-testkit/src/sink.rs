//! A row sink that keeps what a streaming source pushes, for tests of
//! `ActivationSource::stream`.

use lca_core::data::NeuronIndex;
use lca_core::ndarray::ArrayView2;
use lca_core::{Result, RowSink};

/// Keeps what a streaming source pushes, in blocks of `block` rows, as a
/// store's writer would after an interruption at row `held`. Checks the
/// protocol as it goes: `begin` once and first, no gaps.
#[derive(Debug)]
pub struct CollectingSink {
    held: usize,
    block: usize,
    /// Rows and neurons announced by `begin`.
    pub announced: Option<(usize, usize)>,
    /// The rows from `held` on, in order.
    pub rows: Vec<Vec<f32>>,
    /// Blocks pushed.
    pub pushes: usize,
}

impl CollectingSink {
    /// A sink that holds the first `held` rows already and keeps `block`
    /// rows at a time.
    pub fn new(held: usize, block: usize) -> Self {
        CollectingSink {
            held,
            block,
            announced: None,
            rows: Vec::new(),
            pushes: 0,
        }
    }
}

impl RowSink for CollectingSink {
    fn begin(&mut self, rows: usize, neurons: &NeuronIndex) -> Result<()> {
        assert!(self.announced.is_none(), "begin is called once");
        self.announced = Some((rows, neurons.len()));
        Ok(())
    }

    fn rows_held(&self) -> usize {
        self.held
    }

    fn block_rows(&self) -> usize {
        self.block
    }

    fn push(&mut self, first: usize, block: ArrayView2<'_, f32>) -> Result<()> {
        assert!(self.announced.is_some(), "rows come after begin");
        let next = self.held + self.rows.len();
        assert!(first <= next, "block at {first} leaves a gap after {next}");
        for (i, row) in block.rows().into_iter().enumerate() {
            if first + i >= next {
                self.rows.push(row.to_vec());
            }
        }
        self.pushes += 1;
        Ok(())
    }
}
