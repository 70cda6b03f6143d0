"""Extraction in parts and probes trained by passes over a store, on Ray:
wall times against one process, on real MiniLM activations of Brown.

    python bench/ray_extract_probe.py WORKDIR [SENTENCES]

Writes a recipe extracting all 7 hidden states of all-MiniLM-L6-v2
(.cache/models, from scripts/fetch-assets.sh) for SENTENCES (default 2000)
seeded Brown sentences with the simplified Brown POS task, then:

1. extraction into a store: one process at 1 and 2 threads; 2 parts one
   after another; Ray with 1 and 2 worker CPUs, 2 parts; every store
   checked byte for byte against the one-process store;
2. an elastic-net probe (l1 = l2 = 1e-3, tol 0.01) on that store: the
   in-memory `fista` solver at 1 and 2 threads, `lca.store.train_probe`
   (passes over the store) at 1 and 2 threads, and
   `lca.distributed.train_probe` on Ray with 1 and 2 worker CPUs.

Needs the lca wheel with Ray (`pip install "<wheel>[ray]"`); run from the
repository root. Prints one line per measurement, and the CPU.
"""

import filecmp
import json
import shutil
import sys
import time
from pathlib import Path

import lca
import lca.distributed
import lca.sources
import lca.store
import ray
from machine import cpu

work = Path(sys.argv[1]).resolve()
sentences = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
repo = Path(__file__).resolve().parents[1]
work.mkdir(parents=True, exist_ok=True)
recipe = work / "extract.toml"
recipe.write_text(
    "[run]\nseed = 1\n\n[source.transformer]\ntype = \"transformer\"\n"
    f"model = {json.dumps(str(repo / '.cache/models/all-MiniLM-L6-v2'))}\n"
    f"corpus = {json.dumps(str(repo / '.cache/data/brown'))}\n"
    f"task = \"brown_pos\"\nsentences = {sentences}\nsample = \"random\"\ncache = false\n"
)


def timed(run):
    started = time.perf_counter()
    out = run()
    return time.perf_counter() - started, out


def same_store(a: Path, b: Path) -> bool:
    files = ["manifest.json", "rows.json"] + [s["file"] for s in lca.store.info(a)["shards"]]
    return all(filecmp.cmp(a / f, b / f, shallow=False) for f in files)


def fresh(name: str) -> Path:
    path = work / name
    shutil.rmtree(path, ignore_errors=True)
    return path


print(f"CPU: {cpu()}")
reference = fresh("store-1")
t, written = timed(lambda: lca.store.create(recipe, reference, threads=1, shard_mib=64))
rows = written["manifest"]["rows"]
print(f"store: {rows} rows × {len(written['manifest']['neurons'])} neurons, "
      f"{len(written['manifest']['shards'])} shards, {written['classes']} classes")
print(f"extraction, one process, 1 thread: {t:.1f} s ({rows / t:.0f} words/s)")
out = fresh("store-2")
t, _ = timed(lambda: lca.store.create(recipe, out, threads=2, shard_mib=64))
print(f"extraction, one process, 2 threads: {t:.1f} s ({rows / t:.0f} words/s); same store: {same_store(reference, out)}")
out = fresh("store-parts")
t, _ = timed(lambda: [lca.store.create(recipe, out, part=(k, 2), threads=1, shard_mib=64) for k in range(2)]
             and lca.store.join(out))
print(f"extraction, 2 parts one after another, 1 thread: {t:.1f} s; same store: {same_store(reference, out)}")
for cpus in (1, 2):
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    out = fresh(f"store-ray-{cpus}")
    t, _ = timed(lambda: lca.distributed.create_store(recipe, out, parts=2, shard_mib=64))
    print(f"extraction, Ray, {cpus} worker CPU(s), 2 parts: {t:.1f} s ({rows / t:.0f} words/s); "
          f"same store: {same_store(reference, out)}")
    ray.shutdown()

options = dict(l1=1e-3, l2=1e-3, tol=0.01)
data = lca.sources.store(path=str(reference))
for threads in (1, 2):
    spec = lca.probes.elastic_net(solver="fista", **options)
    t, probe = timed(lambda: spec.fit(data, threads=threads))
    print(f"probe in memory (fista), {threads} thread(s): {t:.1f} s, test accuracy "
          f"{probe.accuracy['test']:.4f}")
for threads in (1, 2):
    t, probe = timed(lambda: lca.store.train_probe(reference, threads=threads, **options))
    print(f"probe by passes over the store, {threads} thread(s): {t:.1f} s, test accuracy "
          f"{probe.accuracy['test']:.4f}, {probe.report['passes']} passes, "
          f"objective {probe.report['objective']:.6f}")
for cpus in (1, 2):
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    t, probe = timed(lambda: lca.distributed.train_probe(reference, parts=2, **options))
    per_pass = t / probe.report["passes"]
    print(f"probe on Ray, {cpus} worker CPU(s), 2 actors: {t:.1f} s ({per_pass * 1000:.0f} ms per pass), "
          f"test accuracy {probe.accuracy['test']:.4f}, objective {probe.report['objective']:.6f}")
    ray.shutdown()
