"""The LLM edge of ROPD: one async OpenAI-compatible client per black-box role (teacher, rubricator, verifier,
and the student sampler), used by teacher references, rubric induction and blind verification.

In: chat messages plus sampling settings. Out: a `ChatResult` (text, token counts, finish reason, cached flag) or an
`LLMError` whose `.kind` says what went wrong after retries. Around every call:

- Retries on 429 / 5xx / timeouts / dropped connections are the `openai` client's own (exponential backoff with
  jitter, `Retry-After` honoured up to two minutes); `EndpointConfig.max_retries` sets how many. An empty completion
  is retried here, the same way, `empty_attempts` times in all.
- Every real HTTP request, internal retries included, is counted per role by an httpx event hook on the client's
  transport, so `UsageStats` shows what the endpoint actually saw.
- A persistent disk cache (`LLMCache`, diskcache) keyed by endpoint, model, messages, sampling settings and sample
  index: a repeated run makes zero HTTP requests. A reply the caller's parser rejects is stored too, with the
  rejection: the caller's retry quotes it, so only then does a re-run replay the whole retry chain instead of asking
  the endpoint again from the first rejected reply on. Failures and empty completions are never stored (there is no
  reply to replay), and neither is the API key nor any header.
- Structured output: JSON schema where the endpoint accepts it, else JSON mode, else plain text; the mode that works
  is remembered per client (and in the cache directory). Callers always parse the text themselves.
- Token log-probabilities on request (`top_logprobs=N`, the OpenAI `logprobs` / `top_logprobs` fields): each
  generated token with its N most likely alternatives comes back in `ChatResult.logprobs` and is cached with the
  reply; an endpoint that returns none gives `logprobs=None`, and the caller decides what to do without them.
- API limits (`ropd_kit.limits`, shared per endpoint = base_url + model by every client in the process):
  `requests_per_minute` is charged by the same transport hook, once per real HTTP request (retries included);
  `tokens_per_minute` is charged once per call before it is sent, as an estimate (prompt characters / 4 + a few
  tokens per message + max_tokens), and settled afterwards to the usage the endpoint reported over the call's
  attempts (an over-estimate is refunded at once; without reported usage the estimate stays). A failed call keeps
  its estimate. Cache hits charge nothing and never touch the breaker.
- A circuit breaker per endpoint: after `breaker_failures` consecutive failed calls (or a failure rate of
  `breaker_failure_rate` over the last `breaker_window`) calls fail at once with `LLMError(kind="circuit_open")`,
  counted like every other failure; after `breaker_cooldown_s` one probe call goes through and its outcome closes or
  reopens it. A 400-class answer proves the endpoint is up and counts as a success for the breaker.
- Money: with a price table on the endpoint (`usd_per_mtok_input` / `usd_per_mtok_output`) the tokens of real
  requests are turned into dollars per role (`usd` in `UsageStats` snapshots and deltas; None when unpriced).

Sync code (scripts, notebook cells) runs coroutines with `run_sync`, which also works inside Jupyter's running loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import hashlib
import json
import logging
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, TypeVar
from urllib.parse import urlsplit

from . import limits
from .config import ConfigError, EndpointConfig, RunConfig, cache_root

log = logging.getLogger(__name__)

T = TypeVar("T")

FAILURE_KINDS = ("rate_limit", "server", "timeout", "connection", "bad_request", "empty", "auth", "circuit_open")
# Failure kinds that say the endpoint itself is unwell: they count against its circuit breaker.
BREAKER_KINDS = frozenset({"rate_limit", "server", "timeout", "connection", "empty", "auth"})
COUNTERS = ("calls", "http_requests", "cache_hits", "retries", "failures", "prompt_tokens", "completion_tokens",
            "cached_prompt_tokens", "cached_completion_tokens", "reused_prompt_tokens")
ROLES = ("teacher", "rubricator", "verifier", "student")
STRUCTURED_MODES = ("json_schema", "json_object", "none")
# Finish reasons whose text is a complete answer to the request (a "length" cut is still what the model wrote).
CACHEABLE_FINISH = ("stop", "length")


# --------------------------------------------------------------------------------------------------- errors/results
class LLMError(RuntimeError):
    """A chat call that failed after its retries. `kind` is one of FAILURE_KINDS; the message never holds a key."""

    def __init__(
        self,
        message: str,
        *,
        kind: str,
        role: str,
        base_url: str,
        status: int | None = None,
        model: str | None = None,
        attempts: int | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.role = role
        self.base_url = base_url
        self.status = status
        self.model = model
        self.attempts = attempts

    def __reduce__(self):  # keyword-only arguments need this to survive pickling (e.g. across processes)
        return (_rebuild_llm_error, (str(self), self.kind, self.role, self.base_url, self.status, self.model,
                                     self.attempts))


def _rebuild_llm_error(message, kind, role, base_url, status, model, attempts) -> LLMError:
    return LLMError(message, kind=kind, role=role, base_url=base_url, status=status, model=model, attempts=attempts)


@dataclass
class ChatResult:
    """One completion. `logprobs`: when asked for (`chat(top_logprobs=N)`) and the endpoint returned them, one entry
    per generated token, `{"token": str, "logprob": float, "top": [[token, logprob], ...]}` (the N most likely
    tokens at that position, most likely first); None otherwise. `reused_prompt_tokens`: of `prompt_tokens`, how
    many the endpoint served from its own prompt cache (OpenAI `prompt_tokens_details.cached_tokens`, llama-server
    the same), None when it does not say or the reply came from our disk cache."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None
    cached: bool
    logprobs: list[dict] | None = None
    reused_prompt_tokens: int | None = None

    @property
    def truncated(self) -> bool:
        """The model hit max_tokens: the text may be cut mid-answer."""
        return self.finish_reason == "length"


