//! The subcommands.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use lca_core::checkpoint::Checkpoints;
use lca_core::recipe::{self, Plan};
use lca_core::registry::{ComponentKind, Registered};
use lca_core::run::{self, Results};
use lca_core::{RunContext, io};

use crate::cli::{Args, Command, RunArgs};
use crate::progress::Progress;
use crate::stop::StopSignal;
use lca_cli::outputs::{OUTPUTS, write_outputs};
use lca_cli::plugins::{self, Components};
use lca_cli::{html, report};

pub(crate) fn dispatch(args: Args) -> Result<()> {
    match args.command {
        Command::Report { results, out } => report_command(&results, out.as_deref()),
        Command::Store { command } => crate::store::dispatch(command, || {
            let components = plugins::load(&args.plugins.sources())?;
            components.print_warnings();
            Ok(components.registry)
        }),
        command => {
            let components = plugins::load(&args.plugins.sources())?;
            match command {
                Command::Run(run) => run_command(&components, &run),
                Command::Validate { recipe } => validate_command(&components, &recipe),
                Command::List { kind, json } => list_command(&components, kind.as_deref(), json),
                Command::Example { name } => example_command(&components, &name),
                Command::Report { .. } | Command::Store { .. } => unreachable!("handled above"),
            }
        }
    }
}

fn compile(components: &Components, path: &Path) -> Result<Plan> {
    components.print_warnings();
    Ok(recipe::compile_file(path, &components.registry)?)
}

fn run_command(components: &Components, args: &RunArgs) -> Result<()> {
    let plan = compile(components, &args.recipe)?;
    let out = match (&args.out, &plan.run.out) {
        (Some(out), _) => out.clone(),
        (None, Some(out)) => out.clone(),
        (None, None) => PathBuf::from("runs").join(recipe_stem(&args.recipe)),
    };
    // Fail before any work if the results cannot be written.
    io::ensure_writable_dir(&out)
        .context("the output directory is not usable; choose another with --out")?;

    if let Some(t) = args.timeout
        && !(t.is_finite() && t > 0.0)
    {
        anyhow::bail!("--timeout {t} is not a number of seconds above 0");
    }
    let seed = args.seed.unwrap_or(plan.run.seed);
    let threads = args.threads.unwrap_or(plan.run.threads);
    let stop = StopSignal::install(args.timeout);
    let progress = Progress::new(plan.steps.len(), args.quiet).with_stop(stop.clone());
    let cx = RunContext::new(seed, threads).with_progress(progress.task_sink());
    if !args.quiet {
        eprintln!(
            "running {} ({} steps, seed {seed}, {} threads)",
            args.recipe.display(),
            plan.steps.len(),
            cx.threads()
        );
    }
    let checkpoints = Checkpoints::new(out.join(CHECKPOINT_DIR), args.resume);
    let stored = checkpoints.stored();
    if !args.quiet && !args.resume && !stored.is_empty() {
        eprintln!(
            "note: an earlier run into {} kept {} finished step(s); this run does them again \
             (`lca run --resume` would reuse those that still match)",
            out.display(),
            stored.len()
        );
    }
    let started = std::time::SystemTime::now();
    let mut progress = progress;
    let results = run::execute_with(&plan, &cx, &mut progress, Some(&checkpoints));
    stop.done();
    progress.finish();
    let written = anyhow::Ok(results?).and_then(|results| {
        if let Some(stopped) = &results.stopped {
            // Keep what finished, under a name that cannot pass for a whole run.
            let partial = out.join("results.partial.json");
            let json = serde_json::to_vec_pretty(&results).context("serialising the results")?;
            io::write_atomic(&partial, &json)?;
            eprintln!(
                "error: {} before step `{}`; finished: {}; cut: {}. What finished is in {} (results.json and the reports were not written): rerun with --resume to reuse it and complete the run{}",
                stopped.reason,
                stopped.cut.first().map(String::as_str).unwrap_or("?"),
                if stopped.finished.is_empty() {
                    "nothing".to_string()
                } else {
                    stopped.finished.join(", ")
                },
                stopped.cut.join(", "),
                partial.display(),
                if args.timeout.is_some() {
                    " with a longer --timeout"
                } else {
                    ""
                }
            );
            std::process::exit(stop.status());
        }
        let paths = write_outputs(&results, &out)?;
        Ok((results, paths))
    });
    let (results, [results_path, report_path, html_path]) = match written {
        Ok(done) => done,
        Err(e) => bail!(explain_failed_run(&e, &out, &checkpoints, started)),
    };
    // A complete run supersedes what an earlier stopped one kept.
    let _ = std::fs::remove_file(out.join("results.partial.json"));
    checkpoints.prune(&plan.steps.iter().map(|s| s.key()).collect::<Vec<_>>());
    if !args.quiet && !results.provenance.reused.is_empty() {
        eprintln!(
            "reused {} of {} steps from the earlier run: {}",
            results.provenance.reused.len(),
            plan.steps.len(),
            results.provenance.reused.join(", ")
        );
    }

    println!("{}", report::headline(&results));
    println!(
        "wrote {}, {} and {}",
        results_path.display(),
        report_path.display(),
        html_path.display()
    );
    Ok(())
}

