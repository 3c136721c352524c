"""Every task family through the whole chain on the fast model: refs -> rollouts -> rubric -> verdicts -> reward -> a
training step -> evaluation.

SmolLM2-135M serves every judge role (the session llama-server) and is the student trained in-process; the task is the
first of each shipped data/*_test.jsonl, read through the config (`sources.tasks_from_config`). Sizes are tiny (one
task, 2 teacher refs, 2 rollouts of 16 tokens, one GRPO step), so a 135M judge fails to write a rubric or verdicts
now and then: what is asserted is what the machinery guarantees whatever the judge writes — every stage's records in
the run directory, a judged group scored within [0, 1] or a failed one counted with its reason, one optimizer step
with a checkpoint, and evaluation records for the task. Which prompt each family gets is tests/test_prompts.py's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ropd_kit import rundir
from ropd_kit.config import FAST_MODEL, RunConfig
from ropd_kit.pipeline import run_stages
from ropd_kit.sources import tasks_from_config

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(2400)]

DATA = Path(__file__).resolve().parents[2] / "data"
SETS = {"arithmetic": "arith_test.jsonl", "math": "math_test.jsonl", "multiple_choice": "mc_test.jsonl",
        "open_ended": "open_test.jsonl"}


@pytest.fixture
def family_config(fast_config: RunConfig) -> RunConfig:
    slow_ok = {"timeout_s": 300, "max_retries": 1}
    return fast_config.model_copy(update={
        **{role: fast_config.endpoint(role).model_copy(update=slow_ok)
           for role in ("teacher", "rubricator", "verifier", "student")},
        "student_model": FAST_MODEL,
        "use_unsloth": "never",
        "n_tasks": 1,
        "n_eval_tasks": 1,
        "max_steps": 1,
        "prompts_per_step": 1,
        "n_rollouts": 2,
        "rollout_max_tokens": 16,
        "n_teacher_refs": 2,
        "teacher_max_tokens": 48,
        "rubricator_max_tokens": 192,
        "verifier_max_tokens": 160,
        "rubric_student_samples": 2,
        "min_criteria": 1,
        "max_criteria": 3,
        "rubric_attempts": 1,
        "verify_attempts": 1,
        "save_steps": 1,
        "max_judge_failure_rate": 1.0,
    })


def check_judged(rubric: dict, verdicts: list[dict]) -> None:
    """A judged group is scored within [0, 1]; one that could not be judged says why (never a silent 0)."""
    if not rubric["criteria"]:
        assert rubric["error"], rubric
        return
    for verdict in verdicts:
        assert verdict["score"] is None or 0.0 <= verdict["score"] <= 1.0
        assert verdict["judgements"] is None or len(verdict["judgements"]) == len(rubric["criteria"])


@pytest.mark.parametrize("family", list(SETS))
def test_each_family_runs_the_whole_chain(family: str, family_config: RunConfig):
    from ropd_kit.train.evaluate import EVAL_COLUMNS, evaluate
    from ropd_kit.train.methods import train

    path = str(DATA / SETS[family])
    config = family_config.model_copy(update={"tasks_path": path, "eval_tasks_path": path})
    (task,) = tasks_from_config(config)
    assert task.family == family

    # Stages 1-5: teacher refs, the group of rollouts, one rubric, blind verdicts and scores (the ROPD reward).
    summary = run_stages(config, progress=False)
    run = config.path
    refs = rundir.read_jsonl(run / rundir.TEACHER_REFS)
    rollouts = rundir.read_jsonl(run / rundir.ROLLOUTS)
    assert [(r["task_id"], r["ref_idx"]) for r in refs] == [(task.id, 0), (task.id, 1)]
    assert [(r["task_id"], r["rollout_idx"]) for r in rollouts] == [(task.id, 0), (task.id, 1)]
    assert all(r["text"] or r["error"] for r in refs + rollouts)
    (rubric,) = rundir.read_jsonl(run / rundir.RUBRICS)
    verdicts = rundir.read_jsonl(run / rundir.VERDICTS)
    check_judged(rubric, verdicts)
    assert summary["groups"] == 1 and summary["groups_failed"] == (1 if summary["failures"] else 0)
    if not summary["failures"]:
        assert sorted(v["source"] for v in verdicts) == ["student"] * 2 + ["teacher"] * 2

    # Stage 6: one GRPO step on the rubric reward (the judges score the policy's own rollouts), then a checkpoint.
    result = train(config)
    assert result.steps == 1 and (result.checkpoint / "adapter_model.safetensors").is_file()
    (record,) = rundir.read_jsonl(run / rundir.TRAIN_LOG)
    assert record["method"] == "ropd" and record["judge_groups"] == 1 and record["loss"] is not None
    assert record["reward_mean"] is None or 0.0 <= record["reward_mean"] <= 1.0
    step_rubrics = [r for r in rundir.read_jsonl(run / rundir.RUBRICS) if r["step"] == 1]
    assert [r["task_id"] for r in step_rubrics] == [task.id]
    check_judged(step_rubrics[0], [v for v in rundir.read_jsonl(run / rundir.VERDICTS) if v["step"] == 1])

    # Evaluation of the checkpoint on the family's first test task (open-ended: graded against its reference rubric
    # by the Verifier, a failed grade counted with its reason).
    (eval_task,) = tasks_from_config(config, "eval")
    frame = evaluate(result.checkpoint, [eval_task], k=1, config=config, step=1, run_dir=run, max_new_tokens=16)
    assert set(EVAL_COLUMNS) <= set(frame.columns)
    (row,) = frame.to_dict("records")
    assert row["task_id"] == eval_task.id and row["step"] == 1
    if family == "open_ended":
        assert row["correct"] is None
        assert (row["score"] is not None and 0.0 <= row["score"] <= 1.0) or row["grade_error"], row
    else:
        assert isinstance(row["correct"], bool) and row["score"] == float(row["correct"])
    assert len(rundir.read_jsonl(run / rundir.EVAL)) == 1
    print(f"{family}: stages {summary['timings']}, train {result.wall_s} s, rubric {rubric['criteria'] != []}, "
          f"eval score {row['score']}")
