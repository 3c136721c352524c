"""Task records, the input of every ROPD stage: load, validate, and give each task a stable id.

In: a JSONL file (one task per line: `id`, `prompt`, `answer`, `domain`) or a Hugging Face dataset (hub id, local
folder, or local json/jsonl/parquet/csv file). Out: a list of `Task`.

A task's id defaults to a content fingerprint of its prompt (`task_fingerprint`), so the same question gets the
same id in every file and every run; the teacher reference index is keyed by the same fingerprint. A malformed file
fails before any stage starts, with a `TaskError` naming file:line, the field and the offending value.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from pathlib import Path
from typing import Any, Iterable

from pydantic import BaseModel, ConfigDict

from ropd_kit import rundir
from ropd_kit.answers import last_boxed, normalize_number

DEFAULT_DOMAIN = "general"


class Task(BaseModel):
    """One question, with its ground-truth answer when the set has one (used by evaluation, never by ROPD)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    prompt: str
    answer: str | None = None
    domain: str = DEFAULT_DOMAIN


class TaskError(ValueError):
    """A task file or dataset row that cannot be used; the message says where, which field and what value."""

    def __init__(self, location: str, field: str | None, problem: str, value: Any = None, *, show_value: bool = True):
        self.location, self.field, self.value = location, field, value
        where = f"{location}: field {field!r}: " if field else f"{location}: "
        got = f", got {_show(value)}" if show_value else ""
        super().__init__(f"{where}{problem}{got}")


def _show(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def normalize_prompt(prompt: str) -> str:
    """What the fingerprint sees: NFC unicode, whitespace runs collapsed, ends stripped (case is kept)."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFC", prompt)).strip()


def task_fingerprint(prompt: str) -> str:
    """Stable 16-hex-digit id of a prompt's content; insensitive to whitespace layout only."""
    return hashlib.sha256(normalize_prompt(prompt).encode("utf-8")).hexdigest()[:16]


def _text_field(row: dict, field: str, location: str, *, required: bool) -> str | None:
    """A string field; ints are accepted for id/answer (JSON files often carry `"answer": 42`)."""
    if field not in row or row[field] is None:
        if required:
            raise TaskError(location, field, "missing (expected a non-empty string)", show_value=False)
        return None
    value = row[field]
    if field in ("id", "answer") and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value.strip():
        raise TaskError(location, field, "expected a non-empty string", value)
    return value


def task_from_record(
    row: Any, location: str, *, require_answers: bool = False, domain: str | None = None
) -> Task:
    """Validate one raw record (a JSONL line or a dataset row) into a Task; `location` goes into errors."""
    if not isinstance(row, dict):
        raise TaskError(location, None, "expected a JSON object", row)
    prompt = _text_field(row, "prompt", location, required=True)
    answer = _text_field(row, "answer", location, required=require_answers)
    task_domain = _text_field(row, "domain", location, required=False) or domain or DEFAULT_DOMAIN
    task_id = _text_field(row, "id", location, required=False) or task_fingerprint(prompt)
    return Task(id=task_id.strip(), prompt=prompt, answer=answer.strip() if answer else None, domain=task_domain)


def _check_unique(tasks: list[Task], locations: list[str]) -> None:
    first: dict[str, str] = {}
    for task, location in zip(tasks, locations):
        if task.id in first:
            raise TaskError(
                location, "id", f"duplicate id (first used at {first[task.id]}; a task id derived from the prompt "
                "repeats when the same prompt appears twice)", task.id,
            )
        first[task.id] = location


def load_tasks(path: str | Path, *, require_answers: bool = False, limit: int | None = None) -> list[Task]:
    """Read a JSONL task file; the whole file is validated before anything is returned.

    Fields other than id/prompt/answer/domain are ignored. A missing id becomes `task_fingerprint(prompt)`, a missing
    domain "general". `limit` keeps the first n tasks (after the whole file passed validation).
    """
    path = Path(path)
    if not path.exists():
        raise TaskError(str(path), None, "file not found", show_value=False)
    tasks: list[Task] = []
    locations: list[str] = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            location = f"{path}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                problem = f"not valid JSON ({exc.msg} at column {exc.colno})"
                raise TaskError(location, None, problem, line.strip()) from None
            tasks.append(task_from_record(row, location, require_answers=require_answers))
            locations.append(location)
    if not tasks:
        raise TaskError(str(path), None, "no tasks in file", show_value=False)
    _check_unique(tasks, locations)
    return tasks[:limit] if limit is not None else tasks


def write_tasks(path: str | Path, tasks: Iterable[Task]) -> int:
    """Write tasks as JSONL (atomic replace); returns how many were written."""
    return rundir.write_jsonl(path, (t.model_dump() for t in tasks))


# --- Hugging Face datasets -------------------------------------------------------------------------------------

_PROMPT_FIELDS = ("prompt", "question", "problem", "query", "input", "instruction")
_ANSWER_FIELDS = ("answer", "final_answer", "target", "solution", "output")
_ID_FIELDS = ("id", "unique_id", "task_id", "idx")
_LOCAL_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}


