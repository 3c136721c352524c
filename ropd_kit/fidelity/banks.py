"""Labelled banks: answers with a known label per prompt, in the shapes people keep them, for judging a judge.

A labelled bank is what a user brings before trusting a judge on their own tasks: prompts, several answers to each,
and which answers are better. The fidelity study judges every prompt's answers as one group, exactly as training
judges a group of rollouts, and measures whether the reward orders them as the labels do. This module only reads
and validates the bank; the study (`fidelity.study`) does the judging.

Shapes, detected per row (a file may mix them; rows with the same prompt are one group):

- ours (JSONL, one prompt per line): a task's fields (`id`, `prompt` or `messages`, `domain`, an optional reference
  `rubric` in HealthBench's shape `[{"criterion", "points", "tags"}]`, optional `answer`/`choices`) and
  `"answers": [{"text": ..., "label": 1 | 0 | <number>, "kind": "good" | "harmful" | ...}]` (`kind` optional).
- pairs: `{"prompt", "chosen", "rejected"}` — chosen labelled 1, rejected 0. The prompt is a string or a list of
  chat messages; an answer is a string or a chat (its last assistant turn is the answer; with no `prompt`, the
  turns before it are the prompt, as in conversational preference sets).
- sets: `{"prompt", "responses" | "completions": [...]}` with one of `"scores" | "ratings" | "labels": [numbers]`
  (one per answer), `"preference": i` (the 0-based index of the preferred answer: it gets 1, the others 0) or
  `"ranking": [i, j, ...]` (indices best first: graded labels n-1 ... 0); optional `"kinds": [...]`.

Labels are numbers: 1/0 (or true/false) make a binary bank; any other value makes it graded, and then only the
order of labels inside a prompt matters. Files: `.jsonl` is read line by line (errors name the line); `.json`,
`.csv`, `.parquet`, a `save_to_disk` folder or a hub id go through `sources.read_dataset` (errors name the row; a
CSV cell holding a list is read as JSON). Every error names the file and line or row, the field and the value.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..data import TASK_FIELDS, Task, TaskError, task_from_record

SHAPES = ("ours", "pairs", "sets")
ANSWER_LISTS = ("responses", "completions")
SCORE_LISTS = ("scores", "ratings", "labels")
_ID_FIELDS = ("id", "prompt_id", "task_id")


class BankError(TaskError):
    """A labelled bank row that cannot be used; the message names the file and line (or row), the field, the value."""


@dataclass
class LabelledBank:
    """A validated bank: the prompts as tasks, and their answers as plain records.

    `answers`: one record per answer — task_id, answer_idx (0-based within the prompt, in the order read), text,
    label (float), kind (str or None), origin (the file and line it came from). `shapes`: rows read per shape.
    """

    source: str
    tasks: list[Task]
    answers: list[dict[str, Any]]
    shapes: dict[str, int] = field(default_factory=dict)

    @property
    def graded(self) -> bool:
        """Whether any label is other than 0 or 1 (then only the order of labels within a prompt counts)."""
        return any(a["label"] not in (0.0, 1.0) for a in self.answers)

    def answers_of(self, task_id: str) -> list[dict[str, Any]]:
        return [a for a in self.answers if a["task_id"] == task_id]

    def kinds(self) -> dict[str, int]:
        """Answers per kind (answers without a kind are not counted)."""
        out: dict[str, int] = {}
        for a in self.answers:
            if a.get("kind"):
                out[a["kind"]] = out.get(a["kind"], 0) + 1
        return out


# ---------------------------------------------------------------------------------------------------------------
# Reading rows


def _rows_jsonl(path: Path) -> Iterator[tuple[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            location = f"{path}:{number}"
            try:
                yield location, json.loads(line)
            except json.JSONDecodeError as exc:
                raise BankError(location, None, f"not valid JSON ({exc.msg} at column {exc.colno})",
                                line.strip()) from None


def _plain(value: Any) -> Any:
    """A dataset cell as plain Python: numpy arrays (parquet lists) as lists, numpy scalars as numbers."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _rows_dataset(source: str, split: str, subset: str | None) -> Iterator[tuple[str, Any]]:
    from ..sources import read_dataset

    dataset = read_dataset(source, split=split, subset=subset)
    for index, row in enumerate(dataset):
        yield f"{source}[{split}]:row {index}", {k: _plain(v) for k, v in row.items()}


