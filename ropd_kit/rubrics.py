"""ROPD stage 3: rubric induction (the Rubricator).

In: a task's question, its K teacher references and (some of) the group's student rollouts. Out: a `Rubric` of
binary, self-contained criteria with integer points, which scores every rollout of that group (cross-rollout
sharing: one rubric per task and step). The Rubricator knows which texts are references and which are attempts,
because contrasting them is its job; only the Verifier (verify.py) is kept blind. In the other mode
(`RunConfig.rubric_source="reference_consensus"`) it sees the references alone and writes the key points most of
them agree on: criteria grounded in what the teacher says consistently, none written from an attempt's text.

`parse_rubric` turns model output into a validated `Rubric` or raises `RubricError` with a reason the model (and a
person) can act on; `induce_rubric_async` asks, parses, and feeds the reason back on failure, and never raises for
model misbehaviour: the outcome records the attempts, every raw output and the last error.
"""

from __future__ import annotations

import re
import string
from typing import Any, Sequence

from pydantic import BaseModel, Field, field_validator, model_validator

from . import prompts
from .judge_text import clean_answer, fence, find_json, letter_label, make_boundary, strip_thinking

POINTS_RANGE = (1, 5)
PITFALL_RANGE = (-2, -1)
# Endpoint errors that the next attempt cannot fix (a bad key, no server, an endpoint whose circuit breaker is open,
# see limits.py): stop instead of spending the remaining attempts on them.
FATAL_LLM_KINDS = frozenset({"auth", "connection", "circuit_open"})


class RubricError(ValueError):
    """Model output that is not a usable rubric; `problems` lists every reason (the message joins them).
    `repeats_only`: the reply was usable but for copies of its own criteria, which left too few."""

    def __init__(self, problems: str | Sequence[str], *, repeats_only: bool = False):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.repeats_only = repeats_only
        super().__init__("; ".join(self.problems))


class Criterion(BaseModel):
    """One binary check of an answer, worth `points` (1-5; -2/-1 for a pitfall, which subtracts when met)."""

    id: str
    text: str
    points: int = Field(strict=True)
    category: str = "general"

    @field_validator("id", "text")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("must not be empty")
        return v

    @field_validator("category")
    @classmethod
    def _category(cls, v: str) -> str:
        return v.strip() or "general"

    @field_validator("points")
    @classmethod
    def _points(cls, v: int) -> int:
        if not (POINTS_RANGE[0] <= v <= POINTS_RANGE[1] or PITFALL_RANGE[0] <= v <= PITFALL_RANGE[1]):
            raise ValueError(f"points {v} is outside 1-5 (or -2..-1 for a pitfall)")
        return v


class Rubric(BaseModel):
    """The criteria that score one group, in the order the Verifier judges them."""

    criteria: list[Criterion] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> "Rubric":
        seen: dict[str, int] = {}
        for k, c in enumerate(self.criteria, start=1):
            key = c.id.lower()
            if key in seen:
                raise ValueError(f"duplicate criterion id {c.id!r} (criteria {seen[key]} and {k})")
            seen[key] = k
        return self

    @property
    def points(self) -> list[int]:
        return [c.points for c in self.criteria]

    @property
    def ids(self) -> list[str]:
        return [c.id for c in self.criteria]

    @property
    def total_points(self) -> int:
        """The denominator of the reward: the sum of the positive points (pitfalls only subtract)."""
        return sum(p for p in self.points if p > 0)

    @property
    def has_pitfalls(self) -> bool:
        return any(p < 0 for p in self.points)

    def to_record(self) -> dict[str, Any]:
        """`{"criteria": [...]}`: the model-facing JSON and the `criteria` field of rubrics.jsonl."""
        return {"criteria": [c.model_dump() for c in self.criteria]}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "Rubric":
        """Rebuild from `to_record()` output or a rubrics.jsonl record."""
        return cls(criteria=record["criteria"])


