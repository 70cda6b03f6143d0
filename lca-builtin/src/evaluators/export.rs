//! `neurox_export`: writes a source's activations, words and labels as
//! NeuroX files, so NeuroX (or anything that reads its formats) can work on
//! exactly the data `lca` analysed.

use std::path::PathBuf;

use crate::neurox::{dataset_sentences, whole_layers, write_json, write_sentences_and_labels};
use lca_core::component::{Component, EvalInput, Evaluator};
use lca_core::context::RunContext;
use lca_core::data::{Cell, Evaluation, Table};
use lca_core::error::{Error, Result};
use lca_core::params::Params as _;
use lca_core::registry::{ComponentInfo, ComponentKind, Descriptor, Inputs, applied};

const NAME: &str = "neurox_export";

lca_core::params! {
    /// Parameters of `neurox_export`.
    struct Params {
        /// the NeuroX JSON-lines activations to write; `<stem>.sentences.txt`
        /// and `<stem>.labels.txt` are written beside it
        path: PathBuf => Rule::new(
            "a file name ending in .json (NeuroX picks the reader by extension)",
            |p: &PathBuf| p.extension().is_some_and(|e| e == "json"),
        ),
    }
}

pub(super) fn descriptor() -> Descriptor {
    Descriptor {
        info: ComponentInfo {
            kind: ComponentKind::Evaluator,
            name: NAME.into(),
            summary: "Writes a source's activations, sentences and labels in NeuroX's formats".into(),
            params: Params::docs(),
            example: "[evaluator.export]\ntype = \"neurox_export\"\nsource = \"minilm\"\npath = \"exports/minilm.json\"\n".into(),
            inputs: Inputs::default(),
        },
        build: |table| {
            let p = Params::parse(NAME, table)?;
            Ok(Component::Evaluator(Box::new(NeuroxExport { path: p.path })))
        },
        applied: applied::<Params>,
    }
}

/// Writes NeuroX files.
#[derive(Clone, Debug)]
pub struct NeuroxExport {
    path: PathBuf,
}

impl Evaluator for NeuroxExport {
    fn evaluate(&self, input: &EvalInput<'_>, _cx: &RunContext) -> Result<Evaluation> {
        let data = input.data;
        let (layers, hidden) = whole_layers(data.neurons()).ok_or_else(|| {
            Error::input(format!(
                "source `{}` does not hold whole layers in layer-major order, which NeuroX files need",
                data.name()
            ))
        })?;
        let sentences = dataset_sentences(data)?;
        let acts = data.acts().view();
        let blocks: Vec<_> = sentences
            .iter()
            .map(|(rows, words)| (*words, acts.slice(ndarray::s![rows.clone(), ..])))
            .collect();
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io("create folder", dir, e))?;
        }
        write_json(&self.path, &layers, hidden, &blocks)?;
        let (sentences_path, labels_path) =
            write_sentences_and_labels(data, &sentences, &self.path)?;

        let mut evaluation = Evaluation::default();
        evaluation
            .metrics
            .insert("sentences".into(), sentences.len() as f64);
        evaluation
            .metrics
            .insert("tokens".into(), data.n_rows() as f64);
        let mut table = Table::new("NeuroX files written", &["file", "holds"]);
        table.push(vec![
            Cell::from(self.path.display().to_string()),
            Cell::from(format!(
                "activations of {} layers × {hidden} units",
                layers.len()
            )),
        ]);
        table.push(vec![
            Cell::from(sentences_path.display().to_string()),
            Cell::from("one sentence per line"),
        ]);
        table.push(vec![
            Cell::from(labels_path.display().to_string()),
            Cell::from("one label per word, aligned"),
        ]);
        evaluation.tables.push(table);
        evaluation.notes.push(format!(
            "{} sentences in the source's row order (train, then dev, then test). NeuroX reads them with \
             load_activations(\"{}\") and load_data(sentences, labels, activations, 512).",
            sentences.len(),
            self.path.display()
        ));
        Ok(evaluation)
    }
}
