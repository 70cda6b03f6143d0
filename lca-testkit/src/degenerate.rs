//! Degenerate datasets, of the kinds users' own files produce: dead and
//! constant neurons, repeated rows, no variation at all, classes with a
//! single example, a dev split with one class, a label per token.
//!
//! Every case is written in split order (train rows first, then dev, then
//! test) with the split sizes alongside, and knows which neurons are
//! constant on its training rows: those must come last in every ranking the
//! engine returns.

use std::io::Write as _;
use std::path::Path;

use lca_core::rng::Rng;
use ndarray::Array2;

/// The kinds of degeneracy a case has (besides constant neurons, which every
/// case has at least one of, unless said otherwise).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Some neurons are constant (zero, or another value), the rest vary.
    ConstantColumns,
    /// Every row appears twice.
    DuplicateRows,
    /// All rows are the same: no neuron varies.
    IdenticalRows,
    /// Every value is zero.
    AllZeros,
    /// Each class has exactly one training row.
    OneRowPerClass,
    /// The dev split holds a single class.
    SingleClassInDev,
    /// Every token has a label of its own.
    AllDistinctLabels,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 7] = [
        Kind::ConstantColumns,
        Kind::DuplicateRows,
        Kind::IdenticalRows,
        Kind::AllZeros,
        Kind::OneRowPerClass,
        Kind::SingleClassInDev,
        Kind::AllDistinctLabels,
    ];
}

/// A degenerate dataset as arrays.
#[derive(Clone, Debug)]
pub struct Case {
    /// Which degeneracy.
    pub kind: Kind,
    /// Rows × neurons, in split order.
    pub acts: Array2<f32>,
    /// Class id per row.
    pub labels: Vec<u32>,
    /// Train, dev and test rows.
    pub splits: [usize; 3],
    /// Neurons constant on the training rows, ascending.
    pub constant: Vec<u32>,
}

/// A case of `kind` with about `rows` training rows and `neurons` neurons
/// (at least 3 of each), drawn from `seed`. Classes are informative through
/// neuron 0 where the kind leaves any variation.
pub fn case(kind: Kind, rows: usize, neurons: usize, seed: u64) -> Case {
    let mut rng = Rng::derived(seed, "degenerate");
    let neurons = neurons.max(3);
    let classes: u32 = match kind {
        Kind::AllDistinctLabels => 0, // set per row below
        _ => 2 + (rng.below(3) as u32),
    };
    let train = match kind {
        Kind::OneRowPerClass => classes as usize,
        _ => rows.max(3),
    };
    let (dev, test) = (train.div_ceil(4).max(2), train.div_ceil(4).max(2));
    let total = train + dev + test;
    let labels: Vec<u32> = (0..total)
        .map(|r| match kind {
            Kind::AllDistinctLabels => r as u32,
            // Pairs of rows share a class, so a row and its copy agree.
            Kind::DuplicateRows => ((r / 2) as u32) % classes,
            Kind::SingleClassInDev if (train..train + dev).contains(&r) => 0,
            _ => (r as u32) % classes,
        })
        .collect();
    let mut acts = Array2::from_shape_fn((total, neurons), |(r, c)| {
        let signal = if c == 0 { labels[r] as f64 } else { 0.0 };
        (signal + rng_value(seed, r, c)) as f32
    });
    match kind {
        Kind::DuplicateRows => {
            // Train row 2k+1 repeats row 2k, whose class it has.
            for r in (1..train).step_by(2) {
                let previous = acts.row(r - 1).to_owned();
                acts.row_mut(r).assign(&previous);
            }
        }
        Kind::IdenticalRows => {
            let first = acts.row(0).to_owned();
            for mut row in acts.rows_mut() {
                row.assign(&first);
            }
        }
        Kind::AllZeros => acts.fill(0.0),
        _ => {}
    }
    finish(kind, acts, labels, [train, dev, test], &mut rng)
}

/// Makes one to a third of the neurons constant (never neuron 0, which
/// carries the classes) and records which are constant on the train rows.
fn finish(
    kind: Kind,
    mut acts: Array2<f32>,
    labels: Vec<u32>,
    splits: [usize; 3],
    rng: &mut Rng,
) -> Case {
    let neurons = acts.ncols();
    let dead = 1 + rng.below((neurons as u64 - 1).div_ceil(3)) as usize;
    let mut candidates: Vec<usize> = (1..neurons).collect();
    rng.shuffle(&mut candidates);
    for (i, &c) in candidates.iter().take(dead).enumerate() {
        // Dead (zero) and saturated (another value) neurons alike.
        let value = if i % 2 == 0 { 0.0 } else { 1.5 };
        acts.column_mut(c).fill(value);
    }
    let constant = lca_core::data::constant_columns(acts.slice(ndarray::s![..splits[0], ..]))
        .iter()
        .enumerate()
        .filter(|(_, is)| **is)
        .map(|(c, _)| c as u32)
        .collect();
    Case {
        kind,
        acts,
        labels,
        splits,
        constant,
    }
}

