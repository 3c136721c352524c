"""ropd_kit.llm against a real HTTP server on 127.0.0.1 that speaks /v1/chat/completions and misbehaves on demand.

Requests, retries and in-flight counts are measured on the server side; nothing of ropd_kit is faked.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ropd_kit import limits
from ropd_kit.config import ConfigError, EndpointConfig, RunConfig
from ropd_kit.llm import (
    ChatResult,
    EndpointUnreachable,
    LLMCache,
    LLMClient,
    LLMError,
    UsageStats,
    check_reachable,
    derive_seed,
    make_clients,
    run_sync,
    token_cost_usd,
    usage_delta,
)

SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
MESSAGES = [{"role": "user", "content": "Say ok."}]


class ChatServer:
    """A minimal OpenAI-compatible chat endpoint. `plan` holds one action per coming request (then `default`)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.plan: list[dict] = []
        self.default: dict = {"kind": "ok"}
        self.reject_formats: set[str] = set()  # response_format types answered with a 400
        self.delay = 0.0
        self.requests: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.httpd = ThreadingHTTPServer((host, 0), self._handler())
        self.httpd.daemon_threads = True
        # shutdown() waits for the serving loop's next poll: the default 0.5 s would be most of a short test.
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def bodies(self) -> list[dict]:
        with self.lock:
            return [r["body"] for r in self.requests]

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _send(self, code: int, payload: dict, headers: dict | None = None) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                with server.lock:
                    server.requests.append(
                        {"t": time.monotonic(), "body": body, "auth": self.headers.get("Authorization", "")}
                    )
                    n = len(server.requests)
                    fmt = (body.get("response_format") or {}).get("type")
                    if fmt in server.reject_formats:
                        action = {"kind": "status", "code": 400,
                                  "message": f"response_format type '{fmt}' is not supported by this server"}
                    else:
                        action = server.plan.pop(0) if server.plan else server.default
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    if server.delay:
                        server.stopping.wait(server.delay)
                    self._act(action, body, n)
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def _act(self, action: dict, body: dict, n: int) -> None:
                kind = action["kind"]
                if kind == "stall":
                    server.stopping.wait(action.get("seconds", 5))
                    kind = "ok"
                if kind == "status":
                    message = action.get("message", "error")
                    if action.get("echo_auth"):  # a careless server that repeats the credential back
                        message += " (got " + self.headers.get("Authorization", "") + ")"
                    self._send(action["code"], {"error": {"message": message, "type": "test_error"}},
                               action.get("headers"))
                    return
                content = "" if kind == "empty" else action.get("content", f'{{"ok": true, "n": {n}}}')
                payload = {
                    "id": f"cmpl-{n}", "object": "chat.completion", "created": 0, "model": body.get("model"),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                 "finish_reason": action.get("finish", "stop")}],
                    "usage": action.get("usage", {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}),
                }
                if payload["usage"] is None:  # a server that reports no usage
                    del payload["usage"]
                self._send(200, payload)

        return Handler

    def __enter__(self) -> "ChatServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    with ChatServer() as s:
        yield s


@pytest.fixture(autouse=True)
def _fresh_endpoint_guards(monkeypatch):
    """Rate windows and breakers are per endpoint and process-wide: no test inherits another's (and no test runs as
    one rank of a distributed run, whose limits would be split)."""
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    limits.reset_guards()
    yield
    limits.reset_guards()


def endpoint(server: ChatServer, **overrides) -> EndpointConfig:
    fields = {"base_url": server.base_url, "model": "fake-model", "max_retries": 2, "timeout_s": 10.0, **overrides}
    return EndpointConfig(**fields)


def call(client: LLMClient, messages=MESSAGES, **kwargs) -> ChatResult:
    """One chat call on a fresh loop; the client's connections for that loop are closed afterwards."""

    async def go():
        try:
            return await client.chat(messages, **{"temperature": 0.0, "max_tokens": 16, **kwargs})
        finally:
            await client.aclose()

    return asyncio.run(go())


def call_error(client: LLMClient, **kwargs) -> LLMError:
    with pytest.raises(LLMError) as info:
        call(client, **kwargs)
    return info.value