def reference_answer(value: Any) -> str | None:
    """The final answer inside a dataset's answer/solution text.

    GSM8K style "...#### 1,234" -> "1234"; MATH style "... \\boxed{\\frac{1}{2}}" -> "\\frac{1}{2}"; anything else is
    returned stripped (MATH-500's `answer` column is already final).
    """
    if value is None:
        return None
    text = str(value).strip()
    if "####" in text:
        final = text.rsplit("####", 1)[1].strip()
        return normalize_number(final) if re.fullmatch(r"-?[\d,]+(\.\d+)?", final) else final
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    return text or None


def _load_dataset(name_or_path: str | Path, split: str, subset: str | None):
    import datasets  # heavy import, only for users who load from the hub or local dataset files

    path = Path(name_or_path)
    if path.is_file():
        builder = _LOCAL_BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise TaskError(str(path), None, f"unknown file type (use one of {sorted(_LOCAL_BUILDERS)})", path.suffix)
        return datasets.load_dataset(builder, data_files={split: str(path)}, split=split)
    return datasets.load_dataset(str(name_or_path), subset, split=split)


def _pick(columns: list[str], wanted: str | None, candidates: tuple[str, ...], what: str, source: str) -> str | None:
    if wanted is not None:
        if wanted not in columns:
            raise TaskError(source, wanted, f"no such column for the {what} (columns: {columns})", show_value=False)
        return wanted
    return next((c for c in candidates if c in columns), None)


def load_hf_dataset(
    name_or_path: str | Path,
    split: str = "train",
    *,
    prompt_field: str | None = None,
    answer_field: str | None = None,
    domain: str | None = None,
    limit: int | None = None,
    subset: str | None = None,
) -> list[Task]:
    """Tasks from a Hugging Face dataset: a hub id (with its config name as `subset`, e.g.
    `load_hf_dataset("openai/gsm8k", "test", subset="main")`), a local dataset folder, or a local
    .jsonl/.json/.parquet/.csv file.

    Columns are detected when not named: prompt from question/problem/prompt/..., answer from answer/solution/...
    (GSM8K's "#### 42" and MATH's \\boxed{...} are reduced to the final answer). Ids come from an id/unique_id column
    when there is one, else from the prompt fingerprint. `domain` defaults to "math" when answers were found.
    """
    source = str(name_or_path)
    dataset = _load_dataset(name_or_path, split, subset)
    columns = list(dataset.column_names)
    prompt_col = _pick(columns, prompt_field, _PROMPT_FIELDS, "prompt", source)
    if prompt_col is None:
        raise TaskError(source, None, f"no prompt column; pass prompt_field= (columns: {columns})", show_value=False)
    answer_col = _pick(columns, answer_field, _ANSWER_FIELDS, "answer", source)
    id_col = next((c for c in _ID_FIELDS if c in columns), None)
    task_domain = domain or ("math" if answer_col else DEFAULT_DOMAIN)

    tasks: list[Task] = []
    locations: list[str] = []
    for index, row in enumerate(dataset):
        if limit is not None and len(tasks) >= limit:
            break
        location = f"{source}[{split}]:row {index}"
        record = {
            "prompt": row[prompt_col],
            "answer": reference_answer(row[answer_col]) if answer_col else None,
            "domain": task_domain,
        }
        if id_col is not None and row[id_col] is not None:
            record["id"] = str(row[id_col])
        tasks.append(task_from_record(record, location))
        locations.append(location)
    _check_unique(tasks, locations)
    return tasks
