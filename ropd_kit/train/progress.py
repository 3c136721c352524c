"""What a training run writes while it runs: the train log (one record per optimizer step, the same fields for
every method), step timings, evaluation at `eval_steps`, and the judge failure gate.

In: the trainer's callback events and the reward's judge statistics. Out: `train_log.jsonl`, `eval.jsonl`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import rundir
from . import distributed as ddp
from .student import TrainError, _say

if TYPE_CHECKING:  # pragma: no cover

    from ..config import RunConfig


# Files whose records carry a `step`: on resume, records of steps after the checkpoint are dropped (that work is
# redone), so a resumed run's files read as if it had never stopped.
STEP_FILES = (rundir.TRAIN_LOG, rundir.ROLLOUTS, rundir.RUBRICS, rundir.VERDICTS, rundir.JUDGE_RAW, rundir.EVAL)
TRAIN_LOG_FIELDS = (
    "step", "method", "backend", "dtype", "samples_seen", "wall_s", "reward_mean", "reward_std", "loss", "kl",
    "learning_rate", "grad_norm", "completion_length", "judge_calls", "judge_http_requests", "judge_cache_hits",
    "judge_tokens", "judge_groups", "judge_failures", "judge_failed_rollouts", "rubric_size", "teacher_score_mean",
    "judge_s", "judge_usage", "judge_errors", "step_s", "generate_s", "optimizer_s", "refs_s", "rubric_s", "verify_s",
    "processes", "judge_usd",
)


class JudgeFailureError(TrainError):
    """The judge failure rate passed `max_judge_failure_rate`; the run stopped after that step."""

# ---------------------------------------------------------------------------------------------------------------
# Logging, evaluation, the failure gate


def _num(value: Any) -> float | None:
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if value != value else value  # NaN -> None: JSON has no NaN and pandas reads None as missing


@dataclass
class _RunState:
    method: str
    backend: str
    samples_per_step: int
    wall_offset: float = 0.0
    dtype: str | None = None
    eval_s: float = 0.0
    started: float = field(default_factory=time.perf_counter)
    stop_reason: str | None = None
    # Where a step's time goes (make bench's step breakdown): the trainer's generation call is timed by a wrapper,
    # the step from on_step_begin to on_step_end (evaluation, which runs after on_step_end, is not in it), the
    # optimizer's update from on_pre_optimizer_step to on_optimizer_step.
    generate_s: float = 0.0
    step_began: float | None = None
    step_s: float | None = None
    optimizer_began: float | None = None
    optimizer_s: float = 0.0
    # Judged groups and failed ones so far, over every process (the failure gate's numbers, the same on each).
    judge_groups: int = 0
    judge_failures: int = 0

    def wall_s(self) -> float:
        return self.wall_offset + (time.perf_counter() - self.started) - self.eval_s

    def pop_timings(self) -> dict[str, float | None]:
        out = {"step_s": None if self.step_s is None else round(self.step_s, 3),
               "generate_s": round(self.generate_s, 3), "optimizer_s": round(self.optimizer_s, 3)}
        self.generate_s, self.step_s, self.optimizer_s = 0.0, None, 0.0
        return out


def _time_generation(trainer: Any, state: _RunState) -> None:
    """Add the time spent in the trainer's rollout generation (TRL's `_generate`, GRPO and distillation alike) to
    `state.generate_s`. A trainer without that method is left alone: its log has generate_s 0."""
    generate = getattr(trainer, "_generate", None)
    if generate is None:
        return

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return generate(*args, **kwargs)
        finally:
            state.generate_s += time.perf_counter() - started

    trainer._generate = timed


def _make_callback(config: "RunConfig", state: _RunState, reward: Any, clients_of: Any, eval_tasks: list | None):
    """Build the TrainerCallback (a class made here so that importing this module does not import transformers)."""
    from transformers import TrainerCallback

    from ..llm import sum_usage, total_usd, usage_delta

    class RunCallback(TrainerCallback):
        """Writes train_log.jsonl after every optimizer step, runs evaluations, applies the judge failure gate."""

        def __init__(self) -> None:
            self.trainer = None
            self._usage_before: dict = {}
            self._last_logged = -1

        def _usage(self) -> dict:
            clients = clients_of()
            return clients.stats.snapshot() if clients is not None else {}

        def on_train_begin(self, args, trainer_state, control, **kwargs):
            state.started = time.perf_counter()
            self._usage_before = self._usage()
            if eval_tasks and trainer_state.global_step == 0:
                self._evaluate(0)

        def on_step_begin(self, args, trainer_state, control, **kwargs):
            state.step_began = time.perf_counter()

        def on_pre_optimizer_step(self, args, trainer_state, control, **kwargs):
            state.optimizer_began = time.perf_counter()

        def on_optimizer_step(self, args, trainer_state, control, **kwargs):
            if state.optimizer_began is not None:
                state.optimizer_s += time.perf_counter() - state.optimizer_began
                state.optimizer_began = None

        def on_log(self, args, trainer_state, control, logs=None, **kwargs):
            logs = logs or {}
            step = trainer_state.global_step
            if "train_runtime" in logs or any(k.startswith("eval_") for k in logs) or step == self._last_logged:
                return
            self._last_logged = step
            after = self._usage()
            delta = {r: u for r, u in usage_delta(self._usage_before, after).items() if r != "student"}
            self._usage_before = after
            step_stats = reward.pop_step_stats() if hasattr(reward, "pop_step_stats") else None
            timings = state.pop_timings()
            # Each process judged its own groups and timed its own step; the main one logs them all as one step.
            parts = ddp.gather((delta, step_stats, timings))
            if not ddp.is_main():
                return
            if len(parts) > 1:
                delta = sum_usage(p[0] for p in parts)
                step_stats = type(step_stats).merged([p[1] for p in parts]) if step_stats is not None else None
                timings = ddp.reduce_timings([p[2] for p in parts])
            stats = step_stats.as_record() if step_stats is not None else {}
            loss = _num(logs.get("loss"))
            record = {
                "step": step,
                "method": state.method,
                "backend": state.backend,
                "dtype": state.dtype,
                "samples_seen": step * state.samples_per_step,
                "wall_s": round(state.wall_s(), 3),
                "reward_mean": _num(logs.get("reward")),
                "reward_std": _num(logs.get("reward_std")),
                "loss": loss,
                # lopd's loss is the per-token reverse KL to the teacher itself (beta=1); GRPO logs kl to its
                # reference only when kl_beta > 0.
                "kl": loss if state.method == "lopd" else _num(logs.get("kl")),
                "learning_rate": _num(logs.get("learning_rate")),
                "grad_norm": _num(logs.get("grad_norm")),
                "completion_length": _num(logs.get("completions/mean_length")),
                "judge_calls": sum(u.get("calls", 0) for u in delta.values()),
                "judge_http_requests": sum(u.get("http_requests", 0) for u in delta.values()),
                "judge_cache_hits": sum(u.get("cache_hits", 0) for u in delta.values()),
                "judge_tokens": sum(u.get("prompt_tokens", 0) + u.get("completion_tokens", 0) for u in delta.values()),
                "judge_groups": 0,
                "judge_failures": 0,
                "judge_failed_rollouts": 0,
                "rubric_size": None,
                "teacher_score_mean": None,
                "judge_s": None,
                "judge_usage": delta,
                # Dollars over the judge roles (per role: judge_usage[role]["usd"]); None when none is priced.
                "judge_usd": total_usd(delta),
                "judge_errors": [],
                "refs_s": None,
                "rubric_s": None,
                "verify_s": None,
                "processes": len(parts),
                **timings,
                **stats,
            }
            rundir.append_jsonl(config.path / rundir.TRAIN_LOG, [record])

        def on_step_end(self, args, trainer_state, control, **kwargs):
            if state.step_began is not None:
                state.step_s = time.perf_counter() - state.step_began
            step = trainer_state.global_step
            if hasattr(reward, "pop_records"):
                # Every process's records of this step, written once, by the main process, in rank order (the
                # order of the groups in the step's batch).
                parts = ddp.gather(reward.pop_records())
                if ddp.is_main():
                    for part in parts:
                        for name, records in part:
                            rundir.append_jsonl(config.path / name, records)
            if hasattr(reward, "failure_rate"):
                # The gate reads the run's totals over all processes, so that every process takes the same decision
                # (one that stopped alone would leave the others waiting at the next all-reduce).
                totals = ddp.gather((reward.total_groups, reward.total_failed))
                state.judge_groups = sum(t[0] for t in totals)
                state.judge_failures = sum(t[1] for t in totals)
            rate = state.judge_failures / state.judge_groups if state.judge_groups else 0.0
            if rate > config.max_judge_failure_rate:
                state.stop_reason = (
                    f"judge failure rate {rate:.0%} ({state.judge_failures} of {state.judge_groups} "
                    f"groups) passed max_judge_failure_rate={config.max_judge_failure_rate} at step {step}"
                )
                control.should_training_stop = True
                control.should_save = True
            if eval_tasks and config.eval_steps and (step % config.eval_steps == 0 or step >= args.max_steps):
                self._evaluate(step)

        def _evaluate(self, step: int) -> None:
            # The main process evaluates and writes eval.jsonl; the others wait for it.
            with ddp.main_first() as main:
                if main:
                    self._evaluate_here(step)

        def _evaluate_here(self, step: int) -> None:
            from .evaluate import evaluate, metric_name, pass_at_1

            trainer = self.trainer
            model = trainer.accelerator.unwrap_model(trainer.model)
            started = time.perf_counter()
            frame = evaluate(
                model, eval_tasks, config.eval_k, config=config, step=step, run_dir=config.path,
                tokenizer=trainer.processing_class, reuse_untrained=step == 0,
            )
            took = time.perf_counter() - started
            state.eval_s += took
            # Open-ended tasks have no pass@1: their mean reference-rubric score (and failed gradings) are said too.
            graded = f", mean score {frame.attrs['score']:.3f}" if metric_name(frame) != "pass@1" else ""
            failed = frame.attrs.get("grade_failures") or 0
            replayed = ", the untrained student's samples replayed" if frame.attrs.get("replayed") else ""
            _say(f"eval step {step}: pass@1 {pass_at_1(frame):.3f}{graded} on {len(eval_tasks)} tasks "
                 f"({took:.0f} s{replayed}{f', {failed} gradings failed' if failed else ''})")

    return RunCallback()
