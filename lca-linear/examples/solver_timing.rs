//! Times the probe solvers on a planted matrix.
//!
//! ```text
//! cargo run --release -p lca-core --example solver_timing -- TOKENS NEURONS CLASSES PER_CLASS THREADS [l1 l2 tol]
//! ```

use std::time::Instant;

use lca_builtin::{SyntheticParams, generate};
use lca_core::RunContext;
use lca_core::data::Split;
use lca_linear::{AdamSettings, FistaSettings, FitOptions, Init, L2Form, Penalty, Solver, fit};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, default: f64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (tokens, neurons, classes, per_class, threads) = (
        num(0, 20000.0) as usize,
        num(1, 9984.0) as usize,
        num(2, 10.0) as usize,
        num(3, 3.0) as usize,
        num(4, 1.0) as usize,
    );
    let (l1, l2, tol) = (num(5, 1e-3), num(6, 1e-3), num(7, 1e-4));
    let params = SyntheticParams {
        tokens,
        neurons,
        classes,
        per_class,
        shift: 1.5,
        split: lca_core::data::SplitFractions {
            dev: 0.0,
            test: 0.1,
        },
        ..Default::default()
    };
    let cx = RunContext::new(1234, threads);
    let t = Instant::now();
    let data = cx.install(|| generate(&params, 1234, "bench")).unwrap();
    eprintln!(
        "generated {tokens}×{neurons} in {:.2}s",
        t.elapsed().as_secs_f64()
    );
    let train = data.split(Split::Train);
    let test = data.split(Split::Test);
    let penalty = Penalty {
        l1,
        l2,
        l2_form: L2Form::Frobenius,
    };
    let solvers = [
        (
            "fista",
            Solver::Fista(FistaSettings {
                tol,
                max_iter: std::env::var("MAX_ITER")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(500),
            }),
            Init::Zeros,
        ),
        (
            "neurox_adam",
            Solver::NeuroxAdam(AdamSettings::default()),
            Init::TorchLike,
        ),
    ];
    let only = std::env::var("SOLVER").ok();
    for (name, solver, init) in solvers {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let options = FitOptions {
            penalty,
            solver,
            standardize: false,
            init,
        };
        let t = Instant::now();
        let model = fit(&train.acts, train.labels, classes, &options, &cx).unwrap();
        let secs = t.elapsed().as_secs_f64();
        let proba = model.predict_proba(test.acts.view().view()).unwrap();
        let correct = proba
            .rows()
            .into_iter()
            .zip(test.labels)
            .filter(|(r, y)| lca_core::component::argmax(r.iter().copied()) == **y)
            .count();
        let active = model
            .weights
            .columns()
            .into_iter()
            .filter(|c| c.iter().any(|v| *v != 0.0))
            .count();
        println!("{name}: {active} columns with a non-zero weight");
        println!(
            "{name}: {secs:.2}s, {} iterations, {} passes, objective {:.5}, converged {}, zeros {}, test accuracy {:.4}",
            model.report.iterations,
            model.report.data_passes,
            model.report.objective,
            model.report.converged,
            model.report.zero_weights,
            correct as f64 / test.labels.len() as f64
        );
    }
}
