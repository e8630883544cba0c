#!/bin/bash
# Tokenize a corpus on many nodes: one Slurm array task per shard of the input files, then one
# merge job into a single indexed dataset, byte-identical to one xm2-preprocess run.
#
#   bash slurm/preprocess.sh SHARDS [xm2-preprocess flags]      # from the login node
#
#   bash slurm/preprocess.sh 64 --input-list files.txt --output-prefix data/tokens/web \
#       --tokenizer-model data/tokenizer.model --append-eod
#
# submits `sbatch --array=0-63 slurm/preprocess.sh ...` (task I runs `xm2-preprocess ...
# --shard I/64`, writing data/tokens/web-shardI-of-00064_text_document) and a merge job that
# starts when every task has succeeded (`xm2-preprocess ... --merge`, checking that the shards
# cover exactly the given inputs) and writes data/tokens/web_text_document.{bin,idx,json}.
# Environment: XM2_SBATCH_ARGS (extra sbatch flags for both jobs, e.g. "--partition=cpu
# --cpus-per-task=32 --time=4:00:00"), XM2_ARRAY_LIMIT (tasks running at once), XM2_PYTHON,
# XM2_ENV_SCRIPT. A failed task can be rerun alone:
# `XM2_SHARDS=64 sbatch --array=7 slurm/preprocess.sh FLAGS`, then the merge:
# `sbatch slurm/preprocess.sh --merge FLAGS`.
#
#SBATCH --job-name=xm2-preprocess
#SBATCH --ntasks=1
#SBATCH --output=%x-%A_%a.out

set -uo pipefail
die() { echo "preprocess.sh: error: $*" >&2; exit 2; }

if [[ -z "${SLURM_JOB_ID:-}" ]]; then   # the submitter
    [[ ${1:-} =~ ^[1-9][0-9]*$ ]] || die "usage: bash slurm/preprocess.sh SHARDS [xm2-preprocess flags]"
    shards=$1
    shift
    script=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/preprocess.sh
    read -r -a extra <<< "${XM2_SBATCH_ARGS:-}"
    array=$(sbatch --parsable "${extra[@]}" --array="0-$((shards - 1))${XM2_ARRAY_LIMIT:+%$XM2_ARRAY_LIMIT}" \
        --export="ALL,XM2_SHARDS=$shards" "$script" "$@") || die "sbatch of the shard array failed"
    array=${array%%;*}
    merge=$(sbatch --parsable --job-name=xm2-preprocess-merge --output=%x-%j.out "${extra[@]}" \
        --dependency="afterok:$array" --kill-on-invalid-dep=yes "$script" --merge "$@") \
        || die "sbatch of the merge failed (the shard array $array is submitted)"
    echo "submitted: shards $array (array 0-$((shards - 1))), merge ${merge%%;*} (after all succeed)"
    exit 0
fi

cd "${XM2_REPO:-$SLURM_SUBMIT_DIR}" || die "cannot cd to ${XM2_REPO:-$SLURM_SUBMIT_DIR}"
if [[ -n "${XM2_ENV_SCRIPT:-}" ]]; then
    source "$XM2_ENV_SCRIPT" || die "XM2_ENV_SCRIPT=$XM2_ENV_SCRIPT failed"
fi
python=${XM2_PYTHON:-python}
tool=("$python" -m xm2_megatron.tools.preprocess_data)

if [[ -z "${SLURM_ARRAY_TASK_ID:-}" ]]; then   # the merge (or any single job)
    echo "[preprocess.sh $(date '+%F %T')] job $SLURM_JOB_ID on $(hostname): ${tool[*]} $*"
    exec "${tool[@]}" "$@"
fi

count=${XM2_SHARDS:-${SLURM_ARRAY_TASK_COUNT:-}}
if [[ -z ${XM2_SHARDS:-} ]] && (( SLURM_ARRAY_TASK_MIN != 0 || SLURM_ARRAY_TASK_MAX != count - 1 )); then
    die "array $SLURM_ARRAY_TASK_MIN-$SLURM_ARRAY_TASK_MAX of $count tasks: use --array=0-N-1, " \
        "or set XM2_SHARDS=N to rerun some tasks of N shards"
fi
workers=${SLURM_CPUS_PER_TASK:-1}   # the reading process needs about 5% of their CPU
echo "[preprocess.sh $(date '+%F %T')] shard $SLURM_ARRAY_TASK_ID of $count on $(hostname)," \
     "$workers worker(s)"
# the user's --workers, given later, wins
exec "${tool[@]}" --workers "$workers" "$@" --shard "$SLURM_ARRAY_TASK_ID/$count"
