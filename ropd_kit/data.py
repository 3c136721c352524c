"""Task records, the input of every ROPD stage: load, validate, and give each task a stable id.

In: a JSONL file in the kit's own shape, one task per line (`id`, `prompt`, `answer`, `domain`, and optionally
`family`, `messages`, `choices`, `rubric`). Out: a list of `Task`. Datasets in other shapes (GSM8K, MATH, multiple
choice, HealthBench-style conversations with rubrics; hub ids, parquet/csv files, saved folders) become tasks
through `ropd_kit.sources.load_task_source`, which hands files in this shape back to `load_tasks`.

A task's id defaults to a content fingerprint of its prompt (`task_fingerprint`), so the same question gets the
same id in every file and every run; the teacher reference index is keyed by the same fingerprint. A malformed file
fails before any stage starts, with a `TaskError` naming file:line, the field and the offending value.

The task families (`Task.family`) and what each record carries:
- "arithmetic": integer answers checked exactly (the shipped `arith_*.jsonl`, domain "arith").
- "math": a final answer checked by math-verify equivalence (fractions, LaTeX, decimals).
- "multiple_choice": `choices` (option texts, shown in `prompt` as "A. ...", "B. ..."), `answer` the right letter.
- "open_ended": no single answer; optionally a reference `rubric` (HealthBench's criterion/points/tags items).
A task given as a conversation (`messages`, ending with a user turn) keeps `prompt` as the text rendering of that
conversation (`render_messages`), so that two conversations sharing a last question still get different ids.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from pathlib import Path
from typing import Any, Iterable, Literal, get_args

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, field_validator, model_validator

from ropd_kit import rundir

DEFAULT_DOMAIN = "general"

Family = Literal["arithmetic", "math", "multiple_choice", "open_ended"]
FAMILIES: tuple[str, ...] = get_args(Family)
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
TASK_FIELDS = ("id", "prompt", "answer", "domain", "family", "messages", "choices", "rubric")


class TaskError(ValueError):
    """A task file or dataset row that cannot be used; the message says where, which field and what value."""

    def __init__(self, location: str, field: str | None, problem: str, value: Any = None, *, show_value: bool = True):
        self.location, self.field, self.value = location, field, value
        self.problem, self.show_value = problem, show_value
        where = f"{location}: field {field!r}: " if field else f"{location}: "
        got = f", got {_show(value)}" if show_value else ""
        super().__init__(f"{where}{problem}{got}")


class _FieldProblem(ValueError):
    """Raised inside Task validation so that the loader can name the field and value in its TaskError."""

    def __init__(self, field: str, problem: str, value: Any):
        self.field, self.problem, self.value = field, problem, value
        super().__init__(f"{field}: {problem}")


def _show(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Message(BaseModel):
    """One chat turn of a multi-turn prompt."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["system", "user", "assistant"]
    content: str

    @field_validator("content")
    @classmethod
    def _non_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("expected a non-empty string")
        return value


