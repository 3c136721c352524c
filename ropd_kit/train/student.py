"""Loading the student for training and evaluation: Unsloth on a GPU, transformers + peft LoRA on a CPU.

In: a model spec (a registry name, a .gguf file, a local folder, a checkpoint folder, a hub id) and the RunConfig.
Out: `LoadedModel(model, tokenizer, backend)`. unsloth is imported here and only here, before trl/transformers/peft,
because it patches them; importing this module imports neither torch nor unsloth.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple


if TYPE_CHECKING:  # pragma: no cover

    from ..config import RunConfig


CHECKPOINTS = "checkpoints"
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _say(message: str) -> None:
    # Printed, not logged: a notebook shows stderr without any logging setup, and the backend choice matters.
    print(f"[train] {message}", file=sys.stderr, flush=True)


class TrainError(RuntimeError):
    """A run that cannot start or had to stop; the message says which setting or what happened."""

# ---------------------------------------------------------------------------------------------------------------
# Loading models


class LoadedModel(NamedTuple):
    """A model ready for training or generation: `model, tokenizer, backend = load_student(...)`."""

    model: Any
    tokenizer: Any
    backend: str  # "unsloth" | "transformers"


def choose_backend(config: "RunConfig | None") -> str:
    """'unsloth' when CUDA is there and unsloth is importable (config.use_unsloth auto/always), else 'transformers'."""
    wanted = getattr(config, "use_unsloth", "auto") if config is not None else "auto"
    if wanted == "never":
        return "transformers"
    import torch

    has_cuda = torch.cuda.is_available()
    has_unsloth = importlib.util.find_spec("unsloth") is not None
    if has_cuda and has_unsloth:
        return "unsloth"
    if wanted == "always":
        missing = "CUDA" if not has_cuda else "the unsloth package (`make gpu` / pip install '.[gpu]')"
        raise TrainError(f"use_unsloth='always' but {missing} is not available on this machine")
    return "transformers"


def check_generation_options(config: "RunConfig", *, cuda: bool | None = None) -> None:
    """Refuse the GPU generation options (use_vllm, fast_inference) on a machine that cannot run them, naming what
    is missing; train() calls it before any server or model starts. `cuda` stands in for
    torch.cuda.is_available() (tests)."""
    needs: list[tuple[str, tuple[str, ...]]] = []
    if config.use_vllm:
        needs.append((f"use_vllm=True (vllm_mode={config.vllm_mode!r})", ("vllm",)))
    if config.fast_inference:
        needs.append(("fast_inference=True (Unsloth's vLLM engine)", ("unsloth", "vllm")))
    if not needs:
        return
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
        cpu_build = torch.version.cuda is None
    else:
        cpu_build = False
    for what, packages in needs:
        missing = [] if cuda else ["a CUDA GPU (torch.cuda.is_available() is False"
                                   + ("; this torch is a CPU build" if cpu_build else "") + ")"]
        missing += [f"the {p} package (not importable here)" for p in packages if importlib.util.find_spec(p) is None]
        if missing:
            raise TrainError(
                f"{what} needs a CUDA GPU and the {' and '.join(packages)} package{'s' if len(packages) > 1 else ''}; "
                f"missing on this machine: {'; '.join(missing)}. Set it to False here, or run on a GPU machine "
                "(docs/gpu.md)"
            )


def _adapter_base(folder: Path) -> str | None:
    """The base model a PEFT adapter folder (a checkpoint) was trained on, or None if it is not an adapter."""
    config_file = folder / "adapter_config.json"
    if not config_file.is_file():
        return None
    base = json.loads(config_file.read_text()).get("base_model_name_or_path")
    if not base:
        raise TrainError(f"{config_file}: no base_model_name_or_path, cannot tell which model the adapter belongs to")
    return base


def model_folder(model: str | Path) -> str:
    """What transformers loads for a model spec: a converted folder for registry names and .gguf files, the
    folder itself for local folders, the id itself for hub ids (`models.resolve_model` says which is which)."""
    from ..offline.models import hf_folder, resolve_model

    kind, value = resolve_model(model)
    if kind == "hub":
        return str(value)
    if kind == "hf":
        return str(value)
    return str(hf_folder(str(value)))


DTYPES = ("float32", "bfloat16", "float16")
# The CPU features that multiply bf16 in hardware, as `torch.cpu.get_capabilities()` names them: x86's AVX512_BF16
# and AMX-BF16, Arm's BF16 and SVE-BF16. `torch.backends.cpu.get_cpu_capability()` cannot tell: it names the vector
# width torch's kernels were built for ("AVX2", "AVX512", "SVE256", ...) and says "AVX512" with or without bf16.
NATIVE_BF16_FEATURES = ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16")


def cpu_facts() -> dict[str, Any]:
    """The CPU as torch sees it: `capability` (torch's kernel level), `model`, `native_bf16`, `bf16_features`."""
    import torch

    get_capabilities = getattr(torch.cpu, "get_capabilities", None)  # torch >= 2.9; older ones: the kernel's flags
    features = dict(get_capabilities()) if get_capabilities else {f: True for f in _proc_cpu_flags()}
    found = [f for f in NATIVE_BF16_FEATURES if features.get(f)]
    return {
        "capability": torch.backends.cpu.get_cpu_capability(),
        "model": _cpu_model_name() or features.get("cpu_name"),
        "native_bf16": bool(found),
        "bf16_features": found,
    }


def _proc_cpuinfo(key: str) -> str | None:
    try:
        with open("/proc/cpuinfo") as fh:
            return next((line.split(":", 1)[1].strip() for line in fh if line.split(":", 1)[0].strip() == key), None)
    except OSError:
        return None


def _cpu_model_name() -> str | None:
    return _proc_cpuinfo("model name")


def _proc_cpu_flags() -> list[str]:
    flags = (_proc_cpuinfo("flags") or _proc_cpuinfo("Features") or "").split()
    return ["sve_bf16" if f == "svebf16" else f for f in flags]


def choose_dtype(wanted: str = "auto") -> tuple[str, str]:
    """(dtype name, why) for the student and the white-box teacher; `wanted` is RunConfig.student_dtype.

    "auto": on CUDA bf16 where the GPU has it, else fp16; on a CPU bf16 only with native bf16 (see cpu_facts),
    else fp32 — without it torch emulates bf16 and a matmul runs tens of times slower than in fp32 (479 ms vs 13 ms
    for 512x896 @ 896x896 on one core of an AVX2-only AMD Zen 3), which costs far more than fp32's doubled
    memory at these model sizes. `make bench` records the same comparison for the machine it runs on.
    """
    if wanted != "auto":
        if wanted not in DTYPES:
            raise TrainError(f"student_dtype={wanted!r}: use 'auto' or one of {', '.join(DTYPES)}")
        return wanted, "set by student_dtype"
    import torch

    if torch.cuda.is_available():
        if torch.cuda.is_bf16_supported():
            return "bfloat16", "auto: CUDA with bf16"
        return "float16", "auto: CUDA without bf16"
    facts = cpu_facts()
    if facts["native_bf16"]:
        return "bfloat16", f"auto: {facts['capability']} CPU with native bf16, {'+'.join(facts['bf16_features'])}"
    return "float32", f"auto: {facts['capability']} CPU without native bf16"


def _dtype(torch: Any, config: "RunConfig") -> Any:
    return getattr(torch, choose_dtype(config.student_dtype)[0])


def model_dtype(model: Any) -> str | None:
    """The dtype a loaded model computes in ("float32", "bfloat16", ...), as the train log records it."""
    dtype = getattr(model, "dtype", None)
    return str(dtype).removeprefix("torch.") if dtype is not None else None


# glibc's malloc raises its mmap threshold to the size of each large block freed (up to 32 MB); after that, the tensors
# of a forward and backward pass (a few to a few tens of MB each) come from the heap, and the heap keeps what they
# freed. A checkpointed step of the 0.5B student in fp32 left its process at 6.8 GB instead of 3.1 GB that way, and
# lopd's student and teacher at 14.3 GB. A fixed threshold sends every block of 4 MB or more to mmap, which hands it
# back to the system as soon as it is freed; MALLOC_MMAP_THRESHOLD_ in the environment, when set, is left as it is.
MMAP_THRESHOLD = 4 << 20


def release_freed_memory() -> bool:
    """Fix glibc's mmap threshold at MMAP_THRESHOLD for this process, so that freed tensors go back to the system.
    True when it was set; False without glibc's mallopt (another C library) or when the environment sets it."""
    import ctypes
    import ctypes.util
    import os

    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_mmap_threshold = -3  # glibc's M_MMAP_THRESHOLD
    return bool(mallopt(m_mmap_threshold, MMAP_THRESHOLD))


def load_student(
    model: str | Path,
    *,
    config: "RunConfig | None" = None,
    for_training: bool = True,
    backend: str | None = None,
    compact: bool = False,
) -> LoadedModel:
    """Load a student (or the white-box teacher / a checkpoint for evaluation).

    `model` is a registry name ("qwen2.5-coder-0.5b-instruct"), a .gguf file, a local transformers folder, a run's
    checkpoint folder (a LoRA adapter: its base is loaded first), a run directory (its last checkpoint) or a hub id. With `for_training`, a fresh LoRA
    adapter (config.lora_r / lora_alpha) is added, or a checkpoint's adapter is loaded trainable; otherwise the model
    is frozen in eval mode.

    `compact` (a frozen model that is only run forward, such as lopd's white-box teacher): in fp32, its large
    weights stay in the checkpoint's bf16 and are widened as each layer runs (`compact.keep_weights_compact`): half
    the memory, the same numbers. Generation would pay the widening at every token, so it is off by default.
    """
    from ..config import RunConfig

    release_freed_memory()
    config = config or RunConfig()
    backend = backend or choose_backend(config)
    path = Path(str(model)).expanduser()
    if path.is_dir() and (path / CHECKPOINTS).is_dir():
        checkpoint = last_checkpoint(path)
        if checkpoint is None:
            raise TrainError(f"run directory {path} has no checkpoint yet (nothing in {path / CHECKPOINTS})")
        path = model = checkpoint
    adapter_base = _adapter_base(path) if path.is_dir() else None
    base_spec = adapter_base if adapter_base is not None else str(model)
    folder = model_folder(base_spec)
    what = f"{model} (adapter on {folder})" if adapter_base else f"{model} ({folder})"
    if backend == "unsloth":
        loaded = _load_unsloth(folder, path if adapter_base else None, config, for_training)
    else:
        loaded = _load_transformers(folder, path if adapter_base else None, config, for_training)
    dtype = model_dtype(loaded.model)
    kept = ""
    if compact and not for_training and backend == "transformers" and dtype == "float32":
        from .compact import keep_weights_compact

        freed = keep_weights_compact(loaded.model)
        if freed:
            kept = f" (large weights kept in bf16, {freed / 2**30:.1f} GiB less)"
    _say(f"loaded {what} with {backend}{' + LoRA' if for_training else ''} in {dtype}{kept}")
    return loaded


def _load_transformers(folder: str, adapter: Path | None, config: "RunConfig", for_training: bool) -> LoadedModel:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=_dtype(torch, config))
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None and getattr(model.config, "quantization_config", None) is not None:
        # A hub GGUF or a folder saved without the recipe: Trainer refuses a model that still says "quantized".
        quantizer.remove_quantization_config(model)
    tokenizer = AutoTokenizer.from_pretrained(str(adapter) if adapter and (adapter / "tokenizer_config.json").exists()
                                              else folder)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter), is_trainable=for_training)
    elif for_training:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=0.0, target_modules=LORA_TARGETS,
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, lora)
    if not for_training:
        model.eval()
        model.requires_grad_(False)
    return LoadedModel(model, tokenizer, "transformers")


