"""Analysis of finished ROPD runs: is the rubric reward aligned with correctness, and is ROPD cheaper than LOPD?

Three questions from the paper, each a pure function over run directories that returns a pandas frame, plus a plotly
figure builder for the same numbers (notebooks 05 and 06, and the batch report):

- Signal alignment: ROC AUC of each reward signal against ground-truth correctness of the student's rollouts
  (`signal_frame` -> `signal_auc`, `roc_figure`), checked by each task's family (`answers.correctness`). Signals:
  the rubric reward (verdicts.jsonl `score`), the teacher log-likelihood of the rollout (`teacher_logprob`, mean
  token log-prob under a white-box teacher), and a teacher-as-judge score when one is given. Open-ended tasks have
  no correctness: their rollouts' `reference_score` (the reference rubric's, graded by the Verifier in
  `train.evaluate.reference_scores`) binarised at `score_threshold` (default 0.5: at least half the rubric's
  positive points, net of pitfalls) is the label instead, and `signal_auc` adds each signal's Spearman rank
  correlation with the outcome (the reference score, or correctness as 1/0), which needs no threshold.
- Efficiency: accuracy against samples seen and wall time per method (`efficiency_frame`), the samples needed to
  reach a target accuracy (`samples_to_target`) and the ratio between two methods (`efficiency_ratio`). Accuracy
  is pass@1, or the mean reference-rubric score for runs evaluated on open-ended tasks (`metric` says which).
- Mimicry: how close the student's rollouts are to the teacher across training (mean teacher log-prob per step,
  `mimicry_frame`) beside accuracy.

Figures are written with `save_figure` as self-contained HTML (plotly.js inlined: reports are read offline).
Nothing here calls an LLM endpoint; the only model is the optional white-box teacher of `teacher_logprob`.
"""

from __future__ import annotations

import json
import math
import random
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from . import rundir
from .answers import correctness, is_correct
from .train.evaluate import eval_curve

if TYPE_CHECKING:  # heavy imports stay inside the functions that need them
    import plotly.graph_objects as go

ONE_CLASS = "undefined (one class)"
NO_DATA = "undefined (no rows)"
# An open-ended rollout counts as right when it earns at least this share of its reference rubric's positive points.
SCORE_THRESHOLD = 0.5
REFERENCE_SCORE = "reference_score"

# Figure labels, one word per idea (the same names as the frame columns).
SIGNAL_LABELS = {"score": "rubric reward", "logprob": "teacher log-prob", "judge": "teacher-as-judge"}
AXIS_LABELS = {"samples_seen": "samples seen", "wall_s": "wall time (s)", "step": "step"}


# ---------------------------------------------------------------------------------------------------------------
# Signal alignment (AUC)