class RubricOutcome(BaseModel):
    """What one induction produced. `rubric` is None when every attempt failed; `error` then says why."""

    rubric: Rubric | None
    attempts: int
    raw: list[str] = Field(default_factory=list)
    error: str | None = None
    errors: list[str] = Field(default_factory=list, description="The reason each failed attempt was rejected.")
    repairs: list[str] = Field(default_factory=list, description="What parsing changed in the accepted rubric.")


# ---------------------------------------------------------------------------------------------------------------
# Parsing


def _criteria_object(value: Any) -> list | None:
    """The criteria list of `{"criteria": [...]}` (also nested as `{"rubric": {"criteria": [...]}}`)."""
    if isinstance(value, dict):
        if isinstance(value.get("rubric"), dict):
            return _criteria_object(value["rubric"])
        criteria = value.get("criteria")
        return criteria if isinstance(criteria, list) else None
    return None


def _bare_criteria(value: Any) -> list | None:
    """A bare list of criterion objects (each with text and points of some spelling)."""
    if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        if all(("points" in item or "weight" in item) for item in value):
            return value
    return None


def _points_value(raw: Any) -> int | str:
    """An int, or a reason why `raw` is not one (the caller puts the criterion's name in front)."""
    if isinstance(raw, bool) or raw is None:
        return f"points {raw!r} is not a whole number"
    if isinstance(raw, str):
        text = raw.strip()
        try:
            raw = float(text) if any(ch in text for ch in ".eE") else int(text)
        except ValueError:
            return f"points {raw!r} is not a number"
    if isinstance(raw, float):
        if not raw.is_integer():
            return f"points {raw} is not a whole number"
        raw = int(raw)
    if not isinstance(raw, int):
        return f"points {raw!r} is not a number"
    return raw


# Small models copy the prompt's format example ("<one concrete check>", "...") instead of writing a check.
_PLACEHOLDER = re.compile(r"^(<[^<>]*>|\.\.\.|…|\[[^\[\]]*\]|todo|tbd|n/?a)$", re.IGNORECASE)
_PROMPT_PLACEHOLDERS = ("<value>", "<one concrete check>", "<another check>", "<letter>", "<option text>")
# A criterion that points at texts the Verifier never sees cannot be judged blind ("same as the reference").
_POINTS_ELSEWHERE = re.compile(
    r"\breference (answer|solution|response)s?\b"
    r"|\b(same|match(es)?|agrees? with|as in|like|as) (the |a |any )?references?\b"
    r"|\breferences? [A-Z]\b"
    r"|\bthe (other )?attempts?\b",
)


# A positive criterion phrased as an absence ("Does not mention ...", "Avoids ...") is met by an empty or vague
# answer as well as by a good one, so it rewards saying nothing. Only the head of the criterion is read: the answer
# (optionally named, with an adverb) followed by a negated or avoiding verb. A negation later in the sentence is
# content, not an absence ("Says not to move the pan", "Warns that the dose must not exceed 4 g", "States that the
# offer does not include insurance"), and so are "not only", "no more than" and the like.
_ANSWER_SUBJECT = (r"(?:(?:the|this|an?|each|its|your)\s+)?"
                   r"(?:answer|reply|response|attempt|solution|explanation|advice|assistant|model|text|output)\s+"
                   r"|it\s+")
_NOT_ABSENCE = r"(?!\s+(?:only|just|merely|simply)\b)"
_ABSENCE_HEAD = re.compile(
    r"^[\s\"'“‘(\-*]*(?:" + _ANSWER_SUBJECT + r")?(?:\w+ly\s+)?"
    r"(?:(?:does|do|did|should|must|would|will)\s*n[o']t\b" + _NOT_ABSENCE
    + r"|(?:doesn|don|didn|shouldn|mustn|wouldn|won)['’]t\b" + _NOT_ABSENCE
    + r"|not\b" + _NOT_ABSENCE
    + r"|never\b"
    r"|avoid(?:s|ing)?\b|refrain(?:s|ing)?\s+from\b|fail(?:s|ing)?\s+to\b|lack(?:s|ing)?\b"
    r"|(?:is\s+|are\s+|stays\s+|remains\s+)?free\s+(?:of|from)\b"
    # "Gives no ..." is an absence; "States no fee is due" and "Recommends no driving" say something, so only verbs
    # that cannot take a clause stand before "no".
    r"|(?:(?:contains|includes|has|makes|gives|offers|provides|uses|shows)\s+)?"
    r"no\b(?![-‑])(?!\s+(?:more|less|fewer|later|longer|earlier|sooner|higher|lower|greater)\s+than\b))",
    re.IGNORECASE,
)


