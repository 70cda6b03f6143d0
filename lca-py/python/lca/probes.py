"""The probes, by name, with their recipe parameters as keywords.

Each function returns a :class:`lca.ProbeSpec`; ``.fit(data)`` trains it::

    probe = lca.probes.elastic_net(l1=1e-3, l2=1e-3).fit(data)

Any other probe component, a plugin's included, is ``lca.probe(name, ...)``.
"""

from __future__ import annotations

from typing import Any

from . import ProbeSpec

__all__ = ["elastic_net", "knn", "lasso", "naive_bayes", "random_forest", "ridge", "unregularized"]


def elastic_net(**params: Any) -> ProbeSpec:
    """Logistic regression with an L1 + L2 penalty: the LCA probe
    (``l1``, ``l2``, ``solver``, ``epochs``…; see ``lca example elastic_net``)."""
    return ProbeSpec("elastic_net", **params)


def lasso(**params: Any) -> ProbeSpec:
    """Logistic regression with an L1 penalty."""
    return ProbeSpec("lasso", **params)


def ridge(**params: Any) -> ProbeSpec:
    """Logistic regression with an L2 penalty."""
    return ProbeSpec("ridge", **params)


def unregularized(**params: Any) -> ProbeSpec:
    """Logistic regression without a penalty."""
    return ProbeSpec("unregularized", **params)


def knn(**params: Any) -> ProbeSpec:
    """k-nearest-neighbour probe."""
    return ProbeSpec("knn", **params)


def naive_bayes(**params: Any) -> ProbeSpec:
    """Gaussian naive Bayes probe."""
    return ProbeSpec("naive_bayes", **params)


def random_forest(**params: Any) -> ProbeSpec:
    """Random-forest probe."""
    return ProbeSpec("random_forest", **params)
