"""RunConfig: flat notebook parameters, secrets by name only, clear errors."""

import json

import pytest

from ropd_kit.config import ConfigError, EndpointConfig, RunConfig


def test_from_params_routes_flat_endpoint_fields_to_their_role():
    config = RunConfig.from_params(
        run_dir="runs/x", teacher_base_url="http://h:1/v1", teacher_model="big", verifier_api_key_env="MY_KEY"
    )
    assert config.teacher.base_url == "http://h:1/v1"
    assert config.teacher.model == "big"
    assert config.verifier.api_key_env == "MY_KEY"
    # Roles that were not named keep their own defaults.
    assert config.rubricator.base_url == "local"
    assert config.student.model == RunConfig().student.model


def test_flat_student_model_sets_the_served_and_the_trained_student():
    config = RunConfig.from_params(student_model="smollm2-135m-instruct")
    assert config.student.model == "smollm2-135m-instruct"
    assert config.student_model == "smollm2-135m-instruct"


def test_unknown_parameter_is_named():
    with pytest.raises(ConfigError, match="n_rolouts"):
        RunConfig.from_params(n_rolouts=4)


def test_api_key_env_refuses_a_key_value():
    with pytest.raises(ValueError, match="NAME of an environment variable"):
        EndpointConfig(api_key_env="sk-abc123-def")


def test_api_key_read_from_environment(monkeypatch):
    endpoint = EndpointConfig(api_key_env="ROPD_TEST_KEY_X")
    monkeypatch.delenv("ROPD_TEST_KEY_X", raising=False)
    with pytest.raises(ConfigError, match="ROPD_TEST_KEY_X"):
        endpoint.api_key()
    monkeypatch.setenv("ROPD_TEST_KEY_X", "sk-sentinel-123")
    assert endpoint.api_key() == "sk-sentinel-123"


def test_saved_config_holds_no_key(tmp_path, monkeypatch):
    monkeypatch.setenv("ROPD_TEST_KEY_Y", "sk-sentinel-456")
    config = RunConfig(run_dir=str(tmp_path / "run"), teacher=EndpointConfig(api_key_env="ROPD_TEST_KEY_Y"))
    path = config.save()
    text = path.read_text()
    assert "sk-sentinel-456" not in text
    assert json.loads(text)["teacher"]["api_key_env"] == "ROPD_TEST_KEY_Y"
    assert RunConfig.load(path) == config


def test_criteria_bounds_checked():
    with pytest.raises(ValueError, match="min_criteria"):
        RunConfig(min_criteria=8, max_criteria=4)


def test_student_dtype_accepts_the_four_choices_and_names_itself_on_a_wrong_one():
    assert RunConfig().student_dtype == "auto"
    for value in ("auto", "float32", "bfloat16", "float16"):
        assert RunConfig.from_params(student_dtype=value).student_dtype == value
    with pytest.raises(ValueError, match="student_dtype") as caught:
        RunConfig.from_params(student_dtype="fp32")
    assert "float32" in str(caught.value)  # the allowed values are listed
    with pytest.raises(ValueError, match="student_dtype"):
        RunConfig().student_dtype = "bf16"  # validate_assignment: a notebook cell that sets it is checked too


# --- task sources and their options ---------------------------------------------------------------------------------

def test_task_source_options_default_to_none_and_limits_have_a_second_name():
    config = RunConfig()
    assert (config.tasks_split, config.tasks_subset, config.tasks_field_map, config.tasks_sample) == (None,) * 4
    assert (config.eval_tasks_split, config.eval_tasks_field_map, config.prompts_dir) == (None,) * 3
    assert RunConfig.from_params(tasks_limit=3, eval_tasks_limit=5).model_dump()["n_tasks"] == 3
    assert RunConfig(tasks_limit=2).n_tasks == 2 and RunConfig(eval_tasks_limit=4).n_eval_tasks == 4
    # Both names: the later wins (a batch grid after its base, papermill's injected cell after the parameters cell).
    assert RunConfig.from_params(n_tasks=8, tasks_limit=2).n_tasks == 2
    assert "tasks_limit" not in RunConfig(tasks_limit=2).model_dump()  # saved under one name
    field_map = {"question": "stem", "answer": "gold"}
    assert RunConfig.from_params(tasks_field_map=field_map).tasks_field_map == field_map


@pytest.mark.parametrize("params, field, fragment", [
    ({"tasks_field_map": {"qestion": "stem"}}, "tasks_field_map", "not fields we read"),
    ({"eval_tasks_field_map": {"answer": ""}}, "eval_tasks_field_map", "no column name for ['answer']"),
    ({"tasks_field_map": {"answer": 3}}, "tasks_field_map.answer", "valid string"),
    ({"tasks_field_map": ["question"]}, "tasks_field_map", "valid dictionary"),
    ({"tasks_sample": 0}, "tasks_sample", "greater than or equal to 1"),
    ({"eval_tasks_sample": -1}, "eval_tasks_sample", "greater than or equal to 1"),
    ({"tasks_limit": 0}, "n_tasks", "greater than or equal to 1"),  # the field tasks_limit is a name of
    ({"tasks_split": ""}, "tasks_split", "at least 1 character"),
    ({"eval_tasks_subset": ""}, "eval_tasks_subset", "at least 1 character"),
])
def test_task_option_errors_name_the_field(params, field, fragment):
    with pytest.raises(ValueError) as caught:
        RunConfig.from_params(**params)
    text = str(caught.value)
    assert field in text and fragment in text, text
