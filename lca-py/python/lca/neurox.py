"""NeuroX's common path under NeuroX's names, computed by lca.

A NeuroX notebook switches by changing its imports::

    # from neurox.data import loader as data_loader, utils as data_utils
    # from neurox.interpretation import linear_probe
    from lca import neurox as data_loader, neurox as data_utils, neurox as linear_probe

The functions keep NeuroX's signatures and return values. Where NeuroX is
defective the bridge does what NeuroX meant and says so in the docstring
(``docs/python.md`` lists every difference):

- ``create_tensors`` maps labels in sorted order, where NeuroX's order
  changes with Python's string hashing from one process to the next;
- the neuron orderings put neurons that never enter (zero weight for every
  class) last instead of leaving them out, and order the neurons inside a
  step by their largest share of a class's weight mass, where NeuroX's order
  is that of a Python set;
- ``evaluate_probe`` scores a class with no rows 0, where NeuroX gives NaN,
  and prints nothing.

Probes are :class:`lca.Probe` objects. The selectors and ``evaluate_probe``
also take NeuroX's own torch probes, or anything with ``weights``/``bias``
arrays.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import Dataset, LcaError, Probe, ProbeSpec, _lca

__all__ = [
    "create_tensors",
    "evaluate_probe",
    "get_bottom_neurons",
    "get_neuron_ordering",
    "get_neuron_ordering_granular",
    "get_top_neurons",
    "get_top_neurons_hard_threshold",
    "load_activations",
    "load_data",
    "train_logistic_regression_probe",
]

# ---------------------------------------------------------------- loading


def load_activations(
    activations_path: Union[str, "os.PathLike[str]"],
    num_neurons_per_layer: Optional[int] = None,
    is_brnn: bool = False,
    dtype: Any = None,
) -> Tuple[List[np.ndarray], int]:
    """Reads a NeuroX activation file (``.json`` JSON-lines, or ``.hdf5``,
    which needs ``h5py``): one ``[tokens, layers·hidden]`` array per sentence,
    layer after layer, and the number of layers. Arrays are float32 unless
    ``dtype`` says otherwise (NeuroX 1.0.9 gives float64 from JSON)."""
    path = Path(activations_path)
    if is_brnn:
        raise LcaError(
            f"{path}: is_brnn=True (activations of a bidirectional RNN) is not supported; "
            "split the two directions yourself and load the file with is_brnn=False"
        )
    suffix = path.suffix.lower()
    if suffix == ".json":
        arrays, _tokens, layers = _lca.read_activations_json(str(path))
    elif suffix in (".hdf5", ".h5"):
        arrays, layers = _read_hdf5(path)
    else:
        raise LcaError(
            f"{path}: activation files ending in {suffix or '(nothing)'} are not read by lca; "
            "convert them to NeuroX JSON-lines or HDF5 (or load a matrix with lca.Dataset)"
        )
    if num_neurons_per_layer is not None and arrays:
        width = arrays[0].shape[1]
        if num_neurons_per_layer <= 0 or width % num_neurons_per_layer:
            raise LcaError(
                f"{path}: rows of {width} values do not split into layers of "
                f"{num_neurons_per_layer} neurons; leave num_neurons_per_layer out to use the file's"
            )
        layers = width // num_neurons_per_layer
    if dtype is not None:
        arrays = [a.astype(dtype, copy=False) for a in arrays]
    return arrays, int(layers)


def _read_hdf5(path: Path) -> Tuple[List[np.ndarray], int]:
    try:
        import h5py
    except ImportError:
        raise LcaError(
            f"{path}: reading NeuroX HDF5 from Python needs h5py; `pip install h5py` "
            "(or read the file with the neurox_hdf5 source in a recipe)"
        ) from None
    if not path.is_file():
        raise LcaError(f"{path}: no such file; check the path")
    with h5py.File(path, "r") as f:
        if "sentence_to_index" not in f:
            raise LcaError(
                f"{path}: no `sentence_to_index` dataset, so this is not a NeuroX activation file"
            )
        raw = f["sentence_to_index"][0]
        index = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
        arrays = []
        layers = 0
        for key in index.values():
            stored = np.asarray(f[str(key)])  # [layers, tokens, hidden]
            layers, tokens, hidden = stored.shape
            arrays.append(np.ascontiguousarray(stored.swapaxes(0, 1)).reshape(tokens, layers * hidden))
    return arrays, layers


def load_data(
    source_path: Union[str, "os.PathLike[str]"],
    labels_path: Union[str, "os.PathLike[str]"],
    activations: List[np.ndarray],
    max_sent_l: int,
    ignore_start_token: bool = False,
    sentence_classification: bool = False,
) -> Dict[str, List[List[str]]]:
    """Reads a sentence file and a label file (one line per sentence, tokens
    split on whitespace) and checks them against the activations.

    Sentences longer than ``max_sent_l`` are dropped together with their
    activations (NeuroX drops the text but not the activations, and then
    fails). Sentences whose token, label and activation counts disagree are
    dropped from all three, ``activations`` in place, as NeuroX does, with
    the count in a warning."""
    import warnings

    source_lines = Path(source_path).read_text(encoding="utf-8").splitlines()
    label_lines = Path(labels_path).read_text(encoding="utf-8").splitlines()
    if len(source_lines) != len(label_lines):
        raise LcaError(
            f"{source_path} has {len(source_lines)} lines but {labels_path} has "
            f"{len(label_lines)}; give one label line per sentence"
        )
    if len(activations) != len(source_lines):
        raise LcaError(
            f"{len(activations)} activation arrays for the {len(source_lines)} sentences of "
            f"{source_path}; extract the activations from this sentence file"
        )
    sources, targets, kept = [], [], []
    mismatched = 0
    for i, (line, labels) in enumerate(zip(source_lines, label_lines)):
        words = line.split()
        tags = labels.split()
        if len(words) > max_sent_l:
            continue
        acts = activations[i]
        if ignore_start_token:
            words, acts = words[1:], acts[1:]
            tags = tags if sentence_classification else tags[1:]
        if sentence_classification:
            ok = len(tags) == 1
        else:
            ok = acts.shape[0] == len(words) == len(tags)
        if not ok:
            mismatched += 1
            continue
        sources.append(words)
        targets.append(tags)
        kept.append(acts)
    if mismatched:
        warnings.warn(
            f"{mismatched} of {len(source_lines)} sentences of {source_path} were dropped: "
            "their words, labels and activation rows differ in number"
        )
    activations[:] = kept
    return {"source": sources, "target": targets}


def create_tensors(
    tokens: Mapping[str, List[List[str]]],
    activations: List[np.ndarray],
    task_specific_tag: str,
    mappings: Optional[Tuple[Dict[str, int], Dict[int, str], Dict[str, int], Dict[int, str]]] = None,
    task_type: str = "classification",
    binarized_tag: Optional[str] = None,
    balance_data: bool = False,
    dtype: Any = None,
):
    """One row per token: ``X`` (float32 unless ``dtype``), ``y`` (int64)
    and ``(label2idx, idx2label, src2idx, idx2src)``. Labels and words are
    indexed in sorted order, the same in every process; pass ``mappings`` for
    dev and test, where unknown labels become ``task_specific_tag``."""
    if task_type != "classification":
        raise LcaError(
            f"task_type={task_type!r}: the bridge builds classification data only "
            "(NeuroX's regression probe does not train either)"
        )
    sources, targets = tokens["source"], tokens["target"]
    rows = sum(len(t) for t in targets)
    width = activations[0].shape[1] if activations else 0
    X = np.zeros((rows, width), dtype=dtype or np.float32)
    at = 0
    for acts, labels in zip(activations, targets):
        X[at : at + len(labels)] = acts[: len(labels)]
        at += len(labels)
    flat_labels = [label for sentence in targets for label in sentence]
    if binarized_tag is not None:
        flat_labels = [label if label == binarized_tag else "OTHER" for label in flat_labels]
    if mappings is None:
        if binarized_tag is not None:
            label2idx = {"OTHER": 0, binarized_tag: 1}
        else:
            label2idx = {label: i for i, label in enumerate(sorted(set(flat_labels)))}
        idx2label = {i: label for label, i in label2idx.items()}
        words = sorted({w for sentence in sources for w in sentence})
        src2idx = {w: i for i, w in enumerate(words)}
        idx2src = {i: w for w, i in src2idx.items()}
    else:
        label2idx, idx2label, src2idx, idx2src = mappings
        if task_specific_tag not in label2idx:
            raise LcaError(
                f"task_specific_tag {task_specific_tag!r} is not one of the mapped labels; "
                "give a label of the training data"
            )
        fallback = label2idx[task_specific_tag]
    y = np.array(
        [label2idx.get(label, fallback) if mappings is not None else label2idx[label] for label in flat_labels],
        dtype=np.int64,
    )
    if balance_data:
        X, y = _undersample(X, y)
    return X, y, (label2idx, idx2label, src2idx, idx2src)


def _undersample(X: np.ndarray, y: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Every class cut to the smallest class's count, rows grouped by class
    in ascending order, drawn with numpy's global generator."""
    classes, counts = np.unique(y, return_counts=True)
    keep = counts.min()
    rows = []
    for c, n in zip(classes, counts):
        members = np.flatnonzero(y == c)
        rows.append(members if n == keep else np.random.choice(members, keep, replace=False))
    order = np.concatenate(rows)
    return X[order], y[order]


