"""Training and evaluation: ROPD stage 6 (GRPO on rubric rewards) and the baselines, the student, pass@k.

- `methods`:  `train(config)` — ropd, lopd, rlvr, judge, sft with the same logs.
- `student`:  `load_student(...)` — Unsloth on a GPU, transformers + peft LoRA on a CPU; checkpoints.
- `progress`: what a run writes while it runs — the train log, step timings, the judge failure gate.
- `evaluate`: pass@k against ground truth with the student's own prompt.
- `after`:    the trained student — `load_trained` (LoRA merged onto its base), `chat`, `save_merged`.

`python -m ropd_kit.train --config FILE` (`ropd train`) runs one training run from a config file.

Called, this package is `train(config)`: `from ropd_kit import train; train(config)` runs, while `train.train`
and the submodules (`ropd_kit.train.evaluate`, ...) are where they were.
"""

import sys

from .methods import TrainResult, train
from .progress import TRAIN_LOG_FIELDS, JudgeFailureError
from .student import CHECKPOINTS, LoadedModel, TrainError, choose_backend, last_checkpoint, load_student, model_folder

__all__ = ["CHECKPOINTS", "TRAIN_LOG_FIELDS", "JudgeFailureError", "LoadedModel", "TrainError", "TrainResult",
           "choose_backend", "last_checkpoint", "load_student", "model_folder", "train"]


class _CallableTrain(type(sys.modules[__name__])):
    # `ropd_kit.train` names both this package and the function users call; a package attribute cannot be both, so
    # the package runs the function when called.
    def __call__(self, config):  # noqa: D102 - the function's docstring is attached below
        return train(config)


_CallableTrain.__call__.__doc__ = train.__doc__
sys.modules[__name__].__class__ = _CallableTrain
