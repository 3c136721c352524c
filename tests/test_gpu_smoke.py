"""The GPU smoke check's CPU side (ropd_kit.bench.gpu_smoke): the dry run (carry list and its size, the student's
config, the stub judge through the kit's client, the plan), the wheel tooling, the step summary, and the whole run
path on a CPU with a tiny random-init student (no CUDA here: that part runs on a GPU box, see docs/gpu.md).

The tokenizer is SmolLM2's (installed by `make test`), with the "tiny" architecture built around it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from ropd_kit.bench import gpu_smoke
from ropd_kit.config import FAST_MODEL


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Path:
    from ropd_kit.offline import models

    models.install(FAST_MODEL)
    folder = tmp_path_factory.mktemp("assets")
    gpu_smoke.export_tokenizer(FAST_MODEL, folder / gpu_smoke.TOKENIZER_DIR, "tiny")
    return folder


def _common(tmp_path: Path, assets: Path, wheels: Path) -> list[str]:
    return ["--wheels", str(wheels), "--assets", str(assets), "--out", str(tmp_path / "out"), "--arch", "tiny"]


def test_dry_run_writes_the_student_config_checks_the_judge_and_says_what_is_missing(tmp_path, assets, capsys):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    code = gpu_smoke.main(["dry-run", *_common(tmp_path, assets, wheels), "--steps", "2"])
    plan = json.loads((tmp_path / "out" / "plan.json").read_text())
    printed = capsys.readouterr().out
    assert code == 1 and not plan["ok"]  # no wheels yet, and the folders are outside the checkout
    assert any("wheels missing" in p and "trl" in p and "datasets" in p for p in plan["problems"])
    assert any("outside the checkout" in p for p in plan["problems"])
    # The carry: both folders with their sizes, the working tree, the total against the limit.
    carry = plan["carry"]
    assert [i["bytes"] for i in carry["items"]] == [0, gpu_smoke._folder_bytes(assets)]
    assert carry["tree_bytes"] > 0 and carry["total_bytes"] == carry["tree_bytes"] + carry["items"][1]["bytes"]
    assert carry["fits"] and carry["limit_bytes"] == 64 * 2**20
    # The student's config is written (no weights: those are made on the GPU) and matches its tokenizer.
    student = tmp_path / "out" / "work" / "student"
    config = json.loads((student / "config.json").read_text())
    assert config["model_type"] == "qwen2" and config["hidden_size"] == 64
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(student))
    assert config["vocab_size"] == len(tokenizer) and config["eos_token_id"] == tokenizer.eos_token_id
    assert not list(student.glob("*.safetensors"))
    # The judge side answered in the kit's shapes; without an unsloth wheel only transformers is planned.
    assert plan["judge_check"]["rubric_criteria"] == 4
    assert plan["judge_check"]["answers_judged"] == plan["judge_check"]["answers"] == 6
    assert plan["backends"] == ["transformers"]
    assert plan["run_configs"]["transformers"]["use_unsloth"] == "never"
    assert plan["run_configs"]["transformers"]["max_steps"] == 2
    assert "GPU smoke plan:" in printed and "fits" in printed


def test_a_carry_over_64_mib_is_refused(tmp_path, assets):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    with open(wheels / "big-1.0-py3-none-any.whl", "wb") as fh:
        fh.truncate(65 * 2**20)  # sparse: only its size counts
    carry = gpu_smoke.carry_list(wheels, assets)
    assert not carry["fits"] and carry["total_bytes"] > carry["limit_bytes"]
    assert carry["wheels"] == [{"name": "big-1.0-py3-none-any.whl", "bytes": 65 * 2**20}]


def _toy_wheel(folder: Path) -> Path:
    """A minimal valid wheel with a package and a `studio/` folder beside it."""
    import base64
    import hashlib

    files = {"toy/__init__.py": b"VALUE = 1\n", "studio/app.py": b"raise SystemExit('never imported')\n",
             "toy-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: toy\nVersion: 1.0\n",
             "toy-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                         b"Tag: py3-none-any\n"}
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append("toy-1.0.dist-info/RECORD,,")
    path = folder / "toy-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
        z.writestr("toy-1.0.dist-info/RECORD", "\n".join(record) + "\n")
    return path


def test_a_slimmed_wheel_installs_offline_without_the_dropped_folder(tmp_path):
    wheel = _toy_wheel(tmp_path)
    gpu_smoke.slim_wheel(wheel, ("studio/",))
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        record = z.read("toy-1.0.dist-info/RECORD").decode()
    assert "studio/app.py" not in names and "studio/" not in record and "toy/__init__.py" in names
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target", str(site),
                    str(wheel)], check=True)
    assert (site / "toy" / "__init__.py").is_file() and not (site / "studio").exists()


def test_the_requirement_walk_stops_at_the_image_and_pins_the_gpu_trl():
    closure = gpu_smoke.requirement_closure(["trl"], gpu_smoke.IMAGE_PACKAGES)
    assert "trl" in closure and "datasets" in closure and "dill" in closure
    assert "transformers" not in closure and "accelerate" not in closure and "torch" not in closure
    reqs = gpu_smoke.wheel_requirements(gpu_smoke.IMAGE_PACKAGES, with_unsloth=False)
    assert "trl==1.15.0" in reqs and not any(r.startswith("unsloth") for r in reqs)
    assert any(r.startswith("pydantic-core==") for r in reqs) and any(r.startswith("openai==") for r in reqs)


def test_image_packages_from_a_pip_freeze_or_pip_list(tmp_path):
    (tmp_path / "freeze.txt").write_text("torch==2.11.0\nTyping_Extensions==4.15\n# a comment\n")
    (tmp_path / "list.txt").write_text("Package    Version\n---------- -------\npeft       0.18.0\n")
    assert gpu_smoke.image_packages(tmp_path / "freeze.txt") == {"torch", "typing-extensions"}
    assert gpu_smoke.image_packages(tmp_path / "list.txt") == {"peft"}


def test_step_summary_leaves_the_warm_up_step_out_of_the_medians():
    records = [
        {"step": 2, "step_s": 4.0, "generate_s": 2.0, "completion_length": 256.0, "reward_std": 0.2},
        {"step": 1, "step_s": 30.0, "generate_s": 10.0, "completion_length": 256.0, "reward_std": 0.1},
        {"step": 3, "step_s": 2.0, "generate_s": 1.0, "completion_length": 128.0, "reward_std": 0.3},
    ]
    s = gpu_smoke.summarise_steps(records, batch=32)
    assert [x["step"] for x in s["steps"]] == [1, 2, 3] and s["first_step_excluded"]
    assert s["steps"][0]["completion_tokens"] == 256 * 32 and s["steps"][0]["tokens_per_s"] == 256 * 32 / 30.0
    assert s["step_s_median"] == 3.0  # of steps 2 and 3
    assert s["tokens_per_s_median"] == pytest.approx((256 * 32 / 4.0 + 128 * 32 / 2.0) / 2)
    assert s["generate_tokens_per_s_median"] == pytest.approx((256 * 32 / 2.0 + 128 * 32 / 1.0) / 2)
    one = gpu_smoke.summarise_steps(records[:1], batch=32)
    assert not one["first_step_excluded"] and one["step_s_median"] == 4.0
    assert gpu_smoke.summarise_steps([], batch=8)["step_s_median"] is None


@pytest.mark.slow
def test_the_run_path_on_a_cpu_with_a_tiny_student_writes_the_report_and_imports_only_what_travels(tmp_path, assets):
    out = tmp_path / "out"
    code = gpu_smoke.main(["run", "--allow-cpu", *_common(tmp_path, assets, tmp_path / "wheels"), "--steps", "2",
                           "--prompts", "1", "--rollouts", "2", "--max-tokens", "8", "--budget-s", "900"])
    report = json.loads((out / "gpu_grpo.json").read_text())
    t = report["backends"]["transformers"]
    assert code == 0 and t["ok"], t.get("traceback") or t.get("error")
    assert report["student"]["weights"] == "random-init" and report["student"]["parameters"] > 0
    assert [s["step"] for s in t["steps"]] == [1, 2] and t["steps_done"] == 2 and t["used_backend"] == "transformers"
    assert all(s["completion_tokens"] and s["tokens_per_s"] > 0 for s in t["steps"])
    assert t["judge_failures"] == 0 and t["judge_requests"]["verdicts"] >= 2
    assert report["backends"]["unsloth"] == {"skipped": "no CUDA device"}
    assert set(report["versions"]) >= {"torch", "transformers", "trl", "peft", "unsloth"}
    # Everything the run imported is in the GPU image or among the wheels `prepare` fetches.
    travels = gpu_smoke.IMAGE_PACKAGES | set(gpu_smoke.requirement_closure(gpu_smoke.BASE_ROOTS,
                                                                           gpu_smoke.IMAGE_PACKAGES)) | {"ropd-kit"}
    assert set(t["imported_distributions"]) - travels == set()
    assert (out / "gpu_smoke_transformers.log").is_file()
