"""ROPD stage 6: train the student — GRPO on rubric rewards (ropd), and the baselines with the same logs.

In: a `RunConfig` (method, student, sizes, endpoints). Out: LoRA checkpoints under `<run_dir>/checkpoints/` and,
per optimizer step, one `train_log.jsonl` record with the same fields for every method (step, samples_seen,
wall_s, reward_mean/std, judge calls/tokens/failures, loss, kl, ...) so that the methods' curves overlay; ropd also
appends the step's rollouts, rubrics, verdicts and raw judge output; evaluation at `eval_steps` goes to eval.jsonl.

Methods (one GRPO code path for the first three: `GRPOTrainer` with `num_generations = n_rollouts`):
- ropd:  `reward.RubricReward` — one rubric per group from teacher refs + the group's rollouts, blind verdicts, s_i.
- rlvr:  `reward.correctness_reward` — 1/0 against the ground truth (needs answers).
- judge: `reward.JudgeReward` — the `judge_role` endpoint (the Verifier's by default, so that judge and ropd differ
         only by the rubric) grades each rollout 0–10 without a rubric, scaled to 0–1.
- lopd:  TRL's `DistillationTrainer` — on-policy, per-token reverse KL (beta=1) to a white-box teacher loaded in
         transformers (`lopd_teacher_model`, same tokenizer); `GOLDTrainer` (ULD loss) when tokenizers differ.
- sft:   TRL's `SFTTrainer` on the teacher refs (the static black-box baseline).

The student is loaded by `load_student`: with CUDA and `unsloth` importable, Unsloth's FastLanguageModel + LoRA
(unsloth is imported there and only there, before trl/transformers/peft, because it patches them); otherwise
transformers + peft LoRA. The choice is printed and written into every train-log record (`backend`), and so
is the dtype (`dtype`: `RunConfig.student_dtype`, "auto" = bf16 only where the CPU or GPU has it, else fp32/fp16).
Importing this module imports neither torch nor unsloth.

Several processes (`accelerate launch --num_processes N -m ropd_kit.train CONFIG`, on a CPU `--multi_gpu` with no
GPU, or `torchrun`; see `distributed.py`): prompts_per_step stays the step's batch, and each process takes an equal
share of it in whole groups; it generates for them and judges them itself. TRL does not keep groups whole across
processes on its own: its RepeatSampler lays the step's batch out group by group and accelerate gives process r the
r-th run of per_device_train_batch_size x steps_per_generation rows, so a group straddles two processes unless that
count is a multiple of n_rollouts (TRL gathers the rewards before it computes advantages, so its own rewards do not
mind). ropd's rubric is induced from the whole group, so we validate that geometry and refuse a shape that would
split a group, with the settings to change, before any server or model starts. We do not gather the group to one
process instead: that process would judge for the others while they wait, or every process would judge every
group, and the rewards would have to be scattered back inside TRL's reward call, where no collective belongs (TRL
runs async rewards in a background thread). Keeping groups whole costs nothing: the default shapes always are.
Only the main process writes the run directory (the others hand it their rollouts, rubrics, verdicts and raw judge
output at each step's end) and evaluates; the train log sums every process's judge counts, tokens and failures and
takes the slowest process's timings; the failure gate reads the run's totals, so every process stops together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import rundir
from ..llm import check_reachable
from . import distributed as ddp
from .progress import JudgeFailureError, STEP_FILES, _RunState, _make_callback, _time_generation
from .student import TrainError, _say, check_generation_options, choose_backend, choose_dtype, load_student
from .student import model_dtype, model_folder
from .student import CHECKPOINTS, last_checkpoint

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from ..config import RunConfig
    from ..data import Task


# ---------------------------------------------------------------------------------------------------------------
# Datasets


def grpo_dataset(tasks: list["Task"], config: "RunConfig | None" = None):
    """One row per task: the student's chat prompt plus the columns the rewards read (task_id, question, answer,
    domain, and the whole task as JSON in task_record: family, conversation, options). The same prompt as
    `rollouts.student_messages(task, config)`, so ropd, rlvr, judge and eval all see one text."""
    import json

    from datasets import Dataset

    from ..rollouts import student_messages

    return Dataset.from_list([
        {"prompt": student_messages(t, config), "task_id": t.id, "question": t.prompt, "answer": t.answer,
         "domain": t.domain, "task_record": json.dumps(t.to_record(), ensure_ascii=False)}
        for t in tasks
    ])


def sft_dataset(tasks: list["Task"], refs: dict[str, list[str]], *, why: str = "", config: "RunConfig | None" = None):
    """Prompt-completion rows (student prompt -> one teacher ref); loss on the completion only."""
    from datasets import Dataset

    from ..rollouts import student_messages

    rows = [
        {"prompt": student_messages(t, config), "completion": [{"role": "assistant", "content": text}]}
        for t in tasks
        for text in refs.get(t.id, [])
    ]
    if not rows:
        raise TrainError(f"sft: no teacher reference could be obtained for any task; nothing to train on{why}")
    return Dataset.from_list(rows)


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


def _judge_totals(run_dir: Path) -> tuple[int, int]:
    """Judge groups and failed groups over the run's train log (what the failure gate counts)."""
    log = rundir.read_jsonl(run_dir / rundir.TRAIN_LOG)
    return (sum(int(r.get("judge_groups") or 0) for r in log), sum(int(r.get("judge_failures") or 0) for r in log))


