"""A real single-node Slurm for the tests in this folder, up for the session and stopped by the
PIDs of its daemons at the end. Skipped (with the reason) only where Slurm is not installed
(``scripts/install_slurm.sh`` installs it) or cannot run as root; a Slurm that is installed
but does not come up is an error, with the daemons' logs."""

import os

import pytest

from tests.slurm.cluster import LocalSlurm, missing_commands


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    missing = missing_commands()
    if missing:
        pytest.skip(f"Slurm is not installed (no {', '.join(missing)}); "
                    "scripts/install_slurm.sh installs it (root and apt-get)")
    if os.geteuid() != 0:
        pytest.skip("a local slurmd launches jobs as root: run the Slurm tests as root")
    cluster = LocalSlurm(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
