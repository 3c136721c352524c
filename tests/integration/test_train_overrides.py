"""trainer_overrides reach TRL in a real run: SmolLM2-135M as the student, one rlvr step (no judge, no server).

The checkpoint's saved training arguments are TRL's own record of what it ran with.
"""

from __future__ import annotations

import pytest

from ropd_kit import rundir
from ropd_kit.config import FAST_MODEL, RunConfig
from ropd_kit.train.methods import train

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1800)]


def test_gradient_accumulation_and_a_trl_field_reach_the_trainer(tmp_path):
    import torch

    config = RunConfig(
        run_dir=str(tmp_path / "run"), method="rlvr", student_model=FAST_MODEL, use_unsloth="never", n_tasks=2,
        max_steps=1, prompts_per_step=1, n_rollouts=2, rollout_max_tokens=8, save_steps=1,
        trainer_overrides={"gradient_accumulation_steps": 2, "max_grad_norm": 0.5, "loss_type": "dr_grpo"},
    )
    result = train(config)
    args = torch.load(result.checkpoint / "training_args.bin", weights_only=False)
    assert (args.gradient_accumulation_steps, args.max_grad_norm, args.loss_type) == (2, 0.5, "dr_grpo")
    assert args.num_generations == 2 and args.per_device_train_batch_size == 2  # the kit's own stay
    (record,) = rundir.read_jsonl(config.path / rundir.TRAIN_LOG)
    assert record["step"] == 1 and record["samples_seen"] == 4  # 2 micro-batches of one group of 2
