"""train()'s set-up before anything heavy starts: trainer settings from the config, the GPU options refused on a CPU
machine, resuming a run. No model is loaded and no server started: every train() call here stops at a check
(a refused setting, or a judge endpoint that is not there) that comes before them.

In-memory plus a closed local port; imports torch and trl (seconds).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ropd_kit import rundir
from ropd_kit.config import FAST_MODEL, EndpointConfig, RunConfig
from ropd_kit.llm import EndpointUnreachable
from ropd_kit.train.methods import _prepare_resume, train, trainer_args
from ropd_kit.train.progress import STEP_FILES
from ropd_kit.train.student import TrainError, check_generation_options

REPO = Path(__file__).resolve().parents[1]


def closed_port_url() -> str:
    """A loopback URL nothing listens on: the reachability check fails there at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def unreachable_judges(tmp_path: Path, **fields) -> RunConfig:
    nowhere = EndpointConfig(base_url=closed_port_url(), model="judge")
    return RunConfig(
        run_dir=str(tmp_path / "run"), cache_dir=str(tmp_path / "llm"), ref_index_dir=str(tmp_path / "refs"),
        teacher=nowhere, rubricator=nowhere, verifier=nowhere, student_model=FAST_MODEL,
        **{"use_unsloth": "auto" if fields.get("fast_inference") else "never", **fields},
    )


# ------------------------------------------------------------------------------------------ trainer_overrides
def test_overrides_reach_the_trainer_args_of_each_method():
    grpo = RunConfig(method="ropd", trainer_overrides={"gradient_accumulation_steps": 2, "steps_per_generation": 4,
                                                        "loss_type": "dr_grpo"})
    name, kwargs = trainer_args(grpo, "transformers")
    assert name == "GRPOConfig"
    assert (kwargs["gradient_accumulation_steps"], kwargs["steps_per_generation"], kwargs["loss_type"]) == (2, 4,
                                                                                                          "dr_grpo")
    assert kwargs["num_generations"] == grpo.n_rollouts and kwargs["beta"] == grpo.kl_beta  # the kit's own stay
    lopd = RunConfig(method="lopd", trainer_overrides={"beta": 0.5})  # lopd's beta is the KL mix: 0.5 = JSD
    assert trainer_args(lopd, "transformers")[1]["beta"] == 0.5
    assert trainer_args(RunConfig(method="lopd"), "transformers")[1]["beta"] == 1.0
    sft = RunConfig(method="sft", trainer_overrides={"loss_type": "dft", "packing": True})
    name, kwargs = trainer_args(sft, "transformers")
    assert name == "SFTConfig" and kwargs["loss_type"] == "dft" and kwargs["packing"] is True


@pytest.mark.parametrize("method", ["ropd", "lopd", "rlvr", "sft"])
def test_activations_are_recomputed_on_a_cpu_unless_an_override_keeps_them(method):
    # Kept, a demo-sized step's activations alone would not fit a 16 GB machine beside lopd's teacher.
    assert trainer_args(RunConfig(method=method), "transformers")[1]["gradient_checkpointing"] is True
    kept = RunConfig(method=method, trainer_overrides={"gradient_checkpointing": False})
    assert trainer_args(kept, "transformers")[1]["gradient_checkpointing"] is False


def test_trl_builds_its_config_from_the_kit_args_and_overrides():
    from trl import GRPOConfig

    config = RunConfig(trainer_overrides={"gradient_accumulation_steps": 2, "loss_type": "grpo"})
    args = GRPOConfig(**trainer_args(config, "transformers")[1])
    assert args.gradient_accumulation_steps == 2 and args.loss_type == "grpo"
    assert args.num_generations == config.n_rollouts


@pytest.mark.parametrize("method, overrides, expected", [
    ("ropd", {"gradient_acumulation_steps": 4}, ["'gradient_acumulation_steps' is not a field of trl.GRPOConfig",
                                                 "did you mean 'gradient_accumulation_steps'"]),
    ("rlvr", {"gradient_accumulation_steps": "four"}, ["gradient_accumulation_steps='four' is not a valid int"]),
    ("judge", {"loss_type": "grpoo"}, ["loss_type='grpoo' is not one of grpo, dr_grpo"]),
    ("lopd", {"steps_per_generation": 2}, ["'steps_per_generation' is not a field of trl.DistillationConfig"]),
    ("sft", {"loss_type": "kl"}, ["trl.SFTConfig", "loss_type='kl' is not one of nll, dft"]),
])
def test_a_bad_override_is_named_with_the_method_config_class(method, overrides, expected):
    with pytest.raises(ValueError) as caught:
        RunConfig(method=method, trainer_overrides=overrides)
    for text in expected:
        assert text in str(caught.value)


