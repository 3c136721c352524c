"""What keeps ROPD's judging inside a paid API's limits: requests/minute and tokens/minute, a circuit breaker per
endpoint, and the per-step reward deadline. The LLM edge (`llm.LLMClient`) applies the first three around every
chat call; the reward (`reward.py`) applies the deadline to a step's groups with `gather_with_deadline`.

In: an endpoint's settings (`config.EndpointConfig`: `requests_per_minute`, `tokens_per_minute`, `breaker_*`) and
the step's coroutines. Out: waits (never errors) from the limiters, `CircuitOpen` from an open breaker (the client
turns it into an `LLMError` of kind "circuit_open", counted like any other judge failure), and for the deadline one
result or one `DeadlineExceeded` marker per coroutine.

- `RateLimiter` is a sliding-window log: whatever was charged in the last `period_s` seconds is in the window, and a
  charge waits until it fits under `capacity`. So "N per minute" means no 60-second span ever holds more than N —
  the strict reading a provider's quota takes (a leaky/token bucket, such as aiolimiter's, lets up to 2N through in
  the first minute: a full bucket at once, then the refill). A charge can be settled afterwards to the amount
  really used (`Charge.settle`): tokens are charged as an estimate before the call and corrected from the
  response's usage, which refunds an over-estimate at once and counts an under-estimate against the window.
  It is thread-safe and bound to no event loop: one limiter serves every loop that the client runs on
  (`run_sync`'s, Jupyter's, TRL's reward thread). Waiters poll (at most `max_poll_s` apart, to notice refunds) and
  are served as capacity frees, not strictly first come first served. `margin_s` keeps each charge in the window
  that much longer than `period_s`: the provider counts arrivals, not our charges, and a request that waited for a
  connection (a first request's TCP/TLS set-up) arrives later than one sent on a warm connection one window after it,
  so without a margin two requests charged exactly `period_s` apart can arrive less than `period_s` apart
  (`make bench`'s rate_limit: 2N in the first window at the proxy with no margin, N with one). The per-endpoint
  limiters use `ARRIVAL_MARGIN_S`.
- `CircuitBreaker`: closed → open after `failures` consecutive failed calls, or when at least `failure_rate` of the
  last `window` calls failed; open → half-open once `cooldown_s` has passed, which lets one probe call through;
  the probe's success closes it, its failure opens it for another cool-down. Clock injectable for tests.
- `guard_for(endpoint)`: the limiters and breaker of one endpoint (base_url + model), shared by every client of
  that endpoint in the process. The settings of the most recently built client apply. In a distributed run
  (`WORLD_SIZE` processes, e.g. `accelerate launch`) each process gets an equal share of the per-minute limits (at
  least one request per minute), so that together they stay within them; the breaker stays per process.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable, TypeVar
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

T = TypeVar("T")

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[Any]]

BREAKER_STATES = ("closed", "open", "half_open")


# ------------------------------------------------------------------------------------------------------ rate limits
class Charge:
    """One charge in a `RateLimiter`'s window; `settle(actual)` replaces the charged amount by what was used."""

    __slots__ = ("limiter", "t", "amount")

    def __init__(self, limiter: "RateLimiter | None", t: float, amount: float) -> None:
        self.limiter = limiter
        self.t = t
        self.amount = amount

    def settle(self, actual: float) -> float:
        """Correct this charge to `actual` (refund when lower, charge the rest when higher). Returns the change."""
        if self.limiter is None:
            return 0.0
        return self.limiter._settle(self, max(0.0, float(actual)))

    def __repr__(self) -> str:
        return f"Charge(t={self.t:.3f}, amount={self.amount:g})"


