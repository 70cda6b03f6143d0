//! `layer_distribution`: in which layers the selected neurons sit.

use super::common::count_for_percent;
use crate::select::ClassMasses;
use lca_core::component::{Component, EvalInput, Evaluator};
use lca_core::context::RunContext;
use lca_core::data::{
    BarSeries, Cell, Evaluation, Figure, LayerSite, NeuronIndex, Plot, Site, Table,
};
use lca_core::error::{Error, Result};
use lca_core::params::{Params as _, ensure};
use lca_core::registry::{ComponentInfo, ComponentKind, Descriptor, Inputs, Need, applied};

const NAME: &str = "layer_distribution";

lca_core::params! {
    /// Parameters of `layer_distribution`: at most one selection.
    struct Params {
        /// select the first N neurons of each ranking (and of each class
        /// ranking)
        top: Option<usize> = None => range(1..),
        /// select the first N% of neurons
        #[shown = "5 (when nothing else is set)"]
        top_percent: Option<f64> = None => percent(),
        /// select each class's top neurons at weight-mass fraction p of a
        /// wired probe (NeuroX get_top_neurons)
        mass: Option<f64> = None => range(0.0..=1.0),
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Selection {
    Top(usize),
    TopPercent(f64),
    Mass(f64),
}

pub(super) fn descriptor() -> Descriptor {
    Descriptor {
        info: ComponentInfo {
            kind: ComponentKind::Evaluator,
            name: NAME.into(),
            summary: "Count and share of selected neurons per layer, overall and per class".into(),
            params: Params::docs(),
            example: "[evaluator.layers]\ntype = \"layer_distribution\"\nrankings = [\"lca\"]\ntop_percent = 5\n".into(),
            inputs: Inputs { rankings: Need::Optional, probes: Need::Optional, ..Inputs::default() },
        },
        build: |table| {
            let p = Params::parse(NAME, table)?;
            let given = [p.top.is_some(), p.top_percent.is_some(), p.mass.is_some()].iter().filter(|g| **g).count();
            ensure(NAME, "top", given <= 1, "several selections", "only one of `top`, `top_percent` and `mass`")?;
            let selection = match (p.top, p.mass) {
                (Some(k), _) => Selection::Top(k),
                (_, Some(m)) => Selection::Mass(m),
                _ => Selection::TopPercent(p.top_percent.unwrap_or(5.0)),
            };
            Ok(Component::Evaluator(Box::new(LayerDistribution { selection })))
        },
        applied: applied::<Params>,
    }
}

/// Where salient neurons live.
///
/// ```text
/// selected = top N (or N%) of a ranking, or each class's top set at mass p
/// per layer: count, % of the selection, % of the layer's neurons
/// mean layer = average layer number of the selected neurons
/// ```
#[derive(Clone, Debug)]
pub struct LayerDistribution {
    selection: Selection,
}

/// Neurons per layer, or per layer and site where the data has sites
/// (`L3`, `L3.mlp`, …).
struct Counts {
    groups: Vec<LayerSite>,
    totals: Vec<usize>,
}

impl Counts {
    fn new(index: &NeuronIndex) -> Self {
        let groups = index.groups();
        let totals = groups
            .iter()
            .map(|g| index.ids().iter().filter(|id| id.group() == *g).count())
            .collect();
        Counts { groups, totals }
    }

    fn count(&self, index: &NeuronIndex, neurons: &[usize]) -> Vec<usize> {
        let mut counts = vec![0; self.groups.len()];
        for &j in neurons {
            let group = index.id(j).group();
            let slot = self
                .groups
                .iter()
                .position(|g| *g == group)
                .expect("layer of a known neuron");
            counts[slot] += 1;
        }
        counts
    }

    fn mean_layer(&self, counts: &[usize]) -> f64 {
        let total: usize = counts.iter().sum();
        if total == 0 {
            return 0.0;
        }
        counts
            .iter()
            .zip(&self.groups)
            .map(|(c, g)| *c as f64 * f64::from(g.layer))
            .sum::<f64>()
            / total as f64
    }
}

impl LayerDistribution {
    fn describe(&self) -> String {
        match self.selection {
            Selection::Top(k) => format!("top {k}"),
            Selection::TopPercent(p) => format!("top {p}%"),
            Selection::Mass(m) => format!("per-class mass {m}"),
        }
    }

    fn report(
        &self,
        e: &mut Evaluation,
        counts: &Counts,
        data_index: &NeuronIndex,
        label: &str,
        overall: &[usize],
        per_class: &[(String, Vec<usize>)],
    ) -> BarSeries {
        let layer_counts = counts.count(data_index, overall);
        let total: usize = layer_counts.iter().sum();
        let sites = data_index.has_sites();
        let mut columns = vec!["layer"];
        if sites {
            columns.push("site");
        }
        columns.extend([
            "neurons in layer",
            "selected",
            "% of selected",
            "% of layer",
        ]);
        let mut table = Table::new(
            format!("Layers of `{label}` ({}, {total} neurons)", self.describe()),
            &columns,
        );
        for (i, group) in counts.groups.iter().enumerate() {
            let mut row = vec![i64::from(group.layer).into()];
            if sites {
                row.push(group.site.as_str().into());
            }
            row.extend([
                counts.totals[i].into(),
                layer_counts[i].into(),
                (100.0 * layer_counts[i] as f64 / total.max(1) as f64).into(),
                (100.0 * layer_counts[i] as f64 / counts.totals[i].max(1) as f64).into(),
            ]);
            table.push(row);
            // Residual-stream keys stay as they were before sites existed.
            let place = match group.site {
                Site::Residual => "layer",
                site => site.as_str(),
            };
            e.metrics.insert(
                format!("share.{label}.{place}{}", group.layer),
                layer_counts[i] as f64 / total.max(1) as f64,
            );
        }
        e.metrics.insert(
            format!("mean_layer.{label}"),
            counts.mean_layer(&layer_counts),
        );
        if sites {
            // Per site: its share of the selection, of all neurons, and the
            // mean layer of its selected neurons.
            let all: usize = counts.totals.iter().sum();
            for site in Site::ALL {
                let in_site = |g: &LayerSite| g.site == site;
                let of: Vec<usize> = counts
                    .groups
                    .iter()
                    .zip(&layer_counts)
                    .map(|(g, &c)| if in_site(g) { c } else { 0 })
                    .collect();
                let neurons: usize = counts
                    .groups
                    .iter()
                    .zip(&counts.totals)
                    .filter(|(g, _)| in_site(g))
                    .map(|(_, &t)| t)
                    .sum();
                if neurons == 0 {
                    continue;
                }
                let selected: usize = of.iter().sum();
                e.metrics.insert(
                    format!("site_share.{label}.{site}"),
                    selected as f64 / total.max(1) as f64,
                );
                e.metrics.insert(
                    format!("site_of_all.{site}"),
                    neurons as f64 / all.max(1) as f64,
                );
                if selected > 0 {
                    e.metrics
                        .insert(format!("mean_layer.{label}.{site}"), counts.mean_layer(&of));
                }
            }
        }
        e.tables.push(table);
        if !per_class.is_empty() {
            let mut columns: Vec<String> = vec!["class".into(), "selected".into()];
            columns.extend(counts.groups.iter().map(ToString::to_string));
            columns.push("mean layer".into());
            let column_refs: Vec<&str> = columns.iter().map(String::as_str).collect();
            let mut table = Table::new(format!("Layers of `{label}` per class"), &column_refs);
            for (class, neurons) in per_class {
                let c = counts.count(data_index, neurons);
                let mut row = vec![Cell::from(class.as_str()), neurons.len().into()];
                row.extend(c.iter().map(|&v| Cell::from(v)));
                row.push(counts.mean_layer(&c).into());
                table.push(row);
            }
            e.tables.push(table);
        }
        BarSeries {
            name: label.to_string(),
            values: layer_counts
                .iter()
                .map(|&c| 100.0 * c as f64 / total.max(1) as f64)
                .collect(),
        }
    }
}

impl Evaluator for LayerDistribution {
    fn evaluate(&self, input: &EvalInput<'_>, _cx: &RunContext) -> Result<Evaluation> {
        let data = input.data;
        let n = data.n_neurons();
        let counts = Counts::new(data.neurons());
        let mut e = Evaluation::default();
        let mut bars = Vec::new();
        match self.selection {
            Selection::Mass(p) => {
                if input.probes.is_empty() {
                    return Err(Error::input(
                        "`layer_distribution` with `mass` needs a linear probe: add `probes = [\"<probe id>\"]`",
                    ));
                }
                for probe in &input.probes {
                    let weights = probe.trained.weights().ok_or_else(|| {
                        Error::input(format!("probe `{}` has no weights", probe.id))
                    })?;
                    let masses = ClassMasses::new(weights)?;
                    let (union, per_class) = masses.top(p);
                    let union: Vec<usize> = union.iter().map(|&j| j as usize).collect();
                    let per_class: Vec<(String, Vec<usize>)> = probe
                        .trained
                        .classes()
                        .names()
                        .iter()
                        .zip(per_class)
                        .map(|(c, set)| (c.clone(), set.iter().map(|&j| j as usize).collect()))
                        .collect();
                    bars.push(self.report(
                        &mut e,
                        &counts,
                        data.neurons(),
                        &probe.id,
                        &union,
                        &per_class,
                    ));
                }
            }
            Selection::Top(_) | Selection::TopPercent(_) => {
                if input.rankings.is_empty() {
                    return Err(Error::input(
                        "`layer_distribution` with `top` or `top_percent` needs rankings: add `rankings = [\"<ranker id>\"]`",
                    ));
                }
                let k = match self.selection {
                    Selection::Top(k) if k > n => {
                        return Err(Error::input(format!(
                            "`layer_distribution` asks for the top {k} neurons, but source `{}` has {n} neurons; lower `top` or use `top_percent`",
                            data.name()
                        )));
                    }
                    Selection::Top(k) => k,
                    Selection::TopPercent(p) => count_for_percent(p, n),
                    Selection::Mass(_) => unreachable!("handled above"),
                };
                for ranking in &input.rankings {
                    let overall: Vec<usize> =
                        ranking.ranking.top(k).iter().map(|&j| j as usize).collect();
                    let per_class: Vec<(String, Vec<usize>)> = ranking
                        .ranking
                        .per_class()
                        .iter()
                        .map(|c| {
                            (
                                c.class().to_string(),
                                c.order().iter().take(k).map(|&j| j as usize).collect(),
                            )
                        })
                        .collect();
                    bars.push(self.report(
                        &mut e,
                        &counts,
                        data.neurons(),
                        ranking.id,
                        &overall,
                        &per_class,
                    ));
                }
            }
        }
        e.figures.push(Figure {
            title: format!(
                "Share of the selected neurons per layer ({}, source `{}`)",
                self.describe(),
                data.name()
            ),
            section: "layers".into(),
            plot: Plot::Bars {
                y_label: "% of selected neurons".into(),
                categories: counts
                    .groups
                    .iter()
                    .map(|g| {
                        if data.neurons().has_sites() {
                            g.to_string()
                        } else {
                            format!("layer {}", g.layer)
                        }
                    })
                    .collect(),
                series: bars,
            },
        });
        e.notes.push(format!(
            "Layer 0 is the first layer of the source's layout; {} layers, {} neurons in all.",
            counts.groups.len(),
            n
        ));
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lca_core::component::NamedRanking;
    use lca_core::data::{Dataset, NeuronId, NeuronRanking};

    #[test]
    fn sites_are_counted_apart_with_their_shares() {
        let p = crate::SyntheticParams {
            tokens: 20,
            neurons: 12,
            layers: 3,
            classes: 2,
            per_class: 1,
            ..Default::default()
        };
        let plain = crate::generate(&p, 1, "t").unwrap();
        // Columns 0..4 residual L1, 4..12 MLP of blocks 1 and 2.
        let ids = (0..12)
            .map(|c| match c {
                0..4 => NeuronId::new(1, c),
                4..8 => NeuronId::at(Site::Mlp, 1, c - 4),
                _ => NeuronId::at(Site::Mlp, 2, c - 8),
            })
            .collect();
        let data = Dataset::new(
            "t",
            plain.acts().clone(),
            NeuronIndex::from_ids(ids),
            plain.labels().clone(),
            None,
            plain.splits(),
        )
        .unwrap();
        let ranking =
            NeuronRanking::from_order(vec![8, 0, 4, 9, 1, 2, 3, 5, 6, 7, 10, 11]).unwrap();
        let input = EvalInput::new(&data).with_rankings(vec![NamedRanking {
            id: "r",
            ranking: &ranking,
        }]);
        let e = LayerDistribution {
            selection: Selection::Top(4),
        }
        .evaluate(&input, &RunContext::new(0, 1))
        .unwrap();
        let rows = &e.tables[0].rows;
        assert_eq!(e.tables[0].columns[1], "site");
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0][1], Cell::from("residual"));
        assert_eq!(rows[2][..2], [Cell::Int(2), Cell::from("mlp")]);
        assert_eq!(e.metrics["share.r.layer1"], 0.25);
        assert_eq!(e.metrics["share.r.mlp2"], 0.5);
        assert_eq!(e.metrics["site_share.r.mlp"], 0.75);
        assert!((e.metrics["site_of_all.mlp"] - 8.0 / 12.0).abs() < 1e-12);
        assert!((e.metrics["mean_layer.r.mlp"] - 5.0 / 3.0).abs() < 1e-12);
        assert_eq!(e.metrics["mean_layer.r.residual"], 1.0);
    }

    #[test]
    fn counts_by_layer_and_mean_layer() {
        let p = crate::SyntheticParams {
            tokens: 20,
            neurons: 12,
            layers: 3,
            classes: 2,
            per_class: 1,
            ..Default::default()
        };
        let data = crate::generate(&p, 1, "t").unwrap();
        // Neurons 8..12 are layer 2, 4..8 layer 1.
        let ranking =
            NeuronRanking::from_order(vec![8, 9, 4, 0, 1, 2, 3, 5, 6, 7, 10, 11]).unwrap();
        let input = EvalInput::new(&data).with_rankings(vec![NamedRanking {
            id: "r",
            ranking: &ranking,
        }]);
        let e = LayerDistribution {
            selection: Selection::Top(4),
        }
        .evaluate(&input, &RunContext::new(0, 1))
        .unwrap();
        let rows = &e.tables[0].rows;
        assert_eq!(rows[0][2], Cell::Int(1));
        assert_eq!(rows[1][2], Cell::Int(1));
        assert_eq!(rows[2][2], Cell::Int(2));
        assert_eq!(e.metrics["mean_layer.r"], (0.0 + 1.0 + 2.0 * 2.0) / 4.0);
        assert_eq!(e.metrics["share.r.layer2"], 0.5);
    }
}
