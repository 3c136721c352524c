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
    from ropd_kit.train import CHECKPOINTS

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
