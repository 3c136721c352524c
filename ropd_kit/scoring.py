"""ROPD stage 5: from per-criterion verdicts to rewards, advantages and rubric diagnostics.

In: a rubric's integer points w_k and the verifier's booleans v_ik (answer i, criterion k). Out: the reward
`s_i = Σ_k w_k v_ik / (Σ_k w_k + ε)` per answer (always in [0, 1]; recomputed here from the booleans, never taken
from a judge's own total), GRPO advantages computed exactly as TRL 1.16 computes them, and a per-criterion table
that says which criteria separate answers and which are dead weight.

With pitfall criteria (negative points, Rubrics-as-Rewards style) the reward is
`clamp(Σ_k w_k v_ik / Σ_{w_k>0} w_k, 0, 1)`; a met pitfall subtracts its points.
Soft verdicts put the Verifier's probability p_ik that criterion k is met where the boolean stood
(`weighted_score`): the same two formulas with p_ik for v_ik, so booleans give exactly `weighted_pass_rate`.
The weights w_k are the rubric's points, except where a lever changes them for scoring (`effective_weights`):
the code-checked final-result criterion raised to its share (`result_weighted`), then, with
`criterion_weighting="spread"`, criteria that do not separate the group's answers weighted down (`spread_weighted`).
This module is pure and synchronous: no I/O, no model calls.
"""

from __future__ import annotations

import math
import warnings
from contextlib import contextmanager
from typing import Any, Iterator, Literal, Sequence

import numpy as np

# TRL 1.16 GRPOTrainer._generate_and_score_completions divides by (std + 1e-4) (grpo_trainer.py, line 2787:
# `advantages = advantages / (std_rewards + 1e-4)`), so this is the default here too: same numbers as training.
TRL_STD_EPS = 1e-4

Scale = Literal["group", "batch", "none"]


def _is_bool(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_))


def _check_points(points: Sequence[float], *, pitfalls: bool) -> list[float]:
    out: list[float] = []
    for k, w in enumerate(points, start=1):
        if _is_bool(w) or not isinstance(w, (int, float, np.integer, np.floating)) or not math.isfinite(w):
            raise ValueError(f"criterion {k}: points {w!r} is not a finite number")
        if w < 0 and not pitfalls:
            raise ValueError(f"criterion {k}: points {w} is negative; negative (pitfall) points need pitfalls=True")
        out.append(float(w))
    if not out:
        raise ValueError("rubric has no criteria")
    if sum(w for w in out if w > 0) <= 0:
        raise ValueError("rubric has zero total weight (no criterion with positive points)")
    return out


def weighted_pass_rate(
    points: Sequence[float],
    judgements: Sequence[Sequence[bool]],
    eps: float = 1e-6,
    *,
    pitfalls: bool = False,
) -> list[float]:
    """The reward s_i of each answer: the share of the rubric's points whose criteria the answer meets.

    `judgements[i][k]` is whether answer i meets criterion k (booleans only: a judge's failure is not a False and
    must be handled before scoring). Without pitfalls: `Σ w_k v_ik / (Σ w_k + eps)`, which is < 1 by design so
    that an all-met answer scores 1 - O(eps). With `pitfalls=True`: `clamp(Σ w_k v_ik / Σ_{w_k>0} w_k, 0, 1)`.

    >>> weighted_pass_rate([5, 2, 1], [[True, False, True], [False, False, False]], eps=0)
    [0.75, 0.0]
    """
    points = getattr(points, "points", points)  # a Rubric works too
    weights = _check_points(points, pitfalls=pitfalls)
    n = len(weights)
    positive = sum(w for w in weights if w > 0)
    scores: list[float] = []
    for i, row in enumerate(judgements):
        if row is None:
            raise ValueError(f"answer {i + 1} has no judgement (None); score only the answers that were judged")
        if len(row) != n:
            raise ValueError(f"answer {i + 1} has {len(row)} judgements, the rubric has {n} criteria")
        bad = next((k for k, v in enumerate(row) if not _is_bool(v)), None)
        if bad is not None:
            raise ValueError(f"answer {i + 1}, criterion {bad + 1}: {row[bad]!r} is not a boolean")
        met = sum(w for w, v in zip(weights, row) if v)
        if pitfalls:
            s = min(max(met / positive, 0.0), 1.0)
        else:
            s = met / (positive + eps)
        scores.append(float(s))
    return scores


