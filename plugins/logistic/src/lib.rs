//! Logistic-regression probes: `elastic_net`, `lasso`, `ridge` and
//! `unregularized`, four presets of one solver (`lca_linear`).
//!
//! ```text
//! minimise (1/N) Σ_i CE(softmax(W x_i + b), y_i) + l1 Σ|W| + l2 R(W)
//!   R(W) = ‖W‖_F  (l2_form = "frobenius", as NeuroX)   or   ‖W‖_F²  ("squared")
//!   lasso: l2 = 0      ridge: l1 = 0      unregularized: l1 = l2 = 0
//! ```
//!
//! The probe trains on the training split. Its weights (classes × neurons,
//! in the standardised space when `standardize = true`) are what the
//! `probe_weights` ranker reads.

use std::sync::Arc;

use lca_core::component::TrainedProbe;
use lca_core::data::{ClassVocab, Split};
use lca_core::ndarray::{Array2, ArrayView1, ArrayView2};
use lca_core::params::{ParamDoc, Params as _, check_keys};
use lca_core::registry::{ComponentInfo, ComponentKind, Descriptor, Inputs};
use lca_core::{Component, Dataset, Probe, Result, RunContext, WarmStart};
use lca_linear::{
    AdamSettings, FistaSettings, FitOptions, Init, L2Form, LogisticModel, Penalty, Solver,
    WorkingSetSettings, fit,
};

/// Which penalties a preset exposes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Preset {
    ElasticNet,
    Lasso,
    Ridge,
    Unregularized,
}

impl Preset {
    fn name(self) -> &'static str {
        match self {
            Preset::ElasticNet => "elastic_net",
            Preset::Lasso => "lasso",
            Preset::Ridge => "ridge",
            Preset::Unregularized => "unregularized",
        }
    }

    fn has_l1(self) -> bool {
        matches!(self, Preset::ElasticNet | Preset::Lasso)
    }

    fn has_l2(self) -> bool {
        matches!(self, Preset::ElasticNet | Preset::Ridge)
    }

    fn summary(self) -> &'static str {
        match self {
            Preset::ElasticNet => "Logistic-regression probe with L1 + L2 penalty (the LCA probe)",
            Preset::Lasso => "Logistic-regression probe with an L1 penalty (sparse weights)",
            Preset::Ridge => "Logistic-regression probe with an L2 penalty",
            Preset::Unregularized => "Logistic-regression probe without penalty",
        }
    }

    /// Whether the preset takes parameter `name`.
    fn exposes(self, name: &str) -> bool {
        match name {
            "l1" => self.has_l1(),
            "l2" | "l2_form" => self.has_l2(),
            _ => true,
        }
    }

    /// The preset's part of the declared parameters.
    fn params(self) -> Vec<ParamDoc> {
        LogisticParams::docs()
            .into_iter()
            .filter(|d| self.exposes(&d.name))
            .collect()
    }

    /// Reads the preset's parameters; the others keep their defaults.
    fn parse(self, table: &lca_core::toml::Table) -> Result<LogisticParams> {
        check_keys(self.name(), &self.params(), table)?;
        LogisticParams::from_table(self.name(), table)
    }

    /// The preset's parameters in force.
    fn applied(self, table: &lca_core::toml::Table) -> Result<lca_core::toml::Table> {
        let mut applied = self.parse(table)?.to_table();
        applied.retain(|name, _| self.exposes(name));
        Ok(applied)
    }

    fn example(self) -> String {
        let mut text = format!("[probe.{}]\ntype = \"{}\"\n", self.short_id(), self.name());
        if self.has_l1() {
            text.push_str("l1 = 0.001\n");
        }
        if self.has_l2() {
            text.push_str("l2 = 0.001\n");
        }
        text
    }

    fn short_id(self) -> &'static str {
        match self {
            Preset::ElasticNet => "lca",
            Preset::Lasso => "lasso",
            Preset::Ridge => "ridge",
            Preset::Unregularized => "plain",
        }
    }

    fn descriptor(
        self,
        build: lca_core::registry::BuildFn,
        applied: lca_core::registry::AppliedFn,
    ) -> Descriptor {
        Descriptor {
            info: ComponentInfo {
                kind: ComponentKind::Probe,
                name: self.name().into(),
                summary: self.summary().into(),
                params: self.params(),
                example: self.example(),
                inputs: Inputs::default(),
            },
            build,
            applied,
        }
    }
}

