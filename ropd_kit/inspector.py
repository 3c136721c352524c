"""Interactive rubric inspector (ROPD stages 3–5 seen from a notebook): one group's rubric, verdicts and rewards.

In: a run directory with tasks, teacher_refs, rollouts, rubrics and verdicts (what `pipeline.judge_stage` or a
training run writes). Out: an ipywidgets box, and the same state as plain values for scripts and tests.

For a chosen (task, step) it shows the question; the teacher refs and student rollouts under the blind labels the
Verifier saw ("Answer 3"), with the authors revealed on demand; the rubric with each criterion's teacher and
rollout pass rates and discrimination (`scoring.rubric_diagnostics`); the verdict matrix as a heatmap; and one
slider per criterion weight. Moving a slider recomputes the rewards (`scoring.weighted_pass_rate`) and the GRPO
advantages (`scoring.group_advantages`) live; 0 drops a criterion. `export_rubric(path)` writes the edited rubric
in the model-facing format, `{"criteria": [{"id", "text", "points", "category"}]}`.

The state lives in plain methods (`select`, `set_weight`, `scores`, `advantages`, `table`, `rubric_table`) so that
it can be driven without a browser; the widgets only call them.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from . import rundir
from .config import RunConfig
from .scoring import group_advantages, rubric_diagnostics, weighted_pass_rate

WEIGHT_RANGE = (0, 5)
PITFALL_WEIGHT_RANGE = (-2, 5)


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
    truncated: bool = False

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


class RubricInspector:
    """Browse and re-weight the rubrics of a run directory: `RubricInspector("runs/demo")` in a notebook cell."""

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
        self.widgets: dict[str, Any] | None = None
        self._syncing = False
        self.task_id, self.step = self.keys[0]
        self.criteria: list[dict] = []
        self.weights: dict[str, int] = {}
        self.answers: list[Answer] = []
        self._build_widgets()
        first = next((k for k in self.keys if task_id is None or k[0] == task_id), None)
        if first is None:
            raise KeyError(f"task {task_id!r} has no rubric in {self.run_dir / rundir.RUBRICS}")
        self.select(first[0], first[1] if step is None else step)

    # ---------------------------------------------------------------------------------------------------------
    # State (no widgets needed)

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
                        truncated=bool(record.get("truncated")),
                    )
                )
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
        if self.widgets is not None and self.widgets["reveal"].value != self.revealed:
            self.widgets["reveal"].value = self.revealed  # its observer refreshes
        else:
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
        scores = weighted_pass_rate(self.points, [answer.judgements], eps=self.config.score_eps, pitfalls=self.pitfalls)
        return scores[0]

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

    def verdict_matrix(self) -> pd.DataFrame:
        """Answers (blind order) × criteria: True/False, or None where the answer has no judgement."""
        ids = [c["id"] for c in self.criteria]
        rows = [a.judgements if a.judgements is not None else [None] * len(ids) for a in self.answers]
        return pd.DataFrame(rows, index=[self._row_label(a) for a in self.answers], columns=ids)

    def rubric_table(self) -> pd.DataFrame:
        """The rubric at the current weights with its diagnostics (pass rates, discrimination, dead criteria)."""
        if not self.criteria:
            return pd.DataFrame(columns=["id", "text", "points", "category"])
        criteria = [{**c, "points": self.weights[c["id"]]} for c in self.criteria]
        if sum(p for p in self.points if p > 0) <= 0:  # diagnostics score the rollouts; use the induced weights
            criteria = self.criteria
        by_idx = sorted(self.answers, key=lambda a: a.answer_idx)
        table = rubric_diagnostics(
            criteria,
            [a.judgements for a in by_idx if a.source == "teacher"],
            [a.judgements for a in by_idx if a.source == "student"],
            pitfalls=self.pitfalls,
        )
        table["points"] = self.points
        table.insert(3, "induced_points", [self.original_points[c["id"]] for c in self.criteria])
        return table

    @property
    def dead_criteria(self) -> list[str]:
        """Ids of criteria every judged answer meets, or every one misses: they cannot separate rollouts."""
        table = self.rubric_table()
        return list(table.loc[table["dead"].notna(), "id"]) if "dead" in table else []

    def table(self) -> pd.DataFrame:
        """One row per answer in blind order: label, author, recorded and current score, advantage.

        Until `reveal()`, author says "hidden" and advantage is empty (only rollouts have one, so it would tell).
        """
        advantage = dict(zip((a.answer_idx for a in self._students()), self.advantages))
        rows = []
        for a in self.answers:
            rows.append(
                {
                    "label": a.label,
                    "author": a.author if self.revealed else "hidden",
                    "recorded_score": a.recorded_score,
                    "score": self._score(a),
                    "advantage": advantage.get(a.answer_idx) if self.revealed and a.source == "student" else None,
                }
            )
        return pd.DataFrame(rows, columns=["label", "author", "recorded_score", "score", "advantage"])

    def edited_rubric(self) -> dict:
        """The rubric at the current weights in the model-facing format, dropped (0-point) criteria left out."""
        from .rubrics import Rubric

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

    # ---------------------------------------------------------------------------------------------------------
    # Widgets

    def _row_label(self, answer: Answer) -> str:
        return f"{answer.label} ({answer.author})" if self.revealed else answer.label

    def _build_widgets(self) -> None:
        try:
            import ipywidgets as w
        except ImportError as exc:  # the notebooks extra, not a base dependency
            raise ImportError("RubricInspector needs ipywidgets: pip install 'ropd-kit[notebooks]'") from exc
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        task_ids = list(dict.fromkeys(t for t, _ in self.keys))
        task_picker = w.Dropdown(
            options=[(self._task_option(t), t) for t in task_ids], description="task", layout={"width": "60%"}
        )
        step_picker = w.Dropdown(options=self.steps(task_ids[0]), description="step", layout={"width": "160px"})
        reveal = w.ToggleButton(value=False, description="reveal authors", icon="eye")
        reset = w.Button(description="reset weights")
        export_path = w.Text(value=str(self.run_dir / "edited_rubric.json"), description="export to",
                             layout={"width": "60%"})
        export = w.Button(description="export rubric", icon="download")
        heatmap = go.FigureWidget(
            go.Heatmap(z=[[None]], x=[""], y=[""], zmin=0, zmax=1, showscale=False, xgap=2, ygap=2,
                       colorscale=[[0, "#d9534f"], [1, "#5cb85c"]], texttemplate="%{text}"),
            layout={"title": "verdicts (green: criterion met)", "height": 360, "margin": {"l": 160, "t": 40},
                    "yaxis": {"autorange": "reversed"}},
        )
        bars = go.FigureWidget(make_subplots(rows=1, cols=2, subplot_titles=("score s_i", "advantage (rollouts)")))
        bars.add_bar(x=[], y=[], name="recorded", row=1, col=1, marker_color="#bbbbbb")
        bars.add_bar(x=[], y=[], name="current weights", row=1, col=1, marker_color="#1f77b4")
        bars.add_bar(x=[], y=[], name="advantage", row=1, col=2, marker_color="#ff7f0e")
        bars.update_layout(height=340, margin={"t": 40}, barmode="group")
        bars.update_yaxes(range=[0, 1.02], row=1, col=1)
        self.widgets = {
            "task": task_picker, "step": step_picker, "reveal": reveal, "reset": reset,
            "export_path": export_path, "export": export, "heatmap": heatmap, "bars": bars,
            "question": w.HTML(), "answers": w.HTML(), "rubric": w.HTML(), "scores": w.HTML(), "status": w.HTML(),
            "sliders": w.VBox(),
        }
        self.sliders: dict[str, Any] = {}

        def on_task(change):
            if self._syncing:
                return
            steps = self.steps(change["new"])
            self.select(change["new"], steps[0])

        def on_step(change):
            if not self._syncing and change["new"] is not None:
                self.select(self.task_id, change["new"])

        def on_reveal(change):
            self.revealed = bool(change["new"])
            self._refresh()

        def on_export(_):
            try:
                written = self.export_rubric(export_path.value)
                self.widgets["status"].value = f"<b>exported</b> {html.escape(str(written))}"
            except (ValueError, OSError) as exc:
                self.widgets["status"].value = f"<b style='color:#b00'>export failed:</b> {html.escape(str(exc))}"

        task_picker.observe(on_task, names="value")
        step_picker.observe(on_step, names="value")
        reveal.observe(on_reveal, names="value")
        reset.on_click(lambda _: self.reset_weights())
        export.on_click(on_export)
        self.widget = w.VBox(
            [
                w.HBox([task_picker, step_picker, reveal]),
                self.widgets["question"],
                self.widgets["status"],
                w.Accordion([self.widgets["answers"]], titles=("answers (blind labels)",)),
                self.widgets["rubric"],
                w.HBox([w.VBox([w.HTML("<b>criterion weights</b> (0 drops a criterion)"), self.widgets["sliders"],
                                reset]), heatmap]),
                bars,
                self.widgets["scores"],
                w.HBox([export_path, export]),
            ]
        )

    def _task_option(self, task_id: str) -> str:
        prompt = " ".join(str(self._tasks.get(task_id, {}).get("prompt", "")).split())
        return f"{task_id[:10]} · {prompt[:70]}{'…' if len(prompt) > 70 else ''}"

    def _make_sliders(self) -> None:
        import ipywidgets as w

        low, high = self.weight_range
        self.sliders = {}
        rows = []
        for c in self.criteria:
            slider = w.IntSlider(value=self.weights[c["id"]], min=low, max=high, step=1, description=c["id"],
                                 continuous_update=False, layout={"width": "280px"})

            def on_change(change, criterion_id=c["id"]):
                if not self._syncing:
                    self.set_weight(criterion_id, change["new"])

            slider.observe(on_change, names="value")
            self.sliders[c["id"]] = slider
            rows.append(w.HBox([slider, w.HTML(f"<small>{html.escape(c['text'])}</small>")]))
        self.widgets["sliders"].children = rows

    def _refresh(self, rebuild: bool = False) -> None:
        if self.widgets is None:
            return
        ws = self.widgets
        self._syncing = True
        try:
            ws["task"].value = self.task_id
            ws["step"].options = self.steps(self.task_id)
            ws["step"].value = self.step
            if rebuild:
                self._make_sliders()
            for cid, slider in self.sliders.items():
                slider.value = self.weights[cid]
        finally:
            self._syncing = False
        prompt = self._tasks.get(self.task_id, {}).get("prompt", "(task not in tasks.jsonl)")
        ws["question"].value = (
            f"<h4>Question <small>({html.escape(self.task_id)}, step {self.step})</small></h4>"
            f"<pre style='white-space:pre-wrap'>{html.escape(str(prompt))}</pre>"
        )
        ws["answers"].value = self._answers_html()
        ws["rubric"].value = self._rubric_html()
        ws["scores"].value = self.table().style.format(precision=3, na_rep="–").hide(axis="index").to_html()
        notes = []
        if self.problem:
            notes.append(f"<b style='color:#b00'>{html.escape(self.problem)}</b>")
        dead = self.dead_criteria if self.criteria else []
        if dead:
            notes.append(f"<b style='color:#a60'>dead criteria</b> (same verdict for every answer): "
                         f"{html.escape(', '.join(dead))}")
        ws["status"].value = "<br>".join(notes)
        self._draw_heatmap()
        self._draw_bars()

    def _answers_html(self) -> str:
        parts = []
        for a in self.answers:
            tags = " · truncated" if a.truncated and self.revealed else ""  # only rollouts carry the flag
            parts.append(
                f"<details><summary><b>{html.escape(self._row_label(a))}</b>{tags}</summary>"
                f"<pre style='white-space:pre-wrap'>{html.escape(a.text)}</pre></details>"
            )
        return "".join(parts) or "<i>no answers recorded</i>"

    def _rubric_html(self) -> str:
        table = self.rubric_table()
        if table.empty:
            return f"<i>{html.escape(self.problem or 'no rubric')}</i>"

        def shade(row):
            color = "background-color:#fff3cd" if pd.notna(row.get("dead")) else ""
            return [color] * len(row)

        return (
            table.style.apply(shade, axis=1)
            .format(precision=2, na_rep="–", escape="html")
            .hide(axis="index")
            .to_html()
        )

    def _draw_heatmap(self) -> None:
        matrix = self.verdict_matrix()
        z = [[None if v is None or (isinstance(v, float) and math.isnan(v)) else int(bool(v)) for v in row]
             for row in matrix.itertuples(index=False)]
        text = [["" if v is None else ("✓" if v else "✗") for v in row] for row in z]
        with self.widgets["heatmap"].batch_update():
            trace = self.widgets["heatmap"].data[0]
            trace.z, trace.text = z or [[None]], text or [[""]]
            trace.x = [f"{cid} ({self.weights[cid]:+d})" for cid in matrix.columns] or [""]
            trace.y = list(matrix.index) or [""]

    def _draw_bars(self) -> None:
        labels = [self._row_label(a) for a in self.answers]
        advantage_of = dict(zip((a.answer_idx for a in self._students()), self.advantages))
        students = [a for a in self.answers if a.source == "student"]  # blind order, like the other bars
        with self.widgets["bars"].batch_update():
            recorded, current, advantage = self.widgets["bars"].data
            recorded.x, recorded.y = labels, [a.recorded_score for a in self.answers]
            current.x, current.y = labels, [self._score(a) for a in self.answers]
            # Only rollouts have advantages, so drawing them would tell who wrote what: they wait for the reveal.
            shown = students if self.revealed else []
            advantage.x = [self._row_label(a) for a in shown]
            advantage.y = [advantage_of[a.answer_idx] for a in shown]
            self.widgets["bars"].layout.annotations[1].text = (
                "advantage (rollouts)" if self.revealed else "advantage (reveal authors to see)"
            )

    def display(self) -> None:
        from IPython.display import display

        display(self.widget)

    def _ipython_display_(self) -> None:
        self.display()