def signal_auc(
    frame: pd.DataFrame,
    signals: Sequence[str],
    label: str = "correct",
    *,
    score_threshold: float = SCORE_THRESHOLD,
    score: str = REFERENCE_SCORE,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """ROC AUC of each signal column against the boolean `label` column, its 95% interval, the within-group AUC,
    and the Spearman rank correlation with the outcome.

    With a `task_id` column the interval is a percentile bootstrap that resamples tasks (`fidelity.stats`,
    `n_boot` draws, seeded: the same frame gives the same interval), `low`/`high`; and `within_group_auc` (with
    `wg_low`, `wg_high`, `n_pairs`) is P(a right rollout outscores a wrong one of the same task and step, ties
    1/2): the ranking GRPO uses. Without `task_id` these are missing (NaN).

    Where `label` is missing and the frame has a `score` column (`reference_score`: open-ended rollouts graded
    against their reference rubric), the label is `score >= score_threshold`; a frame of open-ended rollouts only
    needs no `label` column at all. The outcome of the rank correlation is the score where there is one, else the
    label as 1/0. Rows where the signal or the label is missing are dropped per signal (counted in `n_missing`). A
    sample with only one class has no AUC: `auc` is NaN and `note` says "undefined (one class)" (sklearn's warning
    is not raised). Returns one row per signal: signal, auc, n, n_pos, n_neg, n_missing, note, label (what the
    positives are: "correct", "reference_score >= 0.5" or both), spearman, n_rank, low, high, within_group_auc,
    wg_low, wg_high, n_pairs.

    >>> f = pd.DataFrame({"score": [0.9, 0.2, 0.7, 0.1], "correct": [True, False, True, False]})
    >>> float(signal_auc(f, ["score"]).loc[0, "auc"])
    1.0
    """
    from sklearn.metrics import roc_auc_score

    if label not in frame.columns and score not in frame.columns:
        raise KeyError(f"signal_auc: label column {label!r} not in frame (columns: {list(frame.columns)})")
    rows = []
    for signal in signals:
        if signal not in frame.columns:
            raise KeyError(f"signal_auc: signal column {signal!r} not in frame (columns: {list(frame.columns)})")
        y, s, n_missing = _label_and_signal(frame, signal, label, score_threshold, score)
        n_pos = int(y.sum())
        n_neg = int(len(y) - n_pos)
        if len(y) == 0:
            auc, note = math.nan, NO_DATA
        elif n_pos == 0 or n_neg == 0:
            auc, note = math.nan, ONE_CLASS
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                auc, note = float(roc_auc_score(y, s)), ""
        spearman, n_rank = _rank_correlation(frame, signal, label, score)
        rows.append(
            {"signal": signal, "auc": auc, "n": int(len(y)), "n_pos": n_pos, "n_neg": n_neg,
             "n_missing": n_missing, "note": note, "label": _label_name(frame, label, score, score_threshold),
             "spearman": spearman, "n_rank": n_rank,
             **_intervals(frame, signal, label, score_threshold, score, n_boot, seed)}
        )
    return pd.DataFrame(rows, columns=["signal", "auc", "n", "n_pos", "n_neg", "n_missing", "note", "label",
                                       "spearman", "n_rank", *INTERVAL_COLUMNS])


INTERVAL_COLUMNS = ("low", "high", "within_group_auc", "wg_low", "wg_high", "n_pairs")


def _intervals(frame: pd.DataFrame, signal: str, label: str, threshold: float, score: str, n_boot: int,
               seed: int) -> dict[str, float]:
    """The task-bootstrap interval of the pooled AUC and the within-group AUC with its interval (NaN without
    task ids, or where undefined)."""
    from .fidelity.stats import auc_with_ci, within_group_auc

    out = dict.fromkeys(INTERVAL_COLUMNS, math.nan)
    if "task_id" not in frame.columns:
        return out
    rows = pd.DataFrame({
        "task_id": frame["task_id"].astype(str),
        "step": frame["step"] if "step" in frame.columns else 0,
        "signal": pd.to_numeric(frame[signal], errors="coerce").astype(float),
        "correct": _labels(frame, label, threshold, score),
    })
    rows = rows[rows["correct"].notna()].assign(correct=lambda f: f["correct"].astype(bool))
    pooled = auc_with_ci(rows, "signal", "correct", cluster="task_id", n_boot=n_boot, seed=seed)
    within = within_group_auc(rows, "signal", "correct", group=("task_id", "step"), cluster="task_id",
                              n_boot=n_boot, seed=seed)
    out.update(low=_or_nan(pooled["low"]), high=_or_nan(pooled["high"]), within_group_auc=_or_nan(within["auc"]),
               wg_low=_or_nan(within["low"]), wg_high=_or_nan(within["high"]),
               n_pairs=float(within.get("n_pairs") or 0))
    return out


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _labels(frame: pd.DataFrame, label: str, threshold: float, score: str) -> pd.Series:
    """The boolean label of each row: `label` where known, else `score >= threshold` where there is a score."""
    y = frame[label].astype("boolean") if label in frame.columns else pd.Series(pd.NA, index=frame.index,
                                                                                 dtype="boolean")
    if score in frame.columns:
        graded = pd.to_numeric(frame[score], errors="coerce").astype(float)
        from_score = (graded >= threshold).astype("boolean").mask(graded.isna())
        y = y.fillna(from_score)
    return y


def _outcome(frame: pd.DataFrame, label: str, score: str) -> pd.Series:
    """What the rank correlation ranks against: the score where there is one, else the label as 1/0."""
    known = frame[label].astype("boolean").astype("Float64") if label in frame.columns else None
    graded = pd.to_numeric(frame[score], errors="coerce").astype("Float64") if score in frame.columns else None
    if graded is None:
        return known.astype(float)
    return (graded if known is None else graded.fillna(known)).astype(float)


def _label_name(frame: pd.DataFrame, label: str, score: str, threshold: float) -> str:
    parts = []
    if label in frame.columns and frame[label].notna().any():
        parts.append(label)
    if score in frame.columns and (frame[score].notna() & (frame[label].isna() if label in frame.columns else True)).any():
        parts.append(f"{score} >= {threshold:g}")
    return " | ".join(parts) or label


def _rank_correlation(frame: pd.DataFrame, signal: str, label: str, score: str) -> tuple[float, int]:
    s = pd.to_numeric(frame[signal], errors="coerce").astype(float)
    outcome = _outcome(frame, label, score)
    keep = s.notna() & outcome.notna() & np.isfinite(s.fillna(0.0))
    n = int(keep.sum())
    if n < 3 or s[keep].nunique() < 2 or outcome[keep].nunique() < 2:
        return math.nan, n  # a constant has no rank order
    return float(s[keep].corr(outcome[keep], method="spearman")), n


def _interval_text(row: pd.Series) -> str:
    return "" if math.isnan(row["low"]) else f" [{row['low']:.2f}, {row['high']:.2f}]"


def _label_and_signal(
    frame: pd.DataFrame, signal: str, label: str, threshold: float = SCORE_THRESHOLD, score: str = REFERENCE_SCORE
) -> tuple[np.ndarray, np.ndarray, int]:
    s = pd.to_numeric(frame[signal], errors="coerce").astype(float)
    y = _labels(frame, label, threshold, score)
    keep = s.notna() & y.notna() & np.isfinite(s.fillna(0.0))
    return y[keep].to_numpy(dtype=bool), s[keep].to_numpy(dtype=float), int((~keep).sum())


def roc_figure(
    frame: pd.DataFrame, signals: Sequence[str], label: str = "correct", *, score_threshold: float = SCORE_THRESHOLD
) -> "go.Figure":
    """ROC curves of the signals against `label` (or the reference score at `score_threshold`, as `signal_auc`),
    AUC in the legend; a one-class signal is listed, not drawn."""
    import plotly.graph_objects as go
    from sklearn.metrics import roc_curve

    aucs = signal_auc(frame, signals, label, score_threshold=score_threshold).set_index("signal")
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "grey"}, name="chance (0.50)")
    )
    for signal in signals:
        row = aucs.loc[signal]
        name = SIGNAL_LABELS.get(signal, signal)
        if math.isnan(row["auc"]):
            fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=f"{name}: {row['note']}"))
            continue
        y, s, _ = _label_and_signal(frame, signal, label, score_threshold)
        fpr, tpr, _ = roc_curve(y, s)
        fig.add_trace(
            go.Scatter(x=fpr, y=tpr, mode="lines",
                       name=f"{name}: AUC {row['auc']:.2f}{_interval_text(row)} (n={row['n']})")
        )
    fig.update_layout(
        title=f"Reward signals vs ground truth ({aucs['label'].iloc[0] if len(aucs) else label})",
        xaxis_title="false positive rate",
        yaxis_title="true positive rate",
        xaxis={"range": [0, 1]},
        yaxis={"range": [0, 1.02], "scaleanchor": "x"},
        width=620,
        height=560,
    )
    return fig