lca_core::param_enum! {
    /// The L2 term.
    enum L2Term {
        /// ‖W‖_F, as NeuroX.
        Frobenius = "frobenius",
        /// ‖W‖_F², the textbook elastic net.
        Squared = "squared",
    }
}

lca_core::param_enum! {
    /// How the probe is trained.
    enum SolverKind {
        /// `working_set` when the probe has an L1 term, `fista` when not.
        Auto = "auto",
        /// Accelerated proximal gradient on all weights to a tolerance.
        Fista = "fista",
        /// Proximal Newton on a working set of weights, checked against the
        /// optimality conditions of all of them; for probes with an L1
        /// term (without one, `fista` runs).
        WorkingSet = "working_set",
        /// NeuroX's mini-batch Adam.
        NeuroxCompatible = "neurox_compatible",
    }
}

lca_core::params! {
    /// Parameters of the logistic probes; each preset exposes its part
    /// (lasso has no `l2`, ridge no `l1`, unregularized neither).
    struct LogisticParams {
        /// weight of Σ|W| (added to the mean cross-entropy)
        l1: f64 = 1e-3 => range(0.0..),
        /// weight of the L2 term
        l2: f64 = 1e-3 => range(0.0..),
        /// L2 term: ‖W‖_F as NeuroX, or the textbook ‖W‖_F²
        l2_form: L2Term = L2Term::Frobenius,
        /// fista and working_set (proximal Newton on the likely nonzero
        /// weights; several times faster on sparse probes): converge to a
        /// tolerance, with exact zeros; neurox_compatible: NeuroX's
        /// mini-batch Adam; auto: working_set with an L1 term (the probe is
        /// sparse), fista without (every weight is nonzero, and the Newton
        /// steps of the working set gain nothing); working_set without an
        /// L1 term (l1 = 0, as in a lambda_search grid) runs fista
        solver: SolverKind = SolverKind::Auto,
        /// fista (default 1e-3): stop when the objective improves by less
        /// than this (relative) 3 times in a row; working_set (default
        /// 1e-3): when no weight violates the optimality conditions by more
        /// than this times the largest gradient at the start; auto: as the
        /// solver it picks, with working_set's default lowered to 10·l1
        /// when l1 < 1e-4
        tol: Option<f64> = None => above(0.0),
        /// fista (default 500) and working_set (default 2000, counting
        /// Newton steps): iteration limit
        max_iter: Option<usize> = None => range(1..),
        /// neurox_compatible: passes over the training data
        epochs: usize = 10 => range(1..),
        /// neurox_compatible: rows per Adam step
        batch_size: usize = 32 => range(1..),
        /// neurox_compatible: Adam step size
        learning_rate: f64 = 1e-3 => above(0.0),
        /// neurox_compatible: shuffle rows each epoch (NeuroX does not)
        shuffle: bool = false,
        /// centre and scale every neuron on the training split first
        standardize: bool = false,
    }
}

/// A configured logistic-regression probe.
#[derive(Clone, Debug)]
pub struct LogisticProbe {
    preset_name: &'static str,
    params: lca_core::toml::Table,
    options: FitOptions,
}

/// The working-set solver, with the recipe's tolerance (else `default_tol`)
/// and limit if given.
fn working_set(raw: &LogisticParams, default_tol: f64) -> Solver {
    let defaults = WorkingSetSettings::default();
    Solver::WorkingSet(WorkingSetSettings {
        tol: raw.tol.unwrap_or(default_tol),
        max_iter: raw.max_iter.unwrap_or(defaults.max_iter),
    })
}

