"""Tables over a run directory for notebooks 01–03: teacher references, rollouts, rubrics, verdicts, rewards
and advantages, as pandas DataFrames (and a plotly figure of a step's rewards).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import rundir
from ..config import RunConfig

if TYPE_CHECKING:  # heavy imports stay inside the functions that need them
    import pandas as pd
    import plotly.graph_objects as go


# ---------------------------------------------------------------------------------------------------------------
# Tables over a run directory (notebooks 01–03)


def _path(run: RunConfig | str | Path) -> Path:
    return run.path if isinstance(run, RunConfig) else Path(run)


def _answers(path: Path) -> dict[str, Any]:
    """task id -> Task (its answers are checked by its family), from the run's tasks.jsonl."""
    from ..data import load_tasks

    return {t.id: t for t in load_tasks(path / rundir.TASKS)} if (path / rundir.TASKS).exists() else {}


def _correct(task: Any, text: str | None) -> bool | None:
    from ..answers import correctness

    if task is None or text is None:
        return None
    return correctness(task, text)


def _short(text: Any, n: int = 70) -> str:
    text = "" if text is None else " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def records(run: RunConfig | str | Path, name: str) -> "pd.DataFrame":
    """One run-directory file as a DataFrame: name is "tasks", "teacher_refs", "rollouts", "rubrics", ..."""
    path = _path(run)
    file = name if name.endswith(".jsonl") else f"{name}.jsonl"
    if not (path / file).exists():
        raise FileNotFoundError(f"{path / file}: not written yet — run the notebook that produces it first")
    return rundir.read_frame(path / file)


def teacher_refs_table(run: RunConfig | str | Path) -> "pd.DataFrame":
    """Per task: how many teacher refs came back, how many failed, their length, and how many reach the answer."""
    import pandas as pd

    path = _path(run)
    answers = _answers(path)
    rows: dict[str, dict] = {}
    for r in rundir.read_jsonl(path / rundir.TEACHER_REFS):
        row = rows.setdefault(r["task_id"], {"task_id": r["task_id"], "refs": 0, "failed": 0, "chars": [], "ok": []})
        row["refs"] += 1
        if not r.get("text"):
            row["failed"] += 1
            continue
        row["chars"].append(len(r["text"]))
        ok = _correct(answers.get(r["task_id"]), r["text"])
        if ok is not None:
            row["ok"].append(ok)
    out = [
        {"task_id": k, "refs": v["refs"], "failed": v["failed"],
         "mean_chars": round(sum(v["chars"]) / len(v["chars"])) if v["chars"] else None,
         "correct": f"{sum(v['ok'])}/{len(v['ok'])}" if v["ok"] else "n/a"}
        for k, v in rows.items()
    ]
    return pd.DataFrame(out, columns=["task_id", "refs", "failed", "mean_chars", "correct"])


def rollouts_table(run: RunConfig | str | Path, step: int = 0) -> "pd.DataFrame":
    """Per task: the group's rollouts at `step`, failures, truncations, mean length and how many are correct."""
    import pandas as pd

    path = _path(run)
    answers = _answers(path)
    rows: dict[str, dict] = {}
    for r in rundir.read_jsonl(path / rundir.ROLLOUTS):
        if r.get("step", 0) != step:
            continue
        row = rows.setdefault(r["task_id"], {"rollouts": 0, "failed": 0, "truncated": 0, "tokens": [], "ok": []})
        row["rollouts"] += 1
        if r.get("text") is None:
            row["failed"] += 1
            continue
        row["truncated"] += bool(r.get("truncated"))
        if r.get("n_tokens") is not None:
            row["tokens"].append(r["n_tokens"])
        ok = _correct(answers.get(r["task_id"]), r["text"])
        if ok is not None:
            row["ok"].append(ok)
    out = [
        {"task_id": k, "rollouts": v["rollouts"], "failed": v["failed"], "truncated": v["truncated"],
         "mean_tokens": round(sum(v["tokens"]) / len(v["tokens"]), 1) if v["tokens"] else None,
         "correct": f"{sum(v['ok'])}/{len(v['ok'])}" if v["ok"] else "n/a"}
        for k, v in rows.items()
    ]
    return pd.DataFrame(out, columns=["task_id", "rollouts", "failed", "truncated", "mean_tokens", "correct"])


def example_group(run: RunConfig | str | Path, task: int | str = 0, *, chars: int = 600) -> "pd.DataFrame":
    """The question, the teacher refs and the step-0 rollouts of one task, side by side (texts cut to `chars`)."""
    import pandas as pd

    path = _path(run)
    tasks = rundir.read_jsonl(path / rundir.TASKS)
    if not tasks:
        raise FileNotFoundError(f"{path / rundir.TASKS}: no tasks — run notebook 01 first")
    chosen = tasks[task] if isinstance(task, int) else next((t for t in tasks if t["id"] == task), None)
    if chosen is None:
        raise KeyError(f"task {task!r} not in {path / rundir.TASKS}")
    rows = [{"who": "question", "text": _short(chosen["prompt"], chars)}]
    rows += [{"who": f"teacher ref {r['ref_idx'] + 1}", "text": _short(r.get("text") or f"(failed: {r.get('error')})", chars)}
             for r in rundir.read_jsonl(path / rundir.TEACHER_REFS) if r["task_id"] == chosen["id"]]
    rows += [{"who": f"rollout {r['rollout_idx'] + 1}", "text": _short(r.get("text") or f"(failed: {r.get('error')})", chars)}
             for r in rundir.read_jsonl(path / rundir.ROLLOUTS) if r["task_id"] == chosen["id"] and r.get("step", 0) == 0]
    return pd.DataFrame(rows)


