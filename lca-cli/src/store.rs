//! `lca store`: create, inspect, check, import and export activation stores.
//!
//! Creating and importing are the same thing seen from two sides: a source
//! component (a recipe's, or the one a file's extension names) is loaded
//! and its dataset written shard by shard. Exporting reads a store back as
//! a dataset and hands it to the NeuroX exporter.

use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use clap::{Args as ClapArgs, Subcommand};
use lca_core::component::{Component, EvalInput};
use lca_core::registry::ComponentKind;
use lca_core::units::human_bytes;
use lca_core::{Registry, RunContext};
use lca_store::{DEFAULT_SHARD_BYTES, Dtype, GaussianPass, IouPass, StatsFile, StatsParts, Store};

use lca_cli::stats_ranking::{StatsRanking, rank_statistics};
use lca_cli::store_writing::{self, SourceStep, StoreOptions, Written, recipe_source};
use lca_store::part_shards;

use crate::progress::Progress;

#[derive(Debug, Subcommand)]
pub(crate) enum StoreCommand {
    /// Extract or read a recipe's source and write it as a store.
    Create(CreateArgs),
    /// Write a store from activation files: .npy, .npz or .safetensors
    /// (with --labels), NeuroX .json or .hdf5 (with --corpus and --labels).
    Import(ImportArgs),
    /// Join the parts that `create --part K/N` wrote into a folder into one
    /// store, once every part is finished.
    Join {
        /// The folder the parts were written into.
        store: PathBuf,
    },
    /// Print what a store holds.
    Info {
        /// The store's folder.
        store: PathBuf,
        /// Print the manifest as JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Check every shard against the SHA-256 its manifest records.
    Verify {
        /// The store's folder.
        store: PathBuf,
        /// No progress output.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Class statistics of a range of shards, in a file that merges with
    /// others: the scale-out path for the correlation, probeless, Gaussian,
    /// average-precision and (in two passes) IoU rankings.
    Stats {
        /// The store's folder.
        store: PathBuf,
        /// The statistics file to write (JSON).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Shards START..END (numbered from 0, END excluded); default all.
        #[arg(long, value_name = "START..END", value_parser = parse_range,
              conflicts_with = "part")]
        shards: Option<Range<usize>>,
        /// Part K of N (K from 0): the K-th of N runs of consecutive shards
        /// of sizes differing by at most one, so that N array tasks (Slurm's
        /// `$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT`) cover the store
        /// once between them. A part may hold no shard.
        #[arg(long, value_name = "K/N", value_parser = parse_part)]
        part: Option<(usize, usize)>,
        /// The task whose labels define the classes (default: the store's default task).
        #[arg(long)]
        task: Option<String>,
        /// Count every row, not only the training split's.
        #[arg(long)]
        all_rows: bool,
        /// First IoU pass: also keep each neuron's top values, for masks of
        /// this top fraction of the rows (Network Dissection's 0.005).
        #[arg(long, value_name = "FRACTION", value_parser = parse_fraction,
              conflicts_with = "iou_thresholds")]
        iou_quantile: Option<f64>,
        /// Second IoU pass: also count each neuron's mask, at the thresholds
        /// of these first-pass statistics merged over every shard.
        #[arg(long, value_name = "FILE")]
        iou_thresholds: Option<PathBuf>,
        /// Also sum the class means and scatter matrices of these neurons
        /// (the Gaussian ranking's candidates) and draw a row sample:
        /// `all`, or column numbers and ranges such as `0..384` or
        /// `3,7,100..120`. Memory is classes × k² × 4 bytes for k neurons.
        #[arg(long, value_name = "NEURONS", value_parser = parse_neurons)]
        gaussian_neurons: Option<NeuronChoice>,
        /// With --gaussian-neurons: rows drawn (from all rows counted in the
        /// store) to score the Gaussian ranking's candidates.
        #[arg(long, value_name = "ROWS", default_value_t = 4000,
              value_parser = clap::value_parser!(u64).range(10..))]
        gaussian_rows: u64,
        /// With --gaussian-neurons: the seed of the row sample; every part
        /// that will be merged must use the same.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Also count, per neuron, the tokens of each class per bin of its
        /// values, for NeuroX's average precision: bins keep this many
        /// mantissa bits (2^bits per octave; 23 is one bin per distinct
        /// value, exact and as large as the column).
        #[arg(long, value_name = "BITS", value_parser = clap::value_parser!(u8).range(0..=23))]
        ap_bits: Option<u8>,
        /// With --ap-bits: activations with |x| below this count as 0 (the
        /// `iou_neurox` ranker's `threshold`).
        #[arg(long, value_name = "T", default_value_t = 0.05, value_parser = parse_threshold)]
        ap_threshold: f64,
    },
    /// Merge statistics files of disjoint shard ranges into one.
    MergeStats {
        /// The statistics files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The merged file to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Rank neurons from a statistics file.
    Rank {
        /// The statistics file.
        stats: PathBuf,
        /// `correlation` (max over classes of |Pearson r|), `probeless`
        /// (summed differences of class means), `iou` (best IoU of a
        /// neuron's top-quantile mask with a class, from second-pass
        /// statistics), `gaussian` (greedy selection by a Gaussian probe's
        /// mutual information, from `--gaussian-neurons` statistics) or
        /// `average_precision` (NeuroX's "IoU", from `--ap-bits`
        /// statistics), as the rankers `correlation`, `probeless`, `iou`,
        /// `gaussian` and `iou_neurox`.
        #[arg(long, value_parser = ["correlation", "probeless", "iou", "gaussian", "average_precision"])]
        method: String,
        /// With `average_precision`: score this class overall (NeuroX
        /// scores class `1` of a binary task); by default the best class.
        #[arg(long, value_name = "CLASS")]
        positive: Option<String>,
        /// With `gaussian`: neurons to select greedily; the rest of the
        /// candidates follow by their last score, then the neurons that
        /// were not candidates, in index order.
        #[arg(long, value_name = "N", default_value_t = 100,
              value_parser = clap::value_parser!(u64).range(1..))]
        neurons: u64,
        /// With `gaussian`: ignore covariances between neurons (naive Bayes).
        #[arg(long)]
        diagonal: bool,
        /// With `correlation`: rank by r, not |r|.
        #[arg(long)]
        signed: bool,
        /// With `iou`: the IoU above which a neuron counts as a detector of
        /// its best class in the ranking's details.
        #[arg(long, value_name = "IOU", default_value_t = 0.04, value_parser = parse_iou)]
        detector_iou: f64,
        /// The ranking to write (JSON).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Write a store's activations, sentences and labels as NeuroX files.
    Export {
        /// The store's folder.
        store: PathBuf,
        /// The NeuroX activations file to write: .json (JSON lines) or .hdf5
        /// (with the HDF5 plugin); `<stem>.sentences.txt` and
        /// `<stem>.labels.txt` go beside it.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// The task whose labels to write (default: the store's default task).
        #[arg(long)]
        task: Option<String>,
    },
}

