"""`lca.sources`: a source loaded from Python gives the dataset of the
recipe step of the same type and seed: the same rows, split, labels and
words, and so the same rankings."""

import lca
import lca.sources
import numpy as np
import pytest

from conftest import REPO, planted, run_cli, standard_split
from test_store_distributed import extraction_recipe

SYNTHETIC = {"tokens": 3000, "neurons": 60, "layers": 3, "classes": 5, "per_class": 2}


def test_a_source_gives_the_dataset_and_rankings_of_its_recipe_step(lca_bin, tmp_path):
    recipe = {
        "run": {"seed": 11},
        # The step id is the type's name, as lca.sources seeds it.
        "source": {"synthetic": {"type": "synthetic", **SYNTHETIC}},
        "ranker": {"corr": {"type": "correlation"}},
    }
    results = lca.run(recipe)
    ds = lca.sources.synthetic(seed=11, **SYNTHETIC)
    assert ds.x.shape == (3000, 60) and ds.x.dtype == np.float32
    assert ds.neuron_names[:2] == ["L0:0", "L0:1"]
    ours = lca.rank("correlation", ds)
    assert ours.order.tolist() == results.rankings["corr"].order.tolist()
    np.testing.assert_array_equal(ours.scores, results.rankings["corr"].scores)
    # Another seed draws other data.
    other = lca.sources.synthetic(seed=12, **SYNTHETIC)
    assert not np.array_equal(other.x, ds.x)


def test_npy_and_store_sources_read_back_their_files(lca_bin, tmp_path):
    x, labels = planted(rows=1000, neurons=24)
    np.save(tmp_path / "acts.npy", x)
    (tmp_path / "labels.txt").write_text("\n".join(labels) + "\n")
    ds = lca.sources.npy(path=str(tmp_path / "acts.npy"), labels=str(tmp_path / "labels.txt"),
                         layers=2, shuffle=False)
    assert ds.split == standard_split(1000)
    np.testing.assert_array_equal(ds.x, x)
    assert ds.labels == labels
    assert ds.neuron_names[12] == "L1:0"

    done = run_cli(lca_bin, "store", "import", tmp_path / "acts.npy", "--labels", tmp_path / "labels.txt",
                   "--param", "layers=2", "--param", "shuffle=false", "--out", tmp_path / "store", "--quiet")
    assert done.returncode == 0, done.stderr
    stored = lca.sources.store(path=str(tmp_path / "store"))
    np.testing.assert_array_equal(stored.x, ds.x)
    assert stored.labels == ds.labels and stored.split == ds.split
    assert stored.neuron_names == ds.neuron_names


def test_the_transformer_source_gives_the_rows_of_its_store(lca_bin, tmp_path):
    # The recipe's source id is the type's name, so that both draw the same
    # split from seed 5.
    recipe = extraction_recipe(tmp_path, sentences=120, source_id="transformer")
    done = run_cli(lca_bin, "store", "create", recipe, "--out", tmp_path / "store", "--quiet")
    assert done.returncode == 0, done.stderr
    model = REPO / "plugins/transformer/tests/fixtures/tiny-bert"
    params = dict(model=str(model), corpus=str(tmp_path / "brown"), task="universal_pos",
                  cache=False, dev=0.1, test=0.1)
    ds = lca.sources.transformer(seed=5, **params)
    stored = lca.sources.store(path=str(tmp_path / "store"))
    assert ds.words == stored.words and ds.labels == stored.labels and ds.split == stored.split
    np.testing.assert_allclose(ds.x, stored.x, rtol=0, atol=1e-5)
    assert ds.details["model"].endswith("tiny-bert")
    assert len(ds.neuron_names) == 96 and ds.neuron_names[-1] == "L2:31"


def test_bad_sources_raise_lca_errors(tmp_path):
    with pytest.raises(lca.LcaError, match="unknown source"):
        lca.sources.load("nonesuch")
    with pytest.raises(lca.LcaError, match="path"):
        lca.sources.npy(labels="labels.txt")
    with pytest.raises(lca.LcaError, match="nowhere"):
        lca.sources.store(path=str(tmp_path / "nowhere"))
