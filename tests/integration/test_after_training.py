"""After training (`ropd_kit.train.after`) on a real LoRA: SmolLM2-135M from the kit's cached safetensors folder (its
GGUF converted once), a LoRA trained here for three optimizer steps on one sentence and saved the way a run saves
its checkpoints (`<run>/checkpoints/checkpoint-<step>`: adapter and tokenizer, the run's config.json beside them).
The expected logits come from the peft model that was trained, not from the functions under test.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ropd_kit.config import FAST_MODEL, RunConfig
from ropd_kit.data import Task
from ropd_kit.train import after
from ropd_kit.train.evaluate import prompt_messages
from ropd_kit.train.student import CHECKPOINTS, TrainError, load_student

pytestmark = [pytest.mark.integration]

PROBE = "What is 6 times 7?"


def logits(model, tokenizer, text: str = PROBE) -> torch.Tensor:
    batch = tokenizer([text], return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits[0].float()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(run directory, the trained model's logits at checkpoint 1 and 3, the base model's logits on PROBE)."""
    run = tmp_path_factory.mktemp("after") / "run"
    config = RunConfig(run_dir=str(run), student_model=FAST_MODEL, student_dtype="float32", lora_r=4, lora_alpha=8)
    config.save()
    model, tokenizer, _ = load_student(FAST_MODEL, config=config, for_training=True, backend="transformers")
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = tokenizer(["The answer is always forty-two. The answer is always forty-two."], return_tensors="pt")
    seen = {}
    for step in (1, 2, 3):
        loss = model(**batch, labels=batch["input_ids"]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step in (1, 3):
            folder = run / CHECKPOINTS / f"checkpoint-{step}"
            model.save_pretrained(str(folder))
            tokenizer.save_pretrained(str(folder))
            seen[step] = logits(model, tokenizer)
    with model.disable_adapter():
        base = logits(model, tokenizer)
    return run, seen, base


def test_the_adapter_is_the_last_checkpoint_unless_a_step_is_named(trained, tmp_path):
    run, _, _ = trained
    assert after.adapter_dir(run) == run / CHECKPOINTS / "checkpoint-3"
    assert after.adapter_dir(run, step=1) == run / CHECKPOINTS / "checkpoint-1"
    assert after.adapter_dir(run / CHECKPOINTS / "checkpoint-1") == run / CHECKPOINTS / "checkpoint-1"
    with pytest.raises(TrainError, match=r"checkpoint-2: no checkpoint at step 2 \(saved steps: \[1, 3\]"):
        after.adapter_dir(run, step=2)
    with pytest.raises(TrainError, match="no checkpoints/ folder"):
        after.adapter_dir(tmp_path)
    (tmp_path / CHECKPOINTS).mkdir()
    with pytest.raises(TrainError, match="no checkpoint-<step> folder yet"):
        after.adapter_dir(tmp_path)


@pytest.fixture(scope="module")
def student(trained):
    return after.load_trained(trained[0], device="cpu")


def test_load_trained_merges_the_lora_into_its_base(trained, student):
    run, seen, base = trained
    assert not any("lora" in name for name, _ in student.model.named_parameters())  # merged: no adapter left
    assert student.model.dtype == torch.float32  # the run's student_dtype
    merged = logits(student.model, student.tokenizer)
    assert torch.allclose(merged, seen[3], atol=1e-3)
    assert (merged - base).abs().max() > 0.1  # the adapter changed the model, and the merge kept the change
    # An earlier checkpoint, kept apart from its base.
    earlier = after.load_trained(run, step=1, merge=False, device="cpu")
    assert any("lora" in name for name, _ in earlier.model.named_parameters())
    earlier_logits = logits(earlier.model, earlier.tokenizer)
    assert torch.allclose(earlier_logits, seen[1], atol=1e-3) and (earlier_logits - merged).abs().max() > 0.1


def test_chat_then_save_merged_gives_a_folder_that_loads_without_peft(trained, student, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run, seen, _ = trained
    reply = after.chat(student, PROBE, max_new_tokens=8)
    assert isinstance(reply, str) and reply.strip()
    assert after.chat(student, PROBE, max_new_tokens=8) == reply  # greedy

    out = after.save_merged(student, tmp_path / "merged")
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    assert (out / "tokenizer_config.json").is_file() and not (out / "adapter_config.json").exists()
    plain = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    assert torch.allclose(logits(plain, tokenizer), logits(student.model, student.tokenizer), atol=1e-5)
    assert after.chat(type(student)(plain, tokenizer, "transformers"), PROBE, max_new_tokens=8) == reply
    with pytest.raises(TrainError, match="already holds a model"):
        after.save_merged(student, out)

    # From the run directory straight to a folder, at an earlier step: loaded, merged, saved.
    again = after.save_merged(run, tmp_path / "step-1", step=1)
    reloaded = AutoModelForCausalLM.from_pretrained(str(again), dtype=torch.float32)
    assert torch.allclose(logits(reloaded, tokenizer), seen[1], atol=1e-3)


def test_a_task_is_asked_with_the_prompt_the_student_was_trained_with(student):
    task = Task(id="t1", prompt="Ann has 3 apples and buys 4 more. How many apples does she have?", answer="7")
    messages = after._messages(task, None, None)
    assert messages == prompt_messages(task) and messages[0]["role"] == "system"
    assert after.chat(student, task, max_new_tokens=8) == after.chat(student, messages, max_new_tokens=8)
