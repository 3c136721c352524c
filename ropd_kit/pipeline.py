"""Stages 1–5 of ROPD over a run directory: tasks → teacher refs → rollouts → rubrics → verdicts (with scores).

Each stage is a function that reads the previous stage's JSONL file from the run directory and writes its own, so a
notebook can run (and re-run) one stage per cell. `judge_group_async` is the per-group chain (rubric induction, then
blind verification, then s_i) that both the stage functions and `reward.RubricReward` call: one rubric per
(task, step), shared by every rollout of the group. The reward levers of RunConfig act there too: Verifier samples,
evidence and read-first inside `verify.verify_group_async`; the consensus check (`consensus.consensus_check`) here,
where the teacher refs are at hand. What each lever did is written beside the verdicts (verdicts.jsonl:
`checked_by_code`, `consensus`, `votes`, `quotes`, `evidence_flipped`, `final_result`; rubrics.jsonl: `consensus`,
`added_by_code`), and nothing extra is written when every lever is off. With soft verdicts (`verifier_mode="soft"`)
each verdict record also says which kind it holds (`verdict_kind`), its `probabilities` (what the score used, a
criterion decided by code counting 0 or 1) and, where booleans stood, `boolean_criteria` and `fallback_reason`.
Every judged group's rubrics.jsonl record holds `criterion_spread` (per criterion, the share of the rollouts meeting
it and its std over them, and the same over the teacher refs); with `criterion_weighting="spread"` it says so
(`criterion_weighting`), and each verdict record holds the `effective_weights` its score was computed with
(`scoring.effective_weights`: the result share, then the spread; the criteria keep the Rubricator's points).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import rundir
from .config import RunConfig
from .data import Task, load_tasks, write_tasks
from .llm import Clients, make_clients, run_sync
from .rubrics import Rubric, induce_rubric_async
from .scoring import criterion_spread, effective_weights, weighted_pass_rate, weighted_score
from .consensus import consensus_check
from .verify import GroupVerdicts, verify_group_async


@dataclass
class GroupJudgement:
    """What judging one group produced. `scores` are the student rollouts' s_i in rollout order, or None."""

    task_id: str
    step: int
    rubric_record: dict
    verdict_records: list[dict]
    scores: list[float] | None
    teacher_scores: list[float | None]
    failed: bool
    error: str | None = None
    raw_records: list[dict] = field(default_factory=list)
    verifier_calls: int = 0
    rubric_s: float = 0.0
    verify_s: float = 0.0
    soft_cells: int = 0  # soft mode: verdicts read as probabilities ...
    boolean_cells: int = 0  # ... and verdicts that stood as booleans (no log-probabilities)


def _group_seed(config: RunConfig, task_id: str, step: int) -> int:
    # The blind order must differ across groups yet be reproducible, so that a replayed step hits the cache.
    digest = hashlib.sha256(f"{config.seed}:{task_id}:{step}".encode()).hexdigest()
    return int(digest[:8], 16)


def _score_or_none(
    points: list[int], judgement: list[bool] | None, config: RunConfig, probabilities: list[float] | None = None
) -> float | None:
    if judgement is None:
        return None
    if probabilities is not None:
        return weighted_score(points, [probabilities], eps=config.score_eps, pitfalls=config.pitfalls)[0]
    return weighted_pass_rate(points, [judgement], eps=config.score_eps, pitfalls=config.pitfalls)[0]


def _soft_values(notes: dict | None, judgement: list[bool] | None) -> list[float] | None:
    """The probabilities a soft verdict is scored with (None: booleans score it). A criterion the consensus check
    decided, or added, after the Verifier counts as its code verdict, 0 or 1."""
    probabilities = (notes or {}).get("probabilities")
    if judgement is None or probabilities is None:
        return None
    values = [float(v) for v in probabilities] + [float(v) for v in judgement[len(probabilities):]]
    for k in (notes or {}).get("checked_by_code", []):
        values[k] = float(judgement[k])
    return values


def answer_values(judgement: list[bool] | None, notes: dict | None) -> list[float] | None:
    """What an answer's score reads per criterion: its soft verdict's probabilities, else its booleans as 0/1."""
    if judgement is None:
        return None
    soft = _soft_values(notes, judgement)
    return soft if soft is not None else [float(v) for v in judgement]


