"""The inspector's state without widgets: one group's answers, rubric, verdicts, rewards and correctness.

`InspectorState(run_dir)` reads the run directory once; `select`, `set_weight`, `scores`, `advantages`, `table`,
`rubric_table` and `verdict_matrix` are plain methods returning plain values, so scripts and tests drive it without
a browser. `widgets.RubricInspector` adds the ipywidgets view on top and only calls these methods.

Correctness (ground truth, which ROPD itself never sees) comes from the task's `answer` in tasks.jsonl, read with
`fidelity.label_correct`; the per-criterion agreement with it comes from `fidelity.group_criterion_table`.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .. import rundir
from ..config import RunConfig
from ..fidelity import group_criterion_table, label_correct
from ..scoring import (criterion_spread, group_advantages, result_weighted, rubric_diagnostics, spread_weighted,
                       weighted_score)

WEIGHT_RANGE = (0, 5)
PITFALL_WEIGHT_RANGE = (-2, 5)
# Added to the rubric table from `fidelity.group_criterion_table`; `correct_discrimination` is the pass rate on right
# rollouts minus that on wrong ones (rubric_diagnostics' own `discrimination` is the verdict's spread).
CORRECTNESS_COLUMNS = ["agreement", "n_labelled", "n_right", "n_wrong", "pass_rate_right", "pass_rate_wrong",
                       "correct_discrimination", "is_result"]


@dataclass
class Answer:
    """One answer of the group as the Verifier saw it: its blind position and, for the reveal, its author."""

    position: int  # 1-based, the order shown to the Verifier
    source: str  # "teacher" | "student"
    answer_idx: int  # index among the group's teacher refs / rollouts (verdicts.jsonl answer_idx)
    record_idx: int  # ref_idx / rollout_idx in teacher_refs.jsonl / rollouts.jsonl
    text: str
    judgements: list[bool] | None
    recorded_score: float | None  # the score written at judging time
    probabilities: list[float] | None = None  # soft verdicts: what the score was computed with
    truncated: bool = False
    correct: bool | None = None  # against the task's ground truth; None when the task has none

    @property
    def values(self) -> list[float] | list[bool] | None:
        """What its score reads per criterion: the soft verdicts' probabilities, else the booleans."""
        return self.probabilities if self.probabilities is not None else self.judgements

    @property
    def label(self) -> str:
        return f"Answer {self.position}"

    @property
    def author(self) -> str:
        return f"teacher ref {self.record_idx}" if self.source == "teacher" else f"student rollout {self.record_idx}"


def _last_by(records: list[dict], key) -> dict:
    out: dict = {}
    for r in records:
        out[key(r)] = r  # a later line (replayed step) replaces an earlier one
    return out


