"""Benchmarks of a training step: where a step's wall time goes, and what each scored rollout costs the teacher side.

In: a few real training steps per method (`train.train` on the offline default at demo sizes, fresh cache and
reference index so that every teacher-side call is real), their `train_log.jsonl`.
Out (`bench.py` writes them):

- `step_breakdown`: per method, the fractions of step time spent in generation (TRL's `_generate`), teacher refs,
  rubric induction, verification, the optimizer's update (`optimizer.step()`), and the rest (log-probs, loss,
  backward, gradient clipping; for lopd also the teacher's forward pass). Groups are judged concurrently, so rubric
  and verification share the judging wall time in proportion to their summed per-group times.
- `cost_per_reward`: teacher-side tokens per scored rollout: ropd (teacher refs + Rubricator + Verifier), judge
  (Verifier), lopd (the white-box teacher's forward pass over prompt + rollout), rlvr (none).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from .. import rundir
from .judge import REPO, median, ratio

PHASES = ("generation", "teacher_refs", "rubric", "verification", "optimizer", "other")
TEACHER_ROLES = ("teacher", "rubricator", "verifier")


def step_params(method: str, run_dir: Path, scratch: Path, **overrides: Any) -> dict[str, Any]:
    """The demo's sizes and tasks (experiments/demo.yaml), no evaluation, a cache of its own."""
    return {
        "run_dir": str(run_dir),
        "tasks_path": str(REPO / "data" / "arith_easy_train.jsonl"),
        "method": method,
        "seed": 0,
        "n_tasks": 8,
        "n_teacher_refs": 2,
        "n_rollouts": 4,
        "teacher_max_tokens": 256,
        "rollout_max_tokens": 160,
        "max_criteria": 6,
        "prompts_per_step": 2,
        "max_steps": 2,
        "save_steps": 1000,
        "eval_steps": None,
        "max_judge_failure_rate": 1.0,
        "cache_dir": str(scratch / "llm"),
        "ref_index_dir": str(scratch / "refs"),
        **overrides,
    }


def breakdown(record: dict[str, Any]) -> dict[str, float] | None:
    """Seconds per phase of one train_log record (None without a step time)."""
    step = record.get("step_s")
    if not step:
        return None
    generate = record.get("generate_s") or 0.0
    judge = record.get("judge_s") or 0.0
    refs = record.get("refs_s") or 0.0
    judging = max(judge - refs, 0.0)
    rubric, verify = record.get("rubric_s") or 0.0, record.get("verify_s") or 0.0
    # Logs written before the optimizer was timed have no optimizer_s: their update stays in "other".
    optimizer = record.get("optimizer_s") or 0.0
    share = rubric / (rubric + verify) if rubric + verify > 0 else 0.0
    return {
        "generation": generate,
        "teacher_refs": refs,
        "rubric": judging * share,
        "verification": judging * (1 - share),
        "optimizer": optimizer,
        "other": max(step - generate - judge - optimizer, 0.0),
        "step": step,
    }


def fractions(seconds: dict[str, float]) -> dict[str, float]:
    total = seconds["step"]
    return {phase: seconds[phase] / total for phase in PHASES}


def teacher_tokens(record: dict[str, Any]) -> int:
    usage = record.get("judge_usage") or {}
    return sum(int(usage.get(role, {}).get("prompt_tokens", 0)) + int(usage.get(role, {}).get("completion_tokens", 0))
               for role in TEACHER_ROLES)


def prompt_tokens(config: Any, tasks: list) -> float:
    """Mean token count of the student's chat prompt (what lopd's teacher reads before each rollout)."""
    from transformers import AutoTokenizer

    from ..rollouts import student_messages
    from ..train.student import model_folder

    tokenizer = AutoTokenizer.from_pretrained(model_folder(config.lopd_teacher_model))
    counts = [len(tokenizer.apply_chat_template(student_messages(t, config), add_generation_prompt=True,
                                                tokenize=True))
              for t in tasks]
    return statistics.fmean(counts)


def read_run(run_dir: Path, progress: Any = print) -> dict[str, Any]:
    """The step breakdown of a finished run directory (any method), from its config.json and train_log.jsonl."""
    from ..config import RunConfig

    config = RunConfig.model_validate_json((run_dir / "config.json").read_text())
    method = config.method
    log = rundir.read_jsonl(run_dir / rundir.TRAIN_LOG)
    rollouts = config.prompts_per_step * config.n_rollouts
    steps = []
    for record in log:
        seconds = breakdown(record)
        steps.append({
            "step": record["step"],
            "seconds": seconds,
            "fractions": fractions(seconds) if seconds else None,
            "reward_mean": record.get("reward_mean"),
            "completion_length": record.get("completion_length"),
            "teacher_tokens": teacher_tokens(record),
            "rollouts": rollouts,
            "judge_failures": record.get("judge_failures"),
        })
        if seconds:
            progress(f"step breakdown {method} step {record['step']}: {seconds['step']:.1f} s, generation "
                     f"{seconds['generation']:.1f} s, judging {record.get('judge_s') or 0:.1f} s")
    out: dict[str, Any] = {"method": method, "run_dir": str(run_dir), "steps": steps,
                           "model": config.student_model, "judge_model": config.verifier.model}
    if method == "lopd":
        from ..data import load_tasks
        from ..sources import tasks_from_config

        out["prompt_tokens_mean"] = prompt_tokens(config, load_tasks(run_dir / rundir.TASKS)
                                                  if (run_dir / rundir.TASKS).exists()
                                                  else tasks_from_config(config))
    return out


