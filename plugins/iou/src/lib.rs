//! Two rankers that compare a neuron's activations with each class's tokens.
//!
//! **`iou`**: Network Dissection (Bau et al. 2017) and compositional
//! explanations (Mu & Andreas 2020). Each neuron *j* is binarised at its own
//! top quantile α over the training tokens, and the mask is compared with
//! each class's tokens:
//!
//! ```text
//! T_j   = the k-th largest activation of neuron j, k = max(1, ⌈α·N⌉)
//! M_j   = { t : x_tj ≥ T_j }                 (ties at T_j are all kept)
//! L_c   = { t : y_t = c }
//! IoU_cj = |M_j ∩ L_c| / |M_j ∪ L_c|
//!
//! per-class score  IoU_cj
//! overall score    max_c IoU_cj              (the neuron's best concept)
//! ```
//!
//! The ranking's details count, per class, the neurons whose best concept
//! it is with IoU above `detector_iou` (0.04 in Network Dissection).
//!
//! **`iou_neurox`**: what NeuroX's `iou_probe` ranker computes, which is
//! average precision, not IoU. Activations with |x| < `threshold` count as
//! 0 (on a copy: the input is never modified, unlike NeuroX), then each
//! neuron's activations rank the tokens and
//!
//! ```text
//! AP_cj = Σ_k (R_k − R_{k−1}) · P_k
//! ```
//!
//! over the distinct activation values in descending order, with P_k and
//! R_k the precision and recall for class *c* of the tokens at or above the
//! k-th value (scikit-learn's `average_precision_score`). NeuroX accepts
//! only two classes and scores the class named `1`; here `positive` names
//! the class the overall score uses, and without it the overall score is
//! max_c AP_cj (one-vs-rest for any number of classes).
//!
//! Both use the training split, and break ties by the lower neuron index.
//!
//! A neuron with a single value on the training split (a dead or constant
//! unit) scores 0 for every class, as does an `iou` mask that holds every
//! token: such a neuron separates nothing. This differs from NeuroX, which
//! gives a single-valued neuron the class's frequency as its AP.

use lca_core::data::{
    MaskCounts, RowBlocks, Split, TopValues, average_precision_ranking, gather_columns,
    iou_ranking, mask_size,
};
use lca_core::ndarray::{ArrayView2, Axis};
use lca_core::params::Params as _;
use lca_core::registry::{ComponentInfo, ComponentKind, Descriptor, Inputs, applied};
use lca_core::{Component, Error, NeuronRanking, RankInput, Ranker, Result, RunContext};
use rayon::prelude::*;
const IOU: &str = "iou";
const IOU_NEUROX: &str = "iou_neurox";

lca_core::params! {
    /// Parameters of `iou`.
    struct IouParams {
        /// fraction of each neuron's highest activations that form its mask
        /// (Network Dissection's 0.005)
        quantile: f64 = 0.005 => range(0.0..=1.0).and(above(0.0)),
        /// a neuron whose best IoU exceeds this is counted as a detector of
        /// that class in the details
        detector_iou: f64 = 0.04 => range(0.0..=1.0),
    }
}

lca_core::params! {
    /// Parameters of `iou_neurox`.
    struct NeuroxParams {
        /// activations with |x| below this count as 0 (as NeuroX does)
        threshold: f64 = 0.05 => range(0.0..),
        /// score only this class overall, as NeuroX scores class `1` of a
        /// binary task; by default the best class
        positive: Option<String> = None => Rule::note("a class name"),
    }
}

/// The `iou` descriptor.
pub fn iou_descriptor() -> Descriptor {
    Descriptor {
        info: ComponentInfo {
            kind: ComponentKind::Ranker,
            name: IOU.into(),
            summary: "Network Dissection IoU of each neuron's top-quantile mask with each class (max over classes)".into(),
            params: IouParams::docs(),
            example: "[ranker.iou]\ntype = \"iou\"\nsource = \"planted\"\nquantile = 0.05\n".into(),
            inputs: Inputs::default(),
        },
        build: |table| {
            let p = IouParams::parse(IOU, table)?;
            Ok(Component::Ranker(Box::new(IouRanker {
                quantile: p.quantile,
                detector_iou: p.detector_iou,
            })))
        },
        applied: applied::<IouParams>,
    }
}

