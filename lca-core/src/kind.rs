//! The two small facts every part of `lca` shares about a component: what
//! kind it is and where it comes from. A leaf module, so that errors, the
//! registry and the recipe compiler can all name them without importing each
//! other.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The four kinds of component.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComponentKind {
    /// Produces datasets.
    Source,
    /// Trains classifiers on activations.
    Probe,
    /// Orders neurons.
    Ranker,
    /// Measures rankings and probes.
    Evaluator,
}

impl ComponentKind {
    /// All kinds, in pipeline order.
    pub const ALL: [ComponentKind; 4] = [
        ComponentKind::Source,
        ComponentKind::Probe,
        ComponentKind::Ranker,
        ComponentKind::Evaluator,
    ];

    /// The recipe table that holds components of this kind (`[ranker.<id>]`).
    pub fn table(self) -> &'static str {
        match self {
            ComponentKind::Source => "source",
            ComponentKind::Probe => "probe",
            ComponentKind::Ranker => "ranker",
            ComponentKind::Evaluator => "evaluator",
        }
    }

    /// Parses a kind name (singular or plural).
    pub fn parse(text: &str) -> Option<Self> {
        let singular = text.strip_suffix('s').unwrap_or(text);
        Self::ALL.into_iter().find(|k| k.table() == singular)
    }
}

impl fmt::Display for ComponentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.table())
    }
}

/// Where a component comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Origin {
    /// Compiled into `lca`.
    Builtin {
        /// Version of `lca-core`.
        version: String,
    },
    /// Loaded from a plugin library.
    Plugin {
        /// Plugin name, as the library declares it.
        plugin: String,
        /// Plugin version.
        version: String,
        /// The library file.
        file: PathBuf,
    },
}

impl Origin {
    /// The origin of components compiled into this crate.
    pub fn builtin() -> Self {
        Origin::Builtin {
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Builtin { .. } => f.write_str("built-in"),
            Origin::Plugin {
                plugin,
                version,
                file,
            } => {
                write!(f, "plugin {plugin} {version} ({})", file.display())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_singular_and_plural() {
        assert_eq!(ComponentKind::parse("rankers"), Some(ComponentKind::Ranker));
        assert_eq!(ComponentKind::parse("source"), Some(ComponentKind::Source));
        assert_eq!(ComponentKind::parse("thing"), None);
    }
}
