"""Batch runs: a grid of parameters × the notebooks, executed headless with papermill into `reports/`.

In:  an experiment spec (YAML or a dict) —
         name: demo
         notebooks: [01_teacher_references, 02_rubric_induction, ...]   # default: all six, in order
         base: {n_tasks: 8, teacher_base_url: local, ...}              # parameters every run gets
         grid: {method: [ropd, lopd, rlvr]}                            # product -> runs ...
         runs: [{name: big, params: {n_rollouts: 8}}]                  # ... and/or named runs (× the grid)
         target_accuracy: 0.5                                          # optional, for the index's efficiency table
Out: `reports/<name>/<run>/NN_*.ipynb` (executed) + `.html` each, the run's directory `reports/<name>/<run>/run`
     (passed to every notebook as `run_dir`), `reports/<name>/<run>/status.json`, and `reports/<name>/index.html`
     summarising all runs (a table, and comparison figures when runs have train/eval logs).

A run whose status says it finished with the same parameters is skipped (resumable); a run that fails is recorded
(the error and the notebook it failed in) and the next run goes on. Secrets never become papermill parameters,
since papermill copies parameter values into the output notebooks: a parameter whose name looks like a key holder
(api_key, token, secret, password) is refused unless it ends in `_env` (the NAME of an environment variable), and so
is any value equal to the value of such a variable.

CLI: `python -m ropd_kit.batch experiments/<name>.yaml [--reports reports] [--only RUN] [--force]`.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import itertools
import json
import logging
import os
import re
import shutil
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
DEFAULT_NOTEBOOKS = (
    "01_teacher_references",
    "02_rubric_induction",
    "03_verification_and_rewards",
    "04_grpo_training",
    "05_signal_alignment_auc",
    "06_efficiency",
)
STATUS = "status.json"
RUN_SUBDIR = "run"
INDEX = "index.html"
HEADLESS_ENV = "ROPD_HEADLESS"  # notebooks switch tqdm to plain text bars when it is set

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# Name parts that mark a variable as holding a credential ("max_tokens" has the part "tokens", which is fine; the
# shell's PWD is a directory, not a password).
_SECRET_PARTS = {"key", "apikey", "token", "secret", "secrets", "password", "passwd", "credential", "credentials"}
_PARAM_ONLY_PARTS = {"auth", "bearer"}  # suspicious as parameter names; as env names they hit SSH_AUTH_SOCK and co.
_SECRET_WORDS = ("api_key", "apikey", "secret", "password", "passwd", "credential", "access_token", "auth_token")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
REDACTED = "[redacted]"


class BatchError(ValueError):
    """A spec or a run that cannot work; the message names the file, run and field."""


class SecretParameterError(BatchError):
    """A parameter that would write a secret into the reports (papermill copies parameter values)."""


class RunSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _folder_name(cls, v: str) -> str:
        if not _SAFE_NAME.match(v):
            raise ValueError(f"run name {v!r} must be a folder name: letters, digits, '.', '_', '-'")
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
        """The runs: each named run (or one unnamed) × the product of the grid, named after the grid values."""
        named = self.runs or [RunSpec(name="default")]
        keys = list(self.grid)
        combos = list(itertools.product(*(self.grid[k] for k in keys))) if keys else [()]
        out: list[RunSpec] = []
        for run in named:
            for combo in combos:
                parts = [f"{k}-{_slug(v)}" for k, v in zip(keys, combo)]
                name = "_".join(([run.name] if self.runs or not parts else []) + parts)
                out.append(RunSpec(name=name, params={**self.base, **run.params, **dict(zip(keys, combo))}))
        seen: set[str] = set()
        for run in out:
            if run.name in seen:
                raise BatchError(f"batch {self.name!r}: two runs are both named {run.name!r}; give runs distinct names")
            seen.add(run.name)
        return out


def _slug(value: Any) -> str:
    text = re.sub(r"[^A-Za-z0-9.]+", "-", str(value)).strip("-.")
    return text[:40] or "x"


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
    else:
        data = dict(spec_or_path)
    try:
        return BatchSpec(**data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise BatchError(f"{source}: {problems}") from exc


# ---------------------------------------------------------------------------------------------------------------
# Secrets


def looks_like_secret_name(name: str, *, parameter: bool = True) -> bool:
    """True for names such as `api_key`, `hf_token`, `openai_secret`; names ending in `_env` hold a variable NAME.

    `parameter=False` applies the stricter reading used for environment variable names.
    """
    lowered = name.lower()
    if lowered.endswith("_env"):
        return False
    parts = set(re.split(r"[^a-z0-9]+", lowered))
    holders = _SECRET_PARTS | _PARAM_ONLY_PARTS if parameter else _SECRET_PARTS
    return bool(parts & holders) or any(word in lowered for word in _SECRET_WORDS)


def secret_values(params: Mapping[str, Any], env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Values that must never be written: env var name -> value, for every variable a `*_env` parameter names and
    every set variable whose own name looks like a key holder (`OPENAI_API_KEY`, `HF_TOKEN`, ...)."""
    env = os.environ if env is None else env
    named = {v for k, v in params.items() if k.lower().endswith("_env") and isinstance(v, str) and v}
    out = {name: env[name] for name in named if env.get(name)}
    for name, value in env.items():
        # Short values of look-alike names (FOO_TOKEN_ENABLED=1) would match every "1": only real-looking keys count.
        if name not in out and looks_like_secret_name(name, parameter=False) and len(value) >= 8:
            out[name] = value
    return out