fn build_preset(preset: Preset, table: &lca_core::toml::Table) -> Result<LogisticProbe> {
    let name = preset.name();
    let raw = preset.parse(table)?;
    let l1 = if preset.has_l1() { raw.l1 } else { 0.0 };
    let l2 = if preset.has_l2() { raw.l2 } else { 0.0 };
    let l2_form = match raw.l2_form {
        L2Term::Frobenius => L2Form::Frobenius,
        L2Term::Squared => L2Form::Squared,
    };
    let solver = match raw.solver {
        // A weak penalty needs a tighter check: the tolerance is relative to
        // the gradient at zero, and a violation several times λ1 leaves the
        // support unsettled (at λ1 = 1e-5 the default stopped above
        // `fista`'s objective; 1e-4 went below it in about the same time).
        SolverKind::Auto if l1 > 0.0 => {
            working_set(&raw, WorkingSetSettings::default().tol.min(10.0 * l1))
        }
        SolverKind::WorkingSet if l1 > 0.0 => working_set(&raw, WorkingSetSettings::default().tol),
        // Without an L1 term every weight is nonzero at the optimum, and the
        // working set's rule (no violation above `tol` times the gradient at
        // zero) stops far from it: on real suffix activations at λ2 = 1e-3,
        // at 2.7 times `fista`'s objective with most weights still zero. The
        // fit report names the solver that ran.
        SolverKind::Auto | SolverKind::Fista | SolverKind::WorkingSet => {
            let defaults = FistaSettings::default();
            Solver::Fista(FistaSettings {
                tol: raw.tol.unwrap_or(defaults.tol),
                max_iter: raw.max_iter.unwrap_or(defaults.max_iter),
            })
        }
        SolverKind::NeuroxCompatible => Solver::NeuroxAdam(AdamSettings {
            epochs: raw.epochs,
            batch_size: raw.batch_size,
            learning_rate: raw.learning_rate,
            shuffle: raw.shuffle,
        }),
    };
    // Adam starts where PyTorch would (a random uniform layer); the convex
    // problem starts at zero.
    let init = match solver {
        Solver::NeuroxAdam(_) => Init::TorchLike,
        Solver::Fista(_) | Solver::WorkingSet(_) => Init::Zeros,
    };
    Ok(LogisticProbe {
        preset_name: name,
        params: table.clone(),
        options: FitOptions {
            penalty: Penalty { l1, l2, l2_form },
            solver,
            standardize: raw.standardize,
            init,
        },
    })
}

impl LogisticProbe {
    fn train(
        &self,
        data: &Dataset<'_>,
        options: &FitOptions,
        cx: &RunContext,
    ) -> Result<Box<dyn TrainedProbe>> {
        let train = data.split(Split::Train);
        let model = fit(&train.acts, train.labels, data.n_classes(), options, cx)?;
        let details = serde_json::json!({
            "probe": self.preset_name,
            "penalty": self.options.penalty,
            "solver": self.options.solver,
            "standardize": self.options.standardize,
            "report": model.report,
        });
        Ok(Box::new(TrainedLogistic {
            classes: data.classes().clone(),
            model,
            details,
        }))
    }
}

impl Probe for LogisticProbe {
    fn fit(&self, data: &Dataset<'_>, cx: &RunContext) -> Result<Box<dyn TrainedProbe>> {
        self.train(data, &self.options, cx)
    }

    /// The convex solvers start from `start`; the NeuroX-compatible Adam
    /// ignores it, since it must start where PyTorch would.
    fn fit_from(
        &self,
        data: &Dataset<'_>,
        start: &WarmStart,
        cx: &RunContext,
    ) -> Result<Box<dyn TrainedProbe>> {
        if matches!(self.options.solver, Solver::NeuroxAdam(_)) {
            return self.fit(data, cx);
        }
        let options = FitOptions {
            init: Init::Given(start.weights.mapv(f64::from), start.bias.mapv(f64::from)),
            ..self.options.clone()
        };
        self.train(data, &options, cx)
    }