class RateLimiter:
    """At most `capacity` units charged in any window of `period_s` seconds (see the module docstring)."""

    def __init__(
        self,
        capacity: float,
        period_s: float = 60.0,
        *,
        margin_s: float = 0.0,
        name: str = "",
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        max_poll_s: float = 1.0,
    ) -> None:
        if not capacity > 0:
            raise ValueError(f"RateLimiter capacity must be > 0, got {capacity!r}")
        if not period_s > 0:
            raise ValueError(f"RateLimiter period_s must be > 0, got {period_s!r}")
        if not margin_s >= 0:
            raise ValueError(f"RateLimiter margin_s must be >= 0, got {margin_s!r}")
        self.capacity = float(capacity)
        self.period_s = float(period_s)
        self.margin_s = float(margin_s)
        self.name = name
        self.clock = clock
        self.sleep = sleep
        self.max_poll_s = max_poll_s
        self._lock = threading.Lock()
        self._entries: deque[Charge] = deque()
        self._used = 0.0
        self._clamped_warned = False

    def _expire(self, now: float) -> None:
        horizon = now - self.period_s - self.margin_s
        while self._entries and self._entries[0].t <= horizon:
            self._used -= self._entries.popleft().amount
        if not self._entries:
            self._used = 0.0  # no float residue once the window is empty

    def _wait_for(self, now: float, amount: float) -> float:
        """Seconds until enough of the window expires for `amount` to fit (the lock is held)."""
        excess = self._used + amount - self.capacity
        for entry in self._entries:
            excess -= entry.amount
            if excess <= 1e-9:
                return entry.t + self.period_s + self.margin_s - now
        return self.period_s  # only reachable through float residue; a later check settles it

    def used(self) -> float:
        """What the window holds now."""
        with self._lock:
            self._expire(self.clock())
            return self._used

    def try_acquire(self, amount: float = 1.0) -> Charge | None:
        """Charge `amount` if it fits now, else None (never waits)."""
        amount = self._clamp(amount)
        with self._lock:
            now = self.clock()
            self._expire(now)
            if amount <= 0:
                return Charge(None, now, 0.0)
            if self._used + amount <= self.capacity + 1e-9:
                charge = Charge(self, now, amount)
                self._entries.append(charge)
                self._used += amount
                return charge
        return None

    async def acquire(self, amount: float = 1.0) -> Charge:
        """Wait until `amount` fits in the window, then charge it. An amount above `capacity` is charged as
        `capacity` (it could never fit otherwise) and waits for an empty window."""
        while True:
            charge = self.try_acquire(amount)
            if charge is not None:
                return charge
            amount_c = self._clamp(amount)
            with self._lock:
                now = self.clock()
                self._expire(now)
                wait = self._wait_for(now, amount_c)
            await self.sleep(min(max(wait, 1e-4), self.max_poll_s))

    def _clamp(self, amount: float) -> float:
        amount = float(amount)
        if amount > self.capacity:
            if not self._clamped_warned:
                self._clamped_warned = True
                log.warning("%s: one charge of %g exceeds the limit of %g per %g s; charged as the whole window",
                            self.name or "rate limiter", amount, self.capacity, self.period_s)
            return self.capacity
        return amount

    def _settle(self, charge: Charge, actual: float) -> float:
        with self._lock:
            delta = actual - charge.amount
            if any(entry is charge for entry in self._entries):  # still in the window (else it has left already)
                self._used += delta
            charge.amount = actual
            return delta

    def snapshot(self) -> dict[str, float]:
        return {"capacity": self.capacity, "period_s": self.period_s, "margin_s": self.margin_s, "used": self.used()}

    def __repr__(self) -> str:
        return f"RateLimiter({self.name or 'unnamed'}: {self.used():g}/{self.capacity:g} per {self.period_s:g} s)"


def estimate_prompt_tokens(messages: list[dict], *, extra_chars: int = 0) -> int:
    """A cheap upper-leaning estimate of a chat prompt's tokens: characters / 4 (English and code average about 4
    characters per token with BPE vocabularies), plus the chat template's few tokens per message."""
    chars = extra_chars
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):  # content parts: count the text ones
            chars += sum(len(part.get("text") or "") for part in content if isinstance(part, dict))
    return math.ceil(chars / 4) + 4 * len(messages) + 3


def estimate_tokens(messages: list[dict], max_tokens: int, *, extra_chars: int = 0) -> int:
    """What a call may use against a tokens/minute budget before its answer is known: the prompt estimate plus
    max_tokens (the way providers count a request against the limit before answering)."""
    return estimate_prompt_tokens(messages, extra_chars=extra_chars) + max(0, int(max_tokens))


# -------------------------------------------------------------------------------------------------- circuit breaker
class CircuitOpen(RuntimeError):
    """The endpoint's breaker is open (or half-open with its probe in flight): the call is refused at once."""

    def __init__(self, message: str, *, retry_in_s: float) -> None:
        super().__init__(message)
        self.retry_in_s = retry_in_s


