//! The data model: activations, neurons, labels, words, splits, rankings,
//! mergeable class statistics and evaluation results.

mod dataset;
mod evaluation;
mod gaussian;
mod labels;
mod masks;
mod matrix;
#[cfg(test)]
mod merge_testing;
mod neurons;
mod precision;
mod ranking;
mod stats;

pub use dataset::{
    Dataset, DatasetOutline, DatasetSummary, GroundTruth, Split, SplitData, SplitFractions,
    SplitSpec, SplitUnit, Splits, Tokens, assign_splits, reorder_sentence_starts,
};
pub use evaluation::{BarSeries, Cell, Evaluation, Figure, Plot, Series, Table};
pub use gaussian::{GaussianMoments, RowSample};
pub use labels::{ClassVocab, Labels, count_classes};
pub use masks::{MaskCounts, TopValues, TopValuesBuilder, iou_ranking, mask_iou, mask_size};
pub use matrix::{
    ActivationMatrix, HalfBuffer, HalfFormat, RowBlocks, ValueBuffer, bring_into_cache,
    constant_columns, gather_columns, rows_per_block,
};
pub use neurons::{LayerSite, NeuronId, NeuronIndex, Site};
pub use precision::{ApHistograms, ApScores, NeuronBins, average_precision_ranking};
pub use ranking::{ClassRanking, NeuronRanking, check_permutation, order_by_descending};
pub use stats::{ClassStats, class_correlation, probeless_scores};
