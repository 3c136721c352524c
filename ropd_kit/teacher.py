"""ROPD stage 1: K teacher references per task, and the on-disk reference index that replays them.

In: tasks (`data.Task`), a teacher `llm.LLMClient`, the `RunConfig`. Out: `teacher_refs` records, one per
(task, ref_idx): `task_id, ref_idx, text, model, usage, finish_reason, error` (run dir file `teacher_refs.jsonl`).

The reference index is keyed by what decides the text: the task's content fingerprint, the teacher model, the
sampling settings (temperature, top_p, max_tokens, and the teacher seed when it is not 0), the prompt template (its version name and a hash of the text
the task's family is sent), ref_idx, and for a conversation a hash of its turns. The endpoint's URL, timeout and
retries are not in the key, so moving the same model to another server replays the stored references without a
single call. Only successful references are stored.

The run's `seed` is not in the key, on purpose: references are the teacher's, sampled at the teacher's settings with
`config.teacher_seed` (0 by default), so runs that differ only in their seed are compared on the same references
and share them. `teacher_seed=None` ties the teacher seed to the run's seed instead, for a study of how much the
references themselves vary; the key then carries it. Key and request always use the same seed (`teacher_seed`), so
a replay returns exactly what a fresh request would have been asked for.

A reference that still fails after the client's retries is kept as a failure record (`text: None`, `error` says
why) so that the batch finishes and the failure is counted; `texts_by_task` drops failures for the next stage.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Iterator

from ropd_kit import prompts, rundir
from ropd_kit.config import RunConfig, cache_root
from ropd_kit.data import Task, task_fingerprint
from ropd_kit.llm import Clients, LLMCache, LLMClient, LLMError, run_sync

TEACHER_SYSTEM_PROMPT = "teacher_system.txt"


def load_prompt(name: str, family: str | None = None, prompts_dir: str | Path | None = None) -> str:
    """A prompt template used as written (ends stripped): the packaged one, or `family`'s own, or the one in
    `prompts_dir` that replaces it (`ropd_kit.prompts.find`)."""
    return prompts.text(name, family, prompts_dir)


def teacher_messages(task: Task, config: RunConfig | None = None) -> list[dict]:
    """Chat messages asking the teacher for one reference solution of `task`: the family's teacher prompt
    (`config.prompts_dir` may replace it), then the task's question, or its conversation turn by turn."""
    system = load_prompt(TEACHER_SYSTEM_PROMPT, task.family, getattr(config, "prompts_dir", None))
    return prompts.chat(system, task)


def template_hash(family: str | None = None, prompts_dir: str | Path | None = None) -> str:
    """Short hash of the teacher prompt text, so an edited template never replays references made by the old one."""
    return hashlib.sha256(load_prompt(TEACHER_SYSTEM_PROMPT, family, prompts_dir).encode()).hexdigest()[:12]


def teacher_seed(config: RunConfig) -> int:
    """The seed the teacher's references are sampled with: `config.teacher_seed`, or the run's seed when None."""
    chosen = getattr(config, "teacher_seed", 0)
    return config.seed if chosen is None else chosen


class ReferenceIndex:
    """Teacher references on disk (diskcache), replayable without any API call.

    >>> index = ReferenceIndex(tmp_dir)                              # doctest: +SKIP
    >>> key = index.key(task, config, ref_idx=0)                     # doctest: +SKIP
    >>> index.put(key, {"text": "...", "model": "m", "usage": {}})   # doctest: +SKIP
    """

    def __init__(self, directory: str | Path | None = None):
        import diskcache

        self.directory = Path(directory) if directory is not None else cache_root() / "teacher_refs"
        self.directory.mkdir(parents=True, exist_ok=True)
        self._cache = diskcache.Cache(str(self.directory))

    @classmethod
    def for_config(cls, config: RunConfig) -> "ReferenceIndex":
        return cls(config.ref_index_dir)

    @staticmethod
    def key(task: Task | str, config: RunConfig, ref_idx: int) -> str:
        """The index key of reference `ref_idx` of `task` under `config`'s teacher settings (a JSON string).

        `task` is a Task, or a bare prompt (keyed as before task families: the top-level teacher template). The
        template hashed is the one the teacher is sent (the task family's, or prompts_dir's). A conversation adds
        the hash of its exact turns, so that two conversations never share references; a plain question's key is
        what it was before conversations existed, so existing indexes still replay.
        """
        prompt = prompts.question_text(task)
        fields = {
            "task": task_fingerprint(prompt),
            "model": config.teacher.model,
            "temperature": float(config.teacher_temperature),
            "top_p": float(config.teacher_top_p),
            "max_tokens": int(config.teacher_max_tokens),
            "prompt_version": config.teacher_prompt_version,
            "template": template_hash(prompts.family_of(task), getattr(config, "prompts_dir", None)),
            "ref_idx": int(ref_idx),
        }
        seed = teacher_seed(config)
        if seed != 0:
            # Only then: keys made before teacher_seed existed (seed 0 implied) stay valid.
            fields["seed"] = seed
        turns = prompts.conversation(task)
        if turns is not None:
            exact = json.dumps(turns, sort_keys=True, ensure_ascii=False).encode("utf-8")
            fields["messages"] = hashlib.sha256(exact).hexdigest()[:16]
        return json.dumps(fields, sort_keys=True)

    def get(self, key: str) -> dict | None:
        return self._cache.get(key)

    def put(self, key: str, value: dict) -> None:
        if not value.get("text"):
            raise ValueError("only successful references (non-empty text) go into the reference index")
        self._cache.set(key, {k: value[k] for k in ("text", "model", "usage", "finish_reason") if k in value})

    def __contains__(self, key: object) -> bool:
        return key in self._cache

    def __len__(self) -> int:
        return len(self._cache)

    def close(self) -> None:
        self._cache.close()


