"""Half the memory of a frozen fp32 model, same numbers: large weights kept in bf16, computed in fp32.

On a CPU without native bf16 the kit computes in fp32 (`student.choose_dtype`), so a bf16 checkpoint is widened to
twice its size when it loads. For a model that is only run forward — lopd's white-box teacher beside the student —
that copy is the largest thing in memory. Every value a bf16 checkpoint holds is exactly representable in bf16, so
keeping the weight in bf16 and widening it to fp32 at the moment a layer runs gives the same products, bit for bit,
as the widened copy did; the price is one transient fp32 copy of one layer's weight at a time.

A weight is only narrowed when narrowing it loses nothing (checked value by value), so a model loaded from an fp32
checkpoint with real fp32 precision is left as it is.
"""

from __future__ import annotations

from typing import Any

# Small tensors (norms, biases) are not worth a wrapper: they stay fp32.
MIN_ELEMENTS = 1 << 16


def _widen_module():
    import torch

    class Widen(torch.nn.Module):
        """Parametrization: the stored bf16 weight, read as fp32."""

        def forward(self, stored: "torch.Tensor") -> "torch.Tensor":
            return stored.float()

    return Widen


def _lossless_bf16(weight: Any) -> Any | None:
    import torch

    narrow = weight.detach().to(torch.bfloat16)
    return narrow if torch.equal(narrow.float(), weight.detach()) else None


def keep_weights_compact(model: Any) -> int:
    """Store the large Linear weights of a frozen fp32 `model` in bf16 where that is lossless, and compute with
    them in fp32 as before; returns the bytes freed. A model that is not fp32, or whose weights carry fp32
    precision, is returned unchanged (0).

    Embedding tables (and an output layer tied to one) stay fp32: the model's first parameter is its embedding, and
    transformers takes the model's dtype from it when it builds masks and caches, so it must keep saying fp32."""
    import torch
    from torch.nn.utils import parametrize

    widen = _widen_module()
    embedded = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    narrowed: dict[int, torch.nn.Parameter | None] = {}
    freed = 0
    for module in list(model.modules()):
        if not isinstance(module, torch.nn.Linear) or parametrize.is_parametrized(module):
            continue
        weight = module.weight
        if (weight.dtype != torch.float32 or weight.numel() < MIN_ELEMENTS or weight.requires_grad
                or id(weight) in embedded):
            continue
        key = id(weight)
        if key not in narrowed:  # a weight shared by several layers is narrowed once and stays shared
            narrow = _lossless_bf16(weight)
            narrowed[key] = None if narrow is None else torch.nn.Parameter(narrow, requires_grad=False)
            if narrow is not None:
                freed += weight.numel() * 2
        compact = narrowed[key]
        if compact is not None:
            module.weight = compact
            parametrize.register_parametrization(module, "weight", widen(), unsafe=True)
    return freed
