"""`make bench`'s demo_time: a finished demo batch timed against the 15-minute budget (no model, no server)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ropd_kit import rundir
from ropd_kit.bench import suite
from ropd_kit.batch.status import NotebookStatus, RunStatus
from ropd_kit.bench.demo_time import TARGETS_S, demo_time, pick_target, venv_seconds


def fake_run(batch: Path, name: str, start: str, end: str, notebooks: dict[str, float], *, status: str = "done",
             steps: list[dict] | None = None) -> None:
    folder = batch / name
    (folder / rundir.RUN_SUBDIR).mkdir(parents=True)
    record = RunStatus(
        run=name, status=status, params={}, fingerprint="f", run_dir=str(folder / rundir.RUN_SUBDIR), started=start,
        finished=end, wall_s=sum(notebooks.values()),
        notebooks=[NotebookStatus(notebook=nb, output=f"{nb}.ipynb", status="done", wall_s=s)
                   for nb, s in notebooks.items()],
    )
    (folder / rundir.STATUS).write_text(record.model_dump_json())
    if steps is not None:
        (folder / rundir.RUN_SUBDIR / rundir.TRAIN_LOG).write_text("".join(json.dumps(r) + "\n" for r in steps))


def two_runs(batch: Path, *, cache_hits: int = 0, second_status: str = "done", dtype: str = "bfloat16") -> None:
    step = {"step": 1, "dtype": dtype, "judge_calls": 4, "judge_cache_hits": cache_hits}
    fake_run(batch, "method-ropd", "2026-11-30T10:00:00+00:00", "2026-11-30T10:10:00+00:00",
             {"01_teacher_references": 100.0, "04_grpo_training": 498.0},
             steps=[step, {**step, "step": 2}, {**step, "step": 2, "judge_calls": 5}])  # step 2 resumed: last counts
    fake_run(batch, "method-lopd", "2026-11-30T10:10:02+00:00", "2026-11-30T10:14:02+00:00",
             {"04_grpo_training": 240.0}, status=second_status, steps=[{"step": 1, "dtype": dtype}])


def test_the_span_of_the_runs_is_held_against_the_target_of_its_dtype_and_the_set_up_is_apart(tmp_path):
    two_runs(tmp_path / "bf16")
    result = demo_time(tmp_path / "bf16", build_s=300.0, venv_s=120.0, models_s=40.0)
    assert result["demo_s"] == 842.0  # 10:00:00 to 10:14:02, the gap between runs included
    assert result["runs_sum_s"] == 838.0
    assert result["inputs"]["target_s"] == TARGETS_S["bfloat16"] == 900 and "bfloat16" in result["inputs"]["target_why"]
    assert result["target_met"] is True and result["training_judging_cold"] is True and result["all_done"] is True
    # The set-up is its own line: not added to the demo's time, not held against its target.
    assert result["setup"] == {"venv_s": 120.0, "llama_server_build_s": 300.0, "models_s": 40.0, "total_s": 460.0}
    ropd = result["runs"]["method-ropd"]
    assert ropd["notebooks"] == {"01_teacher_references": 100.0, "04_grpo_training": 498.0}
    assert ropd["train_judge_calls"] == 9 and ropd["dtype"] == "bfloat16"

    assert demo_time(tmp_path / "bf16", build_s=None, target_s=800.0)["target_met"] is False
    assert demo_time(tmp_path / "bf16", build_s=None, venv_s=1.0, models_s=1.0)["setup"]["total_s"] is None

    # The same span on a CPU without native bf16 (the student trained in fp32) is held against 20 minutes.
    two_runs(tmp_path / "fp32", dtype="float32")
    fp32 = demo_time(tmp_path / "fp32", build_s=300.0)
    assert fp32["inputs"]["target_s"] == TARGETS_S["float32"] == 1200 and fp32["target_met"] is True


def test_the_target_follows_the_trained_dtype_else_this_cpu():
    assert pick_target(["float32", "float32"])[0] == 1200
    assert pick_target(["bfloat16", None])[0] == 900
    assert pick_target(["bfloat16", "float32"])[0] == 1200  # a mixed demo is held to the slower CPU's target
    assert pick_target([None], native_bf16=True) == (900, "no dtype recorded; this CPU has native bf16")
    assert pick_target([], native_bf16=False)[0] == 1200


def test_the_venv_time_is_read_from_the_makefiles_stamp(tmp_path):
    (tmp_path / ".installed").write_text("118\n")
    assert venv_seconds(tmp_path) == 118.0
    (tmp_path / ".installed").write_text("")  # a stamp from before stamps held the time
    assert venv_seconds(tmp_path) is None
    assert venv_seconds(tmp_path / "no-venv") is None


def test_a_warm_or_failed_demo_is_not_taken_for_a_first_run(tmp_path):
    two_runs(tmp_path / "warm", cache_hits=4)
    assert demo_time(tmp_path / "warm", build_s=0.0)["training_judging_cold"] is False
    two_runs(tmp_path / "failed", second_status="failed")
    failed = demo_time(tmp_path / "failed", build_s=0.0)
    assert failed["all_done"] is False and failed["target_met"] is None


def test_missing_or_broken_batch_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="make demo"):
        demo_time(tmp_path, build_s=1.0)
    (tmp_path / "run-a").mkdir()
    (tmp_path / "run-a" / rundir.STATUS).write_text("{not json")
    with pytest.raises(ValueError, match=r"run-a/status.json"):
        demo_time(tmp_path, build_s=1.0)


def test_the_bench_writes_demo_time_and_its_headline_or_skips_without_a_demo(tmp_path, monkeypatch):
    batch, out = tmp_path / "demo", tmp_path / "bench"
    two_runs(batch)
    facts = {"cpus": 2, "llama_server": {"build_s": 293.0}}
    monkeypatch.setenv("ROPD_CACHE", str(tmp_path / "cache"))  # no model installed: their time is not known
    args = suite.parse_args(["--only", "demo_time", "--demo-from", str(batch)])
    written = suite.run_demo_time(out, facts, args)
    data = json.loads(written["demo_time"].read_text())
    assert data["demo_s"] == 842.0 and data["setup"]["llama_server_build_s"] == 293.0 and data["machine"] == facts
    rows = dict(suite.headline(out))
    assert rows["make demo: s from the first run's start to the last one's end (target 900)"] == 842.0
    assert rows["make demo: target met (a cold run, every run done)"] is True
    assert data["setup"]["models_s"] is None and data["setup"]["total_s"] is None
    setup = rows["set-up before it: s (venv + llama-server build + models)"]
    assert setup.split(" + ")[1:] == ["293", "—"]  # the parts that are known, and which are not
    assert "set-up before it" in suite.write_index(out).read_text()

    empty = suite.parse_args(["--only", "demo_time", "--demo-from", str(tmp_path / "nothing")])
    assert suite.run_demo_time(tmp_path / "bench2", facts, empty) == {}
    assert not (tmp_path / "bench2" / "demo_time.json").exists()