# ------------------------------------------------------------------ probes


def train_logistic_regression_probe(
    X_train: Any,
    y_train: Any,
    lambda_l1: float = 0,
    lambda_l2: float = 0,
    num_epochs: int = 10,
    batch_size: int = 32,
    learning_rate: float = 0.001,
    *,
    solver: str = "neurox_compatible",
    threads: Optional[int] = None,
    seed: Optional[int] = None,
) -> Probe:
    """Trains the elastic-net logistic probe on ``X_train`` with class ids
    ``y_train`` (0..C−1, each present).

    By default this is NeuroX's trainer (mini-batch Adam, the loss NeuroX
    minimises, its epochs, batch size and learning rate). ``solver="auto"``
    solves the same objective to convergence instead, usually faster and to
    a lower loss; the epoch settings then do not apply."""
    X = np.ascontiguousarray(X_train, dtype=np.float32)
    y = np.asarray(y_train)
    if y.ndim != 1 or len(y) != X.shape[0]:
        raise LcaError(
            f"y_train holds {y.size} labels for {X.shape[0]} rows of X_train; give one class id per row"
        )
    if not np.issubdtype(y.dtype, np.integer):
        raise LcaError("y_train must hold integer class ids (create_tensors gives them)")
    present = np.unique(y)
    if len(present) < 2 or present[0] != 0 or present[-1] != len(present) - 1:
        raise LcaError(
            f"y_train holds the class ids {present.tolist()[:10]}; a probe needs at least two "
            "classes numbered 0..C-1, each with rows (NeuroX fails on such labels too)"
        )
    width = len(str(len(present) - 1))
    labels = [str(v).zfill(width) for v in y.tolist()]
    params: Dict[str, Any] = {"l1": float(lambda_l1), "l2": float(lambda_l2), "solver": solver}
    if solver == "neurox_compatible":
        params.update(epochs=int(num_epochs), batch_size=int(batch_size), learning_rate=float(learning_rate))
    return ProbeSpec("elastic_net", **params).fit(Dataset(X, labels), threads=threads, seed=seed)


