"""Evaluation against ground truth: does the student get the answer right (pass@1 averaged over k samples)?

In: a model (a loaded one, a checkpoint folder, a registry name, a .gguf file, a local folder or a hub id) and tasks
with answers. Out: one record per (task, sample) — `step`, `checkpoint`, `task_id`, `sample_idx`, `answer_text`,
`predicted`, `correct` — as a pandas DataFrame, appended to `eval.jsonl` of a run directory when one is given.

Correctness is checked apart from any reward: integer answers (the shipped arithmetic set) by exact match of the
final number the text commits to (`answers.extract_final_answer`), everything else by math-verify. The student sees
exactly the prompt it sees in training (`rollouts.student_messages`), so eval accuracy and training reward are
about the same behaviour.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from .. import rundir
from ..answers import is_correct, predicted_answer

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from ..config import RunConfig
    from ..data import Task


EVAL_COLUMNS = ["step", "checkpoint", "task_id", "sample_idx", "answer_text", "predicted", "answer", "correct",
                "n_tokens", "truncated"]


# ---------------------------------------------------------------------------------------------------------------
# Generation with a transformers model


def prompt_messages(task: "Task") -> list[dict]:
    """The chat the student sees for a task (the same in GRPO, lopd, sft and evaluation)."""
    from ..rollouts import student_messages

    return student_messages(task)


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
    from ..data import load_tasks

    if isinstance(tasks, (str, Path)):
        return load_tasks(tasks, require_answers=True)
    tasks = list(tasks)
    missing = [t.id for t in tasks if t.answer is None]
    if missing:
        raise ValueError(
            f"evaluate needs ground-truth answers; {len(missing)} task(s) have answer=None "
            f"(first: {', '.join(missing[:3])})"
        )
    return tasks


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
) -> "pd.DataFrame":
    """Per-sample correctness of `k` samples per task; `pass_at_1(frame)` gives pass@1 averaged over the k.

    `model_or_checkpoint` is a model with `tokenizer=` given, a `LoadedModel` from `train.load_student`, or anything
    `load_student` accepts (a checkpoint folder of a run included). With k == 1 decoding is greedy unless
    `temperature` says otherwise; with k > 1 it samples at `temperature` (default: the config's rollout temperature).
    Records go to `<run_dir>/eval.jsonl` when `run_dir` is given.
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

    samples = generate_texts(
        model,
        tokenizer,
        [prompt_messages(t) for t in task_list],
        n=k,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=config.rollout_top_p,
        batch_size=batch_size,
        seed=config.seed + (step or 0),
    )
    records = []
    for task, task_samples in zip(task_list, samples):
        for idx, sample in enumerate(task_samples):
            records.append(
                {
                    "step": step,
                    "checkpoint": checkpoint,
                    "task_id": task.id,
                    "sample_idx": idx,
                    "answer_text": sample["text"],
                    "predicted": predicted_answer(task.answer, sample["text"]),
                    "answer": task.answer,
                    "correct": is_correct(task.answer, sample["text"]),
                    "n_tokens": sample["n_tokens"],
                    "truncated": sample["truncated"],
                }
            )
    if run_dir is not None:
        rundir.append_jsonl(Path(run_dir) / rundir.EVAL, records)
    frame = pd.DataFrame(records, columns=EVAL_COLUMNS)
    frame.attrs["pass@1"] = pass_at_1(frame)
    return frame


def pass_at_1(frame: "pd.DataFrame") -> float:
    """pass@1 averaged over the k samples: the mean over tasks of each task's fraction of correct samples."""
    if frame.empty:
        return float("nan")
    return float(frame.groupby("task_id")["correct"].mean().mean())


def eval_curve(run_dir: str | Path) -> "pd.DataFrame":
    """pass@1 per evaluated step of a run, joined with samples_seen and wall_s from its train log (for curves)."""
    import pandas as pd

    evals = rundir.read_frame(Path(run_dir) / rundir.EVAL)
    if evals.empty:
        return pd.DataFrame(columns=["step", "pass@1", "n_tasks", "samples_seen", "wall_s"])
    # A resumed run evaluates its last step again: the newest record of each (step, task, sample) is the one kept.
    keys = [c for c in ("step", "task_id", "sample_idx") if c in evals.columns]
    evals = evals.drop_duplicates(keys, keep="last")
    curve = (
        evals.groupby("step", dropna=False)
        .apply(lambda f: pd.Series({"pass@1": pass_at_1(f), "n_tasks": f["task_id"].nunique()}), include_groups=False)
        .reset_index()
    )
    log_frame = rundir.read_frame(Path(run_dir) / rundir.TRAIN_LOG)
    if not log_frame.empty and {"step", "samples_seen", "wall_s"} <= set(log_frame.columns):
        curve = curve.merge(log_frame[["step", "samples_seen", "wall_s"]].drop_duplicates("step", keep="last"),
                            on="step", how="left")
        curve.loc[curve["step"] == 0, ["samples_seen", "wall_s"]] = 0
    return curve
