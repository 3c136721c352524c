"""What decided a reward: the Verifier's part, the code check's part, and groups whose rewards do not differ at all.

With the consensus check on, the rubric's final-result criterion of a checkable task is decided by code (the
answer against the teacher references' majority answer), and the result share can give it most of the weight. A
reward that ranks answers well may then be ranking them by code alone. This module splits each scored answer's
reward into what the Verifier decided and what the code decided, from the records the judging wrote:

- `reward_parts`: per answer, the reward (`score`), the Verifier-decided part (the answer's score over the criteria
  the code did not decide, with the weights the reward used — the record's `effective_weights`, else the rubric's
  points — through `scoring.weighted_score`, so probabilities of soft verdicts count as they do in the reward) and
  the consensus check alone (the code's verdict on the result criterion, 1 or 0; 0.5 where the check decided
  nothing for that answer: alone, it cannot rank those).
- `decided_summary`: how many answers and groups the check decided, and the mean of each part.
- `zero_spread`: the share of groups whose rewards are all equal (TRL logs it as `frac_reward_zero_std`): such a
  group has zero advantage everywhere and teaches nothing, whatever the reward's AUC.

Pure and synchronous: records in, DataFrames and dicts out.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from ..scoring import TRL_STD_EPS, batch_advantages, weighted_score

NO_DECISION = 0.5  # the check's value for an answer it did not decide: it neither raises nor lowers it
PART_COLUMNS = ["task_id", "step", "answer_idx", "rollout_idx", "reward", "verifier_part", "check", "checked"]


def verdict_values(record: Mapping[str, Any]) -> list | None:
    """The per-criterion values an answer's score was computed from: the probabilities of a soft verdict when the
    record holds them, else its booleans; None when it has no verdict."""
    values = record.get("probabilities")
    if values is None:
        values = record.get("judgements")
    if values is None or (isinstance(values, float) and math.isnan(values)):
        return None
    return list(values)


def _latest(rubrics: Iterable[Mapping[str, Any]]) -> dict[tuple[str, int], Mapping[str, Any]]:
    return {(r["task_id"], int(r.get("step", 0))): r for r in rubrics}


def _part(points: Sequence[float], values: Sequence[Any]) -> float | None:
    if not any(p > 0 for p in points):
        return None
    return weighted_score(list(points), [list(values)], eps=0.0, pitfalls=True)[0]


def reward_parts(rubrics: Iterable[Mapping[str, Any]], verdicts: Iterable[Mapping[str, Any]], *,
                 source: str | None = "student") -> pd.DataFrame:
    """One row per answer of `source` (None: every answer): task_id, step, answer_idx, rollout_idx, reward (the
    record's score), verifier_part, check and checked (whether code decided a criterion of this answer).

    The rubric is the group's record in rubrics.jsonl (with the criterion code added, if it added one); the
    criteria the code decided are the record's `checked_by_code` ids; the weights are the record's
    `effective_weights` where it has them. An answer without a verdict has None everywhere; a Verifier-decided part
    over no positive weight (the rubric held only the result) is None.
    """
    table = _latest(rubrics)
    rows = []
    for record in verdicts:
        if source is not None and record.get("source", "student") != source:
            continue
        key = (record["task_id"], int(record.get("step", 0)))
        row = {"task_id": key[0], "step": key[1], "answer_idx": record.get("answer_idx"),
               "rollout_idx": record.get("rollout_idx"), "reward": record.get("score"), "verifier_part": None,
               "check": None, "checked": False}
        values = verdict_values(record)
        criteria = (table.get(key) or {}).get("criteria") or []
        if values is not None and len(values) == len(criteria):
            checked = set(record.get("checked_by_code") or ())
            decided = [k for k, c in enumerate(criteria) if c["id"] in checked]
            rest = [k for k in range(len(criteria)) if k not in decided]
            weights = record.get("effective_weights")
            if weights is None or len(weights) != len(criteria):
                weights = [c["points"] for c in criteria]
            row["verifier_part"] = _part([weights[k] for k in rest], [values[k] for k in rest])
            row["checked"] = bool(decided)
            row["check"] = float(values[decided[0]]) if decided else NO_DECISION
        rows.append(row)
    frame = pd.DataFrame(rows, columns=PART_COLUMNS)
    for column in ("reward", "verifier_part", "check"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    frame["checked"] = frame["checked"].astype(bool)
    return frame


def _mean(values: pd.Series) -> float | None:
    values = values.dropna()
    return float(values.mean()) if len(values) else None


def decided_summary(parts: pd.DataFrame) -> dict[str, Any]:
    """How much of the reward code decided: answers and groups with a code-decided criterion, and the mean reward,
    Verifier-decided part and check (the check's mean over the answers it decided)."""
    scored = parts[parts["reward"].notna()]
    groups = scored.groupby(["task_id", "step"])["checked"].any() if len(scored) else pd.Series(dtype=bool)
    return {
        "answers": int(len(scored)),
        "answers_checked": int(scored["checked"].sum()),
        "share_checked": float(scored["checked"].mean()) if len(scored) else None,
        "groups": int(len(groups)),
        "groups_checked": int(groups.sum()),
        "mean_reward": _mean(scored["reward"]),
        "mean_verifier_part": _mean(scored["verifier_part"]),
        "mean_check": _mean(scored.loc[scored["checked"], "check"]),
    }


def zero_spread(scores: pd.DataFrame, score: str = "reward", group: Sequence[str] = ("task_id", "step"),
                groups: Iterable[tuple] | None = None) -> dict:
    """The share of groups whose scores are all equal (TRL's `frac_reward_zero_std`: the group's std is close to 0),
    over the groups with at least two scored answers; groups with fewer (judging failed) are counted apart, and so
    are those of `groups` (every group judged, as keys of the `group` columns) that `scores` has no row of (a
    group whose rubric failed leaves no verdict).

    >>> f = pd.DataFrame({"task_id": list("aabbc"), "step": 0, "reward": [0.5, 0.5, 0.2, 0.9, None]})
    >>> zero_spread(f)["frac_reward_zero_std"], zero_spread(f, groups=[("d", 0)])["n_groups_unscored"]
    (0.5, 2)
    """
    stds, unscored, seen = [], 0, set()
    if len(scores):
        values = pd.to_numeric(scores[score], errors="coerce")
        for key, part in values.groupby([scores[g] for g in group], sort=False):
            seen.add(tuple(key) if isinstance(key, tuple) else (key,))
            part = part.dropna()
            if len(part) < 2:
                unscored += 1
                continue
            stds.append(float(part.std(ddof=1)))
    unscored += len({tuple(k) for k in (groups or ())} - seen)
    zero = int(np.isclose(np.array(stds), 0.0, rtol=1e-5, atol=1e-8).sum()) if stds else 0
    return {"n_groups": len(stds), "n_zero_std": zero, "frac_reward_zero_std": zero / len(stds) if stds else None,
            "n_groups_unscored": unscored}


SCALES = ("group", "batch", "none")


def advantage_use(parts: pd.DataFrame, label: str = "label", *, prompts_per_step: int = 2,
                  scales: Sequence[str] = SCALES, eps: float = TRL_STD_EPS) -> dict[str, dict[str, Any]]:
    """Where the push of a GRPO step goes, per `scale_rewards`: the share of the advantages' total magnitude that
    moves answers the right way (a better-labelled answer up, a worse one down, relative to its group's mean
    label), the wrong way, or nowhere useful (groups whose answers share one label: there is nothing to learn from
    them, so any push there is noise), and the share that groups the consensus check decided nothing in carry.

    Advantages are TRL's: the group mean is the baseline; "group" divides by the group's std, "batch" by the std
    of the step's batch (`prompts_per_step` consecutive groups), "none" does not divide. Why it matters: with
    "group", a group whose rewards differ by Verifier noise alone gets the same push as one the reward separates
    clearly; "batch" and "none" scale that push down with the group's spread. `parts` needs task_id, step, reward,
    `label` (1/0 or graded) and, optionally, checked. Answers without a reward or a label are left out.

    >>> f = pd.DataFrame({"task_id": list("aabb"), "step": 0, "reward": [0.9, 0.1, 0.52, 0.50],
    ...                   "label": [1, 0, 0, 0]})
    >>> use = advantage_use(f)
    >>> round(use["group"]["tied_labels"], 2), round(use["batch"]["tied_labels"], 2)
    (0.5, 0.02)
    """
    unknown = sorted(set(scales) - set(SCALES))
    if unknown:
        raise ValueError(f"advantage_use: unknown scale(s) {unknown}; choose from {', '.join(SCALES)}")
    if prompts_per_step < 1:
        raise ValueError(f"advantage_use: prompts_per_step must be at least 1, got {prompts_per_step}")
    data = parts.copy()
    data["reward"] = pd.to_numeric(data["reward"], errors="coerce")
    data[label] = pd.to_numeric(data[label], errors="coerce")
    data = data[data["reward"].notna() & data[label].notna()]
    checked = data["checked"].astype(bool) if "checked" in data else pd.Series(False, index=data.index)
    groups = [g for _, g in data.groupby(["task_id", "step"], sort=False) if len(g) > 1]
    out: dict[str, dict[str, Any]] = {}
    for scale in scales:
        right = wrong = tied = unchecked = total = 0.0
        for start in range(0, len(groups), prompts_per_step):
            batch = groups[start:start + prompts_per_step]
            # Training's own advantages; groups of unequal size are padded with missing rewards, which TRL's
            # arithmetic leaves out of every mean and std.
            width = max(len(g) for g in batch)
            flat = [r for g in batch for r in [*g["reward"].tolist(), *[None] * (width - len(g))]]
            advantages = batch_advantages(flat, width, eps, scale=scale)
            for k, g in enumerate(batch):
                adv = np.array(advantages[k * width:k * width + len(g)])
                labels = g[label].to_numpy()
                direction = labels - labels.mean()
                mass = np.abs(adv)
                total += mass.sum()
                if not checked[g.index].any():
                    unchecked += mass.sum()
                if np.allclose(direction, 0.0):
                    tied += mass.sum()
                    continue
                agree = np.sign(adv) * np.sign(direction)
                right += mass[agree > 0].sum()
                wrong += mass[agree < 0].sum()
                tied += mass[agree == 0].sum()
        shares = {name: float(mass / total) if total > 0 else None
                  for name, mass in (("right", right), ("wrong", wrong), ("tied_labels", tied),
                                     ("unchecked_groups", unchecked))}
        out[scale] = {**shares, "n_groups": len(groups), "prompts_per_step": prompts_per_step}
    return out
