"""Batch runs: a grid of parameters × the notebooks, executed headless with papermill into `reports/`.

In:  an experiment spec (YAML or a dict) —
         name: demo
         notebooks: [01_teacher_references, 02_rubric_induction, ...]   # default: all six, in order
         base: {n_tasks: 8, teacher_base_url: local, ...}              # parameters every run gets
         grid: {method: [ropd, lopd, rlvr]}                            # product -> runs ...
         runs: [{name: big, params: {n_rollouts: 8}}]                  # ... and/or named runs (× the grid),
         runs: [{name: lopd, params: {method: lopd}, notebooks: [04_grpo_training]}]  # a run's own notebooks
         target_accuracy: 0.5                                          # optional, for the index's efficiency table
Out: `reports/<name>/<run>/NN_*.ipynb` (executed) + `.html` each, the run's directory `reports/<name>/<run>/run`
     (passed to every notebook as `run_dir`), `reports/<name>/<run>/status.json`, and `reports/<name>/index.html`
     summarising all runs (a table, and comparison figures when runs have train/eval logs).

A run whose status says it finished with the same parameters is skipped (resumable); a run that fails is recorded
(the error and the notebook it failed in) and the next run goes on. While it runs, one progress line
(`progress.BatchProgress`) says which run and notebook it is in, the cell and the training steps done. Secrets never
become papermill parameters, since papermill copies parameter values into the output notebooks: a parameter whose name looks like a key holder
(api_key, token, secret, password) is refused unless it ends in `_env` (the NAME of an environment variable), and so
is any value equal to the value of such a variable.

CLI: `python -m ropd_kit.batch experiments/<name>.yaml [--reports reports] [--only RUN] [--force]
[--config configs/<run>.yaml] [--dry-run]` (or `ropd batch ...`).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from .spec import BatchError, BatchSpec, HEADLESS_ENV, INDEX, RunSpec, _known_parameters, kernel_name, load_spec, notebook_path
from ..config import ConfigError
from ..rundir import RUN_SUBDIR, STATUS
from ..redaction import check_secrets, redact_file, secret_values
from .progress import BatchProgress
from .report import write_index
from .status import NotebookStatus, RunStatus, _fingerprint, _finished, _now, _write_status, read_status


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


def _run_config(params: Mapping[str, Any]) -> Any:
    from ..config import RunConfig
    from ..notebook_tools.params import config_parameter_names

    names = set(config_parameter_names())
    return RunConfig.from_params(**{k: v for k, v in params.items() if k in names and k != "run_dir"})


def _served_params(config: Any, roles: Sequence[str]) -> dict[str, Any]:
    """Parameters that point the run's `local` endpoints of `roles` at servers started once for the whole batch.

    Without this every notebook kernel would load the models again (and training would start its own servers).
    Servers are shared by model and size, and stopped when the batch ends.
    """
    from ..notebook_tools.servers import resolve_endpoints

    resolved = resolve_endpoints(config, roles=roles)
    out: dict[str, Any] = {}
    for role in roles:
        if config.endpoint(role).is_local:
            served = resolved.endpoint(role)
            out[f"{role}_base_url"], out[f"{role}_model"] = served.base_url, served.model
            # The limits for a local server's queue (serve.local_client_limits): the notebooks see a plain URL.
            out[f"{role}_timeout_s"], out[f"{role}_max_concurrency"] = served.timeout_s, served.max_concurrency
    return out


# Which endpoint roles a notebook calls, where we know it is not all of them: 03 and 06 call none (they read the run
# directory, or load models in their kernel); 04 calls the judging side for ropd, judge and sft (teacher refs) and
# nothing for lopd and rlvr; 05 calls the judge only for the teacher-as-judge signal; 02 judges. Only 01 (and any
# notebook we do not know) samples from the student's server. Before each notebook the batch stops the servers it
# does not call and starts the ones it does, so that the models a notebook loads (lopd's student beside its white-box
# teacher, 05's teacher in fp32, ropd's student beside the judge) have the memory to themselves. A notebook that
# does call a model it was not given (05 grading open-ended rollouts) starts its own server: slower, never wrong.
JUDGE_SIDE = ("teacher", "rubricator", "verifier")
NO_ENDPOINT_NOTEBOOKS = frozenset({"03_verification_and_rewards", "06_efficiency"})
NO_JUDGE_METHODS = frozenset({"lopd", "rlvr"})


def served_roles(notebook: Path, params: Mapping[str, Any]) -> tuple[str, ...]:
    """The endpoint roles a notebook calls in a run with these parameters (all of them unless known otherwise)."""
    from ..notebook_tools.servers import ROLES

    stem = notebook.stem
    if stem in NO_ENDPOINT_NOTEBOOKS:
        return ()
    if stem == "04_grpo_training":
        if "method" not in params:
            return ROLES
        return () if params["method"] in NO_JUDGE_METHODS else JUDGE_SIDE
    if stem == "05_signal_alignment_auc":
        return JUDGE_SIDE if "signals" not in params or "judge" in params["signals"] else ()
    if stem == "02_rubric_induction":
        return JUDGE_SIDE
    return ROLES


def needs_servers(notebooks: list[Path], params: Mapping[str, Any]) -> bool:
    """Whether a run of these notebooks with these parameters calls an endpoint (and so a local server)."""
    return any(served_roles(nb, params) for nb in notebooks)


def _served_for(notebook: Path, run_params: Mapping[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """A notebook's parameters, pointed at the batch's servers of the roles it calls (`served_roles`): those are
    started if they are not running, and the others are stopped first."""
    from ..notebook_tools.servers import stop_servers

    roles = served_roles(notebook, run_params)
    if not roles:
        stop_servers()
        return params
    config = _run_config(run_params)
    stop_servers(keep=config, roles=roles)
    return {**params, **_served_params(config, roles)}


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


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


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
    progress: BatchProgress,
) -> RunStatus:
    import papermill

    from .report import collapse_progress_file, export_html

    if folder.exists():
        shutil.rmtree(folder)  # an unfinished or changed run starts clean: its records come from one execution
    run_dir = folder / RUN_SUBDIR
    run_dir.mkdir(parents=True)
    params = {**run.params, "run_dir": str(run_dir)}
    status = RunStatus(run=run.name, status="running", params=params, fingerprint=fingerprint,
                       run_dir=str(run_dir), started=_now())
    _write_status(folder / STATUS, status, secrets)
    t_run = time.perf_counter()
    for nb in notebooks:
        output = folder / nb.name
        progress.notebook_started(nb.stem, output)
        t0 = time.perf_counter()
        try:
            nb_params = _served_for(nb, run.params, params) if serve_local else params
        except Exception as exc:  # noqa: BLE001 - a model that cannot be served fails this run, not the batch
            progress.notebook_done()
            status.status, status.failed_notebook = "failed", f"{nb.stem} (local servers)"
            status.error, status.traceback = _error_text(exc)
            break
        error: BaseException | None = None
        try:
            papermill.execute_notebook(
                str(nb), str(output), parameters=nb_params, kernel_name=kernel, progress_bar=False,
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
                collapse_progress_file(output)  # after redaction: a key in a dropped frame is still counted
                html_path = export_html(output)
                redacted += redact_file(html_path, secrets)
            except Exception as exc:  # noqa: BLE001 - a report that cannot be rendered must not hide the run's result
                error = error or exc
        progress.notebook_done()
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
    config: str | Path | None = None,
    dry_run: bool = False,
) -> list[RunStatus]:
    """Execute every run of the spec (notebooks in order) and write `reports/<name>/index.html`.

    Finished runs with unchanged parameters are skipped unless `force`; `only` limits the batch to some run names.
    With `serve_local`, endpoints whose base_url is "local" are served once for the whole batch (llama-server, one
    per model) and the notebooks get their URLs; otherwise each notebook starts its own. Before a notebook that calls
    no endpoint (`needs_servers`) they are stopped, and started again for the next one that does.
    Returns one RunStatus per run of the spec that was executed or skipped (`skipped=True`), in spec order.
    Raises BatchError (before anything runs) for a bad spec, an unknown parameter or a secret in the parameters.
    `config`: a run config file every run starts from, in place of the spec's own `config` (batch.spec).
    `dry_run`: check all that, print each run's plan (plan.run_plan) and return [] without running anything.
    """
    from ..notebook_tools.params import PROJECT_DIR_ENV

    spec_dir = Path(spec_or_path).resolve().parent if isinstance(spec_or_path, (str, Path)) else None
    spec = load_spec(spec_or_path)
    if config is not None:
        spec = spec.with_config(config)
    runs = spec.expand()
    paths = {n: notebook_path(n, spec_dir) for n in dict.fromkeys(
        [*spec.notebooks, *(n for r in runs for n in r.notebooks or [])])}
    if not paths:
        raise BatchError(f"batch {spec.name!r}: no notebooks to run")

    def run_notebooks(run: RunSpec) -> list[Path]:
        return [paths[n] for n in (run.notebooks or spec.notebooks)]

    names = [r.name for r in runs]
    wanted = [only] if isinstance(only, str) else list(only or [])
    unknown_runs = [n for n in wanted if n not in names]
    if unknown_runs:
        raise BatchError(f"batch {spec.name!r}: no run named {unknown_runs[0]!r} (runs: {', '.join(names)})")

    known = _known_parameters(list(paths.values()))  # the base goes to every run: any notebook may take a name
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
    if dry_run:
        print(_dry_run_text(spec, [r for r in runs if not wanted or r.name in wanted], run_notebooks, reports_dir))
        return []

    batch_dir = Path(reports_dir) / spec.name
    batch_dir.mkdir(parents=True, exist_ok=True)
    kernel = kernel or kernel_name()
    todo = [r for r in runs if not wanted or r.name in wanted]
    plan = []  # (run, its notebooks, fingerprint, the finished status to keep or None)
    for run in todo:
        notebooks = run_notebooks(run)
        fingerprint = _fingerprint(run.params, notebooks)
        previous = read_status(batch_dir / run.name)
        done = previous if not force and _finished(previous, fingerprint, batch_dir / run.name) else None
        plan.append((run, notebooks, fingerprint, done))
    results: list[RunStatus] = []
    quiet = _QuietUnknownParameters()
    logging.getLogger("papermill").addFilter(quiet)
    to_execute = [item for item in plan if item[3] is None]
    bar = BatchProgress(spec.name, n_runs=len(to_execute), n_notebooks=sum(len(item[1]) for item in to_execute),
                        enabled=progress)
    try:
        # The kernels take relative paths (a spec's tasks_path, the reports folder) from where the batch runs.
        with _env(**{HEADLESS_ENV: "1", PROJECT_DIR_ENV: os.getcwd()}):
            for run, notebooks, fingerprint, done in plan:
                folder = batch_dir / run.name
                if done is not None:
                    results.append(done.model_copy(update={"skipped": True}))
                    continue
                bar.run_started(run.name, folder / RUN_SUBDIR, run.params.get("max_steps"))
                secrets = secret_values(run.params)
                results.append(
                    _execute_run(run, notebooks, folder, fingerprint, secrets, kernel=kernel,
                                 start_timeout=start_timeout, execution_timeout=execution_timeout,
                                 serve_local=serve_local, progress=bar)
                )
    finally:
        bar.close()
        logging.getLogger("papermill").removeFilter(quiet)
        if serve_local:
            from ..notebook_tools.servers import stop_servers

            stop_servers()
        write_index(batch_dir, spec, runs)
    return results


def _dry_run_text(spec: BatchSpec, runs: list[RunSpec], notebooks_of: Any, reports_dir: str | Path) -> str:
    """What a batch would run: its runs and notebooks, and each run's training plan, from the checked spec."""
    from ..config import RunConfig
    from ..notebook_tools.params import config_parameter_names
    from ..plan import machine, run_plan

    names = set(config_parameter_names())
    box = machine()
    lines = [f"batch {spec.name}: {len(runs)} run(s) -> {Path(reports_dir) / spec.name / INDEX}"
             + (f"; every run starts from {spec.config}" if spec.config else ""), f"kernel: {kernel_name()}"]
    for run in runs:
        run_dir = Path(reports_dir) / spec.name / run.name / RUN_SUBDIR
        config = RunConfig.from_params(**{k: v for k, v in run.params.items() if k in names}, run_dir=str(run_dir))
        notebooks = [nb.stem for nb in notebooks_of(run)]
        lines += ["", f"run {run.name}: {' -> '.join(notebooks)}"]
        samples = any(nb[:2] in ("01", "02", "03") for nb in notebooks)
        lines.append(run_plan(config, source=f"run {run.name}", box=box, sampler=samples))
    return "\n".join(lines)


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
    parser.add_argument("--config", metavar="FILE", help="a run config file (configs/*.yaml) every run starts from, "
                        "under the spec's base (in place of the spec's own `config`)")
    parser.add_argument("--dry-run", action="store_true", help="check the spec, print each run's plan and exit: "
                        "nothing runs, no model is loaded, no endpoint called")
    args = parser.parse_args(argv)
    try:
        results = run_batch(args.spec, args.reports, only=args.only, force=args.force,
                            execution_timeout=args.execution_timeout, serve_local=not args.no_shared_servers,
                            config=args.config, dry_run=args.dry_run)
    except (BatchError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        return 0
    for st in results:
        state = "skipped (already done)" if st.skipped else st.status
        detail = f" in {st.failed_notebook}: {st.error}" if st.status == "failed" else ""
        print(f"{st.run}: {state}{detail}")
    spec = load_spec(args.spec)
    print(f"\nreport: {(Path(args.reports) / spec.name / INDEX).resolve()}")
    return 1 if any(st.status == "failed" for st in results) else 0


if __name__ == "__main__":
    sys.exit(main())
