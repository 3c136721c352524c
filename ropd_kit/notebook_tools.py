"""The glue between the notebooks (01–06) and the stage functions: parameters, servers, tables, reports.

Notebooks stay thin: a `parameters` cell, then one call per step. What would be a loop or an `if` in a cell lives
here instead. In: a notebook's namespace (its flat parameters) and the run directory the stages wrote. Out: a
RunConfig, resolved endpoints, pandas tables and plotly figures that show a person what each stage produced, the
offline HTML export of an executed notebook, and stripped notebooks for git.

    params = notebook_tools.parameters(globals())   # the parameters cell's values (and papermill's injected ones)
    config = notebook_tools.run_config(params)       # + what earlier notebooks of this run_dir were given

CLI: `python -m ropd_kit.notebook_tools strip notebooks/*.ipynb` (clear outputs, keep the `parameters` tag) and
`python -m ropd_kit.notebook_tools check notebooks/*.ipynb` (exit 1 if any notebook has outputs).
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from . import rundir
from .config import EndpointConfig, RunConfig

if TYPE_CHECKING:  # heavy imports stay inside the functions that need them
    import pandas as pd
    import plotly.graph_objects as go

ROLES = ("teacher", "rubricator", "verifier", "student")
PARAMS_FILE = "notebook_params.json"  # the flat parameters as given (local endpoints unresolved), merged per notebook
PLOTLY_MIME = "application/vnd.plotly.v1+json"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


# ---------------------------------------------------------------------------------------------------------------
# Parameters and config


def config_parameter_names() -> list[str]:
    """Every flat name `RunConfig.from_params` accepts: its fields, and `<role>_<endpoint field>` per role."""
    names = [n for n in RunConfig.model_fields if n not in ROLES]
    names += [f"{role}_{field}" for role in ROLES for field in EndpointConfig.model_fields]
    return sorted(set(names))


def parameters(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The RunConfig parameters defined in a notebook's namespace (pass `globals()` right after the parameters cell)."""
    names = set(config_parameter_names())
    return {k: v for k, v in namespace.items() if k in names and not k.startswith("_")}


