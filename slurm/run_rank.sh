#!/bin/bash
# One rank of the job (srun starts one per task): runs the trainer command given as arguments
# and turns the job's warning signal, SIGURG, into one SIGUSR1 for the trainer process only.
#
# Slurm signals every process of a step, helpers included (megatron's checkpoint-writer
# manager, forked writers, the W&B service); SIGUSR1 or SIGTERM would kill those and break
# the save the trainer makes on the signal. SIGURG is ignored by default, so the helpers
# survive it. TERM (cancel, the time limit itself) still reaches the trainer from Slurm.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
"$@" &
trainer=$!

handles_usr1() {  # SIGUSR1 (bit 9) among the trainer's caught signals; false once it is gone
    local status mask
    status=$(cat "/proc/$trainer/status" 2>/dev/null) || return 2
    [[ $status =~ State:[[:space:]]*Z ]] && return 2
    mask=$(sed -n 's/^SigCgt:[[:space:]]*//p' <<< "$status")
    (( 0x$mask >> 9 & 1 ))
}

forward_warning() {
    # A trainer still starting up has no SIGUSR1 handler yet and would be killed by it: wait.
    local rc
    while true; do
        handles_usr1; rc=$?
        (( rc == 0 )) && { kill -USR1 "$trainer" 2>/dev/null; return; }
        (( rc == 2 )) && return
        sleep 1
    done
}

trap forward_warning URG
trap '' USR1 TERM   # the wrapper outlives them; the trainer gets them from Slurm directly
wait_exit "$trainer"
exit "$exit_code"