# ------------------------------------------------------------------------------------------------------------- usage
def _zero() -> dict[str, Any]:
    row: dict[str, Any] = {name: 0 for name in COUNTERS}
    row["failures_by_kind"] = {}
    row["usd"] = None  # unpriced until a client with a price table registers or records
    return row


def token_cost_usd(
    prompt_tokens: int, completion_tokens: int, usd_per_mtok_input: float | None, usd_per_mtok_output: float | None
) -> float | None:
    """Dollars for a token count at a price table ($ per million input / output tokens); None when unpriced."""
    if usd_per_mtok_input is None or usd_per_mtok_output is None:
        return None
    return (prompt_tokens * usd_per_mtok_input + completion_tokens * usd_per_mtok_output) / 1e6


def _add_usd(a: float | None, b: float | None) -> float | None:
    return a if b is None else (b if a is None else a + b)


class UsageStats:
    """Per-role counters, safe to update from several threads and event loops at once.

    calls: logical `chat` calls (cache hits included) · http_requests: real requests sent, retries included ·
    cache_hits · retries: requests beyond the first within one call · failures: calls that raised LLMError (also
    by kind) · prompt_tokens / completion_tokens: as reported by the endpoint for real requests (not cache hits) ·
    cached_prompt_tokens / cached_completion_tokens: what the replies answered from the cache cost when they were
    made (so a replayed pass can still say what its judging costs) · reused_prompt_tokens: of prompt_tokens, those
    the endpoint said it served from its own prompt cache (APIs bill them at a discount; llama-server skips them) ·
    usd: those tokens at the endpoint's prices (a float; None for a role whose endpoint has no price table).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[str, dict[str, Any]] = {}

    def register(self, role: str, *, priced: bool = False) -> None:
        """Make `role` appear (with zeros) in snapshots before it has done anything; `priced`: its usd starts at 0.0
        instead of None (unpriced)."""
        with self._lock:
            row = self._rows.setdefault(role, _zero())
            if priced and row["usd"] is None:
                row["usd"] = 0.0

    def record(self, role: str, **increments: int) -> None:
        unknown = set(increments) - set(COUNTERS)
        if unknown:
            raise ValueError(f"unknown usage counter(s) {sorted(unknown)}; known: {COUNTERS}")
        with self._lock:
            row = self._rows.setdefault(role, _zero())
            for name, value in increments.items():
                row[name] += int(value)

    def record_call(self, role: str) -> None:
        self.record(role, calls=1)

    def record_http_request(self, role: str) -> None:
        self.record(role, http_requests=1)

    def record_retry(self, role: str) -> None:
        self.record(role, retries=1)

    def record_cache_hit(self, role: str, prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
        self.record(role, cache_hits=1, cached_prompt_tokens=prompt_tokens, cached_completion_tokens=completion_tokens)

    def record_tokens(
        self, role: str, prompt_tokens: int, completion_tokens: int, usd: float | None = None, reused: int = 0
    ) -> None:
        """Tokens of one real request (`reused`: of the prompt's, those served from the endpoint's prompt cache), and
        what they cost (`token_cost_usd`; None when unpriced)."""
        with self._lock:
            row = self._rows.setdefault(role, _zero())
            row["prompt_tokens"] += int(prompt_tokens)
            row["completion_tokens"] += int(completion_tokens)
            row["reused_prompt_tokens"] += int(reused)
            row["usd"] = _add_usd(row["usd"], usd)

    def record_failure(self, role: str, kind: str) -> None:
        with self._lock:
            row = self._rows.setdefault(role, _zero())
            row["failures"] += 1
            row["failures_by_kind"][kind] = row["failures_by_kind"].get(kind, 0) + 1

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """{role: {counter: int, ..., "failures_by_kind": {kind: int}, "usd": float | None}} — a deep copy,
        JSON-serialisable."""
        with self._lock:
            return {
                role: {**row, "failures_by_kind": dict(row["failures_by_kind"])} for role, row in self._rows.items()
            }

    def totals(self, snapshot: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
        """The counters summed over roles (of `snapshot`, or of now)."""
        snap = self.snapshot() if snapshot is None else snapshot
        return _sum_rows(snap.values())

    def since(self, before: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """What happened after `before` (an earlier `snapshot()`), per role."""
        return usage_delta(before, self.snapshot())

    def as_records(self, snapshot: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """One flat record per role (`pandas.DataFrame(stats.as_records())`), failures split into failures_<kind>."""
        snap = self.snapshot() if snapshot is None else snapshot
        return [_flat(role, row) for role, row in snap.items()]

    def reset(self) -> None:
        with self._lock:
            for role in self._rows:
                self._rows[role] = _zero()

    def __repr__(self) -> str:
        t = self.totals()
        return f"UsageStats(roles={sorted(self._rows)}, calls={t['calls']}, http_requests={t['http_requests']})"


def _sum_rows(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Counters summed; usd summed over the priced rows (None when none is priced)."""
    total = _zero()
    for row in rows:
        for name in COUNTERS:
            total[name] += row.get(name, 0)
        total["usd"] = _add_usd(total["usd"], row.get("usd"))
        for kind, n in row.get("failures_by_kind", {}).items():
            total["failures_by_kind"][kind] = total["failures_by_kind"].get(kind, 0) + n
    return total


