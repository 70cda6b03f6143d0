//! Correlation clustering against NeuroX 1.0.9 / SciPy 1.5.4 (fixture
//! `golden/clustering.json`, copied from the project's shared NeuroX golden
//! data): the correlation matrix, and the flat clusters for absolute and
//! signed correlation, three thresholds and three linkages, compared as
//! partitions.

use lca_builtin::cluster::{Linkage, cluster_neurons, correlation_matrix};
use lca_core::RunContext;
use lca_core::ndarray::Array2;
use serde_json::Value;

mod common;

fn golden() -> Value {
    serde_json::from_str(include_str!("golden/clustering.json")).unwrap()
}

fn x(g: &Value) -> Array2<f32> {
    common::matrix_f32(&g["X"])
}

#[test]
fn correlation_matrix_matches_numpy() {
    let g = golden();
    let rho = correlation_matrix(x(&g).view(), &RunContext::new(0, 1));
    for (i, row) in g["aux_correlation_matrix_f64"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        for (j, v) in row.as_array().unwrap().iter().enumerate() {
            let want = v.as_f64().unwrap();
            assert!(
                (rho[[i, j]] - want).abs() < 1e-12,
                "ρ[{i},{j}] = {} vs {want}",
                rho[[i, j]]
            );
        }
    }
}

#[test]
fn flat_clusters_match_scipy() {
    let g = golden();
    let data = x(&g);
    let cases = g["create_correlation_clusters"].as_array().unwrap();
    assert_eq!(cases.len(), 18);
    for case in cases {
        let absolute = case["use_abs_correlation"].as_bool().unwrap();
        let threshold = case["clustering_threshold"].as_f64().unwrap();
        let link = match case["method"].as_str().unwrap() {
            "average" => Linkage::Average,
            "complete" => Linkage::Complete,
            "single" => Linkage::Single,
            other => panic!("unexpected method {other}"),
        };
        let labels = cluster_neurons(
            data.view(),
            absolute,
            link,
            threshold,
            &RunContext::new(0, 1),
        )
        .unwrap();
        // The fixture numbers clusters 1..K by first appearance; ours 0..K-1.
        let ours: Vec<u64> = labels.iter().map(|&l| l as u64 + 1).collect();
        let want: Vec<u64> = case["labels_canonical"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(ours, want, "abs={absolute} t={threshold} {link:?}");
    }
}
