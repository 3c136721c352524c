"""ROPD stage 5 as a TRL reward: a GRPO step's completions in, one reward per completion out.

`RubricReward` is what `method="ropd"` trains on. TRL's `GRPOTrainer` calls it once per generation batch with the
batch's `prompts`, `completions`, `completion_ids`, every dataset column (we read `task_record`, else `task_id`,
`question`, `answer`, `domain`), `trainer_state`, `log_metric` and `log_extra`; the `num_generations` completions of
one prompt are adjacent. For each group (one task's rollouts) it takes the task's K teacher refs from the reference index
(collecting them on a miss), induces one rubric from the refs and that group's rollouts, verifies all answers blind
and returns each rollout's s_i (`pipeline.judge_group_async`). All groups of the step are judged at once.

A group that cannot be judged after retries returns None for each of its rollouts: TRL then gives them zero
advantage. It is counted (`failed_groups`), written to the run directory with its error, and the trainer stops the
run when the failure rate passes `config.max_judge_failure_rate`. Every step's rollouts, rubrics, verdicts and raw
judge output are appended to the run directory, so the inspector can replay any step.

The baselines' rewards live here too: `JudgeReward` (method "judge": the endpoint `config.judge_role` names — the
Verifier's by default — grades each rollout 0–10 with no rubric, scaled to 0–1) and `correctness_reward` (method "rlvr": 1 if the final answer matches the ground truth).

    >>> reward = RubricReward(config, None, "runs/demo", num_generations=config.n_rollouts)   # doctest: +SKIP
    >>> trainer = GRPOTrainer(model, reward_funcs=[reward], args=grpo_args, train_dataset=ds)  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import logging
import re
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from . import rundir

if TYPE_CHECKING:  # pragma: no cover
    from .config import RunConfig
    from .data import Task
    from .llm import Clients
    from .pipeline import GroupJudgement

log = logging.getLogger(__name__)

JUDGE_ROLES = ("teacher", "rubricator", "verifier")
JUDGE_SCORE_MAX = 10
JUDGE_SCHEMA = {
    "type": "object",
    "properties": {"score": {"type": "integer", "minimum": 0, "maximum": JUDGE_SCORE_MAX}},
    "required": ["score"],
    "additionalProperties": False,
}


# ---------------------------------------------------------------------------------------------------------------
# Reading TRL's batch


def completion_texts(completions: Sequence[Any]) -> list[str]:
    """Plain text of each completion; TRL passes strings, or a list of messages for conversational datasets."""
    texts = []
    for c in completions:
        if isinstance(c, str):
            texts.append(c)
        elif isinstance(c, list):
            texts.append("".join(str(m.get("content") or "") for m in c if m.get("role", "assistant") == "assistant"))
        else:
            raise TypeError(f"cannot read a completion of type {type(c).__name__}: {c!r:.80}")
    return texts


def task_from_columns(i: int, columns: dict[str, Sequence[Any]]) -> "Task":
    """Rebuild row i's Task from the dataset columns `train.grpo_dataset` writes: the whole task as JSON
    (`task_record`: family, conversation, options and all), else task_id, question, answer, domain."""
    from .data import Task

    record = columns.get("task_record")
    if record is not None and record[i]:
        import json

        from .data import task_from_record

        return task_from_record(json.loads(record[i]), f"dataset row {i} (task_record)")
    missing = [c for c in ("task_id", "question") if c not in columns]
    if missing:
        raise KeyError(
            f"the reward needs dataset column(s) {missing}; build the dataset with train.grpo_dataset(tasks) "
            f"(columns seen: {sorted(columns)})"
        )
    answer = columns.get("answer", [None] * (i + 1))[i]
    domain = columns.get("domain", [None] * (i + 1))[i]
    return Task(id=str(columns["task_id"][i]), prompt=str(columns["question"][i]),
                answer=None if answer is None else str(answer), domain=domain or "general")


def truncated_flags(completion_ids: Sequence[Sequence[int]] | None, max_tokens: int, eos_ids: set[int]) -> list[bool]:
    """A rollout is truncated when it used the whole token budget without ending on an end-of-sequence token."""
    if completion_ids is None:
        return []
    flags = []
    for ids in completion_ids:
        ids = list(ids)
        flags.append(len(ids) >= max_tokens and (not ids or ids[-1] not in eos_ids))
    return flags


def _current_step(trainer_state: Any, fallback: int) -> int:
    # TRL scores a batch before the optimizer step it feeds, so the step being trained is global_step + 1 — the
    # number the train log gives that step.
    return int(trainer_state.global_step) + 1 if trainer_state is not None else fallback


@dataclass
class StepStats:
    """What one reward call saw, for the train log (the trainer callback pops it after each step)."""

    groups: int = 0
    failed_groups: int = 0
    rollouts: int = 0
    failed_rollouts: int = 0
    rubric_sizes: list[int] = field(default_factory=list)
    teacher_scores: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    # refs_s is wall time (references come before any group is judged); rubric_s and verify_s are summed over the
    # step's groups, which run concurrently, so they can add up to more than the judging wall time.
    refs_s: float = 0.0
    rubric_s: float = 0.0
    verify_s: float = 0.0
    # Soft verdicts: (answer, criterion) verdicts read as probabilities, and those where booleans stood instead.
    soft_cells: int = 0
    boolean_cells: int = 0

    def as_record(self) -> dict[str, Any]:
        return {
            "judge_groups": self.groups,
            "judge_failures": self.failed_groups,
            "judge_failed_rollouts": self.failed_rollouts,
            "rubric_size": statistics.fmean(self.rubric_sizes) if self.rubric_sizes else None,
            "teacher_score_mean": statistics.fmean(self.teacher_scores) if self.teacher_scores else None,
            "judge_s": round(self.wall_s, 3),
            "refs_s": round(self.refs_s, 3),
            "rubric_s": round(self.rubric_s, 3),
            "verify_s": round(self.verify_s, 3),
            "judge_soft_cells": self.soft_cells,
            "judge_boolean_cells": self.boolean_cells,
            "judge_errors": self.errors[:5],
        }

    @classmethod
    def merged(cls, parts: Sequence["StepStats"]) -> "StepStats":
        """One step's stats over several processes (each judged its own groups): counts and per-group times summed,
        lists joined in rank order, wall times (`wall_s`, `refs_s`) the slowest process's."""
        out = cls()
        for part in parts:
            for name in ("groups", "failed_groups", "rollouts", "failed_rollouts", "rubric_s", "verify_s",
                         "soft_cells", "boolean_cells"):
                setattr(out, name, getattr(out, name) + getattr(part, name))
            out.rubric_sizes += part.rubric_sizes
            out.teacher_scores += part.teacher_scores
            out.errors += part.errors
            out.wall_s = max(out.wall_s, part.wall_s)
            out.refs_s = max(out.refs_s, part.refs_s)
        return out


