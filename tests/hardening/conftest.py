"""Fixtures of the hardening suite: the real local server (SmolLM2), a fault proxy in front of it, small configs.

The session server is `local_server` from tests/conftest.py when that exists; otherwise this suite starts its own
SmolLM2 server, so the suite also runs on its own (`pytest tests/hardening`).
"""

from __future__ import annotations

import pytest
from hardening_helpers import tiny_config

from ropd_kit.config import FAST_MODEL, RunConfig
from ropd_kit.bench.faultproxy import FaultProxy


@pytest.fixture(scope="session")
def server(request):
    try:
        yield request.getfixturevalue("local_server")
        return
    except pytest.FixtureLookupError:
        pass
    from ropd_kit.offline.serve import LocalServer

    with LocalServer(FAST_MODEL, parallel=4, threads=1) as own:  # one thread: two thrash on a shared 2-core box
        yield own


@pytest.fixture
def small_config(request, tmp_path, server) -> RunConfig:
    """Tiny sizes, every role on the local server, run dir / LLM cache / reference index inside tmp_path.

    Built on `fast_config` from tests/conftest.py when it exists (so the suite follows the shared test sizes),
    with this suite's own paths and sizes on top.
    """
    try:
        base: RunConfig | None = request.getfixturevalue("fast_config")
    except pytest.FixtureLookupError:
        base = None
    return tiny_config(server, tmp_path, base)


@pytest.fixture
def proxy(server):
    """A FaultProxy in front of the session server; tests push faults into its schedule."""
    with FaultProxy(server.base_url, retry_after_s=2) as p:
        yield p
