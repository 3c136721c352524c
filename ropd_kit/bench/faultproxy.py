"""A fault-injecting HTTP proxy on 127.0.0.1, put between ropd-kit and an OpenAI-compatible endpoint.

Not a ROPD stage: it is the stand-in for a misbehaving remote teacher API, used by the hardening tests and by the
benchmarks (with `latency_s` as the round-trip of a remote API). In: an upstream base URL (the local llama-server,
`http://127.0.0.1:PORT/v1`). Out: `.base_url`, another OpenAI-compatible base URL whose chat completions fail on
purpose, by an explicit schedule (`schedule=["429", None, "reset"]`: one entry per coming chat request, `None`
meaning "pass it through") or at random with a seeded generator (`fault_rate`, `faults`).

Faults (`FAULTS`): "429" (with `Retry-After`), "429_no_retry_after", "500", "502", "503", "reset" (the connection is
closed with a TCP reset, no response), "stall" (no response until the client gives up), "truncated_json" (the
upstream's body cut in half), "wrong_schema" (valid JSON of the wrong shape as the completion text), "wrong_length"
(a verdict list with one judgement missing; only verifier requests get it, a scheduled one waits for the next),
"empty" (an empty completion). "401" (an auth error whose body echoes the bearer token, as careless servers do) is
available too, for secret-handling tests, but is not among the random defaults; so is "no_logprobs" (the reply
without its token log-probabilities, as from an API that does not return them).

Only POST requests to `.../chat/completions` or `.../completions` are subject to faults; everything else (`/models`,
`/health`) is forwarded untouched. `.injected` counts faults by kind, `.forwarded` counts requests sent upstream,
`.events` lists every chat request with its fault and arrival time (tests check Retry-After from it);
`.upstream_errors` counts real upstream failures (answered 502), which are not injected faults.

    with FaultProxy(server.base_url, schedule=["503", "429"]) as proxy:
        config.teacher.base_url = proxy.base_url
        ...
    proxy.injected  # Counter({'503': 1, '429': 1})

Command line (a remote-API stand-in with 1 s of latency in front of a running local server):
    python -m ropd_kit.bench.faultproxy --upstream http://127.0.0.1:8080/v1 --latency 1.0
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import socket
import struct
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector, web

FAULTS: tuple[str, ...] = (
    "429",
    "429_no_retry_after",
    "500",
    "502",
    "503",
    "reset",
    "stall",
    "truncated_json",
    "wrong_schema",
    "wrong_length",
    "empty",
)
EXTRA_FAULTS: tuple[str, ...] = ("401", "no_logprobs")
_STATUS = {"429": 429, "429_no_retry_after": 429, "500": 500, "502": 502, "503": 503, "401": 401}
# Headers that describe one hop of the connection, not the message: never copied across the proxy.
_HOP = {
    "host", "connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "content-length",
    "content-encoding", "proxy-authorization", "proxy-authenticate", "accept-encoding",
}
_CHAT_PATH = re.compile(r"/(chat/)?completions/?$")


@dataclass
class FaultEvent:
    """One chat request as the proxy saw it."""

    index: int
    path: str
    fault: str | None
    verifier: bool
    t: float  # time.monotonic() at arrival
    content: str | None = None  # the completion text a content fault (empty, wrong_schema, wrong_length) put in


def is_verifier_request(body: dict) -> bool:
    """Whether a chat request asks for verdicts (only those can get a verdict list of the wrong length).

    The verdict format (DESIGN.md) names `answer_index` and `judgement`; the verifier's schema (or, in JSON or plain
    mode, its system message) mentions them and no other role's request does.
    """
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = json.dumps(fmt)
        return "judgement" in schema and "answer_index" in schema
    # Without a schema, only our own instructions can tell: the system message (answers quoted in the user message
    # may contain anything, including fake verdict JSON).
    system = next((m for m in body.get("messages") or [] if isinstance(m, dict) and m.get("role") == "system"), {})
    text = str(system.get("content", ""))
    return "answer_index" in text and "judgement" in text


def _schema_dims(body: dict) -> tuple[int | None, int | None]:
    """(n_answers, n_criteria) when the request's JSON schema pins them with minItems."""
    fmt = body.get("response_format") or {}
    schema = (fmt.get("json_schema") or {}).get("schema") if isinstance(fmt, dict) else None
    if not isinstance(schema, dict):
        return None, None
    answers = (schema.get("properties") or {}).get("answers") or {}
    judgement = ((answers.get("items") or {}).get("properties") or {}).get("judgement") or {}
    return answers.get("minItems"), judgement.get("minItems")


