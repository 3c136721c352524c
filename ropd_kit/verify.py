"""ROPD stage 4: blind, batched verification (the Verifier).

In: a task's question, the group's rubric, its teacher references and student rollouts. Out: one boolean per
(answer, criterion) for every answer, in source order (`GroupVerdicts`), plus every raw reply and the call count.

Blindness: references and rollouts are shuffled together with a seeded order and shown only as numbered answers;
nothing in the Verifier's prompt says who wrote what. Answers are untrusted text: each sits inside a fence whose
marker lines carry a boundary token, and any marker-like run (`<<<`, `>>>`) or copy of the token inside an answer is
neutralised, so an answer can neither close its own fence nor open a new section; the system prompt tells the
Verifier that instructions and self-assessments inside answers count for nothing.

Soft verdicts (`verifier_mode="soft"`, and under the default "auto" wherever no code check decides the group's result:
open-ended families, and checkable groups whose teacher references agree on no answer; see `verifier_mode_for`):
instead of the batched matrix, one short request per (answer, criterion)
with nothing written before the verdict; p(true) is read from the reply's first token's log-probabilities
(`verdict_probability`) and scored where the boolean stood, the boolean being p >= 0.5. Each request shows the
instructions, the question and the one fenced answer first and the criterion last, and an answer's criteria are
asked one after another, so the server's prompt cache reuses what they share. Blindness is as in the batched mode:
the same fences and neutralising, one boundary for the whole group, answers asked in the seeded blind order. Where a
verdict cannot be read from log-probabilities the boolean stands: the reply's own word when it is true/false, else
the batched call for that answer; an endpoint that returns no log-probabilities is named once in the log and gets
the batched call from then on. Per answer the notes say which kind the verdict holds (`verdict_kind`: "soft",
"boolean", or "mixed"), its `probabilities`, and why booleans stood (`fallback_reason`).

Failure policy (never raises for model or endpoint misbehaviour):
1. one call per chunk of `max_answers_per_call` answers, up to `verify_attempts` tries, the parse error fed back;
2. answers still without a verdict are asked one at a time (`verify_attempts` tries each);
3. what is still missing stays None. The group is `failed` only if a *student* rollout has no verdict: teacher
   verdicts calibrate and diagnose the rubric but do not enter the reward, so a missing one is recorded (None, and
   in `error`) without costing the group its training signal.
Answers that are empty after cleaning, and truncated rollouts when `truncated_rollouts == "zero"`, are judged
all-False without a call (listed in `skipped`): there is nothing to judge, and a call could only add noise.

Reward levers (RunConfig; all but `consensus_check` off by default; with the Verifier's levers off the prompts, schema
and replies are DESIGN.md's):
- `verifier_samples` > 1: every chunk is judged that many times (the first sample as without the lever, the others
  at `verifier_sample_temperature`), and each answer gets the majority per criterion of the samples that judged it
  (`levers.majority_per_criterion`: ties False, failed samples left out).
- `verifier_evidence`: per criterion the Verifier writes a quote of the answer, then `met`; a True whose quote is not
  in the answer as shown (`levers.quote_supported`) becomes False before the vote.
- `verifier_read_first`: the Verifier first writes the final result each answer commits to, then judges.
- `consensus_check` (`consensus.consensus_check`, applied after this stage where the teacher refs are at hand): the
  final-result criterion is decided by code against the teacher's majority final answer.
What the levers did per answer is in `GroupVerdicts.teacher_notes` / `student_notes`.
"""

from __future__ import annotations

import contextlib
import asyncio
import logging
import math
import random
import threading
from typing import Any, Sequence

from pydantic import BaseModel, Field

from .judge_text import clean_answer, fence, find_json, make_boundary, neutralise, strip_thinking
from . import prompts
from .answers import CHECKABLE_FAMILIES
from .majority import check_target
from .rubrics import FATAL_LLM_KINDS, Rubric

Key = tuple[str, int]  # ("teacher" | "student", index in its source list)

logger = logging.getLogger(__name__)


