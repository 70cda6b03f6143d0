//! The `random` ranker: a uniformly random permutation of the neurons.
//!
//! ```text
//! order = Fisher–Yates shuffle of 0..n, drawn from the step seed
//! ```
//!
//! It ignores the data entirely. It is the baseline that every real method
//! must beat: its expected precision@k for planted neurons is |planted| / n.
//! The same seed always gives the same permutation.

use lca_core::params::Params as _;
use lca_core::registry::{ComponentInfo, ComponentKind, Descriptor, Inputs, applied};
use lca_core::rng::Rng;
use lca_core::{Component, NeuronRanking, RankInput, Ranker, Result, RunContext};
const NAME: &str = "random";

lca_core::params! {
    /// Parameters of `random`.
    struct RandomParams {
        /// fixed seed for the permutation; by default derived from the run
        /// seed and the ranker id
        #[shown = "step seed"]
        seed: Option<u64> = None,
    }
}

/// The component descriptor.
pub fn descriptor() -> Descriptor {
    Descriptor {
        info: ComponentInfo {
            kind: ComponentKind::Ranker,
            name: NAME.into(),
            summary: "Seeded uniformly random ranking: the baseline".into(),
            params: RandomParams::docs(),
            example: "[ranker.rand]\ntype = \"random\"\nsource = \"planted\"\n".into(),
            inputs: Inputs::default(),
        },
        build: |table| {
            let p = RandomParams::parse(NAME, table)?;
            Ok(Component::Ranker(Box::new(RandomRanker { seed: p.seed })))
        },
        applied: applied::<RandomParams>,
    }
}

/// A seeded random permutation.
#[derive(Clone, Debug, Default)]
pub struct RandomRanker {
    /// Fixed seed; the step seed when `None`.
    pub seed: Option<u64>,
}

impl Ranker for RandomRanker {
    fn rank(&self, input: &RankInput<'_>, cx: &RunContext) -> Result<NeuronRanking> {
        let mut rng = Rng::new(self.seed.unwrap_or(cx.seed()));
        let mut order: Vec<u32> = (0..input.data.n_neurons() as u32).collect();
        rng.shuffle(&mut order);
        NeuronRanking::from_order(order)
    }
}

lca_plugins::export_plugin! {
    name: "lca-plugin-random",
    version: env!("CARGO_PKG_VERSION"),
    components: [descriptor()],
}

#[cfg(test)]
mod tests {
    use super::*;
    use lca_testkit::{RankerTraits, check_ranker, planted, planted_precision};

    #[test]
    fn passes_conformance_as_a_data_blind_ranker() {
        check_ranker(
            &RandomRanker::default(),
            RankerTraits {
                equivariant: false,
                ..RankerTraits::default()
            },
        )
        .unwrap();
    }

    #[test]
    fn seeds_change_the_permutation_and_fix_it() {
        let data = planted(100, 50, 2, 1, 1);
        let input = RankInput::new(&data);
        let a = RandomRanker::default()
            .rank(&input, &RunContext::new(1, 1))
            .unwrap();
        let b = RandomRanker::default()
            .rank(&input, &RunContext::new(2, 1))
            .unwrap();
        assert_ne!(a.order(), b.order());
        let fixed = RandomRanker { seed: Some(5) };
        assert_eq!(
            fixed.rank(&input, &RunContext::new(1, 1)).unwrap(),
            fixed.rank(&input, &RunContext::new(2, 1)).unwrap()
        );
    }

    #[test]
    fn does_not_recover_planted_neurons() {
        // 10 informative of 500: a random top-10 holds 0.2 of them on average.
        let data = planted(200, 500, 5, 2, 3);
        let mean: f64 = (0..20)
            .map(|s| {
                planted_precision(
                    &RandomRanker::default()
                        .rank(&RankInput::new(&data), &RunContext::new(s, 1))
                        .unwrap(),
                    &data,
                )
            })
            .sum::<f64>()
            / 20.0;
        assert!(mean < 0.15, "mean precision@10 of random rankings: {mean}");
    }
}
