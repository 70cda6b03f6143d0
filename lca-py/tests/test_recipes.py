"""`lca.run` against `lca run`: the same recipe gives the same results."""

import json
from pathlib import Path

import lca
import pytest

from conftest import REPO, run_cli

# Everything but provenance (versions, timings) depends only on the recipe
# and its seed.
COMPARED = ["recipe", "seed", "steps", "sources", "probes", "rankings", "evaluations"]


def test_the_synthetic_flagship_gives_the_numbers_of_the_command_line(lca_bin, tmp_path):
    recipe = REPO / "examples/recipes/lca-synthetic.toml"
    done = run_cli(lca_bin, "run", recipe, "--out", tmp_path / "cli", "--quiet")
    assert done.returncode == 0, done.stderr
    cli = json.loads((tmp_path / "cli/results.json").read_text())

    results = lca.run(recipe, out=tmp_path / "py")
    for key in COMPARED:
        assert results.data[key] == cli[key], key
    written = json.loads((tmp_path / "py/results.json").read_text())
    assert all(written[k] == cli[k] for k in COMPARED)
    assert (tmp_path / "py/probes/lca.npz").is_file()

    # The Python objects carry the same numbers as the JSON.
    lca_ranking = results.rankings["lca"]
    assert lca_ranking.order.tolist() == cli["rankings"]["lca"]["ranking"]["order"]
    assert sorted(lca_ranking.order.tolist()) == list(range(300))
    assert results.probes["lca"]["accuracy"] == cli["probes"]["lca"]["accuracy"]
    weights = results.probes["lca"]["arrays"]["weights"]
    assert weights.shape == tuple(cli["probes"]["lca"]["weights_shape"])
    assert int((weights == 0).sum()) == cli["probes"]["lca"]["zero_weights"]
    assert "minimal_subset" in {e["type"] for e in cli["evaluations"].values()}
    assert set(results.evaluations) == set(cli["evaluations"])


def test_a_recipe_given_as_a_dict_runs_like_its_file(lca_bin, tmp_path):
    recipe = {
        "run": {"name": "dict recipe", "seed": 3},
        "source": {
            "planted": {
                "type": "synthetic",
                "tokens": 1500,
                "neurons": 60,
                "layers": 2,
                "classes": 4,
                "per_class": 2,
            }
        },
        "probe": {"en": {"type": "elastic_net", "l1": 0.001, "l2": 0.001}},
        "ranker": {
            "lca": {"type": "probe_weights", "probe": "en"},
            "corr": {"type": "correlation"},
        },
        "evaluator": {"recovery": {"type": "planted_recovery", "rankings": ["lca", "corr"]}},
    }
    results = lca.run(recipe)
    text = lca._lca.recipe_text(json.dumps(recipe))
    (tmp_path / "recipe.toml").write_text(text)
    done = run_cli(lca_bin, "run", tmp_path / "recipe.toml", "--out", tmp_path / "cli", "--quiet")
    assert done.returncode == 0, done.stderr
    cli = json.loads((tmp_path / "cli/results.json").read_text())
    for key in ["seed", "steps", "sources", "probes", "rankings", "evaluations"]:
        assert results.data[key] == cli[key], key
    # Planted neurons come first for both methods.
    truth = set(results.data["sources"]["planted"]["truth"]["informative"])
    assert len(truth) == 8
    for method in ["lca", "corr"]:
        top = set(results.rankings[method].order[: len(truth)].tolist())
        assert len(top & truth) >= 6, (method, sorted(top), sorted(truth))
    assert results.evaluations["recovery"].tables


def test_the_report_shows_inline_and_can_be_written(tmp_path):
    results = lca.run(REPO / "examples/recipes/lca-synthetic.toml")
    page = results.report_html()
    assert page.lstrip().lower().startswith("<!doctype html")
    inline = results._repr_html_()
    assert inline.startswith("<iframe srcdoc=") and "lca report" in inline
    assert "## Findings" in results.report_markdown()
    paths = results.write(tmp_path / "out")
    assert [Path(p).name for p in paths] == ["results.json", "report.md", "report.html"]
    assert all(Path(p).stat().st_size > 0 for p in paths)
