"""µP coordinate check (``xm2_megatron.windtunnel.coord_check``): RMS across widths and depths.

Setup: the parity recipe with vocab 1024, seq 64, 4 layers, dim_model_base 256 (MiniCPM's);
widths 64, 128, 256, 512 (FFN 2.5 x width, head dim 16, 2 heads per KV group); AdamW at a
constant lr 0.01, batch 8 x 64 tokens, 5 steps; RMS on one fixed batch, mean of 3 seeds.
``ratio`` = RMS at width 512 / RMS at width 64 (or at depth 16 / depth 2).

Criteria [measured]:
- after 5 steps, µP on: last layer output and logits ratios <= 1.0 [0.17, 0.58]; µP off
  (standard parametrization, init std 0.02): both >= 2 [88, 3.3; single seeds' logits ratios
  range 1.8-4.6, so never fewer seeds]. One-sided: µP is not flat here, since width 64 steps
  its hidden weights at lr 0.04 and its activations grow most.
- removing µP's logits 1/width_mult or its hidden lr/width_mult breaks that criterion
  [logits 1.75; last layer 1.68].
- at init, µP on: last layer ratio in [0.8, 1.25] [1.00] and logits ratio 1/sqrt(8) by design
  [0.36]; without the hidden init std 1/sqrt(width_mult) the last layer ratio is >= 2 [13].
  After 5 steps the updates swamp the init [0.24, 0.32], so only this check sees that one.
- depth 2 -> 16 at width 128, at init: µP's residual multiplier scale_depth/sqrt(L) keeps the
  last layer ratio in [0.8, 1.25] [1.00]; forced to 1 it is >= 2 [2.78, ~sqrt(8)].
The embedding scale is a width- and depth-independent constant that no ratio here sees
(removing it: after 5 steps [0.12, 0.69], depth [1.00]); ``test_mup.py`` checks it exactly.
"""

import dataclasses
import math
from pathlib import Path

import pytest

import xm2_megatron.model.builder
import xm2_megatron.training.state
from xm2_megatron.config import load_config
from xm2_megatron.windtunnel.coord_check import coordinate_check, depth_check, rms_growth
from xm2_megatron.windtunnel.family import width_config
from xm2_megatron.model.mup import mup_multipliers

pytestmark = pytest.mark.usefixtures("megatron_runtime")

WIDTHS = (64, 128, 256, 512)
ENDS = (64, 512)  # a ratio needs only the narrowest and widest; each width is measured alone
DEPTHS = (2, 4, 8, 16)
SEEDS = (0, 1, 2)
STEPS = 5
MUP_BOUND = 1.0  # µP: widest / narrowest RMS at most this
GROWS = 2.0  # standard parametrization, and the ablations at init: at least this
FLAT = (0.8, 1.25)  # at init: flat in width (last layer) or in depth
SETUP = ("model.vocab_size=1024", "model.seq_length=64", "model.num_layers=4",
         "mup.dim_model_base=256", "optimizer.lr=0.01", "train.global_batch_size=8",
         "train.micro_batch_size=4")


@pytest.fixture(scope="module")
def base():
    return load_config(Path(__file__).parents[1] / "distributed" / "parity.yaml", SETUP)


def _without(monkeypatch, module, **fields):
    """Patch ``module``'s ``mup_multipliers`` so that the given µP multipliers are replaced."""
    monkeypatch.setattr(module, "mup_multipliers", lambda model, mup: dataclasses.replace(
        mup_multipliers(model, mup), **fields))


def _ratios(results):
    return {site: round(rms_growth(results, site), 3) for site in ("last_layer", "logits")}


def test_mup_keeps_hidden_and_output_coordinates_bounded(base):
    ratios = _ratios(coordinate_check(base, WIDTHS, STEPS, SEEDS))
    assert max(ratios.values()) <= MUP_BOUND, f"µP: width 512/64 RMS ratios {ratios} > {MUP_BOUND}"


def test_standard_parametrization_blows_up_with_width(base):
    mup = dataclasses.replace(base.mup, enabled=False, init_std=0.02)
    ratios = _ratios(coordinate_check(dataclasses.replace(base, mup=mup), ENDS, STEPS, SEEDS))
    assert min(ratios.values()) >= GROWS, f"SP: width 512/64 RMS ratios {ratios} < {GROWS}"


@pytest.mark.parametrize(("module", "field", "site"), [
    (xm2_megatron.model.builder, "logits", "logits"),
    (xm2_megatron.training.state, "hidden_lr", "last_layer"),
], ids=["logits_scale", "hidden_lr"])
def test_removing_a_width_operation_breaks_the_mup_criterion(monkeypatch, base, module, field,
                                                             site):
    _without(monkeypatch, module, **{field: 1.0})
    ratio = rms_growth(coordinate_check(base, ENDS, STEPS, SEEDS), site)
    assert ratio > MUP_BOUND, f"without µP's {field}: {site} ratio {ratio:.3f} <= {MUP_BOUND}"


def test_mup_is_flat_in_width_at_init(base):
    ratios = _ratios(coordinate_check(base, WIDTHS, 0, SEEDS))
    assert FLAT[0] <= ratios["last_layer"] <= FLAT[1], f"µP at init: {ratios}, not flat {FLAT}"
    # tied logits at init: RMS ~ init_std * sqrt(d) / width_mult, i.e. ~ 1/sqrt(width)
    assert ratios["logits"] == pytest.approx(math.sqrt(64 / 512), rel=0.15)


def test_removing_the_hidden_init_scale_breaks_flatness_at_init(monkeypatch, base):
    _without(monkeypatch, xm2_megatron.model.builder, hidden_init_std=base.mup.init_std)
    ratio = rms_growth(coordinate_check(base, ENDS, 0, SEEDS), "last_layer")
    assert ratio >= GROWS, f"without the hidden init scale: last layer ratio {ratio:.3f} < {GROWS}"


@pytest.mark.parametrize(("residual", "low", "high"), [(None, *FLAT), (1.0, GROWS, math.inf)],
                         ids=["mup", "multiplier_1"])
def test_residual_multiplier_keeps_depth_flat_at_init(monkeypatch, base, residual, low, high):
    if residual is not None:
        _without(monkeypatch, xm2_megatron.model.builder, residual=residual)
    ratio = rms_growth(depth_check(width_config(base, 128), DEPTHS, 0, SEEDS), "last_layer")
    assert low <= ratio <= high, f"depth 16/2: last layer ratio {ratio:.3f} not in [{low}, {high}]"