/// The `iou_neurox` descriptor.
pub fn neurox_descriptor() -> Descriptor {
    Descriptor {
        info: ComponentInfo {
            kind: ComponentKind::Ranker,
            name: IOU_NEUROX.into(),
            summary: "NeuroX's \"IoU\" ranker as it really is: average precision of each neuron's activations per class".into(),
            params: NeuroxParams::docs(),
            example: "[ranker.ap]\ntype = \"iou_neurox\"\nsource = \"planted\"\n".into(),
            inputs: Inputs::default(),
        },
        build: |table| {
            let p = NeuroxParams::parse(IOU_NEUROX, table)?;
            Ok(Component::Ranker(Box::new(AveragePrecisionRanker {
                threshold: p.threshold,
                positive: p.positive,
            })))
        },
        applied: applied::<NeuroxParams>,
    }
}

/// Network Dissection IoU.
#[derive(Clone, Debug)]
pub struct IouRanker {
    /// Top fraction of activations in each neuron's mask.
    pub quantile: f64,
    /// IoU above which a neuron counts as a detector of its best class.
    pub detector_iou: f64,
}

impl Default for IouRanker {
    fn default() -> Self {
        let p = IouParams::defaults().expect("every parameter has a default");
        IouRanker {
            quantile: p.quantile,
            detector_iou: p.detector_iou,
        }
    }
}

/// NeuroX's average-precision ranker.
#[derive(Clone, Debug)]
pub struct AveragePrecisionRanker {
    /// |x| below this counts as 0.
    pub threshold: f64,
    /// The class scored overall; `None` means the best class.
    pub positive: Option<String>,
}

impl Default for AveragePrecisionRanker {
    fn default() -> Self {
        let p = NeuroxParams::defaults().expect("every parameter has a default");
        AveragePrecisionRanker {
            threshold: p.threshold,
            positive: p.positive,
        }
    }
}

/// IoU of every neuron's top-`quantile` mask with every class:
/// `scores[c][j]`. Two passes over row blocks (the top values, then the
/// mask counts), the same statistics `lca store stats` computes per shard,
/// so a matrix mapped from a store larger than memory is read sequentially
/// and merged shard statistics give these scores exactly.
///
/// # Errors
/// When `labels` do not match the rows or name a class beyond `n_classes`.
pub fn iou_scores(
    x: impl RowBlocks,
    labels: &[u32],
    n_classes: usize,
    quantile: f64,
) -> Result<Vec<Vec<f64>>> {
    let classes = (0..n_classes).map(|c| c.to_string()).collect();
    let (rows, cols) = x.shape();
    if rows == 0 {
        return Ok(vec![vec![0.0; cols]; n_classes]);
    }
    let top = TopValues::of_matrix(mask_size(quantile, rows), &x);
    let thresholds = top.thresholds().expect("the matrix has rows");
    Ok(MaskCounts::of_matrix(classes, thresholds, &x, labels)?.iou_scores())
}

/// Average precision of every neuron's activations (|x| < `threshold` read
/// as 0) for every class against the rest: `scores[c][j]`. A class without
/// tokens scores 0.
pub fn average_precision_scores(
    x: ArrayView2<'_, f32>,
    labels: &[u32],
    n_classes: usize,
    threshold: f64,
) -> Vec<Vec<f64>> {
    transpose(
        average_precision_columns(x, labels, n_classes, threshold),
        n_classes,
    )
}

/// Bytes of activations a group of neurons may take in
/// [`average_precision_in_groups`].
const GROUP_BYTES: usize = 64 << 20;

/// [`average_precision_scores`] of a matrix read a block of rows at a time:
/// the neurons are taken a group at a time, each group's columns gathered
/// in one pass over the rows. A neuron's values are sorted whole, so this
/// holds one group's columns, never the matrix; reading the columns of a
/// row-major matrix straight from a store larger than memory would bring
/// every page in once per neuron.
pub fn average_precision_in_groups(
    x: &impl RowBlocks,
    labels: &[u32],
    n_classes: usize,
    threshold: f64,
) -> Vec<Vec<f64>> {
    let (rows, cols) = x.shape();
    let group = (GROUP_BYTES / (4 * rows.max(1))).clamp(1, cols.max(1));
    average_precision_in_groups_of(x, labels, n_classes, threshold, group)
}

fn average_precision_in_groups_of(
    x: &impl RowBlocks,
    labels: &[u32],
    n_classes: usize,
    threshold: f64,
    group: usize,
) -> Vec<Vec<f64>> {
    let cols = x.shape().1;
    let mut columns = Vec::with_capacity(cols);
    for first in (0..cols).step_by(group) {
        let neurons: Vec<usize> = (first..(first + group).min(cols)).collect();
        let gathered = gather_columns(x, &neurons);
        columns.extend(average_precision_columns(
            gathered.view(),
            labels,
            n_classes,
            threshold,
        ));
    }
    transpose(columns, n_classes)
}

