"""Activation sources from Python: each loads a :class:`lca.Dataset` as the
recipe step ``[source.<id>]`` of that type would, with the same parameters
(``lca example <type>`` lists them) and the same seed, so the rows, split
and labels are those of ``lca run``::

    ds = lca.sources.transformer(model="models/all-MiniLM-L6-v2",
                                 corpus="data/brown", task="universal_pos", sentences=2000)
    ds = lca.sources.npy(path="acts.npy", labels="labels.txt", layers=7)
    ds = lca.sources.store(path="stores/big", task="pos")
    ds = lca.sources.load("my_plugin_source", ...)   # any source by name

A source function loads the whole dataset into memory (the activations
are one numpy array, in train, dev, test row order); a store larger than
memory is ranked with :mod:`lca.store` instead. Relative paths are taken
from the working directory.
"""

from __future__ import annotations

import json
from typing import Any, Optional, Sequence

from . import Dataset, PathLike, _lca, _params_json, _plugin_dirs, _without_none

__all__ = ["load", "neurox_hdf5", "neurox_json", "npy", "store", "synthetic", "transformer"]


def load(
    name: str,
    *,
    seed: Optional[int] = None,
    threads: Optional[int] = None,
    plugin_dirs: Sequence[PathLike] = (),
    **params: Any,
) -> Dataset:
    """The dataset of the source type ``name`` (built in, or from a plugin)
    with recipe parameters ``params``. ``seed`` is the recipe's seed (0 by
    default), ``threads`` the worker threads (all cores by default)."""
    x, data, details = _lca.load_source(
        name,
        _params_json(_without_none(params)),
        seed=seed,
        threads=threads,
        plugin_dirs=_plugin_dirs(plugin_dirs),
    )
    return Dataset._loaded(x, data, json.loads(details))


def transformer(**params: Any) -> Dataset:
    """Per-word activations of a transformer (encoder or decoder, from a
    folder, a GGUF file or a Hugging Face id) on an annotated corpus:
    ``model=``, ``corpus=``, ``task=``, ``site=``, ``layers=``…"""
    return load("transformer", **params)


def npy(**params: Any) -> Dataset:
    """A matrix file (``.npy``, ``.npz``, ``.safetensors``) with a label
    file: ``path=``, ``labels=``, ``words=``, ``layers=``…"""
    return load("npy", **params)


def store(**params: Any) -> Dataset:
    """An activation store (``lca store create``): ``path=``, ``task=``…"""
    return load("store", **params)


def synthetic(**params: Any) -> Dataset:
    """Planted data whose informative neurons are known: ``tokens=``,
    ``neurons=``, ``classes=``…"""
    return load("synthetic", **params)


def neurox_json(**params: Any) -> Dataset:
    """NeuroX JSON-lines activations with their sentences and labels."""
    return load("neurox_json", **params)


def neurox_hdf5(**params: Any) -> Dataset:
    """NeuroX HDF5 activations (the HDF5 plugin) with their sentences and
    labels."""
    return load("neurox_hdf5", **params)
