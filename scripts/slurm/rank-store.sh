#!/usr/bin/env bash
# Ranks the neurons of an lca store from statistics computed in TASKS parts,
# on a Slurm cluster (array jobs chained by dependencies) or, with --local,
# one part after another on this machine: the same commands either way.
#
#   scripts/slurm/rank-store.sh [--local] STORE OUT TASKS
#
# Pass 1 counts the class sums and each neuron's top values (IoU), merges
# them and ranks by correlation and probeless; pass 2 counts the IoU masks
# at the merged thresholds, merges them and ranks by IoU. LCA_STATS_OPTIONS
# adds options to pass 1, and the rankings they allow are added: with
# `--gaussian-neurons ...` the Gaussian ranking, with `--ap-bits B` NeuroX's
# average precision. LCA_IOU_QUANTILE sets the IoU top fraction (0.005).
# Rankings land in OUT/<method>.json. STORE and OUT must be on a filesystem
# every node sees; LCA names the lca binary (default: lca on the PATH).
set -euo pipefail
local_run=false
if [[ ${1:-} == --local ]]; then
    local_run=true
    shift
fi
if [[ $# -ne 3 ]] || ! [[ $3 =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: rank-store.sh [--local] STORE OUT TASKS (TASKS a whole number above 0)" >&2
    exit 2
fi
store=$1 out=$2 tasks=$3
here=$(cd "$(dirname "$0")" && pwd)
quantile=${LCA_IOU_QUANTILE:-0.005}
read -r -a extra <<< "${LCA_STATS_OPTIONS:-}"
methods=(correlation probeless)
for option in "${extra[@]}"; do
    case $option in
        --gaussian-neurons) methods+=(gaussian) ;;
        --ap-bits) methods+=(average_precision) ;;
    esac
done
mkdir -p "$out"

if $local_run; then
    # Slurm's array variables, set by hand.
    array() {
        local name=$1 k
        shift
        for ((k = 0; k < tasks; k++)); do
            SLURM_ARRAY_TASK_ID=$k SLURM_ARRAY_TASK_COUNT=$tasks \
                bash "$here/stats-part.sbatch" "$store" "$out" "$name" "$@"
        done
    }
    array pass1 --iou-quantile "$quantile" "${extra[@]}"
    bash "$here/merge-rank.sbatch" "$out" pass1 "${methods[@]}"
    array pass2 --iou-thresholds "$out/pass1.json"
    bash "$here/merge-rank.sbatch" "$out" pass2 iou
else
    submit() { sbatch --parsable "$@" | cut -d';' -f1; }
    last=$((tasks - 1))
    pass1=$(submit --array="0-$last" "$here/stats-part.sbatch" "$store" "$out" pass1 \
        --iou-quantile "$quantile" "${extra[@]}")
    merge1=$(submit --dependency="afterok:$pass1" "$here/merge-rank.sbatch" "$out" pass1 \
        "${methods[@]}")
    pass2=$(submit --dependency="afterok:$merge1" --array="0-$last" \
        "$here/stats-part.sbatch" "$store" "$out" pass2 --iou-thresholds "$out/pass1.json")
    merge2=$(submit --dependency="afterok:$pass2" "$here/merge-rank.sbatch" "$out" pass2 iou)
    echo "submitted: pass 1 $pass1, merge $merge1, pass 2 $pass2, merge $merge2; rankings in $out"
fi
