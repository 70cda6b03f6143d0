//! TOML recipes: parsing, checking and compiling them into a runnable plan.
//!
//! A recipe declares components by kind and user-chosen id, each with a `type`
//! (the registered component name), its parameters, and explicit wiring:
//!
//! ```toml
//! [run]
//! seed = 42
//!
//! [source.planted]
//! type = "synthetic"
//!
//! [ranker.corr]
//! type = "correlation"
//! source = "planted"
//!
//! [evaluator.recovery]
//! type = "planted_recovery"
//! rankings = ["corr"]
//! ```
//!
//! Compiling checks everything before anything runs and reports **every**
//! problem at once, each with its TOML path, line and column. The full format
//! is documented in `docs/recipes.md`.

use std::collections::{BTreeSet, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Serialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::component::Component;
use crate::error::{Error, closest};
pub use crate::error::{RecipeErrors, RecipeProblem};
use crate::params::{ParamType, check_table};
use crate::registry::{ComponentKind, Need, Origin, Registered, Registry};

/// The `[run]` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Default)]
pub struct RunSettings {
    /// Seed of every random stream in the run.
    pub seed: u64,
    /// Worker threads; 0 means one per core.
    pub threads: usize,
    /// Output directory (resolved against the recipe's folder).
    pub out: Option<PathBuf>,
    /// A title for reports.
    pub name: Option<String>,
    /// A longer description for reports.
    pub description: Option<String>,
}

/// A compiled step: a built component with its resolved wiring.
#[derive(Debug)]
pub struct Step {
    /// Kind.
    pub kind: ComponentKind,
    /// Recipe id.
    pub id: String,
    /// Component name (`type`).
    pub type_name: String,
    /// Where the component comes from.
    pub origin: Origin,
    /// Parameters as given (paths resolved).
    pub params: toml::Table,
    /// The built component.
    pub component: Component,
    /// Id of the source it reads (empty for sources).
    pub source: String,
    /// Id of the probe it reads (rankers).
    pub probe: Option<String>,
    /// Ids of the rankings it reads (evaluators).
    pub rankings: Vec<String>,
    /// Ids of the probes it reads (evaluators).
    pub probes: Vec<String>,
}

impl Step {
    /// `ranker.corr`.
    pub fn key(&self) -> String {
        format!("{}.{}", self.kind, self.id)
    }

    /// `ranker \`corr\` (correlation, plugin ...)`, for messages.
    pub fn describe(&self) -> String {
        format!(
            "{} `{}` ({}, {})",
            self.kind, self.id, self.type_name, self.origin
        )
    }
}

/// A checked recipe, ready to run: steps in execution order.
#[derive(Debug)]
pub struct Plan {
    /// The recipe file.
    pub path: PathBuf,
    /// Its text, recorded in the results.
    pub text: String,
    /// `[run]` settings.
    pub run: RunSettings,
    /// Sources, then probes, then rankers, then evaluators, each in recipe order.
    pub steps: Vec<Step>,
}

/// Line and column (1-based) of a byte offset.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, text[line_start..offset].chars().count() + 1)
}

struct Problems<'t> {
    text: &'t str,
    list: Vec<(usize, RecipeProblem)>,
}

impl Problems<'_> {
    fn add(&mut self, at: impl Into<String>, span: Range<usize>, message: impl Into<String>) {
        let (line, column) = line_column(self.text, span.start);
        self.list.push((
            span.start,
            RecipeProblem {
                at: at.into(),
                line,
                column,
                message: message.into(),
            },
        ));
    }
}

fn lookup<'a, 'i>(
    table: &'a DeTable<'i>,
    key: &str,
) -> Option<(
    &'a Spanned<toml::de::DeString<'i>>,
    &'a Spanned<DeValue<'i>>,
)> {
    table.iter().find(|(k, _)| k.get_ref().as_ref() == key)
}

const TOP_LEVEL: [&str; 5] = ["run", "source", "probe", "ranker", "evaluator"];
const RUN_KEYS: [&str; 5] = ["seed", "threads", "out", "name", "description"];
const WIRING_KEYS: [&str; 4] = ["source", "probe", "rankings", "probes"];

struct Declared {
    kind: ComponentKind,
    id: String,
    id_span: Range<usize>,
    type_name: String,
    type_span: Range<usize>,
    params: toml::Table,
    param_spans: HashMap<String, Range<usize>>,
    wiring: HashMap<&'static str, (Vec<String>, Range<usize>)>,
}

/// Reads and compiles a recipe file.
///
/// # Errors
/// [`Error::Io`] if it cannot be read, [`Error::Recipe`] listing every problem.
pub fn compile_file(path: &Path, registry: &Registry) -> Result<Plan, Error> {
    let text = crate::io::read_utf8(path, "read recipe", "save the recipe as UTF-8")?;
    compile(path, &text, registry)
}

