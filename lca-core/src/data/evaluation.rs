//! Evaluation results: headline metrics and tables for the report.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What an evaluator produces.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Headline numbers, such as `precision_at_k.corr`.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// Tables, rendered in the report in this order.
    #[serde(default)]
    pub tables: Vec<Table>,
    /// Free-text remarks for readers (caveats, what was skipped).
    #[serde(default)]
    pub notes: Vec<String>,
    /// Figures for the HTML report, drawn from these numbers alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub figures: Vec<Figure>,
}

/// A figure: what to draw, not how (the report renders it as SVG).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    /// Shown above the figure.
    pub title: String,
    /// The section of the report it belongs to (`accuracy`, `layers`,
    /// `agreement`, `neurons`, or anything else for a generic section).
    pub section: String,
    /// The drawing.
    pub plot: Plot,
}

/// The kinds of drawing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Plot {
    /// Lines through points, one per series.
    Lines {
        /// Horizontal axis label.
        x_label: String,
        /// Vertical axis label.
        y_label: String,
        /// Logarithmic horizontal axis.
        #[serde(default)]
        x_log: bool,
        /// The lines.
        series: Vec<Series>,
    },
    /// Grouped bars: one group per category, one bar per series.
    Bars {
        /// Vertical axis label.
        y_label: String,
        /// Group names, left to right.
        categories: Vec<String>,
        /// One value per category in each series.
        series: Vec<BarSeries>,
    },
    /// A matrix of values shown as coloured cells.
    Heatmap {
        /// Row names.
        rows: Vec<String>,
        /// Column names.
        columns: Vec<String>,
        /// `values[row][column]`.
        values: Vec<Vec<f64>>,
        /// The colour scale's ends.
        min: f64,
        /// See `min`.
        max: f64,
    },
    /// Words coloured by one neuron's activation, sentence by sentence.
    Text {
        /// The neuron, as shown to readers.
        neuron: String,
        /// Each sentence as (word, activation) pairs.
        sentences: Vec<Vec<(String, f64)>>,
        /// The largest |activation| (the colour scale's end).
        scale: f64,
    },
}

/// One line of a [`Plot::Lines`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Legend entry.
    pub name: String,
    /// (x, y) points in drawing order.
    pub points: Vec<(f64, f64)>,
}

/// One series of a [`Plot::Bars`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BarSeries {
    /// Legend entry.
    pub name: String,
    /// One value per category.
    pub values: Vec<f64>,
}

impl Figure {
    /// Checks shapes and finiteness.
    ///
    /// # Errors
    /// Names the figure and what is wrong.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::input(format!("figure `{}`: {what}", self.title)));
        let finite = |v: f64| v.is_finite();
        match &self.plot {
            Plot::Lines { series, .. } => {
                for s in series {
                    if !s.points.iter().all(|&(x, y)| finite(x) && finite(y)) {
                        return bad(format!("series `{}` has a non-finite point", s.name));
                    }
                }
            }
            Plot::Bars {
                categories, series, ..
            } => {
                for s in series {
                    if s.values.len() != categories.len() {
                        return bad(format!(
                            "series `{}` has {} values for {} categories",
                            s.name,
                            s.values.len(),
                            categories.len()
                        ));
                    }
                    if !s.values.iter().copied().all(finite) {
                        return bad(format!("series `{}` has a non-finite value", s.name));
                    }
                }
            }
            Plot::Heatmap {
                rows,
                columns,
                values,
                min,
                max,
            } => {
                if values.len() != rows.len() || values.iter().any(|r| r.len() != columns.len()) {
                    return bad(format!("values are not {} × {}", rows.len(), columns.len()));
                }
                if !values.iter().flatten().copied().all(finite) || !finite(*min) || !finite(*max) {
                    return bad("a value is not finite".into());
                }
            }
            Plot::Text {
                sentences, scale, ..
            } => {
                if !finite(*scale) || !sentences.iter().flatten().all(|(_, v)| finite(*v)) {
                    return bad("an activation is not finite".into());
                }
            }
        }
        Ok(())
    }
}

/// A titled table with named columns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Table {
    /// Shown above the table.
    pub title: String,
    /// Column headers.
    pub columns: Vec<String>,
    /// Rows, each with one cell per column.
    pub rows: Vec<Vec<Cell>>,
}

/// One table cell.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Cell {
    /// An integer.
    Int(i64),
    /// A real number.
    Float(f64),
    /// Text.
    Text(String),
    /// Nothing to show.
    Empty,
}

impl From<i64> for Cell {
    fn from(v: i64) -> Self {
        Cell::Int(v)
    }
}

impl From<usize> for Cell {
    fn from(v: usize) -> Self {
        Cell::Int(v as i64)
    }
}

impl From<f64> for Cell {
    fn from(v: f64) -> Self {
        Cell::Float(v)
    }
}

impl From<&str> for Cell {
    fn from(v: &str) -> Self {
        Cell::Text(v.to_string())
    }
}

impl From<String> for Cell {
    fn from(v: String) -> Self {
        Cell::Text(v)
    }
}

impl Table {
    /// An empty table with the given columns.
    pub fn new(title: impl Into<String>, columns: &[&str]) -> Self {
        Table {
            title: title.into(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row.
    pub fn push(&mut self, row: Vec<Cell>) {
        self.rows.push(row);
    }
}

impl Evaluation {
    /// Checks that tables are rectangular and numbers finite (JSON has no NaN).
    ///
    /// # Errors
    /// Names the table, row and column of the first problem.
    pub fn validate(&self) -> Result<()> {
        if let Some((name, v)) = self.metrics.iter().find(|(_, v)| !v.is_finite()) {
            return Err(Error::input(format!(
                "metric `{name}` is {v}; metrics must be finite"
            )));
        }
        for table in &self.tables {
            for (r, row) in table.rows.iter().enumerate() {
                if row.len() != table.columns.len() {
                    return Err(Error::input(format!(
                        "table `{}` row {r} has {} cells for {} columns",
                        table.title,
                        row.len(),
                        table.columns.len()
                    )));
                }
                if let Some((c, Cell::Float(v))) = row
                    .iter()
                    .enumerate()
                    .find(|(_, cell)| matches!(cell, Cell::Float(v) if !v.is_finite()))
                {
                    return Err(Error::input(format!(
                        "table `{}` row {r}, column `{}` is {v}; numbers must be finite",
                        table.title, table.columns[c]
                    )));
                }
            }
        }
        for figure in &self.figures {
            figure.validate()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_round_trip_through_json() {
        let row = vec![
            Cell::Int(3),
            Cell::Float(0.5),
            Cell::Text("x".into()),
            Cell::Empty,
        ];
        let json = serde_json::to_string(&row).unwrap();
        assert_eq!(json, r#"[3,0.5,"x",null]"#);
        let back: Vec<Cell> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, row);
    }

    #[test]
    fn ragged_tables_and_nan_are_rejected() {
        let mut e = Evaluation::default();
        let mut t = Table::new("t", &["a", "b"]);
        t.push(vec![Cell::Int(1)]);
        e.tables.push(t);
        assert!(
            e.validate()
                .unwrap_err()
                .to_string()
                .contains("row 0 has 1 cells for 2 columns")
        );
        let mut e = Evaluation::default();
        e.metrics.insert("m".into(), f64::NAN);
        assert!(e.validate().is_err());
    }
}
