"""TRL's names for RunConfig fields, and report_to passed through to TRL's config.

In-memory; the report_to checks build TRL's config classes (imports torch and trl, seconds). No model is loaded.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ropd_kit.config import (
    FAST_MODEL, REPORT_TO_INTEGRATIONS, TRL_ALIASES, ConfigError, RunConfig, canonical_params,
)

# A value each aliased field takes that differs from its default, so that a name that went nowhere would show.
VALUES = {
    "n_rollouts": 4, "rollout_max_tokens": 64, "rollout_temperature": 0.5, "rollout_top_p": 0.9, "kl_beta": 0.02,
    "run_dir": "runs/aliased", "student_model": FAST_MODEL, "student_dtype": "float32",
    "lopd_teacher_model": FAST_MODEL, "tasks_path": "data/arith_test.jsonl", "tasks_subset": "main",
    "tasks_split": "validation",
}


def test_every_trl_name_has_a_test_value():
    assert set(TRL_ALIASES.values()) == set(VALUES)


@pytest.mark.parametrize("trl_name, field", sorted(TRL_ALIASES.items()))
def test_a_trl_name_sets_our_field_and_is_saved_under_ours(trl_name, field):
    value = VALUES[field]
    for config in (RunConfig(**{trl_name: value}), RunConfig.from_params(**{trl_name: value})):
        assert getattr(config, field) == value
        dumped = config.model_dump()
        assert dumped[field] == value and trl_name not in dumped


def test_model_name_or_path_also_names_the_served_student():
    config = RunConfig.from_params(model_name_or_path=FAST_MODEL)
    assert config.student_model == FAST_MODEL and config.student.model == FAST_MODEL


@pytest.mark.parametrize("build", [RunConfig, RunConfig.from_params], ids=["RunConfig", "from_params"])
def test_both_names_with_different_values_are_refused_naming_both(build):
    with pytest.raises(ValueError) as caught:
        build(n_rollouts=4, num_generations=8)
    text = str(caught.value)
    assert "n_rollouts=4" in text and "num_generations=8" in text
    with pytest.raises(ValueError, match="beta=0.1.*kl_beta=0.2|kl_beta=0.2.*beta=0.1"):
        build(kl_beta=0.2, beta=0.1)
    # The same value twice is one setting written twice, not a contradiction.
    assert build(rollout_max_tokens=64, max_completion_length=64).rollout_max_tokens == 64


def test_tasks_limit_keeps_its_later_wins_rule_in_flat_parameters():
    # Merged parameter sets (a batch grid after its base, papermill's cell after the parameters cell) name the
    # limit twice on purpose; TRL's names do not take part in that rule.
    assert canonical_params({"n_tasks": 8, "tasks_limit": 2}) == {"n_tasks": 2}
    with pytest.raises(ConfigError, match="output_dir='b'"):
        canonical_params({"run_dir": "a", "output_dir": "b"})
    assert canonical_params({"num_generations": None, "n_rollouts": 4}) == {"n_rollouts": 4}


def test_lopd_beta_is_refused_with_where_lopds_divergence_goes():
    for build in (RunConfig, RunConfig.from_params):
        with pytest.raises(ValueError, match=r"trainer_overrides=\{'beta'"):
            build(method="lopd", beta=0.5)
    assert RunConfig(method="lopd", trainer_overrides={"beta": 0.5}).trainer_overrides == {"beta": 0.5}
    assert RunConfig(method="ropd", beta=0.04).kl_beta == 0.04


@pytest.mark.parametrize("name, instead", [
    ("per_device_train_batch_size", "prompts_per_step"),
    ("gradient_accumulation_steps", "trainer_overrides"),
    ("num_train_epochs", "max_steps"),
])
def test_a_trl_name_without_a_field_points_to_the_setting_to_use(name, instead):
    for build in (RunConfig, RunConfig.from_params):
        with pytest.raises(ValueError) as caught:
            build(**{name: 2})
        assert name in str(caught.value) and instead in str(caught.value)


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(VALUES)), st.booleans(), min_size=1))
def test_any_mix_of_the_two_vocabularies_builds_the_same_config(use_trl_name):
    trl_name_of = {field: name for name, field in TRL_ALIASES.items() if name != "torch_dtype"}
    ours = {field: VALUES[field] for field in use_trl_name}
    mixed = {(trl_name_of[field] if trl else field): VALUES[field] for field, trl in use_trl_name.items()}
    assert RunConfig(**mixed) == RunConfig(**ours)
    assert RunConfig.from_params(**mixed) == RunConfig.from_params(**ours)


# ---------------------------------------------------------------------------------------------------- report_to
def test_report_to_names_are_the_integrations_transformers_knows():
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    assert set(REPORT_TO_INTEGRATIONS) == set(INTEGRATION_TO_CALLBACK)


@pytest.mark.parametrize("value, fragment", [
    ("tensorbord", "'tensorbord' is not an integration"),
    (["none", "wandb"], "'none' stands alone"),
    ([], "empty list"),
])
def test_a_bad_report_to_is_refused_naming_the_field(value, fragment):
    with pytest.raises(ValueError) as caught:
        RunConfig(report_to=value)
    assert "report_to" in str(caught.value) and fragment in str(caught.value)


@pytest.mark.parametrize("method, class_name", [("ropd", "GRPOConfig"), ("lopd", "DistillationConfig"),
                                                ("sft", "SFTConfig")])
def test_report_to_reaches_the_trl_config_of_each_method(method, class_name):
    import trl

    from ropd_kit.train.methods import trainer_args

    config = RunConfig(method=method, report_to=["tensorboard", "wandb"])
    name, kwargs = trainer_args(config, "transformers")
    assert name == class_name
    assert getattr(trl, name)(**kwargs).report_to == ["tensorboard", "wandb"]
    default = getattr(trl, name)(**trainer_args(RunConfig(method=method), "transformers")[1])
    assert default.report_to in ("none", ["none"], [])


def test_report_to_has_one_name_trainer_overrides_points_to_it():
    with pytest.raises(ValueError, match="set RunConfig.report_to instead"):
        RunConfig(trainer_overrides={"report_to": "wandb"})


def test_an_integration_that_is_not_installed_stops_train_before_any_model(tmp_path):
    from transformers.integrations import get_available_reporting_integrations

    from ropd_kit.train.methods import train
    from ropd_kit.train.student import TrainError

    missing = sorted(set(REPORT_TO_INTEGRATIONS) - set(get_available_reporting_integrations()))
    if not missing:
        pytest.skip("every reporting integration is installed here")
    config = RunConfig(run_dir=str(tmp_path / "run"), student_model=FAST_MODEL, use_unsloth="never", method="rlvr",
                       tasks_path="data/arith_test.jsonl", n_tasks=2, report_to=missing[0])
    with pytest.raises(TrainError, match=f"report_to=.*{missing[0]} is not installed"):
        train(config)
