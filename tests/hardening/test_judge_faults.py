"""Faults that only the judge stages can see (a 200 with the wrong JSON), and faults that outlast every retry.

Through the fault proxy in front of the real local server: a Rubricator reply of the wrong schema and a verdict
list of the wrong length are rejected, retried with the reason fed back, and kept in the LLM cache with their
rejection (a re-run replays the same retry chain, which quotes them, without a request); a group whose judging fails after all retries comes back failed with no scores (zero
advantage), the failures counted, without raising.
"""

from __future__ import annotations

import json

import pytest
from hardening_helpers import TASKS, cache_texts, run, through

from ropd_kit.data import Task
from ropd_kit.bench.faultproxy import WRONG_SCHEMA_CONTENT
from ropd_kit.llm import make_clients
from ropd_kit.pipeline import judge_group_async
from ropd_kit.rubrics import Criterion, Rubric, induce_rubric_async
from ropd_kit.verify import parse_verdicts, verify_group_async

pytestmark = pytest.mark.integration

TASK = Task(**TASKS[0])
REFS = ["24 + 12 = 36\n36 / 4 = 9\nAnswer: 9", "36 cookies, 9 per box.\nAnswer: 9"]
ROLLOUTS = ["24 + 12 = 36\n36 / 4 = 9\nAnswer: 9", "24 + 12 = 36\n36 / 4 = 8\nAnswer: 8"]
RUBRIC = Rubric(criteria=[
    Criterion(id="final", text="The final answer is 9.", points=3),
    Criterion(id="total", text="Computes the total 24 + 12 = 36.", points=1),
])


def _induce(config):
    async def go():
        async with make_clients(config) as clients:
            return await induce_rubric_async(TASK.prompt, REFS, ROLLOUTS, clients.rubricator, config), clients.stats

    return run(go())


def _verify(config):
    async def go():
        async with make_clients(config) as clients:
            return await verify_group_async(TASK.prompt, RUBRIC, REFS, ROLLOUTS, clients.verifier, config, seed=3)

    return run(go())


def _judge(config):
    async def go():
        async with make_clients(config) as clients:
            result = await judge_group_async(TASK, REFS, ROLLOUTS, clients, config, step=1)
            return result, clients.stats.snapshot()

    return run(go())


def _is_wrong_length(text: str, n_answers: int, n_criteria: int) -> bool:
    try:
        parse_verdicts(text, n_answers, n_criteria)
    except ValueError:
        return True
    return False


def test_wrong_schema_rubric_is_retried_and_the_chain_replays(proxy, small_config):
    config = through(small_config, proxy.base_url)
    proxy.push("wrong_schema")
    outcome, stats = _induce(config)
    assert proxy.injected == {"wrong_schema": 1}
    assert outcome.raw[0] == WRONG_SCHEMA_CONTENT
    assert "criteria" in outcome.errors[0]
    assert outcome.attempts >= 2  # the fault cost one attempt, not the group
    assert stats.snapshot()["rubricator"]["calls"] == outcome.attempts
    # The rejected reply is cached with its rejection, so a re-run of the same inputs replays the same chain (the
    # wrong reply, then the retry that quotes it) and asks nothing.
    assert WRONG_SCHEMA_CONTENT in cache_texts(config.cache_dir)
    sent = len(proxy.events)
    replay, replay_stats = _induce(config)
    assert replay.raw == outcome.raw and replay.errors == outcome.errors
    assert replay_stats.snapshot()["rubricator"]["http_requests"] == 0 and len(proxy.events) == sent


def test_wrong_length_verdicts_are_retried_and_the_chain_replays(proxy, small_config):
    config = through(small_config, proxy.base_url)
    proxy.push("wrong_length")
    verdicts = _verify(config)
    assert proxy.injected == {"wrong_length": 1}
    bad = verdicts.raw[0]
    assert _is_wrong_length(bad, len(REFS) + len(ROLLOUTS), len(RUBRIC.criteria))
    assert any("judgement" in e for e in verdicts.errors), verdicts.errors
    assert verdicts.calls >= 2
    assert bad in cache_texts(config.cache_dir)
    sent = len(proxy.events)
    replay = _verify(config)
    assert replay.raw == verdicts.raw and replay.errors == verdicts.errors and len(proxy.events) == sent


def test_wrong_length_waits_for_a_verifier_request(proxy, small_config):
    """The proxy gives the wrong-length fault to the verifier only; the Rubricator's requests pass untouched."""
    config = through(small_config, proxy.base_url)
    proxy.push("wrong_length")
    _, stats = _induce(config)  # whatever the small model's rubric is like, its requests are not verifier requests
    rubricator_events = list(proxy.events)
    assert len(rubricator_events) == stats.snapshot()["rubricator"]["http_requests"] >= 1
    assert all(e.fault is None and not e.verifier for e in rubricator_events)
    assert proxy.pending == ["wrong_length"]
    _verify(config)
    verifier_events = proxy.events[len(rubricator_events) :]
    assert verifier_events[0].verifier and verifier_events[0].fault == "wrong_length"
    assert proxy.injected == {"wrong_length": 1}


@pytest.mark.parametrize("fault", ["503", "truncated_json", "reset"])
def test_group_failing_every_retry_is_a_counted_failure(fault, proxy, small_config):
    """Every request fails: the group comes back failed with no scores (zero advantage), nothing raises."""
    config = through(small_config, proxy.base_url, max_retries=1)
    proxy.set_random(1.0, [fault])
    result, usage = _judge(config)
    assert result.failed and result.scores is None
    assert result.error and result.error.startswith("rubric")
    assert usage["rubricator"]["failures"] >= 1
    assert sum(proxy.injected.values()) == usage["rubricator"]["http_requests"]
    assert cache_texts(config.cache_dir) == []
    assert json.dumps(result.rubric_record)  # the failure record is a plain, writable record


def test_verifier_outage_after_a_good_rubric_fails_the_group_only(proxy, small_config):
    config = through(small_config, proxy.base_url, max_retries=0)
    # The Rubricator's first request passes; from then on every request gets a 502.
    proxy.push(None)
    proxy.set_random(1.0, ["502"])
    result, usage = _judge(config)
    if result.rubric_record["criteria"]:
        assert result.failed and result.scores is None and result.error.startswith("verify")
        assert usage["verifier"]["failures"] >= 1
        assert all(v["score"] is None for v in result.verdict_records if v["source"] == "student")
    else:  # the small model's one rubric reply did not parse; the group still fails cleanly
        assert result.failed and result.scores is None