    fn restore(&self, state: &[u8]) -> Result<Box<dyn TrainedProbe>> {
        let (model, mut metadata) = LogisticModel::from_bytes(state)?;
        let mut entry = |key: &str| {
            metadata.remove(key).ok_or_else(|| {
                lca_core::Error::input(format!("the stored probe has no `{key}` entry"))
            })
        };
        let names: Vec<String> = serde_json::from_str(&entry("classes")?)
            .map_err(|e| lca_core::Error::input(format!("the stored classes: {e}")))?;
        let details: serde_json::Value = serde_json::from_str(&entry("details")?)
            .map_err(|e| lca_core::Error::input(format!("the stored details: {e}")))?;
        if details["probe"] != self.preset_name {
            return Err(lca_core::Error::input(format!(
                "the stored probe is {}, not {}",
                details["probe"], self.preset_name
            )));
        }
        Ok(Box::new(TrainedLogistic {
            classes: ClassVocab::in_order(names)?,
            model,
            details,
        }))
    }

    fn reconfigure(&self, changes: &lca_core::toml::Table) -> Result<Arc<dyn Probe>> {
        let preset = PRESETS
            .iter()
            .find(|p| p.name() == self.preset_name)
            .copied()
            .expect("known preset");
        let mut table = self.params.clone();
        for (k, v) in changes {
            table.insert(k.clone(), v.clone());
        }
        Ok(Arc::new(build_preset(preset, &table)?))
    }
}

const PRESETS: [Preset; 4] = [
    Preset::ElasticNet,
    Preset::Lasso,
    Preset::Ridge,
    Preset::Unregularized,
];

/// A trained logistic probe.
#[derive(Debug)]
pub struct TrainedLogistic {
    classes: ClassVocab,
    model: LogisticModel,
    details: serde_json::Value,
}

impl TrainedLogistic {
    /// The fitted model.
    pub fn model(&self) -> &LogisticModel {
        &self.model
    }
}

impl TrainedProbe for TrainedLogistic {
    fn classes(&self) -> &ClassVocab {
        &self.classes
    }

    fn n_features(&self) -> usize {
        self.model.n_features()
    }

    fn predict_proba(&self, x: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        self.model.predict_proba(x)
    }

    fn weights(&self) -> Option<ArrayView2<'_, f32>> {
        Some(self.model.weights.view())
    }

    fn bias(&self) -> Option<ArrayView1<'_, f32>> {
        Some(self.model.bias.view())
    }

    fn details(&self) -> serde_json::Value {
        self.details.clone()
    }

    fn state(&self) -> Option<Vec<u8>> {
        let metadata = std::collections::BTreeMap::from([
            (
                "classes".to_string(),
                serde_json::to_string(self.classes.names()).ok()?,
            ),
            ("details".to_string(), self.details.to_string()),
        ]);
        self.model.to_bytes(&metadata).ok()
    }
}

fn component(preset: Preset, table: &lca_core::toml::Table) -> Result<Component> {
    Ok(Component::Probe(Arc::new(build_preset(preset, table)?)))
}

/// The four probe descriptors.
pub fn descriptors() -> Vec<Descriptor> {
    vec![
        Preset::ElasticNet.descriptor(
            |t| component(Preset::ElasticNet, t),
            |t| Preset::ElasticNet.applied(t),
        ),
        Preset::Lasso.descriptor(
            |t| component(Preset::Lasso, t),
            |t| Preset::Lasso.applied(t),
        ),
        Preset::Ridge.descriptor(
            |t| component(Preset::Ridge, t),
            |t| Preset::Ridge.applied(t),
        ),
        Preset::Unregularized.descriptor(
            |t| component(Preset::Unregularized, t),
            |t| Preset::Unregularized.applied(t),
        ),
    ]
}