def _prepare_resume(run_dir: Path) -> tuple[Path | None, float, tuple[int, int]]:
    """Where `resume=True` continues: (last checkpoint or None, the train log's wall_s at it, judge (groups,
    failures) up to it). The step files are cut back to the checkpoint's step first; with no checkpoint the run
    starts over at step 0, so they are cut to nothing (the step-0 evaluation is redone too). Files and counters then
    read as if the run had never stopped, and the failure gate goes on from the kept steps' counts."""
    checkpoint = last_checkpoint(run_dir)
    step = int(checkpoint.name.split("-")[1]) if checkpoint is not None else -1
    wall = _truncate_after(run_dir, step)
    return checkpoint, wall, _judge_totals(run_dir)


def _judge_config(config: "RunConfig") -> "RunConfig":
    # Training never samples from the student endpoint (the policy generates in-process); pointing it at the
    # teacher's keeps `serve.local_endpoints` from starting a second server for nothing.
    return config.model_copy(update={"student": config.teacher})


def _load_tasks(config: "RunConfig", method: str) -> list["Task"]:
    # The run's own task list when earlier stages (notebooks 01-03) wrote one, so training sees the same tasks.
    from ..pipeline import run_tasks

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
    from ..sources import tasks_from_config

    return tasks_from_config(config, "eval")


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
        report_to=config.report_to,
        seed=config.seed,
        data_seed=config.seed,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    if backend == "transformers":
        cuda = torch.cuda.is_available()
        # Mixed precision follows the weights: bf16 autocast over fp32 weights would bring back the emulated bf16
        # matmuls that "auto" avoids on a CPU without native bf16. fp16 autocast is a GPU thing.
        dtype = choose_dtype(config.student_dtype)[0]
        args["bf16"] = dtype == "bfloat16"
        args["fp16"] = bool(cuda and dtype == "float16")
        # Each layer's activations are recomputed in the backward pass rather than kept, on a CPU too: for a step of
        # 8 rollouts of ~230 tokens the 0.5B student's took 6.4 GB in fp32 and 2.2 GB recomputed, the difference
        # between fitting a 16 GB machine beside lopd's teacher or ropd's judge server and not; the price is one more
        # forward pass of the student (about a quarter of the forward and backward, not of generation or judging).
        # trainer_overrides={"gradient_checkpointing": False} keeps them.
        checkpointing = getattr(config, "gradient_checkpointing", None)
        args["gradient_checkpointing"] = True if checkpointing is None else bool(checkpointing)
        args["use_cpu"] = not cuda
    return args


def _batch(config: "RunConfig") -> int:
    """Samples per device and micro-step: a whole number of groups (sft: of teacher refs). With several processes
    each takes an equal share of the step, in whole groups for the GRPO methods (`distributed.per_process`)."""
    per_prompt = config.n_teacher_refs if config.method == "sft" else config.n_rollouts
    group = config.n_rollouts if config.method in ("ropd", "rlvr", "judge") else 1
    return ddp.per_process(config.prompts_per_step * per_prompt, group=group,
                           what=f"a step's batch (prompts_per_step={config.prompts_per_step} x {per_prompt})")


def _samples_per_step(config: "RunConfig") -> int:
    # One optimizer step sees gradient_accumulation_steps micro-batches on every process.
    return _batch(config) * ddp.world_size() * int(config.trainer_overrides.get("gradient_accumulation_steps", 1))