/// How the store is written.
#[derive(Debug, ClapArgs)]
pub(crate) struct WriteArgs {
    /// The folder to write the store into; it must not hold a store.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Value type on disk: f32 (exact), f16 or bf16 (half the size).
    #[arg(long, default_value = "f32", value_parser = parse_dtype)]
    dtype: Dtype,
    /// Approximate size of each shard, in MiB (1 to 65,536).
    #[arg(long, value_name = "MIB", default_value_t = (DEFAULT_SHARD_BYTES >> 20) as u32,
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    shard_mib: u32,
    /// Name of the labelling in the store (default: the source's task, else `labels`).
    #[arg(long)]
    task: Option<String>,
    /// Worker threads, 0 for one per core.
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// No progress output.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Debug, ClapArgs)]
pub(crate) struct CreateArgs {
    /// The recipe whose source to store.
    recipe: PathBuf,
    /// Which source of the recipe (needed when it has several).
    #[arg(long, value_name = "ID")]
    source: Option<String>,
    /// Write only part K of N (K from 0) into --out: the K-th of N runs of
    /// consecutive shards, computing only their rows. N processes or
    /// machines (Slurm array tasks, Ray tasks) write the N parts into one
    /// folder; `lca store join` then makes the store, the same as one
    /// process writes.
    #[arg(long, value_name = "K/N", value_parser = parse_part)]
    part: Option<(usize, usize)>,
    #[command(flatten)]
    write: WriteArgs,
}

#[derive(Debug, ClapArgs)]
pub(crate) struct ImportArgs {
    /// The activation file.
    file: PathBuf,
    /// Labels: one per line (blank line between sentences) for .npy/.npz/
    /// .safetensors; NeuroX's label file for .json/.hdf5.
    #[arg(long, value_name = "FILE")]
    labels: PathBuf,
    /// Words, one per line aligned with the labels (.npy/.npz/.safetensors only).
    #[arg(long, value_name = "FILE")]
    words: Option<PathBuf>,
    /// The sentences file NeuroX's activations were computed from (.json/.hdf5).
    #[arg(long, value_name = "FILE")]
    corpus: Option<PathBuf>,
    /// More source parameters as KEY=VALUE in TOML (such as layers=7 or
    /// shuffle=false); `lca example npy` lists them.
    #[arg(long = "param", value_name = "KEY=VALUE")]
    params: Vec<String>,
    #[command(flatten)]
    write: WriteArgs,
}

/// `START..END`, END excluded.
fn parse_range(text: &str) -> Result<Range<usize>, String> {
    let parsed = text
        .split_once("..")
        .and_then(|(a, b)| Some(a.trim().parse::<usize>().ok()?..b.trim().parse::<usize>().ok()?));
    match parsed {
        Some(range) if range.start < range.end => Ok(range),
        _ => Err(format!(
            "`{text}` is not a shard range; give START..END with START < END, such as 0..4"
        )),
    }
}

fn parse_part(text: &str) -> Result<(usize, usize), String> {
    let parsed = text.split_once('/').and_then(|(k, n)| {
        Some((
            k.trim().parse::<usize>().ok()?,
            n.trim().parse::<usize>().ok()?,
        ))
    });
    match parsed {
        Some((k, n)) if k < n => Ok((k, n)),
        _ => Err(format!(
            "`{text}` is not a part; give K/N with 0 ≤ K < N, such as 0/8"
        )),
    }
}

fn parse_fraction(text: &str) -> Result<f64, String> {
    parse_unit(
        text,
        false,
        "a fraction of the rows; give a number above 0 and at most 1, such as 0.005",
    )
}

fn parse_threshold(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!(
            "`{text}` is not a threshold; give a number of at least 0, such as 0.05"
        )),
    }
}

