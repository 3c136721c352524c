"""Bad input gives one clear error that names the culprit (file:line:field, the URL, the value) before any expensive
work starts — or, inside training, becomes a judged failure.

The fast tests need no server; the ones marked integration use the real local server (and, for the training entry
points, stop before any model is loaded).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hardening_helpers import TASKS, run, write_tasks

from ropd_kit import pipeline, train
from ropd_kit.config import ConfigError, EndpointConfig, RunConfig
from ropd_kit.data import Task, TaskError, load_tasks
from ropd_kit.llm import LLMClient, LLMError, UsageStats
from ropd_kit.offline.models import ModelError, resolve_model
from ropd_kit.rubrics import Criterion, Rubric, RubricError, parse_rubric
from ropd_kit.scoring import weighted_pass_rate

GOOD = json.dumps(TASKS[0])
UNREACHABLE = "http://127.0.0.1:9/v1"  # the discard port: nothing listens there


def _lines(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "tasks.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    return path


# -- tasks files --------------------------------------------------------------------------------------------------

BAD_TASK_FILES = {
    # name: (lines, pattern the message must match: file:line, field, value)
    "bad_json_line": ([GOOD, '{"id": "t2", "prompt": "What is 2+2?", '], r"tasks\.jsonl:2: not valid JSON"),
    "missing_prompt": ([GOOD, '{"id": "t2", "answer": "4"}'], r"tasks\.jsonl:2: field 'prompt': missing"),
    "prompt_wrong_type": ([GOOD, '{"id": "t2", "prompt": 42}'], r"tasks\.jsonl:2: field 'prompt': .*got 42"),
    "answer_wrong_type": ([GOOD, '{"id": "t2", "prompt": "2+2?", "answer": [4]}'],
                          r"tasks\.jsonl:2: field 'answer': .*got \[4\]"),
    "duplicate_id": ([GOOD, GOOD.replace("Maya", "Mia")], r"tasks\.jsonl:2: field 'id': duplicate id \(first used at "
                     r".*tasks\.jsonl:1.*got 't-cookies'"),
    "not_an_object": ([GOOD, '["t2", "2+2?"]'], r"tasks\.jsonl:2: expected a JSON object"),
    "empty_file": ([], r"tasks\.jsonl: no tasks in file"),
}


@pytest.mark.parametrize("case", sorted(BAD_TASK_FILES))
def test_malformed_tasks_file_names_file_line_field_value(case, tmp_path):
    lines, pattern = BAD_TASK_FILES[case]
    path = _lines(tmp_path, *lines)
    with pytest.raises(TaskError) as info:
        load_tasks(path)
    assert re.search(pattern, str(info.value)), str(info.value)
    assert str(info.value).count("\n") == 0  # one clear line, not a traceback dump


@pytest.mark.parametrize("case", ["bad_json_line", "duplicate_id"])
def test_pipeline_refuses_a_bad_tasks_file_before_writing_anything(case, tmp_path):
    lines, pattern = BAD_TASK_FILES[case]
    config = RunConfig(run_dir=str(tmp_path / "run"), tasks_path=str(_lines(tmp_path, *lines)))
    with pytest.raises(TaskError, match=pattern):
        pipeline.stage_tasks(config)
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


@pytest.mark.parametrize("method", ["ropd", "rlvr"])
def test_training_refuses_a_bad_tasks_file_before_loading_a_model(method, tmp_path):
    lines, pattern = BAD_TASK_FILES["missing_prompt"]
    config = RunConfig(run_dir=str(tmp_path / "run"), tasks_path=str(_lines(tmp_path, *lines)), method=method,
                       **{role: EndpointConfig(base_url=UNREACHABLE) for role in ("teacher", "rubricator", "verifier")})
    with pytest.raises(TaskError, match=pattern):
        train.train(config)
    assert not (tmp_path / "run" / train.CHECKPOINTS).exists()


def test_rlvr_on_tasks_without_answers_names_the_file_and_task(tmp_path):
    rows = [dict(TASKS[0]), {k: v for k, v in TASKS[1].items() if k != "answer"}]
    config = RunConfig(run_dir=str(tmp_path / "run"), tasks_path=str(write_tasks(tmp_path / "t.jsonl", rows)),
                       method="rlvr")
    with pytest.raises(train.TrainError) as info:
        train.train(config)
    message = str(info.value)
    assert "t.jsonl" in message and TASKS[1]["id"] in message and "answer" in message
    assert not (tmp_path / "run" / train.CHECKPOINTS).exists()


# -- models ------------------------------------------------------------------------------------------------------

def test_unknown_model_name_is_named():
    with pytest.raises(ModelError, match=r"unknown model 'no-such-model'"):
        resolve_model("no-such-model")


def test_missing_gguf_path_is_named(tmp_path):
    path = tmp_path / "nowhere" / "student.gguf"
    with pytest.raises(ModelError, match=re.escape(str(path))):
        resolve_model(str(path))


def test_gguf_path_that_is_not_a_gguf_is_named(tmp_path):
    path = tmp_path / "student.gguf"
    path.write_bytes(b"<html>404 not found</html>")
    with pytest.raises(ModelError, match=re.escape(str(path)) + r".*not a GGUF file"):
        resolve_model(str(path))


@pytest.mark.integration
def test_truncated_gguf_fails_the_server_start_with_its_path(tmp_path):
    from ropd_kit.offline.serve import LocalServer, ServerError

    path = tmp_path / "cut.gguf"
    path.write_bytes(b"GGUF" + bytes(60))  # right magic, nothing usable after it
    with pytest.raises((ServerError, ModelError)) as info:
        with LocalServer(str(path), parallel=1, threads=1, startup_timeout_s=60):
            pass
    assert str(path) in str(info.value) or "cut" in str(info.value)


@pytest.mark.parametrize("method", ["rlvr", "ropd"])
def test_training_with_an_unknown_student_model_names_it(method, tmp_path):
    config = RunConfig(run_dir=str(tmp_path / "run"), tasks_path=str(write_tasks(tmp_path / "t.jsonl")),
                       method=method, student_model="no-such-model",
                       **{role: EndpointConfig(base_url=UNREACHABLE, max_retries=0)
                          for role in ("teacher", "rubricator", "verifier")})
    with pytest.raises((ModelError, train.TrainError, ConfigError)) as info:
        train.train(config)
    assert "no-such-model" in str(info.value)
    assert not (tmp_path / "run" / train.CHECKPOINTS).exists()


# -- endpoints ---------------------------------------------------------------------------------------------------

def test_unreachable_base_url_is_a_connection_error_naming_the_url():
    client = LLMClient(EndpointConfig(base_url=UNREACHABLE, model="m", max_retries=1, timeout_s=5), "teacher",
                       None, UsageStats())

    async def go():
        try:
            return await client.chat([{"role": "user", "content": "hi"}], temperature=0.0, max_tokens=4)
        finally:
            await client.aclose()

    with pytest.raises(LLMError) as info:
        run(go())
    assert info.value.kind == "connection" and UNREACHABLE in str(info.value)
    assert client.stats.snapshot()["teacher"]["failures_by_kind"] == {"connection": 1}


def test_missing_api_key_variable_is_named(monkeypatch):
    monkeypatch.delenv("ROPD_TEST_NO_SUCH_KEY", raising=False)
    with pytest.raises(ConfigError, match="ROPD_TEST_NO_SUCH_KEY"):
        LLMClient(EndpointConfig(base_url=UNREACHABLE, api_key_env="ROPD_TEST_NO_SUCH_KEY"), "teacher")


@pytest.mark.integration
def test_ropd_training_with_an_unreachable_judge_fails_before_loading_the_student(tmp_path):
    """An endpoint nobody answers at must be reported, with its URL, before minutes go into loading a model
    (today the run loads the student, trains a step on all-failed groups and stops on the failure-rate gate)."""
    dead = EndpointConfig(base_url=UNREACHABLE, model="smollm2-135m-instruct", max_retries=0, timeout_s=10)
    config = RunConfig(
        run_dir=str(tmp_path / "run"), tasks_path=str(write_tasks(tmp_path / "t.jsonl")), method="ropd",
        teacher=dead, rubricator=dead, verifier=dead, student=dead, n_tasks=1, prompts_per_step=1,
        student_model="smollm2-135m-instruct", n_rollouts=2, n_teacher_refs=1, max_steps=1, rollout_max_tokens=8,
        cache_dir=str(tmp_path / "cache"), ref_index_dir=str(tmp_path / "refs"),
    )
    with pytest.raises(Exception) as info:
        train.train(config)
    assert UNREACHABLE in str(info.value), str(info.value)
    assert not (tmp_path / "run" / train.CHECKPOINTS).exists(), "the student was loaded and trained first"


# -- rubrics and rollouts ----------------------------------------------------------------------------------------

def test_rubric_with_zero_total_weight_is_refused_by_the_parser():
    only_pitfalls = json.dumps({"criteria": [
        {"id": "p1", "text": "Gives 8 as the final answer.", "points": -2, "category": "pitfall"},
        {"id": "p2", "text": "Skips the division.", "points": -1, "category": "pitfall"},
    ]})
    with pytest.raises(RubricError, match="positive points"):
        parse_rubric(only_pitfalls, allow_pitfalls=True)
    zero = json.dumps({"criteria": [{"id": "c1", "text": "Correct.", "points": 0, "category": "x"}]})
    with pytest.raises(RubricError, match=r"criterion 1|c1") as info:
        parse_rubric(zero)
    assert "0" in str(info.value)


def test_zero_weight_rubric_built_by_hand_cannot_be_scored_silently():
    rubric = Rubric(criteria=[Criterion(id="p1", text="Gives 8.", points=-1, category="pitfall")])
    with pytest.raises(ValueError, match="zero total weight"):
        weighted_pass_rate(rubric.points, [[True]], pitfalls=True)


def test_criterion_points_out_of_range_names_the_value():
    with pytest.raises(ValueError, match="points 9"):
        Criterion(id="c1", text="x", points=9)


@pytest.mark.integration
def test_empty_rollout_is_judged_not_a_crash(small_config):
    """An empty rollout scores 0 without a verifier call; the rest of its group is judged as usual."""
    from ropd_kit.llm import make_clients

    task = Task(**TASKS[0])

    async def go():
        async with make_clients(small_config) as clients:
            return await pipeline.judge_group_async(
                task, ["24 + 12 = 36\n36 / 4 = 9\nAnswer: 9"], ["", "   \n", "24 + 12 = 36\n36 / 4 = 9\nAnswer: 9"],
                clients, small_config, step=0,
            )

    result = run(go())
    if result.rubric_record["criteria"]:  # the small model produced a usable rubric
        empty = [v for v in result.verdict_records if v["source"] == "student" and v["answer_idx"] in (0, 1)]
        assert [v["score"] for v in empty] == [0.0, 0.0]
        assert all(v["position"] is None for v in empty)  # never shown to the verifier
    else:
        assert result.failed and result.scores is None and result.error
