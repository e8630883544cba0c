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