def bank_rows(source: str | Path, *, split: str = "train", subset: str | None = None) -> Iterator[tuple[str, Any]]:
    """(location, raw row) of each row of a bank file or data set, in order."""
    path = Path(source).expanduser()
    if path.suffix.lower() == ".jsonl":
        if not path.is_file():
            raise BankError(str(path), None, "file not found", show_value=False)
        yield from _rows_jsonl(path)
    else:
        yield from _rows_dataset(str(source), split, subset)


# ---------------------------------------------------------------------------------------------------------------
# One row -> a task record and its answers


def detect_shape(row: dict) -> str | None:
    """Which of `SHAPES` a row fits, or None."""
    if "answers" in row:
        return "ours"
    if "chosen" in row and "rejected" in row:
        return "pairs"
    if any(name in row for name in ANSWER_LISTS):
        return "sets"
    return None


def _no_shape(row: dict, location: str) -> BankError:
    return BankError(
        location, None,
        f"no known bank shape in fields {sorted(row)}: give 'answers' [{{text, label, kind}}] (ours), 'chosen' and "
        f"'rejected' (pairs), or 'responses'/'completions' with 'scores'/'ratings'/'labels', 'preference' or "
        f"'ranking' (sets)", show_value=False)


def _listed(row: dict, name: str, location: str) -> list:
    """A list-valued field; a CSV cell holding a JSON list is read as one."""
    value = row.get(name)
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise BankError(location, name, f"expected a list (this text is not valid JSON: {exc.msg})",
                            value) from None
    if not isinstance(value, (list, tuple)) or not value:
        raise BankError(location, name, "expected a non-empty list", value)
    return list(value)


