"""Task sources: any data set becomes `Task` records, its shape detected from its columns (the input of every stage).

In: a source and the data set options. A source is the kit's own JSONL (read by `data.load_tasks`), a local
json/jsonl/parquet/csv file in another shape, a local folder written by `datasets`' `save_to_disk` (or a folder of
data files), or a hub id (`datasets.load_dataset`). Out: a list of `Task`, ids unique, rows named in every error.

    tasks = load_task_source("openai/gsm8k", subset="main", split="test", sample=200, seed=0)
    tasks = load_task_source("gpqa_diamond.csv", seed=0)                 # options shuffled per task, letter kept
    tasks = load_task_source("my.parquet", field_map={"question": "stem", "choices": "opts", "answer": "gold"})

Shapes, tried in this order (column names match case-insensitively; `field_map` maps our name -> their column first):
- multiple choice: `question` with a `choices`/`options` list (or ARC's {"text": [...], "label": [...]}), or with
  A, B, C, ... columns, and the answer under `answer`/`answerKey`/`label` as a letter, an index (an integer,
  0-based, or a label of ARC's list) or the option's text; or GPQA's `Question`, `Correct Answer`,
  `Incorrect Answer 1..3`. Options are shuffled (`shuffle_choices`), the right letter recorded.
- prompt: `prompt` (a string, or a list of {role, content} chat messages) or `messages`, an optional `answer`, an
  optional reference rubric under `rubric`/`rubrics` (HealthBench's [{criterion, points, tags}]). The kit's own
  fields (id, domain, family, choices) pass through. Family: `data.default_family` (open-ended unless answered).
- math: `problem` with `answer` (MATH-500) or `solution` (the last \\boxed{} in it). Family "math".
- question/answer: `question` with `answer`; GSM8K's "... #### 1,234" -> "1234". Family "math".
A source that fits none fails with the columns it saw and the `field_map` to give. The option shuffle depends only on
the seed, the question and the set of options (not their order in the source), so it is the same in every run.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

from ropd_kit.answers import last_boxed, normalize_number
from ropd_kit.data import (
    DEFAULT_DOMAIN, LETTERS, TASK_FIELDS, Task, TaskError, check_unique, load_tasks, normalize_prompt,
    render_choices, task_from_record,
)

SHAPES = ("multiple_choice", "prompt", "math", "question_answer")
LOCAL_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}
_QUESTION = ("question", "question_stem")
_OPTIONS = ("choices", "options")
_MC_ANSWER = ("answer", "answerkey", "label")
_RUBRIC = ("rubric", "rubrics")
_ID = ("id", "unique_id", "task_id", "idx", "record id", "prompt_id", "question_id")
_GPQA_RIGHT, _GPQA_WRONG = "correct answer", ("incorrect answer 1", "incorrect answer 2", "incorrect answer 3")
# Our names a field_map may use (letters are the A..Z option columns).
FIELD_NAMES = tuple(sorted({*TASK_FIELDS, *_QUESTION, *_OPTIONS, *_MC_ANSWER, *_RUBRIC, *_ID, "problem",
                            "solution", _GPQA_RIGHT, *_GPQA_WRONG}))


# --- answers and options ------------------------------------------------------------------------------------------

def reference_answer(value: Any) -> str | None:
    """The final answer inside a data set's answer/solution value.

    GSM8K style "...#### 1,234" -> "1234"; MATH style "... \\boxed{\\frac{1}{2}}" -> "\\frac{1}{2}"; numbers from
    parquet/csv columns -> their text (3.0 -> "3"); anything else is returned stripped (MATH-500's `answer` column
    is already final). None, "" -> None.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)):
        return normalize_number(repr(value)) if isinstance(value, float) else str(value)
    text = str(value).strip()
    if "####" in text:
        final = text.rsplit("####", 1)[1].strip()
        return normalize_number(final) if re.fullmatch(r"-?[\d,]+(\.\d+)?", final) else final
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    return text or None