# --------------------------------------------------------------------------------------------------------- cache
def test_repeat_with_warm_cache_makes_zero_http_requests(server, tmp_path):
    stats = UsageStats()
    first = LLMClient(endpoint(server), "teacher", LLMCache(tmp_path / "c"), stats)
    a = call(first)
    assert not a.cached and a.text.startswith('{"ok": true') and (a.prompt_tokens, a.completion_tokens) == (7, 3)
    # A new client and a new cache object over the same directory: what a second run of a notebook does.
    second = LLMClient(endpoint(server), "teacher", LLMCache(tmp_path / "c"), stats)
    b = call(second)
    assert b.cached and b.text == a.text and b.finish_reason == "stop"
    assert len(server.requests) == 1
    row = stats.snapshot()["teacher"]
    assert (row["calls"], row["http_requests"], row["cache_hits"], row["retries"]) == (2, 1, 1, 0)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (7, 3)  # tokens are what the endpoint billed


def test_cache_key_separates_settings_and_ignores_loopback_port(tmp_path):
    base = dict(model="m", messages=MESSAGES, temperature=0.7, top_p=1.0, max_tokens=16, sample_index=0, seed=None,
                json_schema=None, mode=None)
    k = LLMCache.key(base_url="http://127.0.0.1:8001/v1", **base)
    assert k == LLMCache.key(base_url="http://localhost:9999/v1", **base)  # a local server's port changes per start
    assert k != LLMCache.key(base_url="https://api.example.com/v1", **base)
    for change in ({"sample_index": 1}, {"temperature": 0.8}, {"seed": 3}, {"model": "m2"}, {"max_tokens": 17},
                   {"mode": "auto", "json_schema": SCHEMA}, {"messages": [{"role": "user", "content": "x"}]}):
        assert k != LLMCache.key(base_url="http://127.0.0.1:8001/v1", **{**base, **change}), change


def test_failed_and_unfinished_responses_are_not_cached(server, tmp_path):
    server.plan = [{"kind": "status", "code": 400, "message": "bad prompt"}]
    cache = LLMCache(tmp_path / "c")
    client = LLMClient(endpoint(server), "verifier", cache)
    assert call_error(client).kind == "bad_request"
    server.plan = [{"kind": "ok", "finish": "content_filter", "content": "partial"}]
    assert call(client).text == "partial"
    assert len(cache) == 0
    assert not call(client).cached  # both times the server was asked again
    assert len(server.requests) == 3
    server.plan = [{"kind": "ok", "finish": "length", "content": "cut off"}]
    again = LLMClient(endpoint(server), "verifier", cache)
    # The content_filter call above cached nothing; this prompt differs so the "length" answer is a fresh request.
    r = call(again, messages=[{"role": "user", "content": "long"}])
    assert r.truncated and not r.cached
    r2 = call(again, messages=[{"role": "user", "content": "long"}])
    assert r2.cached and r2.finish_reason == "length" and r2.truncated


# ------------------------------------------------------------------------------------------------------- retries
def test_rate_limit_retry_after_is_honoured_and_counted(server):
    server.plan = [{"kind": "status", "code": 429, "message": "slow down", "headers": {"Retry-After": "1"}}]
    client = LLMClient(endpoint(server), "rubricator")
    assert call(client).text
    assert len(server.requests) == 2
    gap = server.requests[1]["t"] - server.requests[0]["t"]
    assert gap >= 0.9, f"second request came {gap:.2f}s after a 429 with Retry-After: 1"
    row = client.stats.snapshot()["rubricator"]
    assert (row["http_requests"], row["retries"], row["failures"]) == (2, 1, 0)


def test_rate_limit_without_retry_after_then_exhausted(server):
    server.default = {"kind": "status", "code": 429, "message": "quota"}
    client = LLMClient(endpoint(server, max_retries=1), "teacher")
    err = call_error(client)
    assert (err.kind, err.status, err.role, err.base_url) == ("rate_limit", 429, "teacher", server.base_url)
    assert len(server.requests) == 2 and err.attempts == 2
    row = client.stats.snapshot()["teacher"]
    assert (row["http_requests"], row["retries"], row["failures"], row["failures_by_kind"]) == (
        2, 1, 1, {"rate_limit": 1})


