#!/bin/bash
# Xmodel-2 1.2B pretraining (stable + decay stages in one job) with preemption and requeue.
#
#   sbatch [sbatch flags] slurm/pretrain_1p2b.sh [RECIPE] [key=value ...]
#
# Defaults: 4 nodes x 8 GPUs (data parallel 32 splits the paper's batches of 480 and 960).
# Anything here can be changed with sbatch flags (--nodes, --ntasks-per-node, --gpus-per-node,
# --time, --account, --partition, -J ...) or environment variables (sbatch passes the
# submitting shell's environment), listed in docs/slurm.md:
#   XM2_RECIPE, XM2_OVERRIDES, XM2_TP, XM2_PP, XM2_RUN_DIR, XM2_REPO, XM2_PYTHON,
#   XM2_ENV_SCRIPT, XM2_CONTAINER_IMAGE, XM2_CONTAINER_MOUNTS, XM2_SRUN_ARGS,
#   XM2_MAX_REQUEUES, XM2_MAX_FAILURES, XM2_RANK_EXIT_WAIT, XM2_WANDB_MODE, WANDB_PROJECT,
#   WANDB_NAME
#
# Preemption: 300 s before the time limit Slurm sends SIGURG to the ranks' processes
# (--signal without "B:"); slurm/run_rank.sh turns it into one SIGUSR1 for each trainer
# process (SIGUSR1 itself would also kill the trainer's helper processes), the trainer saves
# at the next step boundary and exits 75, and this script requeues the job, which resumes
# from that checkpoint and the same W&B run. Stop a run early the same way:
# `scancel --signal=URG JOBID`. Exit 0 never requeues, nor do 2 (bad config/data) and 3
# (diverged); other failures requeue at most XM2_MAX_FAILURES times.
#
#SBATCH --job-name=xm2-1p2b
#SBATCH --nodes=4
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --exclusive
#SBATCH --signal=URG@300
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=%x-%j.out

set -uo pipefail

log() { echo "[pretrain_1p2b $(date '+%F %T')] $*"; }
die() { echo "pretrain_1p2b: error: $*" >&2; exit 2; }

[[ -n "${SLURM_JOB_ID:-}" ]] || die "submit with sbatch (no SLURM_JOB_ID)"
restart=${SLURM_RESTART_COUNT:-0}
job_name=${SLURM_JOB_NAME:-xm2-1p2b}

# The batch script runs from a copy in Slurm's spool: find the repository from the submit dir.
repo=${XM2_REPO:-$SLURM_SUBMIT_DIR}
cd "$repo" && source slurm/common.sh || die "XM2_REPO=$repo is not this repository"
if [[ -n "${XM2_ENV_SCRIPT:-}" ]]; then
    source "$XM2_ENV_SCRIPT" || die "XM2_ENV_SCRIPT=$XM2_ENV_SCRIPT failed"
fi
python=${XM2_PYTHON:-python}

# Recipe and overrides: positional arguments (a word with "=" is an override), after
# XM2_RECIPE / XM2_OVERRIDES. Later overrides win, so the user's beat the defaults below.
recipe=${XM2_RECIPE:-recipes/xmodel2_1p2b.yaml}
user_overrides=()
read -r -a env_overrides <<< "${XM2_OVERRIDES:-}"
for arg in "${env_overrides[@]}" "$@"; do
    if [[ $arg == *=* ]]; then user_overrides+=("$arg"); else recipe=$arg; fi
done
[[ -f $recipe ]] || die "recipe $recipe not found (relative to $repo)"

# One folder per run name (-J): checkpoints and metrics persist across requeues and across
# resubmissions with the same name; each job id gets a folder for its attempt log.
run_dir=${XM2_RUN_DIR:-$repo/runs/$job_name}
job_dir=$run_dir/jobs/$SLURM_JOB_ID
mkdir -p "$job_dir" || die "cannot create $job_dir"
run_dir=$(cd "$run_dir" && pwd) && job_dir=$run_dir/jobs/$SLURM_JOB_ID
attempts=$job_dir/attempts.log

