"""Compares extractions of one recipe run several ways (scripts/bench-bf16.sh,
scripts/bench-weights.sh) with a reference run and prints Markdown tables:
the activations' differences, the LCA probe's accuracy, extraction time and
peak memory, and the top-k overlap of every ranking with the reference's.

    python compare_extractions.py OUT SOURCE REFERENCE OTHER...

Each run NAME has OUT/NAME/results.json, its cached matrix under
OUT/cache-NAME/, and optionally OUT/NAME.time (GNU time -v output)."""
import glob
import json
import os
import struct
import sys

import numpy as np

from compare import time_file


def matrix(out, name):
    [path] = glob.glob(f"{out}/cache-{name}/**/*.safetensors", recursive=True)
    with open(path, "rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(size))
        data = f.read()
    for key, t in header.items():
        if key != "__metadata__" and len(t["shape"]) == 2:
            start, end = t["data_offsets"]
            dtype = {"F32": "<f4", "F16": "<f2"}[t["dtype"]]
            return np.frombuffer(data[start:end], dtype=dtype).reshape(t["shape"])
    raise SystemExit(f"no matrix in {path}")


def main():
    out, source, reference = sys.argv[1:4]
    others = sys.argv[4:]
    runs = [reference] + others
    results = {n: json.load(open(f"{out}/{n}/results.json")) for n in runs}
    for n in runs:
        details = results[n]["sources"][source]["details"]
        print(f"{n}: compute {details.get('compute')}, weights {details.get('weights', 'f32')}")
    a = matrix(out, reference).astype(np.float64)
    print(f"rows × neurons: {a.shape[0]:,} × {a.shape[1]:,}; largest |activation| {np.abs(a).max():.3g}")
    spread = a.std(axis=0)
    spread[spread == 0] = 1.0
    print()
    print(f"| against {reference} | largest abs. difference | RMS diff. / RMS activation "
          "| per-neuron RMS diff. / std: median | largest |")
    print("|---|---|---|---|---|")
    for n in others:
        diff = np.abs(a - matrix(out, n).astype(np.float64))
        per_neuron = np.sqrt((diff ** 2).mean(axis=0)) / spread
        print(f"| {n} | {diff.max():.3g} | {np.sqrt((diff ** 2).mean() / (a ** 2).mean()):.3g} "
              f"| {np.median(per_neuron):.3g} | {per_neuron.max():.3g} |")
    print()
    print("| run | extraction s | whole run s | peak memory MB | LCA probe dev | test | macro F1 test |")
    print("|---|---|---|---|---|---|---|")
    for n in runs:
        r = results[n]
        m = r["evaluations"]["accuracy"]["evaluation"]["metrics"]
        timed = f"{out}/{n}.time"
        wall, peak = time_file(timed) if os.path.exists(timed) else (None, None)
        wall = f"{wall:.1f}" if wall is not None else "–"
        peak = f"{peak:,.0f}" if peak is not None else "–"
        print(f"| {n} | {r['provenance']['timings'][f'source.{source}']:.1f} | {wall} | {peak} "
              f"| {m['accuracy.lca.dev']:.4f} | {m['accuracy.lca.test']:.4f} "
              f"| {m['macro_f1.lca.test']:.4f} |")
    neurons = a.shape[1]
    ks = (10, 50, 100, neurons // 10, neurons // 2)
    print()
    print(f"| top-k overlap with {reference} | " + " | ".join(f"top {k:,}" for k in ks) + " |")
    print("|---|" + "---|" * len(ks))
    for n in others:
        for name in results[reference]["rankings"]:
            ref = results[reference]["rankings"][name]["ranking"]["order"]
            got = results[n]["rankings"][name]["ranking"]["order"]
            cells = [f"{len(set(ref[:k]) & set(got[:k])) / k:.2f}" for k in ks]
            print(f"| {name}, {n} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