/// The error of a run that failed after it started, with what the user
/// needs next: on a full disk, that finished steps can be reused with
/// `--resume`; always, that the results and reports already in the folder
/// (if any) are an earlier run's and not this one's.
fn explain_failed_run(
    e: &anyhow::Error,
    out: &Path,
    checkpoints: &Checkpoints,
    started: std::time::SystemTime,
) -> String {
    let mut message = lca_cli::paragraph(e);
    let disk_full = e
        .chain()
        .filter_map(|c| c.downcast_ref::<lca_core::Error>())
        .any(lca_core::Error::is_disk_full);
    if disk_full {
        let kept = checkpoints.stored().len();
        if kept > 0 {
            let _ = write!(
                message,
                ". Checkpoints of {kept} finished step(s) are in {}: once there is space, rerun \
                 the same command with --resume to reuse those that still match instead of \
                 computing them again",
                out.join(CHECKPOINT_DIR).display()
            );
        } else {
            message.push_str(". Nothing was kept; rerun once there is space");
        }
    }
    let stale: Vec<&str> = OUTPUTS
        .into_iter()
        .filter(|name| {
            std::fs::metadata(out.join(name))
                .and_then(|m| m.modified())
                .is_ok_and(|modified| modified < started)
        })
        .collect();
    if !stale.is_empty() {
        let _ = write!(
            message,
            ". Note: {} in {} {} from an earlier run, not from this one",
            stale.join(", "),
            out.display(),
            if stale.len() == 1 { "is" } else { "are" }
        );
    }
    message
}

/// Where a run keeps its checkpoints, inside its output directory.
const CHECKPOINT_DIR: &str = ".lca-checkpoint";

fn recipe_stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "run".into())
}

fn validate_command(components: &Components, path: &Path) -> Result<()> {
    let plan = compile(components, path)?;
    let mut counts = [0usize; 4];
    for step in &plan.steps {
        counts[ComponentKind::ALL
            .iter()
            .position(|k| *k == step.kind)
            .expect("known kind")] += 1;
    }
    println!(
        "{} is valid: {} source(s), {} probe(s), {} ranker(s), {} evaluator(s)",
        path.display(),
        counts[0],
        counts[1],
        counts[2],
        counts[3]
    );
    Ok(())
}