overrides=("checkpoint.dir=$run_dir/checkpoints" "logging.output_dir=$run_dir"
           "logging.run_name=${WANDB_NAME:-$job_name}")
[[ -n "${WANDB_PROJECT:-}" ]] && overrides+=("logging.wandb_project=$WANDB_PROJECT")
[[ -n "${XM2_WANDB_MODE:-}" ]] && overrides+=("logging.wandb_mode=$XM2_WANDB_MODE")
[[ -n "${XM2_TP:-}" ]] && overrides+=("parallel.tensor_parallel=$XM2_TP")
[[ -n "${XM2_PP:-}" ]] && overrides+=("parallel.pipeline_parallel=$XM2_PP")
overrides+=("${user_overrides[@]}")

# A bad recipe or layout fails here, once, with the trainer's one-line error (no requeue).
# In a container the ranks check it themselves (the batch node may lack the environment).
if [[ -z "${XM2_CONTAINER_IMAGE:-}" ]]; then
    command -v "$python" > /dev/null \
        || die "no Python '$python': activate the environment before sbatch, or set XM2_PYTHON"
    "$python" -m xm2_megatron.tools.config "$recipe" "${overrides[@]}" --world-size "$SLURM_NTASKS" \
        > "$job_dir/config.yaml" || die "invalid configuration (see the line above)"
fi

gpus=${SLURM_GPUS_ON_NODE:-0}
if [[ $gpus != 0 ]]; then
    # NCCL / CUDA defaults for megatron-core; values already in the environment win.
    export CUDA_DEVICE_MAX_CONNECTIONS=${CUDA_DEVICE_MAX_CONNECTIONS:-1}
    export TORCH_NCCL_ASYNC_ERROR_HANDLING=${TORCH_NCCL_ASYNC_ERROR_HANDLING:-1}
    export TORCH_NCCL_AVOID_RECORD_STREAMS=${TORCH_NCCL_AVOID_RECORD_STREAMS:-1}
    export NCCL_DEBUG=${NCCL_DEBUG:-WARN}
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}
export PYTHONUNBUFFERED=1

# One srun starts every rank; each reads its rank from SLURM_PROCID and the rendezvous from
# the job (first node of the node list, MASTER_PORT or 20000 + job id mod 20000).
# --wait: once one rank has exited, the rest get 10 minutes (rank 0 closes W&B) before srun
# kills them, so a crashed rank does not leave the job hanging until the NCCL timeout.
srun_args=(--kill-on-bad-exit=0 --wait="${XM2_RANK_EXIT_WAIT:-600}")
if [[ -n "${XM2_CONTAINER_IMAGE:-}" ]]; then   # pyxis/enroot
    mounts=$repo:$repo
    [[ $run_dir == "$repo"/* ]] || mounts+=",$run_dir:$run_dir"
    srun_args+=(--container-image="$XM2_CONTAINER_IMAGE" --container-workdir="$repo"
                --container-mounts="${XM2_CONTAINER_MOUNTS:-$mounts}")
fi
read -r -a extra_srun_args <<< "${XM2_SRUN_ARGS:-}"

log "job $SLURM_JOB_ID attempt $restart on $SLURM_JOB_NUM_NODES node(s) ($SLURM_JOB_NODELIST)," \
    "$SLURM_NTASKS ranks, $gpus GPU(s) per node; recipe $recipe; run dir $run_dir"
echo "$(date '+%F %T') attempt $restart start nodes=$SLURM_JOB_NODELIST ranks=$SLURM_NTASKS" \
    >> "$attempts"

# Every rank runs under slurm/run_rank.sh, which turns the warning signal (SIGURG, see the
# header) into one SIGUSR1 for the trainer process; the batch shell ignores SIGURG.
run_attempt "$attempts" "the checkpoint" \
    srun "${srun_args[@]}" "${extra_srun_args[@]}" bash "$repo/slurm/run_rank.sh" \
    "$python" -m xm2_megatron.train "$recipe" "${overrides[@]}"