def _generation_args(config: "RunConfig") -> dict[str, Any]:
    """TRL's vLLM generation settings (RunConfig.use_vllm ...); TRL's defaults when off. Unsloth's fast inference
    is set where the model is loaded (student.load_student) and its trainer picks the engine up from the model."""
    if not config.use_vllm:
        return {}
    return {"use_vllm": True, "vllm_mode": config.vllm_mode, "vllm_server_host": config.vllm_server_host,
            "vllm_server_port": config.vllm_server_port}


def trainer_args(config: "RunConfig", backend: str) -> tuple[str, dict[str, Any]]:
    """(TRL config class name, its keyword arguments) for `config.method`: the kit's settings, the GPU generation
    options, then `config.trainer_overrides` (checked against that class when the config was built; the fields the
    kit must own are refused there). lopd's GOLD fallback (different tokenizers) adds its own on top."""
    from ..config import TRAINER_CONFIG_CLASSES

    kwargs = _common_args(config, backend, _batch(config))
    if config.method in ("ropd", "rlvr", "judge"):
        kwargs.update(
            num_generations=config.n_rollouts,
            max_completion_length=config.rollout_max_tokens,
            temperature=config.rollout_temperature,
            top_p=config.rollout_top_p,
            scale_rewards=config.scale_rewards,
            beta=config.kl_beta,
            **_generation_args(config),
        )
    elif config.method == "lopd":
        kwargs.update(
            beta=1.0,  # reverse KL: the student is pulled towards the teacher's modes on its own samples
            max_completion_length=config.rollout_max_tokens,
            temperature=config.rollout_temperature,
            top_p=config.rollout_top_p,
            **_generation_args(config),
        )
    else:
        kwargs.update(max_length=config.max_prompt_tokens + config.teacher_max_tokens, packing=False)
    return TRAINER_CONFIG_CLASSES[config.method], {**kwargs, **config.trainer_overrides}


def _check_report_to(report_to: str | list[str]) -> None:
    """Refuse a report_to integration that is not installed here: transformers finds out only when the trainer is
    built, after the models have loaded."""
    from transformers.integrations import get_available_reporting_integrations

    wanted = [report_to] if isinstance(report_to, str) else list(report_to)
    missing = [n for n in wanted if n not in ("none", "all") and n not in get_available_reporting_integrations()]
    if missing:
        raise TrainError(f"report_to={report_to!r}: {', '.join(missing)} is not installed in this environment; "
                         f"install its package (e.g. `pip install {missing[0]}`) or set report_to='none'")


def _check_trainer_args(config: "RunConfig", backend: str) -> None:
    """Build the method's TRL config once before any server or model starts, so that a combination TRL refuses
    (e.g. a generation batch that is not a whole number of groups) is reported in seconds, not after loading."""
    import trl

    _check_report_to(config.report_to)
    name, kwargs = trainer_args(config, backend)
    try:
        args = getattr(trl, name)(**kwargs)
    except (TypeError, ValueError) as exc:
        raise TrainError(f"trl.{name} refuses these settings (trainer_overrides={config.trainer_overrides}): "
                         f"{exc}") from exc
    if config.method in ("ropd", "judge"):
        # These rewards judge a group as one (a rubric per group; a group fails as a whole): no process may get
        # part of one. steps_per_generation is resolved by TRL from the overrides by now.
        ddp.check_group_geometry(args.per_device_train_batch_size, args.steps_per_generation, args.num_generations,
                                 args.world_size)


