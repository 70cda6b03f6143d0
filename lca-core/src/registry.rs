//! The component registry: names to implementations, for built-ins and
//! plugins alike.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::component::Component;
use crate::error::{Error, Result};
pub use crate::kind::{ComponentKind, Origin};
use crate::params::{ParamDoc, Params};

/// Whether a component takes a wiring input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Need {
    /// Not accepted.
    #[default]
    No,
    /// Accepted but not required.
    Optional,
    /// Required.
    Required,
}

/// The wiring inputs a component accepts besides its `source`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inputs {
    /// `probe = "<id>"` (rankers).
    #[serde(default)]
    pub probe: Need,
    /// `rankings = ["<id>", ...]` (evaluators, and rankers that combine rankings).
    #[serde(default)]
    pub rankings: Need,
    /// `probes = ["<id>", ...]` (evaluators).
    #[serde(default)]
    pub probes: Need,
    /// Fewest rankings that make sense (2 for a comparison).
    #[serde(default)]
    pub min_rankings: u32,
}

/// Everything the registry, `lca list` and `lca example` know about a component.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentInfo {
    /// Kind.
    pub kind: ComponentKind,
    /// Unique snake_case name, used as `type` in recipes.
    pub name: String,
    /// One line saying what it does.
    pub summary: String,
    /// Parameter table.
    pub params: Vec<ParamDoc>,
    /// A recipe snippet that uses it, as TOML.
    pub example: String,
    /// Wiring inputs it accepts.
    #[serde(default)]
    pub inputs: Inputs,
}

/// Builds a component from its parameter table.
pub trait Factory: Send + Sync {
    /// Validates `params` and builds the component. Must not do heavy work:
    /// recipes build every component before running any.
    ///
    /// # Errors
    /// [`Error::InvalidParam`] for a bad parameter.
    fn build(&self, params: &toml::Table) -> Result<Component>;

    /// The parameter values the component would run with, defaults
    /// included, as TOML: what `lca example` documents as defaults must be
    /// what is applied, and the test suite checks it through this.
    ///
    /// # Errors
    /// [`Error::InvalidParam`] for a bad parameter.
    fn applied(&self, params: &toml::Table) -> Result<toml::Table>;
}

/// The build function of a native component.
pub type BuildFn = fn(&toml::Table) -> Result<Component>;

/// The function that reads a native component's parameters and returns the
/// values in force; [`applied::<P>`](applied) for parameters declared with
/// [`params!`](crate::params!).
pub type AppliedFn = fn(&toml::Table) -> Result<toml::Table>;

/// The values in force for parameters declared as `P`.
///
/// # Errors
/// [`Error::InvalidParam`] for a bad parameter.
pub fn applied<P: Params>(params: &toml::Table) -> Result<toml::Table> {
    Ok(P::parse("parameters", params)?.to_table())
}

/// A native component: its information, build function and parameters.
///
/// ```
/// use lca_core::registry::{ComponentInfo, ComponentKind, Descriptor, Inputs, applied};
/// use lca_core::params::Params;
///
/// lca_core::params! {
///     /// Parameters of `first`.
///     struct FirstParams {
///         /// how many neurons come first
///         k: usize = 1 => range(1..),
///     }
/// }
///
/// let descriptor = Descriptor {
///     info: ComponentInfo {
///         kind: ComponentKind::Ranker,
///         name: "first".into(),
///         summary: "Ranks neurons in index order".into(),
///         params: FirstParams::docs(),
///         example: "[ranker.first]\ntype = \"first\"\n".into(),
///         inputs: Inputs::default(),
///     },
///     build: |table| {
///         let _p = FirstParams::parse("first", table)?;
///         unimplemented!("build the ranker from the parameters")
///     },
///     applied: applied::<FirstParams>,
/// };
/// assert_eq!(descriptor.info.params[0].default, "1");
/// ```
#[derive(Clone, Debug)]
pub struct Descriptor {
    /// What it is.
    pub info: ComponentInfo,
    /// How to build it.
    pub build: BuildFn,
    /// How its parameters are read, defaults included.
    pub applied: AppliedFn,
}

/// The factory of a native component.
#[derive(Clone, Copy, Debug)]
struct Native {
    build: BuildFn,
    applied: AppliedFn,
}