def _load_unsloth(folder: str, adapter: Path | None, config: "RunConfig", for_training: bool) -> LoadedModel:
    if any(m in sys.modules for m in ("trl", "peft")) and "unsloth" not in sys.modules:
        _say("warning: trl/peft were imported before unsloth; unsloth patches less of them this way "
             "(import ropd_kit.train before trl in GPU notebooks)")
    import unsloth  # noqa: F401  - must come before trl/transformers/peft are used: it patches them on import
    import torch
    from unsloth import FastLanguageModel

    fast = {}
    if config.fast_inference and for_training:
        # Unsloth's vLLM engine generates the rollouts; it has to know the largest LoRA it will be handed.
        fast = {"fast_inference": True, "max_lora_rank": config.lora_r}
    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=str(adapter or folder),
        max_seq_length=config.max_prompt_tokens + config.rollout_max_tokens,
        load_in_4bit=False,
        **fast,
        # None lets Unsloth pick for the GPU (what "auto" would pick too); an explicit student_dtype is passed on.
        dtype=None if config.student_dtype == "auto" else getattr(torch, config.student_dtype),
    )
    if for_training and adapter is None:
        model = FastLanguageModel.get_peft_model(
            model, r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=0.0, target_modules=LORA_TARGETS,
            use_gradient_checkpointing="unsloth", random_state=config.seed,
        )
    if not for_training:
        FastLanguageModel.for_inference(model)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(model, tokenizer, "unsloth")


def last_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest `checkpoint-N` folder of a run (None when there is none)."""
    folder = Path(run_dir) / CHECKPOINTS
    found = [(int(m.group(1)), p) for p in folder.glob("checkpoint-*") if (m := re.fullmatch(r"checkpoint-(\d+)", p.name))]
    return max(found)[1] if found else None