def train(config: "RunConfig") -> TrainResult:
    """Run `config.method` for `config.max_steps` optimizer steps; `config.resume` continues from the last checkpoint.

    Endpoints with `base_url="local"` are served for the duration of the run (only the roles the method uses).
    Raises `JudgeFailureError` after the step at which the judge failure rate passed `max_judge_failure_rate`
    (its train log, rubrics and a checkpoint are written first).
    """
    method = config.method
    if method not in ("ropd", "rlvr", "judge", "lopd", "sft"):
        raise TrainError(f"unknown method {method!r}: use ropd, rlvr, judge, lopd or sft")
    ddp.refuse_single_process_cpu_launch()
    if ddp.world_size() > 1:
        import torch

        # Before TRL's config sets it up the same way (use_cpu), so that the processes can agree on the run first.
        ddp.init(cpu=not torch.cuda.is_available())
    # What this machine cannot run is said before tasks are read, servers start or models load.
    check_generation_options(config)
    config.path.mkdir(parents=True, exist_ok=True)
    with ddp.main_first():  # the main process copies the tasks into the run directory; the others read that copy
        tasks = _load_tasks(config, method)
    eval_tasks = _eval_tasks(config)
    backend = choose_backend(config)
    dtype, why = choose_dtype(config.student_dtype)
    _say(f"method={method} backend={backend} dtype={dtype} ({why}) student={config.student_model} "
         f"run_dir={config.path}")
    if not Path(str(config.student_model)).expanduser().is_dir():
        # A mistyped model name is a local error: say so before servers start or endpoints are probed.
        from ..offline.models import resolve_model

        resolve_model(config.student_model)

    _check_trainer_args(config, backend)

    resume_from = None
    wall_offset = 0.0
    # The main process cuts the run directory back and writes the config; the others wait for it, then read.
    with ddp.main_first() as main:
        if config.resume:
            if main:
                resume_from, wall_offset, _ = _prepare_resume(config.path)
            else:
                resume_from = last_checkpoint(config.path)
            if resume_from is None:
                _say("resume=True but no checkpoint yet: starting from step 0 (the step files' records are dropped)")
            else:
                _say(f"resuming from {resume_from}")
        elif (config.path / rundir.TRAIN_LOG).exists() and rundir.read_jsonl(config.path / rundir.TRAIN_LOG):
            raise TrainError(
                f"{config.path / rundir.TRAIN_LOG} already has steps: pass resume=True to continue this run, or use a "
                "new run_dir"
            )
        if main:
            config.save()

    try:
        if method in ("ropd", "judge"):
            # One set of local servers for the run, started by the main process (distributed.served).
            with ddp.served(_judge_config(config)) as served:
                # An unreachable judge would otherwise surface only after the student is loaded and a step is spent.
                check_reachable({role: served.endpoint(role) for role in ("teacher", "rubricator", "verifier")})
                return _train_grpo(served, tasks, eval_tasks, backend, resume_from, wall_offset)
        if method == "rlvr":
            return _train_grpo(config, tasks, eval_tasks, backend, resume_from, wall_offset)
        if method == "lopd":
            return _train_lopd(config, tasks, eval_tasks, backend, resume_from, wall_offset)
        return _train_sft(config, tasks, eval_tasks, backend, resume_from, wall_offset)
    finally:
        # The trainer, its callbacks and the models refer to each other, so they outlive the run until the cycle
        # collector runs; collect now, so that what the notebook loads next (the trained student) does not sit
        # beside them.
        import gc

        gc.collect()


