"""A real single-node Slurm for the tests in this folder, up for the session and stopped by the
PIDs of its daemons at the end. Skipped (with the reason) only where Slurm is not installed
(``scripts/install_slurm.sh`` installs it) or cannot run as root; a Slurm that is installed
but does not come up is an error, with the daemons' logs."""

import pytest

from tests.slurm.cluster import LocalSlurm, why_no_slurm


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    if reason := why_no_slurm():
        pytest.skip(reason)
    cluster = LocalSlurm(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