fn list_command(components: &Components, kind: Option<&str>, json: bool) -> Result<()> {
    components.print_warnings();
    let kinds: Vec<ComponentKind> = match kind {
        None => ComponentKind::ALL.to_vec(),
        Some(k) => match ComponentKind::parse(k) {
            Some(kind) => vec![kind],
            None => bail!("unknown component kind `{k}`; use source, probe, ranker or evaluator"),
        },
    };
    let entries: Vec<&Registered> = components
        .registry
        .iter()
        .filter(|r| kinds.contains(&r.info.kind))
        .collect();
    if json {
        let list: Vec<_> = entries
            .iter()
            .map(|r| serde_json::json!({ "kind": r.info.kind, "name": r.info.name, "summary": r.info.summary, "origin": r.origin }))
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    let mut text = String::new();
    for kind in kinds {
        let of_kind: Vec<&&Registered> = entries.iter().filter(|r| r.info.kind == kind).collect();
        writeln!(text, "{}S", kind.table().to_uppercase())?;
        if of_kind.is_empty() {
            writeln!(
                text,
                "  (none: plugins provide them; see `lca list` after building the plugins)"
            )?;
        }
        let width = of_kind.iter().map(|r| r.info.name.len()).max().unwrap_or(0);
        let origin_width = of_kind
            .iter()
            .map(|r| short_origin(r).len())
            .max()
            .unwrap_or(0);
        for r in of_kind {
            writeln!(
                text,
                "  {:<width$}  {:<origin_width$}  {}",
                r.info.name,
                short_origin(r),
                r.info.summary
            )?;
        }
        writeln!(text)?;
    }
    if components.plugins.is_empty() {
        writeln!(
            text,
            "No plugins loaded. Build them with `cargo build --release` or point --plugin-dir at them."
        )?;
    } else {
        writeln!(text, "PLUGINS")?;
        for p in &components.plugins {
            writeln!(text, "  {} {}  {}", p.name, p.version, p.file.display())?;
        }
    }
    print!("{text}");
    Ok(())
}

fn short_origin(r: &Registered) -> String {
    match &r.origin {
        lca_core::Origin::Builtin { .. } => "built-in".into(),
        lca_core::Origin::Plugin {
            plugin, version, ..
        } => format!("{plugin} {version}"),
    }
}

fn example_command(components: &Components, name: &str) -> Result<()> {
    let Some(r) = components.registry.find(name) else {
        let all: Vec<&str> = components
            .registry
            .iter()
            .map(|r| r.info.name.as_str())
            .collect();
        let mut message = format!("no component is named `{name}`");
        if let Some(best) = lca_core::error::closest(name, all.iter().copied()) {
            message.push_str(&format!("; did you mean `{best}`?"));
        }
        message.push_str(" Run `lca list` to see every component.");
        bail!(message);
    };
    let info = &r.info;
    let mut text = String::new();
    writeln!(text, "# {} ({}, {})", info.name, info.kind, r.origin)?;
    writeln!(text, "# {}", info.summary)?;
    writeln!(text, "#")?;
    if info.params.is_empty() {
        writeln!(text, "# Parameters: none")?;
    } else {
        writeln!(text, "# Parameters:")?;
        let rows: Vec<[String; 5]> = info
            .params
            .iter()
            .map(|p| {
                [
                    p.name.clone(),
                    p.ty.to_string(),
                    p.default.clone(),
                    p.range.clone(),
                    p.summary.clone(),
                ]
            })
            .collect();
        let header = ["name", "type", "default", "allowed", "meaning"].map(String::from);
        let widths: Vec<usize> = (0..4)
            .map(|i| {
                rows.iter()
                    .chain(std::iter::once(&header))
                    .map(|r| r[i].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for row in std::iter::once(&header).chain(&rows) {
            let mut line = String::from("#   ");
            for (i, cell) in row.iter().enumerate().take(4) {
                line.push_str(&format!(
                    "{cell}{}  ",
                    " ".repeat(widths[i] - cell.chars().count())
                ));
            }
            line.push_str(&row[4]);
            writeln!(text, "{}", line.trim_end())?;
        }
    }
    let wiring = wiring_help(info);
    if !wiring.is_empty() {
        writeln!(text, "#")?;
        writeln!(text, "# Wiring: {wiring}")?;
    }
    writeln!(text)?;
    text.push_str(&info.example);
    print!("{text}");
    Ok(())
}

fn wiring_help(info: &lca_core::ComponentInfo) -> String {
    use lca_core::registry::Need;
    let mut parts = Vec::new();
    if info.kind != ComponentKind::Source {
        parts.push("`source` (optional when the recipe has one source)".to_string());
    }
    let need = |n: Need| match n {
        Need::Required => Some("required"),
        Need::Optional => Some("optional"),
        Need::No => None,
    };
    if let Some(n) = need(info.inputs.probe) {
        parts.push(format!("`probe` ({n})"));
    }
    if let Some(n) = need(info.inputs.rankings) {
        let min = if info.inputs.min_rankings > 1 {
            format!(", at least {}", info.inputs.min_rankings)
        } else {
            String::new()
        };
        parts.push(format!("`rankings` ({n}{min})"));
    }
    if let Some(n) = need(info.inputs.probes) {
        parts.push(format!("`probes` ({n})"));
    }
    parts.join(", ")
}

fn report_command(results_path: &Path, out: Option<&Path>) -> Result<()> {
    let text = std::fs::read_to_string(results_path)
        .with_context(|| format!("reading {}", results_path.display()))?;
    let results: Results = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not an lca results file (expected the results.json written by `lca run`)",
            results_path.display()
        )
    })?;
    let dir = match out {
        Some(dir) => dir.to_path_buf(),
        None => results_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
    };
    io::ensure_writable_dir(&dir)?;
    let path = dir.join("report.md");
    let html_path = dir.join("report.html");
    io::write_atomic(&path, report::markdown(&results).as_bytes())?;
    io::write_atomic(&html_path, html::html(&results).as_bytes())?;
    println!("wrote {} and {}", path.display(), html_path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk_full(path: &Path) -> anyhow::Error {
        lca_core::Error::io("write", path, std::io::ErrorKind::StorageFull.into()).into()
    }

    #[test]
    fn a_failed_run_points_to_resume_and_to_stale_outputs() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        for name in OUTPUTS {
            std::fs::write(out.join(name), "earlier").unwrap();
        }
        let checkpoints = Checkpoints::new(out.join(CHECKPOINT_DIR), false);
        checkpoints.save("ranker.r", "f", &1u32, None).unwrap();
        let started = std::time::SystemTime::now() + std::time::Duration::from_secs(1);

        let message = explain_failed_run(
            &disk_full(&out.join("results.json")),
            out,
            &checkpoints,
            started,
        );
        assert!(message.starts_with("disk full: cannot write"), "{message}");
        assert!(
            message.contains("Checkpoints of 1 finished step(s)") && message.contains("--resume"),
            "{message}"
        );
        assert!(
            message.contains("results.json, report.md, report.html in")
                && message.contains("are from an earlier run"),
            "{message}"
        );

        // Another error, outputs written after the run started: neither note.
        let other = anyhow::anyhow!("ranker `r` failed");
        let long_ago = std::time::UNIX_EPOCH;
        let message = explain_failed_run(&other, out, &checkpoints, long_ago);
        assert_eq!(message, "ranker `r` failed");
    }

    #[test]
    fn a_full_disk_with_nothing_kept_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = Checkpoints::new(dir.path().join(CHECKPOINT_DIR), false);
        let message = explain_failed_run(
            &disk_full(&dir.path().join("results.json")),
            dir.path(),
            &checkpoints,
            std::time::SystemTime::now(),
        );
        assert!(
            message.ends_with("Nothing was kept; rerun once there is space"),
            "{message}"
        );
    }
}