class CircuitBreaker:
    """Closed / open / half-open, per endpoint. Call `before_call()` (raises `CircuitOpen`, or returns whether the
    call is the half-open probe), then exactly one of `record_success(probe)`, `record_failure(probe)` or
    `release(probe)` (no verdict on the endpoint: cancelled, or the caller's own fault)."""

    def __init__(
        self,
        failures: int = 5,
        *,
        failure_rate: float = 0.5,
        window: int = 20,
        cooldown_s: float = 30.0,
        name: str = "",
        clock: Clock = time.monotonic,
    ) -> None:
        self.name = name
        self.clock = clock
        self._lock = threading.Lock()
        self._state = "closed"
        self._consecutive = 0
        self._outcomes: deque[bool] = deque()  # True = failure, newest last
        self._opened_at = 0.0
        self._probe_in_flight = False
        self.times_opened = 0
        self.refused = 0
        self.configure(failures=failures, failure_rate=failure_rate, window=window, cooldown_s=cooldown_s)

    def configure(self, *, failures: int, failure_rate: float, window: int, cooldown_s: float) -> None:
        if failures < 1 or window < 1 or not 0 < failure_rate <= 1 or not cooldown_s > 0:
            raise ValueError(
                f"breaker settings out of range: failures={failures!r} (>= 1), failure_rate={failure_rate!r} "
                f"(0 < x <= 1), window={window!r} (>= 1), cooldown_s={cooldown_s!r} (> 0)"
            )
        with self._lock:
            self.failures, self.failure_rate, self.window, self.cooldown_s = failures, failure_rate, window, cooldown_s
            while len(self._outcomes) > window:
                self._outcomes.popleft()

    @property
    def state(self) -> str:
        with self._lock:
            return self._current(self.clock())

    def _current(self, now: float) -> str:
        if self._state == "open" and now - self._opened_at >= self.cooldown_s:
            self._state = "half_open"
            self._probe_in_flight = False
        return self._state

    def before_call(self) -> bool:
        """Let a call through (returns True when it is the half-open probe) or raise `CircuitOpen`."""
        with self._lock:
            now = self.clock()
            state = self._current(now)
            if state == "closed":
                return False
            if state == "half_open" and not self._probe_in_flight:
                self._probe_in_flight = True
                return True
            self.refused += 1
            if state == "open":
                retry_in = max(0.0, self._opened_at + self.cooldown_s - now)
                why = f"open after repeated failures; a probe call is let through in {retry_in:.1f} s"
            else:
                retry_in = 0.0
                why = "half-open; its probe call is in flight"
            raise CircuitOpen(f"circuit breaker of {self.name or 'the endpoint'} is {why}", retry_in_s=retry_in)

    def recheck(self, probe: bool = False) -> None:
        """For a call that passed `before_call` and then waited (for a concurrency slot, a rate window): raise
        `CircuitOpen` if the breaker has opened meanwhile, so queued calls fail fast too. The probe always passes."""
        with self._lock:
            now = self.clock()
            if probe or self._current(now) == "closed":
                return
            self.refused += 1
            retry_in = max(0.0, self._opened_at + self.cooldown_s - now) if self._state == "open" else 0.0
        raise CircuitOpen(f"circuit breaker of {self.name or 'the endpoint'} opened while this call was queued",
                          retry_in_s=retry_in)

    def record_success(self, probe: bool = False) -> None:
        with self._lock:
            state = self._current(self.clock())
            if state == "closed":
                self._consecutive = 0
                self._push(False)
            elif state == "half_open" and probe:
                self._state = "closed"
                self._probe_in_flight = False
                self._consecutive = 0
                self._outcomes.clear()
                log.info("%s: circuit breaker closed (probe succeeded)", self.name or "endpoint")
            # open, or half-open with someone else's probe: a call started before the breaker opened says nothing

    def record_failure(self, probe: bool = False) -> None:
        with self._lock:
            now = self.clock()
            state = self._current(now)
            if state == "closed":
                self._consecutive += 1
                self._push(True)
                rate_full = len(self._outcomes) >= self.window
                rate = sum(self._outcomes) / len(self._outcomes)
                if self._consecutive >= self.failures or (rate_full and rate >= self.failure_rate):
                    self._open(now, f"{self._consecutive} consecutive failures, {rate:.0%} of the last "
                                    f"{len(self._outcomes)} calls failed")
            elif state == "half_open" and probe:
                self._open(now, "the half-open probe failed")

    def release(self, probe: bool = False) -> None:
        with self._lock:
            if probe and self._current(self.clock()) == "half_open":
                self._probe_in_flight = False  # the next call becomes the probe

    def _push(self, failed: bool) -> None:
        self._outcomes.append(failed)
        while len(self._outcomes) > self.window:
            self._outcomes.popleft()

    def _open(self, now: float, why: str) -> None:
        self._state = "open"
        self._opened_at = now
        self._probe_in_flight = False
        self.times_opened += 1
        log.warning("%s: circuit breaker opened (%s); calls fail fast for %g s", self.name or "endpoint", why,
                    self.cooldown_s)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            state = self._current(self.clock())
            return {
                "state": state,
                "consecutive_failures": self._consecutive,
                "recent_failure_rate": sum(self._outcomes) / len(self._outcomes) if self._outcomes else 0.0,
                "times_opened": self.times_opened,
                "refused": self.refused,
            }

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name or 'unnamed'}: {self.state})"


