//! The ranker conformance suite, run through the loaded plugin libraries
//! (each plugin crate also runs it in-process).

use lca_core::registry::ComponentKind;
use lca_core::{Component, RankInput, Ranker, RunContext};
use lca_testkit::{RankerTraits, check_ranker, planted, planted_precision};
use lca_tests::registry_with;

fn loaded_ranker(library: &str, name: &str, params: &str) -> Box<dyn Ranker> {
    let registry = registry_with(&[library]);
    let registered = registry
        .get(ComponentKind::Ranker, name)
        .expect("ranker registered");
    match registered
        .build(&params.parse().expect("valid TOML"))
        .expect("builds")
    {
        Component::Ranker(r) => r,
        other => panic!("built a {:?}", other.kind()),
    }
}

#[test]
fn correlation_through_the_library() {
    let ranker = loaded_ranker("lca_plugin_correlation", "correlation", "");
    check_ranker(ranker.as_ref(), RankerTraits::default()).unwrap();
    let signed = loaded_ranker("lca_plugin_correlation", "correlation", "signed = true");
    check_ranker(signed.as_ref(), RankerTraits::default()).unwrap();
}

#[test]
fn random_through_the_library() {
    let ranker = loaded_ranker("lca_plugin_random", "random", "");
    check_ranker(
        ranker.as_ref(),
        RankerTraits {
            equivariant: false,
            ..RankerTraits::default()
        },
    )
    .unwrap();
}

#[test]
fn probeless_through_the_library() {
    let ranker = loaded_ranker("lca_plugin_probeless", "probeless", "");
    check_ranker(ranker.as_ref(), RankerTraits::default()).unwrap();
}

#[test]
fn iou_rankers_through_the_library() {
    let ranker = loaded_ranker("lca_plugin_iou", "iou", "quantile = 0.1");
    check_ranker(ranker.as_ref(), RankerTraits::default()).unwrap();
    let ranker = loaded_ranker("lca_plugin_iou", "iou_neurox", "threshold = 0.1");
    check_ranker(ranker.as_ref(), RankerTraits::default()).unwrap();
}

#[test]
fn gaussian_through_the_library() {
    let ranker = loaded_ranker("lca_plugin_gaussian", "gaussian", "neurons = 5");
    check_ranker(ranker.as_ref(), RankerTraits::default()).unwrap();
}

#[test]
fn every_new_ranker_recovers_planted_neurons_through_its_library() {
    let data = planted(3000, 120, 4, 2, 17);
    let cx = RunContext::new(3, 2).for_step("ranker.x");
    let input = RankInput::new(&data);
    for (library, name, params) in [
        ("lca_plugin_probeless", "probeless", ""),
        ("lca_plugin_iou", "iou", "quantile = 0.05"),
        ("lca_plugin_iou", "iou_neurox", ""),
        ("lca_plugin_gaussian", "gaussian", "neurons = 10"),
    ] {
        let ranking = loaded_ranker(library, name, params)
            .rank(&input, &cx)
            .unwrap();
        assert_eq!(planted_precision(&ranking, &data), 1.0, "{name}");
    }
}

#[test]
fn variance_example_through_the_library() {
    let ranker = loaded_ranker("lca_plugin_variance", "variance", "between_classes = true");
    check_ranker(ranker.as_ref(), RankerTraits::default()).unwrap();
}

#[test]
fn loaded_correlation_matches_the_textbook_formula_and_beats_random() {
    let data = planted(2000, 150, 5, 2, 3);
    let cx = RunContext::new(9, 2).for_step("ranker.x");
    let input = RankInput::new(&data);
    let loaded = loaded_ranker("lca_plugin_correlation", "correlation", "")
        .rank(&input, &cx)
        .unwrap();
    let reference = textbook_correlation_scores(&data);
    for (j, (a, b)) in loaded.scores().unwrap().iter().zip(&reference).enumerate() {
        assert!((a - b).abs() < 1e-9, "neuron {j}: {a} vs {b}");
    }
    assert_eq!(
        loaded.order(),
        lca_core::NeuronRanking::from_scores(reference)
            .unwrap()
            .order()
    );
    assert_eq!(planted_precision(&loaded, &data), 1.0);
    let random = loaded_ranker("lca_plugin_random", "random", "")
        .rank(&input, &cx)
        .unwrap();
    assert!(planted_precision(&random, &data) < 0.5);
}

