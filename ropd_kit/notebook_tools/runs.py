"""Notebook 06 and the batch index: accuracy against samples seen and wall time across runs, samples to a target
accuracy, mimicry of the teacher, and the comparison sections of the index page.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

from .. import rundir
from ..rundir import RUN_SUBDIR, STATUS
from ..config import RunConfig
from .training import _run_name, train_log_figure, usd_columns

if TYPE_CHECKING:  # heavy imports stay inside the functions that need them
    import pandas as pd
    import plotly.graph_objects as go


# ---------------------------------------------------------------------------------------------------------------
# Efficiency across runs (notebook 06 and the batch index)


def find_runs(run_dir: str | Path, pattern: str | Sequence[str] | None = None) -> list[Path]:
    """The run directories to compare: those matching `pattern` (a glob or a list of paths); by default the runs of
    the same batch (`reports/<batch>/*/run`) or the sibling folders with a config.json, this run included."""

    from .params import project_path

    here = Path(run_dir)
    if pattern:
        # Relative to the project folder, as the notebooks' other paths (not to the kernel's folder).
        patterns = [project_path(str(p)) for p in ([pattern] if isinstance(pattern, str) else list(pattern))]
        found = sorted({Path(p) for pat in patterns for p in glob.glob(str(pat))})
    elif here.name == RUN_SUBDIR and (here.parent / STATUS).exists():  # written by the batch runner
        found = sorted(p.parent / RUN_SUBDIR for p in here.parent.parent.glob(f"*/{STATUS}"))
    else:
        found = sorted(p.parent for p in here.parent.glob("*/config.json"))
    runs = [p for p in found if (p / "config.json").exists() or (p / rundir.TRAIN_LOG).exists()]
    if here.exists() and all(p.resolve() != here.resolve() for p in runs):
        runs.append(here)
    return runs


def efficiency(runs: Iterable[str | Path]) -> "pd.DataFrame":
    """`analysis.efficiency_frame` of the runs, one run at a time so that each keeps its own name (batch run
    directories are all called `run`); says which runs have no evaluation to compare (no eval.jsonl)."""
    import pandas as pd

    from ..analysis import efficiency_frame

    runs = [Path(r) for r in runs]
    missing = [_run_name(r) for r in runs if not (r / rundir.EVAL).exists()]
    if missing:
        print(f"no eval.jsonl (train with eval_steps set, notebook 04) in: {', '.join(missing)}")
    frames = [efficiency_frame([r]).assign(run=_run_name(r)) for r in runs if (r / rundir.EVAL).exists()]
    frames = [f for f in frames if len(f)]
    if not frames:
        return efficiency_frame([])
    return pd.concat(frames, ignore_index=True)


def default_target(frame: "pd.DataFrame") -> float | None:
    """The highest accuracy every method reaches (the lowest of the methods' best): a target all of them hit."""
    if frame.empty:
        return None
    best = frame.groupby("method")["accuracy"].max()
    target = float(best.min())
    return target if target > 0 else None


def target_table(frame: "pd.DataFrame", target: float | None = None, baseline: str = "ropd") -> "pd.DataFrame":
    """Samples and seconds each method needed to reach `target` accuracy (default: `default_target`), and how many
    times more than `baseline` (the samples-to-target ratio)."""
    import pandas as pd

    from ..analysis import samples_to_target

    target = default_target(frame) if target is None else target
    if target is None:
        print("no accuracy above 0 in any run: nothing to compare (train longer, or evaluate more tasks)")
        return pd.DataFrame(columns=["method", "target", "outcome", "step", "samples_seen", "wall_s", "accuracy",
                                     "start_accuracy", "n_runs", f"samples_vs_{baseline}", f"time_vs_{baseline}"])
    table = samples_to_target(frame, target)
    base = table.set_index("method")
    for column, x in ((f"samples_vs_{baseline}", "samples_seen"), (f"time_vs_{baseline}", "wall_s")):
        ref = base[x].get(baseline) if baseline in base.index else None
        table[column] = [
            (row[x] / ref) if ref and not pd.isna(ref) and not pd.isna(row[x]) else float("nan")
            for _, row in table.iterrows()
        ]
    return table


def evaluation_table(frame: "pd.DataFrame") -> "pd.DataFrame":
    """One row per run of an `efficiency` frame: its metric (pass@1, or the mean reference-rubric score of an
    open-ended set), the number of evaluation tasks, the value before training (the first evaluated step) and at the
    last evaluated step, and the change. The batch index shows it, so runs on different sets read side by side."""
    import pandas as pd

    rows = []
    for run, part in frame.groupby("run", sort=False):
        part = part.sort_values("step")
        first, last = part.iloc[0], part.iloc[-1]
        rows.append({"run": run, "method": first["method"], "metric": first["metric"], "n_tasks": last["n_tasks"],
                     "first_step": int(first["step"]), "first": first["accuracy"],
                     "last_step": int(last["step"]), "last": last["accuracy"],
                     "change": last["accuracy"] - first["accuracy"]})
    return pd.DataFrame(rows, columns=["run", "method", "metric", "n_tasks", "first_step", "first", "last_step",
                                       "last", "change"])


def mimicry(runs: Iterable[str | Path], config: RunConfig, *, max_per_step: int | None = 8) -> "pd.DataFrame":
    """`analysis.mimicry_frame`: the teacher log-prob of each run's rollouts per step (white-box teacher
    `config.lopd_teacher_model`, `max_per_step` rollouts scored per step) beside accuracy."""
    import pandas as pd

    from ..analysis import load_teacher, mimicry_frame

    runs = [Path(r) for r in runs if (Path(r) / rundir.ROLLOUTS).exists()]
    if max_per_step == 0:
        print("mimicry skipped (max_per_step=0)")
        return mimicry_frame([])
    if not runs:
        print("no rollouts.jsonl in these runs: nothing to score")
        return mimicry_frame([])
    model, tokenizer = load_teacher(config.lopd_teacher_model, dtype=config.student_dtype)
    frames = [mimicry_frame([r], model, tokenizer, max_per_step=max_per_step, seed=config.seed).assign(run=_run_name(r))
              for r in runs]
    return pd.concat(frames, ignore_index=True)


def run_usage(run_dir: str | Path) -> dict:
    """A run's judge usage per role, summed over its train log's steps (the last record of a step counts)."""
    from ..llm import sum_usage

    by_step = {r.get("step"): r for r in rundir.read_jsonl(Path(run_dir) / rundir.TRAIN_LOG)}
    return sum_usage(r["judge_usage"] for r in by_step.values() if isinstance(r.get("judge_usage"), dict))


def run_judge_usd(run_dir: str | Path) -> float | None:
    """A run's judge dollars over all its steps; None when no judge endpoint of it is priced."""
    return usd_columns(run_usage(run_dir)).get("judge_usd")


def judge_cost(runs: Iterable[str | Path]) -> "pd.DataFrame":
    """One row per run with a train log: steps, judge calls, HTTP requests and tokens summed over its steps, and,
    when any run is priced, `judge_usd` and `usd_<role>` (NaN for a run or role without a price table)."""
    import pandas as pd

    from ..analysis import run_method

    rows = []
    for run in (Path(r) for r in runs):
        if not (run / rundir.TRAIN_LOG).exists():
            continue
        usage = run_usage(run)
        steps = {r.get("step") for r in rundir.read_jsonl(run / rundir.TRAIN_LOG)}
        judge = [row for role, row in usage.items() if role != "student"]
        rows.append({"run": _run_name(run), "method": run_method(run), "steps": len(steps),
                     "judge_calls": sum(r.get("calls", 0) for r in judge),
                     "judge_http_requests": sum(r.get("http_requests", 0) for r in judge),
                     "judge_tokens": sum(r.get("prompt_tokens", 0) + r.get("completion_tokens", 0) for r in judge),
                     **usd_columns(usage)})
    return pd.DataFrame(rows, columns=None if rows else ["run", "method", "steps", "judge_calls",
                                                         "judge_http_requests", "judge_tokens"])


def comparison_sections(run_dirs: Sequence[Path], target: float | None = None) -> tuple[list[str], bool]:
    """HTML sections of the batch index: training curves, efficiency, samples-to-target, signal AUC, mimicry.

    Returns (sections, whether they need plotly.js in the page head). Runs without the logs are simply absent.
    """
    import html as html_lib

    import pandas as pd

    from ..analysis import NOT_MEASURABLE, efficiency_figure, mimicry_figure

    def fig_html(fig: "go.Figure") -> str:
        return fig.to_html(include_plotlyjs=False, full_html=False)

    def table_html(frame: "pd.DataFrame") -> str:
        # JSON nulls read back as None in object columns: show them as blanks, like NaN
        frame = frame.astype(object).where(frame.notna(), "")
        return frame.to_html(index=False, float_format=lambda x: f"{x:.3f}", border=0)

    sections: list[str] = []
    with_logs = [p for p in run_dirs if (p / rundir.TRAIN_LOG).exists()]
    if with_logs:
        sections.append("<h2>Training</h2>" + fig_html(train_log_figure(with_logs)))
        cost = judge_cost(with_logs)
        for column in [c for c in cost.columns if c == "judge_usd" or c.startswith("usd_")]:
            # Dollars to the cent's hundredth (a small run costs fractions of a cent); "—": no price table.
            cost[column] = ["—" if pd.isna(x) else f"{x:.4f}" for x in cost[column]]
        sections.append("<h2>Judge cost</h2>" + table_html(cost))
    with_eval = [p for p in run_dirs if (p / rundir.EVAL).exists()]
    if with_eval:
        frame = efficiency(with_eval)
        if len(frame):
            sections.append("<h2>Evaluation</h2>" + table_html(evaluation_table(frame)))
            target = default_target(frame) if target is None else target
            sections.append("<h2>Efficiency</h2>" + fig_html(efficiency_figure(frame, "samples_seen", target=target))
                            + fig_html(efficiency_figure(frame, "wall_s", target=target)))
            if frame["metric"].nunique() > 1:
                # A method's runs are averaged step by step: pass@1 and a rubric score must not be mixed.
                sections.append('<p class="note">' + html_lib.escape(
                    "No cost-to-target table: these runs measure different things (" + ", ".join(
                        sorted(frame["metric"].unique())) + "); see the evaluation table.") + "</p>")
            elif target is not None:
                costs = target_table(frame, target)
                sections.append(f"<h3>Cost to reach accuracy {target:.2f}</h3>" + table_html(costs))
                if len(costs) and (costs["outcome"] == NOT_MEASURABLE).all():
                    sections.append('<p class="note">' + html_lib.escape(
                        f"Every method was at accuracy {target:.2f} or above before training, so this run cannot "
                        "measure what reaching it costs: train for more steps, or evaluate on more tasks.") + "</p>")
    aucs = [rundir.read_frame(p / "signal_auc.jsonl").assign(run=_run_name(p)) for p in run_dirs
            if (p / "signal_auc.jsonl").exists()]
    if aucs:
        table = pd.concat(aucs, ignore_index=True)
        columns = ["run"] + [c for c in table.columns if c != "run"]
        sections.append("<h2>Reward signals vs correctness (ROC AUC)</h2>" + table_html(table[columns]))
    mims = [rundir.read_frame(p / "mimicry.jsonl") for p in run_dirs if (p / "mimicry.jsonl").exists()]
    if mims:
        # notebook 06 of every run scores all runs of the batch so far: keep the latest line per (run, step)
        frame = pd.concat(mims, ignore_index=True).drop_duplicates(["run", "step"], keep="last")
        sections.append("<h2>Mimicry</h2>" + fig_html(mimicry_figure(frame)))
    if not sections:
        sections.append('<p class="note">' + html_lib.escape(
            "No comparison yet: runs have no train_log.jsonl / eval.jsonl (run notebook 04 with eval_steps set)."
        ) + "</p>")
    return sections, any("plotly-graph-div" in s for s in sections)
