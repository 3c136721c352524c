"""ROPD stage 4, after the Verifier: the consensus check, the final-result criterion decided by code.

Where a task's answer is checkable (arithmetic, math, multiple choice), the rubric's final-result criterion is not
left to the Verifier: every answer of the group (student rollouts and teacher references alike) meets it exactly
when the final answer it commits to is the one a strict majority of the teacher's own references commit to. It is
black-box-safe: only the teacher's texts are used, never a ground truth, and with no strict majority the Verifier's
verdict stands. The pipeline applies it to a group's verdicts before scoring (`pipeline.score_group`).

In: the group's rubric, its verdicts (`verify.GroupVerdicts`), the teacher references and the student rollouts, the
task's family (and options). Out: the rubric (with a final-result criterion added when it had none), the verdicts
with that criterion decided by code, and a `ConsensusOutcome` for rubrics.jsonl.

- `find_result_criterion` / `is_result_criterion` / `named_value`: which criterion checks the final result, and
  the value it names.
- `teacher_consensus` / `check_target` (from `majority`): the final answer a strict majority of the references
  agree on, and whether the check will decide a group's result (known before any verdict).
- `consensus_verdict` / `apply_consensus`: one answer's final-result verdict against that consensus.
- `consensus_check`: all of it on one group.
Answers are read as the evaluation reads them (`answers`), so that reward and evaluation agree.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

from pydantic import BaseModel

from .answers import extract_final_answer, matches, read_answer
from .judge_text import strip_thinking
from .majority import check_family, check_target
from .levers import LeverVerdicts
from .rubrics import Criterion, Rubric
from .scoring import _criteria_table
from .verify import GroupVerdicts

CONSENSUS_CRITERION_ID = "final_result"
CONSENSUS_POINTS = 5
_FORM_CATEGORIES = frozenset({"format", "formatting", "presentation", "style", "clarity", "layout"})

# Categories the Rubricator uses for "the answer is X" (its prompt suggests "correctness"), normalised as
# `_norm_category` does: lower case, runs of spaces/hyphens as "_".
RESULT_CATEGORIES = frozenset(
    {"final_answer", "answer", "result", "final_result", "final_value", "final", "correctness", "correct_answer"}
)
# Text that says the criterion checks the final result ("States the final answer 42", "The answer is 1/2").
_RESULT_TEXT = re.compile(
    r"\b(?:final|overall|end)\s+(?:numeric(?:al)?\s+)?(?:answer|result|value)\b"
    r"|\b(?:the|its|correct)\s+answer\b"
    r"|\banswer\s*(?:is|of|:|=)",
    re.IGNORECASE,
)
# Where the named value starts: after the last "answer" / "result" / "value" word.
_VALUE_AFTER = re.compile(r"\b(?:answer|result|value)\b\s*(?:is\b|of\b|:|=|as\b)?", re.IGNORECASE)


def _norm_category(category: Any) -> str:
    text = str(category or "general").strip().lower()
    return re.sub(r"[\s\-]+", "_", text) or "general"


# ---------------------------------------------------------------------------------------------------------------
# The final-result criterion


def is_result_criterion(criterion: Mapping[str, Any] | Any) -> bool:
    """Whether a criterion checks the final result: its category is one of RESULT_CATEGORIES, or its text
    speaks of the final answer/result.

    >>> is_result_criterion({"text": "States the final answer 42", "category": "reasoning"})
    True
    >>> is_result_criterion({"text": "Multiplies 6 by 7", "category": "reasoning"})
    False
    """
    c = criterion.model_dump() if hasattr(criterion, "model_dump") else criterion
    return bool(_RESULT_TEXT.search(str(c.get("text", "")))) or _norm_category(c.get("category")) in RESULT_CATEGORIES


def find_result_criterion(criteria: Any) -> int | None:
    """Index of the rubric's final-result criterion, or None when it has none.

    `criteria`: a Rubric, a rubric record (`{"criteria": [...]}`) or a list of criterion dicts. A criterion whose
    text speaks of the final answer/result ranks above one that only has a result category; among equals the one
    with more points wins, then the first.

    >>> find_result_criterion([{"id": "c1", "text": "Adds 3 and 4", "points": 2, "category": "correctness"},
    ...                        {"id": "c2", "text": "States the final answer 14", "points": 5, "category": "result"}])
    1
    """
    best: tuple[int, float, int] | None = None
    best_index = None
    for k, c in enumerate(_criteria_table(criteria)):
        rank = 2 * bool(_RESULT_TEXT.search(str(c["text"]))) + (_norm_category(c["category"]) in RESULT_CATEGORIES)
        if not rank:
            continue
        key = (rank, float(c["points"]), -k)
        if best is None or key > best:
            best, best_index = key, k
    return best_index


def named_value(text: str, family: str = "arithmetic", choices: Sequence[str] | None = None) -> str | None:
    """The value a result criterion names, read by the family's reader (`answers.read_answer`); None when it names
    none.

    The value is read after the last "answer" / "result" / "value" word when there is one (so "Multiplies 6 by 7
    to get the final answer 42" names 42, not 7), else from the whole text.

    >>> named_value("States the final answer 42 (6 times 7)")
    '42'
    >>> named_value("The final answer is 1/2"), named_value("States the final answer (1,2)", "math")
    ('1/2', '(1,2)')
    >>> named_value("Shows the working") is None
    True
    """
    text = str(text or "")
    after = list(_VALUE_AFTER.finditer(text))
    for match in reversed(after):
        value = read_answer(family, "Answer: " + text[match.end():].strip(), choices)
        if value is not None:
            return value
    return extract_final_answer(text) if family == "arithmetic" else read_answer(family, "Answer: " + text, choices)


# ---------------------------------------------------------------------------------------------------------------
# The teacher's consensus and one answer's verdict against it

def consensus_verdict(
    rollout_text: str | None,
    consensus: str | None,
    *,
    family: str = "arithmetic",
    choices: Sequence[str] | None = None,
) -> bool | None:
    """Whether a rollout's final answer is the teacher's consensus answer; None when there is no consensus.

    The rollout is checked exactly as the evaluation checks it against a ground truth (`answers.matches`, the
    family's own check), with the consensus in place of the ground truth.

    >>> consensus_verdict("3 + 4 = 7. Answer: 7", "7"), consensus_verdict("Answer: 8", "7")
    (True, False)
    >>> consensus_verdict("\\\\boxed{(1,5)}", "(1,2)", family="math")
    False
    >>> consensus_verdict("Answer: 8", None) is None
    True
    """
    check_family(family)
    if consensus is None:
        return None
    return matches(family, consensus, rollout_text or "", choices)


def apply_consensus(
    judgements: Sequence[bool] | None,
    result_index: int | None,
    rollout_text: str,
    consensus: str | None,
    *,
    family: str = "arithmetic",
    choices: Sequence[str] | None = None,
) -> LeverVerdicts | None:
    """One answer's verdicts with the final-result criterion decided by code against the teacher's consensus.

    `result_index`: the rubric's final-result criterion (`find_result_criterion`). With no such criterion or no
    consensus the verdicts are returned unchanged (`checked` empty); otherwise criterion `result_index` becomes
    `consensus_verdict(...)` and is listed in `checked` (and in `flipped` if it changed). None when `judgements`
    is None.

    >>> v = apply_consensus([False, True], 0, "Answer: 1/2", "0.5")
    >>> v, v.checked, v.flipped
    ([True, True], [0], [0])
    """
    if judgements is None:
        return None
    verdicts = [bool(v) for v in judgements]
    if result_index is None or consensus is None:
        return LeverVerdicts(verdicts)
    if not 0 <= result_index < len(verdicts):
        raise ValueError(f"result_index {result_index} is outside the {len(verdicts)} criteria")
    decided = bool(consensus_verdict(rollout_text, consensus, family=family, choices=choices))
    flipped = [result_index] if decided != verdicts[result_index] else []
    verdicts[result_index] = decided
    return LeverVerdicts(verdicts, flipped=flipped, checked=[result_index])


# ---------------------------------------------------------------------------------------------------------------
# The check on one group


class ConsensusOutcome(BaseModel):
    """What the consensus check did to one group (rubrics.jsonl `consensus`).

    `kind`: the family whose check decided ("arithmetic": final numbers, integers exactly; "math": math-verify
    equivalence; "multiple_choice": option letters), or None when the check does not apply (`reason` says why).
    `value`: the teacher's majority final answer, None without a strict majority (the Verifier's verdict then
    stands). `result_id`: the criterion decided by code; `added` when the rubric had no final-result criterion and
    code added one. `named_value`: the value the rubric's own result criterion names (None when added or when it
    names none), to see where the Rubricator stated a wrong value.
    """

    applied: bool = False
    kind: str | None = None
    value: str | None = None
    result_id: str | None = None
    added: bool = False
    named_value: str | None = None
    n_refs: int = 0
    reason: str | None = None
    # Set by scoring (pipeline.score_group) when RunConfig.result_weight_share raised the result criterion's weight.
    result_share: float | None = None


def _result_text(value: str, kind: str) -> str:
    if kind == "multiple_choice":
        return f"Chooses option {value} as the final answer"
    return f"States the final answer {value}"


def consensus_check(
    rubric: Rubric,
    verdicts: GroupVerdicts,
    teacher_refs: Sequence[str],
    rollouts: Sequence[str],
    *,
    family: str | None,
    choices: Sequence[str] | None = None,
    strip_think: bool = True,
) -> tuple[Rubric, GroupVerdicts, ConsensusOutcome]:
    """Decide the rubric's final-result criterion by code: True iff an answer's final answer is the majority final
    answer of the teacher's own references (`teacher_consensus`), by the family's own check.

    Black-box-safe: only the teacher's texts are used, never a ground truth. Applies to the families "arithmetic",
    "math" and "multiple_choice" (with its options), and to an unknown family (None) when the consensus is a
    number; not to "open_ended". With no strict majority nothing changes (the Verifier's verdict stands). When the
    rubric has no final-result criterion (`find_result_criterion`; pitfalls and format criteria do not count), one
    is added ("States the final answer <value>", 5 points, category correctness) and decided by code for every
    answer, so the Verifier never judged it. Every answer is decided the same way (teacher refs too, for the
    teacher scores); answers without a verdict stay None and skipped ones (empty, truncated) stay all-False.
    Each decided answer's notes get `checked_by_code`, `extracted_answer` (what the check read as its final
    answer; None when it commits to none) and, when the code changed the Verifier's verdict, `flipped_by_code`
    (criterion indices).
    """
    outcome = ConsensusOutcome(n_refs=len(teacher_refs))
    visible = [strip_thinking(t or "") if strip_think else (t or "") for t in teacher_refs]
    kind, value, reason = check_target(visible, family=family, choices=choices, strip_think=False)
    if value is None:
        return rubric, verdicts, outcome.model_copy(update={"kind": kind, "reason": reason})

    # A pitfall ("Gives 46 as the final answer") or a format rule ("Ends with a line 'Answer: <number>'") speaks of
    # the answer without being the check of its result.
    eligible = [k for k, c in enumerate(rubric.criteria) if c.points > 0 and c.category.lower() not in _FORM_CATEGORIES]
    found = find_result_criterion([rubric.criteria[k].model_dump() for k in eligible]) if eligible else None
    index = None if found is None else eligible[found]
    added = index is None
    if added:
        taken = {c.id.lower() for c in rubric.criteria}
        cid = CONSENSUS_CRITERION_ID
        while cid.lower() in taken:
            cid += "_"
        criterion = Criterion(id=cid, text=_result_text(value, kind), points=CONSENSUS_POINTS, category="correctness")
        rubric = Rubric(criteria=[*rubric.criteria, criterion])
        index = len(rubric.criteria) - 1
    result = rubric.criteria[index]

    skipped = {(src, i) for src, i, _ in verdicts.skipped}
    texts = {"teacher": visible, "student": [strip_thinking(t or "") if strip_think else (t or "") for t in rollouts]}
    out: dict[str, list] = {}
    notes: dict[str, list[dict[str, Any]]] = {}
    for source, rows, old_notes in (
        ("teacher", verdicts.teacher, verdicts.teacher_notes),
        ("student", verdicts.student, verdicts.student_notes),
    ):
        out[source], notes[source] = [], []
        for i, row in enumerate(rows):
            note = dict(old_notes[i]) if i < len(old_notes) else {}
            if row is None:
                out[source].append(None)
            elif (source, i) in skipped:
                out[source].append(list(row) + [False] if added else list(row))
            else:
                base = list(row) + [False] if added else list(row)
                lever = apply_consensus(base, index, texts[source][i], value, family=kind, choices=choices)
                out[source].append(list(lever))
                note["checked_by_code"] = [index]
                note["extracted_answer"] = read_answer(kind, texts[source][i], choices)
                if lever.flipped and not added:
                    note["flipped_by_code"] = lever.flipped
            notes[source].append(note)
    updated = verdicts.model_copy(update={
        "teacher": out["teacher"], "student": out["student"],
        "teacher_notes": notes["teacher"], "student_notes": notes["student"],
    })
    return rubric, updated, outcome.model_copy(update={
        "applied": True, "kind": kind, "value": value, "result_id": result.id, "added": added,
        "named_value": None if added else named_value(result.text, kind, choices),
    })
