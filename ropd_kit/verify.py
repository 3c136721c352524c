"""ROPD stage 4: blind, batched verification (the Verifier).

In: a task's question, the group's rubric, its teacher references and student rollouts. Out: one boolean per
(answer, criterion) for every answer, in source order (`GroupVerdicts`), plus every raw reply and the call count.

Blindness: references and rollouts are shuffled together with a seeded order and shown only as numbered answers;
nothing in the Verifier's prompt says who wrote what. Answers are untrusted text: each sits inside a fence whose
marker lines carry a boundary token, and any marker-like run (`<<<`, `>>>`) or copy of the token inside an answer is
neutralised, so an answer can neither close its own fence nor open a new section; the system prompt tells the
Verifier that instructions and self-assessments inside answers count for nothing.

Failure policy (never raises for model or endpoint misbehaviour):
1. one call per chunk of `max_answers_per_call` answers, up to `verify_attempts` tries, the parse error fed back;
2. answers still without a verdict are asked one at a time (`verify_attempts` tries each);
3. what is still missing stays None. The group is `failed` only if a *student* rollout has no verdict: teacher
   verdicts calibrate and diagnose the rubric but do not enter the reward, so a missing one is recorded (None, and
   in `error`) without costing the group its training signal.
Answers that are empty after cleaning, and truncated rollouts when `truncated_rollouts == "zero"`, are judged
all-False without a call (listed in `skipped`): there is nothing to judge, and a call could only add noise.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any, Sequence

from pydantic import BaseModel, Field

from .judge_text import clean_answer, fence, find_json, make_boundary, strip_thinking
from .rubrics import FATAL_LLM_KINDS, Rubric, load_prompt

Key = tuple[str, int]  # ("teacher" | "student", index in its source list)


class VerdictError(ValueError):
    """Model output that is not a usable set of verdicts; `problems` lists every reason."""

    def __init__(self, problems: str | Sequence[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


class GroupVerdicts(BaseModel):
    """Verdicts of one group, un-shuffled back to source order.

    `teacher[i]` / `student[j]`: one bool per criterion, or None when no valid verdict was obtained.
    `order`: the answers in the order they were shown (position p in this list was answer p+1 of the whole group;
    chunked calls number each chunk from 1). `raw`: every reply, batched calls first, then per-answer calls.
    """

    teacher: list[list[bool] | None]
    student: list[list[bool] | None]
    order: list[tuple[str, int]]
    raw: list[str] = Field(default_factory=list)
    calls: int = 0
    failed: bool = False
    error: str | None = None
    errors: list[str] = Field(default_factory=list)
    skipped: list[tuple[str, int, str]] = Field(default_factory=list, description="(source, index, reason)")


# ---------------------------------------------------------------------------------------------------------------
# Parsing


_INDEX_KEYS = ("answer_index", "index", "answer")
_JUDGEMENT_KEYS = ("judgement", "judgment", "judgements", "judgments")
_TRUE = {"true", "yes", "1", "met"}
_FALSE = {"false", "no", "0", "not met", "unmet"}


def _first(entry: dict, keys: Sequence[str]) -> Any:
    return next((entry[k] for k in keys if k in entry), None)


def _answers_object(value: Any) -> list | None:
    if isinstance(value, dict) and isinstance(value.get("answers"), list):
        return value["answers"]
    return None


def _other_shapes(value: Any) -> list | None:
    """A bare list of entries, or a single entry (what small models write for a one-answer call)."""
    if isinstance(value, dict) and _first(value, _JUDGEMENT_KEYS) is not None:
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(v, dict) and _first(v, _INDEX_KEYS) is not None for v in value):
            return value
    return None


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    return None


def _as_index(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def parse_verdicts(text: str, n_answers: int, n_criteria: int) -> list[list[bool]]:
    """The verdicts in a Verifier reply: `{"answers": [{"answer_index": 1, "judgement": [true, ...]}, ...]}`.

    Returns one list of `n_criteria` booleans per answer, ordered by answer_index (1-based, as shown).
    Tolerated: prose, code fences, `</think>` reasoning, trailing commas, answers out of order, "true"/"false"/
    "yes"/"no" strings and 0/1 for booleans, "judgment" spelling, a bare list of entries, and a missing
    answer_index when only one answer was shown. Rejected (all problems reported): missing, duplicate or
    out-of-range answer indices, a judgement of the wrong length, values that are not true/false.
    """
    body = strip_thinking(text)
    entries = find_json(body, _answers_object)
    if entries is None:
        entries = find_json(body, _other_shapes)
    if entries is None:
        raise VerdictError('no JSON object with an "answers" list was found in the reply')
    problems: list[str] = []
    found: dict[int, list[bool]] = {}
    seen: set[int] = set()
    for pos, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            problems.append(f"entry {pos} is not an object with answer_index and judgement")
            continue
        raw_index = _first(entry, _INDEX_KEYS)
        if raw_index is None and n_answers == 1 and len(entries) == 1:
            raw_index = 1  # nothing to confuse it with
        index = _as_index(raw_index)
        if index is None:
            problems.append(f"entry {pos}: answer_index {raw_index!r} is not a whole number")
            continue
        if not 1 <= index <= n_answers:
            problems.append(f"answer_index {index} is out of range 1-{n_answers}")
            continue
        if index in seen:
            problems.append(f"answer {index} appears more than once")
            continue
        seen.add(index)
        judgement = _first(entry, _JUDGEMENT_KEYS)
        if not isinstance(judgement, list):
            problems.append(f"answer {index}: judgement is missing or not a list")
            continue
        if len(judgement) != n_criteria:
            problems.append(
                f"answer {index} has {len(judgement)} judgements, the rubric has {n_criteria} criteria"
            )
            continue
        values = [_as_bool(v) for v in judgement]
        bad = next((k for k, v in enumerate(values) if v is None), None)
        if bad is not None:
            problems.append(f"answer {index}, criterion {bad + 1}: {judgement[bad]!r} is not true or false")
            continue
        found[index] = values  # type: ignore[assignment]
    missing = [i for i in range(1, n_answers + 1) if i not in seen]
    if missing:
        problems.append(f"no entry for answer {', '.join(map(str, missing))} (expected answers 1-{n_answers})")
    if problems:
        raise VerdictError(problems)
    return [found[i] for i in range(1, n_answers + 1)]


def verdict_schema(n_answers: int, n_criteria: int) -> dict[str, Any]:
    """JSON schema with exact lengths, so a constraining server can only produce well-shaped verdicts."""
    return {
        "type": "object",
        "properties": {
            "answers": {
                "type": "array",
                "minItems": n_answers,
                "maxItems": n_answers,
                "items": {
                    "type": "object",
                    "properties": {
                        "answer_index": {"type": "integer", "minimum": 1, "maximum": n_answers},
                        "judgement": {
                            "type": "array",
                            "items": {"type": "boolean"},
                            "minItems": n_criteria,
                            "maxItems": n_criteria,
                        },
                    },
                    "required": ["answer_index", "judgement"],
                    "additionalProperties": False,
                },
            }
        },
        "required": ["answers"],
        "additionalProperties": False,
    }


# ---------------------------------------------------------------------------------------------------------------
# The blind prompt


def blind_order(n_teacher: int, n_student: int, seed: int) -> list[Key]:
    """Teacher refs and student rollouts in one seeded shuffle: the order the Verifier sees them in."""
    keys: list[Key] = [("teacher", i) for i in range(n_teacher)] + [("student", j) for j in range(n_student)]
    random.Random(seed).shuffle(keys)
    return keys


def _criteria_list(rubric: Rubric | Sequence[str]) -> list[str]:
    criteria = getattr(rubric, "criteria", None)
    return [c.text for c in criteria] if criteria is not None else [str(t) for t in rubric]


def verifier_messages(
    question: str, rubric: Rubric | Sequence[str], answers: Sequence[str], boundary: str
) -> list[dict[str, str]]:
    """System + user message that show `answers` as numbered, fenced answers (points are not shown)."""
    criteria = _criteria_list(rubric)
    values = {
        "boundary": boundary,
        "question": question.strip(),
        "n_criteria": len(criteria),
        "criteria": "\n".join(f"{k}. {text}" for k, text in enumerate(criteria, start=1)),
        "n_answers": len(answers),
        "answers": "\n\n".join(fence(f"ANSWER-{i}", a, boundary) for i, a in enumerate(answers, start=1)),
    }
    return [
        {"role": "system", "content": load_prompt("verifier_system.txt").substitute(values).strip()},
        {"role": "user", "content": load_prompt("verifier_user.txt").substitute(values).strip()},
    ]


def _feedback(error: VerdictError, finish_reason: str | None, n_answers: int, n_criteria: int) -> str:
    lines = ["That reply cannot be used:"] + [f"- {p}" for p in error.problems]
    if finish_reason == "length":
        lines.append("- the reply was cut off by the length limit: write only the JSON, nothing else")
    lines.append(
        f"Reply again with only the JSON object: exactly {n_answers} entries (answer_index 1 to {n_answers}), "
        f"each with a judgement of exactly {n_criteria} true/false values."
    )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# Verification of one group


class _Call:
    """Replies, errors and the call count of one batch of answers (kept apart so concurrent batches stay ordered)."""

    def __init__(self) -> None:
        self.raw: list[str] = []
        self.errors: list[str] = []
        self.calls = 0


async def _judge(
    question: str,
    rubric: Rubric,
    keys: list[Key],
    texts: dict[Key, str],
    client: Any,
    config: Any,
    seed: int,
    log: _Call,
    fatal: list[str],
) -> dict[Key, list[bool]]:
    from .llm import LLMError

    n, m = len(keys), len(rubric.criteria)
    answers = [texts[k] for k in keys]
    boundary = make_boundary(seed, question, _criteria_list(rubric), answers)
    messages = verifier_messages(question, rubric, answers, boundary)
    schema = verdict_schema(n, m)
    label = "batch of " + str(n) if n > 1 else "single answer"
    for attempt in range(getattr(config, "verify_attempts", 2)):
        if fatal:
            break
        log.calls += 1
        try:
            result = await client.chat(
                messages,
                temperature=getattr(config, "verifier_temperature", 0.0),
                max_tokens=getattr(config, "verifier_max_tokens", 1024),
                json_schema=schema,
                schema_name="verdicts",
                sample_index=attempt,
                accept=lambda text: parse_verdicts(text, n, m),
            )
        except LLMError as exc:
            message = f"{label}, attempt {attempt + 1}: {getattr(exc, 'kind', 'error')} error: {exc}"
            log.errors.append(message)
            if getattr(exc, "kind", None) in FATAL_LLM_KINDS:
                fatal.append(message)
            continue
        log.raw.append(result.text)
        try:
            rows = parse_verdicts(result.text, n, m)
        except VerdictError as exc:
            log.errors.append(f"{label}, attempt {attempt + 1}: {exc}")
            messages = messages + [
                {"role": "assistant", "content": result.text},
                {"role": "user", "content": _feedback(exc, result.finish_reason, n, m)},
            ]
            continue
        return dict(zip(keys, rows))
    return {}


async def verify_group_async(
    question: str,
    rubric: Rubric,
    teacher_refs: Sequence[str],
    rollouts: Sequence[str],
    client: Any,
    config: Any,
    *,
    seed: int = 0,
    truncated: Sequence[bool] | None = None,
) -> GroupVerdicts:
    """Judge every teacher ref and student rollout of one group against `rubric`, blind; see the module docstring.

    `truncated[j]` marks rollout j as cut by max_tokens; with `config.truncated_rollouts == "zero"` it is not
    judged (all-False, listed in `skipped`; the caller gives it reward 0).
    """
    m = len(rubric.criteria)
    max_chars = getattr(config, "max_answer_chars", 4000)
    strip = getattr(config, "strip_thinking", True)
    zero_truncated = getattr(config, "truncated_rollouts", "judge") == "zero"
    if truncated is not None and len(truncated) != len(rollouts):
        raise ValueError(f"truncated has {len(truncated)} flags for {len(rollouts)} rollouts")

    texts: dict[Key, str] = {}
    for i, t in enumerate(teacher_refs):
        texts[("teacher", i)] = clean_answer(t or "", max_chars=max_chars, strip_think=strip)
    for j, t in enumerate(rollouts):
        texts[("student", j)] = clean_answer(t or "", max_chars=max_chars, strip_think=strip)

    verdicts: dict[Key, list[bool] | None] = {}
    skipped: list[tuple[str, int, str]] = []
    shown: list[Key] = []
    for key in blind_order(len(teacher_refs), len(rollouts), seed):
        if zero_truncated and key[0] == "student" and truncated and truncated[key[1]]:
            verdicts[key] = [False] * m
            skipped.append((key[0], key[1], "truncated"))
        elif not texts[key]:
            verdicts[key] = [False] * m
            skipped.append((key[0], key[1], "empty"))
        else:
            shown.append(key)

    size = getattr(config, "max_answers_per_call", 12)
    chunks = [shown[i : i + size] for i in range(0, len(shown), size)]
    fatal: list[str] = []
    batch_logs = [_Call() for _ in chunks]
    results = await asyncio.gather(
        *(_judge(question, rubric, c, texts, client, config, seed, log, fatal) for c, log in zip(chunks, batch_logs))
    )
    for r in results:
        verdicts.update(r)

    # A batch can fail because of one answer (too long, confusing); asking one at a time isolates it.
    missing = [k for k in shown if k not in verdicts]
    single_logs = [_Call() for _ in missing] if len(shown) > 1 else []
    if single_logs and not fatal:
        singles = await asyncio.gather(
            *(
                _judge(question, rubric, [k], texts, client, config, seed, log, fatal)
                for k, log in zip(missing, single_logs)
            )
        )
        for r in singles:
            verdicts.update(r)

    logs = batch_logs + single_logs
    errors = [e for log in logs for e in log.errors]
    teacher = [verdicts.get(("teacher", i)) for i in range(len(teacher_refs))]
    student = [verdicts.get(("student", j)) for j in range(len(rollouts))]
    lost_students = [j for j, v in enumerate(student) if v is None]
    lost_teachers = [i for i, v in enumerate(teacher) if v is None]
    error = None
    if lost_students or lost_teachers:
        parts = []
        if lost_students:
            parts.append(f"no verdict for student rollout(s) {', '.join(map(str, lost_students))}")
        if lost_teachers:
            parts.append(f"no verdict for teacher ref(s) {', '.join(map(str, lost_teachers))}")
        last = fatal[0] if fatal else (errors[-1] if errors else "no reply")
        error = f"{'; '.join(parts)}; last error: {last}"
    return GroupVerdicts(
        teacher=teacher,
        student=student,
        order=shown,
        raw=[t for log in logs for t in log.raw],
        calls=sum(log.calls for log in logs),
        failed=bool(lost_students),
        error=error,
        errors=errors,
        skipped=skipped,
    )


def verify_group(
    question: str,
    rubric: Rubric,
    teacher_refs: Sequence[str],
    rollouts: Sequence[str],
    client: Any,
    config: Any,
    *,
    seed: int = 0,
    truncated: Sequence[bool] | None = None,
) -> GroupVerdicts:
    """Sync wrapper of `verify_group_async` (works in a script and inside a notebook's running loop)."""
    from .llm import run_sync

    return run_sync(
        verify_group_async(question, rubric, teacher_refs, rollouts, client, config, seed=seed, truncated=truncated)
    )
