"""Notebook 05: how well each reward signal tracks correctness — the teacher-as-judge signal, the reference-rubric
score that labels open-ended rollouts, the signal table (ROC AUC per signal) and saving tables into the run
directory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from .. import rundir
from ..config import RunConfig
from .tables import _path
from .servers import resolve_endpoints

if TYPE_CHECKING:  # heavy imports stay inside the functions that need them
    import pandas as pd


# ---------------------------------------------------------------------------------------------------------------
# Signal alignment (notebook 05)


def judge_signal(config: RunConfig, frame: "pd.DataFrame", *, progress: bool = True) -> "pd.DataFrame":
    """The teacher-as-judge score (0–1, `reward.JudgeReward`, no rubric, graded on the `config.judge_role` endpoint:
    the Verifier's by default) of each rollout of a `signal_frame`.

    Returns records task_id, step, rollout_idx, judge (None where the grade could not be read).
    """
    import asyncio

    import pandas as pd
    from tqdm.auto import tqdm

    from ..analysis import run_task_map
    from ..llm import make_clients, run_sync
    from ..reward import JudgeReward

    # The run's tasks: the judge is shown each one as it was asked (its family's prompt, its conversation).
    tasks = run_task_map(config.path)

    async def go() -> list[float | None]:
        async with make_clients(config) as clients:
            judge = JudgeReward(config, clients, None, num_generations=max(2, config.n_rollouts))
            bar = tqdm(total=len(frame), desc="teacher-as-judge", disable=not progress)

            async def one(task_id: str, prompt: str, text: str | None) -> float | None:
                score = (await judge.score(tasks.get(str(task_id)) or prompt, text))[0] if text else None
                bar.update(1)
                return score

            try:
                return await asyncio.gather(*(one(i, p, t) for i, p, t in
                                              zip(frame["task_id"], frame["prompt"], frame["text"])))
            finally:
                bar.close()

    out = frame[["task_id", "step", "rollout_idx"]].copy()
    out["judge"] = pd.array(run_sync(go()), dtype="Float64") if len(frame) else []
    return out


def reference_signal(config: RunConfig, frame: "pd.DataFrame", *, progress: bool = True) -> "pd.DataFrame":
    """The reference-rubric score (`train.evaluate.grade_reference_async`: the Verifier, blind, one call per group)
    of each open-ended rollout of a `signal_frame` whose task has a reference rubric: what labels those rollouts in
    `analysis.signal_auc`, since they have no correctness. Each (task, step) group's rollouts are graded together,
    on the config's verifier endpoint (a local one is started).

    Returns records task_id, step, rollout_idx, reference_score (None where the grading failed; the count is
    printed). Rollouts of other tasks are not in it.
    """
    import asyncio

    import pandas as pd

    from ..analysis import REFERENCE_SCORE, run_task_map
    from ..llm import make_clients, run_sync
    from ..train.evaluate import grade_reference_async

    columns = ["task_id", "step", "rollout_idx", REFERENCE_SCORE]
    tasks = run_task_map(config.path)
    graded = frame[[bool(tasks.get(str(t)) and tasks[str(t)].family == "open_ended" and tasks[str(t)].rubric)
                    for t in frame["task_id"]]]
    if graded.empty:
        return pd.DataFrame(columns=columns)
    groups = [(key, part.sort_values("rollout_idx")) for key, part in graded.groupby(["task_id", "step"], sort=True)]
    config = resolve_endpoints(config, roles=("verifier",))  # started only now that there is something to grade

    async def go():
        async with make_clients(config) as clients:
            return await asyncio.gather(*(
                grade_reference_async(tasks[str(task_id)], list(part["text"]), clients.verifier, config,
                                      step=int(step))
                for (task_id, step), part in groups))

    grades = run_sync(go())
    rows = [{"task_id": task_id, "step": step, "rollout_idx": idx, REFERENCE_SCORE: score}
            for ((task_id, step), part), grade in zip(groups, grades)
            for idx, score in zip(part["rollout_idx"], grade.scores)]
    failed = sum(g.n_failed for g in grades)
    if progress:
        print(f"reference rubric: {len(rows) - failed} of {len(rows)} open-ended rollouts graded "
              f"({sum(g.calls for g in grades)} verifier calls); {failed} failed (left unlabelled, not scored 0)")
    return pd.DataFrame(rows, columns=columns)


def signal_table(
    config: RunConfig,
    signals: Sequence[str] = ("score", "logprob", "judge"),
    *,
    step: int | None = None,
    max_rollouts: int | None = None,
) -> "pd.DataFrame":
    """`analysis.signal_frame` of the run plus the signals asked for: "score" (rubric reward, always there),
    "logprob" (mean token log-prob under the white-box teacher `config.lopd_teacher_model`) and "judge" (the
    teacher-as-judge score through the `judge_role` endpoint, the Verifier's by default; local endpoints are
    started). `max_rollouts` keeps a
    seeded random subset so a CPU run stays short. Rollouts of open-ended tasks with a reference rubric also get
    their `reference_score` (`reference_signal`, through the Verifier's endpoint): their label in `signal_auc`."""
    from ..analysis import add_teacher_logprob, load_teacher, run_task_map, signal_frame

    unknown = sorted(set(signals) - {"score", "logprob", "judge"})
    if unknown:
        raise ValueError(f"signal_table: unknown signal(s) {unknown}; choose from score, logprob, judge")
    frame = signal_frame(config.path, step=step)
    if max_rollouts is not None and len(frame) > max_rollouts:
        frame = frame.sample(n=max_rollouts, random_state=config.seed).sort_index().reset_index(drop=True)
    if "judge" in signals:
        judged = judge_signal(resolve_endpoints(config, roles=(config.judge_role,)), frame)
        frame = frame.merge(judged, on=["task_id", "step", "rollout_idx"], how="left")
    if frame["correct"].isna().any():
        from ..analysis import REFERENCE_SCORE

        reference = reference_signal(config, frame)
        if len(reference):
            frame = frame.merge(reference, on=["task_id", "step", "rollout_idx"], how="left")
            frame[REFERENCE_SCORE] = frame[REFERENCE_SCORE].astype(float)
    if "logprob" in signals:
        model, tokenizer = load_teacher(config.lopd_teacher_model, dtype=config.student_dtype)
        frame = add_teacher_logprob(frame, model, tokenizer, tasks=run_task_map(config.path), config=config)
    return frame


def save_table(config: RunConfig | str | Path, name: str, frame: "pd.DataFrame") -> Path:
    """Write a result table into the run directory as `<name>.jsonl` (the batch index collects `signal_auc`)."""
    target = _path(config) / f"{name}.jsonl"
    records_ = json.loads(frame.to_json(orient="records"))  # NaN -> null, numpy -> plain types
    rundir.write_jsonl(target, records_)
    return target