def _is_chat(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and bool(value) and all(
        isinstance(m, dict) and "role" in m and "content" in m for m in value)


def _as_chat(value: Any) -> Any:
    """A CSV cell holding a JSON chat as the chat; anything else unchanged."""
    if isinstance(value, str) and value.lstrip().startswith("[{"):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return value
        return parsed if _is_chat(parsed) else value
    return value


def answer_text(value: Any, location: str, name: str) -> str:
    """An answer's text: a string, a chat whose last turn is the assistant's, or a {"content": ...} message."""
    value = _as_chat(value)
    if _is_chat(value):
        last = value[-1]
        if last.get("role") != "assistant":
            raise BankError(location, name, "a chat answer must end with the assistant's turn",
                            last.get("role"))
        value = last.get("content")
    elif isinstance(value, dict) and "content" in value:
        value = value["content"]
    if not isinstance(value, str) or not value.strip():
        raise BankError(location, name, "expected a non-empty answer text", value)
    return value


def label_value(value: Any, location: str, name: str) -> float:
    """A label as a float: a finite number, or true/false (1/0)."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise BankError(location, name, "expected a number (1/0, or a graded score)", value) from None
    if not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise BankError(location, name, "expected a finite number (1/0, or a graded score)", value)
    return float(value)


def _kind(value: Any, location: str, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise BankError(location, name, "expected a non-empty string naming the answer's kind", value)
    return value.strip()


def _task_record(row: dict, location: str, chat_prefix: list | None = None) -> dict:
    """The task fields of a row (ours and every other shape), the prompt as a string or a chat."""
    record = {k: _plain(row[k]) for k in TASK_FIELDS if row.get(k) is not None}
    for name in _ID_FIELDS[1:]:
        if "id" not in record and row.get(name) is not None:
            record["id"] = row[name]
    if isinstance(record.get("id"), int) and not isinstance(record.get("id"), bool):
        record["id"] = str(record["id"])
    prompt = _as_chat(record.get("prompt"))
    if _is_chat(prompt):
        record["messages"] = [{"role": m["role"], "content": m["content"]} for m in prompt]
        del record["prompt"]
    elif "prompt" not in record and "messages" not in record and chat_prefix:
        record["messages"] = chat_prefix
    if isinstance(record.get("rubric"), str):
        record["rubric"] = _listed(record, "rubric", location)
    return record


def _ours(row: dict, location: str) -> tuple[dict, list[dict]]:
    items = _listed(row, "answers", location)
    answers = []
    for i, item in enumerate(items):
        name = f"answers[{i}]"
        if isinstance(item, str):
            raise BankError(location, name, 'expected an object {"text": ..., "label": ..., "kind": ...}', item)
        if not isinstance(item, dict):
            raise BankError(location, name, "expected an object with text and label", item)
        unknown = sorted(set(item) - {"text", "label", "kind"})
        if unknown:
            raise BankError(location, f"{name}.{unknown[0]}", "unknown field (an answer has text, label, kind)",
                            item[unknown[0]])
        if "label" not in item:
            raise BankError(location, f"{name}.label", "missing (1/0, or a graded score)", show_value=False)
        answers.append({"text": answer_text(item.get("text"), location, f"{name}.text"),
                        "label": label_value(item["label"], location, f"{name}.label"),
                        "kind": _kind(item.get("kind"), location, f"{name}.kind")})
    return _task_record(row, location), answers


def _pairs(row: dict, location: str) -> tuple[dict, list[dict]]:
    chosen, rejected = _as_chat(row.get("chosen")), _as_chat(row.get("rejected"))
    prefix = None
    if row.get("prompt") is None and row.get("messages") is None:
        if not _is_chat(chosen):
            raise BankError(location, "prompt", "missing (a pair needs a prompt, or chosen/rejected chats whose "
                            "turns before the last are the prompt)", show_value=False)
        prefix = [{"role": m["role"], "content": m["content"]} for m in chosen[:-1]]
        other = rejected[:-1] if _is_chat(rejected) else None
        if other is None or [{"role": m["role"], "content": m["content"]} for m in other] != prefix:
            raise BankError(location, "rejected", "the chosen and rejected chats differ before their last turn, so "
                            "they do not answer one prompt", show_value=False)
        if not prefix:
            raise BankError(location, "chosen", "a chat of one turn has no prompt before the answer", chosen)
    answers = [{"text": answer_text(chosen, location, "chosen"), "label": 1.0, "kind": None},
               {"text": answer_text(rejected, location, "rejected"), "label": 0.0, "kind": None}]
    return _task_record(row, location, prefix), answers


def _sets(row: dict, location: str) -> tuple[dict, list[dict]]:
    name = next(n for n in ANSWER_LISTS if n in row)
    texts = [answer_text(v, location, f"{name}[{i}]") for i, v in enumerate(_listed(row, name, location))]
    n = len(texts)
    score_name = next((s for s in SCORE_LISTS if row.get(s) is not None), None)
    if score_name is not None:
        values = _listed(row, score_name, location)
        if len(values) != n:
            raise BankError(location, score_name, f"expected one per answer ({n} in {name!r}), got {len(values)}",
                            values)
        labels = [label_value(v, location, f"{score_name}[{i}]") for i, v in enumerate(values)]
    elif row.get("preference") is not None:
        best = row["preference"]
        if isinstance(best, bool) or not isinstance(best, int) or not 0 <= best < n:
            raise BankError(location, "preference", f"expected the preferred answer's 0-based index (0 to {n - 1})",
                            best)
        labels = [1.0 if i == best else 0.0 for i in range(n)]
    elif row.get("ranking") is not None:
        order = _listed(row, "ranking", location)
        if sorted(order) != list(range(n)) or any(isinstance(i, bool) for i in order):
            raise BankError(location, "ranking", f"expected each answer's 0-based index once, best first "
                            f"(a permutation of 0..{n - 1})", order)
        labels = [0.0] * n
        for place, i in enumerate(order):
            labels[i] = float(n - 1 - place)
    else:
        raise BankError(location, None, f"no labels for {name!r}: give 'scores', 'ratings' or 'labels' (one number "
                        "per answer), 'preference' (an index) or 'ranking' (indices, best first)", show_value=False)
    kinds: list[str | None] = [None] * n
    if row.get("kinds") is not None:
        given = _listed(row, "kinds", location)
        if len(given) != n:
            raise BankError(location, "kinds", f"expected one per answer ({n}), got {len(given)}", given)
        kinds = [_kind(k, location, f"kinds[{i}]") for i, k in enumerate(given)]
    answers = [{"text": t, "label": y, "kind": k} for t, y, k in zip(texts, labels, kinds)]
    return _task_record(row, location), answers


_READERS = {"ours": _ours, "pairs": _pairs, "sets": _sets}


def read_row(row: Any, location: str) -> tuple[str, Task, list[dict]]:
    """One raw row -> (its shape, its prompt as a Task, its answers: text, label, kind)."""
    if not isinstance(row, dict):
        raise BankError(location, None, "expected a JSON object", row)
    shape = detect_shape(row)
    if shape is None:
        raise _no_shape(row, location)
    record, answers = _READERS[shape](row, location)
    try:
        task = task_from_record(record, location)
    except BankError:
        raise
    except TaskError as exc:
        raise BankError(exc.location, exc.field, exc.problem, exc.value, show_value=exc.show_value) from None
    return shape, task, answers


# ---------------------------------------------------------------------------------------------------------------
# A whole bank


def _same_task(first: Task, other: Task) -> bool:
    return first.model_dump(exclude={"id", "messages"}) == other.model_dump(exclude={"id", "messages"})


def load_bank(source: str | Path, *, limit: int | None = None, split: str = "train",
              subset: str | None = None) -> LabelledBank:
    """Read and validate a labelled bank (see the module docstring); the first `limit` prompts (None: all).

    Rows of one prompt (the same id; without an id, the same prompt text) are one group: their answers are merged
    in the order read, an answer text given twice is kept once, and the same text with two different labels (chosen
    in one pair, rejected in another) is refused, both places named. The whole source is validated before anything
    is returned, so a bad row late in a file fails before any model is called.
    """
    name = str(source)
    tasks: dict[str, Task] = {}
    where: dict[str, str] = {}
    answers: dict[str, list[dict]] = {}
    shapes: dict[str, int] = {}
    for location, row in bank_rows(source, split=split, subset=subset):
        shape, task, found = read_row(row, location)
        shapes[shape] = shapes.get(shape, 0) + 1
        if task.id in tasks:
            if shape == "ours":
                raise BankError(location, "id", f"duplicate prompt (first at {where[task.id]}; one line per prompt "
                                "in this shape: list every answer under 'answers')", task.id)
            if not _same_task(tasks[task.id], task):
                raise BankError(location, "id", f"the same id as {where[task.id]} with another prompt or other task "
                                "fields", task.id)
        else:
            tasks[task.id], where[task.id] = task, location
        kept = answers.setdefault(task.id, [])
        for answer in found:
            twin = next((a for a in kept if a["text"] == answer["text"]), None)
            if twin is None:
                kept.append({**answer, "origin": location})
            elif twin["label"] != answer["label"]:
                raise BankError(location, "label", f"this answer text is labelled {twin['label']:g} at "
                                f"{twin['origin']} and {answer['label']:g} here (for rankings across pairs, give "
                                "the sets shape with scores)", answer["text"][:60])
    if not tasks:
        raise BankError(name, None, "no rows in the bank", show_value=False)
    chosen = list(tasks)[:limit] if limit is not None else list(tasks)
    records = [{"task_id": task_id, "answer_idx": i, **answer}
               for task_id in chosen for i, answer in enumerate(answers[task_id])]
    return LabelledBank(source=name, tasks=[tasks[t] for t in chosen], answers=records, shapes=shapes)


def bank_answer_records(bank: LabelledBank) -> list[dict[str, Any]]:
    """The answers as rollouts.jsonl records of a run directory (step 0, rollout_idx = answer_idx), label and kind
    kept, so the judging stages treat each prompt's answers as one group of rollouts."""
    return [{"task_id": a["task_id"], "step": 0, "rollout_idx": a["answer_idx"], "text": a["text"],
             "n_tokens": None, "truncated": False, "label": a["label"], "kind": a.get("kind")}
            for a in bank.answers]


def describe(bank: LabelledBank) -> dict[str, Any]:
    """Sizes of a bank for reports: prompts, answers, labels binary or graded, kinds, rows per shape, prompts with
    a reference rubric and prompts whose answers all share one label (no pair to compare)."""
    by_task: dict[str, set[float]] = {}
    for a in bank.answers:
        by_task.setdefault(a["task_id"], set()).add(a["label"])
    return {
        "source": bank.source,
        "shapes": dict(bank.shapes),
        "n_prompts": len(bank.tasks),
        "n_answers": len(bank.answers),
        "labels": "graded" if bank.graded else "binary",
        "kinds": bank.kinds(),
        "n_prompts_with_reference_rubric": sum(1 for t in bank.tasks if t.rubric),
        "n_prompts_one_label": sum(1 for labels in by_task.values() if len(labels) < 2),
    }