/// Compiles recipe text. `path` names the file in messages and anchors
/// relative paths.
///
/// Compiling is a sequence of passes, each of which adds what it finds to
/// one list of problems, so that a recipe's every problem is reported at
/// once:
///
/// 1. `parse`: TOML syntax (nothing else is checked when it fails);
/// 2. `declare`: top-level tables, `[run]`, and one declaration per
///    component table;
/// 3. `resolve_types`: each `type` names a registered component of the
///    table's kind;
/// 4. `wire`: `source`, `probe`, `rankings` and `probes` name declared
///    components of the right kind, in the numbers the component needs, and
///    every step gets its source;
/// 5. `check_parameters`: keys and types against the parameter table;
/// 6. `detect_cycles`: no ranker reads its own output;
/// 7. `build`: each component built from its parameters, which checks
///    their ranges.
///
/// # Errors
/// [`Error::Recipe`] listing every problem.
pub fn compile(path: &Path, text: &str, registry: &Registry) -> Result<Plan, Error> {
    let mut problems = Problems {
        text,
        list: Vec::new(),
    };
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let plan = parse(text, &mut problems).map(|parsed| {
        let (run, declared) = declare(&parsed, &base, &mut problems);
        let resolved = resolve_types(&declared, registry, &mut problems);
        let wired = wire(&resolved, &declared, &mut problems);
        let checked = check_parameters(wired, &base, &mut problems);
        detect_cycles(&declared, &mut problems);
        let steps = build(checked, &mut problems);
        (run, steps)
    });
    match plan {
        Some((run, steps)) if problems.list.is_empty() => Ok(Plan {
            path: path.to_path_buf(),
            text: text.to_string(),
            run,
            steps: order_steps(steps),
        }),
        _ => {
            let mut list = problems.list;
            list.sort_by_key(|(offset, _)| *offset);
            Err(Error::Recipe(RecipeErrors {
                file: path.to_path_buf(),
                problems: list.into_iter().map(|(_, p)| p).collect(),
            }))
        }
    }
}

/// A recipe read as TOML twice: with spans, for messages, and as values.
struct Parsed<'t> {
    document: Spanned<DeTable<'t>>,
    values: toml::Table,
}

/// Pass 1: the TOML syntax. `None` after a syntax error, which stops
/// compilation: nothing after it can be located reliably.
fn parse<'t>(text: &'t str, problems: &mut Problems<'_>) -> Option<Parsed<'t>> {
    let (document, syntax_errors) = DeTable::parse_recoverable(text);
    if !syntax_errors.is_empty() {
        for e in syntax_errors {
            problems.add(
                "(syntax)",
                e.span().unwrap_or(0..0),
                format!("TOML syntax error: {}", e.message().trim()),
            );
        }
        return None;
    }
    match text.parse() {
        Ok(values) => Some(Parsed { document, values }),
        Err(e) => {
            let e: toml::de::Error = e;
            problems.add(
                "(syntax)",
                e.span().unwrap_or(0..0),
                format!("TOML error: {}", e.message().trim()),
            );
            None
        }
    }
}

/// Pass 2: the top-level tables, the `[run]` settings, and a declaration
/// for every `[<kind>.<id>]` table.
fn declare(
    parsed: &Parsed<'_>,
    base: &Path,
    problems: &mut Problems<'_>,
) -> (RunSettings, Vec<Declared>) {
    let document = parsed.document.get_ref();
    for (key, _) in document.iter() {
        let name = key.get_ref().as_ref();
        if !TOP_LEVEL.contains(&name) {
            let mut message = format!("unknown top-level table `{name}`");
            if let Some(best) = closest(name, TOP_LEVEL) {
                message.push_str(&format!("; did you mean `{best}`?"));
            }
            message.push_str(" (a recipe has [run], [source.<id>], [probe.<id>], [ranker.<id>] and [evaluator.<id>] tables)");
            problems.add(name, key.span(), message);
        }
    }
    let run = parse_run(document, &parsed.values, base, problems);
    let mut declared = Vec::new();
    for kind in ComponentKind::ALL {
        let Some((kind_key, kind_value)) = lookup(document, kind.table()) else {
            continue;
        };
        let Some(entities) = kind_value.get_ref().as_table() else {
            problems.add(
                kind.table(),
                kind_key.span(),
                format!(
                    "`{0}` must be a table of ids, such as [{0}.my_id]",
                    kind.table()
                ),
            );
            continue;
        };
        let kind_values = parsed
            .values
            .get(kind.table())
            .and_then(toml::Value::as_table);
        for (id_key, entity) in entities.iter() {
            let id = id_key.get_ref().as_ref().to_string();
            let at = format!("{kind}.{id}");
            if !is_valid_id(&id) {
                problems.add(&at, id_key.span(), format!("id `{id}` must use lowercase letters, digits, `_` or `-`, starting with a letter"));
            }
            let (Some(table), Some(value_table)) = (
                entity.get_ref().as_table(),
                kind_values
                    .and_then(|t| t.get(&id))
                    .and_then(toml::Value::as_table),
            ) else {
                problems.add(
                    &at,
                    id_key.span(),
                    format!("`{at}` must be a table: write it as [{at}]"),
                );
                continue;
            };
            if let Some(d) = parse_entity(kind, id, id_key.span(), table, value_table, problems) {
                declared.push(d);
            }
        }
    }
    if declared.is_empty() && problems.list.is_empty() {
        problems.add(
            "recipe",
            0..0,
            "the recipe declares no component, so a run would do nothing; add a \
             [source.<id>] table and the rankers and evaluators that read it (`lca example \
             <type>` prints a table for any type, `lca list` names them)",
        );
    } else if !declared.is_empty() && !declared.iter().any(|d| d.kind == ComponentKind::Source) {
        problems.add(
            "source",
            0..0,
            "the recipe declares no source; add a [source.<id>] table (see `lca list source`)",
        );
    }
    (run, declared)
}

