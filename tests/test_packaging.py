"""The package installs (non-editable) and its console scripts work outside the repository.

A copy of the working tree is installed with ``pip install --no-deps --no-build-isolation``
into a fresh virtual environment that sees this environment's dependencies through a
``.pth`` file (nothing is downloaded); the console scripts then run from an empty folder,
so the packaged recipes, not the repository's, must be found. About a minute.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
TOOLS = sorted(p.stem for p in (ROOT / "tools").glob("*.py"))
NOT_COPIED_AT_ROOT = {".git", ".venv", "build", "dist", "data", "runs", "wandb"}
NOT_COPIED = ("__pycache__", ".pytest_cache", "*.egg-info")


def _ignore(directory: str, names: list[str]) -> set[str]:
    ignored = set(shutil.ignore_patterns(*NOT_COPIED)(directory, names))
    if Path(directory) == ROOT:
        ignored |= NOT_COPIED_AT_ROOT & set(names)
    return ignored


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return {**env, "OMP_NUM_THREADS": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_NO_INPUT": "1", "WANDB_MODE": "disabled"}


def _run(cmd, cwd, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(list(map(str, cmd)), cwd=cwd, env=_env(), capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv, empty working folder): a copy of the tree installed non-editable into venv."""
    tmp = tmp_path_factory.mktemp("packaging")
    src, venv, work = tmp / "src", tmp / "venv", tmp / "work"
    shutil.copytree(ROOT, src, symlinks=True, ignore=_ignore)
    work.mkdir()
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    python = venv / "bin" / "python"
    site = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                work).stdout.strip()
    # this environment's packages (torch, megatron-core, pip, setuptools...) after the venv's
    # own: a .pth line only adds the folder, so the editable xm2_megatron here stays out
    ours = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    Path(site, "zz_parent_env.pth").write_text("".join(f"{p}\n" for p in ours))
    result = _run([python, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                   "--no-index", str(src)], work, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return venv, work


def test_installed_package_is_the_copy_not_the_checkout(installed):
    venv, work = installed
    result = _run([venv / "bin" / "python", "-c",
                   "import xm2_megatron, xm2_megatron.config as c; "
                   "print(xm2_megatron.__file__); print(c.RECIPES_DIR); "
                   "print(' '.join(c.packaged_recipes()))"], work)
    assert result.returncode == 0, result.stderr
    module, recipes, names = result.stdout.splitlines()
    assert Path(module).is_relative_to(venv) and Path(recipes).is_relative_to(venv), module
    assert "site-packages" in module  # a regular install, not an editable finder
    assert names.split() == sorted(p.stem for p in (ROOT / "recipes").glob("*.yaml"))


def test_console_scripts_help(installed):
    venv, work = installed
    for name in SCRIPTS:
        result = _run([venv / "bin" / name, "--help"], work, timeout=120)
        assert result.returncode == 0, f"{name}: {result.stderr[-2000:]}"
        assert result.stdout.startswith(f"usage: {name}"), f"{name}: {result.stdout[:200]}"


def test_train_a_packaged_recipe_from_an_empty_folder(installed):
    venv, work = installed
    out = work / "runs"
    result = _run([venv / "bin" / "xm2-train", "cpu_quickstart", "train.steps=3",
                   f"logging.output_dir={out}", "logging.wandb_mode=disabled"], work, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    records = [json.loads(line) for line in (out / "cpu_quickstart" / "metrics.jsonl").open()]
    losses = [r for r in records if "loss" in r]
    assert [r["step"] for r in losses] == [1, 2, 3]
    assert all(math.isfinite(r["loss"]) for r in losses)
    assert not (work / "recipes").exists() and not any(work.glob("*.yaml"))


def test_every_tool_is_a_console_script_and_a_shim():
    targets = {target.split(":")[0] for target in SCRIPTS.values()}
    for tool in TOOLS:
        assert f"xm2_megatron.tools.{tool}" in targets, f"tools/{tool}.py has no console script"
        shim = (ROOT / "tools" / f"{tool}.py").read_text()
        assert f"from xm2_megatron.tools.{tool} import main" in shim and len(shim.splitlines()) < 15
    assert {"xm2-train", "xm2-quickstart", "xm2-config"} <= set(SCRIPTS)


def test_tools_help_without_torch():
    """``--help`` of every tool in xm2_megatron.tools imports neither torch nor megatron."""
    mains = sorted(t for t in SCRIPTS.values() if t.startswith("xm2_megatron.tools."))
    code = ("import sys\n"
            f"for target in {mains!r}:\n"
            "    module, _, attr = target.partition(':')\n"
            "    main = getattr(__import__(module, fromlist=[attr]), attr)\n"
            "    try:\n"
            "        main(['--help'])\n"
            "    except SystemExit as e:\n"
            "        assert e.code == 0, (target, e.code)\n"
            "print(sorted(m for m in ('torch', 'megatron', 'transformers') if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[-1] == "[]"


def test_convert_to_hf_dtype_choices_match_the_exporter():
    from xm2_megatron.convert.export import DTYPES
    from xm2_megatron.tools.convert_to_hf import DTYPE_CHOICES

    assert sorted(DTYPE_CHOICES) == sorted(DTYPES)
