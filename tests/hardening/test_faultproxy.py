"""The fault proxy itself: which requests it treats as verifier requests, the verdicts it corrupts, its command line.

The pure parts run in memory; the command line and latency run against the real local server.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ropd_kit.config import RunConfig
from ropd_kit.bench.faultproxy import FaultProxy, is_verifier_request, wrong_length_verdicts
from ropd_kit.rubrics import RUBRIC_SCHEMA, rubric_messages
from ropd_kit.verify import parse_verdicts, verdict_schema, verifier_messages

REPO = Path(__file__).resolve().parents[2]
FAKE_VERDICTS = '{"answers": [{"answer_index": 1, "judgement": [true, true]}]}'


def _request(messages, schema=None):
    body = {"model": "m", "messages": messages}
    if schema is not None:
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    return body


def test_verifier_requests_are_recognised_with_and_without_a_schema():
    messages = verifier_messages("What is 2+2?", ["Says 4."], ["4", "5"], "b0undary")
    assert is_verifier_request(_request(messages, verdict_schema(2, 1)))
    assert is_verifier_request(_request(messages))  # JSON-object / plain mode: our system prompt tells


def test_rubricator_request_quoting_fake_verdicts_is_not_a_verifier_request():
    messages = rubric_messages("What is 2+2?", ["4"], [FAKE_VERDICTS + " answer_index judgement"], RunConfig())
    assert not is_verifier_request(_request(messages, RUBRIC_SCHEMA))
    assert not is_verifier_request(_request(messages))


@pytest.mark.parametrize("n_answers,n_criteria", [(1, 1), (3, 4), (12, 2)])
def test_wrong_length_verdicts_always_fail_the_parser(n_answers, n_criteria):
    good = json.dumps({"answers": [{"answer_index": i + 1, "judgement": [True] * n_criteria}
                                   for i in range(n_answers)]})
    body = _request([], verdict_schema(n_answers, n_criteria))
    for upstream in (good, "not json at all", ""):
        bad = wrong_length_verdicts(upstream, body)
        with pytest.raises(ValueError, match="judgement"):
            parse_verdicts(bad, n_answers, n_criteria)
        first = json.loads(bad)["answers"][0]["judgement"]
        assert len(first) == n_criteria - 1  # exactly one judgement missing
    assert len(json.loads(wrong_length_verdicts("", _request([])))["answers"][0]["judgement"]) == 0


def test_unknown_fault_names_are_refused():
    with pytest.raises(ValueError, match="unknown fault"):
        FaultProxy("http://127.0.0.1:9/v1", schedule=["418"])
    with pytest.raises(ValueError, match="fault_rate"):
        FaultProxy("http://127.0.0.1:9/v1", fault_rate=1.5)


def test_random_faults_are_reproducible_from_the_seed():
    def draws(seed):
        proxy = FaultProxy("http://127.0.0.1:9/v1", seed=seed, fault_rate=0.5)
        return [proxy._choose(verifier=i % 3 == 0) for i in range(200)]

    assert draws(7) == draws(7) and draws(7) != draws(8)
    picked = draws(7)
    assert 60 < sum(f is not None for f in picked) < 140
    assert all(f != "wrong_length" for i, f in enumerate(picked) if i % 3)  # only verifier requests get it


@pytest.mark.integration
def test_command_line_proxy_with_latency(server, sigint_default):
    proc = subprocess.Popen(
        [sys.executable, "-m", "ropd_kit.bench.faultproxy", "--upstream", server.base_url, "--latency", "0.5"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=sigint_default,
    )
    try:
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        started = time.monotonic()
        with urllib.request.urlopen(base_url + "/models", timeout=60) as response:
            ids = [m["id"] for m in json.load(response)["data"]]
        assert time.monotonic() - started >= 0.5  # the latency is added (a lower bound only)
        assert getattr(server, "model_id", None) in ids
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    assert json.loads(proc.stderr.read().strip().splitlines()[-1])["requests"] == 0  # /models is not a chat request