fn parse_iou(text: &str) -> Result<f64, String> {
    parse_unit(
        text,
        true,
        "an IoU; give a number from 0 to 1, such as 0.04",
    )
}

/// A number in (0, 1], or [0, 1] with `zero_allowed`; otherwise an error
/// saying "`text` is not {what}".
fn parse_unit(text: &str, zero_allowed: bool, what: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(v) if (v > 0.0 || (zero_allowed && v == 0.0)) && v <= 1.0 => Ok(v),
        _ => Err(format!("`{text}` is not {what}")),
    }
}

/// The neurons `--gaussian-neurons` names.
#[derive(Clone, Debug)]
pub(crate) enum NeuronChoice {
    All,
    Columns(Vec<usize>),
}

fn parse_neurons(text: &str) -> Result<NeuronChoice, String> {
    let fix = "give `all`, or column numbers and ranges START..END separated by commas, such \
               as 0..384 or 3,7,100..120";
    if text.trim() == "all" {
        return Ok(NeuronChoice::All);
    }
    let mut columns = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        if part.contains("..") {
            let range = parse_range(part).map_err(|_| format!("`{part}` is not a range; {fix}"))?;
            columns.extend(range);
        } else {
            columns.push(
                part.parse::<usize>()
                    .map_err(|_| format!("`{part}` is not a column number; {fix}"))?,
            );
        }
    }
    Ok(NeuronChoice::Columns(columns))
}

fn parse_dtype(text: &str) -> Result<Dtype, String> {
    Dtype::parse(text.trim())
        .ok_or_else(|| format!("`{text}` is not a store type; give f32, f16 or bf16"))
}

