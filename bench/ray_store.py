"""Store statistics on Ray: wall time of lca.distributed.rank_store with 1
and 2 worker CPUs against one process, and the cost of the merge.

    python bench/ray_store.py STORE [PARTS]

Needs the lca wheel with Ray (`pip install "<wheel>[ray]"`). The page
cache is warmed first, so the times are compute, not disk. Prints one
line per measurement, and the CPU.
"""

import sys
import time

import lca.distributed
import lca.store
import ray
from machine import cpu

store = sys.argv[1]
parts = int(sys.argv[2]) if len(sys.argv) > 2 else None
methods = ["correlation", "probeless"]
shards = len(lca.store.info(store)["shards"])
parts = parts or shards


def best(run, repeat=3):
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - started)
    return min(times), out


print(f"CPU: {cpu()}")
lca.store.stats(store)  # warm the page cache
for threads in (1, 2):
    def one_process():
        merged = lca.store.stats(store, threads=threads)
        return {m: lca.store.rank(merged, m) for m in methods}

    t, single = best(one_process)
    print(f"one process, {threads} thread(s): {t:.2f} s")
t_parts, stats = best(lambda: [lca.store.stats(store, part=(k, parts), threads=1) for k in range(parts)])
t_merge, merged = best(lambda: lca.store.merge(stats))
size = len(merged.to_bytes())
print(f"{parts} parts one after another, 1 thread: {t_parts:.2f} s; merging them: {t_merge * 1000:.0f} ms; "
      f"statistics of one part: {len(stats[0].to_bytes()) / 2**20:.1f} MiB")
for cpus in (1, 2):
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    lca.distributed.rank_store(store, methods, parts=parts)  # start the workers
    t, rankings = best(lambda: lca.distributed.rank_store(store, methods, parts=parts))
    same = all(rankings[m].order.tolist() == single[m].order.tolist() for m in methods)
    print(f"Ray, {cpus} worker CPU(s), {parts} tasks: {t:.2f} s (rankings equal to one process: {same})")
    ray.shutdown()
print(f"merged statistics: {size / 2**20:.1f} MiB of JSON")