impl Factory for Native {
    fn build(&self, params: &toml::Table) -> Result<Component> {
        (self.build)(params)
    }

    fn applied(&self, params: &toml::Table) -> Result<toml::Table> {
        (self.applied)(params)
    }
}

/// A registered component.
#[derive(Clone)]
pub struct Registered {
    /// What it is.
    pub info: ComponentInfo,
    /// Where it comes from.
    pub origin: Origin,
    factory: Arc<dyn Factory>,
}

impl fmt::Debug for Registered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registered")
            .field("info", &self.info)
            .field("origin", &self.origin)
            .finish()
    }
}

impl Registered {
    /// Builds the component, checking that the factory built the declared kind.
    ///
    /// # Errors
    /// Bad parameters, or a factory that returns a component of another kind.
    pub fn build(&self, params: &toml::Table) -> Result<Component> {
        let component = self.factory.build(params)?;
        if component.kind() != self.info.kind {
            return Err(Error::InvalidOutput {
                component: format!("{} `{}` ({})", self.info.kind, self.info.name, self.origin),
                message: format!(
                    "it was declared a {} but built a {}",
                    self.info.kind,
                    component.kind()
                ),
            });
        }
        Ok(component)
    }

    /// The parameter values the component would run with, defaults
    /// included (see [`Factory::applied`]).
    ///
    /// # Errors
    /// Bad parameters.
    pub fn applied(&self, params: &toml::Table) -> Result<toml::Table> {
        self.factory.applied(params)
    }
}

/// All known components, keyed by name. Names are unique across kinds, so
/// `lca example <name>` is never ambiguous.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    entries: BTreeMap<String, Registered>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry::default()
    }

    /// Registers a native component.
    ///
    /// # Errors
    /// When the name is taken ([`Error::DuplicateComponent`] names both origins).
    pub fn register_native(&mut self, descriptor: Descriptor, origin: Origin) -> Result<()> {
        let factory = Native {
            build: descriptor.build,
            applied: descriptor.applied,
        };
        self.register(descriptor.info, origin, Arc::new(factory))
    }

    /// Registers a component with any factory.
    ///
    /// # Errors
    /// When the name is taken, or is not snake_case.
    pub fn register(
        &mut self,
        info: ComponentInfo,
        origin: Origin,
        factory: Arc<dyn Factory>,
    ) -> Result<()> {
        if !is_snake_case(&info.name) {
            return Err(Error::Plugin(format!(
                "{origin} declares a {} named `{}`; component names must be lowercase snake_case \
                 (letters, digits and underscores, starting with a letter)",
                info.kind, info.name
            )));
        }
        if let Some(existing) = self.entries.get(&info.name) {
            return Err(Error::DuplicateComponent {
                kind: info.kind,
                name: info.name,
                first: Box::new(existing.origin.clone()),
                second: Box::new(origin),
            });
        }
        self.entries.insert(
            info.name.clone(),
            Registered {
                info,
                origin,
                factory,
            },
        );
        Ok(())
    }

    /// The component of this kind and name.
    ///
    /// # Errors
    /// [`Error::UnknownComponent`] listing the known names, or a message
    /// saying which kind the name belongs to.
    pub fn get(&self, kind: ComponentKind, name: &str) -> Result<&Registered> {
        match self.entries.get(name) {
            Some(r) if r.info.kind == kind => Ok(r),
            Some(r) => Err(Error::input(format!(
                "`{name}` is a {}, not a {kind}; declare it as [{}.<id>]",
                r.info.kind,
                r.info.kind.table()
            ))),
            None => Err(Error::UnknownComponent {
                kind,
                name: name.into(),
                known: self.names(kind),
            }),
        }
    }

    /// The component with this name, of any kind.
    pub fn find(&self, name: &str) -> Option<&Registered> {
        self.entries.get(name)
    }

    /// Sorted names of one kind.
    pub fn names(&self, kind: ComponentKind) -> Vec<String> {
        self.entries
            .values()
            .filter(|r| r.info.kind == kind)
            .map(|r| r.info.name.clone())
            .collect()
    }

    /// Every component, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = &Registered> {
        self.entries.values()
    }
}

fn is_snake_case(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}
