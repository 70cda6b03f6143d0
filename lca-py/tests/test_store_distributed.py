"""Store statistics from Python, and on a local Ray cluster: the same
rankings as one process, and as `lca store stats` + `lca store rank`."""

import json
import os
import pickle

import lca
import lca.store
import numpy as np
import pytest

from conftest import run_cli

RECIPE = """
[run]
seed = 3

[source.planted]
type = "synthetic"
tokens = 6000
neurons = 300
layers = 3
classes = 6
per_class = 2
"""

METHODS = ["correlation", "probeless", "iou", "gaussian", "average_precision"]


@pytest.fixture(scope="module")
def store(lca_bin, tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    (root / "recipe.toml").write_text(RECIPE)
    done = run_cli(lca_bin, "store", "create", root / "recipe.toml", "--out", root / "store", "--shard-mib", "1")
    assert done.returncode == 0, done.stderr
    shards = lca.store.info(root / "store")["shards"]
    assert len(shards) >= 6, len(shards)
    return root / "store"


def one_pass(store):
    first = lca.store.stats(store, iou_quantile=0.005, gaussian_neurons="all", ap_bits=7)
    second = lca.store.stats(store, iou_thresholds=first)
    rankings = {m: lca.store.rank(first, m) for m in METHODS if m != "iou"}
    rankings["iou"] = lca.store.rank(second, "iou")
    return rankings


def test_python_statistics_rank_as_the_command_line_does(store, lca_bin, tmp_path):
    stats = tmp_path / "stats.json"
    done = run_cli(lca_bin, "store", "stats", store, "--out", stats)
    assert done.returncode == 0, done.stderr
    for method in ["correlation", "probeless"]:
        out = tmp_path / f"{method}.json"
        done = run_cli(lca_bin, "store", "rank", stats, "--method", method, "--out", out)
        assert done.returncode == 0, done.stderr
        cli = json.loads(out.read_text())["ranking"]
        ours = lca.store.rank(lca.store.stats(store), method)
        assert ours.order.tolist() == cli["order"]
        np.testing.assert_array_equal(ours.scores, cli["scores"])
    # A file of the command line loads and ranks the same.
    loaded = lca.store.load(stats)
    assert lca.store.rank(loaded, "correlation").order.tolist() == json.loads(
        (tmp_path / "correlation.json").read_text()
    )["ranking"]["order"]


def test_parts_merged_in_any_grouping_rank_as_one_pass(store):
    whole = one_pass(store)
    parts = [lca.store.stats(store, part=(k, 4), iou_quantile=0.005, gaussian_neurons="all", ap_bits=7) for k in range(4)]
    merged = lca.store.merge(reversed(parts))
    assert merged.rows == sum(p.rows for p in parts)
    assert sorted(merged.shards) == sorted(lca.store.stats(store).shards)
    for method in ["correlation", "probeless", "gaussian", "average_precision"]:
        assert lca.store.rank(merged, method).order.tolist() == whole[method].order.tolist(), method
    # Statistics travel between processes as their file's text.
    again = pickle.loads(pickle.dumps(merged))
    assert again.rows == merged.rows and again.parts == merged.parts
    with pytest.raises(lca.LcaError, match="both"):
        merged.merged(parts[0])


def test_bad_store_calls_raise_lca_errors(store, tmp_path):
    with pytest.raises(lca.LcaError, match="nowhere"):
        lca.store.stats(tmp_path / "nowhere")
    with pytest.raises(lca.LcaError, match="not both"):
        lca.store.stats(store, shards=(0, 1), part=(0, 2))
    with pytest.raises(lca.LcaError, match=r"part \(2, 2\)"):
        lca.store.stats(store, part=(2, 2))
    with pytest.raises(lca.LcaError, match="iou_quantile"):
        lca.store.stats(store, iou_quantile=1.5)
    with pytest.raises(lca.LcaError, match="Gaussian moments"):
        lca.store.rank(lca.store.stats(store, shards=(0, 1)), "gaussian")
    with pytest.raises(lca.LcaError, match="not a method"):
        lca.store.rank(lca.store.stats(store, shards=(0, 1)), "variance")


def worker_pid():
    return os.getpid()


def test_a_local_ray_cluster_ranks_the_store_as_one_process(store):
    import ray
    import lca.distributed

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        # Tasks run in worker processes, not in this one.
        pids = set(ray.get([ray.remote(worker_pid).remote() for _ in range(4)]))
        assert os.getpid() not in pids
        rankings = lca.distributed.rank_store(store, METHODS, parts=4)
    finally:
        ray.shutdown()
    whole = one_pass(store)
    manifest = lca.store.info(store)
    for method in METHODS:
        assert rankings[method].order.tolist() == whole[method].order.tolist(), method
        assert rankings[method].neuron_names == manifest["neurons"]
    # The planted neurons lead the correlation ranking.
    truth = set(manifest["truth"]["informative"])
    top = set(rankings["correlation"].order[: len(truth)].tolist())
    assert len(top & truth) >= len(truth) * 3 // 4, (sorted(top), sorted(truth))
