"""A batch that starts from a run config file (`config:` in the spec, or `--config`), and the batch's dry run.

In-memory plus the shipped notebooks' parameters cells (papermill reads them); nothing is executed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ropd_kit.batch import BatchError, load_spec, run_batch
from ropd_kit.config_file import read_config_file

REPO = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_the_config_is_every_runs_base_under_base_runs_and_grid(tmp_path):
    write(tmp_path / "configs" / "run.yaml",
          "run_dir: runs/ignored\nmax_steps: 7\nn_rollouts: 4\nseed: 3\nteacher: {base_url: 'http://h/v1', model: big}\n")
    spec = load_spec(write(tmp_path / "experiments" / "x.yaml",
                           "name: x\nconfig: ../configs/run.yaml\nnotebooks: [04_grpo_training]\n"
                           "base: {num_generations: 6, verifier: {model: small}}\n"
                           "runs: [{name: a, params: {seed: 5}}]\ngrid: {max_steps: [1, 2]}\n"))
    runs = {r.name: r.params for r in spec.expand()}
    assert set(runs) == {"a_max_steps-1", "a_max_steps-2"}
    params = runs["a_max_steps-2"]
    assert params["max_steps"] == 2                       # the grid over the file
    assert params["n_rollouts"] == 6 and "num_generations" not in params  # base over the file, in our names
    assert params["seed"] == 5                            # a run's params over the file
    assert (params["teacher_base_url"], params["teacher_model"], params["verifier_model"]) == ("http://h/v1", "big",
                                                                                              "small")
    assert "run_dir" not in params                        # each run's run_dir is the batch's


def test_a_config_path_is_found_beside_the_spec_or_from_the_working_folder(tmp_path, monkeypatch):
    write(tmp_path / "exp" / "run.yaml", "max_steps: 4\n")
    write(tmp_path / "conf" / "other.yaml", "max_steps: 9\n")
    spec_file = write(tmp_path / "exp" / "x.yaml", "name: x\nconfig: run.yaml\n")
    assert load_spec(spec_file).expand()[0].params["max_steps"] == 4
    monkeypatch.chdir(tmp_path)
    spec_file.write_text("name: x\nconfig: conf/other.yaml\n")
    assert load_spec(spec_file).expand()[0].params["max_steps"] == 9
    # --config replaces the spec's own.
    assert load_spec(spec_file).with_config("exp/run.yaml").expand()[0].params["max_steps"] == 4


def test_a_bad_config_is_named_with_the_spec_the_file_and_the_field(tmp_path):
    write(tmp_path / "bad.yaml", "n_rollouts: 1\n")
    spec_file = write(tmp_path / "x.yaml", "name: x\nconfig: bad.yaml\n")
    with pytest.raises(BatchError) as caught:
        load_spec(spec_file)
    assert str(caught.value).startswith(f"{spec_file}: config: {tmp_path / 'bad.yaml'}: n_rollouts:")
    with pytest.raises(BatchError, match="config file not found"):
        load_spec({"name": "x"}).with_config(tmp_path / "nope.yaml")
    with pytest.raises(BatchError, match=r"base: n_rollouts=4 and num_generations=8"):
        load_spec({"name": "x", "base": {"n_rollouts": 4, "num_generations": 8}}).expand()


def test_the_shipped_configs_are_a_batch_base(tmp_path):
    for name in ("cpu", "gpu", "api"):
        spec = load_spec({"name": "x", "config": str(REPO / "configs" / f"{name}.yaml")})
        params = spec.expand()[0].params
        expected = read_config_file(REPO / "configs" / f"{name}.yaml")
        expected.pop("run_dir")
        assert params == expected


def test_a_batch_dry_run_checks_the_spec_prints_each_runs_plan_and_runs_nothing(tmp_path, capsys):
    reports = tmp_path / "reports"
    spec = {"name": "methods", "notebooks": ["01_teacher_references", "04_grpo_training"],
            "base": {"max_steps": 3}, "grid": {"method": ["ropd", "rlvr"]}}
    assert run_batch(spec, reports, config=REPO / "configs" / "gpu.yaml", dry_run=True) == []
    out = capsys.readouterr().out
    assert "batch methods: 2 run(s)" in out and "gpu.yaml" in out
    assert "run method-ropd: 01_teacher_references -> 04_grpo_training" in out and "run method-rlvr" in out
    assert out.count("3 optimizer steps x 4 prompts x 8 rollouts") == 2
    assert "student sampler" in out and "http://127.0.0.1:8002/v1" in out  # 01 samples rollouts from it
    assert str(reports / "methods" / "method-ropd" / "run") in out
    assert not reports.exists()
    # What a real run would refuse, the dry run refuses too.
    with pytest.raises(BatchError, match="unknown parameter"):
        run_batch({**spec, "base": {"n_taks": 2}}, reports, dry_run=True)


@pytest.mark.slow
def test_the_batch_cli_dry_run_imports_no_training_library(tmp_path):
    spec = write(tmp_path / "x.yaml", "name: x\nnotebooks: [04_grpo_training]\ngrid: {method: [ropd, lopd]}\n")
    probe = ("import json, sys\nfrom ropd_kit.batch import main\nrc = main(sys.argv[1:])\n"
             "print(json.dumps({'rc': rc, 'heavy': [m for m in ('torch', 'transformers', 'trl') if m in sys.modules]}))")
    out = subprocess.run([sys.executable, "-c", probe, str(spec), "--config", "configs/cpu.yaml", "--dry-run",
                          "--reports", str(tmp_path / "reports")], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"rc": 0, "heavy": []}, out.stderr
    assert "lopd teacher" in out.stdout and "local llama-server" in out.stdout
    assert not (tmp_path / "reports").exists()
