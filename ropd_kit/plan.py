"""What a run will do, said before it does it: the plan `--dry-run` prints (`python -m ropd_kit.train`, the batch).

In: a RunConfig. Out: text — the method, the student and where it trains, where each judge role runs (base_url,
model, the NAME of the key's environment variable and whether it is set, never the key), the size of a step and of
the run, the limits, and what to fix before running. Nothing is called and no model is loaded; torch is not
imported: the machine is read from what the system says (the NVIDIA driver's device list, the installed packages),
and `train()` checks the same things for real when it starts.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .limits import on_this_machine

if TYPE_CHECKING:  # pragma: no cover
    from .config import EndpointConfig, RunConfig

METHODS = {
    "ropd": "GRPO on rubric rewards (a rubric per group from the teacher's references and the rollouts; blind verdicts)",
    "rlvr": "GRPO on 1/0 correctness against the ground truth (no judge)",
    "judge": "GRPO on a 0-10 grade of each rollout (no rubric)",
    "lopd": "on-policy distillation: per-token reverse KL to a white-box teacher loaded beside the student",
    "sft": "supervised fine-tuning on the teacher's references",
}
LOCAL_SERVER = "the local llama-server on this machine's CPU (llama.cpp, CPU only)"


@dataclass
class Machine:
    """What this machine offers a run, as far as can be told without importing torch."""

    gpus: list[str] = field(default_factory=list)
    torch: str | None = None  # the installed torch's version ("2.13.0+cpu" is a CPU build)
    unsloth: bool = False
    vllm: bool = False

    @property
    def cuda(self) -> bool:
        return bool(self.gpus) and self.torch is not None and "+cpu" not in self.torch


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine() -> Machine:
    gpus = sorted(p.name for p in Path("/proc/driver/nvidia/gpus").glob("*"))
    if not gpus and shutil.which("nvidia-smi"):
        try:
            listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            listed = ""
        gpus = [line.split(":", 1)[0] for line in listed.splitlines() if line.startswith("GPU ")]
    return Machine(gpus=gpus, torch=_version("torch"), unsloth=importlib.util.find_spec("unsloth") is not None,
                   vllm=importlib.util.find_spec("vllm") is not None)


def _verifier_mode_text(mode: str) -> str:
    return {"auto": " (one true/false matrix per group where code checks the answer against the teacher's majority; "
                    "P(true) per criterion from log-probabilities where it does not: open-ended tasks, and groups "
                    "whose teacher references agree on no answer)",
            "soft": " (P(true) per criterion from log-probabilities: the endpoint must return them)",
            "batched": " (one true/false matrix per group)"}[mode]


def judge_roles(config: "RunConfig") -> dict[str, str]:
    """The black-box roles training with `config.method` calls, and what for."""
    if config.method == "ropd":
        return {"teacher": f"{config.n_teacher_refs} references per task (kept in the reference index)",
                "rubricator": "one rubric per group and step",
                "verifier": "a verdict per criterion for every rollout and reference, blind"
                            + _verifier_mode_text(config.verifier_mode)}
    if config.method == "judge":
        return {config.judge_role: "a 0-10 grade per rollout"}
    if config.method == "sft":
        return {"teacher": f"{config.n_teacher_refs} references per task to imitate"}
    return {}


def _local_model(model: str, todo: list[str]) -> str:
    from .offline.models import is_installed, is_registry_name, spec_for

    if is_registry_name(model):
        name = spec_for(model).name
        if is_installed(name):
            return f"{name} (installed)"
        todo.append(f"the offline model {name} is fetched on first use (or now: ropd models install {name})")
        return f"{name} (not installed yet)"
    return model if Path(model).expanduser().is_file() else f"{model} (no such GGUF file)"


def endpoint_text(endpoint: "EndpointConfig", todo: list[str]) -> list[str]:
    """Where one endpoint is and how it is called; what is missing goes to `todo`."""
    if endpoint.is_local:
        from .offline.serve import is_built

        lines = [f"{LOCAL_SERVER}, model {_local_model(endpoint.model, todo)}"]
        if not is_built():
            todo.append("llama-server is built on first use, a few minutes (or now: ropd serve build)")
        return lines
    host = urlsplit(endpoint.base_url).hostname or "?"
    where = "a server on this machine" if on_this_machine(endpoint.base_url) else f"remote, {host}"
    lines = [f"{endpoint.base_url} ({where}), model {endpoint.model}"]
    if endpoint.api_key_env:
        is_set = bool(os.environ.get(endpoint.api_key_env))
        lines.append(f"key: ${endpoint.api_key_env} ({'set' if is_set else 'NOT SET'})")
        if not is_set:
            todo.append(f"export {endpoint.api_key_env}=...  (the config names the variable, never the key)")
    else:
        lines.append("key: none sent (api_key_env is null)")
    limits = [f"{endpoint.max_concurrency} concurrent", f"timeout {endpoint.timeout_s:g} s",
              f"{endpoint.max_retries} retries"]
    if endpoint.requests_per_minute:
        limits.append(f"{endpoint.requests_per_minute} requests/min")
    if endpoint.tokens_per_minute:
        limits.append(f"{endpoint.tokens_per_minute} tokens/min")
    lines.append("limits: " + ", ".join(limits))
    if endpoint.priced:
        lines.append(f"price: ${endpoint.usd_per_mtok_input:g} in / ${endpoint.usd_per_mtok_output:g} out per 1M tokens")
    return lines


def _student_text(config: "RunConfig", box: Machine, todo: list[str]) -> list[str]:
    from .offline.models import ModelError, is_installed, resolve_model

    try:
        kind, value = resolve_model(config.student_model)
    except ModelError as exc:
        todo.append(str(exc))
        kind, value = "unknown", config.student_model
    what = {"registry": "offline model (GGUF from PyPI wheels, converted once for transformers)",
            "hub": "hub id (transformers downloads it on first use)", "hf": "local transformers folder",
            "gguf": "GGUF file (converted once for transformers)", "unknown": "not a model this kit can load"}[kind]
    if kind == "registry" and not is_installed(str(value)):
        todo.append(f"the offline model {value} is fetched on first use (or now: ropd models install {value})")
    if config.use_unsloth == "never":
        backend = "transformers + peft LoRA" + (" on the GPU" if box.cuda else " on the CPU")
    elif box.cuda and box.unsloth:
        backend = "Unsloth LoRA on the GPU"
    else:
        backend = "transformers + peft LoRA" + (" on the GPU" if box.cuda else " on the CPU")
        if config.use_unsloth == "always":
            todo.append("use_unsloth='always' needs " + ("the unsloth package (make gpu)" if box.cuda else "a CUDA GPU"))
        elif box.cuda:
            backend += " (Unsloth is used once installed: make gpu)"
    gpu = (f"{len(box.gpus)} NVIDIA GPU(s) seen, torch {box.torch}" if box.gpus
           else f"no NVIDIA GPU seen, torch {box.torch or 'not installed'}")
    if box.gpus and not box.cuda:
        todo.append(f"a GPU is here but torch {box.torch} is a CPU build: install a CUDA torch to train on it")
    for flag, needs in (("use_vllm", ["vllm"]), ("fast_inference", ["unsloth", "vllm"])):
        if getattr(config, flag):
            missing = [p for p in needs if not getattr(box, p)] + ([] if box.cuda else ["a CUDA GPU"])
            if missing:
                todo.append(f"{flag}=True needs {', '.join(missing)} (train() refuses it without)")
    dtype = config.student_dtype if config.student_dtype != "auto" else "auto (bf16 where the hardware has it)"
    return [f"{config.student_model}: {what}", f"trained here: {backend}; {gpu}", f"LoRA r={config.lora_r} "
            f"alpha={config.lora_alpha}, dtype {dtype}, learning rate {config.learning_rate:g}"]


def _tasks_text(config: "RunConfig", which: str, todo: list[str]) -> str:
    prefix = "" if which == "train" else "eval_"
    path = getattr(config, f"{prefix}tasks_path")
    extra = [f"{prefix}{name}={getattr(config, prefix + name)!r}" for name in ("tasks_split", "tasks_subset",
                                                                              "tasks_sample")
             if getattr(config, prefix + name) is not None]
    limit = config.n_tasks if which == "train" else config.n_eval_tasks
    if limit or not getattr(config, f"{prefix}tasks_sample"):
        extra.append(f"the first {limit}" if limit else "all")
    local = Path(path).expanduser()
    if not local.exists() and (path.startswith((".", "/", "~")) or local.suffix in (".jsonl", ".json", ".csv",
                                                                                    ".parquet")):
        extra.append("NOT FOUND from here")
        todo.append(f"{prefix}tasks_path {path}: no such file from {Path.cwd()} (a relative path is read from the "
                    "working folder)")
    return f"{path} ({', '.join(extra)})"


def run_plan(config: "RunConfig", *, source: str | None = None, box: Machine | None = None,
             sampler: bool = False) -> str:
    """The plan of a training run of `config`, as text, ending with what to fix before running (if anything).
    `sampler`: also the student endpoint, which the notebooks' stages sample rollouts from (training does not)."""
    box = box or machine()
    todo: list[str] = []
    rows: list[tuple[str, list[str]]] = [("method", [f"{config.method}: {METHODS[config.method]}"])]
    rows.append(("student", _student_text(config, box, todo)))
    if config.method == "lopd":
        rows.append(("lopd teacher", [f"{config.lopd_teacher_model}: white-box, loaded here beside the student"]))
    roles = judge_roles(config)
    shown: dict[str, str] = {}
    for role, job in roles.items():
        endpoint = config.endpoint(role)
        same = shown.setdefault(endpoint.model_dump_json(), role)
        rows.append((role, [job] + (endpoint_text(endpoint, todo) if same == role
                                    else [f"the same endpoint as the {same}"])))
    if not roles:
        rows.append(("judges", ["none: " + ("the reward is the ground truth" if config.method == "rlvr"
                                           else "the white-box teacher's log-probabilities are the signal")]))
    if sampler:
        student = config.endpoint("student")
        lines = endpoint_text(student, todo)
        if student.is_local and not _serves_locally(student.model):
            todo.append(f"the local llama-server serves GGUF files and offline model names, not {student.model}: "
                        "point the student endpoint at a server of it (e.g. vLLM)")
        rows.append(("student sampler", ["rollouts of the notebooks' stages 01-03"] + lines))
    per_prompt, what = ((config.n_teacher_refs, "references") if config.method == "sft"
                        else (config.n_rollouts, "rollouts"))
    samples = config.prompts_per_step * per_prompt
    rows.append(("steps", [f"{config.max_steps} optimizer steps x {config.prompts_per_step} prompts x {per_prompt} "
                           f"{what} = {samples} samples a step, {samples * config.max_steps} in all"]))
    if config.method != "sft":
        rows.append(("rollouts", [f"up to {config.rollout_max_tokens} tokens, temperature "
                                  f"{config.rollout_temperature:g}, top_p {config.rollout_top_p:g}; prompts up to "
                                  f"{config.max_prompt_tokens} tokens; KL beta {config.kl_beta:g}"]))
    rows.append(("tasks", [_tasks_text(config, "train", todo)]))
    rows.append(("evaluation", [f"pass@{config.eval_k} every {config.eval_steps} steps on "
                                f"{_tasks_text(config, 'eval', todo)}" if config.eval_steps
                                else "none during training (eval_steps is not set)"]))
    limits = [f"stop when more than {config.max_judge_failure_rate:g} of the groups fail to be judged"]
    if config.reward_deadline_s:
        limits.append(f"groups not judged {config.reward_deadline_s:g} s into a step get no reward")
    if roles:
        rows.append(("limits", limits))
    records = "train_log.jsonl, rollouts, rubrics, verdicts" if config.method == "ropd" else "train_log.jsonl"
    rows.append(("writes", [f"{config.run_dir}/ ({records}), LoRA checkpoints every "
                            f"{config.save_steps} steps in {config.run_dir}/checkpoints"
                            + ("; resumes from the last one" if config.resume else "")]))
    report = config.report_to if isinstance(config.report_to, str) else ", ".join(config.report_to)
    missing = [n for n in ([config.report_to] if isinstance(config.report_to, str) else config.report_to)
               if n not in ("none", "all") and not _integration_installed(n)]
    if missing:
        todo.append(f"report_to {', '.join(missing)}: not installed here (pip install {missing[0]})")
    rows.append(("report_to", [report + (" (event files in <run_dir>/checkpoints/runs)" if "tensorboard" in report
                                         else "")]))
    generation = [name for name in ("use_vllm", "fast_inference") if getattr(config, name)]
    if generation:
        rows.append(("generation", [", ".join(generation) + (f" (vllm_mode={config.vllm_mode})"
                                                             if config.use_vllm else "")]))
    if config.trainer_overrides:
        rows.append(("TRL overrides", [", ".join(f"{k}={v!r}" for k, v in config.trainer_overrides.items())]))

    width = max(len(name) for name, _ in rows) + 2
    head = f"plan{f' ({source})' if source else ''}: nothing is called and no model is loaded"
    lines = [head]
    for name, texts in rows:
        lines += [f"  {(name if i == 0 else ''):<{width}}{text}" for i, text in enumerate(texts)]
    lines.append("before running:" + ("" if todo else " nothing to do"))
    lines += [f"  - {item}" for item in dict.fromkeys(todo)]
    return "\n".join(lines)


def _serves_locally(model: str) -> bool:
    from .offline.models import is_registry_name

    return is_registry_name(model) or model.endswith(".gguf")


# The module each report_to integration needs, where it is not the integration's own name.
_INTEGRATION_MODULES = {"tensorboard": ("tensorboard", "tensorboardX"), "azure_ml": ("azureml",),
                        "flyte": ("flytekit",), "kubeflow": ("kubeflow",)}


def _integration_installed(name: str) -> bool:
    return any(importlib.util.find_spec(m) is not None for m in _INTEGRATION_MODULES.get(name, (name,)))
