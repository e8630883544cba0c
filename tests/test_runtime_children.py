"""A process forked inside ``children_die_with_this_process`` dies with its parent, even when
the parent is killed with SIGKILL (megatron's async checkpoint writers are such children);
ranks started by torchrun die with a SIGKILLed torchrun."""

import os
import signal
import subprocess
import sys

import psutil
import pytest

from tests.launch import start_worker, wait_for

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


RANK = """
import os, pathlib, sys, time
from xm2_megatron.runtime import init_runtime
init_runtime(1, 1, environ=os.environ)
path = pathlib.Path(sys.argv[1], f"rank{os.environ['RANK']}.pid")
pathlib.Path(f"{path}.tmp").write_text(str(os.getpid()))
os.replace(f"{path}.tmp", path)  # the test never reads a half-written pid
time.sleep(120)
"""


@pytest.mark.distributed
@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
def test_ranks_die_with_a_killed_torchrun(tmp_path):
    script = tmp_path / "rank.py"
    script.write_text(RANK)
    pids = [tmp_path / f"rank{rank}.pid" for rank in range(2)]
    launcher = start_worker(script, [str(tmp_path)], nproc=2, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    ranks = []
    try:
        wait_for(lambda: all(path.exists() for path in pids), launcher, timeout=300)
        ranks = [int(path.read_text()) for path in pids]
        os.kill(launcher.pid, signal.SIGKILL)
        launcher.wait()
        gone, alive = psutil.wait_procs([psutil.Process(pid) for pid in ranks], timeout=20)
        assert alive == [] and len(gone) == 2
    finally:
        for pid in ranks:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