def _record(task: Task, ref_idx: int, **fields: Any) -> dict:
    base = {"task_id": task.id, "ref_idx": ref_idx, "text": None, "model": None, "usage": None,
            "finish_reason": None, "error": None}
    return {**base, **fields}


async def _one_reference(
    task: Task, ref_idx: int, client: LLMClient, config: RunConfig, index: ReferenceIndex | None
) -> dict:
    key = ReferenceIndex.key(task, config, ref_idx) if index is not None else None
    if index is not None:
        stored = index.get(key)
        if stored is not None:
            return _record(task, ref_idx, **stored)
    try:
        result = await client.chat(
            teacher_messages(task, config),
            temperature=config.teacher_temperature,
            top_p=config.teacher_top_p,
            max_tokens=config.teacher_max_tokens,
            # Distinct sample_index per ref (the client derives the request seed from it): K references of one
            # prompt must be K different samples, and a rerun reproduces them.
            sample_index=ref_idx,
            seed=teacher_seed(config),
        )
    except LLMError as exc:
        return _record(task, ref_idx, model=config.teacher.model, error=f"{exc.kind}: {exc}")
    record = _record(
        task, ref_idx, text=result.text, model=config.teacher.model, finish_reason=result.finish_reason,
        usage={"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens},
    )
    if index is not None and result.text:
        index.put(key, record)
    return record


async def collect_references_async(
    tasks: Iterable[Task],
    client: LLMClient,
    config: RunConfig,
    index: ReferenceIndex | None = None,
    *,
    progress: bool = True,
) -> list[dict]:
    """`config.n_teacher_refs` references for every task, all requested at once (the client bounds concurrency).

    References found in `index` are replayed without calling the client; new successes are added to it.
    Returns records ordered by task, then ref_idx; failures are records with `text: None` and an `error`.
    """
    from tqdm.auto import tqdm

    tasks = list(tasks)
    jobs = [(task, k) for task in tasks for k in range(config.n_teacher_refs)]
    bar = tqdm(total=len(jobs), desc="teacher refs", disable=not progress)

    async def run(task: Task, k: int) -> dict:
        record = await _one_reference(task, k, client, config, index)
        bar.update(1)
        return record

    try:
        return list(await asyncio.gather(*(run(task, k) for task, k in jobs)))
    finally:
        bar.close()


def texts_by_task(records: Iterable[dict]) -> dict[str, list[str]]:
    """Successful reference texts per task id, in ref_idx order (what rubric induction takes)."""
    grouped: dict[str, list[tuple[int, str]]] = {}
    for r in records:
        if r.get("text"):
            grouped.setdefault(r["task_id"], []).append((r["ref_idx"], r["text"]))
    return {task_id: [text for _, text in sorted(refs)] for task_id, refs in grouped.items()}


def failure_count(records: Iterable[dict]) -> int:
    return sum(1 for r in records if not r.get("text"))


def collect_references(
    tasks: Iterable[Task],
    config: RunConfig,
    *,
    clients: Clients | None = None,
    index: ReferenceIndex | None = None,
    run_dir: str | Path | None = None,
    progress: bool = True,
) -> list[dict]:
    """Sync wrapper (works inside Jupyter's running loop): collect references, write `teacher_refs.jsonl` to
    `run_dir` when given. Without `clients`, clients are made from `config`; a `base_url="local"` teacher is served
    by a local llama-server for the duration of the call."""
    tasks = list(tasks)
    own_index = index is None
    index = index if index is not None else ReferenceIndex.for_config(config)
    try:
        if clients is not None:
            records = run_sync(collect_references_async(tasks, clients.teacher, config, index, progress=progress))
        else:
            records = _with_own_clients(tasks, config, index, progress)
    finally:
        if own_index:
            index.close()
    if run_dir is not None:
        rundir.write_jsonl(Path(run_dir) / rundir.TEACHER_REFS, records)
    return records


def _with_own_clients(tasks: list[Task], config: RunConfig, index: ReferenceIndex, progress: bool) -> list[dict]:
    # Every reference already in the index: no server, no client.
    if all(ReferenceIndex.key(t, config, k) in index for t in tasks for k in range(config.n_teacher_refs)):
        return run_sync(collect_references_async(tasks, _NoClient(), config, index, progress=progress))
    with role_client(config, "teacher") as client:
        return run_sync(collect_references_async(tasks, client, config, index, progress=progress))


@contextlib.contextmanager
def role_client(config: RunConfig, role: str) -> Iterator[LLMClient]:
    """A client for one role, served by its own local llama-server when the endpoint is `base_url="local"`
    (only that role's model is started, unlike `serve.local_endpoints`), closed on exit."""
    endpoint = config.endpoint(role)
    with contextlib.ExitStack() as stack:
        if endpoint.is_local:
            from ropd_kit.offline.serve import LocalServer, served_endpoint, server_ctx_size

            server = stack.enter_context(LocalServer(
                endpoint.model, parallel=config.server_parallel, ctx_size=server_ctx_size(config),
                threads=config.server_threads,
            ))
            endpoint = served_endpoint(endpoint, server)
        cache = LLMCache(config.cache_dir or cache_root() / "llm") if config.use_cache else None
        client = LLMClient(endpoint, role, cache)
        try:
            yield client
        finally:
            run_sync(client.aclose())
            if cache is not None:
                cache.close()


class _NoClient:
    """Stands in for a client when every reference replays from the index; any call is a bug."""

    async def chat(self, *args: Any, **kwargs: Any):
        raise AssertionError("reference index replay made a client call")