class _JudgedReward:
    """Shared plumbing of the rewards that call judge models: clients made on first use, per-step stats for the
    train log, run-wide failure counts for the failure-rate gate."""

    __name__ = "judged_reward"

    def __init__(self, config: "RunConfig", clients: "Clients | None", run_dir: str | Path | None):
        self.config = config
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self._clients = clients
        self._own_clients = clients is None
        self._index: Any = None  # teacher reference index (RubricReward)
        self._own_index = False
        self._pending = StepStats()
        self.total_groups = 0
        self.total_failed = 0
        self.calls = 0
        self._deferred: list[tuple[str, list[dict]]] | None = None  # records held for the trainer (defer_writes)

    @property
    def clients(self) -> "Clients | None":
        return self._clients

    def _ensure_clients(self) -> "Clients":
        # Made on first use, so that a reward built before the servers are up (or in another process) still works;
        # LLMClient keeps per-event-loop connections, so TRL's background loop can share these clients.
        if self._clients is None:
            from .llm import make_clients

            self._clients = make_clients(self.config)
        return self._clients

    def pop_step_stats(self) -> StepStats:
        stats, self._pending = self._pending, StepStats()
        return stats

    def defer_writes(self) -> None:
        """Hold the run-directory records instead of appending them at each call; `pop_records` hands them over.
        Training does this so that, with several processes, the main one writes every process's records."""
        if self._deferred is None:
            self._deferred = []

    def pop_records(self) -> list[tuple[str, list[dict]]]:
        """The records held since the last pop, as (file name, records) in the order they were made."""
        if self._deferred is None:
            return []
        records, self._deferred = self._deferred, []
        return records

    def _write(self, name: str, records: list[dict]) -> None:
        if self.run_dir is None or not records:
            return
        if self._deferred is not None:
            self._deferred.append((name, records))
        else:
            rundir.append_jsonl(self.run_dir / name, records)

    @property
    def failure_rate(self) -> float:
        return self.total_failed / self.total_groups if self.total_groups else 0.0

    async def aclose(self) -> None:
        if self._own_clients and self._clients is not None:
            await self._clients.aclose()
            self._clients = None
        if self._index is not None and self._own_index:
            self._index.close()
            self._index, self._own_index = None, False

    def close(self) -> None:
        """Close the clients (and reference index) this reward made; callable from any thread."""
        if (self._own_clients and self._clients is not None) or self._own_index:
            from .llm import run_sync

            run_sync(self.aclose())