def choice_index(answer: Any, options: Sequence[str], labels: Sequence[str] | None = None) -> int:
    """Which option (0-based) a data set's answer names: a label of `labels` (ARC's "1".."4"), an option's text,
    a letter ("B", "(b)", "B."), or an index (an integer, or digits as text, 0-based). ValueError otherwise."""
    n = len(options)
    if isinstance(answer, float) and answer.is_integer():
        answer = int(answer)
    if isinstance(answer, int) and not isinstance(answer, bool):
        if 0 <= answer < n:
            return answer
        raise ValueError(f"index {answer} is out of range for {n} options (indices are 0-based)")
    if not isinstance(answer, str) or not answer.strip():
        raise ValueError("expected a letter, a 0-based index or the right option's text")
    text = answer.strip()
    if labels is not None and text in [str(label).strip() for label in labels]:
        return [str(label).strip() for label in labels].index(text)
    texts = [normalize_prompt(o) for o in options]
    if normalize_prompt(text) in texts:
        return texts.index(normalize_prompt(text))
    letter = re.fullmatch(r"\(?([A-Za-z])\)?\.?", text)
    if letter and LETTERS.index(letter.group(1).upper()) < n:
        return LETTERS.index(letter.group(1).upper())
    if text.isdigit() and int(text) < n:
        return int(text)
    raise ValueError(f"names none of the {n} options (expected a letter A-{LETTERS[n - 1]}, a 0-based index or an "
                     "option's text)")


