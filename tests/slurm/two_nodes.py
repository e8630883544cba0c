"""A two-node Slurm on one machine for the tests: each node is a network namespace with its own
hostname and address, joined by a veth pair on a private /24 that the harness picks; the
controller runs on the first node, one slurmd on each, munged (a Unix socket) is shared.

Jobs see a real two-node cluster: the node list ``xm2node[1-2]``, the first node's name as the
rendezvous host (each namespace's /etc/hosts is a bind mount of a file under the test's folder),
ranks on both nodes talking over the veth pair. Nothing outside the namespaces and the test's
folder is touched; ``stop`` kills the daemons and deletes the namespaces (and with them the
veth pair). Needs root (network namespaces, mounts).

    python -m tests.slurm.two_nodes DIR     # bring one up by hand; Ctrl-C or SIGTERM stops it
"""

from __future__ import annotations

import os
import random
import shlex
import shutil
import subprocess
from pathlib import Path

from tests.slurm.cluster import LocalSlurm, serve

NODE_NAMES = ("xm2node1", "xm2node2")
# run in the node's namespace with its hostname and hosts file, then exec the command
ENTER_NODE = 'hostname "$0" && mount --bind "$1" /etc/hosts && shift && exec "$@"'


def why_no_namespaces() -> str | None:
    """Why two nodes cannot be made here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if missing := [c for c in ("ip", "nsenter", "unshare") if shutil.which(c) is None]:
        return (f"no {', '.join(missing)} (iproute2, util-linux): scripts/install_slurm.sh "
                "installs them")
    name = f"xm2probe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    try:
        veth = subprocess.run(["ip", "-n", name, "link", "add", "p0", "type", "veth", "peer",
                               "name", "p1"], capture_output=True, text=True)
        return None if veth.returncode == 0 else f"no veth pairs: {veth.stderr.strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class TwoNodeSlurm(LocalSlurm):
    """``LocalSlurm`` with the nodes ``xm2node1`` and ``xm2node2`` in network namespaces."""

    def __init__(self, root: Path, cpus: int = 2, cred_expire: int = 5):
        super().__init__(root, cpus, cred_expire)
        tag = f"{os.getpid() % 100000}"
        self.namespaces = {name: f"xm2-{tag}-{i}" for i, name in enumerate(NODE_NAMES, 1)}
        subnet = random.Random().randrange(1, 255)
        self.addresses = {name: f"10.213.{subnet}.{i}" for i, name in enumerate(NODE_NAMES, 1)}
        self.nodes = [(name, self.addresses[name]) for name in NODE_NAMES]
        self.hosts_file = self.root / "hosts"
        self.client = self.in_node(NODE_NAMES[0])  # clients run on the first ("login") node

    @property
    def env(self) -> dict[str, str]:
        env = {**os.environ, "SLURM_CONF": str(self.conf)}
        env.pop("MASTER_ADDR", None)  # the jobs find the rendezvous host themselves
        return env

    def in_node(self, node: str) -> list[str]:
        # nsenter, not `ip netns exec`: that remounts /sys, hiding the cgroup tree slurmd reads
        return ["nsenter", f"--net=/run/netns/{self.namespaces[node]}", "unshare", "--uts", "--mount",
                "--propagation", "private", "sh", "-c", ENTER_NODE, node, str(self.hosts_file)]

    def start(self, timeout: float = 60) -> None:
        for name in NODE_NAMES:
            (self.root / "spool" / name).mkdir(parents=True, exist_ok=True, mode=0o700)
        self.hosts_file.write_text("127.0.0.1 localhost\n" + "".join(
            f"{addr} {name}\n" for name, addr in self.nodes))
        try:
            self._make_network()
            super().start(timeout)
        except BaseException:
            self.stop()
            raise

    def _make_network(self) -> None:
        (first, ns1), (second, ns2) = self.namespaces.items()
        for namespace in (ns1, ns2):
            _ip("netns", "add", namespace)
            _ip("-n", namespace, "link", "set", "lo", "up")
        _ip("-n", ns1, "link", "add", "xm2veth", "type", "veth", "peer", "name", "xm2veth",
            "netns", ns2)
        for node, namespace in ((first, ns1), (second, ns2)):
            _ip("-n", namespace, "addr", "add", f"{self.addresses[node]}/24", "dev", "xm2veth")
            _ip("-n", namespace, "link", "set", "xm2veth", "up")

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            for namespace in self.namespaces.values():
                for pid in subprocess.run(["ip", "netns", "pids", namespace], capture_output=True,
                                          text=True).stdout.split():  # a job's leftovers
                    subprocess.run(["kill", "-9", pid], capture_output=True)
                subprocess.run(["ip", "netns", "del", namespace], capture_output=True)

    def describe(self) -> str:
        return ", ".join(f"{name} {addr} (netns {self.namespaces[name]})"
                         for name, addr in self.nodes) + f"; clients: {shlex.join(self.client)}"


if __name__ == "__main__":
    import sys

    serve(TwoNodeSlurm(Path(sys.argv[1]).resolve()))
