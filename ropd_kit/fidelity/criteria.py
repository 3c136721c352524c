"""Reward fidelity, per criterion: where between rubric and verdict is the link to correctness lost?

The rubric reward is a weighted pass rate over criteria (ROPD stage 5, `scoring.weighted_pass_rate`), so when the
reward fails to follow correctness, the loss sits in particular criteria. This module reads the rubrics and the
verifier's per-criterion verdicts of a bank whose rollouts carry ground-truth labels, and asks two questions:

- Verdicts (stage 4, the Verifier): per criterion category, how often does the verdict agree with correctness
  (`criterion_verdicts` -> `agreement_table`)? For the rubric's final-result criterion the verdict should be True
  exactly when the rollout is right; for other criteria agreement is informative, not required. The table also
  gives each category's *discrimination*: pass rate on right rollouts minus pass rate on wrong ones (1 separates
  perfectly, 0 not at all, negative rewards wrong answers).
- Rubrics (stage 3, the Rubricator): does the rubric have a final-result criterion, and does it name the right
  value (`result_value_check` -> `result_value_summary`)? A criterion "States the final answer 41" on a task
  whose answer is 42 makes the Verifier reward wrong answers however well it reads.

`group_criterion_table` gives the same per-criterion view for one group (the inspector's table): scoring's
`rubric_diagnostics` plus agreement with correctness. Which criterion is the final-result one is the consensus
check's own rule (`consensus.find_result_criterion`), so the study measures the criterion the reward decides by.
Pure and synchronous: no I/O, no model calls.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from ..answers import is_correct
from ..consensus import _norm_category, find_result_criterion, named_value
from ..scoring import _criteria_table, rubric_diagnostics

VERDICT_KEYS = ("task_id", "step")


def _records(data: Any) -> list[dict[str, Any]]:
    if isinstance(data, pd.DataFrame):
        return data.to_dict("records")
    return [dict(r) for r in data]


# ---------------------------------------------------------------------------------------------------------------
# The final-result criterion (which one it is, and the value it names: `consensus.find_result_criterion`,
# `consensus.named_value`, the rules the consensus check decides by)


def same_value(truth: str | None, value: str | None) -> bool | None:
    """Whether `value` (a named or extracted final answer) is the ground truth, by `answers.is_correct`;
    None when there is no ground truth."""
    if truth is None or (isinstance(truth, float) and np.isnan(truth)):
        return None
    if value is None:
        return False
    return is_correct(str(truth), f"\\boxed{{{value}}}")


def _latest_rubrics(rubrics: Any) -> dict[tuple, dict[str, Any]]:
    """(task_id, step) -> rubric record; a record appended later for the same group wins (a replayed step)."""
    out: dict[tuple, dict[str, Any]] = {}
    for record in _records(rubrics):
        out[(record["task_id"], record.get("step", 0))] = record
    return out


def result_value_check(rubrics: Any, ground_truth: Mapping[str, Any] | pd.DataFrame) -> pd.DataFrame:
    """One row per rubric: its final-result criterion and whether the value it names is the ground truth.

    `rubrics`: rubrics.jsonl records (task_id, step, criteria). `ground_truth`: task_id -> answer, or a tasks
    frame with `id` (or `task_id`) and `answer`. Columns: task_id, step, n_criteria, result_idx, result_id,
    result_text, result_category, result_points, named_value, names_value, names_right_value (None when the task
    has no ground truth or the rubric no result criterion).
    """
    truth = _truth_map(ground_truth)
    rows = []
    for (task_id, step), record in _latest_rubrics(rubrics).items():
        criteria = _criteria_table(record)
        k = find_result_criterion(criteria)
        row: dict[str, Any] = {"task_id": task_id, "step": step, "n_criteria": len(criteria), "result_idx": k,
                               "result_id": None, "result_text": None, "result_category": None,
                               "result_points": None, "named_value": None, "names_value": False,
                               "names_right_value": None}
        if k is not None:
            c = criteria[k]
            value = named_value(c["text"])
            row.update(result_id=c["id"], result_text=c["text"], result_category=c["category"],
                       result_points=c["points"], named_value=value, names_value=value is not None,
                       names_right_value=same_value(truth.get(task_id), value))
        rows.append(row)
    columns = ["task_id", "step", "n_criteria", "result_idx", "result_id", "result_text", "result_category",
               "result_points", "named_value", "names_value", "names_right_value"]
    frame = pd.DataFrame(rows, columns=columns)
    # Keep None as None (pandas would turn it into NaN, and the strings' None into a missing str).
    for column in ("result_idx", "result_id", "result_text", "result_category", "result_points", "named_value",
                   "names_right_value"):
        frame[column] = pd.Series([r[column] for r in rows], index=frame.index, dtype=object)
    return frame


def result_value_summary(table: pd.DataFrame) -> dict[str, Any]:
    """Counts from `result_value_check`: how often a rubric's result criterion names the right value.

    Returns n_rubrics, n_with_result, n_naming_value, n_checked (result criterion and ground truth present),
    n_right, share_right (n_right / n_rubrics with ground truth: a rubric without a result criterion counts as not
    naming the right value), share_right_of_named (n_right / rubrics naming a value), None where a share's
    denominator is 0.
    """
    checked = table["names_right_value"].map(lambda v: v is not None)
    has_result = table["result_idx"].notna()
    # Rubrics of tasks with ground truth: those checked, plus those without a result criterion (nothing to check).
    truth_known = checked | ~has_result
    right = table["names_right_value"].map(lambda v: v is True)
    named_checked = checked & table["names_value"].astype(bool)
    n_truth = int(truth_known.sum())
    n_named = int(named_checked.sum())
    return {
        "n_rubrics": int(len(table)),
        "n_with_result": int(has_result.sum()),
        "n_naming_value": int(table["names_value"].astype(bool).sum()),
        "n_checked": int(checked.sum()),
        "n_right": int(right.sum()),
        "share_right": float(right.sum() / n_truth) if n_truth else None,
        "share_right_of_named": float(right[named_checked].sum() / n_named) if n_named else None,
    }


def _truth_map(ground_truth: Mapping[str, Any] | pd.DataFrame) -> Mapping[str, Any]:
    if isinstance(ground_truth, pd.DataFrame):
        key = "id" if "id" in ground_truth.columns else "task_id"
        return dict(zip(ground_truth[key], ground_truth["answer"]))
    return ground_truth


# ---------------------------------------------------------------------------------------------------------------
# Verdicts against correctness


def criterion_verdicts(
    rubrics: Any,
    verdicts: Any,
    *,
    label: str = "correct",
    source: str | None = "student",
) -> pd.DataFrame:
    """Verdict records spread to one row per (answer, criterion), beside the answer's correctness.

    `rubrics`: rubrics.jsonl records; `verdicts`: verdicts.jsonl records (task_id, step, answer_key, source,
    judgements in rubric order, score) with a boolean `label` column joined on. Only answers of `source` are kept
    (None keeps all). Every other column of a verdict record (score, teacher_competent, ...) is carried along.
    Answers whose judgements are None (judging failed) or whose label is missing, and answers of a group without
    a rubric, are left out and counted in `frame.attrs` (n_failed, n_unlabelled, n_no_rubric).

    Columns: the verdict's columns (less judgements), criterion_idx, criterion_id, criterion_text, category
    (normalised: lower case, "_" for spaces), points, is_result (the rubric's final-result criterion), verdict,
    agrees (verdict == label).
    """
    table = _latest_rubrics(rubrics)
    parsed = {key: _criteria_table(record) for key, record in table.items()}
    results = {key: find_result_criterion(criteria) for key, criteria in parsed.items()}
    rows: list[dict[str, Any]] = []
    counts = {"n_failed": 0, "n_unlabelled": 0, "n_no_rubric": 0}
    for record in _records(verdicts):
        if source is not None and record.get("source", "student") != source:
            continue
        key = (record["task_id"], record.get("step", 0))
        judgements = record.get("judgements")
        correct = record.get(label)
        if key not in parsed:
            counts["n_no_rubric"] += 1
            continue
        if judgements is None or (isinstance(judgements, float) and np.isnan(judgements)):
            counts["n_failed"] += 1
            continue
        if correct is None or (isinstance(correct, float) and np.isnan(correct)) or correct is pd.NA:
            counts["n_unlabelled"] += 1
            continue
        criteria = parsed[key]
        if len(judgements) != len(criteria):
            raise ValueError(
                f"task {key[0]!r} step {key[1]} answer {record.get('answer_key')!r}: {len(judgements)} judgements, "
                f"the rubric has {len(criteria)} criteria"
            )
        base = {k: v for k, v in record.items() if k != "judgements"}
        for k, (c, verdict) in enumerate(zip(criteria, judgements)):
            rows.append({**base, "criterion_idx": k, "criterion_id": c["id"], "criterion_text": c["text"],
                         "category": _norm_category(c["category"]), "points": c["points"],
                         "is_result": k == results[key], "verdict": bool(verdict),
                         "agrees": bool(verdict) == bool(correct)})
    frame = pd.DataFrame(rows)
    if frame.empty:
        frame = pd.DataFrame(columns=["task_id", "step", "answer_key", "source", label, "criterion_idx",
                                      "criterion_id", "criterion_text", "category", "points", "is_result",
                                      "verdict", "agrees"])
    frame.attrs.update(counts)
    return frame


def agreement_table(long: pd.DataFrame, by: str | Sequence[str] = "category", label: str = "correct") -> pd.DataFrame:
    """Per value of `by` (a column of `criterion_verdicts`): how well the verdicts track correctness.

    Columns: the `by` columns, n (verdicts), n_criteria (distinct criteria: task, step, criterion id), n_right /
    n_wrong (verdicts on right / wrong answers), agreement (share of verdicts equal to correctness), pass_rate,
    pass_rate_right, pass_rate_wrong, discrimination (pass_rate_right - pass_rate_wrong; NaN when a side is empty).
    Sorted by n, largest first. `by="is_result"` compares the result criterion with the rest.
    """
    keys = [by] if isinstance(by, str) else list(by)
    columns = keys + ["n", "n_criteria", "n_right", "n_wrong", "agreement", "pass_rate", "pass_rate_right",
                      "pass_rate_wrong", "discrimination"]
    if long.empty:
        return pd.DataFrame(columns=columns)
    data = long.assign(_y=long[label].astype(bool), _v=long["verdict"].astype(bool))
    rows = []
    for values, part in data.groupby(keys, sort=False, dropna=False):
        values = values if isinstance(values, tuple) else (values,)
        right = part.loc[part["_y"], "_v"]
        wrong = part.loc[~part["_y"], "_v"]
        p_right = float(right.mean()) if len(right) else float("nan")
        p_wrong = float(wrong.mean()) if len(wrong) else float("nan")
        rows.append({
            **dict(zip(keys, values)),
            "n": int(len(part)),
            "n_criteria": int(part[["task_id", "step", "criterion_id"]].drop_duplicates().shape[0]),
            "n_right": int(len(right)),
            "n_wrong": int(len(wrong)),
            "agreement": float((part["_v"] == part["_y"]).mean()),
            "pass_rate": float(part["_v"].mean()),
            "pass_rate_right": p_right,
            "pass_rate_wrong": p_wrong,
            "discrimination": p_right - p_wrong,
        })
    return pd.DataFrame(rows, columns=columns).sort_values("n", ascending=False, kind="stable").reset_index(drop=True)


def verdict_coverage(verdicts: Any) -> pd.DataFrame:
    """Per source (teacher / student): answers, answers without a verdict (judging failed) and their share."""
    rows: dict[str, dict[str, int]] = {}
    for record in _records(verdicts):
        j = record.get("judgements")
        failed = j is None or (isinstance(j, float) and np.isnan(j))
        row = rows.setdefault(record.get("source", "student"), {"n": 0, "n_failed": 0})
        row["n"] += 1
        row["n_failed"] += int(failed)
    return pd.DataFrame(
        [{"source": s, **r, "failure_rate": r["n_failed"] / r["n"]} for s, r in sorted(rows.items())],
        columns=["source", "n", "n_failed", "failure_rate"],
    )


# ---------------------------------------------------------------------------------------------------------------
# One group (the inspector)


def group_criterion_table(
    rubric: Any,
    teacher_judgements: Sequence[Sequence[bool] | None] | None,
    student_judgements: Sequence[Sequence[bool] | None],
    student_correct: Iterable[bool | None],
) -> pd.DataFrame:
    """scoring's `rubric_diagnostics` for one group, plus each criterion's agreement with correctness.

    Added columns: is_result, agreement (share of judged, labelled student rollouts whose verdict equals their
    correctness), pass_rate_right, pass_rate_wrong, correct_discrimination (pass_rate_right - pass_rate_wrong;
    named so because `rubric_diagnostics`' own `discrimination` is the verdict's spread, sqrt(p(1-p))). NaN where
    no rollout of a kind was judged.
    """
    frame = rubric_diagnostics(rubric, teacher_judgements, student_judgements)
    correct = list(student_correct)
    if len(correct) != len(student_judgements):
        raise ValueError(f"{len(correct)} correctness labels for {len(student_judgements)} student rollouts")
    pairs = [(j, c) for j, c in zip(student_judgements, correct) if j is not None and c is not None]
    n = len(frame)
    matrix = np.array([j for j, _ in pairs], dtype=float).reshape(len(pairs), n)
    y = np.array([bool(c) for _, c in pairs], dtype=bool)
    with np.errstate(invalid="ignore"):
        agreement = (matrix == y[:, None]).mean(axis=0) if len(y) else np.full(n, np.nan)
        right = matrix[y].mean(axis=0) if y.any() else np.full(n, np.nan)
        wrong = matrix[~y].mean(axis=0) if (~y).any() else np.full(n, np.nan)
    k = find_result_criterion(rubric)
    frame["is_result"] = [i == k for i in range(n)]
    frame["agreement"] = agreement
    frame["pass_rate_right"] = right
    frame["pass_rate_wrong"] = wrong
    frame["correct_discrimination"] = right - wrong
    return frame
