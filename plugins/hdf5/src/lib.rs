//! The `neurox_hdf5` source: activations from NeuroX's HDF5 files.
//!
//! A NeuroX HDF5 file holds one dataset per sentence, named `"0"`, `"1"`, …,
//! of shape `[layers, words, hidden]`, and a dataset `sentence_to_index`:
//! one string holding a JSON object from sentence text to dataset name.
//! Like NeuroX, sentences are read in the order of that object, and each
//! block is flattened to `[words, layers·hidden]` (column = layer position ×
//! hidden + unit). The file does not record which layers were stored, so
//! files written with NeuroX's `filter_layers` or `decompose_layers` name
//! them with the `layers` parameter.
//!
//! This plugin links the system HDF5 library (`scripts/install-system-deps.sh`
//! installs it); everything else about NeuroX files is in `lca-core`.

use std::path::Path;

use hdf5_metno as hdf5;
use lca_core::ndarray::{Array2, Array3};
use lca_core::neurox::{
    NeuroxActivations, NeuroxSource, SentenceActivations, relabel_layers, source_param_docs,
};
use lca_core::params::parse_params;
use lca_core::registry::{ComponentInfo, ComponentKind, Descriptor, Inputs};
use lca_core::{Component, Error, Result};
use serde::de::{Deserializer, MapAccess, Visitor};

const NAME: &str = "neurox_hdf5";

/// The component descriptor.
pub fn descriptor() -> Descriptor {
    Descriptor {
        info: ComponentInfo {
            kind: ComponentKind::Source,
            name: NAME.into(),
            summary: "Activations from a NeuroX HDF5 file, with its sentence and label files".into(),
            params: source_param_docs("HDF5"),
            example: "[source.acts]\ntype = \"neurox_hdf5\"\nactivations = \"activations.hdf5\"\ncorpus = \"sentences.txt\"\nlabels = \"labels.txt\"\n"
                .into(),
            inputs: Inputs::default(),
        },
        build: |table| {
            let p = parse_params(NAME, &source_param_docs("HDF5"), table)?;
            Ok(Component::Source(Box::new(NeuroxSource::new(NAME, p, read_source)?)))
        },
    }
}

fn read_source(path: &Path, layers: Option<&[u32]>) -> Result<NeuroxActivations> {
    relabel_layers(read(path)?, layers, NAME)
}

/// The JSON object's entries in stored order (NeuroX iterates it so).
fn ordered_entries(json: &str) -> serde_json::Result<Vec<(String, String)>> {
    struct Entries;
    impl<'de> Visitor<'de> for Entries {
        type Value = Vec<(String, String)>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object from sentence text to dataset name")
        }
        fn visit_map<A: MapAccess<'de>>(
            self,
            mut map: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(entry) = map.next_entry::<String, String>()? {
                out.push(entry);
            }
            Ok(out)
        }
    }
    serde_json::Deserializer::from_str(json).deserialize_map(Entries)
}

/// Strips NeuroX's ` (Occurrence k)` suffix from a repeated sentence.
fn sentence_text(key: &str) -> &str {
    match key.rfind(" (Occurrence ") {
        Some(at) if key.ends_with(')') => &key[..at],
        _ => key,
    }
}

/// Reads a NeuroX HDF5 activation file, as NeuroX's `load_activations`
/// does, into `f32` (values stored as f16 or f64 are converted by HDF5).
/// Layers are numbered 0, 1, … in stored order.
///
/// # Errors
/// A file that is not HDF5, lacks `sentence_to_index`, names a missing
/// dataset, or holds blocks of different layer counts or widths.
pub fn read(path: &Path) -> Result<NeuroxActivations> {
    let bad = |message: String| Error::format(path, None, message);
    let h5 = |what: &str, e: hdf5::Error| bad(format!("{what}: {e}"));
    if !path.is_file() {
        return Err(Error::io(
            "read",
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        ));
    }
    let file = hdf5::File::open(path).map_err(|e| h5("is not a readable HDF5 file", e))?;
    let index = file.dataset("sentence_to_index").map_err(|e| {
        h5(
            "has no `sentence_to_index` dataset, so it was not written by NeuroX",
            e,
        )
    })?;
    let json = match index.read_raw::<hdf5::types::VarLenUnicode>() {
        Ok(v) => v.first().map(|s| s.as_str().to_string()),
        Err(_) => index
            .read_raw::<hdf5::types::VarLenAscii>()
            .map_err(|e| h5("has a `sentence_to_index` that is not a string", e))?
            .first()
            .map(|s| s.as_str().to_string()),
    }
    .ok_or_else(|| bad("has an empty `sentence_to_index`".into()))?;
    let entries = ordered_entries(&json).map_err(|e| {
        bad(format!(
            "has a `sentence_to_index` that is not a JSON object: {e}"
        ))
    })?;
    let mut shape: Option<(usize, usize)> = None;
    let mut sentences = Vec::with_capacity(entries.len());
    for (key, name) in &entries {
        let dataset = file.dataset(name).map_err(|e| {
            h5(
                &format!("has no dataset `{name}`, which `sentence_to_index` names for {key:?}"),
                e,
            )
        })?;
        let dims = dataset.shape();
        let [layers, words, hidden] = dims[..] else {
            return Err(bad(format!(
                "dataset `{name}` has shape {dims:?}; NeuroX blocks are [layers, words, hidden]"
            )));
        };
        match shape {
            None => shape = Some((layers, hidden)),
            Some(s) if s != (layers, hidden) => {
                return Err(bad(format!(
                    "dataset `{name}` has {layers} layers × {hidden} units, but the first one has {} × {}",
                    s.0, s.1
                )));
            }
            Some(_) => {}
        }
        let raw = dataset
            .read_raw::<f32>()
            .map_err(|e| h5(&format!("dataset `{name}` cannot be read as numbers"), e))?;
        let block = Array3::from_shape_vec((layers, words, hidden), raw)
            .expect("HDF5 returns the dataset's shape");
        // [L, T, H] → [T, L, H] → [T, L·H].
        let flat: Vec<f32> = block.permuted_axes([1, 0, 2]).iter().copied().collect();
        let values =
            Array2::from_shape_vec((words, layers * hidden), flat).expect("same number of values");
        let text: Vec<String> = sentence_text(key).split(' ').map(String::from).collect();
        let tokens = if text.len() == words {
            text
        } else {
            vec![String::new(); words]
        };
        sentences.push(SentenceActivations { tokens, values });
    }
    let (layers, hidden) = shape.ok_or_else(|| bad("holds no sentences".into()))?;
    Ok(NeuroxActivations {
        path: path.to_path_buf(),
        layers: (0..layers as u32).collect(),
        hidden,
        sentences,
    })
}

lca_plugins::export_plugin! {
    name: "lca-plugin-hdf5",
    version: env!("CARGO_PKG_VERSION"),
    components: [descriptor()],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_keep_their_stored_order() {
        let e = ordered_entries(r#"{"b": "1", "a": "0", "b (Occurrence 2)": "2"}"#).unwrap();
        let names: Vec<&str> = e.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(names, ["1", "0", "2"]);
        assert_eq!(sentence_text("The cat (Occurrence 2)"), "The cat");
        assert_eq!(sentence_text("A (b)"), "A (b)");
    }
}
