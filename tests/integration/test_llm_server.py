"""ropd_kit.llm against the real local llama-server (SmolLM2-135M): structured output, token accounting, the cache."""

from __future__ import annotations

import asyncio
import json

import pytest

from ropd_kit.config import FAST_MODEL, EndpointConfig
from ropd_kit.llm import LLMCache, LLMClient, UsageStats

pytestmark = pytest.mark.integration

SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "integer"}, "unit": {"type": "string", "enum": ["apples", "pears"]}},
    "required": ["answer", "unit"],
    "additionalProperties": False,
}
MESSAGES = [
    {"role": "system", "content": "Reply with JSON only."},
    {"role": "user", "content": "Tom has 3 apples and buys 4 more. How many apples? Give answer and unit."},
]


@pytest.fixture(scope="module")
def server(request):
    """The shared session server when tests/conftest.py provides one, else a SmolLM2 server of our own."""
    try:
        yield request.getfixturevalue("local_server")
        return
    except pytest.FixtureLookupError:
        pass
    from ropd_kit.offline.serve import LocalServer

    with LocalServer(FAST_MODEL, parallel=2) as own:
        yield own


def endpoint(server, **overrides) -> EndpointConfig:
    model = getattr(server, "model_id", None) or FAST_MODEL
    return EndpointConfig(base_url=server.base_url, model=model, max_retries=1, timeout_s=120, **overrides)


def ask(client: LLMClient, **kwargs):
    async def go():
        try:
            return await client.chat(MESSAGES, **{"temperature": 0.0, "max_tokens": 48, **kwargs})
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_json_schema_tokens_and_warm_cache(server, tmp_path):
    stats = UsageStats()
    client = LLMClient(endpoint(server, structured_output="json_schema"), "rubricator", LLMCache(tmp_path), stats)
    result = ask(client, json_schema=SCHEMA, schema_name="count")
    data = json.loads(result.text)  # the server's grammar holds the model to the schema
    assert set(data) == {"answer", "unit"} and isinstance(data["answer"], int) and data["unit"] in ("apples", "pears")
    row = stats.snapshot()["rubricator"]
    assert row["http_requests"] == 1 and row["prompt_tokens"] > 0 and row["completion_tokens"] > 0
    assert result.prompt_tokens == row["prompt_tokens"]

    # A second run: new client, new stats, same cache directory -> not one HTTP request.
    again_stats = UsageStats()
    again = LLMClient(endpoint(server, structured_output="json_schema"), "rubricator", LLMCache(tmp_path), again_stats)
    repeat = ask(again, json_schema=SCHEMA, schema_name="count")
    assert repeat.cached and repeat.text == result.text
    assert again_stats.snapshot()["rubricator"]["http_requests"] == 0


def test_auto_mode_keeps_json_schema_on_llama_server(server, tmp_path):
    cache = LLMCache(tmp_path)
    client = LLMClient(endpoint(server), "verifier", cache)
    json.loads(ask(client, json_schema=SCHEMA).text)
    assert client.stats.snapshot()["verifier"]["http_requests"] == 1  # no fallback was needed
    assert cache.get_mode(client.endpoint.base_url, client.endpoint.model) == "json_schema"


def test_sample_seeds_reproduce_and_differ(server):
    client = LLMClient(endpoint(server), "student")
    plain = [{"role": "user", "content": "Write one short sentence about the sea."}]

    async def go():
        try:
            out = []
            for index in (1, 2, 1):  # one at a time: the server's batching must not mix the runs
                r = await client.chat(plain, temperature=1.0, max_tokens=24, sample_index=index, seed=7)
                out.append(r.text)
            return out
        finally:
            await client.aclose()

    first, second, first_again = asyncio.run(go())
    assert first == first_again
    assert first != second
