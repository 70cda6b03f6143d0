//! `lca-core`: the data model, component traits, recipes and run engine of
//! `lca`, a toolkit for neuron-level interpretation of language models.
//!
//! It sits at the bottom of the workspace and knows nothing of plugins or the
//! command line:
//!
//! - [`data`]: activation matrices, neuron indices, labels, splits, rankings
//!   and evaluation results;
//! - [`component`]: the four object-safe traits ([`ActivationSource`],
//!   [`Probe`], [`Ranker`], [`Evaluator`]) that built-ins and plugins implement;
//! - [`params`]: documented, validated component parameters;
//! - [`registry`]: component names to implementations;
//! - [`recipe`] and [`run`]: TOML recipes compiled into plans and executed;
//! - [`builtin`]: the sources and evaluators compiled into `lca`.
//!
//! A whole analysis in a few lines:
//!
//! ```
//! use lca_core::{Registry, RunContext, recipe, run};
//! let recipe = r#"
//! [source.planted]
//! type = "synthetic"
//! tokens = 200
//! neurons = 20
//! "#;
//! let registry = Registry::with_builtins();
//! let plan = recipe::compile("demo.toml".as_ref(), recipe, &registry).unwrap();
//! let results = run::execute(&plan, &RunContext::new(plan.run.seed, 1), &mut run::Silent).unwrap();
//! assert_eq!(results.sources["planted"].neurons, 20);
//! ```

// `deny`, not `forbid`: ndarray's `s!` macro allows unsafe internally.
#![deny(unsafe_code)]

pub mod ablate;
pub mod builtin;
pub mod checkpoint;
pub mod cluster;
pub mod component;
pub mod context;
pub mod corpus;
pub mod data;
pub mod error;
pub mod io;
pub mod linear;
pub mod neurox;
pub mod params;
pub mod recipe;
pub mod registry;
pub mod rng;
pub mod run;
pub mod select;
#[cfg(feature = "testkit")]
pub mod testkit;
#[cfg(test)]
mod testkit_data;

pub use component::{
    ActivationSource, Component, EvalInput, Evaluator, NamedRanking, Probe, ProbeInput, RankInput,
    Ranker, SharedProbe, TrainedProbe,
};
pub use context::{Progress, RunContext};
pub use data::{Dataset, Evaluation, NeuronRanking};
pub use error::{Error, Result};
pub use registry::{ComponentInfo, ComponentKind, Descriptor, Origin, Registry};

/// Re-exported so plugin crates use the same versions as the host.
pub use ndarray;
pub use serde;
pub use serde_json;
pub use toml;
