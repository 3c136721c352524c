"""Evaluation against ground truth: does the student get the answer right (pass@1 averaged over k samples), and
for open-ended tasks, how much of the reference rubric does it meet (mean score)?

In: a model (a loaded one, a checkpoint folder, a registry name, a .gguf file, a local folder or a hub id) and tasks
with answers or reference rubrics. Out: one record per (task, sample) — `step`, `checkpoint`, `task_id`,
`sample_idx`, `answer_text`, `predicted`, `answer`, `correct`, `score`, `grade_error`, `n_tokens`, `truncated` — as
a pandas DataFrame, appended to `eval.jsonl` of a run directory when one is given.

Correctness is checked apart from any reward, by the task's family (`answers.correctness`): arithmetic by exact
match of the final number, math by math-verify equivalence of the final answer, multiple choice by the chosen letter.
Those records have `correct` True/False and `score` 1.0/0.0. An open-ended task has no answer to check: its `score`
is its reference rubric's (HealthBench's), Σ points of the criteria met / Σ positive points, clipped to [0, 1],
graded by the Verifier (verify.py: blind, fenced, batched, retried, through the LLM client's cache) with
`reference_scores`; its `correct` is None (a threshold on the score is the analysis' choice, `analysis.signal_auc`'s
`score_threshold`, not a fact recorded here). A sample whose grading failed has `score` None and the reason in
`grade_error`: counted (`frame.attrs["grade_failures"]`), never a silent 0. `pass_at_1` averages `correct` and
`mean_score` averages `score`, each over a task's samples first, then over tasks; on checkable tasks the two agree.

The student sees exactly the prompt it sees in training (`rollouts.student_messages`), so eval accuracy and training
reward are about the same behaviour.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

from pydantic import BaseModel, Field

from .. import rundir
from ..answers import correctness, predicted

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from ..config import RunConfig
    from ..data import Task
    from ..llm import Clients, LLMClient
    from ..rubrics import Rubric


EVAL_COLUMNS = ["step", "checkpoint", "task_id", "sample_idx", "answer_text", "predicted", "answer", "correct",
                "score", "grade_error", "n_tokens", "truncated"]


# ---------------------------------------------------------------------------------------------------------------
# Generation with a transformers model


def prompt_messages(task: "Task", config: "RunConfig | None" = None) -> list[dict]:
    """The chat the student sees for a task (the same in GRPO, lopd, sft and evaluation; the config's `prompts_dir`
    templates when it has one)."""
    from ..rollouts import student_messages

    return student_messages(task, config)


def generate_texts(
    model: Any,
    tokenizer: Any,
    conversations: Sequence[list[dict]],
    *,
    n: int = 1,
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    top_p: float = 1.0,
    batch_size: int = 16,
    seed: int | None = None,
) -> list[list[dict]]:
    """Sample `n` completions per conversation, batched; returns per conversation [{text, n_tokens, truncated}].

    temperature 0 means greedy (then n > 1 gives n identical samples, so callers sample when they want n > 1).
    """
    import torch

    if seed is not None:
        torch.manual_seed(seed)
    was_training = model.training
    model.eval()
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # decoder-only generation continues from the right edge
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    eos_ids = model.generation_config.eos_token_id
    eos_ids = {eos_ids} if isinstance(eos_ids, int) else set(eos_ids or [])
    eos_ids.add(tokenizer.eos_token_id)
    device = next(model.parameters()).device
    results: list[list[dict]] = []
    try:
        for start in range(0, len(conversations), max(1, batch_size // max(1, n))):
            chunk = conversations[start : start + max(1, batch_size // max(1, n))]
            texts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in chunk]
            enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            sampling = dict(do_sample=True, temperature=temperature, top_p=top_p) if temperature > 0 else dict(
                do_sample=False, temperature=None, top_p=None, top_k=None
            )
            with torch.no_grad():
                out = model.generate(
                    **enc,
                    max_new_tokens=max_new_tokens,
                    num_return_sequences=n,
                    pad_token_id=tokenizer.pad_token_id,
                    use_cache=True,
                    **sampling,
                )
            completions = out[:, enc["input_ids"].shape[1] :]
            for i in range(len(chunk)):
                samples = []
                for j in range(n):
                    ids = completions[i * n + j].tolist()
                    end = next((k for k, t in enumerate(ids) if t in eos_ids), None)
                    kept = ids if end is None else ids[:end]
                    samples.append(
                        {
                            "text": tokenizer.decode(kept, skip_special_tokens=True),
                            "n_tokens": len(kept) + (0 if end is None else 1),
                            "truncated": end is None and len(ids) >= max_new_tokens,
                        }
                    )
                results.append(samples)
    finally:
        tokenizer.padding_side = padding_side
        if was_training:
            model.train()
    return results


# ---------------------------------------------------------------------------------------------------------------
# evaluate()


def _as_tasks(tasks: "Iterable[Task] | str | Path") -> list["Task"]:
    from ..sources import load_task_source

    # The test split when the source is a data set with splits; a file is its own split.
    tasks = load_task_source(tasks, split="test") if isinstance(tasks, (str, Path)) else list(tasks)
    missing = [t.id for t in tasks if not _evaluable(t)]
    if missing:
        raise ValueError(
            f"evaluate needs a ground-truth answer (or, for an open-ended task, a reference rubric); {len(missing)} "
            f"task(s) have neither (first: {', '.join(missing[:3])})"
        )
    return tasks


def _evaluable(task: "Task") -> bool:
    if task.family == "open_ended":
        return bool(task.rubric)
    return task.answer is not None


def evaluate(
    model_or_checkpoint: Any,
    tasks: "Iterable[Task] | str | Path",
    k: int = 1,
    *,
    config: "RunConfig | None" = None,
    step: int | None = None,
    run_dir: str | Path | None = None,
    tokenizer: Any = None,
    temperature: float | None = None,
    max_new_tokens: int | None = None,
    batch_size: int = 16,
    clients: "Clients | LLMClient | None" = None,
    reuse_untrained: bool = False,
) -> "pd.DataFrame":
    """Per-sample correctness of `k` samples per task; `pass_at_1(frame)` gives pass@1 averaged over the k, and
    `mean_score(frame)` the mean score (the reference-rubric score for open-ended tasks, 1/0 for the others).

    `model_or_checkpoint` is a model with `tokenizer=` given, a `LoadedModel` from `train.load_student`, or anything
    `load_student` accepts (a checkpoint folder of a run included). With k == 1 decoding is greedy unless
    `temperature` says otherwise; with k > 1 it samples at `temperature` (default: the config's rollout temperature).
    Records go to `<run_dir>/eval.jsonl` when `run_dir` is given. Open-ended tasks are graded by the Verifier:
    `clients` (a `Clients` or the verifier's `LLMClient`), else the config's verifier endpoint (a local one is
    started for the grading and stopped after it). `frame.attrs` holds pass@1, score, grade_failures, grade_calls.

    `reuse_untrained` (training's evaluation before the first step): when the model is still its base model (a
    fresh adapter adds nothing), its samples are replayed from an earlier run with the same model, tasks and decoding
    (`untrained.UntrainedSamples`), or generated and kept for the next one; `frame.attrs["replayed"]` says which.
    """
    import pandas as pd

    from ..config import RunConfig

    config = config or RunConfig()
    task_list = _as_tasks(tasks)
    checkpoint: str | None = None
    if isinstance(model_or_checkpoint, (str, Path)):
        from .student import load_student

        checkpoint = str(model_or_checkpoint)
        loaded = load_student(model_or_checkpoint, config=config, for_training=False)
        model, tokenizer = loaded.model, loaded.tokenizer
    elif hasattr(model_or_checkpoint, "model") and hasattr(model_or_checkpoint, "tokenizer"):
        model, tokenizer = model_or_checkpoint.model, model_or_checkpoint.tokenizer
    else:
        model = model_or_checkpoint
        if tokenizer is None:
            raise ValueError("evaluate(model, ...) with a model object needs tokenizer=")

    if temperature is None:
        temperature = getattr(config, "eval_temperature", None)
    if temperature is None:
        temperature = 0.0 if k == 1 else config.rollout_temperature
    if k > 1 and temperature == 0:
        raise ValueError(f"k={k} samples with temperature 0 would be {k} copies of one greedy answer; sample instead")
    max_new_tokens = max_new_tokens or getattr(config, "eval_max_tokens", None) or config.rollout_max_tokens

    conversations = [prompt_messages(t, config) for t in task_list]
    decoding = dict(n=k, max_new_tokens=max_new_tokens, temperature=temperature, top_p=config.rollout_top_p,
                    seed=config.seed + (step or 0))
    store = key = None
    if reuse_untrained:
        from .untrained import UntrainedSamples, is_untrained, samples_key

        if is_untrained(model):
            key = samples_key(model, conversations, **decoding)
            store = UntrainedSamples() if key is not None else None
    samples = store.get(key) if store is not None else None
    replayed = samples is not None
    if samples is None:
        samples = generate_texts(model, tokenizer, conversations, batch_size=batch_size, **decoding)
        if store is not None:
            store.put(key, samples)
    records = []
    for task, task_samples in zip(task_list, samples):
        for idx, sample in enumerate(task_samples):
            right = correctness(task, sample["text"])
            records.append(
                {
                    "step": step,
                    "checkpoint": checkpoint,
                    "task_id": task.id,
                    "sample_idx": idx,
                    "answer_text": sample["text"],
                    "predicted": predicted(task, sample["text"]),
                    "answer": task.answer,
                    "correct": right,
                    "score": None if right is None else float(right),
                    "grade_error": None,
                    "n_tokens": sample["n_tokens"],
                    "truncated": sample["truncated"],
                }
            )
    open_ended = [(i, task) for i, task in enumerate(task_list) if task.family == "open_ended"]
    grades: list[ReferenceGrade] = []
    if open_ended:
        grades = reference_scores(
            [(task, [s["text"] for s in samples[i]]) for i, task in open_ended], config, clients=clients, step=step
        )
        first = {task.id: sum(len(samples[j]) for j in range(i)) for i, task in open_ended}
        for (_, task), grade in zip(open_ended, grades):
            for idx, score in enumerate(grade.scores):
                record = records[first[task.id] + idx]
                record["score"] = score
                record["grade_error"] = grade.errors[idx]
    if run_dir is not None:
        rundir.append_jsonl(Path(run_dir) / rundir.EVAL, records)
    frame = pd.DataFrame(records, columns=EVAL_COLUMNS)
    frame.attrs["pass@1"] = pass_at_1(frame)
    frame.attrs["score"] = mean_score(frame)
    frame.attrs["grade_failures"] = sum(g.n_failed for g in grades)
    frame.attrs["grade_calls"] = sum(g.calls for g in grades)
    frame.attrs["replayed"] = replayed
    return frame


def _numbers(column: "pd.Series") -> "pd.Series":
    import pandas as pd

    # True/False/None (eval.jsonl's correct) and floats/None (score) alike: None and NaN are "not known".
    return pd.to_numeric(column.map(lambda v: math.nan if v is None else float(v)), errors="coerce")


def _task_mean(frame: "pd.DataFrame", column: str) -> float:
    """Mean over tasks of each task's mean over its samples; samples without a value are left out, and so is a
    task with none."""
    if frame.empty or column not in frame.columns:
        return math.nan
    per_task = _numbers(frame[column]).groupby(frame["task_id"]).mean()
    return float(per_task.mean()) if per_task.notna().any() else math.nan


def pass_at_1(frame: "pd.DataFrame") -> float:
    """pass@1 averaged over the k samples: the mean over tasks of each task's fraction of correct samples.

    Tasks without a checkable answer (open-ended: `correct` None) are left out; NaN when no task has one."""
    return _task_mean(frame, "correct")


def mean_score(frame: "pd.DataFrame") -> float:
    """The mean score: over tasks, of each task's mean `score` over its graded samples (the reference-rubric score
    for open-ended tasks, 1/0 for checkable ones, so on those it is pass@1). A frame without a `score` column (an
    eval.jsonl written before scores) takes `correct` as 1/0."""
    if "score" not in frame.columns:
        return pass_at_1(frame)
    scores = _numbers(frame["score"])
    if "correct" in frame.columns:
        scores = scores.fillna(_numbers(frame["correct"]))
    return _task_mean(frame.assign(score=scores), "score")


def metric_name(frame: "pd.DataFrame") -> str:
    """"pass@1" when every record has a checked answer, else "mean score" (some tasks are open-ended)."""
    if "correct" in frame.columns and len(frame) and _numbers(frame["correct"]).notna().all():
        return "pass@1"
    return "mean score"


def eval_curve(run_dir: str | Path) -> "pd.DataFrame":
    """Per evaluated step of a run: pass@1, the mean score, which of the two measures the step (`metric`:
    "pass@1", or "mean score" when open-ended tasks are evaluated), the number of tasks and of failed gradings,
    joined with samples_seen and wall_s from its train log (for curves)."""
    import pandas as pd

    columns = ["step", "pass@1", "score", "metric", "n_tasks", "grade_failures", "samples_seen", "wall_s"]
    evals = rundir.read_frame(Path(run_dir) / rundir.EVAL)
    if evals.empty:
        return pd.DataFrame(columns=columns)
    # A resumed run evaluates its last step again: the newest record of each (step, task, sample) is the one kept.
    keys = [c for c in ("step", "task_id", "sample_idx") if c in evals.columns]
    evals = evals.drop_duplicates(keys, keep="last")

    def summary(f: "pd.DataFrame") -> "pd.Series":
        failures = int(f["grade_error"].notna().sum()) if "grade_error" in f.columns else 0
        return pd.Series({"pass@1": pass_at_1(f), "score": mean_score(f), "metric": metric_name(f),
                          "n_tasks": f["task_id"].nunique(), "grade_failures": failures})

    curve = evals.groupby("step", dropna=False).apply(summary, include_groups=False).reset_index()
    log_frame = rundir.read_frame(Path(run_dir) / rundir.TRAIN_LOG)
    if not log_frame.empty and {"step", "samples_seen", "wall_s"} <= set(log_frame.columns):
        curve = curve.merge(log_frame[["step", "samples_seen", "wall_s"]].drop_duplicates("step", keep="last"),
                            on="step", how="left")
        curve.loc[curve["step"] == 0, ["samples_seen", "wall_s"]] = 0
    return curve


# ---------------------------------------------------------------------------------------------------------------
# Open-ended tasks: the reference-rubric score, graded by the Verifier


class ReferenceGrade(BaseModel):
    """One open-ended task's answers graded against its reference rubric.

    `scores[i]`: answer i's score in [0, 1], None when no verdict was obtained (the reason in `errors[i]`).
    `judgements[i]`: one bool per reference criterion (met / not met; a met pitfall costs its points). With soft
    verdicts (the default on open-ended tasks) the score counts each criterion with its probability of being met,
    and the booleans are those probabilities at 0.5.
    """

    task_id: str
    scores: list[float | None]
    judgements: list[list[bool] | None]
    errors: list[str | None]
    calls: int = 0
    raw: list[str] = Field(default_factory=list)

    @property
    def n_failed(self) -> int:
        return sum(s is None for s in self.scores)


def reference_rubric(task: "Task") -> tuple["Rubric", list[int]]:
    """The task's reference rubric as the Verifier's `Rubric`, and the reference points the score uses.

    The Verifier is shown criterion texts only, never points (`verify.verifier_messages`), so the Rubric carries
    each criterion's points clipped into the induced-rubric ranges (1-5, pitfalls -2..-1) just to be a valid
    Rubric; scores come from the reference points themselves (HealthBench's -10..10 included). Ids are r1, r2, ...;
    the category is the first tag's value after "axis:" (HealthBench's axes), else "reference".
    """
    from ..rubrics import Criterion, Rubric

    if not task.rubric:
        raise ValueError(f"task {task.id}: no reference rubric to grade against")
    criteria, points = [], []
    for k, item in enumerate(task.rubric, start=1):
        axis = next((t.split(":", 1)[1] for t in item.tags if t.startswith("axis:") and t.split(":", 1)[1]), None)
        shown = min(item.points, 5) if item.points > 0 else max(item.points, -2)
        criteria.append(Criterion(id=f"r{k}", text=item.criterion, points=shown, category=axis or "reference"))
        points.append(item.points)
    return Rubric(criteria=criteria), points


def rubric_score(points: Sequence[int], judgement: Sequence[bool | float]) -> float:
    """HealthBench's score of one answer: Σ points of the criteria met / Σ positive points, clipped to [0, 1]
    (`scoring.weighted_score` with pitfalls: a met negative criterion subtracts its points). With soft verdicts
    each criterion counts with its probability of being met."""
    from ..scoring import weighted_score

    return weighted_score(list(points), [list(judgement)], eps=0.0, pitfalls=True)[0]


def _grade_seed(config: "RunConfig", task_id: str, step: int | None) -> int:
    # A reproducible blind order per (task, step), different from the training groups' (pipeline._group_seed), so a
    # re-run of the evaluation replays from the LLM cache.
    digest = hashlib.sha256(f"eval:{config.seed}:{task_id}:{step}".encode()).hexdigest()
    return int(digest[:8], 16)


async def grade_reference_async(
    task: "Task", texts: Sequence[str | None], client: "LLMClient", config: "RunConfig", *, step: int | None = None
) -> ReferenceGrade:
    """Grade `texts` (one task's answers) against the task's reference rubric: one blind, fenced Verifier group
    (`verify.verify_group_async`, no teacher references), retried as the config says; never raises for model or
    endpoint misbehaviour. An empty answer meets no criterion (score 0, no call)."""
    from ..pipeline import answer_values
    from ..verify import verify_group_async

    rubric, points = reference_rubric(task)
    verdicts = await verify_group_async(
        task, rubric, [], [t or "" for t in texts], client, config, seed=_grade_seed(config, task.id, step)
    )
    # Soft verdicts grade with their probabilities (what ranked answers in the fidelity study), booleans otherwise.
    notes = verdicts.student_notes
    values = [answer_values(j, notes[i] if i < len(notes) else None) for i, j in enumerate(verdicts.student)]
    scores = [None if v is None else rubric_score(points, v) for v in values]
    reason = verdicts.error or "no verdict"
    return ReferenceGrade(
        task_id=task.id,
        scores=scores,
        judgements=verdicts.student,
        errors=[None if j is not None else reason for j in verdicts.student],
        calls=verdicts.calls,
        raw=verdicts.raw,
    )


@contextlib.contextmanager
def _verifier_clients(config: "RunConfig") -> Iterator["Clients"]:
    """Clients whose verifier is the config's; a local verifier endpoint is served for the block (one server: every
    role is pointed at the verifier's model, so no other model is loaded for it)."""
    from ..llm import make_clients

    verifier = config.endpoint("verifier")
    if not verifier.is_local:
        with make_clients(config) as clients:
            yield clients
        return
    from ..offline.serve import local_endpoints

    alone = config.model_copy(update={role: verifier for role in ("teacher", "rubricator", "student")})
    with local_endpoints(alone) as served, make_clients(served) as clients:
        yield clients


async def _grade_all(items, client, config, step) -> list[ReferenceGrade]:
    import asyncio

    return list(await asyncio.gather(*(grade_reference_async(t, texts, client, config, step=step)
                                       for t, texts in items)))


def reference_scores(
    items: Sequence[tuple["Task", Sequence[str | None]]],
    config: "RunConfig | None" = None,
    *,
    clients: "Clients | LLMClient | None" = None,
    step: int | None = None,
) -> list[ReferenceGrade]:
    """Reference-rubric grades of (task, answers) pairs, every task's group judged concurrently (bounded by the
    endpoint's limits). `clients`: a `Clients` or the verifier's `LLMClient`; None: the config's verifier endpoint
    (a local one is started for the call). Works in a script and inside a notebook."""
    from ..config import RunConfig
    from ..llm import run_sync

    config = config or RunConfig()
    items = [(task, list(texts)) for task, texts in items]
    if not items:
        return []
    if clients is not None:
        client = getattr(clients, "verifier", clients)
        return run_sync(_grade_all(items, client, config, step))
    with _verifier_clients(config) as made:
        return run_sync(_grade_all(items, made.verifier, config, step))
