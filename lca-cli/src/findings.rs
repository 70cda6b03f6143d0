//! The paper's qualitative findings, checked against a run's results.
//!
//! Each finding is read off the evaluations that can show it, and says
//! plainly whether it held, with the numbers. A finding with no evaluation
//! to test it is not listed.
//!
//! - **Top beats random and bottom**: in every `ablation` row, the top
//!   neurons' accuracy exceeds both the random and the bottom neurons' by at
//!   least [`WIDE_MARGIN`].
//! - **A small subset suffices**: every `minimal_subset` result is at most
//!   [`SMALL_SUBSET_PERCENT`] of the neurons.
//! - **Lexical neurons sit lower than syntactic ones**: for each ranking
//!   method applied to both a lexical task (suffix, word shape,
//!   capitalisation) and a part-of-speech task, the mean layer of its
//!   `layer_distribution` selection is lower for the lexical task.
//! - **MLP units are over-represented among the top neurons** (data with
//!   sites, such as a decoder's MLP units beside its residual stream): in
//!   each `layer_distribution` selection, the MLP's share of the selected
//!   neurons is at least its share of all neurons. Where the claim fails,
//!   the residual stream carries the property more densely.

use std::collections::BTreeMap;

use lca_core::data::Cell;
use lca_core::run::Results;

use crate::number::number;

/// Accuracy points by which top neurons must beat random and bottom ones.
pub const WIDE_MARGIN: f64 = 0.05;
/// Largest minimal subset, in % of the neurons, that counts as small.
pub const SMALL_SUBSET_PERCENT: f64 = 10.0;

/// One checked claim.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    /// What the paper found.
    pub claim: String,
    /// How many of the cases checked bear it out, of how many.
    pub held: usize,
    /// See `held`.
    pub checked: usize,
    /// The numbers behind the verdict, one line per case ("NOT: " marks a
    /// case where it failed).
    pub evidence: Vec<String>,
}

impl Finding {
    /// "held", "did not hold", or "held in 3 of 5 cases".
    pub fn verdict(&self) -> String {
        if self.held == self.checked {
            "held".into()
        } else if self.held == 0 {
            "did not hold".into()
        } else {
            format!("held in {} of {} cases", self.held, self.checked)
        }
    }

    fn new(claim: String, cases: Vec<(bool, String)>) -> Option<Finding> {
        (!cases.is_empty()).then(|| Finding {
            claim,
            held: cases.iter().filter(|c| c.0).count(),
            checked: cases.len(),
            evidence: cases
                .into_iter()
                .map(|(ok, line)| if ok { line } else { format!("NOT: {line}") })
                .collect(),
        })
    }
}

fn float(c: &Cell) -> Option<f64> {
    match c {
        Cell::Float(v) => Some(*v),
        Cell::Int(i) => Some(*i as f64),
        _ => None,
    }
}

fn text(c: &Cell) -> &str {
    match c {
        Cell::Text(t) => t,
        _ => "",
    }
}

fn task_of(r: &Results, source: &str) -> String {
    r.sources
        .get(source)
        .and_then(|s| s.details.get("task"))
        .cloned()
        .unwrap_or_default()
}

fn is_lexical(task: &str) -> bool {
    ["suffix", "shape", "capital"]
        .iter()
        .any(|t| task.contains(t))
}

fn is_pos(task: &str) -> bool {
    task.contains("pos")
}

fn ablation(r: &Results) -> Option<Finding> {
    let mut cases = Vec::new();
    for (id, e) in &r.evaluations {
        if e.type_name != "ablation" {
            continue;
        }
        for t in &e.evaluation.tables {
            let col = |name: &str| t.columns.iter().position(|c| c == name);
            let (Some(rk), Some(mode), Some(pct), Some(top), Some(rand), Some(bottom)) = (
                col("ranking"),
                col("mode"),
                col("kept %"),
                col("top"),
                col("random (mean)"),
                col("bottom"),
            ) else {
                continue;
            };
            // The paper's ablation keeps the trained probe and zeroes the
            // other neurons; retraining is a different question.
            for row in t.rows.iter().filter(|row| text(&row[mode]) == "zero_out") {
                let (Some(p), Some(a), Some(b), Some(c)) = (
                    float(&row[pct]),
                    float(&row[top]),
                    float(&row[rand]),
                    float(&row[bottom]),
                ) else {
                    continue;
                };
                cases.push((
                    a - b >= WIDE_MARGIN && a - c >= WIDE_MARGIN,
                    format!(
                        "{id}: `{}` keeping {}%: top {}, random {}, bottom {}",
                        text(&row[rk]),
                        number(p),
                        number(a),
                        number(b),
                        number(c)
                    ),
                ));
            }
        }
    }
    Finding::new(
        format!(
            "With the other neurons zeroed out, top neurons beat random and bottom ones by a wide margin (at least {} accuracy points)",
            number(WIDE_MARGIN * 100.0)
        ),
        cases,
    )
}