/// A declaration whose `type` names a registered component.
struct Resolved<'d, 'r> {
    declared: &'d Declared,
    registered: &'r Registered,
}

/// Pass 3: every `type` names a registered component of the table's kind.
fn resolve_types<'d, 'r>(
    declared: &'d [Declared],
    registry: &'r Registry,
    problems: &mut Problems<'_>,
) -> Vec<Resolved<'d, 'r>> {
    declared
        .iter()
        .filter_map(|d| match registry.get(d.kind, &d.type_name) {
            Ok(registered) => Some(Resolved {
                declared: d,
                registered,
            }),
            Err(e) => {
                problems.add(
                    format!("{}.{}.type", d.kind, d.id),
                    d.type_span.clone(),
                    e.to_string(),
                );
                None
            }
        })
        .collect()
}

/// A resolved declaration with its wiring checked and its source known.
struct Wired<'d, 'r> {
    resolved: Resolved<'d, 'r>,
    source: String,
    probe: Option<String>,
    rankings: Vec<String>,
    probes: Vec<String>,
    /// False when the wiring has a problem: the step is checked but not built.
    ok: bool,
}

/// Pass 4: the wiring of every step, and its source (explicit, inherited
/// from what it reads, or the only one).
fn wire<'d, 'r>(
    resolved: &[Resolved<'d, 'r>],
    declared: &[Declared],
    problems: &mut Problems<'_>,
) -> Vec<Wired<'d, 'r>> {
    let ids: HashMap<(ComponentKind, &str), &Declared> = declared
        .iter()
        .map(|d| ((d.kind, d.id.as_str()), d))
        .collect();
    let sources: Vec<&str> = declared
        .iter()
        .filter(|d| d.kind == ComponentKind::Source)
        .map(|d| d.id.as_str())
        .collect();
    let mut all = Vec::new();
    for r in resolved {
        let d = r.declared;
        let info = &r.registered.info;
        let at = format!("{}.{}", d.kind, d.id);
        let mut ok = true;
        let mut wired =
            |key: &'static str, target: ComponentKind, need: Need, many: bool| -> Vec<String> {
                let given = d.wiring.get(key);
                match (need, given) {
                    (Need::No, Some((_, span))) => {
                        problems.add(
                            format!("{at}.{key}"),
                            span.clone(),
                            format!(
                                "{} `{}` does not take `{key}`; remove it",
                                d.kind, d.type_name
                            ),
                        );
                        ok = false;
                        Vec::new()
                    }
                    (Need::Required, None) => {
                        let example = if many {
                            format!("{key} = [\"<{target} id>\"]")
                        } else {
                            format!("{key} = \"<{target} id>\"")
                        };
                        problems.add(
                            &at,
                            d.id_span.clone(),
                            format!("{} `{}` needs `{example}`", d.kind, d.type_name),
                        );
                        ok = false;
                        Vec::new()
                    }
                    (_, Some((targets, span))) => {
                        for t in targets {
                            if !ids.contains_key(&(target, t.as_str())) {
                                problems.add(
                                    format!("{at}.{key}"),
                                    span.clone(),
                                    missing_target(t, target, declared),
                                );
                                ok = false;
                            }
                        }
                        targets.clone()
                    }
                    (_, None) => Vec::new(),
                }
            };
        let (probe, rankings, probes) = match d.kind {
            ComponentKind::Source | ComponentKind::Probe => (None, Vec::new(), Vec::new()),
            ComponentKind::Ranker => (
                wired("probe", ComponentKind::Probe, info.inputs.probe, false)
                    .into_iter()
                    .next(),
                wired(
                    "rankings",
                    ComponentKind::Ranker,
                    info.inputs.rankings,
                    true,
                ),
                Vec::new(),
            ),
            ComponentKind::Evaluator => (
                None,
                wired(
                    "rankings",
                    ComponentKind::Ranker,
                    info.inputs.rankings,
                    true,
                ),
                wired("probes", ComponentKind::Probe, info.inputs.probes, true),
            ),
        };
        if matches!(d.kind, ComponentKind::Ranker | ComponentKind::Evaluator)
            && rankings.len() < info.inputs.min_rankings as usize
            && ok
        {
            let span = d
                .wiring
                .get("rankings")
                .map_or(d.id_span.clone(), |(_, s)| s.clone());
            problems.add(format!("{at}.rankings"), span, format!(
                "evaluator `{}` compares rankings and needs at least {} in `rankings`, found {}",
                d.type_name, info.inputs.min_rankings, rankings.len()
            ));
            ok = false;
        }
        let source = if d.kind == ComponentKind::Source {
            String::new()
        } else {
            match resolve_source(d, &probe, &rankings, &probes, &ids, &sources) {
                Ok(s) => s,
                Err((span, message)) => {
                    problems.add(
                        format!("{at}.source"),
                        span.unwrap_or(d.id_span.clone()),
                        message,
                    );
                    ok = false;
                    String::new()
                }
            }
        };
        all.push(Wired {
            resolved: Resolved {
                declared: d,
                registered: r.registered,
            },
            source,
            probe,
            rankings,
            probes,
            ok,
        });
    }
    all
}

