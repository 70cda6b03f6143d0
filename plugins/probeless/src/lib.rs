//! The `probeless` ranker: neurons whose class means differ most.
//!
//! Antverg & Belinkov (2022) rank neurons without training anything. With
//! `μ_cj` the mean of neuron *j* over the training tokens of class *c*:
//!
//! ```text
//! per-class score  s_zj = Σ_{c ≠ z} |μ_zj − μ_cj|
//! overall score    s_j  = Σ_{c < c'} |μ_cj − μ_c'j|      (each pair once)
//! ```
//!
//! The overall score is half the sum of the per-class scores, so it ranks
//! exactly as NeuroX's "all tags" score does. Classes with no training token
//! have no mean: they take no part in any sum, and their own class ranking
//! has every score 0 (they are listed in the ranking's details).
//!
//! Means are accumulated in `f64`, one neuron column per task in row order,
//! so the result does not depend on the thread count (NeuroX accumulates in
//! `float32`; its scores agree to about 1e-6 relative). Ties are broken by
//! the lower neuron index (NeuroX's `argsort(...)[::-1]` puts the higher
//! index first).

use lca_core::data::RowBlocks;
use lca_core::data::{ClassStats, Split};
use lca_core::params::Params as _;
use lca_core::registry::{ComponentInfo, ComponentKind, Descriptor, Inputs, applied};
use lca_core::{Component, NeuronRanking, RankInput, Ranker, Result, RunContext, serde_json};
const NAME: &str = "probeless";

/// The component descriptor.
pub fn descriptor() -> Descriptor {
    Descriptor {
        info: ComponentInfo {
            kind: ComponentKind::Ranker,
            name: NAME.into(),
            summary: "Probeless (Antverg & Belinkov): summed absolute differences of class means, overall and per class".into(),
            params: Vec::new(),
            example: "[ranker.probeless]\ntype = \"probeless\"\nsource = \"planted\"\n".into(),
            inputs: Inputs::default(),
        },
        build: |table| {
            <()>::parse(NAME, table)?;
            Ok(Component::Ranker(Box::new(ProbelessRanker)))
        },
        applied: applied::<()>,
    }
}

/// Ranks neurons by how far apart their class means lie.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProbelessRanker;

/// Class means of every neuron: `means[c][j]`, `None` for a class without
/// rows. Read a block of rows at a time (see `ClassStats::of_matrix`), so a
/// matrix mapped from a store larger than memory is read sequentially.
///
/// # Errors
/// When `labels` do not match the rows or name a class beyond `n_classes`.
pub fn class_means(
    x: impl RowBlocks,
    labels: &[u32],
    n_classes: usize,
) -> Result<Vec<Option<Vec<f64>>>> {
    let classes = (0..n_classes).map(|c| c.to_string()).collect();
    Ok(ClassStats::of_matrix(classes, x, labels)?.class_means())
}

/// The per-class scores `s_zj` and the overall pairwise score `s_j`, shared
/// with the mergeable statistics of `lca-core` so that a ranking from merged
/// shards is computed by the same formula.
pub use lca_core::data::probeless_scores;

impl Ranker for ProbelessRanker {
    fn rank(&self, input: &RankInput<'_>, cx: &RunContext) -> Result<NeuronRanking> {
        let data = input.data;
        data.require_two_train_classes()?;
        let train = data.split(Split::Train);
        let means = cx.install(|| class_means(&train.acts, train.labels, data.n_classes()))?;
        let (per_class, overall) = probeless_scores(&means, data.n_neurons());
        let names = data.classes().names();
        let absent: Vec<serde_json::Value> = means
            .iter()
            .zip(names)
            .filter(|(m, _)| m.is_none())
            .map(|(_, name)| serde_json::Value::from(name.as_str()))
            .collect();
        let mut details = serde_json::Map::new();
        if !absent.is_empty() {
            details.insert("classes_without_training_rows".into(), absent.into());
        }
        Ok(NeuronRanking::from_class_scores(overall, per_class, names)?.with_details(details))
    }
}

lca_plugins::export_plugin! {
    name: "lca-plugin-probeless",
    version: env!("CARGO_PKG_VERSION"),
    components: [descriptor()],
}

#[cfg(test)]
// Index loops over neurons and classes read as the formulas do.
#[allow(clippy::needless_range_loop)]
mod tests {
    use super::*;
    use lca_core::Dataset;
    use lca_core::data::{ActivationMatrix, Labels, NeuronIndex, Splits};
    use lca_core::ndarray::Array2;
    use lca_testkit::{RankerTraits, check_ranker, planted, planted_precision};

