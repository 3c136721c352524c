"""The dry-run plan: what it says a run will do on a given machine, and what it asks to fix first.

In-memory: the machine is a `plan.Machine` given to it (a GPU box is described, not needed); no model, no network.
"""

from __future__ import annotations

import re

import pytest

from ropd_kit.config import EndpointConfig, RunConfig
from ropd_kit.plan import Machine, run_plan

GPU_BOX = Machine(gpus=["0000:01:00.0"], torch="2.8.0+cu128", unsloth=True, vllm=False)
CPU_BOX = Machine(gpus=[], torch="2.13.0+cpu")
API = EndpointConfig(base_url="https://api.example.com/v1", model="big", api_key_env="ROPD_PLAN_TEST_KEY",
                     requests_per_minute=60, usd_per_mtok_input=1.0, usd_per_mtok_output=4.0)


def todo(plan: str) -> list[str]:
    return [line.strip()[2:] for line in plan.split("before running:")[1].splitlines() if line.strip()]


def test_the_student_trains_with_unsloth_where_cuda_and_unsloth_are():
    plan = run_plan(RunConfig(student_model="Qwen/Qwen2.5-1.5B-Instruct"), box=GPU_BOX)
    assert "trained here: Unsloth LoRA on the GPU; 1 NVIDIA GPU(s) seen" in plan
    assert "transformers + peft LoRA on the GPU" in run_plan(RunConfig(use_unsloth="never"), box=GPU_BOX)
    assert "transformers + peft LoRA on the CPU" in run_plan(RunConfig(), box=CPU_BOX)


@pytest.mark.parametrize("fields, box, wanted", [
    ({"use_unsloth": "always"}, CPU_BOX, "use_unsloth='always' needs a CUDA GPU"),
    ({"use_vllm": True}, GPU_BOX, "use_vllm=True needs vllm"),
    ({"fast_inference": True}, CPU_BOX, "fast_inference=True needs unsloth, vllm, a CUDA GPU"),
    ({}, Machine(gpus=["0"], torch="2.13.0+cpu"), "torch 2.13.0+cpu is a CPU build"),
    ({"student_model": "./no/such/model.gguf"}, CPU_BOX, "model path './no/such/model.gguf' does not exist"),
])
def test_what_this_machine_cannot_run_is_listed_before_running(fields, box, wanted):
    assert any(wanted in item for item in todo(run_plan(RunConfig(**fields), box=box)))


def test_each_method_names_the_roles_it_calls(monkeypatch):
    monkeypatch.delenv("ROPD_PLAN_TEST_KEY", raising=False)
    judges = {"teacher": API, "rubricator": API, "verifier": API.model_copy(update={"model": "small"})}
    ropd = run_plan(RunConfig(**judges), box=CPU_BOX)
    assert re.search(r"\n  rubricator +one rubric per group and step", ropd) and "the same endpoint as the teacher" in ropd
    assert "model small" in ropd and "$ROPD_PLAN_TEST_KEY (NOT SET)" in ropd
    # The default mode says where it reads probabilities: wherever no code check decides the result.
    assert "from log-probabilities where it does not: open-ended tasks, and groups whose teacher references" in ropd
    batched = run_plan(RunConfig(verifier_mode="batched", **judges), box=CPU_BOX)
    assert "one true/false matrix per group)" in batched and "log-probabilities" not in batched
    assert "price: $1 in / $4 out per 1M tokens" in ropd and "60 requests/min" in ropd
    assert todo(ropd).count("export ROPD_PLAN_TEST_KEY=...  (the config names the variable, never the key)") == 1
    rlvr = run_plan(RunConfig(method="rlvr", **judges), box=CPU_BOX)
    assert "none: the reward is the ground truth" in rlvr and "ROPD_PLAN_TEST_KEY" not in rlvr
    judge = run_plan(RunConfig(method="judge", judge_role="teacher", **judges), box=CPU_BOX)
    assert re.search(r"\n  teacher +a 0-10 grade per rollout", judge) and "verifier" not in judge
    lopd = run_plan(RunConfig(method="lopd"), box=CPU_BOX)
    assert "lopd teacher" in lopd and "rubricator" not in lopd
    sft = run_plan(RunConfig(method="sft", n_teacher_refs=3, prompts_per_step=2, max_steps=4), box=CPU_BOX)
    assert "4 optimizer steps x 2 prompts x 3 references = 6 samples a step, 24 in all" in sft


def test_a_set_key_is_said_to_be_set_and_its_value_is_never_printed(monkeypatch):
    monkeypatch.setenv("ROPD_PLAN_TEST_KEY", "sk-plan-test-value-123")
    plan = run_plan(RunConfig(teacher=API, rubricator=API, verifier=API), box=CPU_BOX)
    assert "$ROPD_PLAN_TEST_KEY (set)" in plan and "sk-plan-test-value-123" not in plan
    assert not any("ROPD_PLAN_TEST_KEY" in item for item in todo(plan))