# ---------------------------------------------------------------------------------------------------------------
# ROPD


class RubricReward(_JudgedReward):
    """TRL reward for ROPD: one rubric per group, blind verification, s_i per rollout (None for failed groups).

    `clients=None` makes clients from `config` on first use (inside TRL's event loop). `eos_token_ids` lets the
    reward mark rollouts cut by the token budget (`config.truncated_rollouts` says what happens to them).
    """

    __name__ = "rubric_reward"

    def __init__(
        self,
        config: "RunConfig",
        clients: "Clients | None",
        run_dir: str | Path | None,
        *,
        num_generations: int,
        eos_token_ids: Sequence[int] = (),
        reference_index: Any = None,
    ):
        super().__init__(config, clients, run_dir)
        if num_generations < 2:
            raise ValueError(f"num_generations must be >= 2 for group-relative rewards, got {num_generations}")
        self.num_generations = num_generations
        self.eos_token_ids = set(eos_token_ids)
        self._index = reference_index
        self._refs: dict[str, list[str]] = {}  # task_id -> teacher ref texts, kept for the whole run

    async def teacher_refs(self, tasks: list["Task"]) -> dict[str, list[str]]:
        """K teacher refs per task: memory, then the reference index, then the teacher (what is new is stored)."""
        from .teacher import ReferenceIndex, collect_references_async, texts_by_task

        missing = [t for t in {t.id: t for t in tasks}.values() if t.id not in self._refs]
        found: dict[str, list[str]] = {}
        if missing:
            if self._index is None:
                self._index = ReferenceIndex.for_config(self.config)
                self._own_index = True
            records = await collect_references_async(
                missing, self._ensure_clients().teacher, self.config, self._index, progress=False
            )
            found = texts_by_task(records)
            for task_id, texts in found.items():
                # Only complete sets are remembered, so the refs that failed are asked for again at the next step.
                if len(texts) == self.config.n_teacher_refs:
                    self._refs[task_id] = texts
        return {t.id: self._refs.get(t.id) or found.get(t.id, []) for t in tasks}

    async def judge_groups(
        self,
        tasks: list["Task"],
        groups: list[list[str]],
        *,
        step: int,
        truncated: list[list[bool]] | None = None,
    ) -> list["GroupJudgement"]:
        """Judge every group at once; a group whose judging raised comes back as a failed judgement."""
        import time

        from .pipeline import GroupJudgement, judge_group_async

        from .limits import DeadlineExceeded, gather_with_deadline

        clients = self._ensure_clients()
        # The step's reward deadline (config.reward_deadline_s) counts from here: teacher refs are part of the wait.
        deadline = self.config.reward_deadline_s
        started = time.perf_counter()
        try:
            refs = await asyncio.wait_for(self.teacher_refs(tasks), deadline)
            refs_error = None
        except asyncio.TimeoutError:
            refs, refs_error = {}, f"deadline: teacher refs not obtained within the {deadline:g} s reward deadline"
        except Exception as exc:  # noqa: BLE001 - a teacher outage fails this step's groups, not the run
            refs, refs_error = {}, f"teacher refs: {type(exc).__name__}: {exc}"
        self._pending.refs_s += time.perf_counter() - started

        def failed(i: int, task: "Task", error: str) -> GroupJudgement:
            n_refs = len(refs.get(task.id) or [])
            record = {"task_id": task.id, "step": step, "criteria": [], "model": None,
                      "n_teacher": n_refs, "n_student": len(groups[i]), "attempts": 0, "error": error}
            return GroupJudgement(task.id, step, record, [], None, [None] * n_refs, True, error=error)

        async def one(i: int, task: "Task") -> GroupJudgement:
            task_refs = refs.get(task.id) or []
            error = refs_error or (None if task_refs else "teacher refs: no reference could be obtained")
            if error is None:
                try:
                    return await judge_group_async(
                        task, task_refs, groups[i], clients, self.config, step=step,
                        truncated=truncated[i] if truncated else None,
                    )
                except Exception as exc:  # noqa: BLE001 - judge_group_async should not raise; if it does, count it
                    log.exception("judging task %s at step %d raised", task.id, step)
                    error = f"{type(exc).__name__}: {exc}"
            return failed(i, task, error)

        left = None if deadline is None else max(deadline - (time.perf_counter() - started), 1e-3)
        # A group still being judged at the deadline is cancelled and counted as a judge failure (zero advantage).
        outcomes = await gather_with_deadline((one(i, t) for i, t in enumerate(tasks)), left)
        results = [failed(i, tasks[i], f"deadline: {r}") if isinstance(r, DeadlineExceeded) else r
                   for i, r in enumerate(outcomes)]
        self._pending.wall_s += time.perf_counter() - started
        self._pending.rubric_s += sum(r.rubric_s for r in results)
        self._pending.verify_s += sum(r.verify_s for r in results)
        return results

    async def __call__(
        self,
        prompts: list,
        completions: list,
        completion_ids: list[list[int]] | None = None,
        trainer_state: Any = None,
        log_metric: Callable[[str, float], None] | None = None,
        log_extra: Callable[[str, list], None] | None = None,
        **columns: Any,
    ) -> list[float | None]:
        texts = completion_texts(completions)
        n = self.num_generations
        if len(texts) % n:
            raise ValueError(f"{len(texts)} completions are not whole groups of num_generations={n}")
        self.calls += 1
        step = _current_step(trainer_state, self.calls)
        flags = truncated_flags(completion_ids, self.config.rollout_max_tokens, self.eos_token_ids)
        tasks, groups, trunc = [], [], []
        for start in range(0, len(texts), n):
            task = task_from_columns(start, columns)
            ids = {str(x) for x in columns["task_id"][start : start + n]}
            if ids != {task.id}:
                raise ValueError(f"completions {start}..{start + n - 1} mix tasks {sorted(ids)}: groups must be adjacent")
            tasks.append(task)
            groups.append(texts[start : start + n])
            trunc.append(flags[start : start + n] if flags else [False] * n)

        results = await self.judge_groups(tasks, groups, step=step, truncated=trunc)

        rewards: list[float | None] = []
        for result in results:
            rewards.extend(result.scores if result.scores is not None else [None] * n)
        self._record(results, step, tasks, groups, trunc, completion_ids)
        if log_metric is not None:
            judged = [r for r in results if not r.failed]
            log_metric("judge/failed_groups", float(len(results) - len(judged)))
            if judged:
                log_metric("rubric/n_criteria", statistics.fmean(len(r.rubric_record["criteria"]) for r in judged))
                teacher = [s for r in judged for s in r.teacher_scores if s is not None]
                if teacher:
                    log_metric("judge/teacher_score", statistics.fmean(teacher))
            for category, rate in category_pass_rates(results).items():
                log_metric(f"criteria/{category}", rate)
        if log_extra is not None:
            log_extra("judge_error", [r.error for r in results for _ in range(n)])
        return rewards

    def _record(self, results, step, tasks, groups, truncated, completion_ids) -> None:
        stats = self._pending
        stats.groups += len(results)
        stats.failed_groups += sum(r.failed for r in results)
        stats.rollouts += sum(len(g) for g in groups)
        stats.failed_rollouts += sum(len(g) for r, g in zip(results, groups) if r.failed)
        stats.rubric_sizes += [len(r.rubric_record["criteria"]) for r in results if not r.failed]
        stats.teacher_scores += [s for r in results if not r.failed for s in r.teacher_scores if s is not None]
        stats.errors += [f"{r.task_id}: {r.error}" for r in results if r.failed]
        stats.soft_cells += sum(r.soft_cells for r in results)
        stats.boolean_cells += sum(r.boolean_cells for r in results)
        self.total_groups += len(results)
        self.total_failed += sum(r.failed for r in results)
        if self.run_dir is None:
            return
        from .pipeline import judgement_records

        rollouts = []
        for g, (task, group) in enumerate(zip(tasks, groups)):
            for i, text in enumerate(group):
                k = g * self.num_generations + i
                rollouts.append({
                    "task_id": task.id, "step": step, "rollout_idx": i, "text": text,
                    "n_tokens": len(completion_ids[k]) if completion_ids is not None else None,
                    "truncated": truncated[g][i],
                })
        self._write(rundir.ROLLOUTS, rollouts)
        for name, records in judgement_records(results).items():
            self._write(name, records)


