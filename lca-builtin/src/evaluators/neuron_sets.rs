//! `neuron_sets`: the LCA selection helpers, from a recipe.

use super::common::{bottom, random_columns, top};
use crate::select::ClassMasses;
use lca_core::component::{Component, EvalInput, Evaluator};
use lca_core::context::RunContext;
use lca_core::data::{Cell, Evaluation, Table};
use lca_core::error::{Error, Result};
use lca_core::params::{Params as _, ensure};
use lca_core::registry::{ComponentInfo, ComponentKind, Descriptor, Inputs, Need, applied};

const NAME: &str = "neuron_sets";

/// How many neurons a table lists before eliding.
const LISTED: usize = 30;

lca_core::params! {
    /// Parameters of `neuron_sets`: at least one selection.
    struct Params {
        /// per-class top sets at weight-mass fraction p (probes; NeuroX
        /// get_top_neurons)
        mass: Vec<f64> = vec![] => range(0.0..),
        /// per-class bottom sets at mass fraction p (probes; NeuroX
        /// get_bottom_neurons)
        bottom_mass: Vec<f64> = vec![] => range(0.0..),
        /// per class, neurons with |w| > max|w| / x (probes; NeuroX
        /// get_top_neurons_hard_threshold)
        above_max_fraction: Vec<f64> = vec![] => above(0.0),
        /// the first n neurons of each ranking
        top: Vec<usize> = vec![] => range(1..),
        /// the last n neurons of each ranking
        bottom: Vec<usize> = vec![] => range(1..),
        /// n neurons drawn at random (seeded), the baseline set
        random: Vec<usize> = vec![] => range(1..),
    }
}

pub(super) fn descriptor() -> Descriptor {
    Descriptor {
        info: ComponentInfo {
            kind: ComponentKind::Evaluator,
            name: NAME.into(),
            summary: "Neuron sets: per-class top/bottom mass, hard threshold, fixed-size top/bottom/random".into(),
            params: Params::docs(),
            example: "[evaluator.sets]\ntype = \"neuron_sets\"\nprobes = [\"lca\"]\nrankings = [\"lca\"]\nmass = [0.25, 0.5]\ntop = [20]\n".into(),
            inputs: Inputs { rankings: Need::Optional, probes: Need::Optional, ..Inputs::default() },
        },
        build: |table| {
            let p = Params::parse(NAME, table)?;
            let total = p.mass.len() + p.bottom_mass.len() + p.above_max_fraction.len() + p.top.len() + p.bottom.len() + p.random.len();
            ensure(NAME, "mass", total > 0, "nothing", "at least one selection (mass, bottom_mass, above_max_fraction, top, bottom or random)")?;
            Ok(Component::Evaluator(Box::new(NeuronSets { p })))
        },
        applied: applied::<Params>,
    }
}

/// A union and the per-class sets it came from.
type Selected = (Vec<u32>, Vec<Vec<u32>>);

/// Lists neuron sets chosen by the LCA selection rules.
#[derive(Clone, Debug)]
pub struct NeuronSets {
    p: Params,
}

fn list(neurons: &[usize]) -> String {
    let shown: Vec<String> = neurons.iter().take(LISTED).map(usize::to_string).collect();
    if neurons.len() > LISTED {
        format!("{} … (+{})", shown.join(", "), neurons.len() - LISTED)
    } else {
        shown.join(", ")
    }
}

impl Evaluator for NeuronSets {
    fn evaluate(&self, input: &EvalInput<'_>, cx: &RunContext) -> Result<Evaluation> {
        let data = input.data;
        let n = data.n_neurons();
        let mut e = Evaluation::default();
        let needs_probe = !(self.p.mass.is_empty()
            && self.p.bottom_mass.is_empty()
            && self.p.above_max_fraction.is_empty());
        if needs_probe && input.probes.is_empty() {
            return Err(Error::input(
                "`neuron_sets` with mass or threshold selections needs a linear probe: add `probes = [\"<probe id>\"]`",
            ));
        }
        for probe in &input.probes {
            let Some(weights) = probe.trained.weights() else {
                continue;
            };
            let masses = ClassMasses::new(weights)?;
            let classes = probe.trained.classes().names();
            let mut table = Table::new(
                format!("Per-class neuron sets of probe `{}`", probe.id),
                &["rule", "class", "size", "neurons"],
            );
            let mut rules: Vec<(String, Selected)> = Vec::new();
            rules.extend(
                self.p
                    .mass
                    .iter()
                    .map(|&m| (format!("top mass {m}"), masses.top(m))),
            );
            rules.extend(
                self.p
                    .bottom_mass
                    .iter()
                    .map(|&m| (format!("bottom mass {m}"), masses.bottom(m))),
            );
            rules.extend(
                self.p
                    .above_max_fraction
                    .iter()
                    .map(|&f| (format!("|w| > max/{f}"), masses.above_fraction_of_max(f))),
            );
            for (rule, (union, per_class)) in rules {
                for (class, set) in classes.iter().zip(&per_class) {
                    let set: Vec<usize> = set.iter().map(|&j| j as usize).collect();
                    table.push(vec![
                        Cell::from(rule.as_str()),
                        Cell::from(class.as_str()),
                        set.len().into(),
                        Cell::from(list(&set)),
                    ]);
                    e.metrics.insert(
                        format!("size.{}.{rule}.{class}", probe.id),
                        set.len() as f64,
                    );
                }
                let union: Vec<usize> = union.iter().map(|&j| j as usize).collect();
                table.push(vec![
                    Cell::from(rule.as_str()),
                    Cell::from("(union)"),
                    union.len().into(),
                    Cell::from(list(&union)),
                ]);
                e.metrics.insert(
                    format!("size.{}.{rule}.union", probe.id),
                    union.len() as f64,
                );
            }
            e.tables.push(table);
        }
        let fixed =
            !(self.p.top.is_empty() && self.p.bottom.is_empty() && self.p.random.is_empty());
        if fixed {
            if let Some(&k) = self
                .p
                .top
                .iter()
                .chain(&self.p.bottom)
                .chain(&self.p.random)
                .find(|&&k| k > n)
            {
                return Err(lca_core::error::Error::input(format!(
                    "`neuron_sets` asks for a set of {k} neurons, but source `{}` has {n} neurons; lower `top`, `bottom` or `random`",
                    input.data.name()
                )));
            }
            let mut table = Table::new(
                "Fixed-size neuron sets",
                &["ranking", "rule", "size", "neurons"],
            );
            for ranking in &input.rankings {
                for &k in &self.p.top {
                    table.push(vec![
                        Cell::from(ranking.id),
                        Cell::from(format!("top {k}")),
                        k.into(),
                        Cell::from(list(&top(ranking.ranking.order(), k))),
                    ]);
                }
                for &k in &self.p.bottom {
                    table.push(vec![
                        Cell::from(ranking.id),
                        Cell::from(format!("bottom {k}")),
                        k.into(),
                        Cell::from(list(&bottom(ranking.ranking.order(), k))),
                    ]);
                }
            }
            for &k in &self.p.random {
                let set = random_columns(&mut cx.rng_for(&format!("random/{k}")), n, k);
                table.push(vec![
                    Cell::from("(random)"),
                    Cell::from(format!("random {k}")),
                    set.len().into(),
                    Cell::from(list(&set)),
                ]);
            }
            e.tables.push(table);
        }
        Ok(e)
    }
}
