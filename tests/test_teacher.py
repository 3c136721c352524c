"""Teacher references without a server: the reference index key, replay, and failures as counted records.

The client here is a real `LLMClient` aimed at a closed local port, so any call it makes fails for real
(connection refused) instead of through a fake.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from ropd_kit.config import EndpointConfig, RunConfig
from ropd_kit.data import Task
from ropd_kit.llm import LLMClient, UsageStats
from ropd_kit.rollouts import rollouts_by_task, sample_rollouts_async, student_messages
from ropd_kit.teacher import (
    ReferenceIndex,
    collect_references,
    collect_references_async,
    failure_count,
    load_prompt,
    teacher_messages,
    texts_by_task,
)

TASKS = [Task(id="t1", prompt="What is 6 * 7?", answer="42", domain="arith"),
         Task(id="t2", prompt="What is 10 - 3?", answer="7", domain="arith")]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(tmp_path, **overrides) -> RunConfig:
    dead = EndpointConfig(base_url=f"http://127.0.0.1:{_closed_port()}/v1", model="teacher-x", max_retries=0,
                          timeout_s=5)
    return RunConfig(ref_index_dir=str(tmp_path / "refs"), cache_dir=str(tmp_path / "llm"), teacher=dead,
                     student=dead.model_copy(update={"model": "student-x"}), n_teacher_refs=2, **overrides)


def _run(coro_factory, client: LLMClient):
    async def go():
        try:
            return await coro_factory()
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_index_key_ignores_endpoint_plumbing_but_not_generation_settings(tmp_path):
    config = _config(tmp_path)
    key = ReferenceIndex.key("What is 6 * 7?", config, 0)
    moved = config.model_copy(update={"teacher": config.teacher.model_copy(
        update={"base_url": "https://elsewhere.example/v1", "timeout_s": 999, "max_retries": 9})})
    assert ReferenceIndex.key("  What is 6 *\n7? ", moved, 0) == key  # URL, timeout, whitespace: same key
    changed = [
        ReferenceIndex.key("What is 6 * 8?", config, 0),
        ReferenceIndex.key("What is 6 * 7?", config, 1),
        ReferenceIndex.key("What is 6 * 7?", config.model_copy(update={"teacher_temperature": 0.2}), 0),
        ReferenceIndex.key("What is 6 * 7?", config.model_copy(update={"teacher_top_p": 0.5}), 0),
        ReferenceIndex.key("What is 6 * 7?", config.model_copy(update={"teacher_max_tokens": 99}), 0),
        ReferenceIndex.key("What is 6 * 7?", config.model_copy(update={"teacher_prompt_version": "v2"}), 0),
        ReferenceIndex.key("What is 6 * 7?", config.model_copy(
            update={"teacher": config.teacher.model_copy(update={"model": "other"})}), 0),
    ]
    assert len({key, *changed}) == len(changed) + 1


def test_index_round_trip_and_refuses_failures(tmp_path):
    index = ReferenceIndex(tmp_path / "idx")
    assert len(index) == 0 and "k" not in index and index.get("k") is None
    index.put("k", {"text": "6 * 7 = 42\nAnswer: 42", "model": "m", "usage": {"completion_tokens": 9},
                    "task_id": "not stored"})
    assert "k" in index and len(index) == 1
    assert index.get("k") == {"text": "6 * 7 = 42\nAnswer: 42", "model": "m", "usage": {"completion_tokens": 9}}
    with pytest.raises(ValueError, match="only successful"):
        index.put("bad", {"text": None, "model": "m"})
    index.close()
    assert ReferenceIndex(tmp_path / "idx").get("k")["model"] == "m"  # persisted on disk


def test_failures_are_records_and_are_not_indexed(tmp_path):
    config = _config(tmp_path)
    index = ReferenceIndex.for_config(config)
    client = LLMClient(config.teacher, "teacher", None, UsageStats())
    records = _run(lambda: collect_references_async(TASKS, client, config, index, progress=False), client)
    assert [(r["task_id"], r["ref_idx"]) for r in records] == [("t1", 0), ("t1", 1), ("t2", 0), ("t2", 1)]
    assert all(r["text"] is None and r["error"].startswith("connection") for r in records)
    assert failure_count(records) == 4 and texts_by_task(records) == {}
    assert len(index) == 0
    assert client.stats.snapshot()["teacher"]["failures"] == 4


def test_replay_from_index_makes_no_call(tmp_path):
    config = _config(tmp_path)
    index = ReferenceIndex.for_config(config)
    for task in TASKS:
        for k in range(config.n_teacher_refs):
            index.put(ReferenceIndex.key(task.prompt, config, k),
                      {"text": f"ref {k} of {task.id}", "model": "teacher-x", "usage": {"completion_tokens": 3}})
    client = LLMClient(config.teacher, "teacher", None, UsageStats())
    records = _run(lambda: collect_references_async(TASKS, client, config, index, progress=False), client)
    assert client.stats.snapshot()["teacher"]["calls"] == 0
    assert texts_by_task(records) == {"t1": ["ref 0 of t1", "ref 1 of t1"], "t2": ["ref 0 of t2", "ref 1 of t2"]}
    assert all(r["model"] == "teacher-x" and r["error"] is None for r in records)


def test_sync_wrapper_replays_without_a_server_and_writes_the_run_file(tmp_path):
    from ropd_kit import rundir

    # A "local" teacher would start llama-server; with every ref in the index none is started.
    config = _config(tmp_path).model_copy(update={"teacher": EndpointConfig(model="teacher-x")})
    index = ReferenceIndex.for_config(config)
    for task in TASKS:
        for k in range(2):
            index.put(ReferenceIndex.key(task.prompt, config, k), {"text": "x", "model": "teacher-x", "usage": {}})
    index.close()
    records = collect_references(TASKS, config, run_dir=tmp_path / "run", progress=False)
    assert len(records) == 4 and failure_count(records) == 0
    assert rundir.read_jsonl(tmp_path / "run" / rundir.TEACHER_REFS) == records


def test_prompts_put_the_task_last_and_ask_for_an_answer_line():
    for messages in (teacher_messages(TASKS[0], RunConfig()), student_messages(TASKS[0])):
        assert [m["role"] for m in messages] == ["system", "user"]
        assert messages[1]["content"] == TASKS[0].prompt
        assert "Answer: <final answer>" in messages[0]["content"]
    assert teacher_messages(TASKS[0])[0]["content"] == load_prompt("teacher_system.txt")


def test_rollout_failures_are_records(tmp_path):
    config = _config(tmp_path, n_rollouts=3)
    client = LLMClient(config.student, "student", None, UsageStats())
    records = _run(lambda: sample_rollouts_async(TASKS[:1], client, config, step=2), client)
    assert [(r["task_id"], r["step"], r["rollout_idx"]) for r in records] == [("t1", 2, 0), ("t1", 2, 1), ("t1", 2, 2)]
    assert all(r["text"] is None and r["n_tokens"] is None and r["error"] for r in records)
    assert rollouts_by_task(records) == {}
