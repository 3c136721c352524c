"""Reward fidelity, the numbers: does a reward signal rank right rollouts above wrong ones, and how sure are we?

ROPD's claim is that the rubric reward follows correctness (the paper: ROC AUC about 0.90, against about 0.35 for the
teacher's log-likelihood). This module measures that claim on a bank of scored rollouts with ground-truth labels:

- `auc_with_ci`: pooled ROC AUC of a signal against correctness, with a percentile bootstrap interval that resamples
  *clusters* (tasks), not rows. Rollouts of one task share its difficulty, its rubric and its teacher references, so
  they are not independent draws; resampling rows would make the interval too narrow.
- `within_group_auc`: the probability that a right rollout outscores a wrong rollout *of the same group* (one prompt
  at one step), ties counted 1/2. GRPO only uses the ranking inside a group (advantages are centred per group), so
  this is the number that decides whether training moves the right way; a signal can rank well across tasks (easy
  tasks score high) and still be useless, or harmful, inside each group.
- `split_by`: any of these per stratum of a column (for the study, `teacher_competent`: whether the majority of the
  teacher's references are right), plus "all". A reward distilled from a teacher cannot beat the teacher; the split
  shows how much of the loss is the teacher's and how much the Rubricator's and Verifier's.
- `signal_summary` / `summary_frame`: every signal x {pooled, within-group} x stratum in one JSON-ready dict, and
  the same flattened into a table.

Every result is a plain dict of Python numbers (JSON-ready). An AUC that does not exist (one class only, no pair
inside any group) is None with a `note` that says why, never NaN. Pure and synchronous: no I/O, no model calls.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

ONE_CLASS = "undefined (one class)"
NO_DATA = "undefined (no rows)"
NO_PAIRS = "undefined (no group has both a right and a wrong rollout)"
NO_BOOT = "no interval (no bootstrap draw had both classes)"
GRADED_POOLED = "undefined (graded labels: only their order within a prompt is compared)"

# Bootstrap draws are evaluated in blocks whose (draws x cells) matrices stay around this many numbers.
_BLOCK_CELLS = 2_000_000


# ---------------------------------------------------------------------------------------------------------------
# Input cleaning


def _as_list(columns: str | Sequence[str] | None) -> list[str]:
    if columns is None:
        return []
    return [columns] if isinstance(columns, str) else list(columns)


def _clean(frame: pd.DataFrame, signal: str, label: str, keys: Sequence[str],
           graded: bool = False) -> tuple[pd.DataFrame, int]:
    """Rows with a finite signal and a label: columns `s` (float), `y` (bool; a finite float when `graded`) and the
    key columns."""
    for column in [signal, label, *keys]:
        if column not in frame.columns:
            raise KeyError(f"column {column!r} not in frame (columns: {list(frame.columns)})")
    s = pd.to_numeric(frame[signal], errors="coerce").astype(float)
    if graded:
        y = pd.to_numeric(frame[label], errors="coerce").astype(float)
        y = y.where(np.isfinite(y.fillna(0.0)))
    else:
        y = frame[label].astype("boolean")
    keep = s.notna() & np.isfinite(s.fillna(0.0)) & y.notna()
    for key in keys:
        keep &= frame[key].notna()
    out = pd.DataFrame({"s": s[keep].to_numpy(dtype=float),
                        "y": y[keep].to_numpy(dtype=float if graded else bool)})
    for key in keys:
        out[key] = frame.loc[keep, key].to_numpy()
    return out, int((~keep).sum())


def _codes(frame: pd.DataFrame, keys: Sequence[str]) -> np.ndarray:
    """One integer per row naming its value of `keys` (0..n_distinct-1); every row its own code when no keys."""
    if not keys:
        return np.arange(len(frame))
    return frame.groupby(list(keys), sort=True, dropna=False).ngroup().to_numpy()


def _interval(values: np.ndarray, level: float) -> tuple[float | None, float | None]:
    if values.size == 0:
        return None, None
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return float(low), float(high)


def _check_level(level: float, n_boot: int) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level}")
    if n_boot < 0:
        raise ValueError(f"n_boot must be >= 0, got {n_boot}")


def _draws(rng: np.random.Generator, n_clusters: int, n_boot: int, block: int):
    """Bootstrap draws as cluster multiplicities, (draws x clusters) blocks: sampling n_clusters with replacement."""
    p = np.full(n_clusters, 1.0 / n_clusters)
    done = 0
    while done < n_boot:
        size = min(block, n_boot - done)
        yield rng.multinomial(n_clusters, p, size=size).astype(np.float64)
        done += size


# ---------------------------------------------------------------------------------------------------------------
# Pooled ROC AUC with a cluster bootstrap


def _cell_counts(levels: np.ndarray, y: np.ndarray, clusters: np.ndarray, n_levels: int, n_clusters: int):
    """(clusters x levels) counts of right rows and of wrong rows, as sparse matrices."""
    from scipy import sparse

    ones = np.ones(len(levels))
    pos = sparse.csr_matrix((ones[y], (clusters[y], levels[y])), shape=(n_clusters, n_levels))
    neg = sparse.csr_matrix((ones[~y], (clusters[~y], levels[~y])), shape=(n_clusters, n_levels))
    return pos, neg


def _auc_from_level_weights(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """AUC per row of (draws x levels) weights of right/wrong rows at each score level (ascending); NaN when a
    draw lacks a class. A right row beats every wrong row below its level and ties those at its level (1/2)."""
    below = np.cumsum(neg, axis=1) - neg
    wins = np.sum(pos * (below + 0.5 * neg), axis=1)
    pairs = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, wins / np.where(pairs > 0, pairs, 1.0), np.nan)


def rank_auc(y: Sequence[bool], s: Sequence[float]) -> float | None:
    """ROC AUC by counting (right, wrong) pairs, ties 1/2: the same number as `roc_auc_score`; None for one class.

    >>> rank_auc([True, False, True, False], [0.9, 0.2, 0.1, 0.5])
    0.5
    """
    y = np.asarray(y, dtype=bool)
    s = np.asarray(s, dtype=float)
    _, levels = np.unique(s, return_inverse=True)
    n_levels = int(levels.max()) + 1 if len(levels) else 0
    pos = np.bincount(levels[y], minlength=n_levels)[None, :].astype(float)
    neg = np.bincount(levels[~y], minlength=n_levels)[None, :].astype(float)
    value = _auc_from_level_weights(pos, neg)[0] if n_levels else math.nan
    return None if math.isnan(value) else float(value)


def auc_with_ci(
    frame: pd.DataFrame,
    signal: str,
    label: str = "correct",
    cluster: str | Sequence[str] | None = "task_id",
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """ROC AUC of `signal` against the boolean `label`, with a percentile bootstrap interval over clusters.

    Each bootstrap draw samples `n_clusters` clusters (tasks) with replacement and keeps every row of each drawn
    cluster, as often as it was drawn; draws that lack a class are skipped (`n_boot_used` counts the others).
    `cluster=None` resamples rows instead (for comparison; it understates the uncertainty when rows of a task are
    alike). Rows whose signal, label or cluster is missing or not finite are dropped and counted in `n_missing`.

    Returns a dict: signal, auc, low, high, level, n, n_pos, n_neg, n_missing, n_clusters, n_boot, n_boot_used,
    resampled ("clusters (task_id)" or "rows"), note. `auc` is scikit-learn's `roc_auc_score`; a sample with one
    class (or none) gives auc, low and high None and note "undefined (one class)" ("undefined (no rows)").

    >>> f = pd.DataFrame({"task_id": ["a", "a", "b", "b"], "score": [0.9, 0.1, 0.8, 0.3],
    ...                   "correct": [True, False, True, False]})
    >>> r = auc_with_ci(f, "score", n_boot=200)
    >>> r["auc"], r["low"], r["high"], r["n_clusters"]
    (1.0, 1.0, 1.0, 2)
    """
    _check_level(level, n_boot)
    keys = _as_list(cluster)
    data, n_missing = _clean(frame, signal, label, keys)
    y = data["y"].to_numpy()
    s = data["s"].to_numpy()
    clusters = _codes(data, keys)
    n_clusters = int(clusters.max()) + 1 if len(clusters) else 0
    n_pos = int(y.sum())
    n_neg = int(len(y) - n_pos)
    result: dict[str, Any] = {
        "signal": signal,
        "auc": None,
        "low": None,
        "high": None,
        "level": level,
        "n": int(len(y)),
        "n_pos": n_pos,
        "n_neg": n_neg,
        "n_missing": n_missing,
        "n_clusters": n_clusters,
        "n_boot": int(n_boot),
        "n_boot_used": 0,
        "resampled": f"clusters ({', '.join(keys)})" if keys else "rows",
        "note": None,
    }
    if len(y) == 0:
        result["note"] = NO_DATA
        return result
    if n_pos == 0 or n_neg == 0:
        result["note"] = ONE_CLASS
        return result

    from sklearn.metrics import roc_auc_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result["auc"] = float(roc_auc_score(y, s))

    _, levels = np.unique(s, return_inverse=True)
    n_levels = int(levels.max()) + 1
    pos_cells, neg_cells = _cell_counts(levels, y, clusters, n_levels, n_clusters)
    block = max(1, _BLOCK_CELLS // max(n_levels, n_clusters))
    rng = np.random.default_rng(seed)
    boots = []
    for weights in _draws(rng, n_clusters, n_boot, block):
        # (draws x clusters) @ (clusters x levels): the weight of right / wrong rows at each level in each draw.
        pos = np.asarray((pos_cells.T @ weights.T).T)
        neg = np.asarray((neg_cells.T @ weights.T).T)
        boots.append(_auc_from_level_weights(pos, neg))
    values = np.concatenate(boots) if boots else np.zeros(0)
    values = values[~np.isnan(values)]
    result["n_boot_used"] = int(values.size)
    result["low"], result["high"] = _interval(values, level)
    if n_boot and not values.size:
        result["note"] = NO_BOOT
    return result


# ---------------------------------------------------------------------------------------------------------------
# Within-group AUC (what GRPO sees)


def _group_wins(s: np.ndarray, y: np.ndarray) -> tuple[float, int, int]:
    """(wins, pairs, ties) over the (right, wrong) pairs of one group: a win is right > wrong, a tie counts 1/2."""
    right = s[y]
    wrong = np.sort(s[~y])
    if not len(right) or not len(wrong):
        return 0.0, 0, 0
    below = np.searchsorted(wrong, right, side="left")
    not_above = np.searchsorted(wrong, right, side="right")
    ties = int(np.sum(not_above - below))
    return float(np.sum(below) + 0.5 * ties), int(len(right) * len(wrong)), ties


def _graded_wins(s: np.ndarray, y: np.ndarray) -> tuple[float, int, int]:
    """(wins, pairs, ties) over the pairs of one group whose labels differ: a win is the better-labelled answer
    scoring higher, a tie counts 1/2. With labels 1/0 these are `_group_wins`' numbers."""
    better = y[:, None] > y[None, :]
    pairs = int(better.sum())
    if not pairs:
        return 0.0, 0, 0
    higher = (s[:, None] > s[None, :]) & better
    ties = int(((s[:, None] == s[None, :]) & better).sum())
    return float(higher.sum() + 0.5 * ties), pairs, ties