def run_method(method: str, work: Path, progress: Any = print, **overrides: Any) -> dict[str, Any]:
    from ..config import RunConfig
    from ..train.methods import train

    run_dir = work / f"step-{method}"
    scratch = work / f"scratch-{method}"
    for folder in (run_dir, scratch):
        if folder.exists():
            import shutil

            shutil.rmtree(folder)
    config = RunConfig.from_params(**step_params(method, run_dir, scratch, **overrides))
    started = time.perf_counter()
    train(config)
    wall = time.perf_counter() - started
    return {**read_run(run_dir, progress), "wall_s": round(wall, 1)}


def _median_phase(steps: list[dict], key: str) -> dict[str, float | None]:
    timed = [s[key] for s in steps if s[key]]
    return {phase: median([t[phase] for t in timed]) for phase in (*PHASES, "step") if timed and phase in timed[0]}


def summarise_steps(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per method: median seconds and fractions per phase; the reward-vs-generation check; cost per reward."""
    per_method: dict[str, Any] = {}
    cost: dict[str, Any] = {}
    for run in runs:
        method, steps = run["method"], run["steps"]
        seconds = _median_phase(steps, "seconds")
        reward_s = sum(seconds.get(p) or 0.0 for p in ("teacher_refs", "rubric", "verification"))
        per_method[method] = {
            "seconds_median": seconds,
            "fractions_median": _median_phase(steps, "fractions"),
            "reward_s_median": reward_s,
            # lopd has no reward at all (its signal is the loss itself)
            "reward_over_generation": None if method == "lopd" else ratio(reward_s, seconds.get("generation")),
            "steps": steps,
        }
        if method == "lopd":
            lengths = [s["completion_length"] for s in steps if s["completion_length"] is not None]
            per_rollout = run["prompt_tokens_mean"] + (statistics.fmean(lengths) if lengths else 0.0)
            cost[method] = {"teacher_tokens_per_rollout": per_rollout,
                            "what": "white-box teacher forward pass over prompt + rollout (no API call)"
                            if lengths else "white-box teacher forward pass: prompt tokens only, a lower bound "
                                            "(this trainer logs no completion length)"}
        elif method == "rlvr":
            cost[method] = {"teacher_tokens_per_rollout": 0.0, "what": "ground truth only"}
        else:
            per = [s["teacher_tokens"] / s["rollouts"] for s in steps if s["rollouts"]]
            cost[method] = {
                "teacher_tokens_per_rollout": median(per),
                "by_step": per,
                "what": "teacher refs + Rubricator + Verifier tokens (API)" if method == "ropd"
                else "Verifier (judge) tokens (API)",
            }
    ropd = per_method.get("ropd", {})
    return {
        "per_method": per_method,
        "cost_per_reward": cost,
        "target": {
            "ropd_reward_time_below_generation": (ropd.get("reward_over_generation") or float("inf")) < 1.0,
            "ropd_reward_over_generation": ropd.get("reward_over_generation"),
        },
        "reading": step_reading(ropd),
    }


def step_reading(ropd: dict[str, Any]) -> str:
    """Whether ropd's reward fits within its generation time, and if not, what stands in the way."""
    over = ropd.get("reward_over_generation")
    if over is None:
        return "No ropd step with both reward and generation time."
    seconds = ropd["seconds_median"]
    reward, generation = ropd["reward_s_median"], seconds.get("generation") or 0.0
    head = f"ropd's reward took {reward:.1f} s against {generation:.1f} s of generation ({over:.2f}x)"
    if over < 1.0:
        return f"{head}: judging costs less than generating."
    judging = (seconds.get("rubric") or 0.0) + (seconds.get("verification") or 0.0)
    return (f"{head}: judging outlasts generation (below 1 is not met). In the way: "
            f"TRL's GRPOTrainer scores a batch after "
            f"generating it and before the optimizer step, so the judging ({judging:.1f} s) cannot overlap the "
            f"generation of its own rollouts; only the teacher refs ({seconds.get('teacher_refs') or 0.0:.1f} s), "
            f"which need no rollout, could be fetched during generation, and that is not done. On a CPU machine the "
            f"judge server and the student share the cores, so overlap would not shorten the step either; "
            f"the groups of a step are judged concurrently.")
