"""A process forked inside ``children_die_with_this_process`` dies with its parent, even when
the parent is killed with SIGKILL (megatron's async checkpoint writers are such children)."""

import os
import signal
import subprocess
import sys

import psutil
import pytest

PARENT = """
import os, sys, time
from xm2_megatron.runtime.children import children_die_with_this_process

def fork_sleeper():
    pid = os.fork()
    if pid == 0:
        time.sleep(120)
        os._exit(0)
    return pid

with children_die_with_this_process():
    guarded = fork_sleeper()
unguarded = fork_sleeper()
print(guarded, unguarded, flush=True)
time.sleep(120)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
def test_a_guarded_child_dies_with_its_killed_parent():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    guarded, unguarded = map(int, parent.stdout.readline().split())
    try:
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        gone, alive = psutil.wait_procs([psutil.Process(guarded)], timeout=10)
        assert alive == [] and len(gone) == 1
        assert psutil.pid_exists(unguarded)  # outside the context nothing changes
    finally:
        for pid in (guarded, unguarded):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
