"""What a batch is: the experiment spec (a grid of parameters × notebooks), the notebooks it names and the
kernel that runs them. In: a YAML file or a dict. Out: a validated `BatchSpec`, notebook paths and parameters.

A spec may start from a run config file, the kind `python -m ropd_kit.train --config` takes:

    name: gpu_methods
    config: ../configs/gpu.yaml       # every run starts from it (relative to this file, or to the working folder)
    base: {max_steps: 50}             # ... base, a run's params and the grid override it, in that order
    grid: {method: [ropd, lopd]}

(`python -m ropd_kit.batch SPEC --config FILE` names one from the command line instead.) The file's run_dir is left
out: the batch puts each run in reports/<name>/<run>/run. Every layer may use a role's block (`teacher: {...}`) and
TRL's names (`num_generations`); the runs' parameters are flat and in our names, which is what the notebooks take.
"""

from __future__ import annotations

import itertools
import os
import re
import sys
from pathlib import Path
from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator


NOTEBOOKS_DIR = Path(__file__).resolve().parents[2] / "notebooks"
DEFAULT_NOTEBOOKS = (
    "01_teacher_references",
    "02_rubric_induction",
    "03_verification_and_rewards",
    "04_grpo_training",
    "05_signal_alignment_auc",
    "06_efficiency",
)
INDEX = "index.html"
HEADLESS_ENV = "ROPD_HEADLESS"  # notebooks switch tqdm to plain text bars when it is set

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
class BatchError(ValueError):
    """A spec or a run that cannot work; the message names the file, run and field."""


class RunSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    # The notebooks of this run when it needs fewer than the batch's (a baseline that only trains); None: the batch's.
    notebooks: list[str] | None = None

    @field_validator("name")
    @classmethod
    def _folder_name(cls, v: str) -> str:
        if not _SAFE_NAME.match(v):
            raise ValueError(f"run name {v!r} must be a folder name: letters, digits, '.', '_', '-'")
        return v

    @field_validator("notebooks")
    @classmethod
    def _some_notebooks(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and not v:
            raise ValueError("a run's notebooks list is empty; leave it out to run the batch's notebooks")
        return v


class BatchSpec(BaseModel):
    """An experiment: which notebooks, which parameters, which runs. `expand()` lists the runs."""

    model_config = ConfigDict(extra="forbid")

    name: str
    notebooks: list[str] = Field(default_factory=lambda: list(DEFAULT_NOTEBOOKS))
    base: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    runs: list[RunSpec] = Field(default_factory=list)
    target_accuracy: float | None = Field(default=None, ge=0, le=1)
    config: str | None = Field(default=None, description="A run config file every run starts from (configs/*.yaml).")
    _config_params: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _read_config(self) -> "BatchSpec":
        # Checked as a whole run config here, so that a bad field is named with its file before any run starts.
        if self.config is not None:
            from ..config_file import load_config, read_config_file

            load_config(self.config)
            params = read_config_file(self.config)
            params.pop("run_dir", None)
            self._config_params = params
        return self

    def with_config(self, path: str | Path) -> "BatchSpec":
        """This spec with `path` as its run config file (replacing the one it names, if any)."""
        try:
            return BatchSpec(**{**self.model_dump(), "config": str(path)})
        except ValidationError as exc:
            raise BatchError(f"batch {self.name!r}: {_problems(exc)}") from exc

    @field_validator("name")
    @classmethod
    def _folder_name(cls, v: str) -> str:
        if not _SAFE_NAME.match(v):
            raise ValueError(f"batch name {v!r} must be a folder name: letters, digits, '.', '_', '-'")
        return v

    @field_validator("grid")
    @classmethod
    def _non_empty_axes(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        empty = [k for k, values in v.items() if not values]
        if empty:
            raise ValueError(f"grid axis {empty[0]!r} has no values")
        return v

    def expand(self) -> list[RunSpec]:
        """The runs: each named run (or one unnamed) × the product of the grid, named after the grid values; a
        named run's own `notebooks` go with each of its grid runs."""
        named = self.runs or [RunSpec(name="default")]
        keys = list(self.grid)
        combos = list(itertools.product(*(range(len(self.grid[k])) for k in keys))) if keys else [()]
        labels = {k: _axis_labels(self.grid[k]) for k in keys}
        out: list[RunSpec] = []
        for run in named:
            for picks in combos:
                combo = [self.grid[k][i] for k, i in zip(keys, picks)]
                parts = [f"{k}-{labels[k][i]}" for k, i in zip(keys, picks)]
                name = "_".join(([run.name] if self.runs or not parts else []) + parts)
                layers = [(self._config_params, "config"), (self.base, "base"), (run.params, f"run {run.name!r}"),
                          (dict(zip(keys, combo)), f"grid of run {name!r}")]
                out.append(RunSpec(name=name, params={k: v for layer, where in layers
                                                      for k, v in _flat(layer, where).items()},
                                   notebooks=run.notebooks))
        seen: set[str] = set()
        for run in out:
            if run.name in seen:
                raise BatchError(f"batch {self.name!r}: two runs are both named {run.name!r}; give runs distinct names")
            seen.add(run.name)
        return out


def _flat(params: dict[str, Any], where: str) -> dict[str, Any]:
    """One layer of a run's parameters, flat and in our names (config_file.flat_params)."""
    from ..config import ConfigError
    from ..config_file import flat_params

    try:
        return flat_params(params, source=where)
    except ConfigError as exc:
        raise BatchError(str(exc)) from exc


def _slug(value: Any) -> str:
    text = re.sub(r"[^A-Za-z0-9.]+", "-", str(value)).strip("-.")
    return text[:40] or "x"


def _axis_labels(values: list[Any]) -> list[str]:
    """The run-name part of each value of one grid axis: its slug; for paths and hub ids whose slugs collide (long
    absolute paths cut at 40 characters, one file name in two folders), the shortest tails that tell them apart."""
    labels = [_slug(v) for v in values]
    paths = [v for v in values if isinstance(v, str) and re.search(r"[/\\]", v)]
    if len(set(labels)) == len(labels) or not paths:
        return labels
    depth = max(len(re.split(r"[/\\]", v.rstrip("/\\"))) for v in paths)
    for n in range(1, depth + 1):
        tails = [_slug("/".join(re.split(r"[/\\]", v.rstrip("/\\"))[-n:])[-40:]) if v in paths else _slug(v)
                 for v in values]
        if len(set(tails)) == len(tails):
            return tails
    return labels  # values that are the same path: expand() names the clash


def _config_path(name: str, spec_dir: Path) -> str:
    """A spec's `config` as found: relative to the spec's folder first, then to the working folder."""
    given = Path(name).expanduser()
    beside = spec_dir / given
    return str(beside) if not given.is_absolute() and beside.is_file() else str(given)


def load_spec(spec_or_path: BatchSpec | Mapping[str, Any] | str | Path) -> BatchSpec:
    """A BatchSpec from itself, a dict, or a YAML file; errors name the file and the field."""
    import yaml

    if isinstance(spec_or_path, BatchSpec):
        return spec_or_path
    source = "spec"
    if isinstance(spec_or_path, (str, Path)):
        path = Path(spec_or_path)
        if not path.exists():
            raise BatchError(f"{path}: experiment spec not found")
        source = str(path)
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise BatchError(f"{path}: not valid YAML ({exc})") from exc
        if not isinstance(data, dict):
            raise BatchError(f"{path}: expected a mapping with name/notebooks/base/grid/runs, got {type(data).__name__}")
        data.setdefault("name", path.stem)
        if isinstance(data.get("config"), str):
            data["config"] = _config_path(data["config"], path.parent)
    else:
        data = dict(spec_or_path)
    try:
        return BatchSpec(**data)
    except ValidationError as exc:
        raise BatchError(f"{source}: {_problems(exc)}") from exc


def _problems(exc: ValidationError) -> str:
    # A model-level error has no field of its own: the run config file is the only model-level check.
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg'].removeprefix('Value error, ')}"
                     for e in exc.errors())


# ---------------------------------------------------------------------------------------------------------------
# Kernel and notebooks


def kernel_name() -> str:
    """A kernelspec that runs this interpreter: "python3" when it resolves to sys.executable, else any spec whose
    argv[0] is this interpreter (the Makefile registers "ropd-kit"). Raises BatchError with the fix otherwise."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    manager = KernelSpecManager()

    def runs_here(argv: list[str]) -> bool:
        if not argv:
            return False
        exe = argv[0]
        # jupyter_client swaps a bare "python"/"python3" for sys.executable when it starts the kernel.
        if exe in {"python", f"python{sys.version_info[0]}", "python%d.%d" % sys.version_info[:2]}:
            return True
        try:
            return Path(exe).exists() and os.path.samefile(exe, sys.executable)
        except OSError:
            return False

    try:
        if runs_here(manager.get_kernel_spec("python3").argv):
            return "python3"
    except NoSuchKernel:
        pass
    for name in sorted(manager.find_kernel_specs()):
        try:
            if runs_here(manager.get_kernel_spec(name).argv):
                return name
        except NoSuchKernel:  # pragma: no cover - a spec removed while we look
            continue
    raise BatchError(
        f"no Jupyter kernel runs {sys.executable}: the 'python3' kernelspec points elsewhere. Register one with "
        f"`{sys.executable} -m ipykernel install --user --name ropd-kit` (the Makefile's venv target does this)"
    )


def notebook_path(name: str, base_dir: Path | None = None) -> Path:
    """A notebook by name ("01_teacher_references"), file name, or path (relative to `base_dir` or cwd)."""
    candidates = [Path(name)]
    if base_dir is not None:
        candidates.append(base_dir / name)
    candidates += [NOTEBOOKS_DIR / name, NOTEBOOKS_DIR / f"{name}.ipynb"]
    for c in candidates:
        if c.suffix == ".ipynb" and c.is_file():
            return c.resolve()
    raise BatchError(f"notebook {name!r} not found (looked in {', '.join(str(c) for c in candidates)})")


def notebook_parameters(path: Path) -> dict[str, Any]:
    """The names (and defaults) of a notebook's `parameters` cell."""
    import papermill

    return {k: v.get("default") for k, v in papermill.inspect_notebook(str(path)).items()}


def _known_parameters(notebooks: list[Path]) -> set[str]:
    from ..notebook_tools.params import config_parameter_names

    known = set(config_parameter_names())
    for nb in notebooks:
        known |= set(notebook_parameters(nb))
    return known