/// max over classes of |pearson(neuron, class indicator)|, neuron by neuron.
fn textbook_correlation_scores(data: &lca_core::Dataset<'_>) -> Vec<f64> {
    let train = data.split(lca_core::data::Split::Train);
    let acts = train.acts.view();
    let n = train.labels.len() as f64;
    (0..data.n_neurons())
        .map(|j| {
            let col: Vec<f64> = acts.column(j).iter().map(|&v| f64::from(v)).collect();
            let mean = col.iter().sum::<f64>() / n;
            let sd = (col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
            (0..data.n_classes() as u32)
                .map(|c| {
                    let ind: Vec<f64> = train
                        .labels
                        .iter()
                        .map(|&y| f64::from(u8::from(y == c)))
                        .collect();
                    let mi = ind.iter().sum::<f64>() / n;
                    let si = (ind.iter().map(|v| (v - mi).powi(2)).sum::<f64>() / n).sqrt();
                    let cov = col
                        .iter()
                        .zip(&ind)
                        .map(|(a, b)| (a - mean) * (b - mi))
                        .sum::<f64>()
                        / n;
                    (cov / (sd * si)).abs()
                })
                .fold(0.0, f64::max)
        })
        .collect()
}

/// A probe trained by the loaded `elastic_net` plugin.
fn loaded_probe(data: &lca_core::Dataset<'_>) -> lca_core::SharedProbe {
    let registry = registry_with(&["lca_plugin_logistic"]);
    let registered = registry
        .get(ComponentKind::Probe, "elastic_net")
        .expect("probe registered");
    match registered
        .build(&lca_core::toml::Table::new())
        .expect("builds")
    {
        Component::Probe(p) => {
            std::sync::Arc::from(p.fit(data, &RunContext::new(0, 1)).expect("trains"))
        }
        other => panic!("built a {:?}", other.kind()),
    }
}

#[test]
fn probe_weights_through_the_library_with_a_plugin_probe() {
    let ranker = loaded_ranker("lca_plugin_probe_weights", "probe_weights", "");
    check_ranker(
        ranker.as_ref(),
        RankerTraits {
            probe: Some(loaded_probe),
            ..RankerTraits::default()
        },
    )
    .unwrap();
    let data = planted(3000, 200, 5, 2, 8);
    let input = RankInput::new(&data).with_probe(loaded_probe(&data));
    let ranking = ranker.rank(&input, &RunContext::new(0, 1)).unwrap();
    assert_eq!(planted_precision(&ranking, &data), 1.0);
    assert_eq!(ranking.details()["cutoffs"].as_array().unwrap().len(), 101);
}

#[test]
fn mean_abs_weight_through_the_library_with_a_plugin_probe() {
    let ranker = loaded_ranker("lca_plugin_probe_weights", "mean_abs_weight", "");
    check_ranker(
        ranker.as_ref(),
        RankerTraits {
            probe: Some(loaded_probe),
            ..RankerTraits::default()
        },
    )
    .unwrap();
    let data = planted(3000, 200, 5, 2, 8);
    let input = RankInput::new(&data).with_probe(loaded_probe(&data));
    let ranking = ranker.rank(&input, &RunContext::new(0, 1)).unwrap();
    assert_eq!(planted_precision(&ranking, &data), 1.0);
}

#[test]
fn independent_neurons_through_the_library() {
    fn by_variance(data: &lca_core::Dataset<'_>) -> lca_core::NeuronRanking {
        let x = data.split(lca_core::data::Split::Train).acts;
        lca_core::NeuronRanking::from_scores(
            x.view()
                .var_axis(lca_core::ndarray::Axis(0), 0.0)
                .iter()
                .map(|&v| f64::from(v))
                .collect(),
        )
        .unwrap()
    }
    let ranker = loaded_ranker(
        "lca_plugin_redundancy",
        "independent_neurons",
        "threshold = 0.3",
    );
    check_ranker(
        ranker.as_ref(),
        RankerTraits {
            ranking: Some(by_variance),
            ..RankerTraits::default()
        },
    )
    .unwrap();
}

#[test]
fn logistic_probes_store_and_restore_themselves_through_the_library() {
    let registry = registry_with(&["lca_plugin_logistic"]);
    for (name, params) in [
        ("elastic_net", ""),
        ("lasso", "l1 = 0.01"),
        ("ridge", "l2 = 0.01\nstandardize = true"),
        (
            "unregularized",
            "solver = \"neurox_compatible\"\nepochs = 2",
        ),
    ] {
        let registered = registry
            .get(ComponentKind::Probe, name)
            .expect("registered");
        let probe = match registered.build(&params.parse().unwrap()).expect("builds") {
            Component::Probe(p) => p,
            other => panic!("built a {:?}", other.kind()),
        };
        let stores = lca_testkit::check_probe_state(probe.as_ref())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(stores, "{name} does not store itself");
    }
}
