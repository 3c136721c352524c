"""Interrupted runs: SIGKILL mid-write and mid-step, then resume.

- mid-write: a real writer process appending large records is killed at several moments; the file is always
  readable, a torn tail is repaired on open, and appends go on from a clean line.
- mid-step: a real ROPD training run (SmolLM2) is killed while it works on step 2; `resume=True` continues from the
  last checkpoint; the JSONL files end up with one record per step (no torn lines, nothing duplicated), the LLM cache
  still opens with every entry, and the teacher refs of the resumed steps are replayed from the reference index
  without a single teacher request.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hardening_helpers import tiny_config

from ropd_kit import rundir
from ropd_kit.llm import LLMCache

REPO = Path(__file__).resolve().parents[2]

WRITER = """
import sys
from ropd_kit import rundir
path, size = sys.argv[1], int(sys.argv[2])
i = 0
while True:
    rundir.append_jsonl(path, [{"i": i, "pad": "x" * size}, {"i": i + 1, "pad": "y" * size}])
    i += 2
"""

TRAINER = """
import sys
from ropd_kit import train
from ropd_kit.config import RunConfig
train.train(RunConfig.load(sys.argv[1]))
"""


def _spawn(code: str, *args: str, log: Path | None = None) -> subprocess.Popen:
    out = open(log, "ab") if log else subprocess.DEVNULL
    # Own session: the kill below reaches this process and anything it started, and nothing else.
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(30)


def _wait_for(predicate, proc: subprocess.Popen, timeout_s: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise AssertionError(f"process exited with {proc.returncode} before {what}:\n{tail}")
        time.sleep(0.05)
    _kill(proc)
    raise AssertionError(f"timed out waiting for {what}")


def _strict_lines(path: Path) -> list[dict]:
    """Every line of the file parsed; a torn or corrupt line fails here (no repair)."""
    data = path.read_bytes()
    assert not data or data.endswith(b"\n"), f"{path.name}: torn last line"
    # Split on b"\n" only: str.splitlines() would also split inside records holding U+2028 and friends.
    return [json.loads(line) for line in data.split(b"\n") if line.strip()]


@pytest.mark.parametrize("kill_after_bytes", [3_000_000, 9_000_000, 20_000_000])
def test_writer_killed_mid_append_leaves_a_repairable_file(tmp_path, kill_after_bytes):
    path = tmp_path / "verdicts.jsonl"
    proc = _spawn(WRITER, str(path), "400000")
    try:
        _wait_for(lambda: path.exists() and path.stat().st_size > kill_after_bytes, proc, 120, "the writer to write")
    finally:
        _kill(proc)
    records = rundir.read_jsonl(path)  # a torn tail is skipped, never an error
    assert [r["i"] for r in records] == list(range(len(records)))
    assert all(len(r["pad"]) == 400000 for r in records)
    rundir.append_jsonl(path, [{"i": len(records), "pad": ""}])
    after = _strict_lines(path)  # the append repaired the tail first
    assert [r["i"] for r in after] == list(range(len(records) + 1))


def test_torn_lines_in_every_run_file_are_repaired_on_resume_read(tmp_path):
    for name in (rundir.TRAIN_LOG, rundir.ROLLOUTS, rundir.RUBRICS, rundir.VERDICTS, rundir.JUDGE_RAW):
        path = tmp_path / name
        rundir.append_jsonl(path, [{"step": 1, "n": 0}, {"step": 2, "n": 1}])
        with open(path, "ab") as fh:
            fh.write(b'{"step": 3, "n": 2, "text": "cut he')
        assert rundir.read_jsonl(path, repair=True) == [{"step": 1, "n": 0}, {"step": 2, "n": 1}]
        assert _strict_lines(path) == [{"step": 1, "n": 0}, {"step": 2, "n": 1}]


@pytest.mark.integration
@pytest.mark.timeout(2400)  # two training processes, each up to 900 s on a busy machine
def test_training_killed_mid_step_resumes_from_the_checkpoint(server, tmp_path):
    from ropd_kit.train.methods import CHECKPOINTS

    steps = 2  # killed while on step 2; the resumed run redoes step 2 only
    config = tiny_config(server, tmp_path).model_copy(update={
        "method": "ropd", "max_steps": steps, "save_steps": 1, "n_tasks": 1, "prompts_per_step": 1,
        "n_rollouts": 2, "rollout_max_tokens": 16, "max_judge_failure_rate": 1.0,
    })
    run_dir = config.path
    config_path = config.save(tmp_path / "first.json")
    log = tmp_path / "train.log"

    first = _spawn(TRAINER, str(config_path), log=log)
    checkpoint = run_dir / CHECKPOINTS / "checkpoint-1" / "trainer_state.json"
    try:
        _wait_for(checkpoint.exists, first, 900, "checkpoint-1", log)
        # Step 2 starts with generation and then its judge calls; kill while it is under way.
        time.sleep(1.0)
    finally:
        _kill(first)
    assert first.returncode == -signal.SIGKILL
    before = rundir.read_jsonl(run_dir / rundir.TRAIN_LOG)
    assert [r["step"] for r in before][:1] == [1]
    cache_entries = len(LLMCache(config.cache_dir))
    assert cache_entries > 0
    # What a kill in the middle of an append leaves behind.
    with open(run_dir / rundir.VERDICTS, "ab") as fh:
        fh.write(b'{"task_id": "t-cookies", "step": 2, "answer_key": "student-0", "judge')

    resumed_path = config.model_copy(update={"resume": True}).save(tmp_path / "resume.json")
    second = _spawn(TRAINER, str(resumed_path), log=log)
    try:
        second.wait(900)
    finally:
        _kill(second)
    assert second.returncode == 0, log.read_text()[-3000:]

    train_log = _strict_lines(run_dir / rundir.TRAIN_LOG)
    assert [r["step"] for r in train_log] == list(range(1, steps + 1))
    rollouts = _strict_lines(run_dir / rundir.ROLLOUTS)
    keys = [(r["task_id"], r["step"], r["rollout_idx"]) for r in rollouts]
    assert len(keys) == len(set(keys)) == steps * config.n_rollouts
    rubrics = _strict_lines(run_dir / rundir.RUBRICS)
    assert sorted(r["step"] for r in rubrics) == list(range(1, steps + 1))
    verdicts = _strict_lines(run_dir / rundir.VERDICTS)
    vkeys = [(r["task_id"], r["step"], r["answer_key"]) for r in verdicts]
    assert len(vkeys) == len(set(vkeys))
    _strict_lines(run_dir / rundir.JUDGE_RAW)

    assert len(LLMCache(config.cache_dir)) >= cache_entries  # nothing lost from the cache
    # One task, its refs collected at step 1: the resumed steps replay them without asking the teacher.
    for record in train_log[1:]:
        teacher = record["judge_usage"].get("teacher", {})
        assert teacher.get("http_requests", 0) == 0, record["judge_usage"]
    assert (run_dir / CHECKPOINTS / f"checkpoint-{steps}").exists()


def _sleepy_notebook(path: Path) -> Path:
    """A notebook that, the first time a given `sleep_s` runs (a flag in `flag_dir`), marks its run directory and
    sleeps; every execution ends by writing `finished` there."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook()
    nb.cells = [
        new_code_cell('run_dir = "x"\nsleep_s = 0.0\nflag_dir = "."', metadata={"tags": ["parameters"]}),
        new_code_cell(
            "import pathlib, time\n"
            "flag = pathlib.Path(flag_dir, f'slept-{sleep_s}')\n"
            "if not flag.exists():\n"
            "    flag.write_text('1')\n"
            "    pathlib.Path(run_dir, 'started').write_text('1')\n"
            "    time.sleep(sleep_s)\n"
            "pathlib.Path(run_dir, 'finished').write_text('1')"
        ),
    ]
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    nbformat.write(nb, path)
    return path


