"""ROPD stage 6: train the student — GRPO on rubric rewards (ropd), and the baselines with the same logs.

In: a `RunConfig` (method, student, sizes, endpoints). Out: LoRA checkpoints under `<run_dir>/checkpoints/` and,
per optimizer step, one `train_log.jsonl` record with the same fields for every method (step, samples_seen,
wall_s, reward_mean/std, judge calls/tokens/failures, loss, kl, ...) so that the methods' curves overlay; ropd also
appends the step's rollouts, rubrics, verdicts and raw judge output; evaluation at `eval_steps` goes to eval.jsonl.

Methods (one GRPO code path for the first three: `GRPOTrainer` with `num_generations = n_rollouts`):
- ropd:  `reward.RubricReward` — one rubric per group from teacher refs + the group's rollouts, blind verdicts, s_i.
- rlvr:  `reward.correctness_reward` — 1/0 against the ground truth (needs answers).
- judge: `reward.JudgeReward` — the teacher grades each rollout 0–10 without a rubric, scaled to 0–1.
- lopd:  TRL's `DistillationTrainer` — on-policy, per-token reverse KL (beta=1) to a white-box teacher loaded in
         transformers (`lopd_teacher_model`, same tokenizer); `GOLDTrainer` (ULD loss) when tokenizers differ.
- sft:   TRL's `SFTTrainer` on the teacher refs (the static black-box baseline).

The student is loaded by `load_student`: with CUDA and `unsloth` importable, Unsloth's FastLanguageModel + LoRA
(unsloth is imported there and only there, before trl/transformers/peft, because it patches them); otherwise
transformers + peft LoRA (bf16). The choice is printed and written into every train-log record (`backend`).
Importing this module imports neither torch nor unsloth.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from . import rundir
from .llm import check_reachable

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from .config import RunConfig
    from .data import Task

CHECKPOINTS = "checkpoints"
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# Files whose records carry a `step`: on resume, records of steps after the checkpoint are dropped (that work is
# redone), so a resumed run's files read as if it had never stopped.
STEP_FILES = (rundir.TRAIN_LOG, rundir.ROLLOUTS, rundir.RUBRICS, rundir.VERDICTS, rundir.JUDGE_RAW, rundir.EVAL)
TRAIN_LOG_FIELDS = (
    "step", "method", "backend", "samples_seen", "wall_s", "reward_mean", "reward_std", "loss", "kl",
    "learning_rate", "grad_norm", "completion_length", "judge_calls", "judge_http_requests", "judge_cache_hits",
    "judge_tokens", "judge_groups", "judge_failures", "judge_failed_rollouts", "rubric_size", "teacher_score_mean",
    "judge_s", "judge_usage", "judge_errors", "step_s", "generate_s", "optimizer_s", "refs_s", "rubric_s", "verify_s",
)


def _say(message: str) -> None:
    # Printed, not logged: a notebook shows stderr without any logging setup, and the backend choice matters.
    print(f"[train] {message}", file=sys.stderr, flush=True)


class TrainError(RuntimeError):
    """A run that cannot start or had to stop; the message says which setting or what happened."""


class JudgeFailureError(TrainError):
    """The judge failure rate passed `max_judge_failure_rate`; the run stopped after that step."""


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
    from .models import hf_folder, resolve_model

    kind, value = resolve_model(model)
    if kind == "hub":
        return str(value)
    if kind == "hf":
        return str(value)
    return str(hf_folder(str(value)))


def _dtype(torch: Any) -> Any:
    if torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16  # bf16 on CPU: half the memory, and the CPU matmuls are fast enough at these sizes


def load_student(
    model: str | Path,
    *,
    config: "RunConfig | None" = None,
    for_training: bool = True,
    backend: str | None = None,
) -> LoadedModel:
    """Load a student (or the white-box teacher / a checkpoint for evaluation).

    `model` is a registry name ("qwen2.5-coder-0.5b-instruct"), a .gguf file, a local transformers folder, a run's
    checkpoint folder (a LoRA adapter: its base is loaded first), a run directory (its last checkpoint) or a hub id. With `for_training`, a fresh LoRA
    adapter (config.lora_r / lora_alpha) is added, or a checkpoint's adapter is loaded trainable; otherwise the model
    is frozen in eval mode.
    """
    from .config import RunConfig

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
    _say(f"loaded {what} with {backend}{' + LoRA' if for_training else ''}")
    return loaded


def _load_transformers(folder: str, adapter: Path | None, config: "RunConfig", for_training: bool) -> LoadedModel:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=_dtype(torch))
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
    from unsloth import FastLanguageModel

    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=str(adapter or folder),
        max_seq_length=config.max_prompt_tokens + config.rollout_max_tokens,
        load_in_4bit=False,
        dtype=None,
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


# ---------------------------------------------------------------------------------------------------------------
# Datasets


def grpo_dataset(tasks: list["Task"]):
    """One row per task: the student's chat prompt plus the columns the rewards read (task_id, question, answer,
    domain). The same prompt as `rollouts.student_messages`, so ropd, rlvr, judge and eval all see one text."""
    from datasets import Dataset

    from .rollouts import student_messages

    return Dataset.from_list([
        {"prompt": student_messages(t), "task_id": t.id, "question": t.prompt, "answer": t.answer, "domain": t.domain}
        for t in tasks
    ])


def sft_dataset(tasks: list["Task"], refs: dict[str, list[str]], *, why: str = ""):
    """Prompt-completion rows (student prompt -> one teacher ref); loss on the completion only."""
    from datasets import Dataset

    from .rollouts import student_messages

    rows = [
        {"prompt": student_messages(t), "completion": [{"role": "assistant", "content": text}]}
        for t in tasks
        for text in refs.get(t.id, [])
    ]
    if not rows:
        raise TrainError(f"sft: no teacher reference could be obtained for any task; nothing to train on{why}")
    return Dataset.from_list(rows)


# ---------------------------------------------------------------------------------------------------------------
# Logging, evaluation, the failure gate


def _num(value: Any) -> float | None:
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if value != value else value  # NaN -> None: JSON has no NaN and pandas reads None as missing


@dataclass
class _RunState:
    method: str
    backend: str
    samples_per_step: int
    wall_offset: float = 0.0
    eval_s: float = 0.0
    started: float = field(default_factory=time.perf_counter)
    stop_reason: str | None = None
    # Where a step's time goes (make bench's step breakdown): the trainer's generation call is timed by a wrapper,
    # the step from on_step_begin to on_step_end (evaluation, which runs after on_step_end, is not in it), the
    # optimizer's update from on_pre_optimizer_step to on_optimizer_step.
    generate_s: float = 0.0
    step_began: float | None = None
    step_s: float | None = None
    optimizer_began: float | None = None
    optimizer_s: float = 0.0

    def wall_s(self) -> float:
        return self.wall_offset + (time.perf_counter() - self.started) - self.eval_s

    def pop_timings(self) -> dict[str, float | None]:
        out = {"step_s": None if self.step_s is None else round(self.step_s, 3),
               "generate_s": round(self.generate_s, 3), "optimizer_s": round(self.optimizer_s, 3)}
        self.generate_s, self.step_s, self.optimizer_s = 0.0, None, 0.0
        return out


def _time_generation(trainer: Any, state: _RunState) -> None:
    """Add the time spent in the trainer's rollout generation (TRL's `_generate`, GRPO and distillation alike) to
    `state.generate_s`. A trainer without that method is left alone: its log has generate_s 0."""
    generate = getattr(trainer, "_generate", None)
    if generate is None:
        return

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return generate(*args, **kwargs)
        finally:
            state.generate_s += time.perf_counter() - started

    trainer._generate = timed


def _make_callback(config: "RunConfig", state: _RunState, reward: Any, clients_of: Any, eval_tasks: list | None):
    """Build the TrainerCallback (a class made here so that importing this module does not import transformers)."""
    from transformers import TrainerCallback

    from .llm import usage_delta

    class RunCallback(TrainerCallback):
        """Writes train_log.jsonl after every optimizer step, runs evaluations, applies the judge failure gate."""

        def __init__(self) -> None:
            self.trainer = None
            self._usage_before: dict = {}
            self._last_logged = -1

        def _usage(self) -> dict:
            clients = clients_of()
            return clients.stats.snapshot() if clients is not None else {}

        def on_train_begin(self, args, trainer_state, control, **kwargs):
            state.started = time.perf_counter()
            self._usage_before = self._usage()
            if eval_tasks and trainer_state.global_step == 0:
                self._evaluate(0)

        def on_step_begin(self, args, trainer_state, control, **kwargs):
            state.step_began = time.perf_counter()

        def on_pre_optimizer_step(self, args, trainer_state, control, **kwargs):
            state.optimizer_began = time.perf_counter()

        def on_optimizer_step(self, args, trainer_state, control, **kwargs):
            if state.optimizer_began is not None:
                state.optimizer_s += time.perf_counter() - state.optimizer_began
                state.optimizer_began = None

        def on_log(self, args, trainer_state, control, logs=None, **kwargs):
            logs = logs or {}
            step = trainer_state.global_step
            if "train_runtime" in logs or any(k.startswith("eval_") for k in logs) or step == self._last_logged:
                return
            self._last_logged = step
            after = self._usage()
            delta = {r: u for r, u in usage_delta(self._usage_before, after).items() if r != "student"}
            self._usage_before = after
            stats = reward.pop_step_stats().as_record() if hasattr(reward, "pop_step_stats") else {}
            loss = _num(logs.get("loss"))
            record = {
                "step": step,
                "method": state.method,
                "backend": state.backend,
                "samples_seen": step * state.samples_per_step,
                "wall_s": round(state.wall_s(), 3),
                "reward_mean": _num(logs.get("reward")),
                "reward_std": _num(logs.get("reward_std")),
                "loss": loss,
                # lopd's loss is the per-token reverse KL to the teacher itself (beta=1); GRPO logs kl to its
                # reference only when kl_beta > 0.
                "kl": loss if state.method == "lopd" else _num(logs.get("kl")),
                "learning_rate": _num(logs.get("learning_rate")),
                "grad_norm": _num(logs.get("grad_norm")),
                "completion_length": _num(logs.get("completions/mean_length")),
                "judge_calls": sum(u.get("calls", 0) for u in delta.values()),
                "judge_http_requests": sum(u.get("http_requests", 0) for u in delta.values()),
                "judge_cache_hits": sum(u.get("cache_hits", 0) for u in delta.values()),
                "judge_tokens": sum(u.get("prompt_tokens", 0) + u.get("completion_tokens", 0) for u in delta.values()),
                "judge_groups": 0,
                "judge_failures": 0,
                "judge_failed_rollouts": 0,
                "rubric_size": None,
                "teacher_score_mean": None,
                "judge_s": None,
                "judge_usage": delta,
                "judge_errors": [],
                "refs_s": None,
                "rubric_s": None,
                "verify_s": None,
                **state.pop_timings(),
                **stats,
            }
            rundir.append_jsonl(config.path / rundir.TRAIN_LOG, [record])

        def on_step_end(self, args, trainer_state, control, **kwargs):
            if state.step_began is not None:
                state.step_s = time.perf_counter() - state.step_began
            step = trainer_state.global_step
            if (
                hasattr(reward, "failure_rate")
                and reward.total_groups
                and reward.failure_rate > config.max_judge_failure_rate
            ):
                state.stop_reason = (
                    f"judge failure rate {reward.failure_rate:.0%} ({reward.total_failed} of {reward.total_groups} "
                    f"groups) passed max_judge_failure_rate={config.max_judge_failure_rate} at step {step}"
                )
                control.should_training_stop = True
                control.should_save = True
            if eval_tasks and config.eval_steps and (step % config.eval_steps == 0 or step >= args.max_steps):
                self._evaluate(step)

        def _evaluate(self, step: int) -> None:
            from .evaluate import evaluate, pass_at_1

            trainer = self.trainer
            model = trainer.accelerator.unwrap_model(trainer.model)
            started = time.perf_counter()
            frame = evaluate(
                model, eval_tasks, config.eval_k, config=config, step=step, run_dir=config.path,
                tokenizer=trainer.processing_class,
            )
            took = time.perf_counter() - started
            state.eval_s += took
            _say(f"eval step {step}: pass@1 {pass_at_1(frame):.3f} on {len(eval_tasks)} tasks ({took:.0f} s)")

    return RunCallback()


# ---------------------------------------------------------------------------------------------------------------
# train()


@dataclass
class TrainResult:
    """What a run left behind. `train_log` is the run's train_log.jsonl as a DataFrame."""

    run_dir: Path
    method: str
    backend: str
    steps: int
    checkpoint: Path | None
    wall_s: float
    judge_groups: int = 0
    judge_failures: int = 0
    train_log: "pd.DataFrame | None" = None
    usage: dict = field(default_factory=dict)


