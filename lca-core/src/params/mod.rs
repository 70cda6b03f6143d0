//! Component parameters: their documentation, type checks and range checks.
//!
//! Parameters arrive as a TOML table (from a recipe, or as TOML text across
//! the plugin boundary). A component declares them once with
//! [`params!`](crate::params!): each field's type, default, rule and
//! documentation. The declaration gives the parameter table ([`ParamDoc`]
//! rows, shown by `lca example`), reads and checks a recipe table
//! ([`Params::parse`]) and writes back the values applied
//! ([`Params::to_table`]). Every failure is an [`Error::InvalidParam`] that
//! names the component, the parameter, the value and what is allowed, so the
//! recipe compiler can point at the exact line. Conditions that tie two
//! parameters together are checked after parsing, with [`ensure`].

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, closest};

mod declare;
pub mod rule;
mod value;

use rule::Rule;
pub use value::{ParamValue, one_of};

/// The TOML type a parameter takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamType {
    /// A whole number.
    Integer,
    /// A real number (integers are accepted).
    Float,
    /// `true` or `false`.
    Bool,
    /// Text.
    String,
    /// A file or directory; relative paths are resolved against the recipe's folder.
    Path,
    /// A list of whole numbers.
    IntegerList,
    /// A list of real numbers.
    FloatList,
    /// A list of strings.
    StringList,
}

impl ParamType {
    /// Whether a TOML value has this type.
    pub fn accepts(self, value: &toml::Value) -> bool {
        use toml::Value as V;
        let number = |v: &V| matches!(v, V::Integer(_) | V::Float(_));
        match (self, value) {
            (ParamType::Integer, V::Integer(_)) => true,
            (ParamType::Float, v) => number(v),
            (ParamType::Bool, V::Boolean(_)) => true,
            (ParamType::String | ParamType::Path, V::String(_)) => true,
            (ParamType::IntegerList, V::Array(a)) => a.iter().all(|v| matches!(v, V::Integer(_))),
            (ParamType::FloatList, V::Array(a)) => a.iter().all(number),
            (ParamType::StringList, V::Array(a)) => a.iter().all(|v| matches!(v, V::String(_))),
            _ => false,
        }
    }
}

impl ParamType {
    /// The type name with its article, for messages ("an integer").
    pub fn with_article(self) -> String {
        match self {
            ParamType::Integer => "an integer".into(),
            other => format!("a {other}"),
        }
    }
}

impl fmt::Display for ParamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParamType::Integer => "integer",
            ParamType::Float => "number",
            ParamType::Bool => "boolean",
            ParamType::String => "string",
            ParamType::Path => "path",
            ParamType::IntegerList => "list of integers",
            ParamType::FloatList => "list of numbers",
            ParamType::StringList => "list of strings",
        })
    }
}

/// One row of a component's parameter table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamDoc {
    /// Key in the recipe.
    pub name: String,
    /// TOML type.
    pub ty: ParamType,
    /// Default value as TOML, or `required`.
    pub default: String,
    /// Allowed values, in words (`≥ 1`, `0 ≤ x < 1`, `any`).
    pub range: String,
    /// What it does.
    pub summary: String,
}

impl ParamDoc {
    /// A parameter row.
    pub fn new(name: &str, ty: ParamType, default: &str, range: &str, summary: &str) -> Self {
        ParamDoc {
            name: name.into(),
            ty,
            default: default.into(),
            range: range.into(),
            summary: summary.into(),
        }
    }

    /// True when the recipe must set it.
    pub fn is_required(&self) -> bool {
        self.default == "required"
    }
}

/// A problem with one parameter, found before the component is built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamProblem {
    /// The parameter key.
    pub param: String,
    /// What is wrong.
    pub message: String,
}

