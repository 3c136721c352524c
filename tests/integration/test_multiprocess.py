"""Two training processes on the CPU (accelerate, gloo) against one: one copy of each record, whole groups, summed
judge stats, and the same rewards.

One ropd step of 2 tasks x 2 rollouts, SmolLM2-135M as the student and as the teacher (on the session
llama-server). The Rubricator and the Verifier are the stub judge (`bench.stubjudge`, an OpenAI-compatible server on
127.0.0.1 whose verdicts are bits of a hash of the request): SmolLM2 at these sizes writes no rubric the kit accepts
(tried here: both groups failed on placeholder and ungrounded criteria), and a run in which no group is judged would
leave "whole groups" and "same rewards" with nothing to compare. The two-process run goes first, with empty caches:
each process collects the teacher refs of its own task and judges its own group. The one-process run then trains
the same config (same seed, so TRL's sampler deals the same two groups into the step) in another run directory,
sharing the LLM cache and the reference index.

Why the reward comparison means something: rollouts are decoded greedily (`generation_kwargs={"do_sample": False}`)
in fp32, so both runs write the same rollouts whatever their processes' random streams are (each process decodes
its group in a batch of its own, one process both groups in one batch: only a near-tie of two tokens' fp32 logits
could tell the batch shapes apart, and the rollouts are compared first, so that would show as such); the judge's
replies are a function of the exact request, and cached by it. A group judged the same way in both runs (the same
rollouts and teacher refs, the whole group in one rubric call and one verifier call) therefore gets the very same
rubric, verdicts and rewards in the one-process run, served from the two-process run's cache without a request; a
group split between processes, or judged with another group's rollouts, would ask other questions and get other
verdicts.

`accelerate launch --cpu --num_processes 2` itself starts a single process (accelerate's --cpu launcher needs mpirun
for more); that command is refused with the way to do it, and the run goes through `accelerate launch --multi_gpu`
(torchrun underneath) with the GPUs hidden, which on a CPU gives two processes over gloo.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from ropd_kit import rundir
from ropd_kit.bench.stubjudge import StubJudge
from ropd_kit.config import RunConfig
from ropd_kit.train.methods import train

from test_train import TASKS, tiny  # noqa: F401  - the tiny run config (session llama-server, SmolLM2 student)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(2400)]

N_ROLLOUTS = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _accelerate(*flags: str, config_file: Path, timeout: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", *flags, "--num_processes", "2",
           "--main_process_port", str(_free_port()), "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "-m", "ropd_kit.train", str(config_file)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def stub_judge():
    with StubJudge() as judge:
        yield judge


@pytest.fixture
def step_config(tiny: RunConfig, stub_judge: StubJudge) -> RunConfig:  # noqa: F811
    stub = {"base_url": stub_judge.base_url, "model": stub_judge.model}
    return tiny.model_copy(update={
        "rubricator": tiny.rubricator.model_copy(update=stub),
        "verifier": tiny.verifier.model_copy(update=stub),
        "teacher_temperature": 0.0,
        "max_steps": 1,
        "prompts_per_step": 2,
        "n_rollouts": N_ROLLOUTS,
        "rubric_student_samples": N_ROLLOUTS,
        "rollout_max_tokens": 16,
        "student_dtype": "float32",
        "trainer_overrides": {"generation_kwargs": {"do_sample": False}},
        "eval_steps": 1,
        "n_eval_tasks": 2,
        "eval_k": 1,
        "seed": 7,
    })


def _groups(records: list[dict]) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        out[(r["task_id"], r["step"])].append(r)
    return out


def test_two_processes_judge_whole_groups_once_and_reward_like_one(step_config: RunConfig, stub_judge: StubJudge,
                                                                  tmp_path: Path):
    two = RunConfig(**{**step_config.model_dump(), "run_dir": str(tmp_path / "two")})
    # Evaluation is checked in the two-process run (main process only); the reference run skips it.
    one = RunConfig(**{**step_config.model_dump(), "run_dir": str(tmp_path / "one"), "eval_steps": None})
    config_file = two.save(tmp_path / "two.json")

    # accelerate's own --cpu flag would quietly train one process: refused before any model or server starts.
    refused = _accelerate("--cpu", config_file=config_file, timeout=300)
    assert refused.returncode != 0
    assert "started a single process" in refused.stderr and "--multi_gpu" in refused.stderr
    assert not (two.path / rundir.TRAIN_LOG).exists()

    launched = _accelerate("--multi_gpu", config_file=config_file, timeout=1800)
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-6000:]
    run = two.path

    # One copy of each record: one train-log record for the step, logged for both processes.
    (log,) = rundir.read_jsonl(run / rundir.TRAIN_LOG)
    assert log["step"] == 1 and log["processes"] == 2
    assert log["samples_seen"] == 2 * N_ROLLOUTS  # prompts_per_step is per step, shared by the processes
    rollouts = rundir.read_jsonl(run / rundir.ROLLOUTS)
    keys = [(r["task_id"], r["step"], r["rollout_idx"]) for r in rollouts]
    assert sorted(keys) == sorted({(t["id"], 1, i) for t in TASKS for i in range(N_ROLLOUTS)})
    rubrics = rundir.read_jsonl(run / rundir.RUBRICS)
    assert sorted((r["task_id"], r["step"]) for r in rubrics) == sorted((t["id"], 1) for t in TASKS)
    verdicts = rundir.read_jsonl(run / rundir.VERDICTS)
    assert not [k for k, n in Counter((v["task_id"], v["step"], v["answer_key"]) for v in verdicts).items() if n > 1]
    raw = rundir.read_jsonl(run / rundir.JUDGE_RAW)
    assert not [k for k, n in Counter((r["task_id"], r["step"], r["role"], r["attempt"]) for r in raw).items()
                if n > 1]
    evals = rundir.read_jsonl(run / rundir.EVAL)
    assert sorted((e["step"], e["task_id"]) for e in evals) == sorted((s, t["id"]) for s in (0, 1) for t in TASKS)
    assert (run / "checkpoints" / "checkpoint-1" / "adapter_model.safetensors").is_file()

    # No group split: each group's rubric and verdicts were asked for once, in one call each, over both processes;
    # each rubric was induced from the whole group, and every judged group's answers (teacher refs and rollouts) were
    # shown to the Verifier together, at distinct positions of one call.
    assert stub_judge.counts() == {"rubric": len(TASKS), "verdicts": len(TASKS)}
    failed = set()
    by_group = _groups(verdicts)
    for rubric in rubrics:
        group = (rubric["task_id"], rubric["step"])
        assert rubric["n_student"] == N_ROLLOUTS and rubric["n_teacher"] == two.n_teacher_refs
        student = [v for v in by_group[group] if v["source"] == "student"]
        if not rubric["criteria"] or len(student) < N_ROLLOUTS or any(v["score"] is None for v in student):
            failed.add(group)
            continue
        positions = sorted(v["position"] for v in by_group[group])
        assert positions == list(range(1, two.n_teacher_refs + N_ROLLOUTS + 1)), (group, positions)

    assert not failed  # the stub judges every group: what follows compares real rewards
    # The rewards TRL gathered from both processes and trained on are the scores the main process wrote.
    student_scores = [v["score"] for v in verdicts if v["source"] == "student"]
    assert log["reward_mean"] == pytest.approx(sum(student_scores) / len(student_scores), rel=1e-5)

    # Judge stats summed over the processes equal what the run files show.
    usage = log["judge_usage"]
    assert log["judge_groups"] == len(rubrics) == 2
    assert log["judge_failures"] == len(failed)
    assert log["judge_failed_rollouts"] == N_ROLLOUTS * len(failed)
    assert usage["teacher"]["calls"] == len(TASKS) * two.n_teacher_refs  # each process asked for its own task's refs
    for role in ("rubricator", "verifier"):
        answered = usage[role]["calls"] - usage[role]["failures"]
        assert answered == sum(r["role"] == role for r in raw), (role, usage[role])
    assert log["judge_calls"] == sum(u["calls"] for u in usage.values())
    assert log["judge_tokens"] == sum(u["prompt_tokens"] + u["completion_tokens"] for u in usage.values())

    # The same config in one process: the same groups and rollouts, the same rubrics and rewards.
    result = train(one)
    assert result.steps == 1
    (one_log,) = rundir.read_jsonl(one.path / rundir.TRAIN_LOG)
    assert one_log["processes"] == 1

    def texts(path: Path) -> dict:
        return {(r["task_id"], r["rollout_idx"]): r["text"] for r in rundir.read_jsonl(path / rundir.ROLLOUTS)}

    assert texts(one.path) == texts(run)
    assert {r["task_id"]: r["criteria"] for r in rundir.read_jsonl(one.path / rundir.RUBRICS)} == \
        {r["task_id"]: r["criteria"] for r in rubrics}

    def scores(path: Path) -> dict:
        return {(v["task_id"], v["answer_key"]): v["score"] for v in rundir.read_jsonl(path / rundir.VERDICTS)}

    assert scores(one.path) == scores(run)
    for name in ("reward_mean", "reward_std", "judge_groups", "judge_failures", "judge_failed_rollouts",
                 "rubric_size", "teacher_score_mean"):
        expected = log[name]
        assert one_log[name] == (expected if expected is None else pytest.approx(expected)), name
    # Every judge question of the one-process run had been asked, identically, by one of the two processes.
    assert one_log["judge_usage"]["teacher"]["calls"] == 0  # the refs come from the reference index
    assert one_log["judge_http_requests"] == 0 and one_log["judge_cache_hits"] == one_log["judge_calls"] > 0
    assert stub_judge.counts() == {"rubric": len(TASKS), "verdicts": len(TASKS)}
