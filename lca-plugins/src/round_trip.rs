//! Native component → boundary object → host wrapper, without a library:
//! everything must behave exactly as the native component does.

use std::sync::Arc;

use lca_core::component::{NamedRanking, ProbeInput};
use lca_core::data::{Cell, ClassVocab, Table};
use lca_core::ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};
use lca_core::{
    ActivationSource, Dataset, Error, EvalInput, Evaluation, Evaluator, NeuronRanking, Probe,
    RankInput, Ranker, Result, RunContext, SharedProbe, TrainedProbe, WarmStart,
};
use lca_testkit::{RankerTraits, check_ranker, planted};

use crate::export::{evaluator_to_ffi, ranker_to_ffi, source_to_ffi};
use crate::foreign::{ForeignEvaluator, ForeignProbe, ForeignRanker, ForeignSource, Who};
use crate::probe_adapter::probe_to_ffi;

/// Ranks by mean activation on the training split.
#[derive(Debug)]
struct MeanRanker;

impl Ranker for MeanRanker {
    fn rank(&self, input: &RankInput<'_>, _cx: &RunContext) -> Result<NeuronRanking> {
        let train = input.data.split(lca_core::data::Split::Train);
        let means = train
            .acts
            .view()
            .mean_axis(Axis(0))
            .ok_or_else(|| Error::input("no rows"))?;
        NeuronRanking::from_scores(means.iter().map(|&m| f64::from(m)).collect())
    }
}

#[derive(Debug)]
struct Panicking;

impl Ranker for Panicking {
    fn rank(&self, _input: &RankInput<'_>, _cx: &RunContext) -> Result<NeuronRanking> {
        panic!("deliberate test panic")
    }
}

/// Nearest class mean, as a tiny probe with "weights" = class means.
#[derive(Debug)]
struct CentroidProbe;

#[derive(Debug)]
struct Centroids {
    classes: ClassVocab,
    means: Array2<f32>,
    bias: Array1<f32>,
}

impl Probe for CentroidProbe {
    fn fit(&self, data: &Dataset<'_>, _cx: &RunContext) -> Result<Box<dyn TrainedProbe>> {
        let train = data.split(lca_core::data::Split::Train);
        let mut means = Array2::<f32>::zeros((data.n_classes(), data.n_neurons()));
        let mut counts = vec![0f32; data.n_classes()];
        for (row, &y) in train.acts.view().axis_iter(Axis(0)).zip(train.labels) {
            let mut m = means.row_mut(y as usize);
            m += &row;
            counts[y as usize] += 1.0;
        }
        for (mut m, c) in means.axis_iter_mut(Axis(0)).zip(&counts) {
            m /= c.max(1.0);
        }
        Ok(Box::new(Centroids {
            classes: data.classes().clone(),
            means,
            bias: Array1::zeros(data.n_classes()),
        }))
    }

    /// Takes the start as its centroids: what crossed the boundary shows.
    fn fit_from(
        &self,
        data: &Dataset<'_>,
        start: &WarmStart,
        _cx: &RunContext,
    ) -> Result<Box<dyn TrainedProbe>> {
        Ok(Box::new(Centroids {
            classes: data.classes().clone(),
            means: start.weights.clone(),
            bias: start.bias.clone(),
        }))
    }

    fn restore(&self, state: &[u8]) -> Result<Box<dyn TrainedProbe>> {
        let (names, shape, values): (Vec<String>, (usize, usize), Vec<f32>) =
            serde_json::from_slice(state).map_err(|e| Error::input(e.to_string()))?;
        let means =
            Array2::from_shape_vec(shape, values).map_err(|e| Error::input(e.to_string()))?;
        Ok(Box::new(Centroids {
            classes: ClassVocab::in_order(names)?,
            bias: Array1::zeros(means.nrows()),
            means,
        }))
    }
}

impl TrainedProbe for Centroids {
    fn classes(&self) -> &ClassVocab {
        &self.classes
    }
    fn n_features(&self) -> usize {
        self.means.ncols()
    }
    fn predict_proba(&self, x: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        if x.ncols() != self.n_features() {
            return Err(Error::input("wrong width"));
        }
        let scores = x.dot(&self.means.t());
        Ok(scores.mapv(f32::exp) / scores.mapv(f32::exp).sum_axis(Axis(1)).insert_axis(Axis(1)))
    }
    fn weights(&self) -> Option<ArrayView2<'_, f32>> {
        Some(self.means.view())
    }
    fn bias(&self) -> Option<ArrayView1<'_, f32>> {
        Some(self.bias.view())
    }
    fn details(&self) -> serde_json::Value {
        serde_json::json!({ "kind": "centroid" })
    }
    fn state(&self) -> Option<Vec<u8>> {
        let values: Vec<f32> = self.means.iter().copied().collect();
        serde_json::to_vec(&(self.classes.names(), self.means.dim(), values)).ok()
    }
}

