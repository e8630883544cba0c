#!/bin/bash
# Wind-tunnel search workers: every task of the array pulls trials from the same Optuna study
# until it holds XM2_TRIALS finished trials (xm2-windtunnel search; docs/windtunnel.md).
#
#   sbatch --array=0-7 [sbatch flags] slurm/windtunnel.sh STUDY RECIPE [key=value ...]
#
# One trial at a time per task, on one GPU (or the CPUs of a CPU-only task). Environment
# (sbatch passes the submitting shell's): XM2_TRIALS (default 300, the paper's search),
# XM2_STUDY_DIR (default runs/windtunnel/STUDY), XM2_STORAGE (default STUDY_DIR/study.journal:
# Optuna's journal file, safe on a shared file system; or a SQLAlchemy URL), XM2_SEARCH_ARGS
# (more `search` flags, e.g. "--seed 1 --search-init-std"), XM2_REPO, XM2_PYTHON,
# XM2_ENV_SCRIPT, XM2_MAX_REQUEUES, XM2_MAX_FAILURES.
#
# Preemption as in pretrain_1p2b.sh: the warning signal (SIGURG, 300 s before the time limit,
# or `scancel --signal=URG JOBID_TASK`) stops the running trial at its next step (the trial is
# marked failed), and the task requeues itself and goes on pulling trials. A task killed
# outright leaves its trial running in the study: the task's next start marks it failed.
#
#SBATCH --job-name=xm2-windtunnel
#SBATCH --ntasks=1
#SBATCH --gpus-per-node=1
#SBATCH --cpus-per-task=8
#SBATCH --signal=URG@300
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=%x-%A_%a.out

set -uo pipefail

log() { echo "[windtunnel $(date '+%F %T')] $*"; }
die() { echo "windtunnel: error: $*" >&2; exit 2; }

[[ -n "${SLURM_JOB_ID:-}" ]] || die "submit with sbatch (no SLURM_JOB_ID)"
(( $# >= 2 )) || die "usage: sbatch --array=0-N slurm/windtunnel.sh STUDY RECIPE [key=value ...]"
study=$1 recipe=$2
shift 2

repo=${XM2_REPO:-$SLURM_SUBMIT_DIR}
cd "$repo" && source slurm/common.sh || die "XM2_REPO=$repo is not this repository"
if [[ -n "${XM2_ENV_SCRIPT:-}" ]]; then
    source "$XM2_ENV_SCRIPT" || die "XM2_ENV_SCRIPT=$XM2_ENV_SCRIPT failed"
fi
python=${XM2_PYTHON:-python}
command -v "$python" > /dev/null \
    || die "no Python '$python': activate the environment before sbatch, or set XM2_PYTHON"

study_dir=${XM2_STUDY_DIR:-$repo/runs/windtunnel/$study}
storage=${XM2_STORAGE:-$study_dir/study.journal}
task=${SLURM_ARRAY_JOB_ID:-$SLURM_JOB_ID}_${SLURM_ARRAY_TASK_ID:-0}
job_dir=$study_dir/jobs/$task
mkdir -p "$job_dir" || die "cannot create $job_dir"
attempts=$job_dir/attempts.log
read -r -a search_args <<< "${XM2_SEARCH_ARGS:-}"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}
export PYTHONUNBUFFERED=1

log "task $task (job $SLURM_JOB_ID) attempt ${SLURM_RESTART_COUNT:-0} on $(hostname):" \
    "study $study in $storage, ${XM2_TRIALS:-300} trials of $recipe"
echo "$(date '+%F %T') attempt ${SLURM_RESTART_COUNT:-0} start node=$(hostname)" >> "$attempts"

run_attempt "$attempts" "the study" \
    srun --ntasks=1 bash "$repo/slurm/run_rank.sh" "$python" -m xm2_megatron.tools.windtunnel \
    search "$recipe" "$@" --study "$study" --trials "${XM2_TRIALS:-300}" --dir "$study_dir" \
    --storage "$storage" "${search_args[@]}"
