"""Shared fixtures: one real llama-server with SmolLM2-135M for the whole session, and small run configs on it.

`make test` builds the server binary and installs SmolLM2 before pytest starts; when they are missing anyway (a bare
`pytest` on a fresh checkout) the fixture builds/installs them rather than skipping, so a green run always means
the integration tests really ran.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ropd_kit.config import FAST_MODEL, EndpointConfig, RunConfig

ROLES = ("teacher", "rubricator", "verifier", "student")


@pytest.fixture(scope="session")
def local_server():
    """A running LocalServer serving SmolLM2 under the id "smollm2-135m-instruct", 4 parallel slots, 1 thread."""
    from ropd_kit.offline import models, serve

    serve.server_binary()  # builds when missing or stale (about 860 CPU-seconds of compiling)
    models.install(FAST_MODEL)
    # One thread: llama.cpp's worker threads meet at a barrier after every op, so on a 2-core machine shared with
    # other jobs two threads thrash (SmolLM2 measured 3 tok/s with 2 threads vs 55 tok/s with 1 under load).
    with serve.LocalServer(FAST_MODEL, parallel=4, threads=1) as server:
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
