//! Components compiled into `lca`: the activation sources and the evaluators
//! that every analysis needs. Rankers and probes come from plugins.

mod npy;
mod overlap;
mod recovery;
mod synthetic;

pub use npy::{NpySource, read_label_file, read_matrix_file};
pub use overlap::RankingOverlap;
pub use recovery::PlantedRecovery;
pub use synthetic::{SyntheticParams, SyntheticSource, generate};

use crate::registry::Descriptor;

/// Every built-in component, in the order `lca list` shows them.
pub fn descriptors() -> Vec<Descriptor> {
    vec![
        npy::descriptor(),
        synthetic::descriptor(),
        recovery::descriptor(),
        overlap::descriptor(),
    ]
}
