"""The rubric inspector where users use it: notebook 02 in a real JupyterLab, driven in headless Chromium.

A `jupyter lab` server of our own (free port, its own token, settings/runtime/kernel dirs in tmp_path) serves a copy
of notebooks/02_rubric_induction.ipynb with papermill-injected parameters pointing at a hand-made run directory
(judge=False: no model is called). Playwright drives the Debian chromium that `make test` installs
(scripts/install_chromium.sh; never `playwright install`): it opens the notebook, runs every cell from the Run menu,
waits for the inspector to render, types a new weight into a criterion's slider and reads the rollout scores the
page shows before and after. The expected numbers come from `scoring.weighted_pass_rate`, not from the inspector.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from ropd_kit import rundir
from ropd_kit.scoring import weighted_pass_rate

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "02_rubric_induction.ipynb"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]
KERNEL = "ropd-kit-lab-test"
KERNEL_DISPLAY = "ropd-kit (lab test)"

CRITERIA = [
    {"id": "c1", "text": "States the final answer 42", "points": 3, "category": "correctness"},
    {"id": "c2", "text": "Shows the multiplication 6 * 7", "points": 2, "category": "reasoning"},
    {"id": "c3", "text": "Writes in English", "points": 1, "category": "style"},
]
# Rollouts 0 and 2 end at 42 (right), 1 and 3 do not. c1 follows correctness exactly; c2 is met by one right and one
# wrong rollout; c3 by every answer.
ROLLOUT_ANSWERS = [42, 40, 42, 41]
JUDGEMENTS = {
    ("teacher", 0): [True, True, True],
    ("teacher", 1): [True, False, True],
    ("student", 0): [True, True, True],
    ("student", 1): [False, True, True],
    ("student", 2): [True, False, True],
    ("student", 3): [False, False, True],
}
BLIND_ORDER = [("student", 1), ("teacher", 0), ("student", 2), ("teacher", 1), ("student", 3), ("student", 0)]


def write_run(run: Path) -> None:
    """tasks, teacher_refs, rollouts, rubrics and verdicts of one judged group, as `pipeline.judge_stage` writes
    them (no config.json: the notebook's parameters make it)."""
    rundir.write_jsonl(run / rundir.TASKS, [{"id": "t1", "prompt": "What is 6 * 7?", "answer": "42"}])
    rundir.write_jsonl(run / rundir.TEACHER_REFS, [
        {"task_id": "t1", "ref_idx": i, "text": f"6 * 7 = 42. Answer: 42 (ref {i})", "model": "m", "usage": {}}
        for i in range(2)
    ])
    rundir.write_jsonl(run / rundir.ROLLOUTS, [
        {"task_id": "t1", "step": 0, "rollout_idx": i, "text": f"I think it is {a}. Answer: {a}", "n_tokens": 9,
         "truncated": False}
        for i, a in enumerate(ROLLOUT_ANSWERS)
    ])
    rundir.write_jsonl(run / rundir.RUBRICS, [
        {"task_id": "t1", "step": 0, "criteria": CRITERIA, "model": "m", "n_teacher": 2, "n_student": 4,
         "attempts": 1, "error": None},
    ])
    points = [c["points"] for c in CRITERIA]
    rundir.write_jsonl(run / rundir.VERDICTS, [
        {"task_id": "t1", "step": 0, "answer_key": f"{source}-{idx}", "source": source, "answer_idx": idx,
         "position": position, "judgements": JUDGEMENTS[(source, idx)],
         "score": weighted_pass_rate(points, [JUDGEMENTS[(source, idx)]])[0]}
        for position, (source, idx) in enumerate(BLIND_ORDER, start=1)
    ])


def expected_scores(points: list[int]) -> list[str]:
    """The score column the page should show, in blind order, as the inspector formats it (3 decimals)."""
    return [f"{weighted_pass_rate(points, [JUDGEMENTS[key]])[0]:.3f}" for key in BLIND_ORDER]


def write_notebook(root: Path) -> Path:
    """A copy of notebook 02 with papermill's injected-parameters cell, on our own kernel."""
    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    # A relative run_dir would be read from the project folder (the checkout), not from where the notebook lies.
    nb = parameterize_notebook(load_notebook_node(str(NOTEBOOK)), {"run_dir": str(root / "run"), "judge": False})
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": KERNEL_DISPLAY, "language": "python"}
    path = root / NOTEBOOK.name
    nbformat.write(nb, path)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def processes_mentioning(text: str) -> list[int]:
    """Pids whose command line contains `text` (our kernels name their connection file under our runtime dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


class Lab:
    """A `jupyter lab` subprocess whose every directory lives under `home`: started, waited for, and shut down
    with its kernels, whatever happened in between."""

    def __init__(self, home: Path, root: Path):
        self.home, self.root = home, root
        self.port, self.token = free_port(), secrets.token_hex(24)
        self.url = f"http://127.0.0.1:{self.port}"
        self.runtime = home / "runtime"
        self.log = home / "jupyter.log"
        kernel = home / "data" / "kernels" / KERNEL
        kernel.mkdir(parents=True)
        # The kernel is this interpreter: the venv that runs the tests, with ropd_kit installed in it.
        (kernel / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": KERNEL_DISPLAY, "language": "python",
        }))
        # No news or update prompts: nothing is fetched from outside, and no toast covers the page.
        settings = home / "settings" / "@jupyterlab" / "apputils-extension"
        settings.mkdir(parents=True)
        (settings / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False}))
        self.env = {
            **os.environ,
            "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_DATA_DIR": str(home / "data"),
            "JUPYTER_RUNTIME_DIR": str(self.runtime), "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
            "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
        }
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 240) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
             "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
             f"--ServerApp.root_dir={self.root}", "--LabApp.extension_manager=readonly",
             "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
             *(["--allow-root"] if os.geteuid() == 0 else [])],
            env=self.env, stdout=self.log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                urllib.request.urlopen(self.api("status"), timeout=5).read()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"jupyter lab did not answer within {timeout_s:.0f} s:\n{self.tail()}")
                time.sleep(0.5)

    @contextmanager
    def running(self) -> Iterator["Lab"]:
        """Started for the `with` body and stopped after it, whatever happened; no kernel of ours outlives it."""
        try:
            self.start()
            yield self
        finally:
            self.stop()
        assert processes_mentioning(str(self.runtime)) == [], "a kernel outlived the server"

    def api(self, path: str) -> str:
        return f"{self.url}/api/{path}?token={self.token}"

    def sessions(self) -> list[dict]:
        return json.loads(urllib.request.urlopen(self.api("sessions"), timeout=10).read())

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:  # the server's own shutdown stops its kernels too
                urllib.request.urlopen(urllib.request.Request(self.api("shutdown"), method="POST"), timeout=10)
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
        # A kernel the server failed to stop is ours by its connection file's folder; it must not outlive the test.
        for pid in processes_mentioning(str(self.runtime)):
            os.kill(pid, signal.SIGKILL)


@contextmanager
def notebook_run_all(lab: Lab, path: str, kernel_display: str, failure_dir: Path, timeout_ms: int) -> Iterator:
    """A headless Chromium page on the notebook at `path` (relative to the server's root), its kernel connected and
    every cell started from the Run menu. An error in the `with` body leaves a screenshot in `failure_dir` and prints
    the server's log before it propagates."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(timeout_ms)
            try:
                page.goto(f"{lab.url}/lab/tree/{path}?token={lab.token}")
                # The notebook's own kernelspec is found and started: no "Select Kernel" dialog. Run All before the
                # kernel is connected would open that dialog instead of running.
                expect(page.get_by_text(f"{kernel_display} | Idle")).to_be_visible(timeout=timeout_ms)
                page.get_by_role("menuitem", name="Run", exact=True).click()
                page.locator("li[data-command='runmenu:run-all']").click()  # "Run All Cells"
                yield page
            except Exception:
                page.screenshot(path=str(failure_dir / "failure.png"))
                print(f"screenshot: {failure_dir / 'failure.png'}\njupyter log:\n{lab.tail()}")
                raise
        finally:
            browser.close()


@pytest.fixture
def lab(tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `bash scripts/install_chromium.sh` (or `make chromium`)")
    root = tmp_path / "lab"
    root.mkdir()
    write_run(root / "run")
    write_notebook(root)
    with Lab(tmp_path, root).running() as server:
        yield server


# One column of the first table under a CSS selector, found by its heading (null while not rendered).
COLUMN_JS = """([css, heading]) => {
    const table = document.querySelector(css + ' table');
    if (!table) return null;
    const heads = [...table.querySelectorAll('thead th')].map(th => th.textContent.trim());
    const k = heads.indexOf(heading);
    if (k < 0) return null;
    return [...table.querySelectorAll('tbody tr')].map(tr => tr.children[k].textContent.trim());
}"""


def column(page, css: str, heading: str) -> list[str] | None:
    return page.evaluate(COLUMN_JS, [css, heading])


def test_a_weight_moved_in_the_page_changes_the_scores_it_shows(lab, tmp_path):
    from playwright.sync_api import expect

    expect.set_options(timeout=120_000)  # a busy 2-core machine: JupyterLab and the kernel take their time
    induced = [c["points"] for c in CRITERIA]
    start = time.monotonic()
    phases: list[str] = []  # printed (pytest -s, or on failure) to tell a slow JupyterLab from a slow kernel

    def phase(name: str) -> None:
        phases.append(f"{name}: {time.monotonic() - start:.1f} s")
        print(phases[-1])

    with notebook_run_all(lab, NOTEBOOK.name, KERNEL_DISPLAY, tmp_path, 120_000) as page:
        phase("notebook open, kernel idle, Run All")
        # The inspector renders, and the last cell (the rubric table as data) ran: no cell failed before it.
        page.locator(".ropd-scores table").wait_for()
        phase("inspector rendered")
        expect(page.locator(".jp-Cell").last.locator(".jp-OutputArea-output table")).to_contain_text(
            "correct_discrimination")
        assert column(page, ".ropd-scores", "score") == expected_scores(induced)
        assert column(page, ".ropd-scores", "recorded_score") == expected_scores(induced)
        assert column(page, ".ropd-scores", "correct") == [
            str(key[0] == "teacher" or ROLLOUT_ANSWERS[key[1]] == 42) for key in BLIND_ORDER]
        # Per criterion, in the page: c1 follows correctness (agreement 1, discrimination 1), c2 does not.
        assert column(page, ".ropd-rubric", "agreement") == ["1.00", "0.50", "0.50"]
        assert column(page, ".ropd-rubric", "n_labelled") == ["4", "4", "4"]
        assert column(page, ".ropd-rubric", "correct_discrimination") == ["1.00", "0.00", "0.00"]

        # Drop c2 (it does not separate right from wrong) by typing 0 into its slider's readout.
        readout = page.locator(".ropd-weight", has=page.locator("label", has_text="c2")).locator(
            ".widget-readout")
        readout.click()
        page.keyboard.press("Control+A")
        page.keyboard.type("0")
        page.keyboard.press("Enter")
        edited = [3, 0, 1]
        assert expected_scores(edited) != expected_scores(induced)
        page.wait_for_function(
            f"([expected]) => JSON.stringify(({COLUMN_JS})(['.ropd-scores', 'score'])) === expected",
            arg=[json.dumps(expected_scores(edited), separators=(",", ":"))],
        )
        phase("scores changed")
        assert column(page, ".ropd-scores", "score") == expected_scores(edited)
        assert column(page, ".ropd-scores", "recorded_score") == expected_scores(induced)
        assert column(page, ".ropd-rubric", "points") == ["3", "0", "1"]
        # Right rollouts now score 1.0 and wrong ones 0.25; the agreement does not depend on weights.
        assert column(page, ".ropd-rubric", "agreement") == ["1.00", "0.50", "0.50"]
    # The notebook ran on our kernel, the interpreter that runs these tests.
    assert {s["kernel"]["name"] for s in lab.sessions()} == {KERNEL}
