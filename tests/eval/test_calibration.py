"""MMLU calibration: confidence bins, their accuracy and the ECE, by hand and on logged items."""

import json
import math

import pytest

from tests.eval.conftest import LIMIT
from xm2_megatron.eval.calibration import answer_confidence, calibrate, plot_calibration


def _item(lls, target):
    return {"filtered_resps": [(ll, False) for ll in lls], "target": target}


def test_bins_and_ece_by_hand():
    certain = [0.0, -50.0, -50.0, -50.0]  # confidence ~1.0
    even = [math.log(0.5), math.log(0.5), -60.0, -60.0]  # confidence 0.5, the first choice
    samples = [_item(certain, 0), _item(certain, 1), _item(even, 0), _item(even, 3)]
    cal = calibrate(samples, bins=10)
    assert cal.items == 4 and cal.accuracy == 0.5
    top, middle = cal.bins[9], cal.bins[4]  # (0.9, 1.0] and (0.4, 0.5]
    assert (top.items, middle.items) == (2, 2) and sum(b.items for b in cal.bins) == 4
    assert top.accuracy == 0.5 and middle.accuracy == 0.5
    assert math.isclose(middle.confidence, 0.5, abs_tol=1e-12)
    expected = 0.5 * abs(0.5 - top.confidence) + 0.5 * abs(0.5 - 0.5)
    assert math.isclose(cal.ece, expected, rel_tol=1e-12) and cal.ece > 0.24
    assert cal.bins[0].confidence is None
    json.dumps(cal.to_dict(), allow_nan=False)  # empty bins are null, not NaN


def test_confidence_is_the_softmax_of_the_best_choice():
    confidence, right = answer_confidence([math.log(0.2), math.log(0.6), math.log(0.2)], 1)
    assert math.isclose(confidence, 0.6) and right
    with pytest.raises(ValueError, match="no samples"):
        calibrate([])


def test_logged_mmlu_items_give_lm_evals_accuracy(harness, tmp_path):
    items = [s for task, logged in harness["samples"].items() if task.startswith("xm2_mmlu_")
             for s in logged]
    cal = calibrate(items)
    assert cal.items == 57 * LIMIT
    assert math.isclose(cal.accuracy, harness["results"]["xm2_mmlu"]["acc,none"], rel_tol=1e-12)
    plot_calibration(cal, tmp_path / "calibration.png", "MMLU")
    assert (tmp_path / "calibration.png").stat().st_size > 10_000