def is_absence(text: str) -> bool:
    """Whether a criterion's text asks for something the answer leaves out ("Does not mention ...", "Avoids ...",
    "Never suggests ...", "Contains no ...") rather than something it does. Conservative: only the head of the
    sentence is read, so a warning the answer gives ("Says not to ...", "Warns against ...") is not an absence.

    >>> is_absence("The attempt does not mention the steps to stop the bleeding"), is_absence("Says not to move it")
    (True, False)
    """
    return bool(_ABSENCE_HEAD.match(text))


def absence_problem(cid: str, text: str, allow_pitfalls: bool) -> str:
    """The reason sent back for a positive criterion phrased as an absence, with what to write instead."""
    reason = (f"criterion {cid}: {text.strip()!r} gives positive points for something an answer leaves out, so an "
              "empty or vague answer meets it too; state what a good answer does instead (for example "
              "'Warns against ...', 'Says to ...', 'States ...')")
    if allow_pitfalls:
        reason += ("; or, if it names a mistake, make it a pitfall that describes the mistake itself "
                   "('Recommends ...') with -1 or -2 points")
    return reason


def _range_text(allow_pitfalls: bool) -> str:
    return "1-5, or -2/-1 for a pitfall" if allow_pitfalls else "1-5"


def _criterion(
    item: Any, k: int, allow_pitfalls: bool, problems: list[str], refuse_absences: bool = False
) -> dict | None:
    if not isinstance(item, dict):
        problems.append(f"criterion {k} is {type(item).__name__}, not an object with id/text/points")
        return None
    raw_id = item.get("id")
    cid = str(raw_id).strip() if raw_id is not None and str(raw_id).strip() else f"c{k}"
    name = f"criterion {cid}"
    text = item.get("text", item.get("criterion", item.get("description")))
    ok = True
    if not isinstance(text, str) or not text.strip():
        problems.append(f"{name}: text is empty")
        ok = False
    elif _PLACEHOLDER.match(text.strip()) or any(p in text.lower() for p in _PROMPT_PLACEHOLDERS):
        problems.append(f"{name}: text {text.strip()!r} contains a placeholder; write the actual check for this task")
        ok = False
    elif _POINTS_ELSEWHERE.search(text):
        problems.append(
            f"{name}: text {text.strip()!r} refers to texts the grader does not see; "
            "state the concrete value, fact or step instead"
        )
        ok = False
    if "points" not in item and "weight" not in item:
        problems.append(f"{name}: points is missing")
        return None
    points = _points_value(item.get("points", item.get("weight")))
    if isinstance(points, str):
        problems.append(f"{name}: {points}")
        return None
    if points == 0:
        problems.append(f"{name}: points 0 is not allowed (use {_range_text(allow_pitfalls)})")
        ok = False
    elif not (
        POINTS_RANGE[0] <= points <= POINTS_RANGE[1]
        or (allow_pitfalls and PITFALL_RANGE[0] <= points <= PITFALL_RANGE[1])
    ):
        extra = "" if allow_pitfalls or points > 0 else " (negative pitfall points are switched off)"
        problems.append(f"{name}: points {points} is outside {_range_text(allow_pitfalls)}{extra}")
        ok = False
    if ok and refuse_absences and points > 0 and is_absence(text):
        problems.append(absence_problem(cid, text, allow_pitfalls))
        ok = False
    category = item.get("category")
    category = str(category).strip() if category is not None and str(category).strip() else "general"
    if not ok:
        return None
    return {"id": cid, "text": text.strip(), "points": points, "category": category}