def run_config(params: Mapping[str, Any]) -> RunConfig:
    """A RunConfig from flat parameters, on top of those the earlier notebooks of the same run_dir were given.

    Notebook 01 sets the tasks and the teacher, 04 the method, and so on: each notebook's parameters win over what
    was saved before — except None, which means "as an earlier notebook set it" (then the RunConfig default) — and
    the merged set is saved again (`notebook_params.json`, and `config.json`), so the next notebook only needs
    `run_dir` to carry on. Refuses parameters that would write a secret (see batch.check_secrets).
    """
    from .batch import check_secrets

    check_secrets(params)
    run_dir = Path(params.get("run_dir") or RunConfig.model_fields["run_dir"].default)
    saved_path = run_dir / PARAMS_FILE
    saved: dict[str, Any] = {}
    if saved_path.exists():
        try:
            saved = json.loads(saved_path.read_text())
        except json.JSONDecodeError as exc:
            raise rundir.RecordError(f"{saved_path}: not valid JSON ({exc.msg}); delete it to start over") from exc
    # Every RunConfig field that may be None defaults to None, so "None = inherit, else default" is one rule.
    given = {k: v for k, v in params.items() if v is not None}
    merged = {**saved, **given, "run_dir": str(run_dir)}
    config = RunConfig.from_params(**merged)
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = saved_path.with_name(PARAMS_FILE + ".tmp")
    tmp.write_text(json.dumps(merged, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, saved_path)
    config.save()
    return config


def init_notebook() -> None:
    """Display settings for the notebooks: plotly figures as the plotly mimetype (JupyterLab renders it; the HTML
    export turns it into an offline figure), and plain-text progress bars when run headless by the batch runner."""
    import pandas as pd
    import plotly.io as pio

    pio.renderers.default = "plotly_mimetype"
    pd.set_option("display.max_colwidth", 120)
    pd.set_option("display.max_rows", 60)
    if os.environ.get("ROPD_HEADLESS"):
        # Widget bars are stored as their first frame ("0%") in an executed notebook; text bars end up complete.
        import tqdm.auto
        import tqdm.std

        tqdm.auto.tqdm = tqdm.std.tqdm


# ---------------------------------------------------------------------------------------------------------------
# Local servers, started once per kernel


_SERVERS: dict[tuple, Any] = {}


def resolve_endpoints(config: RunConfig, roles: Sequence[str] = ROLES) -> RunConfig:
    """A copy of `config` whose `base_url="local"` endpoints (of `roles`) point at running llama-servers.

    Unlike `serve.local_endpoints`, the servers stay up for the whole kernel (stopped at exit, or by
    `stop_servers()`), so stepping through a notebook cell by cell does not reload a model for every cell.
    Roles that name the same model share one server. Endpoints with a real URL are returned unchanged.
    """
    from .models import served_gguf
    from .serve import MIN_SLOT_CTX, LocalServer

    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise ValueError(f"resolve_endpoints: unknown role(s) {unknown}; roles are {ROLES}")
    updates = {}
    for role in roles:
        endpoint = config.endpoint(role)
        if not endpoint.is_local:
            continue
        if config.server_ctx_size // config.server_parallel < MIN_SLOT_CTX:
            warnings.warn(
                f"server_ctx_size={config.server_ctx_size} over server_parallel={config.server_parallel} slots "
                f"leaves fewer than {MIN_SLOT_CTX} tokens per request; long prompts will be rejected",
                stacklevel=2,
            )
        _, gguf = served_gguf(endpoint.model)
        key = (str(gguf.resolve()), config.server_parallel, config.server_ctx_size, config.server_threads)
        server = _SERVERS.get(key)
        if server is None or not server.running:
            server = LocalServer(endpoint.model, parallel=config.server_parallel, ctx_size=config.server_ctx_size,
                                 threads=config.server_threads).start()  # start() registers the stop at exit
            _SERVERS[key] = server
        updates[role] = endpoint.model_copy(update={"base_url": server.base_url, "model": server.model_id})
    return config.model_copy(update=updates)


def stop_servers() -> int:
    """Stop the servers `resolve_endpoints` started in this kernel; returns how many were running."""
    running = [s for s in _SERVERS.values() if s.running]
    for server in running:
        server.stop()
    _SERVERS.clear()
    return len(running)


def endpoint_table(config: RunConfig) -> "pd.DataFrame":
    """Role, base_url, model and key variable NAME of each endpoint (never the key)."""
    import pandas as pd

    rows = [
        {"role": r, "base_url": config.endpoint(r).base_url, "model": config.endpoint(r).model,
         "api_key_env": config.endpoint(r).api_key_env}
        for r in ROLES
    ]
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------------------------
# Tables over a run directory (notebooks 01–03)


def _path(run: RunConfig | str | Path) -> Path:
    return run.path if isinstance(run, RunConfig) else Path(run)


def _answers(path: Path) -> dict[str, str | None]:
    return {t["id"]: t.get("answer") for t in rundir.read_jsonl(path / rundir.TASKS)}


def _correct(answer: str | None, text: str | None) -> bool | None:
    from .answers import is_correct

    if answer is None or text is None:
        return None
    return bool(is_correct(answer, text))


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


def rubrics_table(run: RunConfig | str | Path, step: int | None = 0) -> "pd.DataFrame":
    """One row per criterion of every rubric (at `step`; None: all steps): task, step, id, points, category, text."""
    import pandas as pd

    rows = []
    for r in rundir.read_jsonl(_path(run) / rundir.RUBRICS):
        if step is not None and r.get("step", 0) != step:
            continue
        for c in r.get("criteria") or []:
            rows.append({"task_id": r["task_id"], "step": r.get("step", 0), "id": c["id"], "points": c["points"],
                         "category": c.get("category"), "text": c["text"]})
    return pd.DataFrame(rows, columns=["task_id", "step", "id", "points", "category", "text"])


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

    from .scoring import group_advantages

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


# ---------------------------------------------------------------------------------------------------------------
# Training (notebook 04)


def train_summary(result: Any) -> dict[str, Any]:
    """The numbers of a `train.TrainResult` a person looks at first (no DataFrame, no usage dump)."""
    fields = ("method", "backend", "steps", "wall_s", "judge_groups", "judge_failures", "checkpoint")
    return {f: (str(getattr(result, f)) if f == "checkpoint" else getattr(result, f, None)) for f in fields}


TRAIN_LOG_COLUMNS = ("step", "samples_seen", "wall_s", "reward_mean", "reward_std", "loss", "kl", "judge_calls",
                     "judge_groups", "judge_failures", "rubric_size", "teacher_score_mean")


def train_log_table(run: RunConfig | str | Path) -> "pd.DataFrame":
    """The train log's main columns, one row per optimizer step (the same fields for every method)."""
    import pandas as pd

    log = rundir.read_frame(_path(run) / rundir.TRAIN_LOG)
    if log.empty:
        print(f"{_path(run) / rundir.TRAIN_LOG}: no steps yet — run the training cell above")
        return pd.DataFrame(columns=list(TRAIN_LOG_COLUMNS))
    return log[[c for c in TRAIN_LOG_COLUMNS if c in log.columns]]


def train_log_figure(run_dirs: RunConfig | str | Path | Iterable[str | Path]) -> "go.Figure":
    """Mean reward (± std) and loss per step of one or several runs' train_log.jsonl."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from .analysis import run_method

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


# ---------------------------------------------------------------------------------------------------------------
# Signal alignment (notebook 05)


def judge_signal(config: RunConfig, frame: "pd.DataFrame", *, progress: bool = True) -> "pd.DataFrame":
    """The teacher-as-judge score (0–1, `reward.JudgeReward`, no rubric) of each rollout of a `signal_frame`.

    Returns records task_id, step, rollout_idx, judge (None where the grade could not be read).
    """
    import asyncio

    import pandas as pd
    from tqdm.auto import tqdm

    from .llm import make_clients, run_sync
    from .reward import JudgeReward

    async def go() -> list[float | None]:
        async with make_clients(config) as clients:
            judge = JudgeReward(config, clients, None, num_generations=max(2, config.n_rollouts))
            bar = tqdm(total=len(frame), desc="teacher-as-judge", disable=not progress)

            async def one(prompt: str, text: str | None) -> float | None:
                score = (await judge.score(prompt, text))[0] if text else None
                bar.update(1)
                return score

            try:
                return await asyncio.gather(*(one(p, t) for p, t in zip(frame["prompt"], frame["text"])))
            finally:
                bar.close()

    out = frame[["task_id", "step", "rollout_idx"]].copy()
    out["judge"] = pd.array(run_sync(go()), dtype="Float64") if len(frame) else []
    return out


def signal_table(
    config: RunConfig,
    signals: Sequence[str] = ("score", "logprob", "judge"),
    *,
    step: int | None = None,
    max_rollouts: int | None = None,
) -> "pd.DataFrame":
    """`analysis.signal_frame` of the run plus the signals asked for: "score" (rubric reward, always there),
    "logprob" (mean token log-prob under the white-box teacher `config.lopd_teacher_model`) and "judge" (the
    teacher-as-judge score through the verifier endpoint; local endpoints are started). `max_rollouts` keeps a
    seeded random subset so a CPU run stays short."""
    from .analysis import add_teacher_logprob, load_teacher, signal_frame

    unknown = sorted(set(signals) - {"score", "logprob", "judge"})
    if unknown:
        raise ValueError(f"signal_table: unknown signal(s) {unknown}; choose from score, logprob, judge")
    frame = signal_frame(config.path, step=step)
    if max_rollouts is not None and len(frame) > max_rollouts:
        frame = frame.sample(n=max_rollouts, random_state=config.seed).sort_index().reset_index(drop=True)
    if "judge" in signals:
        judged = judge_signal(resolve_endpoints(config, roles=("verifier",)), frame)
        frame = frame.merge(judged, on=["task_id", "step", "rollout_idx"], how="left")
    if "logprob" in signals:
        model, tokenizer = load_teacher(config.lopd_teacher_model)
        frame = add_teacher_logprob(frame, model, tokenizer)
    return frame


def save_table(config: RunConfig | str | Path, name: str, frame: "pd.DataFrame") -> Path:
    """Write a result table into the run directory as `<name>.jsonl` (the batch index collects `signal_auc`)."""
    target = _path(config) / f"{name}.jsonl"
    records_ = json.loads(frame.to_json(orient="records"))  # NaN -> null, numpy -> plain types
    rundir.write_jsonl(target, records_)
    return target


# ---------------------------------------------------------------------------------------------------------------
# Efficiency across runs (notebook 06 and the batch index)


def find_runs(run_dir: str | Path, pattern: str | Sequence[str] | None = None) -> list[Path]:
    """The run directories to compare: those matching `pattern` (a glob or a list of paths); by default the runs of
    the same batch (`reports/<batch>/*/run`) or the sibling folders with a config.json, this run included."""
    from .batch import RUN_SUBDIR, STATUS

    here = Path(run_dir)
    if pattern:
        patterns = [pattern] if isinstance(pattern, str) else list(pattern)
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

    from .analysis import efficiency_frame

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

    from .analysis import samples_to_target

    target = default_target(frame) if target is None else target
    if target is None:
        print("no accuracy above 0 in any run: nothing to compare (train longer, or evaluate more tasks)")
        return pd.DataFrame(columns=["method", "target", "reached", "step", "samples_seen", "wall_s", "accuracy",
                                     "n_runs", f"samples_vs_{baseline}", f"time_vs_{baseline}"])
    table = samples_to_target(frame, target)
    base = table.set_index("method")
    for column, x in ((f"samples_vs_{baseline}", "samples_seen"), (f"time_vs_{baseline}", "wall_s")):
        ref = base[x].get(baseline) if baseline in base.index else None
        table[column] = [
            (row[x] / ref) if ref and not pd.isna(ref) and not pd.isna(row[x]) else float("nan")
            for _, row in table.iterrows()
        ]
    return table


def mimicry(runs: Iterable[str | Path], config: RunConfig, *, max_per_step: int | None = 8) -> "pd.DataFrame":
    """`analysis.mimicry_frame`: the teacher log-prob of each run's rollouts per step (white-box teacher
    `config.lopd_teacher_model`, `max_per_step` rollouts scored per step) beside accuracy."""
    import pandas as pd

    from .analysis import load_teacher, mimicry_frame

    runs = [Path(r) for r in runs if (Path(r) / rundir.ROLLOUTS).exists()]
    if max_per_step == 0:
        print("mimicry skipped (max_per_step=0)")
        return mimicry_frame([])
    if not runs:
        print("no rollouts.jsonl in these runs: nothing to score")
        return mimicry_frame([])
    model, tokenizer = load_teacher(config.lopd_teacher_model)
    frames = [mimicry_frame([r], model, tokenizer, max_per_step=max_per_step, seed=config.seed).assign(run=_run_name(r))
              for r in runs]
    return pd.concat(frames, ignore_index=True)


def comparison_sections(run_dirs: Sequence[Path], target: float | None = None) -> tuple[list[str], bool]:
    """HTML sections of the batch index: training curves, efficiency, samples-to-target, signal AUC, mimicry.

    Returns (sections, whether they need plotly.js in the page head). Runs without the logs are simply absent.
    """
    import html as html_lib

    import pandas as pd

    from .analysis import efficiency_figure, mimicry_figure

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
    with_eval = [p for p in run_dirs if (p / rundir.EVAL).exists()]
    if with_eval:
        frame = efficiency(with_eval)
        if len(frame):
            target = default_target(frame) if target is None else target
            sections.append("<h2>Efficiency</h2>" + fig_html(efficiency_figure(frame, "samples_seen", target=target))
                            + fig_html(efficiency_figure(frame, "wall_s", target=target)))
            if target is not None:
                sections.append(f"<h3>Cost to reach accuracy {target:.2f}</h3>" + table_html(target_table(frame, target)))
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


# ---------------------------------------------------------------------------------------------------------------
# Notebook files: offline HTML export, stripping outputs


_OFFLINE_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}{{ resources.ropd_head_js }}{%- endblock html_head_js -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
"""
_WIDGET_NOTE = ('<p style="color:#555;font-style:italic">(an interactive widget: open the notebook in JupyterLab '
                'to use it)</p>')


