//! `redundancy`: how many neurons carry the same information.

use super::common::{random_columns, require_split};
use crate::cluster::{Linkage, cluster_neurons};
use lca_core::component::{Component, EvalInput, Evaluator};
use lca_core::context::RunContext;
use lca_core::data::{Cell, Evaluation, Split, Table};
use lca_core::error::{Error, Result};
use lca_core::params::Params as _;
use lca_core::registry::{ComponentInfo, ComponentKind, Descriptor, Inputs, Need, applied};

const NAME: &str = "redundancy";

lca_core::params! {
    /// How neurons are clustered by correlation: the parameters of the
    /// `redundancy` evaluator and of the `independent_neurons` ranker.
    #[derive(Copy, PartialEq)]
    pub struct ClusterSettings {
        /// cut distance: neurons closer than this (1 − |ρ|) end up in one
        /// cluster
        threshold: f64 = 0.3 => range(0.0..=2.0),
        /// use |ρ| (anti-correlated neurons are redundant too) or signed ρ
        absolute: bool = true,
        /// agglomerative linkage
        linkage: Linkage = Linkage::Average,
        /// use a seeded sample of at most this many tokens
        max_tokens: usize = 10_000 => range(10..),
        /// refuse larger problems (the distance matrix holds neurons²
        /// values)
        max_neurons: usize = 12_000 => range(2..),
    }
}

lca_core::params! {
    /// Parameters of `redundancy`.
    struct Params {
        /// tokens the correlations are computed on
        split: Split = Split::Train,
        #[flatten]
        cluster: ClusterSettings,
    }
}

pub(super) fn descriptor() -> Descriptor {
    Descriptor {
        info: ComponentInfo {
            kind: ComponentKind::Evaluator,
            name: NAME.into(),
            summary: "Correlation clustering of neurons: clusters, their sizes, and redundancy in top-ranked sets".into(),
            params: Params::docs(),
            example: "[evaluator.redundancy]\ntype = \"redundancy\"\nrankings = [\"lca\"]\nthreshold = 0.3\n".into(),
            inputs: Inputs { rankings: Need::Optional, ..Inputs::default() },
        },
        build: |table| {
            let p = Params::parse(NAME, table)?;
            Ok(Component::Evaluator(Box::new(Redundancy { settings: p.cluster, split: p.split })))
        },
        applied: applied::<Params>,
    }
}

/// Clusters neurons by correlation (see [`crate::cluster`]) and reports how
/// redundant the neurons, and the top of each wired ranking, are.
#[derive(Clone, Debug)]
pub struct Redundancy {
    settings: ClusterSettings,
    split: Split,
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
        cluster_neurons(part.acts.view().view(), absolute, linkage, threshold, cx)
    } else {
        let sample = random_columns(&mut cx.rng_for("redundancy-sample"), rows, max_tokens);
        let x = part.acts.select_rows(&sample);
        cluster_neurons(x.view().view(), absolute, linkage, threshold, cx)
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
