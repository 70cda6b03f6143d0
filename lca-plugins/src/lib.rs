//! `lca-plugins`: the plugin boundary of `lca`. It is the only crate that
//! names abi_stable.
//!
//! - For **plugin authors**: implement an `lca-core` trait, describe the
//!   component with a [`lca_core::Descriptor`], and export it with
//!   [`export_plugin!`]. No `unsafe`, no `extern`:
//!
//!   ```
//!   #![forbid(unsafe_code)]
//!   use lca_core::ndarray::Axis;
//!   use lca_core::params::Params as _;
//!   use lca_core::registry::{ComponentInfo, ComponentKind, Descriptor, Inputs, applied};
//!   use lca_core::{Component, NeuronRanking, RankInput, Ranker, Result, RunContext};
//!
//!   lca_core::params! {
//!       /// Parameters of `variance`.
//!       struct VarianceParams {
//!           /// rank the least varying neurons first
//!           reverse: bool = false,
//!       }
//!   }
//!
//!   /// Ranks neurons by the variance of their activation.
//!   #[derive(Debug)]
//!   struct Variance {
//!       reverse: bool,
//!   }
//!
//!   impl Ranker for Variance {
//!       fn rank(&self, input: &RankInput<'_>, _cx: &RunContext) -> Result<NeuronRanking> {
//!           let train = input.data.split(lca_core::data::Split::Train);
//!           let var = train.acts.view().var_axis(Axis(0), 0.0);
//!           let sign = if self.reverse { -1.0 } else { 1.0 };
//!           NeuronRanking::from_scores(var.iter().map(|&v| sign * f64::from(v)).collect())
//!       }
//!   }
//!
//!   fn descriptor() -> Descriptor {
//!       Descriptor {
//!           info: ComponentInfo {
//!               kind: ComponentKind::Ranker,
//!               name: "variance".into(),
//!               summary: "Variance of each neuron's activation".into(),
//!               params: VarianceParams::docs(),
//!               example: "[ranker.var]\ntype = \"variance\"\n".into(),
//!               inputs: Inputs::default(),
//!           },
//!           build: |table| {
//!               let p = VarianceParams::parse("variance", table)?;
//!               Ok(Component::Ranker(Box::new(Variance { reverse: p.reverse })))
//!           },
//!           applied: applied::<VarianceParams>,
//!       }
//!   }
//!
//!   lca_plugins::export_plugin! {
//!       name: "lca-plugin-variance",
//!       version: "0.1.0",
//!       components: [descriptor()],
//!   }
//!   ```
//!
//!   Build the crate as a `cdylib` named `lca_plugin_<name>` and put the
//!   library where `lca` looks (see [`loader::search_path`]).
//! - For **hosts**: [`loader`] finds and loads libraries and registers their
//!   components; the wrappers it installs implement the `lca-core` traits, so
//!   the run engine never sees FFI types. Every call into a plugin is guarded:
//!   a plugin panic becomes an error naming the plugin and component, and
//!   everything a plugin returns is validated again.
//!
//! See `docs/plugins.md` for the full guide.

#![deny(unsafe_code)]

#[allow(
    unsafe_code,
    non_local_definitions,
    non_camel_case_types,
    missing_docs,
    unreachable_pub,
    clippy::all
)]
pub mod abi;
mod convert;
pub mod export;
mod foreign;
mod guard;
pub mod loader;
mod probe_adapter;

pub use loader::{LoadedPlugin, discover, is_plugin_file_name, load_file, load_into, search_path};

/// Items used by [`export_plugin!`]; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use abi_stable::library::{LibHeader, RootModuleResult};

    /// A plugin library's definition, implemented by [`crate::export_plugin!`]
    /// on a type of the plugin crate.
    pub trait Definition {
        /// The plugin's name, version and components.
        fn define() -> crate::export::PluginDefinition;
    }

    /// The entry point abi_stable's loader calls: builds the root module of
    /// plugin `D`, catching panics.
    extern "C" fn load<D: Definition>() -> RootModuleResult {
        abi_stable::library::__call_root_module_loader(|| crate::export::root_module(D::define))
    }

    /// The library header of plugin `D`, for the static that
    /// [`crate::export_plugin!`] exports. The unsafe part of exporting a plugin
    /// lives here, so that plugin crates can `#![forbid(unsafe_code)]`.
    pub const fn header<D: Definition>() -> LibHeader {
        // SAFETY: `from_constructor::<M>` needs a constructor that returns
        // the root module `M`; `load::<D>` returns the `PluginModRef` built
        // by `root_module`, whatever `D` is.
        #[allow(unsafe_code)]
        unsafe {
            LibHeader::from_constructor::<crate::abi::PluginModRef>(
                load::<D>,
                abi_stable::library::CheckTypeLayout::Yes,
            )
        }
    }
}

#[doc(hidden)]
pub mod testing;

#[cfg(test)]
mod round_trip;
