"""A stand-in judge for runs that measure something other than the judge: an OpenAI-compatible server on 127.0.0.1
that answers every role at once with well-formed replies made up from the request.

Not a ROPD stage. The GPU smoke check (`gpu_smoke`) uses it to time the student's GRPO steps on a box with no model
for a real judge, and the rate-limit benchmark (`ratelimit`) uses it as the upstream behind the latency proxy. In: a
chat request. Out, chosen by the request's JSON schema (the form the kit's clients ask in first):
- a rubric schema (`criteria`): `n_criteria` criteria (clamped into the schema's minItems..maxItems), generic texts
  with no numbers in them (so `rubrics.ungrounded_numbers` has nothing to reject), points 1-5;
- a verdict schema (`answers`): exactly the schema's dimensions, each judgement a bit of the sha256 of the request,
  so a re-sent request gets the same verdicts and different groups get different rewards (a GRPO step with
  non-zero advantages, hence a real backward pass);
- anything else (teacher references, a plain-text fallback): a short worked answer ending in `Answer: <n>`.

Why made up and not recorded: the Rubricator's and the Verifier's prompts quote the group's rollouts, and a student
sampled on another machine (or from random weights) never writes the same rollouts twice, so a recorded reply would
never be asked for again. The run-time cost of the judge is then nil, which is what a student benchmark wants.

    with StubJudge() as judge:
        config.teacher.base_url = judge.base_url   # model "stub-judge", any API key
    judge.requests, judge.events                    # chat requests seen, with their arrival times
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

STUB_MODEL = "stub-judge"

# Generic criteria with no digits: they are valid for any task and never trip the grounding check.
_CRITERIA = (
    ("States a final answer on its own last line.", "format"),
    ("Each operation of the problem is written out as a calculation.", "reasoning"),
    ("The operations are applied in the order the problem gives them.", "reasoning"),
    ("The final answer follows from the calculations shown.", "correctness"),
    ("Uses no quantity that the problem does not mention.", "correctness"),
    ("Keeps the explanation short and on topic.", "style"),
)


@dataclass
class StubEvent:
    """One chat request as the stub saw it."""

    index: int
    kind: str  # "rubric" | "verdicts" | "text"
    t: float  # time.monotonic() at arrival


def _schema(body: dict) -> dict | None:
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
        return schema if isinstance(schema, dict) else None
    return None


def _bits(seed: bytes, n: int) -> list[bool]:
    out: list[bool] = []
    counter = 0
    while len(out) < n:
        digest = hashlib.sha256(seed + counter.to_bytes(4, "big")).digest()
        out.extend(bool(byte >> k & 1) for byte in digest for k in range(8))
        counter += 1
    return out[:n]


def stub_reply(body: dict, *, n_criteria: int = 4) -> tuple[str, str]:
    """(kind, completion text) for one chat request body; deterministic in the body."""
    schema = _schema(body) or {}
    props = schema.get("properties") or {}
    seed = hashlib.sha256(json.dumps(body.get("messages"), sort_keys=True).encode()).digest()
    if "criteria" in props:
        spec = props["criteria"]
        n = max(int(spec.get("minItems") or 1), min(int(spec.get("maxItems") or 12), n_criteria))
        points = (spec.get("items") or {}).get("properties", {}).get("points", {}).get("enum") or [1, 2, 3, 4, 5]
        positive = [p for p in points if p > 0] or [1]
        criteria = [
            {"id": f"c{k + 1}", "text": _CRITERIA[k % len(_CRITERIA)][0], "category": _CRITERIA[k % len(_CRITERIA)][1],
             "points": positive[(len(positive) - 1 - k) % len(positive)]}
            for k in range(n)
        ]
        return "rubric", json.dumps({"criteria": criteria})
    if "answers" in props:
        answers = props["answers"]
        n_answers = int(answers.get("minItems") or 1)
        judgement = ((answers.get("items") or {}).get("properties") or {}).get("judgement") or {}
        n_crit = int(judgement.get("minItems") or 1)
        bits = _bits(seed, n_answers * n_crit)
        rows = [{"answer_index": i + 1, "judgement": bits[i * n_crit:(i + 1) * n_crit]} for i in range(n_answers)]
        return "verdicts", json.dumps({"answers": rows})
    number = int.from_bytes(seed[:2], "big") % 100
    return "text", f"Working through the problem one operation at a time.\nAnswer: {number}"


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)  # the limiter's own estimate: usage only has to be plausible


class StubJudge:
    """The server (own thread and event loop). `base_url` ends in /v1; `.events` lists every chat request."""

    def __init__(self, *, model: str = STUB_MODEL, n_criteria: int = 4, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.model = model
        self.n_criteria = n_criteria
        self.host, self._port = host, port
        self.events: list[StubEvent] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        if not self._ready.is_set():
            raise RuntimeError("StubJudge is not running (use it as a context manager or call start())")
        return f"http://{self.host}:{self._port}/v1"

    @property
    def requests(self) -> int:
        with self._lock:
            return len(self.events)

    def counts(self) -> dict[str, int]:
        with self._lock:
            out: dict[str, int] = {}
            for e in self.events:
                out[e.kind] = out.get(e.kind, 0) + 1
            return out

    def start(self) -> "StubJudge":
        self._thread = threading.Thread(target=self._serve, name="stubjudge", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise RuntimeError(f"StubJudge failed to start on {self.host}:{self._port}: {self._error}")
        if not self._ready.is_set():
            raise RuntimeError("StubJudge did not start within 30 s")
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        if self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(30)
        self._loop = self._thread = None
        self._ready.clear()

    def __enter__(self) -> "StubJudge":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

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
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._port, reuse_address=True)
        await site.start()
        self._port = runner.addresses[0][1]
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            await runner.cleanup()

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": self.model, "object": "model",
                                                              "owned_by": "ropd-kit"}]})

    async def _chat(self, request: web.Request) -> web.Response:
        arrived = time.monotonic()
        try:
            body = await request.json()
        except (json.JSONDecodeError, ValueError):
            return web.json_response({"error": {"message": "body is not JSON", "type": "invalid_request_error"}},
                                     status=400)
        kind, text = stub_reply(body, n_criteria=self.n_criteria)
        with self._lock:
            self.events.append(StubEvent(len(self.events), kind, arrived))
        prompt = sum(len(str(m.get("content", ""))) for m in body.get("messages") or [] if isinstance(m, dict))
        usage = {"prompt_tokens": max(1, prompt // 4), "completion_tokens": _tokens(text)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        return web.json_response({
            "id": f"stub-{len(self.events)}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model") or self.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": usage,
        })
