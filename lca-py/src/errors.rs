//! `lca.LcaError`: every failure of `lca` reaches Python as this exception,
//! with the same one-paragraph message the command line prints (what went
//! wrong, where, and how to fix it).

use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

// A subclass of ValueError: bad recipes, files and parameters are bad values.
create_exception!(
    lca,
    LcaError,
    PyValueError,
    "A recipe, file, array or parameter that lca cannot use; the message says where and how to fix it."
);

/// An error of the core as the Python exception.
pub(crate) fn core_error(e: lca_core::Error) -> PyErr {
    LcaError::new_err(lca_cli::paragraph(&anyhow::Error::new(e)))
}

/// An error with context as the Python exception.
pub(crate) fn any_error(e: anyhow::Error) -> PyErr {
    LcaError::new_err(lca_cli::paragraph(&e))
}

/// A plain message as the Python exception.
pub(crate) fn message(text: impl Into<String>) -> PyErr {
    LcaError::new_err(text.into())
}
