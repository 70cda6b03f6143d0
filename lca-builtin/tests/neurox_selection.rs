//! The LCA selectors against NeuroX 1.0.9 (fixture `golden/ordering.json`,
//! copied from the project's shared NeuroX golden data): per-class top and
//! bottom sets, hard thresholds, orderings with their cutoffs and chunks,
//! the granular variant and the bottom-n helper. Integer outputs from fixed
//! float32 inputs, so everything compares exactly, except where the fixture
//! flags that NeuroX's introsort decided ties differently (skipped).

use std::collections::BTreeSet;

use lca_builtin::select::{ClassMasses, numpy_sum_f32};
use lca_core::ndarray::Array2;
use serde_json::Value;

mod common;

fn golden() -> Value {
    serde_json::from_str(include_str!("golden/ordering.json")).unwrap()
}

fn weights(m: &Value) -> Array2<f32> {
    common::matrix_f32(&m["W"])
}

fn ints(v: &Value) -> Vec<u32> {
    common::ints(v).into_iter().map(|i| i as u32).collect()
}

/// Class names in row order.
fn classes(m: &Value) -> Vec<String> {
    let map = m["class_to_idx"].as_object().unwrap();
    let mut names: Vec<(u64, String)> = map
        .iter()
        .map(|(k, v)| (v.as_u64().unwrap(), k.clone()))
        .collect();
    names.sort();
    names.into_iter().map(|(_, k)| k).collect()
}

#[test]
fn class_totals_follow_numpy_pairwise_summation() {
    for m in golden()["matrices"].as_array().unwrap() {
        let w = weights(m);
        for (c, expected) in m["abs_row_sum_f32"].as_array().unwrap().iter().enumerate() {
            let row: Vec<f32> = w.row(c).iter().map(|v| v.abs()).collect();
            assert_eq!(
                numpy_sum_f32(&row),
                expected.as_f64().unwrap() as f32,
                "{} class {c}",
                m["name"]
            );
        }
    }
}

