"""GPU smoke check: a few ropd GRPO steps on CUDA, per student backend, on a GPU box that reaches no network.

Not a ROPD stage: it proves that training runs on a GPU with the backends the kit offers (transformers + peft, and
Unsloth when it imports) and measures it. In: this repository, a folder of wheels (`.whl/`) and a folder of
assets (`.gpu_smoke/`: the student's tokenizer), both made here by `prepare`, both git-ignored, both brought to the
box with the working tree (64 MiB in all, what a runner takes along). Out: `reports/gpu/gpu_grpo.json`: per
backend, step time, completion tokens per second, peak GPU memory (`torch.cuda.max_memory_allocated`), the reward
spread, errors; the GPU, and the versions of torch / transformers / trl / peft / accelerate / unsloth.

What runs there, inside 8 minutes (`--budget-s`):
- the student: real weights when `--student DIR` names a transformers folder there, else random-init weights of
  the Qwen2.5-0.5B architecture (hidden 896, 24 layers, 14 heads, 2 KV heads, MLP 4864, vocab 151936) written from
  its config with the carried Qwen2.5 tokenizer. Per token, throughput and memory are those of the real model; a
  random model never samples its end-of-turn token, so every completion runs to `--max-tokens` (tokens/s is per
  generated token, so the numbers compare, but a real model's steps are shorter when it stops early).
- the judge: the stub judge (`stubjudge.StubJudge`) in the same process, which makes up well-formed rubrics and
  verdicts at once. A llama-server cannot serve the judge there: no GGUF model fits in the 64 MiB that travel (the
  smallest, SmolLM2-135M, is 98 MB). A replay of recorded judge replies cannot either: the Rubricator's and
  Verifier's prompts quote the student's rollouts, which differ on every machine, so no recording would be asked for.
- per backend, a child process (Unsloth patches transformers and TRL when imported, so it must not share a process
  with the transformers run): `train(config)` with method ropd, `--steps` optimizer steps of `--prompts` prompts x
  `--rollouts` rollouts; the first step (allocator warm-up, Triton/compile work) is reported but left out of the
  medians.

Commands (`scripts/gpu_smoke.sh` wraps them; `make gpu-smoke`):
    python -m ropd_kit.bench.gpu_smoke prepare      # here, with PyPI: wheels -> .whl/, tokenizer -> .gpu_smoke/
    python -m ropd_kit.bench.gpu_smoke dry-run      # CPU: every step but the CUDA ones, the carry list and its size
    python -m ropd_kit.bench.gpu_smoke run          # there, after the wheels are installed (gpu_smoke.sh does it)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from .judge import REPO, median

CARRY_LIMIT_BYTES = 64 * 2**20  # the working tree plus the carried folders, per run on the GPU box
DEFAULT_BUDGET_S = 480.0
WHEELS = REPO / ".whl"
ASSETS = REPO / ".gpu_smoke"
DEFAULT_OUT = REPO / "reports" / "gpu"
TOKENIZER_DIR = "tokenizer"
PYTHON_TAG = "3.12"  # the GPU image's python3
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64")

# The GPU image's Python packages (the image's own package list, read 2026-11-17); `--image-packages FILE` (a
# `pip freeze` or `pip list` from the box) replaces it. Only what is missing from it travels.
IMAGE_PACKAGES = frozenset("""
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core cuda-pathfinder
cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools
formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna
imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver
lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe
matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals
networkx ninja numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime
nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13
nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript
opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy
peft pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo
pygments pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout
pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core
scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six
sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile
tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm
transformers treescope triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel
wrapt xarray xxhash yarl zipp
""".split())

# What the training path needs beyond the image (their own requirements are followed, stopping at the image's).
BASE_ROOTS = ("trl", "datasets", "openai", "pydantic", "diskcache", "math-verify", "aiohttp", "pyyaml")
# The GPU extra's TRL (pyproject `gpu`): unsloth caps trl at 1.15.0, and 1.15's GRPO needs Triton, which is there.
PINS = {"trl": "1.15.0"}
UNSLOTH_SPEC = "unsloth>=2026.10,<2026.11"
# Unsloth and what it imports that the image lacks, chosen by reading its sources (import time and the 16-bit LoRA
# path). Requirements left behind on purpose, with the reason (the plan prints them):
UNSLOTH_EXTRA = ("unsloth_zoo", "tyro", "docstring-parser", "typeguard", "shtab", "msgspec", "cut-cross-entropy")
NOT_CARRIED = {
    "bitsandbytes": "43 MB; only 4-bit QLoRA needs it (unsloth imports it inside a try), the smoke trains 16-bit LoRA",
    "xformers": "its wheel is built against another torch and unsloth refuses a broken xformers; without it, SDPA",
    "diffusers": "image models only",
    "torchao": "fp8 paths only (imported inside functions)",
    "hf-transfer": "hub downloads; the box reaches no hub",
    "json5": "unsloth's CLI and studio", "nest-asyncio": "unsloth's CLI and studio",
    "structlog": "unsloth's CLI and studio",
}
# Folders of the unsloth wheel that training never imports: its web UI (82 MB unpacked) and CLI.
UNSLOTH_DROP = ("studio/", "unsloth_cli/")

# The student's architecture: Qwen2.5-(Coder-)0.5B-Instruct, as its config says; "tiny" is for a CPU check of the
# whole path (its vocabulary and special tokens come from the tokenizer).
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "qwen2.5-0.5b": dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                         intermediate_size=4864, vocab_size=151936, max_position_embeddings=32768,
                         rope_theta=1_000_000.0, rms_norm_eps=1e-6, tie_word_embeddings=True, hidden_act="silu",
                         bos_token_id=151643, eos_token_id=151645, pad_token_id=151643),
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=128, max_position_embeddings=4096, rope_theta=10_000.0, rms_norm_eps=1e-6,
                 tie_word_embeddings=True, hidden_act="silu"),
}
# Where the Qwen2.5 tokenizer can come from here (0.5B and 1.5B Coder share it).
TOKENIZER_SOURCES = ("qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct")
BACKENDS = ("transformers", "unsloth")
VERSIONS = ("torch", "transformers", "trl", "peft", "accelerate", "triton", "datasets", "unsloth", "unsloth_zoo",
            "openai", "pydantic")


def _say(message: str) -> None:
    print(f"[gpu-smoke] {message}", file=sys.stderr, flush=True)


def norm(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


# ---------------------------------------------------------------------------------------------------------------
# What travels


def image_packages(path: str | Path | None = None) -> frozenset[str]:
    """IMAGE_PACKAGES, or the names in a `pip freeze` / `pip list` output saved from the box."""
    if path is None:
        return IMAGE_PACKAGES
    names = set()
    for line in Path(path).read_text().splitlines():
        m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line)
        if m and not line.lstrip().startswith(("#", "Package", "---")):
            names.add(norm(m.group(1)))
    return frozenset(names)


def _marker_env() -> dict[str, str]:
    # The box: CPython 3.12 on x86-64 Linux.
    return {"python_version": PYTHON_TAG, "python_full_version": PYTHON_TAG + ".3", "sys_platform": "linux",
            "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
            "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}


def requirement_closure(roots: Iterable[str], image: frozenset[str]) -> dict[str, str]:
    """{name: version} of `roots` and what they require (markers evaluated for the box), from the distributions
    installed here; the walk stops at the image's packages (they come with their own requirements met)."""
    from importlib.metadata import PackageNotFoundError, distribution

    from packaging.requirements import Requirement

    env = _marker_env()
    found: dict[str, str] = {}
    missing: list[str] = []
    stack = list(roots)
    while stack:
        name = norm(stack.pop())
        if name in found or name in image or name in missing:
            continue
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            missing.append(name)
            continue
        found[name] = dist.version
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate(env):
                stack.append(req.name)
    if missing:
        raise RuntimeError(f"not installed here, so their wheels cannot be pinned: {', '.join(sorted(missing))} "
                           "(install the kit's venv first: make venv)")
    return found