def _weights(probe: Any) -> np.ndarray:
    if isinstance(probe, Probe):
        if probe.weights is None:
            raise LcaError(f"probe `{probe.name}` is not linear, so it has no weights to select neurons by")
        return probe.weights
    linear = getattr(probe, "linear", None)
    if linear is not None and hasattr(linear, "weight"):
        return np.ascontiguousarray(linear.weight.detach().cpu().numpy(), dtype=np.float32)
    weights = getattr(probe, "weights", probe)
    array = np.ascontiguousarray(weights, dtype=np.float32)
    if array.ndim != 2:
        raise LcaError(
            "the probe's weights are not a classes × neurons matrix; pass an lca.Probe, a NeuroX "
            "probe, or a 2-D weight array"
        )
    return array


def _bias(probe: Any, classes: int) -> np.ndarray:
    linear = getattr(probe, "linear", None)
    if linear is not None and hasattr(linear, "bias"):
        return linear.bias.detach().cpu().numpy().astype(np.float32)
    bias = getattr(probe, "bias", None)
    return np.zeros(classes, np.float32) if bias is None else np.asarray(bias, np.float32)


def evaluate_probe(
    probe: Any,
    X: Any,
    y: Any,
    idx_to_class: Optional[Mapping[int, str]] = None,
    return_predictions: bool = False,
    source_tokens: Optional[Sequence[Sequence[str]]] = None,
    batch_size: int = 32,
    metric: str = "accuracy",
):
    """Scores a probe: ``{"__OVERALL__": score, class: score…}``, the class
    scores being per-class recall for ``accuracy``. With
    ``return_predictions`` also one ``(word, predicted class, correct)`` per
    row. ``metric``: ``accuracy``, ``f1`` (binary), ``accuracy_and_f1`` or
    ``matthews_corrcoef``."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    y = np.asarray(y)
    if isinstance(probe, Probe):
        predicted = probe.predict(X)
    else:
        weights = _weights(probe)
        logits = X @ weights.T + _bias(probe, weights.shape[0])
        predicted = np.argmax(logits, axis=1)
    scores: Dict[str, float] = {"__OVERALL__": _score(predicted, y, metric)}
    if idx_to_class:
        for i, name in idx_to_class.items():
            rows = y == int(i)
            scores[name] = _score(predicted[rows], y[rows], metric) if rows.any() else 0.0
    if not return_predictions:
        return scores
    words: List[Any] = (
        [w for sentence in source_tokens for w in sentence] if source_tokens is not None else list(range(len(y)))
    )
    predictions = [
        (
            words[r] if r < len(words) else r,
            idx_to_class[int(p)] if idx_to_class else int(p),
            bool(y[r] == p),
        )
        for r, p in enumerate(predicted.tolist())
    ]
    return scores, predictions


def _score(predicted: np.ndarray, y: np.ndarray, metric: str) -> float:
    if metric == "accuracy":
        return float(np.mean(predicted == y)) if len(y) else 0.0
    if metric in ("f1", "accuracy_and_f1"):
        if set(np.unique(np.concatenate([predicted, y])).tolist()) - {0, 1}:
            raise LcaError(f"metric {metric!r} is binary F1 (positive class 1); the labels are multiclass")
        tp = float(np.sum((predicted == 1) & (y == 1)))
        fp = float(np.sum((predicted == 1) & (y == 0)))
        fn = float(np.sum((predicted == 0) & (y == 1)))
        f1 = 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)
        return f1 if metric == "f1" else (f1 + float(np.mean(predicted == y))) / 2
    if metric == "matthews_corrcoef":
        classes = np.union1d(predicted, y)
        confusion = np.array([[np.sum((y == a) & (predicted == b)) for b in classes] for a in classes], float)
        t, p = confusion.sum(axis=1), confusion.sum(axis=0)
        n, c = confusion.sum(), np.trace(confusion)
        denominator = np.sqrt((n * n - p @ p) * (n * n - t @ t))
        return 0.0 if denominator == 0 else float((c * n - t @ p) / denominator)
    raise LcaError(
        f"metric {metric!r} is not one the bridge computes; use accuracy, f1, accuracy_and_f1 "
        "or matthews_corrcoef"
    )


# --------------------------------------------------------------- selectors


def _per_class(selection: List[List[int]], class_to_idx: Mapping[str, int]) -> Dict[str, np.ndarray]:
    return {name: np.asarray(selection[int(i)], dtype=np.int64) for name, i in class_to_idx.items()}


def get_top_neurons(probe: Any, percentage: float, class_to_idx: Mapping[str, int]):
    """Per class, the neurons of largest |w| that hold ``percentage`` of the
    class's weight mass (the crossing neuron included): their union (sorted)
    and each class's set, largest |w| first."""
    union, per_class = _lca.mass_selection(_weights(probe), float(percentage))
    return np.asarray(union, dtype=np.int64), _per_class(per_class, class_to_idx)


