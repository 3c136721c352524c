"""Teacher references and student rollouts against the real local server (SmolLM2-135M)."""

from __future__ import annotations

import socket

import pytest

from ropd_kit import rundir
from ropd_kit.data import Task
from ropd_kit.llm import make_clients
from ropd_kit.rollouts import sample_rollouts
from ropd_kit.teacher import ReferenceIndex, collect_references, failure_count, texts_by_task

pytestmark = pytest.mark.integration

TASKS = [
    Task(id="bake", prompt="Maya bakes 12 cookies and eats 3. Then she bakes twice as many as she has. How many "
         "cookies does she have now?", answer="27", domain="arith"),
    Task(id="bus", prompt="A bus has 20 passengers. 5 get off and 8 get on. How many are on the bus?", answer="23",
         domain="arith"),
]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_references_are_collected_then_replayed_without_calls(fast_config, tmp_path):
    clients = make_clients(fast_config)
    try:
        records = collect_references(TASKS, fast_config, clients=clients, run_dir=tmp_path / "run", progress=False)
        first = clients.stats.snapshot()["teacher"]
    finally:
        clients.close()
    assert failure_count(records) == 0 and len(records) == 2 * fast_config.n_teacher_refs
    assert all(r["usage"]["completion_tokens"] > 0 and r["model"] == fast_config.teacher.model for r in records)
    assert first["calls"] == 4
    texts = texts_by_task(records)
    # Each ref is its own sample (distinct sample_index and seed), so the K refs of a task are not copies.
    assert any(len(set(refs)) == len(refs) for refs in texts.values())
    assert rundir.read_jsonl(tmp_path / "run" / rundir.TEACHER_REFS) == records
    index = ReferenceIndex.for_config(fast_config)
    assert len(index) == 4
    index.close()

    # Same model and settings behind another URL (here: nothing listening at all) -> replayed from the index.
    moved = fast_config.model_copy(update={"teacher": fast_config.teacher.model_copy(
        update={"base_url": f"http://127.0.0.1:{_closed_port()}/v1", "timeout_s": 7})})
    clients = make_clients(moved)
    try:
        again = collect_references(TASKS, moved, clients=clients, progress=False)
        assert clients.stats.snapshot()["teacher"]["calls"] == 0
    finally:
        clients.close()
    assert texts_by_task(again) == texts


def test_rollout_groups_have_the_contract_shape(fast_config, tmp_path):
    run_dir = tmp_path / "run"
    clients = make_clients(fast_config)
    try:
        records = sample_rollouts(TASKS, fast_config, clients=clients, step=1, run_dir=run_dir, progress=False)
        # Re-running the step replaces its records (served from the LLM cache) instead of appending duplicates.
        again = sample_rollouts(TASKS, fast_config, clients=clients, step=1, run_dir=run_dir, progress=False)
        hits = clients.stats.snapshot()["student"]["cache_hits"]
    finally:
        clients.close()
    assert [r["finish_reason"] for r in records] == [r["finish_reason"] for r in again], records
    assert hits == sum(r["finish_reason"] in ("stop", "length") for r in records), records
    n = fast_config.n_rollouts
    assert [(r["task_id"], r["rollout_idx"]) for r in records] == [(t.id, i) for t in TASKS for i in range(n)]
    for r in records:
        assert r["step"] == 1 and r["error"] is None and r["text"]
        assert 0 < r["n_tokens"] <= fast_config.rollout_max_tokens
        assert r["truncated"] is (r["finish_reason"] == "length")
        if r["truncated"]:
            assert r["n_tokens"] == fast_config.rollout_max_tokens
    assert rundir.read_jsonl(run_dir / rundir.ROLLOUTS) == again