class RubricItem(BaseModel):
    """One criterion of a task's *reference* rubric (HealthBench's RubricItem), written with the data set.

    Not to be confused with `rubrics.Criterion`, which the Rubricator induces per group. `points` is a nonzero
    integer; a negative value marks a pitfall (points lost when the answer does it).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    criterion: str
    points: int
    tags: tuple[str, ...] = ()

    @field_validator("criterion")
    @classmethod
    def _criterion_text(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("expected a non-empty string")
        return value

    @field_validator("points", mode="before")
    @classmethod
    def _integer_points(cls, value: Any) -> int:
        # Parquet and pandas turn integer columns with gaps into floats (5.0): take those, refuse 2.5, True, "5".
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value == 0:
            raise ValueError("expected a nonzero integer")
        return value


def render_messages(messages: Iterable[Message | dict]) -> str:
    """The text a conversation is known by (its `prompt`, hence its id).

    A conversation of one user turn is that turn's text, so it gets the same id as the plain prompt; a longer one is
    every turn as "Role: content", blank-line separated.
    """
    turns = [m if isinstance(m, Message) else Message.model_validate(m) for m in messages]
    if len(turns) == 1 and turns[0].role == "user":
        return turns[0].content
    return "\n\n".join(f"{m.role.capitalize()}: {m.content.strip()}" for m in turns)


def render_choices(question: str, choices: Iterable[str]) -> str:
    """A multiple-choice prompt: the question, a blank line, then one "A. option" line per option."""
    lines = [f"{letter}. {text.strip()}" for letter, text in zip(LETTERS, choices)]
    return f"{question.strip()}\n\n" + "\n".join(lines)


def default_family(
    *, domain: str | None = None, answer: str | None = None, choices: Any = None, rubric: Any = None
) -> str:
    """The family of a record that does not name one.

    In order: options given -> "multiple_choice"; domain "arith" (the shipped arithmetic sets) -> "arithmetic"; a
    reference rubric -> "open_ended"; a ground-truth answer -> "math" (math-verify also settles integers); otherwise
    "open_ended". So every file written before `family` existed keeps its meaning.
    """
    if choices is not None:
        return "multiple_choice"
    if domain == "arith":
        return "arithmetic"
    if rubric is not None:
        return "open_ended"
    if answer is not None:
        return "math"
    return "open_ended"


def _option_shown(prompt: str, letter: str, text: str) -> bool:
    shown = normalize_prompt(prompt)
    return any(normalize_prompt(form) in shown for form in (f"{letter}. {text}", f"{letter}) {text}"))


class Task(BaseModel):
    """One question, with its ground-truth answer when the set has one (used by evaluation, never by ROPD).

    Defaults: `answer` None, `domain` "general", `family` from `default_family`, `messages`/`choices`/`rubric` None.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    prompt: str
    answer: str | None = None
    domain: str = DEFAULT_DOMAIN
    family: Family  # filled in by `_derive_family` when absent
    messages: tuple[Message, ...] | None = None
    choices: tuple[str, ...] | None = None
    rubric: tuple[RubricItem, ...] | None = None

    @model_validator(mode="before")
    @classmethod
    def _derive_family(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("family") is None:
            data = dict(data)
            data["family"] = default_family(domain=data.get("domain", DEFAULT_DOMAIN), answer=data.get("answer"),
                                            choices=data.get("choices"), rubric=data.get("rubric"))
        return data

    @field_validator("prompt")
    @classmethod
    def _prompt_text(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("expected a non-empty string")
        return value

    @field_validator("messages")
    @classmethod
    def _conversation(cls, value: tuple[Message, ...] | None) -> tuple[Message, ...] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("expected at least one message")
        if value[-1].role != "user":
            raise ValueError(f"the last message must be a user turn (the model answers it), got {value[-1].role!r}")
        return value

    @field_validator("choices")
    @classmethod
    def _options(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        if not 2 <= len(value) <= len(LETTERS):
            raise ValueError(f"expected 2 to {len(LETTERS)} options, got {len(value)}")
        seen: dict[str, int] = {}
        for index, text in enumerate(value):
            if not text.strip():
                raise ValueError(f"option {LETTERS[index]} is empty")
            key = normalize_prompt(text)
            if key in seen:
                raise ValueError(f"options {LETTERS[seen[key]]} and {LETTERS[index]} are the same text {text!r}")
            seen[key] = index
        return value

    @field_validator("rubric")
    @classmethod
    def _reference_rubric(cls, value: tuple[RubricItem, ...] | None) -> tuple[RubricItem, ...] | None:
        if value is None:
            return None
        if not any(item.points > 0 for item in value):
            raise ValueError("a reference rubric needs at least one criterion with positive points")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "Task":
        if self.choices is not None and self.family != "multiple_choice":
            raise _FieldProblem("family", "a task with choices is a 'multiple_choice' task", self.family)
        if self.family == "multiple_choice":
            if self.choices is None:
                raise _FieldProblem("choices", "missing (a multiple-choice task needs its options)", None)
            letters = LETTERS[: len(self.choices)]
            if self.answer is not None and self.answer not in letters:
                raise _FieldProblem("answer", f"expected the right option's letter, one of {', '.join(letters)}",
                                    self.answer)
            for letter, text in zip(letters, self.choices):
                if not _option_shown(self.prompt, letter, text):
                    raise _FieldProblem("prompt", f"does not show option {letter} as '{letter}. {_show(text, 40)}' "
                                        "(render it with data.render_choices)", self.prompt)
        if self.messages is not None and normalize_prompt(self.prompt) != normalize_prompt(
                render_messages(self.messages)):
            raise _FieldProblem("prompt", "must be the rendering of `messages` (data.render_messages); leave it out "
                                "and it is filled in", self.prompt)
        return self

    def to_record(self) -> dict:
        """The JSONL record: id, prompt, answer, domain always; the other fields only where they say something
        (family when it is not `default_family` of the rest), so that arithmetic files keep their old bytes."""
        record: dict[str, Any] = {"id": self.id, "prompt": self.prompt, "answer": self.answer, "domain": self.domain}
        if self.family != default_family(domain=self.domain, answer=self.answer, choices=self.choices,
                                         rubric=self.rubric):
            record["family"] = self.family
        if self.messages is not None:
            record["messages"] = [m.model_dump() for m in self.messages]
        if self.choices is not None:
            record["choices"] = list(self.choices)
        if self.rubric is not None:
            record["rubric"] = [{"criterion": r.criterion, "points": r.points, "tags": list(r.tags)}
                                for r in self.rubric]
        return record


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


def _field_path(loc: tuple) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _task_error(exc: ValidationError, location: str, prefix: tuple = ()) -> TaskError:
    """The first problem pydantic found, as a one-line TaskError naming the field path and the value."""
    error = exc.errors()[0]
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, _FieldProblem):
        return TaskError(location, cause.field, cause.problem, cause.value)
    loc = prefix + tuple(part for part in error["loc"] if part not in ("function-after", "function-before"))
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "missing":
        return TaskError(location, _field_path(loc) or None, "missing", show_value=False)
    return TaskError(location, _field_path(loc) or None, message, error.get("input"))


_MESSAGES = TypeAdapter(tuple[Message, ...])


def task_from_record(
    row: Any, location: str, *, require_answers: bool = False, domain: str | None = None
) -> Task:
    """Validate one raw record (a JSONL line or a dataset row in our field names) into a Task.

    `location` goes into errors. A record with `messages` and no `prompt` gets the conversation's rendering as its
    prompt. Fields other than `TASK_FIELDS` are ignored.
    """
    if not isinstance(row, dict):
        raise TaskError(location, None, "expected a JSON object", row)
    if row.get("prompt") is None and row.get("messages") is not None:
        try:
            messages = _MESSAGES.validate_python(row["messages"])
        except ValidationError as exc:
            raise _task_error(exc, location, ("messages",)) from None
        if not messages:
            raise TaskError(location, "messages", "expected at least one message", row["messages"])
        row = {**row, "prompt": render_messages(messages)}
    prompt = _text_field(row, "prompt", location, required=True)
    answer = _text_field(row, "answer", location, required=require_answers)
    task_domain = _text_field(row, "domain", location, required=False) or domain or DEFAULT_DOMAIN
    task_id = _text_field(row, "id", location, required=False) or task_fingerprint(prompt)
    fields = {name: row[name] for name in ("family", "messages", "choices", "rubric") if row.get(name) is not None}
    try:
        return Task(id=task_id.strip(), prompt=prompt, answer=answer.strip() if answer else None, domain=task_domain,
                    **fields)
    except ValidationError as exc:
        raise _task_error(exc, location) from None


def check_unique(tasks: list[Task], locations: list[str]) -> None:
    """Refuse two tasks with one id, naming both places."""
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

    Fields other than `TASK_FIELDS` are ignored. A missing id becomes `task_fingerprint(prompt)`, a missing domain
    "general", a missing family `default_family(...)`. `limit` keeps the first n tasks (after the whole file passed
    validation). Other shapes of data, hub ids and seeded samples: `ropd_kit.sources.load_task_source`.
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
    check_unique(tasks, locations)
    return tasks[:limit] if limit is not None else tasks


def write_tasks(path: str | Path, tasks: Iterable[Task]) -> int:
    """Write tasks as JSONL (atomic replace), one `Task.to_record()` per line; returns how many were written."""
    return rundir.write_jsonl(path, (t.to_record() for t in tasks))
