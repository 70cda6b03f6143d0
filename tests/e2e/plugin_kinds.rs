//! Every component kind through a real plugin library, and every way a
//! plugin can misbehave: errors, panics, invalid results.

use std::sync::Arc;

use lca_core::component::{NamedRanking, ProbeInput};
use lca_core::registry::ComponentKind;
use lca_core::{
    Component, Error, EvalInput, NeuronRanking, RankInput, Registry, RunContext, SharedProbe,
};
use lca_testkit::planted;
use lca_tests::registry_with;

fn registry() -> Registry {
    registry_with(&["lca_fixture_faulty"])
}

fn build(
    registry: &Registry,
    kind: ComponentKind,
    name: &str,
    mode: &str,
) -> lca_core::Result<Component> {
    let params: lca_core::toml::Table = format!("mode = \"{mode}\"").parse().unwrap();
    registry.get(kind, name)?.build(&params)
}

fn cx() -> RunContext {
    RunContext::new(1, 1).for_step("test")
}

#[test]
fn a_source_a_probe_and_an_evaluator_work_across_the_boundary() {
    let registry = registry();
    let Component::Source(source) =
        build(&registry, ComponentKind::Source, "faulty_source", "ok").unwrap()
    else {
        panic!()
    };
    let data = source.load(&cx()).unwrap();
    assert_eq!((data.n_rows(), data.n_neurons()), (300, 12));
    assert!(data.truth().is_some());

    let Component::Probe(spec) =
        build(&registry, ComponentKind::Probe, "faulty_probe", "ok").unwrap()
    else {
        panic!()
    };
    let trained: SharedProbe = Arc::from(spec.fit(&data, &cx()).unwrap());
    lca_core::run::check_probe(trained.as_ref(), &data).unwrap();
    let predicted = trained.predict(data.acts().view().view()).unwrap();
    assert_eq!(predicted.len(), 300);

    // The host hands the plugin's probe back to a plugin evaluator that retrains it.
    let Component::Evaluator(evaluator) = build(
        &registry,
        ComponentKind::Evaluator,
        "faulty_evaluator",
        "ok",
    )
    .unwrap() else {
        panic!()
    };
    let ranking = NeuronRanking::from_order((0..12).collect()).unwrap();
    let input = EvalInput::new(&data)
        .with_rankings(vec![NamedRanking {
            id: "r",
            ranking: &ranking,
        }])
        .with_probes(vec![ProbeInput {
            id: "p".into(),
            spec: spec.clone(),
            trained,
        }]);
    let e = evaluator.evaluate(&input, &cx()).unwrap();
    assert!(e.metrics["train_accuracy.p"] > 0.5, "{e:?}");
}

#[test]
fn errors_and_panics_in_every_kind_become_errors_naming_the_plugin() {
    let registry = registry();
    let data = planted(200, 12, 3, 1, 1);
    for mode in ["error", "panic"] {
        let check = |result: lca_core::Result<()>, kind: &str| {
            let err = result.expect_err("must fail");
            let text = err.to_string();
            if mode == "panic" {
                assert!(
                    matches!(err, Error::Panicked { .. }),
                    "{kind}/{mode}: {text}"
                );
                assert!(
                    text.contains("lca-fixture-faulty") && text.contains("asked to panic"),
                    "{kind}/{mode}: {text}"
                );
                assert!(
                    text.contains("src/lib.rs"),
                    "the panic location is reported: {text}"
                );
            } else {
                assert!(text.contains("asked to fail"), "{kind}/{mode}: {text}");
            }
        };
        let Component::Source(s) =
            build(&registry, ComponentKind::Source, "faulty_source", mode).unwrap()
        else {
            panic!()
        };
        check(s.load(&cx()).map(|_| ()), "source");
        let Component::Probe(p) =
            build(&registry, ComponentKind::Probe, "faulty_probe", mode).unwrap()
        else {
            panic!()
        };
        check(p.fit(&data, &cx()).map(|_| ()), "probe");
        let Component::Ranker(r) =
            build(&registry, ComponentKind::Ranker, "faulty_ranker", mode).unwrap()
        else {
            panic!()
        };
        check(r.rank(&RankInput::new(&data), &cx()).map(|_| ()), "ranker");
        let Component::Evaluator(e) = build(
            &registry,
            ComponentKind::Evaluator,
            "faulty_evaluator",
            mode,
        )
        .unwrap() else {
            panic!()
        };
        check(
            e.evaluate(&EvalInput::new(&data), &cx()).map(|_| ()),
            "evaluator",
        );
    }
}

#[test]
fn invalid_results_are_caught_by_the_host() {
    let registry = registry();
    let data = planted(200, 12, 3, 1, 1);
    let expectations = [
        ("nan", "score of neuron 0 is NaN"),
        ("not_permutation", "twice, so it is not a permutation"),
        (
            "wrong_length",
            "the ranking covers 11 neurons but the data has 12",
        ),
    ];
    for (mode, expected) in expectations {
        let Component::Ranker(r) =
            build(&registry, ComponentKind::Ranker, "faulty_ranker", mode).unwrap()
        else {
            panic!()
        };
        let err = r
            .rank(&RankInput::new(&data), &cx())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ranker `faulty_ranker` of plugin lca-fixture-faulty")
                && err.contains(expected),
            "{mode}: {err}"
        );
    }
    let Component::Probe(p) = build(
        &registry,
        ComponentKind::Probe,
        "faulty_probe",
        "bad_weights",
    )
    .unwrap() else {
        panic!()
    };
    let trained = p.fit(&data, &cx()).unwrap();
    let err = lca_core::run::check_probe(trained.as_ref(), &data).unwrap_err();
    assert!(
        err.contains("weights are 1 × 12, expected classes × neurons = 3 × 12"),
        "{err}"
    );
    let Component::Probe(p) = build(
        &registry,
        ComponentKind::Probe,
        "faulty_probe",
        "panic_predict",
    )
    .unwrap() else {
        panic!()
    };
    let trained = p.fit(&data, &cx()).unwrap();
    let err = trained.predict(data.acts().view().view()).unwrap_err();
    assert!(matches!(err, Error::Panicked { .. }), "{err}");
    let Component::Evaluator(e) = build(
        &registry,
        ComponentKind::Evaluator,
        "faulty_evaluator",
        "nan",
    )
    .unwrap() else {
        panic!()
    };
    let err = e
        .evaluate(&EvalInput::new(&data), &cx())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("lca-fixture-faulty")
            && err.contains("its evaluation is invalid: metric `broken` is NaN"),
        "{err}"
    );
}

#[test]
fn bad_parameters_cross_as_parameter_errors() {
    let registry = registry();
    let err = build(
        &registry,
        ComponentKind::Ranker,
        "faulty_ranker",
        "sideways",
    )
    .unwrap_err();
    match err {
        Error::InvalidParam { param, value, .. } => {
            assert_eq!((param.as_str(), value.as_str()), ("mode", "\"sideways\""));
        }
        other => panic!("{other}"),
    }
}