def get_bottom_neurons(probe: Any, percentage: float, class_to_idx: Mapping[str, int]):
    """As :func:`get_top_neurons` from the smallest |w| up."""
    union, per_class = _lca.mass_selection(_weights(probe), float(percentage), bottom=True)
    return np.asarray(union, dtype=np.int64), _per_class(per_class, class_to_idx)


def get_top_neurons_hard_threshold(probe: Any, fraction: float, class_to_idx: Mapping[str, int]):
    """Per class, the neurons with |w| > max|w| / ``fraction`` (NeuroX
    divides, whatever its docstring says)."""
    union, per_class = _lca.above_max_fraction(_weights(probe), float(fraction))
    return np.asarray(union, dtype=np.int64), _per_class(per_class, class_to_idx)


def get_neuron_ordering(probe: Any, class_to_idx: Mapping[str, int], search_stride: int = 100):
    """The LCA ordering: neurons in the order the per-class top sets take
    them in as the mass fraction grows in ``search_stride`` steps, and the
    ordering's length after each step (``search_stride + 1`` cutoffs)."""
    order, cutoffs = _lca.lca_ordering(_weights(probe), int(search_stride))
    return [int(j) for j in order], [int(c) for c in cutoffs]


def get_neuron_ordering_granular(
    probe: Any, class_to_idx: Mapping[str, int], granularity: int = 50, search_stride: int = 100
):
    """The LCA ordering in chunks of about ``granularity`` neurons."""
    order, cutoffs = _lca.lca_ordering(_weights(probe), int(search_stride), granularity=int(granularity))
    return [int(j) for j in order], [int(c) for c in cutoffs]
