"""Notebook 01 as a user runs it: a real `jupyter lab` started at the repository root, the committed notebook opened
in headless Chromium on the kernel `make venv` registers ("ropd-kit (.venv)"), every cell run from the Run menu with
the notebook's own defaults. JupyterLab starts the kernel in notebooks/, so this is where relative paths used to go
wrong: the tasks must come from data/ and the run directory must appear at runs/notebooks under the repository root.

The one change from the defaults is the one a user with a small machine makes: ROPD_OFFLINE_MODEL=smollm2-135m-instruct
in the server's environment, so that the local llama-server the kernel starts serves SmolLM2 in place of the
offline default's teacher and student. An existing runs/notebooks is moved aside for the test and put back after;
autosave is off and the notebook file must be byte for byte what it was.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_inspector_lab import CHROMIUM, Lab, notebook_run_all

from ropd_kit.config import FAST_MODEL
from ropd_kit.notebook_tools.params import OFFLINE_MODEL_ENV, PROJECT_DIR_ENV

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "01_teacher_references.ipynb"
RUN_DIR = ROOT / "runs" / "notebooks"  # the notebook's default run_dir, where the README says runs land
KERNEL, KERNEL_DISPLAY = "ropd-kit", "ropd-kit (.venv)"


@pytest.fixture
def run_dir_aside():
    """runs/notebooks is the user's: moved aside while the test writes its own, then put back."""
    aside = RUN_DIR.with_name(f".notebooks-aside-{os.getpid()}")
    if RUN_DIR.exists():
        RUN_DIR.rename(aside)
    try:
        yield RUN_DIR
    finally:
        shutil.rmtree(RUN_DIR, ignore_errors=True)
        if aside.exists():
            aside.rename(RUN_DIR)
        elif RUN_DIR.parent.exists() and not any(RUN_DIR.parent.iterdir()):
            RUN_DIR.parent.rmdir()  # runs/ was made by this test


@pytest.fixture
def lab(tmp_path, run_dir_aside):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `bash scripts/install_chromium.sh` (or `make chromium`)")
    server = Lab(tmp_path, ROOT)
    server.env.pop(PROJECT_DIR_ENV, None)  # the checkout itself must be found, from the kernel's notebooks/ folder
    server.env[OFFLINE_MODEL_ENV] = FAST_MODEL
    # The kernel `make venv` registers, installed the same way into this server's own data folder.
    subprocess.run([sys.executable, "-m", "ipykernel", "install", "--user", "--name", KERNEL, "--display-name",
                    KERNEL_DISPLAY], env=server.env, check=True, capture_output=True)
    settings = tmp_path / "settings" / "@jupyterlab"
    # No autosave: outputs must never be written into the committed notebook. Every cell in the DOM, so that the
    # page can be read whole.
    (settings / "docmanager-extension").mkdir(parents=True)
    (settings / "docmanager-extension" / "plugin.jupyterlab-settings").write_text(json.dumps({"autosave": False}))
    (settings / "notebook-extension").mkdir(parents=True)
    (settings / "notebook-extension" / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    with server.running():
        yield server


# Per code cell: its prompt ("[3]:", "[*]:", "[ ]:") and its outputs' text.
CELLS_JS = """() => [...document.querySelectorAll('.jp-Notebook .jp-CodeCell')].map(cell => ({
    prompt: (cell.querySelector('.jp-InputPrompt') || {}).textContent || '',
    output: [...cell.querySelectorAll('.jp-OutputArea-output')].map(o => o.textContent).join('\\n'),
}))"""


def test_notebook_01_runs_with_its_defaults_from_jupyterlab(lab, tmp_path):
    before = NOTEBOOK.read_bytes()
    start = time.monotonic()
    with notebook_run_all(lab, f"notebooks/{NOTEBOOK.name}", KERNEL_DISPLAY, tmp_path, 180_000) as page:
        page.wait_for_function(f"() => ({CELLS_JS})().some(c => c.prompt.includes('*'))")
        # Done when nothing is queued or running any more: every cell ran, or an error stopped the rest.
        page.wait_for_function(f"() => !({CELLS_JS})().some(c => c.prompt.includes('*'))",
                               timeout=1_500_000, polling=2000)
        cells = page.evaluate(CELLS_JS)
    print(f"notebook 01 ran in {time.monotonic() - start:.0f} s")

    errors = [c["output"][-2000:] for c in cells if "Traceback" in c["output"] or "Error" in c["output"].split(":")[0]]
    assert errors == [], errors[0] if errors else ""
    assert all(c["prompt"].strip().strip("[]:").isdigit() for c in cells), [c["prompt"] for c in cells]
    assert "ropd-kit" in {s["kernel"]["name"] for s in lab.sessions()}

    # The run directory is at the repository root, and nothing went to notebooks/runs.
    assert not (ROOT / "notebooks" / "runs").exists()
    config = json.loads((RUN_DIR / "config.json").read_text())
    assert Path(config["tasks_path"]) == ROOT / "data" / "arith_train.jsonl"
    assert config["teacher"]["model"] == config["student"]["model"] == FAST_MODEL
    refs = [json.loads(line) for line in (RUN_DIR / "teacher_refs.jsonl").read_text().splitlines()]
    n_tasks, n_refs = config["n_tasks"], config["n_teacher_refs"]
    assert (n_tasks, n_refs) == (4, 4)  # the notebook's own defaults
    assert sorted((r["task_id"], r["ref_idx"]) for r in refs) == sorted(
        (json.loads(t)["id"], i) for t in (RUN_DIR / "tasks.jsonl").read_text().splitlines() for i in range(n_refs))
    assert all(r["model"] == FAST_MODEL for r in refs)
    assert sum(1 for r in refs if r["text"]) >= n_tasks  # failures are recorded, but most refs came back
    assert len((RUN_DIR / "rollouts.jsonl").read_text().splitlines()) == n_tasks * config["n_rollouts"]
    # Autosave was off: the committed notebook is untouched.
    assert NOTEBOOK.read_bytes() == before
