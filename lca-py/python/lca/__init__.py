"""Neuron-level interpretation of language models, from Python.

``lca`` finds the neurons of a model that encode a property (part of speech,
suffixes, syntax, a language) with Linguistic Correlation Analysis and the
methods it is compared with. The work is done in Rust, in this process, with
the same results as the ``lca`` command.

Two ways in:

- :func:`run` runs a recipe (a TOML file, or the same thing as a dict) and
  returns its :class:`Results`, which show as the HTML report in Jupyter.
- :class:`Dataset` wraps numpy arrays; :func:`rank`, :func:`probe` (or
  :mod:`lca.probes`) and :func:`evaluate` call one component on it.

Every failure raises :class:`LcaError` with a one-paragraph message saying
what is wrong, where, and how to fix it. Ctrl-C stops the running step and
raises ``KeyboardInterrupt``.
"""

from __future__ import annotations

import html as _html
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import _lca
from ._lca import LcaError, __version__

__all__ = [
    "Dataset",
    "Evaluation",
    "LcaError",
    "Probe",
    "ProbeSpec",
    "Ranking",
    "Results",
    "__version__",
    "components",
    "evaluate",
    "probe",
    "rank",
    "run",
    "sources",
    "store",
]

PathLike = Union[str, "os.PathLike[str]"]

#: The plugin libraries shipped in the wheel (rankers such as correlation,
#: probes such as elastic_net, the transformer source).
PLUGIN_DIR = Path(__file__).parent / "plugins"


def _plugin_dirs(extra: Sequence[PathLike] = ()) -> List[str]:
    dirs = [str(Path(d)) for d in extra]
    if PLUGIN_DIR.is_dir():
        dirs.append(str(PLUGIN_DIR))
    return dirs


def _params_json(params: Mapping[str, Any]) -> str:
    for key, value in params.items():
        if value is None:
            raise LcaError(
                f"parameter `{key}` is None; leave it out to use its default"
            )
    try:
        return json.dumps(dict(params), default=_json_default)
    except TypeError as e:
        raise LcaError(f"the parameters cannot be passed to lca: {e}") from None


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{type(value).__name__} is not a number, string, list or dict")


class Ranking:
    """An order of all neurons, most salient first.

    ``order[i]`` is the column of the ``i``-th neuron; ``scores[j]`` is
    column ``j``'s score when the method gives scores. ``per_class`` maps each
    class to its own order, for methods that rank per class.
    """

    def __init__(self, record: Mapping[str, Any], neuron_names: Optional[Sequence[str]] = None):
        self._record = dict(record)
        self.order: np.ndarray = np.asarray(record["order"], dtype=np.int64)
        scores = record.get("scores")
        self.scores: Optional[np.ndarray] = (
            None if scores is None else np.asarray(scores, dtype=np.float64)
        )
        self.per_class: Dict[str, np.ndarray] = {
            c["class"]: np.asarray(c["order"], dtype=np.int64)
            for c in record.get("per_class", [])
        }
        self.details: Dict[str, Any] = dict(record.get("details", {}))
        self.neuron_names: Optional[List[str]] = (
            None if neuron_names is None else list(neuron_names)
        )

    def __len__(self) -> int:
        return len(self.order)

    def top(self, k: int = 10) -> List[Tuple[str, Optional[float]]]:
        """The first ``k`` neurons as ``(name, score)``; names are
        ``layer:unit`` when known, else the column."""
        out = []
        for j in self.order[:k]:
            name = self.neuron_names[j] if self.neuron_names else str(j)
            out.append((name, None if self.scores is None else float(self.scores[j])))
        return out

    def to_json(self) -> str:
        """The ranking in the form ``results.json`` keeps."""
        return json.dumps(self._record)

    def __repr__(self) -> str:
        head = ", ".join(name for name, _ in self.top(5))
        return f"Ranking({len(self)} neurons; top: {head}, ...)"


class Evaluation:
    """An evaluator's tables and figures, as in ``results.json``."""

    def __init__(self, record: Mapping[str, Any]):
        self.data: Dict[str, Any] = dict(record)

    @property
    def tables(self) -> List[Dict[str, Any]]:
        """Each table with its title, columns and rows."""
        return list(self.data.get("tables", []))

    def __repr__(self) -> str:
        titles = ", ".join(t.get("title", "?") for t in self.tables)
        return f"Evaluation(tables: {titles})"


