"""The untrained student's evaluation samples, computed once and replayed.

Every run evaluates the student before its first step, and before that step every method's student is the same
model: a fresh LoRA adapter starts with its B matrices at zero, so it adds exactly nothing. Runs that compare methods
on the same evaluation tasks (ropd against lopd, say) would each spend minutes generating the same answers. The
samples are kept on disk, keyed by everything that decides them — the base model's files, the compute dtype and
device, the library versions, the prompts and the decoding settings — and replayed only for a model whose adapter
is still the identity. Grading is not stored: it runs again, through the LLM cache where a judge is involved.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Sequence

from ..config import cache_root
from ..llm import canonical_json


def is_untrained(model: Any) -> bool:
    """True when `model` computes what its base model computes: no adapter, or LoRA adapters whose B matrices are
    all zero (as peft creates them). A merged or otherwise changed model cannot be told from its base by this, so
    callers ask only before the first step of a run that started from a base model."""
    lora_b = [p for name, p in model.named_parameters() if "lora_B" in name]
    return all(not bool(p.detach().abs().max()) for p in lora_b if p.numel())


def _base_folder(model: Any) -> Path | None:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    name = getattr(getattr(base, "config", None), "_name_or_path", None)
    path = Path(str(name)).expanduser() if name else None
    return path if path is not None and path.is_dir() else None


def _files(folder: Path) -> list[tuple[str, int, int]]:
    return sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()
                  if p.is_file() and p.suffix in (".safetensors", ".bin", ".json", ".model", ".gguf"))


def samples_key(model: Any, conversations: Sequence[list[dict]], **decoding: Any) -> str | None:
    """The key of the samples `model` gives for `conversations` under `decoding` (n, max_new_tokens, temperature,
    top_p, seed), or None when the model's weights cannot be identified by a local folder."""
    import torch
    import transformers

    folder = _base_folder(model)
    if folder is None:
        return None
    parameter = next(model.parameters())
    device = parameter.device
    fields = {
        "folder": str(folder.resolve()),
        "files": _files(folder),
        "dtype": str(getattr(model, "dtype", parameter.dtype)),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "conversations": conversations,
        "decoding": decoding,
    }
    return hashlib.sha256(canonical_json(fields).encode("utf-8")).hexdigest()


class UntrainedSamples:
    """Samples of untrained students on disk (diskcache), under `<cache>/untrained_eval`."""

    def __init__(self, directory: str | Path | None = None):
        import diskcache

        self.directory = Path(directory) if directory is not None else cache_root() / "untrained_eval"
        self.directory.mkdir(parents=True, exist_ok=True)
        self._cache = diskcache.Cache(str(self.directory))

    def get(self, key: str) -> list[list[dict]] | None:
        return self._cache.get(key)

    def put(self, key: str, samples: list[list[dict]]) -> None:
        self._cache.set(key, samples)
