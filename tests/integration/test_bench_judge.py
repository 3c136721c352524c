"""The judging benchmarks on the real SmolLM2 server, at tiny sizes: what they measure must be true of the run."""

from __future__ import annotations

import dataclasses

import pytest

from ropd_kit.bench.judge import bench_cache_replay, bench_judge_throughput, bench_verify_granularity, make_inputs

pytestmark = pytest.mark.integration


@pytest.fixture
def groups(fast_config):
    # Smaller than the shared sizes (3 rollouts, up to 12 criteria, 256 tokens) and still enough for every mode to
    # count: 4 answers and 2-3 criteria, so per-criterion calls outnumber per-answer ones.
    config = fast_config.model_copy(update={"n_tasks": 2, "n_rollouts": 2, "min_criteria": 2, "max_criteria": 3,
                                            "rubricator_max_tokens": 192, "verifier_max_tokens": 160})
    found = make_inputs(config)
    assert len(found) == 2 and all(g.teacher_refs and g.rollouts for g in found)
    return config, found


def test_throughput_replays_every_recorded_answer_and_overlaps_latency(groups):
    config, found = groups
    result = bench_judge_throughput(found, config, levels=(1, 2), repeats_local=1, repeats_remote=1,
                                    latency_s=0.4, progress=lambda _: None)
    remote = result["remote_latency"]
    # Every group is one rubric call and one verification, whatever the judge model made of the rubric.
    for level in (*result["local"].values(), *remote.values()):
        for p in level["passes"]:
            roles = p["http_requests_by_role"]
            assert roles["rubricator"] == p["groups"] and roles["verifier"] >= p["groups"], p
    # (b) must cost latency only: every request it made was answered from (a)'s recording.
    assert all(p["not_replayed"] == 0 for level in remote.values() for p in level["passes"])
    assert result["inputs"]["recorded_requests"] >= 2 * len(found)  # a rubric and a verdict call per group at least
    # Two groups in flight halve a latency-bound pass; allow for the client's own time.
    assert remote["2"]["speedup_vs_1"] > 1.4
    assert remote["1"]["passes"][0]["wall_s"] >= 0.4 * 2 * len(found)


def test_granularity_counts_calls_per_answer_and_per_criterion(groups):
    config, found = groups
    # One reference and one rollout: two answers already make per-answer calls outnumber the batched one, and the
    # per-(answer, criterion) mode costs answers x criteria calls, the bulk of this test's time.
    group = dataclasses.replace(found[0], teacher_refs=found[0].teacher_refs[:1], rollouts=found[0].rollouts[:1])
    result = bench_verify_granularity([group], config, repeats=1, progress=lambda _: None)
    rows = {r["mode"]: r for r in result["rows"]}
    assert set(rows) == {"per_group", "per_answer", "per_answer_criterion", "soft"}
    n, k = rows["per_group"]["n_answers"], rows["per_group"]["n_criteria"]
    assert rows["per_group"]["calls"] >= 1
    assert rows["per_answer"]["calls"] >= n
    assert rows["per_answer_criterion"]["calls"] >= n * k
    # The question, rubric and instructions are paid once per call: batching is the cheapest in prompt tokens.
    assert rows["per_group"]["prompt_tokens"] < rows["per_answer"]["prompt_tokens"] \
        < rows["per_answer_criterion"]["prompt_tokens"]
    # Soft verdicts: a request per (answer, criterion) too, but the server reuses an answer's prompt across its
    # criteria, and each reply is one word.
    assert rows["soft"]["calls"] >= n * k
    assert rows["soft"]["reused_prompt_tokens"] > rows["soft"]["prompt_tokens"] / 3
    assert rows["soft"]["completion_tokens"] < rows["per_answer_criterion"]["completion_tokens"]


def test_cache_replay_asks_again_only_for_what_was_not_usable(groups):
    config, found = groups
    result = bench_cache_replay(found, config, repeats=2, cold_retries=1, progress=lambda _: None)
    row = result["rows"][0]
    # A cold pass is redone (once at most) only when its warm passes asked again.
    assert len(row["redone"]) <= 1 and all(any(r["warm_http_requests"]) for r in row["redone"])
    if not row["redone"]:
        assert all(w["http_requests"] == 0 for w in row["warm"])
    cold = row["cold"]
    assert cold["http_requests"] > 0 and cold["http_requests_by_role"]["teacher"] > 0
    # Teacher refs replay from the reference index, judge replies from the cache (rejected ones too, with their
    # rejection): a warm pass asks again only where a cold call failed outright (no reply to replay).
    assert result["warm_http_requests_by_role"].get("teacher", 0) == 0
    for warm in row["warm"]:
        assert warm["http_requests"] <= cold["http_requests"] - cold["http_requests_by_role"]["teacher"]
        if cold["failed_groups"] == 0:
            assert warm["http_requests"] == 0
            assert result["same_rewards"]