def test_server_errors_retried_then_reported(server, tmp_path):
    server.plan = [{"kind": "status", "code": 500}, {"kind": "status", "code": 503}]
    client = LLMClient(endpoint(server, max_retries=2), "verifier", LLMCache(tmp_path / "c"))
    assert call(client).text  # third request succeeds
    assert len(server.requests) == 3 and client.stats.snapshot()["verifier"]["retries"] == 2

    server.default = {"kind": "status", "code": 503, "message": "overloaded"}
    err = call_error(client, messages=[{"role": "user", "content": "other"}])
    assert (err.kind, err.status) == ("server", 503) and "overloaded" in str(err)
    assert len(server.requests) == 6


def test_timeout_is_retried_then_reported(server):
    server.default = {"kind": "stall", "seconds": 5}
    client = LLMClient(endpoint(server, timeout_s=0.3, max_retries=1), "teacher")
    err = call_error(client)
    assert err.kind == "timeout" and err.status is None
    assert len(server.requests) == 2 and client.stats.snapshot()["teacher"]["retries"] == 1


def test_connection_refused_is_a_connection_error():
    # A port nothing listens on: bind, read the port, close.
    probe = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = probe.server_address[1]
    probe.server_close()
    client = LLMClient(EndpointConfig(base_url=f"http://127.0.0.1:{port}/v1", model="m", max_retries=0), "student")
    err = call_error(client)
    assert err.kind == "connection"
    assert client.stats.snapshot()["student"]["http_requests"] == 1


def test_bad_request_is_not_retried(server):
    server.default = {"kind": "status", "code": 400, "message": "context length exceeded"}
    client = LLMClient(endpoint(server), "rubricator")
    err = call_error(client)
    assert (err.kind, err.status) == ("bad_request", 400) and "context length" in str(err)
    assert len(server.requests) == 1


def test_empty_completion_is_retried_then_an_error(server, tmp_path):
    cache = LLMCache(tmp_path / "c")
    server.plan = [{"kind": "empty"}]
    client = LLMClient(endpoint(server), "verifier", cache, empty_attempts=3)
    assert call(client).text  # the second attempt answered
    assert client.stats.snapshot()["verifier"]["retries"] == 1

    server.default = {"kind": "empty"}
    err = call_error(client, messages=[{"role": "user", "content": "again"}])
    assert err.kind == "empty" and err.attempts == 3
    assert len(server.requests) == 5 and len(cache) == 1  # only the good answer was stored
    assert client.stats.snapshot()["verifier"]["failures_by_kind"] == {"empty": 1}


# -------------------------------------------------------------------------------------------- structured output
def test_json_schema_falls_back_to_json_object_and_remembers(server, tmp_path):
    server.reject_formats = {"json_schema"}
    cache = LLMCache(tmp_path / "c")
    client = LLMClient(endpoint(server), "rubricator", cache)
    call(client, json_schema=SCHEMA, schema_name="rubric")
    call(client, messages=[{"role": "user", "content": "second"}], json_schema=SCHEMA)
    formats = [(b.get("response_format") or {}).get("type") for b in server.bodies()]
    assert formats == ["json_schema", "json_object", "json_object"]
    assert server.bodies()[0]["response_format"]["json_schema"]["name"] == "rubric"
    # A new process (new client, same cache directory) starts from the mode that worked.
    fresh = LLMClient(endpoint(server), "rubricator", LLMCache(tmp_path / "c"))
    call(fresh, messages=[{"role": "user", "content": "third"}], json_schema=SCHEMA)
    assert (server.bodies()[-1].get("response_format") or {}).get("type") == "json_object"
    assert len(server.requests) == 4


def test_falls_back_to_plain_text_when_no_response_format_is_accepted(server):
    server.reject_formats = {"json_schema", "json_object"}
    client = LLMClient(endpoint(server), "verifier")
    assert call(client, json_schema=SCHEMA).text
    bodies = server.bodies()
    assert [(b.get("response_format") or {}).get("type") for b in bodies] == ["json_schema", "json_object", None]
    assert client.stats.snapshot()["verifier"]["failures"] == 0