def wheel_requirements(image: frozenset[str], *, with_unsloth: bool) -> list[str]:
    """The `pip download` requirements for the box: the training path's closure at the versions installed here
    (PINS override), and with Unsloth its wheel and UNSLOTH_EXTRA at their newest matching versions."""
    found = requirement_closure(BASE_ROOTS, image)
    reqs = [f"{name}=={PINS.get(name, version)}" for name, version in sorted(found.items())]
    if with_unsloth:
        reqs += [UNSLOTH_SPEC] + [name for name in UNSLOTH_EXTRA if norm(name) not in image]
    return reqs


def wheel_project(path: Path) -> str:
    """The normalised project name of a wheel file."""
    return norm(path.name.split("-")[0])


def download_wheels(reqs: list[str], dest: Path) -> list[Path]:
    """`pip download --no-deps` each requirement for CPython 3.12 on manylinux x86-64 into `dest`, replacing any
    other version of the same project there (two versions of one project stop the install on the box)."""
    dest.mkdir(parents=True, exist_ok=True)
    platform_args = [arg for p in PLATFORMS for arg in ("--platform", p)]
    got: list[Path] = []
    for req in reqs:
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                   "--python-version", PYTHON_TAG, "--implementation", "cp", *platform_args, "-d", tmp, req]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"pip download {req} failed: {done.stderr.strip()[-800:]}")
            for wheel in Path(tmp).glob("*.whl"):
                for old in dest.glob("*.whl"):
                    if wheel_project(old) == wheel_project(wheel):
                        old.unlink()
                target = dest / wheel.name
                shutil.move(str(wheel), target)
                if wheel_project(target) == "unsloth":
                    slim_wheel(target, UNSLOTH_DROP)
                got.append(target)
                _say(f"wheel {target.name} ({target.stat().st_size / 2**20:.1f} MiB)")
    return got


