"""Extraction, store statistics and rankings on a Ray cluster.

Ray is the engine; lca schedules nothing itself. :func:`create_store`
extracts a recipe's source as Ray tasks, each writing one run of the store's
shards (:func:`lca.store.create` with ``part=``) into a folder they share,
and joins them into the store one process would have written.
:func:`store_stats` computes the statistics of runs of shards with
:func:`lca.store.stats`, each task in its own worker process, a tree of
tasks merges them, and the driver ranks from the result. Workers read the
store from a filesystem they share (the shards are memory-mapped; nothing
but the statistics travels). Install with ``pip install lca[ray]``, start or
join a cluster with ``ray.init(...)``, then::

    lca.distributed.create_store("recipes/brown.toml", "stores/big", parts=64)
    rankings = lca.distributed.rank_store("stores/big", ["correlation", "iou"], parts=64)

The same commands run as Slurm array tasks: ``scripts/slurm/``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from . import LcaError, Ranking
from . import store as _store
from ._lca import Statistics

__all__ = ["create_store", "rank_store", "store_stats", "train_probe"]

PathLike = Union[str, "os.PathLike[str]"]


def _ray():
    try:
        import ray
    except ImportError:
        raise LcaError(
            "lca.distributed runs on Ray, which is not installed: `pip install lca[ray]` "
            "(or `pip install ray`)"
        ) from None
    if not ray.is_initialized():
        # Joins the cluster named by RAY_ADDRESS, or starts a local one.
        ray.init()
    return ray


def _create_part(
    recipe: str, text: Optional[str], out: str, part: Tuple[int, int], options: Dict[str, Any]
) -> Dict[str, Any]:
    import json

    from lca import _lca, _plugin_dirs

    dirs = _plugin_dirs(options.pop("plugin_dirs"))
    written = _lca.store_create(recipe, out, text=text, part=part, plugin_dirs=dirs, **options)
    return json.loads(written)


def create_store(
    recipe: Union[PathLike, Mapping[str, Any]],
    out: PathLike,
    parts: int,
    *,
    source: Optional[str] = None,
    dtype: str = "f32",
    shard_mib: int = 256,
    task: Optional[str] = None,
    num_cpus: float = 1,
    plugin_dirs: Sequence[PathLike] = (),
) -> Dict[str, Any]:
    """Extracts the recipe's source as ``parts`` Ray tasks and joins them
    into one store in ``out``; returns its manifest.

    Task k writes part ``(k, parts)``: the k-th of ``parts`` runs of the
    store's shards, computing only their rows, into ``out``, which every
    worker must reach at the same path (one machine, or a shared
    filesystem). The joined store is byte for byte the one a single
    ``lca store create`` writes. A part whose task failed or was cut short
    keeps its finished shards; calling again with the same arguments goes
    on from them. Each task asks Ray for ``num_cpus`` CPUs and extracts on
    that many threads. The recipe's relative paths are resolved here, on
    the driver."""
    ray = _ray()
    if parts < 1:
        raise LcaError(f"parts={parts}: give at least 1 part")
    if isinstance(recipe, Mapping):
        from . import _recipe_text

        path, text = str(Path.cwd() / "recipe.toml"), _recipe_text(recipe)
    else:
        path, text = str(Path(os.fspath(recipe)).resolve()), None
    target = str(Path(os.fspath(out)).resolve())
    options: Dict[str, Any] = {
        "source": source,
        "dtype": dtype,
        "shard_mib": shard_mib,
        "task": task,
        "threads": max(1, int(num_cpus)),
        "plugin_dirs": [str(Path(d).resolve()) for d in plugin_dirs],
    }
    write = ray.remote(num_cpus=num_cpus)(_create_part)
    ray.get([write.remote(path, text, target, (k, parts), dict(options)) for k in range(parts)])
    return _store.join(target)


def _part_stats(
    store: str, part: Tuple[int, int], threads: int, options: Dict[str, Any]
) -> Statistics:
    from lca import store as lca_store

    return lca_store.stats(store, part=part, threads=threads, **options)


def _merge_pair(a: Statistics, b: Statistics) -> Statistics:
    return a.merged(b)


def store_stats(
    store: PathLike,
    parts: Optional[int] = None,
    *,
    num_cpus: float = 1,
    **options: Any,
) -> Statistics:
    """The statistics of the whole store (``options`` as
    :func:`lca.store.stats`), computed as ``parts`` Ray tasks (one per shard
    by default, at most as many as shards) and merged by a tree of tasks.
    Each task asks Ray for ``num_cpus`` CPUs and uses that many threads."""
    ray = _ray()
    path = os.fspath(store)
    manifest = _store.info(path)
    if isinstance(options.get("gaussian_neurons"), str):
        options["gaussian_neurons"] = list(range(len(manifest["neurons"])))
    shards = len(manifest["shards"])
    parts = max(1, min(parts or shards, shards))
    compute = ray.remote(num_cpus=num_cpus)(_part_stats)
    merge = ray.remote(num_cpus=num_cpus)(_merge_pair)
    # Each task sums columns on as many threads as it holds CPUs.
    threads = max(1, int(num_cpus))
    level: List[Any] = [compute.remote(path, (k, parts), threads, options) for k in range(parts)]
    while len(level) > 1:
        level = [
            merge.remote(level[i], level[i + 1]) if i + 1 < len(level) else level[i]
            for i in range(0, len(level), 2)
        ]
    return ray.get(level[0])


def rank_store(
    store: PathLike,
    methods: Sequence[str] = ("correlation", "probeless"),
    parts: Optional[int] = None,
    *,
    task: Optional[str] = None,
    train_only: bool = True,
    iou_quantile: float = 0.005,
    gaussian_neurons: Union[str, Sequence[int]] = "all",
    gaussian_rows: int = 4000,
    seed: int = 0,
    ap_bits: int = 7,
    ap_threshold: float = 0.05,
    num_cpus: float = 1,
    **rank_options: Any,
) -> Dict[str, Ranking]:
    """Each of ``methods`` (``correlation``, ``probeless``, ``iou``,
    ``gaussian``, ``average_precision``) ranked over the whole store from
    statistics computed in ``parts`` Ray tasks. One pass computes everything
    the methods need; ``iou`` adds a second pass at the merged thresholds.
    ``rank_options`` go to :func:`lca.store.rank`. The rankings are those of
    one process running ``lca store stats`` and ``lca store rank``."""
    unknown = sorted(set(methods) - set(_store.METHODS))
    if unknown:
        raise LcaError(
            f"methods {unknown} do not rank from statistics; use {', '.join(_store.METHODS)}"
        )
    options: Dict[str, Any] = {"task": task, "train_only": train_only}
    if "gaussian" in methods:
        options.update(gaussian_neurons=gaussian_neurons, gaussian_rows=gaussian_rows, seed=seed)
    if "average_precision" in methods:
        options.update(ap_bits=ap_bits, ap_threshold=ap_threshold)
    if "iou" in methods:
        options["iou_quantile"] = iou_quantile
    merged = store_stats(store, parts, num_cpus=num_cpus, **options)
    rankings: Dict[str, Ranking] = {}
    for method in methods:
        if method == "iou":
            continue
        rankings[method] = _store.rank(merged, method, **rank_options)
    if "iou" in methods:
        second = {"task": task, "train_only": train_only, "iou_thresholds": merged}
        masks = store_stats(store, parts, num_cpus=num_cpus, **second)
        rankings["iou"] = _store.rank(masks, "iou", **rank_options)
    return {m: rankings[m] for m in methods}


class _ShardWorker:
    """A Ray actor holding one part of a store open for the passes of a
    probe."""

    def __init__(self, store: str, part: Tuple[int, int], threads: int):
        from lca import _lca

        self.opened = _lca.OpenStore(store)
        self.part = part
        self.threads = threads

    def probe_pass(self, w, b, task, split, gradient):
        return self.opened.probe_pass(
            w, b, task=task, part=self.part, split=split, gradient=gradient, threads=self.threads
        )


def train_probe(
    store: PathLike,
    parts: int,
    *,
    l1: float = 1e-3,
    l2: float = 1e-3,
    l2_form: str = "frobenius",
    task: Optional[str] = None,
    tol: float = 1e-3,
    max_iter: int = 500,
    num_cpus: float = 1,
) -> "_store.StoreProbe":
    """:func:`lca.store.train_probe` with its passes data-parallel on a Ray
    cluster: ``parts`` actors each hold one run of the store's shards
    (read from a filesystem they share) and return the sums of the loss and
    gradient over its training rows; the driver adds them and runs the
    solver. Per pass, the weights go out to each actor and one gradient
    (classes × neurons doubles) comes back from each; the activations never
    move. The probe is the one of a single process up to the order of the
    sums' additions."""
    ray = _ray()
    if parts < 1:
        raise LcaError(f"parts={parts}: give at least 1 part")
    path = str(Path(os.fspath(store)).resolve())
    manifest = _store.info(path)
    parts = min(parts, max(1, len(manifest["shards"])))
    # An actor holds its CPUs as long as it lives, so more actors than the
    # cluster can place at once would wait for each other forever.
    most = max(1, int(ray.cluster_resources().get("CPU", 1) // num_cpus))
    if parts > most:
        warnings.warn(
            f"parts={parts}: the cluster holds {most} actors of {num_cpus} CPU(s) at once, and "
            f"each holds its CPUs for the whole training; using {most} parts"
        )
        parts = most
    actor = ray.remote(num_cpus=num_cpus)(_ShardWorker)
    workers = [actor.remote(path, (k, parts), max(1, int(num_cpus))) for k in range(parts)]

    def passes(w, b, split, gradient):
        w_ref, b_ref = ray.put(w), ray.put(b)
        sums = ray.get([x.probe_pass.remote(w_ref, b_ref, task, split, gradient) for x in workers])
        rows = sum(s[0] for s in sums)
        loss = sum(s[1] for s in sums)
        correct = sum(s[2] for s in sums)
        if not gradient:
            return rows, loss, correct, None, None
        return rows, loss, correct, sum(s[3] for s in sums), sum(s[4] for s in sums)

    try:
        return _store._train(passes, manifest, task, l1, l2, l2_form, tol, max_iter)
    finally:
        for x in workers:
            ray.kill(x)
