"""serve.py against the real llama-server and SmolLM2: lifecycle, JSON-schema output, concurrency, failures."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import jsonschema
import pytest
from openai import AsyncOpenAI, OpenAI

from ropd_kit.offline import models, serve
from ropd_kit.config import FAST_MODEL, EndpointConfig, RunConfig
from ropd_kit.offline.serve import LocalServer, ServerError, local_endpoints

pytestmark = pytest.mark.integration

RUBRIC_LIKE = {
    "type": "object",
    "properties": {
        "criteria": {
            "type": "array",
            "minItems": 1,
            "maxItems": 3,
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "string", "maxLength": 4},
                    "text": {"type": "string", "maxLength": 80},
                    "points": {"type": "integer", "minimum": 1, "maximum": 5},
                },
                "required": ["id", "text", "points"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["criteria"],
    "additionalProperties": False,
}


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie still answers kill(0) until reaped; stop() reaps, so anything left here is a real process.
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().split(")")[-1].split()[0] == "Z"


def _client(server: LocalServer) -> OpenAI:
    # Generous timeout: on a 2-core machine shared with other jobs SmolLM2 can drop to a few tokens per second.
    return OpenAI(base_url=server.base_url, api_key="not-needed", max_retries=0, timeout=600)


def test_start_and_stop_leave_nothing_behind():
    server = LocalServer(FAST_MODEL, parallel=1)
    with server:
        pid, port, log_dir = server.pid, server.port, server.log_path.parent
        assert server.running and _port_open(port)
        assert server.base_url == f"http://127.0.0.1:{port}/v1"
        models_list = json.load(urllib.request.urlopen(server.base_url + "/models", timeout=5))
        assert [m["id"] for m in models_list["data"]] == ["smollm2-135m-instruct"]
    assert not server.running
    assert _process_gone(pid)
    assert not _port_open(port)
    assert not log_dir.exists()  # a cleanly stopped server's own temporary log is removed
    server.stop()  # stopping twice is harmless


def test_chat_returns_text_usage_and_the_registry_model_id(local_server):
    reply = _client(local_server).chat.completions.create(
        model=local_server.model_id,
        messages=[{"role": "user", "content": "What is 2+3? Answer with a number."}],
        temperature=0,
        max_tokens=16,
    )
    assert reply.model == "smollm2-135m-instruct"
    assert reply.choices[0].message.content.strip()
    assert reply.usage.prompt_tokens > 5 and 0 < reply.usage.completion_tokens <= 16


def test_json_schema_response_format_yields_valid_json(local_server):
    reply = _client(local_server).chat.completions.create(
        model=local_server.model_id,
        messages=[{"role": "user", "content": "Write a short grading rubric for answers to 'what is 17*23?'."}],
        temperature=0.7,
        max_tokens=600,
        seed=3,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "rubric", "strict": True, "schema": RUBRIC_LIKE},
        },
    )
    # maxItems, maxLength and the grammar's bounded whitespace make the JSON close well within 600 tokens.
    assert reply.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(reply.choices[0].message.content), RUBRIC_LIKE)


def test_same_seed_same_sample_at_temperature_one(local_server):
    client = _client(local_server)

    def sample(seed: int) -> str:
        return client.chat.completions.create(
            model=local_server.model_id,
            messages=[{"role": "user", "content": "Invent a name for a new fruit and describe its taste."}],
            temperature=1.0,
            max_tokens=40,
            seed=seed,
        ).choices[0].message.content

    first = sample(1234)
    assert sample(1234) == first
    assert sample(4321) != first


def test_parallel_slots_serve_concurrent_requests(local_server):
    """Four requests at once: all answered, and the server reports several slots busy at the same moment."""
    client = AsyncOpenAI(base_url=local_server.base_url, api_key="not-needed", max_retries=0, timeout=600)
    slots_url = local_server.base_url.removesuffix("/v1") + "/slots"
    busy_seen: list[int] = []

    async def ask(i: int):
        return await client.chat.completions.create(
            model=local_server.model_id,
            messages=[{"role": "user", "content": f"Count from {i} to {i + 60}, one number per line."}],
            temperature=0,
            max_tokens=64,
            extra_body={"ignore_eos": True},  # keep every slot busy for the whole 64 tokens
        )

    async def watch_slots(done: asyncio.Event):
        while not done.is_set():
            slots = await asyncio.to_thread(lambda: json.load(urllib.request.urlopen(slots_url, timeout=5)))
            busy_seen.append(sum(bool(s.get("is_processing")) for s in slots))
            await asyncio.sleep(0.05)

    async def main():
        done = asyncio.Event()
        watcher = asyncio.create_task(watch_slots(done))
        try:
            return await asyncio.gather(*(ask(i) for i in range(4)))
        finally:
            done.set()
            await watcher
            await client.close()

    replies = asyncio.run(main())
    assert [r.usage.completion_tokens for r in replies] == [64] * 4
    assert max(busy_seen) >= 2, f"slots never overlapped: {busy_seen}"


def test_a_file_that_is_not_a_model_fails_fast_with_the_log(tmp_path):
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"GGUF" + b"\x00" * 4096)
    server = LocalServer(str(bogus), parallel=1, startup_timeout_s=120, log_path=tmp_path / "bogus.log")
    with pytest.raises(ServerError, match=r"exited with code \S+ while starting") as info:
        server.start()
    assert "bogus.gguf" in str(info.value)
    assert "$ " in str(info.value)  # the tail of the log (it starts with the command line) is in the message
    assert not server.running


def test_a_server_that_dies_is_reported_with_its_log(tmp_path):
    log = tmp_path / "server.log"
    with LocalServer(FAST_MODEL, parallel=1, log_path=log) as server:
        server.ensure_alive()
        os.kill(server.pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while server.running and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(ServerError, match=r"exited with code -9") as info:
            server.ensure_alive()
        assert "llama-server" in str(info.value) and str(log) in str(info.value)
    assert log.is_file()  # a log the caller named is never deleted


def test_server_dies_with_the_process_that_started_it(tmp_path):
    """A killed notebook kernel (SIGKILL: no atexit, no __exit__) must not leave its server running."""
    code = (
        "import time\n"
        "from ropd_kit.offline.serve import LocalServer\n"
        f"server = LocalServer('smollm2', parallel=1, log_path={str(tmp_path / 'server.log')!r}).start()\n"
        "print(server.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        server_pid = int(owner.stdout.readline())
    finally:
        owner.kill()
        owner.wait()
    deadline = time.monotonic() + 60
    while not _process_gone(server_pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _process_gone(server_pid)


def test_startup_timeout_names_the_limit_and_kills_the_process(tmp_path):
    server = LocalServer(FAST_MODEL, parallel=1, startup_timeout_s=0.01, log_path=tmp_path / "server.log")
    with pytest.raises(ServerError, match="did not become ready"):
        server.start()
    assert not server.running


def test_local_endpoints_share_one_server_per_model_file(tmp_path):
    student_file = tmp_path / "student-copy.gguf"
    shutil.copyfile(models.install(FAST_MODEL, progress=False), student_file)
    local = EndpointConfig(model="smollm2")
    remote = EndpointConfig(base_url="http://example.invalid/v1", model="big", api_key_env="SOME_KEY")
    config = RunConfig(
        teacher=local, rubricator=local.model_copy(update={"timeout_s": 30.0}), verifier=remote,
        student=EndpointConfig(model=str(student_file)),
        server_parallel=2,  # server_ctx_size None: sized from the config's sizes
    )
    with local_endpoints(config) as resolved:
        assert resolved.teacher.base_url == resolved.rubricator.base_url != resolved.student.base_url
        assert resolved.teacher.model == "smollm2-135m-instruct"
        assert resolved.student.model == "student-copy"
        assert resolved.verifier == remote
        # A local server's queue: the default timeout is stretched and no more requests go out than it has slots;
        # a timeout the config chose stays.
        assert (resolved.teacher.timeout_s, resolved.teacher.max_concurrency) == (serve.LOCAL_TIMEOUT_S, 2)
        assert (resolved.rubricator.timeout_s, resolved.student.timeout_s) == (30.0, serve.LOCAL_TIMEOUT_S)
        for endpoint in (resolved.teacher, resolved.student):
            ids = [m.id for m in OpenAI(base_url=endpoint.base_url, api_key="x").models.list().data]
            assert ids == [endpoint.model]
        ports = {int(e.base_url.rsplit(":", 1)[1].split("/")[0]) for e in (resolved.teacher, resolved.student)}
    assert config.teacher.base_url == "local"  # the caller's config is not modified
    assert not any(_port_open(p) for p in ports)


def test_kernel_servers_stop_all_but_the_ones_a_config_still_calls(tmp_path):
    # A batch keeps the teacher's server for the next notebook and stops the student's, which that notebook does not
    # call: the servers of the kept roles go on serving at the same address, the others are gone.
    from ropd_kit.notebook_tools.servers import resolve_endpoints, stop_servers

    student_file = tmp_path / "student-copy.gguf"
    shutil.copyfile(models.install(FAST_MODEL, progress=False), student_file)
    config = RunConfig(teacher=EndpointConfig(model="smollm2"), rubricator=EndpointConfig(model="smollm2"),
                       verifier=EndpointConfig(model="smollm2"), student=EndpointConfig(model=str(student_file)),
                       server_parallel=1)
    try:
        resolved = resolve_endpoints(config)
        port = {r: int(resolved.endpoint(r).base_url.rsplit(":", 1)[1].split("/")[0]) for r in ("teacher", "student")}
        assert port["teacher"] != port["student"]
        assert stop_servers(keep=config, roles=("teacher", "verifier")) == 1
        assert _port_open(port["teacher"]) and not _port_open(port["student"])
        again = resolve_endpoints(config, roles=("teacher",))
        assert again.teacher.base_url == resolved.teacher.base_url  # the kept one is reused, not restarted
    finally:
        stopped = stop_servers()
    assert stopped == 1 and not _port_open(port["teacher"])


def test_cli_run_serves_until_interrupted(sigint_default):
    proc = subprocess.Popen(
        [sys.executable, "-m", "ropd_kit.offline.serve", "run", "smollm2", "--parallel", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=sigint_default,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving smollm2-135m-instruct at http://127.0.0.1:"), line + proc.stderr.read()
        base_url = line.split(" at ")[1].split()[0]
        port = int(base_url.rsplit(":", 1)[1].split("/")[0])
        assert _port_open(port)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        deadline = time.monotonic() + 10
        while _port_open(port) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _port_open(port)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_stamp_from_other_flags_or_another_cpu_means_rebuild(tmp_path, monkeypatch):
    from ropd_kit.offline import serve

    monkeypatch.setenv("ROPD_CACHE", str(tmp_path))
    serve.binary_path().parent.mkdir(parents=True)
    serve.binary_path().write_bytes(b"#!/bin/sh\n")
    stamp = serve._wanted_stamp()
    serve._stamp_path().write_text(json.dumps(stamp))
    assert serve.is_built()
    serve._stamp_path().write_text(json.dumps({**stamp, "cmake_flags": stamp["cmake_flags"][:-1]}))
    assert not serve.is_built()
    serve._stamp_path().write_text(json.dumps({**stamp, "cpu": "another-cpu"}))
    assert not serve.is_built()
    # The per-target optimisation levels are build flags too: a stamp from before them (or other levels) rebuilds.
    serve._stamp_path().write_text(json.dumps({k: v for k, v in stamp.items() if k != "cold_targets"}))
    assert not serve.is_built()
    serve._stamp_path().write_text(json.dumps({**stamp, "cold_targets": {**stamp["cold_targets"], "mtmd": "-O3"}}))
    assert not serve.is_built()


def test_the_cold_targets_script_sets_each_level_and_forgets_old_ones(tmp_path, monkeypatch):
    from ropd_kit.offline import serve

    monkeypatch.setattr(serve, "COLD_TARGETS", {"mtmd": "-O0", "llama-common": "-O1"})
    (flag,) = serve._cold_targets_flag(tmp_path / "build-llama")
    script = tmp_path / "build-llama-cold-targets.cmake"
    assert flag == f"-DCMAKE_PROJECT_INCLUDE={script}"
    text = script.read_text()
    assert "target_compile_options(mtmd PRIVATE -O0)" in text
    assert "target_compile_options(llama-common PRIVATE -O1)" in text
    assert "cmake_language(DEFER CALL ropd_cold_targets)" in text
    monkeypatch.setattr(serve, "COLD_TARGETS", {})
    assert serve._cold_targets_flag(tmp_path / "build-llama") == [flag]  # still passed, so the old list is dropped
    assert "target_compile_options" not in script.read_text()