/// A wired step with the parameters it will be built from.
struct Checked<'d, 'r> {
    wired: Wired<'d, 'r>,
    /// Paths resolved against the recipe's folder; keys with a problem
    /// removed, so that the build reports the other parameters' ranges.
    params: toml::Table,
    /// Keys or types had a problem: the step is built only to find more.
    flawed: bool,
}

/// Pass 5: every parameter's key and type against the component's table.
/// Steps with bad wiring or a missing required parameter go no further.
fn check_parameters<'d, 'r>(
    wired: Vec<Wired<'d, 'r>>,
    base: &Path,
    problems: &mut Problems<'_>,
) -> Vec<Checked<'d, 'r>> {
    let mut checked = Vec::new();
    for w in wired {
        let d = w.resolved.declared;
        let info = &w.resolved.registered.info;
        let param_problems = check_table(&info.params, &d.params);
        for p in &param_problems {
            let span = d
                .param_spans
                .get(&p.param)
                .cloned()
                .unwrap_or(d.id_span.clone());
            problems.add(
                format!("{}.{}.{}", d.kind, d.id, p.param),
                span,
                p.message.clone(),
            );
        }
        let missing_required = param_problems
            .iter()
            .any(|p| !d.params.contains_key(&p.param));
        if !w.ok || missing_required {
            continue;
        }
        let mut params = resolve_paths(&d.params, &info.params, base);
        for p in &param_problems {
            params.remove(&p.param);
        }
        checked.push(Checked {
            wired: w,
            params,
            flawed: !param_problems.is_empty(),
        });
    }
    checked
}

/// Pass 6: rankers that read other rankings must not read themselves.
fn detect_cycles(declared: &[Declared], problems: &mut Problems<'_>) {
    for (id, span, cycle) in ranking_cycles(declared) {
        problems.add(
            format!("ranker.{id}.rankings"),
            span,
            format!(
                "rankers {} read each other in a cycle; a ranker cannot depend on its own output",
                cycle.join(" → ")
            ),
        );
    }
}

/// Pass 7: every checked step built from its parameters; a parameter out
/// of range is reported at its line.
fn build(checked: Vec<Checked<'_, '_>>, problems: &mut Problems<'_>) -> Vec<Step> {
    let mut steps = Vec::new();
    for c in checked {
        let w = c.wired;
        let (d, registered) = (w.resolved.declared, w.resolved.registered);
        match registered.build(&c.params) {
            Ok(_) if c.flawed => {}
            Ok(component) => steps.push(Step {
                kind: d.kind,
                id: d.id.clone(),
                type_name: d.type_name.clone(),
                origin: registered.origin.clone(),
                params: c.params,
                component,
                source: w.source,
                probe: w.probe,
                rankings: w.rankings,
                probes: w.probes,
            }),
            Err(e) => {
                let at = format!("{}.{}", d.kind, d.id);
                let (key, span) = match e.root() {
                    Error::InvalidParam { param, .. } if d.param_spans.contains_key(param) => {
                        (format!("{at}.{param}"), d.param_spans[param].clone())
                    }
                    _ => (at, d.id_span.clone()),
                };
                problems.add(key, span, e.to_string());
            }
        }
    }
    steps
}