def _is_probability(value: Any) -> bool:
    return (
        _is_bool(value)
        or (isinstance(value, (int, float, np.integer, np.floating)) and math.isfinite(value) and 0 <= value <= 1)
    )


def weighted_score(
    points: Sequence[float],
    values: Sequence[Sequence[float | bool]],
    eps: float = 1e-6,
    *,
    pitfalls: bool = False,
) -> list[float]:
    """The reward s_i of each answer from per-criterion probabilities (soft verdicts) or booleans.

    `values[i][k]` is the probability, in [0, 1], that answer i meets criterion k (a boolean counts as 0 or 1).
    Without pitfalls: `Σ w_k p_ik / (Σ w_k + eps)`; with `pitfalls=True`: `clamp(Σ w_k p_ik / Σ_{w_k>0} w_k, 0, 1)`,
    so a likely-met pitfall subtracts its points in proportion to how likely it is. With booleans this is exactly
    `weighted_pass_rate`.

    >>> weighted_score([5, 2, 1], [[0.9, 0.5, 0.0], [1.0, 0.0, 1.0]], eps=0)
    [0.6875, 0.75]
    >>> weighted_score([4, -2], [[1.0, 0.5]], pitfalls=True)   # (4 - 2 * 0.5) / 4
    [0.75]
    """
    points = getattr(points, "points", points)  # a Rubric works too
    weights = _check_points(points, pitfalls=pitfalls)
    n = len(weights)
    positive = sum(w for w in weights if w > 0)
    scores: list[float] = []
    for i, row in enumerate(values):
        if row is None:
            raise ValueError(f"answer {i + 1} has no verdicts (None); score only the answers that were judged")
        if len(row) != n:
            raise ValueError(f"answer {i + 1} has {len(row)} verdicts, the rubric has {n} criteria")
        bad = next((k for k, v in enumerate(row) if not _is_probability(v)), None)
        if bad is not None:
            raise ValueError(f"answer {i + 1}, criterion {bad + 1}: {row[bad]!r} is not a probability in [0, 1]")
        met = sum(w * float(v) for w, v in zip(weights, row))
        if pitfalls:
            s = min(max(met / positive, 0.0), 1.0)
        else:
            s = met / (positive + eps)
        scores.append(float(s))
    return scores


def result_weighted(points: Sequence[float], result_index: int | None, share: float) -> list[float]:
    """The weights that score a group whose final-result criterion was decided by code (`RunConfig.result_weight_share`):
    that criterion's weight is raised, where needed, to `share` of the positive points, so a right final answer
    outweighs everything else the rubric asks for. The rubric's own points stay on record; only scoring uses these.
    `share` 0 or no result criterion: the points unchanged.

    >>> result_weighted([5, 4, 3, 2], 0, 0.75)   # the other criteria hold 9 points: the result gets 27 (75% of 36)
    [27.0, 4.0, 3.0, 2.0]
    >>> result_weighted([5, 1], 0, 0.75), result_weighted([5, 4], None, 0.75)
    ([5.0, 1.0], [5.0, 4.0])
    """
    weights = [float(w) for w in points]
    if not share or result_index is None or not 0 <= result_index < len(weights):
        return weights
    if not 0 < share < 1:
        raise ValueError(f"result share {share!r} must lie in (0, 1)")
    rest = sum(w for k, w in enumerate(weights) if k != result_index and w > 0)
    weights[result_index] = max(weights[result_index], share / (1 - share) * rest)
    return weights


def criterion_spread(values: Sequence[Sequence[float | bool] | None], n_criteria: int) -> list[dict[str, Any]]:
    """How each criterion varies over a set of answers (one group's student rollouts, or its teacher refs).

    `values[i][k]` is answer i's verdict on criterion k: a boolean, or the probability of a soft verdict; answers
    without a verdict (None) are left out. Per criterion: `met`, the share of the answers meeting it (the mean
    probability for soft verdicts), `std`, its population standard deviation over the answers (sqrt(met(1-met)) for
    booleans, 0 to 0.5; `rubric_diagnostics`' discrimination), and `n`, the answers counted. `met` and `std` are None
    when no answer was judged.

    >>> criterion_spread([[True, True], [True, False], None], 2)
    [{'met': 1.0, 'std': 0.0, 'n': 2}, {'met': 0.5, 'std': 0.5, 'n': 2}]
    """
    rows = [list(v) for v in values if v is not None]
    for i, row in enumerate(rows):
        if len(row) != n_criteria:
            raise ValueError(f"answer {i + 1} has {len(row)} verdicts, the rubric has {n_criteria} criteria")
        bad = next((k for k, v in enumerate(row) if not _is_probability(v)), None)
        if bad is not None:
            raise ValueError(f"answer {i + 1}, criterion {bad + 1}: {row[bad]!r} is not a probability in [0, 1]")
    if not rows:
        return [{"met": None, "std": None, "n": 0} for _ in range(n_criteria)]
    matrix = np.array(rows, dtype=np.float64).reshape(len(rows), n_criteria)
    return [{"met": float(matrix[:, k].mean()), "std": float(matrix[:, k].std()), "n": len(rows)}
            for k in range(n_criteria)]


