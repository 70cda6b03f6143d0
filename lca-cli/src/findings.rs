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

use std::collections::BTreeMap;

use lca_core::data::Cell;
use lca_core::run::Results;

use crate::report::number;

/// Accuracy points by which top neurons must beat random and bottom ones.
pub(crate) const WIDE_MARGIN: f64 = 0.05;
/// Largest minimal subset, in % of the neurons, that counts as small.
pub(crate) const SMALL_SUBSET_PERCENT: f64 = 10.0;

/// One checked claim.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Finding {
    /// What the paper found.
    pub claim: String,
    /// Whether it held here.
    pub held: bool,
    /// The numbers behind the verdict.
    pub evidence: Vec<String>,
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
    let mut evidence = Vec::new();
    let mut held = true;
    let mut seen = false;
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
            for row in &t.rows {
                if text(&row[mode]) == "all neurons" {
                    continue;
                }
                let (Some(p), Some(a), Some(b), Some(c)) = (
                    float(&row[pct]),
                    float(&row[top]),
                    float(&row[rand]),
                    float(&row[bottom]),
                ) else {
                    continue;
                };
                seen = true;
                let ok = a - b >= WIDE_MARGIN && a - c >= WIDE_MARGIN;
                held &= ok;
                evidence.push(format!(
                    "{}{id}: `{}` {} {}%: top {}, random {}, bottom {}",
                    if ok { "" } else { "NOT: " },
                    text(&row[rk]),
                    text(&row[mode]),
                    number(p),
                    number(a),
                    number(b),
                    number(c)
                ));
            }
        }
    }
    seen.then(|| Finding {
        claim: format!(
            "Top neurons beat random and bottom neurons by a wide margin (at least {} accuracy points)",
            number(WIDE_MARGIN * 100.0)
        ),
        held,
        evidence,
    })
}

fn minimal(r: &Results) -> Option<Finding> {
    let mut evidence = Vec::new();
    let mut held = true;
    for (id, e) in &r.evaluations {
        if e.type_name != "minimal_subset" {
            continue;
        }
        for (key, &pct) in &e.evaluation.metrics {
            let Some(which) = key.strip_prefix("percent.") else {
                continue;
            };
            let ok = pct <= SMALL_SUBSET_PERCENT;
            held &= ok;
            let neurons = e
                .evaluation
                .metrics
                .get(&format!("neurons.{which}"))
                .map(|n| format!("{} neurons, ", number(*n)))
                .unwrap_or_default();
            evidence.push(format!(
                "{}{id}: `{which}` needs {neurons}{}% of all",
                if ok { "" } else { "NOT: " },
                number(pct)
            ));
        }
    }
    (!evidence.is_empty()).then(|| Finding {
        claim: format!(
            "A small subset of neurons (at most {}%) recovers the full probe's accuracy within the tolerance",
            number(SMALL_SUBSET_PERCENT)
        ),
        held,
        evidence,
    })
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
    let mut evidence = Vec::new();
    let mut held = true;
    for (method, lex) in &lexical {
        let Some(pos) = syntactic.get(method) else {
            continue;
        };
        let mean = |v: &[(String, f64)]| v.iter().map(|e| e.1).sum::<f64>() / v.len() as f64;
        let ok = mean(lex) < mean(pos);
        held &= ok;
        evidence.push(format!(
            "{}{method}: mean layer {} for {} vs {} for {}",
            if ok { "" } else { "NOT: " },
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
        ));
    }
    (!evidence.is_empty()).then(|| Finding {
        claim:
            "Neurons of the lexical task (suffix) sit in lower layers than those of part of speech"
                .into(),
        held,
        evidence,
    })
}

/// Every finding this run can test.
pub(crate) fn findings(r: &Results) -> Vec<Finding> {
    [layers(r), ablation(r), minimal(r)]
        .into_iter()
        .flatten()
        .collect()
}
