"""The `ropd` console command: the installed entry point lists its commands and hands each its arguments.

The entry point is the script pip wrote next to this interpreter (`pip install -e .` registers it; `make venv`
reinstalls when pyproject.toml changes). No model, no network.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ropd_kit import cli

REPO = Path(__file__).resolve().parents[1]
ROPD = Path(sys.executable).parent / "ropd"


@pytest.fixture(scope="module")
def ropd() -> Path:
    assert ROPD.is_file(), f"{ROPD} is missing: the package was installed before `ropd` existed; run make venv"
    return ROPD


def test_ropd_help_lists_every_command(ropd):
    out = subprocess.run([str(ropd), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for name in ("demo", "train", "batch", "fidelity", "bench", "serve", "models"):
        assert f"\n  {name} " in out.stdout
    assert list(cli.COMMANDS) == ["demo", "train", "batch", "fidelity", "bench", "serve", "models"]


def test_ropd_train_dry_runs_the_gpu_config(ropd):
    out = subprocess.run([str(ropd), "train", "--config", "configs/gpu.yaml", "--dry-run"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "plan (configs/gpu.yaml)" in out.stdout and "https://api.openai.com/v1" in out.stdout
    assert "Qwen/Qwen2.5-1.5B-Instruct" in out.stdout


def test_a_command_keeps_its_exit_status_and_an_unknown_one_is_named(ropd, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("max_steps: 0\n")
    out = subprocess.run([str(ropd), "train", "--config", str(bad), "--dry-run"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2 and f"{bad}: max_steps" in out.stderr
    out = subprocess.run([str(ropd), "trian"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "unknown command 'trian'" in out.stderr and "did you mean 'train'" in out.stderr


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_each_command_reaches_its_module_with_the_rest_of_the_arguments(name, capsys):
    # --help is parsed by the command's own parser: its usage line names the module, so the hand-over is seen.
    with pytest.raises(SystemExit) as caught:
        cli.main([name, "--help"])
    assert caught.value.code == 0
    module = cli.COMMANDS[name][0].removesuffix(".__main__").removesuffix(".runner").removesuffix(".suite")
    assert f"python -m {module}" in capsys.readouterr().out


def test_the_older_scripts_are_still_installed(ropd):
    for script in ("ropd-serve", "ropd-batch", "ropd-models"):
        assert (ropd.parent / script).is_file()
