//! Writing a source's dataset as a store, whole or as one of its parts:
//! what `lca store create`, `lca store import` and `lca.store.create` in
//! Python share.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use lca_core::component::Component;
use lca_core::recipe::Plan;
use lca_core::registry::ComponentKind;
use lca_core::{ActivationSource, RowSink as _, RunContext};
use lca_store::{Dtype, Manifest, PartRecord, StoreMeta, StoreSink};

/// How a store is written.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// The folder.
    pub out: PathBuf,
    /// The value type on disk.
    pub dtype: Dtype,
    /// About how large a shard is, in bytes.
    pub shard_bytes: usize,
    /// The labelling's name in the store (default: the source's task, else
    /// `labels`).
    pub task: Option<String>,
    /// Part `k` of `n` of the store, written into `out` beside the other
    /// parts and joined with [`lca_store::join_parts`]; `None` writes the
    /// whole store.
    pub part: Option<(usize, usize)>,
}

/// A source to store, with what identifies its content.
pub struct SourceStep<'a> {
    /// The step's key (`source.<id>`), which seeds the load as a run would.
    pub key: String,
    /// The recipe's seed.
    pub seed: u64,
    /// The source.
    pub source: &'a dyn ActivationSource,
    /// The component, its parameters and the seed: an interrupted store
    /// (or the other parts of one) must come from the same.
    pub fingerprint: String,
}

/// The source `id` of a recipe's plan, or its only source.
///
/// # Errors
/// When the recipe has no such source, or several and `id` is `None`.
pub fn recipe_source<'p>(
    plan: &'p Plan,
    recipe: &Path,
    id: Option<&str>,
) -> Result<SourceStep<'p>> {
    let sources: Vec<_> = plan
        .steps
        .iter()
        .filter(|s| s.kind == ComponentKind::Source)
        .collect();
    let ids = || {
        sources
            .iter()
            .map(|s| format!("`{}`", s.id))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let step = match id {
        Some(id) => sources.iter().find(|s| s.id == id).with_context(|| {
            format!(
                "{} has no source `{id}`; its sources are {}. Name one of them",
                recipe.display(),
                ids()
            )
        })?,
        None if sources.len() == 1 => &sources[0],
        None => bail!(
            "{} has {} sources ({}); say which to store",
            recipe.display(),
            sources.len(),
            ids()
        ),
    };
    let Component::Source(source) = &step.component else {
        unreachable!("a source step holds a source")
    };
    let key = step.key();
    let fingerprint = format!(
        "{key} {} seed {}\n{}",
        step.type_name,
        plan.run.seed,
        toml::to_string(&step.params).unwrap_or_default()
    );
    Ok(SourceStep {
        key,
        seed: plan.run.seed,
        source: source.as_ref(),
        fingerprint,
    })
}

/// What was written.
#[derive(Debug)]
pub enum Written {
    /// A whole store, with its manifest.
    Store(Manifest),
    /// One part, with its record; the store exists once all are joined.
    Part(PartRecord),
}

/// What [`write_source`] did.
#[derive(Debug)]
pub struct Creation {
    /// The store or part.
    pub written: Written,
    /// Rows an interrupted attempt had written in full shards, kept.
    pub kept_rows: usize,
    /// The labelling's name in the store.
    pub task: String,
    /// Its classes.
    pub classes: usize,
}

/// Writes a source's dataset as a store (or one part of it), with `cx`'s
/// progress and cancellation; `cx` is the step's context (see
/// [`SourceStep::key`]). A source that streams writes shard by shard as it
/// computes, and computes only the rows of the part; any other is loaded
/// whole, then written. Either way the writer records each finished shard,
/// so an interrupted store goes on from its last full shard when written
/// again with the same options.
///
/// # Errors
/// When `options.out` holds a store already, the source fails, or a file
/// cannot be written; finished shards are kept.
pub fn write_source(
    step: &SourceStep<'_>,
    options: &StoreOptions,
    cx: &RunContext,
) -> Result<Creation> {
    if options.out.join(lca_store::MANIFEST_FILE).exists() {
        bail!(
            "{} already holds a store; nothing was read or written. Remove it or choose another \
             output folder",
            options.out.display()
        );
    }
    let mut sink = StoreSink::new(
        &options.out,
        options.dtype,
        options.shard_bytes,
        &step.fingerprint,
    );
    if let Some((k, n)) = options.part {
        if k >= n {
            bail!(
                "part {k} of {n} does not exist; parts are numbered from 0 to {}",
                n.max(1) - 1
            );
        }
        sink = sink.in_part(k, n);
    }
    let written = cx.install(|| -> lca_core::Result<_> {
        if let Some(outline) = step.source.stream(cx, &mut sink)? {
            return Ok(outline);
        }
        let data = step.source.load(cx)?;
        sink.begin(data.n_rows(), data.neurons())?;
        let rows = sink.block_rows();
        let end = sink.rows_wanted_end().min(data.n_rows());
        let mut start = sink.rows_held();
        if let Some(p) = cx.progress() {
            p.start("writing the store", end as u64, "rows");
            p.advance(start.min(end) as u64);
        }
        while start < end {
            let stop = (start + rows).min(end);
            sink.push(start, data.acts().block(start..stop).view())?;
            if let Some(p) = cx.progress() {
                p.advance((stop - start) as u64);
            }
            start = stop;
        }
        if let Some(p) = cx.progress() {
            p.finish();
        }
        Ok(data.outline())
    });
    let kept_rows = sink.rows_resumed();
    let result = written.map_err(anyhow::Error::from).and_then(|outline| {
        let task = options
            .task
            .clone()
            .or_else(|| outline.details.get("task").cloned())
            .unwrap_or_else(|| "labels".into());
        let classes = outline.labels.vocab().len();
        let meta = StoreMeta::of(outline, &task);
        let written = if options.part.is_some() {
            Written::Part(sink.finish_part(meta)?)
        } else {
            Written::Store(sink.finish(meta)?)
        };
        Ok((written, task, classes))
    });
    let (written, task, classes) = result.with_context(|| {
        format!(
            "writing `{}` to the store in {}; its finished shards are kept, and writing it \
             again with the same options goes on from them",
            step.key,
            options.out.display()
        )
    })?;
    Ok(Creation {
        written,
        kept_rows,
        task,
        classes,
    })
}