def shuffle_choices(
    question: str, options: Sequence[str], correct: int | None, seed: int
) -> tuple[list[str], int | None]:
    """Options in a seeded order, and where the right one went.

    The order depends only on `seed`, the question and the *set* of options, never on their order in the source
    (GPQA lists the right answer first), so a task looks the same in every run and every copy of a data set.
    """
    key = "\0".join([str(seed), normalize_prompt(question), *sorted(normalize_prompt(o) for o in options)])
    rng = random.Random(int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big"))
    order = sorted(range(len(options)), key=lambda i: (normalize_prompt(options[i]), i))
    rng.shuffle(order)
    return [options[i] for i in order], (order.index(correct) if correct is not None else None)


def multiple_choice_task(
    question: str, options: Sequence[str], correct: int | None, *, seed: int = 0, shuffle: bool = True,
    id: str | None = None, domain: str = DEFAULT_DOMAIN, location: str = "<multiple choice>",
) -> Task:
    """A multiple-choice Task: options (shuffled unless `shuffle=False`) rendered under the question as "A. ...",
    `choices` the option texts in that order, `answer` the letter of `options[correct]` (None when unknown)."""
    record = _multiple_choice_record(question, list(options), correct, seed=seed, shuffle=shuffle)
    record.update(domain=domain, **({"id": id} if id is not None else {}))
    return task_from_record(record, location)


def _multiple_choice_record(question: str, options: list[str], correct: int | None, *, seed: int,
                            shuffle: bool) -> dict:
    options = [o.strip() for o in options]
    if shuffle:
        options, correct = shuffle_choices(question, options, correct, seed)
    return {"prompt": render_choices(question, options), "choices": options,
            "answer": LETTERS[correct] if correct is not None else None, "family": "multiple_choice"}


# --- shapes -------------------------------------------------------------------------------------------------------

def field_map_problems(field_map: dict[str, Any]) -> list[str]:
    """What is wrong with a `field_map` before any data is read: names that are not fields we read, columns that
    are not non-empty strings (RunConfig checks tasks_field_map with it)."""
    problems = []
    unknown = sorted(str(k) for k in field_map if str(k).lower() not in FIELD_NAMES and not _is_letter(str(k)))
    if unknown:
        problems.append(f"field_map names {unknown}, not fields we read (ours: prompt, messages, question, problem, "
                        "solution, answer, choices, rubric, id, domain, family, the option letters A..Z, and the "
                        "aliases in sources.FIELD_NAMES)")
    bad = sorted(str(k) for k, v in field_map.items() if not isinstance(v, str) or not v.strip())
    if bad:
        problems.append(f"field_map gives no column name for {bad} (expected the source's column, a string)")
    return problems


def column_names(columns: Iterable[str], field_map: dict[str, str] | None = None, source: str = "") -> dict[str, str]:
    """Our lower-case name -> the source's column. A column named in `field_map` is known only by our name."""
    columns = list(columns)
    field_map = dict(field_map or {})
    problems = field_map_problems(field_map)
    if problems:
        raise TaskError(source, None, "; ".join(problems), show_value=False)
    mapped = set(field_map.values())
    names = {c.lower(): c for c in columns if c not in mapped}
    for ours, theirs in field_map.items():
        if theirs not in columns:
            raise TaskError(source, theirs, f"no such column (field_map maps {ours!r} to it; columns: {columns})",
                            show_value=False)
        names[ours.lower()] = theirs
    return names


def _is_letter(name: str) -> bool:
    return len(name) == 1 and name.upper() in LETTERS


def _first(names: dict[str, str], candidates: Iterable[str]) -> str | None:
    return next((names[c] for c in candidates if c in names), None)


def _option_columns(names: dict[str, str]) -> list[str]:
    columns = []
    for letter in LETTERS.lower():
        if letter not in names:
            break
        columns.append(names[letter])
    return columns


def detect_shape(names: dict[str, str]) -> str | None:
    """Which of `SHAPES` the columns (from `column_names`) fit, or None."""
    question = _first(names, _QUESTION)
    if question and (_first(names, _OPTIONS) or len(_option_columns(names)) >= 2 or _GPQA_RIGHT in names):
        return "multiple_choice"
    if "prompt" in names or "messages" in names:
        return "prompt"
    if "problem" in names and ("answer" in names or "solution" in names):
        return "math"
    if question and "answer" in names:
        return "question_answer"
    return None


def _no_shape(source: str, columns: list[str]) -> TaskError:
    hint = ("field_map={'prompt': <column>} for open-ended prompts (or chat messages), "
            "{'question': <column>, 'answer': <column>} for question/answer or GSM8K, "
            "{'problem': <column>, 'solution': <column>} for MATH, "
            "{'question': <column>, 'choices': <column>, 'answer': <column>} for multiple choice")
    return TaskError(source, None, f"no known task shape in columns {columns}; name yours with {hint}",
                     show_value=False)


def _text(row: dict, column: str, location: str, what: str = "a non-empty string") -> str:
    value = row.get(column)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = reference_answer(value)
    if not isinstance(value, str) or not value.strip():
        raise TaskError(location, column, f"expected {what}", value)
    return value


def _common_fields(row: dict, names: dict[str, str]) -> tuple[dict, dict[str, str]]:
    """id, domain and family where the source has them, and the columns they came from."""
    record: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for ours in ("id", "domain", "family"):
        column = _first(names, _ID) if ours == "id" else names.get(ours)
        if column is not None and row.get(column) is not None:
            record[ours] = str(row[column]) if ours == "id" and isinstance(row[column], int) else row[column]
            origin[ours] = column
    return record, origin


def _multiple_choice_row(row: dict, names: dict[str, str], location: str, *, seed: int, shuffle: bool):
    record, origin = _common_fields(row, names)
    q_col = _first(names, _QUESTION)
    question = _text(row, q_col, location)
    labels = None
    answer_col = _first(names, _MC_ANSWER)
    correct: int | None = None
    if _first(names, _OPTIONS):
        o_col = _first(names, _OPTIONS)
        raw = row.get(o_col)
        if isinstance(raw, dict) and "text" in raw:  # ARC / CommonsenseQA: {"text": [...], "label": [...]}
            raw, labels = raw["text"], raw.get("label")
        if not isinstance(raw, (list, tuple)) or not raw:
            raise TaskError(location, o_col, "expected a list of option texts", raw)
        options = [_text({o_col: o}, o_col, f"{location} (option {i})") for i, o in enumerate(raw)]
        option_origin = o_col
    elif _GPQA_RIGHT in names:
        columns = [names[_GPQA_RIGHT]] + [names[c] for c in _GPQA_WRONG if c in names]
        options = [_text(row, c, location) for c in columns]
        option_origin, answer_col, correct = "/".join(columns), None, 0  # the right answer is listed first
    else:
        columns = _option_columns(names)
        while columns and row.get(columns[-1]) in (None, ""):  # fewer options in this row
            columns = columns[:-1]
        options = [_text(row, c, location) for c in columns]
        option_origin = "/".join(columns)
    if answer_col is not None and row.get(answer_col) is not None:
        try:
            correct = choice_index(row[answer_col], options, labels)
        except ValueError as exc:
            raise TaskError(location, answer_col, str(exc), row[answer_col]) from None
    record.update(_multiple_choice_record(question, options, correct, seed=seed, shuffle=shuffle))
    origin.update(prompt=q_col, choices=option_origin, **({"answer": answer_col} if answer_col else {}))
    return record, origin


def _prompt_row(row: dict, names: dict[str, str], location: str, **_):
    record, origin = _common_fields(row, names)
    column = names.get("prompt") or names["messages"]
    value = row.get(column)
    if isinstance(value, (list, tuple)):  # HealthBench keeps the conversation under `prompt`
        record["messages"] = [{k: m[k] for k in ("role", "content") if k in m} if isinstance(m, dict) else m
                              for m in value]
        origin["messages"] = column
    elif value is None and "prompt" in names and "messages" in names:
        record["messages"] = row.get(names["messages"])
        origin["messages"] = names["messages"]
    else:
        record["prompt"] = value
    origin["prompt"] = column
    for ours in ("choices", "answer"):
        if ours in names and row.get(names[ours]) is not None:
            value = row[names[ours]]
            record[ours] = reference_answer(value) if ours == "answer" else value
            origin[ours] = names[ours]
    rubric_col = _first(names, _RUBRIC)
    if rubric_col is not None and row.get(rubric_col) not in (None, [], ()):
        record["rubric"] = row[rubric_col]
        origin["rubric"] = rubric_col
    return record, origin


def _math_row(row: dict, names: dict[str, str], location: str, **_):
    record, origin = _common_fields(row, names)
    record["prompt"], origin["prompt"] = row.get(names["problem"]), names["problem"]
    if "answer" in names and row.get(names["answer"]) is not None:
        record["answer"], origin["answer"] = reference_answer(row[names["answer"]]), names["answer"]
    elif "solution" in names and row.get(names["solution"]) is not None:
        solution = row[names["solution"]]
        boxed = last_boxed(solution) if isinstance(solution, str) else None
        if not boxed:
            raise TaskError(location, names["solution"], "no \\boxed{...} final answer in the solution", solution)
        record["answer"], origin["answer"] = boxed, names["solution"]
    return {"domain": "math", "family": "math", **record}, origin


def _question_answer_row(row: dict, names: dict[str, str], location: str, **_):
    record, origin = _common_fields(row, names)
    q_col = _first(names, _QUESTION)
    record["prompt"], origin["prompt"] = row.get(q_col), q_col
    if row.get(names["answer"]) is not None:
        record["answer"], origin["answer"] = reference_answer(row[names["answer"]]), names["answer"]
    return {"domain": "math", "family": "math", **record}, origin


# One function per shape: a row -> (a record in our field names, our field -> the column it came from).
_ROW_READERS = {"multiple_choice": _multiple_choice_row, "prompt": _prompt_row, "math": _math_row,
                "question_answer": _question_answer_row}


def _renamed(error: TaskError, origin: dict[str, str]) -> TaskError:
    """The loader's error with our field name replaced by the column it came from ("rubric[2]" -> "rubrics[2]")."""
    if not error.field:
        return error
    head = re.match(r"[^.\[]+", error.field).group()
    if head not in origin:
        return error
    field = origin[head] + error.field[len(head):]
    return TaskError(error.location, field, error.problem, error.value, show_value=error.show_value)


# --- reading sources ----------------------------------------------------------------------------------------------

def is_own_jsonl(path: str | Path) -> bool:
    """Whether a .jsonl file is in the kit's own shape (its first record holds only `data.TASK_FIELDS`, with a
    prompt or messages); a first line that is not JSON counts too, so that `load_tasks` names it."""
    path = Path(path)
    if path.suffix.lower() != ".jsonl" or not path.is_file():
        return False
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    return True
                return (isinstance(record, dict) and set(record) <= set(TASK_FIELDS)
                        and ("prompt" in record or "messages" in record))
    return True  # empty: load_tasks says so


def _looks_local(source: str) -> bool:
    return (Path(source).suffix.lower() in LOCAL_BUILDERS or source.startswith(("/", "./", "../", "~"))
            or Path(source).exists())


def read_dataset(source: str | Path, *, split: str = "train", subset: str | None = None):
    """A `datasets.Dataset`: a local file (the file is the split), a `save_to_disk` folder, a folder of data files,
    or a hub id (`datasets.load_dataset(source, subset, split=split)`). Failures become a TaskError."""
    import datasets  # heavy import, only for sources that are not the kit's own JSONL

    name = str(source)
    path = Path(name).expanduser()
    try:
        if path.is_file():
            builder = LOCAL_BUILDERS.get(path.suffix.lower())
            if builder is None:
                raise TaskError(name, None, f"unknown file type (use one of {sorted(LOCAL_BUILDERS)})", path.suffix)
            return datasets.load_dataset(builder, data_files={split: str(path)}, split=split)
        if path.is_dir():
            if any((path / marker).exists() for marker in ("dataset_dict.json", "dataset_info.json", "state.json")):
                loaded = datasets.load_from_disk(str(path))
                if isinstance(loaded, datasets.DatasetDict):
                    if split not in loaded:
                        raise TaskError(name, None, f"no split {split!r} (splits: {sorted(loaded)})",
                                        show_value=False)
                    return loaded[split]
                return loaded
            return datasets.load_dataset(str(path), subset, split=split)
        if _looks_local(name):
            raise TaskError(name, None, "file not found", show_value=False)
        return datasets.load_dataset(name, subset, split=split)
    except TaskError:
        raise
    except Exception as exc:  # noqa: BLE001 - datasets raises many kinds; the user needs the source and the reason
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise TaskError(name, None, f"could not load split {split!r}: {type(exc).__name__}: {reason}",
                        show_value=False) from None


def select_rows(n_rows: int, *, limit: int | None = None, sample: int | None = None, seed: int = 0,
                source: str = "") -> list[int]:
    """Row indices to read: a seeded sample of `sample` rows (kept in file order), then the first `limit`."""
    indices = list(range(n_rows))
    if sample is not None:
        if not 0 < sample <= n_rows:
            raise TaskError(source, None, f"sample={sample} needs 1 to {n_rows} rows (the source has {n_rows})",
                            show_value=False)
        indices = sorted(random.Random(seed).sample(indices, sample))
    if limit is not None:
        if limit < 0:
            raise TaskError(source, None, "limit must be >= 0", limit)
        indices = indices[:limit]
    return indices


def _overridden(task: Task, domain: str | None, family: str | None, location: str) -> Task:
    if domain is None and family is None:
        return task
    record = task.to_record()
    record.update({k: v for k, v in (("domain", domain), ("family", family)) if v is not None})
    return task_from_record(record, location)


def load_task_source(
    source: str | Path,
    *,
    split: str = "train",
    subset: str | None = None,
    field_map: dict[str, str] | None = None,
    limit: int | None = None,
    sample: int | None = None,
    seed: int = 0,
    domain: str | None = None,
    family: str | None = None,
    shuffle_choices: bool = True,
    require_answers: bool = False,
) -> list[Task]:
    """Tasks from any source (see the module docstring for sources and shapes).

    `split`/`subset`: the data set's split and config name (a local file is its own split; the name only shows in
    errors). `field_map`: our field -> their column, for columns we do not recognise. `sample`: a seeded sample of
    that many rows (kept in file order); `limit`: the first n rows after that. `seed` also orders multiple-choice
    options. `domain`/`family` override what the rows say. The kit's own JSONL is read (and validated whole) by
    `data.load_tasks`; for other sources only the selected rows are read, each checked before anything is returned.
    """
    name = str(source)
    if field_map is None and is_own_jsonl(source):
        tasks = load_tasks(source, require_answers=require_answers)
        chosen = select_rows(len(tasks), limit=limit, sample=sample, seed=seed, source=name)
        return [_overridden(tasks[i], domain, family, f"{name}:task {i}") for i in chosen]

    dataset = read_dataset(source, split=split, subset=subset)
    columns = list(dataset.column_names)
    names = column_names(columns, field_map, name)
    shape = detect_shape(names)
    if shape is None:
        raise _no_shape(f"{name}[{split}]", columns)
    if len(dataset) == 0:
        raise TaskError(f"{name}[{split}]", None, "no rows", show_value=False)
    chosen = select_rows(len(dataset), limit=limit, sample=sample, seed=seed, source=name)
    tasks: list[Task] = []
    locations: list[str] = []
    for index, row in zip(chosen, dataset.select(chosen)):
        location = f"{name}[{split}]:row {index}"
        record, origin = _ROW_READERS[shape](row, names, location, seed=seed, shuffle=shuffle_choices)
        if domain is not None:
            record["domain"] = domain
        if family is not None:
            record["family"] = family
        try:
            tasks.append(task_from_record(record, location, require_answers=require_answers))
        except TaskError as exc:
            raise _renamed(exc, origin) from None
        locations.append(location)
    check_unique(tasks, locations)
    return tasks


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
    """The older loader's signature: `load_task_source` with `prompt_field`/`answer_field` as
    `field_map={"prompt": ..., "answer": ...}` (the shape is still detected from the columns)."""
    field_map = {our: theirs for our, theirs in (("prompt", prompt_field), ("answer", answer_field)) if theirs}
    return load_task_source(name_or_path, split=split, subset=subset, field_map=field_map or None, limit=limit,
                            domain=domain)


# --- a run's tasks ------------------------------------------------------------------------------------------------

SPLIT_DEFAULTS = {"train": "train", "eval": "test"}


def tasks_from_config(config: Any, which: str = "train") -> list[Task]:
    """The tasks a RunConfig names; the one way every stage, notebook and benchmark reads them from a config.

    `which="train"`: `tasks_path` with `tasks_split` (None: "train"), `tasks_subset`, `tasks_field_map`,
    `tasks_sample` and the first `n_tasks`. `which="eval"`: the `eval_tasks_*` options and `n_eval_tasks` (split
    None: "test"). Seeded by `config.seed` (the sample, the option order). Evaluation tasks must each carry what
    their evaluation reads: a ground-truth answer, or for an open-ended task a reference rubric.
    """
    if which not in SPLIT_DEFAULTS:
        raise ValueError(f"which={which!r}: use 'train' or 'eval'")
    prefix = "" if which == "train" else "eval_"
    source = getattr(config, f"{prefix}tasks_path")
    tasks = load_task_source(
        source,
        split=getattr(config, f"{prefix}tasks_split", None) or SPLIT_DEFAULTS[which],
        subset=getattr(config, f"{prefix}tasks_subset", None),
        field_map=getattr(config, f"{prefix}tasks_field_map", None),
        sample=getattr(config, f"{prefix}tasks_sample", None),
        limit=getattr(config, "n_tasks" if which == "train" else "n_eval_tasks", None),
        seed=getattr(config, "seed", 0),
    )
    if which == "eval":
        missing = [t.id for t in tasks if t.answer is None and not (t.family == "open_ended" and t.rubric)]
        if missing:
            raise TaskError(str(source), None, f"{len(missing)} evaluation task(s) have nothing to be evaluated "
                            "against: no ground-truth answer (nor, for an open-ended task, a reference rubric); "
                            f"first: {', '.join(missing[:3])}", show_value=False)
    return tasks