def _flat(role: str, row: dict[str, Any]) -> dict[str, Any]:
    record: dict[str, Any] = {"role": role, **{name: row.get(name, 0) for name in COUNTERS}, "usd": row.get("usd")}
    by_kind = row.get("failures_by_kind", {})
    for kind in FAILURE_KINDS:
        record[f"failures_{kind}"] = by_kind.get(kind, 0)
    return record


def sum_usage(parts: Iterable[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per-role snapshots or deltas of several clients (e.g. one per training process) added up, role by role."""
    parts = list(parts)
    roles = list(dict.fromkeys(role for part in parts for role in part))
    return {role: _sum_rows(part[role] for part in parts if role in part) for role in roles}


def total_usd(usage: dict[str, dict[str, Any]]) -> float | None:
    """Dollars over the roles of a snapshot or delta: the priced roles' sum, None when no role is priced (so that
    "no price table" never reads as "free")."""
    return _sum_rows(usage.values())["usd"]


def usage_delta(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per-role difference of two snapshots (after - before); roles new in `after` count from zero. usd is None
    where `after` is unpriced."""
    out: dict[str, dict[str, Any]] = {}
    for role, row in after.items():
        prev = before.get(role, _zero())
        diff: dict[str, Any] = {name: row.get(name, 0) - prev.get(name, 0) for name in COUNTERS}
        kinds = set(row.get("failures_by_kind", {})) | set(prev.get("failures_by_kind", {}))
        diff["failures_by_kind"] = {
            k: row.get("failures_by_kind", {}).get(k, 0) - prev.get("failures_by_kind", {}).get(k, 0) for k in kinds
        }
        diff["failures_by_kind"] = {k: v for k, v in diff["failures_by_kind"].items() if v}
        usd_after, usd_before = row.get("usd"), prev.get("usd")
        diff["usd"] = None if usd_after is None else usd_after - (usd_before or 0.0)
        out[role] = diff
    return out


# ------------------------------------------------------------------------------------------------------------- cache
def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def cache_identity(base_url: str) -> str:
    """The endpoint as the cache sees it. A loopback server gets a fresh port on every start, so loopback URLs
    collapse to "local" + path: the served model name (part of the key) is what tells local servers apart."""
    parts = urlsplit(base_url)
    if limits.on_this_machine(base_url):
        return "local" + parts.path.rstrip("/")
    return base_url.rstrip("/")


class LLMCache:
    """Completed chat responses on disk (diskcache: SQLite, safe across threads and processes).

    Values are {text, prompt_tokens, completion_tokens, finish_reason, rejected, logprobs}; nothing else (no key, no
    headers). `rejected` is None, or why the caller's parser refused the reply (kept so that a re-run replays the
    same retry chain); `logprobs` is `ChatResult.logprobs` (None unless they were asked for and returned). Only
    complete completions are stored, non-empty or carrying log-probabilities (a one-token reply may be a blank
    whose alternatives are what was asked for) — `LLMClient` never calls `put` for a failure.
    """

    def __init__(self, directory: str | Path) -> None:
        import diskcache

        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._cache = diskcache.Cache(str(self.directory))

    @staticmethod
    def key(
        *,
        base_url: str,
        model: str,
        messages: list[dict],
        temperature: float,
        top_p: float,
        max_tokens: int,
        sample_index: int,
        seed: int | None,
        json_schema: dict | None,
        mode: str | None,
        top_logprobs: int | None = None,
    ) -> str:
        payload = {
            "base_url": cache_identity(base_url),
            "model": model,
            "messages": messages,
            "temperature": float(temperature),
            "top_p": float(top_p),
            "max_tokens": int(max_tokens),
            "sample_index": int(sample_index),
            "seed": seed,
            "json_schema": json_schema,
            "mode": mode,
        }
        if top_logprobs is not None:  # only then: the keys of every other request stay what they were
            payload["top_logprobs"] = int(top_logprobs)
        return "chat:" + hashlib.sha256(canonical_json(payload).encode()).hexdigest()

    def get(self, key: str) -> dict | None:
        value = self._cache.get(key)
        return value if isinstance(value, dict) else None

    def put(self, key: str, value: dict) -> None:
        if not value.get("text", "").strip() and not value.get("logprobs"):
            raise ValueError("LLMCache stores only non-empty completions (or ones with log-probabilities)")
        stored = {name: value.get(name)
                  for name in ("text", "prompt_tokens", "completion_tokens", "finish_reason", "rejected", "logprobs")}
        self._cache.set(key, stored)

    # The structured-output mode an endpoint accepts, so that a new process does not re-probe it.
    @staticmethod
    def _mode_key(base_url: str, model: str) -> str:
        return "mode:" + hashlib.sha256(canonical_json([cache_identity(base_url), model]).encode()).hexdigest()

    def get_mode(self, base_url: str, model: str) -> str | None:
        mode = self._cache.get(self._mode_key(base_url, model))
        return mode if mode in STRUCTURED_MODES else None

    def set_mode(self, base_url: str, model: str, mode: str) -> None:
        self._cache.set(self._mode_key(base_url, model), mode)

    def __len__(self) -> int:
        return sum(1 for k in self._cache.iterkeys() if isinstance(k, str) and k.startswith("chat:"))

    def clear(self) -> None:
        self._cache.clear()

    def close(self) -> None:
        self._cache.close()

    def __repr__(self) -> str:
        return f"LLMCache({str(self.directory)!r})"


# ------------------------------------------------------------------------------------------------------------ client
def derive_seed(seed: int | None, sample_index: int) -> int | None:
    """The request seed: none for a plain call, else a stable 31-bit number per (seed, sample_index), so K samples
    at temperature > 0 differ from each other and a rerun reproduces them."""
    if seed is None and sample_index == 0:
        return None
    digest = hashlib.sha256(f"{0 if seed is None else seed}:{sample_index}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


# Requests made so far by the chat call running in this context; the transport hook reads it to tell a first
# request from a retry (the openai client's own retries are invisible otherwise).
_CALL_REQUESTS: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("ropd_llm_call", default=None)


@dataclass
class _LoopState:
    openai: Any
    semaphore: asyncio.Semaphore
    sequences: asyncio.Semaphore


class LLMClient:
    """Chat completions for one role against one endpoint.

    The endpoint must be resolved (a real URL, not "local": see `serve.local_endpoints`). The API key is read from
    the environment variable the endpoint names, once, and lives only inside the openai client object.
    """

    def __init__(
        self,
        endpoint: EndpointConfig,
        role: str,
        cache: LLMCache | None = None,
        stats: UsageStats | None = None,
        *,
        empty_attempts: int = 2,
    ) -> None:
        import openai

        if endpoint.is_local:
            raise ConfigError(
                f"{role} endpoint base_url is 'local': start the server first "
                "(`with serve.local_endpoints(config) as config: ...`) and build clients from the resolved config"
            )
        if empty_attempts < 1:
            raise ValueError(f"empty_attempts must be >= 1, got {empty_attempts}")
        self.endpoint = endpoint
        self.role = role
        self.cache = cache
        self.stats = stats if stats is not None else UsageStats()
        self.stats.register(role, priced=endpoint.priced)
        # Rate limits and circuit breaker of this endpoint, shared with every other client of it in the process.
        self.guard = limits.guard_for(endpoint)
        self.empty_attempts = empty_attempts
        self._structured_mode: str | None = None
        self._token_param = "max_tokens"
        self._lock = threading.Lock()
        self._states: dict[asyncio.AbstractEventLoop, _LoopState] = {}
        # The one place the key lives: the template client; per-loop clients are copies of it.
        self._template = openai.AsyncOpenAI(
            api_key=endpoint.api_key(),
            base_url=endpoint.base_url,
            timeout=endpoint.timeout_s,
            max_retries=endpoint.max_retries,
            http_client=self._new_http_client(),
        )
        self._template_used = False

    def __repr__(self) -> str:
        return f"LLMClient(role={self.role!r}, base_url={self.endpoint.base_url!r}, model={self.endpoint.model!r})"

    # -- plumbing ---------------------------------------------------------------------------------------------------
    def _new_http_client(self):
        import openai

        # DefaultAsyncHttpxClient keeps the SDK's own timeout/limit defaults whatever httpx flavour it is built on.
        return openai.DefaultAsyncHttpxClient(
            event_hooks={"request": [self._on_request]}, trust_env=trusts_env(self.endpoint.base_url)
        )

    async def _on_request(self, request) -> None:
        # Every real request, retries included, waits for the endpoint's requests/minute window first.
        if self.guard.requests is not None:
            await self.guard.requests.acquire(1)
        self.stats.record_http_request(self.role)
        box = _CALL_REQUESTS.get()
        if box is not None:
            if box[0] > 0:
                self.stats.record_retry(self.role)
            box[0] += 1

    def _state(self) -> _LoopState:
        """The openai client and semaphore of the running loop (asyncio objects and pooled connections are bound to
        the loop that made them, and `run_sync` / Jupyter / TRL may each run a different one)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            for other in [lp for lp in self._states if lp.is_closed()]:
                del self._states[other]
            state = self._states.get(loop)
            if state is None:
                if not self._template_used:
                    client, self._template_used = self._template, True
                else:
                    client = self._template.copy(http_client=self._new_http_client())
                state = _LoopState(client, asyncio.Semaphore(self.endpoint.max_concurrency),
                                   asyncio.Semaphore(self.endpoint.max_concurrency))
                self._states[loop] = state
            return state

    def sequence(self) -> asyncio.Semaphore:
        """Held around requests that share a long prefix and follow one another (`async with client.sequence():`).

        A server with a prompt cache per slot (llama-server) finds the prefix only if the next request of the
        sequence gets the slot the last one left. With more sequences in flight than the endpoint takes requests at
        once, each request of a sequence would queue behind those of the others and land on a slot another prefix
        has since overwritten, so every request would pay for its whole prompt again. At most `max_concurrency`
        sequences run at once; requests outside any sequence are not held back.
        """
        return self._state().sequences

    def _sanitize(self, text: str) -> str:
        key = getattr(self._template, "api_key", None)
        if isinstance(key, str) and key and key != "not-needed":
            text = text.replace(key, "***")
        return text

    def _error(self, kind: str, detail: str, *, status: int | None = None, attempts: int | None = None) -> LLMError:
        where = f"{self.role} call to {self.endpoint.base_url} (model {self.endpoint.model!r})"
        what = f"{kind}" + (f", HTTP {status}" if status is not None else "")
        tries = f" after {attempts} request(s)" if attempts else ""
        message = self._sanitize(f"{where} failed ({what}){tries}: {detail[:500]}")
        return LLMError(
            message, kind=kind, role=self.role, base_url=self.endpoint.base_url, status=status,
            model=self.endpoint.model, attempts=attempts,
        )

    def _modes(self, json_schema: dict | None) -> list[str | None]:
        if json_schema is None:
            return [None]
        setting = self.endpoint.structured_output
        if setting != "auto":
            return [setting]
        start = self._structured_mode
        if start is None and self.cache is not None:
            start = self.cache.get_mode(self.endpoint.base_url, self.endpoint.model)
            self._structured_mode = start
        return list(STRUCTURED_MODES[STRUCTURED_MODES.index(start or "json_schema") :])

    def _remember_mode(self, mode: str) -> None:
        if self._structured_mode != mode:
            log.info("%s endpoint %s: structured output falls back to %s", self.role, self.endpoint.base_url, mode)
        self._structured_mode = mode
        if self.cache is not None:
            self.cache.set_mode(self.endpoint.base_url, self.endpoint.model, mode)

    # -- the call ---------------------------------------------------------------------------------------------------
    async def chat(
        self,
        messages: list[dict],
        *,
        temperature: float,
        max_tokens: int,
        top_p: float = 1.0,
        sample_index: int = 0,
        json_schema: dict | None = None,
        schema_name: str = "response",
        seed: int | None = None,
        accept: Callable[[str], Any] | None = None,
        top_logprobs: int | None = None,
    ) -> ChatResult:
        """One completion. Cached results come back with `cached=True` and make no request.

        `top_logprobs=N` asks for every generated token's log-probability and its N most likely alternatives
        (`ChatResult.logprobs`; None when the endpoint returns none). A reply that is blank but carries them is a
        reply, not an empty completion.

        `accept(text)` is the caller's validator (a parser): a reply it raises on is returned all the same and cached
        with the rejection (`LLMCache`). The caller's retry sends it back with the problem, so a re-run of the same
        inputs replays that chain call by call, with zero requests; to ask afresh, clear the cache or set
        use_cache=False.

        Raises LLMError (after the endpoint's retries) — never returns an empty text.
        """
        if not isinstance(messages, list) or not all(isinstance(m, dict) and "role" in m for m in messages):
            raise ValueError(f"messages must be a list of {{'role', 'content'}} dicts, got {type(messages).__name__}")
        if top_logprobs is not None and not 0 <= top_logprobs <= 20:
            raise ValueError(f"top_logprobs must lie in 0-20 (the OpenAI limit), got {top_logprobs}")
        self.stats.record_call(self.role)
        cache_mode = None if json_schema is None else self.endpoint.structured_output
        key = None
        if self.cache is not None:
            key = LLMCache.key(
                base_url=self.endpoint.base_url, model=self.endpoint.model, messages=messages,
                temperature=temperature, top_p=top_p, max_tokens=max_tokens, sample_index=sample_index, seed=seed,
                json_schema=None if json_schema is None else {"name": schema_name, "schema": json_schema},
                mode=cache_mode, top_logprobs=top_logprobs,
            )
            hit = self.cache.get(key)
            if hit is not None:
                self.stats.record_cache_hit(
                    self.role, hit.get("prompt_tokens") or 0, hit.get("completion_tokens") or 0
                )
                return ChatResult(
                    text=hit["text"], prompt_tokens=hit.get("prompt_tokens") or 0,
                    completion_tokens=hit.get("completion_tokens") or 0, finish_reason=hit.get("finish_reason"),
                    cached=True, logprobs=hit.get("logprobs"),
                )

        request: dict[str, Any] = {
            "model": self.endpoint.model, "messages": messages, "temperature": temperature, "top_p": top_p,
        }
        request_seed = derive_seed(seed, sample_index)
        if request_seed is not None:
            request["seed"] = request_seed
        if top_logprobs is not None:
            request["logprobs"] = True
            request["top_logprobs"] = top_logprobs

        breaker = self.guard.breaker
        probe = False
        if breaker is not None:
            try:
                probe = breaker.before_call()
            except limits.CircuitOpen as exc:
                self.stats.record_failure(self.role, "circuit_open")
                raise self._error("circuit_open", str(exc), attempts=0) from None

        box = [0]
        spent = [0, 0]  # prompt and completion tokens over this call's attempts, for the tokens/minute window
        charge: limits.Charge | None = None
        token = _CALL_REQUESTS.set(box)
        try:
            async with self._state().semaphore:
                if self.guard.tokens is not None:
                    schema_chars = 0 if json_schema is None else len(canonical_json(json_schema))
                    charge = await self.guard.tokens.acquire(
                        limits.estimate_tokens(messages, max_tokens, extra_chars=schema_chars)
                    )
                if breaker is not None:
                    try:
                        breaker.recheck(probe)  # it may have opened while this call waited for a slot
                    except limits.CircuitOpen as exc:
                        if charge is not None:
                            charge.settle(0)
                        raise self._error("circuit_open", str(exc), attempts=0) from None
                result = await self._complete(request, max_tokens, json_schema, schema_name, box, spent)
                if charge is not None and sum(spent) > 0:  # no reported usage: the estimate stays charged
                    charge.settle(sum(spent))
        except LLMError as err:
            self.stats.record_failure(self.role, err.kind)
            if breaker is not None:
                if err.kind == "circuit_open":  # refused while queued: no verdict on the endpoint
                    breaker.release(probe)
                elif err.kind in BREAKER_KINDS:
                    breaker.record_failure(probe)
                else:  # the endpoint answered (e.g. 400 for this prompt): it is up
                    breaker.record_success(probe)
            raise
        except BaseException:  # cancelled (e.g. at the reward deadline), or a bug: no verdict on the endpoint
            if breaker is not None:
                breaker.release(probe)
            if charge is not None and box[0] == 0:  # nothing was sent: the tokens were not spent
                charge.settle(0)
            raise
        finally:
            _CALL_REQUESTS.reset(token)
        if breaker is not None:
            breaker.record_success(probe)

        if key is not None and result.finish_reason in CACHEABLE_FINISH:
            self.cache.put(key, {
                "text": result.text, "prompt_tokens": result.prompt_tokens,
                "completion_tokens": result.completion_tokens, "finish_reason": result.finish_reason,
                "rejected": _rejection(accept, result.text), "logprobs": result.logprobs,
            })
        return result

    async def _complete(
        self, request: dict, max_tokens: int, json_schema: dict | None, schema_name: str, box: list[int],
        spent: list[int] | None = None,
    ) -> ChatResult:
        last_finish: str | None = None
        for attempt in range(self.empty_attempts):
            response = await self._create(request, max_tokens, json_schema, schema_name, box)
            usage = getattr(response, "usage", None)
            prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
            completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
            reused = reused_prompt_tokens(response)
            usd = token_cost_usd(prompt_tokens, completion_tokens, self.endpoint.usd_per_mtok_input,
                                 self.endpoint.usd_per_mtok_output)
            self.stats.record_tokens(self.role, prompt_tokens, completion_tokens, usd, reused=reused or 0)
            if spent is not None:
                spent[0] += prompt_tokens
                spent[1] += completion_tokens
            choices = getattr(response, "choices", None) or []
            text = (choices[0].message.content or "") if choices else ""
            last_finish = choices[0].finish_reason if choices else None
            logprobs = token_logprobs(choices[0]) if choices and "logprobs" in request else None
            if text.strip() or logprobs:
                return ChatResult(text, prompt_tokens, completion_tokens, last_finish, cached=False,
                                  logprobs=logprobs, reused_prompt_tokens=reused)
            if attempt + 1 < self.empty_attempts:
                # Same backoff shape as the SDK's own retries; an empty answer is often a transient server hiccup.
                await asyncio.sleep(min(0.5 * 2**attempt, 8.0))
        raise self._error(
            "empty", f"the endpoint returned no text (finish_reason={last_finish!r}) in {self.empty_attempts} "
            "attempt(s)", attempts=box[0],
        )

    async def _create(self, request: dict, max_tokens: int, json_schema: dict | None, schema_name: str, box):
        import openai

        client = self._state().openai
        modes = self._modes(json_schema)
        i = 0
        malformed = 0
        while True:
            failure: LLMError | None = None
            mode = modes[i]
            kwargs = dict(request)
            kwargs[self._token_param] = max_tokens
            if mode == "json_schema":
                kwargs["response_format"] = {
                    "type": "json_schema", "json_schema": {"name": schema_name, "schema": json_schema},
                }
            elif mode == "json_object":
                kwargs["response_format"] = {"type": "json_object"}
            try:
                response = await client.chat.completions.create(**kwargs)
            except openai.APIStatusError as err:
                text = _error_text(err).lower()
                if err.status_code in (400, 422):
                    if self._token_param == "max_tokens" and "max_completion_tokens" in text:
                        # Newer OpenAI models refuse `max_tokens`; remember and resend.
                        self._token_param = "max_completion_tokens"
                        continue
                    if (
                        self.endpoint.structured_output == "auto" and mode is not None and mode != "none"
                        and i + 1 < len(modes) and _rejects_mode(text, mode)
                    ):
                        i += 1
                        self._remember_mode(modes[i])
                        continue
                failure = self._classified(err, box)
            except openai.OpenAIError as err:
                failure = self._classified(err, box)
            except ValueError as err:
                # A 200 whose body is not JSON (cut off by a proxy or a dying server): the SDK does not retry it,
                # so we do, with its backoff shape, and then count it as a server failure.
                malformed += 1
                if malformed <= self.endpoint.max_retries:  # the request hook counts the resend as a retry
                    await asyncio.sleep(min(0.5 * 2 ** (malformed - 1), 8.0))
                    continue
                failure = self._error(
                    "server", f"malformed response body ({type(err).__name__}: {err})", attempts=box[0]
                )
            if failure is not None:
                # Raised outside the except block so the SDK error (whose request headers hold the key) is not
                # attached as __context__.
                raise failure
            if mode is not None and self.endpoint.structured_output == "auto" and self._structured_mode is None:
                self._remember_mode(mode)
            return response

    def _classified(self, err: Exception, box: list[int]) -> LLMError:
        kind, status = classify_error(err)
        return self._error(kind, f"{type(err).__name__}: {_error_text(err)}", status=status, attempts=box[0])

    # -- lifecycle --------------------------------------------------------------------------------------------------
    async def aclose(self) -> None:
        """Close the connection pools (of this loop, and of other loops that are still running)."""
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        with self._lock:
            states = list(self._states.items())
            self._states.clear()
        for loop, state in states:
            if loop is current:
                await state.openai.close()
            elif loop.is_running() and not loop.is_closed():
                fut = asyncio.run_coroutine_threadsafe(state.openai.close(), loop)
                try:
                    await asyncio.wait_for(asyncio.wrap_future(fut), timeout=5)
                except Exception:  # a loop busy elsewhere: its sockets close when collected
                    pass
        if not self._template_used:
            await self._template.close()
            self._template_used = True  # closed: a later loop gets a copy with a fresh HTTP client

    def close(self) -> None:
        run_sync(self.aclose())


def token_logprobs(choice: Any) -> list[dict] | None:
    """A choice's token log-probabilities as plain data (`ChatResult.logprobs`); None when it carries none.

    Read field by field, so an endpoint that leaves out `top_logprobs` or sends nulls gives what it has: a token
    without alternatives gets `"top": []`, a non-finite or missing log-probability drops that entry.
    """
    content = getattr(getattr(choice, "logprobs", None), "content", None)
    if not content:
        return None
    out: list[dict] = []
    for item in content:
        token, logprob = getattr(item, "token", None), getattr(item, "logprob", None)
        if not isinstance(token, str) or not _finite(logprob):
            continue
        top = [[t.token, float(t.logprob)] for t in (getattr(item, "top_logprobs", None) or [])
               if isinstance(getattr(t, "token", None), str) and _finite(getattr(t, "logprob", None))]
        out.append({"token": token, "logprob": float(logprob), "top": top})
    return out or None


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def reused_prompt_tokens(response: Any) -> int | None:
    """Prompt tokens the endpoint served from its own prompt cache: `usage.prompt_tokens_details.cached_tokens`
    (OpenAI's field; llama-server fills it too), else llama-server's `timings.cache_n`; None when neither is sent."""
    details = getattr(getattr(response, "usage", None), "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", None)
    if isinstance(cached, int) and not isinstance(cached, bool):
        return cached
    timings = (getattr(response, "model_extra", None) or {}).get("timings")
    cache_n = timings.get("cache_n") if isinstance(timings, dict) else None
    return cache_n if isinstance(cache_n, int) and not isinstance(cache_n, bool) else None


def _error_text(err: Exception) -> str:
    message = getattr(err, "message", None) or str(err)
    body = getattr(err, "body", None)
    if body is not None and not isinstance(body, str):
        try:
            body = canonical_json(body)
        except (TypeError, ValueError):
            body = str(body)
    return message if not body or body in message else f"{message} {body}"


def _rejects_mode(text: str, mode: str) -> bool:
    words = ("response_format", "json_schema", "response format", "schema") if mode == "json_schema" else (
        "response_format", "json_object", "response format", "json mode")
    return any(w in text for w in words)


def _rejection(accept: Callable[[str], Any] | None, text: str) -> str | None:
    """Why `accept` refuses `text` ("<Error>: <message>"), or None when it takes it (or there is no `accept`)."""
    if accept is None:
        return None
    try:
        accept(text)
    except Exception as exc:  # the caller's parser said no; the caller handles the reply, the cache notes why
        return f"{type(exc).__name__}: {exc}"[:500]
    return None


def classify_error(err: Exception) -> tuple[str, int | None]:
    """(kind, HTTP status) of an openai exception, kind in FAILURE_KINDS."""
    import openai

    if isinstance(err, openai.APITimeoutError):
        return "timeout", None
    if isinstance(err, openai.APIConnectionError):
        return "connection", None
    if isinstance(err, openai.APIStatusError):
        status = err.status_code
        if status == 429:
            return "rate_limit", status
        if status in (401, 403):
            return "auth", status
        if status == 408:
            return "timeout", status
        if status >= 500 or status == 409:  # 409 is a lock timeout the SDK also treats as transient
            return "server", status
        return "bad_request", status
    return "server", None  # a malformed 200 response and the like


# ----------------------------------------------------------------------------------------------------------- clients
@dataclass
class Clients:
    """One client per role, sharing a cache and the usage counters. `async with make_clients(config) as c:`."""

    teacher: LLMClient
    rubricator: LLMClient
    verifier: LLMClient
    student: LLMClient
    stats: UsageStats = field(default_factory=UsageStats)
    cache: LLMCache | None = None

    def for_role(self, role: str) -> LLMClient:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; roles are {ROLES}")
        return getattr(self, role)

    async def aclose(self) -> None:
        for role in ROLES:
            await getattr(self, role).aclose()
        if self.cache is not None:
            self.cache.close()

    def close(self) -> None:
        run_sync(self.aclose())

    async def __aenter__(self) -> "Clients":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    def __enter__(self) -> "Clients":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class UnservedClient:
    """Stands for a role whose endpoint is still "local" (no server was started for it): using it raises the error
    that building its client would have raised. A notebook serves only the roles a step calls (01: teacher and
    student), and the step's other roles must not stop it."""

    def __init__(self, endpoint: EndpointConfig, role: str) -> None:
        self.endpoint, self.role = endpoint, role

    def __repr__(self) -> str:
        return f"UnservedClient(role={self.role!r}, model={self.endpoint.model!r})"

    async def aclose(self) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        raise ConfigError(
            f"{self.role} endpoint base_url is 'local': start the server first "
            "(`with serve.local_endpoints(config) as config: ...`) and build clients from the resolved config"
        )


def make_clients(config: RunConfig, *, empty_attempts: int = 2) -> Clients:
    """Clients for every role of a resolved config, one shared cache (unless `use_cache=False`) and one UsageStats.
    A role still on "local" gets an `UnservedClient`, which raises when it is used."""
    cache = None
    if config.use_cache:
        cache = LLMCache(config.cache_dir if config.cache_dir else cache_root() / "llm")
    stats = UsageStats()
    made = {
        role: UnservedClient(config.endpoint(role), role) if config.endpoint(role).is_local
        else LLMClient(config.endpoint(role), role, cache, stats, empty_attempts=empty_attempts) for role in ROLES
    }
    return Clients(**made, stats=stats, cache=cache)


# ---------------------------------------------------------------------------------------------------------- run_sync
class _Runner:
    """One event loop in a daemon thread that runs every `run_sync` coroutine, so that pooled connections and
    per-loop state made by one call are still valid in the next (asyncio.run would close the loop each time)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._thread is None or not self._thread.is_alive():
                ready = threading.Event()
                loop = asyncio.new_event_loop()

                def serve() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                self._thread = threading.Thread(target=serve, name="ropd-llm-loop", daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    def in_runner_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread


_RUNNER = _Runner()


def run_sync(coro: Awaitable[T]) -> T:
    """Run a coroutine from sync code and return its result (exceptions propagate).

    Works in a script and inside Jupyter, whose loop is already running in the calling thread: the coroutine runs
    on a long-lived loop in a helper thread and this call blocks until it is done. Interrupting the wait cancels it.
    """
    if not asyncio.iscoroutine(coro):
        raise TypeError(f"run_sync expects a coroutine, got {type(coro).__name__}")
    if _RUNNER.in_runner_thread():
        # Called from code that run_sync is already running: blocking this loop on itself would deadlock.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, coro).result()
    future = asyncio.run_coroutine_threadsafe(coro, _RUNNER.loop())
    try:
        return future.result()
    except BaseException:
        future.cancel()
        raise


class EndpointUnreachable(ConnectionError):
    """An endpoint that does not answer at all; raised before any expensive work starts."""


def trusts_env(base_url: str) -> bool:
    """Whether requests to `base_url` take their proxy settings (HTTP(S)_PROXY, ALL_PROXY, NO_PROXY) from the
    environment: yes for remote endpoints, no for a loopback server, which a proxy elsewhere cannot reach. The chat
    client and `check_reachable` both ask this, so they go (or do not go) through the same proxy."""
    return not limits.on_this_machine(base_url)


def check_reachable(endpoints: dict[str, "EndpointConfig"], *, timeout_s: float = 5.0) -> None:
    """Fail fast, naming the URL, when a role's endpoint cannot be connected to.

    The probe is a `GET <base_url>/models` through the same SDK, HTTP client flavour and proxy settings
    (`trusts_env`) as the chat client, with no retries and a placeholder key (never the real one). Only a connection
    failure or timeout counts: any HTTP answer (even 401/404) proves a server is there, and the real calls report
    their own errors.
    """
    import openai

    for role, endpoint in endpoints.items():
        client = openai.OpenAI(
            api_key="not-needed", base_url=endpoint.base_url, timeout=timeout_s, max_retries=0,
            http_client=openai.DefaultHttpxClient(trust_env=trusts_env(endpoint.base_url)),
        )
        failure: str | None = None
        try:
            client.models.with_raw_response.list()
        except openai.APIConnectionError as exc:  # timeouts included
            cause = exc.__cause__ or exc
            failure = f"{type(exc).__name__}: {type(cause).__name__}"
        except openai.OpenAIError:
            pass  # an HTTP answer, whatever it says
        finally:
            client.close()
        if failure is not None:
            via = " (through the proxy set in the environment)" if _proxied(endpoint.base_url) else ""
            raise EndpointUnreachable(
                f"{role} endpoint {endpoint.base_url} is unreachable{via} ({failure}); check its base_url"
            )


def _proxied(base_url: str) -> bool:
    """Whether an environment proxy applies to `base_url` (for the message only; httpx decides the route)."""
    import urllib.request

    if not trusts_env(base_url):
        return False
    parts = urlsplit(base_url)
    proxies = urllib.request.getproxies_environment()
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass_environment(parts.hostname or "", proxies)
