"""Reward fidelity, the labels: ground-truth correctness of each rollout, and the teacher's competence per task.

The study scores a bank of student rollouts against ground truth, which ROPD itself never sees: these labels are
for measuring the reward (stage 5), not for computing it. `label_correct` marks each text right or wrong with
`answers.is_correct` (the evaluation's own check); `teacher_competence` marks each task by whether a strict
majority of the teacher's references are right. A reward distilled from a teacher cannot beat the teacher, so the
study splits every number by `teacher_competent` (see `stats.split_by`). Pure and synchronous.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import pandas as pd

from ..answers import is_correct


def _truth(ground_truth: Mapping[str, Any] | pd.DataFrame) -> Mapping[str, Any]:
    if isinstance(ground_truth, pd.DataFrame):
        key = "id" if "id" in ground_truth.columns else "task_id"
        return dict(zip(ground_truth[key], ground_truth["answer"]))
    return ground_truth


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def label_correct(
    frame: pd.DataFrame,
    ground_truth: Mapping[str, Any] | pd.DataFrame,
    *,
    text: str = "text",
    task: str = "task_id",
    label: str = "correct",
) -> pd.DataFrame:
    """A copy of `frame` (rollouts or teacher references) with a `label` column: is each text right?

    `ground_truth`: task_id -> answer, or a tasks frame with `id` (or `task_id`) and `answer`. A task without a
    ground-truth answer, or a missing text, gets None (an unlabelled row, left out of every AUC).
    """
    truth = _truth(ground_truth)
    labels = []
    for task_id, body in zip(frame[task], frame[text]):
        answer = truth.get(task_id)
        labels.append(None if _missing(answer) or _missing(body) else bool(is_correct(str(answer), str(body))))
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
        if _missing(truth.get(task_id)):
            rows.append({task: task_id, "n_refs": n_refs, "n_right": None, "teacher_competent": None})
            continue
        n_right = int(part["_right"].map(lambda v: v is True).sum())
        rows.append({task: task_id, "n_refs": n_refs, "n_right": n_right, "teacher_competent": 2 * n_right > n_refs})
    frame = pd.DataFrame(rows, columns=[task, "n_refs", "n_right", "teacher_competent"])
    for column in ("n_right", "teacher_competent"):  # None stays None (not NaN)
        frame[column] = pd.Series([r[column] for r in rows], index=frame.index, dtype=object)
    return frame