@pytest.mark.parametrize("mode,sent", [("json_schema", "json_schema"), ("json_object", "json_object"), ("none", None)])
def test_forced_structured_mode_is_sent_as_is(server, mode, sent):
    client = LLMClient(endpoint(server, structured_output=mode), "verifier")
    call(client, json_schema=SCHEMA)
    assert (server.bodies()[0].get("response_format") or {}).get("type") == sent


def test_forced_json_schema_rejected_is_a_bad_request(server):
    server.reject_formats = {"json_schema"}
    client = LLMClient(endpoint(server, structured_output="json_schema"), "verifier")
    assert call_error(client, json_schema=SCHEMA).kind == "bad_request"
    assert len(server.requests) == 1


def test_no_schema_sends_no_response_format(server):
    call(LLMClient(endpoint(server), "teacher"))
    assert "response_format" not in server.bodies()[0]


# -------------------------------------------------------------------------------------------- seeds, concurrency
def test_samples_get_distinct_reproducible_seeds(server):
    client = LLMClient(endpoint(server), "student")
    for i in range(3):
        call(client, sample_index=i, temperature=1.0)
    call(client, sample_index=2, temperature=1.0)
    call(client, seed=5)
    seeds = [b.get("seed") for b in server.bodies()]
    assert seeds[0] is None  # a plain call leaves the server's sampling alone
    assert seeds[1] != seeds[2] and seeds[2] == seeds[3] and None not in seeds[1:]
    assert seeds[4] == derive_seed(5, 0) and seeds[4] != derive_seed(6, 0)


def test_concurrency_bound_is_respected(server):
    server.delay = 0.3
    client = LLMClient(endpoint(server, max_concurrency=2), "verifier")

    async def go():
        try:
            return await asyncio.gather(*[
                client.chat([{"role": "user", "content": f"q{i}"}], temperature=0.0, max_tokens=8) for i in range(6)
            ])
        finally:
            await client.aclose()

    results = asyncio.run(go())
    assert len(results) == 6 and all(r.text for r in results)
    assert server.max_in_flight == 2


# -------------------------------------------------------------------------------------------------------- secrets
SENTINEL = "sk-ropd-sentinel-3f9a7c1e5b"


def test_api_key_never_leaks(server, tmp_path, monkeypatch):
    monkeypatch.setenv("ROPD_TEST_KEY", SENTINEL)
    cache_dir = tmp_path / "cache"
    client = LLMClient(endpoint(server, api_key_env="ROPD_TEST_KEY"), "teacher", LLMCache(cache_dir))
    call(client, json_schema=SCHEMA)
    assert server.requests[0]["auth"] == f"Bearer {SENTINEL}"  # the key is used...
    server.default = {"kind": "status", "code": 401, "message": "invalid key", "echo_auth": True}
    err = call_error(client, messages=[{"role": "user", "content": "x"}])
    assert err.kind == "auth" and err.status == 401
    assert "invalid key" in str(err)
    # ...and appears nowhere else: not in the error, the client, the stats or any file of the cache.
    for text in (str(err), repr(err), repr(client), repr(client.stats), json.dumps(client.stats.snapshot())):
        assert SENTINEL not in text
    files = [p for p in cache_dir.rglob("*") if p.is_file()]
    assert files and all(SENTINEL.encode() not in p.read_bytes() for p in files)


def test_unresolved_local_endpoint_is_refused():
    with pytest.raises(ConfigError, match="local"):
        LLMClient(EndpointConfig(), "teacher")


def test_missing_key_variable_is_named(monkeypatch, server):
    monkeypatch.delenv("ROPD_ABSENT_KEY", raising=False)
    with pytest.raises(ConfigError, match="ROPD_ABSENT_KEY"):
        LLMClient(endpoint(server, api_key_env="ROPD_ABSENT_KEY"), "teacher")


