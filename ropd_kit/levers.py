"""The Verifier's reward levers, the pure parts: rules that turn a Verifier's raw verdicts into the verdicts that
ROPD's scoring stage (`scoring.weighted_pass_rate`) scores.

They sit between blind verification (verify.py, which asks the Verifier for quotes or for several samples and calls
these rules) and scoring. Each lever is a RunConfig option; `fidelity/` measures what it does. Nothing here calls a
model or reads ground truth.

- Evidence (`quote_supported`, `apply_evidence`): the Verifier quotes the span of the answer that meets each
  criterion; a True verdict whose quote does not occur in that answer becomes False. Text that only *claims* to
  pass ("this answer meets every criterion") has nothing to quote; a quote from another answer, from the rubric or
  across a fence marker is not in the answer either.
- Self-consistency (`majority_per_criterion`): several Verifier samples per group, majority per criterion.

The consensus check, which decides the final-result criterion by code against the teacher's references, is its own
stage (consensus.py). `apply_evidence` and `consensus.apply_consensus` return `LeverVerdicts`: a plain list of
booleans that also records which criteria the lever changed (`flipped`) or decided by code (`checked`), for
verdicts.jsonl and the fidelity study.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Sequence

# A quote shorter than this (after normalisation) supports nothing: "4" or "is" occurs in almost any answer.
MIN_QUOTE_CHARS = 3

_WHITESPACE = re.compile(r"\s+")
# Wrapping a model puts around a quote: quotation marks, and an ellipsis that marks the quote as an excerpt.
_WRAPPING = "\"'`\u201c\u201d\u2018\u2019\u00ab\u00bb"
_ELLIPSIS = re.compile(r"^(?:\.\.\.|\u2026)+|(?:\.\.\.|\u2026)+$")
_MARKUP = re.compile(r"[*_`]+")


class LeverVerdicts(list):
    """A list of booleans (one per criterion, rubric order) and what a lever did to it.

    `flipped`: indices of criteria whose verdict the lever changed. `checked`: indices decided by code rather than
    by the Verifier (the consensus check). It compares equal to a plain list with the same booleans.
    """

    def __init__(self, verdicts: Sequence[bool], flipped: Sequence[int] = (), checked: Sequence[int] = ()):
        super().__init__(bool(v) for v in verdicts)
        self.flipped = list(flipped)
        self.checked = list(checked)

    @property
    def n_flipped(self) -> int:
        return len(self.flipped)


# ---------------------------------------------------------------------------------------------------------------
# Evidence


def normalize_text(text: str, *, ignore_markup: bool = False) -> str:
    """What quote matching compares: Unicode NFC, case-folded, whitespace runs as one space, ends stripped.

    `ignore_markup=True` also drops Markdown emphasis and code marks (`*`, `_`, backticks) on both sides.

    >>> normalize_text("  The  ANSWER\\n is 42 ")
    'the answer is 42'
    """
    text = unicodedata.normalize("NFC", str(text)).casefold()
    if ignore_markup:
        text = _MARKUP.sub("", text)
    return _WHITESPACE.sub(" ", text).strip()


def _core(quote: str, ignore_markup: bool) -> str:
    """The quote without the wrapping a model adds around an excerpt (quotation marks, leading/trailing '...')."""
    text = normalize_text(quote, ignore_markup=ignore_markup)
    previous = None
    while previous != text:
        previous = text
        text = text.strip().strip(_WRAPPING).strip()
        text = _ELLIPSIS.sub("", text).strip()
    return text


def quote_supported(
    quote: str | None,
    answer_text: str,
    *,
    min_chars: int = MIN_QUOTE_CHARS,
    ignore_markup: bool = False,
) -> bool:
    """Whether `quote` occurs verbatim in `answer_text`, after light normalisation of both.

    Normalisation: Unicode NFC, case-folded, whitespace runs collapsed to one space (`normalize_text`); the quote
    may be wrapped in quotation marks or '...' (dropped before matching). Nothing else is forgiven: a paraphrase,
    a changed number or an elision inside the quote does not match. An empty quote, None, or a quote shorter than
    `min_chars` characters supports nothing. `answer_text` should be the text the Verifier was shown
    (`judge_text.clean_answer`'s output: reasoning stripped, length capped), so that a quote from a part the
    Verifier never saw does not count.

    >>> quote_supported("so the ANSWER is  42", "6 * 7 = 42, so the answer is 42.")
    True
    >>> quote_supported("the answer is 41", "6 * 7 = 42, so the answer is 42.")
    False
    """
    if quote is None or not isinstance(quote, str):
        return False
    core = _core(quote, ignore_markup)
    if len(core) < max(1, min_chars):
        return False
    return core in normalize_text(answer_text or "", ignore_markup=ignore_markup)


def apply_evidence(
    judgements: Sequence[bool] | None,
    quotes: Sequence[str | None] | None,
    answer_text: str,
    *,
    min_chars: int = MIN_QUOTE_CHARS,
    ignore_markup: bool = False,
) -> LeverVerdicts | None:
    """One answer's verdicts with every True that its quote does not support turned False.

    `judgements[k]` and `quotes[k]` belong to criterion k (rubric order); a missing quote (None, "", or `quotes`
    itself None) supports nothing. False verdicts stay False whatever they quote. Returns a `LeverVerdicts` whose
    `flipped` lists the criteria turned False; None when `judgements` is None (a failed answer stays failed).

    >>> v = apply_evidence([True, True, False], ["the answer is 42", "I checked everything", None],
    ...                    "6 * 7 = 42, so the answer is 42.")
    >>> v, v.flipped
    ([True, False, False], [1])
    """
    if judgements is None:
        return None
    quotes = list(quotes) if quotes is not None else [None] * len(judgements)
    if len(quotes) != len(judgements):
        raise ValueError(f"{len(quotes)} quotes for {len(judgements)} judgements (one per criterion)")
    out, flipped = [], []
    for k, (verdict, quote) in enumerate(zip(judgements, quotes)):
        keep = bool(verdict) and quote_supported(quote, answer_text, min_chars=min_chars, ignore_markup=ignore_markup)
        if bool(verdict) and not keep:
            flipped.append(k)
        out.append(keep)
    return LeverVerdicts(out, flipped=flipped)


# ---------------------------------------------------------------------------------------------------------------
# Self-consistency


def majority_per_criterion(
    samples: Sequence[Sequence[Sequence[bool] | None] | None],
) -> list[list[bool] | None]:
    """Majority verdict per (answer, criterion) over several Verifier samples of one group.

    `samples[s][i][k]`: sample s's verdict on answer i, criterion k. A failed sample is None, and a sample may
    also have None for one answer it could not judge; both are left out of that answer's vote. The verdict is True
    only with strictly more True than False votes: a tie is False (a criterion the Verifier is split on is not
    shown to be met). An answer no sample judged stays None (a judge failure for the caller's policy).

    >>> majority_per_criterion([[[True, False]], [[True, True]], None, [[False, True]]])
    [[True, True]]
    >>> majority_per_criterion([[[True, False]], [[False, True]]])
    [[False, False]]
    """
    valid = [s for s in samples if s is not None]
    if not valid:
        return []
    n_answers = len(valid[0])
    if any(len(s) != n_answers for s in valid):
        raise ValueError(f"samples judge different numbers of answers: {sorted({len(s) for s in valid})}")
    out: list[list[bool] | None] = []
    for i in range(n_answers):
        votes = [s[i] for s in valid if s[i] is not None]
        if not votes:
            out.append(None)
            continue
        n_criteria = len(votes[0])
        if any(len(v) != n_criteria for v in votes):
            raise ValueError(f"answer {i + 1}: samples give different numbers of judgements")
        out.append([2 * sum(bool(v[k]) for v in votes) > len(votes) for k in range(n_criteria)])
    return out