def _last(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    # Appended files may hold a record twice (a resumed or replayed step): the later line wins.
    return frame.drop_duplicates(subset=keys, keep="last") if len(frame) else frame


def signal_frame(
    run_dir: str | Path,
    *,
    step: int | None = None,
    judge: pd.DataFrame | Iterable[Mapping[str, Any]] | None = None,
    logprob: pd.DataFrame | Iterable[Mapping[str, Any]] | None = None,
    reference: pd.DataFrame | Iterable[Mapping[str, Any]] | None = None,
) -> pd.DataFrame:
    """One row per student rollout of every judged group: its rubric reward and whether it is correct.

    Joins rollouts.jsonl (text) with verdicts.jsonl (student `score`, matched by answer_idx, the rollout's place in
    its group) and tasks.jsonl (ground truth, checked by each task's family: `answers.correctness`). Rollouts of a
    group whose judging failed keep `score` NaN, so they are counted as missing rather than dropped. `correct` is
    NA for tasks without an answer and for open-ended tasks.

    Extra columns join on (task_id, step, rollout_idx): `judge` records carry a `judge` (or `score`) column, the
    teacher-as-judge score; `logprob` records a `logprob` column (see `add_teacher_logprob` to compute it here);
    `reference` records a `reference_score` (or `score`) column, an open-ended rollout's reference-rubric score
    (`notebook_tools.signal_table` grades them), which `signal_auc` labels by.
    Columns: task_id, step, rollout_idx, score, correct, prompt, text, truncated (+ judge, logprob, reference_score).
    """
    path = Path(run_dir)
    rollouts = rundir.read_frame(path / rundir.ROLLOUTS)
    rubrics = rundir.read_frame(path / rundir.RUBRICS)
    verdicts = rundir.read_frame(path / rundir.VERDICTS)
    tasks = rundir.read_frame(path / rundir.TASKS)
    for name, frame in ((rundir.ROLLOUTS, rollouts), (rundir.RUBRICS, rubrics), (rundir.TASKS, tasks)):
        if frame.empty:
            raise FileNotFoundError(f"{path / name}: missing or empty; signal_frame needs judged rollouts")

    rollouts = _last(rollouts.assign(step=rollouts.get("step", 0)), ["task_id", "step", "rollout_idx"])
    rollouts = rollouts.sort_values(["task_id", "step", "rollout_idx"], kind="stable")
    # verdict answer_idx = position in the group sorted by rollout_idx (how pipeline.stage_judge_async lists them)
    rollouts["answer_idx"] = rollouts.groupby(["task_id", "step"]).cumcount()
    judged = rubrics[["task_id", "step"]].drop_duplicates()
    frame = rollouts.merge(judged, on=["task_id", "step"], how="inner")
    if step is not None:
        frame = frame[frame["step"] == step]

    if not verdicts.empty:
        student = _last(verdicts[verdicts["source"] == "student"], ["task_id", "step", "answer_idx"])
        frame = frame.merge(
            student[["task_id", "step", "answer_idx", "score"]], on=["task_id", "step", "answer_idx"], how="left"
        )
    else:
        frame = frame.assign(score=np.nan)
    frame["score"] = pd.to_numeric(frame["score"], errors="coerce").astype(float)

    if "answer" not in tasks.columns:
        tasks = tasks.assign(answer=None)
    tasks = _last(tasks, ["id"]).rename(columns={"id": "task_id", "answer": "ground_truth"})
    frame = frame.merge(tasks[["task_id", "prompt", "ground_truth"]], on="task_id", how="left")
    task_map = run_task_map(path)
    frame["correct"] = pd.array(
        [_correct(task_map.get(task_id), gt, text) for task_id, gt, text in
         zip(frame["task_id"], frame["ground_truth"], frame["text"])],
        dtype="boolean",
    )
    if "truncated" not in frame.columns:
        frame["truncated"] = False
    columns = ["task_id", "step", "rollout_idx", "score", "correct", "prompt", "text", "truncated"]
    frame = frame[columns].reset_index(drop=True)
    for name, extra in (("judge", judge), ("logprob", logprob), (REFERENCE_SCORE, reference)):
        if extra is not None:
            frame = _join_signal(frame, extra, name)
    return frame


def _correct(task: Any, ground_truth: Any, text: str | None) -> bool | None:
    if task is not None:
        return correctness(task, text or "")
    # A rollout of a task the run's tasks.jsonl cannot rebuild: its answer alone decides, as before families.
    if ground_truth is None or (isinstance(ground_truth, float) and math.isnan(ground_truth)):
        return None
    return bool(is_correct(str(ground_truth), text or ""))


def _join_signal(frame: pd.DataFrame, extra: Any, name: str) -> pd.DataFrame:
    extra = pd.DataFrame(extra)
    if name not in extra.columns:
        if "score" not in extra.columns:
            raise KeyError(f"{name} records need a {name!r} (or 'score') column; got {list(extra.columns)}")
        extra = extra.rename(columns={"score": name})
    keys = ["task_id", "step", "rollout_idx"]
    missing = [k for k in keys if k not in extra.columns]
    if missing:
        raise KeyError(f"{name} records need columns {keys}; missing {missing}")
    extra = _last(extra[keys + [name]], keys)
    out = frame.drop(columns=[name], errors="ignore").merge(extra, on=keys, how="left")
    out[name] = pd.to_numeric(out[name], errors="coerce").astype(float)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Teacher log-likelihood (white-box teacher, transformers)


def load_teacher(name: str | None = None, *, dtype: str = "auto"):
    """(model, tokenizer) of an offline model (default: the 1.5B teacher) from its cached transformers folder, frozen.

    `dtype` is a RunConfig.student_dtype value: "auto" picks bf16 only where the CPU (or GPU) computes it natively,
    as for the student (`train.student.choose_dtype`). In fp32 the large weights stay in the checkpoint's bf16 and
    are widened layer by layer (`train.compact`)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .config import DEFAULT_TEACHER
    from .offline.models import hf_folder
    from .train.student import choose_dtype, release_freed_memory

    release_freed_memory()
    folder = hf_folder(name or DEFAULT_TEACHER)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, choose_dtype(dtype)[0]))
    model.eval()
    model.requires_grad_(False)
    if model.dtype == torch.float32:
        from .train.compact import keep_weights_compact

        keep_weights_compact(model)  # scored forward only: half the memory, the same log-probs
    return model, tokenizer


def _prompt_ids(tokenizer, prompt: str | list[dict], chat_template: bool) -> list[int]:
    if chat_template and getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    if not isinstance(prompt, str):
        prompt = "\n\n".join(m["content"] for m in prompt)
    return list(tokenizer(prompt, add_special_tokens=True)["input_ids"])


def student_prompts(
    task_ids: Iterable[str], prompts: Iterable[str], *, tasks: Mapping[str, Any] | None = None, config: Any = None
) -> list[list[dict]]:
    """The chat each rollout was sampled from (`rollouts.student_messages`), so the teacher scores the same turn.

    `tasks` (task id -> Task, e.g. `run_task_map(run_dir)`) gives each task's family and conversation, hence its
    student prompt; a task not in it is taken as an arithmetic question (the one family before families existed).
    """
    from .data import Task
    from .rollouts import student_messages

    tasks = tasks or {}
    return [student_messages(tasks.get(str(t)) or Task(id=str(t), prompt=p, family="arithmetic"), config)
            for t, p in zip(task_ids, prompts)]


def run_task_map(run_dir: str | Path) -> dict[str, Any]:
    """Task id -> Task of a run directory's tasks.jsonl ({} when it has none)."""
    from .data import load_tasks

    path = Path(run_dir) / rundir.TASKS
    return {t.id: t for t in load_tasks(path)} if path.exists() else {}


def teacher_logprob(
    prompts: Sequence[str | list[dict]],
    answers: Sequence[str],
    model,
    tokenizer,
    *,
    batch_size: int = 4,
    max_answer_tokens: int | None = None,
    chat_template: bool = True,
) -> list[float]:
    """Mean token log-prob of each answer given its prompt under a white-box teacher (the LOPD signal).

    A prompt is a chat (list of messages, e.g. `student_prompts(...)`) or a string taken as one user turn; it is
    rendered with the tokenizer's chat template and the generation prompt, the answer's tokens follow as the
    assistant turn, and only the answer's tokens are scored. An empty answer
    has no tokens and gets NaN. Runs batched under `torch.inference_mode()`; CPU is fine for small batches.
    """
    import torch

    if len(prompts) != len(answers):
        raise ValueError(f"teacher_logprob: {len(prompts)} prompts but {len(answers)} answers")
    encoded: list[tuple[list[int], list[int]]] = []
    for prompt, answer in zip(prompts, answers):
        p_ids = _prompt_ids(tokenizer, prompt, chat_template)
        a_ids = list(tokenizer(answer or "", add_special_tokens=False)["input_ids"])
        if max_answer_tokens is not None:
            a_ids = a_ids[:max_answer_tokens]
        if not p_ids and a_ids:  # the first token needs some context to be predicted from
            p_ids, a_ids = a_ids[:1], a_ids[1:]
        encoded.append((p_ids, a_ids))

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    device = next(model.parameters()).device
    results = [math.nan] * len(encoded)
    todo = sorted((i for i, (_, a) in enumerate(encoded) if a), key=lambda i: -sum(map(len, encoded[i])))
    with torch.inference_mode():
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            seqs = [encoded[i][0] + encoded[i][1] for i in batch]
            width = max(map(len, seqs))
            keep = max(len(encoded[i][1]) for i in batch) + 1
            # Left padding puts every answer at the end, so one `logits_to_keep` window covers all of them and the
            # full-vocabulary logits of the prompts are never materialised.
            ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, seq in enumerate(seqs):
                ids[row, width - len(seq) :] = torch.tensor(seq)
                mask[row, width - len(seq) :] = 1
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            ids, mask, positions = ids.to(device), mask.to(device), positions.to(device)
            try:
                logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=keep).logits
            except TypeError:  # a model class without logits_to_keep
                logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, -keep:]
            for row, i in enumerate(batch):
                n = len(encoded[i][1])
                # logits at position t predict token t+1: the last n+1 logits (minus the final one) score the answer
                logp = torch.log_softmax(logits[row, -n - 1 : -1].float(), dim=-1)
                target = ids[row, -n:].unsqueeze(-1)
                results[i] = float(logp.gather(-1, target).mean())
    return results