def _static_outputs(nb: Any) -> bool:
    """Turn plotly mimetype outputs into offline HTML figures and widget views into a note. True if any figure."""
    import plotly.io as pio

    figures = False
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data")
            if not data:
                continue
            if PLOTLY_MIME in data:
                spec = data.pop(PLOTLY_MIME)
                fig = {k: spec[k] for k in ("data", "layout", "frames") if k in spec}
                data["text/html"] = pio.to_html(fig, include_plotlyjs=False, full_html=False, validate=False,
                                                config=spec.get("config"))
                figures = True
            elif WIDGET_MIME in data:
                out["data"] = {"text/html": _WIDGET_NOTE}
    return figures


def export_html(notebook: str | Path, target: str | Path | None = None) -> Path:
    """An executed notebook as one self-contained HTML file that renders offline: plotly.js inlined once, no CDN
    scripts (require.js, MathJax, widget manager), images embedded."""
    import jinja2
    import nbformat
    from nbconvert import HTMLExporter
    from plotly.offline import get_plotlyjs

    source = Path(notebook)
    nb = nbformat.read(source, as_version=4)
    nb.metadata.pop("widgets", None)  # widget views are not rendered here (see _static_outputs)
    head = f'<script type="text/javascript">{get_plotlyjs()}</script>' if _static_outputs(nb) else ""
    exporter = HTMLExporter(
        template_name="lab",
        extra_loaders=[jinja2.DictLoader({"ropd_offline.html.j2": _OFFLINE_TEMPLATE})],
        template_file="ropd_offline.html.j2",
        embed_images=True,
    )
    body, _ = exporter.from_notebook_node(nb, resources={"ropd_head_js": head, "metadata": {"name": source.stem}})
    out = Path(target) if target else source.with_suffix(".html")
    out.write_text(body, encoding="utf-8")
    return out


