"""The rate-limit benchmark (ropd_kit.bench.ratelimit) and the stub judge it and the GPU smoke check use.

The summary is pure arithmetic on arrival times (hand-computed cases); the stub judge is checked through the kit's
own client and parsers; one short pass runs the real limiter, client, latency proxy and stub on a 2 s window.
"""

from __future__ import annotations

import pytest

from ropd_kit.bench.ratelimit import max_in_window, summarise_rate_limit


def test_a_strict_window_pass_is_within_the_limit_and_as_fast_as_the_limit_allows():
    s = summarise_rate_limit([0.0, 0.1, 0.2, 60.0, 60.1, 60.2, 120.0], limit=3, window_s=60.0)
    assert s["requests"] == 7 and s["max_in_window"] == 3 and s["ok"] is True
    assert s["first_window"] == 3
    assert s["min_gap_over_limit_s"] == pytest.approx(60.0)  # request i to request i + 3, never closer
    assert s["min_span_s"] == 120.0 and s["span_s"] == 120.0 and s["efficiency"] == 1.0


def test_a_request_just_inside_the_window_is_counted_against_it():
    s = summarise_rate_limit([0.0, 0.0, 0.0, 59.9], limit=3, window_s=60.0)
    assert s["max_in_window"] == 4 and s["ok"] is False
    assert s["min_gap_over_limit_s"] == pytest.approx(59.9)
    assert s["busiest_window_start_s"] == 0.0


def test_windows_are_half_open_as_the_limiters_log_counts_them():
    assert max_in_window([0.0, 60.0], 60.0) == (1, 0.0)
    assert max_in_window([0.0, 59.999], 60.0)[0] == 2


def test_a_token_bucket_burst_is_over_the_limit_in_the_first_minute():
    # A full bucket of N at once, then one token back every 60/N s: 2N - 1 requests inside the first minute.
    n = 4
    times = [0.0] * n + [k * 60.0 / n for k in range(1, n + 1)]
    s = summarise_rate_limit(times, limit=n, window_s=60.0)
    assert s["first_window"] == 2 * n - 1 and s["max_in_window"] == 2 * n - 1 and not s["ok"]


def test_empty_and_bad_inputs():
    assert summarise_rate_limit([], limit=5)["ok"] is True
    assert summarise_rate_limit([3.0], limit=5)["efficiency"] is None
    with pytest.raises(ValueError):
        summarise_rate_limit([0.0], limit=0)


def test_the_stub_judge_answers_every_role_in_the_shapes_the_kit_parses(tmp_path):
    from ropd_kit.bench.ratelimit import bench_groups
    from ropd_kit.bench.stubjudge import StubJudge
    from ropd_kit.config import EndpointConfig, RunConfig
    from ropd_kit.llm import make_clients, run_sync
    from ropd_kit.rubrics import induce_rubric_async
    from ropd_kit.verify import verify_group_async

    group = bench_groups(1)[0]
    with StubJudge() as stub:
        endpoint = EndpointConfig(base_url=stub.base_url, model=stub.model, max_retries=0)
        config = RunConfig(run_dir=str(tmp_path / "run"), use_cache=False, min_criteria=3, max_criteria=5,
                           **{r: endpoint.model_copy() for r in ("teacher", "rubricator", "verifier", "student")})

        async def judge():
            async with make_clients(config) as clients:
                outcome = await induce_rubric_async(group.task.prompt, group.teacher_refs, group.rollouts,
                                                    clients.rubricator, config)
                first = await verify_group_async(group.task.prompt, outcome.rubric, group.teacher_refs,
                                                 group.rollouts, clients.verifier, config, seed=0)
                again = await verify_group_async(group.task.prompt, outcome.rubric, group.teacher_refs,
                                                 group.rollouts, clients.verifier, config, seed=0)
                ref = await clients.teacher.chat([{"role": "user", "content": group.task.prompt}], temperature=0.7,
                                                 max_tokens=64)
                return outcome, first, again, ref

        outcome, first, again, ref = run_sync(judge())
        counts = stub.counts()
    assert outcome.rubric is not None and outcome.attempts == 1 and len(outcome.rubric.criteria) == 4
    judged = first.teacher + first.student
    assert len(judged) == 6 and all(v is not None and len(v) == 4 for v in judged)
    # Verdicts come from the request's hash: the same request gets the same verdicts, and they are not all equal
    # (a group with spread rewards, so a GRPO step has advantages to follow).
    assert (first.teacher, first.student) == (again.teacher, again.student)
    assert len({tuple(v) for v in judged}) > 1
    assert "Answer:" in ref.text
    assert counts == {"rubric": 1, "verdicts": 2, "text": 1}


def test_a_short_pass_through_the_latency_proxy_stays_within_the_limit():
    from ropd_kit.bench.ratelimit import bench_rate_limit

    result = bench_rate_limit(limit=3, window_s=2.0, groups=4, latency_s=0.2, progress=lambda _: None)
    at_proxy = result["at_proxy"]
    assert at_proxy["requests"] == 8 and result["pass"]["failed_groups"] == 0
    assert at_proxy["max_in_window"] <= 3 and result["ok"]
    assert result["at_upstream"]["max_in_window"] <= 3
    # The limiter lets a full window through at once rather than trickling: the first window is full.
    assert at_proxy["first_window"] == 3


def test_the_bench_index_shows_the_rate_limit_section_and_its_headline(tmp_path):
    from ropd_kit.bench import suite

    times = [0.0, 0.1, 61.0, 61.1]
    result = {"inputs": {"limit": 2, "window_s": 60.0}, "at_proxy": summarise_rate_limit(times, 2, 60.0),
              "arrivals_s": times, "ok": True, "reading": "two windows of two"}
    suite.write_result(tmp_path, "rate_limit", result, {"cpus": 2})
    page = suite.write_index(tmp_path).read_text()
    assert 'id="rate_limit"' in page and "two windows of two" in page and "Plotly.newPlot" in page
    rows = dict(suite.headline(tmp_path))
    assert rows["rate limit: most requests in any 60 s at the endpoint (limit 2)"] == 2
    assert "rate_limit" in suite.BENCHES and suite.parse_args(["--only", "rate_limit", "--quick"]).rate_window == 10.0
