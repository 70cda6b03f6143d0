//! The human-readable report (`report.md`), rendered from the results alone
//! so that `lca report` can regenerate it.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::number::number;
use lca_core::data::Cell;
use lca_core::run::Results;

/// How many neurons of each ranking the report lists.
const TOP_SHOWN: usize = 20;

fn cell(c: &Cell) -> String {
    match c {
        Cell::Int(i) => i.to_string(),
        Cell::Float(f) => number(*f),
        Cell::Text(t) => t.replace('|', "\\|"),
        Cell::Empty => String::new(),
    }
}

fn table(out: &mut String, header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) {
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(
        out,
        "|{}|",
        header.iter().map(|_| "---").collect::<Vec<_>>().join("|")
    );
    for row in rows {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    out.push('\n');
}

/// Entries of a results map in the order their steps ran (the recipe's order).
pub fn in_recipe_order<'r, T>(
    r: &Results,
    map: &'r std::collections::BTreeMap<String, T>,
) -> Vec<(&'r String, &'r T)> {
    let mut entries: Vec<(&String, &T)> = map.iter().collect();
    entries.sort_by_key(|(id, _)| {
        r.steps
            .iter()
            .position(|s| &s.id == *id)
            .unwrap_or(usize::MAX)
    });
    entries
}