/// Runs a store command; `registry` loads the components (plugins
/// included, their warnings shown) for the commands that read sources.
pub(crate) fn dispatch(
    command: StoreCommand,
    registry: impl FnOnce() -> Result<Registry>,
) -> Result<()> {
    match command {
        StoreCommand::Create(args) => create(&registry()?, &args),
        StoreCommand::Import(args) => import(&registry()?, &args),
        StoreCommand::Join { store } => join(&store),
        StoreCommand::Info { store, json } => info(&store, json),
        StoreCommand::Verify { store, quiet } => verify(&store, quiet),
        StoreCommand::Export { store, out, task } => {
            export(&registry()?, &store, &out, task.as_deref())
        }
        StoreCommand::Stats {
            store,
            out,
            shards,
            part,
            task,
            all_rows,
            iou_quantile,
            iou_thresholds,
            gaussian_neurons,
            gaussian_rows,
            seed,
            ap_bits,
            ap_threshold,
        } => stats(
            &store,
            &out,
            StatsOptions {
                shards,
                part,
                task: task.as_deref(),
                train_only: !all_rows,
                iou_quantile,
                iou_thresholds: iou_thresholds.as_deref(),
                gaussian: gaussian_neurons.map(|neurons| (neurons, gaussian_rows, seed)),
                average_precision: ap_bits.map(|bits| (bits, ap_threshold)),
            },
        ),
        StoreCommand::MergeStats { files, out } => merge_stats(&files, &out),
        StoreCommand::Rank {
            stats,
            method,
            signed,
            detector_iou,
            neurons,
            diagonal,
            positive,
            out,
        } => rank(
            &stats,
            &method,
            StatsRanking {
                signed,
                detector_iou,
                steps: usize::try_from(neurons).unwrap_or(usize::MAX),
                diagonal,
                positive,
            },
            &out,
        ),
    }
}

fn create(registry: &Registry, args: &CreateArgs) -> Result<()> {
    let plan = lca_core::recipe::compile_file(&args.recipe, registry)?;
    let step = recipe_source(&plan, &args.recipe, args.source.as_deref())
        .context("name the source to store with --source ID")?;
    write_source(&step, &args.write, args.part)
}

fn import(registry: &Registry, args: &ImportArgs) -> Result<()> {
    let extension = args
        .file
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let path = |p: &Path| toml::Value::String(p.display().to_string());
    let mut table = toml::Table::new();
    let type_name = match extension.as_str() {
        "npy" | "npz" | "safetensors" => {
            table.insert("path".into(), path(&args.file));
            if let Some(words) = &args.words {
                table.insert("words".into(), path(words));
            }
            if args.corpus.is_some() {
                bail!(
                    "--corpus is for NeuroX files; {} is a matrix, whose words come with --words",
                    args.file.display()
                );
            }
            "npy"
        }
        "json" | "hdf5" | "h5" => {
            table.insert("activations".into(), path(&args.file));
            let corpus = args.corpus.as_deref().with_context(|| {
                format!(
                    "{} is a NeuroX file; give the sentences it was computed from with --corpus FILE",
                    args.file.display()
                )
            })?;
            table.insert("corpus".into(), path(corpus));
            if args.words.is_some() {
                bail!("--words is for matrix files; NeuroX files take their words from --corpus");
            }
            if extension == "json" {
                "neurox_json"
            } else {
                "neurox_hdf5"
            }
        }
        _ => bail!(
            "{} is not a file `lca store import` reads: give a .npy, .npz or .safetensors \
             matrix, or NeuroX .json or .hdf5 activations",
            args.file.display()
        ),
    };
    table.insert("labels".into(), path(&args.labels));
    for param in &args.params {
        let (key, value) = param
            .split_once('=')
            .with_context(|| format!("--param {param} is not KEY=VALUE, such as layers=7"))?;
        let key = key.trim();
        let value = match format!("v = {}", value.trim()).parse::<toml::Table>() {
            Ok(mut parsed) => parsed.remove("v").expect("parsed key"),
            Err(_) => toml::Value::String(value.trim().to_string()),
        };
        table.insert(key.to_string(), value);
    }
    let registered = registry
        .get(ComponentKind::Source, type_name)
        .with_context(|| {
            format!(
                "reading {} needs the `{type_name}` source{}",
                args.file.display(),
                if type_name == "neurox_hdf5" {
                    ", which the HDF5 plugin provides (build it with `cargo build -p \
                     lca-plugin-hdf5` and put it beside lca or pass --plugin-dir)"
                } else {
                    ""
                }
            )
        })?;
    let Component::Source(source) = registered
        .build(&table)
        .with_context(|| format!("reading {} as `{type_name}`", args.file.display()))?
    else {
        unreachable!("a source descriptor builds a source")
    };
    let fingerprint = format!(
        "import {type_name}\n{}",
        toml::to_string(&table).unwrap_or_default()
    );
    let step = SourceStep {
        key: format!("source.{type_name}"),
        seed: 0,
        source: source.as_ref(),
        fingerprint,
    };
    write_source(&step, &args.write, None)
}