def add_teacher_logprob(
    frame: pd.DataFrame, model, tokenizer, *, column: str = "logprob", tasks: Mapping[str, Any] | None = None,
    config: Any = None, **kwargs: Any
) -> pd.DataFrame:
    """A copy of a frame with `prompt` and `text` columns (e.g. `signal_frame`'s) plus the teacher log-prob.
    `tasks`/`config`: as in `student_prompts` (the run's tasks give each rollout its family's student prompt)."""
    out = frame.copy()
    prompts = student_prompts(out["task_id"], out["prompt"], tasks=tasks, config=config)
    out[column] = teacher_logprob(prompts, list(out["text"].fillna("")), model, tokenizer, **kwargs)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Efficiency (accuracy vs samples seen / wall time) and mimicry


def run_method(run_dir: str | Path) -> str:
    """The training method of a run: config.json's `method`, else train_log.jsonl's, else 'unknown'."""
    path = Path(run_dir)
    config = path / "config.json"
    if config.exists():
        try:
            method = json.loads(config.read_text()).get("method")
        except json.JSONDecodeError as exc:
            raise rundir.RecordError(f"{config}: not valid JSON ({exc.msg})") from exc
        if method:
            return str(method)
    for record in rundir.iter_jsonl(path / rundir.TRAIN_LOG):
        if record.get("method"):
            return str(record["method"])
    return "unknown"


