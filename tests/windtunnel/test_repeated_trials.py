"""A worker that trains again and again in one process (a search worker's trials) frees each
run's model, optimizer and process groups: its thread count stays where the first run left it."""

import json

from tests.launch import REPO, run, worker_command

WORKER = REPO / "tests" / "windtunnel" / "repeated_trials_worker.py"
PROXY = REPO / "tests" / "windtunnel" / "proxy.yaml"


def test_runs_in_one_process_free_their_state_and_gloo_threads(tmp_path):
    result = run(worker_command(WORKER, [PROXY, tmp_path]), timeout=300, check=True)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert [r["exit_code"] for r in report] == [0, 0, 0, 0]
    assert all(r["freed"] == [True, True] for r in report), report
    assert [r["threads"] for r in report] == [report[0]["threads"]] * 4, report