def group_spread(ids: list[str], verdicts: GroupVerdicts, config: RunConfig,
                 truncated: list[bool] | None = None) -> dict[str, list[dict]]:
    """Each criterion's spread over the group's judged student rollouts and, apart, its teacher refs
    (`scoring.criterion_spread` over what the scores read). A rollout scored 0 for being cut off is not counted."""
    out: dict[str, list[dict]] = {}
    for source, judgements, all_notes in (("student", verdicts.student, verdicts.student_notes),
                                          ("teacher", verdicts.teacher, verdicts.teacher_notes)):
        rows = []
        for idx, judgement in enumerate(judgements):
            if source == "student" and truncated and truncated[idx] and config.truncated_rollouts == "zero":
                continue
            rows.append(answer_values(judgement, all_notes[idx] if idx < len(all_notes) else None))
        out[source] = criterion_spread(rows, len(ids))
    return out


def spread_record(ids: list[str], spread: dict[str, list[dict]]) -> list[dict]:
    """rubrics.jsonl's `criterion_spread`: per criterion, the share of the group's student rollouts meeting it
    (`student_met`: mean probability for soft verdicts) and its standard deviation over them (`student_std`), the
    same over the teacher refs, and how many answers of each were counted."""

    def r(x: float | None) -> float | None:
        return None if x is None else round(x, 6)

    return [{"id": cid, "student_met": r(s["met"]), "student_std": r(s["std"]), "n_student": s["n"],
             "teacher_met": r(t["met"]), "teacher_std": r(t["std"]), "n_teacher": t["n"]}
            for cid, s, t in zip(ids, spread["student"], spread["teacher"])]


# Lever notes that list criteria: indices in `verify`'s notes, criterion ids in verdicts.jsonl.
CRITERION_NOTES = ("checked_by_code", "flipped_by_code", "evidence_flipped", "boolean_criteria")


def _lever_fields(notes: dict | None, ids: list[str], consensus: Any, weights: list[float],
                  reweighted: bool = False) -> dict[str, Any]:
    """What the reward levers did to one answer, for verdicts.jsonl (criterion indices as criterion ids).

    Where the consensus check decided the group, the record also holds `effective_weights` (the weights its score
    was computed with, in rubric order) beside the check's `extracted_answer` (what it read as the answer's final
    answer) and `consensus` (the teacher's answer it was compared with); `effective_weights` too wherever
    `criterion_weighting="spread"` (`reweighted`) set the weights. Nothing when every lever is off, so a default run
    writes the records it always wrote.
    """
    fields: dict[str, Any] = {}
    for key, value in (notes or {}).items():
        if key in CRITERION_NOTES:
            fields[key] = [ids[k] for k in value]
        else:
            fields[key] = value
    if consensus is not None:
        fields.setdefault("checked_by_code", [])
        fields["consensus"] = consensus.value
    if (consensus is not None and consensus.applied) or reweighted:
        fields["effective_weights"] = [round(float(w), 6) for w in weights]
    return fields