/// Checks keys and types of `table` against the documented parameters and
/// returns every problem: unknown keys (with a suggestion), wrong types and
/// missing required keys.
pub fn check_table(docs: &[ParamDoc], table: &toml::Table) -> Vec<ParamProblem> {
    let mut problems = Vec::new();
    for (key, value) in table {
        match docs.iter().find(|d| d.name == *key) {
            None => {
                let mut message = format!("unknown parameter `{key}`");
                if let Some(best) = closest(key, docs.iter().map(|d| d.name.as_str())) {
                    message.push_str(&format!("; did you mean `{best}`?"));
                }
                if docs.is_empty() {
                    message.push_str("; this component takes no parameters");
                } else {
                    let names: Vec<&str> = docs.iter().map(|d| d.name.as_str()).collect();
                    message.push_str(&format!(" (known: {})", names.join(", ")));
                }
                problems.push(ParamProblem {
                    param: key.clone(),
                    message,
                });
            }
            Some(doc) if !doc.ty.accepts(value) => problems.push(ParamProblem {
                param: key.clone(),
                message: format!(
                    "parameter `{key}` must be {}, found {} `{}`",
                    doc.ty.with_article(),
                    value.type_str(),
                    short_toml(value)
                ),
            }),
            Some(_) => {}
        }
    }
    for doc in docs
        .iter()
        .filter(|d| d.is_required() && !table.contains_key(&d.name))
    {
        problems.push(ParamProblem {
            param: doc.name.clone(),
            message: format!(
                "missing required parameter `{}` ({}: {})",
                doc.name, doc.ty, doc.summary
            ),
        });
    }
    problems
}

/// A value as a message quotes it: numbers as people write them (`-1`,
/// not `-1.0`), anything else as TOML.
fn shown_value(value: &toml::Value) -> String {
    match value {
        toml::Value::Float(f) => f.to_string(),
        other => short_toml(other),
    }
}

/// A TOML value rendered for messages, shortened if long.
pub fn short_toml(value: &toml::Value) -> String {
    let text = match value {
        toml::Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    };
    if text.chars().count() > 60 {
        let cut: String = text.chars().take(57).collect();
        format!("{cut}...")
    } else {
        text
    }
}

/// A component's parameters, declared with [`params!`](crate::params!).
pub trait Params: Sized {
    /// The parameter table, one row per parameter.
    fn docs() -> Vec<ParamDoc>;

    /// Reads every parameter from `table`, applying defaults and rules.
    /// Keys and types are checked first by [`Params::parse`].
    ///
    /// # Errors
    /// [`Error::InvalidParam`] for a value of the wrong form or outside its
    /// rule.
    fn from_table(component: &str, table: &toml::Table) -> Result<Self>;

    /// The values in force, as TOML (absent optional values left out).
    fn to_table(&self) -> toml::Table;

    /// Checks `table` against [`Params::docs`] (unknown keys, wrong types,
    /// missing required keys), then reads it.
    ///
    /// # Errors
    /// The first problem, as [`Error::InvalidParam`] naming `component`.
    fn parse(component: &str, table: &toml::Table) -> Result<Self> {
        check_keys(component, &Self::docs(), table)?;
        Self::from_table(component, table)
    }

    /// Every parameter at its declared default.
    ///
    /// # Errors
    /// When a parameter is required.
    fn defaults() -> Result<Self> {
        Self::from_table("defaults", &toml::Table::new())
    }

    /// Checks a value built in code (not read from a recipe) against the
    /// same rules.
    ///
    /// # Errors
    /// The first parameter outside its rule.
    fn validate(&self, component: &str) -> Result<()> {
        Self::parse(component, &self.to_table()).map(|_| ())
    }
}

/// A component without parameters.
impl Params for () {
    fn docs() -> Vec<ParamDoc> {
        Vec::new()
    }

    fn from_table(_: &str, _: &toml::Table) -> Result<Self> {
        Ok(())
    }

    fn to_table(&self) -> toml::Table {
        toml::Table::new()
    }
}

/// Checks the keys and types of `table` against `docs` and returns the
/// first problem: for components that expose only part of a declaration
/// (presets of one probe), before [`Params::from_table`].
///
/// # Errors
/// The first unknown key, wrong type or missing required key, as
/// [`Error::InvalidParam`] naming `component`.
pub fn check_keys(component: &str, docs: &[ParamDoc], table: &toml::Table) -> Result<()> {
    match check_table(docs, table).into_iter().next() {
        None => Ok(()),
        Some(problem) => Err(Error::InvalidParam {
            component: component.into(),
            value: table
                .get(&problem.param)
                .map(short_toml)
                .unwrap_or_else(|| "(missing)".into()),
            param: problem.param,
            expected: problem.message,
        }),
    }
}