def parse_rubric(
    text: str,
    *,
    allow_pitfalls: bool = False,
    min_criteria: int = 1,
    max_criteria: int = 12,
    refuse_absences: bool = False,
) -> Rubric:
    """The rubric in a model's reply: `{"criteria": [{"id", "text", "points", "category"}, ...]}`.

    Accepted around it: prose, ```json fences, `</think>` reasoning, trailing commas, points written as "3", a bare
    list of criteria, "criterion"/"description" for text, "weight" for points, a missing id (becomes c<position>).
    Repaired: a criterion whose text repeats an earlier one word for word is dropped (small models loop; a repeat
    would count its points twice). `parse_rubric_with_repairs` also says what was dropped.
    Rejected, each with the criterion named: points outside 1-5 (or -2/-1 with `allow_pitfalls`), 0 points,
    fractional points, empty text, duplicate ids (compared stripped and lower-cased), fewer than `min_criteria` or
    more than `max_criteria` distinct criteria, a rubric without positive points, placeholder text copied from the
    prompt ("<one concrete check>", "..."), text that points at the reference answers or attempts (the Verifier is
    blind to them), and with `refuse_absences` a positive criterion phrased as an absence (`is_absence`: an empty
    answer would meet it). All problems are reported at once.
    """
    return parse_rubric_with_repairs(
        text, allow_pitfalls=allow_pitfalls, min_criteria=min_criteria, max_criteria=max_criteria,
        refuse_absences=refuse_absences,
    )[0]


def parse_rubric_with_repairs(
    text: str,
    *,
    allow_pitfalls: bool = False,
    min_criteria: int = 1,
    max_criteria: int = 12,
    refuse_absences: bool = False,
) -> tuple[Rubric, list[str]]:
    """`parse_rubric`, plus a note for every repeated criterion that was dropped."""
    body = strip_thinking(text)
    # The documented shape wins over a bare list, so that a stray "[{...}]" in prose is not taken for the rubric.
    items = find_json(body, _criteria_object)
    if items is None:
        items = find_json(body, _bare_criteria)
    if items is None:
        tail = body[body.find("{") :] if "{" in body else ""
        if tail.count("{") > tail.count("}"):
            raise RubricError("the JSON object is not complete (the reply may have been cut off by max_tokens)")
        raise RubricError('no JSON object with a "criteria" list was found in the reply')

    problems: list[str] = []
    parsed = [_criterion(item, k, allow_pitfalls, problems, refuse_absences) for k, item in enumerate(items, start=1)]

    repairs: list[str] = []
    dropped: list[tuple[str, str]] = []
    first_with_text: dict[str, str] = {}
    kept: list[dict | None] = []
    for c in parsed:
        if c is not None:
            same = " ".join(c["text"].lower().split())
            if same in first_with_text:
                repairs.append(f"dropped criterion {c['id']}: it repeats criterion {first_with_text[same]}")
                dropped.append((c["id"], first_with_text[same]))
                continue
            first_with_text[same] = c["id"]
        kept.append(c)

    short = len(kept) < min_criteria
    if short:
        repeats = f" ({len(repairs)} repeated ones dropped)" if repairs else ""
        problems.append(f"the rubric has {len(kept)} distinct criteria{repeats}, at least {min_criteria} are required")
        problems += [f"criterion {cid} repeats criterion {first} word for word" for cid, first in dropped]
    if len(kept) > max_criteria:
        problems.append(f"the rubric has {len(kept)} criteria, at most {max_criteria} are allowed")
    seen: set[str] = set()
    for c in kept:
        if c is None:
            continue
        if c["id"].lower() in seen:
            problems.append(f"duplicate criterion id {c['id']!r}: every criterion needs its own id")
        seen.add(c["id"].lower())
    valid = [c for c in kept if c is not None]
    if valid and len(valid) == len(kept) and not any(c["points"] > 0 for c in valid):
        problems.append("the rubric has no criterion with positive points")
    if problems:
        # Copies alone: the shortfall and one line per copy are every problem found.
        raise RubricError(problems, repeats_only=short and bool(dropped) and len(problems) == 1 + len(dropped))
    return Rubric(criteria=valid), repairs


