"""The inspector's ipywidgets view: `RubricInspector(run_dir)` in a notebook cell (notebook 02 and 03).

Every control calls a method of `state.InspectorState`, and `_refresh` redraws the view from the state, so what the
page shows is what the plain methods return. The HTML parts carry CSS classes (`ropd-scores`, `ropd-rubric`,
`ropd-weight`) that the JupyterLab test reads the rendered page by.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pandas as pd

from .state import CORRECTNESS_COLUMNS, InspectorState


class RubricInspector(InspectorState):
    """Browse and re-weight the rubrics of a run directory: `RubricInspector("runs/demo")` in a notebook cell."""

    def __init__(self, run_dir: str | Path, *, task_id: str | None = None, step: int | None = None):
        self.widgets: dict[str, Any] | None = None  # none yet: select() in the state's __init__ draws nothing
        self.sliders: dict[str, Any] = {}
        self._syncing = False
        super().__init__(run_dir, task_id=task_id, step=step)
        self._build_widgets()
        self._refresh(rebuild=True)

    def reveal(self, on: bool = True) -> None:
        if self.widgets is not None and self.widgets["reveal"].value != bool(on):
            self.widgets["reveal"].value = bool(on)  # its observer sets the state and refreshes
        else:
            super().reveal(on)

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
        self.widgets["rubric"].add_class("ropd-rubric")
        self.widgets["scores"].add_class("ropd-scores")

        def on_task(change):
            if self._syncing:
                return
            steps = self.steps(change["new"])
            self.select(change["new"], steps[0])

        def on_step(change):
            if not self._syncing and change["new"] is not None:
                self.select(self.task_id, change["new"])

        def on_reveal(change):
            InspectorState.reveal(self, bool(change["new"]))

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
            slider.add_class("ropd-weight")

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
        truth = self.ground_truth
        ws["question"].value = (
            f"<h4>Question <small>({html.escape(self.task_id)}, step {self.step})</small></h4>"
            f"<pre style='white-space:pre-wrap'>{html.escape(str(prompt))}</pre>"
            + (f"<small>ground truth: <code>{html.escape(truth)}</code></small>" if truth is not None else "")
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
                f"<details><summary><b>{html.escape(self.row_label(a))}</b>{tags}</summary>"
                f"<pre style='white-space:pre-wrap'>{html.escape(a.text)}</pre></details>"
            )
        return "".join(parts) or "<i>no answers recorded</i>"

    def _rubric_html(self) -> str:
        table = self.rubric_table()
        if table.empty:
            return f"<i>{html.escape(self.problem or 'no rubric')}</i>"
        note = ""
        if int(table["n_labelled"].max()) == 0:
            # Without ground truth the correctness columns are empty; the table stays readable without them.
            table = table.drop(columns=CORRECTNESS_COLUMNS)
            note = "<small>no ground-truth answer for this task: agreement with correctness is not shown</small>"
        else:
            # Beside the criterion, before the rubric-only diagnostics: they are what a weight change is judged by.
            first = ["id", "text", "points", "induced_points", "category", "agreement", "n_labelled",
                     "correct_discrimination"]
            table = table[first + [c for c in table.columns if c not in first]]
            note = ("<small><b>agreement</b>: share of the labelled rollouts (n_labelled) where the verdict equals "
                    "correctness; <b>correct_discrimination</b>: pass rate on right rollouts minus on wrong ones "
                    "(red: the criterion favours wrong answers)</small>")

        def shade(row):
            color = "background-color:#fff3cd" if pd.notna(row.get("dead")) else ""
            return [color] * len(row)

        def wrong_way(value):
            return "background-color:#f8d7da" if pd.notna(value) and value < 0 else ""

        styler = table.style.apply(shade, axis=1)
        if "correct_discrimination" in table:
            styler = styler.map(wrong_way, subset=["correct_discrimination"])
        return styler.format(precision=2, na_rep="–", escape="html").hide(axis="index").to_html() + note

    def _draw_heatmap(self) -> None:
        matrix = self.verdict_matrix()
        z, text = self.heatmap_cells()
        with self.widgets["heatmap"].batch_update():
            trace = self.widgets["heatmap"].data[0]
            trace.z, trace.text = z or [[None]], text or [[""]]
            trace.x = [f"{cid} ({self.weights[cid]:+d})" for cid in matrix.columns] or [""]
            trace.y = list(matrix.index) or [""]

    def _draw_bars(self) -> None:
        labels = [self.row_label(a) for a in self.answers]
        advantage_of = dict(zip((a.answer_idx for a in self._students()), self.advantages))
        students = [a for a in self.answers if a.source == "student"]  # blind order, like the other bars
        with self.widgets["bars"].batch_update():
            recorded, current, advantage = self.widgets["bars"].data
            recorded.x, recorded.y = labels, [a.recorded_score for a in self.answers]
            current.x, current.y = labels, [self._score(a) for a in self.answers]
            # Only rollouts have advantages, so drawing them would tell who wrote what: they wait for the reveal.
            shown = students if self.revealed else []
            advantage.x = [self.row_label(a) for a in shown]
            advantage.y = [advantage_of[a.answer_idx] for a in shown]
            self.widgets["bars"].layout.annotations[1].text = (
                "advantage (rollouts)" if self.revealed else "advantage (reveal authors to see)"
            )

    def display(self) -> None:
        from IPython.display import display

        display(self.widget)

    def _ipython_display_(self) -> None:
        self.display()
