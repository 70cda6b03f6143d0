//! A complete lca plugin: rank neurons by how much their activation varies.
//!
//! ```text
//! score_j = Var(x_j) = (1/N) Σ_t (x_tj − μ_j)²          (tokens of the training split)
//! score_j = Var(x_j) / mean over classes of Var(x_j | class)   when `between_classes = true`
//! ```
//!
//! The second form is a one-way ANOVA-style ratio: total variance over the
//! average within-class variance. It is large for neurons whose variation is
//! explained by the class, and close to 1 for neurons that vary for other
//! reasons. The README next to this file walks through every part.

// A plugin needs no unsafe code: `export_plugin!` keeps it inside
// `lca-plugins`.
#![forbid(unsafe_code)]

use lca_core::data::{Split, count_classes};
use lca_core::ndarray::Axis;
use lca_core::params::Params as _;
use lca_core::registry::{ComponentInfo, ComponentKind, Descriptor, Inputs, applied};
use lca_core::{Component, Error, NeuronRanking, RankInput, Ranker, Result, RunContext};

const NAME: &str = "variance";

// Steps 1 and 2: the parameters, declared once. Each field's type, default
// and `///` line become the parameter table of `lca example variance`, the
// checks `lca validate` runs, and the values the ranker is built with.
lca_core::params! {
    /// Parameters of `variance`.
    struct VarianceParams {
        /// divide by the mean within-class variance, so class-driven
        /// variation ranks first
        between_classes: bool = false,
    }
}

/// Step 3: the ranker itself, a plain `lca_core::Ranker`.
#[derive(Clone, Debug, Default)]
pub struct VarianceRanker {
    between_classes: bool,
}

impl Ranker for VarianceRanker {
    fn rank(&self, input: &RankInput<'_>, _cx: &RunContext) -> Result<NeuronRanking> {
        let train = input.data.split(Split::Train);
        if train.labels.is_empty() {
            return Err(Error::input("the training split is empty"));
        }
        let x = train.acts.view();
        let total = x.var_axis(Axis(0), 0.0);
        let scores: Vec<f64> = if self.between_classes {
            let n_classes = input.data.n_classes();
            let counts = count_classes(train.labels, n_classes);
            let mut within = vec![0.0f64; x.ncols()];
            let mut present = 0;
            for (class, &count) in counts.iter().enumerate() {
                if count < 2 {
                    continue;
                }
                let rows: Vec<usize> = (0..train.labels.len())
                    .filter(|&r| train.labels[r] as usize == class)
                    .collect();
                let var = x.select(Axis(0), &rows).var_axis(Axis(0), 0.0);
                for (w, v) in within.iter_mut().zip(var.iter()) {
                    *w += f64::from(*v);
                }
                present += 1;
            }
            if present == 0 {
                return Err(Error::input(
                    "no class has two training tokens; between-class variance is undefined",
                ));
            }
            total
                .iter()
                .zip(&within)
                .map(|(&t, &w)| {
                    let w = w / f64::from(present);
                    if w > 0.0 { f64::from(t) / w } else { 0.0 }
                })
                .collect()
        } else {
            total.iter().map(|&v| f64::from(v)).collect()
        };
        NeuronRanking::from_scores(scores)
    }
}

/// Step 4: the descriptor that names the component and builds it from a
/// recipe's parameters.
pub fn descriptor() -> Descriptor {
    Descriptor {
        info: ComponentInfo {
            kind: ComponentKind::Ranker,
            name: NAME.into(),
            summary: "Variance of each neuron's activation (optionally relative to within-class variance)".into(),
            params: VarianceParams::docs(),
            example: "[ranker.var]\ntype = \"variance\"\nbetween_classes = true\n".into(),
            inputs: Inputs::default(),
        },
        build: |table| {
            let p = VarianceParams::parse(NAME, table)?;
            Ok(Component::Ranker(Box::new(VarianceRanker { between_classes: p.between_classes })))
        },
        applied: applied::<VarianceParams>,
    }
}

// Step 5: export it. This is the only plugin-specific line.
lca_plugins::export_plugin! {
    name: "lca-plugin-variance",
    version: env!("CARGO_PKG_VERSION"),
    components: [descriptor()],
}

#[cfg(test)]
mod tests {
    use super::*;
    use lca_testkit::{RankerTraits, check_ranker, planted, planted_precision};

    #[test]
    fn passes_the_conformance_suite() {
        check_ranker(&VarianceRanker::default(), RankerTraits::default()).unwrap();
        check_ranker(
            &VarianceRanker {
                between_classes: true,
            },
            RankerTraits::default(),
        )
        .unwrap();
    }

    #[test]
    fn between_class_variance_finds_planted_neurons() {
        let data = planted(3000, 100, 4, 2, 7);
        let ranking = VarianceRanker {
            between_classes: true,
        }
        .rank(&RankInput::new(&data), &RunContext::new(0, 1))
        .unwrap();
        assert_eq!(planted_precision(&ranking, &data), 1.0);
    }
}