# ---------------------------------------------------------------------------------------------------------------
# The Rubricator prompt and the JSON schema for constrained decoding


def rubric_schema(*, allow_pitfalls: bool = False, min_criteria: int = 1, max_criteria: int = 12) -> dict[str, Any]:
    """JSON schema of the rubric for servers that constrain decoding (llama-server, OpenAI json_schema)."""
    points = list(range(POINTS_RANGE[0], POINTS_RANGE[1] + 1))
    if allow_pitfalls:
        points = list(range(PITFALL_RANGE[0], PITFALL_RANGE[1] + 1)) + points
    return {
        "type": "object",
        "properties": {
            "criteria": {
                "type": "array",
                "minItems": min_criteria,
                "maxItems": max_criteria,
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "text": {"type": "string"},
                        "points": {"type": "integer", "enum": points},
                        "category": {"type": "string"},
                    },
                    "required": ["id", "text", "points", "category"],
                    "additionalProperties": False,
                },
            }
        },
        "required": ["criteria"],
        "additionalProperties": False,
    }


RUBRIC_SCHEMA: dict[str, Any] = rubric_schema()


def load_prompt(name: str, family: str | None = None, prompts_dir: Any = None) -> string.Template:
    """A prompt template (`$name` placeholders): packaged in ropd_kit/prompts, `family`'s own version when there is
    one, or the file of `prompts_dir` that replaces it (`ropd_kit.prompts.find`)."""
    return string.Template(prompts.find(name, family, prompts_dir)[0])


_PITFALL_RULE = (
    "- Pitfalls (optional, at most two): a criterion with -1 or -2 points describes a specific mistake that\n"
    "  appears in the attempts (for example \"$example\"). It is met when the answer makes\n"
    "  that mistake, and then its points are subtracted. Use one only for a mistake you actually see."
)
# The pitfall example in each family's terms (the arithmetic wording is the one the rule always had).
_PITFALL_EXAMPLES = {
    None: "Gives 46 as the final answer",
    "math": "Drops the minus sign of the final answer",
    "multiple_choice": "Chooses option B as its final answer",
    "open_ended": "Recommends mixing bleach with an ammonia cleaner",
}


# Without attempts to look at, a pitfall is a mistake the references themselves warn against.
_CONSENSUS_PITFALL_RULE = (
    "- Pitfalls (optional, at most two): a criterion with -1 or -2 points describes a specific mistake that most\n"
    "  references warn against or rule out (for example \"$example\"). It is met when the answer makes that\n"
    "  mistake, and then its points are subtracted. Use one only for a mistake most references name."
)


def _points_rule(config: Any, family: str | None = None) -> str:
    if not getattr(config, "pitfalls", False):
        return "- Every criterion has positive points."
    example = _PITFALL_EXAMPLES.get(family, _PITFALL_EXAMPLES[None])
    rule = _CONSENSUS_PITFALL_RULE if consensus_mode(config) else _PITFALL_RULE
    return rule.replace("$example", example)


def consensus_mode(config: Any) -> bool:
    """Whether the Rubricator writes the points most teacher refs agree on, shown no rollout
    (`RunConfig.rubric_source="reference_consensus"`), instead of contrasting refs with rollouts."""
    return getattr(config, "rubric_source", "contrast") == "reference_consensus"


def shown_attempts(rollouts: Sequence[str], config: Any) -> list[str]:
    """The rollouts the Rubricator sees: the first `rubric_student_samples`, none in consensus mode."""
    return [] if consensus_mode(config) else list(rollouts)[: getattr(config, "rubric_student_samples", 4)]


