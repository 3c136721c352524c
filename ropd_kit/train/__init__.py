"""Training and evaluation: ROPD stage 6 (GRPO on rubric rewards) and the baselines, the student, pass@k.

- `methods`:  `train(config)` — ropd, lopd, rlvr, judge, sft with the same logs.
- `student`:  `load_student(...)` — Unsloth on a GPU, transformers + peft LoRA on a CPU; checkpoints.
- `progress`: what a run writes while it runs — the train log, step timings, the judge failure gate.
- `evaluate`: pass@k against ground truth with the student's own prompt.

`python -m ropd_kit.train CONFIG.json|yaml` runs one training run from a config file.
"""

from .methods import TrainResult, train
from .progress import TRAIN_LOG_FIELDS, JudgeFailureError
from .student import CHECKPOINTS, LoadedModel, TrainError, choose_backend, last_checkpoint, load_student, model_folder

__all__ = ["CHECKPOINTS", "TRAIN_LOG_FIELDS", "JudgeFailureError", "LoadedModel", "TrainError", "TrainResult",
           "choose_backend", "last_checkpoint", "load_student", "model_folder", "train"]
