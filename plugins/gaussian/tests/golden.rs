//! The Gaussian ranker against NeuroX's `gaussian_probe`
//! (`tests/golden/gaussian.json`): the same greedy order, and every
//! candidate's mutual information at every step within 1e-6 bits. In the
//! `head_unit_test` case two candidates tie exactly at step 2 and the lower
//! index must win, as in NeuroX.

use lca_core::serde_json::{self, Value};
use lca_plugin_gaussian::greedy_selection;
use lca_testkit::golden::{ints, matrix};

#[test]
fn greedy_order_and_mutual_information_match_neurox() {
    let doc: Value = serde_json::from_str(include_str!("golden/gaussian.json")).expect("JSON");
    let cases = doc["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 2);
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let x = matrix(&case["X"]);
        let (n, d) = x.dim();
        let y = ints(&case["y"]);
        let n_classes = *y.iter().max().unwrap() as usize + 1;
        let all: Vec<usize> = (0..n).collect();
        let sel = greedy_selection(x.view(), &y, n_classes, &all, d, false);
        let want = ints(&case["get_neuron_ordering"]["ordering"]);
        assert_eq!(sel.selected, want, "{name}: greedy order");
        for (step, trace) in case["greedy_trace"].as_array().unwrap().iter().enumerate() {
            for candidate in trace["candidates"].as_array().unwrap() {
                let j = candidate["neuron"].as_u64().unwrap() as usize;
                let mi = candidate["mi_bits"].as_f64().unwrap();
                let got = sel.candidates[step][j];
                assert!(
                    (got - mi).abs() < 1e-6,
                    "{name}, step {step}, neuron {j}: {got} bits vs NeuroX {mi}"
                );
            }
        }
    }
}
