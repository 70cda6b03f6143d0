//! Every component, built-in or loaded from its plugin library, documents
//! what it does: its example is a valid recipe once its wiring is declared,
//! and each documented default is the value it applies.

use std::path::Path;

use lca_core::recipe;
use lca_testkit::{check_documented_defaults, runnable_example};
use lca_tests::registry_with;

/// Every plugin library of the workspace.
const LIBRARIES: [&str; 12] = [
    "lca_plugin_correlation",
    "lca_plugin_gaussian",
    "lca_plugin_hdf5",
    "lca_plugin_iou",
    "lca_plugin_logistic",
    "lca_plugin_nonlinear",
    "lca_plugin_probe_weights",
    "lca_plugin_probeless",
    "lca_plugin_random",
    "lca_plugin_redundancy",
    "lca_plugin_transformer",
    "lca_plugin_variance",
];

#[test]
fn every_documented_default_is_the_applied_one() {
    let registry = registry_with(&LIBRARIES);
    let mut problems = Vec::new();
    let mut checked = 0;
    for component in registry.iter() {
        checked += component.info.params.len();
        if let Err(e) = check_documented_defaults(&component.info, &|t| component.applied(t)) {
            problems.push(e);
        }
    }
    assert!(
        registry.iter().count() >= 35,
        "every component is registered"
    );
    assert!(checked >= 100, "only {checked} parameters checked");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_example_is_a_valid_recipe() {
    let registry = registry_with(&LIBRARIES);
    let mut problems = Vec::new();
    for component in registry.iter() {
        let text = match runnable_example(&component.info.example) {
            Ok(text) => text,
            Err(e) => {
                problems.push(format!("{}: {e}", component.info.name));
                continue;
            }
        };
        if let Err(e) = recipe::compile(Path::new("example.toml"), &text, &registry) {
            problems.push(format!("{}:\n{text}\n{e}", component.info.name));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}