_CATEGORY = re.compile(r"[^a-z0-9]+")


def category_pass_rates(results: Sequence["GroupJudgement"], max_categories: int = 8) -> dict[str, float]:
    """Pass rate of student answers per criterion category over a step (the most common categories only).

    Criterion ids are local to one rubric, so the step-level view that means something across groups is the
    category a criterion was filed under ("correctness", "reasoning", ...).
    """
    passed: Counter[str] = Counter()
    seen: Counter[str] = Counter()
    for result in results:
        if result.failed:
            continue
        categories = [
            _CATEGORY.sub("_", str(c.get("category") or "other").lower()).strip("_") or "other"
            for c in result.rubric_record["criteria"]
        ]
        for verdict in result.verdict_records:
            if verdict.get("source") != "student" or not verdict.get("judgements"):
                continue
            for category, ok in zip(categories, verdict["judgements"]):
                seen[category] += 1
                passed[category] += bool(ok)
    return {c: passed[c] / seen[c] for c, _ in seen.most_common(max_categories)}


# ---------------------------------------------------------------------------------------------------------------
# Baseline: LLM as a judge, no rubric (the judge_role endpoint: the Verifier's by default)


def judge_messages(question: "Task | str", answer: str, config: "RunConfig") -> list[dict]:
    """The judge prompt: our system prompt, the problem (a Task's family picks the templates; a conversation is
    fenced as data), and the answer inside a fence it cannot break out of."""
    from . import prompts
    from .judge_text import clean_answer, fence, make_boundary

    family, prompts_dir = prompts.family_of(question), getattr(config, "prompts_dir", None)
    cleaned = clean_answer(answer, max_chars=config.max_answer_chars, strip_think=config.strip_thinking)
    boundary = make_boundary(prompts.question_text(question), cleaned)
    user = (
        prompts.text("judge_user.txt", family, prompts_dir)
        .replace("{problem}", prompts.question_block(question, boundary))
        .replace("{answer}", fence("ANSWER", cleaned, boundary))
    )
    system = prompts.text("judge_system.txt", family, prompts_dir)
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