# ------------------------------------------------------------------------------------------- make_clients, sync
def test_make_clients_share_cache_and_stats_and_work_from_sync_code(server, tmp_path):
    ep = endpoint(server).model_dump()
    config = RunConfig(teacher=ep, rubricator=ep, verifier=ep, student=ep, cache_dir=str(tmp_path / "c"))
    clients = make_clients(config)
    assert clients.teacher.cache is clients.verifier.cache is clients.cache
    assert clients.stats is clients.student.stats
    ask = lambda c: c.chat(MESSAGES, temperature=0.0, max_tokens=8)  # noqa: E731
    # Several run_sync calls reuse one client: its pooled connections stay usable between them.
    first = run_sync(ask(clients.teacher))
    assert run_sync(ask(clients.verifier)).cached  # same endpoint, model and prompt: the shared cache answers
    before = clients.stats.snapshot()
    run_sync(clients.rubricator.chat([{"role": "user", "content": "new"}], temperature=0.0, max_tokens=8))
    delta = clients.stats.since(before)
    assert delta["rubricator"]["http_requests"] == 1 and delta["teacher"]["calls"] == 0
    assert first.text and len(server.requests) == 2
    records = clients.stats.as_records()
    assert {r["role"] for r in records} == {"teacher", "rubricator", "verifier", "student"}
    assert clients.stats.totals()["calls"] == 3
    clients.close()

    config_off = config.model_copy(update={"use_cache": False})
    assert make_clients(config_off).cache is None


def test_run_sync_inside_a_running_loop(server):
    """What a Jupyter cell does: a sync wrapper called while the notebook's loop is running in this thread."""
    client = LLMClient(endpoint(server), "teacher")

    def sync_wrapper(text: str) -> str:
        return run_sync(client.chat([{"role": "user", "content": text}], temperature=0.0, max_tokens=8)).text

    async def notebook_cell():
        a = sync_wrapper("one")
        b = sync_wrapper("two")
        c = (await client.chat([{"role": "user", "content": "three"}], temperature=0.0, max_tokens=8)).text
        await client.aclose()
        return a, b, c

    assert all(asyncio.run(notebook_cell()))
    assert len(server.requests) == 3
    with pytest.raises(ValueError, match="boom"):
        run_sync(_raise("boom"))


async def _raise(message: str):
    raise ValueError(message)


def test_usage_stats_threads_and_delta():
    stats = UsageStats()

    def work():
        for _ in range(1000):
            stats.record_http_request("verifier")
            stats.record_tokens("verifier", 2, 1)

    threads = [threading.Thread(target=work) for _ in range(4)]
    before = stats.snapshot()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats.record_failure("verifier", "timeout")
    row = stats.snapshot()["verifier"]
    assert (row["http_requests"], row["prompt_tokens"], row["completion_tokens"]) == (4000, 8000, 4000)
    delta = usage_delta(before, stats.snapshot())
    assert delta["verifier"]["failures_by_kind"] == {"timeout": 1} and delta["verifier"]["http_requests"] == 4000
    import pandas as pd

    frame = pd.DataFrame(stats.as_records())
    assert frame.loc[0, "failures_timeout"] == 1 and frame.loc[0, "role"] == "verifier"
    with pytest.raises(ValueError, match="unknown usage counter"):
        stats.record("verifier", bogus=1)


def test_llm_error_pickles():
    import pickle

    err = LLMError("m", kind="server", role="teacher", base_url="http://x/v1", status=503, model="m", attempts=3)
    back = pickle.loads(pickle.dumps(err))
    assert (str(back), back.kind, back.status, back.attempts) == ("m", "server", 503, 3)


def test_cache_refuses_empty_text(tmp_path):
    with pytest.raises(ValueError):
        LLMCache(tmp_path).put("chat:x", {"text": "  "})


