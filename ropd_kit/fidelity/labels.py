"""Reward fidelity, the labels: ground-truth correctness of each rollout, and the teacher's competence per task.

The study scores a bank of student rollouts against ground truth, which ROPD itself never sees: these labels are
for measuring the reward (stage 5), not for computing it. `label_correct` marks each text right or wrong with
the evaluation's own check (`answers.correctness` by the task's family when the tasks are at hand, else
`answers.is_correct` on the answer alone); `teacher_competence` marks each task by whether a strict
majority of the teacher's references are right. A reward distilled from a teacher cannot beat the teacher, so the
study splits every number by `teacher_competent` (see `stats.split_by`). Pure and synchronous.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import pandas as pd

from ..answers import checkable, correctness, independent_correctness, is_correct


def _task_or_answer(row: dict[str, Any], key: str) -> Any:
    """A tasks.jsonl row as a Task (checked by its family), or its bare answer when the row is not a whole task."""
    from ..data import TaskError, task_from_record

    record = {k: v for k, v in row.items() if not _missing(v)}
    record["id"] = record.pop(key, None)
    try:
        return task_from_record(record, f"task {record['id']}")
    except (TaskError, ValueError, TypeError):
        return row.get("answer")


def _truth(ground_truth: Mapping[str, Any] | pd.DataFrame) -> Mapping[str, Any]:
    """task_id -> Task or ground-truth answer."""
    if isinstance(ground_truth, pd.DataFrame):
        key = "id" if "id" in ground_truth.columns else "task_id"
        if "prompt" in ground_truth.columns:
            return {row[key]: _task_or_answer(row, key) for row in ground_truth.to_dict("records")}
        return dict(zip(ground_truth[key], ground_truth["answer"]))
    return ground_truth


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _unlabelled(truth: Any) -> bool:
    # An open-ended task (or one without an answer) has nothing to check a text against.
    return not checkable(truth) if hasattr(truth, "family") else _missing(truth)


def _right(truth: Any, body: Any) -> bool | None:
    if _unlabelled(truth) or _missing(body):
        return None
    if hasattr(truth, "family"):
        return bool(correctness(truth, str(body)))
    return bool(is_correct(str(truth), str(body)))


def label_correct(
    frame: pd.DataFrame,
    ground_truth: Mapping[str, Any] | pd.DataFrame,
    *,
    text: str = "text",
    task: str = "task_id",
    label: str = "correct",
) -> pd.DataFrame:
    """A copy of `frame` (rollouts or teacher references) with a `label` column: is each text right?

    `ground_truth`: task_id -> Task (checked by its family, `answers.correctness`) or answer (`answers.is_correct`),
    or a tasks frame (tasks.jsonl: whole tasks; or just `id`/`task_id` and `answer`). A task without a ground-truth
    answer (an open-ended one included), or a missing text, gets None (an unlabelled row, left out of every AUC).
    """
    truth = _truth(ground_truth)
    labels = [_right(truth.get(task_id), body) for task_id, body in zip(frame[task], frame[text])]
    out = frame.copy()
    out[label] = pd.Series(labels, index=frame.index, dtype=object)
    return out


def teacher_competence(
    refs: pd.DataFrame,
    ground_truth: Mapping[str, Any] | pd.DataFrame,
    *,
    text: str = "text",
    task: str = "task_id",
) -> pd.DataFrame:
    """One row per task of `refs` (teacher_refs.jsonl): n_refs, n_right, teacher_competent.

    `teacher_competent` is True when a strict majority of the task's references are right (2 of 4 is not), None
    when the task has no ground truth. References with no text count as wrong.
    """
    truth = _truth(ground_truth)
    labelled = label_correct(refs, truth, text=text, task=task, label="_right")
    rows = []
    for task_id, part in labelled.groupby(task, sort=True):
        n_refs = int(len(part))
        if _unlabelled(truth.get(task_id)):
            rows.append({task: task_id, "n_refs": n_refs, "n_right": None, "teacher_competent": None})
            continue
        n_right = int(part["_right"].map(lambda v: v is True).sum())
        rows.append({task: task_id, "n_refs": n_refs, "n_right": n_right, "teacher_competent": 2 * n_right > n_refs})
    frame = pd.DataFrame(rows, columns=[task, "n_refs", "n_right", "teacher_competent"])
    for column in ("n_right", "teacher_competent"):  # None stays None (not NaN)
        frame[column] = pd.Series([r[column] for r in rows], index=frame.index, dtype=object)
    return frame


# ---------------------------------------------------------------------------------------------------------------
# A second, independent label


def label_agreement(
    frame: pd.DataFrame,
    tasks: Mapping[str, Any],
    check: Callable[[Any, str | None], bool | None] | None = None,
    *,
    label: str = "correct",
    text: str = "text",
    task: str = "task_id",
    n_examples: int = 5,
) -> dict[str, Any]:
    """How often a second check of each checkable answer disagrees with its primary label.

    The primary label (`label`: ground truth read by the family's extractor, or the label a bank came with) and the
    consensus check can share a blind spot when they read answers the same way; an independent check shows it as
    disagreement. `tasks`: task_id -> Task; `check(task, text)` -> bool or None (default
    `answers.independent_correctness`: math-verify on the whole text, or the last line's option letter).
    Answers of tasks the check cannot decide (open-ended, no answer) or with no primary label are not counted.

    Returns: check (its name), n_checked, n_disagree, disagreement_rate, and up to `n_examples` disagreements
    (task_id, the row's keys, primary, independent, the start of the text).
    """
    check = check if check is not None else independent_correctness
    keys = [k for k in ("step", "rollout_idx") if k in frame.columns]
    n_checked = n_disagree = 0
    examples: list[dict[str, Any]] = []
    for row in frame.to_dict("records"):
        primary = row.get(label)
        the_task = tasks.get(row[task])
        if the_task is None or _missing(primary) or not checkable(the_task):
            continue
        second = check(the_task, None if _missing(row.get(text)) else str(row[text]))
        if second is None:
            continue
        n_checked += 1
        if bool(second) != bool(primary):
            n_disagree += 1
            if len(examples) < n_examples:
                examples.append({task: row[task], **{k: row[k] for k in keys}, "primary": bool(primary),
                                 "independent": bool(second), "text": str(row.get(text) or "")[:200]})
    return {"check": getattr(check, "__name__", str(check)), "n_checked": n_checked, "n_disagree": n_disagree,
            "disagreement_rate": n_disagree / n_checked if n_checked else None, "examples": examples}