/// Writes a source's dataset as a store, or part `part` of one, with
/// progress shown.
fn write_source(
    step: &SourceStep<'_>,
    args: &WriteArgs,
    part: Option<(usize, usize)>,
) -> Result<()> {
    let options = StoreOptions {
        out: args.out.clone(),
        dtype: args.dtype,
        shard_bytes: (args.shard_mib as usize) << 20,
        task: args.task.clone(),
        part,
    };
    let progress = Progress::new(1, args.quiet);
    let cx = RunContext::new(step.seed, args.threads)
        .for_step(&step.key)
        .with_progress(progress.task_sink());
    let result = store_writing::write_source(step, &options, &cx);
    progress.finish();
    let creation = result?;
    if creation.kept_rows > 0 {
        println!(
            "kept the first {} rows of an interrupted attempt ({} had them in full shards)",
            creation.kept_rows,
            args.out.display()
        );
    }
    let task = &creation.task;
    let classes = creation.classes;
    match &creation.written {
        Written::Store(manifest) => println!(
            "wrote {}: {} rows × {} neurons in {} shard(s) of {} ({}), task `{task}` with \
             {classes} classes",
            args.out.display(),
            manifest.rows,
            manifest.neurons.len(),
            manifest.shards.len(),
            args.dtype.as_str(),
            human_bytes(manifest.data_bytes()),
        ),
        Written::Part(record) => {
            let rows: usize = record.manifest.shards.iter().map(|s| s.rows).sum();
            println!(
                "wrote part {}/{} of the store in {}: rows {}..{} of {} in {} shard(s) of {} \
                 ({}), task `{task}` with {classes} classes; `lca store join {}` makes the \
                 store once every part is written",
                record.index,
                record.count,
                args.out.display(),
                record.first_row,
                record.first_row + rows,
                record.manifest.rows,
                record.manifest.shards.len(),
                args.dtype.as_str(),
                human_bytes(record.manifest.data_bytes()),
                args.out.display(),
            );
        }
    }
    Ok(())
}

/// `lca store join`: one store of the parts in `dir`.
fn join(dir: &Path) -> Result<()> {
    let manifest = lca_store::join_parts(dir)?;
    println!(
        "joined {}: {} rows × {} neurons in {} shard(s) ({}); `lca store verify` checks their \
         hashes",
        dir.display(),
        manifest.rows,
        manifest.neurons.len(),
        manifest.shards.len(),
        human_bytes(manifest.data_bytes()),
    );
    Ok(())
}

