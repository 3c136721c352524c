"""After training: the trained student as a model you can talk to and ship.

A run's LoRA adapter is its last checkpoint, `<run_dir>/checkpoints/checkpoint-<step>/` (`adapter_config.json` and
`adapter_model.safetensors`, with the tokenizer beside them; `adapter_config.json` names the base model). Here it is
loaded onto that base and merged into its weights, asked a question, and saved as a plain transformers folder
that loads without peft (transformers, vLLM, llama.cpp's GGUF converter):

    from ropd_kit.train import after

    student = after.load_trained("runs/notebooks")          # the last checkpoint's LoRA on its base, merged
    after.chat(student, "What is 17 + 25?")
    after.save_merged(student, "runs/notebooks/merged")

The student loads with transformers (on the GPU when there is one) in the run's `student_dtype`; importing this
module imports neither torch nor peft.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from .student import CHECKPOINTS, LoadedModel, TrainError, _adapter_base, _say, last_checkpoint, load_student

if TYPE_CHECKING:  # pragma: no cover
    from ..config import RunConfig
    from ..data import Task


def adapter_dir(run: str | Path, step: int | None = None) -> Path:
    """The folder of a run's LoRA adapter: `<run>/checkpoints/checkpoint-<step>`, the last one by default. `run`
    may also be a checkpoint folder itself. Raises TrainError naming what is missing."""
    path = Path(run).expanduser()
    if path.is_dir() and _adapter_base(path) is not None:
        if step is not None:
            raise TrainError(f"{path} is one checkpoint already; pass its run directory to choose step={step}")
        return path
    if not (path / CHECKPOINTS).is_dir():
        raise TrainError(f"{path}: no {CHECKPOINTS}/ folder — not a trained run directory (notebook 04 or "
                         "`train(config)` writes one) nor a checkpoint folder with adapter_config.json")
    if step is None:
        found = last_checkpoint(path)
        if found is None:
            raise TrainError(f"{path / CHECKPOINTS}: no checkpoint-<step> folder yet (train at least one step)")
        return found
    found = path / CHECKPOINTS / f"checkpoint-{step}"
    if not found.is_dir():
        steps = sorted(int(m.group(1)) for p in (path / CHECKPOINTS).iterdir()
                       if (m := re.fullmatch(r"checkpoint-(\d+)", p.name)))
        raise TrainError(f"{found}: no checkpoint at step {step} (saved steps: {steps or 'none'}; save_steps sets "
                         "how often a run saves, and the last step is always saved)")
    return found


def _run_config(adapter: Path, config: "RunConfig | None") -> "RunConfig":
    from ..config import RunConfig

    if config is not None:
        return config
    saved = adapter.parent.parent / "config.json"  # <run>/checkpoints/checkpoint-N -> <run>/config.json
    return RunConfig.load(saved) if saved.is_file() else RunConfig()


def load_trained(
    run: str | Path,
    *,
    step: int | None = None,
    merge: bool = True,
    config: "RunConfig | None" = None,
    device: str | None = None,
) -> LoadedModel:
    """The trained student: a run's LoRA adapter (`adapter_dir(run, step)`) loaded onto the base model it was
    trained on, merged into the base's weights (`merge=False` keeps the peft model, adapter apart), frozen, on
    `device` ("cuda" when there is a GPU, else "cpu"). The dtype is the run's `student_dtype` (its config.json,
    or `config`)."""
    import torch

    adapter = adapter_dir(run, step)
    config = _run_config(adapter, config)
    loaded = load_student(adapter, config=config, for_training=False, backend="transformers")
    model = loaded.model
    if merge:
        model = model.merge_and_unload()
        model.eval()
        model.requires_grad_(False)
        _say(f"merged the LoRA of {adapter} into its base")
    model = model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return LoadedModel(model, loaded.tokenizer, loaded.backend)


def _messages(prompt: "str | list[dict] | Task", system: str | None, config: "RunConfig | None") -> list[dict]:
    from ..data import Task

    if isinstance(prompt, Task):
        from .evaluate import prompt_messages

        return prompt_messages(prompt, config)  # the chat the student saw for this task in training
    if isinstance(prompt, str):
        messages = [{"role": "user", "content": prompt}]
    else:
        messages = list(prompt)
    return ([{"role": "system", "content": system}] if system else []) + messages


def chat(
    student: LoadedModel,
    prompt: "str | list[dict] | Task",
    *,
    system: str | None = None,
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    config: "RunConfig | None" = None,
) -> str:
    """The student's reply to `prompt`: a user message, a whole chat (a list of {"role", "content"}), or a Task
    (then the student sees the prompt it was trained with, its family's system prompt from `config`'s prompts).
    Greedy by default (the same reply every time); `temperature` > 0 samples."""
    from .evaluate import generate_texts

    messages = _messages(prompt, system, config)
    reply = generate_texts(student.model, student.tokenizer, [messages], max_new_tokens=max_new_tokens,
                           temperature=temperature)[0][0]
    return reply["text"]


def save_merged(student: LoadedModel | str | Path, out: str | Path, *, step: int | None = None) -> Path:
    """Write the merged student to `out` as a transformers folder (safetensors weights, config, tokenizer) that
    loads without peft: `AutoModelForCausalLM.from_pretrained(out)`. `student` is what `load_trained` returned, or
    a run directory / checkpoint folder (then it is loaded and merged first, at `step`). Returns `out`."""
    if not isinstance(student, LoadedModel):
        student = load_trained(student, step=step, device="cpu")
    model = student.model
    if hasattr(model, "merge_and_unload"):  # a peft model from load_trained(merge=False)
        model = model.merge_and_unload()
    folder = Path(out).expanduser()
    if (folder / "config.json").exists() or (folder / "adapter_config.json").exists():
        raise TrainError(f"{folder} already holds a model; choose an empty folder (nothing was overwritten)")
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder), safe_serialization=True)
    student.tokenizer.save_pretrained(str(folder))
    _say(f"saved the merged student to {folder}")
    return folder


__all__ = ["adapter_dir", "chat", "load_trained", "save_merged"]