def judge_groups(config: RunConfig, judge: bool = True, *, step: int = 0) -> dict[str, Any]:
    """Notebook 02's judging step, summarised by `pipeline.judge_summary`.

    judge=True: judge every group of `step` now (local endpoints served in this kernel; rubrics.jsonl and
    verdicts.jsonl rewritten). judge=False: call no model and summarise the rubrics and verdicts already in the run
    directory — to inspect a run judged earlier, or a training run whose judging these files record (judging again
    would overwrite them); `verifier_calls` is then None, since no call was made.
    """
    from .. import pipeline
    from .servers import resolve_endpoints

    if judge:
        endpoints = resolve_endpoints(config, roles=("rubricator", "verifier"))
        return pipeline.judge_summary(pipeline.judge_stage(endpoints, step=step))
    path = _path(config)
    if not (path / rundir.RUBRICS).exists():
        raise FileNotFoundError(f"{path / rundir.RUBRICS}: nothing judged yet — run this notebook with judge=True")
    rubrics = {r["task_id"]: r for r in rundir.read_jsonl(path / rundir.RUBRICS) if r.get("step", 0) == step}
    verdicts: dict[str, dict[str, dict]] = {}
    for v in rundir.read_jsonl(path / rundir.VERDICTS):
        if v.get("step", 0) == step:
            verdicts.setdefault(v["task_id"], {})[v["answer_key"]] = v  # a later line (replayed step) wins
    results = []
    for task_id, rubric in rubrics.items():
        answers = sorted(verdicts.get(task_id, {}).values(), key=lambda v: v.get("answer_idx", 0))
        scores = [v.get("score") for v in answers if v.get("source") == "student"]
        failed = not rubric.get("criteria") or not scores or any(s is None for s in scores)
        results.append(pipeline.GroupJudgement(
            task_id=task_id, step=step, rubric_record=rubric, verdict_records=answers,
            scores=None if failed else scores, failed=failed, error=rubric.get("error") if failed else None,
            teacher_scores=[v.get("score") for v in answers if v.get("source") == "teacher"],
        ))
    return {**pipeline.judge_summary(results), "verifier_calls": None, "judged": "read from run_dir"}


SPREAD_COLUMNS = ["student_met", "student_std", "teacher_met", "teacher_std"]


def rubrics_table(run: RunConfig | str | Path, step: int | None = 0) -> "pd.DataFrame":
    """One row per criterion of every rubric (at `step`; None: all steps): task, step, id, points, weight (what
    scored the group: its verdicts' `effective_weights`, else the points), how the criterion spread over the group
    (student_met: share of the rollouts meeting it, the mean probability for soft verdicts; student_std: its std
    over them, 0 when every rollout got the same verdict, so the criterion moved no advantage; the same over the
    teacher refs; NaN for records judged before spreads were written), category, text."""
    import pandas as pd

    path = _path(run)
    weights_of: dict[tuple[str, int], list] = {}
    if (path / rundir.VERDICTS).exists():
        for v in rundir.read_jsonl(path / rundir.VERDICTS):
            if v.get("effective_weights") is not None:  # one group's records share them; a later line wins
                weights_of[(v["task_id"], v.get("step", 0))] = v["effective_weights"]
    rows = []
    for r in rundir.read_jsonl(path / rundir.RUBRICS):
        if step is not None and r.get("step", 0) != step:
            continue
        spread = {c.get("id"): c for c in r.get("criterion_spread") or []}
        weights = weights_of.get((r["task_id"], r.get("step", 0))) or []
        for k, c in enumerate(r.get("criteria") or []):
            found = spread.get(c["id"], {})
            rows.append({"task_id": r["task_id"], "step": r.get("step", 0), "id": c["id"], "points": c["points"],
                         "weight": weights[k] if k < len(weights) else c["points"],
                         **{col: found.get(col) for col in SPREAD_COLUMNS},
                         "category": c.get("category"), "text": c["text"]})
    columns = ["task_id", "step", "id", "points", "weight", *SPREAD_COLUMNS, "category", "text"]
    frame = pd.DataFrame(rows, columns=columns)
    for col in SPREAD_COLUMNS:
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    return frame