/// Each column's average precision for every class: `scores[j][c]`.
fn average_precision_columns(
    x: ArrayView2<'_, f32>,
    labels: &[u32],
    n_classes: usize,
    threshold: f64,
) -> Vec<Vec<f64>> {
    let counts = lca_core::data::count_classes(labels, n_classes);
    x.axis_iter(Axis(1))
        .into_par_iter()
        .map(|column| {
            let mut rows: Vec<(f32, u32)> = column
                .iter()
                .zip(labels)
                .map(|(&v, &y)| {
                    (
                        if f64::from(v.abs()) < threshold {
                            0.0
                        } else {
                            v
                        },
                        y,
                    )
                })
                .collect();
            rows.sort_by(|a, b| b.0.total_cmp(&a.0));
            let mut ap = vec![0.0f64; n_classes];
            // A single value ranks no token above another: its AP would be
            // each class's frequency, which says nothing about the neuron.
            if rows.first().map(|r| r.0) == rows.last().map(|r| r.0) {
                return ap;
            }
            let mut true_pos = vec![0usize; n_classes];
            let mut start = 0;
            while start < rows.len() {
                // One step of the curve per distinct value.
                let mut end = start;
                while end < rows.len() && rows[end].0 == rows[start].0 {
                    true_pos[rows[end].1 as usize] += 1;
                    end += 1;
                }
                let gained = &rows[start..end];
                let seen = end;
                let mut touched = vec![false; n_classes];
                for &(_, y) in gained {
                    touched[y as usize] = true;
                }
                for c in (0..n_classes).filter(|&c| touched[c]) {
                    let in_step = gained.iter().filter(|r| r.1 as usize == c).count();
                    let recall_gain = in_step as f64 / counts[c] as f64;
                    ap[c] += recall_gain * true_pos[c] as f64 / seen as f64;
                }
                start = end;
            }
            ap
        })
        .collect()
}

fn transpose(columns: Vec<Vec<f64>>, n_classes: usize) -> Vec<Vec<f64>> {
    (0..n_classes)
        .map(|c| columns.iter().map(|col| col[c]).collect())
        .collect()
}

impl Ranker for IouRanker {
    fn rank(&self, input: &RankInput<'_>, cx: &RunContext) -> Result<NeuronRanking> {
        let data = input.data;
        data.require_two_train_classes()?;
        let train = data.split(Split::Train);
        let per_class =
            cx.install(|| iou_scores(&train.acts, train.labels, data.n_classes(), self.quantile))?;
        iou_ranking(
            per_class,
            data.classes().names(),
            self.quantile,
            self.detector_iou,
        )
    }
}

impl Ranker for AveragePrecisionRanker {
    fn rank(&self, input: &RankInput<'_>, cx: &RunContext) -> Result<NeuronRanking> {
        let data = input.data;
        data.require_two_train_classes()?;
        let names = data.classes().names();
        let positive = match &self.positive {
            None => None,
            Some(name) => Some(names.iter().position(|c| c == name).ok_or_else(|| {
                Error::input(format!(
                    "{IOU_NEUROX}: `positive` names class `{name}`, which the data does not have; its classes are {}",
                    names.join(", ")
                ))
            })?),
        };
        let train = data.split(Split::Train);
        let per_class = cx.install(|| {
            average_precision_in_groups(&train.acts, train.labels, data.n_classes(), self.threshold)
        });
        average_precision_ranking(per_class, names, positive, self.threshold)
    }
}

lca_plugins::export_plugin! {
    name: "lca-plugin-iou",
    version: env!("CARGO_PKG_VERSION"),
    components: [iou_descriptor(), neurox_descriptor()],
}

#[cfg(test)]
mod tests {
    use super::*;
    use lca_core::ndarray::Array2;
    use lca_testkit::{RankerTraits, check_ranker, planted, planted_precision};

    /// Average precision straight from its definition: precision at every
    /// positive token, counting every token whose value is at least its own.
    fn slow_average_precision(values: &[f32], positive: &[bool]) -> f64 {
        let total = positive.iter().filter(|&&p| p).count() as f64;
        values
            .iter()
            .zip(positive)
            .filter(|&(_, &p)| p)
            .map(|(&v, _)| {
                let at_or_above: Vec<bool> = values
                    .iter()
                    .zip(positive)
                    .filter(|&(&w, _)| w >= v)
                    .map(|(_, &p)| p)
                    .collect();
                at_or_above.iter().filter(|&&p| p).count() as f64 / at_or_above.len() as f64
            })
            .sum::<f64>()
            / total
    }