def one_answer_spread(n_answers: int) -> float:
    """The spread of a criterion on which exactly one of `n_answers` answers differs from the rest:
    sqrt(1/n · (1 - 1/n)), the smallest spread a boolean verdict that separates anything can have."""
    return math.sqrt(n_answers - 1) / n_answers if n_answers >= 2 else 0.0


def spread_weighted(points: Sequence[float], spreads: Sequence[float | None], n_answers: int) -> list[float]:
    """The weights of `RunConfig.criterion_weighting="spread"`: each criterion's points times how much its verdicts
    vary across the group's answers, so a criterion that does not separate the current answers stops counting.

    factor_k = min(1, std_k / one_answer_spread(n)): 1 for any criterion that at least one answer of the group meets
    and another misses (every boolean criterion that separates anything keeps its full points), 0 for one that all
    answers meet or all miss, and in between only where soft verdicts' probabilities barely move (a criterion the
    Verifier finds met everywhere with p between 0.9 and 0.99 carries its noise, not a difference between answers).
    Criteria that do separate keep the Rubricator's relative points: weighting by the spread itself would rank a
    criterion half the group meets above one only the single best answer meets, which is often the decisive one.
    The weights are then rescaled so the positive points keep their total (a score is a ratio, so the rescaling
    changes no score; it keeps recorded weights comparable with the rubric's). Unchanged when every criterion
    separates equally, when fewer than two answers were judged, or when no positive criterion separates.

    What it changes: with group std-normalised advantages (`scale_rewards="group"`) and boolean verdicts, a
    criterion every answer meets or misses adds the same amount to every score, so dropping it changes no advantage
    (pitfalls' clamp at 0 aside). It does change advantages under `scale_rewards="none"` or `"batch"`, where such
    criteria dilute the score differences of their group, and with soft verdicts, where near-constant criteria add
    noise to the ranking.

    >>> spread_weighted([4, 2, 2], [0.5, 0.0, 0.5], 4)   # c2 is met (or missed) by every answer
    [5.333333333333333, 0.0, 2.6666666666666665]
    >>> spread_weighted([4, 2, 2], [0.45, 0.5, 0.5], 4)  # every criterion separates: the points as they were
    [4.0, 2.0, 2.0]
    """
    weights = [float(w) for w in points]
    if len(spreads) != len(weights):
        raise ValueError(f"{len(spreads)} spreads for {len(weights)} criteria")
    reference = one_answer_spread(n_answers)
    if reference <= 0:
        return weights
    # A boolean criterion one answer misses has exactly the reference spread; rounding (float, or a spread read
    # back from a record) must not shave it.
    factors = [0.0 if s is None or not math.isfinite(s) else 1.0 if s >= reference - 1e-6 else max(0.0, s) / reference
               for s in spreads]
    scaled = [w * f for w, f in zip(weights, factors)]
    before = sum(w for w in weights if w > 0)
    after = sum(w for w in scaled if w > 0)
    if after <= 0 or before <= 0:
        return weights
    return [w * before / after for w in scaled]


def effective_weights(
    points: Sequence[float],
    *,
    result_index: int | None = None,
    result_share: float = 0.0,
    spreads: Sequence[float | None] | None = None,
    n_answers: int = 0,
) -> list[float]:
    """The weights a group is scored with: `result_weighted` first, then `spread_weighted` when `spreads` are given.

    In that order so that each keeps its promise: a code-checked result that separates the answers keeps at least
    its share (its spread factor is 1, the others' at most 1), and a result every answer shares is dropped like any
    criterion that separates nothing, instead of being raised to the share only to dilute the other criteria.

    >>> effective_weights([5, 4, 3], result_index=0, result_share=0.75, spreads=[0.5, 0.0, 0.5], n_answers=4)
    [24.5, 0.0, 3.5]
    """
    weights = result_weighted(points, result_index, result_share)
    if spreads is None:
        return weights
    return spread_weighted(weights, spreads, n_answers)