def _strings(value: Any, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _strings(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _strings(v, f"{where}[{i}]")


def check_secrets(params: Mapping[str, Any], *, run: str = "", env: Mapping[str, str] | None = None) -> None:
    """Raise SecretParameterError if a parameter name or value would put a secret into the reports.

    The message names the parameter and the variable, never the value.
    """
    where = f"run {run!r}: " if run else ""
    for name in params:
        if looks_like_secret_name(name):
            raise SecretParameterError(
                f"{where}parameter {name!r} looks like it holds a credential; papermill would copy its value into "
                f"every output notebook. Put the key in an environment variable and pass its NAME, e.g. "
                f"teacher_api_key_env: OPENAI_API_KEY"
            )
    secrets = secret_values(params, env)
    for name, value in params.items():
        for path, text in _strings(value, name):
            for var, secret in secrets.items():
                if text == secret or (len(secret) >= 8 and secret in text):
                    raise SecretParameterError(
                        f"{where}parameter {path!r} contains the value of environment variable {var}; pass the "
                        f"variable's NAME (a `*_api_key_env` parameter), never its value"
                    )


def redact_file(path: Path, secrets: Mapping[str, str]) -> int:
    """Replace secret values in a written file (a last line of defence); returns how many were replaced."""
    values = [v for v in secrets.values() if len(v) >= 6]
    if not values or not path.exists():
        return 0
    text = path.read_text(errors="surrogateescape")
    count = sum(text.count(v) for v in values)
    if count:
        for v in values:
            text = text.replace(v, REDACTED)
        path.write_text(text, errors="surrogateescape")
    return count


def _scrub(text: str, secrets: Mapping[str, str]) -> str:
    for v in secrets.values():
        if len(v) >= 6:
            text = text.replace(v, REDACTED)
    return text


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
    from .notebook_tools import config_parameter_names

    known = set(config_parameter_names())
    for nb in notebooks:
        known |= set(notebook_parameters(nb))
    return known


# ---------------------------------------------------------------------------------------------------------------
# Status records


class NotebookStatus(BaseModel):
    notebook: str
    output: str
    html: str | None = None
    status: Literal["done", "failed"]
    wall_s: float
    redacted: int = 0


class RunStatus(BaseModel):
    """What `status.json` of a run says; `skipped` is only set in what `run_batch` returns."""

    run: str
    status: Literal["running", "done", "failed"]
    params: dict[str, Any]
    fingerprint: str
    run_dir: str
    notebooks: list[NotebookStatus] = Field(default_factory=list)
    failed_notebook: str | None = None
    error: str | None = None
    traceback: str | None = None
    started: str | None = None
    finished: str | None = None
    wall_s: float | None = None
    skipped: bool = False


def _fingerprint(params: Mapping[str, Any], notebooks: list[Path]) -> str:
    payload = json.dumps({"params": params, "notebooks": [p.name for p in notebooks]}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _write_status(path: Path, status: RunStatus, secrets: Mapping[str, str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(_scrub(status.model_dump_json(indent=2, exclude={"skipped"}), secrets) + "\n")
    os.replace(tmp, path)


def read_status(run_folder: Path) -> RunStatus | None:
    path = run_folder / STATUS
    if not path.exists():
        return None
    try:
        return RunStatus.model_validate_json(path.read_text())
    except ValidationError:
        return None  # a status from another version or a torn write: the run is redone


def _finished(status: RunStatus | None, fingerprint: str, folder: Path) -> bool:
    return (
        status is not None
        and status.status == "done"
        and status.fingerprint == fingerprint
        and all((folder / nb.output).exists() for nb in status.notebooks)
    )


@contextmanager
def _env(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _served_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters that point this run's `local` endpoints at servers started once for the whole batch.

    Without this every notebook kernel would load the models again (and training would start its own servers).
    Servers are shared by model and size, and stopped when the batch ends.
    """
    from .config import RunConfig
    from .notebook_tools import ROLES, config_parameter_names, resolve_endpoints

    names = set(config_parameter_names())
    config = RunConfig.from_params(**{k: v for k, v in params.items() if k in names and k != "run_dir"})
    resolved = resolve_endpoints(config)
    out: dict[str, Any] = {}
    for role in ROLES:
        if config.endpoint(role).is_local:
            out[f"{role}_base_url"] = resolved.endpoint(role).base_url
            out[f"{role}_model"] = resolved.endpoint(role).model
    return out


class _QuietUnknownParameters(logging.Filter):
    # Every run passes the batch's whole parameter set to every notebook (each takes what it declares, and
    # run_config reads RunConfig fields from the injected cell), so papermill's per-name warning is noise here.
    def filter(self, record: logging.LogRecord) -> bool:
        return "Passed unknown parameter" not in record.getMessage()


def _error_text(exc: BaseException) -> tuple[str, str | None]:
    from papermill.exceptions import PapermillExecutionError

    if isinstance(exc, PapermillExecutionError):
        message = f"{exc.ename}: {exc.evalue} (in cell In [{exc.exec_count}])"
        trace = _ANSI.sub("", "\n".join(exc.traceback or []))
        return message, trace[-6000:]
    return f"{type(exc).__name__}: {_ANSI.sub('', str(exc))}", None


# ---------------------------------------------------------------------------------------------------------------
# Running


def _execute_run(
    run: RunSpec,
    notebooks: list[Path],
    folder: Path,
    fingerprint: str,
    secrets: Mapping[str, str],
    *,
    kernel: str,
    start_timeout: int,
    execution_timeout: int | None,
    serve_local: bool,
    bar: Any,
) -> RunStatus:
    import papermill

    from .notebook_tools import export_html

    if folder.exists():
        shutil.rmtree(folder)  # an unfinished or changed run starts clean: its records come from one execution
    run_dir = folder / RUN_SUBDIR
    run_dir.mkdir(parents=True)
    params = {**run.params, "run_dir": str(run_dir)}
    status = RunStatus(run=run.name, status="running", params=params, fingerprint=fingerprint,
                       run_dir=str(run_dir), started=_now())
    _write_status(folder / STATUS, status, secrets)
    t_run = time.perf_counter()
    try:
        if serve_local:
            params = {**params, **_served_params(run.params)}
    except Exception as exc:  # noqa: BLE001 - a model that cannot be served fails this run, not the batch
        status.status, status.failed_notebook = "failed", "(local servers)"
        status.error, status.traceback = _error_text(exc)
        status.finished, status.wall_s = _now(), round(time.perf_counter() - t_run, 2)
        _write_status(folder / STATUS, status, secrets)
        return status
    for nb in notebooks:
        bar.set_postfix_str(f"{run.name}: {nb.stem}", refresh=True)
        output = folder / nb.name
        t0 = time.perf_counter()
        error: BaseException | None = None
        try:
            papermill.execute_notebook(
                str(nb), str(output), parameters=params, kernel_name=kernel, progress_bar=False,
                start_timeout=start_timeout, execution_timeout=execution_timeout,
                # A widget's saved state (the inspector's plotly FigureWidget carries plotly.js: ~10 MB) is useless
                # without the kernel that drives it.
                store_widget_state=False,
            )
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of one run is recorded and the batch goes on
            error = exc
        redacted = redact_file(output, secrets)
        html_path = None
        if output.exists():
            try:
                html_path = export_html(output)
                redacted += redact_file(html_path, secrets)
            except Exception as exc:  # noqa: BLE001 - a report that cannot be rendered must not hide the run's result
                error = error or exc
        status.notebooks.append(
            NotebookStatus(
                notebook=nb.stem, output=output.name, html=html_path.name if html_path else None,
                status="failed" if error else "done", wall_s=round(time.perf_counter() - t0, 2), redacted=redacted,
            )
        )
        if error is not None:
            status.status = "failed"
            status.failed_notebook = nb.stem
            status.error, status.traceback = _error_text(error)
            break
    else:
        status.status = "done"
    status.finished = _now()
    status.wall_s = round(time.perf_counter() - t_run, 2)
    _write_status(folder / STATUS, status, secrets)
    return status


def run_batch(
    spec_or_path: BatchSpec | Mapping[str, Any] | str | Path,
    reports_dir: str | Path = "reports",
    *,
    only: list[str] | str | None = None,
    force: bool = False,
    progress: bool = True,
    start_timeout: int = 180,
    execution_timeout: int | None = None,
    kernel: str | None = None,
    serve_local: bool = True,
) -> list[RunStatus]:
    """Execute every run of the spec (notebooks in order) and write `reports/<name>/index.html`.

    Finished runs with unchanged parameters are skipped unless `force`; `only` limits the batch to some run names.
    With `serve_local`, endpoints whose base_url is "local" are served once for the whole batch (llama-server, one
    per model) and the notebooks get their URLs; otherwise each notebook starts its own.
    Returns one RunStatus per run of the spec that was executed or skipped (`skipped=True`), in spec order.
    Raises BatchError (before anything runs) for a bad spec, an unknown parameter or a secret in the parameters.
    """
    from tqdm.auto import tqdm

    spec_dir = Path(spec_or_path).resolve().parent if isinstance(spec_or_path, (str, Path)) else None
    spec = load_spec(spec_or_path)
    notebooks = [notebook_path(n, spec_dir) for n in spec.notebooks]
    if not notebooks:
        raise BatchError(f"batch {spec.name!r}: no notebooks to run")
    runs = spec.expand()
    names = [r.name for r in runs]
    wanted = [only] if isinstance(only, str) else list(only or [])
    unknown_runs = [n for n in wanted if n not in names]
    if unknown_runs:
        raise BatchError(f"batch {spec.name!r}: no run named {unknown_runs[0]!r} (runs: {', '.join(names)})")

    known = _known_parameters(notebooks)
    for run in runs:
        check_secrets(run.params, run=run.name)  # first: a key must not reach even an error message about names
        if "run_dir" in run.params:
            raise BatchError(f"run {run.name!r}: run_dir is set by the batch (reports/<name>/<run>/run); remove it")
        unknown = sorted(set(run.params) - known)
        if unknown:
            raise BatchError(
                f"run {run.name!r}: unknown parameter(s) {', '.join(unknown)} — neither RunConfig fields nor in a "
                f"notebook's parameters cell"
            )

    batch_dir = Path(reports_dir) / spec.name
    batch_dir.mkdir(parents=True, exist_ok=True)
    kernel = kernel or kernel_name()
    todo = [r for r in runs if not wanted or r.name in wanted]
    results: list[RunStatus] = []
    quiet = _QuietUnknownParameters()
    logging.getLogger("papermill").addFilter(quiet)
    bar = tqdm(total=len(todo), desc=f"batch {spec.name}", unit="run", disable=not progress)
    try:
        with _env(**{HEADLESS_ENV: "1"}):
            for run in todo:
                folder = batch_dir / run.name
                fingerprint = _fingerprint(run.params, notebooks)
                previous = read_status(folder)
                if not force and _finished(previous, fingerprint, folder):
                    results.append(previous.model_copy(update={"skipped": True}))
                else:
                    secrets = secret_values(run.params)
                    results.append(
                        _execute_run(run, notebooks, folder, fingerprint, secrets, kernel=kernel,
                                     start_timeout=start_timeout, execution_timeout=execution_timeout,
                                     serve_local=serve_local, bar=bar)
                    )
                bar.update(1)
    finally:
        bar.close()
        logging.getLogger("papermill").removeFilter(quiet)
        if serve_local:
            from .notebook_tools import stop_servers

            stop_servers()
        write_index(batch_dir, spec, runs)
    return results


# ---------------------------------------------------------------------------------------------------------------
# The index page


def _cell(value: Any) -> str:
    # Strings as they are (a method name, not '"ropd"'); numbers, lists and None as JSON.
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _varying(runs: list[RunSpec]) -> list[str]:
    keys = sorted({k for r in runs for k in r.params})
    return [k for k in keys if len({json.dumps(r.params.get(k), default=str) for r in runs}) > 1]


def write_index(batch_dir: str | Path, spec: BatchSpec, runs: list[RunSpec] | None = None) -> Path:
    """`<batch_dir>/index.html`: every run's status, the parameters that differ, links to the notebook reports, and
    comparison figures (training curves, efficiency, signal AUC) from the runs' logs. Works offline (plotly inlined)."""
    from .notebook_tools import comparison_sections

    batch_dir = Path(batch_dir)
    runs = runs if runs is not None else spec.expand()
    varying = _varying(runs)
    statuses = {r.name: read_status(batch_dir / r.name) for r in runs}
    head = ["run", "status", *varying, "wall (s)", "notebooks", "error"]
    rows = []
    for run in runs:
        st = statuses[run.name]
        state = st.status if st else "pending"
        links = " · ".join(
            f'<a href="{html.escape(run.name)}/{html.escape(nb.html)}" class="{nb.status}">{html.escape(nb.notebook[:2])}</a>'
            for nb in (st.notebooks if st else []) if nb.html
        )
        error = ""
        if st and st.error:
            error = f"<b>{html.escape(st.failed_notebook or '')}</b>: {html.escape(st.error[:400])}"
        cells = [html.escape(run.name), f'<span class="{state}">{state}</span>',
                 *(html.escape(_cell(run.params.get(k))) for k in varying),
                 "" if not st or st.wall_s is None else f"{st.wall_s:.0f}", links, error]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    table = (
        "<table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr></thead><tbody>"
        + "".join(rows) + "</tbody></table>"
    )
    done_dirs = [batch_dir / name / RUN_SUBDIR for name, st in statuses.items()
                 if st is not None and (batch_dir / name / RUN_SUBDIR).exists()]
    sections, needs_plotly = comparison_sections(done_dirs, target=spec.target_accuracy)
    counts = {s: sum(1 for st in statuses.values() if (st.status if st else "pending") == s)
              for s in ("done", "failed", "running", "pending")}
    summary = " · ".join(f"{n} {s}" for s, n in counts.items() if n)
    page = _PAGE.format(
        title=html.escape(f"ropd-kit batch: {spec.name}"),
        plotly=_plotly_script() if needs_plotly else "",
        generated=_now(),
        summary=html.escape(summary),
        notebooks=html.escape(", ".join(spec.notebooks)),
        table=table,
        sections="\n".join(sections),
    )
    target = batch_dir / INDEX
    batch_dir.mkdir(parents=True, exist_ok=True)
    target.write_text(page)
    return target


def _plotly_script() -> str:
    from plotly.offline import get_plotlyjs

    return f'<script type="text/javascript">{get_plotlyjs()}</script>'


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }}
th {{ background: #f3f3f3; }}
.done {{ color: #1a7f37; }} .failed {{ color: #c62828; font-weight: bold; }} .running, .pending {{ color: #8a6d00; }}
.note {{ color: #555; font-style: italic; }}
</style>
{plotly}
</head><body>
<h1>{title}</h1>
<p>Generated {generated}. Runs: {summary}. Notebooks: {notebooks}.</p>
<h2>Runs</h2>
{table}
{sections}
</body></html>
"""


# ---------------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ropd_kit.batch", description=__doc__.split("\n")[0])
    parser.add_argument("spec", help="experiment spec (YAML), e.g. experiments/demo.yaml")
    parser.add_argument("--reports", default="reports", help="reports folder (default: reports)")
    parser.add_argument("--only", action="append", default=None, metavar="RUN", help="run only this run (repeatable)")
    parser.add_argument("--force", action="store_true", help="re-run runs that already finished")
    parser.add_argument("--execution-timeout", type=int, default=None, help="seconds per cell (default: none)")
    parser.add_argument("--no-shared-servers", action="store_true",
                        help="let each notebook start its own local servers instead of one set for the batch")
    args = parser.parse_args(argv)
    try:
        results = run_batch(args.spec, args.reports, only=args.only, force=args.force,
                            execution_timeout=args.execution_timeout, serve_local=not args.no_shared_servers)
    except BatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for st in results:
        state = "skipped (already done)" if st.skipped else st.status
        detail = f" in {st.failed_notebook}: {st.error}" if st.status == "failed" else ""
        print(f"{st.run}: {state}{detail}")
    spec = load_spec(args.spec)
    print(f"\nreport: {(Path(args.reports) / spec.name / INDEX).resolve()}")
    return 1 if any(st.status == "failed" for st in results) else 0


if __name__ == "__main__":
    sys.exit(main())