/// Retrains the given probe spec and reports its training accuracy.
#[derive(Debug)]
struct RetrainEvaluator;

impl Evaluator for RetrainEvaluator {
    fn evaluate(&self, input: &EvalInput<'_>, cx: &RunContext) -> Result<Evaluation> {
        let mut e = Evaluation::default();
        let mut t = Table::new("retrain", &["probe", "accuracy", "top ranking"]);
        for p in &input.probes {
            let fresh = p.spec.fit(input.data, cx)?;
            let train = input.data.split(lca_core::data::Split::Train);
            let predicted = fresh.predict_blocks(&train.acts)?;
            let trained_pred = p.trained.predict_blocks(&train.acts)?;
            assert_eq!(predicted, trained_pred, "retrained probe differs");
            let acc = predicted
                .iter()
                .zip(train.labels)
                .filter(|(a, b)| a == b)
                .count() as f64
                / train.labels.len() as f64;
            let top = input
                .rankings
                .first()
                .map(|r| r.ranking.order()[0] as i64)
                .unwrap_or(-1);
            t.push(vec![Cell::from(p.id.as_str()), acc.into(), top.into()]);
            e.metrics.insert(format!("accuracy.{}", p.id), acc);
        }
        e.tables.push(t);
        Ok(e)
    }
}

#[derive(Debug)]
struct PlantedSource;

impl ActivationSource for PlantedSource {
    fn load(&self, _cx: &RunContext) -> Result<Dataset<'static>> {
        Ok(planted(120, 10, 3, 1, 4))
    }
}

fn who() -> Who {
    Who::host("test component")
}

#[test]
fn ranker_round_trip_matches_native_and_passes_conformance() {
    let data = planted(200, 12, 3, 2, 1);
    let cx = RunContext::new(3, 1);
    let native = MeanRanker.rank(&RankInput::new(&data), &cx).unwrap();
    let foreign = ForeignRanker::new(ranker_to_ffi(Box::new(MeanRanker)), who());
    assert_eq!(foreign.rank(&RankInput::new(&data), &cx).unwrap(), native);
    check_ranker(&foreign, RankerTraits::default()).unwrap();
}

/// Reverses its first input ranking: a ranker that reads other rankings.
#[derive(Debug)]
struct Reverse;

impl Ranker for Reverse {
    fn rank(&self, input: &RankInput<'_>, _cx: &RunContext) -> Result<NeuronRanking> {
        let first = input
            .rankings
            .first()
            .ok_or_else(|| Error::input("needs a ranking"))?;
        let mut order = first.ranking.order().to_vec();
        order.reverse();
        let mut details = serde_json::Map::new();
        details.insert("source_ranking".into(), first.id.into());
        Ok(NeuronRanking::from_order(order)?.with_details(details))
    }
}

#[test]
fn rankings_and_details_cross_into_a_ranker() {
    let data = planted(40, 6, 2, 1, 1);
    let base = NeuronRanking::from_order(vec![3, 1, 4, 0, 5, 2]).unwrap();
    let foreign = ForeignRanker::new(ranker_to_ffi(Box::new(Reverse)), who());
    let input = RankInput::new(&data).with_rankings(vec![lca_core::NamedRanking {
        id: "base",
        ranking: &base,
    }]);
    let reversed = foreign.rank(&input, &RunContext::new(0, 1)).unwrap();
    assert_eq!(reversed.order(), &[2, 5, 0, 4, 1, 3]);
    assert_eq!(reversed.details()["source_ranking"], "base");
}

#[test]
fn reconfigure_errors_cross_the_boundary() {
    let spec = ForeignProbe::new(probe_to_ffi(Arc::new(CentroidProbe)), who());
    let changes: lca_core::toml::Table = "l1 = 0.5".parse().unwrap();
    let err = spec.reconfigure(&changes).unwrap_err().to_string();
    assert!(
        err.contains("cannot be reconfigured (asked to change l1)"),
        "{err}"
    );
}