    fn dataset(x: Array2<f32>, labels: &[String]) -> Dataset<'static> {
        let (rows, cols) = x.dim();
        Dataset::new(
            "test",
            ActivationMatrix::from_array(x),
            NeuronIndex::layer_major(cols, 1).unwrap(),
            Labels::from_names(labels),
            None,
            Splits::all_train(rows),
        )
        .unwrap()
    }

    fn rank(data: &Dataset<'_>) -> NeuronRanking {
        ProbelessRanker
            .rank(&RankInput::new(data), &RunContext::new(0, 1))
            .unwrap()
    }

    #[test]
    fn hand_computed_example() {
        // Class means: "1" = [2, .25, 2, 5], "0" = [0, 3, 2.25, 1], "2" = [1, 1, 8, 3].
        let x = Array2::from_shape_vec(
            (6, 4),
            vec![
                1.0, 0.0, 2.0, 5.0, 3.0, 0.5, 2.0, 5.0, 0.0, 4.0, 2.0, 1.0, 0.0, 2.0, 2.5, 1.0,
                1.0, 1.0, 9.0, 3.0, 1.0, 1.0, 7.0, 3.0,
            ],
        )
        .unwrap();
        let y: Vec<String> = ["1", "1", "0", "0", "2", "2"].map(String::from).to_vec();
        let ranking = rank(&dataset(x, &y));
        // Pair sums: |2−0|+|2−1|+|0−1| = 4, 2.75+.75+2 = 5.5, .25+6+5.75 = 12, 4+2+2 = 8.
        assert_eq!(ranking.scores().unwrap(), &[4.0, 5.5, 12.0, 8.0]);
        assert_eq!(ranking.order(), &[2, 3, 1, 0]);
        let class0 = ranking
            .per_class()
            .iter()
            .find(|c| c.class() == "0")
            .unwrap();
        // |0−2|+|0−1| = 3, 2.75+2 = 4.75, .25+5.75 = 6, 4+2 = 6 → ties keep the lower index.
        assert_eq!(class0.scores().unwrap(), &[3.0, 4.75, 6.0, 6.0]);
        assert_eq!(class0.order(), &[2, 3, 1, 0]);
    }

    #[test]
    fn overall_score_is_half_the_sum_of_class_scores() {
        let data = planted(400, 30, 4, 2, 5);
        let ranking = rank(&data);
        let overall = ranking.scores().unwrap();
        for j in 0..30 {
            let sum: f64 = ranking
                .per_class()
                .iter()
                .map(|c| c.scores().unwrap()[j])
                .sum();
            assert!((sum / 2.0 - overall[j]).abs() < 1e-12 * (1.0 + overall[j]));
        }
    }

    #[test]
    fn recovers_planted_neurons() {
        let data = planted(3000, 200, 5, 2, 21);
        let ranking = rank(&data);
        assert_eq!(planted_precision(&ranking, &data), 1.0);
        let truth = data.truth().unwrap();
        for class in ranking.per_class() {
            let own = &truth.by_class[class.class()];
            assert!(
                own.iter().all(|n| class.order()[..10].contains(n)),
                "class {}: {:?} not in {:?}",
                class.class(),
                own,
                &class.order()[..10]
            );
        }
    }

    #[test]
    fn passes_conformance() {
        check_ranker(&ProbelessRanker, RankerTraits::default()).unwrap();
    }

    #[test]
    fn a_class_absent_from_training_is_left_out_and_reported() {
        let data = planted(200, 10, 3, 1, 2);
        let mut names: Vec<String> = data
            .labels()
            .ids()
            .iter()
            .map(|&id| data.classes().name(id).to_string())
            .collect();
        let n = names.len();
        // The last row gets a class that no other row has: with every row in
        // training it still has one row, so use a dev split to hide it.
        names[n - 1] = "rare".into();
        let splits = Splits {
            train: n - 1,
            dev: 1,
            test: 0,
        };
        let with_rare = Dataset::new(
            "absent",
            data.acts().clone(),
            data.neurons().clone(),
            Labels::from_names(&names),
            None,
            splits,
        )
        .unwrap();
        let ranking = rank(&with_rare);
        let rare = ranking
            .per_class()
            .iter()
            .find(|c| c.class() == "rare")
            .unwrap();
        assert!(rare.scores().unwrap().iter().all(|&s| s == 0.0));
        assert_eq!(
            ranking.details()["classes_without_training_rows"],
            serde_json::json!(["rare"])
        );
        // The other scores are those of the data without the hidden row.
        let rows: Vec<usize> = (0..n - 1).collect();
        let without = dataset(
            data.acts().select_rows(&rows).view().to_owned(),
            &names[..n - 1],
        );
        assert_eq!(ranking.scores(), rank(&without).scores());
    }
}