/// What a rule demands, as the end of "expected …": a bare bound gets the
/// type in front (`a non-negative integer ≥ 1`), and `x` in an interval
/// becomes the parameter's name (`0 ≤ delta < 100`).
fn demand<T: ParamValue>(name: &str, rule: &Rule<T>) -> String {
    let text = rule.text();
    if text.starts_with(['≥', '>', '≤', '<']) {
        format!("{} {text}", T::noun())
    } else if text.contains(" x ") {
        text.replacen(" x ", &format!(" {name} "), 1)
    } else {
        text.to_string()
    }
}

#[doc(hidden)]
pub fn __declared_field<T: ParamValue>(
    component: &str,
    table: &toml::Table,
    name: &str,
    default: Option<T>,
    rule: &Rule<T>,
) -> Result<T> {
    let Some(given) = table.get(name) else {
        return default
            .ok_or_else(|| invalid(component, name, "(missing)", "a value: it is required"));
    };
    let shown = shown_value(given);
    let value =
        T::from_toml(given).map_err(|expected| invalid(component, name, &shown, &expected))?;
    if rule.passes(&value) {
        Ok(value)
    } else {
        Err(invalid(component, name, shown, &demand(name, rule)))
    }
}

#[doc(hidden)]
pub fn __declared_doc<T: ParamValue>(
    name: &str,
    summary: &[&str],
    default: Option<T>,
    shown: Option<&str>,
    rule: &Rule<T>,
) -> ParamDoc {
    let default = match (shown, default) {
        (Some(text), _) => text.to_string(),
        (None, None) => "required".to_string(),
        (None, Some(value)) => value
            .to_toml()
            .map(|v| v.to_string())
            .unwrap_or_else(|| "none".into()),
    };
    let range = match (rule.text(), T::allowed()) {
        ("", Some(allowed)) => allowed,
        ("", None) => "any".into(),
        (text, _) => text.to_string(),
    };
    let summary: Vec<&str> = summary
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect();
    ParamDoc {
        name: name.into(),
        ty: T::TYPE,
        default,
        range,
        summary: summary.join(" "),
    }
}

/// An [`Error::InvalidParam`].
pub fn invalid(component: &str, param: &str, value: impl fmt::Display, expected: &str) -> Error {
    Error::InvalidParam {
        component: component.into(),
        param: param.into(),
        value: value.to_string(),
        expected: expected.into(),
    }
}

