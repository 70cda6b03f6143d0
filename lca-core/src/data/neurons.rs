//! Which layer and unit every column of an activation matrix is.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Where in a model's layer a neuron is read.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Site {
    /// The hidden state a layer hands on (the residual stream); layer 0 is
    /// the embedding output. Sources that name no site have only this one.
    #[default]
    Residual,
    /// The intermediate units of a layer's MLP, after its nonlinearity.
    Mlp,
    /// The attention output of a layer, before it is added to the
    /// residual stream.
    Attention,
}

impl Site {
    /// Every site, in the order columns list them.
    pub const ALL: [Site; 3] = [Site::Residual, Site::Mlp, Site::Attention];

    /// The name recipes and reports use.
    pub fn as_str(self) -> &'static str {
        match self {
            Site::Residual => "residual",
            Site::Mlp => "mlp",
            Site::Attention => "attention",
        }
    }

    /// The site of a name, if it is one.
    pub fn parse(name: &str) -> Option<Site> {
        Site::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// True for the residual stream, the site ids leave unnamed.
    pub fn is_residual(&self) -> bool {
        *self == Site::Residual
    }
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One neuron: a unit of a layer, at a site of that layer. Layer 0 is the
/// embedding output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NeuronId {
    /// Layer number.
    pub layer: u32,
    /// Where in the layer (the residual stream unless a source says
    /// otherwise; left out of JSON then, as before sites existed).
    #[serde(default, skip_serializing_if = "Site::is_residual")]
    pub site: Site,
    /// Unit within the layer's site.
    pub unit: u32,
}

impl NeuronId {
    /// A unit of a layer's residual stream.
    pub fn new(layer: u32, unit: u32) -> Self {
        NeuronId {
            layer,
            site: Site::Residual,
            unit,
        }
    }

    /// A unit of a layer's `site`.
    pub fn at(site: Site, layer: u32, unit: u32) -> Self {
        NeuronId { layer, site, unit }
    }

    /// The layer and site, as reports group neurons: `L3` for the residual
    /// stream, `L3.mlp` for the others.
    pub fn group(&self) -> LayerSite {
        LayerSite {
            layer: self.layer,
            site: self.site,
        }
    }

    /// Reads the form [`fmt::Display`] writes: `L3:127`, `L12.mlp:4031`.
    pub fn parse(text: &str) -> Option<NeuronId> {
        let rest = text.trim().strip_prefix(['L', 'l'])?;
        let (place, unit) = rest.split_once(':')?;
        let (layer, site) = match place.split_once('.') {
            Some((layer, site)) => (layer, Site::parse(site.trim())?),
            None => (place, Site::Residual),
        };
        Some(NeuronId::at(
            site,
            layer.trim().parse().ok()?,
            unit.trim().parse().ok()?,
        ))
    }
}

impl fmt::Display for NeuronId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.group(), self.unit)
    }
}

/// A layer's site: the group of neurons reports count together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LayerSite {
    /// Layer number.
    pub layer: u32,
    /// Where in the layer.
    pub site: Site,
}

impl fmt::Display for LayerSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.site {
            Site::Residual => write!(f, "L{}", self.layer),
            site => write!(f, "L{}.{site}", self.layer),
        }
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
            .map(|c| NeuronId::new(first_layer + (c / hidden) as u32, (c % hidden) as u32))
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

    /// The distinct layer sites, by site (in [`Site::ALL`]'s order), then
    /// layer.
    pub fn groups(&self) -> Vec<LayerSite> {
        let mut groups: Vec<LayerSite> = self.ids.iter().map(NeuronId::group).collect();
        groups.sort_unstable_by_key(|g| (g.site, g.layer));
        groups.dedup();
        groups
    }

    /// True when some neuron is read at a site other than the residual
    /// stream.
    pub fn has_sites(&self) -> bool {
        self.ids.iter().any(|id| !id.site.is_residual())
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
        assert_eq!(index.id(0), NeuronId::new(0, 0));
        assert_eq!(index.id(3), NeuronId::new(1, 1));
        assert_eq!(index.id(5), NeuronId::new(2, 1));
        assert_eq!(index.layers(), vec![0, 1, 2]);
    }

    #[test]
    fn ids_print_and_parse_with_their_site() {
        let mlp = NeuronId::at(Site::Mlp, 12, 4031);
        assert_eq!(mlp.to_string(), "L12.mlp:4031");
        assert_eq!(NeuronId::new(3, 7).to_string(), "L3:7");
        for id in [
            mlp,
            NeuronId::new(3, 7),
            NeuronId::at(Site::Attention, 0, 1),
        ] {
            assert_eq!(NeuronId::parse(&id.to_string()), Some(id));
        }
        assert_eq!(NeuronId::parse("l2 : 5"), Some(NeuronId::new(2, 5)));
        assert_eq!(NeuronId::parse("L2:5"), Some(NeuronId::new(2, 5)));
        assert_eq!(NeuronId::parse("L2.ffn:5"), None);
        assert_eq!(NeuronId::parse("7"), None);
    }

    #[test]
    fn the_residual_site_stays_out_of_json() {
        let plain = serde_json::to_string(&NeuronId::new(1, 2)).unwrap();
        assert_eq!(plain, r#"{"layer":1,"unit":2}"#);
        let mlp = NeuronId::at(Site::Mlp, 1, 2);
        let text = serde_json::to_string(&mlp).unwrap();
        assert_eq!(text, r#"{"layer":1,"site":"mlp","unit":2}"#);
        assert_eq!(serde_json::from_str::<NeuronId>(&text).unwrap(), mlp);
        assert_eq!(
            serde_json::from_str::<NeuronId>(&plain).unwrap(),
            NeuronId::new(1, 2)
        );
    }

    #[test]
    fn groups_list_each_layer_site_once() {
        let index = NeuronIndex::from_ids(vec![
            NeuronId::at(Site::Mlp, 2, 0),
            NeuronId::new(1, 0),
            NeuronId::at(Site::Mlp, 1, 0),
            NeuronId::new(1, 1),
        ]);
        let names: Vec<String> = index.groups().iter().map(ToString::to_string).collect();
        assert_eq!(names, ["L1", "L1.mlp", "L2.mlp"]);
        assert!(index.has_sites());
        assert!(!NeuronIndex::layer_major(4, 2).unwrap().has_sites());
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