_SCORE_TEXT = re.compile(r"(?i)\bscore\b\W{0,4}(\d{1,2}(?:\.\d+)?)|(\d{1,2}(?:\.\d+)?)\s*/\s*10\b")


def parse_judge_score(text: str) -> float | None:
    """The 0–10 score in a judge reply, scaled to 0–1; None when there is none or it is out of range.

    >>> parse_judge_score('{"score": 7}')
    0.7
    >>> parse_judge_score("Score: 12") is None
    True
    """
    from .judge_text import find_json

    def accept(value: Any) -> float | None:
        if isinstance(value, dict) and isinstance(value.get("score"), (int, float)) and not isinstance(
            value.get("score"), bool
        ):
            return float(value["score"])
        return None

    score = find_json(text, accept)
    if score is None:
        match = _SCORE_TEXT.search(text)
        if match:
            score = float(match.group(1) or match.group(2))
    if score is None or not 0 <= score <= JUDGE_SCORE_MAX:
        return None
    return score / JUDGE_SCORE_MAX


class JudgeReward(_JudgedReward):
    """TRL reward for the "judge" baseline: the endpoint `config.judge_role` names (the Verifier's by default)
    grades each rollout alone, 0–10 -> 0–1, at the Verifier's temperature.

    No rubric and no teacher refs: this is the plain LLM-as-a-judge signal ROPD is compared with. A rollout whose
    grade cannot be read after `config.verify_attempts` tries gets None (zero advantage) and is counted.
    """

    __name__ = "judge_reward"

    def __init__(self, config: "RunConfig", clients: "Clients | None", run_dir: str | Path | None, *,
                 num_generations: int):
        super().__init__(config, clients, run_dir)
        self.num_generations = num_generations

    async def score(self, question: "Task | str", answer: str) -> tuple[float | None, list[str], str | None]:
        """(score in [0, 1] or None, raw replies, error)."""
        from .llm import LLMError

        client = self._ensure_clients().for_role(getattr(self.config, "judge_role", "verifier"))
        messages = judge_messages(question, answer, self.config)
        raw: list[str] = []
        error = None
        for attempt in range(self.config.verify_attempts):
            try:
                result = await client.chat(
                    messages,
                    temperature=self.config.verifier_temperature,
                    max_tokens=min(self.config.verifier_max_tokens, 256),
                    json_schema=JUDGE_SCHEMA,
                    schema_name="judge_score",
                    sample_index=attempt,
                )
            except LLMError as exc:
                return None, raw, f"{exc.kind}: {exc}"
            raw.append(result.text)
            score = parse_judge_score(result.text)
            if score is not None:
                return score, raw, None
            error = f"no score 0-{JUDGE_SCORE_MAX} in the reply: {result.text[:120]!r}"
        return None, raw, error

    async def __call__(
        self,
        prompts: list,
        completions: list,
        completion_ids: list[list[int]] | None = None,
        trainer_state: Any = None,
        log_metric: Callable[[str, float], None] | None = None,
        log_extra: Callable[[str, list], None] | None = None,
        **columns: Any,
    ) -> list[float | None]:
        import time

        texts = completion_texts(completions)
        self.calls += 1
        step = _current_step(trainer_state, self.calls)
        tasks = [task_from_columns(i, columns) for i in range(len(texts))]
        started = time.perf_counter()
        outcomes = await asyncio.gather(*(self.score(t, text) for t, text in zip(tasks, texts)))
        scores = [o[0] for o in outcomes]

        n = self.num_generations
        stats = self._pending
        stats.wall_s += time.perf_counter() - started
        stats.groups += len(texts) // n
        # A group counts as failed when none of its rollouts could be graded (no advantage at all).
        failed_groups = sum(all(s is None for s in scores[g : g + n]) for g in range(0, len(scores), n))
        stats.failed_groups += failed_groups
        stats.rollouts += len(texts)
        stats.failed_rollouts += sum(s is None for s in scores)
        stats.errors += [f"{t.id}: {o[2]}" for t, o in zip(tasks, outcomes) if o[2]]
        self.total_groups += len(texts) // n
        self.total_failed += failed_groups
        if self.run_dir is not None:
            self._write(rundir.VERDICTS, [
                {"task_id": t.id, "step": step, "answer_key": f"student-{i % n}", "source": "student",
                 "answer_idx": i % n, "judgements": None, "score": s, "judge": "score_0_10", "error": o[2]}
                for i, (t, s, o) in enumerate(zip(tasks, scores, outcomes))
            ])
            self._write(rundir.JUDGE_RAW, [
                {"task_id": t.id, "step": step, "role": "verifier", "attempt": a, "text": text, "answer_idx": i % n}
                for i, (t, o) in enumerate(zip(tasks, outcomes)) for a, text in enumerate(o[1])
            ])
        if log_metric is not None:
            log_metric("judge/failed_rollouts", float(sum(s is None for s in scores)))
        return scores


# ---------------------------------------------------------------------------------------------------------------
# Baseline: verifiable reward (RLVR)


def correctness_reward(completions: list, answer: list, **kwargs: Any) -> list[float | None]:
    """TRL reward for the "rlvr" baseline: 1.0 when the completion's final answer matches the ground truth, else 0.0.

    With the `task_record` column (`train.grpo_dataset` writes it) the check is the evaluation's own, by the task's
    family (`answers.correctness`: math-verify for math, the chosen letter for multiple choice); without it, the
    answer alone decides (`answers.is_correct`). Rows without a ground-truth answer get None (no advantage); `train`
    refuses such task sets up front.

    >>> correctness_reward(["2 + 2 = 4\\nAnswer: 4", "Answer: 5"], answer=["4", "4"])
    [1.0, 0.0]
    """
    from .answers import correctness, is_correct

    records = kwargs.get("task_record")
    rewards: list[float | None] = []
    for i, (text, gold) in enumerate(zip(completion_texts(completions), answer)):
        if records is not None and records[i]:
            right = correctness(task_from_columns(i, {"task_record": records}), text)
        else:
            right = None if gold is None else is_correct(str(gold), text)
        rewards.append(None if right is None else float(right))
    return rewards