def _progress(path: Path) -> pd.DataFrame:
    """step -> samples_seen, wall_s from train_log.jsonl (step 0, before training, is 0 samples and 0 s)."""
    log = rundir.read_frame(path / rundir.TRAIN_LOG)
    base = pd.DataFrame({"step": [0], "samples_seen": [0.0], "wall_s": [0.0]})
    if log.empty:
        return base
    for column in ("step", "samples_seen", "wall_s"):
        if column not in log.columns:
            raise KeyError(f"{path / rundir.TRAIN_LOG}: records have no {column!r} field")
    log = _last(log[["step", "samples_seen", "wall_s"]], ["step"])
    log = pd.concat([base[~base["step"].isin(log["step"])], log]).astype({"samples_seen": float, "wall_s": float})
    return log.sort_values("step").reset_index(drop=True)


def _at_steps(progress: pd.DataFrame, steps: pd.DataFrame) -> pd.DataFrame:
    # An eval step between two logged steps takes the last logged progress before it.
    steps = steps.astype({"step": "int64"}).sort_values("step")
    return pd.merge_asof(steps, progress.astype({"step": "int64"}), on="step", direction="backward")


RunDirs = Iterable[str | Path] | Mapping[str, str | Path]


def _named(run_dirs: RunDirs) -> list[tuple[str, Path]]:
    """(run name, path) pairs: a mapping names its runs, otherwise a run is named after its directory."""
    if isinstance(run_dirs, Mapping):
        return [(str(name), Path(path)) for name, path in run_dirs.items()]
    return [(Path(path).name, Path(path)) for path in run_dirs]


