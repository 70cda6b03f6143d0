//! The NeuroX-compatible solver against NeuroX 1.0.9 itself: weights trained
//! from the same starting point, printed epoch losses, predictions and
//! accuracies (fixture `golden/probe_training.json`, copied from the project's
//! shared NeuroX golden data; see its README for how it was made).

use lca_core::RunContext;
use lca_core::ndarray::{Array1, Array2};
use lca_linear::{AdamSettings, FitOptions, Init, L2Form, Penalty, Solver, fit};
use serde_json::Value;

fn matrix(v: &Value) -> Array2<f64> {
    lca_testkit::golden::matrix_f64(v)
}

fn vector(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn labels(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// float32 inputs are stored as the f64 repr of the f32 value.
fn as_f32(m: &Array2<f64>) -> Array2<f32> {
    m.mapv(|v| v as f32)
}

#[test]
fn adam_reproduces_neurox_training_runs() {
    let golden: Value = serde_json::from_str(include_str!("golden/probe_training.json")).unwrap();
    let x_train = as_f32(&matrix(&golden["X_train"]));
    let y_train = labels(&golden["y_train"]);
    let x_test = as_f32(&matrix(&golden["X_test"]));
    let y_test = labels(&golden["y_test"]);
    let w_init = matrix(&golden["W_init"]).mapv(|v| f64::from(v as f32));
    let b_init = Array1::from(vector(&golden["b_init"])).mapv(|v| f64::from(v as f32));
    let runs = golden["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 6);
    for run in runs {
        let name = run["name"].as_str().unwrap();
        let options = FitOptions {
            penalty: Penalty {
                l1: run["lambda_l1"].as_f64().unwrap(),
                l2: run["lambda_l2"].as_f64().unwrap(),
                l2_form: L2Form::Frobenius,
            },
            solver: Solver::NeuroxAdam(AdamSettings {
                epochs: run["num_epochs"].as_u64().unwrap() as usize,
                batch_size: run["batch_size"].as_u64().unwrap() as usize,
                learning_rate: run["learning_rate"].as_f64().unwrap(),
                shuffle: false,
            }),
            standardize: false,
            init: Init::Given(w_init.clone(), b_init.clone()),
        };
        let model = fit(
            x_train.view(),
            &y_train,
            4,
            &options,
            &RunContext::new(0, 1),
        )
        .unwrap();

        let expected_w = matrix(&run["W"]);
        let expected_b = vector(&run["b"]);
        let max_param = expected_w
            .iter()
            .chain(&expected_b)
            .fold(0.0f64, |m, v| m.max(v.abs()));
        let tolerance = 1e-6f64.max(1e-5 * max_param);
        let mut worst = 0.0f64;
        for (got, want) in model.weights.iter().zip(expected_w.iter()) {
            worst = worst.max((f64::from(*got) - want).abs());
        }
        for (got, want) in model.bias.iter().zip(&expected_b) {
            worst = worst.max((f64::from(*got) - want).abs());
        }
        assert!(
            worst <= tolerance,
            "{name}: max |Δ| = {worst:e} > {tolerance:e}"
        );

        let printed: Vec<String> = run["printed_epoch_losses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        let ours: Vec<String> = model
            .report
            .epoch_losses
            .iter()
            .enumerate()
            .map(|(e, l)| format!("Epoch: [{}/{}], Loss: {l:.4}", e + 1, printed.len()))
            .collect();
        assert_eq!(ours, printed, "{name}: printed epoch losses");

        let proba = model.predict_proba(x_test.view()).unwrap();
        let predictions: Vec<u32> = proba
            .rows()
            .into_iter()
            .map(|r| lca_core::component::argmax(r.iter().copied()))
            .collect();
        assert_eq!(
            predictions,
            labels(&run["eval_test"]["predictions"]),
            "{name}: test predictions"
        );
        let correct = predictions
            .iter()
            .zip(&y_test)
            .filter(|(a, b)| a == b)
            .count();
        let accuracy = correct as f64 / y_test.len() as f64;
        assert_eq!(
            accuracy,
            run["eval_test"]["accuracy"].as_f64().unwrap(),
            "{name}: test accuracy"
        );
    }
}

#[test]
fn adam_reproduces_the_worked_example() {
    // neurox.md §2.6: X 6×3, three classes, lr 0.001, fixed initial point.
    let x = Array2::from_shape_vec(
        (6, 3),
        vec![
            1.0, 0.0, 0.5, 0.2, 1.0, -0.3, -0.5, 0.4, 1.0, 0.9, -0.1, 0.0, 0.0, 0.8, 0.1, 0.3, 0.3,
            0.9,
        ],
    )
    .unwrap();
    let y = [0, 1, 2, 0, 1, 2];
    let w0 = Array2::from_shape_vec((3, 3), vec![0.1, -0.2, 0.3, 0.0, 0.5, -0.1, -0.3, 0.2, 0.2])
        .unwrap()
        .mapv(|v: f64| f64::from(v as f32));
    let b0 = Array1::from(vec![0.01, -0.02, 0.03]).mapv(|v: f64| f64::from(v as f32));
    let cases = [
        (
            0.0,
            1,
            4,
            [0.10152917, -0.20198904, 0.30029917],
            [0.010657239, -0.020732960, 0.029418863],
            "Epoch: [1/1], Loss: 0.3082",
        ),
        (
            0.01,
            1,
            4,
            [0.10149204, -0.20198536, 0.29824579],
            [0.010657527, -0.020733273, 0.029418612],
            "Epoch: [1/1], Loss: 0.3170",
        ),
        (
            0.01,
            2,
            4,
            [0.10270222, -0.20394215, 0.29689935],
            [0.010346546, -0.020587210, 0.029903499],
            "Epoch: [2/2], Loss: 0.3163",
        ),
        (
            0.001,
            3,
            2,
            [0.10724163, -0.20887798, 0.29930648],
            [0.012725376, -0.019906556, 0.028565561],
            "Epoch: [3/3], Loss: 0.4500",
        ),
    ];
    for (lambda, epochs, batch, w_row0, b, last_loss) in cases {
        let options = FitOptions {
            penalty: Penalty {
                l1: lambda,
                l2: lambda,
                l2_form: L2Form::Frobenius,
            },
            solver: Solver::NeuroxAdam(AdamSettings {
                epochs,
                batch_size: batch,
                learning_rate: 0.001,
                shuffle: false,
            }),
            standardize: false,
            init: Init::Given(w0.clone(), b0.clone()),
        };
        let model = fit(x.view(), &y, 3, &options, &RunContext::new(0, 1)).unwrap();
        for (got, want) in model
            .weights
            .row(0)
            .iter()
            .zip(w_row0)
            .chain(model.bias.iter().zip(b))
        {
            assert!(
                (f64::from(*got) - want).abs() < 1e-7,
                "λ = {lambda}, {epochs} epochs: {got} vs {want}"
            );
        }
        let printed = format!(
            "Epoch: [{epochs}/{epochs}], Loss: {:.4}",
            model.report.epoch_losses.last().unwrap()
        );
        assert_eq!(printed, last_loss);
    }
}