/// A reproducible value in [-0.5, 0.5) for row `r`, neuron `c`.
fn rng_value(seed: u64, r: usize, c: usize) -> f64 {
    Rng::derived(seed, &format!("{r}/{c}")).uniform() - 0.5
}

impl Case {
    /// Writes the case as an `npy` source reads it: `acts.npy` (float32)
    /// and `labels.txt` (one label per line, `c<id>`) for the training
    /// rows, and `dev.npy`/`dev.txt`, `test.npy`/`test.txt` for the others.
    /// Returns the recipe lines of the source (without its header).
    ///
    /// # Panics
    /// If the folder cannot be written.
    pub fn write_npy_source(&self, dir: &Path) -> String {
        let [train, dev, _] = self.splits;
        let parts = [
            ("acts", 0..train),
            ("dev", train..train + dev),
            ("test", train + dev..self.acts.nrows()),
        ];
        let mut lines = String::from("type = \"npy\"\n");
        for (name, rows) in parts {
            let matrix = self.acts.slice(ndarray::s![rows.clone(), ..]).to_owned();
            let npy = dir.join(format!("{name}.npy"));
            write_npy(&npy, &matrix);
            let text: String = self.labels[rows]
                .iter()
                .map(|y| format!("c{y}\n"))
                .collect();
            let txt = dir.join(format!("{name}.txt"));
            std::fs::write(&txt, text).expect("writes the labels");
            let prefix = if name == "acts" {
                String::new()
            } else {
                format!("{name}_")
            };
            lines.push_str(&format!(
                "{prefix}path = {:?}\n{prefix}labels = {:?}\n",
                npy.display().to_string(),
                txt.display().to_string()
            ));
        }
        lines
    }
}

/// Writes a float32 C-order `.npy` file (format version 1.0).
///
/// # Panics
/// If the file cannot be written.
pub fn write_npy(path: &Path, matrix: &Array2<f32>) {
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}",
        matrix.nrows(),
        matrix.ncols()
    );
    // Magic (6) + version (2) + length (2) + header + newline, to a multiple of 64.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut file = std::fs::File::create(path).expect("creates the matrix file");
    file.write_all(b"\x93NUMPY\x01\x00").expect("writes");
    file.write_all(&(header.len() as u16).to_le_bytes())
        .expect("writes");
    file.write_all(header.as_bytes()).expect("writes");
    for v in matrix.iter() {
        file.write_all(&v.to_le_bytes()).expect("writes");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_what_it_says() {
        for kind in Kind::ALL {
            let c = case(kind, 12, 6, 3);
            let [train, dev, test] = c.splits;
            assert_eq!(train + dev + test, c.acts.nrows(), "{kind:?}");
            assert_eq!(c.labels.len(), c.acts.nrows(), "{kind:?}");
            assert!(!c.constant.is_empty(), "{kind:?}");
            assert!(
                !c.constant.contains(&0) || matches!(kind, Kind::IdenticalRows | Kind::AllZeros)
            );
            match kind {
                Kind::IdenticalRows | Kind::AllZeros => assert_eq!(c.constant.len(), 6),
                Kind::OneRowPerClass => {
                    let mut seen = c.labels[..train].to_vec();
                    seen.sort_unstable();
                    seen.dedup();
                    assert_eq!(seen.len(), train);
                }
                Kind::SingleClassInDev => {
                    assert!(c.labels[train..train + dev].iter().all(|&y| y == 0));
                }
                Kind::AllDistinctLabels => {
                    assert!(c.labels.iter().enumerate().all(|(r, &y)| y == r as u32));
                }
                Kind::DuplicateRows => {
                    assert_eq!(c.acts.row(0), c.acts.row(1));
                    assert_eq!(c.labels[0], c.labels[1]);
                    assert_ne!(c.labels[1], c.labels[2]);
                }
                Kind::ConstantColumns => assert!(c.constant.len() < 6),
            }
        }
        // Reproducible.
        let (a, b) = (
            case(Kind::ConstantColumns, 9, 5, 7),
            case(Kind::ConstantColumns, 9, 5, 7),
        );
        assert_eq!((a.acts, a.constant), (b.acts, b.constant));
    }
}