# ------------------------------------------------------------------------------------- API limits (ropd_kit.limits)
def gather_calls(client: LLMClient, prompts: list[str], **kwargs) -> list:
    """Several calls at once on one loop; LLMErrors come back as values."""

    async def go():
        try:
            return await asyncio.gather(*[
                client.chat([{"role": "user", "content": p}], **{"temperature": 0.0, "max_tokens": 16, **kwargs})
                for p in prompts
            ], return_exceptions=True)
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_requests_per_minute_window_covers_every_http_request_retries_included(server):
    client = LLMClient(endpoint(server, requests_per_minute=2), "verifier")
    assert client.guard.requests.capacity == 2
    # The configured window is a minute; the same limiter on a 0.6 s window keeps the test short.
    client.guard.requests = limits.RateLimiter(2, period_s=0.6)
    server.plan = [{"kind": "status", "code": 500}]  # the first request is retried by the SDK
    started = time.monotonic()
    results = gather_calls(client, ["a", "b", "c"])
    assert all(isinstance(r, ChatResult) for r in results)
    assert len(server.requests) == 4 and client.stats.snapshot()["verifier"]["http_requests"] == 4
    # No 0.6 s window holds more than 2 requests: grant i+2 >= grant i + 0.6 and the first grant came after
    # `started`, so the 3rd and 4th requests cannot have reached the server before started + 0.6.
    times = sorted(r["t"] for r in server.requests)
    assert times[2] - started >= 0.6 and times[3] - started >= 0.6


def test_tokens_are_charged_as_an_estimate_then_corrected_from_usage(server):
    # 200 tokens/minute; each call is estimated at the prompt (~9) + max_tokens 150 = 159, and uses 10.
    client = LLMClient(endpoint(server, tokens_per_minute=200), "rubricator")
    estimate = limits.estimate_tokens([{"role": "user", "content": "a"}], 150)
    assert 150 < estimate <= 200 < 2 * estimate

    async def both():
        try:
            return await asyncio.wait_for(asyncio.gather(*[
                client.chat([{"role": "user", "content": p}], temperature=0.0, max_tokens=150) for p in "ab"
            ]), timeout=20)  # without the refund the second call would wait out the 60 s window
        finally:
            await client.aclose()

    results = asyncio.run(both())
    assert len(results) == 2 and len(server.requests) == 2
    assert client.guard.tokens.used() == 20  # both corrected to the usage the server reported (7 + 3 each)

    # A call that used more than estimated counts in full against the window.
    server.plan = [{"kind": "ok", "usage": {"prompt_tokens": 100, "completion_tokens": 400, "total_tokens": 500}}]
    call(client, messages=[{"role": "user", "content": "long"}])
    assert client.guard.tokens.used() == 520 and client.guard.tokens.try_acquire(1) is None


def test_tokens_without_reported_usage_keep_the_estimate(server):
    client = LLMClient(endpoint(server, tokens_per_minute=1000), "teacher")
    server.plan = [{"kind": "ok", "usage": None}]
    call(client, max_tokens=100)
    assert client.guard.tokens.used() == limits.estimate_tokens(MESSAGES, 100)


def test_cache_hits_spend_no_budget(server, tmp_path):
    ep = endpoint(server, requests_per_minute=100, tokens_per_minute=10_000)
    first = LLMClient(ep, "teacher", LLMCache(tmp_path / "c"))
    call(first)
    requests_used, tokens_used = first.guard.requests.used(), first.guard.tokens.used()
    assert (requests_used, tokens_used) == (1, 10)
    second = LLMClient(ep, "verifier", LLMCache(tmp_path / "c"))  # another client of the same endpoint...
    assert second.guard is first.guard  # ...shares its windows
    assert call(second).cached
    assert (second.guard.requests.used(), second.guard.tokens.used()) == (requests_used, tokens_used)


def test_deadline_cancels_a_call_stuck_in_the_windows_and_refunds_its_tokens(server):
    client = LLMClient(endpoint(server, requests_per_minute=1, tokens_per_minute=1000), "verifier")
    assert client.guard.requests.try_acquire(1) is not None  # this minute's one request is spent elsewhere

    async def step():
        try:
            return await limits.gather_with_deadline(
                [client.chat(MESSAGES, temperature=0.0, max_tokens=16)], deadline_s=0.5
            )
        finally:
            await client.aclose()

    started = time.monotonic()
    [result] = asyncio.run(step())
    assert isinstance(result, limits.DeadlineExceeded)
    assert time.monotonic() - started < 10  # not the rest of the minute
    assert server.requests == [] and client.stats.snapshot()["verifier"]["http_requests"] == 0
    assert client.guard.tokens.used() == 0  # it had charged its estimate, then was cancelled before sending


