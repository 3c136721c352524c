"""The evaluation before a run's first step is generated once per (model, tasks, decoding) and replayed by the next
run, only while the student's adapter still adds nothing."""

from __future__ import annotations

import pytest
import torch

from ropd_kit.config import RunConfig
from ropd_kit.data import Task
from ropd_kit.train import evaluate as evaluate_module
from ropd_kit.train.evaluate import evaluate
from ropd_kit.train.untrained import is_untrained

pytestmark = pytest.mark.integration  # loads SmolLM2 from its transformers folder (set up by `make test`)

TASKS = [Task(id="a", prompt="What is 2 + 3?", answer="5", domain="arith"),
         Task(id="b", prompt="What is 7 + 6?", answer="13", domain="arith")]


@pytest.fixture(scope="module")
def student():
    from ropd_kit.train.student import load_student

    return load_student("smollm2-135m-instruct", config=RunConfig(student_dtype="float32"), for_training=True)


@pytest.fixture
def counted(monkeypatch, tmp_path):
    """A fresh cache folder, and a count of the generate_texts calls that really ran."""
    monkeypatch.setenv("ROPD_CACHE", str(tmp_path / "cache"))
    calls = []
    real = evaluate_module.generate_texts

    def counting(*args, **kwargs):
        calls.append(kwargs.get("max_new_tokens"))
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluate_module, "generate_texts", counting)
    return calls


def _eval(student, **kw):
    config = RunConfig(student_dtype="float32", seed=3)
    kw = {"max_new_tokens": 8, **kw}
    return evaluate(student.model, TASKS, 1, config=config, step=0, tokenizer=student.tokenizer, **kw)


def test_a_fresh_lora_adapter_counts_as_untrained_and_a_changed_one_does_not(student):
    assert is_untrained(student.model)
    assert is_untrained(torch.nn.Linear(4, 4))  # no adapter at all
    lora_b = next(p for name, p in student.model.named_parameters() if "lora_B" in name)
    with torch.no_grad():
        lora_b[0, 0] = 1e-3
    try:
        assert not is_untrained(student.model)
    finally:
        with torch.no_grad():
            lora_b[0, 0] = 0.0


def test_the_second_run_replays_the_same_samples_without_generating(student, counted):
    first = _eval(student, reuse_untrained=True)
    second = _eval(student, reuse_untrained=True)
    assert counted == [8]  # generated once
    assert not first.attrs["replayed"] and second.attrs["replayed"]
    columns = ["task_id", "answer_text", "predicted", "correct", "n_tokens", "truncated"]
    assert first[columns].equals(second[columns])


def test_other_decoding_or_no_reuse_generates_again(student, counted):
    _eval(student, reuse_untrained=True)
    assert not _eval(student, reuse_untrained=True, max_new_tokens=9).attrs["replayed"]
    assert not _eval(student).attrs["replayed"]  # training asks only before its first step
    assert counted == [8, 9, 8]


def test_a_trained_adapter_is_never_replayed(student, counted):
    _eval(student, reuse_untrained=True)
    lora_b = next(p for name, p in student.model.named_parameters() if "lora_B" in name)
    with torch.no_grad():
        lora_b[0, 0] = 1e-3
    try:
        frame = _eval(student, reuse_untrained=True)
    finally:
        with torch.no_grad():
            lora_b[0, 0] = 0.0
    assert not frame.attrs["replayed"] and counted == [8, 8]