lca_plugins::export_plugin! {
    name: "lca-plugin-logistic",
    version: env!("CARGO_PKG_VERSION"),
    components: [
        Preset::ElasticNet.descriptor(
            |t| component(Preset::ElasticNet, t),
            |t| Preset::ElasticNet.applied(t),
        ),
        Preset::Lasso.descriptor(|t| component(Preset::Lasso, t), |t| Preset::Lasso.applied(t)),
        Preset::Ridge.descriptor(|t| component(Preset::Ridge, t), |t| Preset::Ridge.applied(t)),
        Preset::Unregularized.descriptor(
            |t| component(Preset::Unregularized, t),
            |t| Preset::Unregularized.applied(t),
        ),
    ],
}

#[cfg(test)]
mod tests {
    use super::*;
    use lca_testkit::planted;

    fn build(name: &str, params: &str) -> Result<Arc<dyn Probe>> {
        let d = descriptors()
            .into_iter()
            .find(|d| d.info.name == name)
            .unwrap();
        match (d.build)(&params.parse().unwrap())? {
            Component::Probe(p) => Ok(p),
            _ => unreachable!(),
        }
    }

    #[test]
    fn every_preset_is_restored_exactly_from_its_state() {
        for (name, params) in [
            ("elastic_net", "l1 = 0.001\nl2 = 0.001"),
            ("lasso", "l1 = 0.01\nstandardize = true"),
            ("ridge", "l2 = 0.01"),
            (
                "unregularized",
                "solver = \"neurox_compatible\"\nepochs = 2",
            ),
        ] {
            let probe = build(name, params).unwrap();
            assert_eq!(
                lca_testkit::check_probe_state(probe.as_ref()),
                Ok(true),
                "{name}"
            );
        }
        // A state is only restored by the preset that wrote it.
        let data = planted(200, 10, 3, 1, 5);
        let cx = RunContext::new(0, 1);
        let state = build("lasso", "")
            .unwrap()
            .fit(&data, &cx)
            .unwrap()
            .state()
            .unwrap();
        let err = build("ridge", "")
            .unwrap()
            .restore(&state)
            .unwrap_err()
            .to_string();
        assert!(err.contains("is \"lasso\", not ridge"), "{err}");
    }

