//! The `lca._lca` extension module behind the `lca` Python package: running
//! recipes, and the components (sources aside) called on numpy arrays. The
//! Python side (`python/lca/`) wraps these calls in typed, documented
//! functions and classes; this side does the work, off the interpreter lock
//! and stoppable with Ctrl-C.

mod arrays;
mod components;
mod errors;
mod interrupt;
mod neurox;
mod steps;
mod store;

use pyo3::prelude::*;

#[pymodule]
#[pyo3(name = "_lca")]
fn extension(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("LcaError", m.py().get_type::<errors::LcaError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<arrays::ArrayData>()?;
    m.add_class::<steps::RunOutput>()?;
    m.add_class::<steps::FittedProbe>()?;
    m.add_class::<store::Statistics>()?;
    m.add_class::<store::OpenStore>()?;
    m.add_function(wrap_pyfunction!(store::store_manifest, m)?)?;
    m.add_function(wrap_pyfunction!(store::store_stats, m)?)?;
    m.add_function(wrap_pyfunction!(store::store_create, m)?)?;
    m.add_function(wrap_pyfunction!(store::store_join, m)?)?;
    m.add_function(wrap_pyfunction!(steps::run_recipe, m)?)?;
    m.add_function(wrap_pyfunction!(steps::rank, m)?)?;
    m.add_function(wrap_pyfunction!(steps::load_source, m)?)?;
    m.add_function(wrap_pyfunction!(steps::fit_probe, m)?)?;
    m.add_function(wrap_pyfunction!(steps::evaluate, m)?)?;
    m.add_function(wrap_pyfunction!(steps::component_list, m)?)?;
    m.add_function(wrap_pyfunction!(steps::recipe_text, m)?)?;
    m.add_function(wrap_pyfunction!(neurox::lca_ordering, m)?)?;
    m.add_function(wrap_pyfunction!(neurox::mass_selection, m)?)?;
    m.add_function(wrap_pyfunction!(neurox::above_max_fraction, m)?)?;
    m.add_function(wrap_pyfunction!(neurox::read_activations_json, m)?)?;
    Ok(())
}