def slim_wheel(path: Path, drop: Iterable[str]) -> int:
    """Rewrite a wheel without the members under `drop` (top-level folders), its RECORD updated to match, so that
    pip installs it as usual. Returns the bytes saved."""
    drop = tuple(drop)
    before = path.stat().st_size
    tmp = path.with_suffix(".slim")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            if info.filename.startswith(drop):
                continue
            data = src.read(info)
            if info.filename.endswith(".dist-info/RECORD"):
                lines = [ln for ln in data.decode().splitlines() if not ln.startswith(drop)]
                data = ("\n".join(lines) + "\n").encode()
            out.writestr(info, data)
    os.replace(tmp, path)
    return before - path.stat().st_size


def unmet_requirements(wheels: Path, image: frozenset[str]) -> dict[str, list[str]]:
    """Per carried wheel, its requirements (for the box) met neither by the image nor by another carried wheel."""
    from packaging.requirements import Requirement

    env = _marker_env()
    carried = {wheel_project(w) for w in wheels.glob("*.whl")}
    out: dict[str, list[str]] = {}
    for wheel in sorted(wheels.glob("*.whl")):
        with zipfile.ZipFile(wheel) as z:
            meta = next((n for n in z.namelist() if n.endswith(".dist-info/METADATA")), None)
            text = z.read(meta).decode(errors="replace") if meta else ""
        unmet = []
        for line in text.splitlines():
            if not line.startswith("Requires-Dist:"):
                continue
            req = Requirement(line.split(":", 1)[1].strip())
            if req.marker is not None and not req.marker.evaluate(env):
                continue
            name = norm(req.name)
            if name not in image and name not in carried:
                unmet.append(name)
        if unmet:
            out[wheel_project(wheel)] = sorted(set(unmet))
    return out