@pytest.mark.parametrize("method, key, instead", [
    ("ropd", "num_generations", "RunConfig.n_rollouts"),
    ("rlvr", "output_dir", "RunConfig.run_dir"),
    ("judge", "beta", "RunConfig.kl_beta"),
    ("ropd", "use_vllm", "RunConfig.use_vllm"),
    ("lopd", "max_completion_length", "RunConfig.rollout_max_tokens"),
    ("sft", "max_length", "RunConfig.max_prompt_tokens"),
    ("sft", "per_device_train_batch_size", "RunConfig.prompts_per_step"),
])
def test_an_override_of_a_field_the_kit_owns_says_which_runconfig_field_to_set(method, key, instead):
    with pytest.raises(ValueError, match="set by the kit") as caught:
        RunConfig(method=method, trainer_overrides={key: 1})
    assert instead in str(caught.value)


def test_switching_method_rechecks_the_overrides_against_the_new_class():
    config = RunConfig(method="ropd", trainer_overrides={"steps_per_generation": 2})
    with pytest.raises(ValueError, match="trl.SFTConfig"):
        config.method = "sft"


def test_overrides_are_coerced_to_the_field_type_and_saved(tmp_path):
    # YAML 1.1 reads 1e-6 as a string; the field's type turns it back into the float TRL wants.
    config = RunConfig(run_dir=str(tmp_path / "run"), trainer_overrides={"max_grad_norm": "1e-6", "warmup_steps": 2.0})
    assert config.trainer_overrides == {"max_grad_norm": 1e-6, "warmup_steps": 2}
    assert RunConfig.load(config.save()).trainer_overrides == config.trainer_overrides


def test_a_combination_trl_refuses_stops_train_before_any_server(tmp_path):
    # 3 generations per step are not a whole number of groups of 2: GRPOConfig refuses it when it is built.
    config = unreachable_judges(tmp_path, n_rollouts=2, prompts_per_step=1,
                                trainer_overrides={"generation_batch_size": 3})
    with pytest.raises(TrainError, match="trl.GRPOConfig refuses"):
        train(config)


# ------------------------------------------------------------------------------------- GPU generation options
@pytest.mark.parametrize("fields, named", [
    ({"use_vllm": True}, ["use_vllm=True (vllm_mode='colocate')", "a CUDA GPU", "vllm"]),
    ({"use_vllm": True, "vllm_mode": "server"}, ["vllm_mode='server'", "a CUDA GPU"]),
    ({"fast_inference": True}, ["fast_inference=True", "a CUDA GPU", "unsloth"]),
])
def test_gpu_generation_is_refused_on_this_cpu_machine_before_anything_loads(tmp_path, fields, named):
    import torch

    assert not torch.cuda.is_available()  # the test machine; on a GPU box this test says nothing
    with pytest.raises(TrainError) as caught:
        train(unreachable_judges(tmp_path, **fields))
    for text in named:
        assert text in str(caught.value)
    assert not (tmp_path / "run").exists()  # refused before the run directory was even made


def test_with_cuda_the_missing_package_is_what_is_named():
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    with pytest.raises(TrainError) as caught:
        check_generation_options(RunConfig(use_vllm=True), cuda=True)
    assert "the vllm package (not importable here)" in str(caught.value) and "CUDA GPU (" not in str(caught.value)
    check_generation_options(RunConfig(), cuda=False)  # nothing asked, nothing refused


@pytest.mark.parametrize("fields, message", [
    ({"method": "sft", "use_vllm": True}, "sft trains on the teacher refs"),
    ({"method": "lopd", "fast_inference": True}, "GRPO methods"),
    ({"fast_inference": True, "use_unsloth": "never"}, "use_unsloth='never'"),
    ({"fast_inference": True, "use_vllm": True}, "two vLLM engines"),
])
def test_gpu_options_that_cannot_go_together_are_refused_when_the_config_is_built(fields, message):
    with pytest.raises(ValueError, match=message):
        RunConfig(**fields)


