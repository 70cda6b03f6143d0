//! Component parameters: their documentation, type checks and range checks.
//!
//! Parameters arrive as a TOML table (from a recipe, or as TOML text across
//! the plugin boundary). A component documents each parameter with a
//! [`ParamDoc`], parses the table into its own serde struct with
//! [`parse_params`], then checks ranges with [`ensure`]. Every failure is an
//! [`Error::InvalidParam`] that names the component, the parameter, the value
//! and what is allowed, so the recipe compiler can point at the exact line.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, closest};

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

/// Parses a parameter table into a component's parameter struct, after
/// checking it against the documentation.
///
/// # Errors
/// Returns the first problem as [`Error::InvalidParam`].
pub fn parse_params<P: DeserializeOwned>(
    component: &str,
    docs: &[ParamDoc],
    table: &toml::Table,
) -> Result<P> {
    if let Some(problem) = check_table(docs, table).into_iter().next() {
        let value = table
            .get(&problem.param)
            .map(short_toml)
            .unwrap_or_else(|| "(missing)".into());
        return Err(Error::InvalidParam {
            component: component.into(),
            param: problem.param,
            value,
            expected: problem.message,
        });
    }
    toml::Value::Table(table.clone())
        .try_into()
        .map_err(|e: toml::de::Error| Error::InvalidParam {
            component: component.into(),
            param: "?".into(),
            value: "(table)".into(),
            expected: e.message().to_string(),
        })
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

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct P {
        #[serde(default)]
        k: i64,
        #[allow(dead_code)]
        path: String,
    }

    #[test]
    fn parse_then_ensure() {
        let p: P = parse_params("demo", &docs(), &table("k = 0\npath = \"x\"")).unwrap();
        let err = ensure("demo", "k", p.k >= 1, p.k, "an integer ≥ 1")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "demo: parameter `k` = 0 is not allowed; expected an integer ≥ 1"
        );
    }
}