def rubric_sizes(run: RunConfig | str | Path, step: int | None = 0) -> "pd.DataFrame":
    """Per rubric: criteria, total points, categories used, attempts the Rubricator needed, and the error if none."""
    import pandas as pd

    rows = []
    for r in rundir.read_jsonl(_path(run) / rundir.RUBRICS):
        if step is not None and r.get("step", 0) != step:
            continue
        criteria = r.get("criteria") or []
        rows.append({
            "task_id": r["task_id"], "step": r.get("step", 0), "criteria": len(criteria),
            "total_points": sum(c["points"] for c in criteria if c["points"] > 0),
            "categories": ", ".join(sorted({str(c.get("category")) for c in criteria})),
            "attempts": r.get("attempts"), "error": r.get("error"),
        })
    return pd.DataFrame(rows, columns=["task_id", "step", "criteria", "total_points", "categories", "attempts", "error"])


def rewards_table(config: RunConfig, step: int = 0) -> "pd.DataFrame":
    """One row per student rollout at `step`: its score s_i, its GRPO advantage within the group, and correctness.

    Advantages use `config.scale_rewards` (the paper's std-normalised "group" by default) and are 0 for every rollout
    of a group whose judging failed, as in training.
    """
    import pandas as pd

    from ..scoring import group_advantages

    path = config.path
    answers = _answers(path)
    texts = {(r["task_id"], r["rollout_idx"]): r.get("text") for r in rundir.read_jsonl(path / rundir.ROLLOUTS)
             if r.get("step", 0) == step}
    verdicts: dict[tuple[str, int], dict] = {}
    for v in rundir.read_jsonl(path / rundir.VERDICTS):
        if v.get("source") == "student" and v.get("step", 0) == step:
            verdicts[(v["task_id"], v["answer_idx"])] = v  # a later line (replayed step) wins
    groups: dict[str, list[tuple[int, dict]]] = {}
    for (task_id, idx), v in sorted(verdicts.items()):
        groups.setdefault(task_id, []).append((idx, v))
    rows = []
    for task_id, group in groups.items():
        scores = [v.get("score") for _, v in group]
        judged = all(s is not None for s in scores)
        advantages = group_advantages(scores, scale=config.scale_rewards) if judged else [0.0] * len(scores)
        for (idx, v), adv in zip(group, advantages):
            judgements = v.get("judgements") or []
            rows.append({
                "task_id": task_id, "rollout_idx": idx, "score": v.get("score"), "advantage": round(adv, 4),
                "passed": f"{sum(map(bool, judgements))}/{len(judgements)}" if judgements else "n/a",
                "correct": _correct(answers.get(task_id), texts.get((task_id, idx))),
                "text": _short(texts.get((task_id, idx)), 80),
            })
    return pd.DataFrame(rows, columns=["task_id", "rollout_idx", "score", "advantage", "passed", "correct", "text"])


def groups_table(run: RunConfig | str | Path, step: int = 0) -> "pd.DataFrame":
    """Per group: the teacher refs' and rollouts' mean scores, the rollouts' spread, and whether the group carries a
    learning signal (judged, and not all rollouts scored the same)."""
    import pandas as pd

    teacher: dict[str, list] = {}
    student: dict[str, list] = {}
    for v in rundir.read_jsonl(_path(run) / rundir.VERDICTS):
        if v.get("step", 0) != step:
            continue
        (teacher if v.get("source") == "teacher" else student).setdefault(v["task_id"], []).append(v.get("score"))
    rows = []
    for task_id in sorted(set(teacher) | set(student)):
        s = student.get(task_id, [])
        t = [x for x in teacher.get(task_id, []) if x is not None]
        judged = bool(s) and all(x is not None for x in s)
        mean = sum(s) / len(s) if judged else None
        std = math.sqrt(sum((x - mean) ** 2 for x in s) / max(len(s) - 1, 1)) if judged else None
        rows.append({"task_id": task_id, "teacher_mean": round(sum(t) / len(t), 3) if t else None,
                     "student_mean": None if mean is None else round(mean, 3),
                     "student_std": None if std is None else round(std, 3), "judged": judged,
                     "signal": judged and len(set(s)) > 1})
    return pd.DataFrame(rows, columns=["task_id", "teacher_mean", "student_mean", "student_std", "judged", "signal"])


def reward_figure(config: RunConfig, step: int = 0) -> "go.Figure":
    """Rubric scores of the rollouts, split by ground-truth correctness: a reward aligned with correctness separates
    the two boxes."""
    import plotly.graph_objects as go

    table = rewards_table(config, step)
    fig = go.Figure()
    for label, keep in (("correct", table["correct"] == True), ("wrong", table["correct"] == False),  # noqa: E712
                        ("no ground truth", table["correct"].isna())):
        part = table[keep]
        if len(part):
            fig.add_trace(go.Box(y=part["score"], name=f"{label} (n={len(part)})", boxpoints="all", jitter=0.4))
    fig.update_layout(title="Rubric score s_i of each rollout, by correctness", yaxis_title="score s_i",
                      yaxis={"range": [-0.05, 1.05]}, width=620, height=420)
    return fig