class VerdictError(ValueError):
    """Model output that is not a usable set of verdicts; `problems` lists every reason."""

    def __init__(self, problems: str | Sequence[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


class GroupVerdicts(BaseModel):
    """Verdicts of one group, un-shuffled back to source order.

    `teacher[i]` / `student[j]`: one bool per criterion, or None when no valid verdict was obtained.
    `order`: the answers in the order they were shown (position p in this list was answer p+1 of the whole group;
    chunked calls number each chunk from 1). `raw`: every reply: soft-verdict requests (soft mode) first, then
    batched calls, then per-answer calls.
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
    teacher_notes: list[dict[str, Any]] = Field(
        default_factory=list, description="Per teacher ref, what the levers did (`combine_samples`); [] when off."
    )
    student_notes: list[dict[str, Any]] = Field(
        default_factory=list, description="Per student rollout, what the levers did; [] when the levers are off."
    )
    soft_cells: int = Field(default=0, description="Soft mode: (answer, criterion) verdicts read as probabilities.")
    boolean_cells: int = Field(
        default=0, description="Soft mode: (answer, criterion) verdicts that stood as booleans (no log-probabilities)."
    )


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
    if isinstance(value, dict) and _first(value, _JUDGEMENT_KEYS + ("checks",)) is not None:
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


_FINAL_KEYS = ("final_result", "final_answer", "result")
_CHECK_KEYS = ("checks", "evidence")
_QUOTE_KEYS = ("quote", "evidence", "span")
_MET_KEYS = ("met", "judgement", "judgment", "verdict")


def _final_result(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return str(value)
    return value.strip() if isinstance(value, str) else None


def _checks_by_criterion(index: int, checks: Any, n_criteria: int, problems: list[str]) -> list | None:
    """One answer's checks in criterion order: `{"1": {...}, "2": {...}}` (the asked shape: each check sits under its
    criterion's number) or a plain list; None after adding the problem found."""
    if isinstance(checks, list):
        if len(checks) != n_criteria:
            problems.append(f"answer {index} has {len(checks)} checks, the rubric has {n_criteria} criteria")
            return None
        return checks
    if not isinstance(checks, dict):
        problems.append(f"answer {index}: checks is missing or not an object with one check per criterion number")
        return None
    keyed: dict[int, Any] = {}
    for key, check in checks.items():
        k = _as_index(key)
        if k is None or not 1 <= k <= n_criteria:
            problems.append(f"answer {index}: check {key!r} names no criterion (criteria 1-{n_criteria})")
            return None
        keyed[k] = check
    missing = [k for k in range(1, n_criteria + 1) if k not in keyed]
    if missing:
        problems.append(f"answer {index}: no check for criterion {', '.join(map(str, missing))}")
        return None
    return [keyed[k] for k in range(1, n_criteria + 1)]


def _read_checks(index: int, checks: Any, n_criteria: int, problems: list[str]) -> tuple[list[bool], list] | None:
    """The (verdicts, quotes) of one answer's checks, or None after adding every problem found."""
    ordered = _checks_by_criterion(index, checks, n_criteria, problems)
    if ordered is None:
        return None
    verdicts: list[bool] = []
    quotes: list[str | None] = []
    for k, check in enumerate(ordered, start=1):
        if not isinstance(check, dict):
            problems.append(f"answer {index}, criterion {k}: {check!r} is not an object with quote and met")
            return None
        met = _as_bool(_first(check, _MET_KEYS))
        if met is None:
            problems.append(f"answer {index}, criterion {k}: met {_first(check, _MET_KEYS)!r} is not true or false")
            return None
        quote = _first(check, _QUOTE_KEYS)
        if quote is not None and not isinstance(quote, str):
            problems.append(f"answer {index}, criterion {k}: quote {quote!r} is not a string")
            return None
        verdicts.append(met)
        quotes.append(quote)
    return verdicts, quotes


def parse_verdict_entries(
    text: str, n_answers: int, n_criteria: int, *, evidence: bool = False, read_first: bool = False
) -> list[dict[str, Any]]:
    """Every answer's entry in a Verifier reply, ordered by answer_index: `{"judgement": [bool], "quotes": [str |
    None] | None, "final_result": str | None}`.

    With the levers off the reply is the DESIGN.md contract (`parse_verdicts`). With `read_first` each entry must
    also carry `final_result` (the result the answer commits to, a short string; a number is read as its string).
    With `evidence` the booleans come as `"checks": {"1": {"quote": "...", "met": true}, "2": ...}`, one per
    criterion under its number (a plain list in criterion order is accepted too), instead of `judgement`; a quote
    is a string or null. What is tolerated and rejected is otherwise as in
    `parse_verdicts`, and every problem is reported with the answer (and criterion) it concerns.
    """
    body = strip_thinking(text)
    entries = find_json(body, _answers_object)
    if entries is None:
        entries = find_json(body, _other_shapes)
    if entries is None:
        raise VerdictError('no JSON object with an "answers" list was found in the reply')
    problems: list[str] = []
    found: dict[int, dict[str, Any]] = {}
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
        final = None
        if read_first:
            final = _final_result(_first(entry, _FINAL_KEYS))
            if final is None:
                problems.append(
                    f"answer {index}: final_result is missing or not a string (the final result the answer commits to)"
                )
                continue
        quotes = None
        if evidence:
            read = _read_checks(index, _first(entry, _CHECK_KEYS), n_criteria, problems)
            if read is None:
                continue
            values, quotes = read
        else:
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
        found[index] = {"judgement": values, "quotes": quotes, "final_result": final}
    missing = [i for i in range(1, n_answers + 1) if i not in seen]
    if missing:
        problems.append(f"no entry for answer {', '.join(map(str, missing))} (expected answers 1-{n_answers})")
    if problems:
        raise VerdictError(problems)
    return [found[i] for i in range(1, n_answers + 1)]


def parse_verdicts(
    text: str, n_answers: int, n_criteria: int, *, evidence: bool = False, read_first: bool = False
) -> list[list[bool]]:
    """The verdicts in a Verifier reply: `{"answers": [{"answer_index": 1, "judgement": [true, ...]}, ...]}`.

    Returns one list of `n_criteria` booleans per answer, ordered by answer_index (1-based, as shown).
    Tolerated: prose, code fences, `</think>` reasoning, trailing commas, answers out of order, "true"/"false"/
    "yes"/"no" strings and 0/1 for booleans, "judgment" spelling, a bare list of entries, and a missing
    answer_index when only one answer was shown. Rejected (all problems reported): missing, duplicate or
    out-of-range answer indices, a judgement of the wrong length, values that are not true/false.
    `evidence` / `read_first`: the reply shape of those levers (`parse_verdict_entries`); the quotes and final
    results are read and validated, and only the booleans are returned (as the Verifier wrote them).
    """
    entries = parse_verdict_entries(text, n_answers, n_criteria, evidence=evidence, read_first=read_first)
    return [e["judgement"] for e in entries]


# A quote longer than this is not a span but a copy of the answer; the cap also bounds the reply's length.
MAX_QUOTE_CHARS = 200
MAX_FINAL_RESULT_CHARS = 60


def verdict_schema(
    n_answers: int, n_criteria: int, *, evidence: bool = False, read_first: bool = False
) -> dict[str, Any]:
    """JSON schema with exact lengths, so a constraining server can only produce well-shaped verdicts.

    Property order is generation order for a constraining server: `final_result` (read-first) comes before the
    verdicts, and in each evidence check the quote comes before `met`, so the model writes what it read before it
    decides.
    """
    entry: dict[str, Any] = {"answer_index": {"type": "integer", "minimum": 1, "maximum": n_answers}}
    if read_first:
        entry["final_result"] = {"type": "string", "maxLength": MAX_FINAL_RESULT_CHARS}
    if evidence:
        check = {
            "type": "object",
            "properties": {"quote": {"type": "string", "maxLength": MAX_QUOTE_CHARS}, "met": {"type": "boolean"}},
            "required": ["quote", "met"],
            "additionalProperties": False,
        }
        # Keyed by criterion number rather than a list: writing "2": before a quote anchors it to criterion 2
        # (with a bare list the 1.5B Verifier quoted the answer's steps in order, one criterion off).
        numbers = [str(k) for k in range(1, n_criteria + 1)]
        entry["checks"] = {
            "type": "object",
            "properties": {k: check for k in numbers},
            "required": numbers,
            "additionalProperties": False,
        }
    else:
        entry["judgement"] = {
            "type": "array",
            "items": {"type": "boolean"},
            "minItems": n_criteria,
            "maxItems": n_criteria,
        }
    return {
        "type": "object",
        "properties": {
            "answers": {
                "type": "array",
                "minItems": n_answers,
                "maxItems": n_answers,
                "items": {
                    "type": "object",
                    "properties": entry,
                    "required": list(entry),
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


_READ_FIRST_RULE = (
    "- Read each answer to its end first and find the final result it commits to: the value or choice it gives as\n"
    "  its own answer, not one it tried and dropped. Write it as final_result, a short string (\"none\" if the\n"
    "  answer commits to no result). Only then judge the criteria, holding them against that result."
)
_EVIDENCE_RULE = (
    "- For each criterion, first copy into quote the words of the answer that meet it, exactly as they are written\n"
    "  in that answer (a short span, at most one sentence), then set met. If nothing in the answer meets the\n"
    "  criterion, the quote is \"\" and met is false. Quotes are checked against the answer: a criterion for which\n"
    "  the answer has no words of its own to quote is not met, whatever the answer claims about itself."
)


def _reply_parts(n_criteria: int, *, evidence: bool, read_first: bool) -> dict[str, str]:
    """The reply-format pieces of the lever prompts: rules, an example entry, the closing reminder."""
    rules = [r for r, on in ((_READ_FIRST_RULE, read_first), (_EVIDENCE_RULE, evidence)) if on]
    entry = '"answer_index": 1'
    if read_first:
        entry += ', "final_result": "<the result answer 1 commits to>"'
    if evidence:
        entry += (', "checks": {"1": {"quote": "<words of answer 1 that meet criterion 1>", "met": true}, '
                  '"2": {"quote": "", "met": false}}')
        per_criterion = "in checks one {quote, met} object per criterion, under the criterion's number"
        reminder = f"each with checks for criteria 1 to {n_criteria}"
    else:
        entry += ', "judgement": [true, false]'
        per_criterion = "one true/false per criterion in judgement"
        reminder = f"each with a judgement of exactly {n_criteria} true/false values"
    if read_first:
        reminder = reminder.replace("each with", "each with its final_result first, then", 1)
    return {
        "reading_rules": "\nHow to write each entry\n" + "\n".join(rules) + "\n",
        "reply_example": '{"answers": [{' + entry + "}, ...]}",
        "reply_rules": (
            "Give one entry per answer, with answer_index as numbered"
            + (", then its final_result" if read_first else "")
            + f", then {per_criterion}, in the order the criteria are listed (the example shows 2 criteria)."
        ),
        "reply_reminder": reminder + ".",
    }


def verifier_messages(
    question: Any,
    rubric: Rubric | Sequence[str],
    answers: Sequence[str],
    boundary: str,
    *,
    evidence: bool = False,
    read_first: bool = False,
    prompts_dir: Any = None,
) -> list[dict[str, str]]:
    """System + user message that show `answers` as numbered, fenced answers (points are not shown).

    With `evidence` / `read_first` off the messages are those of the DESIGN.md contract (verifier_system.txt,
    verifier_user.txt); with either on, the `_fields` templates ask for the extra fields (`verdict_schema`).
    `question` is a Task (its family's templates; a conversation is shown fenced, as data) or a bare question string
    (the top-level templates); `prompts_dir` (RunConfig.prompts_dir) may replace any template.
    """
    criteria = _criteria_list(rubric)
    family = prompts.family_of(question)
    values = {
        "boundary": boundary,
        "question": prompts.question_block(question, boundary),
        "n_criteria": len(criteria),
        "criteria": "\n".join(f"{k}. {text}" for k, text in enumerate(criteria, start=1)),
        "n_answers": len(answers),
        "answers": "\n\n".join(fence(f"ANSWER-{i}", a, boundary) for i, a in enumerate(answers, start=1)),
    }
    system, user = "verifier_system.txt", "verifier_user.txt"
    if evidence or read_first:
        values.update(_reply_parts(len(criteria), evidence=evidence, read_first=read_first))
        system, user = "verifier_system_fields.txt", "verifier_user_fields.txt"
    return [
        {"role": "system", "content": prompts.render(system, values, family, prompts_dir)},
        {"role": "user", "content": prompts.render(user, values, family, prompts_dir)},
    ]


def _feedback(
    error: VerdictError, finish_reason: str | None, n_answers: int, n_criteria: int,
    *, evidence: bool = False, read_first: bool = False,
) -> str:
    lines = ["That reply cannot be used:"] + [f"- {p}" for p in error.problems]
    if finish_reason == "length":
        lines.append("- the reply was cut off by the length limit: write only the JSON, nothing else")
    if evidence or read_first:
        each = _reply_parts(n_criteria, evidence=evidence, read_first=read_first)["reply_reminder"]
    else:
        each = f"each with a judgement of exactly {n_criteria} true/false values."
    lines.append(
        f"Reply again with only the JSON object: exactly {n_answers} entries (answer_index 1 to {n_answers}), {each}"
    )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# Soft verdicts: the probability of "true", read from the endpoint's token log-probabilities

SOFT_TOP_LOGPROBS = 20  # the OpenAI maximum, and llama-server's default
# The verdict is the reply's first word; two more tokens leave room for a blank or a quote before it. The model's
# end-of-turn token after the word usually ends the reply first.
SOFT_MAX_TOKENS = 3
_YES_WORDS = frozenset({"true", "yes"})
_NO_WORDS = frozenset({"false", "no"})
_WORD_EDGES = " \t\r\n\"'`*_.,:;!()[]{}<>"
NO_LOGPROBS = "the endpoint returned no log-probabilities"


def verdict_word(token: str) -> bool | None:
    """True for a token that spells "true" or "yes", False for "false" or "no", in any case and with blanks, quotes
    or punctuation around it; None for anything else (part of a word included: "tr" is no verdict).

    >>> verdict_word(" True"), verdict_word('"no'), verdict_word("tr"), verdict_word("\\n")
    (True, False, None, None)
    """
    word = token.strip(_WORD_EDGES).lower()
    if word in _YES_WORDS:
        return True
    if word in _NO_WORDS:
        return False
    return None


def verdict_probability(logprobs: Sequence[dict] | None) -> float | None:
    """p(true) of a soft-verdict reply (`ChatResult.logprobs`): P(yes-like) / (P(yes-like) + P(no-like)) over the
    top log-probabilities of the first generated position that holds any verdict word, every case and spacing
    variant summed ("true", " True", "yes", ...). None when no position does, or there are no log-probabilities.

    >>> lp = math.log
    >>> top = [["true", lp(0.6)], [" True", lp(0.1)], ["false", lp(0.2)], ["The", lp(0.1)]]
    >>> round(verdict_probability([{"token": "true", "logprob": lp(0.6), "top": top}]), 4)
    0.7778
    >>> verdict_probability([{"token": "The", "logprob": lp(0.9), "top": [["The", lp(0.9)]]}]) is None
    True
    """
    for position in logprobs or []:
        yes = no = 0.0
        seen: set[str] = set()
        # The generated token too: an endpoint may list fewer alternatives than asked, or none.
        candidates = [*(position.get("top") or []), [position.get("token"), position.get("logprob")]]
        for token, logprob in candidates:
            if not isinstance(token, str) or token in seen or not isinstance(logprob, (int, float)):
                continue
            seen.add(token)
            verdict = verdict_word(token)
            if verdict is True:
                yes += math.exp(logprob)
            elif verdict is False:
                no += math.exp(logprob)
        if yes + no > 0:
            return yes / (yes + no)
    return None


def soft_verifier_messages(
    question: Any, criterion: str, answer: str, boundary: str, *, prompts_dir: Any = None
) -> list[dict[str, str]]:
    """System + user message asking whether one fenced answer meets one criterion, the verdict as the first word.

    Everything before the criterion (instructions, question, fenced answer) is the same for all of an answer's
    criteria, and the instructions and question for all answers of a group, so a server's prompt cache reuses it.
    """
    family = prompts.family_of(question)
    values = {
        "boundary": boundary,
        "question": prompts.question_block(question, boundary),
        "answer": fence("ANSWER", answer, boundary),
        "criterion": criterion,
    }
    return [
        {"role": "system", "content": prompts.render("verifier_soft_system.txt", values, family, prompts_dir)},
        {"role": "user", "content": prompts.render("verifier_soft_user.txt", values, family, prompts_dir)},
    ]


# Endpoints (base_url, model) seen to return no log-probabilities: named once in the log, then asked in batches.
_NO_LOGPROBS: set[tuple[str, str]] = set()
_NO_LOGPROBS_LOCK = threading.Lock()


def _endpoint_of(client: Any) -> tuple[str, str]:
    endpoint = getattr(client, "endpoint", None)
    return str(getattr(endpoint, "base_url", "?")), str(getattr(endpoint, "model", "?"))


def _without_logprobs(endpoint: tuple[str, str]) -> None:
    with _NO_LOGPROBS_LOCK:
        if endpoint in _NO_LOGPROBS:
            return
        _NO_LOGPROBS.add(endpoint)
    logger.warning("verifier endpoint %s (model %r) returns no token log-probabilities: soft verdicts fall back to "
                "true/false verdicts there (the batched call), and the verdict records say so", *endpoint)


class _SoftCells:
    """One answer's soft verdicts so far: a probability per criterion, or the boolean that stood and why."""

    def __init__(self, m: int) -> None:
        self.probabilities: list[float | None] = [None] * m
        self.booleans: list[bool | None] = [None] * m
        self.reasons: list[str | None] = [None] * m

    @property
    def unread(self) -> list[int]:
        return [k for k, (p, b) in enumerate(zip(self.probabilities, self.booleans)) if p is None and b is None]


async def _soft_answer(
    question: Any, rubric: Rubric, text: str, boundary: str, client: Any, config: Any, record: _Call, fatal: list[str]
) -> _SoftCells:
    """One answer's criteria asked one after another, as one of the client's sequences (`LLMClient.sequence`), so
    that each request finds the answer's prompt in the server's cache."""
    criteria = _criteria_list(rubric)
    cells = _SoftCells(len(criteria))
    sequence = getattr(client, "sequence", None)
    async with sequence() if sequence is not None else contextlib.nullcontext():
        await _soft_criteria(question, criteria, text, boundary, client, config, record, fatal, cells)
    return cells


async def _soft_criteria(
    question: Any, criteria: Sequence[Any], text: str, boundary: str, client: Any, config: Any, record: _Call,
    fatal: list[str], cells: _SoftCells,
) -> None:
    from .llm import LLMError

    endpoint = _endpoint_of(client)
    prompts_dir = getattr(config, "prompts_dir", None)
    for k, criterion in enumerate(criteria):
        if fatal:
            break
        if endpoint in _NO_LOGPROBS:
            cells.reasons[k] = NO_LOGPROBS
            continue
        record.calls += 1
        try:
            result = await client.chat(
                soft_verifier_messages(question, criterion, text, boundary, prompts_dir=prompts_dir),
                temperature=0.0, max_tokens=SOFT_MAX_TOKENS, top_logprobs=SOFT_TOP_LOGPROBS,
            )
        except LLMError as exc:
            kind = getattr(exc, "kind", "error")
            message = f"soft verdict, criterion {k + 1}: {kind} error: {exc}"
            record.errors.append(message)
            if kind in FATAL_LLM_KINDS:
                fatal.append(message)
            cells.reasons[k] = f"the call failed ({kind})"
            continue
        record.raw.append(result.text)
        if result.logprobs is None:
            _without_logprobs(endpoint)
            reason = NO_LOGPROBS
        else:
            p = verdict_probability(result.logprobs)
            if p is not None:
                cells.probabilities[k] = p
                continue
            reason = f"no true/false token among the top {SOFT_TOP_LOGPROBS} log-probabilities"
        words = result.text.split()
        cells.booleans[k] = verdict_word(words[0]) if words else None
        cells.reasons[k] = reason


def soft_result(cells: _SoftCells, batched: Sequence[bool] | None) -> tuple[list[bool] | None, dict[str, Any]]:
    """One answer's verdicts and notes from its soft reading, the batched call's booleans filling what the reading
    left open. Notes: `verdict_kind` ("soft": every criterion a probability; "boolean": none; "mixed"),
    `probabilities` (soft and mixed; a boolean that stood counts 0 or 1), `boolean_criteria` (mixed: the criteria
    whose boolean stood, as indices) and `fallback_reason`. Verdicts None when a criterion has neither."""
    booleans = list(cells.booleans)
    for k in cells.unread:
        if batched is not None:
            booleans[k] = bool(batched[k])
    if any(p is None and b is None for p, b in zip(cells.probabilities, booleans)):
        return None, {}
    values = [round(p, 6) if p is not None else float(b) for p, b in zip(cells.probabilities, booleans)]
    verdicts = [v >= 0.5 for v in values]
    stood = [k for k, p in enumerate(cells.probabilities) if p is None]
    if not stood:
        return verdicts, {"verdict_kind": "soft", "probabilities": values}
    reason = "; ".join(dict.fromkeys(cells.reasons[k] for k in stood if cells.reasons[k]))
    if len(stood) == len(values):
        return verdicts, {"verdict_kind": "boolean", "fallback_reason": reason}
    return verdicts, {"verdict_kind": "mixed", "probabilities": values, "boolean_criteria": stood,
                      "fallback_reason": reason}


# ---------------------------------------------------------------------------------------------------------------
# Verification of one group


class _Call:
    """Replies, errors and the call count of one batch of answers (kept apart so concurrent batches stay ordered)."""

    def __init__(self) -> None:
        self.raw: list[str] = []
        self.errors: list[str] = []
        self.calls = 0


def _levers(config: Any) -> tuple[int, bool, bool]:
    return (
        int(getattr(config, "verifier_samples", 1) or 1),
        bool(getattr(config, "verifier_evidence", False)),
        bool(getattr(config, "verifier_read_first", False)),
    )


def reply_budget(config: Any, n: int, m: int) -> int:
    """max_tokens of one Verifier call on n answers x m criteria: `verifier_max_tokens` for the verdicts, plus room
    for the lever fields (a quote per criterion, a final result per answer), so that asking for evidence does not
    get replies cut off. The server's slot context is sized with it (`offline.serve.slot_context_need`)."""
    _, evidence, read_first = _levers(config)
    budget = getattr(config, "verifier_max_tokens", 1024)
    if evidence:
        budget += n * m * (MAX_QUOTE_CHARS // 8)
    if read_first:
        budget += n * (MAX_FINAL_RESULT_CHARS // 3)
    return budget


async def _judge(
    question: Any,
    rubric: Rubric,
    keys: list[Key],
    texts: dict[Key, str],
    client: Any,
    config: Any,
    seed: int,
    log: _Call,
    fatal: list[str],
    sample: int = 0,
) -> dict[Key, dict[str, Any]]:
    """One Verifier sample of one batch of answers: key -> parsed entry (`parse_verdict_entries`)."""
    from .llm import LLMError

    _, evidence, read_first = _levers(config)
    n, m = len(keys), len(rubric.criteria)
    answers = [texts[k] for k in keys]
    boundary = make_boundary(seed, prompts.question_text(question), _criteria_list(rubric), answers)
    messages = verifier_messages(question, rubric, answers, boundary, evidence=evidence, read_first=read_first,
                                 prompts_dir=getattr(config, "prompts_dir", None))
    schema = verdict_schema(n, m, evidence=evidence, read_first=read_first)
    label = ("batch of " + str(n) if n > 1 else "single answer") + (f", sample {sample + 1}" if sample else "")
    # Sample 0 is the plain call (its cache entries are those of a run without samples); later samples are drawn
    # at their own temperature with their own seed, so they are different judgements and replay from the cache.
    temperature = getattr(config, "verifier_temperature", 0.0)
    if sample:
        temperature = getattr(config, "verifier_sample_temperature", 0.7)

    def parse(text: str) -> list[dict[str, Any]]:
        return parse_verdict_entries(text, n, m, evidence=evidence, read_first=read_first)

    for attempt in range(getattr(config, "verify_attempts", 2)):
        if fatal:
            break
        log.calls += 1
        try:
            result = await client.chat(
                messages,
                temperature=temperature,
                max_tokens=reply_budget(config, n, m),
                json_schema=schema,
                schema_name="verdicts",
                sample_index=attempt + 100 * sample,
                accept=parse,
            )
        except LLMError as exc:
            message = f"{label}, attempt {attempt + 1}: {getattr(exc, 'kind', 'error')} error: {exc}"
            log.errors.append(message)
            if getattr(exc, "kind", None) in FATAL_LLM_KINDS:
                fatal.append(message)
            continue
        log.raw.append(result.text)
        try:
            entries = parse(result.text)
        except VerdictError as exc:
            log.errors.append(f"{label}, attempt {attempt + 1}: {exc}")
            feedback = _feedback(exc, result.finish_reason, n, m, evidence=evidence, read_first=read_first)
            messages = messages + [
                {"role": "assistant", "content": result.text},
                {"role": "user", "content": feedback},
            ]
            continue
        return dict(zip(keys, entries))
    return {}


def _supported(judgement: list[bool], quotes: list | None, shown: str, boundary_free: str) -> list[bool]:
    """Evidence on one sample's verdicts: a True stays True only when its quote occurs in the answer as shown."""
    from .levers import LeverVerdicts, apply_evidence

    plain = apply_evidence(judgement, quotes, shown)
    if not plain.flipped or boundary_free == shown:
        return plain
    # The Verifier read the fenced answer, where marker runs are neutralised; a quote of that form counts too.
    fenced = apply_evidence(judgement, quotes, boundary_free)
    verdicts = [a or b for a, b in zip(plain, fenced)]
    return LeverVerdicts(verdicts, flipped=[k for k in plain.flipped if not verdicts[k]])


def combine_samples(
    entries: Sequence[dict[str, Any]], shown: str, *, evidence: bool, fenced: str | None = None
) -> tuple[list[bool] | None, dict[str, Any]]:
    """One answer's verdicts from its parsed samples: evidence on each sample, then the majority per criterion.

    `entries`: the answer's entries from the samples that judged it (`parse_verdict_entries`; failed samples are
    simply absent). `shown`: the answer as the Verifier saw it (`clean_answer`), `fenced` the same after fence
    neutralisation. Returns (verdicts, notes); verdicts None when no sample judged the answer. Notes say what the
    levers did, in criterion indices: `n_samples`, `votes` (True votes per criterion after evidence), `quotes` and
    `final_result` (of the first sample), `evidence_flipped` (criteria the evidence rule turned False, compared
    with the same majority without it).
    """
    from .levers import majority_per_criterion

    if not entries:
        return None, {"n_samples": 0}
    raw = [list(e["judgement"]) for e in entries]
    if evidence:
        kept = [list(_supported(e["judgement"], e.get("quotes"), shown, fenced or shown)) for e in entries]
    else:
        kept = raw
    (verdicts,) = majority_per_criterion([[j] for j in kept]) if len(kept) > 1 else [kept[0]]
    notes: dict[str, Any] = {"n_samples": len(entries)}
    if len(entries) > 1:
        notes["votes"] = [sum(j[k] for j in kept) for k in range(len(verdicts))]
    if evidence:
        (before,) = majority_per_criterion([[j] for j in raw]) if len(raw) > 1 else [raw[0]]
        notes["quotes"] = entries[0].get("quotes")
        notes["evidence_flipped"] = [k for k, (a, b) in enumerate(zip(before, verdicts)) if a != b]
    finals = [e.get("final_result") for e in entries if e.get("final_result") is not None]
    if finals:
        notes["final_result"] = finals[0]
        if len(finals) > 1:
            notes["final_results"] = finals
    return list(verdicts), notes


def needs_written_replies(config: Any) -> bool:
    """Whether a Verifier lever asks for written or sampled replies (evidence, read-first, several samples), which
    a verdict read from one token's probabilities cannot give."""
    n_samples, evidence, read_first = _levers(config)
    return n_samples > 1 or evidence or read_first


def verifier_mode_for(config: Any, question: Any, teacher_refs: Sequence[str] | None = None) -> str:
    """The mode ("batched" or "soft") one group is judged in: `config.verifier_mode` unless it is "auto".

    "auto" reads soft verdicts wherever the Verifier decides the ranking: task families with no checkable final
    answer (open-ended), and checkable groups whose result code will not decide — the consensus check is off, or
    the group's `teacher_refs` reach no strict majority (`majority.check_target`). It keeps the batched matrix
    where the consensus check decides the result (it carries the ranking there, and the batched call is the cheaper
    one), and where the family is unknown and no references are given (a bare question). The levers that need
    written or sampled replies (evidence, read-first, several samples) keep "auto" batched.
    """
    mode = getattr(config, "verifier_mode", "batched")
    if mode != "auto":
        return mode
    if needs_written_replies(config):
        return "batched"
    family = getattr(question, "family", None)
    if family is not None and family not in CHECKABLE_FAMILIES:
        return "soft"
    if teacher_refs is None:
        return "batched"
    if not getattr(config, "consensus_check", False):
        return "soft"
    _, value, _ = check_target(teacher_refs, family=family, choices=getattr(question, "choices", None),
                               strip_think=getattr(config, "strip_thinking", True))
    return "batched" if value is not None else "soft"


async def verify_group_async(
    question: Any,
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
    n_samples, evidence, read_first = _levers(config)
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

    fatal: list[str] = []
    soft = verifier_mode_for(config, question, teacher_refs) == "soft"
    soft_read: dict[Key, _SoftCells] = {}
    soft_logs: list[_Call] = []
    batched = shown
    if soft and shown:
        # One boundary for the group, so that every answer's requests share the instructions and the question.
        boundary = make_boundary(seed, prompts.question_text(question), _criteria_list(rubric),
                                 [texts[k] for k in shown])
        soft_logs = [_Call() for _ in shown]
        read = await asyncio.gather(*(
            _soft_answer(question, rubric, texts[k], boundary, client, config, lg, fatal)
            for k, lg in zip(shown, soft_logs)
        ))
        soft_read = dict(zip(shown, read))
        batched = [k for k in shown if soft_read[k].unread]

    size = getattr(config, "max_answers_per_call", 12)
    chunks = [batched[i : i + size] for i in range(0, len(batched), size)]
    jobs = [(c, s) for c in chunks for s in range(n_samples)]
    batch_logs = [_Call() for _ in jobs]
    results = await asyncio.gather(
        *(
            _judge(question, rubric, c, texts, client, config, seed, log, fatal, sample=s)
            for (c, s), log in zip(jobs, batch_logs)
        )
    )
    judged: dict[Key, list[dict[str, Any]]] = {}
    for r in results:
        for key, entry in r.items():
            judged.setdefault(key, []).append(entry)

    # A batch can fail because of one answer (too long, confusing); asking one at a time isolates it. An answer
    # that some samples judged keeps the majority of those; only one that no sample judged is asked again.
    missing = [k for k in batched if k not in judged]
    singles_jobs = [(k, s) for k in missing for s in range(n_samples)] if len(batched) > 1 else []
    single_logs = [_Call() for _ in singles_jobs]
    if single_logs and not fatal:
        singles = await asyncio.gather(
            *(
                _judge(question, rubric, [k], texts, client, config, seed, log, fatal, sample=s)
                for (k, s), log in zip(singles_jobs, single_logs)
            )
        )
        for r in singles:
            for key, entry in r.items():
                judged.setdefault(key, []).append(entry)

    levers_on = n_samples > 1 or evidence or read_first
    notes: dict[Key, dict[str, Any]] = {}
    for src, i, why in skipped if soft else []:
        notes[(src, i)] = {"verdict_kind": "boolean", "fallback_reason": f"not judged ({why}): all false"}
    for key in shown:
        if key in soft_read:
            entries = judged.get(key)
            verdicts[key], notes[key] = soft_result(soft_read[key], entries[0]["judgement"] if entries else None)
            continue
        if key not in judged:
            continue
        if not levers_on:
            verdicts[key] = list(judged[key][0]["judgement"])
            continue
        # Marker runs are neutralised alike in every chunk's fence (the boundary token differs per chunk: left out).
        verdicts[key], notes[key] = combine_samples(
            judged[key], texts[key], evidence=evidence, fenced=neutralise(texts[key], "")
        )

    logs = soft_logs + batch_logs + single_logs
    read_cells = [c for k, c in soft_read.items() if verdicts.get(k) is not None]  # answers that got a verdict
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
        teacher_notes=[notes.get(("teacher", i), {}) for i in range(len(teacher_refs))] if levers_on or soft else [],
        student_notes=[notes.get(("student", j), {}) for j in range(len(rollouts))] if levers_on or soft else [],
        soft_cells=sum(p is not None for c in read_cells for p in c.probabilities),
        boolean_cells=sum(p is None for c in read_cells for p in c.probabilities),
    )


def verify_group(
    question: Any,
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
