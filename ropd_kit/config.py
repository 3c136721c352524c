"""One RunConfig for a whole ROPD run: built from a notebook's `parameters` cell, passed to every stage.

Endpoints are named by base_url, model and the *name* of the environment variable holding the API key, never the
key itself, so a config can be printed, saved next to a run, or become a papermill parameter without leaking it.
`base_url="local"` means "the local llama-server of the offline default": `serve.local_endpoints(config)` starts it
and returns a config whose endpoints point at it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

LOCAL = "local"

# Registry names of the offline models (ropd_kit.offline.models.MODELS).
DEFAULT_TEACHER = "qwen2.5-coder-1.5b-instruct"
DEFAULT_STUDENT = "qwen2.5-coder-0.5b-instruct"
FAST_MODEL = "smollm2-135m-instruct"

Role = Literal["teacher", "rubricator", "verifier", "student"]
StructuredOutput = Literal["auto", "json_schema", "json_object", "none"]
Method = Literal["ropd", "lopd", "rlvr", "judge", "sft"]


def cache_root() -> Path:
    """Where built binaries, model files, the LLM cache and the teacher reference index live (outside the repo)."""
    return Path(os.environ.get("ROPD_CACHE", Path.home() / ".cache" / "ropd-kit"))


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the field and the value."""


# TRL's names for RunConfig fields (GRPOConfig, DistillationConfig, ModelConfig, ScriptArguments), accepted beside
# ours so that settings written for TRL carry over. TRL's output_dir holds checkpoints; run_dir holds the whole run,
# checkpoints in <run_dir>/checkpoints. TRL's beta is GRPO's KL coefficient, not lopd's divergence (see
# RunConfig._aliases_agree).
TRL_ALIASES: dict[str, str] = {
    "num_generations": "n_rollouts",
    "max_completion_length": "rollout_max_tokens",
    "temperature": "rollout_temperature",
    "top_p": "rollout_top_p",
    "beta": "kl_beta",
    "output_dir": "run_dir",
    "model_name_or_path": "student_model",
    "dtype": "student_dtype",
    "torch_dtype": "student_dtype",
    "teacher_model_name_or_path": "lopd_teacher_model",
    "dataset_name": "tasks_path",
    "dataset_config": "tasks_subset",
    "dataset_train_split": "tasks_split",
}
# Second names of RunConfig fields, accepted wherever parameters are (Python, notebooks, batch specs, config files):
# the task options read tasks_* / eval_tasks_*, and the limit is the field that existed first; TRL's names.
PARAMETER_ALIASES: dict[str, str] = {"tasks_limit": "n_tasks", "eval_tasks_limit": "n_eval_tasks", **TRL_ALIASES}
# TRL names with no RunConfig field of their own: what to set instead.
TRL_NAMES_SET_ELSEWHERE: dict[str, str] = {
    "per_device_train_batch_size": "prompts_per_step (a step's batch is prompts_per_step x n_rollouts samples)",
    "gradient_accumulation_steps": "trainer_overrides={'gradient_accumulation_steps': N}",
    "logging_steps": "nothing: the train log has one record per optimizer step",
    "max_prompt_length": "max_prompt_tokens",
    "num_train_epochs": "max_steps",
    "lora_dropout": "nothing: the LoRA has no dropout",
}


def unknown_name_hint(name: str) -> str:
    """What to write instead of a name RunConfig does not take, when we know ('' otherwise)."""
    instead = TRL_NAMES_SET_ELSEWHERE.get(name)
    return f"{name}: set {instead}" if instead else ""


def _lopd_beta(params: dict[str, Any]) -> str:
    # TRL's DistillationConfig.beta is lopd's divergence; a lopd user's beta would land on GRPO's KL coefficient.
    if "beta" in params and params.get("method") == "lopd":
        return ("beta is read as kl_beta, GRPO's KL coefficient, which lopd does not use; lopd's divergence (TRL's "
                "DistillationConfig.beta, 1.0 = reverse KL) is trainer_overrides={'beta': ...}")
    return ""


def canonical_params(params: dict[str, Any]) -> dict[str, Any]:
    """`params` with every alias (PARAMETER_ALIASES) under its field's name. When tasks_limit and n_tasks (or their
    eval_ pair) are both given, the later one that is not None wins, as in the merged parameter sets where this
    happens: a batch grid after its base, papermill's injected cell after a notebook's parameters cell. A TRL name
    and ours given together with different values raise ConfigError naming both: one set of settings written with
    two vocabularies, where which was meant cannot be told."""
    out: dict[str, Any] = {}
    given_as: dict[str, str] = {}
    for key, value in params.items():
        name = PARAMETER_ALIASES.get(key, key)
        earlier = given_as.get(name)
        if (earlier is not None and earlier != key and (key in TRL_ALIASES or earlier in TRL_ALIASES)
                and value is not None and out[name] is not None and value != out[name]):
            raise ConfigError(f"{earlier}={out[name]!r} and {key}={value!r} set the same field ({name}): give one")
        if value is not None or name not in out:
            out[name] = value
            given_as[name] = key
    return out


