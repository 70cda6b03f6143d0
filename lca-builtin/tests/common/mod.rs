//! Readers for the NeuroX golden fixtures shared by the integration tests.
//! float32 values are stored as the f64 repr of the f32 value, so parsing as
//! f64 and rounding to f32 gives the exact bits back.

#![allow(dead_code)]

use lca_core::ndarray::Array2;
use serde_json::Value;

/// A nested row-major JSON array as f32.
pub(crate) fn matrix_f32(v: &Value) -> Array2<f32> {
    matrix_f64(v).mapv(|x| x as f32)
}

/// A nested row-major JSON array as f64.
pub(crate) fn matrix_f64(v: &Value) -> Array2<f64> {
    let rows: Vec<Vec<f64>> = v
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            r.as_array()
                .expect("row")
                .iter()
                .map(|x| x.as_f64().expect("number"))
                .collect()
        })
        .collect();
    Array2::from_shape_fn((rows.len(), rows.first().map_or(0, Vec::len)), |(i, j)| {
        rows[i][j]
    })
}

/// A JSON array of non-negative integers.
pub(crate) fn ints(v: &Value) -> Vec<usize> {
    v.as_array()
        .expect("integers")
        .iter()
        .map(|x| x.as_u64().expect("integer") as usize)
        .collect()
}
