//! `neuron_sets`: the LCA selection helpers, from a recipe.

use serde::Deserialize;

use super::common::{bottom, random_columns, top};
use crate::select::ClassMasses;
use lca_core::component::{Component, EvalInput, Evaluator};
use lca_core::context::RunContext;
use lca_core::data::{Cell, Evaluation, Table};
use lca_core::error::{Error, Result};
use lca_core::params::{ParamDoc, ParamType, ensure, parse_params};
use lca_core::registry::{ComponentInfo, ComponentKind, Descriptor, Inputs, Need};

const NAME: &str = "neuron_sets";

/// How many neurons a table lists before eliding.
const LISTED: usize = 30;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default)]
    mass: Vec<f64>,
    #[serde(default)]
    bottom_mass: Vec<f64>,
    #[serde(default)]
    above_max_fraction: Vec<f64>,
    #[serde(default)]
    top: Vec<i64>,
    #[serde(default)]
    bottom: Vec<i64>,
    #[serde(default)]
    random: Vec<i64>,
}

fn param_docs() -> Vec<ParamDoc> {
    use ParamType::*;
    vec![
        ParamDoc::new(
            "mass",
            FloatList,
            "[]",
            "each 0 ≤ p",
            "per-class top sets at weight-mass fraction p (probes; NeuroX get_top_neurons)",
        ),
        ParamDoc::new(
            "bottom_mass",
            FloatList,
            "[]",
            "each 0 ≤ p",
            "per-class bottom sets at mass fraction p (probes; NeuroX get_bottom_neurons)",
        ),
        ParamDoc::new(
            "above_max_fraction",
            FloatList,
            "[]",
            "each > 0",
            "per class, neurons with |w| > max|w| / x (probes; NeuroX get_top_neurons_hard_threshold)",
        ),
        ParamDoc::new(
            "top",
            IntegerList,
            "[]",
            "each ≥ 1",
            "the first n neurons of each ranking",
        ),
        ParamDoc::new(
            "bottom",
            IntegerList,
            "[]",
            "each ≥ 1",
            "the last n neurons of each ranking",
        ),
        ParamDoc::new(
            "random",
            IntegerList,
            "[]",
            "each ≥ 1",
            "n neurons drawn at random (seeded), the baseline set",
        ),
    ]
}

pub(super) fn descriptor() -> Descriptor {
    Descriptor {
        info: ComponentInfo {
            kind: ComponentKind::Evaluator,
            name: NAME.into(),
            summary: "Neuron sets: per-class top/bottom mass, hard threshold, fixed-size top/bottom/random".into(),
            params: param_docs(),
            example: "[evaluator.sets]\ntype = \"neuron_sets\"\nprobes = [\"lca\"]\nrankings = [\"lca\"]\nmass = [0.25, 0.5]\ntop = [20]\n".into(),
            inputs: Inputs { rankings: Need::Optional, probes: Need::Optional, ..Inputs::default() },
        },
        build: |table| {
            let p: Params = parse_params(NAME, &param_docs(), table)?;
            for &m in p.mass.iter().chain(&p.bottom_mass) {
                ensure(NAME, "mass", m.is_finite() && m >= 0.0, m, "fractions ≥ 0")?;
            }
            for &f in &p.above_max_fraction {
                ensure(NAME, "above_max_fraction", f.is_finite() && f > 0.0, f, "divisors > 0")?;
            }
            for &k in p.top.iter().chain(&p.bottom).chain(&p.random) {
                ensure(NAME, "top", k >= 1, k, "sizes ≥ 1")?;
            }
            let total = p.mass.len() + p.bottom_mass.len() + p.above_max_fraction.len() + p.top.len() + p.bottom.len() + p.random.len();
            ensure(NAME, "mass", total > 0, "nothing", "at least one selection (mass, bottom_mass, above_max_fraction, top, bottom or random)")?;
            Ok(Component::Evaluator(Box::new(NeuronSets { p })))
        },
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
                .find(|&&k| k as usize > n)
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
                        (k as usize).into(),
                        Cell::from(list(&top(ranking.ranking.order(), k as usize))),
                    ]);
                }
                for &k in &self.p.bottom {
                    table.push(vec![
                        Cell::from(ranking.id),
                        Cell::from(format!("bottom {k}")),
                        (k as usize).into(),
                        Cell::from(list(&bottom(ranking.ranking.order(), k as usize))),
                    ]);
                }
            }
            for &k in &self.p.random {
                let set = random_columns(&mut cx.rng_for(&format!("random/{k}")), n, k as usize);
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
