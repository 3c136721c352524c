"""ROPD stage 1 (student side): a group of `n_rollouts` student rollouts per task, sampled through an endpoint.

In: tasks, the student `llm.LLMClient` (a local server serving the student GGUF, or any OpenAI-compatible endpoint),
the `RunConfig`, the training step. Out: `rollouts` records `task_id, step, rollout_idx, text, n_tokens, truncated,
finish_reason, error` (run dir file `rollouts.jsonl`). `truncated` is True when the rollout hit `rollout_max_tokens`.

`student_messages(task, config)` is the one student prompt format: training (train/methods.py) builds its prompts
with it too, so rollouts sampled here and rollouts generated inside GRPO see the same text. The system prompt is the
task family's (`ropd_kit.prompts`; `config.prompts_dir` may replace it); a conversation's turns follow it
unchanged. A rollout that fails after the client's retries is a record with `text: None` and an `error`, never a
crash of the batch.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Iterable

from ropd_kit import prompts, rundir
from ropd_kit.config import RunConfig
from ropd_kit.data import Task
from ropd_kit.llm import Clients, LLMClient, LLMError, run_sync
from ropd_kit.teacher import load_prompt, role_client

STUDENT_SYSTEM_PROMPT = "student_system.txt"


def student_messages(task: Task, config: RunConfig | None = None) -> list[dict]:
    """The student's chat prompt for `task`: its family's system instructions, then the task text (or the task's
    conversation, turn by turn). Without `config` the packaged templates are used."""
    system = load_prompt(STUDENT_SYSTEM_PROMPT, task.family, getattr(config, "prompts_dir", None))
    return prompts.chat(system, task)


async def _one_rollout(task: Task, idx: int, client: LLMClient, config: RunConfig, step: int) -> dict:
    record = {"task_id": task.id, "step": step, "rollout_idx": idx, "text": None, "n_tokens": None,
              "truncated": None, "finish_reason": None, "error": None}
    # sample_index differs per step as well as per rollout: the LLM cache must not hand step 3 the rollouts of step 0.
    sample_index = step * config.n_rollouts + idx
    try:
        result = await client.chat(
            student_messages(task, config),
            temperature=config.rollout_temperature,
            top_p=config.rollout_top_p,
            max_tokens=config.rollout_max_tokens,
            sample_index=sample_index,
            seed=config.seed,
        )
    except LLMError as exc:
        return {**record, "error": f"{exc.kind}: {exc}"}
    return {
        **record,
        "text": result.text,
        "n_tokens": result.completion_tokens,
        "truncated": result.finish_reason == "length",
        "finish_reason": result.finish_reason,
    }


async def sample_rollouts_async(
    tasks: Iterable[Task], client: LLMClient, config: RunConfig, *, step: int = 0, progress: bool = False
) -> list[dict]:
    """One group of `config.n_rollouts` rollouts per task, all requested at once; ordered by task, then index."""
    from tqdm.auto import tqdm

    jobs = [(task, i) for task in tasks for i in range(config.n_rollouts)]
    bar = tqdm(total=len(jobs), desc=f"rollouts step {step}", disable=not progress)

    async def run(task: Task, i: int) -> dict:
        record = await _one_rollout(task, i, client, config, step)
        bar.update(1)
        return record

    try:
        return list(await asyncio.gather(*(run(task, i) for task, i in jobs)))
    finally:
        bar.close()


def rollouts_by_task(records: Iterable[dict]) -> dict[str, list[str]]:
    """Successful rollout texts per task id, in rollout_idx order."""
    grouped: dict[str, list[tuple[int, str]]] = {}
    for r in records:
        if r.get("text") is not None:
            grouped.setdefault(r["task_id"], []).append((r["rollout_idx"], r["text"]))
    return {task_id: [text for _, text in sorted(group)] for task_id, group in grouped.items()}


def sample_rollouts(
    tasks: Iterable[Task],
    config: RunConfig,
    *,
    clients: Clients | None = None,
    step: int = 0,
    run_dir: str | Path | None = None,
    progress: bool = True,
) -> list[dict]:
    """Sync wrapper: sample one step's groups; with `run_dir`, replace that step's records in `rollouts.jsonl`
    (other steps are kept, so re-running a step does not duplicate it)."""
    tasks = list(tasks)
    if clients is not None:
        records = run_sync(sample_rollouts_async(tasks, clients.student, config, step=step, progress=progress))
    else:
        with role_client(config, "student") as client:
            records = run_sync(sample_rollouts_async(tasks, client, config, step=step, progress=progress))
    if run_dir is not None:
        path = Path(run_dir) / rundir.ROLLOUTS
        kept = [r for r in rundir.read_jsonl(path, repair=True) if r.get("step") != step]
        rundir.write_jsonl(path, kept + records)
    return records