def _first_json_object(text: str) -> Any:
    start = text.find("{")
    while start != -1:
        try:
            return json.JSONDecoder().raw_decode(text[start:])[0]
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
    return None


def wrong_length_verdicts(content: str, body: dict) -> str:
    """Verdict JSON with exactly one judgement missing from the first answer.

    Starts from the upstream's own verdicts when they parse, else from the dimensions in the request's schema; with
    neither, a single empty judgement list (always the wrong length: a rubric has at least one criterion).
    """
    parsed = _first_json_object(content or "")
    answers = parsed.get("answers") if isinstance(parsed, dict) else None
    if (
        isinstance(answers, list)
        and answers
        and all(isinstance(a, dict) and isinstance(a.get("judgement"), list) for a in answers)
        and answers[0]["judgement"]
    ):
        answers[0]["judgement"] = answers[0]["judgement"][:-1]
        return json.dumps({"answers": answers})
    n_answers, n_criteria = _schema_dims(body)
    if n_answers and n_criteria:
        rows = [{"answer_index": i + 1, "judgement": [True] * n_criteria} for i in range(n_answers)]
        rows[0]["judgement"] = rows[0]["judgement"][:-1]
        return json.dumps({"answers": rows})
    return json.dumps({"answers": [{"answer_index": 1, "judgement": []}]})


# Valid JSON, but nothing any role asks for: no criteria, no answers, no judgements.
WRONG_SCHEMA_CONTENT = json.dumps({"result": "ok", "items": [1, 2, 3], "note": "not the requested format"})


def _error_body(fault: str, request: web.Request) -> dict:
    message = f"fault injected by ropd_kit.bench.faultproxy: HTTP {_STATUS[fault]}"
    if fault == "401":
        # Realistic misbehaviour: some servers repeat the rejected credential in the error text.
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        message = f"Incorrect API key provided: {token}. You can find your API key in your account settings."
    kind = {"401": "invalid_request_error", "429": "rate_limit_error"}.get(fault[:3], "server_error")
    return {"error": {"message": message, "type": kind, "code": _STATUS[fault]}}


