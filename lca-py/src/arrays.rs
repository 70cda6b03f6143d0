//! Datasets made of numpy arrays. The activations are not copied: each call
//! borrows the array (C order, `float32`) for as long as it runs.

use lca_core::data::{
    ActivationMatrix, ClassVocab, DatasetOutline, Labels, NeuronIndex, Splits, Tokens,
};
use lca_core::{Dataset, Error};
use numpy::{PyArray2, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::prelude::*;

use crate::errors::{core_error, message};

/// Activations, labels, words and splits from Python. Rows are ordered
/// train, then dev, then test, `splits` giving their counts.
#[pyclass(module = "lca._lca", frozen)]
pub(crate) struct ArrayData {
    x: Py<PyArray2<f32>>,
    name: String,
    neurons: NeuronIndex,
    labels: Labels,
    tokens: Option<Tokens>,
    splits: Splits,
}

#[pymethods]
impl ArrayData {
    #[new]
    #[pyo3(signature = (x, labels, splits, layers=1, words=None, sentence_starts=None, name="arrays".to_string()))]
    fn new(
        x: Bound<'_, PyArray2<f32>>,
        labels: Vec<String>,
        splits: (usize, usize, usize),
        layers: usize,
        words: Option<Vec<String>>,
        sentence_starts: Option<Vec<usize>>,
        name: String,
    ) -> PyResult<Self> {
        if !x.is_c_contiguous() {
            return Err(message(
                "the activations must be a C-ordered float32 array; pass \
                 numpy.ascontiguousarray(x, dtype=numpy.float32)",
            ));
        }
        let (_, cols) = (x.shape()[0], x.shape()[1]);
        if layers == 0 || cols % layers != 0 {
            return Err(message(format!(
                "layers={layers} does not divide the {cols} columns of the activations into \
                 equal layers; give the number of layers the columns hold, layer after layer"
            )));
        }
        let neurons = NeuronIndex::layer_major(cols, layers).map_err(core_error)?;
        let vocab = ClassVocab::from_names(labels.iter().cloned());
        let ids = labels
            .iter()
            .map(|l| vocab.id(l).expect("every label is in its own vocabulary"))
            .collect();
        let labels = Labels::new(ids, vocab).map_err(core_error)?;
        let tokens = match (words, sentence_starts) {
            (Some(words), starts) => {
                let starts = starts.unwrap_or_else(|| vec![0]);
                Some(Tokens::new(words, starts).map_err(core_error)?)
            }
            (None, Some(_)) => {
                return Err(message(
                    "sentence starts were given without words; pass words= as well",
                ));
            }
            (None, None) => None,
        };
        let data = ArrayData {
            x: x.clone().unbind(),
            name,
            neurons,
            labels,
            tokens,
            splits: Splits {
                train: splits.0,
                dev: splits.1,
                test: splits.2,
            },
        };
        data.with_dataset(x.py(), |dataset| {
            dataset.check_finite().map_err(core_error)?;
            Ok(())
        })?;
        Ok(data)
    }

    /// Rows, neurons and classes.
    #[getter]
    fn shape(&self, py: Python<'_>) -> (usize, usize, usize) {
        let shape = self.x.bind(py).shape().to_vec();
        (shape[0], shape[1], self.labels.vocab().len())
    }

    /// The class names, in the order of class ids.
    #[getter]
    fn classes(&self) -> Vec<String> {
        self.labels.vocab().names().to_vec()
    }

    /// Each column's neuron as `layer:unit`.
    #[getter]
    fn neuron_names(&self) -> Vec<String> {
        self.neurons.ids().iter().map(ToString::to_string).collect()
    }

    /// Rows of train, dev and test, in that order.
    #[getter]
    fn splits(&self) -> (usize, usize, usize) {
        (self.splits.train, self.splits.dev, self.splits.test)
    }

    /// Each row's class id.
    #[getter]
    fn label_ids(&self) -> Vec<u32> {
        self.labels.ids().to_vec()
    }

    /// Each row's word, when known.
    #[getter]
    fn words(&self) -> Option<Vec<String>> {
        self.tokens.as_ref().map(|t| t.words().to_vec())
    }
}

impl ArrayData {
    /// The dataset of a loaded source: its outline around activations
    /// already in numpy.
    pub(crate) fn from_outline(
        x: &Bound<'_, PyArray2<f32>>,
        outline: DatasetOutline,
    ) -> PyResult<Self> {
        Ok(ArrayData {
            x: x.clone().unbind(),
            name: outline.name,
            neurons: outline.neurons,
            labels: outline.labels,
            tokens: outline.tokens,
            splits: outline.splits,
        })
    }

    /// Calls `f` with the dataset, its activations borrowed from numpy.
    pub(crate) fn with_dataset<T>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&Dataset<'_>) -> PyResult<T>,
    ) -> PyResult<T> {
        let array = self.x.bind(py).readonly();
        let (rows, cols) = (array.shape()[0], array.shape()[1]);
        let values = array
            .as_slice()
            .map_err(|_| message("the activations are no longer contiguous"))?;
        let acts = ActivationMatrix::from_slice(rows, cols, values).map_err(core_error)?;
        let dataset = Dataset::new(
            self.name.clone(),
            acts,
            self.neurons.clone(),
            self.labels.clone(),
            self.tokens.clone(),
            self.splits,
        )
        .map_err(|e: Error| core_error(e))?;
        f(&dataset)
    }
}
