"""A batch run's status record (`status.json` beside its notebooks): which notebooks finished with which
parameters, what failed and where. It makes a batch resumable and feeds the index page.
"""

from __future__ import annotations

import hashlib
import os
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, Mapping

from pydantic import BaseModel, Field, ValidationError

from ..redaction import _scrub
from ..rundir import STATUS


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
