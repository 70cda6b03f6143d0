"""Compares the lca and NeuroX runs of scripts/bench-neurox.sh and
scripts/bench-neurox-real.sh and prints Markdown tables: time of each step
and the ratio, held-out accuracy, top-k overlap with the planted neurons
(when there are planted neurons), minimal subset, and peak memory, for each
lca run.

    python compare.py OUT PLANTED.json|- ACTS.npy LABEL...

Each LABEL names an lca run: OUT/lca-LABEL/results.json and
OUT/lca-LABEL.time (a solver tolerance for bench-neurox.sh, a solver name
for bench-neurox-real.sh)."""
import json
import os
import re
import sys


def time_file(path):
    text = open(path).read()
    kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
    m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", text)
    h, mi, s = m.groups()
    return (int(h) if h else 0) * 3600 + int(mi) * 60 + float(s), kb / 1024.0


def main():
    out, planted_path, acts_path = sys.argv[1:4]
    tolerances = sys.argv[4:]
    planted = set(json.load(open(planted_path))["planted"]) if planted_path != "-" else None
    k = len(planted) if planted else 0
    matrix_mb = os.path.getsize(acts_path) / 2**20

    nx = json.load(open(os.path.join(out, "neurox.summary.json")))
    nx_order = json.load(open(os.path.join(out, "neurox.ordering.json")))["ordering"]
    nx_t = nx["times_s"]
    nx_wall, nx_mem = time_file(os.path.join(out, "neurox.time"))
    nx_acc = nx["test_scores"]["__OVERALL__"]

    runs = []
    for tol in tolerances:
        res = json.load(open(os.path.join(out, "lca-%s" % tol, "results.json")))
        wall, mem = time_file(os.path.join(out, "lca-%s.time" % tol))
        runs.append((tol, res, wall, mem))

    def name(label):
        try:
            return "lca, tol %s" % float(label)
        except ValueError:
            return "lca, %s" % label

    header = "| | NeuroX | " + " | ".join(name(tol) for tol, *_ in runs) + " |"
    print(header)
    print("|---" * (2 + len(runs)) + "|")

    def row(name, nx_value, values, fmt):
        print("| %s | %s | %s |" % (name, fmt(nx_value), " | ".join(fmt(v) for v in values)))

    def ratio_row(name, nx_value, values):
        print("| %s | %.2f s | %s |" % (name, nx_value, " | ".join("%.2f s (%.1f×)" % (v, nx_value / v) for v in values)))

    t = [r[1]["provenance"]["timings"] for r in runs]
    ratio_row("probe training", nx_t["train_probe"], [x["probe.lca"] for x in t])
    ratio_row("neuron ordering", nx_t["get_neuron_ordering"], [x["ranker.lca"] for x in t])
    ratio_row("minimal-subset search", nx_t["minimal_search"], [x["evaluator.minimal"] for x in t])
    ratio_row("whole run (process wall time)", nx_wall, [r[2] for r in runs])
    row("held-out accuracy", nx_acc, [r[1]["probes"]["lca"]["accuracy"]["test"] for r in runs], lambda v: "%.4f" % v)
    if planted:
        row("planted neurons in top %d" % k, len(planted & set(nx_order[:k])),
            [len(planted & set(r[1]["rankings"]["lca"]["ranking"]["order"][:k])) for r in runs], str)
    row("minimal subset (neurons)", nx["minimal"]["minimal_n"],
        [int(r[1]["evaluations"]["minimal"]["evaluation"]["metrics"]["neurons.lca.lca"]) for r in runs], str)
    row("peak memory (MB)", nx_mem, [r[3] for r in runs], lambda v: "%.0f" % v)
    row("peak memory / matrix", nx_mem / matrix_mb, [r[3] / matrix_mb for r in runs], lambda v: "%.2f" % v)
    print()
    print("Activation matrix: %.0f MB (float32), %d planted neurons." % (matrix_mb, k))
    print("NeuroX held-out accuracy %.4f, train accuracy %.4f." % (nx_acc, nx["train_scores"]["__OVERALL__"]))
    for tol, res, _, _ in runs:
        rep = res["probes"]["lca"]["details"]["report"]
        print("lca %s: %d iterations, %.0f passes over the data, objective %.5f, converged %s, %d zero weights"
              % (tol, rep["iterations"], rep["data_passes"], rep["objective"], rep["converged"], rep["zero_weights"]))


if __name__ == "__main__":
    main()
