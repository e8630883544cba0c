"""``sbatch --nodes=2 slurm/pretrain_1p2b.sh`` on a real two-node Slurm (``two_nodes.py``: two
network namespaces with their own hostnames and addresses on one machine): 4 ranks, TP 2 inside
each node and DP 2 across them, rendezvous at the first node from the Slurm environment. The
checkpoint resumes at another layout (TP 1, DP 4 across the nodes) with the same losses, and
the warning signal stops, requeues and resumes the job with losses equal to the uninterrupted
run's and the same W&B run."""

import re
import subprocess

import pytest

from tests.slurm.cluster import why_no_slurm
from tests.slurm.jobs import attempts, losses, output, submit_script, wait_job, wandb_ids
from tests.slurm.two_nodes import TwoNodeSlurm, why_no_namespaces
from tests.wandb_offline import offline_runs

SCRIPT = "slurm/pretrain_1p2b.sh"
STEPS = 12
OVERRIDES = [f"train.steps={STEPS}", "checkpoint.interval=4", "logging.wandb_mode=offline"]
SBATCH = ["--nodes=2", "--ntasks-per-node=2", "--gpus-per-node=0"]
HOSTS = "hosts: xm2node1 (ranks 0-1), xm2node2 (ranks 2-3)"


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    if reason := why_no_slurm():
        pytest.skip(reason)
    if reason := why_no_namespaces():
        pytest.skip(f"two nodes on one machine need network namespaces: {reason}")
    cluster = TwoNodeSlurm(tmp_path_factory.mktemp("two-nodes"))
    try:
        cluster.start()
        print(f"two-node Slurm: {cluster.describe()}")
        yield cluster
    finally:
        cluster.stop()


def submit(cluster, out, name, *overrides):
    return submit_script(cluster, SCRIPT, out, name,
                         ["recipes/cpu_quickstart.yaml", *OVERRIDES, *overrides], SBATCH)


@pytest.fixture(scope="module")
def uninterrupted(two_nodes, tmp_path_factory):
    out = tmp_path_factory.mktemp("two-node-run")
    job = submit(two_nodes, out, "xm2-2n", "parallel.tensor_parallel=2")
    info, states = wait_job(two_nodes, job, timeout=300)
    print(f"two-node job {job}: states {states}")
    return out, job, info


def test_two_node_job_runs_tp_inside_nodes_and_dp_across(uninterrupted):
    out, job, info = uninterrupted
    log = output(out, job)
    assert (info["JobState"], info["ExitCode"], info["Restarts"]) == ("COMPLETED", "0:0", "0"), \
        log[-4000:]
    assert "on 2 node(s) (xm2node[1-2]), 4 ranks" in log
    assert "world 4 (TP 2, PP 1, DP 2) | cpu gloo" in log
    assert HOSTS in log and "span hosts" not in log
    assert losses(out)[0] == list(range(1, STEPS + 1))
    assert (out / "run" / "checkpoints" / "latest").read_text().strip() == f"iter_{STEPS:07d}"


def test_checkpoint_resumes_at_another_layout_across_nodes(two_nodes, uninterrupted, tmp_path):
    source = uninterrupted[0] / "run" / "checkpoints" / "iter_0000008"
    job = submit(two_nodes, tmp_path, "xm2-2n-reshard", "parallel.tensor_parallel=1",
                 "train.micro_batch_size=2", f"checkpoint.load={source}")
    info, _ = wait_job(two_nodes, job, timeout=300)
    log = output(tmp_path, job)
    assert (info["JobState"], info["ExitCode"]) == ("COMPLETED", "0:0"), log[-4000:]
    assert f"world 4 (TP 1, PP 1, DP 4) | cpu gloo | resumed at step 8 from {source}" in log
    assert HOSTS in log
    steps, got = losses(tmp_path)
    assert steps == list(range(9, STEPS + 1))
    assert got == pytest.approx(losses(uninterrupted[0])[1][8:], rel=1e-5)


def test_warning_signal_requeues_and_resumes_with_equal_losses(two_nodes, uninterrupted, tmp_path):
    job = submit(two_nodes, tmp_path, "xm2-2n-preempted", "parallel.tensor_parallel=2")
    metrics = tmp_path / "run" / "cpu_quickstart" / "metrics.jsonl"
    wait_job(two_nodes, job, timeout=300,  # step 4 saved, step 5 done
             until=lambda: metrics.exists() and metrics.read_text().count('"loss"') >= 5)
    # what --signal=URG@300 does before the time limit: SIGURG to every process of the step,
    # on both nodes
    subprocess.run([*two_nodes.client, "scancel", "--signal=URG", job], env=two_nodes.env,
                   check=True)
    info, _ = wait_job(two_nodes, job, timeout=300)
    log = output(tmp_path, job)
    assert (info["JobState"], info["ExitCode"], info["Restarts"]) == ("COMPLETED", "0:0", "1"), \
        log[-4000:]
    stopped = int(re.search(r"stopped at step (\d+) on request", log).group(1))
    assert 5 <= stopped < STEPS
    assert f"resumed at step {stopped} from {tmp_path / 'run' / 'checkpoints'}" in log
    assert attempts(tmp_path, job) == ["attempt 0 exit 75 requeue", "attempt 1 exit 0 done"]
    steps, got = losses(tmp_path)
    want = losses(uninterrupted[0])[1]
    assert steps == list(range(1, STEPS + 1))  # each step logged once across both attempts
    assert got == pytest.approx(want, rel=1e-6)
    print(f"final loss: uninterrupted {want[-1]!r}, preempted and resumed {got[-1]!r}")

    ids = wandb_ids(tmp_path)  # offline W&B: one directory per attempt, the same run id
    assert len(ids) == 2 and ids[0] == ids[1]
    runs = offline_runs(tmp_path / "run" / "cpu_quickstart", ids[0])
    steps_per_attempt = [[row["_step"] for row in rows if "train/loss" in row] for rows, _ in runs]
    assert steps_per_attempt == [list(range(1, stopped + 1)), list(range(stopped + 1, STEPS + 1))]