async def judge_group_async(
    task: Task,
    teacher_refs: list[str],
    rollouts: list[str],
    clients: Clients,
    config: RunConfig,
    *,
    step: int,
    truncated: list[bool] | None = None,
) -> GroupJudgement:
    """Induce one rubric from the teacher refs and this group's rollouts, verify all answers blind, score them.

    Never raises for model or endpoint misbehaviour: a group that cannot be judged comes back with `failed=True`,
    `scores=None` and the reason in `error`, so the trainer can give it zero advantage and count it.
    """
    started = time.perf_counter()
    outcome = await induce_rubric_async(task, teacher_refs, rollouts, clients.rubricator, config)
    rubric_s = time.perf_counter() - started
    raw = [
        {"task_id": task.id, "step": step, "role": "rubricator", "attempt": i, "text": text}
        for i, text in enumerate(outcome.raw)
    ]
    rubric_record: dict[str, Any] = {
        "task_id": task.id,
        "step": step,
        "criteria": [c.model_dump() for c in outcome.rubric.criteria] if outcome.rubric else [],
        "model": clients.rubricator.endpoint.model,
        "n_teacher": len(teacher_refs),
        "n_student": len(rollouts),
        "attempts": outcome.attempts,
        "error": outcome.error,
    }
    if config.rubric_source != "contrast":
        rubric_record["rubric_source"] = config.rubric_source  # the rollouts were not shown to the Rubricator
    if outcome.rubric is None:
        return GroupJudgement(
            task.id, step, rubric_record, [], None, [None] * len(teacher_refs), True,
            error=f"rubric: {outcome.error}", raw_records=raw, rubric_s=rubric_s,
        )

    started = time.perf_counter()
    verdicts = await verify_group_async(
        task,
        outcome.rubric,
        teacher_refs,
        rollouts,
        clients.verifier,
        config,
        seed=_group_seed(config, task.id, step),
        truncated=truncated,
    )
    return score_group(task, step, rubric_record, outcome.rubric, verdicts, teacher_refs, rollouts, config,
                       truncated=truncated, raw_records=raw, rubric_s=rubric_s,
                       verify_s=time.perf_counter() - started)


def score_group(
    task: Task,
    step: int,
    rubric_record: dict[str, Any],
    rubric: Rubric,
    verdicts: GroupVerdicts,
    teacher_refs: list[str],
    rollouts: list[str],
    config: RunConfig,
    *,
    truncated: list[bool] | None = None,
    raw_records: list[dict] | None = None,
    rubric_s: float = 0.0,
    verify_s: float = 0.0,
) -> GroupJudgement:
    """What follows the Verifier's replies for one group: the consensus check when `config.consensus_check`, the
    scores, and the records of rubrics.jsonl / verdicts.jsonl / judge_raw.jsonl. No model call, so the fidelity
    study can apply a post-verification lever to verdicts it already has (`fidelity.study.derive_variant`)."""
    raw = list(raw_records or [])
    consensus = None
    if config.consensus_check:
        rubric, verdicts, consensus = consensus_check(
            rubric, verdicts, teacher_refs, rollouts, family=getattr(task, "family", None),
            choices=getattr(task, "choices", None), strip_think=config.strip_thinking,
        )
        rubric_record["consensus"] = consensus.model_dump()
        if consensus.added:
            # The rubric that scores the group is the one on record: the added criterion with it, marked.
            rubric_record["criteria"] = [c.model_dump() for c in rubric.criteria]
            rubric_record["added_by_code"] = [consensus.result_id]
    raw += [
        {"task_id": task.id, "step": step, "role": "verifier", "attempt": i, "text": text}
        for i, text in enumerate(verdicts.raw)
    ]
    ids = rubric.ids
    spread = group_spread(ids, verdicts, config, truncated)
    rubric_record["criterion_spread"] = spread_record(ids, spread)
    result_index, share = None, 0.0
    if consensus is not None and consensus.applied and config.result_weight_share:
        result_index, share = ids.index(consensus.result_id), config.result_weight_share
        rubric_record["consensus"]["result_share"] = share
    weighted = config.criterion_weighting == "spread"
    points = effective_weights(rubric.points, result_index=result_index, result_share=share,
                               spreads=[s["std"] for s in spread["student"]] if weighted else None,
                               n_answers=spread["student"][0]["n"] if spread["student"] else 0)
    if weighted:
        rubric_record["criterion_weighting"] = "spread"  # each verdict record holds the effective_weights
    position = {key: i + 1 for i, key in enumerate(verdicts.order)}  # 1-based, as shown to the verifier
    records: list[dict] = []
    teacher_scores: list[float | None] = []
    student_scores: list[float | None] = []
    for source, judgements, scores, all_notes in (
        ("teacher", verdicts.teacher, teacher_scores, verdicts.teacher_notes),
        ("student", verdicts.student, student_scores, verdicts.student_notes),
    ):
        for idx, judgement in enumerate(judgements):
            notes = all_notes[idx] if idx < len(all_notes) else None
            probabilities = _soft_values(notes, judgement)
            if probabilities is not None:
                notes = {**notes, "probabilities": probabilities}
            score = _score_or_none(points, judgement, config, probabilities)
            if source == "student" and truncated and truncated[idx] and config.truncated_rollouts == "zero":
                score = 0.0
            scores.append(score)
            records.append(
                {
                    "task_id": task.id,
                    "step": step,
                    "answer_key": f"{source}-{idx}",
                    "source": source,
                    "answer_idx": idx,
                    "position": position.get((source, idx)),
                    "judgements": judgement,
                    "score": score,
                    **_lever_fields(notes, ids, consensus, points, weighted),
                }
            )
    failed = verdicts.failed or any(s is None for s in student_scores)
    return GroupJudgement(
        task.id,
        step,
        rubric_record,
        records,
        None if failed else [float(s) for s in student_scores],
        teacher_scores,
        failed,
        error=f"verify: {verdicts.error}" if failed else None,
        raw_records=raw,
        verifier_calls=verdicts.calls,
        rubric_s=rubric_s,
        verify_s=verify_s,
        soft_cells=verdicts.soft_cells,
        boolean_cells=verdicts.boolean_cells,
    )