def within_group_auc(
    frame: pd.DataFrame,
    signal: str,
    label: str = "correct",
    group: str | Sequence[str] = ("task_id", "step"),
    cluster: str | Sequence[str] | None = "task_id",
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    graded: bool = False,
) -> dict[str, Any]:
    """P(a right rollout outscores a wrong rollout of the same group), ties 1/2, over all such pairs of all groups.

    Groups are the rows sharing `group` (one prompt at one step: the rollouts GRPO compares). A group with only
    right or only wrong rollouts contributes no pair (it gives GRPO no signal about correctness either way).
    The interval is a percentile bootstrap over `cluster` (tasks); every group must lie inside one cluster. Each
    draw weights a cluster's pairs and wins by how often it was drawn; draws without a pair are skipped.
    `cluster=None` resamples groups.

    `graded=True`: the label is a number (a graded score, a rank) and the pairs are those of one group whose labels
    differ, the better-labelled answer the one that should score higher; with labels 1/0 this is the same number.
    `n_pos`/`n_neg` are then None (no classes) and `n_groups_mixed` counts groups with two labels.

    Returns a dict: signal, auc, low, high, level, n, n_pos, n_neg, n_missing, n_groups, n_groups_mixed, n_pairs,
    n_ties (pairs whose scores are equal), tie_rate, n_clusters, n_boot, n_boot_used, resampled, note. With no
    mixed group, auc/low/high are None and the note says so.

    >>> f = pd.DataFrame({"task_id": ["a", "a", "b", "b"], "step": 0, "score": [0.2, 0.1, 0.9, 0.8],
    ...                   "correct": [True, False, True, False]})
    >>> within_group_auc(f, "score", n_boot=0)["auc"]
    1.0
    """
    _check_level(level, n_boot)
    group_keys = _as_list(group)
    if not group_keys:
        raise ValueError("within_group_auc needs at least one group column")
    cluster_keys = _as_list(cluster)
    data, n_missing = _clean(frame, signal, label, list(dict.fromkeys(group_keys + cluster_keys)), graded=graded)
    groups = _codes(data, group_keys)
    clusters = _codes(data, cluster_keys) if cluster_keys else groups
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    n_clusters = int(clusters.max()) + 1 if len(clusters) else 0

    group_cluster = np.full(n_groups, -1)
    for g, c in zip(groups, clusters):
        if group_cluster[g] not in (-1, c):
            raise ValueError(
                f"group {dict(zip(group_keys, data.loc[groups == g, group_keys].iloc[0]))} spans several clusters "
                f"of {cluster_keys}: groups must be nested in clusters"
            )
        group_cluster[g] = c

    y = data["y"].to_numpy()
    s = data["s"].to_numpy()
    wins_c = np.zeros(n_clusters)
    pairs_c = np.zeros(n_clusters)
    n_mixed = n_ties = 0
    order = np.argsort(groups, kind="stable")
    bounds = np.flatnonzero(np.diff(groups[order])) + 1
    count = _graded_wins if graded else _group_wins
    for rows in (np.split(order, bounds) if len(order) else []):
        wins, pairs, ties = count(s[rows], y[rows])
        if pairs:
            n_mixed += 1
            n_ties += ties
            c = group_cluster[groups[rows[0]]]
            wins_c[c] += wins
            pairs_c[c] += pairs
    n_pairs = int(pairs_c.sum())
    result: dict[str, Any] = {
        "signal": signal,
        "auc": None,
        "low": None,
        "high": None,
        "level": level,
        "n": int(len(y)),
        "n_pos": None if graded else int(y.sum()),
        "n_neg": None if graded else int(len(y) - y.sum()),
        "n_missing": n_missing,
        "n_groups": n_groups,
        "n_groups_mixed": n_mixed,
        "n_pairs": n_pairs,
        "n_ties": n_ties,
        "tie_rate": n_ties / n_pairs if n_pairs else None,
        "n_clusters": n_clusters,
        "n_boot": int(n_boot),
        "n_boot_used": 0,
        "resampled": f"clusters ({', '.join(cluster_keys)})" if cluster_keys else f"groups ({', '.join(group_keys)})",
        "note": None,
    }
    if not len(y):
        result["note"] = NO_DATA
        return result
    if not n_pairs:
        one_class = len(np.unique(y)) < 2 if graded else result["n_pos"] == 0 or result["n_neg"] == 0
        result["note"] = ONE_CLASS if one_class else NO_PAIRS
        return result
    result["auc"] = float(wins_c.sum() / n_pairs)

    rng = np.random.default_rng(seed)
    boots = []
    for weights in _draws(rng, n_clusters, n_boot, max(1, _BLOCK_CELLS // n_clusters)):
        pairs = weights @ pairs_c
        wins = weights @ wins_c
        boots.append(wins[pairs > 0] / pairs[pairs > 0])
    values = np.concatenate(boots) if boots else np.zeros(0)
    result["n_boot_used"] = int(values.size)
    result["low"], result["high"] = _interval(values, level)
    if n_boot and not values.size:
        result["note"] = NO_BOOT
    return result


# ---------------------------------------------------------------------------------------------------------------
# Strata and summaries


def stratum_key(column: str, value: Any) -> str:
    """The name of one stratum in `split_by`'s result: "teacher_competent=True"; a missing value is "=missing"."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return f"{column}=missing"
    if isinstance(value, np.generic):
        value = value.item()
    return f"{column}={value}"


def split_by(frame: pd.DataFrame, column: str | None, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> dict:
    """`fn(frame, *args, **kwargs)` on the whole frame ("all") and on each stratum of `column`.

    Keys: "all", then `stratum_key(column, value)` for each value in sorted order (e.g. "teacher_competent=False",
    "teacher_competent=True"; rows with no value form "teacher_competent=missing"). `column=None` gives "all" only.

    >>> f = pd.DataFrame({"x": [1, 2, 3], "hard": [True, False, True]})
    >>> split_by(f, "hard", len)
    {'all': 3, 'hard=False': 1, 'hard=True': 2}
    """
    out = {"all": fn(frame, *args, **kwargs)}
    if column is None:
        return out
    if column not in frame.columns:
        raise KeyError(f"split_by: column {column!r} not in frame (columns: {list(frame.columns)})")
    values = frame[column]
    present = values.dropna().unique().tolist()
    for value in sorted(present, key=lambda v: (str(type(v)), v)):
        out[stratum_key(column, value)] = fn(frame[values == value], *args, **kwargs)
    if values.isna().any():
        out[stratum_key(column, None)] = fn(frame[values.isna()], *args, **kwargs)
    return out


def signal_summary(
    frame: pd.DataFrame,
    signals: Sequence[str],
    *,
    by: str | None = "teacher_competent",
    label: str = "correct",
    group: str | Sequence[str] = ("task_id", "step"),
    cluster: str | Sequence[str] | None = "task_id",
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    graded: bool = False,
) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """Every signal's pooled and within-group AUC, overall and per stratum of `by` (the body of fidelity.json).

    Shape: `{signal: {"auc": {stratum: auc_with_ci(...)}, "within_group_auc": {stratum: within_group_auc(...)}}}`,
    strata as in `split_by`. A `by` column absent from the frame gives "all" only. `graded=True` (numeric labels):
    the within-group order of labels (`within_group_auc(graded=True)`); the pooled AUC, which needs two classes,
    is None with a note.
    """
    by = by if by is not None and by in frame.columns else None
    out: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for signal in signals:
        if graded:
            pooled = split_by(frame, by, lambda part: {"signal": signal, "auc": None, "low": None, "high": None,
                                                        "n": int(len(part)), "note": GRADED_POOLED})
        else:
            pooled = split_by(frame, by, auc_with_ci, signal, label=label, cluster=cluster, n_boot=n_boot, seed=seed,
                              level=level)
        out[signal] = {
            "auc": pooled,
            "within_group_auc": split_by(
                frame, by, within_group_auc, signal, label=label, group=group, cluster=cluster, n_boot=n_boot,
                seed=seed, level=level, graded=graded,
            ),
        }
    return out


def summary_frame(summary: Mapping[str, Mapping[str, Mapping[str, Mapping[str, Any]]]]) -> pd.DataFrame:
    """`signal_summary`'s dict as one row per (signal, measure, stratum): auc, low, high, counts, note."""
    rows = []
    for signal, measures in summary.items():
        for measure, strata in measures.items():
            for stratum, numbers in strata.items():
                rows.append({"signal": signal, "measure": measure, "stratum": stratum,
                             **{k: v for k, v in numbers.items() if k != "signal"}})
    return pd.DataFrame(rows)


def json_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A frame as JSON-ready records: NaN/NA become None, numpy scalars become Python numbers."""
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    return [{k: (v.item() if isinstance(v, np.generic) else v) for k, v in r.items()} for r in records]