/// The full report.
pub fn markdown(r: &Results) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {}\n", r.recipe.name);
    if let Some(d) = &r.recipe.description {
        let _ = writeln!(out, "{d}\n");
    }
    let _ = writeln!(
        out,
        "Seed {}, lca {}, {} worker threads.\n",
        r.seed, r.provenance.lca_version, r.provenance.threads
    );

    let findings = crate::findings::findings(r);
    if !findings.is_empty() {
        let _ = writeln!(out, "## Findings\n");
        for f in &findings {
            let _ = writeln!(out, "- **{}: {}.**", f.claim, f.verdict());
            for line in &f.evidence {
                let _ = writeln!(out, "  - {line}");
            }
        }
        out.push('\n');
    }

    let _ = writeln!(out, "## Sources\n");
    table(
        &mut out,
        &[
            "source",
            "tokens",
            "neurons",
            "layers",
            "classes",
            "train / dev / test",
        ],
        r.sources.values().map(|s| {
            vec![
                format!("`{}`", s.name),
                s.tokens.to_string(),
                s.neurons.to_string(),
                s.layers.len().to_string(),
                s.classes.len().to_string(),
                format!("{} / {} / {}", s.splits.train, s.splits.dev, s.splits.test),
            ]
        }),
    );
    for s in r.sources.values() {
        if !s.details.is_empty() {
            let _ = writeln!(out, "Source `{}`:\n", s.name);
            table(
                &mut out,
                &["detail", "value"],
                s.details.iter().map(|(k, v)| vec![k.clone(), v.clone()]),
            );
        }
        if let Some(truth) = &s.truth {
            let _ = writeln!(
                out,
                "Source `{}` is synthetic: {} informative neurons are planted ({} correlated copies).\n",
                s.name,
                truth.informative.len(),
                truth.copies.len()
            );
        }
    }

    if !r.probes.is_empty() {
        let _ = writeln!(out, "## Probes\n");
        table(
            &mut out,
            &[
                "probe",
                "type",
                "source",
                "train accuracy",
                "dev accuracy",
                "test accuracy",
            ],
            r.probes.iter().map(|(id, p)| {
                let acc = |s| p.accuracy.get(&s).map(|v| number(*v)).unwrap_or_default();
                use lca_core::data::Split;
                vec![
                    format!("`{id}`"),
                    p.type_name.clone(),
                    format!("`{}`", p.source),
                    acc(Split::Train),
                    acc(Split::Dev),
                    acc(Split::Test),
                ]
            }),
        );
    }

    if !r.rankings.is_empty() {
        let _ = writeln!(out, "## Rankings\n");
        for (id, ranking) in in_recipe_order(r, &r.rankings) {
            let probe = ranking
                .probe
                .as_ref()
                .map(|p| format!(" with probe `{p}`"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "### `{id}`: {} on `{}`{probe}\n",
                ranking.type_name, ranking.source
            );
            let planted: BTreeSet<u32> = r
                .sources
                .get(&ranking.source)
                .and_then(|s| s.truth.as_ref())
                .map(|t| t.informative.iter().copied().collect())
                .unwrap_or_default();
            let mut header = vec!["rank", "neuron", "layer", "unit", "score"];
            if !planted.is_empty() {
                header.push("planted");
            }
            table(
                &mut out,
                &header,
                ranking.top.iter().take(TOP_SHOWN).map(|n| {
                    let mut row = vec![
                        n.rank.to_string(),
                        n.neuron.to_string(),
                        n.id.group().to_string().trim_start_matches('L').to_string(),
                        n.id.unit.to_string(),
                        n.score.map(number).unwrap_or_else(|| "–".into()),
                    ];
                    if !planted.is_empty() {
                        row.push(if planted.contains(&n.neuron) {
                            "yes".into()
                        } else {
                            String::new()
                        });
                    }
                    row
                }),
            );
            if !ranking.class_top.is_empty() {
                let _ = writeln!(out, "Top 5 neurons per class (layer[.site]:unit):\n");
                table(
                    &mut out,
                    &["class", "neurons"],
                    ranking.class_top.iter().map(|(class, ids)| {
                        vec![
                            class.clone(),
                            ids.iter()
                                .take(5)
                                .map(|id| id.to_string().trim_start_matches('L').to_string())
                                .collect::<Vec<_>>()
                                .join(", "),
                        ]
                    }),
                );
            }
        }
    }

    if !r.evaluations.is_empty() {
        let _ = writeln!(out, "## Evaluations\n");
        for (id, e) in in_recipe_order(r, &r.evaluations) {
            let inputs = if e.rankings.is_empty() {
                String::new()
            } else {
                format!(
                    " of {}",
                    e.rankings
                        .iter()
                        .map(|r| format!("`{r}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            let _ = writeln!(out, "### `{id}`: {}{inputs}\n", e.type_name);
            for t in &e.evaluation.tables {
                let _ = writeln!(out, "**{}**\n", t.title);
                let header: Vec<&str> = t.columns.iter().map(String::as_str).collect();
                table(
                    &mut out,
                    &header,
                    t.rows.iter().map(|row| row.iter().map(cell).collect()),
                );
            }
            for note in &e.evaluation.notes {
                let _ = writeln!(out, "> {note}\n");
            }
        }
    }

    let _ = writeln!(out, "## Provenance\n");
    table(
        &mut out,
        &["step", "type", "origin", "seconds"],
        r.steps.iter().map(|s| {
            let origin = r
                .provenance
                .origins
                .get(&s.key)
                .map(ToString::to_string)
                .unwrap_or_default();
            let secs = r
                .provenance
                .timings
                .get(&s.key)
                .map(|t| format!("{t:.3}"))
                .unwrap_or_default();
            vec![format!("`{}`", s.key), s.type_name.clone(), origin, secs]
        }),
    );
    let _ = writeln!(out, "Total time {:.2} s.", r.provenance.total_seconds);
    out
}

/// A few lines for the terminal: the headline metrics of every evaluation.
pub fn headline(r: &Results) -> String {
    let mut out = String::new();
    for (id, e) in &r.evaluations {
        for (name, value) in &e.evaluation.metrics {
            let _ = writeln!(out, "{id}: {name} = {}", number(*value));
        }
    }
    for (id, p) in &r.probes {
        for (split, acc) in &p.accuracy {
            let _ = writeln!(out, "probe {id}: {split} accuracy = {}", number(*acc));
        }
    }
    out.trim_end().to_string()
}