def efficiency_frame(run_dirs: RunDirs) -> pd.DataFrame:
    """Accuracy per evaluated step of each run, with the samples seen and wall time spent to get there.

    `run_dirs` is a list of run directories (each named after its directory) or a mapping name -> directory.

    Accuracy is `evaluate.pass_at_1` of the step's eval.jsonl records (pass@1 averaged over the k samples), or,
    for a run evaluated on open-ended tasks, `evaluate.mean_score` (the mean reference-rubric score; `metric` says
    which, per run: "pass@1" or "mean score"); an eval step between two logged training steps takes the progress of
    the last logged one, step 0 is 0 and 0 s.
    Columns: run, method, step, samples_seen, wall_s, accuracy, metric, n_tasks.
    """
    frames = []
    for name, path in _named(run_dirs):
        curve = eval_curve(path)
        if curve.empty:
            continue
        scored = (curve["metric"] != "pass@1").any()
        curve = curve.assign(accuracy=curve["score"] if scored else curve["pass@1"],
                             metric="mean score" if scored else "pass@1")
        curve = _at_steps(_progress(path), curve[["step", "accuracy", "metric", "n_tasks"]])
        frames.append(curve.assign(run=name, method=run_method(path)))
    columns = ["run", "method", "step", "samples_seen", "wall_s", "accuracy", "metric", "n_tasks"]
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns]


NOT_MEASURABLE = "not measurable at this size"


def samples_to_target(frame: pd.DataFrame, target: float) -> pd.DataFrame:
    """Per method: the first evaluated step whose accuracy reaches `target`, and its samples seen and wall time.

    Several runs of one method (seeds) are averaged step by step first. `outcome` says what was measured:
    "reached" (step, samples_seen, wall_s and accuracy are where), "not reached" (NaN costs; accuracy is the best
    one evaluated), or "not measurable at this size" when the method was already at the target before it had seen
    a sample (its first evaluation, usually step 0): reaching it cost nothing that this run measured, so the costs
    are NaN and no ratio is taken from them. `start_accuracy` is the accuracy at the first evaluated step.
    Columns: method, target, outcome, step, samples_seen, wall_s, accuracy, start_accuracy, n_runs.
    """
    rows = []
    for method, group in frame.groupby("method", sort=True):
        curve = (
            group.groupby("step", as_index=False)
            .agg(samples_seen=("samples_seen", "mean"), wall_s=("wall_s", "mean"), accuracy=("accuracy", "mean"))
            .sort_values("step")
        )
        hit = curve[curve["accuracy"] >= target - 1e-12]
        start = float(curve["accuracy"].iloc[0])
        row = {"method": method, "target": target, "step": np.nan, "samples_seen": np.nan, "wall_s": np.nan,
               "start_accuracy": start, "n_runs": int(group["run"].nunique())}
        if hit.empty:
            rows.append({**row, "outcome": "not reached", "accuracy": float(curve["accuracy"].max())})
        elif not hit.iloc[0]["samples_seen"] > 0:
            rows.append({**row, "outcome": NOT_MEASURABLE, "accuracy": float(hit.iloc[0]["accuracy"])})
        else:
            first = hit.iloc[0]
            rows.append({**row, "outcome": "reached", "step": int(first["step"]),
                         "samples_seen": float(first["samples_seen"]), "wall_s": float(first["wall_s"]),
                         "accuracy": float(first["accuracy"])})
    columns = ["method", "target", "outcome", "step", "samples_seen", "wall_s", "accuracy", "start_accuracy", "n_runs"]
    return pd.DataFrame(rows, columns=columns)


