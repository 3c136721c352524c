"""Rubric induction and blind verification of one real group against the local llama-server (SmolLM2-135M).

A 135M model writes weak rubrics and noisy verdicts; what this proves is the machinery: real prompts go through a
real server with JSON-schema constrained decoding, replies are parsed or rejected with reasons, and every outcome
comes back with the right shapes and a recorded failure instead of an exception.
"""

from __future__ import annotations

import pytest

from ropd_kit.config import FAST_MODEL, EndpointConfig, RunConfig
from ropd_kit.llm import LLMCache, LLMClient, UsageStats, run_sync
from ropd_kit.rubrics import Criterion, Rubric, induce_rubric_async
from ropd_kit.verify import blind_order, verify_group_async

pytestmark = pytest.mark.integration

QUESTION = "Tom has 12 apples and gives away 5. Then he buys 3 more. How many apples does he have now?"
REFS = [
    "He starts with 12, gives away 5: 12 - 5 = 7. Buys 3: 7 + 3 = 10. The answer is 10.",
    "12 - 5 + 3 = 10. Tom has 10 apples.",
]
ROLLOUTS = [
    "12 - 5 = 7, 7 + 3 = 10. Answer: 10",
    "12 + 5 + 3 = 20. Answer: 20",
    "He has 7 apples.",
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


@pytest.fixture
def config(server, tmp_path) -> RunConfig:
    endpoint = EndpointConfig(
        base_url=server.base_url, model=getattr(server, "model_id", None) or FAST_MODEL, max_retries=1, timeout_s=180
    )
    return RunConfig(
        run_dir=str(tmp_path / "run"),
        rubricator=endpoint,
        verifier=endpoint,
        min_criteria=2,
        max_criteria=4,
        rubricator_max_tokens=400,
        rubric_attempts=2,
        verifier_max_tokens=200,
        verify_attempts=2,
        max_answers_per_call=3,
        cache_dir=str(tmp_path / "llm"),
    )


def _client(config: RunConfig, role: str, stats: UsageStats) -> LLMClient:
    return LLMClient(config.endpoint(role), role, LLMCache(config.cache_dir), stats)


def test_induce_and_verify_one_group(config):
    stats = UsageStats()

    async def go():
        rubricator, verifier = _client(config, "rubricator", stats), _client(config, "verifier", stats)
        try:
            outcome = await induce_rubric_async(QUESTION, REFS, ROLLOUTS, rubricator, config)
            # If the tiny model could not write a rubric, still verify with one, so the Verifier path runs for real.
            rubric = outcome.rubric or Rubric(
                criteria=[
                    Criterion(id="c1", text="States the final answer 10", points=5, category="correctness"),
                    Criterion(id="c2", text="Computes 12 - 5 = 7", points=2, category="reasoning"),
                ]
            )
            verdicts = await verify_group_async(QUESTION, rubric, REFS, ROLLOUTS, verifier, config, seed=4)
            return outcome, rubric, verdicts
        finally:
            await rubricator.aclose()
            await verifier.aclose()

    outcome, rubric, verdicts = run_sync(go())

    # Rubric induction: a valid rubric, or a recorded failure with every raw reply kept.
    assert 1 <= outcome.attempts <= config.rubric_attempts
    assert len(outcome.raw) <= outcome.attempts
    if outcome.rubric is None:
        assert outcome.error and len(outcome.errors) == outcome.attempts
    else:
        assert config.min_criteria <= len(outcome.rubric.criteria) <= config.max_criteria
        assert all(1 <= p <= 5 for p in outcome.rubric.points)
        assert len(set(c.id.lower() for c in outcome.rubric.criteria)) == len(outcome.rubric.criteria)

    # Verification: source-order shapes, failure recorded rather than raised.
    m = len(rubric.criteria)
    assert len(verdicts.teacher) == len(REFS) and len(verdicts.student) == len(ROLLOUTS)
    for v in verdicts.teacher + verdicts.student:
        assert v is None or (len(v) == m and all(isinstance(b, bool) for b in v))
    assert verdicts.failed == any(v is None for v in verdicts.student)
    assert (verdicts.error is None) == all(v is not None for v in verdicts.teacher + verdicts.student)
    assert verdicts.order == blind_order(len(REFS), len(ROLLOUTS), 4)
    assert verdicts.calls >= 2  # 5 answers in chunks of 3
    assert 1 <= len(verdicts.raw) <= verdicts.calls

    usage = stats.snapshot()
    assert usage["rubricator"]["calls"] == outcome.attempts
    assert usage["verifier"]["calls"] == verdicts.calls


def test_replay_hits_the_cache(config):
    """Same group, same seed: the prompts are identical (derived fence token), so a replay makes no requests."""
    rubric = Rubric(criteria=[Criterion(id="c1", text="States the final answer 10", points=5)])

    def once():
        stats = UsageStats()

        async def go():
            client = _client(config, "verifier", stats)
            try:
                return await verify_group_async(QUESTION, rubric, REFS, ROLLOUTS, client, config, seed=9)
            finally:
                await client.aclose()

        return run_sync(go()), stats.snapshot()["verifier"]

    first, _ = once()
    second, usage = once()
    assert second.teacher == first.teacher and second.student == first.student
    assert usage["cache_hits"] == usage["calls"] and usage["http_requests"] == 0
