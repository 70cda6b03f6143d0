"""Compares the lca and NeuroX runs of scripts/bench-neurox.sh and prints a
Markdown table: time of each step and the ratio, held-out accuracy, top-30
overlap with the planted neurons, minimal subset, and peak memory."""
import json
import os
import re
import sys

import numpy as np


def peak_rss_mb(path):
    text = open(path).read()
    kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
    return kb / 1024.0


def wall_s(path):
    text = open(path).read()
    m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", text)
    h, mi, s = m.groups()
    return (int(h) if h else 0) * 3600 + int(mi) * 60 + float(s)


def main():
    out, planted_path, acts_path = sys.argv[1:4]
    planted = set(json.load(open(planted_path))["planted"])
    k = len(planted)
    matrix_mb = os.path.getsize(acts_path) / 2**20

    nx = json.load(open(os.path.join(out, "neurox.summary.json")))
    nx_order = json.load(open(os.path.join(out, "neurox.ordering.json")))["ordering"]
    res = json.load(open(os.path.join(out, "lca", "results.json")))
    t = res["provenance"]["timings"]
    lca_order = res["rankings"]["lca"]["ranking"]["order"]
    minimal = res["evaluations"]["minimal"]["evaluation"]["metrics"]

    nx_t = nx["times_s"]
    rows = [
        ("probe training", nx_t["train_probe"], t["probe.lca"]),
        ("neuron ordering", nx_t["get_neuron_ordering"], t["ranker.lca"]),
        ("minimal-subset search", nx_t["minimal_search"], t["evaluator.minimal"]),
        ("whole run (process wall time)", wall_s(os.path.join(out, "neurox.time")), wall_s(os.path.join(out, "lca.time"))),
    ]
    print("| step | NeuroX (s) | lca (s) | NeuroX / lca |")
    print("|---|---|---|---|")
    for name, a, b in rows:
        print("| %s | %.2f | %.2f | %.1f× |" % (name, a, b, a / b))
    print()
    nx_acc = nx["test_scores"]["__OVERALL__"]
    lca_acc = res["probes"]["lca"]["accuracy"]["test"]
    print("| quality | NeuroX | lca |")
    print("|---|---|---|")
    print("| held-out accuracy | %.4f | %.4f |" % (nx_acc, lca_acc))
    print("| planted neurons in top %d | %d | %d |" % (k, len(planted & set(nx_order[:k])), len(planted & set(lca_order[:k]))))
    print("| minimal subset (neurons) | %d | %d |" % (nx["minimal"]["minimal_n"], int(minimal["neurons.lca.lca"])))
    print("| peak memory (MB) | %.0f | %.0f |" % (peak_rss_mb(os.path.join(out, "neurox.time")), peak_rss_mb(os.path.join(out, "lca.time"))))
    print()
    print("Activation matrix: %.0f MB (float32); lca peak / matrix = %.2f." % (matrix_mb, peak_rss_mb(os.path.join(out, "lca.time")) / matrix_mb))
    print("lca solver: %s" % json.dumps(res["probes"]["lca"]["details"]["report"]))


if __name__ == "__main__":
    main()
