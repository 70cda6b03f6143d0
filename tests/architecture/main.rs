//! The shape of the workspace, checked on its sources and manifests:
//!
//! - no import cycle between the modules of one crate (top-level modules,
//!   and the sibling files inside each module folder);
//! - `lca-core` depends on no other crate of the workspace, only
//!   `lca-plugins` names abi_stable, and no plugin depends on another;
//! - unsafe code appears only in `lca-linear` (its vector kernels),
//!   the two memory-mapping modules (model files, store shards),
//!   `lca-plugins` (the ABI) and the HDF5 plugin, which forks a child
//!   process around the HDF5 C library so a damaged file cannot crash `lca`.
//!
//! Module edges come from `crate::a::…` paths (also inside `use crate::{…}`
//! groups) and `super::x` paths, with comments removed. A path is charged to
//! the first module it names that exists as a file or folder.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Every crate of the workspace that has a `src/` folder: (name, folder).
fn crates() -> Vec<(String, PathBuf)> {
    let root = workspace();
    let mut dirs = vec![
        root.join("lca-core"),
        root.join("lca-linear"),
        root.join("lca-builtin"),
        root.join("lca-testkit"),
        root.join("lca-plugins"),
        root.join("lca-store"),
        root.join("lca-cli"),
        root.join("lca-py"),
        root.join("examples/custom-ranker"),
    ];
    for group in ["plugins", "tests/fixtures/plugins"] {
        for entry in fs::read_dir(root.join(group)).expect("plugin folder") {
            dirs.push(entry.expect("entry").path());
        }
    }
    dirs.into_iter()
        .filter(|d| d.join("src").is_dir())
        .map(|d| (package_name(&d), d))
        .collect()
}

fn package_name(dir: &Path) -> String {
    let manifest = fs::read_to_string(dir.join("Cargo.toml")).expect("Cargo.toml");
    let value: toml::Table = manifest.parse().expect("valid manifest");
    value["package"]["name"]
        .as_str()
        .expect("package name")
        .to_string()
}