class InspectorState:
    """One run directory's rubrics, browsed one group (task, step) at a time, re-weighted in memory."""

    def __init__(self, run_dir: str | Path, *, task_id: str | None = None, step: int | None = None):
        self.run_dir = Path(run_dir)
        config_path = self.run_dir / "config.json"
        self.config = RunConfig.load(config_path) if config_path.exists() else RunConfig(run_dir=str(self.run_dir))
        self._tasks = {t["id"]: t for t in rundir.read_jsonl(self.run_dir / rundir.TASKS)}
        self._refs: dict[str, list[dict]] = {}
        for r in rundir.read_jsonl(self.run_dir / rundir.TEACHER_REFS):
            if r.get("text"):  # the judge saw only refs with text, numbered in ref_idx order
                self._refs.setdefault(r["task_id"], []).append(r)
        for refs in self._refs.values():
            refs.sort(key=lambda r: r["ref_idx"])
        self._rollouts: dict[tuple[str, int], list[dict]] = {}
        for r in _last_by(
            rundir.read_jsonl(self.run_dir / rundir.ROLLOUTS),
            lambda r: (r["task_id"], r.get("step", 0), r["rollout_idx"]),
        ).values():
            self._rollouts.setdefault((r["task_id"], r.get("step", 0)), []).append(r)
        for group in self._rollouts.values():
            group.sort(key=lambda r: r["rollout_idx"])
        self._rubrics = _last_by(rundir.read_jsonl(self.run_dir / rundir.RUBRICS), lambda r: (r["task_id"], r["step"]))
        self._verdicts = _last_by(
            rundir.read_jsonl(self.run_dir / rundir.VERDICTS), lambda r: (r["task_id"], r["step"], r["answer_key"])
        )
        self.keys: list[tuple[str, int]] = sorted(self._rubrics)
        if not self.keys:
            raise FileNotFoundError(
                f"{self.run_dir / rundir.RUBRICS}: no rubrics to inspect — run the judging stage (notebook 02) first"
            )
        self.revealed = False
        self.task_id, self.step = self.keys[0]
        self.criteria: list[dict] = []
        self.weights: dict[str, int] = {}
        self.answers: list[Answer] = []
        first = next((k for k in self.keys if task_id is None or k[0] == task_id), None)
        if first is None:
            raise KeyError(f"task {task_id!r} has no rubric in {self.run_dir / rundir.RUBRICS}")
        self.select(first[0], first[1] if step is None else step)

    def _refresh(self, rebuild: bool = False) -> None:
        """Called after every change of state; the widget view redraws here."""

    # ---------------------------------------------------------------------------------------------------------
    # The group

    @property
    def pitfalls(self) -> bool:
        return bool(self.config.pitfalls) or any(c["points"] < 0 for c in self.criteria)

    @property
    def weight_range(self) -> tuple[int, int]:
        return PITFALL_WEIGHT_RANGE if self.pitfalls else WEIGHT_RANGE

    def steps(self, task_id: str) -> list[int]:
        return sorted(step for t, step in self.keys if t == task_id)

    def select(self, task_id: str, step: int) -> None:
        """Show the group (task_id, step): its answers in blind order, its rubric at the induced weights."""
        if (task_id, step) not in self._rubrics:
            raise KeyError(
                f"no rubric for task {task_id!r} at step {step} in {self.run_dir / rundir.RUBRICS}"
                f" (steps with a rubric: {self.steps(task_id)})"
            )
        self.task_id, self.step = task_id, step
        self.rubric_record = self._rubrics[(task_id, step)]
        self.criteria = [dict(c) for c in self.rubric_record.get("criteria") or []]
        self.original_points = {c["id"]: int(c["points"]) for c in self.criteria}
        self.weights = dict(self.original_points)
        self.answers = self._answers(task_id, step)
        self._refresh(rebuild=True)

    @property
    def ground_truth(self) -> str | None:
        """The selected task's ground-truth answer (tasks.jsonl `answer`), None when it has none."""
        answer = self._tasks.get(self.task_id, {}).get("answer")
        return None if answer is None or str(answer).strip() == "" else str(answer)

    def _answers(self, task_id: str, step: int) -> list[Answer]:
        found: list[Answer] = []
        groups = (("teacher", self._refs.get(task_id, [])), ("student", self._rollouts.get((task_id, step), [])))
        for source, records in groups:
            for idx, record in enumerate(records):
                verdict = self._verdicts.get((task_id, step, f"{source}-{idx}"), {})
                found.append(
                    Answer(
                        position=verdict.get("position") or 0,
                        source=source,
                        answer_idx=idx,
                        record_idx=int(record["ref_idx" if source == "teacher" else "rollout_idx"]),
                        text=record.get("text") or "",
                        judgements=verdict.get("judgements"),
                        recorded_score=verdict.get("score"),
                        probabilities=verdict.get("probabilities"),
                        truncated=bool(record.get("truncated")),
                    )
                )
        self._label(task_id, found)
        # Answers the Verifier never saw (the rubric failed) still get blind labels, in a seeded order, so that the
        # listing does not give away who wrote what.
        unplaced = [a for a in found if not a.position]
        seed = int(hashlib.sha256(f"{task_id}:{step}".encode()).hexdigest()[:8], 16)
        random.Random(seed).shuffle(unplaced)
        taken = {a.position for a in found if a.position}
        free = (p for p in range(1, len(found) + len(taken) + 1) if p not in taken)
        for answer in unplaced:
            answer.position = next(free)
        return sorted(found, key=lambda a: a.position)

    def _label(self, task_id: str, answers: list[Answer]) -> None:
        task = self._tasks.get(task_id, {})
        answer = task.get("answer")
        if answer is None or str(answer).strip() == "" or not answers:
            return
        frame = pd.DataFrame({"task_id": [task_id] * len(answers), "text": [a.text or None for a in answers]})
        # The whole task record, so that each answer is checked by the task's family (a letter, math-verify, ...).
        for a, correct in zip(answers, label_correct(frame, pd.DataFrame([task]))["correct"]):
            a.correct = correct

    @property
    def points(self) -> list[int]:
        """The current weights in rubric order."""
        return [self.weights[c["id"]] for c in self.criteria]

    def set_weight(self, criterion_id: str, points: int) -> None:
        """Re-weight one criterion (0 drops it) and recompute scores and advantages."""
        if criterion_id not in self.weights:
            raise KeyError(f"criterion {criterion_id!r} is not in this rubric (ids: {list(self.weights)})")
        low, high = self.weight_range
        if isinstance(points, bool) or int(points) != points or not low <= points <= high:
            raise ValueError(f"criterion {criterion_id!r}: points must be an integer in {low}..{high}, got {points!r}")
        self.weights[criterion_id] = int(points)
        self._refresh()

    def reset_weights(self) -> None:
        self.weights = dict(self.original_points)
        self._refresh(rebuild=True)

    def reveal(self, on: bool = True) -> None:
        """Show (or hide again) which answers are teacher refs and which are student rollouts."""
        self.revealed = bool(on)
        self._refresh()

    @property
    def problem(self) -> str | None:
        """Why this group has no rewards at the current weights (None when it has them)."""
        if not self.criteria:
            return f"rubric induction failed: {self.rubric_record.get('error') or 'no criteria'}"
        if sum(p for p in self.points if p > 0) <= 0:
            return "every positive criterion is dropped: the rubric gives no reward"
        missing = [a.label for a in self._students() if a.judgements is None]
        if missing:
            return f"no verdict for {', '.join(missing)}: the group counts as a judge failure (zero advantage)"
        return None

    def _students(self) -> list[Answer]:
        return sorted((a for a in self.answers if a.source == "student"), key=lambda a: a.answer_idx)

    def _score(self, answer: Answer) -> float | None:
        if answer.judgements is None or not self.criteria or sum(p for p in self.points if p > 0) <= 0:
            return None
        if answer.source == "student" and answer.truncated and self.config.truncated_rollouts == "zero":
            return 0.0  # the trainer's rule for rollouts cut by max_tokens
        scores = weighted_score(self.scoring_points, [answer.values], eps=self.config.score_eps,
                                pitfalls=self.pitfalls)
        return scores[0]

    @property
    def scoring_points(self) -> list[float]:
        """The weights that score the answers: the current points, with the code-checked result criterion raised
        to its share of them where the run scored it so (`scoring.result_weighted`, consensus `result_share`), then
        weighted by each criterion's spread over the rollouts where the run did (`scoring.spread_weighted`)."""
        consensus = self.rubric_record.get("consensus") or {}
        ids = [c["id"] for c in self.criteria]
        share, result = consensus.get("result_share"), consensus.get("result_id")
        if not share or result not in ids or not self.weights.get(result):
            weights = [float(p) for p in self.points]  # a result criterion dropped in the inspector stays dropped
        else:
            weights = result_weighted(self.points, ids.index(result), share)
        if self.rubric_record.get("criterion_weighting") == "spread":
            # The spread the run weighted with (soft verdicts' probabilities), else the one the booleans give.
            recorded = {c.get("id"): c for c in self.rubric_record.get("criterion_spread") or []}
            judged = [a.values for a in self._students() if a.judgements is not None]
            computed = criterion_spread(judged, len(ids))
            spreads = [recorded[i]["student_std"] if i in recorded else computed[k]["std"] for k, i in enumerate(ids)]
            n = next((recorded[i]["n_student"] for i in ids if i in recorded), len(judged))
            weights = spread_weighted(weights, spreads, n)
        return weights

    @property
    def scores(self) -> list[float | None]:
        """The student rollouts' rewards s_i at the current weights, in rollout order (None: not judged)."""
        return [self._score(a) for a in self._students()]

    @property
    def teacher_scores(self) -> list[float | None]:
        return [self._score(a) for a in sorted(self.answers, key=lambda a: a.answer_idx) if a.source == "teacher"]

    @property
    def advantages(self) -> list[float]:
        """GRPO advantages of the rollouts at the current weights; all 0 when the group has no rewards."""
        scores = self.scores
        if not scores or any(s is None for s in scores):
            return [0.0] * len(scores)
        return group_advantages(scores, scale=self.config.scale_rewards)

    # ---------------------------------------------------------------------------------------------------------
    # Tables

    def verdict_matrix(self) -> pd.DataFrame:
        """Answers (blind order) × criteria: True/False, P(true) rounded to 0.01 for soft verdicts, or None where the
        answer has no judgement."""
        ids = [c["id"] for c in self.criteria]
        rows = [[round(p, 2) for p in a.probabilities] if a.probabilities is not None
                else a.judgements if a.judgements is not None else [None] * len(ids) for a in self.answers]
        return pd.DataFrame(rows, index=[self.row_label(a) for a in self.answers], columns=ids)

    def rubric_table(self) -> pd.DataFrame:
        """The rubric at the current weights with its diagnostics (pass rates, spread, dead criteria) and, per
        criterion, how its verdicts on the student rollouts follow correctness.

        Correctness columns (`CORRECTNESS_COLUMNS`, from `fidelity.group_criterion_table`): agreement (share of
        judged rollouts with a ground-truth label whose verdict equals their correctness: True on a right rollout,
        False on a wrong one) over n_labelled = n_right + n_wrong rollouts; pass_rate_right / pass_rate_wrong;
        correct_discrimination (pass_rate_right - pass_rate_wrong: 1 separates perfectly, negative rewards wrong
        answers); is_result (the rubric's final-result criterion). NaN where no rollout of a kind was judged, and
        all NaN with n_labelled 0 when the task has no ground truth.
        """
        if not self.criteria:
            return pd.DataFrame(columns=["id", "text", "points", "category"])
        criteria = [{**c, "points": self.weights[c["id"]]} for c in self.criteria]
        if sum(p for p in self.points if p > 0) <= 0:  # diagnostics score the rollouts; use the induced weights
            criteria = self.criteria
        by_idx = sorted(self.answers, key=lambda a: a.answer_idx)
        teacher = [a.judgements for a in by_idx if a.source == "teacher"]
        students = self._students()
        table = rubric_diagnostics(criteria, teacher, [a.judgements for a in students], pitfalls=self.pitfalls)
        table["points"] = self.points
        table.insert(3, "induced_points", [self.original_points[c["id"]] for c in self.criteria])
        fidelity = group_criterion_table(criteria, teacher, [a.judgements for a in students],
                                         [a.correct for a in students])
        labelled = [a for a in students if a.judgements is not None and a.correct is not None]
        n_right = sum(1 for a in labelled if a.correct)
        table["agreement"] = fidelity["agreement"]
        table["n_labelled"] = len(labelled)
        table["n_right"] = n_right
        table["n_wrong"] = len(labelled) - n_right
        for column in ("pass_rate_right", "pass_rate_wrong", "correct_discrimination", "is_result"):
            table[column] = fidelity[column]
        return table

    def criterion_agreement(self) -> pd.DataFrame:
        """Per criterion of the selected group: id, points, agreement with correctness and its n, discrimination
        between right and wrong rollouts (the correctness columns of `rubric_table`)."""
        table = self.rubric_table()
        if table.empty:
            return pd.DataFrame(columns=["id", "points", *CORRECTNESS_COLUMNS])
        return table[["id", "points", *CORRECTNESS_COLUMNS]]

    @property
    def dead_criteria(self) -> list[str]:
        """Ids of criteria every judged answer meets, or every one misses: they cannot separate rollouts."""
        table = self.rubric_table()
        return list(table.loc[table["dead"].notna(), "id"]) if "dead" in table else []

    def row_label(self, answer: Answer) -> str:
        return f"{answer.label} ({answer.author})" if self.revealed else answer.label

    def table(self) -> pd.DataFrame:
        """One row per answer in blind order: label, author, correct, recorded and current score, advantage.

        Until `reveal()`, author says "hidden" and advantage is empty (only rollouts have one, so it would tell).
        `correct` is the answer against the task's ground truth (None without one): what the scores should follow.
        """
        advantage = dict(zip((a.answer_idx for a in self._students()), self.advantages))
        rows = []
        for a in self.answers:
            rows.append(
                {
                    "label": a.label,
                    "author": a.author if self.revealed else "hidden",
                    "correct": a.correct,
                    "recorded_score": a.recorded_score,
                    "score": self._score(a),
                    "advantage": advantage.get(a.answer_idx) if self.revealed and a.source == "student" else None,
                }
            )
        frame = pd.DataFrame(rows, columns=["label", "author", "correct", "recorded_score", "score", "advantage"])
        frame["correct"] = pd.Series([r["correct"] for r in rows], index=frame.index, dtype=object)  # None stays
        return frame

    def heatmap_cells(self) -> tuple[list[list[int | None]], list[list[str]]]:
        """The verdict matrix as 1/0/None and its ✓/✗ marks, rows in blind order."""
        matrix = self.verdict_matrix()
        z = [[None if v is None or (isinstance(v, float) and math.isnan(v)) else int(bool(v)) for v in row]
             for row in matrix.itertuples(index=False)]
        return z, [["" if v is None else ("✓" if v else "✗") for v in row] for row in z]

    # ---------------------------------------------------------------------------------------------------------
    # The edited rubric

    def edited_rubric(self) -> dict:
        """The rubric at the current weights in the model-facing format, dropped (0-point) criteria left out."""
        from ..rubrics import Rubric

        kept = [{**c, "points": self.weights[c["id"]]} for c in self.criteria if self.weights[c["id"]] != 0]
        if not any(c["points"] > 0 for c in kept):
            raise ValueError(
                f"task {self.task_id!r} step {self.step}: the edited rubric has no criterion with positive points"
            )
        fields = ("id", "text", "points", "category")
        return Rubric(criteria=[{k: c[k] for k in fields if k in c} for c in kept]).to_record()

    def export_rubric(self, path: str | Path) -> Path:
        """Write `edited_rubric()` as JSON (loadable with `rubrics.parse_rubric`)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(self.edited_rubric(), indent=2, ensure_ascii=False) + "\n")
        return target