#[test]
fn top_and_bottom_sets_match_neurox() {
    let mut checked = 0;
    for m in golden()["matrices"].as_array().unwrap() {
        let masses = ClassMasses::new(weights(m).view()).unwrap();
        let names = classes(m);
        let lists_match = m["per_class_lists_match_stable_tie_rule"]
            .as_bool()
            .unwrap();
        for (key, bottom) in [("get_top_neurons", false), ("get_bottom_neurons", true)] {
            for entry in m[key].as_array().unwrap() {
                if !entry["per_class_sets_match_stable_tie_rule"]
                    .as_bool()
                    .unwrap_or(true)
                {
                    continue;
                }
                let p = entry["percentage"].as_f64().unwrap();
                let (union, per_class) = if bottom {
                    masses.bottom(p)
                } else {
                    masses.top(p)
                };
                assert_eq!(
                    union,
                    ints(&entry["union_sorted"]),
                    "{} {key}({p}) union",
                    m["name"]
                );
                for (c, name) in names.iter().enumerate() {
                    let expected = ints(&entry["per_class"][name]);
                    if lists_match {
                        assert_eq!(
                            per_class[c], expected,
                            "{} {key}({p}) class {name}",
                            m["name"]
                        );
                    } else {
                        let a: BTreeSet<u32> = per_class[c].iter().copied().collect();
                        assert_eq!(
                            a,
                            expected.into_iter().collect(),
                            "{} {key}({p}) class {name} as a set",
                            m["name"]
                        );
                    }
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 400, "only {checked} class lists checked");
}

#[test]
fn hard_threshold_divides_the_maximum() {
    for m in golden()["matrices"].as_array().unwrap() {
        let masses = ClassMasses::new(weights(m).view()).unwrap();
        let names = classes(m);
        for entry in m["get_top_neurons_hard_threshold"].as_array().unwrap() {
            let fraction = entry["fraction"].as_f64().unwrap();
            let (union, per_class) = masses.above_fraction_of_max(fraction);
            assert_eq!(
                union,
                ints(&entry["union_sorted"]),
                "{} hard threshold {fraction}",
                m["name"]
            );
            for (c, name) in names.iter().enumerate() {
                assert_eq!(
                    per_class[c],
                    ints(&entry["per_class"][name]),
                    "{} hard threshold {fraction} class {name}",
                    m["name"]
                );
            }
        }
    }
}

/// The chunks of an ordering: `(step, neurons as a set)` for each step that added neurons.
fn chunks(order: &[u32], cutoffs: &[usize]) -> Vec<(usize, BTreeSet<u32>)> {
    let mut out = Vec::new();
    let mut start = 0;
    for (step, &end) in cutoffs.iter().enumerate() {
        if end > start {
            out.push((step, order[start..end].iter().copied().collect()));
            start = end;
        }
    }
    out
}

#[test]
fn orderings_match_neurox_chunk_by_chunk() {
    let mut checked = 0;
    for m in golden()["matrices"].as_array().unwrap() {
        let masses = ClassMasses::new(weights(m).view()).unwrap();
        let d = masses.n_neurons();
        for entry in m["get_neuron_ordering"].as_array().unwrap() {
            if !entry["chunks_and_cutoffs_match_stable_tie_rule"]
                .as_bool()
                .unwrap()
            {
                continue;
            }
            let stride = entry["search_stride"].as_u64().unwrap() as usize;
            let ordering = masses.ordering(stride).unwrap();
            let name = &m["name"];
            let expected_cutoffs: Vec<usize> = ints(&entry["cutoffs"])
                .into_iter()
                .map(|c| c as usize)
                .collect();
            assert_eq!(
                ordering.cutoffs, expected_cutoffs,
                "{name} stride {stride} cutoffs"
            );
            let num_ordered = entry["num_ordered"].as_u64().unwrap() as usize;
            assert_eq!(
                d - ordering.never_entered,
                num_ordered,
                "{name} stride {stride}"
            );
            let expected: Vec<(usize, BTreeSet<u32>)> = entry["chunks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    (
                        c["step"].as_u64().unwrap() as usize,
                        ints(&c["neurons"]).into_iter().collect(),
                    )
                })
                .collect();
            assert_eq!(
                chunks(&ordering.order, &ordering.cutoffs),
                expected,
                "{name} stride {stride} chunks"
            );
            // A permutation of every neuron, whatever NeuroX left out.
            let mut all = ordering.order.clone();
            all.sort_unstable();
            assert_eq!(all, (0..d as u32).collect::<Vec<_>>());
            checked += 1;
        }
    }
    assert!(checked >= 33, "only {checked} orderings checked");
}

#[test]
fn granular_orderings_match_where_neurox_returns() {
    for m in golden()["matrices"].as_array().unwrap() {
        if !m["per_class_lists_match_stable_tie_rule"]
            .as_bool()
            .unwrap()
        {
            continue;
        }
        let masses = ClassMasses::new(weights(m).view()).unwrap();
        for entry in m["get_neuron_ordering_granular"].as_array().unwrap() {
            let g = entry["granularity"].as_u64().unwrap() as usize;
            let stride = entry["search_stride"].as_u64().unwrap() as usize;
            let ordering = masses.ordering_granular(g, stride).unwrap();
            let mut all = ordering.order.clone();
            all.sort_unstable();
            assert_eq!(
                all,
                (0..masses.n_neurons() as u32).collect::<Vec<_>>(),
                "always a permutation"
            );
            if entry.get("raises").is_some() {
                continue;
            }
            let name = &m["name"];
            let cutoffs: Vec<usize> = ints(&entry["cutoffs"])
                .into_iter()
                .map(|c| c as usize)
                .collect();
            assert_eq!(
                ordering.cutoffs, cutoffs,
                "{name} granular({g}, {stride}) cutoffs"
            );
            let expected: Vec<BTreeSet<u32>> = entry["chunks_sorted"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| ints(c).into_iter().collect())
                .collect();
            let ours: Vec<BTreeSet<u32>> = chunks(&ordering.order, &ordering.cutoffs)
                .into_iter()
                .map(|(_, s)| s)
                .collect();
            assert_eq!(ours, expected, "{name} granular({g}, {stride}) chunks");
        }
    }
}

#[test]
fn bottom_n_of_the_ordering_matches_where_it_is_defined() {
    for m in golden()["matrices"].as_array().unwrap() {
        let masses = ClassMasses::new(weights(m).view()).unwrap();
        let ordering = masses.ordering(100).unwrap();
        if ordering.never_entered > 0
            || !m["per_class_lists_match_stable_tie_rule"]
                .as_bool()
                .unwrap()
        {
            continue;
        }
        for entry in m["get_fixed_number_of_bottom_neurons"].as_array().unwrap() {
            if entry["depends_on_within_chunk_order"].as_bool().unwrap() {
                continue;
            }
            let n = entry["num_bottom_neurons"].as_u64().unwrap() as usize;
            let mut tail: Vec<u32> = ordering.order[ordering.order.len() - n..].to_vec();
            tail.sort_unstable();
            assert_eq!(
                tail,
                ints(&entry["result_sorted"]),
                "{} bottom {n}",
                m["name"]
            );
        }
    }
}
