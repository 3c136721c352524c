"""Final answers: extraction for tasks with numeric ground truth, and the correctness check against ground truth.

In: a model's free text (a teacher reference, a student rollout). Out: the final number it commits to, as a
normalised string ("1,234" -> "1234", "42.0" -> "42", "3 / 4" -> "3/4"), or None when the text contains no number
at all. A marked answer that is LaTeX math rather than a number ("\\boxed{\\frac{1}{2}}") comes back as written,
so that it can never be mistaken for the integer 1.
Also `last_boxed(text)`, the content of the last LaTeX \\boxed{...} with nested braces, which the dataset loaders
use to read MATH-style solutions.

Order of trust: an explicit marker ("Answer: 42", "#### 42", "\\boxed{42}", "the answer is 42") beats a bare
number, and among markers the one written last wins, because models restate or correct themselves before finishing.
"""

from __future__ import annotations

import logging
import re
import threading

log = logging.getLogger(__name__)

# Thousands groups must be exactly three digits, so "1,2,3" stays a list of three numbers, not 123.
_NUMBER = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")

_MARKERS = (
    # "Answer: 42", "**Answer:** 42", "Final answer: 42", "The answer is 42", "answer = 42"
    re.compile(r"(?i)\banswer\b\W{0,3}?\**\s*(?::|\bis\b|=)\**\s*(?P<content>[^\n]*)"),
    re.compile(r"####\s*(?P<content>[^\n]*)"),
)

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")


def normalize_number(token: str) -> str:
    """'1,234' -> '1234', '42.000' -> '42', '-0' -> '0', '3.50' -> '3.5'."""
    token = token.replace(",", "").strip()
    if "." in token:
        whole, frac = token.split(".", 1)
        frac = frac.rstrip("0")
        token = whole if not frac else f"{whole}.{frac}"
    try:
        return str(int(token))
    except ValueError:
        return token


def _boxed_spans(text: str) -> list[tuple[int, str]]:
    """(start, content) of every \\boxed{...} whose braces close."""
    spans = []
    for match in _BOXED.finditer(text):
        depth, i = 1, match.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            spans.append((match.start(), text[match.end() : i - 1]))
    return spans


def last_boxed(text: str) -> str | None:
    """Content of the last closed \\boxed{...} (nested braces kept), stripped; None if there is none."""
    spans = _boxed_spans(text)
    return spans[-1][1].strip() if spans else None


_FRACTION = re.compile(r"(?<![\w.])(-?\d+)\s*/\s*(\d+)(?![\w.])")
# Math that is not a plain number ("\frac{1}{2}", "2\sqrt{3}", "x^2"): reading its first digit would be wrong.
_NON_NUMERIC_LATEX = re.compile(r"\\(?:frac|dfrac|tfrac|sqrt|pi|infty|cdot|times|div)|\^")


def _number_in(content: str) -> str | None:
    # "Answer: 3 × 4 = 12 apples": the committed value is what follows the last '='.
    tail = content.rsplit("=", 1)[-1].strip()
    if _NON_NUMERIC_LATEX.search(tail):
        return re.sub(r"^[\s$.]+|[\s$.]+$", "", tail)
    fraction = _FRACTION.search(tail)
    if fraction:
        return f"{int(fraction.group(1))}/{int(fraction.group(2))}"
    match = _NUMBER.search(tail) or _NUMBER.search(content)
    return normalize_number(match.group()) if match else None


def extract_final_answer(text: str | None) -> str | None:
    """The final numeric answer a text commits to, or None.

    >>> extract_final_answer("3 + 4 = 7 apples, then 7 * 2 = 14.\\nAnswer: 14")
    '14'
    >>> extract_final_answer("She pays $1,234 in total.")
    '1234'
    """
    if not text:
        return None
    candidates: list[tuple[int, str]] = []
    for pattern in _MARKERS:
        for match in pattern.finditer(text):
            value = _number_in(match.group("content"))
            if value is not None:
                candidates.append((match.start(), value))
    for start, content in _boxed_spans(text):
        value = _number_in(content)
        if value is not None:
            candidates.append((start, value))
    if candidates:
        return max(candidates)[1]
    numbers = _NUMBER.findall(text)
    return normalize_number(numbers[-1]) if numbers else None


# ---------------------------------------------------------------------------------------------------------------
# Correctness against ground truth (evaluation, data calibration, the rlvr reward, the AUC labels)

_INTEGER = re.compile(r"-?\d[\d,]*(\.0+)?")


def _math_verify(answer: str, text: str) -> bool:
    from math_verify import parse, verify

    # math-verify's timeouts use SIGALRM, which only exists on the main thread; TRL calls reward functions from a
    # background event-loop thread, where they must be off.
    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    gold = parse(f"\\boxed{{{answer}}}", parsing_timeout=timeout) or parse(answer, parsing_timeout=timeout)
    predicted = parse(text, parsing_timeout=timeout)
    if not gold or not predicted:
        return False
    try:
        return bool(verify(gold, predicted, timeout_seconds=timeout))
    except Exception as exc:  # noqa: BLE001 - a comparison sympy cannot do is a wrong answer, not a crashed eval
        log.debug("math-verify could not compare %r with %r: %s", answer, text[-80:], exc)
        return False


def is_correct(answer: str | None, text: str) -> bool:
    """Whether `text` ends up at the ground-truth `answer`.

    >>> is_correct("42", "6 * 7 = 42. Answer: 42")
    True
    >>> is_correct("42", "Answer: 41")
    False
    """
    if answer is None:
        raise ValueError("is_correct needs a ground-truth answer; this task has none (answer=None)")
    answer = str(answer).strip()
    if _INTEGER.fullmatch(answer):
        predicted = extract_final_answer(text)
        return predicted is not None and predicted == normalize_number(answer)
    return _math_verify(answer, text)


def predicted_answer(answer: str | None, text: str) -> str | None:
    """What the evaluation read as the text's final answer (for the eval table; None when nothing was found)."""
    if answer is not None and not _INTEGER.fullmatch(str(answer).strip()):
        from math_verify import parse

        timeout = 5 if threading.current_thread() is threading.main_thread() else None
        parsed = parse(text, parsing_timeout=timeout)
        return str(parsed[-1]) if parsed else None
    return extract_final_answer(text)