# The TRL config class of each method's trainer; `RunConfig.trainer_overrides` are fields of it.
TRAINER_CONFIG_CLASSES: dict[str, str] = {
    "ropd": "GRPOConfig", "rlvr": "GRPOConfig", "judge": "GRPOConfig", "lopd": "DistillationConfig", "sft": "SFTConfig",
}
_ONE_RECORD_PER_STEP = (None, "the train log has one record per optimizer step, logged at every step")
# The integrations transformers' Trainer reports to (transformers.integrations.INTEGRATION_TO_CALLBACK, checked
# against it by the tests), listed here so that a misspelt report_to stops a config before torch is imported.
REPORT_TO_INTEGRATIONS = ("azure_ml", "clearml", "codecarbon", "comet_ml", "dagshub", "dvclive", "flyte", "kubeflow",
                          "mlflow", "neptune", "swanlab", "tensorboard", "trackio", "wandb")
_FROM_RUNCONFIG_COMMON: dict[str, tuple[str | None, str | None]] = {
    "output_dir": ("run_dir", "checkpoints go to <run_dir>/checkpoints"),
    "max_steps": ("max_steps", None),
    "learning_rate": ("learning_rate", None),
    "per_device_train_batch_size": ("prompts_per_step", "a step's batch is prompts_per_step x n_rollouts; "
                                    "gradient_accumulation_steps may be overridden"),
    "seed": ("seed", None),
    "data_seed": ("seed", None),
    "save_steps": ("save_steps", None),
    "save_strategy": ("save_steps", "resume=True continues from those checkpoints"),
    "logging_steps": _ONE_RECORD_PER_STEP,
    "logging_strategy": _ONE_RECORD_PER_STEP,
    "resume_from_checkpoint": ("resume", None),
    "report_to": ("report_to", None),
}
_FROM_RUNCONFIG_GENERATION: dict[str, tuple[str | None, str | None]] = {
    "max_completion_length": ("rollout_max_tokens", None),
    "temperature": ("rollout_temperature", None),
    "top_p": ("rollout_top_p", None),
    "use_vllm": ("use_vllm", "train() checks it against the machine before anything starts"),
    "vllm_mode": ("vllm_mode", None),
    "vllm_server_host": ("vllm_server_host", None),
    "vllm_server_port": ("vllm_server_port", None),
    "vllm_server_base_url": ("vllm_server_host and vllm_server_port", None),
}
# Trainer fields the kit sets from its own settings, per TRL config class -> (the RunConfig field to set instead,
# why). Overriding them would break what the kit relies on (a group of n_rollouts is one rubric's group, checkpoints
# in the run directory, one train-log record per step) or give one setting two names that could disagree.
TRAINER_ARGS_FROM_RUNCONFIG: dict[str, dict[str, tuple[str | None, str | None]]] = {
    "GRPOConfig": {
        **_FROM_RUNCONFIG_COMMON, **_FROM_RUNCONFIG_GENERATION,
        "num_generations": ("n_rollouts", "TRL's group is the ROPD group: one rubric scores its n_rollouts rollouts"),
        "scale_rewards": ("scale_rewards", None),
        "beta": ("kl_beta", None),
    },
    "DistillationConfig": {**_FROM_RUNCONFIG_COMMON, **_FROM_RUNCONFIG_GENERATION},
    "SFTConfig": {**_FROM_RUNCONFIG_COMMON, "max_length": ("max_prompt_tokens and teacher_max_tokens", "their sum")},
}


def _type_name(tp: Any) -> str:
    return tp.__name__ if isinstance(tp, type) else str(tp)


def _allowed_values(field: Any) -> list[str] | None:
    """The values a string field of a TRL config takes: its `choices`, or the list after "Supported values are" in
    its help (TRL documents loss_type that way and checks it only at the first loss computation, a step too late)."""
    import re

    choices = field.metadata.get("choices")
    if choices:
        return [str(c) for c in choices]
    found = re.search(r"Supported values are:? ([^.]*)\.", field.metadata.get("help", ""))
    values = re.findall(r"'([A-Za-z0-9_\-]+)'", found.group(1)) if found else []
    return values if len(values) >= 3 else None


