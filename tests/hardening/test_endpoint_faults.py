"""Every endpoint fault, one at a time, through a real fault-injecting proxy in front of the real local server.

A transient fault must be retried (honouring Retry-After) and end in the good answer; a fault that persists past the
retries must end in one LLMError of the right kind, counted in UsageStats. In both cases the LLM cache holds only
the good answer: a clean replay afterwards is served the good answer, from the cache.
"""

from __future__ import annotations

import pytest
from hardening_helpers import cache_texts, endpoint, run

from ropd_kit.bench.faultproxy import FAULTS, WRONG_SCHEMA_CONTENT, FaultProxy
from ropd_kit.llm import LLMCache, LLMClient, LLMError, UsageStats

pytestmark = pytest.mark.integration

MESSAGES = [
    {"role": "system", "content": "Answer with one short sentence."},
    {"role": "user", "content": "What is 6 times 7?"},
]
# Faults at the HTTP level: the client itself can tell them from a good answer.
TRANSIENT = ("429", "429_no_retry_after", "500", "502", "503", "reset", "stall", "truncated_json", "empty")
KIND = {
    "429": "rate_limit", "429_no_retry_after": "rate_limit", "500": "server", "502": "server", "503": "server",
    "reset": "connection", "stall": "timeout", "truncated_json": "server", "empty": "empty",
}
MAX_RETRIES = 2
EMPTY_ATTEMPTS = 2
STALL_TIMEOUT_S = 6.0  # the stall fault holds a request past this; the real answer (16 tokens of SmolLM2) takes under a second


def ask(client: LLMClient, **kwargs):
    async def go():
        try:
            return await client.chat(MESSAGES, temperature=0.0, max_tokens=16, **kwargs)
        finally:
            await client.aclose()

    return run(go())


def make_client(url, server, cache, stats, *, fault=None, max_retries=MAX_RETRIES):
    # Only the stall test gets a short timeout: on a busy 2-core machine a real answer can take a while.
    timeout = STALL_TIMEOUT_S if fault == "stall" else 120.0
    ep = endpoint(url, server, max_retries=max_retries, timeout_s=timeout)
    return LLMClient(ep, "teacher", cache, stats, empty_attempts=EMPTY_ATTEMPTS)


def test_the_suite_covers_every_fault():
    assert set(TRANSIENT) | {"wrong_schema", "wrong_length"} == set(FAULTS)


@pytest.mark.parametrize("fault", TRANSIENT)
def test_transient_fault_is_retried_and_only_the_good_answer_is_cached(fault, server, tmp_path):
    cache_dir = tmp_path / "cache"
    stats = UsageStats()
    with FaultProxy(server.base_url, schedule=[fault], retry_after_s=2) as proxy:
        result = ask(make_client(proxy.base_url, server, LLMCache(cache_dir), stats, fault=fault))
        events = list(proxy.events)
    assert proxy.injected == {fault: 1}
    assert result.text.strip() and not result.cached
    row = stats.snapshot()["teacher"]
    assert row["failures"] == 0
    assert row["http_requests"] == 2 and row["retries"] == 1, row
    assert len(events) == 2 and events[0].fault == fault and events[1].fault is None
    assert proxy.upstream_errors == 0
    if fault == "429":
        # Retry-After: 2 must be waited out (a lower bound: the SDK's own backoff alone is shorter).
        assert events[1].t - events[0].t >= 2.0 - 0.05
    assert cache_texts(cache_dir) == [result.text]

    # A clean replay straight at the server is served from the cache, with the good answer.
    replay_stats = UsageStats()
    again = ask(make_client(server.base_url, server, LLMCache(cache_dir), replay_stats))
    assert again.cached and again.text == result.text
    assert replay_stats.snapshot()["teacher"]["http_requests"] == 0


@pytest.mark.parametrize("fault", TRANSIENT)
def test_persistent_fault_is_one_counted_error_and_nothing_is_cached(fault, server, tmp_path):
    cache_dir = tmp_path / "cache"
    stats = UsageStats()
    # One fault for every request of the call: the SDK's retries, or our own tries at an empty answer (a stall
    # costs a whole timeout, so it gets no retry here; the test above covers its retry).
    retries = 0 if fault == "stall" else MAX_RETRIES
    schedule = [fault] * (EMPTY_ATTEMPTS if fault == "empty" else retries + 1)
    with FaultProxy(server.base_url, schedule=schedule, retry_after_s=1) as proxy:
        client = make_client(proxy.base_url, server, LLMCache(cache_dir), stats, fault=fault, max_retries=retries)
        with pytest.raises(LLMError) as info:
            ask(client)
        err = info.value
        assert err.kind == KIND[fault], str(err)
        assert err.role == "teacher" and err.base_url == proxy.base_url
        assert proxy.base_url in str(err)
        row = stats.snapshot()["teacher"]
        assert row["failures"] == 1 and row["failures_by_kind"] == {KIND[fault]: 1}
        assert row["http_requests"] == len(schedule) == sum(proxy.injected.values())
        assert proxy.upstream_errors == 0
        assert cache_texts(cache_dir) == []

        # The endpoint recovers (schedule used up): the same call now succeeds and is the only cached entry.
        assert not [f for f in proxy.pending if f]
        good = ask(make_client(proxy.base_url, server, LLMCache(cache_dir), stats))
    assert good.text.strip() and not good.cached
    assert cache_texts(cache_dir) == [good.text]


def test_wrong_schema_text_reaches_the_caller_unchanged(server, tmp_path):
    """At the client level a wrong-shaped JSON reply is a 200 with text; the parsers must reject it (next tests)."""
    with FaultProxy(server.base_url, schedule=["wrong_schema"]) as proxy:
        result = ask(make_client(proxy.base_url, server, None, UsageStats()))
    assert result.text == WRONG_SCHEMA_CONTENT


def test_proxy_counts_and_passes_clean_requests(server):
    with FaultProxy(server.base_url, schedule=[None, "503", None]) as proxy:
        stats = UsageStats()
        for _ in range(2):
            ask(make_client(proxy.base_url, server, None, stats))
        snap = proxy.snapshot()
    # 1st call clean; 2nd call: 503 then a clean retry.
    assert snap == {"requests": 3, "forwarded": 2, "upstream_errors": 0, "injected": {"503": 1}, "injected_total": 1,
                    "replayed": 0, "recorded": 0}
    assert stats.snapshot()["teacher"]["retries"] == 1