/// Rust source without `//` comments (doc comments included) or string
/// contents that could look like paths.
fn code_of(path: &Path) -> String {
    let text = fs::read_to_string(path).expect("source file");
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).expect("folder") {
            let p = entry.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The module paths named after `prefix` (`crate::` or `super::`) in `code`:
/// `crate::a::b` gives `[a, b]`, and `crate::{a::b, c}` gives both.
fn paths_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find(prefix) {
        let before = rest[..at].chars().last();
        rest = &rest[at + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut end = group.len();
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = i;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let mut depth = 0;
            let mut item = String::new();
            for c in group[..end].chars().chain([',']) {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.push(segments(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 {
                    item.push(c);
                }
            }
        } else {
            out.push(segments(rest));
        }
    }
    out.retain(|p| !p.is_empty());
    out
}

fn segments(text: &str) -> Vec<String> {
    let text = text.trim_start();
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(text.len());
    text[..end]
        .split("::")
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The module of a file relative to `src/`: `data/dataset.rs` → `[data, dataset]`,
/// `data/mod.rs` → `[data]`, `lib.rs` → `[]`.
fn module_of(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().expect("file name");
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" && stem != "main" {
        parts.push(stem.to_string());
    }
    parts
}

/// Whether `module` (a path under `src/`) exists as a file or a folder.
fn exists(src: &Path, module: &[String]) -> bool {
    let base = module.iter().fold(src.to_path_buf(), |p, m| p.join(m));
    base.with_extension("rs").is_file() || base.is_dir()
}

/// Edges between modules that share `parent`, for every parent folder: a
/// map from parent (`[]` for the crate root) to edges between its children.
fn module_edges(src: &Path) -> BTreeMap<Vec<String>, BTreeSet<(String, String)>> {
    let mut edges: BTreeMap<Vec<String>, BTreeSet<(String, String)>> = BTreeMap::new();
    for file in rust_files(src) {
        let module = module_of(file.strip_prefix(src).expect("under src"));
        let code = code_of(&file);
        let mut targets: Vec<Vec<String>> = paths_after(&code, "crate::");
        // `super` is the module above this file's: `super::x` in `a/b.rs`
        // (module `a::b`) and in `a/mod.rs`'s children names `a::x`, and in
        // `a/mod.rs` (module `a`) it names the sibling `x` of `a`.
        if !module.is_empty() {
            for path in paths_after(&code, "super::") {
                let mut full = module[..module.len() - 1].to_vec();
                full.extend(path);
                targets.push(full);
            }
        }
        for target in targets {
            // The deepest prefix of the target that is a module.
            let mut resolved: Vec<String> = Vec::new();
            for seg in &target {
                let mut next = resolved.clone();
                next.push(seg.clone());
                if exists(src, &next) {
                    resolved = next;
                } else {
                    break;
                }
            }
            // Charge the edge at every level where the two paths part.
            let common = module
                .iter()
                .zip(&resolved)
                .take_while(|(a, b)| a == b)
                .count();
            if common < module.len() && common < resolved.len() {
                edges
                    .entry(module[..common].to_vec())
                    .or_default()
                    .insert((module[common].clone(), resolved[common].clone()));
            }
        }
    }
    edges
}

/// A cycle in a directed graph, if there is one.
fn find_cycle(edges: &BTreeSet<(String, String)>) -> Option<Vec<String>> {
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (a, b) in edges {
        next.entry(a).or_default().push(b);
    }
    // 0 unvisited, 1 on the stack, 2 done.
    let mut state: BTreeMap<&str, u8> = BTreeMap::new();
    fn visit<'a>(
        node: &'a str,
        next: &BTreeMap<&'a str, Vec<&'a str>>,
        state: &mut BTreeMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        state.insert(node, 1);
        stack.push(node);
        for &n in next.get(node).into_iter().flatten() {
            match state.get(n).copied().unwrap_or(0) {
                1 => {
                    let from = stack.iter().position(|&s| s == n).expect("on stack");
                    let mut cycle: Vec<String> =
                        stack[from..].iter().map(|s| s.to_string()).collect();
                    cycle.push(n.to_string());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(n, next, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(node, 2);
        None
    }
    let nodes: Vec<&str> = next.keys().copied().collect();
    for node in nodes {
        if state.get(node).copied().unwrap_or(0) == 0 {
            let mut stack = Vec::new();
            if let Some(c) = visit(node, &next, &mut state, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn no_module_cycle_within_a_crate() {
    let mut cycles = Vec::new();
    let mut checked = 0;
    for (name, dir) in crates() {
        for (parent, edges) in module_edges(&dir.join("src")) {
            checked += edges.len();
            if let Some(cycle) = find_cycle(&edges) {
                let at = if parent.is_empty() {
                    "crate root".to_string()
                } else {
                    parent.join("::")
                };
                cycles.push(format!("{name} ({at}): {}", cycle.join(" → ")));
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} module edges found: is the parser broken?"
    );
    assert!(cycles.is_empty(), "module cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_cycle_finder_sees_a_planted_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    fs::create_dir_all(src.join("b")).unwrap();
    fs::write(src.join("lib.rs"), "mod a; mod b;").unwrap();
    fs::write(
        src.join("a.rs"),
        "use crate::b::x::Thing; // crate::c in a comment",
    )
    .unwrap();
    fs::write(src.join("b/mod.rs"), "mod x; mod y;").unwrap();
    fs::write(
        src.join("b/x.rs"),
        "use super::y::f;\nuse crate::{a::g, b::y};",
    )
    .unwrap();
    fs::write(src.join("b/y.rs"), "use super::x::Thing;").unwrap();
    let edges = module_edges(src);
    let root = &edges[&Vec::new()];
    assert!(root.contains(&("a".into(), "b".into())), "{edges:?}");
    assert!(root.contains(&("b".into(), "a".into())), "{edges:?}");
    assert!(find_cycle(root).is_some());
    let inner = &edges[&vec!["b".to_string()]];
    assert!(inner.contains(&("x".into(), "y".into())), "{edges:?}");
    assert!(inner.contains(&("y".into(), "x".into())), "{edges:?}");
    assert_eq!(root.len(), 2, "no edge from comments: {root:?}");
}

/// The `lca-*` crates a manifest depends on (normal dependencies only).
fn workspace_dependencies(dir: &Path) -> BTreeSet<String> {
    let manifest = fs::read_to_string(dir.join("Cargo.toml")).expect("Cargo.toml");
    let value: toml::Table = manifest.parse().expect("valid manifest");
    value
        .get("dependencies")
        .and_then(|d| d.as_table())
        .map(|d| {
            d.keys()
                .filter(|k| k.starts_with("lca-"))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn crates_are_layered() {
    let root = workspace();
    assert!(
        workspace_dependencies(&root.join("lca-core")).is_empty(),
        "lca-core must not depend on another crate of the workspace"
    );
    assert_eq!(
        workspace_dependencies(&root.join("lca-linear")),
        BTreeSet::from(["lca-core".to_string()])
    );
    // The store format sits on the core alone; the built-in `store` source
    // reads it.
    assert_eq!(
        workspace_dependencies(&root.join("lca-store")),
        BTreeSet::from(["lca-core".to_string()])
    );
    assert_eq!(
        workspace_dependencies(&root.join("lca-builtin")),
        BTreeSet::from(["lca-core".to_string(), "lca-store".to_string()])
    );
    for (name, dir) in crates() {
        let manifest = fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        if name != "lca-plugins" {
            assert!(
                !manifest.contains("abi_stable"),
                "{name} names abi_stable; only lca-plugins may"
            );
        }
        if dir.starts_with(root.join("plugins")) {
            let deps = workspace_dependencies(&dir);
            let plugins: Vec<&String> = deps
                .iter()
                .filter(|d| d.starts_with("lca-plugin-"))
                .collect();
            assert!(plugins.is_empty(), "{name} depends on plugins {plugins:?}");
        }
    }
}

#[test]
fn unsafe_code_only_in_the_solver_kernels_and_the_plugin_abi() {
    let allowed = ["lca-linear", "lca-plugins", "lca-plugin-hdf5"];
    // Memory-mapping model files and store shards, each in a module of its
    // own that does nothing else (see their notes for why they are mapped).
    let mappings = [
        workspace().join("plugins/transformer/src/mapped.rs"),
        workspace().join("lca-store/src/mapped.rs"),
    ];
    let mut found = Vec::new();
    for (name, dir) in crates() {
        if allowed.contains(&name.as_str()) || dir.starts_with(workspace().join("tests")) {
            continue;
        }
        for file in rust_files(&dir.join("src")) {
            if mappings.contains(&file) {
                continue;
            }
            let code = code_of(&file);
            if code.contains("unsafe ") || code.contains("unsafe{") {
                found.push(file.display().to_string());
            }
        }
    }
    assert!(found.is_empty(), "unsafe code in {found:?}");
}
