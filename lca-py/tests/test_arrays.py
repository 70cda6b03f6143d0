"""Components called on numpy arrays: the same results as a recipe over the
same matrix, planted neurons first, and the invariants of a ranking."""

import json

import lca
import numpy as np
import pytest

from conftest import planted, run_cli, standard_split


def npy_recipe(tmp_path, x, labels, body):
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "labels.txt").write_text("\n".join(labels) + "\n")
    head = f"""
[run]
seed = 0

[source.acts]
type = "npy"
path = "{tmp_path / 'x.npy'}"
labels = "{tmp_path / 'labels.txt'}"
shuffle = false
split_by = "token"
dev = 0.1
test = 0.1
"""
    path = tmp_path / "recipe.toml"
    path.write_text(head + body)
    return path


def test_rankers_and_probes_on_arrays_match_a_recipe_on_the_same_matrix(lca_bin, tmp_path):
    x, labels = planted()
    data = lca.Dataset(x, labels, split=standard_split(len(labels)))
    recipe = npy_recipe(
        tmp_path,
        x,
        labels,
        """
[probe.elastic_net]
type = "elastic_net"
l1 = 0.001
l2 = 0.001

[ranker.probe_weights]
type = "probe_weights"
probe = "elastic_net"

[ranker.correlation]
type = "correlation"

[ranker.probeless]
type = "probeless"

[ranker.random]
type = "random"

[evaluator.ablation]
type = "ablation"
rankings = ["probe_weights"]
probes = ["elastic_net"]
""",
    )
    done = run_cli(lca_bin, "run", recipe, "--out", tmp_path / "out", "--quiet")
    assert done.returncode == 0, done.stderr
    cli = json.loads((tmp_path / "out/results.json").read_text())

    probe = lca.probes.elastic_net(l1=0.001, l2=0.001).fit(data)
    assert probe.accuracy == cli["probes"]["elastic_net"]["accuracy"]
    npz = np.load(tmp_path / "out/probes/elastic_net.npz")
    np.testing.assert_array_equal(probe.weights, npz["weights"])
    np.testing.assert_array_equal(probe.bias, npz["bias"])
    np.testing.assert_array_equal(probe.predict(x[-200:]), npz["predictions_test"])

    rankings = {
        "probe_weights": lca.rank("probe_weights", data, probe=probe),
        "correlation": lca.rank("correlation", data),
        "probeless": lca.rank("probeless", data),
        "random": lca.rank("random", data),
    }
    for name, ranking in rankings.items():
        expected = cli["rankings"][name]["ranking"]
        assert ranking.order.tolist() == expected["order"], name
        if "scores" in expected:
            np.testing.assert_array_equal(ranking.scores, expected["scores"])

    ablation = lca.evaluate(
        "ablation", data, rankings={"probe_weights": rankings["probe_weights"]}, probes={"elastic_net": probe}
    )
    assert ablation.data == cli["evaluations"]["ablation"]["evaluation"]


@pytest.mark.parametrize("method", ["correlation", "probeless", "iou", "iou_neurox", "gaussian"])
def test_planted_neurons_rank_first(method):
    x, labels = planted(rows=1500, neurons=30, classes=4, seed=1)
    data = lca.Dataset(x, labels)
    ranking = lca.rank(method, data)
    # Neurons 0-3 carry the classes and 4-7 are their noisy copies.
    assert set(ranking.order[:4].tolist()) <= set(range(8)), ranking.order[:8]
    assert sorted(ranking.order.tolist()) == list(range(30))


def test_the_same_seed_gives_the_same_ranking_and_another_seed_another():
    x, labels = planted(rows=300, neurons=50, seed=2)
    data = lca.Dataset(x, labels)
    first = lca.rank("random", data, seed=11)
    again = lca.rank("random", data, seed=11)
    other = lca.rank("random", data, seed=12)
    assert first.order.tolist() == again.order.tolist()
    assert first.order.tolist() != other.order.tolist()
    assert sorted(first.order.tolist()) == list(range(50))


def test_a_float32_c_array_is_used_in_place_and_others_converted_once():
    x, labels = planted(rows=200, neurons=10)
    assert lca.Dataset(x, labels).x is x
    as_f64 = x.astype(np.float64)
    converted = lca.Dataset(as_f64, labels).x
    assert converted.dtype == np.float32 and converted is not as_f64
    fortran = np.asfortranarray(x)
    assert lca.Dataset(fortran, labels).x.flags["C_CONTIGUOUS"]


def test_rows_are_put_in_split_order_and_remembered():
    x, labels = planted(rows=30, neurons=6, classes=3)
    split = ["test", "train", "dev"] * 10
    data = lca.Dataset(x, labels, split=split, words=[f"w{i}" for i in range(30)], sentence_ids=[i // 5 for i in range(30)])
    assert data.rows[:10].tolist() == list(range(1, 30, 3))
    np.testing.assert_array_equal(data.x, x[data.rows])
    probe = lca.probes.elastic_net().fit(data)
    assert set(probe.accuracy) == {"train", "dev", "test"}


def test_constant_neurons_go_last_as_in_a_run():
    x, labels = planted(rows=400, neurons=12, classes=3)
    x[:, 0] = 1.0  # constant, though in the place of an informative neuron
    ranking = lca.rank("correlation", lca.Dataset(x, labels))
    assert ranking.order[-1] == 0
    assert np.all(np.isfinite(ranking.scores))


def test_layers_name_the_neurons():
    x, labels = planted(rows=100, neurons=12, classes=3)
    data = lca.Dataset(x, labels, layers=3)
    assert data.neuron_names[:5] == [str(n) for n in data.neuron_names[:5]]
    assert len(set(data.neuron_names)) == 12
    assert data.neuron_names[4] != data.neuron_names[0]
    ranking = lca.rank("correlation", data)
    assert ranking.top(3)[0][0] in data.neuron_names
