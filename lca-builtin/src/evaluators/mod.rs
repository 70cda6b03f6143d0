//! The evaluators of the LCA protocol and of the comparison between methods.

mod ablation;
mod common;
mod curve;
mod export;
mod lambda_search;
mod layers;
mod minimal_subset;
mod neuron_sets;
mod overlap;
mod probe_accuracy;
mod recovery;
mod redundancy;
mod selectivity;
mod top_words;

pub use ablation::Ablation;
pub use export::NeuroxExport;
pub use lambda_search::LambdaSearch;
pub use layers::LayerDistribution;
pub use minimal_subset::{MinimalSubset, authors_grid};
pub use neuron_sets::NeuronSets;
pub use overlap::RankingOverlap;
pub use probe_accuracy::ProbeAccuracy;
pub use recovery::PlantedRecovery;
pub use redundancy::{ClusterSettings, Redundancy, neuron_clusters};
pub use selectivity::{ControlDistribution, Selectivity, control_labels};

use lca_core::registry::Descriptor;

/// Every built-in evaluator, in the order `lca list` shows them.
pub(crate) fn descriptors() -> Vec<Descriptor> {
    vec![
        probe_accuracy::descriptor(),
        ablation::descriptor(),
        minimal_subset::descriptor(),
        selectivity::descriptor(),
        layers::descriptor(),
        lambda_search::descriptor(),
        redundancy::descriptor(),
        neuron_sets::descriptor(),
        recovery::descriptor(),
        overlap::descriptor(),
        curve::descriptor(),
        top_words::descriptor(),
        export::descriptor(),
    ]
}
