//! The probeless ranker against NeuroX 1.0.9 (`tests/golden/probeless.json`):
//! same rankings (exact ties aside, which NeuroX breaks toward the higher
//! index and `lca` toward the lower), scores within 1e-6 relative (NeuroX
//! sums in float32).

use lca_core::data::{ActivationMatrix, Labels, NeuronIndex, Splits};
use lca_core::serde_json::{self, Value};
use lca_core::{Dataset, RankInput, Ranker, RunContext};
use lca_plugin_probeless::ProbelessRanker;
use lca_testkit::golden::{canonical, floats, ints, matrix};

fn cases() -> Vec<Value> {
    let text = include_str!("golden/probeless.json");
    let doc: Value = serde_json::from_str(text).expect("fixture is JSON");
    doc["cases"].as_array().expect("cases").clone()
}

fn close(got: &[f64], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (j, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-6 * w.abs().max(1e-6),
            "{what}, neuron {j}: {g} vs NeuroX {w}"
        );
    }
}

#[test]
fn rankings_and_scores_match_neurox() {
    for case in cases() {
        let name = case["name"].as_str().expect("name");
        let x = matrix(&case["X"]);
        let (n, d) = x.dim();
        let names: Vec<String> = ints(&case["y"])
            .iter()
            .map(|y| {
                case["idx2label"][y.to_string()]
                    .as_str()
                    .expect("label")
                    .to_string()
            })
            .collect();
        let data = Dataset::new(
            name,
            ActivationMatrix::from_array(x),
            NeuronIndex::layer_major(d, 1).unwrap(),
            Labels::from_names(&names),
            None,
            Splits::all_train(n),
        )
        .unwrap();
        let ranking = ProbelessRanker
            .rank(&RankInput::new(&data), &RunContext::new(0, 1))
            .unwrap();
        let ties = &case["exact_tie_groups"];

        let want = ints(&case["get_neuron_ordering"]);
        assert_eq!(
            canonical(ranking.order(), &ties["pairwise_score"]),
            canonical(&want, &ties["pairwise_score"]),
            "{name}: overall ordering"
        );
        let all_tags = &case["get_neuron_ordering_for_all_tags"]["overall_ranking"];
        assert_eq!(
            canonical(ranking.order(), &ties["all_tags_score"]),
            canonical(&ints(all_tags), &ties["all_tags_score"]),
            "{name}: all-tags ordering"
        );
        close(
            ranking.scores().unwrap(),
            &floats(&case["aux_pairwise_score_f32"]),
            &format!("{name}: pairwise score"),
        );

        let per_tag = case["get_neuron_ordering_for_tag"]
            .as_object()
            .expect("tags");
        assert_eq!(per_tag.len(), ranking.per_class().len());
        for (tag, order) in per_tag {
            let class = ranking
                .per_class()
                .iter()
                .find(|c| c.class() == tag)
                .unwrap_or_else(|| panic!("{name}: no ranking for {tag}"));
            let tie_key = format!("tag_{tag}");
            assert_eq!(
                canonical(class.order(), &ties[&tie_key]),
                canonical(&ints(order), &ties[&tie_key]),
                "{name}: ordering for {tag}"
            );
            close(
                class.scores().unwrap(),
                &floats(&case["aux_tag_scores_f32"][tag]),
                &format!("{name}: score for {tag}"),
            );
        }
    }
}
