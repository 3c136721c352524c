"""A notebook's parameters cell → one RunConfig: the flat parameters (papermill's injected ones included),
merged with what earlier notebooks of the same run directory were given, secrets refused, relative paths taken from
the project folder (not from the folder JupyterLab starts the kernel in).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from .. import rundir
from ..config import PARAMETER_ALIASES, ConfigError, EndpointConfig, RunConfig, canonical_params
from .servers import ROLES

if TYPE_CHECKING:  # heavy imports stay inside the functions that need them
    pass


PARAMS_FILE = "notebook_params.json"  # the flat parameters as given (local endpoints unresolved), merged per notebook
PROJECT_DIR_ENV = "ROPD_PROJECT_DIR"  # the folder relative paths in notebook parameters are relative to
OFFLINE_MODEL_ENV = "ROPD_OFFLINE_MODEL"  # an offline model that stands in for the offline default's two
# RunConfig fields that name files or folders; the task sources may also be hub ids.
PATH_FIELDS = ("run_dir", "tasks_path", "eval_tasks_path", "prompts_dir", "cache_dir", "ref_index_dir")
SOURCE_FIELDS = ("tasks_path", "eval_tasks_path")
# ---------------------------------------------------------------------------------------------------------------
# Paths


def _checkout() -> Path | None:
    """The ropd-kit checkout this package is imported from (an editable install), or None for an installed wheel."""
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file() and (root / "notebooks").is_dir() and (root / "data").is_dir():
        return root
    return None


def project_dir() -> Path:
    """The folder that relative paths in notebook parameters (`run_dir`, `tasks_path`, ...) are relative to.

    `$ROPD_PROJECT_DIR` when set (a batch sets it to the folder it runs in), else the ropd-kit checkout the kit is
    imported from, else the working directory. JupyterLab starts a notebook's kernel in the notebook's own folder
    (`notebooks/`), while the parameters' defaults (`data/arith_train.jsonl`, `runs/notebooks`) name the
    checkout's `data/` and `runs/`: they must mean the same wherever the kernel starts.
    """
    given = os.environ.get(PROJECT_DIR_ENV)
    if given:
        folder = Path(given).expanduser()
        if not folder.is_dir():
            raise ConfigError(f"{PROJECT_DIR_ENV}={given!r}: no such folder")
        return folder.resolve()
    return _checkout() or Path.cwd()


def project_path(value: str, *, source: bool = False) -> str:
    """`value` taken from `project_dir()`: an absolute path when the kernel runs elsewhere, the value unchanged when
    the working directory is the project folder (then they mean the same). With `source`, a relative name that is
    neither a file under the project folder nor a local file by its look (a data file suffix, ./ or ../) is a hub
    id and stays as it is."""
    from ..sources import LOCAL_BUILDERS

    path = Path(value).expanduser()
    if path.is_absolute():
        return str(path)
    base = project_dir()
    candidate = base / path
    if source and not candidate.exists() and path.suffix.lower() not in LOCAL_BUILDERS \
            and not value.startswith(("./", "../")):
        return value
    if base.resolve() == Path.cwd().resolve():
        return value
    return os.path.normpath(candidate)


def project_paths(params: Mapping[str, Any]) -> dict[str, Any]:
    """`params` (canonical names) with every relative path field taken from `project_dir()` (`project_path`)."""
    return {k: project_path(v, source=k in SOURCE_FIELDS) if k in PATH_FIELDS and isinstance(v, str) and v else v
            for k, v in params.items()}


def offline_model(config: RunConfig) -> RunConfig:
    """`config` with `$ROPD_OFFLINE_MODEL` (a registry name, e.g. smollm2-135m-instruct) in place of the offline
    default's teacher and student wherever the config names them: `local` endpoints, `student_model`,
    `lopd_teacher_model`. A quick look at every notebook on a small machine; models named otherwise stay."""
    name = os.environ.get(OFFLINE_MODEL_ENV)
    if not name:
        return config
    from ..config import DEFAULT_STUDENT, DEFAULT_TEACHER
    from ..offline.models import is_registry_name, spec_for

    if not is_registry_name(name):
        from ..offline.models import MODELS

        raise ConfigError(f"{OFFLINE_MODEL_ENV}={name!r} is not an offline model (one of {', '.join(MODELS)})")
    name = spec_for(name).name

    def is_default(model: str) -> bool:
        return is_registry_name(model) and spec_for(model).name in (DEFAULT_TEACHER, DEFAULT_STUDENT)

    data = config.model_dump()
    swapped = [role for role in ROLES if config.endpoint(role).is_local and is_default(config.endpoint(role).model)]
    for role in swapped:
        data[role]["model"] = name
    for field in ("student_model", "lopd_teacher_model"):
        if is_default(getattr(config, field)):
            data[field] = name
            swapped.append(field)
    if swapped:
        print(f"{OFFLINE_MODEL_ENV}={name}: {name} in place of the offline default for {', '.join(swapped)}")
    return RunConfig(**data)


# ---------------------------------------------------------------------------------------------------------------
# Parameters and config


def config_parameter_names() -> list[str]:
    """Every flat name `RunConfig.from_params` accepts: its fields, their aliases (tasks_limit, ...), and
    `<role>_<endpoint field>` per role."""
    names = [n for n in RunConfig.model_fields if n not in ROLES] + list(PARAMETER_ALIASES)
    names += [f"{role}_{field}" for role in ROLES for field in EndpointConfig.model_fields]
    return sorted(set(names))


def parameters(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The RunConfig parameters defined in a notebook's namespace (pass `globals()` right after the parameters cell)."""
    names = set(config_parameter_names())
    return {k: v for k, v in namespace.items() if k in names and not k.startswith("_")}


