//! `neurox_hdf5_export`: writes a source's activations as a NeuroX HDF5
//! file, with the sentence and label files beside it, in the layout the
//! `neurox_hdf5` source reads (see the crate's notes): one `[layers, words,
//! hidden]` float32 dataset per sentence, named by its position, and
//! `sentence_to_index` mapping each sentence's text to that name, repeated
//! sentences suffixed ` (Occurrence k)` from k = 2 as NeuroX does.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr as _;

use hdf5_metno as hdf5;
use lca_builtin::neurox::export_neurox;
use lca_core::component::{EvalInput, Evaluator};
use lca_core::data::Evaluation;
use lca_core::ndarray::{Array3, ArrayView2};
use lca_core::params::Params as _;
use lca_core::registry::{ComponentInfo, ComponentKind, Descriptor, Inputs, applied};
use lca_core::{Component, Error, Result, RunContext};

const NAME: &str = "neurox_hdf5_export";

lca_core::params! {
    /// Parameters of `neurox_hdf5_export`.
    struct Params {
        /// the NeuroX HDF5 activations to write; `<stem>.sentences.txt` and
        /// `<stem>.labels.txt` are written beside it
        path: PathBuf => Rule::new(
            "a file name ending in .hdf5 (NeuroX picks the reader by extension)",
            |p: &PathBuf| p.extension().is_some_and(|e| e == "hdf5"),
        ),
    }
}

/// The component descriptor.
pub(crate) fn descriptor() -> Descriptor {
    Descriptor {
        info: ComponentInfo {
            kind: ComponentKind::Evaluator,
            name: NAME.into(),
            summary: "Writes a source's activations, sentences and labels as NeuroX HDF5 files".into(),
            params: Params::docs(),
            example: "[evaluator.export]\ntype = \"neurox_hdf5_export\"\nsource = \"minilm\"\npath = \"exports/minilm.hdf5\"\n".into(),
            inputs: Inputs::default(),
        },
        build: |table| {
            let p = Params::parse(NAME, table)?;
            Ok(Component::Evaluator(Box::new(HdfExport { path: p.path })))
        },
        applied: applied::<Params>,
    }
}

#[derive(Clone, Debug)]
struct HdfExport {
    path: PathBuf,
}

/// `sentence_to_index` keys: the words joined by spaces, repeats numbered.
fn sentence_keys<'a>(sentences: impl Iterator<Item = &'a [String]>) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    sentences
        .map(|words| {
            let text = words.join(" ");
            let count = seen.entry(text.clone()).or_insert(0);
            *count += 1;
            if *count == 1 {
                text
            } else {
                format!("{text} (Occurrence {count})")
            }
        })
        .collect()
}

/// Writes the HDF5 file under a temporary name and renames it.
fn write_hdf5(
    path: &Path,
    layers: &[u32],
    hidden: usize,
    sentences: &[(&[String], ArrayView2<'_, f32>)],
) -> Result<()> {
    let layers = layers.len();
    let keys = sentence_keys(sentences.iter().map(|(words, _)| *words));
    let h5 = |e: hdf5::Error| {
        Error::format(
            path,
            None,
            format!("the HDF5 library could not write it: {e}"),
        )
    };
    lca_core::io::write_atomic_at(path, |temp| {
        let _in_library = crate::IN_LIBRARY
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let file = hdf5::File::create(temp).map_err(h5)?;
        // Written by hand: NeuroX reads the object in its stored order, and
        // a JSON map would sort the keys.
        let mut json = String::from("{");
        for (i, (key, (_, rows))) in keys.iter().zip(sentences).enumerate() {
            // [words, layers·hidden] → [layers, words, hidden].
            let words = rows.nrows();
            let block = Array3::from_shape_fn((layers, words, hidden), |(l, t, h)| {
                rows[[t, l * hidden + h]]
            });
            file.new_dataset_builder()
                .with_data(&block)
                .create(i.to_string().as_str())
                .map_err(h5)?;
            if i > 0 {
                json.push_str(", ");
            }
            json.push_str(&serde_json::Value::from(key.as_str()).to_string());
            json.push_str(&format!(": \"{i}\""));
        }
        json.push('}');
        let text = hdf5::types::VarLenUnicode::from_str(&json).map_err(|e| {
            Error::input(format!(
                "a sentence of {} cannot be stored in HDF5: {e}",
                path.display()
            ))
        })?;
        file.new_dataset_builder()
            .with_data(&[text])
            .create("sentence_to_index")
            .map_err(h5)?;
        file.close().map_err(h5)
    })
}

impl Evaluator for HdfExport {
    fn evaluate(&self, input: &EvalInput<'_>, _cx: &RunContext) -> Result<Evaluation> {
        export_neurox(input.data, &self.path, write_hdf5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_sentences_are_numbered_from_two() {
        let a = ["a".to_string(), "b".to_string()];
        let c = ["c".to_string()];
        let keys = sentence_keys([&a[..], &c[..], &a[..], &a[..]].into_iter());
        assert_eq!(
            keys,
            ["a b", "c", "a b (Occurrence 2)", "a b (Occurrence 3)"]
        );
    }
}
