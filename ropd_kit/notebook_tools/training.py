"""Notebook 04: what a training run did — its summary, its train log as a table and as curves across runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from .. import rundir
from ..config import RunConfig
from .tables import _path

if TYPE_CHECKING:  # heavy imports stay inside the functions that need them
    import pandas as pd
    import plotly.graph_objects as go


# ---------------------------------------------------------------------------------------------------------------
# Training (notebook 04)


def train_summary(result: Any) -> dict[str, Any]:
    """The numbers of a `train.TrainResult` a person looks at first (no DataFrame, no usage dump). When a judge
    endpoint has a price table: `judge_usd` (the run's dollars) and `usd_<role>` for each priced role."""
    fields = ("method", "backend", "steps", "wall_s", "judge_groups", "judge_failures", "checkpoint")
    summary = {f: (str(getattr(result, f)) if f == "checkpoint" else getattr(result, f, None)) for f in fields}
    return {**summary, **usd_columns(getattr(result, "usage", None))}


def usd_columns(usage: Any) -> dict[str, float]:
    """`{"judge_usd": total, "usd_<role>": dollars, ...}` of a usage snapshot or delta (`UsageStats`, a train-log
    record's judge_usage), over the priced judge roles; empty when none is priced, so that an unpriced run shows no
    dollar figure rather than a $0 it did not cost."""
    from ..llm import total_usd

    if not isinstance(usage, dict):
        return {}
    judge = {role: row for role, row in usage.items() if role != "student" and isinstance(row, dict)}
    total = total_usd(judge)
    if total is None:
        return {}
    return {"judge_usd": total, **{f"usd_{role}": row["usd"] for role, row in judge.items()
                                   if row.get("usd") is not None}}


TRAIN_LOG_COLUMNS = ("step", "samples_seen", "wall_s", "reward_mean", "reward_std", "loss", "kl", "judge_calls",
                     "judge_groups", "judge_failures", "rubric_size", "teacher_score_mean")


def train_log_table(run: RunConfig | str | Path) -> "pd.DataFrame":
    """The train log's main columns, one row per optimizer step (the same fields for every method); when a judge
    endpoint is priced, the step's dollars too: `judge_usd` and `usd_<role>` per priced role (NaN where a step had
    no price for it). No dollar column when nothing is priced."""
    import pandas as pd

    log = rundir.read_frame(_path(run) / rundir.TRAIN_LOG)
    if log.empty:
        print(f"{_path(run) / rundir.TRAIN_LOG}: no steps yet — run the training cell above")
        return pd.DataFrame(columns=list(TRAIN_LOG_COLUMNS))
    table = log[[c for c in TRAIN_LOG_COLUMNS if c in log.columns]]
    if "judge_usage" not in log.columns:
        return table
    money = pd.DataFrame([usd_columns(u) for u in log["judge_usage"]], index=log.index)
    return pd.concat([table, money], axis=1) if len(money.columns) else table


def train_log_figure(run_dirs: RunConfig | str | Path | Iterable[str | Path]) -> "go.Figure":
    """Mean reward (± std) and loss per step of one or several runs' train_log.jsonl."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from ..analysis import run_method

    dirs = [_path(run_dirs)] if isinstance(run_dirs, (RunConfig, str, Path)) else [Path(p) for p in run_dirs]
    import plotly.colors

    fig = make_subplots(rows=1, cols=2, subplot_titles=("reward mean (± std)", "loss"))
    palette = plotly.colors.qualitative.Plotly
    drawn = 0
    for i, path in enumerate(dirs):
        # One colour per run in both panels (plotly would otherwise colour each trace anew).
        color = palette[i % len(palette)]
        log = rundir.read_frame(path / rundir.TRAIN_LOG)
        if log.empty or "step" not in log:
            continue
        log = log.drop_duplicates("step", keep="last").sort_values("step")
        name = f"{_run_name(path)} ({run_method(path)})"
        std = log["reward_std"] if "reward_std" in log else None
        fig.add_trace(go.Scatter(x=log["step"], y=log.get("reward_mean"), mode="lines+markers", name=name,
                                 legendgroup=name, line={"color": color},
                                 error_y={"type": "data", "array": std} if std is not None else None),
                      row=1, col=1)
        fig.add_trace(go.Scatter(x=log["step"], y=log.get("loss"), mode="lines+markers", name=name,
                                 legendgroup=name, showlegend=False, line={"color": color}), row=1, col=2)
        drawn += 1
    if not drawn:
        fig.add_annotation(text="no train_log.jsonl yet: run notebook 04 (training) first", showarrow=False,
                           xref="paper", yref="paper", x=0.5, y=0.5)
    fig.update_xaxes(title_text="step")
    fig.update_layout(title="Training", width=900, height=400)
    return fig


def _run_name(path: Path) -> str:
    # In a batch, a run directory is reports/<batch>/<run>/run: the run's name is its parent's.
    return path.parent.name if path.name == "run" else path.name