# ---------------------------------------------------------------------------------------------------------------
# Stage functions over a run directory (what notebooks 01–03 and `make demo` call)


def stage_tasks(config: RunConfig) -> list[Task]:
    """Stage 0: read the config's tasks (any source, `sources.tasks_from_config`), validated, and copy the selected
    ones into the run directory (the kit's JSONL: later stages and notebooks read that copy)."""
    from .sources import tasks_from_config

    tasks = tasks_from_config(config)
    write_tasks(config.path / rundir.TASKS, tasks)
    config.save()
    return tasks


def run_tasks(config: RunConfig) -> list[Task]:
    path = config.path / rundir.TASKS
    return load_tasks(path) if path.exists() else stage_tasks(config)


def _grouped(records: list[dict], key: str = "task_id") -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in records:
        out.setdefault(r[key], []).append(r)
    return out


async def stage_teacher_refs_async(config: RunConfig, clients: Clients) -> list[dict]:
    """Stage 1: K teacher references per task (replayed from the reference index when present)."""
    from .teacher import ReferenceIndex, collect_references_async

    tasks = run_tasks(config)
    index = ReferenceIndex.for_config(config)
    records = await collect_references_async(tasks, clients.teacher, config, index)
    rundir.write_jsonl(config.path / rundir.TEACHER_REFS, records)
    return records


async def stage_rollouts_async(config: RunConfig, clients: Clients, *, step: int = 0) -> list[dict]:
    """Stage 2: a group of student rollouts per task (the training loop swaps in the policy's own samples)."""
    from .rollouts import sample_rollouts_async

    tasks = run_tasks(config)
    records = await sample_rollouts_async(tasks, clients.student, config, step=step)
    rundir.write_jsonl(config.path / rundir.ROLLOUTS, records)
    return records


async def stage_judge_async(config: RunConfig, clients: Clients, *, step: int = 0, progress: bool = True) -> list[GroupJudgement]:
    """Stages 3–5 for every task at once: rubric per group, blind verdicts, scores. Writes rubrics/verdicts files."""
    from tqdm.auto import tqdm

    tasks = {t.id: t for t in run_tasks(config)}
    refs = _grouped(rundir.read_jsonl(config.path / rundir.TEACHER_REFS))
    rolls = _grouped([r for r in rundir.read_jsonl(config.path / rundir.ROLLOUTS) if r.get("step", 0) == step])
    missing = sorted(set(tasks) - set(rolls))
    if missing:
        raise FileNotFoundError(
            f"{config.path / rundir.ROLLOUTS}: no rollouts for step {step} of task(s) {', '.join(missing[:5])}"
            " — run the rollouts stage first"
        )

    async def one(task_id: str) -> GroupJudgement:
        task_refs = sorted((r for r in refs.get(task_id, []) if r.get("text")), key=lambda r: r["ref_idx"])
        group = sorted(rolls[task_id], key=lambda r: r["rollout_idx"])
        return await judge_group_async(
            tasks[task_id],
            [r["text"] for r in task_refs],
            [r["text"] for r in group],
            clients,
            config,
            step=step,
            truncated=[bool(r.get("truncated")) for r in group],
        )

    bar = tqdm(total=len(tasks), desc="judge groups", disable=not progress)

    async def tracked(task_id: str) -> GroupJudgement:
        result = await one(task_id)
        bar.update(1)
        return result

    try:
        results = await asyncio.gather(*(tracked(t) for t in tasks))
    finally:
        bar.close()
    write_judgements(config.path, results, replace=True)
    return results