def efficiency_ratio(
    frame: pd.DataFrame, target: float, method_a: str = "lopd", method_b: str = "ropd", *, x: str = "samples_seen"
) -> float:
    """How many times more samples (or seconds, x="wall_s") `method_a` needs than `method_b` to reach `target`.

    NaN when either method is absent, never reaches the target, or is at it before training (not measurable).
    """
    costs = samples_to_target(frame, target).set_index("method")
    if method_a not in costs.index or method_b not in costs.index:
        return math.nan
    a, b = costs.loc[method_a, x], costs.loc[method_b, x]
    if pd.isna(a) or pd.isna(b) or b <= 0:
        return math.nan
    return float(a) / float(b)


def _method_colors(methods: Iterable[str]) -> dict[str, str]:
    import plotly.colors

    palette = plotly.colors.qualitative.Plotly
    return {m: palette[i % len(palette)] for i, m in enumerate(sorted(set(methods)))}


def _measure(frame: pd.DataFrame) -> str:
    """The y-axis name of an efficiency frame: what its `accuracy` column holds."""
    metrics = set(frame["metric"].dropna()) if "metric" in frame.columns else {"pass@1"}
    if metrics == {"mean score"}:
        return "mean score (reference rubric)"
    if metrics <= {"pass@1"}:
        return "accuracy (pass@1)"
    return "pass@1 / mean score"


def efficiency_figure(frame: pd.DataFrame, x: str = "samples_seen", *, target: float | None = None) -> "go.Figure":
    """Accuracy against samples seen (or wall time, `x="wall_s"`), one line per run, one colour per method; a run
    evaluated on open-ended tasks is drawn with its mean score (`efficiency_frame`'s `metric`)."""
    import plotly.graph_objects as go

    if x not in AXIS_LABELS:
        raise ValueError(f"efficiency_figure: x must be one of {sorted(AXIS_LABELS)}, got {x!r}")
    colors = _method_colors(frame["method"]) if len(frame) else {}
    fig = go.Figure()
    shown: set[str] = set()
    for (method, run), group in frame.sort_values("step").groupby(["method", "run"], sort=True):
        fig.add_trace(
            go.Scatter(
                x=group[x], y=group["accuracy"], mode="lines+markers", name=method, legendgroup=method,
                showlegend=method not in shown, line={"color": colors[method]},
                hovertext=[f"{run} step {s}" for s in group["step"]], hoverinfo="text+x+y",
            )
        )
        shown.add(method)
    if target is not None:
        fig.add_hline(y=target, line_dash="dash", line_color="grey", annotation_text=f"target {target:.2f}")
    measure = _measure(frame)
    fig.update_layout(
        title=f"{measure[0].upper()}{measure[1:]} vs {AXIS_LABELS[x]}", xaxis_title=AXIS_LABELS[x],
        yaxis_title=measure, yaxis={"range": [0, 1.02]}, width=720, height=440,
    )
    return fig


def rollout_logprobs(
    run_dir: str | Path,
    model,
    tokenizer,
    *,
    steps: Iterable[int] | None = None,
    max_per_step: int | None = None,
    seed: int = 0,
    **kwargs: Any,
) -> pd.DataFrame:
    """Teacher log-prob of the student's rollouts, per rollout (task_id, step, rollout_idx, logprob).

    `max_per_step` scores a seeded random subset of each step's rollouts, which keeps a CPU run short.
    """
    path = Path(run_dir)
    rollouts = rundir.read_frame(path / rundir.ROLLOUTS)
    tasks = rundir.read_frame(path / rundir.TASKS)
    columns = ["task_id", "step", "rollout_idx", "logprob"]
    if rollouts.empty:
        return pd.DataFrame(columns=columns)
    rollouts = _last(rollouts.assign(step=rollouts.get("step", 0)), ["task_id", "step", "rollout_idx"])
    if steps is not None:
        rollouts = rollouts[rollouts["step"].isin(list(steps))]
    if max_per_step is not None:
        rng = random.Random(seed)
        picked = []
        for _, group in rollouts.groupby("step", sort=True):
            index = list(group.index)
            picked += sorted(rng.sample(index, min(max_per_step, len(index))))
        rollouts = rollouts.loc[picked]
    prompts = dict(zip(tasks["id"], tasks["prompt"]))
    unknown = sorted(set(rollouts["task_id"]) - set(prompts))
    if unknown:
        raise KeyError(f"{path / rundir.ROLLOUTS}: task ids not in {rundir.TASKS}: {unknown[:5]}")
    out = rollouts[["task_id", "step", "rollout_idx"]].copy()
    chats = student_prompts(rollouts["task_id"], [prompts[t] for t in rollouts["task_id"]], tasks=run_task_map(path))
    out["logprob"] = teacher_logprob(chats, list(rollouts["text"].fillna("")), model, tokenizer, **kwargs)
    return out.reset_index(drop=True)


