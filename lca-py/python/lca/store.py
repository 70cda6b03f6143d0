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
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from . import LcaError, Ranking, _lca
from ._lca import Statistics

__all__ = ["METHODS", "Statistics", "create", "info", "join", "load", "merge", "rank", "stats"]

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
