"""TP2, TP2 with sequence parallelism, PP2 (4 micro-batches), PP2 with two virtual stages per
rank (the interleaved schedule, one layer per chunk), DP2 and TP2 x PP2 with sequence
parallelism compute what one process computes.

fp32, µP on, tied embeddings, GQA. All layouts start from the reference's weights (loaded
through megatron's resharding dist checkpoint); the first step's finalised gradients are
saved the same way and compared tensor by tensor; the losses of three optimizer steps are
compared too. Criterion: relative error <= 1e-5 everywhere.
"""

import json
from pathlib import Path

import pytest

from tests.launch import run_worker

pytestmark = pytest.mark.distributed

WORKER = Path(__file__).with_name("parity_worker.py")
# name: (TP, PP, processes, overrides)
SP, VIRTUAL2 = "parallel.sequence_parallel=true", "parallel.virtual_pipeline=2"
LAYOUTS = {"tp2": (2, 1, 2, []), "tp2sp": (2, 1, 2, [SP]), "pp2": (1, 2, 2, []),
           "pp2vp2": (1, 2, 2, [VIRTUAL2]), "dp2": (1, 1, 2, []), "tp2pp2sp": (2, 2, 4, [SP])}
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def parity_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("parity")
    run_worker(WORKER, ["reference", "--out", str(out)])
    for name, (tp, pp, nproc, overrides) in LAYOUTS.items():
        args = ["layout", "--name", name, "--tp", str(tp), "--pp", str(pp),
                *(arg for override in overrides for arg in ("--set", override))]
        run_worker(WORKER, [*args, "--out", str(out), "--init", str(out / "init")], nproc=nproc)
    others = [str(out / f"grads_{name}") for name in LAYOUTS] + [str(out / "init")]
    run_worker(
        WORKER,
        ["compare", "--out", str(out / "errors.json"), "--reference", str(out / "grads_ref"),
         "--others", *others],
    )
    return out


def _losses(out: Path, name: str) -> list[float]:
    return json.loads((out / f"losses_{name}.json").read_text())


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_losses_match_single_process(parity_runs, layout):
    reference = _losses(parity_runs, "ref")
    losses = _losses(parity_runs, layout)
    assert len(losses) == len(reference) == 3
    for step, (got, want) in enumerate(zip(losses, reference)):
        assert abs(got - want) / abs(want) <= TOLERANCE, (layout, step, got, want)
    assert reference[-1] < reference[0]  # the optimizer really stepped


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_gradients_match_single_process(parity_runs, layout):
    errors = json.loads((parity_runs / "errors.json").read_text())[f"grads_{layout}"]
    assert len(errors) == 26  # every parameter of the 4-layer model was compared
    worst = max(errors, key=errors.get)
    assert errors[worst] <= TOLERANCE, (layout, worst, errors[worst])


def test_gradient_checkpoints_are_not_the_weights(parity_runs):
    """Guards the comparison itself: a saved gradient differs from the initial weights."""
    errors = json.loads((parity_runs / "errors.json").read_text())["init"]
    assert min(errors.values()) > 0.1


@pytest.mark.parametrize("overlap", [[], [
    "parallel.overlap_grad_reduce=true", "parallel.overlap_param_gather=true",
    "parallel.ddp_bucket_size=20000"]], ids=["plain", "overlapped"])
def test_distributed_optimizer_matches(parity_runs, tmp_path, overlap):
    """DP2 with megatron's distributed optimizer (sharded states) takes the same steps; also
    with the gradient reduce and the parameter gather overlapped, in several buckets."""
    sets = [arg for override in overlap for arg in ("--set", override)]
    run_worker(
        WORKER,
        ["layout", "--name", "dp2_distopt", "--out", str(tmp_path), "--init",
         str(parity_runs / "init"), "--set", "optimizer.use_distributed_optimizer=true", *sets],
        nproc=2,
    )
    reference = _losses(parity_runs, "ref")
    for got, want in zip(_losses(tmp_path, "dp2_distopt"), reference):
        assert abs(got - want) / abs(want) <= TOLERANCE
