//! Checks that a component's documentation tells the truth: its example
//! snippet is a valid recipe once its wiring is supplied, and every
//! documented default is the value the component applies.

use lca_core::ComponentInfo;
use lca_core::toml::{Table, Value};

/// Keys of a recipe table that wire a component rather than set a parameter.
const WIRING: [&str; 5] = ["type", "source", "probe", "rankings", "probes"];

/// The component table of an example snippet: `(kind, id, table)`.
///
/// # Errors
/// When the snippet is not TOML with exactly one `[<kind>.<id>]` table.
pub fn example_table(snippet: &str) -> Result<(String, String, Table), String> {
    let doc: Table = snippet
        .parse()
        .map_err(|e| format!("the example is not valid TOML: {e}"))?;
    let mut found = Vec::new();
    for (kind, ids) in &doc {
        let ids = ids
            .as_table()
            .ok_or_else(|| format!("`{kind}` in the example is not a table"))?;
        for (id, table) in ids {
            let table = table
                .as_table()
                .ok_or_else(|| format!("`{kind}.{id}` in the example is not a table"))?;
            found.push((kind.clone(), id.clone(), table.clone()));
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        n => Err(format!(
            "the example declares {n} components; it should declare exactly one"
        )),
    }
}

/// The parameters an example sets: its table without the wiring keys.
pub fn example_params(table: &Table) -> Table {
    table
        .iter()
        .filter(|(k, _)| !WIRING.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The example snippet made into a whole recipe: every id it reads is
/// declared (sources as `synthetic`, probes as `ridge`, rankings as
/// `random`), and a synthetic source is added when it reads one without
/// naming it.
///
/// # Errors
/// When the snippet is not a single component table.
pub fn runnable_example(snippet: &str) -> Result<String, String> {
    let (kind, id, table) = example_table(snippet)?;
    let names = |key: &str| -> Vec<String> {
        match table.get(key) {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    };
    let mut recipe = snippet.trim_end().to_string();
    recipe.push('\n');
    let mut declare = |kind_of: &str, ids: Vec<String>, ty: &str| {
        for other in ids {
            if !(kind_of == kind && other == id) {
                recipe.push_str(&format!("\n[{kind_of}.{other}]\ntype = \"{ty}\"\n"));
            }
        }
    };
    if kind != "source" {
        let sources = names("source");
        if sources.is_empty() {
            declare("source", vec!["stub_source".into()], "synthetic");
        } else {
            declare("source", sources, "synthetic");
        }
    }
    declare("probe", names("probe"), "ridge");
    declare("probe", names("probes"), "ridge");
    declare("ranker", names("rankings"), "random");
    Ok(recipe)
}

/// Checks a component's documented defaults against what it applies:
/// `applied` reads a parameter table and returns the values in force
/// (`Registered::applied`).
///
/// With the example's own parameters:
/// - a default written as a TOML value is the value applied when the
///   parameter is left out, and setting it explicitly changes nothing;
/// - a default written in words (`all`, `the step's seed`) describes an
///   absent value: nothing is applied for that parameter;
/// - required parameters appear in the example;
/// - everything applied is documented.
///
/// # Errors
/// Every disagreement, one per line.
pub fn check_documented_defaults(
    info: &ComponentInfo,
    applied: &dyn Fn(&Table) -> lca_core::Result<Table>,
) -> Result<(), String> {
    let name = &info.name;
    let (_, _, table) = example_table(&info.example).map_err(|e| format!("{name}: {e}"))?;
    let given = example_params(&table);
    let base = applied(&given)
        .map_err(|e| format!("{name}: the example's parameters are refused: {e}"))?;
    let mut problems = Vec::new();
    for doc in &info.params {
        let key = &doc.name;
        if doc.is_required() {
            if !given.contains_key(key) {
                problems.push(format!(
                    "{name}: required parameter `{key}` is missing from the example"
                ));
            }
            continue;
        }
        if given.contains_key(key) {
            continue;
        }
        match format!("v = {}", doc.default).parse::<Table>() {
            Ok(parsed) => {
                let documented = &parsed["v"];
                match base.get(key) {
                    Some(value) if same(value, documented) => {}
                    Some(value) => problems.push(format!(
                        "{name}: `{key}` is documented to default to {} but {value} is applied",
                        doc.default
                    )),
                    None => problems.push(format!(
                        "{name}: `{key}` is documented to default to {} but nothing is applied",
                        doc.default
                    )),
                }
                let mut explicit = given.clone();
                explicit.insert(key.clone(), documented.clone());
                match applied(&explicit) {
                    Ok(with) if with == base => {}
                    Ok(_) => problems.push(format!(
                        "{name}: setting `{key}` to its documented default {} changes the parameters",
                        doc.default
                    )),
                    Err(e) => problems.push(format!(
                        "{name}: `{key}` set to its documented default {} is refused: {e}",
                        doc.default
                    )),
                }
            }
            Err(_) => {
                if let Some(value) = base.get(key) {
                    problems.push(format!(
                        "{name}: `{key}` is documented as \"{}\" (an absent value) but {value} is applied",
                        doc.default
                    ));
                }
            }
        }
    }
    for key in base.keys() {
        if !info.params.iter().any(|d| &d.name == key) {
            problems.push(format!("{name}: `{key}` is applied but not documented"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// TOML values equal as parameters: integers and floats compare by value.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Integer(x), Value::Float(y)) | (Value::Float(y), Value::Integer(x)) => {
            (*x as f64) == *y
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lca_core::ComponentKind;
    use lca_core::params::{ParamDoc, ParamType};

    fn info(default: &str) -> ComponentInfo {
        ComponentInfo {
            kind: ComponentKind::Ranker,
            name: "demo".into(),
            summary: "demo".into(),
            params: vec![ParamDoc::new(
                "k",
                ParamType::Integer,
                default,
                "≥ 1",
                "how many",
            )],
            example: "[ranker.d]\ntype = \"demo\"\nsource = \"s\"\n".into(),
            inputs: Default::default(),
        }
    }

    fn applies_ten(table: &Table) -> lca_core::Result<Table> {
        let mut out = Table::new();
        out.insert(
            "k".into(),
            table.get("k").cloned().unwrap_or(Value::Integer(10)),
        );
        Ok(out)
    }

    #[test]
    fn a_default_that_drifted_from_the_applied_one_is_caught() {
        assert_eq!(check_documented_defaults(&info("10"), &applies_ten), Ok(()));
        let err = check_documented_defaults(&info("5"), &applies_ten).unwrap_err();
        assert!(
            err.contains("documented to default to 5 but 10 is applied"),
            "{err}"
        );
        let err = check_documented_defaults(&info("all"), &applies_ten).unwrap_err();
        assert!(err.contains("(an absent value) but 10 is applied"), "{err}");
    }

    #[test]
    fn examples_become_whole_recipes() {
        let recipe = runnable_example(
            "[evaluator.e]\ntype = \"x\"\nrankings = [\"a\", \"b\"]\nprobes = [\"p\"]\n",
        )
        .unwrap();
        for table in [
            "[source.stub_source]",
            "[ranker.a]",
            "[ranker.b]",
            "[probe.p]",
        ] {
            assert!(recipe.contains(table), "{recipe}");
        }
        assert!(runnable_example("[a.b]\nx=1\n[a.c]\nx=2\n").is_err());
    }
}
