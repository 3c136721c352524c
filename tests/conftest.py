"""Shared fixtures: one real llama-server with SmolLM2-135M for the whole session, and small run configs on it.

`make test` builds the server binary and installs SmolLM2 before pytest starts; when they are missing anyway (a bare
`pytest` on a fresh checkout) the fixture builds/installs them rather than skipping, so a green run always means
the integration tests really ran.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from ropd_kit.config import FAST_MODEL, EndpointConfig, RunConfig

ROLES = ("teacher", "rubricator", "verifier", "student")


# llama.cpp threads of the test servers. The suite runs one test at a time and the test process waits while the
# server judges, so the server gets every core (up to 4; a 135M model gains nothing beyond). Measured on the 2-core
# Xeon (8 concurrent rubric-shaped JSON-schema requests to SmolLM2, 4 slots): idle, 77 tok/s with 2 threads vs 45
# with 1; with another process keeping one core busy, 21 vs 55 — llama.cpp's threads wait for each other after
# every op, so run the suite alone (not under pytest-xdist, not beside another job), or set ROPD_TEST_SERVER_THREADS=1.
SERVER_THREADS = int(os.environ.get("ROPD_TEST_SERVER_THREADS") or min(4, os.cpu_count() or 1))


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def sigint_default():
    """A `preexec_fn` for child processes a test stops with SIGINT. A shell that runs a job in the background without
    job control starts it with SIGINT ignored, the ignore survives exec, and Python then never raises
    KeyboardInterrupt: under `nohup make test &` such a child never stopped."""
    return _sigint_default


@pytest.fixture(scope="session")
def server_threads() -> int:
    """SERVER_THREADS, for tests that start a llama-server of their own (in a subprocess, say)."""
    return SERVER_THREADS


@pytest.fixture(scope="session")
def local_server():
    """A running LocalServer serving SmolLM2 under the id "smollm2-135m-instruct", 4 parallel slots."""
    from ropd_kit.offline import models, serve

    serve.server_binary()  # builds when missing or stale (about 860 CPU-seconds of compiling)
    models.install(FAST_MODEL)
    with serve.LocalServer(FAST_MODEL, parallel=4, threads=SERVER_THREADS) as server:
        yield server


@pytest.fixture
def fast_config(tmp_path: Path, local_server) -> RunConfig:
    """Every role on the session server, small sizes, every path inside tmp_path."""
    endpoint = EndpointConfig(base_url=local_server.base_url, model=local_server.model_id, timeout_s=120, max_retries=2)
    return RunConfig(
        run_dir=str(tmp_path / "run"),
        cache_dir=str(tmp_path / "llm-cache"),
        ref_index_dir=str(tmp_path / "teacher-refs"),
        **{role: endpoint.model_copy() for role in ROLES},
        n_teacher_refs=2,
        n_rollouts=3,
        teacher_max_tokens=128,
        rollout_max_tokens=96,
        rubricator_max_tokens=256,
        verifier_max_tokens=256,
        rubric_student_samples=3,
        server_parallel=4,
        student_model=FAST_MODEL,
        lopd_teacher_model=FAST_MODEL,
    )
