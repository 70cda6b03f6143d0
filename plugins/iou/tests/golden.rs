//! `iou_neurox` against NeuroX's `iou_probe.get_neuron_ordering`
//! (`tests/golden/iou.json`): the same rankings (NeuroX breaks exact ties
//! toward the higher index, `lca` toward the lower), average precision within
//! 1e-12, and the caller's activations left as they were (NeuroX zeroes small
//! values in place). NeuroX rejects more than two classes; `lca` scores each
//! class against the rest, so the `multiclass_raises` case has no counterpart.
//!
//! One documented difference: a neuron left with a single value once small
//! values are zeroed (as in three of the fixtures) ranks no token above
//! another, and NeuroX gives it the class frequency as AP, which can rank it
//! above informative neurons. `lca` scores it 0, so it goes last; the
//! comparison moves those neurons to the end of NeuroX's ranking and expects
//! an AP of 0 for them.

use lca_core::data::{ActivationMatrix, Labels, NeuronIndex, Splits};
use lca_core::serde_json::{self, Value};
use lca_core::{Dataset, RankInput, Ranker, RunContext};
use lca_plugin_iou::AveragePrecisionRanker;
use lca_testkit::golden::{canonical, floats, ints, matrix};

#[test]
fn average_precision_ranking_matches_neurox_without_touching_the_input() {
    let doc: Value = serde_json::from_str(include_str!("golden/iou.json")).expect("JSON");
    let mut checked = 0;
    let mut with_single_valued = 0;
    for case in doc["cases"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        if case.get("raises").is_some() {
            continue;
        }
        let x = matrix(&case["X"]);
        let (n, d) = x.dim();
        let names: Vec<String> = ints(&case["y"]).iter().map(u32::to_string).collect();
        let data = Dataset::new(
            name,
            ActivationMatrix::from_array(x.clone()),
            NeuronIndex::layer_major(d, 1).unwrap(),
            Labels::from_names(&names),
            None,
            Splits::all_train(n),
        )
        .unwrap();
        let ranker = AveragePrecisionRanker {
            threshold: case["threshold"].as_f64().expect("threshold"),
            positive: Some("1".into()),
        };
        let ranking = ranker
            .rank(&RankInput::new(&data), &RunContext::new(0, 1))
            .unwrap();
        let after = matrix(&case["X_after_call"]);
        let single_valued: Vec<u32> = (0..d as u32)
            .filter(|&j| {
                let column = after.column(j as usize);
                column.iter().all(|&v| v == column[0])
            })
            .collect();
        with_single_valued += usize::from(!single_valued.is_empty());
        let mut expected: Vec<u32> = ints(&case["ranking"])
            .into_iter()
            .filter(|j| !single_valued.contains(j))
            .collect();
        expected.extend(&single_valued);
        let ties = &case["exact_tie_groups"];
        assert_eq!(
            canonical(ranking.order(), ties),
            canonical(&expected, ties),
            "{name}: ranking"
        );
        for (j, (got, neurox)) in ranking
            .scores()
            .unwrap()
            .iter()
            .zip(floats(&case["aux_average_precision_f64"]))
            .enumerate()
        {
            let want = if single_valued.contains(&(j as u32)) {
                0.0
            } else {
                neurox
            };
            assert!(
                (got - want).abs() < 1e-12,
                "{name}, neuron {j}: AP {got} vs NeuroX {want}"
            );
        }
        assert_eq!(
            data.acts().view(),
            x.view(),
            "{name}: the input was modified"
        );
        checked += 1;
    }
    assert_eq!(checked, 4, "every binary case was checked");
    assert_eq!(
        with_single_valued, 3,
        "the difference from NeuroX was exercised"
    );
}