class Results:
    """What a recipe run produced: sources, probes, rankings and evaluations.

    ``data`` is ``results.json`` as a dict. In Jupyter the object shows as the
    run's HTML report.
    """

    def __init__(self, output: "_lca.RunOutput"):
        self._output = output
        self.data: Dict[str, Any] = json.loads(output.json())
        arrays = output.probe_arrays()
        self.rankings: Dict[str, Ranking] = {}
        for rid, rec in self.data["rankings"].items():
            self.rankings[rid] = Ranking(rec["ranking"])
        self.probes: Dict[str, Dict[str, Any]] = {
            pid: {**rec, "arrays": arrays.get(pid, {})}
            for pid, rec in self.data["probes"].items()
        }
        self.evaluations: Dict[str, Evaluation] = {
            eid: Evaluation(rec["evaluation"])
            for eid, rec in self.data["evaluations"].items()
        }

    def report_html(self) -> str:
        """The HTML report, one self-contained page."""
        return self._output.html()

    def report_markdown(self) -> str:
        """The Markdown report."""
        return self._output.markdown()

    def _repr_html_(self) -> str:
        # The report is a whole page with its own styles; an iframe keeps
        # them from leaking into the notebook.
        page = _html.escape(self.report_html(), quote=True)
        return (
            f'<iframe srcdoc="{page}" style="width:100%;height:720px;border:0" '
            f'title="lca report"></iframe>'
        )

    def write(self, out: PathLike) -> List[str]:
        """Writes ``results.json``, ``report.md``, ``report.html`` and the
        probes' arrays into ``out``, as ``lca run`` does; returns the paths of
        the first three."""
        return self._output.write(os.fspath(out))

    def __repr__(self) -> str:
        name = self.data["recipe"]["name"]
        return (
            f"Results({name!r}: {len(self.probes)} probes, {len(self.rankings)} rankings, "
            f"{len(self.evaluations)} evaluations)"
        )


def run(
    recipe: Union[PathLike, Mapping[str, Any]],
    out: Optional[PathLike] = None,
    threads: Optional[int] = None,
    seed: Optional[int] = None,
    plugin_dirs: Sequence[PathLike] = (),
) -> Results:
    """Runs a recipe and returns its results.

    ``recipe`` is a recipe file, or a dict with the same tables (relative
    paths in a dict are taken from the working directory). ``threads`` and
    ``seed`` override the recipe's ``[run]`` values. With ``out``, the results
    and reports are also written there, as ``lca run --out`` does.
    """
    dirs = _plugin_dirs(plugin_dirs)
    if isinstance(recipe, Mapping):
        output = _lca.run_recipe(
            str(Path.cwd() / "recipe.toml"),
            text=_recipe_text(recipe),
            threads=threads,
            seed=seed,
            plugin_dirs=dirs,
        )
    else:
        output = _lca.run_recipe(os.fspath(recipe), threads=threads, seed=seed, plugin_dirs=dirs)
    results = Results(output)
    if out is not None:
        results.write(out)
    return results


def _recipe_text(recipe: Mapping[str, Any]) -> str:
    return _lca.recipe_text(_params_json(_without_none(recipe)))


