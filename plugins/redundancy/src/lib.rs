//! The `independent_neurons` ranker: a ranking with redundant neurons moved
//! back (Dalvi et al. 2020, "correlation clustering").
//!
//! ```text
//! cluster the neurons by correlation (1 − |ρ| ≤ threshold, average linkage)
//! representatives = the best-ranked neuron of each cluster, in ranking order
//! ranking         = representatives, then every other neuron, in ranking order
//! ```
//!
//! Wire it to another ranking (`rankings = ["lca"]`) and feed it to the
//! evaluators: the top-k of the result are k neurons from k different
//! clusters, so minimal subsets and ablations measure non-redundant sets.

use lca_builtin::{ClusterSettings, neuron_clusters};
use lca_core::data::Split;
use lca_core::params::Params as _;
use lca_core::registry::{ComponentInfo, ComponentKind, Descriptor, Inputs, Need, applied};
use lca_core::{Component, Error, NeuronRanking, RankInput, Ranker, Result, RunContext};

const NAME: &str = "independent_neurons";

/// The component descriptor.
pub fn descriptor() -> Descriptor {
    Descriptor {
        info: ComponentInfo {
            kind: ComponentKind::Ranker,
            name: NAME.into(),
            summary: "A ranking with one neuron per correlation cluster first (redundancy removed)".into(),
            params: ClusterSettings::docs(),
            example: "[ranker.lca_independent]\ntype = \"independent_neurons\"\nrankings = [\"lca\"]\nthreshold = 0.3\n".into(),
            inputs: Inputs { rankings: Need::Required, min_rankings: 1, ..Inputs::default() },
        },
        build: |table| Ok(Component::Ranker(Box::new(IndependentNeurons { settings: ClusterSettings::parse(NAME, table)? }))),
        applied: applied::<ClusterSettings>,
    }
}

/// Representatives of correlation clusters first.
#[derive(Clone, Debug)]
pub struct IndependentNeurons {
    settings: ClusterSettings,
}

impl Ranker for IndependentNeurons {
    fn rank(&self, input: &RankInput<'_>, cx: &RunContext) -> Result<NeuronRanking> {
        let base = input.rankings.first().ok_or_else(|| {
            Error::input(format!(
                "`{NAME}` reorders another ranking: add `rankings = [\"<ranker id>\"]`"
            ))
        })?;
        let labels = neuron_clusters(input.data, Split::Train, self.settings, cx)?;
        let clusters = labels.iter().copied().max().map_or(0, |m| m + 1);
        let mut represented = vec![false; clusters];
        let (mut first, mut rest) = (Vec::with_capacity(clusters), Vec::new());
        for &j in base.ranking.order() {
            let c = labels[j as usize];
            if represented[c] {
                rest.push(j);
            } else {
                represented[c] = true;
                first.push(j);
            }
        }
        let representatives = first.len();
        first.extend(rest);
        let mut details = serde_json::Map::new();
        details.insert("base_ranking".into(), base.id.into());
        details.insert("clusters".into(), clusters.into());
        details.insert("representatives".into(), representatives.into());
        details.insert("threshold".into(), self.settings.threshold.into());
        Ok(NeuronRanking::from_order(first)?.with_details(details))
    }
}

lca_plugins::export_plugin! {
    name: "lca-plugin-redundancy",
    version: env!("CARGO_PKG_VERSION"),
    components: [descriptor()],
}

#[cfg(test)]
mod tests {
    use super::*;
    use lca_testkit::{RankerTraits, check_ranker, planted};

    fn ranker() -> IndependentNeurons {
        IndependentNeurons {
            settings: ClusterSettings::defaults().unwrap(),
        }
    }

    fn variance_ranking(data: &lca_core::Dataset<'_>) -> NeuronRanking {
        let x = data.split(Split::Train).acts;
        NeuronRanking::from_scores(
            x.view()
                .var_axis(lca_core::ndarray::Axis(0), 0.0)
                .iter()
                .map(|&v| f64::from(v))
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn copies_of_a_neuron_move_behind_their_original() {
        let p = lca_builtin::SyntheticParams {
            tokens: 2000,
            neurons: 30,
            classes: 3,
            per_class: 2,
            copies: 1,
            ..Default::default()
        };
        let data = lca_builtin::generate(&p, 4, "t").unwrap();
        let base = variance_ranking(&data);
        let input = RankInput::new(&data).with_rankings(vec![lca_core::NamedRanking {
            id: "var",
            ranking: &base,
        }]);
        let r = ranker().rank(&input, &RunContext::new(0, 1)).unwrap();
        let pos = r.positions();
        let representatives = r.details()["representatives"].as_u64().unwrap() as usize;
        assert_eq!(
            representatives,
            30 - 6,
            "every copy shares its original's cluster"
        );
        for &(copy, original) in &data.truth().unwrap().copies {
            // Exactly one of each pair is a representative.
            let in_front = [
                pos[copy as usize] < representatives,
                pos[original as usize] < representatives,
            ];
            assert_eq!(
                in_front.iter().filter(|x| **x).count(),
                1,
                "pair ({copy}, {original})"
            );
        }
    }

    #[test]
    fn passes_conformance() {
        let traits = RankerTraits {
            ranking: Some(variance_ranking),
            ..RankerTraits::default()
        };
        check_ranker(&ranker(), traits).unwrap();
        let _ = planted(10, 2, 2, 1, 1);
    }
}