def test_vllm_settings_reach_the_trainer_args():
    config = RunConfig(use_vllm=True, vllm_mode="server", vllm_server_host="10.0.0.2", vllm_server_port=8123,
                       trainer_overrides={"vllm_gpu_memory_utilization": 0.5})
    kwargs = trainer_args(config, "unsloth")[1]
    assert {k: kwargs[k] for k in ("use_vllm", "vllm_mode", "vllm_server_host", "vllm_server_port",
                                   "vllm_gpu_memory_utilization")} == {
        "use_vllm": True, "vllm_mode": "server", "vllm_server_host": "10.0.0.2", "vllm_server_port": 8123,
        "vllm_gpu_memory_utilization": 0.5}
    assert "use_vllm" not in trainer_args(RunConfig(), "transformers")[1]  # off: TRL's own default


# ------------------------------------------------------------------------------------------------------ resume
def write_step_files(run: Path, steps: list[int]) -> None:
    for name in STEP_FILES:
        rundir.write_jsonl(run / name, [{"step": s, "task_id": "t", "judge_groups": 2, "judge_failures": 1,
                                         "wall_s": 10.0 * s} for s in steps])
    rundir.write_jsonl(run / rundir.TEACHER_REFS, [{"task_id": "t", "ref_idx": 0, "text": "ref"}])


def test_resume_without_a_checkpoint_starts_over_on_empty_step_files(tmp_path):
    # Killed during step 3 of a run that saves every 5 steps: steps 0 (the evaluation before training) to 2 are in
    # the files, but there is no checkpoint to continue from, so every one of them is redone.
    config = unreachable_judges(tmp_path, resume=True, save_steps=5)
    write_step_files(config.path, [0, 1, 2])
    with pytest.raises(EndpointUnreachable):  # stops after the resume set-up, before the student is loaded
        train(config)
    for name in STEP_FILES:
        assert rundir.read_jsonl(config.path / name) == [], name
    assert rundir.read_jsonl(config.path / rundir.TEACHER_REFS)  # not a step file: kept


def test_resume_from_a_checkpoint_keeps_its_steps_and_counts_their_judge_failures(tmp_path):
    run = tmp_path / "run"
    write_step_files(run, [0, 1, 2, 3])
    (run / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    checkpoint, wall, (groups, failures) = _prepare_resume(run)
    assert checkpoint == run / "checkpoints" / "checkpoint-2" and wall == 20.0
    for name in STEP_FILES:
        assert [r["step"] for r in rundir.read_jsonl(run / name)] == [0, 1, 2], name
    # The failure gate continues from what the kept train log says (steps 0-2), not from zero.
    assert (groups, failures) == (6, 3)

    empty = tmp_path / "fresh"
    write_step_files(empty, [1])
    assert _prepare_resume(empty) == (None, 0.0, (0, 0))


# ------------------------------------------------------------------------------------------------------- the CLI
def test_cli_help_does_not_import_torch():
    code = ("import sys, runpy; sys.argv = ['ropd_kit.train', '--help']\n"
            "try:\n    runpy.run_module('ropd_kit.train', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n"
            "assert 'trl' not in sys.modules, 'trl was imported'\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "--config FILE" in out.stdout and "--set" in out.stdout and "--dry-run" in out.stdout


def test_cli_reads_yaml_applies_set_and_stops_on_a_bad_override(tmp_path, capsys):
    # In this process: `python -m` would import torch and trl afresh twice (a minute and more on a loaded 2-core
    # machine), and the module's entry point is run as `-m` by the --help test above.
    from ropd_kit.train.__main__ import main

    config_file = tmp_path / "run.yaml"
    config_file.write_text(f"run_dir: {tmp_path / 'run'}\nmethod: ropd\ntrainer_overrides:\n"
                           "  gradient_accumulation_steps: 2\n")
    code = main([str(config_file), "--set", "max_steps=3", "--print-config"])
    out = capsys.readouterr()
    assert code == 0, out.err
    printed = json.loads(out.out)
    assert printed["max_steps"] == 3 and printed["trainer_overrides"] == {"gradient_accumulation_steps": 2}

    config_file.write_text(json.dumps({"run_dir": str(tmp_path / "run"), "trainer_overrides": {"nope": 1}}))
    code = main([str(config_file)])
    out = capsys.readouterr()
    assert code == 2
    assert "'nope' is not a field of trl.GRPOConfig" in out.err and "Traceback" not in out.err
