"""Monitoring: MFU and peak table, the console line and ETA, metrics.jsonl, offline W&B with
resume, the online-without-key fallback, and the PNG plots."""

import re

import pytest
import torch

from xm2_megatron.config import load_config
from xm2_megatron.model import training_flops_per_token
from xm2_megatron.training import monitor as monitor_module
from xm2_megatron.runtime.hardware import PEAK_FLOPS_ENV, device_peak_flops, mfu
from xm2_megatron.training.monitor import (
    LogLine,
    Monitor,
    StepTimer,
    format_duration,
    memory_usage,
    read_metrics,
    resolve_wandb_mode,
    wandb_key_available,
)
from tests.wandb_offline import isolate_wandb, offline_runs
from xm2_megatron.training.plots import (
    BATCH_CHANGE_GID,
    STAGE_BOUNDARY_GID,
    batch_changes,
    plot_loss,
    save_plots,
    stage_boundaries,
)

CPU = torch.device("cpu")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """No peak override, no W&B credentials or mode from the machine; W&B's home dirs in tmp."""
    monkeypatch.delenv(PEAK_FLOPS_ENV, raising=False)
    isolate_wandb(monkeypatch, tmp_path)


def _cfg(*overrides):
    return load_config("recipes/cpu_quickstart.yaml", ["train.steps=6", "train.log_interval=2",
                                                       *overrides])


# MFU and the peak table

def test_mfu_of_the_paper_model_on_h100():
    flops = training_flops_per_token(load_config("recipes/xmodel2_1p2b.yaml").model)
    peak = device_peak_flops("NVIDIA H100 80GB HBM3")
    assert round(flops / 1e9, 2) == 11.13 and peak == 989e12
    assert mfu(44.4e3, flops, peak, 1) == pytest.approx(0.50, abs=0.001)
    assert mfu(8 * 44.4e3, flops, peak, 8) == pytest.approx(0.50, abs=0.001)
    assert mfu(44.4e3, flops, None, 1) is None


@pytest.mark.parametrize("name, peak", [
    ("NVIDIA H100 80GB HBM3", 989e12), ("NVIDIA H100 PCIe", 756e12), ("NVIDIA H100 NVL", 835e12),
    ("NVIDIA H200", 989e12), ("NVIDIA GH200 480GB", 989e12), ("NVIDIA H20", 148e12),
    ("NVIDIA A100-SXM4-80GB", 312e12), ("NVIDIA A100 80GB PCIe", 312e12), ("NVIDIA L40S", 362e12),
    ("NVIDIA L4", 121e12), ("NVIDIA B200", 2250e12), ("NVIDIA GeForce GTX 1080", None),
])
def test_peak_table(name, peak):
    assert device_peak_flops(name) == peak


def test_cpu_has_no_peak_unless_overridden(monkeypatch):
    assert device_peak_flops(CPU) is None
    assert device_peak_flops(CPU, override=1e12) == 1e12
    monkeypatch.setenv(PEAK_FLOPS_ENV, "2e12")
    assert device_peak_flops("NVIDIA H100 80GB HBM3") == 2e12
    monkeypatch.setenv(PEAK_FLOPS_ENV, "fast")
    with pytest.raises(ValueError, match=PEAK_FLOPS_ENV):
        device_peak_flops(CPU)


# console line, ETA

def test_console_line_fields():
    line = LogLine(step=120, total_steps=1000, stage="stable", loss=3.45671, lr=0.01,
                   grad_norm=0.8123, batch=960, tokens_per_s=44400.4, mfu=0.4997,
                   memory="mem 12.3/15.0 GiB", eta_s=3725)
    assert str(line) == ("step    120/1000 | stable | loss 3.4567 | lr 1.000e-02 | grad 0.812 | "
                         "batch 960 | 44,400 tok/s | MFU 50.0% | mem 12.3/15.0 GiB | ETA 1h02m")
    cpu = LogLine(step=1, total_steps=2, stage="decay", loss=1.0, lr=1e-3, grad_norm=1.0, batch=8,
                  tokens_per_s=100.0, mfu=None, memory="rss 0.5 GiB", eta_s=None, skipped=2)
    assert str(cpu).endswith("| MFU - | rss 0.5 GiB | ETA - | skipped 2")
    assert re.fullmatch(r"rss \d+\.\d GiB", memory_usage(CPU))  # psutil's process RSS


def test_eta_is_a_moving_average():
    timer = StepTimer(window=3)
    assert timer.eta(10) is None
    for seconds in (10.0, 2.0, 3.0, 4.0):  # the 10 s first step falls out of the window
        timer.add(seconds)
    assert timer.eta(10) == 30.0
    assert [format_duration(s) for s in (5, 65, 3725, 2 * 86400 + 3 * 3600, None)] == \
        ["0m05s", "1m05s", "1h02m", "2d03h", "-"]


