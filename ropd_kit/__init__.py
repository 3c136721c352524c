"""ropd-kit: Rubric-based On-Policy Distillation.

Stages (one module each, see the repository's DESIGN notes): teacher references -> rubric induction ->
blind verification -> scores -> GRPO. What a user needs is importable from here:

    from ropd_kit import RunConfig, load_config, train

    config = load_config("configs/gpu.yaml")        # or RunConfig(...), TRL's names accepted (num_generations, ...)
    result = train(config)                          # LoRA checkpoints in <run_dir>/checkpoints

Importing the package is cheap: each name below is imported on first use (PEP 562), and heavy libraries (torch,
transformers, trl, unsloth) only inside the functions that need them.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public name -> the module that defines it (relative to the package).
_EXPORTS: dict[str, str] = {
    # configuration
    "RunConfig": "config", "EndpointConfig": "config", "ConfigError": "config", "load_config": "config_file",
    # tasks
    "Task": "data", "load_tasks": "data", "load_task_source": "sources", "tasks_from_config": "sources",
    # stage 1: teacher references and student rollouts
    "collect_references": "teacher", "sample_rollouts": "rollouts",
    # stage 2: the Rubricator
    "Rubric": "rubrics", "Criterion": "rubrics", "induce_rubric": "rubrics", "parse_rubric": "rubrics",
    # stage 3: the Verifier
    "verify_group": "verify", "parse_verdicts": "verify",
    # stage 4: scores and advantages
    "weighted_pass_rate": "scoring", "group_advantages": "scoring",
    # stage 5: rewards for TRL, the stages over a run directory, the judges' clients
    "RubricReward": "reward", "JudgeReward": "reward", "correctness_reward": "reward", "run_stages": "pipeline",
    "make_clients": "llm",
    # stage 6: training, evaluation, the trained student
    "train": "train", "TrainResult": "train", "load_student": "train", "evaluate": "train.evaluate",
    "load_trained": "train.after", "chat": "train.after", "save_merged": "train.after",
    # analysis, inspection, batches
    "signal_auc": "analysis", "RubricInspector": "inspector", "run_batch": "batch",
}
# Names that are a subpackage themselves: `ropd_kit.train` is the package and, called, train(config).
_PACKAGES = {"train"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f"{__name__}.{module_name}")
    value = module if name in _PACKAGES else getattr(module, name)
    globals()[name] = value  # found once; later lookups do not come here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