def _finish(trainer: Any, config: "RunConfig", state: _RunState, reward: Any, resume_from: Path | None) -> TrainResult:
    _time_generation(trainer, state)
    try:
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    finally:
        clients = getattr(reward, "clients", None)  # made by the reward on its first call
        usage = clients.stats.snapshot() if clients is not None else {}
        if hasattr(reward, "close"):
            reward.close()
    # Every process gets here after the same last step: the run's totals are what all of them judged and used.
    parts = ddp.gather((getattr(reward, "total_groups", 0), getattr(reward, "total_failed", 0), usage))
    if len(parts) > 1:
        from ..llm import sum_usage

        usage = sum_usage(p[2] for p in parts)
    result = TrainResult(
        run_dir=config.path,
        method=state.method,
        backend=state.backend,
        steps=trainer.state.global_step,
        checkpoint=last_checkpoint(config.path),
        wall_s=round(state.wall_s(), 3),
        judge_groups=sum(p[0] for p in parts),
        judge_failures=sum(p[1] for p in parts),
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

    from ..reward import JudgeReward, RubricReward, correctness_reward

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
    if config.resume and hasattr(reward, "total_groups") and ddp.is_main():
        # The step files were cut back to the checkpoint (train()): the gate counts what they still hold. The
        # gate sums every process's counts, so the main process alone carries them.
        reward.total_groups, reward.total_failed = _judge_totals(config.path)
    if hasattr(reward, "defer_writes"):
        reward.defer_writes()  # the trainer callback writes each step's records (all processes', by the main one)

    args = GRPOConfig(**trainer_args(config, backend)[1])
    state = _RunState(config.method, student.backend, _samples_per_step(config), wall_offset=wall_offset,
                      dtype=model_dtype(model))
    callback = _make_callback(config, state, reward, lambda: getattr(reward, "clients", None), eval_tasks)
    trainer = GRPOTrainer(
        model=model, reward_funcs=[reward], args=args, train_dataset=grpo_dataset(tasks, config),
        processing_class=tokenizer, callbacks=[callback],
    )
    callback.trainer = trainer
    return _finish(trainer, config, state, reward, resume_from)


def _same_tokenizer(a: Any, b: Any) -> bool:
    return a.get_vocab() == b.get_vocab()


def _train_lopd(config: "RunConfig", tasks, eval_tasks, backend, resume_from, wall_offset) -> TrainResult:
    # The teacher is frozen, so it does not need Unsloth's training patches; plain transformers keeps it simple.
    # The larger model loads first: while a model loads, its weight file is mapped beside the copy being made, so
    # the process peaks at the models loaded so far plus that file (on a CPU in fp32: 7.1 + 2.5 + 1.3 GB this way
    # round, 2.5 + 7.1 + 3.6 GB the other).
    teacher = load_student(config.lopd_teacher_model, config=config, backend="transformers", for_training=False,
                           compact=True)
    student = load_student(config.student_model, config=config, backend=backend, for_training=True)
    # Each task appears n_rollouts times, so a step sees as many student samples as a GRPO step does.
    dataset = grpo_dataset([t for t in tasks for _ in range(config.n_rollouts)], config)
    state = _RunState("lopd", student.backend, _samples_per_step(config), wall_offset=wall_offset,
                      dtype=model_dtype(student.model))
    kwargs = trainer_args(config, backend)[1]
    callback = _make_callback(config, state, None, lambda: None, eval_tasks)
    if _same_tokenizer(student.tokenizer, teacher.tokenizer):
        from trl import DistillationConfig, DistillationTrainer

        args = DistillationConfig(**kwargs)
        trainer = DistillationTrainer(
            model=student.model, teacher_model=teacher.model, args=args, train_dataset=dataset,
            processing_class=student.tokenizer, callbacks=[callback],
        )
    else:
        from trl.experimental.gold import GOLDConfig, GOLDTrainer

        _say("lopd: student and teacher tokenizers differ -> GOLD (ULD loss), on-policy (lmbda=1)")
        import dataclasses

        gold_fields = {f.name for f in dataclasses.fields(GOLDConfig)}
        # trainer_overrides were checked against DistillationConfig; GOLD lacks some of its fields (min_p,
        # repetition_penalty, ...), and an override it cannot take is an error rather than silently dropped.
        missing = sorted(set(config.trainer_overrides) - gold_fields)
        if missing:
            raise TrainError(f"lopd fell back to GOLD (the tokenizers of {config.student_model} and "
                             f"{config.lopd_teacher_model} differ), whose GOLDConfig has no {', '.join(missing)}: "
                             "drop them from trainer_overrides")
        kwargs = {k: v for k, v in kwargs.items() if k in gold_fields}
        args = GOLDConfig(**{
            **kwargs, "lmbda": 1.0, "beta": 1.0, "use_uld_loss": True,
            "teacher_tokenizer_name_or_path": model_folder(config.lopd_teacher_model),
            **config.trainer_overrides,
        })
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
    from ..teacher import ReferenceIndex, collect_references, texts_by_task

    # The main process collects the refs and writes teacher_refs.jsonl; the others train on the very same records.
    records = None
    if ddp.is_main():
        index = ReferenceIndex.for_config(config)
        try:
            records = collect_references(tasks, _judge_config(config), index=index, run_dir=config.path,
                                         progress=False)
        finally:
            index.close()
    records = ddp.broadcast(records)
    refs = texts_by_task(records)
    errors = [r.get("error") for r in records if not r.get("text")]
    if errors:
        _say(f"sft: {len(errors)} of {len(records)} teacher refs failed (first: {errors[0]}); training on the others")
    dataset = sft_dataset(tasks, refs, why=f" (first error: {errors[0]})" if errors else "", config=config)
    student = load_student(config.student_model, config=config, backend=backend, for_training=True)
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(**trainer_args(config, backend)[1])
    state = _RunState("sft", student.backend, _samples_per_step(config), wall_offset=wall_offset,
                      dtype=model_dtype(student.model))
    callback = _make_callback(config, state, None, lambda: None, eval_tasks)
    trainer = SFTTrainer(
        model=student.model, args=args, train_dataset=dataset, processing_class=student.tokenizer,
        callbacks=[callback],
    )
    callback.trainer = trainer
    return _finish(trainer, config, state, None, resume_from)