def _without_none(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    return value


class Dataset:
    """Activations with one label per row, ready for probes, rankers and
    evaluators.

    - ``x``: rows × neurons. A C-ordered ``float32`` array is used in place;
      anything else is converted once.
    - ``labels``: one class per row (strings, or anything ``str`` accepts).
    - ``split``: ``"train"``, ``"dev"`` or ``"test"`` per row; all rows train
      when left out. Rankers read the training rows; probes are scored on
      every split that has rows.
    - ``words`` and ``sentence_ids``: the word behind each row and the
      sentence it belongs to, for evaluators that show words.
    - ``layers``: how many equal layers the columns hold, layer after layer,
      so neurons are named ``layer:unit``.
    """

    def __init__(
        self,
        x: Any,
        labels: Sequence[Any],
        *,
        split: Optional[Sequence[str]] = None,
        words: Optional[Sequence[str]] = None,
        sentence_ids: Optional[Sequence[int]] = None,
        layers: int = 1,
        name: str = "arrays",
    ):
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 2:
            raise LcaError(
                f"the activations have {x.ndim} dimensions; pass a rows × neurons matrix"
            )
        labels = [str(label) for label in labels]
        if len(labels) != x.shape[0]:
            raise LcaError(
                f"{len(labels)} labels for {x.shape[0]} activation rows; give one label per row"
            )
        for what, values in (("words", words), ("sentence_ids", sentence_ids), ("split", split)):
            if values is not None and len(values) != x.shape[0]:
                raise LcaError(
                    f"{len(values)} entries in {what} for {x.shape[0]} activation rows; "
                    f"give one per row"
                )
        rows = np.arange(x.shape[0])
        counts = (x.shape[0], 0, 0)
        if split is not None:
            names = np.asarray([str(s) for s in split])
            bad = sorted(set(names) - {"train", "dev", "test"})
            if bad:
                raise LcaError(
                    f"split names {bad} are not train, dev or test; give one of those per row"
                )
            rank = np.select([names == "train", names == "dev"], [0, 1], 2)
            rows = np.argsort(rank, kind="stable")
            counts = tuple(int((names == s).sum()) for s in ("train", "dev", "test"))
            if not np.array_equal(rows, np.arange(len(rows))):
                x = np.ascontiguousarray(x[rows])
                labels = [labels[r] for r in rows]
                words = None if words is None else [words[r] for r in rows]
                sentence_ids = None if sentence_ids is None else [sentence_ids[r] for r in rows]
        starts = None
        if sentence_ids is not None:
            ids = list(sentence_ids)
            starts = [i for i in range(len(ids)) if i == 0 or ids[i] != ids[i - 1]]
        self.x: np.ndarray = x
        #: For each row here, its row in the arrays given (rows are kept in
        #: train, dev, test order).
        self.rows: np.ndarray = rows
        #: Where the data came from (for a source: model, corpus, layers…).
        self.details: Dict[str, str] = {}
        self._data = _lca.ArrayData(
            x,
            labels,
            counts,
            layers=layers,
            words=None if words is None else [str(w) for w in words],
            sentence_starts=starts,
            name=name,
        )

    @classmethod
    def _loaded(cls, x: np.ndarray, data: "_lca.ArrayData", details: Mapping[str, str]) -> "Dataset":
        """A dataset a source loaded, its rows already in train, dev, test
        order."""
        dataset = cls.__new__(cls)
        dataset.x = x
        dataset.rows = np.arange(x.shape[0])
        dataset._data = data
        dataset.details = dict(details)
        return dataset

    @property
    def split(self) -> List[str]:
        """``"train"``, ``"dev"`` or ``"test"`` per row (rows are in that
        order)."""
        train, dev, test = self._data.splits
        return ["train"] * train + ["dev"] * dev + ["test"] * test

    @property
    def labels(self) -> List[str]:
        """Each row's class name."""
        names = self._data.classes
        return [names[i] for i in self._data.label_ids]

    @property
    def words(self) -> Optional[List[str]]:
        """Each row's word, when the data has words."""
        return self._data.words

    @property
    def classes(self) -> List[str]:
        """The class names, sorted; class ids index this list."""
        return self._data.classes

    @property
    def neuron_names(self) -> List[str]:
        """Each column's neuron as ``layer:unit``."""
        return self._data.neuron_names

    def __repr__(self) -> str:
        rows, neurons, classes = self._data.shape
        return f"Dataset({rows} rows × {neurons} neurons, {classes} classes)"


class Probe:
    """A trained probe: accuracy per split, weights and bias (linear probes),
    predictions."""

    def __init__(self, fitted: "_lca.FittedProbe"):
        self._fitted = fitted
        arrays = fitted.arrays()
        self.name: str = fitted.name
        self.classes: List[str] = fitted.classes
        self.accuracy: Dict[str, float] = fitted.accuracy
        self.details: Dict[str, Any] = json.loads(fitted.details_json())
        self.weights: Optional[np.ndarray] = arrays.get("weights")
        self.bias: Optional[np.ndarray] = arrays.get("bias")
        self.arrays: Dict[str, np.ndarray] = dict(arrays)

    def predict_proba(self, x: Any) -> np.ndarray:
        """Class probabilities of each row of ``x``."""
        return self._fitted.predict_proba(np.ascontiguousarray(x, dtype=np.float32))

    def predict(self, x: Any) -> np.ndarray:
        """The most probable class id of each row of ``x``."""
        return np.argmax(self.predict_proba(x), axis=1)

    def __repr__(self) -> str:
        acc = ", ".join(f"{k} {v:.4f}" for k, v in self.accuracy.items())
        return f"Probe({self.name}; accuracy {acc})"


class ProbeSpec:
    """An untrained probe: a component name and its parameters."""

    def __init__(self, name: str, **params: Any):
        self.name = name
        self.params = params

    def fit(
        self,
        data: Dataset,
        *,
        threads: Optional[int] = None,
        seed: Optional[int] = None,
        plugin_dirs: Sequence[PathLike] = (),
    ) -> Probe:
        """Trains on ``data``'s training rows and scores every split."""
        fitted = _lca.fit_probe(
            self.name,
            _params_json(self.params),
            data._data,
            threads=threads,
            seed=seed,
            plugin_dirs=_plugin_dirs(plugin_dirs),
        )
        return Probe(fitted)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"ProbeSpec({self.name}; {params})"


def probe(name: str, **params: Any) -> ProbeSpec:
    """The probe component ``name`` (``elastic_net``, ``lasso``, ``knn``…) with
    its recipe parameters; ``.fit(data)`` trains it."""
    return ProbeSpec(name, **params)


def rank(
    method: str,
    data: Dataset,
    *,
    probe: Optional[Probe] = None,
    rankings: Optional[Mapping[str, Ranking]] = None,
    threads: Optional[int] = None,
    seed: Optional[int] = None,
    plugin_dirs: Sequence[PathLike] = (),
    **params: Any,
) -> Ranking:
    """Ranks ``data``'s neurons with the ranker ``method`` (``correlation``,
    ``probeless``, ``probe_weights`` with ``probe=``, any plugin ranker),
    with its recipe parameters as keywords.

    The seed is that of the recipe step ``ranker.<method>`` of a run with
    this seed (0 by default), so results match the command line's."""
    record = _lca.rank(
        method,
        _params_json(params),
        data._data,
        probe=None if probe is None else probe._fitted,
        rankings=[(k, r.to_json()) for k, r in (rankings or {}).items()],
        threads=threads,
        seed=seed,
        plugin_dirs=_plugin_dirs(plugin_dirs),
    )
    return Ranking(json.loads(record), data.neuron_names)


def evaluate(
    name: str,
    data: Dataset,
    *,
    rankings: Optional[Mapping[str, Ranking]] = None,
    probes: Optional[Mapping[str, Probe]] = None,
    threads: Optional[int] = None,
    seed: Optional[int] = None,
    plugin_dirs: Sequence[PathLike] = (),
    **params: Any,
) -> Evaluation:
    """Runs the evaluator ``name`` (``minimal_subset``, ``ablation``,
    ``ranking_overlap``…) on ``data`` with the rankings and probes it reads,
    keyed by the ids its tables show."""
    record = _lca.evaluate(
        name,
        _params_json(params),
        data._data,
        rankings=[(k, r.to_json()) for k, r in (rankings or {}).items()],
        probes=[(k, p._fitted) for k, p in (probes or {}).items()],
        threads=threads,
        seed=seed,
        plugin_dirs=_plugin_dirs(plugin_dirs),
    )
    return Evaluation(json.loads(record))


def components(plugin_dirs: Sequence[PathLike] = ()) -> List[Dict[str, Any]]:
    """Every source, probe, ranker and evaluator available, with its summary,
    parameters, example and origin (built-in or plugin)."""
    return [
        {**entry["info"], "origin": entry["origin"]}
        for entry in json.loads(_lca.component_list(plugin_dirs=_plugin_dirs(plugin_dirs)))
    ]


from . import probes  # noqa: E402  (uses ProbeSpec)
from . import sources  # noqa: E402  (uses Dataset)
from . import store  # noqa: E402  (uses Ranking)