/// Cycles among rankers that read other rankings: `(id, span of its
/// rankings key, the cycle as ids)`, each cycle reported once.
fn ranking_cycles(declared: &[Declared]) -> Vec<(String, Range<usize>, Vec<String>)> {
    let rankers: HashMap<&str, &Declared> = declared
        .iter()
        .filter(|d| d.kind == ComponentKind::Ranker)
        .map(|d| (d.id.as_str(), d))
        .collect();
    let reads = |d: &Declared| -> Vec<String> {
        d.wiring
            .get("rankings")
            .map(|(t, _)| {
                t.iter()
                    .filter(|t| rankers.contains_key(t.as_str()))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut reported: BTreeSet<Vec<String>> = BTreeSet::new();
    let mut found = Vec::new();
    for start in declared.iter().filter(|d| d.kind == ComponentKind::Ranker) {
        // Depth-first search for a path back to `start`.
        let mut stack = vec![(start.id.clone(), vec![start.id.clone()])];
        let mut visited = BTreeSet::new();
        while let Some((node, path)) = stack.pop() {
            for next in reads(rankers[node.as_str()]) {
                if next == start.id {
                    let mut key = path.clone();
                    key.sort();
                    if reported.insert(key) {
                        let mut cycle = path.clone();
                        cycle.push(start.id.clone());
                        let span = start.wiring["rankings"].1.clone();
                        found.push((start.id.clone(), span, cycle));
                    }
                } else if visited.insert(next.clone()) {
                    let mut longer = path.clone();
                    longer.push(next.clone());
                    stack.push((next, longer));
                }
            }
        }
    }
    found
}

/// Steps in execution order: sources, probes, rankers (each after the
/// rankers it reads), evaluators; recipe order otherwise.
fn order_steps(steps: Vec<Step>) -> Vec<Step> {
    let (mut rankers, others): (Vec<Step>, Vec<Step>) = steps
        .into_iter()
        .partition(|s| s.kind == ComponentKind::Ranker);
    let mut ordered = Vec::new();
    let (before, after): (Vec<Step>, Vec<Step>) = others
        .into_iter()
        .partition(|s| s.kind < ComponentKind::Ranker);
    ordered.extend(before);
    let mut done: BTreeSet<String> = BTreeSet::new();
    while !rankers.is_empty() {
        // Cycles were rejected, so some ranker is always ready.
        let ready = rankers
            .iter()
            .position(|s| {
                s.rankings
                    .iter()
                    .all(|r| done.contains(r) || !rankers.iter().any(|o| &o.id == r))
            })
            .unwrap_or(0);
        let step = rankers.remove(ready);
        done.insert(step.id.clone());
        ordered.push(step);
    }
    ordered.extend(after);
    ordered
}

fn parse_run(
    document: &DeTable<'_>,
    values: &toml::Table,
    base: &Path,
    problems: &mut Problems<'_>,
) -> RunSettings {
    let mut run = RunSettings::default();
    let Some((run_key, run_de)) = lookup(document, "run") else {
        return run;
    };
    let (Some(run_de), Some(run_values)) = (
        run_de.get_ref().as_table(),
        values.get("run").and_then(toml::Value::as_table),
    ) else {
        problems.add(
            "run",
            run_key.span(),
            "`run` must be a table: write it as [run]",
        );
        return run;
    };
    for (key, value) in run_de.iter() {
        let name = key.get_ref().as_ref();
        let at = format!("run.{name}");
        let v = &run_values[name];
        match name {
            "seed" => match v.as_integer() {
                Some(s) if s >= 0 => run.seed = s as u64,
                _ => problems.add(
                    at,
                    value.span(),
                    format!(
                        "`seed` must be an integer from 0 to {}, found `{}`",
                        i64::MAX,
                        crate::params::short_toml(v)
                    ),
                ),
            },
            "threads" => match v.as_integer() {
                Some(t) if (0..=crate::context::MAX_THREADS as i64).contains(&t) => {
                    run.threads = t as usize;
                }
                _ => problems.add(
                    at,
                    value.span(),
                    format!(
                        "`threads` must be an integer from 0 (one per core) to 4096, found `{}`",
                        crate::params::short_toml(v)
                    ),
                ),
            },
            "out" | "name" | "description" => match v.as_str() {
                Some(s) if name == "out" => run.out = Some(normalize(&base.join(s))),
                Some(s) if name == "name" => run.name = Some(s.to_string()),
                Some(s) => run.description = Some(s.to_string()),
                None => problems.add(
                    at,
                    value.span(),
                    format!("`{name}` must be a string, found {}", v.type_str()),
                ),
            },
            other => {
                let mut message = format!("unknown key `{other}` in [run]");
                if let Some(best) = closest(other, RUN_KEYS) {
                    message.push_str(&format!("; did you mean `{best}`?"));
                }
                message.push_str(&format!(" (known: {})", RUN_KEYS.join(", ")));
                problems.add(at, key.span(), message);
            }
        }
    }
    run
}

fn parse_entity(
    kind: ComponentKind,
    id: String,
    id_span: Range<usize>,
    table: &DeTable<'_>,
    values: &toml::Table,
    problems: &mut Problems<'_>,
) -> Option<Declared> {
    let at = format!("{kind}.{id}");
    let (type_name, type_span) = match lookup(table, "type") {
        Some((_, v)) => match v.get_ref().as_str() {
            Some(s) => (s.to_string(), v.span()),
            None => {
                problems.add(
                    format!("{at}.type"),
                    v.span(),
                    format!("`type` must be a string naming a {kind} (see `lca list {kind}`)"),
                );
                return None;
            }
        },
        None => {
            problems.add(
                &at,
                id_span,
                format!(
                    "[{at}] has no `type`; add `type = \"<{kind} name>\"` (see `lca list {kind}`)"
                ),
            );
            return None;
        }
    };
    let mut params = toml::Table::new();
    let mut param_spans = HashMap::new();
    let mut wiring = HashMap::new();
    for (key, value) in table.iter() {
        let name = key.get_ref().as_ref();
        if name == "type" {
            continue;
        }
        if let Some(&wiring_key) = WIRING_KEYS.iter().find(|k| **k == name) {
            if kind == ComponentKind::Source {
                problems.add(
                    format!("{at}.{name}"),
                    key.span(),
                    format!("a source does not read other components; remove `{name}`"),
                );
                continue;
            }
            let v = &values[name];
            let many = matches!(wiring_key, "rankings" | "probes");
            let targets = match (many, v) {
                (false, toml::Value::String(s)) => Some(vec![s.clone()]),
                (true, toml::Value::Array(a)) => {
                    a.iter().map(|x| x.as_str().map(String::from)).collect()
                }
                _ => None,
            };
            match targets {
                Some(t) => {
                    wiring.insert(wiring_key, (t, value.span()));
                }
                None => {
                    let expected = if many {
                        "a list of ids, such as [\"a\", \"b\"]"
                    } else {
                        "an id string"
                    };
                    problems.add(
                        format!("{at}.{name}"),
                        value.span(),
                        format!("`{name}` must be {expected}"),
                    );
                }
            }
            continue;
        }
        params.insert(name.to_string(), values[name].clone());
        param_spans.insert(name.to_string(), key.span());
    }
    Some(Declared {
        kind,
        id,
        id_span,
        type_name,
        type_span,
        params,
        param_spans,
        wiring,
    })
}

fn missing_target(target_id: &str, kind: ComponentKind, declared: &[Declared]) -> String {
    if let Some(other) = declared.iter().find(|d| d.id == target_id) {
        return format!(
            "`{target_id}` is a {}, but this must name a {kind} ([{kind}.<id>])",
            other.kind
        );
    }
    let same_kind: Vec<&str> = declared
        .iter()
        .filter(|d| d.kind == kind)
        .map(|d| d.id.as_str())
        .collect();
    let mut message = format!("no {kind} has the id `{target_id}`");
    if let Some(best) = closest(target_id, same_kind.iter().copied()) {
        message.push_str(&format!("; did you mean `{best}`?"));
    }
    if same_kind.is_empty() {
        message.push_str(&format!(" (the recipe declares no {kind})"));
    } else {
        message.push_str(&format!(" (declared: {})", same_kind.join(", ")));
    }
    message
}

type SourceError = (Option<Range<usize>>, String);

fn resolve_source(
    d: &Declared,
    probe: &Option<String>,
    rankings: &[String],
    probes: &[String],
    ids: &HashMap<(ComponentKind, &str), &Declared>,
    sources: &[&str],
) -> Result<String, SourceError> {
    // Sources of what this step reads, as far as they are known.
    let mut inherited = BTreeSet::new();
    let upstream = probe
        .iter()
        .map(|p| (ComponentKind::Probe, p))
        .chain(rankings.iter().map(|r| (ComponentKind::Ranker, r)))
        .chain(probes.iter().map(|p| (ComponentKind::Probe, p)));
    for (kind, id) in upstream {
        if let Some(up) = ids.get(&(kind, id.as_str()))
            && let Some(s) = explicit_source(up, ids, sources)
        {
            inherited.insert(s);
        }
    }
    match d.wiring.get("source") {
        Some((targets, span)) => {
            let s = &targets[0];
            if !sources.contains(&s.as_str()) {
                let mut message = format!("no source has the id `{s}`");
                if let Some(best) = closest(s, sources.iter().copied()) {
                    message.push_str(&format!("; did you mean `{best}`?"));
                }
                return Err((Some(span.clone()), message));
            }
            if let Some(other) = inherited.iter().find(|x| *x != s) {
                return Err((
                    Some(span.clone()),
                    format!(
                        "reads source `{s}`, but a component it is wired to reads source `{other}`; wire components of the same source together"
                    ),
                ));
            }
            Ok(s.clone())
        }
        None if inherited.len() == 1 => Ok(inherited.into_iter().next().expect("one element")),
        None if inherited.len() > 1 => Err((
            None,
            format!(
                "the components it reads use different sources ({}); wire components of the same source together",
                inherited.into_iter().collect::<Vec<_>>().join(", ")
            ),
        )),
        None if sources.len() == 1 => Ok(sources[0].to_string()),
        // A recipe without sources is reported once, by `declare`.
        None if sources.is_empty() => Ok(String::new()),
        None => Err((
            None,
            format!(
                "set `source = \"<id>\"`: the recipe declares {} sources ({}), so which one to read is ambiguous",
                sources.len(),
                sources.join(", ")
            ),
        )),
    }
}

/// The source a declared probe or ranker reads, following its wiring.
fn explicit_source(
    d: &Declared,
    ids: &HashMap<(ComponentKind, &str), &Declared>,
    sources: &[&str],
) -> Option<String> {
    if let Some((targets, _)) = d.wiring.get("source") {
        return targets.first().cloned();
    }
    if let Some((targets, _)) = d.wiring.get("probe")
        && let Some(p) = ids.get(&(ComponentKind::Probe, targets[0].as_str()))
    {
        return explicit_source(p, ids, sources);
    }
    (sources.len() == 1).then(|| sources[0].to_string())
}

fn is_valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Removes `.` and resolvable `..` components without touching the file
/// system, so messages show `runs/x` rather than `examples/../runs/x`.
pub fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out: Vec<Component<'_>> = Vec::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.last(), Some(Component::Normal(_))) => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    if out.is_empty() {
        PathBuf::from(".")
    } else {
        out.iter().collect()
    }
}

/// Resolves `path` parameters against the recipe's folder.
fn resolve_paths(
    params: &toml::Table,
    docs: &[crate::params::ParamDoc],
    base: &Path,
) -> toml::Table {
    let mut resolved = params.clone();
    for doc in docs.iter().filter(|d| d.ty == ParamType::Path) {
        if let Some(toml::Value::String(p)) = resolved.get_mut(&doc.name) {
            let joined = normalize(&base.join(&*p));
            *p = joined.to_string_lossy().into_owned();
        }
    }
    resolved
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::Params as _;
    use crate::registry::{ComponentInfo, Descriptor, Inputs, applied};

    crate::params! {
        /// Parameters of the fixture components.
        struct Size {
            /// how big
            size: usize = 3 => range(1..=10),
        }
    }

    /// A source and a ranker that are only ever compiled, never run.
    #[derive(Debug)]
    struct Inert;

    impl crate::ActivationSource for Inert {
        fn load(&self, _: &crate::RunContext) -> crate::Result<crate::Dataset<'static>> {
            Err(Error::input("never loaded"))
        }
    }

    impl crate::Ranker for Inert {
        fn rank(
            &self,
            _: &crate::RankInput<'_>,
            _: &crate::RunContext,
        ) -> crate::Result<crate::NeuronRanking> {
            Err(Error::input("never run"))
        }
    }

    fn registry() -> Registry {
        let mut registry = Registry::new();
        let info = |kind, name: &str, inputs| ComponentInfo {
            kind,
            name: name.into(),
            summary: "fixture".into(),
            params: Size::docs(),
            example: String::new(),
            inputs,
        };
        let descriptors = [
            Descriptor {
                info: info(ComponentKind::Source, "made", Inputs::default()),
                build: |t| {
                    Size::parse("made", t)?;
                    Ok(Component::Source(Box::new(Inert)))
                },
                applied: applied::<Size>,
            },
            Descriptor {
                info: info(
                    ComponentKind::Ranker,
                    "chain",
                    Inputs {
                        rankings: Need::Optional,
                        ..Inputs::default()
                    },
                ),
                build: |t| {
                    Size::parse("chain", t)?;
                    Ok(Component::Ranker(Box::new(Inert)))
                },
                applied: applied::<Size>,
            },
        ];
        for d in descriptors {
            registry.register_native(d, Origin::builtin()).unwrap();
        }
        registry
    }

    fn problems_of(text: &str) -> Vec<String> {
        let mut problems = Problems {
            text,
            list: Vec::new(),
        };
        let registry = registry();
        if let Some(parsed) = parse(text, &mut problems) {
            let (_, declared) = declare(&parsed, Path::new("."), &mut problems);
            let resolved = resolve_types(&declared, &registry, &mut problems);
            let wired = wire(&resolved, &declared, &mut problems);
            let checked = check_parameters(wired, Path::new("."), &mut problems);
            detect_cycles(&declared, &mut problems);
            build(checked, &mut problems);
        }
        let mut list = problems.list;
        list.sort_by_key(|(offset, _)| *offset);
        list.into_iter()
            .map(|(_, p)| format!("{}:{} {} {}", p.line, p.column, p.at, p.message))
            .collect()
    }

    #[test]
    fn parse_stops_at_a_syntax_error() {
        let mut problems = Problems {
            text: "[source.s\ntype = 1",
            list: Vec::new(),
        };
        assert!(parse(problems.text, &mut problems).is_none());
        assert_eq!(problems.list[0].1.at, "(syntax)");
        assert_eq!(problems.list[0].1.line, 1);
    }

    #[test]
    fn declare_checks_tables_ids_and_that_a_source_exists() {
        let p = problems_of("[sauce.s]\ntype = \"made\"\n[ranker.Bad]\ntype = \"chain\"\n");
        assert!(
            p.iter().any(|m| m
                .starts_with("1:2 sauce unknown top-level table `sauce`; did you mean `source`?")),
            "{p:?}"
        );
        assert_eq!(
            p.len(),
            3,
            "nothing about sources beyond their absence: {p:?}"
        );
        assert!(
            p.iter()
                .any(|m| m.contains("id `Bad` must use lowercase letters")),
            "{p:?}"
        );
        assert!(p.iter().any(|m| m.contains("declares no source")), "{p:?}");
    }

    #[test]
    fn an_empty_recipe_is_an_error() {
        for text in ["", "# nothing yet\n", "[run]\nseed = 3\n"] {
            let p = problems_of(text);
            assert_eq!(p.len(), 1, "{text:?}: {p:?}");
            assert!(p[0].contains("declares no component"), "{p:?}");
        }
    }

    #[test]
    fn resolve_types_names_the_kind_and_where_plugins_are_found() {
        let p = problems_of("[source.s]\ntype = \"made\"\n[ranker.r]\ntype = \"variance\"\n");
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("4:8 ranker.r.type unknown ranker type `variance`"),
            "{p:?}"
        );
        assert!(
            p[0].contains("--plugin-dir") && p[0].contains("LCA_PLUGIN_PATH"),
            "{p:?}"
        );
    }

    #[test]
    fn wire_checks_targets_and_finds_sources() {
        let p = problems_of(
            "[source.s]\ntype = \"made\"\n[ranker.r]\ntype = \"chain\"\nrankings = [\"nope\"]\n",
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].contains("ranker.r.rankings no ranker has the id `nope`"),
            "{p:?}"
        );
        let p = problems_of(
            "[source.a]\ntype = \"made\"\n[source.b]\ntype = \"made\"\n[ranker.r]\ntype = \"chain\"\n",
        );
        assert!(p[0].contains("declares 2 sources (a, b)"), "{p:?}");
        let plan = compile(
            Path::new("r.toml"),
            "[source.a]\ntype = \"made\"\n[source.b]\ntype = \"made\"\n[ranker.r]\ntype = \"chain\"\nsource = \"b\"\n[ranker.s]\ntype = \"chain\"\nrankings = [\"r\"]\n",
            &registry(),
        )
        .unwrap();
        // `s` reads `r`, so it inherits `r`'s source.
        assert_eq!(plan.steps.iter().find(|s| s.id == "s").unwrap().source, "b");
    }

    #[test]
    fn check_parameters_and_build_report_keys_types_and_ranges_together() {
        let p = problems_of(
            "[source.s]\ntype = \"made\"\nsize = 11\n[ranker.r]\ntype = \"chain\"\nsise = 2\n",
        );
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p[0].starts_with("3:1 source.s.size made: parameter `size` = 11 is not allowed"),
            "{p:?}"
        );
        assert!(
            p[1].starts_with("6:1 ranker.r.sise unknown parameter `sise`; did you mean `size`?"),
            "{p:?}"
        );
    }

    #[test]
    fn detect_cycles_reports_each_cycle_once() {
        let p = problems_of(
            "[source.s]\ntype = \"made\"\n[ranker.a]\ntype = \"chain\"\nrankings = [\"b\"]\n[ranker.b]\ntype = \"chain\"\nrankings = [\"a\"]\n",
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].contains("rankers a → b → a read each other in a cycle"),
            "{p:?}"
        );
    }

    #[test]
    fn normalize_resolves_dots_lexically() {
        assert_eq!(
            normalize(Path::new("examples/recipes/../../runs/x")),
            PathBuf::from("runs/x")
        );
        assert_eq!(normalize(Path::new("../a/./b")), PathBuf::from("../a/b"));
        assert_eq!(normalize(Path::new("a/..")), PathBuf::from("."));
        assert_eq!(normalize(Path::new("/x/../y")), PathBuf::from("/y"));
    }

    #[test]
    fn line_column_counts_characters() {
        assert_eq!(line_column("ab\ncdé\nx", 7), (2, 4));
        assert_eq!(line_column("ab", 0), (1, 1));
    }
}
