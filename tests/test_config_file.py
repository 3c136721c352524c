"""Run config files: the shipped configs load, `python -m ropd_kit.train --config FILE --dry-run` prints the plan
without importing torch, loading a model or calling anything, and a bad file is named with its field.

Subprocesses of this interpreter (what a dry run imports is a property of its process); no model, no network.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ropd_kit.config import LOCAL, ConfigError, EndpointConfig, RunConfig
from ropd_kit.config_file import flat_params, load_config, read_config_file

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
SENTINEL = "sk-test-sentinel-never-printed-4711"

# Runs the train CLI's main in a fresh interpreter and reports, on its last line, which heavy modules it imported.
DRY_RUN = """
import json, sys
from ropd_kit.train.__main__ import main
rc = main(sys.argv[1:])
print(json.dumps({"rc": rc, "heavy": [m for m in ("torch", "transformers", "trl", "unsloth") if m in sys.modules]}))
"""


def dry_run(*args: str, env: dict[str, str] | None = None) -> tuple[dict, str, str]:
    out = subprocess.run([sys.executable, "-c", DRY_RUN, *args], cwd=REPO, capture_output=True, text=True,
                         timeout=300, env={**os.environ, **(env or {})})
    lines = out.stdout.strip().splitlines()
    return json.loads(lines[-1]), "\n".join(lines[:-1]), out.stderr


# ------------------------------------------------------------------------------------------------ shipped configs
def test_the_shipped_configs_are_cpu_gpu_and_api():
    assert {p.name for p in CONFIGS.glob("*.yaml")} >= {"cpu.yaml", "gpu.yaml", "api.yaml"}


def test_cpu_config_keeps_every_role_on_this_machine():
    config = load_config(CONFIGS / "cpu.yaml")
    assert all(config.endpoint(role).base_url == LOCAL for role in ("teacher", "rubricator", "verifier"))
    assert all(config.endpoint(role).api_key_env is None for role in ("teacher", "rubricator", "verifier"))


def test_gpu_config_puts_the_judges_off_the_cpu_server_with_a_key_by_name():
    config = load_config(CONFIGS / "gpu.yaml")
    assert config.use_unsloth in ("auto", "always") and config.report_to == "tensorboard"
    for role in ("teacher", "rubricator", "verifier"):
        endpoint = config.endpoint(role)
        assert endpoint.base_url.startswith("http") and endpoint.api_key_env == "OPENAI_API_KEY"
    # The sampler of notebooks 01-03 must be a server of the trained model, not the CPU llama-server.
    assert config.student.base_url.startswith("http") and config.student.model == config.student_model


def test_api_config_has_limits_and_prices_on_every_judge():
    config = load_config(CONFIGS / "api.yaml")
    for role in ("teacher", "rubricator", "verifier"):
        endpoint = config.endpoint(role)
        assert endpoint.requests_per_minute and endpoint.tokens_per_minute and endpoint.priced
        assert endpoint.api_key_env == "OPENAI_API_KEY"
    assert config.verifier.model != config.teacher.model  # the most-called role on the cheaper model
    assert config.reward_deadline_s and config.max_judge_failure_rate < 0.5


@pytest.mark.parametrize("name", ["cpu", "gpu", "api"])
def test_a_shipped_config_dry_runs_without_torch_and_names_the_key_never_its_value(name):
    result, plan, err = dry_run("--config", f"configs/{name}.yaml", "--dry-run", env={"OPENAI_API_KEY": SENTINEL})
    assert result == {"rc": 0, "heavy": []}, err
    config = load_config(CONFIGS / f"{name}.yaml")
    assert f"plan (configs/{name}.yaml)" in plan and f"{config.method}:" in plan
    assert f"{config.max_steps} optimizer steps x {config.prompts_per_step} prompts x {config.n_rollouts}" in plan
    assert config.student_model in plan
    for role in ("teacher", "rubricator", "verifier"):
        endpoint = config.endpoint(role)
        assert endpoint.model in plan
        if not endpoint.is_local:
            assert endpoint.base_url in plan
    if name == "cpu":
        assert "local llama-server on this machine's CPU" in plan and "$" not in plan.split("steps")[0]
    else:
        assert "$OPENAI_API_KEY (set)" in plan and "export OPENAI_API_KEY" not in plan
    assert SENTINEL not in plan + err


def test_a_dry_run_says_which_key_variable_is_not_set():
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    out = subprocess.run([sys.executable, "-m", "ropd_kit.train", "--config", "configs/api.yaml", "--dry-run"],
                         cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    assert "$OPENAI_API_KEY (NOT SET)" in out.stdout and "export OPENAI_API_KEY=..." in out.stdout
    assert "price: $2 in / $8 out per 1M tokens" in out.stdout and "500 requests/min" in out.stdout


def test_set_overrides_a_field_in_either_vocabulary_and_the_positional_file_still_works():
    result, plan, err = dry_run("configs/cpu.yaml", "--set", "num_generations=6", "--set", "max_steps=3",
                                "--dry-run")
    assert result["rc"] == 0, err
    assert "3 optimizer steps x 2 prompts x 6 rollouts" in plan


# ----------------------------------------------------------------------------------------------------- bad files
@pytest.mark.parametrize("text, fragments", [
    ("n_rollouts: 1\n", ["n_rollouts", "greater than or equal to 2"]),
    ("teacher:\n  base_ur: http://h/v1\n", ["teacher.base_ur", "not an endpoint field"]),
    ("verifier: big-model\n", ["verifier", "expected a mapping"]),
    ("n_rolouts: 4\n", ["n_rolouts", "unknown"]),
    ("per_device_train_batch_size: 16\n", ["per_device_train_batch_size", "prompts_per_step"]),
    ("n_rollouts: 4\nnum_generations: 8\n", ["n_rollouts=4", "num_generations=8"]),
    ("report_to: tensorbord\n", ["report_to", "tensorbord"]),
    ("run_dir: [runs\n", ["not valid YAML", "line 2"]),
    ("student_model: a\nstudent: {model: b}\n", ["student_model='a'", "student.model='b'"]),
    ("- a list\n", ["expected a mapping of RunConfig fields"]),
])
def test_a_bad_config_is_named_with_its_file_and_field(tmp_path, text, fragments):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and all(f in message for f in fragments), message


def test_the_cli_reports_a_bad_config_in_one_line_with_status_2(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("max_steps: 0\n")
    result, _, err = dry_run("--config", str(path), "--dry-run")
    assert result == {"rc": 2, "heavy": []}
    assert err.strip() == f"ropd_kit.train: {path}: max_steps: Input should be greater than or equal to 1"
    missing = tmp_path / "nope.yaml"
    result, _, err = dry_run("--config", str(missing), "--dry-run")
    assert result["rc"] == 2 and f"{missing}: config file not found" in err


# ------------------------------------------------------------------------------------------------------- blocks
ENDPOINT_VALUES = {"base_url": "http://127.0.0.1:9/v1", "model": "m", "api_key_env": "SOME_KEY",
                   "max_concurrency": 3, "requests_per_minute": 60, "timeout_s": 30.0}


@settings(max_examples=30, deadline=None)
@given(st.dictionaries(st.sampled_from(["teacher", "rubricator", "verifier", "student"]),
                       st.sets(st.sampled_from(sorted(ENDPOINT_VALUES)), min_size=1), min_size=1))
def test_a_role_block_and_flat_role_fields_are_the_same_config(chosen):
    blocks = {role: {f: ENDPOINT_VALUES[f] for f in fields} for role, fields in chosen.items()}
    flat = {f"{role}_{f}": v for role, block in blocks.items() for f, v in block.items()}
    assert flat_params(blocks) == flat
    assert RunConfig.from_params(**flat_params(blocks)) == RunConfig.from_params(**flat)


def test_a_json_config_and_yaml_anchors_read_the_same(tmp_path):
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("teacher: &j {base_url: 'http://h/v1', model: big}\nverifier: *j\n"
                         "rubricator: {<<: *j, model: small}\nbeta: 0.04\n")
    json_file = tmp_path / "run.json"
    json_file.write_text(json.dumps({"teacher_base_url": "http://h/v1", "teacher_model": "big",
                                     "verifier": {"base_url": "http://h/v1", "model": "big"},
                                     "rubricator_base_url": "http://h/v1", "rubricator_model": "small",
                                     "kl_beta": 0.04}))
    assert read_config_file(yaml_file) == read_config_file(json_file)
    config = load_config(yaml_file)
    assert config.rubricator == EndpointConfig(base_url="http://h/v1", model="small") and config.kl_beta == 0.04