def rubric_messages(
    question: Any, teacher_refs: Sequence[str], rollouts: Sequence[str], config: Any
) -> list[dict[str, str]]:
    """The Rubricator conversation: references labelled A, B, ..., at most `rubric_student_samples` attempts.

    `question` is a Task (its family picks the templates; a conversation is shown fenced, as data) or a bare
    question string (the top-level templates, as before task families). `config.prompts_dir` may replace templates.
    With `rubric_source="reference_consensus"` the templates are rubricator_consensus_system/user.txt: the
    references alone, and the criteria are the points at least `$majority` of them (more than half) agree on.
    """
    max_chars = getattr(config, "max_answer_chars", 4000)
    strip = getattr(config, "strip_thinking", True)
    refs = [clean_answer(t, max_chars=max_chars, strip_think=strip) for t in teacher_refs]
    attempts = [clean_answer(t, max_chars=max_chars, strip_think=strip) for t in shown_attempts(rollouts, config)]
    family = prompts.family_of(question)
    prompts_dir = getattr(config, "prompts_dir", None)
    boundary = make_boundary("rubricator", prompts.question_text(question), refs, attempts)
    ref_block = "\n\n".join(fence(f"REFERENCE-{letter_label(i)}", t, boundary) for i, t in enumerate(refs))
    attempt_block = "\n\n".join(fence(f"ATTEMPT-{j + 1}", t, boundary) for j, t in enumerate(attempts))
    values = {
        "min_criteria": getattr(config, "min_criteria", 4),
        "max_criteria": getattr(config, "max_criteria", 12),
        "points_rule": _points_rule(config, family),
        "boundary": boundary,
        "question": prompts.question_block(question, boundary),
        "n_references": len(refs),
        "n_attempts": len(attempts),
        "references": ref_block or "(no reference answers)",
        "attempts": attempt_block or "(no attempts shown)",
        "majority": len(refs) // 2 + 1,
    }
    names = (("rubricator_consensus_system.txt", "rubricator_consensus_user.txt") if consensus_mode(config)
             else ("rubricator_system.txt", "rubricator_user.txt"))
    return [
        {"role": "system", "content": prompts.render(names[0], values, family, prompts_dir)},
        {"role": "user", "content": prompts.render(names[1], values, family, prompts_dir)},
    ]


_NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?")


def _numbers(text: str) -> set[str]:
    """Numbers as canonical strings ("1,200.50" -> "1200.5", "48.0" -> "48")."""
    out = set()
    for raw in _NUMBER.findall(text):
        value = raw.replace(",", "").rstrip(".")
        if "." in value:
            value = value.rstrip("0").rstrip(".")
        out.add(value.lstrip("-") or "0")
    return out


def ungrounded_numbers(
    rubric: Rubric, question: str, teacher_refs: Sequence[str], rollouts: Sequence[str]
) -> list[str]:
    """Problems for criteria whose numbers (10 and above) appear nowhere in the task, the references or the attempts.

    Such a number was not taken from this task: small models copy example values from the prompt ("States the
    final answer 48" on a task whose answer is 10). Numbers below 10 are left alone ("uses at most 3 steps").
    """
    known = _numbers(question)
    for text in list(teacher_refs) + list(rollouts):
        known |= _numbers(text)
    problems = []
    for c in rubric.criteria:
        stray = sorted(n for n in _numbers(c.text) - known if float(n) >= 10)
        if stray:
            problems.append(
                f"criterion {c.id}: {', '.join(stray)} appears nowhere in the task or the answers shown; "
                "use the values of this task"
            )
    return problems


def _feedback(error: RubricError, finish_reason: str | None, config: Any) -> str:
    lines = ["That reply cannot be used as the rubric:"]
    lines += [f"- {p}" for p in error.problems]
    if finish_reason == "length":
        lines.append("- the reply was cut off by the length limit: write fewer, shorter criteria")
    lines.append(
        f"Reply again with only the corrected JSON object: {getattr(config, 'min_criteria', 4)}-"
        f"{getattr(config, 'max_criteria', 12)} criteria, unique ids, whole-number points "
        f"{_range_text(getattr(config, 'pitfalls', False))}."
    )
    return "\n".join(lines)