def run_config(params: Mapping[str, Any]) -> RunConfig:
    """A RunConfig from flat parameters, on top of those the earlier notebooks of the same run_dir were given.

    Notebook 01 sets the tasks and the teacher, 04 the method, and so on: each notebook's parameters win over what
    was saved before — except None, which means "as an earlier notebook set it" (then the RunConfig default) — and
    the merged set is saved again (`notebook_params.json`, and `config.json`), so the next notebook only needs
    `run_dir` to carry on. Relative paths are taken from the project folder (`project_dir`: the checkout, not
    the kernel's folder), and `$ROPD_OFFLINE_MODEL` swaps the offline default's models (`offline_model`).
    Refuses parameters that would write a secret (see redaction.check_secrets).
    """
    from ..redaction import check_secrets

    check_secrets(params)
    given_dir = canonical_params(dict(params)).get("run_dir") or RunConfig.model_fields["run_dir"].default
    run_dir = Path(project_path(str(given_dir)))
    saved_path = run_dir / PARAMS_FILE
    saved: dict[str, Any] = {}
    if saved_path.exists():
        try:
            saved = json.loads(saved_path.read_text())
        except json.JSONDecodeError as exc:
            raise rundir.RecordError(f"{saved_path}: not valid JSON ({exc.msg}); delete it to start over") from exc
    # Every RunConfig field that may be None defaults to None, so "None = inherit, else default" is one rule.
    # Aliases are read under their field's name first, so that tasks_limit given now replaces an earlier n_tasks.
    given = {k: v for k, v in canonical_params(dict(params)).items() if v is not None}
    merged = project_paths({**canonical_params(saved), **given, "run_dir": str(run_dir)})
    config = offline_model(RunConfig.from_params(**merged))
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = saved_path.with_name(PARAMS_FILE + ".tmp")
    tmp.write_text(json.dumps(merged, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, saved_path)
    config.save()
    return config


def init_notebook() -> None:
    """Display settings for the notebooks: plotly figures as the plotly mimetype (JupyterLab renders it; the HTML
    export turns it into an offline figure), and plain-text progress bars when run headless by the batch runner."""
    import pandas as pd
    import plotly.io as pio

    pio.renderers.default = "plotly_mimetype"
    pd.set_option("display.max_colwidth", 120)
    pd.set_option("display.max_rows", 60)
    if os.environ.get("ROPD_HEADLESS"):
        # Widget bars are stored as their first frame ("0%") in an executed notebook; text bars end up complete.
        import tqdm.auto
        import tqdm.std

        tqdm.auto.tqdm = tqdm.std.tqdm
