"""The run directory: the JSONL files that stages hand to each other (one record per line, pandas-readable).

A run can be killed at any moment (SIGKILL, a notebook kernel restart), so appends are written as one `write` of a
whole line followed by fsync, and readers drop a torn last line instead of failing on it (`repair=True` also cuts it
off the file so that the next append starts on a clean line).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator

from pydantic import BaseModel

TASKS = "tasks.jsonl"
TEACHER_REFS = "teacher_refs.jsonl"
ROLLOUTS = "rollouts.jsonl"
RUBRICS = "rubrics.jsonl"
VERDICTS = "verdicts.jsonl"
TRAIN_LOG = "train_log.jsonl"
EVAL = "eval.jsonl"
JUDGE_RAW = "judge_raw.jsonl"  # raw Rubricator / Verifier output, kept for audits and the inspector
# A batch folder (reports/<batch>/<run>/) holds the run directory under RUN_SUBDIR and the run's status record.
RUN_SUBDIR = "run"
STATUS = "status.json"


class RecordError(ValueError):
    """A run-directory file that cannot be read; the message names file and line."""


def _as_dict(record: Any) -> dict:
    if isinstance(record, BaseModel):
        return record.model_dump(mode="json")
    return record


def _line(record: Any) -> bytes:
    return (json.dumps(_as_dict(record), ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def append_jsonl(path: str | Path, records: Iterable[Any]) -> int:
    """Append records, each as one whole line. Returns how many were written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = b"".join(_line(r) for r in records)
    if not payload:
        return 0
    _repair_tail(path)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, payload)
        os.fsync(fd)
    finally:
        os.close(fd)
    return payload.count(b"\n")


def write_jsonl(path: str | Path, records: Iterable[Any]) -> int:
    """Replace a file atomically (write a sibling, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    payload = b"".join(_line(r) for r in records)
    with open(tmp, "wb") as fh:
        fh.write(payload)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return payload.count(b"\n")


def _repair_tail(path: Path) -> bool:
    """Cut a torn (newline-less) last line left by a killed writer. Returns True if something was cut."""
    if not path.exists() or path.stat().st_size == 0:
        return False
    with open(path, "rb+") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) == b"\n":
            return False
        data = fh.seek(0) or fh.read()
        keep = data.rfind(b"\n") + 1
        fh.truncate(keep)
    return True


def iter_jsonl(path: str | Path, *, repair: bool = False) -> Iterator[dict]:
    """Yield records; a torn last line (no newline) is skipped, any other bad line raises with file:line."""
    path = Path(path)
    if not path.exists():
        return
    if repair:
        _repair_tail(path)
    with open(path, "rb") as fh:
        lines = fh.read().split(b"\n")
    last = len(lines) - 1
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            yield json.loads(raw)
        except json.JSONDecodeError as exc:
            if i == last:  # torn final line from an interrupted append
                return
            raise RecordError(f"{path}:{i + 1}: not valid JSON ({exc.msg})") from exc


def read_jsonl(path: str | Path, *, repair: bool = False) -> list[dict]:
    return list(iter_jsonl(path, repair=repair))


def read_frame(path: str | Path):
    """The records as a pandas DataFrame (empty frame when the file does not exist)."""
    import pandas as pd

    return pd.DataFrame(read_jsonl(path))