def tree_bytes(repo: Path = REPO) -> int | None:
    """Bytes of what travels to the GPU box besides the carry: tracked files, untracked files git does not ignore, and
    shared/ (None outside a git checkout)."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=repo,
                                capture_output=True, check=True).stdout.split(b"\0")
    except (OSError, subprocess.CalledProcessError):
        return None
    total = 0
    for name in filter(None, listed):
        path = repo / name.decode()
        if path.is_file() and not path.is_symlink():
            total += path.stat().st_size
    shared = repo / "shared"
    if shared.is_dir():
        total += sum(p.stat().st_size for p in shared.rglob("*") if p.is_file() and not p.is_symlink())
    return total


def _folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def carry_list(wheels: Path = WHEELS, assets: Path = ASSETS, repo: Path = REPO) -> dict[str, Any]:
    """The folders to carry to the GPU box, each with its size, the working tree's size, the total and
    whether it fits in CARRY_LIMIT_BYTES."""
    items = []
    for folder in (wheels, assets):
        try:
            rel = str(folder.resolve().relative_to(repo.resolve()))
        except ValueError:
            rel = str(folder)  # outside the checkout: it would not travel with it (the plan says so)
        items.append({"path": rel, "bytes": _folder_bytes(folder), "inside_repo": not rel.startswith("/")})
    files = [{"name": w.name, "bytes": w.stat().st_size} for w in sorted(wheels.glob("*.whl"))]
    tree = tree_bytes(repo)
    total = (tree or 0) + sum(i["bytes"] for i in items)
    return {"carry": [i["path"] for i in items], "items": items, "wheels": files, "tree_bytes": tree,
            "total_bytes": total, "limit_bytes": CARRY_LIMIT_BYTES, "fits": total <= CARRY_LIMIT_BYTES}


# ---------------------------------------------------------------------------------------------------------------
# The student


def load_tokenizer(spec: str | Path) -> Any:
    """A tokenizer from a transformers folder, or from a registry model (its converted folder if there is one,
    else its GGUF file's metadata: about 30 s for Qwen2.5, no weights read into memory)."""
    from transformers import AutoTokenizer

    from ..config import cache_root
    from ..offline import models

    path = Path(str(spec)).expanduser()
    if path.is_dir():
        return AutoTokenizer.from_pretrained(str(path))
    if path.suffix == ".gguf" and path.is_file():
        return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    if not models.is_registry_name(str(spec)):
        raise ValueError(f"tokenizer source {spec!r}: not a folder, a .gguf file or a registry model name")
    name = models.spec_for(str(spec)).name
    folder = cache_root() / "hf" / name
    if (folder / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(str(folder))
    gguf = models.gguf_path(name)
    if not gguf.is_file():
        raise FileNotFoundError(f"tokenizer source {name}: neither {folder} nor {gguf} exists; "
                                f"run `python -m ropd_kit.offline.models install {name}`")
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


def architecture(arch: str, tokenizer: Any) -> dict[str, Any]:
    """The config fields of `arch`, checked against (or, for "tiny", taken from) the tokenizer."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    fields = dict(ARCHITECTURES[arch])
    if "vocab_size" not in fields:
        eos = tokenizer.convert_tokens_to_ids(tokenizer.eos_token)
        pad = tokenizer.convert_tokens_to_ids(tokenizer.pad_token) if tokenizer.pad_token else eos
        bos = tokenizer.convert_tokens_to_ids(tokenizer.bos_token) if tokenizer.bos_token else eos
        fields.update(vocab_size=len(tokenizer), eos_token_id=eos, pad_token_id=pad, bos_token_id=bos)
    if len(tokenizer) > fields["vocab_size"]:
        raise ValueError(f"tokenizer has {len(tokenizer)} tokens, more than {arch}'s vocabulary of "
                         f"{fields['vocab_size']}: not this architecture's tokenizer")
    return fields


def align_tokenizer(tokenizer: Any, fields: dict[str, Any]) -> Any:
    """Make the tokenizer's eos/pad/bos the architecture's (a GGUF-loaded Qwen2.5 tokenizer says eos=<|endoftext|>,
    but the instruct model ends a turn with <|im_end|>, and TRL masks completions after the tokenizer's eos)."""
    for attr in ("eos", "pad", "bos"):
        token_id = fields.get(f"{attr}_token_id")
        if token_id is not None:
            setattr(tokenizer, f"{attr}_token", tokenizer.convert_ids_to_tokens(int(token_id)))
    tokenizer.clean_up_tokenization_spaces = False
    return tokenizer


def export_tokenizer(spec: str | Path, dest: Path, arch: str = "qwen2.5-0.5b") -> Path:
    """Save the student's tokenizer (aligned to `arch`) into `dest` for the box."""
    tokenizer = load_tokenizer(spec)
    align_tokenizer(tokenizer, architecture(arch, tokenizer))
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    tokenizer.save_pretrained(str(dest))
    return dest


def write_student_config(folder: Path, arch: str, tokenizer_dir: Path) -> dict[str, Any]:
    """A transformers folder without weights: config.json and generation_config.json of `arch`, and the tokenizer.
    Returns the architecture's fields."""
    from transformers import AutoTokenizer, GenerationConfig, Qwen2Config

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    fields = architecture(arch, tokenizer)
    align_tokenizer(tokenizer, fields)
    folder.mkdir(parents=True, exist_ok=True)
    config = Qwen2Config(**fields, use_sliding_window=False, attention_dropout=0.0, initializer_range=0.02)
    config.architectures = ["Qwen2ForCausalLM"]
    config.save_pretrained(str(folder))
    GenerationConfig(bos_token_id=fields["bos_token_id"], eos_token_id=fields["eos_token_id"],
                     pad_token_id=fields["pad_token_id"], do_sample=True).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return fields


def write_random_weights(folder: Path, *, device: str, seed: int = 0) -> int:
    """Random-init weights (transformers' own initialisation, bf16) for the config in `folder`; returns the number
    of parameters. Made on `device` (seconds on a GPU for 0.5B) and saved as safetensors beside the config."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(seed)
    config = AutoConfig.from_pretrained(str(folder))
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    n = sum(p.numel() for p in model.parameters())
    model.save_pretrained(str(folder))
    del model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return n


# ---------------------------------------------------------------------------------------------------------------
# One backend's run (a child process) and its summary


def smoke_config(run_dir: Path, judge_url: str, student: Path, backend: str, *, steps: int, prompts: int,
                 rollouts: int, max_tokens: int) -> Any:
    """The ropd run of one backend: shipped arithmetic tasks, every judge role on the stub judge."""
    from ..config import EndpointConfig, RunConfig
    from .stubjudge import STUB_MODEL

    judge = EndpointConfig(base_url=judge_url, model=STUB_MODEL, max_retries=0, timeout_s=60.0)
    return RunConfig(
        run_dir=str(run_dir), seed=0, method="ropd",
        tasks_path=str(REPO / "data" / "arith_train.jsonl"), n_tasks=prompts * steps,
        **{role: judge.model_copy() for role in ("teacher", "rubricator", "verifier", "student")},
        n_teacher_refs=2, teacher_max_tokens=64, n_rollouts=rollouts, rollout_max_tokens=max_tokens,
        min_criteria=4, max_criteria=4, rubric_attempts=1,
        student_model=str(student), max_steps=steps, prompts_per_step=prompts, save_steps=steps,
        max_prompt_tokens=256, eval_steps=None, max_judge_failure_rate=1.0,
        use_unsloth="always" if backend == "unsloth" else "never",
        cache_dir=str(run_dir.parent / f"llm-{backend}"), ref_index_dir=str(run_dir.parent / f"refs-{backend}"),
    )


def versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": sys.version.split()[0]}
    for name in VERSIONS:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def imported_distributions() -> list[str]:
    """The distributions whose top-level modules this process imported (what the box must have)."""
    from importlib.metadata import packages_distributions

    owners = packages_distributions()
    tops = {name.split(".")[0] for name in list(sys.modules)}
    return sorted({norm(d) for top in tops for d in owners.get(top, [])})


def summarise_steps(records: list[dict[str, Any]], batch: int) -> dict[str, Any]:
    """Per step and median (the first step left out when there are more) from a run's train_log records: step time,
    generation time, completion tokens (TRL's mean completion length x the step's completions) per second."""
    steps = []
    for r in sorted(records, key=lambda r: r.get("step") or 0):
        step_s, gen_s, length = r.get("step_s"), r.get("generate_s"), r.get("completion_length")
        tokens = length * batch if length is not None else None
        steps.append({
            "step": r.get("step"), "step_s": step_s, "generate_s": gen_s, "optimizer_s": r.get("optimizer_s"),
            "judge_s": r.get("judge_s"), "completion_length": length, "completion_tokens": tokens,
            "tokens_per_s": tokens / step_s if tokens and step_s else None,
            "generate_tokens_per_s": tokens / gen_s if tokens and gen_s else None,
            "reward_std": r.get("reward_std"), "loss": r.get("loss"), "judge_failures": r.get("judge_failures"),
        })
    timed = steps[1:] if len(steps) > 1 else steps  # the first step pays for warm-up and compilation

    def med(key: str) -> float | None:
        return median([s[key] for s in timed if s.get(key) is not None])

    return {
        "steps": steps,
        "first_step_excluded": len(steps) > 1,
        "step_s_median": med("step_s"),
        "generate_s_median": med("generate_s"),
        "tokens_per_s_median": med("tokens_per_s"),
        "generate_tokens_per_s_median": med("generate_tokens_per_s"),
        "completions_per_step": batch,
    }


def run_backend(args: argparse.Namespace) -> int:
    """Child process: one backend's training, then peak memory, versions and the imports into `--part`."""
    part: dict[str, Any] = {"backend": args.backend}
    started = time.perf_counter()
    try:
        if args.backend == "unsloth":
            import unsloth  # noqa: F401  - before trl/transformers/peft, which it patches
        import torch

        from ..train.methods import train
        from .stubjudge import StubJudge

        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        with StubJudge() as judge:
            config = smoke_config(Path(args.run_dir), judge.base_url, Path(args.student), args.backend,
                                  steps=args.steps, prompts=args.prompts, rollouts=args.rollouts,
                                  max_tokens=args.max_tokens)
            trained = time.perf_counter()
            result = train(config)
            part["train_wall_s"] = round(time.perf_counter() - trained, 3)
            part["judge_requests"] = judge.counts()
        part.update(steps_done=result.steps, used_backend=result.backend, judge_groups=result.judge_groups,
                    judge_failures=result.judge_failures)
        if cuda:
            part["peak_memory_allocated_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
            part["peak_memory_reserved_gib"] = round(torch.cuda.max_memory_reserved() / 2**30, 3)
    except BaseException as exc:  # recorded for the report; the parent decides what it means
        part["error"] = f"{type(exc).__name__}: {exc}"[:2000]
        part["traceback"] = traceback.format_exc()[-4000:]
    part["process_wall_s"] = round(time.perf_counter() - started, 3)
    part["versions"] = versions()
    part["imported_distributions"] = imported_distributions()
    Path(args.part).write_text(json.dumps(part, indent=2, default=str) + "\n")
    return 0 if "error" not in part else 1


# ---------------------------------------------------------------------------------------------------------------
# dry-run and run


def gpu_facts() -> dict[str, Any]:
    import torch

    facts: dict[str, Any] = {"cuda_available": torch.cuda.is_available(), "torch_cuda": torch.version.cuda}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        facts.update(name=props.name, capability=".".join(map(str, torch.cuda.get_device_capability(0))),
                     memory_gib=round(props.total_memory / 2**30, 1), multiprocessors=props.multi_processor_count,
                     bf16=torch.cuda.is_bf16_supported())
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        facts["driver"] = smi.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        facts["driver"] = None
    return facts


def check_stub_judge() -> dict[str, Any]:
    """The judge side of the run, here: the stub judge answers a rubric and a verdict call through the kit's own
    client and parsers, as the reward will call it."""
    from ..config import EndpointConfig, RunConfig
    from ..llm import make_clients, run_sync
    from ..rubrics import induce_rubric_async
    from ..verify import verify_group_async
    from .ratelimit import bench_groups
    from .stubjudge import StubJudge

    group = bench_groups(1)[0]
    with StubJudge() as judge, tempfile.TemporaryDirectory() as tmp:
        endpoint = EndpointConfig(base_url=judge.base_url, model=judge.model, max_retries=0)
        # The stub speaks JSON matrices only (no log-probabilities): its Verifier is read batched.
        config = RunConfig(run_dir=tmp, use_cache=False, min_criteria=4, max_criteria=4, verifier_mode="batched",
                           **{r: endpoint.model_copy() for r in ("teacher", "rubricator", "verifier", "student")})

        async def go():
            async with make_clients(config) as clients:
                outcome = await induce_rubric_async(group.task.prompt, group.teacher_refs, group.rollouts,
                                                    clients.rubricator, config)
                verdicts = await verify_group_async(group.task.prompt, outcome.rubric, group.teacher_refs,
                                                    group.rollouts, clients.verifier, config, seed=0)
                return outcome, verdicts

        outcome, verdicts = run_sync(go())
        judged = verdicts.teacher + verdicts.student
        return {"rubric_criteria": len(outcome.rubric.criteria) if outcome.rubric else 0,
                "answers_judged": sum(v is not None for v in judged), "answers": len(judged),
                "requests": judge.counts()}


def plan_steps(args: argparse.Namespace, carry: dict[str, Any], backends: list[str]) -> list[str]:
    mib = 2**20
    lines = [
        f"carry {carry['carry']} ({sum(i['bytes'] for i in carry['items']) / mib:.1f} MiB) + working tree "
        f"({(carry['tree_bytes'] or 0) / mib:.1f} MiB) = {carry['total_bytes'] / mib:.1f} MiB of "
        f"{carry['limit_bytes'] / mib:.0f} MiB: {'fits' if carry['fits'] else 'TOO BIG'}",
        f"install {len(carry['wheels'])} wheels offline: pip install --no-index --no-deps --target <site> .whl/*.whl",
        f"student: {args.student or f'random-init {args.arch} weights (bf16, on the GPU) from its config'}",
        "judge: stub judge on 127.0.0.1 (made-up rubrics and verdicts, no model)",
    ]
    for backend in backends:
        lines.append(f"{backend}: child process, ropd GRPO, {args.steps} steps x {args.prompts} prompts x "
                     f"{args.rollouts} rollouts x {args.max_tokens} tokens, LoRA r=16")
    lines.append(f"write {Path(args.out) / 'gpu_grpo.json'} (budget {args.budget_s:.0f} s in all)")
    return lines


def dry_run(args: argparse.Namespace) -> dict[str, Any]:
    """Every step of `run` that needs no GPU: the carry list and its size, the student's config (no weights), the
    stub judge answering through the kit's client, each backend's RunConfig; prints and returns the plan."""
    wheels, assets, out = Path(args.wheels), Path(args.assets), Path(args.out)
    image = image_packages(args.image_packages)
    carry = carry_list(wheels, assets)
    problems: list[str] = []
    if not carry["fits"]:
        problems.append(f"the carry is {carry['total_bytes'] / 2**20:.1f} MiB, over "
                        f"{CARRY_LIMIT_BYTES / 2**20:.0f} MiB")
    outside = [i["path"] for i in carry["items"] if not i["inside_repo"]]
    if outside:
        problems.append(f"outside the checkout, so they would not travel with it: {', '.join(outside)}")
    have = {wheel_project(w) for w in wheels.glob("*.whl")}
    needed = {norm(n) for n in requirement_closure(BASE_ROOTS, image)}
    missing = sorted(needed - have)
    if missing:
        problems.append(f"wheels missing from {wheels} (run prepare): {', '.join(missing)}")
    unmet = unmet_requirements(wheels, image) if wheels.is_dir() else {}
    unexplained = {k: [n for n in v if n not in NOT_CARRIED] for k, v in unmet.items()}
    unexplained = {k: v for k, v in unexplained.items() if v}
    if unexplained:
        problems.append(f"carried wheels need what neither the image nor the carry has: {unexplained}")
    tokenizer_dir = assets / TOKENIZER_DIR
    student: dict[str, Any]
    work = out / "work"
    if not (tokenizer_dir / "tokenizer_config.json").is_file():
        problems.append(f"no tokenizer in {tokenizer_dir} (run prepare)")
        student = {}
    elif args.student:
        student = {"weights": args.student}
    else:
        fields = write_student_config(work / "student", args.arch, tokenizer_dir)
        student = {"weights": "random-init (written on the GPU)", "architecture": args.arch, "config": fields,
                   "folder": str(work / "student")}
    judge = check_stub_judge()
    if judge["rubric_criteria"] != 4 or judge["answers_judged"] != judge["answers"]:
        problems.append(f"the stub judge did not answer in the kit's shapes: {judge}")
    backends = list(BACKENDS) if "unsloth" in have else ["transformers"]
    configs = {b: smoke_config(work / f"run-{b}", "http://127.0.0.1:1/v1", work / "student", b, steps=args.steps,
                               prompts=args.prompts, rollouts=args.rollouts, max_tokens=args.max_tokens).model_dump()
               for b in backends}
    plan = {
        "carry": carry, "unmet_requirements": unmet, "not_carried": NOT_CARRIED, "student": student,
        "judge_check": judge, "backends": backends, "run_configs": configs,
        "steps": plan_steps(args, carry, backends), "problems": problems, "ok": not problems,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "plan.json").write_text(json.dumps(plan, indent=2, default=str) + "\n")
    print("GPU smoke plan:")
    for i, line in enumerate(plan["steps"], 1):
        print(f"  {i}. {line}")
    print("problems: " + ("; ".join(problems) if problems else "none"))
    print(f"on the GPU box: bash scripts/gpu_smoke.sh, with {carry['carry']} copied along (allow 570 s)")
    return plan


def run(args: argparse.Namespace) -> dict[str, Any]:
    """On the GPU box: the student's weights, then each backend in a child process, then gpu_grpo.json."""
    import torch

    started = time.perf_counter()
    budget = float(args.budget_s)
    out, assets = Path(args.out), Path(args.assets)
    work = Path(args.work) if args.work else out / "work"
    cuda = torch.cuda.is_available()
    if not cuda and not args.allow_cpu:
        raise SystemExit("no CUDA device: this is the GPU smoke check (use `dry-run` on a CPU machine)")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    report: dict[str, Any] = {"bench": "gpu_grpo", "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                              "device": gpu_facts(), "versions": versions(), "budget_s": budget}
    if args.student:
        student = Path(args.student)
        report["student"] = {"weights": str(student)}
    else:
        student = work / "student"
        t = time.perf_counter()
        fields = write_student_config(student, args.arch, assets / TOKENIZER_DIR)
        n = write_random_weights(student, device="cuda" if cuda else "cpu")
        report["student"] = {"weights": "random-init", "architecture": args.arch, "parameters": n, "config": fields,
                             "written_s": round(time.perf_counter() - t, 3)}
        _say(f"random-init {args.arch} student: {n / 1e6:.0f}M parameters ({time.perf_counter() - t:.1f} s)")
    report["settings"] = {"method": "ropd", "steps": args.steps, "prompts_per_step": args.prompts,
                          "rollouts": args.rollouts, "max_tokens": args.max_tokens, "lora_r": 16,
                          "judge": "stub judge (ropd_kit.bench.stubjudge): made-up rubrics and verdicts, no model"}
    import importlib.util

    backends: dict[str, Any] = {}
    for backend in args.backends:
        left = budget - (time.perf_counter() - started) - 10.0
        if backend == "unsloth" and not cuda:
            backends[backend] = {"skipped": "no CUDA device"}
            continue
        if backend == "unsloth" and importlib.util.find_spec("unsloth") is None:
            backends[backend] = {"skipped": "unsloth is not importable (no wheel carried)"}
            continue
        if left < 60:
            backends[backend] = {"skipped": f"{left:.0f} s of the budget left"}
            continue
        if backend != args.backends[-1]:
            left = min(left, 0.45 * budget)  # a hung first backend must leave the next one its turn
        backends[backend] = run_child(backend, work, student, args, timeout_s=left)
    report["backends"] = backends
    report["wall_s"] = round(time.perf_counter() - started, 3)
    report["within_budget"] = report["wall_s"] <= budget
    report["reading"] = reading(backends)
    out.mkdir(parents=True, exist_ok=True)
    target = out / "gpu_grpo.json"
    target.write_text(json.dumps(report, indent=2, default=str) + "\n")
    _say(f"written {target} ({report['wall_s']:.0f} s): {report['reading']}")
    return report


def run_child(backend: str, work: Path, student: Path, args: argparse.Namespace, *, timeout_s: float) -> dict:
    """One backend in its own process; its train log is read whatever happened to it."""
    from .. import rundir

    run_dir = work / f"run-{backend}"
    part_file = work / f"part-{backend}.json"
    log_file = Path(args.out) / f"gpu_smoke_{backend}.log"
    cmd = [sys.executable, "-m", "ropd_kit.bench.gpu_smoke", "backend", "--backend", backend, "--run-dir",
           str(run_dir), "--student", str(student), "--part", str(part_file), "--steps", str(args.steps),
           "--prompts", str(args.prompts), "--rollouts", str(args.rollouts), "--max-tokens", str(args.max_tokens)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "UNSLOTH_COMPILE_LOCATION": str(work / "unsloth_compiled_cache")}
    _say(f"{backend}: started ({timeout_s:.0f} s at most)")
    t = time.perf_counter()
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "w") as log:
        try:
            done = subprocess.run(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s)
            outcome: dict[str, Any] = {"exit_code": done.returncode}
        except subprocess.TimeoutExpired:
            outcome = {"error": f"timed out after {timeout_s:.0f} s (steps finished by then are below)"}
    outcome["child_wall_s"] = round(time.perf_counter() - t, 3)
    if part_file.exists():
        outcome.update(json.loads(part_file.read_text()))
    records = rundir.read_jsonl(run_dir / rundir.TRAIN_LOG) if (run_dir / rundir.TRAIN_LOG).exists() else []
    outcome.update(summarise_steps(records, args.prompts * args.rollouts))
    outcome["ok"] = "error" not in outcome and len(records) >= args.steps
    outcome["log"] = log_file.name
    _say(f"{backend}: {'ok' if outcome['ok'] else 'FAILED'} in {outcome['child_wall_s']:.0f} s, "
         f"{len(records)} steps, median step {outcome.get('step_s_median')} s, "
         f"{outcome.get('tokens_per_s_median')} tokens/s" + (f" ({outcome['error']})" if "error" in outcome else ""))
    return outcome


def reading(backends: dict[str, Any]) -> str:
    parts = []
    for name, b in backends.items():
        if "skipped" in b:
            parts.append(f"{name}: skipped ({b['skipped']})")
        elif b.get("ok"):
            tps, step = b.get("tokens_per_s_median"), b.get("step_s_median")
            mem = b.get("peak_memory_allocated_gib")
            text = f"{name}: {step:.2f} s/step, {tps:.0f} completion tokens/s" if step and tps else f"{name}: ok"
            parts.append(text + (f", peak {mem:.1f} GiB allocated" if mem is not None else ""))
        else:
            parts.append(f"{name}: failed ({str(b.get('error', 'see its log'))[:200]})")
    return "; ".join(parts)


# ---------------------------------------------------------------------------------------------------------------
# prepare


def prepare(args: argparse.Namespace) -> dict[str, Any]:
    """Here, with PyPI: the wheels the box lacks into `--wheels`, the student's tokenizer into `--assets`; then the
    dry run's plan."""
    image = image_packages(args.image_packages)
    reqs = wheel_requirements(image, with_unsloth=not args.no_unsloth)
    _say(f"{len(reqs)} wheels for CPython {PYTHON_TAG} x86-64: {', '.join(reqs)}")
    download_wheels(reqs, Path(args.wheels))
    tokenizer_dir = Path(args.assets) / TOKENIZER_DIR
    sources = [args.tokenizer_from] if args.tokenizer_from else list(TOKENIZER_SOURCES)
    errors = []
    for source in sources:
        try:
            t = time.perf_counter()
            export_tokenizer(source, tokenizer_dir, args.arch)
            _say(f"tokenizer from {source} -> {tokenizer_dir} ({time.perf_counter() - t:.0f} s, "
                 f"{_folder_bytes(tokenizer_dir) / 2**20:.1f} MiB)")
            break
        except (FileNotFoundError, ValueError) as exc:
            errors.append(str(exc))
    else:
        raise SystemExit("no tokenizer source: " + " | ".join(errors))
    return dry_run(args)


# ---------------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ropd_kit.bench.gpu_smoke", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("prepare", "dry-run", "run", "backend"), nargs="?", default=None)
    parser.add_argument("--dry-run", action="store_true", help="same as the dry-run command")
    parser.add_argument("--wheels", default=str(WHEELS), help="wheels for the box (carried)")
    parser.add_argument("--assets", default=str(ASSETS), help="tokenizer and other files for the box (carried)")
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    parser.add_argument("--work", default=None, help="scratch folder (default: <out>/work)")
    parser.add_argument("--image-packages", default=None, help="pip freeze/list of the box (default: built in)")
    parser.add_argument("--no-unsloth", action="store_true", help="prepare: leave Unsloth's wheels out")
    parser.add_argument("--tokenizer-from", default=None,
                        help="prepare: a transformers folder, .gguf file or registry model (default: Qwen2.5-Coder)")
    parser.add_argument("--arch", default="qwen2.5-0.5b", choices=tuple(ARCHITECTURES))
    parser.add_argument("--student", default=None, help="a transformers folder with real weights on the box")
    parser.add_argument("--backends", type=lambda s: s.split(","), default=list(BACKENDS))
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--prompts", type=int, default=4, help="prompts per step")
    parser.add_argument("--rollouts", type=int, default=8, help="rollouts per prompt")
    parser.add_argument("--max-tokens", type=int, default=256, help="completion length")
    parser.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S)
    parser.add_argument("--allow-cpu", action="store_true", help="run: allow a CPU (a check of the path, tiny arch)")
    # backend (child process) only
    parser.add_argument("--backend", choices=BACKENDS)
    parser.add_argument("--run-dir")
    parser.add_argument("--part")
    args = parser.parse_args(argv)
    if args.dry_run:
        args.command = "dry-run"
    if args.command is None:
        parser.error("say what to do: prepare, dry-run (or --dry-run), run")
    unknown = set(args.backends) - set(BACKENDS)
    if unknown:
        parser.error(f"unknown backend(s) {sorted(unknown)}; known: {', '.join(BACKENDS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "backend":
        return run_backend(args)
    if args.command == "prepare":
        return 0 if prepare(args)["ok"] else 1
    if args.command == "dry-run":
        return 0 if dry_run(args)["ok"] else 1
    report = run(args)
    return 0 if all(b.get("ok") or "skipped" in b for b in report["backends"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
