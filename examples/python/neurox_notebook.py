# %% [markdown]
# # From a NeuroX notebook to lca
#
# The cells of NeuroX's probing tutorial, with its imports switched to
# `lca.neurox`, then the same data through lca's own API and its report.
# Run it as a script (`python examples/python/neurox_notebook.py [OUT]`) or
# cell by cell in Jupyter; in Jupyter the last cell shows the report inline.
#
# The data: lca's synthetic source (planted neurons, known ground truth)
# written in NeuroX's formats, so the notebook starts where NeuroX users
# start, from an activation file, a sentence file and a label file.

# %%
import sys
import tempfile
from pathlib import Path

import lca

# NeuroX: from neurox.data import loader as data_loader, utils as data_utils
#         from neurox.interpretation import linear_probe
from lca import neurox as data_loader
from lca import neurox as data_utils
from lca import neurox as linear_probe

# 3,000 tokens of a 3-layer model with 96 neurons and 5 classes, two
# neurons per class carrying the class.
PLANTED = {
    "type": "synthetic",
    "tokens": 3000,
    "neurons": 96,
    "layers": 3,
    "classes": 5,
    "per_class": 2,
    "words_per_class": 30,
}

work = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="lca-notebook-"))
work.mkdir(parents=True, exist_ok=True)

# %% Write activations in NeuroX's JSON-lines format, with their sentences and labels.
export = lca.run(
    {
        "run": {"name": "planted data in NeuroX's formats", "seed": 5},
        "source": {"planted": PLANTED},
        "evaluator": {"export": {"type": "neurox_export", "path": str(work / "acts.json")}},
    }
)
planted_neurons = export.data["sources"]["planted"]["truth"]["informative"]

# %% The NeuroX tutorial, unchanged but for the imports.
activations, num_layers = data_loader.load_activations(str(work / "acts.json"))
tokens = data_loader.load_data(
    str(work / "acts.sentences.txt"), str(work / "acts.labels.txt"), activations, 512
)
X, y, mapping = data_utils.create_tensors(tokens, activations, "C0")
label2idx, idx2label, src2idx, idx2src = mapping
print(f"{X.shape[0]} tokens × {X.shape[1]} neurons in {num_layers} layers, {len(label2idx)} classes")

probe = linear_probe.train_logistic_regression_probe(X, y, lambda_l1=0.001, lambda_l2=0.001)
scores = linear_probe.evaluate_probe(probe, X, y, idx_to_class=idx2label)
print(f"train accuracy {scores['__OVERALL__']:.3f}")

ordering, cutoffs = linear_probe.get_neuron_ordering(probe, label2idx)
top_neurons, top_per_class = linear_probe.get_top_neurons(probe, 0.3, label2idx)
print("first ten of the LCA ordering:", ordering[:10])
print("top neurons per class at 30% of the weight mass:", {k: v.tolist() for k, v in top_per_class.items()})
found = len(set(ordering[: len(planted_neurons)]) & set(planted_neurons))
print(f"{found} of the {len(planted_neurons)} planted neurons are in the first {len(planted_neurons)} of the ordering")
assert found >= len(planted_neurons) // 2, "the planted neurons should lead the LCA ordering"

# %% The same question with lca's own API: a converged probe, two more rankers, an evaluator.
data = lca.Dataset(X, [idx2label[i] for i in y], layers=num_layers)
converged = lca.probes.elastic_net(l1=0.001, l2=0.001).fit(data)
rankings = {
    "lca": lca.rank("probe_weights", data, probe=converged),
    "correlation": lca.rank("correlation", data),
    "probeless": lca.rank("probeless", data),
}
for name, ranking in rankings.items():
    print(f"{name:12s} {ranking.top(5)}")
overlap = lca.evaluate("ranking_overlap", data, rankings=rankings)
print(overlap)

# %% A whole recipe, and its report: inline in Jupyter, a file otherwise.
results = lca.run(
    {
        "run": {"name": "LCA on planted data, from the notebook", "seed": 5},
        "source": {"planted": PLANTED},
        "probe": {"lca": {"type": "elastic_net", "l1": 0.001, "l2": 0.001}},
        "ranker": {"lca": {"type": "probe_weights", "probe": "lca"}, "corr": {"type": "correlation"}},
        "evaluator": {
            "ablation": {"type": "ablation", "rankings": ["lca"], "probes": ["lca"]},
            "recovery": {"type": "planted_recovery", "rankings": ["lca", "corr"]},
        },
    }
)
print(results)
try:
    from IPython.display import display

    display(results)
except ImportError:
    pass
written = results.write(work / "report")
print("report:", written[2])