def test_monitor_lines_and_metrics(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(monitor_module, "memory_usage", lambda device: "rss 0.5 GiB")
    mon = Monitor(_cfg(), tmp_path, flops_per_token=1000.0, world_size=1, device=CPU,
                  peak_flops=1e6)
    lines = [mon.log_step(s, "stable", loss=4.0 - s, lr=0.01, grad_norm=0.5, tokens=1024,
                          seconds=2.0, skipped=(s == 4)) for s in range(1, 5)]
    mon.log_validation(4, 2.5)
    assert lines[0] is None and lines[2] is None
    assert lines[1] == ("step      2/6 | stable | loss 2.5000 | lr 1.000e-02 | grad 0.500 | "
                        "batch 8 | 512 tok/s | MFU 51.2% | rss 0.5 GiB | ETA 0m08s")
    assert lines[3].endswith("| loss 1.0000 | lr 1.000e-02 | grad 0.500 | batch 8 | 512 tok/s | "
                             "MFU 51.2% | rss 0.5 GiB | ETA 0m04s | skipped 1")
    assert capsys.readouterr().out.splitlines() == [
        lines[1], lines[3], "validation at step 4 | val loss 2.5000"]
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3, 4, 4]
    rss = records[0].pop("rss_gib")
    assert 0.05 < rss < 64  # this process's resident memory in GiB
    assert records[0] == {"step": 1, "stage": "stable", "loss": 3.0, "lr": 0.01, "grad_norm": 0.5,
                          "global_batch": 8, "tokens": 1024, "seconds": 2.0, "tokens_per_s": 512.0,
                          "mfu": 0.512, "skipped": False}
    assert records[-1] == {"step": 4, "val_loss": 2.5}
    pngs = mon.finish()
    assert mon.run_id is None and not (tmp_path / "wandb").exists()  # wandb_mode=disabled
    assert sorted(pngs) == ["loss", "lr", "throughput"]
    assert all(p.read_bytes()[:8] == PNG_MAGIC for p in pngs.values())


def test_a_torn_last_metrics_line_is_dropped_on_resume(tmp_path, capsys):
    """A run killed (or out of disk) mid-write leaves half a line; the resume drops it."""
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text('{"step": 1, "loss": 3.0}\n{"step": 2, "loss": 2.5}\n{"step": 3, "lo')
    mon = Monitor(_cfg(), tmp_path, 1000.0, 1, start_step=2, device=CPU)
    assert "metrics.jsonl:3 is not a complete JSON record" in capsys.readouterr().err
    mon.log_step(3, "stable", loss=2.0, lr=0.01, grad_norm=0.5, tokens=1024, seconds=2.0)
    mon.finish()
    assert [(r["step"], r["loss"]) for r in read_metrics(metrics)] == [(1, 3.0), (2, 2.5), (3, 2.0)]


# W&B

def test_offline_wandb_run_holds_config_and_metrics_and_resumes(tmp_path, capsys):
    cfg = _cfg("logging.wandb_mode=offline")
    first = Monitor(cfg, tmp_path, 1000.0, 1, device=CPU)
    for step in (1, 2, 3):
        first.log_step(step, "stable", loss=5.0 - step, lr=0.01 * step, grad_norm=1.0,
                       tokens=1024, seconds=1.0)
    first.log_validation(3, 1.75)
    first.log_step(4, "stable", loss=9.0, lr=0.04, grad_norm=1.0, tokens=1024, seconds=1.0)  # lost
    first.finish()
    run_id = first.run_id
    assert run_id and "warning" not in capsys.readouterr().err

    second = Monitor(cfg, tmp_path, 1000.0, 1, resume_run_id=run_id, start_step=3, device=CPU)
    assert second.run_id == run_id
    for step in (4, 5):
        second.log_step(step, "decay", loss=5.0 - step, lr=0.01, grad_norm=1.0,
                        tokens=1024, seconds=1.0)
    second.finish()

    (history1, config1), (history2, config2) = offline_runs(tmp_path, run_id)
    assert config1["train"]["steps"] == 6 and config1["logging"]["wandb_mode"] == "offline"
    assert config2 == config1
    assert [h["_step"] for h in history1] == [1, 2, 3, 4]
    assert [h["train/loss"] for h in history1] == [4.0, 3.0, 2.0, 9.0]
    assert history1[2]["val/loss"] == 1.75 and history1[1]["train/lr"] == 0.02
    assert [h["_step"] for h in history2] == [4, 5]  # the same run id, steps continuing
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1, 2, 3, 3, 4, 5]


