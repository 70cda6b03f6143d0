//! Which layer and unit every column of an activation matrix is.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One neuron: a unit of a layer. Layer 0 is the embedding output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NeuronId {
    /// Layer number.
    pub layer: u32,
    /// Unit within the layer.
    pub unit: u32,
}

impl fmt::Display for NeuronId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "L{}:{}", self.layer, self.unit)
    }
}

/// Maps each matrix column to its [`NeuronId`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeuronIndex {
    ids: Vec<NeuronId>,
}

impl NeuronIndex {
    /// Columns laid out layer-major: column = layer × hidden + unit, as NeuroX
    /// flattens its activations.
    ///
    /// # Errors
    /// Fails unless `n_neurons` is a multiple of `layers`.
    pub fn layer_major(n_neurons: usize, layers: usize) -> Result<Self> {
        Self::layer_major_from(n_neurons, layers, 0)
    }

    /// Like [`Self::layer_major`] but numbering layers from `first_layer`.
    ///
    /// # Errors
    /// Fails unless `n_neurons` is a multiple of `layers`.
    pub fn layer_major_from(n_neurons: usize, layers: usize, first_layer: u32) -> Result<Self> {
        if layers == 0 || !n_neurons.is_multiple_of(layers) {
            return Err(Error::Shape {
                what: "neuron layout".into(),
                expected: format!(
                    "a neuron count divisible by the {layers} layers (layers × hidden)"
                ),
                found: format!("{n_neurons} neurons"),
            });
        }
        let hidden = n_neurons / layers;
        let ids = (0..n_neurons)
            .map(|c| NeuronId {
                layer: first_layer + (c / hidden) as u32,
                unit: (c % hidden) as u32,
            })
            .collect();
        Ok(NeuronIndex { ids })
    }

    /// An index from explicit ids.
    pub fn from_ids(ids: Vec<NeuronId>) -> Self {
        NeuronIndex { ids }
    }

    /// Number of neurons.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when there are no neurons.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The id of column `column`.
    ///
    /// # Panics
    /// Panics if the column is out of range.
    #[track_caller]
    pub fn id(&self, column: usize) -> NeuronId {
        self.ids[column]
    }

    /// All ids in column order.
    pub fn ids(&self) -> &[NeuronId] {
        &self.ids
    }

    /// The distinct layers, ascending.
    pub fn layers(&self) -> Vec<u32> {
        let mut layers: Vec<u32> = self.ids.iter().map(|n| n.layer).collect();
        layers.sort_unstable();
        layers.dedup();
        layers
    }

    /// The index of the given columns, in the given order.
    ///
    /// # Panics
    /// Panics if a column is out of range.
    pub fn select(&self, columns: &[usize]) -> Self {
        NeuronIndex {
            ids: columns.iter().map(|&c| self.ids[c]).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_major_matches_neurox_flattening() {
        let index = NeuronIndex::layer_major(6, 3).unwrap();
        assert_eq!(index.id(0), NeuronId { layer: 0, unit: 0 });
        assert_eq!(index.id(3), NeuronId { layer: 1, unit: 1 });
        assert_eq!(index.id(5), NeuronId { layer: 2, unit: 1 });
        assert_eq!(index.layers(), vec![0, 1, 2]);
    }

    #[test]
    fn indivisible_layout_is_rejected_with_both_numbers() {
        let err = NeuronIndex::layer_major(10, 3).unwrap_err().to_string();
        assert!(
            err.contains("divisible by the 3 layers") && err.contains("10 neurons"),
            "{err}"
        );
    }
}
