//! `report.html`: one self-contained page (inline CSS and SVG, no scripts,
//! no network) drawn from the results alone, so `lca report` can redraw it.
//!
//! Sections, each with a fixed id so tools and tests can find them:
//! `summary`, `accuracy`, `layers`, `agreement`, `class-top`, `neurons`,
//! `tables`, `provenance`. A section with nothing to show says so.

use std::fmt::Write as _;

use lca_core::data::{Cell, Figure, Plot, Split};
use lca_core::run::Results;

use crate::number::number;

/// Categorical colours (colour-blind friendly, after Okabe & Ito, plus greys).
const PALETTE: [&str; 10] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000",
    "#882255", "#44AA99",
];

const STYLE: &str = r#"
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; margin: 0; background: #fafafa; }
header { background: #1d3557; color: white; padding: 18px 32px; }
header h1 { margin: 0 0 4px 0; font-size: 24px; }
header p { margin: 0; opacity: .85; }
nav { position: sticky; top: 0; background: #e9eef5; padding: 8px 32px; border-bottom: 1px solid #cfd8e3; z-index: 1; }
nav a { margin-right: 18px; color: #1d3557; text-decoration: none; font-weight: 600; }
main { padding: 8px 32px 48px 32px; max-width: 1200px; }
section { margin-top: 28px; }
h2 { border-bottom: 2px solid #1d3557; padding-bottom: 4px; }
h3 { margin-bottom: 6px; }
figure { display: inline-block; margin: 8px 16px 16px 0; background: white; border: 1px solid #ddd; border-radius: 6px; padding: 8px; vertical-align: top; }
figcaption { font-weight: 600; margin-bottom: 4px; max-width: 680px; }
table { border-collapse: collapse; margin: 6px 0 14px 0; background: white; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th { background: #f0f3f7; text-align: center; }
td.text, th.text { text-align: left; }
details { margin: 6px 0; }
summary { cursor: pointer; font-weight: 600; }
p.empty { color: #777; font-style: italic; }
p.sentence { background: white; border: 1px solid #eee; padding: 6px 8px; margin: 4px 0; line-height: 2; }
p.sentence span { padding: 2px 3px; border-radius: 3px; }
.note { color: #555; font-size: 13px; }
svg text { font-family: system-ui, sans-serif; }
"#;

/// Escapes text for HTML and SVG.
fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn cell_text(c: &Cell) -> (String, bool) {
    match c {
        Cell::Int(i) => (i.to_string(), false),
        Cell::Float(f) => (number(*f), false),
        Cell::Text(t) => (esc(t), true),
        Cell::Empty => (String::new(), false),
    }
}

fn html_table(out: &mut String, columns: &[String], rows: &[Vec<Cell>]) {
    out.push_str("<table><tr>");
    for c in columns {
        let _ = write!(out, "<th>{}</th>", esc(c));
    }
    out.push_str("</tr>");
    for row in rows {
        out.push_str("<tr>");
        for c in row {
            let (text, is_text) = cell_text(c);
            let class = if is_text { " class=\"text\"" } else { "" };
            let _ = write!(out, "<td{class}>{text}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>\n");
}

/// Round tick values covering `[lo, hi]`.
fn ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    if hi <= lo {
        return vec![lo];
    }
    let raw = (hi - lo) / target.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

/// Ticks for a log axis: 1, 2, 5 times powers of ten inside `[lo, hi]`.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut out = Vec::new();
    let mut p = 10f64.powf(lo.log10().floor());
    while p <= hi * 1.0001 {
        for m in [1.0, 2.0, 5.0] {
            let v = p * m;
            if v >= lo * 0.9999 && v <= hi * 1.0001 {
                out.push(v);
            }
        }
        p *= 10.0;
    }
    out
}

/// Colours for the series of one figure: the methods take the palette in
/// the order they are listed (every figure of a recipe lists them in the
/// same order, so a method keeps its colour), baselines are grey.
struct Colours {
    names: Vec<String>,
}

impl Colours {
    fn for_series<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        Colours {
            names: names
                .into_iter()
                .filter(|n| !Self::is_baseline(n))
                .map(String::from)
                .collect(),
        }
    }

    fn is_baseline(name: &str) -> bool {
        name.starts_with("random") || name == "all neurons"
    }

    fn of(&self, name: &str) -> &'static str {
        if Self::is_baseline(name) {
            return "#8a8a8a";
        }
        let slot = self.names.iter().position(|n| n == name).unwrap_or(0);
        PALETTE[slot % PALETTE.len()]
    }
}

fn lines_svg(
    x_label: &str,
    y_label: &str,
    x_log: bool,
    series: &[lca_core::data::Series],
    colours: &Colours,
) -> String {
    let (w, h, left, right, top, bottom) = (720.0, 380.0, 62.0, 190.0, 16.0, 50.0);
    let points = || series.iter().flat_map(|s| s.points.iter());
    let xs: Vec<f64> = points()
        .map(|p| p.0)
        .filter(|x| !x_log || *x > 0.0)
        .collect();
    let ys: Vec<f64> = points().map(|p| p.1).collect();
    if xs.is_empty() {
        return "<p class=\"empty\">No points.</p>".into();
    }
    let (mut x0, mut x1) = (
        xs.iter().copied().fold(f64::INFINITY, f64::min),
        xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    if x1 <= x0 {
        x1 = x0 + 1.0;
        if x_log {
            x0 /= 2.0;
        }
    }
    let y_lo = ys.iter().copied().fold(f64::INFINITY, f64::min);
    let y_hi = ys.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (mut y0, mut y1) = ((y_lo * 10.0).floor() / 10.0, (y_hi * 10.0).ceil() / 10.0);
    if y1 <= y0 {
        y0 -= 0.1;
        y1 += 0.1;
    }
    let tx = |x: f64| {
        let f = if x_log {
            (x.ln() - x0.ln()) / (x1.ln() - x0.ln())
        } else {
            (x - x0) / (x1 - x0)
        };
        left + f * (w - left - right)
    };
    let ty = |y: f64| top + (1.0 - (y - y0) / (y1 - y0)) * (h - top - bottom);
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\">"
    );
    // Grid and axes.
    for t in ticks(y0, y1, 6) {
        let y = ty(t);
        let _ = write!(
            s,
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#e5e5e5\"/><text x=\"{}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{}</text>",
            w - right,
            left - 6.0,
            y + 4.0,
            number(t)
        );
    }
    let xt = if x_log {
        log_ticks(x0, x1)
    } else {
        ticks(x0, x1, 7)
    };
    for t in xt {
        let x = tx(t);
        let _ = write!(
            s,
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{top}\" y2=\"{}\" stroke=\"#f0f0f0\"/><text x=\"{x:.1}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{}</text>",
            h - bottom,
            h - bottom + 16.0,
            number(t)
        );
    }
    let _ = write!(
        s,
        "<rect x=\"{left}\" y=\"{top}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#999\"/>",
        w - left - right,
        h - top - bottom
    );
    let _ = write!(
        s,
        "<text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\">{}{}</text>",
        left + (w - left - right) / 2.0,
        h - 12.0,
        esc(x_label),
        if x_log { " (log scale)" } else { "" }
    );
    let _ = write!(
        s,
        "<text transform=\"translate(16 {}) rotate(-90)\" font-size=\"12\" text-anchor=\"middle\">{}</text>",
        top + (h - top - bottom) / 2.0,
        esc(y_label)
    );
    for (i, series) in series.iter().enumerate() {
        let reference = series.name == "all neurons";
        let stroke = colours.of(&series.name);
        let dash = if reference {
            " stroke-dasharray=\"6 4\""
        } else if series.name == "random" {
            " stroke-dasharray=\"2 3\""
        } else {
            ""
        };
        let path: Vec<String> = series
            .points
            .iter()
            .filter(|p| !x_log || p.0 > 0.0)
            .map(|&(x, y)| format!("{:.1},{:.1}", tx(x), ty(y)))
            .collect();
        let _ = write!(
            s,
            "<polyline fill=\"none\" stroke=\"{stroke}\" stroke-width=\"2\"{dash} points=\"{}\"/>",
            path.join(" ")
        );
        if !reference {
            for &(x, y) in series.points.iter().filter(|p| !x_log || p.0 > 0.0) {
                let _ = write!(
                    s,
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{stroke}\"><title>{}: {} neurons, {}</title></circle>",
                    tx(x),
                    ty(y),
                    esc(&series.name),
                    number(x),
                    number(y)
                );
            }
        }
        let ly = top + 14.0 + 18.0 * i as f64;
        let lx = w - right + 12.0;
        let _ = write!(
            s,
            "<line x1=\"{lx}\" x2=\"{}\" y1=\"{ly}\" y2=\"{ly}\" stroke=\"{stroke}\" stroke-width=\"2\"{dash}/><text x=\"{}\" y=\"{}\" font-size=\"12\">{}</text>",
            lx + 22.0,
            lx + 28.0,
            ly + 4.0,
            esc(&series.name)
        );
    }
    s.push_str("</svg>");
    s
}

fn bars_svg(
    y_label: &str,
    categories: &[String],
    series: &[lca_core::data::BarSeries],
    colours: &Colours,
) -> String {
    let (left, right, top, bottom, h) = (56.0, 190.0, 16.0, 60.0, 340.0);
    let group = (series.len() as f64 * 14.0 + 12.0).max(40.0);
    let w = left + right + group * categories.len().max(1) as f64;
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .fold(0.0, f64::max);
    let y1 = if max > 0.0 {
        ticks(0.0, max, 5)
            .last()
            .copied()
            .filter(|t| *t >= max)
            .unwrap_or(max * 1.1)
    } else {
        1.0
    };
    let ty = |v: f64| top + (1.0 - v / y1) * (h - top - bottom);
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w:.0}\" height=\"{h}\" viewBox=\"0 0 {w:.0} {h}\" role=\"img\">"
    );
    for t in ticks(0.0, y1, 5) {
        let y = ty(t);
        let _ = write!(
            s,
            "<line x1=\"{left}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#e5e5e5\"/><text x=\"{}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{}</text>",
            w - right,
            left - 6.0,
            y + 4.0,
            number(t)
        );
    }
    let bar = ((group - 12.0) / series.len().max(1) as f64).min(24.0);
    for (c, category) in categories.iter().enumerate() {
        let gx = left + group * c as f64 + 6.0;
        for (i, series) in series.iter().enumerate() {
            let v = series.values[c];
            let x = gx + bar * i as f64;
            let y = ty(v);
            let _ = write!(
                s,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{} · {}: {}</title></rect>",
                bar - 1.0,
                ty(0.0) - y,
                colours.of(&series.name),
                esc(&series.name),
                esc(category),
                number(v)
            );
        }
        let _ = write!(
            s,
            "<text transform=\"translate({:.1} {}) rotate(-35)\" font-size=\"11\" text-anchor=\"end\">{}</text>",
            gx + group / 2.0 - 6.0,
            h - bottom + 14.0,
            esc(category)
        );
    }
    let _ = write!(
        s,
        "<line x1=\"{left}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#999\"/>",
        w - right,
        ty(0.0),
        ty(0.0)
    );
    let _ = write!(
        s,
        "<text transform=\"translate(14 {}) rotate(-90)\" font-size=\"12\" text-anchor=\"middle\">{}</text>",
        top + (h - top - bottom) / 2.0,
        esc(y_label)
    );
    for (i, series) in series.iter().enumerate() {
        let ly = top + 10.0 + 18.0 * i as f64;
        let lx = w - right + 14.0;
        let _ = write!(
            s,
            "<rect x=\"{lx:.1}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\">{}</text>",
            ly - 6.0,
            colours.of(&series.name),
            lx + 18.0,
            ly + 4.0,
            esc(&series.name)
        );
    }
    s.push_str("</svg>");
    s
}

/// A colour from light yellow through green to dark blue for `f` in [0, 1].
fn sequential(f: f64) -> String {
    const STOPS: [(f64, f64, f64); 5] = [
        (255.0, 255.0, 217.0),
        (199.0, 233.0, 180.0),
        (65.0, 182.0, 196.0),
        (34.0, 94.0, 168.0),
        (8.0, 29.0, 88.0),
    ];
    let f = f.clamp(0.0, 1.0) * (STOPS.len() - 1) as f64;
    let i = (f.floor() as usize).min(STOPS.len() - 2);
    let t = f - i as f64;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    let mix = |p: f64, q: f64| (p + (q - p) * t).round() as u8;
    format!(
        "#{:02x}{:02x}{:02x}",
        mix(a.0, b.0),
        mix(a.1, b.1),
        mix(a.2, b.2)
    )
}

fn heatmap_svg(
    rows: &[String],
    columns: &[String],
    values: &[Vec<f64>],
    min: f64,
    max: f64,
) -> String {
    let label = rows
        .iter()
        .chain(columns)
        .map(|r| r.chars().count())
        .max()
        .unwrap_or(4) as f64
        * 7.0
        + 12.0;
    let cell = 44.0;
    let (w, h) = (
        label + cell * columns.len() as f64 + 8.0,
        label + cell * rows.len() as f64 + 8.0,
    );
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w:.0}\" height=\"{h:.0}\" viewBox=\"0 0 {w:.0} {h:.0}\" role=\"img\">"
    );
    for (c, name) in columns.iter().enumerate() {
        let x = label + cell * c as f64 + cell / 2.0;
        let _ = write!(
            s,
            "<text transform=\"translate({x:.1} {:.1}) rotate(-45)\" font-size=\"11\">{}</text>",
            label - 6.0,
            esc(name)
        );
    }
    for (r, name) in rows.iter().enumerate() {
        let y = label + cell * r as f64;
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{}</text>",
            label - 6.0,
            y + cell / 2.0 + 4.0,
            esc(name)
        );
        for (c, &v) in values[r].iter().enumerate() {
            let f = if max > min {
                (v - min) / (max - min)
            } else {
                0.5
            };
            let x = label + cell * c as f64;
            let ink = if f > 0.55 { "white" } else { "#222" };
            let _ = write!(
                s,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{cell}\" height=\"{cell}\" fill=\"{}\" stroke=\"white\"><title>{} · {}: {}</title></rect><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\" fill=\"{ink}\">{:.2}</text>",
                sequential(f),
                esc(name),
                esc(&columns[c]),
                number(v),
                x + cell / 2.0,
                y + cell / 2.0 + 4.0,
                v
            );
        }
    }
    s.push_str("</svg>");
    s
}

fn text_heat(sentences: &[Vec<(String, f64)>], scale: f64) -> String {
    let mut s = String::new();
    for sentence in sentences {
        s.push_str("<p class=\"sentence\">");
        for (word, v) in sentence {
            let alpha = if scale > 0.0 {
                (v.abs() / scale).min(1.0)
            } else {
                0.0
            };
            let rgb = if *v >= 0.0 { "214,39,40" } else { "31,119,180" };
            let _ = write!(
                s,
                "<span style=\"background: rgba({rgb},{alpha:.2})\" title=\"{}\">{}</span> ",
                number(*v),
                esc(word)
            );
        }
        s.push_str("</p>\n");
    }
    s.push_str("<p class=\"note\">Red: positive activation, blue: negative; the stronger the colour, the larger |activation| relative to the largest shown.</p>");
    s
}

fn figure(out: &mut String, f: &Figure) {
    let _ = write!(out, "<figure><figcaption>{}</figcaption>", esc(&f.title));
    match &f.plot {
        Plot::Lines {
            x_label,
            y_label,
            x_log,
            series,
        } => out.push_str(&lines_svg(
            x_label,
            y_label,
            *x_log,
            series,
            &Colours::for_series(series.iter().map(|s| s.name.as_str())),
        )),
        Plot::Bars {
            y_label,
            categories,
            series,
        } => out.push_str(&bars_svg(
            y_label,
            categories,
            series,
            &Colours::for_series(series.iter().map(|s| s.name.as_str())),
        )),
        Plot::Heatmap {
            rows,
            columns,
            values,
            min,
            max,
        } => out.push_str(&heatmap_svg(rows, columns, values, *min, *max)),
        Plot::Text {
            sentences, scale, ..
        } => out.push_str(&text_heat(sentences, *scale)),
    }
    out.push_str("</figure>\n");
}

/// Every figure of the run for one report section, in recipe order.
fn figures_for<'r>(r: &'r Results, section: &str) -> Vec<(&'r str, &'r Figure)> {
    crate::report::in_recipe_order(r, &r.evaluations)
        .into_iter()
        .flat_map(|(id, e)| {
            e.evaluation
                .figures
                .iter()
                .filter(move |f| f.section == section)
                .map(move |f| (id.as_str(), f))
        })
        .collect()
}

const SECTIONS: [(&str, &str); 9] = [
    ("summary", "Summary"),
    ("findings", "Findings"),
    ("accuracy", "Accuracy against neurons"),
    ("layers", "Layer distribution"),
    ("agreement", "Agreement between methods"),
    ("class-top", "Top neurons per class"),
    ("neurons", "Neurons up close"),
    ("tables", "All tables"),
    ("provenance", "Provenance"),
];

fn figure_section(out: &mut String, r: &Results, section: &str, empty: &str) {
    let figures = figures_for(r, section);
    if figures.is_empty() {
        let _ = write!(out, "<p class=\"empty\">{empty}</p>");
    }
    for (_, f) in figures {
        figure(out, f);
    }
}

/// The whole page.
pub fn html(r: &Results) -> String {
    let mut out = String::with_capacity(64 * 1024);
    head(&mut out, r);
    summary_section(&mut out, r);
    findings_section(&mut out, r);
    for (id, title, empty) in FIGURE_SECTIONS {
        let _ = write!(out, "<section id=\"{id}\"><h2>{title}</h2>");
        figure_section(&mut out, r, id, empty);
        out.push_str("</section>");
    }
    class_top_section(&mut out, r);
    neurons_section(&mut out, r);
    tables_section(&mut out, r);
    provenance_section(&mut out, r);
    out.push_str("</main></body></html>\n");
    out
}

/// The sections drawn from evaluators' figures: id, title, and what to say
/// when the run has none.
const FIGURE_SECTIONS: [(&str, &str, &str); 3] = [
    (
        "accuracy",
        "Accuracy against neurons",
        "No accuracy curves in this run: add an `accuracy_curve` evaluator.",
    ),
    (
        "layers",
        "Layer distribution",
        "No layer distributions in this run: add a `layer_distribution` evaluator.",
    ),
    (
        "agreement",
        "Agreement between methods",
        "No agreement measures in this run: add a `ranking_overlap` evaluator over two or more rankings.",
    ),
];

/// The document head, the title block and the navigation.
fn head(out: &mut String, r: &Results) {
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{}</title><style>{STYLE}</style></head><body>",
        esc(&r.recipe.name)
    );
    let _ = write!(
        out,
        "<header><h1>{}</h1><p>{}Seed {}, lca {}, {} threads, {:.1} s.</p></header>",
        esc(&r.recipe.name),
        r.recipe
            .description
            .as_deref()
            .map(|d| format!("{} · ", esc(d)))
            .unwrap_or_default(),
        r.seed,
        esc(&r.provenance.lca_version),
        r.provenance.threads,
        r.provenance.total_seconds
    );
    out.push_str("<nav>");
    for (id, title) in SECTIONS {
        let _ = write!(out, "<a href=\"#{id}\">{title}</a>");
    }
    out.push_str("</nav><main>");
}

/// Sources and probes at a glance.
fn summary_section(out: &mut String, r: &Results) {
    out.push_str("<section id=\"summary\"><h2>Summary</h2>");
    let source_rows: Vec<Vec<Cell>> = r
        .sources
        .values()
        .map(|s| {
            vec![
                Cell::from(s.name.as_str()),
                s.tokens.into(),
                s.neurons.into(),
                s.layers.len().into(),
                s.classes.len().into(),
                Cell::from(format!(
                    "{} / {} / {}",
                    s.splits.train, s.splits.dev, s.splits.test
                )),
            ]
        })
        .collect();
    html_table(
        out,
        &[
            "source",
            "tokens",
            "neurons",
            "layers",
            "classes",
            "train / dev / test",
        ]
        .map(String::from),
        &source_rows,
    );
    for s in r.sources.values().filter(|s| !s.details.is_empty()) {
        let _ = write!(
            out,
            "<details><summary>Source {} details</summary>",
            esc(&s.name)
        );
        let rows: Vec<Vec<Cell>> = s
            .details
            .iter()
            .map(|(k, v)| vec![Cell::from(k.as_str()), Cell::from(v.as_str())])
            .collect();
        html_table(out, &["detail", "value"].map(String::from), &rows);
        out.push_str("</details>");
    }
    if !r.probes.is_empty() {
        let rows: Vec<Vec<Cell>> = r
            .probes
            .iter()
            .map(|(id, p)| {
                let acc = |s| p.accuracy.get(&s).map_or(Cell::Empty, |v| Cell::Float(*v));
                vec![
                    Cell::from(id.as_str()),
                    Cell::from(p.type_name.as_str()),
                    Cell::from(p.source.as_str()),
                    acc(Split::Train),
                    acc(Split::Dev),
                    acc(Split::Test),
                ]
            })
            .collect();
        html_table(
            out,
            &[
                "probe",
                "type",
                "source",
                "train accuracy",
                "dev accuracy",
                "test accuracy",
            ]
            .map(String::from),
            &rows,
        );
    }
    out.push_str("</section>");
}

/// The paper's claims, case by case, and whether they held.
fn findings_section(out: &mut String, r: &Results) {
    out.push_str("<section id=\"findings\"><h2>Findings</h2>");
    let findings = crate::findings::findings(r);
    if findings.is_empty() {
        out.push_str("<p class=\"empty\">This run has none of the evaluations that test the paper's findings (ablation, minimal_subset, layer_distribution on a lexical and a POS task).</p>");
    }
    for f in &findings {
        let (mark, colour) = if f.held == f.checked {
            ("✔", "#1a7f37")
        } else if f.held == 0 {
            ("✘", "#b42318")
        } else {
            ("◐", "#9a6700")
        };
        let verdict = f.verdict();
        let _ = write!(
            out,
            "<p><span style=\"color: {colour}; font-weight: 700\">{mark} {verdict}:</span> {}</p><ul class=\"note\">",
            esc(&f.claim)
        );
        for line in &f.evidence {
            let _ = write!(out, "<li>{}</li>", esc(line));
        }
        out.push_str("</ul>");
    }
    out.push_str("</section>");
}

/// The first neurons of each class, for rankings that rank per class.
fn class_top_section(out: &mut String, r: &Results) {
    out.push_str("<section id=\"class-top\"><h2>Top neurons per class</h2>");
    let with_classes: Vec<_> = crate::report::in_recipe_order(r, &r.rankings)
        .into_iter()
        .filter(|(_, k)| !k.class_top.is_empty())
        .collect();
    if with_classes.is_empty() {
        out.push_str("<p class=\"empty\">No ranking in this run ranks neurons per class.</p>");
    }
    for (id, ranking) in with_classes {
        let _ = write!(
            out,
            "<h3>{} <span class=\"note\">({} on {})</span></h3>",
            esc(id),
            esc(&ranking.type_name),
            esc(&ranking.source)
        );
        let rows: Vec<Vec<Cell>> = ranking
            .class_top
            .iter()
            .map(|(class, ids)| {
                vec![
                    Cell::from(class.as_str()),
                    Cell::from(
                        ids.iter()
                            .take(10)
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", "),
                    ),
                ]
            })
            .collect();
        html_table(
            out,
            &["class", "top neurons (layer:unit)"].map(String::from),
            &rows,
        );
    }
    out.push_str("</section>");
}

/// Top words and activations of chosen neurons.
fn neurons_section(out: &mut String, r: &Results) {
    out.push_str("<section id=\"neurons\"><h2>Neurons up close</h2>");
    let mut any = false;
    for (id, e) in crate::report::in_recipe_order(r, &r.evaluations) {
        if e.type_name != "top_words" {
            continue;
        }
        any = true;
        let _ = write!(out, "<h3>{}</h3>", esc(id));
        for t in &e.evaluation.tables {
            let _ = write!(out, "<details open><summary>{}</summary>", esc(&t.title));
            html_table(out, &t.columns, &t.rows);
            out.push_str("</details>");
        }
        for f in e
            .evaluation
            .figures
            .iter()
            .filter(|f| f.section == "neurons")
        {
            figure(out, f);
        }
    }
    if !any {
        out.push_str(
            "<p class=\"empty\">No neuron is shown up close: add a `top_words` evaluator.</p>",
        );
    }
    out.push_str("</section>");
}

/// Every evaluation's tables, notes and remaining figures.
fn tables_section(out: &mut String, r: &Results) {
    out.push_str("<section id=\"tables\"><h2>All tables</h2>");
    for (id, e) in crate::report::in_recipe_order(r, &r.evaluations) {
        let _ = write!(
            out,
            "<h3>{} <span class=\"note\">({})</span></h3>",
            esc(id),
            esc(&e.type_name)
        );
        for t in &e.evaluation.tables {
            let _ = write!(out, "<details><summary>{}</summary>", esc(&t.title));
            html_table(out, &t.columns, &t.rows);
            out.push_str("</details>");
        }
        for note in &e.evaluation.notes {
            let _ = write!(out, "<p class=\"note\">{}</p>", esc(note));
        }
        for f in e.evaluation.figures.iter().filter(|f| {
            !["accuracy", "layers", "agreement", "neurons"].contains(&f.section.as_str())
        }) {
            figure(out, f);
        }
    }
    out.push_str("</section>");
}

/// Steps, origins, timings and the recipe itself.
fn provenance_section(out: &mut String, r: &Results) {
    out.push_str("<section id=\"provenance\"><h2>Provenance</h2>");
    let rows: Vec<Vec<Cell>> = r
        .steps
        .iter()
        .map(|s| {
            vec![
                Cell::from(s.key.as_str()),
                Cell::from(s.type_name.as_str()),
                Cell::from(
                    r.provenance
                        .origins
                        .get(&s.key)
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                ),
                r.provenance
                    .timings
                    .get(&s.key)
                    .map_or(Cell::Empty, |t| Cell::Float(*t)),
            ]
        })
        .collect();
    html_table(
        out,
        &["step", "type", "origin", "seconds"].map(String::from),
        &rows,
    );
    let _ = write!(
        out,
        "<details><summary>Recipe</summary><pre>{}</pre></details>",
        esc(&r.recipe.text)
    );
    out.push_str("</section>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(
            ticks(0.0, 1.0, 5),
            vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
        );
        assert_eq!(
            log_ticks(5.0, 1000.0),
            vec![5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0]
        );
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(esc("<a & \"b\">"), "&lt;a &amp; &quot;b&quot;&gt;");
    }

    #[test]
    fn the_colour_scale_runs_from_light_to_dark() {
        assert_eq!(sequential(0.0), "#ffffd9");
        assert_eq!(sequential(1.0), "#081d58");
        assert_eq!(sequential(-3.0), "#ffffd9");
    }
}