fn info(dir: &Path, json: bool) -> Result<()> {
    let store = Store::open(dir)?;
    let m = store.manifest();
    if json {
        println!("{}", serde_json::to_string_pretty(m)?);
        return Ok(());
    }
    println!("store      {}", dir.display());
    println!("format     {} ({})", m.format, m.dtype.as_str());
    println!(
        "size       {} rows × {} neurons, {} in {} shard(s)",
        m.rows,
        m.neurons.len(),
        human_bytes(m.data_bytes()),
        m.shards.len()
    );
    let groups = store.neurons().groups();
    let group_names: Vec<String> = groups.iter().map(ToString::to_string).collect();
    println!("neurons    {}", summarize(&group_names));
    if let Some(s) = m.splits {
        println!(
            "splits     train {}, dev {}, test {}",
            s.train, s.dev, s.test
        );
    }
    let rows = store.rows_meta();
    match (&rows.words, &rows.sentence_starts) {
        (Some(_), Some(starts)) => println!("words      yes, {} sentences", starts.len()),
        (Some(_), None) => println!("words      yes"),
        _ => println!("words      none"),
    }
    for (task, entry) in &m.tasks {
        let default = if *task == m.default_task {
            " (default)"
        } else {
            ""
        };
        println!(
            "task       {task}{default}: {} classes",
            entry.classes.len()
        );
    }
    for (key, value) in &m.details {
        println!("detail     {key}: {value}");
    }
    Ok(())
}

/// `L0, L1, …, L6` for long lists: the first three, the count, the last.
fn summarize(names: &[String]) -> String {
    if names.len() <= 6 {
        return names.join(", ");
    }
    format!(
        "{}, … ({} groups) …, {}",
        names[..3].join(", "),
        names.len(),
        names[names.len() - 1]
    )
}

fn verify(dir: &Path, quiet: bool) -> Result<()> {
    let store = Store::open(dir)?;
    let progress = Progress::new(1, quiet);
    let checked = store.verify(Some(progress.task_sink().as_ref()));
    progress.finish();
    checked?;
    println!(
        "{}: all {} shard(s) match their SHA-256 ({})",
        dir.display(),
        store.manifest().shards.len(),
        human_bytes(store.manifest().data_bytes())
    );
    Ok(())
}

fn export(registry: &Registry, dir: &Path, out: &Path, task: Option<&str>) -> Result<()> {
    let exporter = match out.extension().and_then(|e| e.to_str()) {
        Some("json") => "neurox_export",
        Some("hdf5") => "neurox_hdf5_export",
        _ => bail!(
            "{} ends in neither .json nor .hdf5; lca writes NeuroX's JSON-lines or HDF5 \
             activations, and NeuroX picks the reader by extension",
            out.display()
        ),
    };
    let store = Store::open(dir)?;
    let data = store.dataset("store", task)?;
    let mut params = toml::Table::new();
    params.insert(
        "path".into(),
        toml::Value::String(out.display().to_string()),
    );
    let registered = registry
        .get(ComponentKind::Evaluator, exporter)
        .with_context(|| {
            format!(
                "writing {} needs `{exporter}`, which the HDF5 plugin provides (build it with \
             `cargo build -p lca-plugin-hdf5` and put it beside lca or pass --plugin-dir)",
                out.display()
            )
        })?;
    let Component::Evaluator(exporter) = registered.build(&params)? else {
        unreachable!("an evaluator descriptor builds an evaluator")
    };
    let cx = RunContext::new(0, 0);
    let evaluation = exporter
        .evaluate(&EvalInput::new(&data), &cx)
        .with_context(|| format!("exporting {}", dir.display()))?;
    let metric = |name: &str| evaluation.metrics.get(name).copied().unwrap_or(0.0);
    println!(
        "wrote {} with its .sentences.txt and .labels.txt: {} sentences, {} tokens",
        out.display(),
        metric("sentences"),
        metric("tokens")
    );
    Ok(())
}

/// What `lca store stats` counts.
struct StatsOptions<'a> {
    shards: Option<Range<usize>>,
    part: Option<(usize, usize)>,
    task: Option<&'a str>,
    train_only: bool,
    iou_quantile: Option<f64>,
    iou_thresholds: Option<&'a Path>,
    /// Neurons, sampled rows and seed of the Gaussian moments.
    gaussian: Option<(NeuronChoice, u64, u64)>,
    /// Mantissa bits and threshold of the average-precision histograms.
    average_precision: Option<(u8, f64)>,
}

