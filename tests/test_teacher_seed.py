"""Teacher references and the run's seed: shared across run seeds by default (`RunConfig.teacher_seed=0`), per
run seed with `teacher_seed=None`. What pins it: the reference index key, and the seed the teacher is asked with,
which must agree — else a run would replay references it would never have been sent.

Against a real local HTTP endpoint (test_llm.ChatServer, an OpenAI-compatible stub); no model.
"""

from __future__ import annotations

import asyncio
import json

from test_llm import ChatServer

from ropd_kit import limits
from ropd_kit.config import EndpointConfig, RunConfig
from ropd_kit.data import Task
from ropd_kit.llm import LLMClient
from ropd_kit.teacher import ReferenceIndex, collect_references_async

TASK = Task(id="t1", prompt="What is 6 * 7?", answer="42", domain="arith")


def request_seeds(server: ChatServer, config: RunConfig) -> list[int | None]:
    """The `seed` of each teacher request for TASK's references (no cache, no index: every one is asked)."""
    limits.reset_guards()
    client = LLMClient(config.teacher, "teacher")
    before = len(server.requests)

    async def go():
        try:
            await collect_references_async([TASK], client, config, None, progress=False)
        finally:
            await client.aclose()

    asyncio.run(go())
    bodies = sorted((r["body"] for r in server.requests[before:]), key=lambda b: b.get("seed") or 0)
    return [b.get("seed") for b in bodies]


def configs(server: ChatServer, **fields) -> tuple[RunConfig, RunConfig]:
    teacher = EndpointConfig(base_url=server.base_url, model="teacher-x", max_retries=0, timeout_s=10)
    base = dict(teacher=teacher, use_cache=False, n_teacher_refs=3, **fields)
    return RunConfig(seed=0, **base), RunConfig(seed=7, **base)


def test_by_default_refs_are_the_teachers_whatever_the_run_seed():
    with ChatServer() as server:
        run0, run7 = configs(server)
        assert run0.teacher_seed == 0
        assert ReferenceIndex.key(TASK, run0, 1) == ReferenceIndex.key(TASK, run7, 1)
        # ...and a fresh collection under seed 7 asks for what the index holds under seed 0.
        seeds0, seeds7 = request_seeds(server, run0), request_seeds(server, run7)
    assert seeds0 == seeds7 and len(set(seeds0)) == 3  # K different samples, the same ones for every run seed
    # Index keys of the default have the form they had before teacher_seed existed: existing indexes replay.
    assert "seed" not in json.loads(ReferenceIndex.key(TASK, run0, 0))


def test_teacher_seed_none_gives_every_run_seed_its_own_refs():
    with ChatServer() as server:
        run0, run7 = configs(server, teacher_seed=None)
        assert ReferenceIndex.key(TASK, run0, 1) != ReferenceIndex.key(TASK, run7, 1)
        assert ReferenceIndex.key(TASK, run0, 1) == ReferenceIndex.key(TASK, run0.model_copy(
            update={"teacher_seed": 0}), 1)  # run seed 0 is teacher seed 0
        seeds0, seeds7 = request_seeds(server, run0), request_seeds(server, run7)
    assert set(seeds0).isdisjoint(seeds7)
    assert json.loads(ReferenceIndex.key(TASK, run7, 0))["seed"] == 7
