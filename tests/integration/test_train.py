"""Real training runs on CPU: SmolLM2-135M as the student, the session llama-server (SmolLM2) as every judge role.

Tiny sizes (2 prompts x 2 generations, 16 tokens, 2 steps) so that every method really trains, checkpoints and
logs, in a few minutes on 2 cores. A 135M judge writes weak rubrics and times out or fails to parse now and then:
the assertions hold either way (a failed group is a counted None, never a crash), and they check what the
machinery must guarantee — shapes, step numbers, the shared train-log fields, checkpoints, resume, replay from the
reference index, the failure gate.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ropd_kit import rundir
from ropd_kit.config import FAST_MODEL, RunConfig
from ropd_kit.train.progress import TRAIN_LOG_FIELDS, JudgeFailureError
from ropd_kit.train.student import TrainError, choose_dtype
from ropd_kit.train.methods import last_checkpoint, train

# A training run: a minute or two on a quiet 2-core machine, far more when the CPU is shared; the session-wide
# 900 s timeout is too tight for the latter.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(2400)]

TASKS = [
    {"id": "cookies", "prompt": "Maya bakes 24 cookies and then 12 more. How many cookies does she have?",
     "answer": "36", "domain": "arith"},
    {"id": "stamps", "prompt": "Liam has 15 stamps. He buys 3 packs of 5 stamps. How many stamps does he have now?",
     "answer": "30", "domain": "arith"},
]


@pytest.fixture
def tiny(fast_config: RunConfig, tmp_path: Path) -> RunConfig:
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("".join(json.dumps(t) + "\n" for t in TASKS))
    slow_ok = {"timeout_s": 300, "max_retries": 1}
    return fast_config.model_copy(update={
        **{role: fast_config.endpoint(role).model_copy(update=slow_ok)
           for role in ("teacher", "rubricator", "verifier", "student")},
        "tasks_path": str(tasks),
        "eval_tasks_path": str(tasks),
        "student_model": FAST_MODEL,
        "lopd_teacher_model": FAST_MODEL,
        "use_unsloth": "never",
        "max_steps": 2,
        "prompts_per_step": 2,
        "n_rollouts": 2,
        "rollout_max_tokens": 16,
        "n_teacher_refs": 2,
        "teacher_max_tokens": 48,
        "rubricator_max_tokens": 192,
        "verifier_max_tokens": 160,
        "rubric_student_samples": 2,
        "min_criteria": 1,
        "max_criteria": 3,
        "rubric_attempts": 2,
        "verify_attempts": 1,
        "save_steps": 1,
        "max_judge_failure_rate": 1.0,
    })


def check_train_log(run_dir: Path, method: str, steps: list[int], samples_per_step: int) -> list[dict]:
    log = rundir.read_jsonl(run_dir / rundir.TRAIN_LOG)
    assert [r["step"] for r in log] == steps
    for record in log:
        assert set(TRAIN_LOG_FIELDS) <= set(record), f"{method}: missing {set(TRAIN_LOG_FIELDS) - set(record)}"
        assert record["method"] == method and record["backend"] == "transformers"
        assert record["dtype"] == choose_dtype("auto")[0]  # the tiny runs leave student_dtype at "auto"
        assert record["samples_seen"] == record["step"] * samples_per_step
        assert record["loss"] is not None
        # One generation per optimizer step (no gradient accumulation), so every step has generation time in it.
        assert record["step_s"] > 0
        if method != "sft":
            assert 0 < record["generate_s"] < record["step_s"], record
        assert 0 < record["optimizer_s"] < record["step_s"] - record["generate_s"], record
        if method == "ropd":
            assert record["judge_s"] > 0 and record["rubric_s"] > 0 and record["verify_s"] >= 0
    walls = [r["wall_s"] for r in log]
    assert walls == sorted(walls) and walls[0] > 0
    return log


def test_ropd_two_steps_then_a_replayed_step_asks_the_teacher_nothing(tiny: RunConfig, tmp_path: Path):
    result = train(tiny)
    run = tiny.path
    assert result.steps == 2 and result.checkpoint == run / "checkpoints" / "checkpoint-2"
    assert (result.checkpoint / "adapter_model.safetensors").is_file()
    log = check_train_log(run, "ropd", [1, 2], 2 * 2)
    assert all(r["judge_groups"] == 2 and r["judge_usage"]["rubricator"]["calls"] >= 2 for r in log)
    assert log[0]["judge_usage"]["teacher"]["calls"] == 2 * tiny.n_teacher_refs  # refs collected at step 1 ...
    assert log[1]["judge_usage"]["teacher"]["calls"] == 0  # ... and reused at step 2 (same two tasks)
    assert sum(r["judge_failures"] for r in log) == result.judge_failures

    # Every step's rollouts, one rubric record per group, verdicts that score within [0, 1].
    rollouts = rundir.read_jsonl(run / rundir.ROLLOUTS)
    assert sorted({(r["step"], r["task_id"]) for r in rollouts}) == [(s, t["id"]) for s in (1, 2)
                                                                    for t in sorted(TASKS, key=lambda t: t["id"])]
    assert len(rollouts) == 2 * 2 * 2
    rubrics = rundir.read_jsonl(run / rundir.RUBRICS)
    assert len(rubrics) == 4
    failed_rubrics = [r for r in rubrics if not r["criteria"]]
    assert all(r["error"] for r in failed_rubrics)
    for verdict in rundir.read_jsonl(run / rundir.VERDICTS):
        assert verdict["score"] is None or 0.0 <= verdict["score"] <= 1.0
    judged = [r for r in log if r["judge_failures"] < r["judge_groups"]]
    for record in judged:
        assert record["reward_mean"] is not None and 0.0 <= record["reward_mean"] <= 1.0

    # Same config in a fresh run directory: the reference index is warm, so no teacher request is made.
    replay = tiny.model_copy(update={"run_dir": str(tmp_path / "replay"), "max_steps": 1})
    train(replay)
    (record,) = rundir.read_jsonl(replay.path / rundir.TRAIN_LOG)
    assert record["judge_usage"]["teacher"]["calls"] == record["judge_usage"]["teacher"]["http_requests"] == 0
    assert record["judge_usage"]["rubricator"]["calls"] >= 2  # the judging itself did happen


def test_rlvr_resumes_a_killed_run_from_its_last_checkpoint(tiny: RunConfig):
    config = tiny.model_copy(update={"method": "rlvr"})
    full = train(config)
    assert full.steps == 2 and full.checkpoint.name == "checkpoint-2"
    before = check_train_log(config.path, "rlvr", [1, 2], 2 * 2)
    assert all(r["judge_calls"] == 0 and 0.0 <= r["reward_mean"] <= 1.0 for r in before)
    with pytest.raises(TrainError, match="resume=True"):
        train(config)

    # A run killed after logging step 2 but before saving it: checkpoint-1 is the last one on disk.
    shutil.rmtree(full.checkpoint)
    resumed = train(config.model_copy(update={"resume": True}))
    assert resumed.steps == 2 and resumed.checkpoint.name == "checkpoint-2"
    after = check_train_log(config.path, "rlvr", [1, 2], 2 * 2)  # step 2 redone, not logged twice
    assert after[0] == before[0]
    # The schedule continues where it was: step 2 runs at step 2's learning rate, not a fresh schedule's first one.
    assert after[1]["learning_rate"] == pytest.approx(before[1]["learning_rate"])
    assert after[1]["wall_s"] >= after[0]["wall_s"]
    state = json.loads((resumed.checkpoint / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    assert [h["step"] for h in state["log_history"] if "loss" in h] == [1, 2]


def test_rlvr_refuses_tasks_without_answers(tiny: RunConfig, tmp_path: Path):
    no_answers = tmp_path / "open.jsonl"
    no_answers.write_text(json.dumps({"prompt": "Write a haiku about rain."}) + "\n")
    with pytest.raises(TrainError, match="ground-truth answer"):
        train(tiny.model_copy(update={"method": "rlvr", "tasks_path": str(no_answers)}))


def test_judge_baseline_two_steps(tiny: RunConfig):
    result = train(tiny.model_copy(update={"method": "judge"}))
    assert result.steps == 2
    log = check_train_log(tiny.path, "judge", [1, 2], 2 * 2)
    assert all(r["judge_usage"]["verifier"]["calls"] == 4 for r in log)  # one grade per rollout
    assert all(r["judge_usage"]["rubricator"]["calls"] == 0 for r in log)
    verdicts = rundir.read_jsonl(tiny.path / rundir.VERDICTS)
    assert len(verdicts) == 8
    assert all(v["score"] is None or 0.0 <= v["score"] <= 1.0 for v in verdicts)


def test_lopd_two_steps_with_a_white_box_teacher(tiny: RunConfig):
    # Student and teacher are the same SmolLM2 here: on the first step the reverse KL is exactly 0.
    result = train(tiny.model_copy(update={"method": "lopd"}))
    assert result.steps == 2
    log = check_train_log(tiny.path, "lopd", [1, 2], 2 * 2)
    assert log[0]["kl"] == pytest.approx(0.0, abs=1e-6)
    assert all(r["judge_calls"] == 0 for r in log)


def test_sft_two_steps_with_evaluation_then_evaluate_the_checkpoint(tiny: RunConfig):
    from ropd_kit.train.evaluate import evaluate, pass_at_1

    config = tiny.model_copy(update={"method": "sft", "eval_steps": 2, "n_eval_tasks": 2})
    result = train(config)
    assert result.steps == 2
    log = check_train_log(config.path, "sft", [1, 2], 2 * config.n_teacher_refs)
    assert log[0]["judge_calls"] == 0  # refs are collected before training, not per step
    refs = rundir.read_jsonl(config.path / rundir.TEACHER_REFS)
    assert len(refs) == 2 * config.n_teacher_refs

    evals = rundir.read_frame(config.path / rundir.EVAL)
    assert sorted(evals["step"].unique()) == [0, 2]  # before training and at eval_steps
    assert len(evals) == 2 * 2 and evals["correct"].isin([True, False]).all()

    frame = evaluate(result.checkpoint, config.eval_tasks_path, k=2, config=config, step=99,
                     run_dir=config.path, temperature=1.0, max_new_tokens=16)
    assert len(frame) == 4 and set(frame["sample_idx"]) == {0, 1}
    assert 0.0 <= pass_at_1(frame) <= 1.0
    assert frame["checkpoint"].iloc[0] == str(result.checkpoint)
    assert len(rundir.read_jsonl(config.path / rundir.EVAL)) == 4 + 4


def test_a_run_whose_judge_keeps_failing_stops_with_a_clear_error(tiny: RunConfig):
    from ropd_kit.bench.faultproxy import FaultProxy

    # The rubricator answers every chat request with HTTP 500 (its /models still works, so the run starts).
    with FaultProxy(tiny.rubricator.base_url, fault_rate=1.0, faults=["500"]) as proxy:
        failing = tiny.rubricator.model_copy(update={"base_url": proxy.base_url, "max_retries": 0})
        config = tiny.model_copy(update={"rubricator": failing, "max_judge_failure_rate": 0.5})
        with pytest.raises(JudgeFailureError, match="max_judge_failure_rate=0.5 at step 1"):
            train(config)
    (record,) = rundir.read_jsonl(config.path / rundir.TRAIN_LOG)
    assert (record["judge_groups"], record["judge_failures"]) == (2, 2)
    assert record["reward_mean"] is None  # every rollout was unscorable: no reward, zero advantage
    assert record["judge_usage"]["rubricator"]["failures"] == 2 * tiny.rubric_attempts
    assert last_checkpoint(config.path).name == "checkpoint-1"


def test_backend_choice_on_a_machine_without_cuda():
    import subprocess
    import sys

    import torch

    from ropd_kit.train.student import choose_backend

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert choose_backend(RunConfig(use_unsloth="auto")) == "transformers"
    assert choose_backend(RunConfig(use_unsloth="never")) == "transformers"
    with pytest.raises(TrainError, match="use_unsloth='always'"):
        choose_backend(RunConfig(use_unsloth="always"))
    # Importing the training module must not pull in unsloth (it patches trl/transformers on import) nor torch.
    probe = "import sys, ropd_kit.train, ropd_kit.reward, ropd_kit.train.evaluate; print(sorted({'unsloth', 'torch', 'trl'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
