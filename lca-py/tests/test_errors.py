"""Bad input raises LcaError with the one-paragraph message of the command
line: what is wrong, where, and the fix."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import lca
import numpy as np
import pytest

from conftest import planted


def test_a_missing_recipe_names_the_file(tmp_path):
    missing = tmp_path / "nowhere.toml"
    with pytest.raises(lca.LcaError, match="nowhere.toml"):
        lca.run(missing)


def test_a_broken_recipe_lists_its_problems(tmp_path):
    recipe = tmp_path / "bad.toml"
    recipe.write_text('[source.s]\ntype = "synthetic"\ntokens = -4\n\n[ranker.r]\ntype = "no_such_ranker"\n')
    with pytest.raises(lca.LcaError) as raised:
        lca.run(recipe)
    message = str(raised.value)
    assert "no_such_ranker" in message and "tokens" in message
    assert "\n\n" not in message.strip()


def test_an_unknown_component_lists_the_known_names():
    x, labels = planted(rows=100, neurons=12)
    with pytest.raises(lca.LcaError, match="correlation"):
        lca.rank("corelation", lca.Dataset(x, labels))


def test_a_bad_parameter_names_it_and_its_range():
    x, labels = planted(rows=100, neurons=12)
    data = lca.Dataset(x, labels)
    with pytest.raises(lca.LcaError, match="l1"):
        lca.probes.elastic_net(l1=-1.0).fit(data)
    with pytest.raises(lca.LcaError, match="no_such"):
        lca.rank("correlation", data, no_such=3)
    with pytest.raises(lca.LcaError, match="None"):
        lca.rank("iou", data, quantile=None)


def test_bad_arrays_are_refused_with_the_fix():
    x, labels = planted(rows=50, neurons=6, classes=3)
    with pytest.raises(lca.LcaError, match="one label per row"):
        lca.Dataset(x, labels[:-1])
    with pytest.raises(lca.LcaError, match="rows × neurons"):
        lca.Dataset(x[0], labels[:1])
    with pytest.raises(lca.LcaError, match="train, dev or test"):
        lca.Dataset(x, labels, split=["train"] * 49 + ["validation"])
    with pytest.raises(lca.LcaError, match="layers"):
        lca.Dataset(x, labels, layers=4)
    broken = x.copy()
    broken[7, 3] = np.nan
    with pytest.raises(lca.LcaError, match="NaN|non-finite|finite"):
        lca.Dataset(broken, labels)


def test_a_probe_refuses_rows_of_another_width():
    x, labels = planted(rows=200, neurons=12)
    probe = lca.probes.elastic_net().fit(lca.Dataset(x, labels))
    with pytest.raises(lca.LcaError, match="12 neurons"):
        probe.predict(x[:, :5])


def test_ctrl_c_stops_a_long_step_and_raises_keyboard_interrupt():
    script = textwrap.dedent(
        """
        import sys, time
        import numpy as np
        import lca
        rng = np.random.default_rng(0)
        x = rng.normal(size=(60000, 400)).astype(np.float32)
        labels = [f"c{v}" for v in rng.integers(0, 50, 60000)]
        data = lca.Dataset(x, labels)
        print("training", flush=True)
        started = time.monotonic()
        try:
            lca.probes.elastic_net(l1=1e-6, l2=1e-6, solver="fista", tol=1e-12, max_iter=100000).fit(data)
        except KeyboardInterrupt:
            print(f"interrupted after {time.monotonic() - started:.1f} s", flush=True)
            sys.exit(0)
        print("finished without an interrupt", flush=True)
        sys.exit(1)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert child.stdout.readline().strip() == "training"
    time.sleep(1.5)
    sent = time.monotonic()
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, (out, err)
    assert "interrupted after" in out
    assert time.monotonic() - sent < 30
