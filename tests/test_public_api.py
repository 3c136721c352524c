"""The names a user imports from `ropd_kit` itself: all of them resolve, and `import ropd_kit` stays cheap.

A fresh interpreter per check (what is imported is a property of the process); no model, no network.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "trl", "unsloth", "peft", "datasets")

PROBE = """
import json, sys
import ropd_kit
after_import = [m for m in {heavy} if m in sys.modules]
resolved = {{name: type(getattr(ropd_kit, name)).__name__ for name in ropd_kit.__all__}}
after_names = [m for m in {heavy} if m in sys.modules]
print(json.dumps({{"after_import": after_import, "resolved": resolved, "after_names": after_names,
                   "dir": dir(ropd_kit), "all": ropd_kit.__all__}}))
"""


@pytest.fixture(scope="module")
def probe() -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY)], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_ropd_kit_imports_no_training_library(probe):
    assert probe["after_import"] == []


def test_every_exported_name_resolves_without_torch(probe):
    # Resolving them still loads none of the heavy libraries: each module imports them inside its functions.
    assert set(probe["resolved"]) == set(probe["all"])
    assert probe["after_names"] == []


def test_the_names_a_user_needs_are_exported_and_listed(probe):
    needed = {"RunConfig", "RubricReward", "train", "run_stages", "load_tasks", "collect_references", "induce_rubric",
              "verify_group", "weighted_pass_rate", "group_advantages", "evaluate", "signal_auc", "run_batch",
              "RubricInspector", "load_config"}
    assert needed <= set(probe["all"])
    assert set(probe["all"]) <= set(probe["dir"])
    assert probe["resolved"]["RunConfig"] == "ModelMetaclass" and probe["resolved"]["evaluate"] == "function"


def test_train_is_the_package_and_runs_when_called(tmp_path):
    import ropd_kit
    import ropd_kit.train.methods
    from ropd_kit import RunConfig, train
    from ropd_kit.config import FAST_MODEL
    from ropd_kit.train import TrainError

    assert train is sys.modules["ropd_kit.train"] and train.train is ropd_kit.train.methods.train
    # Called, it is train(config): a run whose first check fails says so before any model loads.
    config = RunConfig(run_dir=str(tmp_path / "run"), student_model=FAST_MODEL, method="rlvr", use_unsloth="never",
                       tasks_path=str(REPO / "data" / "arith_test.jsonl"), n_tasks=2, max_steps=1, n_rollouts=2,
                       prompts_per_step=1, trainer_overrides={"generation_batch_size": 3})  # not whole groups of 2
    with pytest.raises(TrainError, match="trl.GRPOConfig refuses"):
        train(config)


def test_an_unknown_name_is_an_attribute_error():
    import ropd_kit

    with pytest.raises(AttributeError, match="no attribute 'RubricRewrd'"):
        ropd_kit.RubricRewrd  # noqa: B018
