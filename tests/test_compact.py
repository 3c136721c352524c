"""A frozen fp32 model with its large weights kept in bf16 computes exactly what the fp32 copy computed, in about
half the memory; weights that carry fp32 precision are left alone."""

from __future__ import annotations

import pytest
import torch

from ropd_kit.train.compact import keep_weights_compact

pytestmark = pytest.mark.integration  # loads SmolLM2 from its transformers folder (set up by `make test`)


def _bytes(model) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


@pytest.fixture(scope="module")
def smol_pair():
    from transformers import AutoModelForCausalLM

    from ropd_kit.offline.models import hf_folder

    folder = hf_folder("smollm2-135m-instruct")

    def load():
        return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval().requires_grad_(False)

    plain, compact = load(), load()
    before = _bytes(compact)
    freed = keep_weights_compact(compact)
    return plain, compact, before, freed


def test_the_compact_model_gives_the_same_logits_bit_for_bit(smol_pair):
    plain, compact, _, _ = smol_pair
    ids = torch.randint(0, plain.config.vocab_size, (2, 33), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, :5] = 0  # left padding, as a batch of rollouts has
    with torch.no_grad():
        assert torch.equal(plain(ids, attention_mask=mask).logits, compact(ids, attention_mask=mask).logits)


def test_greedy_generation_is_unchanged(smol_pair):
    plain, compact, _, _ = smol_pair
    ids = torch.tensor([[1, 504, 3458, 314, 216, 34, 1232, 216, 34, 47]])
    with torch.no_grad():
        a = plain.generate(ids, max_new_tokens=12, do_sample=False)
        b = compact.generate(ids, max_new_tokens=12, do_sample=False)
    assert torch.equal(a, b)


def test_the_linear_weights_take_half_the_memory_and_the_model_still_says_fp32(smol_pair):
    _, compact, before, freed = smol_pair
    assert freed > 0 and _bytes(compact) == before - freed
    linear = [m for m in compact.modules() if isinstance(m, torch.nn.Linear) and m.weight.numel() >= 1 << 16]
    stored = {m.parametrizations.weight.original.dtype for m in linear if hasattr(m, "parametrizations")}
    assert stored == {torch.bfloat16}
    assert all(m.weight.dtype == torch.float32 for m in linear)  # what a layer computes with
    # SmolLM2 ties its output layer to the embedding: both stay one fp32 table, so the model's dtype is fp32.
    assert compact.dtype == torch.float32
    assert compact.get_output_embeddings().weight is compact.get_input_embeddings().weight


def test_weights_with_fp32_precision_are_not_narrowed():
    layer = torch.nn.Linear(512, 256).requires_grad_(False)
    with torch.no_grad():
        layer.weight.copy_(layer.weight.to(torch.bfloat16).float())
        layer.weight[0, 0] += 1e-7  # one value bf16 cannot hold
    model = torch.nn.Sequential(layer)
    assert keep_weights_compact(model) == 0
    assert layer.weight.dtype == torch.float32 and not hasattr(layer, "parametrizations")


def test_trainable_and_non_fp32_weights_are_left_alone():
    trainable = torch.nn.Linear(512, 256)
    half = torch.nn.Linear(512, 256).to(torch.bfloat16).requires_grad_(False)
    assert keep_weights_compact(torch.nn.Sequential(trainable, half)) == 0


def test_a_weight_shared_by_two_layers_is_narrowed_once_and_stays_shared():
    first = torch.nn.Linear(256, 256, bias=False).requires_grad_(False)
    with torch.no_grad():
        first.weight.copy_(first.weight.to(torch.bfloat16).float())
    second = torch.nn.Linear(256, 256, bias=False)
    second.weight = first.weight
    freed = keep_weights_compact(torch.nn.Sequential(first, second))
    assert freed == 256 * 256 * 2
    assert first.parametrizations.weight.original is second.parametrizations.weight.original


def test_load_student_keeps_a_frozen_teacher_compact_on_request(capsys):
    from ropd_kit.config import RunConfig
    from ropd_kit.train.student import load_student

    config = RunConfig(student_dtype="float32")
    teacher = load_student("smollm2-135m-instruct", config=config, for_training=False, compact=True)
    assert "large weights kept in bf16" in capsys.readouterr().err
    assert any(hasattr(m, "parametrizations") for m in teacher.model.modules())
    student = load_student("smollm2-135m-instruct", config=config, for_training=False)
    assert not any(hasattr(m, "parametrizations") for m in student.model.modules())
