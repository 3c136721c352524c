"""A re-run is a replay: judging the same inputs again makes zero HTTP requests and gives the same rewards, also
when a judge reply was rejected on the first run (the retry chain, whose next prompt quotes the rejected reply, is
replayed from the LLM cache too).

Against a real local HTTP endpoint (test_llm.ChatServer, an OpenAI-compatible stub) that answers the Rubricator and
the Verifier in the wrong shape first; no model.
"""

from __future__ import annotations

import asyncio
import json

from test_llm import ChatServer

from ropd_kit import limits
from ropd_kit.bench.faultproxy import WRONG_SCHEMA_CONTENT
from ropd_kit.config import EndpointConfig, RunConfig
from ropd_kit.data import Task
from ropd_kit.llm import LLMCache, LLMClient, make_clients
from ropd_kit.pipeline import judge_group_async

TASK = Task(id="boxes", prompt="Maya bakes 24 cookies and 12 more, and packs them 4 to a box. How many boxes?",
            answer="9", domain="arith")
REFS = ["24 + 12 = 36\n36 / 4 = 9\nAnswer: 9", "36 cookies, 4 per box.\nAnswer: 9"]
ROLLOUTS = ["24 + 12 = 36\n36 / 4 = 9\nAnswer: 9", "24 + 12 = 36\n36 / 4 = 8\nAnswer: 8"]
RUBRIC = {"criteria": [
    {"id": "final", "text": "States 9 as the final answer.", "points": 3, "category": "correctness"},
    {"id": "total", "text": "Adds 24 and 12 to get 36.", "points": 1, "category": "reasoning"},
]}


def verdicts(rows: list[list[bool]]) -> str:
    return json.dumps({"answers": [{"answer_index": i, "judgement": row} for i, row in enumerate(rows, start=1)]})


def config_for(server: ChatServer, tmp_path) -> RunConfig:
    endpoint = EndpointConfig(base_url=server.base_url, model="stub-judge", max_retries=0, timeout_s=10)
    return RunConfig(
        cache_dir=str(tmp_path / "llm"), teacher=endpoint, rubricator=endpoint, verifier=endpoint,
        student=endpoint, min_criteria=1, max_criteria=3, rubric_attempts=3, verify_attempts=2,
    )


def judge_once(config: RunConfig):
    async def go():
        async with make_clients(config) as clients:
            result = await judge_group_async(TASK, REFS, ROLLOUTS, clients, config, step=1)
            return result, clients.stats.totals()

    return asyncio.run(go())


def test_a_rerun_replays_a_chain_with_rejected_replies_without_a_request(tmp_path):
    limits.reset_guards()
    with ChatServer() as server:
        # Each judge answers in the wrong shape first, then right: the group needs 4 requests the first time.
        server.plan = [
            {"kind": "ok", "content": WRONG_SCHEMA_CONTENT},  # rubric: not a rubric
            {"kind": "ok", "content": json.dumps(RUBRIC)},
            {"kind": "ok", "content": verdicts([[True, True]] * 3)},  # verdicts: 3 answers for 4
            {"kind": "ok", "content": verdicts([[True, True], [True, False], [True, True], [False, True]])},
        ]
        config = config_for(server, tmp_path)
        first, first_usage = judge_once(config)
        assert not first.failed and len(server.requests) == 4
        assert first.rubric_record["attempts"] == 2 and first.raw_records[0]["text"] == WRONG_SCHEMA_CONTENT
        # The retry quotes the rejected reply: that is why the chain can only be replayed if the reply is cached.
        retry_messages = server.requests[1]["body"]["messages"]
        assert any(m["role"] == "assistant" and m["content"] == WRONG_SCHEMA_CONTENT for m in retry_messages)

        server.plan = [{"kind": "status", "code": 500, "message": "a re-run must not ask"}]
        again, again_usage = judge_once(config)
    assert len(server.requests) == 4, "the re-run made HTTP requests"
    assert again_usage["http_requests"] == 0 and again_usage["cache_hits"] == first_usage["calls"] == 4
    assert again.scores == first.scores and again.teacher_scores == first.teacher_scores
    assert again.raw_records == first.raw_records and again.rubric_record == first.rubric_record


def test_the_cache_keeps_the_rejection_with_the_reply(tmp_path):
    limits.reset_guards()

    def must_say_ok(text: str) -> None:
        if "ok" not in text:
            raise ValueError("no ok in the reply")

    with ChatServer() as server:
        server.plan = [{"kind": "ok", "content": "nope"}]
        cache = LLMCache(tmp_path / "llm")
        client = LLMClient(EndpointConfig(base_url=server.base_url, model="stub", max_retries=0), "verifier", cache)

        async def ask():
            try:
                return await client.chat([{"role": "user", "content": "say ok"}], temperature=0.0, max_tokens=8,
                                         accept=must_say_ok)
            finally:
                await client.aclose()

        first = asyncio.run(ask())
        second = asyncio.run(ask())
    assert first.text == second.text == "nope" and not first.cached and second.cached
    assert len(server.requests) == 1
    (key,) = [k for k in cache._cache.iterkeys() if str(k).startswith("chat:")]
    assert cache.get(key)["rejected"] == "ValueError: no ok in the reply"