def _status(folder: Path) -> dict | None:
    path = folder / "status.json"
    return json.loads(path.read_text()) if path.exists() else None


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_batch_killed_mid_run_resumes_with_finished_runs_skipped(tmp_path: Path):
    import yaml

    notebook = _sleepy_notebook(tmp_path / "sleepy.ipynb")
    flags = tmp_path / "flags"
    flags.mkdir()
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"name": "sleepy", "notebooks": [str(notebook)], "base": {"flag_dir": str(flags)},
                                    "grid": {"sleep_s": [0.0, 600.0]}}))
    reports = tmp_path / "reports"
    command = [sys.executable, "-m", "ropd_kit.batch", str(spec), "--reports", str(reports), "--no-shared-servers"]
    quick, slow = reports / "sleepy" / "sleep_s-0.0", reports / "sleepy" / "sleep_s-600.0"
    proc = subprocess.Popen(command, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while not (slow / "run" / "started").exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the second run never started"
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the runner and its notebook kernel, mid-run
        proc.wait()

    assert _status(quick)["status"] == "done"
    assert _status(slow)["status"] == "running"  # what a killed run leaves: not done, so it will be redone
    assert not (slow / "run" / "finished").exists()
    done_at = (quick / "status.json").stat().st_mtime_ns

    again = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "sleep_s-0.0: skipped (already done)" in again.stdout
    assert (quick / "status.json").stat().st_mtime_ns == done_at
    # The killed run ran again from a clean run directory (its records come from one execution) and finished.
    assert _status(slow)["status"] == "done"
    assert (slow / "run" / "finished").exists() and not (slow / "run" / "started").exists()
    index = (reports / "sleepy" / "index.html").read_text()
    assert '<span class="running">' not in index and index.count('<span class="done">') == 2