/// Fails with [`Error::InvalidParam`] unless `ok`.
///
/// # Errors
/// When `ok` is false.
pub fn ensure(
    component: &str,
    param: &str,
    ok: bool,
    value: impl fmt::Display,
    expected: &str,
) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidParam {
            component: component.into(),
            param: param.into(),
            value: value.to_string(),
            expected: expected.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs() -> Vec<ParamDoc> {
        vec![
            ParamDoc::new("k", ParamType::Integer, "10", "≥ 1", "how many"),
            ParamDoc::new("noise", ParamType::Float, "1.0", "≥ 0", "noise scale"),
            ParamDoc::new("path", ParamType::Path, "required", "a file", "input"),
        ]
    }

    fn table(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    #[test]
    fn reports_unknown_wrong_type_and_missing_all_at_once() {
        let problems = check_table(&docs(), &table("nose = 1.0\nk = \"ten\""));
        let messages: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(problems.len(), 3, "{messages:?}");
        assert!(
            messages[0].contains("unknown parameter `nose`; did you mean `noise`?"),
            "{messages:?}"
        );
        assert!(
            messages[1].contains("`k` must be an integer, found string `\"ten\"`"),
            "{messages:?}"
        );
        assert!(
            messages[2].contains("missing required parameter `path`"),
            "{messages:?}"
        );
    }

    #[test]
    fn floats_accept_integers() {
        assert!(check_table(&docs(), &table("noise = 2\npath = \"x\"")).is_empty());
    }

    crate::param_enum! {
        /// How a set is chosen.
        enum Pick {
            /// From the top.
            Top = "top",
            /// At random.
            Random = "random",
        }
    }

    crate::params! {
        /// Shared by several components.
        struct Shared {
            /// fraction held out
            held_out: f64 = 0.2 => range(0.0..1.0),
        }
    }

    crate::params! {
        /// A component's parameters.
        struct Demo {
            /// how many
            k: i64 = 10 => range(1..),
            /// how they are picked
            pick: Pick = Pick::Top,
            /// at most this many
            #[shown = "all"]
            limit: Option<usize> = None => range(1..),
            /// sizes in percent
            grid: Vec<f64> = vec![1.0, 2.0] => range(0.0..=100.0).and(increasing()),
            /// input
            path: std::path::PathBuf,
            #[flatten]
            shared: Shared,
        }
    }

    #[test]
    fn one_declaration_gives_docs_defaults_and_checks() {
        let docs = Demo::docs();
        let row = |name: &str| docs.iter().find(|d| d.name == name).unwrap().clone();
        assert_eq!(docs.len(), 6);
        assert_eq!(
            row("k"),
            ParamDoc::new("k", ParamType::Integer, "10", "≥ 1", "how many")
        );
        assert_eq!(row("pick").range, "\"top\" or \"random\"");
        assert_eq!(row("pick").default, "\"top\"");
        assert_eq!(
            (row("limit").default.as_str(), row("limit").ty),
            ("all", ParamType::Integer)
        );
        assert_eq!(row("grid").range, "each 0 ≤ x ≤ 100, increasing");
        assert!(row("path").is_required());
        assert_eq!(row("held_out").default, "0.2");

        let p = Demo::parse("demo", &table("path = \"x\"\npick = \"random\"\nlimit = 3")).unwrap();
        assert_eq!(
            (p.k, p.pick, p.limit, p.shared.held_out),
            (10, Pick::Random, Some(3), 0.2)
        );
        // The values in force, defaults included, written back as TOML;
        // an absent optional value is left out.
        let applied = p.to_table();
        let expected: toml::Table = "k = 10\npick = \"random\"\nlimit = 3\ngrid = [1.0, 2.0]\n\
                                     path = \"x\"\nheld_out = 0.2"
            .parse()
            .unwrap();
        assert_eq!(applied, expected);
        let none = Demo::parse("demo", &table("path = \"x\""))
            .unwrap()
            .to_table();
        assert!(!none.contains_key("limit"));
    }

    #[test]
    fn declared_rules_report_the_parameter_and_what_is_allowed() {
        let err = |text: &str| Demo::parse("demo", &table(text)).unwrap_err().to_string();
        assert_eq!(
            err("path = \"x\"\nk = 0"),
            "demo: parameter `k` = 0 is not allowed; expected an integer ≥ 1"
        );
        assert_eq!(
            err("path = \"x\"\nlimit = -1"),
            "demo: parameter `limit` = -1 is not allowed; expected a non-negative integer, found -1"
        );
        assert_eq!(
            err("path = \"x\"\ngrid = [5.0, 1.0]"),
            "demo: parameter `grid` = [5.0, 1.0] is not allowed; expected each 0 ≤ grid ≤ 100, increasing"
        );
        assert_eq!(
            err("path = \"x\"\nheld_out = 1.0"),
            "demo: parameter `held_out` = 1 is not allowed; expected 0 ≤ held_out < 1"
        );
        assert!(err("k = 2").contains("missing required parameter `path`"));
        assert!(
            err("path = \"x\"\npick = \"all\"")
                .contains("expected \"top\" or \"random\", found \"all\"")
        );
    }

    #[test]
    fn ensure_reports_relations_between_parameters() {
        let err = ensure("demo", "k", false, 0, "an integer ≥ 1")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "demo: parameter `k` = 0 is not allowed; expected an integer ≥ 1"
        );
    }
}