    #[test]
    fn presets_accept_only_their_penalties() {
        assert!(build("elastic_net", "l1 = 0.01\nl2 = 0.01").is_ok());
        let err = build("lasso", "l2 = 0.1").unwrap_err().to_string();
        assert!(err.contains("unknown parameter `l2`"), "{err}");
        let err = build("ridge", "l1 = 0.1").unwrap_err().to_string();
        assert!(err.contains("unknown parameter `l1`"), "{err}");
        let err = build("elastic_net", "l1 = -1").unwrap_err().to_string();
        assert!(err.contains("parameter `l1` = -1"), "{err}");
        let err = build("elastic_net", "solver = \"sgd\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"fista\", \"working_set\" or \"neurox_compatible\""),
            "{err}"
        );
    }

    #[test]
    fn auto_picks_the_working_set_for_sparse_probes_and_fista_for_dense_ones() {
        let solver_of = |preset: &str, params: &str| {
            let preset = [
                Preset::ElasticNet,
                Preset::Lasso,
                Preset::Ridge,
                Preset::Unregularized,
            ]
            .into_iter()
            .find(|p| p.name() == preset)
            .unwrap();
            let probe = build_preset(preset, &params.parse().unwrap()).unwrap();
            match probe.options.solver {
                Solver::WorkingSet(s) => ("working_set".to_string(), s.tol),
                Solver::Fista(s) => ("fista".to_string(), s.tol),
                Solver::NeuroxAdam(_) => ("neurox_compatible".to_string(), f64::NAN),
            }
        };
        assert_eq!(solver_of("elastic_net", ""), ("working_set".into(), 1e-3));
        assert_eq!(
            solver_of("lasso", "l1 = 1e-5"),
            ("working_set".into(), 1e-4)
        );
        assert_eq!(
            solver_of("lasso", "l1 = 1e-5\ntol = 0.01"),
            ("working_set".into(), 0.01)
        );
        assert_eq!(solver_of("ridge", ""), ("fista".into(), 1e-3));
        assert_eq!(solver_of("unregularized", ""), ("fista".into(), 1e-3));
        assert_eq!(
            solver_of("elastic_net", "solver = \"fista\""),
            ("fista".into(), 1e-3)
        );
        // The working set needs an L1 term: without one, fista runs.
        assert_eq!(
            solver_of("elastic_net", "solver = \"working_set\""),
            ("working_set".into(), 1e-3)
        );
        assert_eq!(
            solver_of("ridge", "solver = \"working_set\""),
            ("fista".into(), 1e-3)
        );
        assert_eq!(
            solver_of("elastic_net", "solver = \"working_set\"\nl1 = 0"),
            ("fista".into(), 1e-3)
        );
    }

    #[test]
    fn the_working_set_solver_is_chosen_by_name_and_keeps_exact_zeros() {
        let data = planted(3000, 60, 4, 2, 5);
        let probe = build("elastic_net", "l1 = 0.01\nsolver = \"working_set\"").unwrap();
        let trained = probe.fit(&data, &RunContext::new(0, 1)).unwrap();
        let details = trained.details();
        assert_eq!(details["report"]["solver"], "working_set", "{details}");
        assert_eq!(details["report"]["converged"], true, "{details}");
        assert_eq!(details["solver"]["tol"], 1e-3, "{details}");
        assert_eq!(details["solver"]["max_iter"], 2000, "{details}");
        let weights = trained.weights().unwrap();
        let zeros = weights.iter().filter(|&&w| w == 0.0).count();
        assert!(
            zeros > weights.len() / 2,
            "{zeros} of {} zero",
            weights.len()
        );
        let test = data.split(Split::Test);
        let predicted = trained.predict_blocks(&test.acts).unwrap();
        let correct = predicted
            .iter()
            .zip(test.labels)
            .filter(|(p, y)| p == y)
            .count();
        assert!(correct as f64 > 0.8 * test.labels.len() as f64);
    }

    #[test]
    fn a_planted_probe_classifies_and_lasso_zeroes_noise() {
        let data = planted(3000, 60, 4, 2, 5);
        let probe = build("lasso", "l1 = 0.01").unwrap();
        let trained = probe.fit(&data, &RunContext::new(0, 1)).unwrap();
        let test = data.split(Split::Test);
        let predicted = trained.predict_blocks(&test.acts).unwrap();
        let accuracy = predicted
            .iter()
            .zip(test.labels)
            .filter(|(a, b)| a == b)
            .count() as f64
            / test.labels.len() as f64;
        assert!(accuracy > 0.9, "accuracy {accuracy}");
        let w = trained.weights().unwrap();
        let truth = &data.truth().unwrap().informative;
        for j in 0..60 {
            let nonzero = w.column(j).iter().any(|v| *v != 0.0);
            assert_eq!(nonzero, truth.contains(&(j as u32)), "neuron {j}");
        }
        assert_eq!(trained.details()["report"]["converged"], true);
    }

    #[test]
    fn reconfigure_changes_penalties_and_validates() {
        let probe = build("elastic_net", "l1 = 0.01").unwrap();
        let changed = probe
            .reconfigure(&"l1 = 0.0\nl2 = 0.5".parse().unwrap())
            .unwrap();
        assert!(
            format!("{changed:?}").contains("l1: 0.0")
                && format!("{changed:?}").contains("l2: 0.5"),
            "{changed:?}"
        );
        let err = probe
            .reconfigure(&"l1 = -2.0".parse().unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("parameter `l1` = -2"), "{err}");
    }

    #[test]
    fn neurox_compatible_solver_runs_from_a_recipe_table() {
        let data = planted(500, 20, 3, 1, 1);
        let probe = build(
            "elastic_net",
            "solver = \"neurox_compatible\"\nepochs = 2\nlearning_rate = 0.01",
        )
        .unwrap();
        let trained = probe.fit(&data, &RunContext::new(0, 1)).unwrap();
        assert_eq!(trained.details()["report"]["solver"], "neurox_adam");
        assert_eq!(
            trained.details()["report"]["epoch_losses"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }
}
