//! `redundancy`: how many neurons carry the same information.

use serde::Deserialize;

use super::common::{parse_split, random_columns, require_split};
use crate::cluster::{Linkage, cluster_neurons};
use lca_core::component::{Component, EvalInput, Evaluator};
use lca_core::context::RunContext;
use lca_core::data::{Cell, Evaluation, Split, Table};
use lca_core::error::{Error, Result};
use lca_core::params::{ParamDoc, ParamType, ensure, invalid, parse_params};
use lca_core::registry::{ComponentInfo, ComponentKind, Descriptor, Inputs, Need};

const NAME: &str = "redundancy";

/// The clustering parameters shared by the `redundancy` evaluator and the
/// `independent_neurons` ranker.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterParams {
    #[serde(default = "default_threshold")]
    threshold: f64,
    #[serde(default = "yes")]
    absolute: bool,
    #[serde(default = "average")]
    linkage: String,
    #[serde(default = "default_max_tokens")]
    max_tokens: i64,
    #[serde(default = "default_max_neurons")]
    max_neurons: i64,
}

fn default_threshold() -> f64 {
    0.3
}
fn yes() -> bool {
    true
}
fn average() -> String {
    "average".into()
}
fn default_max_tokens() -> i64 {
    10_000
}
fn default_max_neurons() -> i64 {
    12_000
}

/// The documentation of the clustering parameters.
pub fn cluster_param_docs() -> Vec<ParamDoc> {
    use ParamType::*;
    vec![
        ParamDoc::new(
            "threshold",
            Float,
            "0.3",
            "0 ≤ x ≤ 2",
            "cut distance: neurons closer than this (1 − |ρ|) end up in one cluster",
        ),
        ParamDoc::new(
            "absolute",
            Bool,
            "true",
            "true or false",
            "use |ρ| (anti-correlated neurons are redundant too) or signed ρ",
        ),
        ParamDoc::new(
            "linkage",
            String,
            "\"average\"",
            "average, complete, single",
            "agglomerative linkage",
        ),
        ParamDoc::new(
            "max_tokens",
            Integer,
            "10000",
            "≥ 10",
            "use a seeded sample of at most this many tokens",
        ),
        ParamDoc::new(
            "max_neurons",
            Integer,
            "12000",
            "≥ 2",
            "refuse larger problems (the distance matrix holds neurons² values)",
        ),
    ]
}

/// Parses and checks the clustering parameters of `component`.
///
/// # Errors
/// [`Error::InvalidParam`] for a bad value.
pub fn parse_cluster_settings(component: &str, table: &toml::Table) -> Result<ClusterSettings> {
    let p: ClusterParams = parse_params(component, &cluster_param_docs(), table)?;
    ensure(
        component,
        "threshold",
        (0.0..=2.0).contains(&p.threshold),
        p.threshold,
        "0 ≤ threshold ≤ 2",
    )?;
    ensure(
        component,
        "max_tokens",
        p.max_tokens >= 10,
        p.max_tokens,
        "≥ 10",
    )?;
    ensure(
        component,
        "max_neurons",
        p.max_neurons >= 2,
        p.max_neurons,
        "≥ 2",
    )?;
    Ok(ClusterSettings {
        absolute: p.absolute,
        linkage: parse_linkage(component, &p.linkage)?,
        threshold: p.threshold,
        max_tokens: p.max_tokens as usize,
        max_neurons: p.max_neurons as usize,
    })
}

fn param_docs() -> Vec<ParamDoc> {
    let mut docs = cluster_param_docs();
    docs.insert(
        3,
        ParamDoc::new(
            "split",
            ParamType::String,
            "\"train\"",
            "train, dev, test",
            "tokens the correlations are computed on",
        ),
    );
    docs
}

pub(super) fn descriptor() -> Descriptor {
    Descriptor {
        info: ComponentInfo {
            kind: ComponentKind::Evaluator,
            name: NAME.into(),
            summary: "Correlation clustering of neurons: clusters, their sizes, and redundancy in top-ranked sets".into(),
            params: param_docs(),
            example: "[evaluator.redundancy]\ntype = \"redundancy\"\nrankings = [\"lca\"]\nthreshold = 0.3\n".into(),
            inputs: Inputs { rankings: Need::Optional, ..Inputs::default() },
        },
        build: |table| {
            // Check every key against the full table first, for messages that
            // list all parameters; then parse the shared part.
            lca_core::params::parse_params::<toml::Table>(NAME, &param_docs(), table)?;
            let mut cluster_table = table.clone();
            let split = match cluster_table.remove("split") {
                Some(v) => parse_split(NAME, "split", v.as_str().unwrap_or_default())?,
                None => Split::Train,
            };
            let settings = parse_cluster_settings(NAME, &cluster_table)?;
            Ok(Component::Evaluator(Box::new(Redundancy { settings, split })))
        },
    }
}

/// Parses a linkage name given as a parameter.
pub fn parse_linkage(component: &str, value: &str) -> Result<Linkage> {
    match value {
        "average" => Ok(Linkage::Average),
        "complete" => Ok(Linkage::Complete),
        "single" => Ok(Linkage::Single),
        other => Err(invalid(
            component,
            "linkage",
            format!("{other:?}"),
            "\"average\", \"complete\" or \"single\"",
        )),
    }
}

