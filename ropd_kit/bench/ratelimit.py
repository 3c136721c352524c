"""Benchmark of the judge endpoint's requests/minute limit (`EndpointConfig.requests_per_minute`, `limits.py`):
does a pass of real judge calls stay under it, as the endpoint counts, and how close to it does it run?

In: `groups` ROPD groups (shipped arithmetic tasks, fixed teacher refs and rollouts), judged as the reward judges
them (one rubric call and one verifier call per group, `judge.judge_pass`) at a concurrency well above the limit,
against the stub judge (`stubjudge.StubJudge`: well-formed replies at once) behind the latency proxy
(`faultproxy.FaultProxy`, `latency_s` per request: a remote API's round trip). Rubricator and Verifier share one
endpoint (base_url + model), hence one limit, as on a real API.
Out (`rate_limit.json`): the arrival time of every chat request at the proxy, as a provider's edge would count
them, summarised by `summarise_rate_limit`: the most requests in any window, the requests in the first window, the
span of the pass against the shortest span the limit allows, and `ok` = the most in any window <= the limit.

The limiter's window is 60 s (`requests_per_minute`). `window_s` shortens it for a quick run (the same limiter, its
`period_s` set before the pass): `limit` requests per `window_s` seconds is the same check on a smaller clock.
"""

from __future__ import annotations

import bisect
import time
from typing import Any, Callable, Sequence

from .judge import REPO, Group

DEFAULT_LIMIT = 8
DEFAULT_GROUPS = 12  # 24 requests: three windows' worth at the default limit


def max_in_window(times: Sequence[float], window_s: float) -> tuple[int, float | None]:
    """The most of `times` inside any half-open window [t, t + window_s), and where that window starts."""
    ts = sorted(times)
    best, start = 0, None
    for i, t in enumerate(ts):
        # A busiest window can always be slid right until it starts at a request.
        n = bisect.bisect_left(ts, t + window_s, lo=i) - i
        if n > best:
            best, start = n, t
    return best, start