def last_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest `checkpoint-N` folder of a run (None when there is none)."""
    folder = Path(run_dir) / CHECKPOINTS
    found = [(int(m.group(1)), p) for p in folder.glob("checkpoint-*") if (m := re.fullmatch(r"checkpoint-(\d+)", p.name))]
    return max(found)[1] if found else None


def _truncate_after(run_dir: Path, step: int) -> float:
    """Drop records of steps after `step` from the run's step files; returns the train log's wall_s at `step`."""
    wall = 0.0
    for name in STEP_FILES:
        path = run_dir / name
        if not path.exists():
            continue
        records = rundir.read_jsonl(path, repair=True)
        kept = [r for r in records if r.get("step") is None or r["step"] <= step]
        if len(kept) != len(records):
            rundir.write_jsonl(path, kept)
        if name == rundir.TRAIN_LOG:
            walls = [r.get("wall_s") or 0.0 for r in kept if r.get("step") == step]
            wall = walls[-1] if walls else 0.0
    return wall


def _judge_config(config: "RunConfig") -> "RunConfig":
    # Training never samples from the student endpoint (the policy generates in-process); pointing it at the
    # teacher's keeps `serve.local_endpoints` from starting a second server for nothing.
    return config.model_copy(update={"student": config.teacher})


def _load_tasks(config: "RunConfig", method: str) -> list["Task"]:
    # The run's own task list when earlier stages (notebooks 01-03) wrote one, so training sees the same tasks.
    from .pipeline import run_tasks

    tasks = run_tasks(config)
    if method == "rlvr":
        missing = [t.id for t in tasks if t.answer is None]
        if missing:
            raise TrainError(
                f"method='rlvr' needs a ground-truth answer for every task; {len(missing)} task(s) in "
                f"{config.tasks_path} have none (first: {', '.join(missing[:3])})"
            )
    return tasks


def _eval_tasks(config: "RunConfig") -> list["Task"] | None:
    if not config.eval_steps:
        return None
    from .data import load_tasks

    return load_tasks(config.eval_tasks_path, require_answers=True, limit=config.n_eval_tasks)


def _common_args(config: "RunConfig", backend: str, batch: int) -> dict[str, Any]:
    import torch

    args: dict[str, Any] = dict(
        output_dir=str(config.path / CHECKPOINTS),
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=1,
        logging_steps=1,
        save_strategy="steps",
        save_steps=config.save_steps,
        report_to="none",
        seed=config.seed,
        data_seed=config.seed,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    if backend == "transformers":
        cuda = torch.cuda.is_available()
        args["bf16"] = bool(not cuda or torch.cuda.is_bf16_supported())
        args["fp16"] = bool(cuda and not torch.cuda.is_bf16_supported())
        # Recomputing activations buys memory a small CPU run does not need, at ~20% of its time.
        checkpointing = getattr(config, "gradient_checkpointing", None)
        args["gradient_checkpointing"] = cuda if checkpointing is None else bool(checkpointing)
        args["use_cpu"] = not cuda
    return args


def train(config: "RunConfig") -> TrainResult:
    """Run `config.method` for `config.max_steps` optimizer steps; `config.resume` continues from the last checkpoint.

    Endpoints with `base_url="local"` are served for the duration of the run (only the roles the method uses).
    Raises `JudgeFailureError` after the step at which the judge failure rate passed `max_judge_failure_rate`
    (its train log, rubrics and a checkpoint are written first).
    """
    method = config.method
    if method not in ("ropd", "rlvr", "judge", "lopd", "sft"):
        raise TrainError(f"unknown method {method!r}: use ropd, rlvr, judge, lopd or sft")
    config.path.mkdir(parents=True, exist_ok=True)
    tasks = _load_tasks(config, method)
    eval_tasks = _eval_tasks(config)
    backend = choose_backend(config)
    _say(f"method={method} backend={backend} student={config.student_model} run_dir={config.path}")
    if not Path(str(config.student_model)).expanduser().is_dir():
        # A mistyped model name is a local error: say so before servers start or endpoints are probed.
        from .models import resolve_model

        resolve_model(config.student_model)

    resume_from = None
    wall_offset = 0.0
    if config.resume:
        resume_from = last_checkpoint(config.path)
        if resume_from is None:
            _say("resume=True but no checkpoint yet: starting from step 0")
        else:
            step = int(resume_from.name.split("-")[1])
            wall_offset = _truncate_after(config.path, step)
            _say(f"resuming from {resume_from} (step {step})")
    elif (config.path / rundir.TRAIN_LOG).exists() and rundir.read_jsonl(config.path / rundir.TRAIN_LOG):
        raise TrainError(
            f"{config.path / rundir.TRAIN_LOG} already has steps: pass resume=True to continue this run, or use a new "
            "run_dir"
        )
    config.save()

    needs_judges = method in ("ropd", "judge")
    if needs_judges:
        from .serve import local_endpoints

        with local_endpoints(_judge_config(config)) as served:
            # An unreachable judge would otherwise surface only after the student is loaded and a step is spent.
            check_reachable({role: served.endpoint(role) for role in ("teacher", "rubricator", "verifier")})
            return _train_grpo(served, tasks, eval_tasks, backend, resume_from, wall_offset)
    if method == "rlvr":
        return _train_grpo(config, tasks, eval_tasks, backend, resume_from, wall_offset)
    if method == "lopd":
        return _train_lopd(config, tasks, eval_tasks, backend, resume_from, wall_offset)
    return _train_sft(config, tasks, eval_tasks, backend, resume_from, wall_offset)


def _finish(trainer: Any, config: "RunConfig", state: _RunState, reward: Any, resume_from: Path | None) -> TrainResult:
    _time_generation(trainer, state)
    try:
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    finally:
        clients = getattr(reward, "clients", None)  # made by the reward on its first call
        usage = clients.stats.snapshot() if clients is not None else {}
        if hasattr(reward, "close"):
            reward.close()
    result = TrainResult(
        run_dir=config.path,
        method=state.method,
        backend=state.backend,
        steps=trainer.state.global_step,
        checkpoint=last_checkpoint(config.path),
        wall_s=round(state.wall_s(), 3),
        judge_groups=getattr(reward, "total_groups", 0),
        judge_failures=getattr(reward, "total_failed", 0),
        train_log=rundir.read_frame(config.path / rundir.TRAIN_LOG),
        usage=usage,
    )
    if state.stop_reason:
        raise JudgeFailureError(f"{state.stop_reason}; run directory: {config.path} (last checkpoint "
                                f"{result.checkpoint})")
    _say(f"done: {result.steps} steps in {result.wall_s:.0f} s, checkpoint {result.checkpoint}")
    return result


def _train_grpo(config: "RunConfig", tasks, eval_tasks, backend, resume_from, wall_offset) -> TrainResult:
    student = load_student(config.student_model, config=config, backend=backend, for_training=True)
    from trl import GRPOConfig, GRPOTrainer

    from .reward import JudgeReward, RubricReward, correctness_reward

    model, tokenizer = student.model, student.tokenizer
    eos = model.generation_config.eos_token_id
    eos_ids = {eos} if isinstance(eos, int) else set(eos or [])
    eos_ids.add(tokenizer.eos_token_id)
    if config.method == "ropd":
        reward: Any = RubricReward(config, None, config.path, num_generations=config.n_rollouts, eos_token_ids=eos_ids)
    elif config.method == "judge":
        reward = JudgeReward(config, None, config.path, num_generations=config.n_rollouts)
    else:
        reward = correctness_reward

    batch = config.prompts_per_step * config.n_rollouts
    args = GRPOConfig(
        **_common_args(config, backend, batch),
        num_generations=config.n_rollouts,
        max_completion_length=config.rollout_max_tokens,
        temperature=config.rollout_temperature,
        top_p=config.rollout_top_p,
        scale_rewards=config.scale_rewards,
        beta=config.kl_beta,
    )
    state = _RunState(config.method, student.backend, batch, wall_offset=wall_offset)
    callback = _make_callback(config, state, reward, lambda: getattr(reward, "clients", None), eval_tasks)
    trainer = GRPOTrainer(
        model=model, reward_funcs=[reward], args=args, train_dataset=grpo_dataset(tasks),
        processing_class=tokenizer, callbacks=[callback],
    )
    callback.trainer = trainer
    return _finish(trainer, config, state, reward, resume_from)


def _same_tokenizer(a: Any, b: Any) -> bool:
    return a.get_vocab() == b.get_vocab()


def _train_lopd(config: "RunConfig", tasks, eval_tasks, backend, resume_from, wall_offset) -> TrainResult:
    student = load_student(config.student_model, config=config, backend=backend, for_training=True)
    # The teacher is frozen, so it does not need Unsloth's training patches; plain transformers keeps it simple.
    teacher = load_student(config.lopd_teacher_model, config=config, backend="transformers", for_training=False)
    batch = config.prompts_per_step * config.n_rollouts
    # Each task appears n_rollouts times, so a step sees as many student samples as a GRPO step does.
    dataset = grpo_dataset([t for t in tasks for _ in range(config.n_rollouts)])
    state = _RunState("lopd", student.backend, batch, wall_offset=wall_offset)
    callback = _make_callback(config, state, None, lambda: None, eval_tasks)
    if _same_tokenizer(student.tokenizer, teacher.tokenizer):
        from trl import DistillationConfig, DistillationTrainer

        args = DistillationConfig(
            **_common_args(config, backend, batch),
            beta=1.0,  # reverse KL: the student is pulled towards the teacher's modes on its own samples
            max_completion_length=config.rollout_max_tokens,
            temperature=config.rollout_temperature,
            top_p=config.rollout_top_p,
        )
        trainer = DistillationTrainer(
            model=student.model, teacher_model=teacher.model, args=args, train_dataset=dataset,
            processing_class=student.tokenizer, callbacks=[callback],
        )
    else:
        from trl.experimental.gold import GOLDConfig, GOLDTrainer

        _say("lopd: student and teacher tokenizers differ -> GOLD (ULD loss), on-policy (lmbda=1)")
        args = GOLDConfig(
            **_common_args(config, backend, batch),
            lmbda=1.0, beta=1.0, use_uld_loss=True,
            teacher_tokenizer_name_or_path=model_folder(config.lopd_teacher_model),
            max_completion_length=config.rollout_max_tokens,
            temperature=config.rollout_temperature,
        )
        # GOLD's collator reads the prompt as messages[:-1]; with lmbda=1 the last (assistant) turn is replaced by
        # the student's own sample, so it only has to exist.
        messages = dataset.map(lambda row: {"messages": row["prompt"] + [{"role": "assistant", "content": "..."}]},
                               remove_columns=dataset.column_names)
        trainer = GOLDTrainer(
            model=student.model, teacher_model=teacher.model, args=args, train_dataset=messages,
            processing_class=student.tokenizer, callbacks=[callback],
        )
    callback.trainer = trainer
    return _finish(trainer, config, state, None, resume_from)


def _train_sft(config: "RunConfig", tasks, eval_tasks, backend, resume_from, wall_offset) -> TrainResult:
    from .teacher import ReferenceIndex, collect_references, texts_by_task

    index = ReferenceIndex.for_config(config)
    try:
        records = collect_references(tasks, _judge_config(config), index=index, run_dir=config.path, progress=False)
    finally:
        index.close()
    refs = texts_by_task(records)
    errors = [r.get("error") for r in records if not r.get("text")]
    if errors:
        _say(f"sft: {len(errors)} of {len(records)} teacher refs failed (first: {errors[0]}); training on the others")
    dataset = sft_dataset(tasks, refs, why=f" (first error: {errors[0]})" if errors else "")
    student = load_student(config.student_model, config=config, backend=backend, for_training=True)
    from trl import SFTConfig, SFTTrainer

    batch = config.prompts_per_step * config.n_teacher_refs
    args = SFTConfig(
        **_common_args(config, backend, batch),
        max_length=config.max_prompt_tokens + config.teacher_max_tokens,
        packing=False,
    )
    state = _RunState("sft", student.backend, batch, wall_offset=wall_offset)
    callback = _make_callback(config, state, None, lambda: None, eval_tasks)
    trainer = SFTTrainer(
        model=student.model, args=args, train_dataset=dataset, processing_class=student.tokenizer,
        callbacks=[callback],
    )
    callback.trainer = trainer
    return _finish(trainer, config, state, None, resume_from)