fn stats(dir: &Path, out: &Path, options: StatsOptions<'_>) -> Result<()> {
    let store = Store::open(dir)?;
    let count = store.manifest().shards.len();
    let shards = match (options.shards, options.part) {
        (Some(shards), _) => shards,
        (None, Some((k, n))) => part_shards(k, n, count),
        (None, None) => 0..count,
    };
    let top_values = match options.iou_thresholds {
        Some(path) => Some(StatsFile::read(path)?),
        None => None,
    };
    let iou = match (options.iou_quantile, &top_values) {
        (Some(quantile), _) => IouPass::TopValues { quantile },
        (None, Some(file)) => IouPass::Masks(file),
        (None, None) => IouPass::None,
    };
    let gaussian = options.gaussian.map(|(neurons, rows, seed)| GaussianPass {
        neurons: match neurons {
            NeuronChoice::All => (0..store.manifest().neurons.len()).collect(),
            NeuronChoice::Columns(columns) => columns,
        },
        sample_rows: usize::try_from(rows).unwrap_or(usize::MAX),
        seed,
    });
    let file = store
        .class_stats(
            options.task,
            shards.clone(),
            options.train_only,
            StatsParts {
                iou,
                gaussian: gaussian.as_ref(),
                average_precision: options.average_precision,
            },
        )
        .with_context(|| match options.iou_thresholds {
            Some(path) => format!("counting IoU masks at the thresholds of {}", path.display()),
            None => format!("computing statistics of {}", dir.display()),
        })?;
    file.write(out)?;
    let mut extra = match (&file.iou_top, &file.iou_masks) {
        (Some(t), _) => format!(" and the top {} values of each neuron", t.top.k),
        (_, Some(_)) => " and each neuron's IoU mask counts".into(),
        _ => String::new(),
    };
    if let Some(h) = &file.average_precision {
        extra.push_str(&format!(
            ", with average-precision histograms of {} mantissa bits",
            h.bits
        ));
    }
    if let Some(g) = &file.gaussian {
        extra.push_str(&format!(
            ", with the Gaussian moments of {} neurons and {} sampled rows",
            g.k(),
            g.sample.positions.len()
        ));
    }
    println!(
        "wrote {}: statistics of {} rows ({}) of shards {}..{} under task `{}`{extra}",
        out.display(),
        file.stats.rows,
        if options.train_only {
            "training split"
        } else {
            "all rows"
        },
        shards.start,
        shards.end,
        file.task
    );
    Ok(())
}

fn merge_stats(files: &[PathBuf], out: &Path) -> Result<()> {
    let mut merged = StatsFile::read(&files[0])?;
    for path in &files[1..] {
        merged
            .merge(&StatsFile::read(path)?)
            .with_context(|| format!("merging {} into {}", path.display(), files[0].display()))?;
    }
    merged.write(out)?;
    println!(
        "wrote {}: {} rows from {} shard(s) in {} file(s)",
        out.display(),
        merged.stats.rows,
        merged.shards.len(),
        files.len()
    );
    Ok(())
}

/// A ranking from statistics, as written by `lca store rank`.
#[derive(serde::Serialize)]
struct RankingFile<'a> {
    method: &'a str,
    task: &'a str,
    rows: u64,
    /// Neuron names, best first.
    top: Vec<&'a str>,
    ranking: lca_core::NeuronRanking,
}

fn rank(path: &Path, method: &str, options: StatsRanking, out: &Path) -> Result<()> {
    let file = StatsFile::read(path)?;
    let ranking = rank_statistics(&file, method, &options)
        .with_context(|| format!("ranking neurons from {}", path.display()))?;
    let top: Vec<&str> = ranking
        .order()
        .iter()
        .map(|&j| file.neurons[j as usize].as_str())
        .collect();
    println!(
        "top neurons by {method}: {}",
        top[..top.len().min(10)].join(", ")
    );
    let json = serde_json::to_vec_pretty(&RankingFile {
        method,
        task: &file.task,
        rows: file.stats.rows,
        top,
        ranking,
    })?;
    lca_core::io::write_atomic(out, &json)?;
    println!("wrote {}", out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_read_as_k_of_n() {
        assert_eq!(parse_part("3/8"), Ok((3, 8)));
        assert!(parse_part("8/8").is_err());
        assert!(parse_part("x").is_err());
    }
}
