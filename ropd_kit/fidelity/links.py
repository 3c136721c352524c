"""Which link of the chain loses the labels' order: the teacher, the Rubricator or the Verifier?

ROPD's reward is a chain: the teacher writes references, the Rubricator induces a rubric from them and the group's
answers, the Verifier judges every answer against it. On a labelled bank whose prompts carry a reference rubric
(HealthBench's shape), the study judges the answers twice — under the reference rubric (the Verifier alone) and
under the induced one (the whole chain) — and the teacher's references beside them both times. This module reads
those judgings and says where the order of the labels is lost:

- `kind_auc`: the within-prompt AUC of a signal per flaw kind, each kind against the good answers of the same
  prompt (a judge can catch harmful advice and still miss a flipped key statement).
- `teacher_position`: where the teacher's references fall among the labelled answers, by a given judging: P(ref
  outscores a good answer) and P(ref outscores a flawed one) inside each prompt. References below the good answers
  under the reference rubric mean the rubric the chain induces from them starts from a weaker answer than the bank's.
- `criteria_separation`: per rubric criterion, whether the answers it passes are the good ones (its pass rate on
  good answers above that on flawed ones; reversed for a pitfall). Induced criteria that separate nothing, set
  beside the reference criteria under the same Verifier, show the Rubricator's share of the loss.
- `loss_split`: the three side by side for one variant.

Pure and synchronous: frames and records in, dicts of Python numbers out.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .decided import verdict_values
from .stats import within_group_auc

GOOD = "good"


def kind_auc(frame: pd.DataFrame, signal: str, *, label: str = "correct", kind: str = "kind",
             group: Sequence[str] = ("task_id", "step"), **options: Any) -> dict[str, dict[str, Any]]:
    """{kind: within_group_auc of `signal`} for each kind of the answers labelled wrong (`label` False): that kind's
    answers against the answers labelled right of the same prompt. `options` go to `within_group_auc`."""
    if kind not in frame.columns or label not in frame.columns:
        return {}
    right = pd.Series([v is True or v is np.True_ for v in frame[label]], index=frame.index, dtype=bool)
    wrong = pd.Series([v is False or v is np.False_ for v in frame[label]], index=frame.index, dtype=bool)
    kinds = sorted({str(k) for k in frame.loc[wrong, kind] if isinstance(k, str) and k})
    return {k: within_group_auc(frame.loc[right | (wrong & (frame[kind] == k))], signal, label=label,
                                group=list(group), **options) for k in kinds}


def _by_answer(records: Iterable[Mapping[str, Any]], source: str) -> dict[tuple[str, int], list[float]]:
    out: dict[tuple[str, int], list[float]] = {}
    for r in records:
        if r.get("source", "student") == source and r.get("score") is not None:
            out.setdefault((r["task_id"], int(r.get("step", 0))), []).append(float(r["score"]))
    return out


def teacher_position(frame: pd.DataFrame, signal: str, verdicts: Iterable[Mapping[str, Any]], *,
                     label: str = "correct", n_boot: int = 2000, seed: int = 0,
                     level: float = 0.95) -> dict[str, Any]:
    """Where the teacher's references fall among the labelled answers under one judging.

    `frame`: the labelled answers with the judging's score in `signal`; `verdicts`: the same judging's records,
    whose `source == "teacher"` ones are the references' scores. Returns the mean score of references, good and
    flawed answers, and `refs_vs_good` / `refs_vs_flawed`: P(a reference outscores a good / flawed answer of the
    same prompt), ties 1/2, with task-bootstrap intervals (`within_group_auc`, the references as the positives).
    """
    refs = _by_answer(verdicts, "teacher")
    scored = frame.loc[pd.to_numeric(frame[signal], errors="coerce").notna().to_numpy()]
    is_good = np.array([v is True or v is np.True_ for v in scored[label]], dtype=bool)
    is_bad = np.array([v is False or v is np.False_ for v in scored[label]], dtype=bool)
    judged = set(scored["task_id"])
    ref_rows = [{"task_id": t, "step": s, "_score": v, "_ref": True} for (t, s), values in refs.items()
                for v in values if t in judged]

    def versus(part: pd.DataFrame) -> dict[str, Any]:
        rows = pd.concat([pd.DataFrame(ref_rows, columns=["task_id", "step", "_score", "_ref"]),
                          pd.DataFrame({"task_id": part["task_id"], "step": part["step"],
                                        "_score": pd.to_numeric(part[signal]), "_ref": False})],
                         ignore_index=True)
        return within_group_auc(rows, "_score", label="_ref", n_boot=n_boot, seed=seed, level=level)

    ref_scores = [row["_score"] for row in ref_rows]
    return {
        "n_refs": len(ref_scores),
        "refs_score": float(np.mean(ref_scores)) if ref_scores else None,
        "good_score": float(pd.to_numeric(scored.loc[is_good, signal]).mean()) if is_good.any() else None,
        "flawed_score": float(pd.to_numeric(scored.loc[is_bad, signal]).mean()) if is_bad.any() else None,
        "refs_vs_good": versus(scored.loc[is_good]),
        "refs_vs_flawed": versus(scored.loc[is_bad]),
    }


def criteria_separation(rubrics: Iterable[Mapping[str, Any]], verdicts: Iterable[Mapping[str, Any]],
                        labels: Mapping[tuple[str, int, int], Any]) -> dict[str, Any]:
    """Per (group, criterion): does the criterion pass the good answers more often than the flawed ones?

    `labels`: (task_id, step, rollout_idx) -> True (good) / False (flawed) / None; `verdicts`: student records with
    `rollout_idx`. A criterion separates when its mean verdict (or probability) on good answers exceeds that on
    flawed ones (the other way round for a pitfall, negative points), is flat when they are equal, reversed
    otherwise. Groups without both a good and a flawed judged answer are left out.
    Returns n_criteria, separating, flat, reversed and their shares.
    """
    table = {(r["task_id"], int(r.get("step", 0))): r for r in rubrics}
    groups: dict[tuple[str, int], dict[bool, list[list[float]]]] = {}
    for record in verdicts:
        if record.get("source", "student") != "student" or record.get("rollout_idx") is None:
            continue
        key = (record["task_id"], int(record.get("step", 0)))
        good = labels.get((*key, int(record["rollout_idx"])))
        values = verdict_values(record)
        if good is None or values is None:
            continue
        groups.setdefault(key, {True: [], False: []})[bool(good)].append([float(v) for v in values])
    counts = {"separating": 0, "flat": 0, "reversed": 0}
    for key, sides in groups.items():
        criteria = (table.get(key) or {}).get("criteria") or []
        if not sides[True] or not sides[False] or not criteria:
            continue
        good, bad = np.mean(sides[True], axis=0), np.mean(sides[False], axis=0)
        for k, criterion in enumerate(criteria):
            if k >= len(good):
                break
            gap = (good[k] - bad[k]) * (1 if criterion.get("points", 1) > 0 else -1)
            counts["separating" if gap > 1e-9 else "reversed" if gap < -1e-9 else "flat"] += 1
    n = sum(counts.values())
    return {"n_criteria": n, **counts, **{f"share_{k}": (v / n if n else None) for k, v in counts.items()}}


def loss_split(frame: pd.DataFrame, variant: str, chain: str, reference: str, *,
               chain_records: tuple[list[dict], list[dict]], reference_records: tuple[list[dict], list[dict]],
               label: str = "correct", graded: bool = False, n_boot: int = 2000, seed: int = 0,
               level: float = 0.95) -> dict[str, Any]:
    """One variant's loss split over the prompts with a reference rubric.

    `chain` / `reference`: the frame's columns of the whole chain's reward and of the Verifier's score under the
    reference rubric; `*_records`: each judging's (rubrics, verdicts) records. Returns the Verifier's within-prompt
    AUC under the reference rubric, the chain's on the same prompts, the difference, where the teacher's references
    fall under each judging (`teacher_position`), and how the induced and the reference criteria separate the
    labels (`criteria_separation`).
    """
    prompts = set(frame.loc[pd.to_numeric(frame[reference], errors="coerce").notna(), "task_id"])
    part = frame[frame["task_id"].isin(prompts)]
    measure = "label" if graded else label
    options = {"n_boot": n_boot, "seed": seed, "level": level}
    verifier = within_group_auc(part, reference, label=measure, graded=graded, **options)
    whole = within_group_auc(part, chain, label=measure, graded=graded, **options)
    labels = {(r.task_id, int(r.step), int(r.rollout_idx)): getattr(r, label)
              for r in part[["task_id", "step", "rollout_idx", label]].itertuples(index=False)}
    lost = (verifier["auc"] - whole["auc"]) if verifier["auc"] is not None and whole["auc"] is not None else None
    return {
        "variant": variant,
        "n_prompts": len(prompts),
        "verifier_under_reference": verifier,
        "whole_chain": whole,
        "lost_by_teacher_and_rubricator": lost,
        "teacher_under_reference": teacher_position(part, reference, reference_records[1], label=label, **options),
        "teacher_under_induced": teacher_position(part, chain, chain_records[1], label=label, **options),
        "induced_criteria": criteria_separation(*chain_records, labels),
        "reference_criteria": criteria_separation(*reference_records, labels),
    }
