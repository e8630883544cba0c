"""``xm2-windtunnel sweep`` (the µTransfer grid through the real Trainer, shortened to 2 widths
x 2 learning rates of the tiny proxy) and ``coord-check`` from the command line; the best-lr
arithmetic on made-up results."""

import json
import math

import pytest

from tests.launch import REPO, python_command, run
from xm2_megatron.config import load_config
from xm2_megatron.windtunnel.coord_check import coordinate_check
from xm2_megatron.windtunnel.sweep import best_lr_shift, best_lrs, mean_losses

PROXY = REPO / "tests" / "windtunnel" / "proxy.yaml"


def _windtunnel(*args):
    return run(python_command(["-m", "xm2_megatron.tools.windtunnel", *args]), timeout=600,
               check=True)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    result = _windtunnel("sweep", PROXY, "--sizes", "32", "64", "--lrs", "-8", "-5", "--out", out)
    return out, result


def test_every_cell_is_trained_and_recorded(sweep):
    out, result = sweep
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    cells = {(r["parametrization"], r["size"], r["log2_lr"]) for r in records}
    assert cells == {(p, s, lr) for p in ("mup", "sp") for s in (32, 64) for lr in (-8.0, -5.0)}
    for r in records:  # each cell's loss is its own run's last validation
        with open(r["metrics"]) as f:
            validations = [m for m in map(json.loads, f) if "val_loss" in m]
        assert validations[-1]["step"] == 6 and validations[-1]["val_loss"] == r["val_loss"]
    assert (out / "sweep.png").stat().st_size > 0
    assert "| shift, largest - smallest |" in (out / "best_lr.md").read_text()


def test_a_second_run_trains_nothing_again(sweep):
    out, _ = sweep
    result = _windtunnel("sweep", PROXY, "--sizes", "32", "64", "--lrs", "-8", "-5", "--out", out)
    assert "sweep: 8 cells, 8 done, 0 to run" in result.stdout
    assert len((out / "results.jsonl").read_text().splitlines()) == 8


def _record(p, size, lr, loss, seed=0):
    return {"parametrization": p, "size": size, "log2_lr": lr, "seed": seed, "val_loss": loss,
            "vary": "width"}


def test_best_lr_and_its_shift():
    results = [_record("mup", 32, -6, 5.0), _record("mup", 32, -5, 4.0), _record("mup", 256, -5, 3.5),
               _record("mup", 256, -6, 3.6), _record("sp", 32, -5, 4.0), _record("sp", 32, -7, 4.5),
               _record("sp", 256, -7, 3.0), _record("sp", 256, -5, None)]  # None: diverged
    assert best_lrs(results) == {"mup": {32: (-5, 4.0), 256: (-5, 3.5)},
                                 "sp": {32: (-5, 4.0), 256: (-7, 3.0)}}
    assert best_lr_shift(results) == {"mup": 0, "sp": -2}
    seeds = [_record("mup", 32, -5, 4.0, 0), _record("mup", 32, -5, 5.0, 1),
             _record("mup", 32, -6, 4.2, 0), _record("mup", 32, -6, None, 1)]
    means = mean_losses(seeds)["mup"][32]
    assert means[-5] == 4.5 and math.isinf(means[-6])  # one diverged seed spoils the cell


def test_coord_check_command_prints_the_measured_rms(megatron_runtime):
    result = _windtunnel("coord-check", PROXY, "--widths", "32", "64", "--steps", "1")
    rows = {int(line.split()[0]): [float(v) for v in line.split()[1:]]
            for line in result.stdout.splitlines() if line.split() and line.split()[0].isdigit()}
    expected = coordinate_check(load_config(PROXY), [32, 64], steps=1)
    for width, values in rows.items():
        want = [expected[width][site] for site in ("embedding", "last_layer", "logits")]
        assert values == pytest.approx(want, rel=1e-3)
