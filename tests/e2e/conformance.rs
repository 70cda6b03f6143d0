//! The ranker conformance suite, run through the loaded plugin libraries
//! (each plugin crate also runs it in-process).

use lca_core::registry::ComponentKind;
use lca_core::testkit::{RankerTraits, check_ranker, planted, planted_precision};
use lca_core::{Component, RankInput, Ranker, RunContext};
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
    let n = train.labels.len() as f64;
    (0..data.n_neurons())
        .map(|j| {
            let col: Vec<f64> = train.acts.column(j).iter().map(|&v| f64::from(v)).collect();
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
