#!/usr/bin/env bash
# Extracts the source of an lca recipe into a store in TASKS parts, on a
# Slurm cluster (an array job, then the join once it has finished) or, with
# --local, one part after another on this machine: the same commands either
# way. The joined store is the one a single `lca store create` writes.
#
#   scripts/slurm/create-store.sh [--local] RECIPE STORE TASKS [create options...]
#
# Options after TASKS go to every `lca store create` (--source, --dtype,
# --shard-mib, --threads …). RECIPE and STORE must be on a filesystem every
# node sees; LCA names the lca binary (default: lca on the PATH).
set -euo pipefail
local_run=false
if [[ ${1:-} == --local ]]; then
    local_run=true
    shift
fi
if [[ $# -lt 3 ]] || ! [[ $3 =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: create-store.sh [--local] RECIPE STORE TASKS [lca store create options...] (TASKS a whole number above 0)" >&2
    exit 2
fi
recipe=$1 store=$2 tasks=$3
shift 3
here=$(cd "$(dirname "$0")" && pwd)

if $local_run; then
    for ((k = 0; k < tasks; k++)); do
        SLURM_ARRAY_TASK_ID=$k SLURM_ARRAY_TASK_COUNT=$tasks \
            bash "$here/create-part.sbatch" "$recipe" "$store" "$@"
    done
    "${LCA:-lca}" store join "$store"
else
    submit() { sbatch --parsable "$@" | cut -d';' -f1; }
    parts=$(submit --array="0-$((tasks - 1))" "$here/create-part.sbatch" "$recipe" "$store" "$@")
    join=$(submit --dependency="afterok:$parts" --job-name=lca-join --wrap \
        "$(printf '%q ' "${LCA:-lca}" store join "$store")")
    echo "submitted: parts $parts, join $join; the store will be in $store"
fi
