"""The dtype the student and the white-box teacher load in: bf16 only where the CPU computes it natively.

In-memory, no model: the CPU's features are faked at torch's own functions (the ones `cpu_facts` reads), so the
AVX2-only case is tested on any machine.
"""

from __future__ import annotations

import pytest
import torch

from ropd_kit.config import RunConfig
from ropd_kit.notebook_tools import endpoint_table
from ropd_kit.train.methods import _common_args
from ropd_kit.train.student import TrainError, _dtype, choose_dtype, cpu_facts

AVX2_ONLY = {"architecture": "x86_64", "avx": True, "avx2": True, "fma3": True, "avx512_f": False,
             "avx512_bf16": False, "amx_bf16": False, "amx_tile": False}
SAPPHIRE_RAPIDS = {**AVX2_ONLY, "avx512_f": True, "avx512_bf16": True, "amx_bf16": True, "amx_tile": True}
AMX_WITHOUT_AVX512_BF16 = {**AVX2_ONLY, "avx512_f": True, "amx_bf16": True}
GRAVITON3 = {"architecture": "aarch64", "neon": True, "sve": True, "bf16": True}


@pytest.fixture
def fake_cpu(monkeypatch):
    """Make torch report a CPU with the given features and kernel level, and no CUDA."""

    def fake(features: dict, capability: str) -> None:
        monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: features)
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    return fake


def test_an_avx2_only_cpu_gets_fp32_without_any_option(fake_cpu):
    fake_cpu(AVX2_ONLY, "AVX2")
    assert cpu_facts()["native_bf16"] is False
    dtype, why = choose_dtype(RunConfig().student_dtype)
    assert dtype == "float32" and "AVX2" in why and "without native bf16" in why
    assert _dtype(torch, RunConfig()) is torch.float32


@pytest.mark.parametrize(("features", "capability", "named"), [
    (SAPPHIRE_RAPIDS, "AVX512", "avx512_bf16+amx_bf16"),
    (AMX_WITHOUT_AVX512_BF16, "AVX512", "amx_bf16"),
    (GRAVITON3, "SVE256", "bf16"),
])
def test_a_cpu_with_native_bf16_gets_bf16(fake_cpu, features, capability, named):
    fake_cpu(features, capability)
    dtype, why = choose_dtype("auto")
    assert dtype == "bfloat16" and capability in why and named in why
    assert _dtype(torch, RunConfig()) is torch.bfloat16


def test_the_kernel_level_alone_does_not_decide(fake_cpu):
    # torch says "AVX512" for Skylake-X too, which has AVX-512 but emulates bf16.
    fake_cpu({**AVX2_ONLY, "avx512_f": True}, "AVX512")
    assert choose_dtype("auto")[0] == "float32"


@pytest.mark.parametrize("features", [AVX2_ONLY, SAPPHIRE_RAPIDS])
@pytest.mark.parametrize("wanted", ["float32", "bfloat16", "float16"])
def test_student_dtype_overrides_the_cpu(fake_cpu, features, wanted):
    fake_cpu(features, "AVX2")
    config = RunConfig(student_dtype=wanted)
    assert choose_dtype(config.student_dtype) == (wanted, "set by student_dtype")
    assert _dtype(torch, config) is getattr(torch, wanted)


def test_choose_dtype_names_the_setting_for_an_unknown_value():
    with pytest.raises(TrainError, match="student_dtype='fp8'"):
        choose_dtype("fp8")


def test_mixed_precision_follows_the_weights(fake_cpu, tmp_path):
    # bf16 autocast over fp32 weights would bring the emulated bf16 matmuls back on an AVX2 CPU.
    config = RunConfig(run_dir=str(tmp_path / "run"))
    fake_cpu(AVX2_ONLY, "AVX2")
    assert _common_args(config, "transformers", 8)["bf16"] is False
    assert _common_args(config.model_copy(update={"student_dtype": "bfloat16"}), "transformers", 8)["bf16"] is True
    fake_cpu(SAPPHIRE_RAPIDS, "AVX512")
    assert _common_args(config, "transformers", 8)["bf16"] is True
    assert _common_args(config.model_copy(update={"student_dtype": "float32"}), "transformers", 8)["bf16"] is False
    assert _common_args(config, "transformers", 8)["fp16"] is False


def test_the_endpoint_table_shows_the_dtype_and_why(fake_cpu):
    fake_cpu(AVX2_ONLY, "AVX2")
    table = endpoint_table(RunConfig())
    row = table[table["base_url"] == "in process"].iloc[0]
    assert row["dtype"].startswith("float32 (auto: AVX2 CPU without native bf16")
    assert RunConfig().student_model in row["model"] and RunConfig().lopd_teacher_model in row["model"]
    row = endpoint_table(RunConfig(student_dtype="bfloat16")).iloc[-1]
    assert row["dtype"] == "bfloat16 (set by student_dtype)"
    # The served endpoints' rows are unchanged: a served GGUF's precision is the server's business.
    assert list(table["role"][:4]) == ["teacher", "rubricator", "verifier", "student"]
    assert set(table["dtype"][:4]) == {""}
