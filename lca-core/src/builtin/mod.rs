//! Components compiled into `lca`: the activation sources and the evaluators
//! of the LCA protocol. Rankers and probes come from plugins.

mod ablation;
mod common;
mod curve;
mod export;
mod lambda_search;
mod layers;
mod minimal_subset;
mod neuron_sets;
mod npy;
mod overlap;
mod probe_accuracy;
mod recovery;
mod redundancy;
mod selectivity;
mod synthetic;
mod top_words;

pub use ablation::Ablation;
pub use export::NeuroxExport;
pub use lambda_search::LambdaSearch;
pub use layers::LayerDistribution;
pub use minimal_subset::{MinimalSubset, authors_grid};
pub use neuron_sets::NeuronSets;
pub use npy::{NpySource, read_label_file, read_matrix_file};
pub use overlap::RankingOverlap;
pub use probe_accuracy::ProbeAccuracy;
pub use recovery::PlantedRecovery;
pub use redundancy::{
    ClusterSettings, Redundancy, cluster_param_docs, neuron_clusters, parse_cluster_settings,
    parse_linkage,
};
pub use selectivity::{ControlDistribution, Selectivity, control_labels};
pub use synthetic::{SyntheticParams, SyntheticSource, generate};

use crate::registry::Descriptor;

/// Every built-in component, in the order `lca list` shows them.
pub fn descriptors() -> Vec<Descriptor> {
    vec![
        npy::descriptor(),
        crate::neurox::json_descriptor(),
        synthetic::descriptor(),
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
