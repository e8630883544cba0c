"""A single-node Slurm on localhost for the tests: munged, slurmctld and slurmd started from a
config, state, spool and logs generated under one folder, and stopped by their PIDs.

    python -m tests.slurm.cluster DIR     # bring one up by hand; Ctrl-C or SIGTERM stops it
    export SLURM_CONF=DIR/slurm.conf      # then sbatch/squeue/scontrol talk to it
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

COMMANDS = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "squeue", "scancel", "sinfo")


def missing_commands() -> list[str]:
    return [name for name in COMMANDS if shutil.which(name) is None]


def why_no_slurm() -> str | None:
    """Why the Slurm tests cannot run here (skipped with this reason), or None."""
    missing = missing_commands()
    if missing:
        return (f"Slurm is not installed (no {', '.join(missing)}); scripts/install_slurm.sh "
                "installs it (root and apt-get)")
    if os.geteuid() != 0:
        return "a local slurmd launches jobs as root: run the Slurm tests as root"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} not written)"


class LocalSlurm:
    """munged + slurmctld + slurmd in the foreground (-F/-D), one node named after this host
    with ``cpus`` CPUs (may exceed the real count: the tests oversubscribe)."""

    def __init__(self, root: Path, cpus: int = 2, cred_expire: int = 5):
        self.root = Path(root)
        # a requeued job waits cred_expire + 1 s before it may start again (Slurm's default 120)
        self.cred_expire = cred_expire
        self.host = socket.gethostname()
        self.cpus = cpus
        self.conf = self.root / "slurm.conf"
        self.munge_socket = self.root / "munge" / "munge.socket"
        self.processes: dict[str, subprocess.Popen] = {}
        self.nodes = [(self.host, "127.0.0.1")]  # (NodeName, NodeAddr)
        self.client: list[str] = []  # the command prefix that runs a Slurm client

    def in_node(self, node: str) -> list[str]:
        """The command prefix that runs a process on ``node`` (here: this host)."""
        return []

    @property
    def env(self) -> dict[str, str]:
        """The environment for Slurm clients (and, through sbatch, the jobs)."""
        env = {**os.environ, "SLURM_CONF": str(self.conf)}
        try:
            socket.gethostbyname(self.host)
        except OSError:  # the jobs' rendezvous host (the node's name) must resolve
            env["MASTER_ADDR"] = "127.0.0.1"
        return env

    def write_config(self) -> None:
        for sub in ("munge", "state", "spool", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(128))
        key.chmod(0o600)
        (self.root / "plugstack.conf").write_text("")  # none of the machine's SPANK plugins
        user, r = getpass.getuser(), self.root
        slurmd_files = "/%n" if len(self.nodes) > 1 else ""  # one spool, pid and log per node
        nodes = "\n".join(f"NodeName={name} NodeAddr={addr} CPUs={self.cpus} State=UNKNOWN"
                          for name, addr in self.nodes)
        self.conf.write_text(f"""\
ClusterName=xm2test
SlurmctldHost={self.nodes[0][0]}({self.nodes[0][1]})
SlurmUser={user}
SlurmdUser={user}
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket},cred_expire={self.cred_expire}
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool{slurmd_files}
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd{slurmd_files.replace("/", "-")}.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd{slurmd_files.replace("/", "-")}.log
PlugStackConfig={r}/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1,bf_interval=1
ReturnToService=2
KillWait=10
MinJobAge=600
InactiveLimit=0
{nodes}
PartitionName=debug Nodes={",".join(name for name, _ in self.nodes)} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
""")

    def start(self, timeout: float = 60) -> None:
        """Start the three daemons and wait until the node is idle; RuntimeError with the
        daemons' log tails when it does not come up."""
        self.write_config()
        r, logs = self.root, self.root / "log"
        self._spawn("munged", ["munged", "-F", "--force", f"--socket={self.munge_socket}",
                               f"--key-file={r}/munge/munge.key",
                               f"--pid-file={r}/munge/munged.pid",
                               f"--log-file={logs}/munged.log", f"--seed-file={r}/munge/seed"])
        self._wait(lambda: self.munge_socket.exists(), timeout, "munged socket")
        head = self.nodes[0][0]
        self._spawn("slurmctld", [*self.in_node(head), "slurmctld", "-D", "-i", "-f", str(self.conf)])
        for name, _ in self.nodes:
            self._spawn(f"slurmd-{name}" if len(self.nodes) > 1 else "slurmd",
                        [*self.in_node(name), "slurmd", "-D", "-N", name, "-f", str(self.conf)])
        self._wait(self._nodes_idle, timeout, "idle nodes")

    def _spawn(self, name: str, argv: list[str]) -> None:
        with open(self.root / "log" / f"{name}.stdout", "w") as out:  # the child keeps a copy
            self.processes[name] = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                                    env=self.env, start_new_session=True)

    def _nodes_idle(self) -> bool:
        result = subprocess.run([*self.client, "sinfo", "-h", "-N", "-o", "%T"], env=self.env,
                                capture_output=True, text=True, check=False)
        states = result.stdout.split()
        return (result.returncode == 0 and len(states) == len(self.nodes)
                and all(state.startswith("idle") for state in states))

    def _wait(self, condition, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            dead = [n for n, p in self.processes.items() if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"local Slurm: no {what} ({', '.join(dead) or 'timeout'} "
                                   f"after {timeout:.0f} s)\n{self.logs()}")
            time.sleep(0.2)

    def describe(self) -> str:
        return ", ".join(f"{name} {addr}" for name, addr in self.nodes)

    def logs(self) -> str:
        return "\n".join(f"--- {path.name}\n{_tail(path)}"
                         for path in sorted((self.root / "log").glob("*")))

    def stop(self) -> None:
        """Cancel what is left, then stop slurmd, slurmctld and munged by their PIDs."""
        if "slurmctld" in self.processes and self.processes["slurmctld"].poll() is None:
            subprocess.run([*self.client, "scancel", "--user", getpass.getuser()], env=self.env,
                           capture_output=True, timeout=30, check=False)
        slurmds = [name for name in self.processes if name.startswith("slurmd")]
        for name in (*slurmds, "slurmctld", "munged"):
            process = self.processes.pop(name, None)
            if process is None or process.poll() is not None:
                continue
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def serve(cluster: LocalSlurm) -> None:
    """Bring ``cluster`` up and keep it until Ctrl-C or SIGTERM (``python -m`` of this file or
    of ``two_nodes``)."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        cluster.start()
        print(f"up: {cluster.describe()}\nexport SLURM_CONF={cluster.conf}   (Ctrl-C or SIGTERM "
              "stops it)", flush=True)
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()


if __name__ == "__main__":
    import sys

    serve(LocalSlurm(Path(sys.argv[1]).resolve()))
