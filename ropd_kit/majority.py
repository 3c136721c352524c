"""The teacher's majority answer: what the consensus check will decide a group's result against, known from the
teacher's references alone, before any verdict.

The consensus check (`consensus`) applies it after the Verifier; the Verifier's stage (`verify.verifier_mode_for`)
reads it first, to know whether code or the Verifier will decide a group's ranking.

- `teacher_consensus`: the final answer a strict majority of the references agree on.
- `check_target`: whether the check will decide a group's result, and against which answer.
"""

from __future__ import annotations

import re
from typing import Sequence

from .answers import CHECKABLE_FAMILIES, read_answer, same_answer
from .judge_text import strip_thinking

FAMILIES = CHECKABLE_FAMILIES
_NUMERIC = re.compile(r"-?\d+(?:\.\d+)?(?:/\d+)?")


def check_family(family: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")


def teacher_consensus(
    ref_texts: Sequence[str | None], *, family: str = "arithmetic", choices: Sequence[str] | None = None
) -> str | None:
    """The final answer a strict majority of the teacher's references commit to, or None.

    Each reference is read by its family's own reader (`answers.read_answer`: the final number for arithmetic, the
    final expression for math, the chosen option letter for multiple choice), and answers the family's check holds
    equal (`answers.same_answer`: "0.5" and "1/2" vote together, "(1,2)" and "(1,5)" do not) form one vote. A strict
    majority of *all* references is needed: a reference that commits to no answer counts against every candidate,
    so 2 of 4 agreeing is no consensus. The returned form is the most common spelling within the winning group.

    >>> teacher_consensus(["... Answer: 0.5", "so it is half. Answer: 1/2", "Answer: 3"])
    '0.5'
    >>> teacher_consensus(["Answer: 1", "Answer: 2"]) is None
    True
    """
    check_family(family)
    refs = list(ref_texts)
    if not refs:
        return None
    clusters: list[list[str]] = []  # each: the spellings that vote together, in the order seen
    for text in refs:
        value = read_answer(family, text, choices)
        if value is None:
            continue
        for cluster in clusters:
            if same_answer(family, cluster[0], value):
                cluster.append(value)
                break
        else:
            clusters.append([value])
    if not clusters:
        return None
    best = max(clusters, key=len)  # the first of equally large groups; a tie cannot be a strict majority anyway
    if 2 * len(best) <= len(refs):
        return None
    return max(dict.fromkeys(best), key=best.count)


def _consensus_kind(family: str | None, choices: Sequence[str] | None) -> tuple[str | None, str | None]:
    """(kind, reason it does not apply). An unknown family (None) is read as arithmetic and checked only when the
    consensus turns out to be a number."""
    if family in ("arithmetic", "math"):
        return family, None
    if family == "multiple_choice":
        return (family, None) if choices else (None, "multiple-choice task without its options")
    if family is None:
        return "arithmetic?", None
    return None, f"family {family!r} has no checkable final answer"


def check_target(
    teacher_refs: Sequence[str],
    *,
    family: str | None,
    choices: Sequence[str] | None = None,
    strip_think: bool = True,
) -> tuple[str | None, str | None, str | None]:
    """(kind, value, reason): the family's check (`kind`) and the teacher's majority answer (`value`) that
    `consensus_check` would decide a group's result against, or value None and the `reason` it would not.

    Known from the teacher's references alone, before any verdict, so the Verifier can read a group that no check
    will decide with soft verdicts (`verify.verifier_mode_for`).

    >>> check_target(["Answer: 12", "so 12. Answer: 12"], family="arithmetic")
    ('arithmetic', '12', None)
    >>> check_target(["Answer: 12", "Answer: 13"], family="arithmetic")[1:]
    (None, "no strict majority among the 2 teacher references' final answers")
    """
    kind, reason = _consensus_kind(family, choices)
    if kind is None:
        return None, None, reason
    if not teacher_refs:
        return kind, None, "no teacher references"
    visible = [strip_thinking(t or "") if strip_think else (t or "") for t in teacher_refs]
    if kind == "arithmetic?":
        kind = "arithmetic"
        value = teacher_consensus(visible, family=kind)
        if value is not None and not _NUMERIC.fullmatch(value):
            return None, None, f"consensus {value!r} is not a number"
    else:
        value = teacher_consensus(visible, family=kind, choices=choices)
    if value is None:
        return kind, None, f"no strict majority among the {len(teacher_refs)} teacher references' final answers"
    return kind, value, None