# ------------------------------------------------------------------------------------------- per-endpoint registry
@dataclass
class EndpointGuard:
    """The rate limiters and breaker of one endpoint; None where the endpoint sets no such limit."""

    key: tuple[str, str]
    requests: RateLimiter | None = None
    tokens: RateLimiter | None = None
    breaker: CircuitBreaker | None = None
    _settings: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return f"{self.key[0]} (model {self.key[1]!r})"

    def configure(self, endpoint: Any) -> None:
        """Apply an endpoint's settings, keeping what is already in the windows and the breaker's state."""
        settings = {
            name: getattr(endpoint, name, None)
            for name in ("requests_per_minute", "tokens_per_minute", "breaker_failures", "breaker_failure_rate",
                         "breaker_window", "breaker_cooldown_s")
        }
        if self._settings and settings != self._settings:
            log.warning("%s: limits changed from %s to %s (the most recently built client's settings apply)",
                        self.name, self._settings, settings)
        self._settings = settings
        share = process_count()
        self.requests = _limiter(self.requests, settings["requests_per_minute"], share, f"{self.name} requests/minute")
        self.tokens = _limiter(self.tokens, settings["tokens_per_minute"], share, f"{self.name} tokens/minute")
        if settings["breaker_failures"] is None or on_this_machine(self.key[0]):
            # A server on this machine (the offline default's llama-server) that times out is busy, not down: failing
            # fast there would turn a slow step into lost groups, and a dead one refuses connections at once anyway.
            self.breaker = None
        else:
            options = dict(
                failures=settings["breaker_failures"],
                failure_rate=settings["breaker_failure_rate"] if settings["breaker_failure_rate"] is not None else 0.5,
                window=settings["breaker_window"] if settings["breaker_window"] is not None else 20,
                cooldown_s=settings["breaker_cooldown_s"] if settings["breaker_cooldown_s"] is not None else 30.0,
            )
            if self.breaker is None:
                self.breaker = CircuitBreaker(name=self.name, **options)
            else:
                self.breaker.configure(**options)

    def snapshot(self) -> dict[str, Any]:
        """For a notebook or a log line: window use and breaker state."""
        return {
            "endpoint": self.key[0],
            "model": self.key[1],
            "requests": self.requests.snapshot() if self.requests else None,
            "tokens": self.tokens.snapshot() if self.tokens else None,
            "breaker": self.breaker.snapshot() if self.breaker else None,
        }


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0"})


def on_this_machine(base_url: str) -> bool:
    """Whether an endpoint's host is this machine's loopback name (no proxy reaches it, no breaker guards it)."""
    return (urlsplit(str(base_url)).hostname or "") in LOOPBACK_HOSTS


