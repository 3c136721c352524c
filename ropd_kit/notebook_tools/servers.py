"""Local servers for the notebooks, started once per kernel: endpoints whose base_url is "local" resolved to
a running llama-server, and the endpoint table each notebook shows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from ..config import RunConfig

if TYPE_CHECKING:  # heavy imports stay inside the functions that need them
    import pandas as pd


ROLES = ("teacher", "rubricator", "verifier", "student")
# ---------------------------------------------------------------------------------------------------------------
# Local servers, started once per kernel


_SERVERS: dict[tuple, Any] = {}


def resolve_endpoints(config: RunConfig, roles: Sequence[str] = ROLES) -> RunConfig:
    """A copy of `config` whose `base_url="local"` endpoints (of `roles`) point at running llama-servers.

    Unlike `serve.local_endpoints`, the servers stay up for the whole kernel (stopped at exit, or by
    `stop_servers()`), so stepping through a notebook cell by cell does not reload a model for every cell.
    Roles that name the same model share one server. Endpoints with a real URL are returned unchanged.
    """
    from ..offline.serve import LocalServer, served_endpoint

    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise ValueError(f"resolve_endpoints: unknown role(s) {unknown}; roles are {ROLES}")
    updates = {}
    for role in roles:
        endpoint = config.endpoint(role)
        if not endpoint.is_local:
            continue
        key = _server_key(config, role)
        ctx_size = key[2]
        server = _SERVERS.get(key)
        if server is None or not server.running:
            server = LocalServer(endpoint.model, parallel=config.server_parallel, ctx_size=ctx_size,
                                 threads=config.server_threads).start()  # start() registers the stop at exit
            _SERVERS[key] = server
        updates[role] = served_endpoint(endpoint, server)
    return config.model_copy(update=updates)


def _server_key(config: RunConfig, role: str) -> tuple:
    """What tells one local server from another: the model file, its slots, context size and threads. The context
    is sized over every local role of the config, not just the ones resolved, so that notebooks resolving
    different roles of one config share a model's server."""
    from ..offline.models import served_gguf
    from ..offline.serve import server_ctx_size

    _, gguf = served_gguf(config.endpoint(role).model)
    return (str(gguf.resolve()), config.server_parallel, server_ctx_size(config), config.server_threads)


def stop_servers(keep: RunConfig | None = None, roles: Sequence[str] = ROLES) -> int:
    """Stop the servers `resolve_endpoints` started in this kernel; returns how many were running. With `keep`, the
    servers its local `roles` would use stay up (a batch stops only those its next notebook does not call)."""
    kept = {_server_key(keep, r) for r in roles if keep.endpoint(r).is_local} if keep is not None else set()
    stopped = 0
    for key, server in list(_SERVERS.items()):
        if key in kept:
            continue
        if server.running:
            server.stop()
            stopped += 1
        del _SERVERS[key]
    return stopped


ENDPOINT_LIMITS = ("max_concurrency", "requests_per_minute", "tokens_per_minute", "usd_per_mtok_input",
                   "usd_per_mtok_output")


def endpoint_table(config: RunConfig) -> "pd.DataFrame":
    """Role, base_url, model and key variable NAME of each endpoint (never the key), its limits and prices ("—":
    no limit, no price table), and a last row for the models loaded in this process (the trained student, the
    white-box teacher) with the dtype they load in and why."""
    import pandas as pd

    from ..train.student import choose_dtype

    def limits(endpoint: Any) -> dict[str, Any]:
        return {name: "—" if getattr(endpoint, name) is None else getattr(endpoint, name) for name in ENDPOINT_LIMITS}

    rows = [
        {"role": r, "base_url": config.endpoint(r).base_url, "model": config.endpoint(r).model,
         "api_key_env": config.endpoint(r).api_key_env, **limits(config.endpoint(r)), "dtype": ""}
        for r in ROLES
    ]
    dtype, why = choose_dtype(config.student_dtype)
    rows.append({"role": "student (trained) + white-box teacher", "base_url": "in process",
                 "model": f"{config.student_model} + {config.lopd_teacher_model}", "api_key_env": None,
                 **{name: "" for name in ENDPOINT_LIMITS}, "dtype": f"{dtype} ({why})"})
    return pd.DataFrame(rows)
