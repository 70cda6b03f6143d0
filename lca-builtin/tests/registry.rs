//! Registering the built-in components: listing by kind, duplicate names
//! naming both origins, and a component asked for under the wrong kind.

use lca_core::registry::{ComponentKind, Origin};

fn plugin_origin(file: &str) -> Origin {
    Origin::Plugin {
        plugin: "p".into(),
        version: "0.1.0".into(),
        file: file.into(),
    }
}

#[test]
fn builtins_register_and_list_by_kind() {
    let r = lca_builtin::registry();
    assert!(
        r.names(ComponentKind::Source)
            .contains(&"synthetic".to_string())
    );
    assert!(
        r.names(ComponentKind::Evaluator)
            .contains(&"planted_recovery".to_string())
    );
}

#[test]
fn duplicates_name_both_origins() {
    let mut r = lca_builtin::registry();
    let descriptor = lca_builtin::descriptors().into_iter().next().unwrap();
    let name = descriptor.info.name.clone();
    let err = r
        .register_native(descriptor, plugin_origin("/x/liblca_plugin_dup.so"))
        .unwrap_err()
        .to_string();
    assert!(err.contains(&format!("`{name}` is provided twice: by built-in and by plugin p 0.1.0 (/x/liblca_plugin_dup.so)")), "{err}");
}

#[test]
fn wrong_kind_says_which_table_to_use() {
    let r = lca_builtin::registry();
    let err = r
        .get(ComponentKind::Ranker, "synthetic")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`synthetic` is a source, not a ranker; declare it as [source.<id>]"),
        "{err}"
    );
}