def summarise_rate_limit(times: Sequence[float], limit: int, window_s: float = 60.0) -> dict[str, Any]:
    """What a provider counting arrivals would see of a pass limited to `limit` requests per `window_s`.

    - `max_in_window`: the most requests in any window of `window_s` (half-open: a request exactly `window_s` after
      another is in the next window, as the limiter's own log counts); `ok` when it is <= `limit`.
    - `min_gap_over_limit_s`: the shortest time between request i and request i + limit; `ok` is the same as this
      being >= `window_s` (None when the pass never had more than `limit` requests).
    - `first_window`: requests in the first window from the first request: `limit` when the limiter lets a full
      window through at once (a token bucket would let through up to twice that in the first minute).
    - `span_s` against `min_span_s` = floor((n - 1) / limit) * window_s, the least any limiter that keeps the cap
      can take for n requests; `efficiency` = min_span_s / span_s (1.0: it waited no longer than it had to).
    """
    if limit < 1 or not window_s > 0:
        raise ValueError(f"limit must be >= 1 and window_s > 0, got {limit!r}, {window_s!r}")
    ts = sorted(float(t) for t in times)
    n = len(ts)
    if n == 0:
        return {"requests": 0, "limit": limit, "window_s": window_s, "max_in_window": 0, "ok": True,
                "busiest_window_start_s": None, "first_window": 0, "min_gap_over_limit_s": None, "span_s": 0.0,
                "min_span_s": 0.0, "efficiency": None}
    t0 = ts[0]
    most, start = max_in_window(ts, window_s)
    gaps = [ts[i + limit] - ts[i] for i in range(n - limit)]
    span = ts[-1] - t0
    min_span = ((n - 1) // limit) * window_s
    return {
        "requests": n,
        "limit": limit,
        "window_s": window_s,
        "max_in_window": most,
        "ok": most <= limit,
        "busiest_window_start_s": None if start is None else round(start - t0, 3),
        "first_window": bisect.bisect_left(ts, t0 + window_s),
        "min_gap_over_limit_s": round(min(gaps), 3) if gaps else None,
        "span_s": round(span, 3),
        "min_span_s": min_span,
        "efficiency": round(min_span / span, 3) if span > 0 and min_span > 0 else None,
    }


def bench_groups(n: int) -> list[Group]:
    """`n` groups of the shipped arithmetic tasks, each with 2 teacher refs and 4 rollouts of fixed text: the stub
    judge does not read them, and fixed text keeps the requests the same from run to run."""
    from ..data import load_tasks

    tasks = load_tasks(REPO / "data" / "arith_train.jsonl", limit=n)
    refs = ["Step by step, the story's operations give the result.\nAnswer: {a}", "Answer: {a}"]
    rollouts = ["Answer: {a}", "I think it is 3.\nAnswer: 3", "Adding everything up.\nAnswer: {a}", "Answer: 0"]
    return [Group(t, [r.format(a=t.answer) for r in refs], [r.format(a=t.answer) for r in rollouts]) for t in tasks]


def bench_rate_limit(
    *, limit: int = DEFAULT_LIMIT, window_s: float = 60.0, groups: int = DEFAULT_GROUPS, latency_s: float = 0.5,
    concurrency: int = 16, margin_s: float | None = None, progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """One pass of `groups` judged groups (2 requests each) through the latency proxy with `limit` requests per
    `window_s` on the judge endpoint; the proxy's arrival times summarised (`summarise_rate_limit`). `margin_s`
    overrides the limiter's arrival margin (None: `limits.ARRIVAL_MARGIN_S`, what every endpoint gets)."""
    from .. import limits
    from ..config import EndpointConfig, RunConfig
    from .faultproxy import FaultProxy
    from .judge import judge_pass
    from .stubjudge import StubJudge

    cases = bench_groups(groups)
    with StubJudge() as stub, FaultProxy(stub.base_url, latency_s=latency_s) as proxy:
        endpoint = EndpointConfig(base_url=proxy.base_url, model=stub.model, max_concurrency=concurrency,
                                  timeout_s=max(120.0, 3 * window_s), max_retries=0, requests_per_minute=limit)
        config = RunConfig(
            run_dir=str(REPO / "reports" / "bench" / "work" / "rate_limit"), use_cache=False,
            **{role: endpoint.model_copy() for role in ("teacher", "rubricator", "verifier", "student")},
            min_criteria=4, max_criteria=4, rubric_attempts=1, verify_attempts=1,
        )
        # A clean window, on the clock asked for: clients built below reuse this limiter (guard_for keeps it).
        limits.reset_guards()
        limiter = limits.guard_for(endpoint).requests
        assert limiter is not None
        limiter.period_s = float(window_s)
        if margin_s is not None:
            limiter.margin_s = float(margin_s)
        progress(f"rate limit: {len(cases)} groups, {limit} requests per {window_s:g} s, {latency_s:g} s latency, "
                 f"concurrency {concurrency}")
        started = time.perf_counter()
        judged = judge_pass(cases, config, concurrency)
        wall = time.perf_counter() - started
        arrivals = [e.t for e in proxy.events]
        upstream = [e.t for e in stub.events]
        stub_counts = stub.counts()
        limits.reset_guards()
    summary = summarise_rate_limit(arrivals, limit, window_s)
    progress(f"rate limit: {summary['requests']} requests in {wall:.0f} s, at most {summary['max_in_window']} in any "
             f"{window_s:g} s window (limit {limit}): {'ok' if summary['ok'] else 'OVER THE LIMIT'}")
    return {
        "bench": "rate_limit",
        "inputs": {"limit": limit, "window_s": window_s, "margin_s": limiter.margin_s, "groups": len(cases),
                   "latency_s": latency_s,
                   "concurrency": concurrency, "requests_per_group": 2,
                   "upstream": "stub judge (ropd_kit.bench.stubjudge) behind the latency proxy"},
        "at_proxy": summary,
        "at_upstream": summarise_rate_limit(upstream, limit, window_s),
        "upstream_requests_by_kind": stub_counts,
        "arrivals_s": [round(t - min(arrivals), 3) for t in sorted(arrivals)],
        "pass": {k: judged.get(k) for k in ("wall_s", "groups", "failed_groups", "http_requests", "induced_rubrics")},
        "ok": summary["ok"],
        "reading": _reading(summary, limit, window_s, latency_s),
    }


def _reading(s: dict[str, Any], limit: int, window_s: float, latency_s: float) -> str:
    if not s["requests"]:
        return "No requests reached the proxy."
    verdict = "within" if s["ok"] else "OVER"
    eff = f"{s['efficiency']:.2f}" if s.get("efficiency") is not None else "n/a"
    return (f"{s['requests']} requests at {limit} per {window_s:g} s through {latency_s:g} s of latency: at most "
            f"{s['max_in_window']} in any window ({verdict} the limit), {s['first_window']} in the first; the pass "
            f"took {s['span_s']:.1f} s where the limit allows {s['min_span_s']:g} s at best (efficiency {eff}).")