#[test]
fn panics_become_errors() {
    let data = planted(50, 5, 2, 1, 1);
    let foreign = ForeignRanker::new(ranker_to_ffi(Box::new(Panicking)), who());
    let err = foreign
        .rank(&RankInput::new(&data), &RunContext::new(0, 1))
        .unwrap_err();
    assert!(matches!(err, Error::Panicked { .. }), "{err}");
    assert!(err.to_string().contains("deliberate test panic"), "{err}");
}

#[test]
fn probe_and_evaluator_round_trip() {
    let data = planted(200, 8, 3, 1, 2);
    let cx = RunContext::new(0, 1);
    let spec: Arc<dyn Probe> = Arc::new(ForeignProbe::new(
        probe_to_ffi(Arc::new(CentroidProbe)),
        who(),
    ));
    let trained: SharedProbe = Arc::from(spec.fit(&data, &cx).unwrap());
    let native = CentroidProbe.fit(&data, &cx).unwrap();
    assert_eq!(trained.weights().unwrap(), native.weights().unwrap());
    assert_eq!(trained.bias().unwrap().len(), 3);
    assert_eq!(trained.details()["kind"], "centroid");
    let x = data.acts().view();
    assert_eq!(
        trained.predict(x.view()).unwrap(),
        native.predict(x.view()).unwrap()
    );
    lca_core::run::check_probe(trained.as_ref(), &data).unwrap();

    // The host's probes cross into a plugin evaluator, which retrains them.
    let ranking = NeuronRanking::from_order((0..8).rev().collect()).unwrap();
    let evaluator = ForeignEvaluator::new(evaluator_to_ffi(Box::new(RetrainEvaluator)), who());
    let input = EvalInput::new(&data)
        .with_rankings(vec![NamedRanking {
            id: "r",
            ranking: &ranking,
        }])
        .with_probes(vec![ProbeInput {
            id: "centroid".into(),
            spec,
            trained,
        }]);
    let e = evaluator.evaluate(&input, &cx).unwrap();
    assert!(e.metrics["accuracy.centroid"] > 0.5, "{e:?}");
    assert_eq!(e.tables[0].rows[0][2], Cell::Int(7));
}

#[test]
fn a_warm_start_crosses_the_boundary_intact() {
    let data = planted(60, 5, 3, 1, 2);
    let start = WarmStart {
        weights: Array2::from_shape_fn((3, 5), |(k, j)| (k * 10 + j) as f32 - 7.5),
        bias: Array1::from(vec![0.25, -1.0, 3.5]),
    };
    let foreign = ForeignProbe::new(probe_to_ffi(Arc::new(CentroidProbe)), who());
    let trained = foreign
        .fit_from(&data, &start, &RunContext::new(0, 1))
        .unwrap();
    assert_eq!(trained.weights().unwrap(), start.weights.view());
    assert_eq!(trained.bias().unwrap(), start.bias.view());
}

#[test]
fn a_probe_stored_and_restored_across_the_boundary_predicts_the_same() {
    let data = planted(150, 6, 3, 1, 2);
    let cx = RunContext::new(0, 1);
    let spec = ForeignProbe::new(probe_to_ffi(Arc::new(CentroidProbe)), who());
    let trained = spec.fit(&data, &cx).unwrap();
    let state = trained.state().expect("the centroid probe stores itself");
    let restored = spec.restore(&state).unwrap();
    let x = data.acts().view();
    assert_eq!(
        restored.predict_proba(x.view()).unwrap(),
        trained.predict_proba(x.view()).unwrap()
    );
    assert_eq!(restored.weights(), trained.weights());
    assert_eq!(restored.classes(), trained.classes());
    // Bad bytes are the plugin's error, carried back, not a crash.
    let err = spec.restore(b"not a state").unwrap_err().to_string();
    assert!(err.contains("expected"), "{err}");
}

#[test]
fn source_round_trip() {
    let foreign = ForeignSource::new(source_to_ffi(Box::new(PlantedSource)), who());
    let cx = RunContext::new(0, 1);
    let d = foreign.load(&cx).unwrap();
    let native = PlantedSource.load(&cx).unwrap();
    assert_eq!(d.acts().view(), native.acts().view());
    assert_eq!(d.truth(), native.truth());
}
