"""An API key lives only in its environment variable: a sentinel key, sent on every request of a real pipeline run
through the fault proxy (including a server error that echoes the key back, as careless servers do), must appear in
no exception text, log line, printed output, cache file, reference index or run-directory file.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

import pytest
from hardening_helpers import run, through

from ropd_kit import pipeline
from ropd_kit.config import EndpointConfig
from ropd_kit.llm import LLMClient, LLMError, UsageStats

pytestmark = pytest.mark.integration

KEY_VAR = "ROPD_HARDENING_SENTINEL_KEY"


@pytest.fixture
def sentinel(monkeypatch) -> str:
    value = "sk-ropd-sentinel-" + secrets.token_hex(12)
    monkeypatch.setenv(KEY_VAR, value)
    return value


def _files_containing(root: str | Path, needle: str) -> list[str]:
    hits = []
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            try:
                data = path.read_bytes()
            except OSError:
                continue
            if needle.encode() in data:
                hits.append(str(path))
    return hits


def _chain(exc: BaseException) -> str:
    """Everything an exception carries: message, repr, args, and the same for its cause/context chain."""
    parts, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        parts += [str(exc), repr(exc), repr(exc.args), repr(getattr(exc, "__dict__", {}))]
        exc = exc.__cause__ or exc.__context__
    return "\n".join(parts)


def test_key_echoed_by_the_server_is_not_in_the_error(sentinel, proxy, server, caplog):
    proxy.push("401")
    client = LLMClient(
        EndpointConfig(base_url=proxy.base_url, model="m", api_key_env=KEY_VAR, max_retries=0), "teacher",
        None, UsageStats(),
    )

    async def go():
        try:
            return await client.chat([{"role": "user", "content": "hi"}], temperature=0.0, max_tokens=4)
        finally:
            await client.aclose()

    with caplog.at_level(logging.DEBUG):
        with pytest.raises(LLMError) as info:
            run(go())
    err = info.value
    assert err.kind == "auth"
    assert "Incorrect API key" in str(err)  # the server's message is kept ...
    assert sentinel not in str(err) and sentinel not in repr(err) and sentinel not in repr(err.args)  # ... not the key
    assert sentinel not in caplog.text
    assert sentinel not in repr(client) and sentinel not in repr(client.endpoint)
    # `raise ... from None` hides the SDK's exception from tracebacks but still attaches it as __context__, and
    # that exception (and its .response.request headers) carries the key to anything that walks the chain.
    assert sentinel not in _chain(err), "the LLMError's __context__ still holds the SDK exception with the key"


def test_sentinel_key_leaves_no_trace_in_a_pipeline_run(sentinel, proxy, small_config, caplog, capfd):
    # Two tasks: 4 teacher, 4 student and 2+ rubric requests, more than the five scheduled faults need.
    config = through(small_config, proxy.base_url, api_key_env=KEY_VAR, max_retries=1).model_copy(
        update={"n_tasks": 2})
    # An echoing auth error on the first teacher request, then server errors and a reset along the way.
    proxy.push("401", None, "500", None, "reset")
    with caplog.at_level(logging.DEBUG):
        try:
            summary = pipeline.run_stages(config, progress=False)
        except Exception as exc:  # a crash is another test's business; here only its text matters
            assert sentinel not in _chain(exc)
            summary = None
    out, err = capfd.readouterr()
    assert proxy.injected["401"] == 1
    assert sentinel not in out and sentinel not in err
    assert sentinel not in caplog.text
    if summary is not None:
        assert sentinel not in repr(summary)
    for root in (config.run_dir, config.cache_dir, config.ref_index_dir):
        assert _files_containing(root, sentinel) == [], root
    # The run keeps the variable's name, which is how a reader knows where the key came from.
    assert KEY_VAR in (Path(config.run_dir) / "config.json").read_text()


def test_batch_refuses_a_key_value_as_a_parameter_without_printing_it(sentinel):
    from ropd_kit.redaction import SecretParameterError, check_secrets

    with pytest.raises(SecretParameterError) as info:
        check_secrets({"teacher_base_url": "https://api.example.com/v1", "note": f"key={sentinel}"},
                      env={KEY_VAR: sentinel})
    assert KEY_VAR in str(info.value) and sentinel not in _chain(info.value)
    with pytest.raises(SecretParameterError) as info:
        check_secrets({"teacher_api_key": sentinel}, env={KEY_VAR: sentinel})
    assert sentinel not in _chain(info.value)
