"""Store statistics from Python, and on a local Ray cluster: the same
rankings as one process, and as `lca store stats` + `lca store rank`."""

import json
import os
import pickle

import lca
import lca.store
import numpy as np
import pytest

from conftest import REPO, run_cli

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


BROWN_WORDS = [
    ("the", "at"), ("dog", "nn"), ("runs", "vbz"), ("quickly", "rb"), ("over", "in"),
    ("a", "at"), ("lazy", "jj"), ("cat", "nn"), ("sat", "vbd"), ("books", "nns"),
    ("and", "cc"), ("read", "vbd"), ("unbelievable", "jj"), (".", "."),
]


def extraction_recipe(root, sentences=600, source_id="words"):
    """A recipe extracting the tiny BERT of the transformer plugin's tests
    over a Brown-format corpus of `sentences` sentences of 5 to 24 words."""
    rng = np.random.default_rng(7)
    (root / "brown").mkdir()
    lines = []
    for _ in range(sentences):
        picks = rng.integers(0, len(BROWN_WORDS), 5 + int(rng.integers(0, 20)))
        lines.append(" ".join(f"{BROWN_WORDS[i][0]}/{BROWN_WORDS[i][1]}" for i in picks))
    (root / "brown" / "ca01").write_text("\n".join(lines) + "\n")
    model = REPO / "plugins" / "transformer" / "tests" / "fixtures" / "tiny-bert"
    recipe = root / "extract.toml"
    recipe.write_text(
        f"[run]\nseed = 5\n\n[source.{source_id}]\ntype = \"transformer\"\nmodel = {json.dumps(str(model))}\n"
        f"corpus = {json.dumps(str(root / 'brown'))}\ntask = \"universal_pos\"\ncache = false\n"
        "dev = 0.1\ntest = 0.1\n"
    )
    return recipe


def same_store(a, b):
    assert (a / "manifest.json").read_bytes() == (b / "manifest.json").read_bytes()
    assert (a / "rows.json").read_bytes() == (b / "rows.json").read_bytes()
    for shard in lca.store.info(a)["shards"]:
        assert (a / shard["file"]).read_bytes() == (b / shard["file"]).read_bytes(), shard["file"]


def test_a_local_ray_cluster_extracts_the_store_one_process_writes(lca_bin, tmp_path):
    import ray
    import lca.distributed

    recipe = extraction_recipe(tmp_path)
    one = tmp_path / "one"
    done = run_cli(lca_bin, "store", "create", recipe, "--out", one, "--shard-mib", "1", "--quiet")
    assert done.returncode == 0, done.stderr
    shards = len(lca.store.info(one)["shards"])
    assert shards >= 3, shards

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        manifest = lca.distributed.create_store(recipe, tmp_path / "ray", parts=3, shard_mib=1)
        rankings = lca.distributed.rank_store(tmp_path / "ray", METHODS, parts=2)
    finally:
        ray.shutdown()
    assert manifest == lca.store.info(one)
    same_store(one, tmp_path / "ray")
    whole = one_pass(one)
    for method in METHODS:
        assert rankings[method].order.tolist() == whole[method].order.tolist(), method

    # Without Ray: parts written from Python in any order, then joined.
    parts = tmp_path / "parts"
    for k in [1, 0]:
        written = lca.store.create(recipe, parts, part=(k, 2), shard_mib=1, threads=1)
        assert written["kind"] == "part" and written["record"]["index"] == k
        if k == 1:
            with pytest.raises(lca.LcaError, match="0/2"):
                lca.store.join(parts)
            with pytest.raises(lca.LcaError, match="lca store join"):
                lca.store.info(parts)
    assert lca.store.join(parts) == lca.store.info(one)
    same_store(one, parts)
    with pytest.raises(lca.LcaError, match="already holds a store"):
        lca.store.join(parts)
    with pytest.raises(lca.LcaError, match=r"part \(2, 2\)"):
        lca.store.create(recipe, tmp_path / "bad", part=(2, 2))
    with pytest.raises(lca.LcaError, match="dtype"):
        lca.store.create(recipe, tmp_path / "bad", dtype="f64")


def objective(x, y, w, b, l1=1e-3, l2=1e-3):
    """Mean cross-entropy plus the Frobenius elastic net, in float64."""
    z = x.astype(np.float64) @ w.T + b
    z -= z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -log_p[np.arange(len(y)), y].mean() + l1 * np.abs(w).sum() + l2 * np.sqrt((w * w).sum())


def test_a_probe_trained_by_passes_over_the_store_matches_the_in_memory_probe(store):
    import ray
    import lca.distributed
    import lca.sources

    ds = lca.sources.store(path=str(store))
    train = ds.split.count("train")
    x, y = ds.x[:train], np.asarray([ds.classes.index(label) for label in ds.labels[:train]])
    in_memory = lca.probes.elastic_net(l1=1e-3, l2=1e-3, solver="fista", tol=1e-8, max_iter=5000).fit(ds)
    local = lca.store.train_probe(store, tol=1e-8, max_iter=5000)
    assert local.report["converged"], local.report
    assert local.classes == ds.classes and local.neuron_names == ds.neuron_names
    ours = objective(x, y, local.weights, local.bias)
    theirs = objective(x, y, in_memory.weights.astype(np.float64), in_memory.bias)
    # The same optimum, reached by the same method from the same start.
    assert abs(ours - theirs) <= 1e-5 * theirs, (ours, theirs)
    assert abs(local.report["objective"] - ours) <= 1e-6 * ours
    for split in ("train", "dev", "test"):
        assert abs(local.accuracy[split] - in_memory.accuracy[split]) <= 0.005, split
    np.testing.assert_array_equal(local.predict(ds.x), local.predict_proba(ds.x).argmax(axis=1))
    # The planted neurons carry the weight.
    truth = set(lca.store.info(store)["truth"]["informative"])
    strongest = np.argsort(-np.abs(local.weights).sum(axis=0))[: len(truth)]
    assert len(set(strongest.tolist()) & truth) >= len(truth) * 3 // 4

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        # Three actors of one CPU do not fit two CPUs at once: two are used.
        with pytest.warns(UserWarning, match="using 2 parts"):
            spread = lca.distributed.train_probe(store, parts=3, tol=1e-8, max_iter=5000)
    finally:
        ray.shutdown()
    # Sums added in another grouping: the same probe, but for rounding and
    # where that makes the solver stop.
    assert abs(spread.report["objective"] - local.report["objective"]) <= 1e-7 * ours
    print("largest weight difference", np.abs(spread.weights - local.weights).max())
    np.testing.assert_allclose(spread.weights, local.weights, rtol=0, atol=1e-3)
    assert spread.accuracy == pytest.approx(local.accuracy, abs=1e-3)

    with pytest.raises(lca.LcaError, match="l1"):
        lca.store.train_probe(store, l1=-1)
    with pytest.raises(lca.LcaError, match="no task"):
        lca.store.train_probe(store, task="nonesuch")