def _stripped(nb: Any) -> bool:
    """Clear outputs, execution counts and run metadata in place; True if anything changed."""
    changed = False
    for cell in nb.cells:
        meta = cell.get("metadata", {})
        for key in ("execution", "papermill", "collapsed", "scrolled"):
            if key in meta:
                del meta[key]
                changed = True
        if cell.cell_type == "code":
            if cell.get("outputs") or cell.get("execution_count") is not None:
                changed = True
            cell.outputs = []
            cell.execution_count = None
    for key in ("papermill", "widgets"):
        if key in nb.metadata:
            del nb.metadata[key]
            changed = True
    return changed


def strip(paths: Iterable[str | Path]) -> list[Path]:
    """Clear outputs and execution counts of notebooks (tags such as `parameters` are kept). Returns changed files."""
    import nbformat

    changed = []
    for p in paths:
        path = Path(p)
        nb = nbformat.read(path, as_version=4)
        if _stripped(nb):
            nbformat.write(nb, path)
            changed.append(path)
    return changed


def unstripped(paths: Iterable[str | Path]) -> list[Path]:
    """The notebooks among `paths` that still carry outputs, execution counts or run metadata."""
    import nbformat

    return [Path(p) for p in paths if _stripped(nbformat.read(Path(p), as_version=4))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ropd_kit.notebook_tools", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name, text in (("strip", "clear outputs and execution counts"), ("check", "fail if a notebook has outputs")):
        p = sub.add_parser(name, help=text)
        p.add_argument("paths", nargs="+")
    p = sub.add_parser("html", help="export an executed notebook as offline HTML")
    p.add_argument("paths", nargs="+")
    args = parser.parse_args(argv)
    if args.cmd == "strip":
        for path in strip(args.paths):
            print(f"stripped {path}")
        return 0
    if args.cmd == "check":
        dirty = unstripped(args.paths)
        for path in dirty:
            print(f"{path}: has outputs (run `make strip-notebooks`)", file=sys.stderr)
        return 1 if dirty else 0
    for path in args.paths:
        print(export_html(path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