@pytest.fixture
def guarded_server(monkeypatch):
    """A chat server the client treats as remote, so its endpoint has a circuit breaker (a server on this machine's
    loopback name gets none), with no proxy of the environment in the way."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    with ChatServer(host="127.0.0.2") as s:
        yield s


def test_breaker_opens_fails_fast_counted_then_probes_and_closes(guarded_server):
    guarded_server.default = {"kind": "status", "code": 503, "message": "down"}
    ep = endpoint(guarded_server, max_retries=0, breaker_failures=2, breaker_cooldown_s=30.0)
    client = LLMClient(ep, "verifier")
    clock = [time.monotonic()]
    client.guard.breaker.clock = lambda: clock[0]
    assert [call_error(client, messages=[{"role": "user", "content": str(i)}]).kind for i in range(2)] == [
        "server", "server"]
    err = call_error(client)
    assert err.kind == "circuit_open" and "circuit breaker" in str(err) and err.attempts == 0
    assert len(guarded_server.requests) == 2  # failed fast: nothing was sent
    # Another role on the same endpoint fails fast too; the failures are counted like any other kind.
    other = LLMClient(ep, "rubricator", stats=client.stats)
    assert call_error(other).kind == "circuit_open"
    snap = client.stats.snapshot()
    assert snap["verifier"]["failures_by_kind"] == {"server": 2, "circuit_open": 1}
    assert snap["rubricator"]["failures_by_kind"] == {"circuit_open": 1}
    records = {r["role"]: r for r in client.stats.as_records()}
    assert records["verifier"]["failures_circuit_open"] == 1

    guarded_server.default = {"kind": "ok"}
    clock[0] += 30.0  # the cool-down is over: the next call is the probe
    assert client.guard.breaker.state == "half_open"
    assert call(client, messages=[{"role": "user", "content": "probe"}]).text
    assert client.guard.breaker.state == "closed" and len(guarded_server.requests) == 3
    assert call(other).text


def test_calls_queued_when_the_breaker_opens_fail_fast_too(guarded_server):
    guarded_server.delay = 0.3
    guarded_server.default = {"kind": "status", "code": 503}
    client = LLMClient(endpoint(guarded_server, max_retries=0, max_concurrency=1, breaker_failures=1), "verifier")
    results = gather_calls(client, ["a", "b", "c", "d"])  # all four pass the breaker, then queue for the one slot
    assert sorted(r.kind for r in results) == ["circuit_open"] * 3 + ["server"]
    assert len(guarded_server.requests) == 1


def test_bad_request_does_not_count_against_the_breaker(guarded_server):
    guarded_server.default = {"kind": "status", "code": 400, "message": "context length exceeded"}
    client = LLMClient(endpoint(guarded_server, breaker_failures=1), "verifier")
    for i in range(3):
        assert call_error(client, messages=[{"role": "user", "content": str(i)}]).kind == "bad_request"
    assert client.guard.breaker.state == "closed"


def test_open_breaker_fails_a_rubric_fast_as_a_counted_judge_failure(guarded_server):
    from ropd_kit.rubrics import induce_rubric_async

    guarded_server.default = {"kind": "status", "code": 502}
    client = LLMClient(endpoint(guarded_server, max_retries=0, breaker_failures=1), "rubricator")
    assert call_error(client).kind == "server"  # one failed call opens this breaker
    sent = len(guarded_server.requests)
    config = RunConfig()

    async def induce():
        try:
            return await asyncio.wait_for(induce_rubric_async("2+2?", ["4"], ["4", "5"], client, config), 10)
        finally:
            await client.aclose()

    outcome = asyncio.run(induce())
    assert outcome.rubric is None and "circuit_open" in outcome.error  # a failed group, not a crash
    assert len(guarded_server.requests) == sent
    # An open breaker is a fatal kind for rubric induction (rubrics.FATAL_LLM_KINDS): one refusal ends the retries.
    assert config.rubric_attempts > 1
    assert client.stats.snapshot()["rubricator"]["failures_by_kind"]["circuit_open"] == 1


# ------------------------------------------------------------------------------------------------------------ money
def test_token_cost_from_a_price_table():
    assert token_cost_usd(1_000_000, 500_000, 3.0, 15.0) == pytest.approx(10.5)
    assert token_cost_usd(7, 3, 0.0, 0.0) == 0.0
    assert token_cost_usd(7, 3, None, None) is None


def test_usd_per_role_in_snapshots_deltas_and_records(server, tmp_path):
    priced = endpoint(server, usd_per_mtok_input=2.0, usd_per_mtok_output=10.0).model_dump()
    plain = endpoint(server).model_dump()
    config = RunConfig(teacher=priced, rubricator=priced, verifier=plain, student=plain,
                       cache_dir=str(tmp_path / "c"))
    clients = make_clients(config)
    before = clients.stats.snapshot()
    assert before["teacher"]["usd"] == 0.0 and before["verifier"]["usd"] is None  # priced vs unpriced
    run_sync(clients.teacher.chat(MESSAGES, temperature=0.0, max_tokens=8))
    run_sync(clients.rubricator.chat(MESSAGES, temperature=0.0, max_tokens=8))  # a cache hit: free
    run_sync(clients.verifier.chat([{"role": "user", "content": "v"}], temperature=0.0, max_tokens=8))
    snap = clients.stats.snapshot()
    one_call = (7 * 2.0 + 3 * 10.0) / 1e6
    assert snap["teacher"]["usd"] == pytest.approx(one_call)
    assert snap["rubricator"]["usd"] == 0.0 and snap["rubricator"]["cache_hits"] == 1
    assert snap["verifier"]["usd"] is None and snap["verifier"]["prompt_tokens"] == 7
    delta = usage_delta(before, snap)
    assert delta["teacher"]["usd"] == pytest.approx(one_call) and delta["verifier"]["usd"] is None
    assert clients.stats.totals(snap)["usd"] == pytest.approx(one_call)  # summed over the priced roles
    assert {r["role"]: r["usd"] for r in clients.stats.as_records(snap)}["teacher"] == pytest.approx(one_call)
    json.dumps(snap)
    clients.close()


# ------------------------------------------------------------------------------------------------ reachability
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
              "NO_PROXY", "REQUEST_METHOD")


def dead_port() -> int:
    probe = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = probe.server_address[1]
    probe.server_close()
    return port


@pytest.fixture
def dead_proxy(monkeypatch):
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    url = f"http://127.0.0.1:{dead_port()}"
    for name in ("http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(name, url)
    return url


@pytest.fixture
def remote_server():
    """A chat server on 127.0.0.2: a loopback address the client does not treat as loopback (not in its list), so
    it takes the environment's proxy settings like any remote endpoint."""
    with ChatServer(host="127.0.0.2") as s:
        yield s


