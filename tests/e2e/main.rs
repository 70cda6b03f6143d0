//! Integration tests across crates: every plugin loaded as a real library.

mod conformance;
mod degenerate;
mod params;
mod plugin_kinds;
mod recipes;
mod transformer;
