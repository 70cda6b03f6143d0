//! `lca-core`: the vocabulary and the engine of `lca`, a toolkit for
//! neuron-level interpretation of language models.
//!
//! It sits at the bottom of the workspace and knows nothing of plugins, of
//! the built-in components or of the command line:
//!
//! - [`data`]: activation matrices, neuron indices, labels, splits, rankings
//!   and evaluation results;
//! - [`component`]: the four object-safe traits ([`ActivationSource`],
//!   [`Probe`], [`Ranker`], [`Evaluator`]) that built-ins and plugins implement;
//! - [`params`](mod@params): documented, validated component parameters, declared once with [`params!`];
//! - [`registry`]: component names to implementations;
//! - [`recipe`] and [`run`]: TOML recipes compiled into plans and executed;
//! - [`checkpoint`]: finished steps kept on disk, so a run can resume.
//!
//! The components themselves live elsewhere: the solvers in `lca-linear`,
//! the built-in sources and evaluators in `lca-builtin`, and plugins in
//! their own libraries. Whoever assembles a tool fills a [`Registry`] with
//! them. A whole analysis in a few lines:
//!
//! ```
//! use lca_core::{Registry, RunContext, recipe, run};
//! let recipe = r#"
//! [source.planted]
//! type = "synthetic"
//! tokens = 200
//! neurons = 20
//! "#;
//! let mut registry = Registry::new();
//! lca_builtin::register(&mut registry).unwrap();
//! let plan = recipe::compile("demo.toml".as_ref(), recipe, &registry).unwrap();
//! let results = run::execute(&plan, &RunContext::new(plan.run.seed, 1), &mut run::Silent).unwrap();
//! assert_eq!(results.sources["planted"].neurons, 20);
//! ```

#![forbid(unsafe_code)]

pub mod checkpoint;
pub mod component;
pub mod context;
pub mod data;
pub mod error;
pub mod io;
pub mod kind;
pub mod memory;
pub mod params;
pub mod recipe;
pub mod registry;
pub mod rng;
pub mod run;
pub mod units;

pub use component::{
    ActivationSource, Component, EvalInput, Evaluator, NamedRanking, Probe, ProbeInput, RankInput,
    Ranker, RowSink, SharedProbe, TrainedProbe, WarmStart,
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