def test_reachability_check_goes_through_the_same_dead_proxy_as_the_client(remote_server, dead_proxy):
    ep = endpoint(remote_server, max_retries=0, timeout_s=5.0)
    assert call_error(LLMClient(ep, "teacher")).kind == "connection"
    with pytest.raises(EndpointUnreachable, match="proxy") as info:
        check_reachable({"teacher": ep})
    assert remote_server.base_url in str(info.value)
    assert remote_server.requests == []  # neither got past the proxy


def test_no_proxy_exempts_the_endpoint_for_both(remote_server, dead_proxy, monkeypatch):
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(name, "127.0.0.2")
    ep = endpoint(remote_server, max_retries=0, timeout_s=5.0)
    assert call(LLMClient(ep, "teacher")).text
    check_reachable({"teacher": ep})  # answers (501 to a GET): reachable


def test_loopback_endpoint_bypasses_the_proxy_for_both(server, dead_proxy):
    ep = endpoint(server, max_retries=0)
    assert call(LLMClient(ep, "teacher")).text
    check_reachable({"teacher": ep})


def test_unreachable_endpoint_without_a_proxy(monkeypatch):
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    url = f"http://127.0.0.1:{dead_port()}/v1"
    with pytest.raises(EndpointUnreachable, match="verifier endpoint") as info:
        check_reachable({"verifier": EndpointConfig(base_url=url, model="m")}, timeout_s=2.0)
    assert "proxy" not in str(info.value)