def process_count() -> int:
    """How many processes of one distributed run share each endpoint's limits: `WORLD_SIZE` (set by accelerate /
    torchrun for every rank, each of which judges its own groups), else 1."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


# Seconds each charge of an endpoint's per-minute windows outlives the minute (RateLimiter's `margin_s`): more than
# the spread of connection set-up and network delay between two requests, at a cost of under 2% of the rate.
ARRIVAL_MARGIN_S = 1.0


def _limiter(current: RateLimiter | None, per_minute: int | None, share: int, name: str) -> RateLimiter | None:
    """A minute window holding this process's share of `per_minute` (at least one unit, so a request still fits)."""
    if per_minute is None:
        return None
    capacity = max(per_minute / share, 1.0)
    if current is None:
        return RateLimiter(capacity, 60.0, margin_s=ARRIVAL_MARGIN_S, name=name)
    current.capacity = capacity  # the window's history stays
    return current


_GUARDS: dict[tuple[str, str], EndpointGuard] = {}
_GUARDS_LOCK = threading.Lock()


def endpoint_key(endpoint: Any) -> tuple[str, str]:
    return (str(endpoint.base_url).rstrip("/"), str(endpoint.model))


def guard_for(endpoint: Any) -> EndpointGuard:
    """The process-wide guard of `endpoint` (by base_url + model), configured from its settings."""
    key = endpoint_key(endpoint)
    with _GUARDS_LOCK:
        guard = _GUARDS.get(key)
        if guard is None:
            guard = _GUARDS[key] = EndpointGuard(key)
        guard.configure(endpoint)
        return guard


def reset_guards() -> None:
    """Forget every endpoint's windows and breaker (tests; a notebook that wants a clean slate)."""
    with _GUARDS_LOCK:
        _GUARDS.clear()


# ------------------------------------------------------------------------------------------------------- deadline
@dataclass(frozen=True)
class DeadlineExceeded:
    """Stands in for the result of an awaitable that had not finished when the deadline passed (it was cancelled)."""

    index: int
    deadline_s: float

    def __str__(self) -> str:
        return f"not finished within the {self.deadline_s:g} s deadline (cancelled)"


async def gather_with_deadline(
    aws: Iterable[Awaitable[T]],
    deadline_s: float | None,
    *,
    return_exceptions: bool = False,
    cancel_grace_s: float = 5.0,
) -> list[T | DeadlineExceeded | BaseException]:
    """Run awaitables concurrently; return, in order, each one's result or, for those still running `deadline_s`
    seconds after the start, a `DeadlineExceeded` marker (they are cancelled, and awaited for up to
    `cancel_grace_s` so that their cleanup runs before this returns).

    `deadline_s=None` waits for all. An exception raises at once, the others cancelled, as in `asyncio.gather`,
    unless `return_exceptions=True`, which puts it in the list instead. Cancelling this call cancels them all.

    >>> async def step(groups):                                   # doctest: +SKIP
    ...     out = await gather_with_deadline((judge(g) for g in groups), config.reward_deadline_s)
    ...     return [None if isinstance(r, DeadlineExceeded) else r for r in out]
    """
    if deadline_s is not None and not deadline_s > 0:
        for aw in aws:  # never started: close them so that Python does not warn about unawaited coroutines
            if asyncio.iscoroutine(aw):
                aw.close()
        raise ValueError(f"deadline_s must be > 0 or None, got {deadline_s!r}")
    tasks = [asyncio.ensure_future(aw) for aw in aws]
    if not tasks:
        return []
    try:
        done, pending = await asyncio.wait(
            tasks, timeout=deadline_s,
            return_when=asyncio.ALL_COMPLETED if return_exceptions else asyncio.FIRST_EXCEPTION,
        )
        if not return_exceptions:
            for task in tasks:  # the first failure in input order, like gather
                if task in done and not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # the finally block cancels the rest
    finally:
        stragglers = [t for t in tasks if not t.done()]
        for task in stragglers:
            task.cancel()
        if stragglers:
            _, still = await asyncio.wait(stragglers, timeout=cancel_grace_s)
            if still:
                log.warning("%d task(s) still running %g s after cancellation at the deadline", len(still),
                            cancel_grace_s)
    out: list[Any] = []
    for i, task in enumerate(tasks):
        if task in pending:
            out.append(DeadlineExceeded(i, float(deadline_s)))  # type: ignore[arg-type]
        elif task.cancelled():  # cancelled by someone else before the deadline: as asyncio.gather reports it
            if not return_exceptions:
                raise asyncio.CancelledError(f"awaitable {i} was cancelled")
            out.append(asyncio.CancelledError())
        elif task.exception() is not None:
            out.append(task.exception())
        else:
            out.append(task.result())
    return out
