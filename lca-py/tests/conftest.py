"""Shared data for the tests of the `lca` package.

The tests compare the package with the `lca` command built from the same
sources: scripts/test-python.sh sets LCA_BIN to it. Without LCA_BIN the
tests that need it fail, never skip.
"""

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def lca_bin() -> Path:
    value = os.environ.get("LCA_BIN")
    assert value, "LCA_BIN must name the `lca` command built from this checkout (scripts/test-python.sh sets it)"
    path = Path(value)
    assert path.is_file(), f"LCA_BIN={value} is not a file"
    return path


def run_cli(lca_bin: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(lca_bin), *map(str, args)], capture_output=True, text=True)


def planted(rows: int = 2000, neurons: int = 40, classes: int = 5, seed: int = 0):
    """Gaussian activations where neuron c carries class c (+2 on its rows)
    and neuron classes + c is a noisy copy of it; the rest is noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, rows)
    x = rng.normal(size=(rows, neurons)).astype(np.float32)
    x[np.arange(rows), y] += 2.0
    x[:, classes : 2 * classes] = x[:, :classes] + 0.5 * rng.normal(size=(rows, classes)).astype(np.float32)
    labels = [f"class{c}" for c in y]
    return x, labels


def standard_split(rows: int):
    """80% train, then 10% dev, then 10% test, as the npy source splits a
    file by tokens without shuffling."""
    dev = test = rows // 10
    return ["train"] * (rows - dev - test) + ["dev"] * dev + ["test"] * test