def batch_advantages(
    rewards: Sequence[float | None],
    num_generations: int,
    eps: float = TRL_STD_EPS,
    *,
    scale: Scale = "group",
) -> list[float]:
    """GRPO advantages of a flat batch whose groups of `num_generations` are adjacent, as TRL 1.16 computes them.

    Re-derived from `GRPOTrainer._generate_and_score_completions` (trl/trainer/grpo_trainer.py, lines 2763-2810,
    `multi_objective_aggregation="sum_then_normalize"`, one reward function):
    - a None reward (judging failed) becomes NaN, is left out of its group's mean and std, and gets advantage 0;
    - the baseline is the group mean; `scale="group"` divides by the group std, `"batch"` by the std of the whole
      batch, `"none"` does not divide (Dr.GRPO);
    - the std is TRL's `nanstd`: the *unbiased* (Bessel-corrected, n-1) sample std over non-NaN values, NaN when
      fewer than two values are present (so that group's advantages become 0).
    """
    if scale not in ("group", "batch", "none"):
        raise ValueError(f"scale must be 'group', 'batch' or 'none', got {scale!r}")
    if num_generations < 1 or len(rewards) % num_generations:
        raise ValueError(f"{len(rewards)} rewards do not split into groups of num_generations={num_generations}")
    r = np.array([np.nan if v is None else float(v) for v in rewards], dtype=np.float64)
    if r.size == 0:
        return []
    groups = r.reshape(-1, num_generations)
    with np.errstate(invalid="ignore", divide="ignore"), _quiet_nan_warnings():
        mean = np.nanmean(groups, axis=1, keepdims=True)
        advantages = groups - mean
        if scale != "none":
            if scale == "group":
                std = _nanstd(groups, axis=1) if num_generations > 1 else np.zeros_like(mean)
            else:
                std = np.full_like(mean, _nanstd(r, axis=None)) if r.size > 1 else np.zeros_like(mean)
            advantages = advantages / (std + eps)
    advantages = np.nan_to_num(advantages.reshape(-1), nan=0.0)
    # Equal rewards carry no signal; float rounding in the mean must not turn them into ±1e-12 advantages.
    for g, group in enumerate(groups):
        valid = group[~np.isnan(group)]
        if valid.size and np.all(valid == valid[0]):
            advantages[g * num_generations : (g + 1) * num_generations] = 0.0
    return [float(a) for a in advantages]


def group_advantages(
    scores: Sequence[float | None],
    eps: float = TRL_STD_EPS,
    *,
    scale: Scale = "group",
) -> list[float]:
    """The advantages of one group (one prompt's rollouts): `(s - mean) / (std + eps)`, or `s - mean` for "none".

    Same numbers as TRL's GRPO (see `batch_advantages`): unbiased std, None scores left out and given 0, an
    all-equal group gives all zeros. For a single group "batch" and "group" coincide.
    """
    if not scores:
        return []
    return batch_advantages(scores, len(scores), eps, scale=scale)


def _nanstd(values: np.ndarray, axis: int | None) -> np.ndarray | float:
    """TRL's `nanstd`: Bessel-corrected over non-NaN values; NaN where fewer than two values exist."""
    mean = np.nanmean(values, axis=axis, keepdims=True)
    variance = np.nanmean((values - mean) ** 2, axis=axis, keepdims=True)
    count = np.sum(~np.isnan(values), axis=axis, keepdims=True)
    correction = np.where(count > 1, count / np.maximum(count - 1, 1), np.nan)
    std = np.sqrt(variance * correction)
    return std if axis is not None else float(std.reshape(-1)[0])