def check_trainer_overrides(method: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """`overrides` checked against the TRL config class of `method` (TRAINER_CONFIG_CLASSES); returns them with
    values coerced to the field types. Raises ConfigError naming every unknown field, field of the wrong type or
    value, and field the kit sets itself (with the RunConfig field to set instead). Imports trl only when there is
    something to check."""
    if not overrides:
        return {}
    import dataclasses
    import difflib

    import trl
    from pydantic import TypeAdapter, ValidationError

    class_name = TRAINER_CONFIG_CLASSES[method]
    fields = {f.name: f for f in dataclasses.fields(getattr(trl, class_name)) if f.init}
    reserved = TRAINER_ARGS_FROM_RUNCONFIG[class_name]
    problems: list[str] = []
    checked: dict[str, Any] = {}
    for key, value in overrides.items():
        if key in reserved:
            instead, why = reserved[key]
            problems.append(f"{key!r} is set by the kit" + (f": set RunConfig.{instead} instead" if instead else "")
                            + (f" ({why})" if why else ""))
            continue
        field = fields.get(key)
        if field is None:
            close = difflib.get_close_matches(key, list(fields), n=1)
            problems.append(f"{key!r} is not a field of trl.{class_name}"
                            + (f" (did you mean {close[0]!r}?)" if close else ""))
            continue
        try:
            value = TypeAdapter(field.type, config=ConfigDict(arbitrary_types_allowed=True)).validate_python(value)
        except ValidationError as exc:
            problems.append(f"{key}={value!r} is not a valid {_type_name(field.type)} ({exc.errors()[0]['msg']})")
            continue
        except Exception:  # noqa: BLE001 - a type pydantic cannot build a validator for: TRL checks it when built
            pass
        allowed = _allowed_values(field)
        if allowed and isinstance(value, str) and value not in allowed:
            problems.append(f"{key}={value!r} is not one of {', '.join(allowed)}")
            continue
        checked[key] = value
    if problems:
        raise ConfigError(f"trainer_overrides for method={method!r} (trl.{class_name}): " + "; ".join(problems))
    return checked


class EndpointConfig(BaseModel):
    """An OpenAI-compatible chat endpoint for one role."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = LOCAL
    model: str = DEFAULT_TEACHER
    api_key_env: str | None = Field(
        default=None, description="Name of the environment variable that holds the API key (never the key)."
    )
    max_concurrency: int = Field(default=8, ge=1, le=1024)
    timeout_s: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=4, ge=0, le=20)
    structured_output: StructuredOutput = "auto"
    # API-grade limits (ropd_kit.limits), per endpoint = base_url + model, shared by every client of it in a process.
    requests_per_minute: int | None = Field(
        default=None, ge=1, description="At most this many HTTP requests (retries included) in any 60 s (None: none)."
    )
    tokens_per_minute: int | None = Field(
        default=None, ge=1,
        description="At most this many tokens in any 60 s: prompt estimate + max_tokens charged before a call, "
        "corrected to the reported usage after it (None: no limit).",
    )
    usd_per_mtok_input: float | None = Field(
        default=None, ge=0, allow_inf_nan=False, description="$ per million prompt tokens (None: unpriced)."
    )
    usd_per_mtok_output: float | None = Field(
        default=None, ge=0, allow_inf_nan=False, description="$ per million completion tokens (None: unpriced)."
    )
    breaker_failures: int | None = Field(
        default=5, ge=1, description="Open the circuit breaker after this many consecutive failed calls (None: off). "
        "A server on this machine (loopback host, e.g. the local llama-server) has none: slow there means busy.",
    )
    breaker_failure_rate: float = Field(
        default=0.5, gt=0, le=1, description="...or when this fraction or more of the last breaker_window calls failed."
    )
    breaker_window: int = Field(default=20, ge=1, le=10_000)
    breaker_cooldown_s: float = Field(
        default=30.0, gt=0, allow_inf_nan=False, description="Open for this long, then one probe call is let through."
    )

    @field_validator("api_key_env")
    @classmethod
    def _looks_like_a_name(cls, v: str | None) -> str | None:
        # A key pasted here by mistake would end up in papermill outputs; refuse anything that is not a variable name.
        if v is not None and (not v.replace("_", "").isalnum() or not (v[0].isalpha() or v[0] == "_")):
            raise ValueError(
                "api_key_env must be the NAME of an environment variable (e.g. 'OPENAI_API_KEY'), not a key value"
            )
        return v

    @model_validator(mode="after")
    def _prices_come_in_pairs(self) -> "EndpointConfig":
        # Half a price table would report a cost that silently leaves out one side of the bill.
        if (self.usd_per_mtok_input is None) != (self.usd_per_mtok_output is None):
            raise ValueError(
                f"usd_per_mtok_input ({self.usd_per_mtok_input}) and usd_per_mtok_output ({self.usd_per_mtok_output}) "
                "go together: set both (0 for a side that is free) or neither"
            )
        return self

    @property
    def priced(self) -> bool:
        return self.usd_per_mtok_input is not None and self.usd_per_mtok_output is not None

    @property
    def is_local(self) -> bool:
        return self.base_url == LOCAL

    def api_key(self) -> str:
        """The key from the environment; local servers accept any non-empty key."""
        if self.api_key_env is None:
            return "not-needed"
        value = os.environ.get(self.api_key_env)
        if not value:
            raise ConfigError(f"environment variable {self.api_key_env!r} (api_key_env for {self.base_url}) is not set")
        return value


class RunConfig(BaseModel):
    """Everything a run needs. Field names are what notebooks use as papermill parameters."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    run_dir: str = Field(
        default="runs/demo", validation_alias=AliasChoices("run_dir", "output_dir"),
        description="The run's folder: records, config, checkpoints in <run_dir>/checkpoints. Also output_dir.",
    )
    seed: int = 0

    # Tasks: the kit's JSONL or any source `sources.load_task_source` reads (a local json/jsonl/parquet/csv file in
    # another shape, a `save_to_disk` folder, a hub id), with the data set options beside it. Every stage loads them
    # through `sources.tasks_from_config`.
    tasks_path: str = Field(
        default="data/arith_train.jsonl", validation_alias=AliasChoices("tasks_path", "dataset_name"),
        description="Training tasks: the kit's JSONL, a local json/jsonl/parquet/csv file or save_to_disk folder in "
        "another shape (detected from its columns), or a hub data set id.",
    )
    tasks_split: str | None = Field(
        default=None, min_length=1, validation_alias=AliasChoices("tasks_split", "dataset_train_split"),
        description="Split of a data set (None: 'train'; a local file is its own split).",
    )
    tasks_subset: str | None = Field(
        default=None, min_length=1, validation_alias=AliasChoices("tasks_subset", "dataset_config"),
        description="Config name of a hub data set.",
    )
    tasks_field_map: dict[str, str] | None = Field(
        default=None,
        description="Our field -> the source's column, for columns the shapes do not recognise, e.g. "
        "{'question': 'stem', 'choices': 'opts', 'answer': 'gold'}.",
    )
    tasks_sample: int | None = Field(
        default=None, ge=1,
        description="A sample of this many rows (seeded by `seed`, kept in file order), before n_tasks.",
    )
    n_tasks: int | None = Field(
        default=None, ge=1, validation_alias=AliasChoices("n_tasks", "tasks_limit"),
        description="Use the first n tasks (after tasks_sample; None: all). Also accepted as tasks_limit.",
    )
    eval_tasks_path: str = Field(
        default="data/arith_test.jsonl", description="Evaluation tasks: any source tasks_path takes."
    )
    eval_tasks_split: str | None = Field(default=None, min_length=1, description="Its split (None: 'test').")
    eval_tasks_subset: str | None = Field(default=None, min_length=1, description="Config name of a hub data set.")
    eval_tasks_field_map: dict[str, str] | None = Field(default=None, description="As tasks_field_map.")
    eval_tasks_sample: int | None = Field(default=None, ge=1, description="As tasks_sample, before n_eval_tasks.")
    prompts_dir: str | None = Field(
        default=None,
        description="A folder of prompt templates that replace the packaged ones by file name (ropd_kit/prompts: "
        "<name>.txt for every family, <family>/<name>.txt for one); anything it does not hold is packaged.",
    )

    # Endpoints of the black-box roles (teacher refs, rubric induction, verification) and of the student sampler.
    teacher: EndpointConfig = Field(default_factory=EndpointConfig)
    rubricator: EndpointConfig = Field(default_factory=EndpointConfig)
    verifier: EndpointConfig = Field(default_factory=EndpointConfig)
    student: EndpointConfig = Field(default_factory=lambda: EndpointConfig(model=DEFAULT_STUDENT))

    # Teacher references
    n_teacher_refs: int = Field(default=4, ge=1, le=64)
    teacher_temperature: float = Field(default=0.7, ge=0, le=2)
    teacher_top_p: float = Field(default=0.95, gt=0, le=1)
    teacher_max_tokens: int = Field(default=512, ge=8)
    teacher_seed: int | None = Field(
        default=0,
        description="Seed of the teacher's reference samples (with ref_idx, it makes the request seed). 0: the same K "
        "references whatever the run's `seed` — they are the teacher's, at its own settings, and runs that differ "
        "only by seed then compare on the same references and share the reference index. None: the run's `seed`, "
        "so each run seed gets its own references (keyed apart in the index).",
    )

    # Student rollouts (one group per task)
    n_rollouts: int = Field(default=8, ge=2, le=256, validation_alias=AliasChoices("n_rollouts", "num_generations"))
    rollout_temperature: float = Field(
        default=1.0, ge=0, le=2, validation_alias=AliasChoices("rollout_temperature", "temperature")
    )
    rollout_top_p: float = Field(default=1.0, gt=0, le=1, validation_alias=AliasChoices("rollout_top_p", "top_p"))
    rollout_max_tokens: int = Field(
        default=384, ge=8, validation_alias=AliasChoices("rollout_max_tokens", "max_completion_length")
    )

    # Rubric induction
    min_criteria: int = Field(default=4, ge=1, le=12)
    max_criteria: int = Field(default=12, ge=1, le=12)
    rubricator_temperature: float = Field(default=0.3, ge=0, le=2)
    rubricator_max_tokens: int = Field(default=1024, ge=64)
    rubric_attempts: int = Field(default=3, ge=1, le=10, description="Tries per rubric, the parse error fed back.")
    rubric_student_samples: int = Field(
        default=4, ge=0, le=64, description="How many of the group's rollouts the Rubricator sees."
    )
    pitfalls: bool = Field(default=False, description="Allow negative 'pitfall' criteria (points -1/-2).")
    rubric_source: Literal["contrast", "reference_consensus"] = Field(
        default="contrast",
        description="'contrast': the Rubricator compares the teacher refs with rubric_student_samples of the "
        "group's rollouts and writes criteria where they differ (the method's own rubric). 'reference_consensus': "
        "it sees only the teacher refs and writes the key points most of them agree on, each a checkable "
        "criterion; no rollout is shown, so a criterion cannot describe an attempt's flaw as if it were a virtue, "
        "and a task's rubric is the same at every step.",
    )
    absence_criteria: Literal["allow", "refuse"] = Field(
        default="allow",
        description="'refuse': a positive criterion phrased as an absence ('Does not mention ...', 'Avoids ...') "
        "is sent back to the Rubricator (an empty or vague answer would meet it), asking for what a good answer "
        "does instead or, with pitfalls, for the mistake itself with negative points (rubrics.absence_problem).",
    )

    # Verification
    verifier_temperature: float = Field(default=0.0, ge=0, le=2)
    verifier_max_tokens: int = Field(default=1024, ge=32)
    verify_attempts: int = Field(default=2, ge=1, le=10, description="Tries for the batched call before per-answer calls.")
    max_answers_per_call: int = Field(default=12, ge=1, le=64, description="Chunk size of a batched verifier call.")
    max_answer_chars: int = Field(
        default=4000, ge=100,
        description="A longer answer is shown to the judges as its start and its end (the final line kept) in this "
        "many characters, with a marker saying how much was cut between them (judge_text.head_and_tail).",
    )
    strip_thinking: bool = Field(default=True, description="Drop reasoning before </think> before judging.")
    truncated_rollouts: Literal["judge", "zero"] = Field(
        default="judge", description="'zero': a rollout cut by max_tokens scores 0 without being judged."
    )
    score_eps: float = Field(default=1e-6, gt=0)
    # Reward-fidelity levers, each measured by `python -m ropd_kit.fidelity`. Only consensus_check and the
    # result share it enables are on by default: on both arithmetic train splits the check turned the 1.5B Verifier's
    # chance-level ranking inside a group into a near-exact one (within-group AUC 0.53 -> 1.00 on 12 one-step tasks,
    # 0.45 -> 0.86 on 6 two-step tasks; docs/fidelity.md).
    verifier_samples: int = Field(
        default=1,
        ge=1,
        le=9,
        description="Self-consistency: Verifier samples per chunk, majority per criterion (ties False; failed samples left out).",
    )
    verifier_sample_temperature: float = Field(
        default=0.7, ge=0, le=2, description="Temperature of the Verifier samples after the first."
    )
    verifier_evidence: bool = Field(
        default=False,
        description="The Verifier quotes the span meeting each criterion it marks true; a quote not found in the answer turns it false.",
    )
    verifier_read_first: bool = Field(
        default=False,
        description="The Verifier writes each answer's final result before its true/false judgements.",
    )
    verifier_mode: Literal["auto", "batched", "soft"] = Field(
        default="auto",
        description="'batched': the Verifier writes a JSON matrix of true/false for up to max_answers_per_call "
        "answers at once. 'soft': one short request per (answer, criterion), nothing written before the verdict, "
        "which is read as p(true) from the endpoint's token log-probabilities and scored where the boolean stood "
        "(scoring.weighted_score); an answer's criteria are asked one after another, so the server's prompt cache "
        "keeps what they share. Where an endpoint returns no log-probabilities the booleans stand (the batched call) "
        "and the verdict records say why. 'auto' (default): soft wherever the Verifier decides the ranking, that is "
        "for task families with no checkable final answer (open-ended) and for checkable groups whose teacher "
        "references agree on no answer (or with consensus_check off): there the 1.5B judge's booleans tie whole "
        "groups and its probabilities rank answers. Batched where the consensus check decides the result "
        "(arithmetic, math, multiple choice with a teacher majority): it carries the ranking there, and the batched "
        "call costs a fifth to a tenth of the tokens. Batched also when verifier_evidence, verifier_read_first or "
        "verifier_samples > 1 asks for written or sampled replies.",
    )
    consensus_check: bool = Field(
        default=True,
        description="The final-result criterion is decided by code against the majority answer of the teacher's references "
        "(checkable families only; no ground truth); a missing one is added.",
    )
    result_weight_share: float = Field(
        default=0.75, ge=0, lt=1,
        description="With consensus_check: when scoring, the final-result criterion decided by code weighs at least "
        "this share of the rubric's positive points (scoring.result_weighted; the rubric's points stay on record). "
        "0: the Rubricator's weights as written. 0.75 by default: chosen on the train splits, where it lifted the "
        "pooled AUC (one-step 0.85 -> 1.00, two-step 0.71 -> 0.89) and left the within-group ranking as it was.",
    )
    criterion_weighting: Literal["rubric", "spread"] = Field(
        default="rubric",
        description="'rubric': each criterion weighs its points (after the result share). 'spread': its points "
        "times how much its verdicts vary over the group's student rollouts (scoring.spread_weighted): a criterion "
        "every rollout meets, or every rollout misses, weighs 0; one that any rollout meets and another misses keeps "
        "its points. Changes advantages with soft verdicts or scale_rewards 'none'/'batch'; with booleans and "
        "'group' scaling such a criterion already moves no advantage.",
    )

    # LLM client
    cache_dir: str | None = Field(default=None, description="Disk cache of LLM calls (None: <cache_root>/llm).")
    use_cache: bool = True
    ref_index_dir: str | None = Field(
        default=None, description="Teacher reference index (None: <cache_root>/teacher_refs); URL-independent."
    )
    teacher_prompt_version: str = "v1"

    # Local server (offline default)
    server_parallel: int = Field(default=4, ge=1, le=64)
    server_ctx_size: int | None = Field(
        default=None, ge=512,
        description="Total context of a local llama-server, split evenly over its server_parallel slots. None: "
        "sized from this config (offline.serve.slot_context_need: the largest rubric/verifier/teacher/judge prompt "
        "plus its output and retries, per slot); a value too small for that is refused when the server starts.",
    )
    server_threads: int | None = None

    # Training (train.py)
    method: Method = "ropd"
    student_model: str = Field(
        default=DEFAULT_STUDENT, validation_alias=AliasChoices("student_model", "model_name_or_path")
    )
    lopd_teacher_model: str = Field(
        default=DEFAULT_TEACHER, validation_alias=AliasChoices("lopd_teacher_model", "teacher_model_name_or_path")
    )
    max_steps: int = Field(default=10, ge=1)
    prompts_per_step: int = Field(default=2, ge=1)
    learning_rate: float = Field(default=1e-5, gt=0)
    lora_r: int = Field(default=16, ge=1)
    lora_alpha: int = Field(default=32, ge=1)
    kl_beta: float = Field(default=0.0, ge=0, validation_alias=AliasChoices("kl_beta", "beta"))
    scale_rewards: Literal["group", "batch", "none"] = "group"
    max_prompt_tokens: int = Field(default=512, ge=16)
    save_steps: int = Field(default=5, ge=1)
    report_to: str | list[str] = Field(
        default="none",
        description="Where the trainer also sends its metrics (TRL's report_to): 'none', 'tensorboard' (event files "
        "in <run_dir>/checkpoints/runs), 'wandb', 'mlflow', ..., 'all' (every one installed) or a list. The train "
        "log is written whatever this says.",
    )
    eval_steps: int | None = Field(default=None, ge=1)
    eval_k: int = Field(default=1, ge=1)
    n_eval_tasks: int | None = Field(
        default=None, ge=1, validation_alias=AliasChoices("n_eval_tasks", "eval_tasks_limit"),
        description="Evaluate on the first n eval tasks (after eval_tasks_sample; None: all). Also eval_tasks_limit.",
    )
    resume: bool = False
    max_judge_failure_rate: float = Field(default=0.5, ge=0, le=1)
    reward_deadline_s: float | None = Field(
        default=None, gt=0, allow_inf_nan=False,
        description="Per-step reward deadline: groups not judged this many seconds after the step's judging starts "
        "get None (zero advantage) and are counted as judge failures (None: wait for every group).",
    )
    use_unsloth: Literal["auto", "never", "always"] = "auto"
    judge_role: Literal["teacher", "rubricator", "verifier"] = Field(
        default="verifier",
        description="The endpoint that grades each rollout 0-10 in the 'judge' baseline (reward.JudgeReward; also "
        "notebook 05's judge signal). The Verifier's by default: the grader that checks rubric criteria in ropd then "
        "grades without a rubric, so the two rewards differ only by the rubric; 'teacher' makes it the teacher.",
    )
    # GPU generation (train/methods.py passes these to TRL / Unsloth). They need CUDA and the package: train()
    # refuses them on a machine without, before any server or model starts (train.student.check_generation_options).
    use_vllm: bool = Field(
        default=False, description="TRL's vLLM generation for the GRPO methods and lopd (needs CUDA + vllm)."
    )
    vllm_mode: Literal["colocate", "server"] = Field(
        default="colocate",
        description="'colocate': vLLM in the training process, sharing its GPU; 'server': a separate `trl vllm-serve`.",
    )
    vllm_server_host: str = Field(default="0.0.0.0", description="Host of the `trl vllm-serve` server (server mode).")
    vllm_server_port: int = Field(default=8000, ge=1, le=65535, description="Its port (server mode).")
    fast_inference: bool = Field(
        default=False,
        description="Unsloth's fast inference: the student is loaded with Unsloth's vLLM engine, which its GRPO "
        "trainer generates with (GRPO methods; needs CUDA + unsloth + vllm).",
    )
    trainer_overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="Fields of the method's TRL config class by name (GRPOConfig for ropd/rlvr/judge, "
        "DistillationConfig for lopd, SFTConfig for sft), e.g. {'gradient_accumulation_steps': 4, 'loss_type': "
        "'grpo'}; checked against that class when the config is built. Fields the kit sets from its own settings "
        "are refused with the RunConfig field to set instead (TRAINER_ARGS_FROM_RUNCONFIG).",
    )
    student_dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto", validation_alias=AliasChoices("student_dtype", "dtype", "torch_dtype"),
        description="Weights of the student and the white-box teacher. 'auto': bf16 on a CPU with native bf16 "
        "(AVX512_BF16/AMX, Arm BF16), else fp32; on CUDA bf16 where supported, else fp16.",
    )

    @field_validator("tasks_field_map", "eval_tasks_field_map")
    @classmethod
    def _field_map(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        # Checked here, not when the tasks are read: a misspelt name in a batch grid should stop the batch at once.
        if value is None:
            return None
        from .sources import field_map_problems

        problems = field_map_problems(value)
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @field_validator("prompts_dir")
    @classmethod
    def _prompts_dir(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from .prompts import check_prompts_dir

        problems = check_prompts_dir(value)
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @model_validator(mode="before")
    @classmethod
    def _aliases_agree(cls, data: Any) -> Any:
        # pydantic takes the first of a field's names it finds and drops the other silently; two different values
        # under two names of one field are a config written twice, so say which two.
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for name, field in cls.model_fields.items():
            if isinstance(field.validation_alias, AliasChoices):
                given = [c for c in field.validation_alias.choices if isinstance(c, str) and c in data]
                if len(given) > 1 and any(data[c] != data[given[0]] for c in given[1:]):
                    raise ValueError(" and ".join(f"{c}={data[c]!r}" for c in given)
                                     + f" set the same field ({name}): give one")
                for repeated in given[1:]:  # the same value twice: one name is enough (the other would be extra)
                    del data[repeated]
        if _lopd_beta(data):
            raise ValueError(_lopd_beta(data))
        hints = [unknown_name_hint(k) for k in data if isinstance(k, str) and k not in cls.model_fields]
        if any(hints):
            raise ValueError("; ".join(h for h in hints if h))
        return data

    @field_validator("report_to")
    @classmethod
    def _report_to(cls, value: str | list[str]) -> str | list[str]:
        names = [value] if isinstance(value, str) else list(value)
        if not names:
            raise ValueError("report_to is an empty list: use 'none' to report nowhere")
        special = [n for n in names if n in ("none", "all")]
        if special and len(names) > 1:
            raise ValueError(f"report_to={value!r}: {special[0]!r} stands alone, not in a list with others")
        unknown = [n for n in names if n not in REPORT_TO_INTEGRATIONS and n not in ("none", "all")]
        if unknown:
            raise ValueError(f"report_to: {', '.join(map(repr, unknown))} is not an integration transformers "
                             f"reports to; use 'none', 'all' or {', '.join(REPORT_TO_INTEGRATIONS)}")
        return value

    @model_validator(mode="after")
    def _soft_verdicts_alone(self) -> "RunConfig":
        # Soft verdicts read the first token of a reply with nothing written before it; these levers need written
        # replies (quotes, a final result) or sampled ones, which a probability read at temperature 0 has no use for.
        # 'auto' turns batched where these are on (verify.verifier_mode_for).
        if self.verifier_mode == "soft":
            clash = [f"{name}={value!r}" for name, value, off in (
                ("verifier_evidence", self.verifier_evidence, False),
                ("verifier_read_first", self.verifier_read_first, False),
                ("verifier_samples", self.verifier_samples, 1)) if value != off]
            if clash:
                raise ValueError(f"verifier_mode='soft' reads each verdict from one token's probabilities, with "
                                 f"nothing written before it; {', '.join(clash)} needs the batched Verifier: turn it "
                                 "off or use verifier_mode='batched'")
        return self

    @model_validator(mode="after")
    def _criteria_range(self) -> "RunConfig":
        if self.min_criteria > self.max_criteria:
            raise ValueError(f"min_criteria ({self.min_criteria}) > max_criteria ({self.max_criteria})")
        return self

    @model_validator(mode="after")
    def _trainer_settings(self) -> "RunConfig":
        # What can be told from the config alone; whether this machine has CUDA / vllm / unsloth is train()'s check.
        if self.use_vllm and self.method == "sft":
            raise ValueError("use_vllm=True with method='sft': sft trains on the teacher refs and generates nothing "
                             "(vLLM generation applies to ropd, rlvr, judge and lopd)")
        if self.fast_inference:
            if self.method not in ("ropd", "rlvr", "judge"):
                raise ValueError(f"fast_inference=True with method={self.method!r}: Unsloth's fast inference serves "
                                 "the GRPO methods' generation (ropd, rlvr, judge); for lopd use use_vllm")
            if self.use_unsloth == "never":
                raise ValueError("fast_inference=True needs the Unsloth backend, but use_unsloth='never'")
            if self.use_vllm:
                raise ValueError("fast_inference=True and use_vllm=True start two vLLM engines: pick one "
                                 "(fast_inference with Unsloth, use_vllm with plain TRL)")
        checked = check_trainer_overrides(self.method, self.trainer_overrides)
        if checked != self.trainer_overrides:
            # Assigned around validate_assignment (which would run this validator again): values coerced to the
            # field's type, e.g. a YAML "1e-5" string to a float.
            object.__setattr__(self, "trainer_overrides", checked)
        return self

    @property
    def path(self) -> Path:
        return Path(self.run_dir)

    def endpoint(self, role: Role) -> EndpointConfig:
        return getattr(self, role)

    @classmethod
    def from_params(cls, **params: Any) -> "RunConfig":
        """Build from flat notebook parameters.

        Endpoint fields may be given flat, as `<role>_<field>` (e.g. `teacher_base_url`, `verifier_api_key_env`),
        which is what a papermill `parameters` cell can hold; unknown names raise with the name in the message.
        `tasks_limit` / `eval_tasks_limit` are n_tasks / n_eval_tasks, and TRL's names (num_generations, beta, ...)
        are ours (PARAMETER_ALIASES).
        """
        if _lopd_beta(params):
            raise ConfigError(_lopd_beta(params))
        params = canonical_params(params)
        nested: dict[str, Any] = {}
        endpoint_fields = set(EndpointConfig.model_fields)
        roles = ("teacher", "rubricator", "verifier", "student")
        for key, value in params.items():
            role = next((r for r in roles if key.startswith(r + "_") and key[len(r) + 1 :] in endpoint_fields), None)
            if role is not None:
                nested.setdefault(role, {})[key[len(role) + 1 :]] = value
            else:
                nested[key] = value
        for role in roles:
            if isinstance(nested.get(role), dict):
                # Flat endpoint fields override the defaults of that role only.
                base = cls.model_fields[role].get_default(call_default_factory=True).model_dump()
                nested[role] = {**base, **nested[role]}
        if params.get("student_model") is not None:
            # `student_model` names both the student endpoint's model and the top-level field: the model served
            # for rollouts is the one that is trained, so one flat name sets both.
            nested["student_model"] = params["student_model"]
        unknown = sorted(set(nested) - set(cls.model_fields))
        if unknown:
            hints = [h for h in map(unknown_name_hint, unknown) if h]
            raise ConfigError(f"unknown RunConfig parameter(s): {', '.join(unknown)}"
                              + (f" ({'; '.join(hints)})" if hints else ""))
        return cls(**nested)

    def save(self, path: str | Path | None = None) -> Path:
        """Write the config (no secrets: only variable names) next to the run's records."""
        target = Path(path) if path else self.path / "config.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(self.model_dump(), indent=2) + "\n")
        return target

    @classmethod
    def load(cls, path: str | Path) -> "RunConfig":
        return cls(**json.loads(Path(path).read_text()))
