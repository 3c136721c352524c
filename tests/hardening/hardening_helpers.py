"""Shared helpers of the hardening suite (imported by its test modules and its conftest)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from ropd_kit.config import FAST_MODEL, EndpointConfig, RunConfig

ROLES = ("teacher", "rubricator", "verifier", "student")

# Three arithmetic tasks in the shipped format: enough for groups that differ, small enough for 2 cores.
TASKS = [
    {"id": "t-cookies", "prompt": "Maya bakes 24 cookies and then 12 more. She packs them equally into 4 boxes. "
     "How many cookies are in each box?", "answer": "9", "domain": "arith"},
    {"id": "t-stamps", "prompt": "Liam has 15 stamps. He buys 3 packs of 5 stamps. How many stamps does he have "
     "now?", "answer": "30", "domain": "arith"},
    {"id": "t-apples", "prompt": "A crate holds 40 apples. 8 are bruised and thrown away, and the rest are shared "
     "equally among 4 classes. How many apples does each class get?", "answer": "8", "domain": "arith"},
]


def served_model(server: Any) -> str:
    return getattr(server, "model_id", None) or FAST_MODEL


def endpoint(base_url: str, server: Any, **overrides: Any) -> EndpointConfig:
    fields = {"base_url": base_url, "model": served_model(server), "max_retries": 2, "timeout_s": 60.0}
    fields.update(overrides)
    return EndpointConfig(**fields)


def write_tasks(path: Path, rows: list[dict] = TASKS) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def tiny_config(server: Any, root: Path, base: RunConfig | None = None) -> RunConfig:
    """Tiny sizes, every role on `server`, run dir / LLM cache / reference index / tasks file under `root`."""
    base = base if base is not None else RunConfig()
    return base.model_copy(
        update={
            **{role: endpoint(server.base_url, server) for role in ROLES},
            "run_dir": str(root / "run"),
            "cache_dir": str(root / "llm-cache"),
            "ref_index_dir": str(root / "refs"),
            "tasks_path": str(write_tasks(root / "tasks.jsonl")),
            "n_tasks": None,
            "n_teacher_refs": 2,
            "n_rollouts": 2,
            "teacher_max_tokens": 48,
            "rollout_max_tokens": 32,
            "rubricator_max_tokens": 256,
            "verifier_max_tokens": 192,
            "min_criteria": 1,
            "max_criteria": 4,
            "rubric_student_samples": 2,
            "rubric_attempts": 2,
            "verify_attempts": 2,
            "server_parallel": 4,
            "student_model": FAST_MODEL,
            "lopd_teacher_model": FAST_MODEL,
        }
    )


def through(config: RunConfig, base_url: str, **endpoint_fields: Any) -> RunConfig:
    """`config` with every role's endpoint pointed at `base_url` (a FaultProxy), other fields overridden."""
    updates = {
        role: config.endpoint(role).model_copy(update={"base_url": base_url, **endpoint_fields}) for role in ROLES
    }
    return config.model_copy(update=updates)


def run(coro):
    return asyncio.run(coro)


def cache_texts(directory: str | Path) -> list[str]:
    """Every completion text stored in an LLM cache directory (read with diskcache itself, not through LLMCache)."""
    import diskcache

    with diskcache.Cache(str(directory)) as cache:
        out = []
        for key in cache.iterkeys():
            value = cache.get(key)
            if isinstance(key, str) and key.startswith("chat:") and isinstance(value, dict):
                out.append(value.get("text"))
        return out