def mimicry_frame(
    run_dirs: RunDirs,
    model=None,
    tokenizer=None,
    *,
    logprobs: Mapping[str, pd.DataFrame] | None = None,
    **kwargs: Any,
) -> pd.DataFrame:
    """Per run and step: the mean teacher log-prob of the student's rollouts beside the step's accuracy.

    `run_dirs` as for `efficiency_frame`. Give a white-box teacher (`model`, `tokenizer`; extra keywords go to
    `rollout_logprobs`), or `logprobs`, a mapping run name -> `rollout_logprobs` frame computed before. Accuracy is NaN at steps that were not evaluated.
    Columns: run, method, step, samples_seen, wall_s, teacher_logprob, n_rollouts, accuracy, metric (as in
    `efficiency_frame`).
    """
    frames = []
    for name, path in _named(run_dirs):
        if logprobs is not None and name in logprobs:
            scored = pd.DataFrame(logprobs[name])
        elif model is not None and tokenizer is not None:
            scored = rollout_logprobs(path, model, tokenizer, **kwargs)
        else:
            raise ValueError(f"mimicry_frame: no logprobs for run {name!r} and no teacher model to compute them")
        if scored.empty:
            continue
        per_step = scored.groupby("step", as_index=False).agg(
            teacher_logprob=("logprob", "mean"), n_rollouts=("logprob", "count")
        )
        per_step = _at_steps(_progress(path), per_step)
        acc = efficiency_frame({name: path})
        if len(acc):
            per_step = per_step.merge(acc[["step", "accuracy"]], on="step", how="left")
            per_step["metric"] = acc["metric"].iloc[0]
        else:
            per_step = per_step.assign(accuracy=np.nan, metric=None)
        frames.append(per_step.assign(run=name, method=run_method(path)))
    columns = ["run", "method", "step", "samples_seen", "wall_s", "teacher_logprob", "n_rollouts", "accuracy",
               "metric"]
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns]


def mimicry_figure(frame: pd.DataFrame, x: str = "step") -> "go.Figure":
    """Teacher log-prob of the student's rollouts (solid, left axis) and accuracy (dotted, right axis) per run."""
    import plotly.graph_objects as go

    if x not in AXIS_LABELS:
        raise ValueError(f"mimicry_figure: x must be one of {sorted(AXIS_LABELS)}, got {x!r}")
    colors = _method_colors(frame["method"]) if len(frame) else {}
    fig = go.Figure()
    for (method, run), group in frame.sort_values("step").groupby(["method", "run"], sort=True):
        color = colors[method]
        fig.add_trace(
            go.Scatter(x=group[x], y=group["teacher_logprob"], mode="lines+markers", name=f"{run}: teacher log-prob",
                       legendgroup=run, line={"color": color})
        )
        evaluated = group[group["accuracy"].notna()]
        fig.add_trace(
            go.Scatter(x=evaluated[x], y=evaluated["accuracy"], mode="lines+markers", name=f"{run}: accuracy",
                       legendgroup=run, line={"color": color, "dash": "dot"}, yaxis="y2")
        )
    fig.update_layout(
        title="Mimicry: the student's rollouts under the teacher, beside accuracy",
        xaxis_title=AXIS_LABELS[x],
        yaxis={"title": "mean teacher log-prob per token"},
        yaxis2={"title": _measure(frame), "overlaying": "y", "side": "right", "range": [0, 1.02]},
        width=760, height=440,
    )
    return fig


# ---------------------------------------------------------------------------------------------------------------


def save_figure(fig: "go.Figure", path: str | Path) -> Path:
    """Write a figure as one self-contained HTML file (plotly.js inlined: no network needed to open it)."""
    target = Path(path)
    if target.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"save_figure writes HTML (no kaleido/PNG here); got path {target}")
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(target, include_plotlyjs=True, full_html=True)
    return target
