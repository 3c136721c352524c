"""A notebook's parameters cell → one RunConfig: the flat parameters (papermill's injected ones included),
merged with what earlier notebooks of the same run directory were given, secrets refused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from .. import rundir
from ..config import PARAMETER_ALIASES, EndpointConfig, RunConfig, canonical_params
from .servers import ROLES

if TYPE_CHECKING:  # heavy imports stay inside the functions that need them
    pass


PARAMS_FILE = "notebook_params.json"  # the flat parameters as given (local endpoints unresolved), merged per notebook
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
    `run_dir` to carry on. Refuses parameters that would write a secret (see redaction.check_secrets).
    """
    from ..redaction import check_secrets

    check_secrets(params)
    run_dir = Path(params.get("run_dir") or RunConfig.model_fields["run_dir"].default)
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
    merged = {**canonical_params(saved), **given, "run_dir": str(run_dir)}
    config = RunConfig.from_params(**merged)
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
