//! Every numeric parameter of every component, at the extremes of its type,
//! through the `lca` binary: zero, one, the largest and smallest integers,
//! NaN and the infinities, empty lists and lists of extremes. Each run ends
//! in bounded time with exit 0, or with exit 2 and one paragraph starting
//! `error:`; never a panic, an abort or a hang.
//!
//! The components and their parameters come from `lca list --json` and the
//! parameter tables of `lca example`, so a new component or parameter is
//! covered without editing this file. Each recipe is the component's own
//! example, with its inputs declared and the synthetic data made tiny, so
//! that only the parameter under test can make a run large.

use std::io::Read as _;
use std::path::Path;
use std::process::Stdio;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use toml::Value;

mod common;
use common::lca_command;

/// Longer than any run on the tiny data needs, by far.
const TIME_LIMIT: Duration = Duration::from_secs(120);

/// A numeric parameter of a component, as its table documents it.
#[derive(Clone, Debug)]
struct Param {
    component: String,
    name: String,
    ty: String,
}

fn lca_stdout(args: &[&str]) -> String {
    let output = lca_command().args(args).output().unwrap();
    assert!(
        output.status.success(),
        "lca {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The parameter rows of `lca example`: name and type, split on the
/// table's column gaps.
fn parameter_rows(example: &str) -> Vec<(String, String)> {
    example
        .lines()
        .skip_while(|l| !l.starts_with("# Parameters:"))
        .skip(2)
        .take_while(|l| l.len() > 2 && l.starts_with("#  "))
        .filter_map(|l| {
            let mut columns = l
                .trim_start_matches('#')
                .split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty());
            Some((columns.next()?.to_string(), columns.next()?.to_string()))
        })
        .collect()
}

/// The values a parameter of type `ty` is tried at.
fn extremes(ty: &str) -> Vec<Value> {
    let ints = [0, 1, i64::MAX, i64::MIN].map(Value::Integer);
    let floats = [
        0.0,
        1.0,
        f64::MAX,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
    ]
    .map(Value::Float);
    match ty {
        "integer" => ints.to_vec(),
        "number" => floats.to_vec(),
        "list of integers" => [
            vec![],
            vec![Value::Integer(0)],
            vec![Value::Integer(i64::MAX)],
        ]
        .map(Value::Array)
        .to_vec(),
        "list of numbers" => [
            vec![],
            vec![Value::Float(0.0)],
            vec![Value::Float(f64::NAN)],
            vec![Value::Float(f64::INFINITY)],
            vec![Value::Float(f64::MAX)],
        ]
        .map(Value::Array)
        .to_vec(),
        _ => Vec::new(),
    }
}

/// Synthetic sources small enough that a run's size comes from the
/// parameter under test alone.
fn shrink_sources(recipe: &mut toml::Table) {
    if let Some(Value::Table(sources)) = recipe.get_mut("source") {
        for (_, source) in sources.iter_mut() {
            let Value::Table(source) = source else {
                continue;
            };
            if source.get("type").and_then(Value::as_str) == Some("synthetic") {
                for (key, value) in [
                    ("tokens", 150),
                    ("neurons", 12),
                    ("classes", 3),
                    ("per_class", 1),
                ] {
                    source.insert(key.into(), Value::Integer(value));
                }
                source.insert("words_per_class".into(), Value::Integer(5));
            }
        }
    }
}

/// The recipe of `param` at `value`: the component's example made
/// runnable, with tiny data and the parameter set.
fn recipe(example: &str, param: &Param, value: &Value) -> String {
    let snippet: String = example
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let text = lca_testkit::runnable_example(&snippet).unwrap();
    let mut recipe: toml::Table = text.parse().unwrap();
    shrink_sources(&mut recipe);
    let (kind, id, _) = lca_testkit::example_table(&snippet).unwrap();
    let table = recipe[kind.as_str()][id.as_str()].clone();
    let Value::Table(mut table) = table else {
        unreachable!("a component table")
    };
    table.insert(param.name.clone(), value.clone());
    recipe
        .get_mut(kind.as_str())
        .and_then(Value::as_table_mut)
        .unwrap()
        .insert(id, Value::Table(table));
    toml::to_string(&recipe).unwrap()
}

/// Runs one recipe: whether it finished (exit 0) or stopped with a clear
/// error (exit 2), or a description of what went wrong.
fn check_run(dir: &Path, recipe: &str, what: &str) -> Result<bool, String> {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("recipe.toml"), recipe).unwrap();
    let mut child = lca_command()
        .current_dir(dir)
        .args([
            "run",
            "recipe.toml",
            "--quiet",
            "--threads",
            "1",
            "--out",
            "out",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr_pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr_pipe.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > TIME_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stderr = reader.join().unwrap();
    let Some(status) = status else {
        return Err(format!("{what}: still running after {TIME_LIMIT:?}"));
    };
    let mut problems = Vec::new();
    match status.code() {
        Some(0) => {}
        Some(2) => {
            let message: Vec<&str> = stderr
                .lines()
                .filter(|l| !l.starts_with("warning:"))
                .collect();
            if !message.first().is_some_and(|l| l.starts_with("error: ")) {
                problems.push("the error does not start with `error: `".to_string());
            }
        }
        code => problems.push(format!("exit {code:?} ({status})")),
    }
    if stderr.contains("panicked") || stderr.contains("stack backtrace") {
        problems.push("a panic leaked".into());
    }
    if problems.is_empty() {
        if std::env::var_os("LCA_SHOW_EXTREMES").is_some() {
            eprintln!("{what}: {}", stderr.lines().last().unwrap_or(""));
        }
        Ok(status.success())
    } else {
        Err(format!(
            "{what}: {}\n  stderr: {stderr}",
            problems.join("; ")
        ))
    }
}

#[test]
fn every_numeric_parameter_at_its_extremes_exits_0_or_2_in_bounded_time() {
    let list: serde_json::Value = serde_json::from_str(&lca_stdout(&["list", "--json"])).unwrap();
    let mut runs: Vec<(String, String, String)> = Vec::new();
    let mut params = 0;
    for component in list.as_array().unwrap() {
        let name = component["name"].as_str().unwrap();
        let example = lca_stdout(&["example", name]);
        for (param, ty) in parameter_rows(&example) {
            let values = extremes(&ty);
            if values.is_empty() {
                continue;
            }
            params += 1;
            let param = Param {
                component: name.to_string(),
                name: param,
                ty,
            };
            for value in values {
                let what = format!("{} {} = {value}", param.component, param.name);
                runs.push((what, recipe(&example, &param, &value), param.ty.clone()));
            }
        }
    }
    assert!(params >= 100, "only {params} numeric parameters found");

    let scratch = tempfile::tempdir().unwrap();
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let finished = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((what, recipe, _)) = runs.get(i) else {
                        break;
                    };
                    let dir = scratch.path().join(i.to_string());
                    match check_run(&dir, recipe, what) {
                        Ok(true) => {
                            finished.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(false) => {}
                        Err(problem) => failures.lock().unwrap().push(problem),
                    }
                    let _ = std::fs::remove_dir_all(&dir);
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} runs failed:\n{}",
        failures.len(),
        runs.len(),
        failures.join("\n")
    );
    // The recipes run: many extremes are legal values (zero neurons to
    // skip, one iteration, an infinite threshold) and must finish.
    let finished = finished.into_inner();
    eprintln!(
        "{finished} of {} runs finished, the others stopped with a clear error",
        runs.len()
    );
    assert!(
        finished * 8 >= runs.len(),
        "only {finished} of {} runs finished: are the example recipes still runnable?",
        runs.len()
    );
}
