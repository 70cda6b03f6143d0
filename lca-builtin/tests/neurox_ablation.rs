//! The ablation column helpers against NeuroX 1.0.9 (fixture
//! `golden/ablation.json`, copied from the project's shared NeuroX golden
//! data). X[t][n] = 100·t + n + 0.5, so every output value names its column.

use lca_builtin::ablate::{
    LayerLayout, keep_columns, layer_columns, remove_columns, zero_out, zero_out_except,
};
use lca_core::ndarray::Array2;
use serde_json::Value;

mod common;
use common::{ints, matrix_f32 as matrix};

#[test]
fn column_helpers_match_neurox() {
    let golden: Value = serde_json::from_str(include_str!("golden/ablation.json")).unwrap();
    let x = matrix(&golden["X"]);
    let num_layers = golden["num_layers"].as_u64().unwrap() as usize;
    let mut checked = 0;
    for case in golden["cases"].as_array().unwrap() {
        let function = case["function"]
            .as_str()
            .unwrap()
            .rsplit('.')
            .next()
            .unwrap();
        let args = &case["args"];
        let output = match function {
            "filter_activations_keep_neurons" => {
                keep_columns(x.view(), &ints(&args["neurons_to_keep"])).unwrap()
            }
            "filter_activations_remove_neurons" => {
                remove_columns(x.view(), &ints(&args["neurons_to_remove"])).unwrap()
            }
            "zero_out_activations_keep_neurons" => {
                zero_out_except(x.view(), &ints(&args["neurons_to_keep"])).unwrap()
            }
            "zero_out_activations_remove_neurons" => {
                zero_out(x.view(), &ints(&args["neurons_to_remove"])).unwrap()
            }
            "filter_activations_by_layers" => {
                let layout = match args["bidirectional_filtering"].as_str().unwrap() {
                    "none" => LayerLayout::LayerMajor,
                    "forward" => LayerLayout::InterleavedForward,
                    "backward" => LayerLayout::InterleavedBackward,
                    other => panic!("unexpected layout {other}"),
                };
                let layers = ints(&args["layers_to_keep"]);
                assert_eq!(args["num_layers"].as_u64().unwrap() as usize, num_layers);
                keep_columns(
                    x.view(),
                    &layer_columns(x.ncols(), num_layers, &layers, layout).unwrap(),
                )
                .unwrap()
            }
            other => panic!("unexpected function {other}"),
        };
        assert_eq!(output, matrix(&case["output"]), "{function} {args}");
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} cases");
}

#[test]
fn out_of_range_neurons_and_layers_are_errors() {
    let x = Array2::<f32>::zeros((2, 6));
    assert!(
        keep_columns(x.view(), &[6])
            .unwrap_err()
            .to_string()
            .contains("neuron 6 does not exist")
    );
    assert!(
        layer_columns(6, 3, &[3], LayerLayout::LayerMajor)
            .unwrap_err()
            .to_string()
            .contains("layer 3 does not exist")
    );
    assert!(layer_columns(7, 3, &[0], LayerLayout::LayerMajor).is_err());
}
