//! What the `lca` command and the Python package share: the component
//! registry with its plugins, and writing a run's results and reports.

#![forbid(unsafe_code)]

pub mod findings;
pub mod html;
pub mod number;
pub mod outputs;
pub mod plugins;
pub mod report;
pub mod stats_ranking;
pub mod store_writing;

/// One readable paragraph: the error and its causes, without repeats.
pub fn paragraph(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if parts.iter().any(|p| p.contains(&text)) {
            continue;
        }
        parts.push(text);
    }
    parts.join(": ")
}
