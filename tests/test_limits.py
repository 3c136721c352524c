"""ropd_kit.limits on its own: the sliding-window rate limiter, token estimates and their correction, the circuit
breaker's state machine, the per-step deadline helper, and the config fields that set them.

In-memory, no network. Time is a fake clock wherever a test would otherwise wait a minute; the few real-time tests
use sub-second windows and check only orderings that cannot fail by being slow.
"""

from __future__ import annotations

import asyncio
import math
import time

import pytest
from pydantic import ValidationError

from ropd_kit import limits
from ropd_kit.config import EndpointConfig, RunConfig
from ropd_kit.limits import (
    CircuitBreaker,
    CircuitOpen,
    DeadlineExceeded,
    RateLimiter,
    estimate_prompt_tokens,
    estimate_tokens,
    gather_with_deadline,
    guard_for,
)


class FakeClock:
    """A clock that only moves when someone sleeps on it (one waiter at a time: the tests acquire sequentially)."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds
        await asyncio.sleep(0)


def fake_limiter(capacity: float, period_s: float = 60.0) -> tuple[RateLimiter, FakeClock]:
    clock = FakeClock()
    return RateLimiter(capacity, period_s, clock=clock, sleep=clock.sleep, max_poll_s=1e9), clock


@pytest.fixture(autouse=True)
def _fresh_guards(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    limits.reset_guards()
    yield
    limits.reset_guards()


# ------------------------------------------------------------------------------------------------------ rate limiter
def test_n_per_minute_never_more_than_n_in_any_window_and_no_longer_wait_than_needed():
    limiter, clock = fake_limiter(5, 60.0)
    start = clock.t

    async def go():
        return [(await limiter.acquire()).t for _ in range(17)]

    grants = asyncio.run(go())
    assert grants[:5] == [start] * 5  # the first window's worth goes at once
    for i in range(len(grants) - 5):
        assert grants[i + 5] - grants[i] >= 60.0 - 1e-9, (i, grants)
    # 17 = 5 + 5 + 5 + 2: the last two go as soon as the third window opens, not later.
    assert grants[-1] - start == pytest.approx(180.0, abs=1e-3)


def test_concurrent_waiters_share_one_window_in_real_time():
    limiter = RateLimiter(3, period_s=0.4)

    async def go():
        return await asyncio.gather(*[limiter.acquire() for _ in range(7)])

    started = time.monotonic()
    charges = asyncio.run(go())
    elapsed = time.monotonic() - started
    grants = sorted(c.t for c in charges)
    for i in range(len(grants) - 3):
        assert grants[i + 3] - grants[i] >= 0.4 - 1e-9, grants
    assert elapsed >= 0.8 - 1e-3  # 7 = 3 + 3 + 1: two full windows had to pass
    assert elapsed < 10  # generous: the waiters were not stuck


def test_token_charge_is_refunded_or_topped_up_by_settle():
    limiter, clock = fake_limiter(100)
    charge = limiter.try_acquire(80)
    assert charge is not None and limiter.used() == 80
    assert limiter.try_acquire(30) is None  # 110 > 100
    assert charge.settle(10) == -70  # the answer was short: refunded at once
    assert limiter.used() == 10
    assert limiter.try_acquire(30) is not None and limiter.used() == 40
    charge.settle(150)  # the call used more than estimated: the overrun counts against the window
    assert limiter.used() == 180 and limiter.try_acquire(1) is None
    clock.t += 60.0
    assert limiter.used() == 0 and limiter.try_acquire(100) is not None
    charge.settle(5)  # a charge that has left the window changes nothing any more
    assert limiter.used() == 100


def test_waiter_is_served_by_a_refund_before_the_window_expires():
    limiter = RateLimiter(100, period_s=60.0, max_poll_s=0.05)

    async def go():
        first = await limiter.acquire(90)
        waiter = asyncio.ensure_future(limiter.acquire(50))
        await asyncio.sleep(0.1)
        assert not waiter.done()  # 140 > 100: it waits
        first.settle(20)  # the real usage: 20 + 50 fits now
        return await asyncio.wait_for(waiter, timeout=10)  # far less than the 60 s window

    assert asyncio.run(go()).amount == 50
    assert limiter.used() == 70


def test_a_charge_above_capacity_is_clamped_to_a_whole_window():
    limiter, clock = fake_limiter(10)

    async def go():
        big = await limiter.acquire(50)
        small = await limiter.acquire(1)
        return big, small

    big, small = asyncio.run(go())
    assert big.amount == 10  # it could never fit otherwise
    assert small.t - big.t == pytest.approx(60.0)


def test_limiter_refuses_nonsense_settings():
    with pytest.raises(ValueError, match="capacity"):
        RateLimiter(0)
    with pytest.raises(ValueError, match="period_s"):
        RateLimiter(5, period_s=0)


def test_token_estimates():
    text = "x" * 400
    assert estimate_prompt_tokens([{"role": "user", "content": text}]) == 100 + 4 + 3
    parts = [{"role": "user", "content": [{"type": "text", "text": text}, {"type": "image_url", "image_url": {}}]}]
    assert estimate_prompt_tokens(parts) == 107
    two = [{"role": "system", "content": "abcd"}, {"role": "user", "content": text}]
    assert estimate_tokens(two, 256) == math.ceil(404 / 4) + 8 + 3 + 256
    assert estimate_tokens(two, 256, extra_chars=40) == estimate_tokens(two, 256) + 10


# --------------------------------------------------------------------------------------------------------- breaker
def test_breaker_opens_after_consecutive_failures_then_probes_and_closes():
    clock = FakeClock()
    breaker = CircuitBreaker(3, failure_rate=1.0, window=10, cooldown_s=30.0, clock=clock, name="judge")
    for _ in range(2):
        assert breaker.before_call() is False
        breaker.record_failure()
    breaker.record_success()  # a success resets the run of failures
    for _ in range(2):
        breaker.record_failure()
    assert breaker.state == "closed"
    breaker.record_failure()
    assert breaker.state == "open" and breaker.times_opened == 1
    with pytest.raises(CircuitOpen, match="judge") as info:
        breaker.before_call()
    assert info.value.retry_in_s == pytest.approx(30.0)
    clock.t += 29.0
    with pytest.raises(CircuitOpen):
        breaker.before_call()
    clock.t += 1.0
    assert breaker.state == "half_open"
    assert breaker.before_call() is True  # the one probe
    with pytest.raises(CircuitOpen, match="probe"):
        breaker.before_call()  # everyone else still fails fast while it is in flight
    breaker.record_success(probe=True)
    assert breaker.state == "closed" and breaker.before_call() is False
    assert breaker.snapshot()["refused"] == 3


def test_failed_probe_reopens_for_another_cooldown():
    clock = FakeClock()
    breaker = CircuitBreaker(1, cooldown_s=10.0, clock=clock)
    breaker.record_failure()
    clock.t += 10.0
    probe = breaker.before_call()
    assert probe is True
    breaker.record_failure(probe)
    assert breaker.state == "open" and breaker.times_opened == 2
    clock.t += 9.9
    with pytest.raises(CircuitOpen):
        breaker.before_call()
    clock.t += 0.1
    assert breaker.before_call() is True


def test_released_probe_lets_the_next_call_probe_and_stale_outcomes_are_ignored():
    clock = FakeClock()
    breaker = CircuitBreaker(1, cooldown_s=5.0, clock=clock)
    breaker.record_failure()
    breaker.record_success()  # a call that started before the breaker opened: says nothing now
    assert breaker.state == "open"
    clock.t += 5.0
    assert breaker.before_call() is True
    breaker.release(True)  # the probe was cancelled: no verdict
    assert breaker.state == "half_open"
    assert breaker.before_call() is True  # the next call probes
    breaker.record_success(probe=False)  # not the probe's outcome
    assert breaker.state == "half_open"
    breaker.record_success(probe=True)
    assert breaker.state == "closed"


def test_recheck_refuses_a_queued_call_once_the_breaker_opened_but_never_the_probe():
    clock = FakeClock()
    breaker = CircuitBreaker(1, cooldown_s=5.0, clock=clock)
    queued = breaker.before_call()
    breaker.recheck(queued)  # still closed: fine
    breaker.record_failure()
    with pytest.raises(CircuitOpen, match="queued"):
        breaker.recheck(queued)
    clock.t += 5.0
    probe = breaker.before_call()
    breaker.recheck(probe)  # the probe goes on
    with pytest.raises(CircuitOpen):
        breaker.recheck(False)  # half-open: only the probe


def test_breaker_opens_on_failure_rate_over_a_full_window():
    breaker = CircuitBreaker(100, failure_rate=0.5, window=4, clock=FakeClock())
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state == "closed"  # 2 of 3, but the window is not full yet
    breaker.record_success()
    assert breaker.state == "closed"  # a success never opens it
    breaker.record_failure()  # last 4: S F S F = 50 %
    assert breaker.state == "open"


def test_breaker_refuses_nonsense_settings():
    with pytest.raises(ValueError, match="failure_rate"):
        CircuitBreaker(3, failure_rate=0)
    with pytest.raises(ValueError, match="failures"):
        CircuitBreaker(0)


# ---------------------------------------------------------------------------------------------- per-endpoint guard
def test_guard_is_shared_per_base_url_and_model_and_follows_the_settings():
    a = EndpointConfig(base_url="https://api.example.com/v1/", model="m", requests_per_minute=60)
    b = EndpointConfig(base_url="https://api.example.com/v1", model="m", requests_per_minute=30, tokens_per_minute=9)
    other_model = EndpointConfig(base_url="https://api.example.com/v1", model="m2")
    ga = guard_for(a)
    assert ga.requests.capacity == 60 and ga.tokens is None and ga.breaker is not None
    ga.requests.try_acquire(5)
    gb = guard_for(b)
    assert gb is ga  # same endpoint: one window for every client of it
    assert ga.requests.capacity == 30 and ga.requests.used() == 5 and ga.tokens.capacity == 9
    assert guard_for(other_model) is not ga
    off = guard_for(EndpointConfig(base_url="https://x.example/v1", model="m", breaker_failures=None))
    assert off.breaker is None and off.requests is None
    snap = ga.snapshot()
    assert snap["requests"]["used"] == 5 and snap["breaker"]["state"] == "closed"


def test_a_distributed_run_splits_the_per_minute_limits_across_its_processes(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    guard = guard_for(EndpointConfig(base_url="https://api.example.com/v1", model="m", requests_per_minute=60,
                                     tokens_per_minute=100_000))
    assert (guard.requests.capacity, guard.tokens.capacity) == (15, 25_000)  # 4 ranks together: 60 and 100k
    tiny = guard_for(EndpointConfig(base_url="https://api.example.com/v1", model="m2", requests_per_minute=2))
    assert tiny.requests.capacity == 1  # never below one request, or nothing could ever be sent
    monkeypatch.delenv("WORLD_SIZE")
    assert guard_for(EndpointConfig(base_url="https://api.example.com/v1", model="m", requests_per_minute=60,
                                    tokens_per_minute=100_000)).requests.capacity == 60


# -------------------------------------------------------------------------------------------------------- deadline
def test_deadline_returns_results_and_markers_and_cancels_stragglers():
    cancelled: list[int] = []

    async def work(i: int, seconds: float) -> int:
        try:
            await asyncio.sleep(seconds)
            return i * 10
        except asyncio.CancelledError:
            cancelled.append(i)
            raise

    async def go():
        return await gather_with_deadline([work(0, 0.01), work(1, 30), work(2, 0.02), work(3, 30)], 0.3)

    started = time.monotonic()
    out = asyncio.run(go())
    assert out[0] == 0 and out[2] == 20
    assert isinstance(out[1], DeadlineExceeded) and isinstance(out[3], DeadlineExceeded)
    assert (out[1].index, out[3].index, out[1].deadline_s) == (1, 3, 0.3)
    assert "0.3 s deadline" in str(out[1])
    assert sorted(cancelled) == [1, 3]  # cancelled and cleaned up before the helper returned
    assert time.monotonic() - started < 10  # generous: nobody waited for the 30 s stragglers


def test_deadline_none_waits_for_all_and_empty_input_is_empty():
    async def value(v):
        await asyncio.sleep(0.01)
        return v

    assert asyncio.run(gather_with_deadline([value(1), value(2)], None)) == [1, 2]
    assert asyncio.run(gather_with_deadline([], 1.0)) == []
    with pytest.raises(ValueError, match="deadline_s"):
        asyncio.run(gather_with_deadline([value(1)], 0))


def test_deadline_exceptions_raise_or_are_returned():
    cancelled: list[str] = []

    async def boom():
        await asyncio.sleep(0.01)
        raise KeyError("judge")

    async def slow():
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append("slow")
            raise

    with pytest.raises(KeyError, match="judge"):
        asyncio.run(gather_with_deadline([slow(), boom()], 5.0))
    assert cancelled == ["slow"]  # the others were cancelled, as with asyncio.gather

    out = asyncio.run(gather_with_deadline([boom(), slow()], 0.2, return_exceptions=True))
    assert isinstance(out[0], KeyError) and isinstance(out[1], DeadlineExceeded)


def test_deadline_does_not_hang_on_a_straggler_that_ignores_cancellation():
    async def stubborn():
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            await asyncio.sleep(3)  # a slow cleanup (asyncio.run's own cancellation at shutdown ends it)
        return "late"

    async def go():
        started = time.monotonic()
        out = await gather_with_deadline([stubborn()], 0.1, cancel_grace_s=0.1)
        return out, time.monotonic() - started

    out, took = asyncio.run(go())  # (asyncio.run itself then waits for the stubborn task at shutdown)
    assert isinstance(out[0], DeadlineExceeded)
    assert took < 2.5  # the helper did not wait for the straggler's 3 s cleanup


# ---------------------------------------------------------------------------------------------------------- config
@pytest.mark.parametrize("fields,name,value", [
    ({"requests_per_minute": 0}, "requests_per_minute", "0"),
    ({"tokens_per_minute": -5}, "tokens_per_minute", "-5"),
    ({"usd_per_mtok_input": -1.0, "usd_per_mtok_output": 1.0}, "usd_per_mtok_input", "-1.0"),
    ({"usd_per_mtok_input": 1.0, "usd_per_mtok_output": float("nan")}, "usd_per_mtok_output", "nan"),
    ({"breaker_failures": 0}, "breaker_failures", "0"),
    ({"breaker_failure_rate": 1.5}, "breaker_failure_rate", "1.5"),
    ({"breaker_cooldown_s": 0}, "breaker_cooldown_s", "0"),
])
def test_endpoint_limit_fields_are_validated_with_name_and_value(fields, name, value):
    with pytest.raises(ValidationError) as info:
        EndpointConfig(**fields)
    text = str(info.value)
    assert name in text and value in text, text


def test_half_a_price_table_is_refused_naming_both_fields():
    with pytest.raises(ValidationError) as info:
        EndpointConfig(usd_per_mtok_input=3.0)
    text = str(info.value)
    assert "usd_per_mtok_input (3.0)" in text and "usd_per_mtok_output (None)" in text
    assert EndpointConfig(usd_per_mtok_input=0, usd_per_mtok_output=0).priced  # free is a price


@pytest.mark.parametrize("value", [0, -1.0, float("inf")])
def test_reward_deadline_must_be_positive_and_finite(value):
    with pytest.raises(ValidationError) as info:
        RunConfig(reward_deadline_s=value)
    assert "reward_deadline_s" in str(info.value)


def test_limit_fields_defaults_and_flat_notebook_parameters():
    default = EndpointConfig()
    assert (default.requests_per_minute, default.tokens_per_minute, default.priced) == (None, None, False)
    assert (default.breaker_failures, default.breaker_failure_rate, default.breaker_window,
            default.breaker_cooldown_s) == (5, 0.5, 20, 30.0)
    assert RunConfig().reward_deadline_s is None
    config = RunConfig.from_params(
        verifier_requests_per_minute=30, verifier_tokens_per_minute=40_000, verifier_usd_per_mtok_input=0.15,
        verifier_usd_per_mtok_output=0.6, reward_deadline_s=120,
    )
    assert config.verifier.requests_per_minute == 30 and config.verifier.priced
    assert config.teacher.requests_per_minute is None and config.reward_deadline_s == 120.0
    assert RunConfig.model_validate(config.model_dump()).verifier.tokens_per_minute == 40_000  # saved and loaded


def test_a_margin_keeps_each_charge_in_the_window_that_much_longer_and_endpoints_get_one():
    clock = FakeClock()
    limiter = RateLimiter(2, 60.0, margin_s=1.5, clock=clock, sleep=clock.sleep, max_poll_s=1e9)
    start = clock.t

    async def go():
        return [(await limiter.acquire()).t for _ in range(5)]

    grants = asyncio.run(go())
    # Requests charged a window + margin apart still arrive a full window apart when the earlier one was slowed.
    assert [g - start for g in grants] == pytest.approx([0.0, 0.0, 61.5, 61.5, 123.0])
    assert limiter.snapshot()["margin_s"] == 1.5
    with pytest.raises(ValueError, match="margin_s"):
        RateLimiter(1, margin_s=-1)
    guard = guard_for(EndpointConfig(base_url="https://api.example.com/v1", model="m", requests_per_minute=10))
    assert guard.requests.margin_s == limits.ARRIVAL_MARGIN_S > 0


def test_a_server_on_this_machine_gets_no_breaker_a_remote_one_does():
    from ropd_kit.config import EndpointConfig

    limits.reset_guards()
    local = limits.guard_for(EndpointConfig(base_url="http://127.0.0.1:8080/v1", model="m"))
    named = limits.guard_for(EndpointConfig(base_url="http://localhost:8080/v1", model="m"))
    remote = limits.guard_for(EndpointConfig(base_url="https://api.example.com/v1", model="m"))
    assert local.breaker is None and named.breaker is None  # busy, not down: never failed fast
    assert remote.breaker is not None and remote.breaker.failures == 5
    assert limits.guard_for(EndpointConfig(base_url="https://api.example.com/v1", model="n",
                                           breaker_failures=None)).breaker is None
    limits.reset_guards()
