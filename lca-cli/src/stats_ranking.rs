//! Rankings from merged store statistics (`lca store rank`, and
//! `lca.store.rank` in Python): every method that reads only the data,
//! computed from the sufficient statistics of `lca store stats`.

use anyhow::{Result, bail};
use lca_core::NeuronRanking;
use lca_core::data::iou_ranking;
use lca_store::StatsFile;

/// How to rank from statistics, beyond the method.
#[derive(Clone, Debug)]
pub struct StatsRanking {
    /// `correlation`: rank by the signed correlation instead of its size.
    pub signed: bool,
    /// `iou`: the IoU above which a neuron counts as a detector of a class.
    pub detector_iou: f64,
    /// `gaussian`: neurons to select greedily.
    pub steps: usize,
    /// `gaussian`: ignore covariances between neurons.
    pub diagonal: bool,
    /// `average_precision`: rank by this class's AP instead of the best.
    pub positive: Option<String>,
}

/// The methods [`rank_statistics`] knows.
pub const METHODS: [&str; 5] = [
    "correlation",
    "probeless",
    "iou",
    "gaussian",
    "average_precision",
];

/// Ranks every neuron of `file` by `method`, constant neurons last as in a
/// run.
///
/// # Errors
/// When the method is unknown, the statistics lack what it reads, or they
/// are degenerate for it.
pub fn rank_statistics(
    file: &StatsFile,
    method: &str,
    options: &StatsRanking,
) -> Result<NeuronRanking> {
    let ranking = match method {
        "correlation" => file.stats.correlation_ranking(options.signed),
        "probeless" => file.stats.probeless_ranking(),
        "gaussian" => {
            let Some(moments) = &file.gaussian else {
                bail!(
                    "these statistics hold no Gaussian moments, which the gaussian method ranks \
                     by: compute statistics with `--gaussian-neurons` (the same neurons, rows \
                     and seed for every shard range) and merge them over every shard"
                );
            };
            gaussian_ranking(moments, file.neurons.len(), options.steps, options.diagonal)
        }
        "average_precision" => {
            let Some(histograms) = &file.average_precision else {
                bail!(
                    "these statistics hold no average-precision histograms, which the \
                     average_precision method ranks by: compute statistics with `--ap-bits` \
                     (the same bits and threshold for every shard range) and merge them"
                );
            };
            average_precision_ranking(histograms, options.positive.as_deref())
        }
        "iou" => {
            let Some(iou) = &file.iou_masks else {
                bail!(
                    "these statistics hold no IoU mask counts, which the iou method ranks by: \
                     compute statistics with `--iou-quantile`, merge them over every shard, \
                     then compute statistics again with `--iou-thresholds <merged file>` and \
                     merge those"
                );
            };
            iou_ranking(
                iou.counts.iou_scores(),
                &iou.counts.classes,
                iou.quantile,
                options.detector_iou,
            )
        }
        _ => bail!(
            "`{method}` is not a method that ranks from statistics; use one of {}",
            METHODS.join(", ")
        ),
    }?;
    // As in a run: a neuron constant on the rows counted says nothing,
    // whatever its score, so it goes last.
    Ok(match file.stats.constant_neurons() {
        Some(constant) => ranking.with_uninformative_last(&constant),
        None => ranking,
    })
}

/// The Gaussian ranking of all `d` neurons from merged moments: the
/// candidates in the order of the greedy selection, then the others in
/// index order.
fn gaussian_ranking(
    moments: &lca_core::data::GaussianMoments,
    d: usize,
    steps: usize,
    diagonal: bool,
) -> lca_core::Result<lca_core::NeuronRanking> {
    let classes = moments.class_rows.iter().filter(|&&n| n > 0).count();
    lca_linear::gaussian::ensure_residuals_fit(classes, moments.sample.size, moments.k())?;
    let steps = steps.min(moments.k());
    let selection =
        lca_linear::gaussian::greedy_selection_from_moments(moments, steps, diagonal, &|| false)?
            .expect("never stopped");
    let among = selection.ranking(moments.k(), diagonal)?;
    let mut order: Vec<u32> = among
        .order()
        .iter()
        .map(|&i| moments.neurons[i as usize] as u32)
        .collect();
    let mut candidate = vec![false; d];
    for &j in &moments.neurons {
        candidate[j] = true;
    }
    order.extend((0..d as u32).filter(|&j| !candidate[j as usize]));
    let mut details = among.details().clone();
    details.insert("candidates".into(), moments.k().into());
    details.insert(
        "selected_neurons".into(),
        order[..selection.selected.len()].to_vec().into(),
    );
    Ok(lca_core::NeuronRanking::from_order(order)?.with_details(details))
}

/// The `iou_neurox` ranker's ranking from merged histograms: the AP of the
/// binned values per class, overall the `positive` class's or the best,
/// with the bounds on the exact overall AP of each neuron in the details.
fn average_precision_ranking(
    histograms: &lca_core::data::ApHistograms,
    positive: Option<&str>,
) -> lca_core::Result<lca_core::NeuronRanking> {
    let names = &histograms.classes;
    let positive = match positive {
        None => None,
        Some(name) => Some(names.iter().position(|c| c == name).ok_or_else(|| {
            lca_core::Error::input(format!(
                "--positive names class `{name}`, which these statistics do not have; their \
                 classes are {}",
                names.join(", ")
            ))
        })?),
    };
    if histograms.class_rows.iter().filter(|&&n| n > 0).count() < 2 {
        return Err(lca_core::Error::input(
            "average precision needs rows of at least two classes, and these statistics count \
             fewer"
                .to_string(),
        ));
    }
    let scores = histograms.scores();
    let d = histograms.neurons.len();
    let ranking = lca_core::data::average_precision_ranking(
        scores.ap.clone(),
        names,
        positive,
        histograms.threshold,
    )?;
    // The bounds of the class each neuron's overall score is of.
    let overall = ranking.scores().expect("a ranking by scores").to_vec();
    let class_of = |j: usize| -> usize {
        positive.unwrap_or_else(|| {
            (0..names.len())
                .find(|&c| scores.ap[c][j] == overall[j])
                .unwrap_or(0)
        })
    };
    let (lower, upper): (Vec<f64>, Vec<f64>) = (0..d)
        .map(|j| {
            let c = class_of(j);
            (scores.lower[c][j], scores.upper[c][j])
        })
        .unzip();
    let widest = lower
        .iter()
        .zip(&upper)
        .map(|(l, u)| u - l)
        .fold(0.0f64, f64::max);
    let mut details = ranking.details().clone();
    details.insert("bits".into(), histograms.bits.into());
    details.insert("exact_at_least".into(), lower.into());
    details.insert("exact_at_most".into(), upper.into());
    details.insert("widest_bound".into(), widest.into());
    Ok(ranking.with_details(details))
}