    fn slow_iou(values: &[f32], members: &[bool], quantile: f64) -> f64 {
        let mut sorted = values.to_vec();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let k = ((quantile * values.len() as f64).ceil() as usize).max(1);
        let threshold = sorted[k - 1];
        let mask: Vec<bool> = values.iter().map(|&v| v >= threshold).collect();
        let inter = mask.iter().zip(members).filter(|&(&m, &c)| m && c).count();
        let union = mask.iter().zip(members).filter(|&(&m, &c)| m || c).count();
        inter as f64 / union as f64
    }

    #[test]
    fn hand_computed_iou() {
        // 10 tokens, quantile 0.3: each mask is the top 3 values.
        let x = Array2::from_shape_vec(
            (10, 2),
            vec![
                9.0, 0.0, 8.0, 1.0, 7.0, 2.0, 1.0, 3.0, 2.0, 4.0, 3.0, 5.0, 0.0, 6.0, 0.0, 7.0,
                0.0, 8.0, 0.0, 9.0,
            ],
        )
        .unwrap();
        let y = [1, 1, 1, 0, 0, 0, 0, 0, 0, 1];
        let s = iou_scores(x.view(), &y, 2, 0.3).unwrap();
        // Neuron 0: mask {0,1,2}; class 1 = {0,1,2,9}: 3 / 4. Class 0: 0 / 9.
        // Neuron 1: mask {7,8,9}; class 1: {9} → 1 / 6; class 0: {7,8} → 2 / 7.
        assert_eq!(s[1], vec![0.75, 1.0 / 6.0]);
        assert_eq!(s[0], vec![0.0, 2.0 / 7.0]);
    }

    #[test]
    fn average_precision_in_groups_matches_the_whole_matrix() {
        let data = planted(300, 10, 3, 1, 31);
        let train = data.split(Split::Train);
        let whole = average_precision_scores(train.acts.view().view(), train.labels, 3, 0.3);
        for group in [1, 3, 4, 100] {
            let grouped = average_precision_in_groups_of(&train.acts, train.labels, 3, 0.3, group);
            assert_eq!(grouped, whole, "groups of {group}");
        }
        assert_eq!(
            average_precision_in_groups(&train.acts, train.labels, 3, 0.3),
            whole
        );
    }

    #[test]
    fn iou_and_average_precision_match_their_definitions() {
        let data = planted(300, 12, 3, 1, 4);
        let train = data.split(Split::Train);
        let acts = train.acts.view();
        let iou = iou_scores(acts.view(), train.labels, 3, 0.1).unwrap();
        let ap = average_precision_scores(acts.view(), train.labels, 3, 0.3);
        for c in 0..3u32 {
            let members: Vec<bool> = train.labels.iter().map(|&y| y == c).collect();
            for j in 0..12 {
                let column: Vec<f32> = acts.column(j).to_vec();
                let want = slow_iou(&column, &members, 0.1);
                assert!((iou[c as usize][j] - want).abs() < 1e-12, "iou {c} {j}");
                let zeroed: Vec<f32> = column
                    .iter()
                    .map(|&v| if v.abs() < 0.3 { 0.0 } else { v })
                    .collect();
                let want = slow_average_precision(&zeroed, &members);
                assert!((ap[c as usize][j] - want).abs() < 1e-12, "ap {c} {j}");
            }
        }
    }

    #[test]
    fn both_recover_planted_neurons() {
        let data = planted(4000, 150, 4, 2, 8);
        let cx = RunContext::new(1, 1);
        let iou = IouRanker {
            quantile: 0.05,
            ..IouRanker::default()
        }
        .rank(&RankInput::new(&data), &cx)
        .unwrap();
        assert_eq!(planted_precision(&iou, &data), 1.0);
        let ap = AveragePrecisionRanker::default()
            .rank(&RankInput::new(&data), &cx)
            .unwrap();
        assert_eq!(planted_precision(&ap, &data), 1.0);
        let detectors = &iou.details()["detectors_per_class"];
        let total: u64 = detectors
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert!(total >= 8, "{detectors}");
    }

    #[test]
    fn pass_conformance() {
        check_ranker(&IouRanker::default(), RankerTraits::default()).unwrap();
        check_ranker(
            &IouRanker {
                quantile: 0.2,
                detector_iou: 0.0,
            },
            RankerTraits::default(),
        )
        .unwrap();
        check_ranker(&AveragePrecisionRanker::default(), RankerTraits::default()).unwrap();
    }

    #[test]
    fn an_unknown_positive_class_is_an_error_naming_the_classes() {
        let data = planted(100, 5, 2, 1, 1);
        let err = AveragePrecisionRanker {
            positive: Some("nope".into()),
            ..AveragePrecisionRanker::default()
        }
        .rank(&RankInput::new(&data), &RunContext::new(0, 1))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("`nope`") && err.contains("classes are"),
            "{err}"
        );
    }
}