@contextmanager
def _quiet_nan_warnings() -> Iterator[None]:
    # numpy warns on the mean of an all-NaN group (a fully failed group); that case is handled (advantage 0).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _criteria_table(rubric_or_points: Any) -> list[dict[str, Any]]:
    """(id, text, points, category) rows from a Rubric, a rubric record, a list of criterion dicts or of points."""
    criteria = getattr(rubric_or_points, "criteria", None)
    if criteria is None and isinstance(rubric_or_points, dict):
        criteria = rubric_or_points.get("criteria")
    if criteria is None:
        criteria = list(rubric_or_points)
    rows = []
    for k, c in enumerate(criteria):
        if hasattr(c, "model_dump"):
            c = c.model_dump()
        if isinstance(c, dict):
            rows.append(
                {
                    "id": c.get("id", f"c{k + 1}"),
                    "text": c.get("text", ""),
                    "points": c["points"],
                    "category": c.get("category"),
                }
            )
        else:
            rows.append({"id": f"c{k + 1}", "text": "", "points": c, "category": None})
    return rows


def _matrix(judgements: Sequence[Sequence[bool] | None] | None, n: int, who: str) -> np.ndarray:
    """Judged answers as a (answers × criteria) 0/1 matrix; answers without a judgement (None) are left out."""
    rows = [j for j in (judgements or []) if j is not None]
    for i, row in enumerate(rows):
        if len(row) != n:
            raise ValueError(f"{who} answer {i + 1} has {len(row)} judgements, the rubric has {n} criteria")
    return np.array(rows, dtype=np.float64).reshape(len(rows), n)


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def rubric_diagnostics(
    rubric_or_points: Any,
    teacher_judgements: Sequence[Sequence[bool] | None] | None,
    student_judgements: Sequence[Sequence[bool] | None] | None,
    *,
    pitfalls: bool | None = None,
):
    """One row per criterion: how often teachers and students meet it and whether it separates the rollouts.

    Judgements are booleans or, for soft verdicts, the probabilities the scores used (rates are then mean
    probabilities, and `dead` needs every probability at exactly 1 or 0). Columns:
    - id, text, points, category: the criterion (text/category empty when only points were given);
    - teacher_pass_rate, student_pass_rate: share of judged answers meeting it (NaN when none were judged);
    - gap: teacher_pass_rate - student_pass_rate (what distillation is meant to close);
    - discrimination: the population std of the criterion's verdict over the student rollouts, sqrt(p(1-p)),
      0 to 0.5 (`criterion_spread`'s std; what `spread_weighted` reads). GRPO learns only from differences inside
      a group, so a criterion every rollout meets (or misses) adds nothing to the advantages however many points
      it carries;
    - score_correlation: Pearson (point-biserial) correlation over the student rollouts between the verdict and the
      rollout's reward s_i (item-total, the criterion included); NaN when either side is constant;
    - dead: "all_pass" / "all_fail" when every judged answer, teacher and student, gets the same verdict, else None.
    Answers whose judgement is None (judging failed) are left out.
    """
    import pandas as pd

    rows = _criteria_table(rubric_or_points)
    n = len(rows)
    points = [r["points"] for r in rows]
    if pitfalls is None:
        pitfalls = any(p < 0 for p in points)
    teacher = _matrix(teacher_judgements, n, "teacher")
    student = _matrix(student_judgements, n, "student")
    student_scores = (
        np.array(weighted_score(points, student.tolist(), pitfalls=pitfalls))
        if len(student)
        else np.zeros(0)
    )
    both = np.vstack([teacher, student])
    with _quiet_nan_warnings():
        for k, row in enumerate(rows):
            t = teacher[:, k]
            s = student[:, k]
            row["teacher_pass_rate"] = float(t.mean()) if len(t) else float("nan")
            row["student_pass_rate"] = float(s.mean()) if len(s) else float("nan")
            row["gap"] = row["teacher_pass_rate"] - row["student_pass_rate"]
            row["discrimination"] = float(s.std()) if len(s) else float("nan")
            row["score_correlation"] = _pearson(s, student_scores)
            column = both[:, k]
            if len(column) and np.all(column == 1):
                row["dead"] = "all_pass"
            elif len(column) and np.all(column == 0):
                row["dead"] = "all_fail"
            else:
                row["dead"] = None
    columns = [
        "id", "text", "points", "category", "teacher_pass_rate", "student_pass_rate", "gap",
        "discrimination", "score_correlation", "dead",
    ]
    frame = pd.DataFrame(rows, columns=columns)
    # pandas' string dtype would turn None into NaN; keep None so that `dead is None` reads naturally.
    frame["dead"] = pd.Series([r["dead"] for r in rows], dtype=object, index=frame.index)
    return frame
