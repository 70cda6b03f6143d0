"""Activation stores (``lca store``) from Python: what a store holds, the
statistics of its shards, their merge, and rankings from merged statistics.

Statistics of disjoint shard ranges merge into the statistics of all of
them, in any grouping, and rank as one pass over the store would
(``docs/store.md``). That is how :mod:`lca.distributed` spreads the work over
a Ray cluster, and how a Slurm array does it with the ``lca`` command::

    parts = [lca.store.stats("stores/big", part=(k, 8)) for k in range(8)]
    ranking = lca.store.rank(lca.store.merge(parts), "correlation")
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import LcaError, Ranking, _lca
from ._lca import Statistics

__all__ = [
    "METHODS",
    "Statistics",
    "StoreProbe",
    "create",
    "info",
    "join",
    "load",
    "merge",
    "rank",
    "stats",
    "train_probe",
]

PathLike = Union[str, "os.PathLike[str]"]

#: The methods that rank from statistics, and the statistics each needs.
METHODS = {
    "correlation": "the class sums (always computed)",
    "probeless": "the class sums (always computed)",
    "iou": "two passes: iou_quantile=, merged, then iou_thresholds=<the merged first pass>",
    "gaussian": "gaussian_neurons=",
    "average_precision": "ap_bits=",
}


def create(
    recipe: Union[PathLike, Mapping[str, Any]],
    out: PathLike,
    *,
    source: Optional[str] = None,
    part: Optional[Tuple[int, int]] = None,
    dtype: str = "f32",
    shard_mib: int = 256,
    task: Optional[str] = None,
    threads: Optional[int] = None,
    plugin_dirs: Sequence[PathLike] = (),
) -> Dict[str, Any]:
    """Extracts (or reads) the recipe's source and writes it as a store in
    ``out``, as ``lca store create``: shard by shard, resuming an interrupted
    attempt with the same settings. ``source`` names the source when the
    recipe has several; ``dtype`` is ``f32``, ``f16`` or ``bf16``.

    With ``part=(k, n)`` only the k-th of n runs of shards is computed and
    written into ``out``; once all n parts are written (by other processes or
    machines sharing the folder), :func:`join` makes the store, which is the
    one a single process writes. Returns ``kind`` (``"store"`` or
    ``"part"``), the ``manifest`` or the part's ``record``, ``kept_rows``
    (from an interrupted attempt), ``task`` and ``classes``."""
    from . import _plugin_dirs, _recipe_text

    dirs = _plugin_dirs(plugin_dirs)
    if isinstance(recipe, Mapping):
        path, text = str(Path.cwd() / "recipe.toml"), _recipe_text(recipe)
    else:
        path, text = os.fspath(recipe), None
    written = _lca.store_create(
        path,
        os.fspath(out),
        text=text,
        source=source,
        part=None if part is None else (int(part[0]), int(part[1])),
        dtype=dtype,
        shard_mib=shard_mib,
        task=task,
        threads=threads,
        plugin_dirs=dirs,
    )
    return json.loads(written)


def join(store: PathLike) -> Dict[str, Any]:
    """Joins the parts :func:`create` wrote into ``store`` with ``part=``
    into one store, as ``lca store join``; returns its manifest. Fails,
    writing nothing, while a part is missing or disagrees with the others."""
    return json.loads(_lca.store_join(os.fspath(store)))


def info(store: PathLike) -> Dict[str, Any]:
    """The store's manifest: neurons, shards with their hashes, tasks,
    splits, and where the activations came from."""
    return json.loads(_lca.store_manifest(os.fspath(store)))


def stats(
    store: PathLike,
    *,
    task: Optional[str] = None,
    shards: Optional[Tuple[int, int]] = None,
    part: Optional[Tuple[int, int]] = None,
    train_only: bool = True,
    iou_quantile: Optional[float] = None,
    iou_thresholds: Optional[Statistics] = None,
    gaussian_neurons: Union[None, str, Sequence[int]] = None,
    gaussian_rows: int = 4000,
    seed: int = 0,
    ap_bits: Optional[int] = None,
    ap_threshold: float = 0.05,
    threads: Optional[int] = None,
) -> Statistics:
    """The statistics of shards ``shards = (start, end)`` of the store, or of
    part ``part = (k, n)`` (the k-th of n runs of shards whose sizes differ
    by at most one), or of all shards; of the training rows unless
    ``train_only=False``. As ``lca store stats``: ``iou_quantile`` adds each
    neuron's top values, ``iou_thresholds`` (merged first-pass statistics)
    each neuron's IoU mask counts, ``gaussian_neurons`` (``"all"`` or
    columns) the Gaussian moments over a seeded sample of ``gaussian_rows``
    rows, and ``ap_bits`` the average-precision histograms. ``threads``:
    how many threads sum the columns (all cores by default)."""
    if isinstance(gaussian_neurons, str):
        if gaussian_neurons != "all":
            raise LcaError(
                f"gaussian_neurons={gaussian_neurons!r}: give 'all' or a list of column numbers"
            )
        gaussian_neurons = list(range(len(info(store)["neurons"])))
    return _lca.store_stats(
        os.fspath(store),
        task=task,
        shards=None if shards is None else tuple(shards),
        part=None if part is None else tuple(part),
        train_only=train_only,
        iou_quantile=iou_quantile,
        iou_thresholds=iou_thresholds,
        gaussian_neurons=None if gaussian_neurons is None else [int(j) for j in gaussian_neurons],
        gaussian_rows=gaussian_rows,
        seed=seed,
        ap_bits=ap_bits,
        ap_threshold=ap_threshold,
        threads=threads,
    )


def merge(statistics: Iterable[Statistics]) -> Statistics:
    """The statistics of disjoint shards as one (pairwise, as a tree)."""
    level: List[Statistics] = list(statistics)
    if not level:
        raise LcaError("there are no statistics to merge; compute some with lca.store.stats")
    while len(level) > 1:
        level = [
            level[i].merged(level[i + 1]) if i + 1 < len(level) else level[i]
            for i in range(0, len(level), 2)
        ]
    return level[0]


def rank(
    statistics: Statistics,
    method: str,
    *,
    signed: bool = False,
    detector_iou: float = 0.04,
    neurons: int = 100,
    diagonal: bool = False,
    positive: Optional[str] = None,
) -> Ranking:
    """Every neuron ranked by ``method`` from merged statistics, as
    ``lca store rank``: ``correlation`` (``signed``), ``probeless``, ``iou``
    (``detector_iou``), ``gaussian`` (``neurons`` selected greedily,
    ``diagonal``) or ``average_precision`` (``positive`` class)."""
    record = statistics.rank(
        method,
        signed=signed,
        detector_iou=detector_iou,
        neurons=neurons,
        diagonal=diagonal,
        positive=positive,
    )
    return Ranking(json.loads(record), statistics.neurons)


def load(path: PathLike) -> Statistics:
    """Statistics from a file of ``lca store stats`` or ``Statistics.save``."""
    return Statistics.load(os.fspath(path))


class StoreProbe:
    """A linear softmax probe trained on a store's training rows by passes
    over its shards (:func:`train_probe`, :func:`lca.distributed.train_probe`).

    ``weights`` (classes × neurons) and ``bias`` apply to the raw
    activations; ``accuracy`` holds each split that has rows. The NeuroX
    bridge's selectors take it as they take any probe with weights, so
    ``lca.neurox.get_neuron_ordering(probe, ...)`` ranks its neurons."""

    def __init__(self, weights, bias, classes, neuron_names, accuracy, report):
        self.weights: np.ndarray = weights
        self.bias: np.ndarray = bias
        self.classes: List[str] = list(classes)
        self.neuron_names: List[str] = list(neuron_names)
        self.accuracy: Dict[str, float] = accuracy
        #: ``objective``, ``iterations``, ``passes`` and ``converged``.
        self.report: Dict[str, Any] = report

    def predict_proba(self, x: Any) -> np.ndarray:
        """Class probabilities of the rows of ``x`` (rows × neurons)."""
        z = np.asarray(x, dtype=np.float64) @ self.weights.T + self.bias
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, x: Any) -> np.ndarray:
        """The most likely class id of each row of ``x``."""
        return np.argmax(self.predict_proba(x), axis=1)

    def __repr__(self) -> str:
        scores = ", ".join(f"{k} {v:.4f}" for k, v in self.accuracy.items())
        return (
            f"StoreProbe({len(self.classes)} classes × {len(self.neuron_names)} neurons, "
            f"accuracy {scores}, objective {self.report['objective']:.6g})"
        )


#: What a pass returns: rows, Σ loss, correct rows, Σ weight and bias gradients.
PassSums = Tuple[int, float, int, Optional[np.ndarray], Optional[np.ndarray]]


def _penalty(w: np.ndarray, l1: float, l2: float, l2_form: str) -> float:
    total = l1 * float(np.abs(w).sum()) if l1 > 0 else 0.0
    if l2 > 0:
        squares = float((w * w).sum())
        total += l2 * (np.sqrt(squares) if l2_form == "frobenius" else squares)
    return total


def _prox(v: np.ndarray, t: float, l1: float, l2: float, l2_form: str) -> np.ndarray:
    if l1 > 0:
        v = np.sign(v) * np.maximum(np.abs(v) - t * l1, 0.0)
    if l2 > 0:
        if l2_form == "frobenius":
            norm = float(np.sqrt((v * v).sum()))
            v = v * (max(1.0 - t * l2 / norm, 0.0) if norm > 0 else 0.0)
        else:
            v = v / (1.0 + 2.0 * t * l2)
    return v


def _fista(
    passes: Callable[[np.ndarray, np.ndarray, str, bool], PassSums],
    shape: Tuple[int, int],
    l1: float,
    l2: float,
    l2_form: str,
    tol: float,
    max_iter: int,
) -> Tuple[np.ndarray, np.ndarray, Dict[str, Any]]:
    """Accelerated proximal gradient with backtracking and adaptive restart
    on the mean cross-entropy plus the penalty, as the `fista` solver runs
    it in memory, each loss and gradient coming from ``passes``."""
    counted = {"passes": 0}

    def evaluate(w: np.ndarray, b: np.ndarray, gradient: bool):
        rows, loss, _, grad_w, grad_b = passes(w.astype(np.float32), b, "train", gradient)
        counted["passes"] += 1
        if rows == 0:
            raise LcaError("the store has no training rows in the shards given; nothing to train on")
        if gradient:
            return loss / rows, grad_w / rows, grad_b / rows
        return loss / rows, None, None

    c, d = shape
    w, b = np.zeros((c, d)), np.zeros(c)
    f_w, g_y, g_yb = evaluate(w, b, True)
    if not np.isfinite(f_w):
        raise LcaError("the probe's loss is not finite at zero weights; check the store's values")
    obj_w = f_w + _penalty(w, l1, l2, l2_form)
    y_w, y_b, f_y = w, b, f_w
    t, momentum, small, iterations = 1.0, 1.0, 0, 0
    converged = backtracked = False
    while iterations < max_iter:
        iterations += 1
        next_momentum = (1.0 + np.sqrt(1.0 + 4.0 * momentum * momentum)) / 2.0
        while True:
            w_new = _prox(y_w - t * g_y, t, l1, l2, l2_form)
            b_new = y_b - t * g_yb
            f_new, _, _ = evaluate(w_new, b_new, False)
            dw, db = w_new - y_w, b_new - y_b
            lin = float((g_y * dw).sum() + (g_yb * db).sum())
            quad = float((dw * dw).sum() + (db * db).sum()) / (2.0 * t)
            used = (f_new - f_y - lin) / max(quad, np.finfo(float).tiny)
            if f_new <= f_y + lin + quad + 1e-12 * max(abs(f_y), 1.0) or t < 1e-12:
                break
            t *= float(np.clip(0.9 / used, 0.1, 0.5))
        # Gradient-based restart: drop momentum when the step goes against it.
        restart = float(((y_w - w_new) * (w_new - w)).sum() + ((y_b - b_new) * (b_new - b)).sum()) > 0
        beta = 0.0 if restart else (momentum - 1.0) / next_momentum
        obj_new = f_new + _penalty(w_new, l1, l2, l2_form)
        y_w = w_new + beta * (w_new - w)
        y_b = b_new + beta * (b_new - b)
        f_y, g_y, g_yb = evaluate(y_w, y_b, True)
        improvement = (obj_w - obj_new) / max(abs(obj_new), 1e-12)
        w, b, obj_w = w_new, b_new, obj_new
        momentum = 1.0 if restart else next_momentum
        small = small + 1 if abs(improvement) < tol else 0
        if small >= 3:
            converged = True
            break
        # The next step from the curvature the accepted one used, as in memory.
        backtracked |= counted["passes"] > 2 * iterations + 1
        growth = 2.0 if backtracked else 4.0
        t *= float(np.clip(0.5 / max(used, 0.5 / growth), 1.0, growth))
    report = {
        "solver": "fista, passes over the store",
        "objective": obj_w,
        "iterations": iterations,
        "passes": counted["passes"],
        "converged": converged,
    }
    return w, b, report


def _train(
    passes: Callable[[np.ndarray, np.ndarray, str, bool], PassSums],
    manifest: Mapping[str, Any],
    task: Optional[str],
    l1: float,
    l2: float,
    l2_form: str,
    tol: float,
    max_iter: int,
) -> StoreProbe:
    for name, value in (("l1", l1), ("l2", l2)):
        if not (value >= 0 and np.isfinite(value)):
            raise LcaError(f"{name}={value} is not a penalty; give a number of at least 0")
    if l2_form not in ("frobenius", "squared"):
        raise LcaError(f"l2_form={l2_form!r}: give 'frobenius' (NeuroX's) or 'squared'")
    if not (tol > 0) or max_iter < 1:
        raise LcaError(f"tol={tol}, max_iter={max_iter}: give tol above 0 and max_iter of at least 1")
    task = task or manifest["default_task"]
    if task not in manifest["tasks"]:
        raise LcaError(f"the store has no task `{task}`; its tasks are {sorted(manifest['tasks'])}")
    classes = manifest["tasks"][task]["classes"]
    shape = (len(classes), len(manifest["neurons"]))
    w, b, report = _fista(passes, shape, l1, l2, l2_form, tol, max_iter)
    accuracy = {}
    for split in ("train", "dev", "test"):
        rows, _, correct, _, _ = passes(w.astype(np.float32), b, split, False)
        if rows:
            accuracy[split] = correct / rows
    return StoreProbe(w, b, classes, manifest["neurons"], accuracy, report)


def train_probe(
    store: PathLike,
    *,
    l1: float = 1e-3,
    l2: float = 1e-3,
    l2_form: str = "frobenius",
    task: Optional[str] = None,
    tol: float = 1e-3,
    max_iter: int = 500,
    threads: Optional[int] = None,
) -> StoreProbe:
    """A linear softmax probe with an elastic-net penalty trained on the
    store's training rows by passes over its shards, never holding more than
    a block of rows: the objective of the ``elastic_net`` probe (mean
    cross-entropy + ``l1``·Σ|W| + ``l2``·‖W‖, on raw activations), solved by
    the same accelerated proximal gradient as its ``fista`` solver, which
    stops when the objective improves by less than ``tol`` (relative) three
    times in a row. Each iteration reads the training rows twice.
    :func:`lca.distributed.train_probe` runs the passes on a Ray cluster."""
    opened = _lca.OpenStore(os.fspath(store))
    manifest = info(store)

    def passes(w: np.ndarray, b: np.ndarray, split: str, gradient: bool) -> PassSums:
        return opened.probe_pass(w, b, task=task, split=split, gradient=gradient, threads=threads)

    return _train(passes, manifest, task, l1, l2, l2_form, tol, max_iter)