/// Clusters neurons by correlation (see [`crate::cluster`]) and reports how
/// redundant the neurons, and the top of each wired ranking, are.
#[derive(Clone, Debug)]
pub struct Redundancy {
    settings: ClusterSettings,
    split: Split,
}

/// How neurons are clustered by correlation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClusterSettings {
    /// Use |ρ| (true) or signed ρ.
    pub absolute: bool,
    /// Agglomerative linkage.
    pub linkage: Linkage,
    /// Cut distance.
    pub threshold: f64,
    /// Tokens sampled (seeded) for the correlations.
    pub max_tokens: usize,
    /// Largest problem accepted.
    pub max_neurons: usize,
}

/// Cluster labels of a dataset's neurons on (a sample of) one split.
///
/// # Errors
/// When there are more neurons than `max_neurons`, or the split is empty.
pub fn neuron_clusters(
    data: &lca_core::Dataset<'_>,
    split: Split,
    settings: ClusterSettings,
    cx: &RunContext,
) -> Result<Vec<usize>> {
    let n = data.n_neurons();
    if n > settings.max_neurons {
        return Err(Error::input(format!(
            "correlation clustering of {n} neurons needs a {n} × {n} distance matrix; raise `max_neurons` if memory allows, \
             or cluster fewer neurons (for example a source restricted to some layers)"
        )));
    }
    let part = require_split(data, split, NAME)?;
    let rows = part.labels.len();
    let ClusterSettings {
        absolute,
        linkage,
        threshold,
        max_tokens,
        ..
    } = settings;
    if rows <= max_tokens {
        cluster_neurons(part.acts.view(), absolute, linkage, threshold, cx)
    } else {
        let sample = random_columns(&mut cx.rng_for("redundancy-sample"), rows, max_tokens);
        let x = part.acts.select(ndarray::Axis(0), &sample);
        cluster_neurons(x.view(), absolute, linkage, threshold, cx)
    }
}

impl Evaluator for Redundancy {
    fn evaluate(&self, input: &EvalInput<'_>, cx: &RunContext) -> Result<Evaluation> {
        let data = input.data;
        let labels = neuron_clusters(data, self.split, self.settings, cx)?;
        let n = data.n_neurons();
        let k = labels.iter().copied().max().map_or(0, |m| m + 1);
        let mut sizes = vec![0usize; k];
        for &l in &labels {
            sizes[l] += 1;
        }
        let singletons = sizes.iter().filter(|&&s| s == 1).count();
        let largest = sizes.iter().copied().max().unwrap_or(0);
        let mut e = Evaluation::default();
        let mut summary = Table::new(
            format!(
                "Correlation clusters (1 − {}ρ{} ≤ {}, {:?} linkage)",
                if self.settings.absolute { "|" } else { "" },
                if self.settings.absolute { "|" } else { "" },
                self.settings.threshold,
                self.settings.linkage
            ),
            &[
                "neurons",
                "clusters",
                "singletons",
                "largest cluster",
                "neurons per cluster",
            ],
        );
        summary.push(vec![
            n.into(),
            k.into(),
            singletons.into(),
            largest.into(),
            (n as f64 / k.max(1) as f64).into(),
        ]);
        e.tables.push(summary);
        e.metrics.insert("clusters".into(), k as f64);
        e.metrics
            .insert("kept_fraction".into(), k as f64 / n.max(1) as f64);

        let mut order: Vec<usize> = (0..k).collect();
        order.sort_by(|&a, &b| sizes[b].cmp(&sizes[a]).then(a.cmp(&b)));
        let mut biggest = Table::new(
            "Largest clusters",
            &["cluster", "size", "members (layer:unit)"],
        );
        for &c in order.iter().take(10).filter(|&&c| sizes[c] > 1) {
            let members: Vec<String> = (0..n)
                .filter(|&j| labels[j] == c)
                .take(20)
                .map(|j| data.neurons().id(j).to_string())
                .collect();
            biggest.push(vec![
                c.into(),
                sizes[c].into(),
                Cell::from(members.join(", ")),
            ]);
        }
        e.tables.push(biggest);

        if !input.rankings.is_empty() {
            let mut top_table = Table::new(
                "Redundancy in the top of each ranking",
                &["ranking", "top k", "distinct clusters", "redundant neurons"],
            );
            for ranking in &input.rankings {
                for top_k in [10usize, 50, 100].into_iter().filter(|&t| t <= n) {
                    let mut seen: Vec<usize> = ranking
                        .ranking
                        .top(top_k)
                        .iter()
                        .map(|&j| labels[j as usize])
                        .collect();
                    seen.sort_unstable();
                    seen.dedup();
                    top_table.push(vec![
                        Cell::from(ranking.id),
                        top_k.into(),
                        seen.len().into(),
                        (top_k - seen.len()).into(),
                    ]);
                    e.metrics.insert(
                        format!("distinct_in_top{top_k}.{}", ranking.id),
                        seen.len() as f64,
                    );
                }
            }
            e.tables.push(top_table);
        }
        e.notes.push(format!(
            "{k} clusters keep {:.1}% of the {n} neurons; feed one neuron per cluster to other evaluators with the `independent_neurons` ranker.",
            100.0 * k as f64 / n.max(1) as f64
        ));
        Ok(e)
    }
}