fn minimal(r: &Results) -> Option<Finding> {
    let mut cases = Vec::new();
    for (id, e) in &r.evaluations {
        if e.type_name != "minimal_subset" {
            continue;
        }
        for t in &e.evaluation.tables {
            let col = |name: &str| t.columns.iter().position(|c| c == name);
            // The summary table (the search path has no target column).
            let (Some(rk), Some(probe), Some(neurons), Some(pct), Some(_)) = (
                col("ranking"),
                col("probe"),
                col("neurons"),
                col("% of all"),
                col("target"),
            ) else {
                continue;
            };
            for row in &t.rows {
                let which = format!("`{}` (probe `{}`)", text(&row[rk]), text(&row[probe]));
                cases.push(match (float(&row[neurons]), float(&row[pct])) {
                    (Some(k), Some(p)) => (
                        p <= SMALL_SUBSET_PERCENT,
                        format!(
                            "{id}: {which} needs {} neurons, {}% of all",
                            number(k),
                            number((p * 100.0).round() / 100.0)
                        ),
                    ),
                    _ => (
                        false,
                        format!("{id}: {which} reached the target at no size of the grid"),
                    ),
                });
            }
        }
    }
    Finding::new(
        format!(
            "A small subset of neurons (at most {}%) recovers the full probe's accuracy within the tolerance",
            number(SMALL_SUBSET_PERCENT)
        ),
        cases,
    )
}

fn layers(r: &Results) -> Option<Finding> {
    // Mean layer per (method, task kind).
    let mut lexical: BTreeMap<String, Vec<(String, f64)>> = BTreeMap::new();
    let mut syntactic: BTreeMap<String, Vec<(String, f64)>> = BTreeMap::new();
    for e in r.evaluations.values() {
        if e.type_name != "layer_distribution" {
            continue;
        }
        let task = task_of(r, &e.source);
        for (key, &mean) in &e.evaluation.metrics {
            let Some(label) = key.strip_prefix("mean_layer.") else {
                continue;
            };
            let method = match r.rankings.get(label) {
                // A baseline, not a method: its layers are chance.
                Some(k) if k.type_name == "random" => continue,
                Some(k) => match k.probe.as_ref().and_then(|p| r.probes.get(p)) {
                    Some(p) => format!("{} ({})", k.type_name, p.type_name),
                    None => k.type_name.clone(),
                },
                None => match r.probes.get(label) {
                    Some(p) => format!("{} mass", p.type_name),
                    None => continue,
                },
            };
            let entry = (format!("{label} on {task}"), mean);
            if is_lexical(&task) {
                lexical.entry(method).or_default().push(entry);
            } else if is_pos(&task) {
                syntactic.entry(method).or_default().push(entry);
            }
        }
    }
    let mut cases = Vec::new();
    for (method, lex) in &lexical {
        let Some(pos) = syntactic.get(method) else {
            continue;
        };
        let mean = |v: &[(String, f64)]| v.iter().map(|e| e.1).sum::<f64>() / v.len() as f64;
        cases.push((
            mean(lex) < mean(pos),
            format!(
                "{method}: mean layer {} for {} vs {} for {}",
                number((mean(lex) * 100.0).round() / 100.0),
                lex.iter()
                    .map(|e| e.0.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                number((mean(pos) * 100.0).round() / 100.0),
                pos.iter()
                    .map(|e| e.0.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    Finding::new(
        "Neurons of the lexical task (suffix) sit in lower layers than those of part of speech"
            .into(),
        cases,
    )
}

/// Where the selected neurons sit when the data has several sites: the
/// MLP's share of each selection against its share of all neurons, with the
/// mean layer in each site.
fn sites(r: &Results) -> Option<Finding> {
    let mut cases = Vec::new();
    for e in r.evaluations.values() {
        if e.type_name != "layer_distribution" {
            continue;
        }
        let metrics = &e.evaluation.metrics;
        let Some(&mlp_of_all) = metrics.get("site_of_all.mlp") else {
            continue;
        };
        let task = task_of(r, &e.source);
        for (key, &share) in metrics {
            let Some(label) = key
                .strip_prefix("site_share.")
                .and_then(|k| k.strip_suffix(".mlp"))
            else {
                continue;
            };
            // A baseline, not a method: its sites are chance.
            if r.rankings
                .get(label)
                .is_some_and(|k| k.type_name == "random")
            {
                continue;
            }
            let mean = |site: &str| {
                metrics
                    .get(&format!("mean_layer.{label}.{site}"))
                    .map_or("–".to_string(), |m| number((m * 100.0).round() / 100.0))
            };
            let percent = |v: f64| number((v * 1000.0).round() / 10.0);
            let case = if task.is_empty() {
                label.to_string()
            } else {
                format!("{label} on {task}")
            };
            cases.push((
                share >= mlp_of_all,
                format!(
                    "{case}: {}% of the selected neurons are MLP units, which are {}% of all \
                     neurons; mean layer {} in the MLP, {} in the residual stream",
                    percent(share),
                    percent(mlp_of_all),
                    mean("mlp"),
                    mean("residual"),
                ),
            ));
        }
    }
    Finding::new(
        "MLP units are at least as likely as residual-stream units to be among the top neurons"
            .into(),
        cases,
    )
}

/// Whether each source's activations vary at all: constant neurons carry
/// no information, and a source with nothing else cannot answer any claim.
/// Tested only where a source has constant neurons, so that runs on sound
/// data are not cluttered with it.
fn informative(r: &Results) -> Option<Finding> {
    if r.sources.values().all(|s| s.constant_neurons == 0) {
        return None;
    }
    let cases = r
        .sources
        .iter()
        .map(|(id, s)| {
            let varying = s.neurons - s.constant_neurons;
            (
                varying > 0,
                format!(
                    "{id}: {varying} of {} neurons vary on the training split ({} constant, \
                     ranked last)",
                    s.neurons, s.constant_neurons
                ),
            )
        })
        .collect();
    Finding::new(
        "The activations carry information: some neurons vary on the training split".into(),
        cases,
    )
}

/// Every finding this run can test.
pub fn findings(r: &Results) -> Vec<Finding> {
    [informative(r), layers(r), sites(r), ablation(r), minimal(r)]
        .into_iter()
        .flatten()
        .collect()
}