async def induce_rubric_async(
    question: Any, teacher_refs: Sequence[str], rollouts: Sequence[str], client: Any, config: Any
) -> RubricOutcome:
    """Ask the Rubricator for a rubric; on an unusable reply, show it the problems and ask again.

    `question`: a Task (its family picks the prompts) or a bare question string (the arithmetic-era prompts).
    Unusable: anything `parse_rubric` rejects (positive criteria phrased as absences too, with
    `absence_criteria="refuse"`), and, for numeric families (`prompts.NUMERIC_FAMILIES`, and a bare
    question), criteria citing numbers found nowhere in the task, the references or the attempts
    (`ungrounded_numbers`); an open-ended criterion may rightly name a number the task does not ("for 20 seconds").

    Up to `config.rubric_attempts` calls. An `LLMError` (endpoint failure) is recorded and retried too, except
    auth/connection errors, which end the induction at once. Never raises for model or endpoint misbehaviour.
    """
    from .llm import LLMError

    pitfalls = getattr(config, "pitfalls", False)
    min_c, max_c = getattr(config, "min_criteria", 4), getattr(config, "max_criteria", 12)
    schema = rubric_schema(allow_pitfalls=pitfalls, min_criteria=min_c, max_criteria=max_c)
    messages = rubric_messages(question, teacher_refs, rollouts, config)
    raw: list[str] = []
    errors: list[str] = []
    attempts = 0
    shown = shown_attempts(rollouts, config)
    numeric = prompts.family_of(question) in (None, *prompts.NUMERIC_FAMILIES)
    refuse_absences = getattr(config, "absence_criteria", "allow") == "refuse"

    def validated(text: str) -> tuple[Rubric, list[str]]:
        rubric, repairs = parse_rubric_with_repairs(
            text, allow_pitfalls=pitfalls, min_criteria=min_c, max_criteria=max_c, refuse_absences=refuse_absences
        )
        stray = ungrounded_numbers(rubric, prompts.question_text(question), teacher_refs, shown) if numeric else []
        if stray:
            raise RubricError(stray)
        return rubric, repairs

    for attempt in range(getattr(config, "rubric_attempts", 3)):
        attempts += 1
        try:
            result = await client.chat(
                messages,
                temperature=getattr(config, "rubricator_temperature", 0.3),
                max_tokens=getattr(config, "rubricator_max_tokens", 1024),
                json_schema=schema,
                schema_name="rubric",
                sample_index=attempt,
                accept=validated,
            )
        except LLMError as exc:
            errors.append(f"attempt {attempt + 1}: {getattr(exc, 'kind', 'error')} error: {exc}")
            if getattr(exc, "kind", None) in FATAL_LLM_KINDS:
                break
            continue
        raw.append(result.text)
        try:
            rubric, repairs = validated(result.text)
        except RubricError as exc:
            errors.append(f"attempt {attempt + 1}: {exc}")
            if exc.repeats_only:
                # Shown its own copies, a small Rubricator sends them again (0 of 6 corrected on a 1.5B model, where
                # 5 of 5 fresh samples of the same request were usable): ask again from the start instead.
                continue
            # Keep the rejected reply in the conversation so the model corrects it instead of starting over.
            messages = messages + [
                {"role": "assistant", "content": result.text},
                {"role": "user", "content": _feedback(exc, result.finish_reason, config)},
            ]
            continue
        return RubricOutcome(rubric=rubric, attempts=attempts, raw=raw, error=None, errors=errors, repairs=repairs)
    return RubricOutcome(
        rubric=None,
        attempts=attempts,
        raw=raw,
        error=errors[-1] if errors else "no attempt was made (rubric_attempts < 1)",
        errors=errors,
    )


def induce_rubric(
    question: Any, teacher_refs: Sequence[str], rollouts: Sequence[str], client: Any, config: Any
) -> RubricOutcome:
    """Sync wrapper of `induce_rubric_async` (works in a script and inside a notebook's running loop)."""
    from .llm import run_sync

    return run_sync(induce_rubric_async(question, teacher_refs, rollouts, client, config))