def judgement_records(results: list[GroupJudgement]) -> dict[str, list[dict]]:
    """The records judged groups leave in the run directory: {file name: records} for rubrics, verdicts, raw output."""
    return {
        rundir.RUBRICS: [r.rubric_record for r in results],
        rundir.VERDICTS: [v for r in results for v in r.verdict_records],
        rundir.JUDGE_RAW: [x for r in results for x in r.raw_records],
    }


def write_judgements(run_path: Path, results: list[GroupJudgement], *, replace: bool = False) -> None:
    """Write (or append, during training) the rubrics, verdicts and raw judge output of judged groups."""
    put = rundir.write_jsonl if replace else rundir.append_jsonl
    for name, records in judgement_records(results).items():
        put(run_path / name, records)


def judge_summary(results: list[GroupJudgement], clients: Clients | None = None) -> dict[str, Any]:
    """Counts a person wants after a judging pass: failures, rubric sizes, score spread, LLM usage."""
    import statistics

    judged = [r for r in results if not r.failed]
    student = [s for r in judged for s in (r.scores or [])]
    teacher = [s for r in results for s in r.teacher_scores if s is not None]
    summary: dict[str, Any] = {
        "groups": len(results),
        "groups_failed": len(results) - len(judged),
        "rubric_failures": sum(1 for r in results if not r.rubric_record["criteria"]),
        "mean_criteria": statistics.fmean([len(r.rubric_record["criteria"]) for r in judged]) if judged else None,
        "student_score_mean": statistics.fmean(student) if student else None,
        "teacher_score_mean": statistics.fmean(teacher) if teacher else None,
        "verifier_calls": sum(r.verifier_calls for r in results),
        "soft_cells": sum(r.soft_cells for r in results),
        "boolean_cells": sum(r.boolean_cells for r in results),
        "failures": {r.task_id: r.error for r in results if r.failed},
    }
    if clients is not None:
        summary["usage"] = clients.stats.snapshot()
    return summary


async def run_stages_async(config: RunConfig, *, progress: bool = True) -> dict[str, Any]:
    """Stages 1–5 end to end on `config` (whose endpoints are already resolved). Returns the judge summary."""
    t0 = time.perf_counter()
    stage_tasks(config)
    async with make_clients(config) as clients:
        timings = {}
        t = time.perf_counter()
        await stage_teacher_refs_async(config, clients)
        timings["teacher_refs_s"] = time.perf_counter() - t
        t = time.perf_counter()
        await stage_rollouts_async(config, clients)
        timings["rollouts_s"] = time.perf_counter() - t
        t = time.perf_counter()
        results = await stage_judge_async(config, clients, progress=progress)
        timings["judge_s"] = time.perf_counter() - t
        summary = judge_summary(results, clients)
    summary["timings"] = {**timings, "total_s": time.perf_counter() - t0}
    (config.path / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def run_stages(config: RunConfig, *, progress: bool = True) -> dict[str, Any]:
    """Sync wrapper of `run_stages_async`, usable from a script or a notebook cell."""
    return run_sync(run_stages_async(config, progress=progress))


# Sync wrappers for notebooks: each opens clients, runs one stage, closes them.
def _with_clients(config: RunConfig, stage, **kwargs):
    async def go():
        async with make_clients(config) as clients:
            return await stage(config, clients, **kwargs)

    return run_sync(go())


def teacher_refs_stage(config: RunConfig) -> list[dict]:
    return _with_clients(config, stage_teacher_refs_async)


def rollouts_stage(config: RunConfig, *, step: int = 0) -> list[dict]:
    return _with_clients(config, stage_rollouts_async, step=step)


def judge_stage(config: RunConfig, *, step: int = 0, progress: bool = True) -> list[GroupJudgement]:
    return _with_clients(config, stage_judge_async, step=step, progress=progress)
