# Sourced by pretrain_1p2b.sh and run_rank.sh.

# wait_exit PID: wait for a background child; its exit code goes to $exit_code (not printed:
# a $(...) subshell cannot wait for this shell's children). A trapped signal interrupts
# `wait` (status > 128) while the child runs on: wait again. If the child ended during the
# trap, bash has reaped it already and a second `wait` gives its real status.
wait_exit() {
    local again
    while true; do
        wait "$1"; exit_code=$?
        (( exit_code > 128 )) || break
        kill -0 "$1" 2>/dev/null && continue
        wait "$1"; again=$?
        (( again != 127 )) && exit_code=$again
        break
    done
    return 0
}

# next_attempt RC ATTEMPTS_LOG WHAT: after an attempt that exited RC, record it in ATTEMPTS_LOG
# ("attempt N exit RC done|requeue|retry|stop") and requeue this job or end it with RC. 0 never
# requeues, nor do 2 (bad configuration or data) and 3 (diverged); 75 (stopped on the warning
# signal, after saving what there is to save) requeues to resume from WHAT at most XM2_MAX_REQUEUES times, other failures
# at most XM2_MAX_FAILURES times. Uses the caller's `log`.
next_attempt() {
    local rc=$1 attempts=$2 what=$3 restart=${SLURM_RESTART_COUNT:-0}
    local max_requeues=${XM2_MAX_REQUEUES:-100} max_failures=${XM2_MAX_FAILURES:-2} failures
    # an array task requeues itself only: the first task's SLURM_JOB_ID is the whole array's
    local job=${SLURM_ARRAY_JOB_ID:+${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}}
    job=${job:-$SLURM_JOB_ID}
    failures=$(grep -c ' retry$' "$attempts")
    finish() {  # finish ACTION MESSAGE
        log "$2"
        echo "$(date '+%F %T') attempt $restart exit $rc $1" >> "$attempts"
        if [[ $1 == requeue || $1 == retry ]]; then
            scontrol requeue "$job" && exit 0   # Slurm ends this attempt here
            log "scontrol requeue failed (job cancelled or not requeueable): not requeued"
        fi
        exit "$rc"
    }
    case $rc in
        0) finish done "finished" ;;
        2|3) finish stop "exit $rc (2: bad configuration or data, 3: diverged): not requeued" ;;
        75)
            (( restart < max_requeues )) \
                || finish stop "stopped; XM2_MAX_REQUEUES=$max_requeues reached"
            finish requeue "stopped (exit $rc): requeueing to resume from $what" ;;
        *)
            (( failures < max_failures )) \
                || finish stop "failed (exit $rc); XM2_MAX_FAILURES=$max_failures reached: not requeued"
            finish retry "failed (exit $rc): requeueing, retry $((failures + 1)) of $max_failures" ;;
    esac
}

# run_attempt ATTEMPTS_LOG WHAT COMMAND...: run COMMAND (the job's srun) in the background,
# the batch shell outliving USR1 and TERM (a cancel, preemption or the time limit reaches the
# step's processes directly), then requeue or end the job by its exit code (next_attempt).
run_attempt() {
    local attempts=$1 what=$2 step
    shift 2
    "$@" &
    step=$!
    trap 'log "batch shell got USR1 (ignored: the warning signal is URG)"' USR1
    trap 'log "batch shell got TERM"' TERM
    wait_exit "$step"
    trap - USR1 TERM
    next_attempt "$exit_code" "$attempts" "$what"
}