def test_online_without_key_falls_back_to_offline(tmp_path, capsys):
    mon = Monitor(_cfg("logging.wandb_mode=online"), tmp_path, 1000.0, 1, device=CPU)
    mon.finish()
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "no W&B API key" in warnings[0] and "offline" in warnings[0]
    assert list((tmp_path / "wandb").glob(f"offline-run-*-{mon.run_id}"))


def test_wandb_mode_resolution(tmp_path, monkeypatch):
    assert resolve_wandb_mode("online") == "offline" and not wandb_key_available()
    assert resolve_wandb_mode("disabled") == "disabled"
    assert resolve_wandb_mode("offline") == "offline"
    assert resolve_wandb_mode("online", {"WANDB_API_KEY": "x" * 40}) == "online"
    netrc = tmp_path / "netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    netrc.chmod(0o600)
    assert wandb_key_available({"NETRC": str(netrc)})
    assert not wandb_key_available({"NETRC": str(netrc), "WANDB_BASE_URL": "https://wandb.example.com"})


# plots

def test_loss_plot_marks_each_stage_boundary(tmp_path):
    stages = ["stable"] * 3 + ["decay"] * 2 + ["sft"] * 2
    batches = [8, 8, 16, 16, 16, 32, 32]
    records = [{"step": s, "stage": st, "loss": 5.0 / s, "lr": 0.01, "tokens_per_s": 100.0,
                "global_batch": b}
               for s, (st, b) in enumerate(zip(stages, batches), start=1)]
    records.append({"step": 4, "val_loss": 1.5})
    assert stage_boundaries(records) == [(3, "decay"), (5, "sft")]
    assert batch_changes(records) == [(2, "batch 8 -> 16"), (5, "batch 16 -> 32")]
    ax = plot_loss(records).axes[0]
    for gid, steps in ((STAGE_BOUNDARY_GID, [3, 5]), (BATCH_CHANGE_GID, [2, 5])):
        assert [line.get_xdata()[0] for line in ax.lines if line.get_gid() == gid] == steps
    pngs = save_plots(records, tmp_path)
    assert {p.name for p in pngs.values()} == {"loss.png", "lr.png", "throughput.png"}
    assert all(p.read_bytes()[:8] == PNG_MAGIC for p in pngs.values())
    assert save_plots([{"step": 1, "val_loss": 1.0}], tmp_path / "none") == {}


class _StubRun:
    """A W&B run that already holds steps below ``step`` and fails on the ``fail_at``-th log."""

    def __init__(self, step=0, fail_at=None):
        self.id, self.step, self.fail_at, self.logged = "stub1234", step, fail_at, []

    def log(self, row, step):
        if len(self.logged) + 1 == self.fail_at:
            raise ConnectionError("network down")
        self.logged.append(step)

    def finish(self, exit_code=0):
        pass


def test_resumed_online_run_skips_steps_it_has(tmp_path, monkeypatch):
    run = _StubRun(step=3)
    monkeypatch.setattr(monitor_module, "start_wandb", lambda *args: run)
    mon = Monitor(_cfg(), tmp_path, 1000.0, 1, resume_run_id="stub1234", start_step=1, device=CPU)
    for step in (2, 3, 4):
        mon.log_step(step, "stable", 1.0, 0.01, 1.0, tokens=1024, seconds=1.0)
    assert run.logged == [3, 4]


def test_wandb_failures_never_stop_training(tmp_path, monkeypatch, capsys):
    import wandb

    def init(mode, **kwargs):
        if mode == "online":
            raise TimeoutError("no network")
        return _StubRun(fail_at=2)

    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setattr(wandb, "init", init)
    mon = Monitor(_cfg("logging.wandb_mode=online"), tmp_path, 1000.0, 1, device=CPU)
    for step in (1, 2, 3):
        mon.log_step(step, "stable", 1.0, 0.01, 1.0, tokens=1024, seconds=1.0)
    mon.finish()
    warnings = capsys.readouterr().err.splitlines()
    assert len(warnings) == 2
    assert "online start failed (TimeoutError: no network); retrying offline" in warnings[0]
    assert "logging failed (ConnectionError: network down); continuing without W&B" in warnings[1]
    assert mon.run_id == "stub1234"
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1, 2, 3]


def test_skipped_step_line_has_no_grad_norm():
    line = LogLine(step=3, total_steps=9, stage="stable", loss=float("nan"), lr=0.01, grad_norm=None,
                   batch=8, tokens_per_s=100.0, mfu=None, memory="rss 0.1 GiB", eta_s=None, skipped=1)
    assert "| grad - |" in str(line) and str(line).endswith("skipped 1")