class FaultProxy:
    """An HTTP proxy (own thread and event loop) that forwards to `upstream_base_url` and injects faults.

    `schedule`: fault names (or None for a clean pass) for the next chat requests, in arrival order; once used up,
    requests get random faults with probability `fault_rate`, drawn from `faults` by a `random.Random(seed)`.
    Under concurrency the draws are reproducible, the request each draw lands on is not.
    `latency_s` delays every request (chat or not) before anything else happens.
    `recording`: "record" keeps the first 200 answer to every distinct chat request body (`.recordings`); "replay"
    also answers a request seen before from there without going upstream (`.replayed` counts them), and records new
    ones. Replay with `latency_s` is a remote API stand-in whose only cost is its latency: the benchmarks use it to
    measure what the client overlaps, free of the local server's own speed.
    """

    def __init__(
        self,
        upstream_base_url: str,
        *,
        schedule: Iterable[str | None] | None = None,
        seed: int = 0,
        fault_rate: float = 0.0,
        faults: Sequence[str] = FAULTS,
        latency_s: float = 0.0,
        retry_after_s: int = 1,
        stall_s: float = 600.0,
        host: str = "127.0.0.1",
        port: int = 0,
        recording: str = "off",
    ) -> None:
        unknown = [f for f in list(faults) + [f for f in (schedule or []) if f] if f not in FAULTS + EXTRA_FAULTS]
        if unknown:
            raise ValueError(f"unknown fault(s) {unknown}; known: {list(FAULTS + EXTRA_FAULTS)}")
        if not 0.0 <= fault_rate <= 1.0:
            raise ValueError(f"fault_rate must lie in [0, 1], got {fault_rate}")
        self.upstream = upstream_base_url.rstrip("/")
        self.fault_rate = fault_rate
        self.faults = tuple(faults)
        self.latency_s = latency_s
        self.retry_after_s = retry_after_s
        self.stall_s = stall_s
        self.host, self._port = host, port
        if recording not in ("off", "record", "replay"):
            raise ValueError(f"recording must be 'off', 'record' or 'replay', got {recording!r}")
        self.recording = recording
        # request body (canonical JSON) -> (status, headers, body) of the first 200 answer; see `recording`.
        self.recordings: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.replayed = 0
        self._schedule: list[str | None] = list(schedule or [])
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.injected: Counter[str] = Counter()
        self.forwarded = 0
        self.upstream_errors = 0
        self.requests = 0
        self.events: list[FaultEvent] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stopping: asyncio.Event | None = None

    # -- control -------------------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        if not self._ready.is_set():
            raise RuntimeError("FaultProxy is not running (use it as a context manager or call start())")
        return f"http://{self.host}:{self._port}/v1"

    def push(self, *faults: str | None) -> None:
        """Append to the schedule (fault names, or None for a clean pass)."""
        bad = [f for f in faults if f and f not in FAULTS + EXTRA_FAULTS]
        if bad:
            raise ValueError(f"unknown fault(s) {bad}")
        with self._lock:
            self._schedule.extend(faults)

    @property
    def pending(self) -> list[str | None]:
        with self._lock:
            return list(self._schedule)

    def set_random(self, fault_rate: float, faults: Sequence[str] | None = None) -> None:
        """Change the random part: probability per chat request (after the schedule), and the faults drawn from."""
        bad = [f for f in faults or () if f not in FAULTS + EXTRA_FAULTS]
        if bad or not 0.0 <= fault_rate <= 1.0:
            raise ValueError(f"unknown fault(s) {bad}" if bad else f"fault_rate must lie in [0, 1], got {fault_rate}")
        with self._lock:
            self.fault_rate = fault_rate
            if faults is not None:
                self.faults = tuple(faults)

    def snapshot(self) -> dict[str, Any]:
        """Counts for a report: chat requests seen, requests forwarded upstream (any path), real upstream
        failures, faults injected by kind."""
        with self._lock:
            return {
                "requests": self.requests,
                "forwarded": self.forwarded,
                "upstream_errors": self.upstream_errors,
                "injected": dict(self.injected),
                "injected_total": sum(self.injected.values()),
                "replayed": self.replayed,
                "recorded": len(self.recordings),
            }

    def start(self) -> "FaultProxy":
        self._thread = threading.Thread(target=self._serve, name="faultproxy", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise RuntimeError(f"FaultProxy failed to start on {self.host}:{self._port}: {self._error}")
        if not self._ready.is_set():
            raise RuntimeError("FaultProxy did not start within 30 s")
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        loop = self._loop
        if self._stopping is not None:
            loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(30)
        self._loop = None
        self._thread = None
        self._ready.clear()

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    async def __aenter__(self) -> "FaultProxy":
        # The proxy runs on its own thread, so starting it from inside a running loop is fine.
        return self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await asyncio.to_thread(self.stop)

    # -- server --------------------------------------------------------------------------------------------------

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # reported to start(); the thread must not die silently
            self._error = exc
            self._ready.set()
        finally:
            loop.close()

    async def _main(self) -> None:
        self._stopping = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._port, reuse_address=True)
        await site.start()
        self._port = self._runner.addresses[0][1]
        # A fresh upstream connection per request: llama-server drops idle keep-alive connections, and a pooled one
        # that died would show up as a fault we did not inject.
        self._session = ClientSession(
            connector=TCPConnector(force_close=True), timeout=ClientTimeout(total=None, sock_connect=10)
        )
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            await self._session.close()
            await self._runner.cleanup()

    def _choose(self, verifier: bool) -> str | None:
        with self._lock:
            if self._schedule:
                head = self._schedule[0]
                if head == "wrong_length" and not verifier:
                    return None  # waits for the next verifier request
                return self._schedule.pop(0)
            if self.fault_rate > 0 and self._rng.random() < self.fault_rate:
                eligible = [f for f in self.faults if f != "wrong_length" or verifier]
                return self._rng.choice(eligible) if eligible else None
            return None

    def _upstream_url(self, request: web.Request) -> str:
        path = request.rel_url.path
        if path.startswith("/v1"):
            path = path[3:]
        query = f"?{request.rel_url.query_string}" if request.rel_url.query_string else ""
        return f"{self.upstream}{path}{query}"

    async def _forward(self, request: web.Request, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        with self._lock:
            self.forwarded += 1
        assert self._session is not None
        try:
            async with self._session.request(
                request.method, self._upstream_url(request), data=raw, headers=headers
            ) as r:
                body = await r.read()
                out = {k: v for k, v in r.headers.items() if k.lower() not in _HOP}
                return r.status, out, body
        except (ClientError, OSError, asyncio.TimeoutError) as exc:
            # A real failure of the upstream, not an injected one: answer as a gateway would, and count it apart
            # so that a test can tell the two kinds of failure apart.
            with self._lock:
                self.upstream_errors += 1
            body = {"error": {"message": f"upstream unavailable: {type(exc).__name__}", "type": "server_error"}}
            return 502, {"Content-Type": "application/json"}, json.dumps(body).encode()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)
        raw = await request.read()
        chat = request.method == "POST" and bool(_CHAT_PATH.search(request.rel_url.path))
        if not chat:
            status, headers, body = await self._forward(request, raw)
            return web.Response(status=status, body=body, headers=headers)

        try:
            payload = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            payload = {}
        verifier = isinstance(payload, dict) and is_verifier_request(payload)
        fault = self._choose(verifier)
        event = FaultEvent(0, request.rel_url.path, fault, verifier, time.monotonic())
        with self._lock:
            self.requests += 1
            event.index = len(self.events)
            self.events.append(event)
            if fault:
                self.injected[fault] += 1

        if fault in _STATUS:
            headers = {"Retry-After": str(self.retry_after_s)} if fault == "429" else {}
            return web.json_response(_error_body(fault, request), status=_STATUS[fault], headers=headers)
        if fault == "reset":
            return await self._reset(request)
        if fault == "stall":
            return await self._stall(request)

        key = json.dumps(payload, sort_keys=True) if self.recording != "off" and not fault else None
        if key is not None and self.recording == "replay" and key in self.recordings:
            status, headers, body = self.recordings[key]
            with self._lock:
                self.replayed += 1
            return web.Response(status=status, body=body, headers=headers)
        status, headers, body = await self._forward(request, raw)
        if key is not None and status == 200:
            self.recordings.setdefault(key, (status, headers, body))
        if fault is None or status != 200:
            return web.Response(status=status, body=body, headers=headers)
        if fault == "truncated_json":
            return web.Response(status=200, body=body[: max(1, len(body) // 2)], headers=headers)
        try:
            data = json.loads(body)
            message = data["choices"][0]["message"]
        except (ValueError, KeyError, IndexError, TypeError):
            return web.Response(status=status, body=body, headers=headers)
        if fault == "empty":
            message["content"] = ""
        elif fault == "wrong_schema":
            message["content"] = WRONG_SCHEMA_CONTENT
        elif fault == "wrong_length":
            message["content"] = wrong_length_verdicts(message.get("content") or "", payload)
        elif fault == "no_logprobs":
            data["choices"][0].pop("logprobs", None)
        message.pop("reasoning_content", None)
        event.content = message["content"]
        return web.Response(status=200, body=json.dumps(data).encode(), headers=headers)

    async def _reset(self, request: web.Request) -> web.StreamResponse:
        transport = request.transport
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                # SO_LINGER 0: close() sends a TCP RST, which the client sees as "connection reset by peer".
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
            transport.abort()
        # Nothing can be written any more; aiohttp drops the response of an aborted transport.
        raise asyncio.CancelledError()

    async def _stall(self, request: web.Request) -> web.StreamResponse:
        deadline = time.monotonic() + self.stall_s
        assert self._stopping is not None
        while time.monotonic() < deadline and not self._stopping.is_set():
            transport = request.transport
            if transport is None or transport.is_closing():
                break  # the client gave up
            await asyncio.sleep(0.05)
        return web.json_response(_error_body("503", request), status=503)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ropd_kit.bench.faultproxy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", required=True, help="base URL of the real endpoint, e.g. http://127.0.0.1:8080/v1")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any free port)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--faults", default=",".join(FAULTS), help="comma-separated fault names to draw from")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    proxy = FaultProxy(
        args.upstream,
        port=args.port,
        latency_s=args.latency,
        fault_rate=args.fault_rate,
        faults=[f for f in args.faults.split(",") if f],
        seed=args.seed,
    )
    with proxy:
        print(proxy.base_url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        print(json.dumps(proxy.snapshot()), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
