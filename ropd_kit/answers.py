"""Final answers and correctness against ground truth, per task family.

`correctness(task, text)` is the one check every consumer uses when a task is at hand (evaluation, the rlvr reward,
the AUC labels, the fidelity labels, notebook tables); it dispatches on `task.family`:
- "arithmetic": the final number the text commits to equals the integer answer exactly (`extract_final_answer`).
- "math": math-verify equivalence ("3/4" = "\\frac{3}{4}" = "0.75", "1,000" = "1000", "5 cm" = "5"), applied to the
  final-answer span (`final_answer_span`: the last \\boxed{} or "Answer: ..." line, sentence punctuation removed)
  rather than the whole text, so "So the answer is -5/3." reads -5/3 and not a prose sentence.
- "multiple_choice": the option the text chooses (`choice_reading`), by this rule:
  1. the answer is read at the last answer marker that names an option: "Answer: B", "the answer is (B)",
     "\\boxed{B}", or a final line that is only a letter; a marker naming no option (a closing "I hope this answer
     is helpful") is passed over for the one before it;
  2. the letters named there are the option letters standing alone ("B", "(B)", "B.", "**B**"; a lower-case letter
     only in parentheses, since "a" is a word), after the options' own texts are taken out ("Answer: B. A dog" names
     only B). One letter: that option. Two or more different letters ("B and C", "B or D", "A, C"): the answer
     names several options and is wrong;
  3. no letter, but the content is exactly one option's text (case, spacing and a closing full stop ignored; numbers
     compared as numbers: "Answer: 45" for "D. 45"): that option; text shared by several options counts as none;
  4. no marker names an option: no answer (wrong).
- "open_ended": no answer to check (None); its score is the reference rubric's, graded by the Verifier
  (`train.evaluate.reference_scores`).
`is_correct(answer, text)` is the check without a task (integer answers exactly, anything else by math-verify on the
final-answer span); `predicted(task, text)` is what the check read, for tables.

Extraction for numeric tasks: `extract_final_answer(text)` is the final number a text commits to, as a normalised
string ("1,234" -> "1234", "42.0" -> "42", "3 / 4" -> "3/4"), or None when the text contains no number at all. A
marked answer that is LaTeX math rather than a number ("\\boxed{\\frac{1}{2}}") comes back as written, so that it can
never be mistaken for the integer 1. Order of trust: an explicit marker ("Answer: 42", "#### 42", "\\boxed{42}", "the
answer is 42") beats a bare number, and among markers the one written last wins, because models restate or correct
themselves before finishing.
Also `last_boxed(text)`, the content of the last LaTeX \\boxed{...} with nested braces, which the dataset loaders
use to read MATH-style solutions.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any, Sequence

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
# The final-answer span (what math-verify is handed)

# "$", "**" and "`" wrap answers in markdown and LaTeX; a sentence's closing punctuation is not part of its value
# ("-5/3." reads as -5/3.0 to math-verify's parser, a different expression).
_SPAN_EDGES = re.compile(r"^(?:[\s*`$=:]|\\\$|\\\(|\\\[)+|(?:[\s*`$.,;:!?]|\\\$|\\\)|\\\])+$")


# A closing remark in words after the answer ("42 (six times seven)", "12 (ref 2)").
_REMARK = re.compile(r"\s+\((?=[^()]*[A-Za-z]{2})[^()\\]*\)$")


def _clean_span(content: str) -> str:
    return _SPAN_EDGES.sub("", content.strip())


def final_answer_span(text: str | None) -> str | None:
    """The span a text gives as its final answer: the content of the last \\boxed{...} or of the last answer marker
    ("Answer: ...", "the answer is ...", "#### ..."), whichever is written later, with markdown, "$" and closing
    punctuation stripped; None when the text marks no answer.

    >>> final_answer_span("So the answer is -5/3.")
    '-5/3'
    >>> final_answer_span("x = 3, so\\n\\\\boxed{\\\\frac{3}{4}}")
    '\\\\frac{3}{4}'
    """
    if not text:
        return None
    candidates: list[tuple[int, str]] = []
    for pattern in _MARKERS:
        for match in pattern.finditer(text):
            content = _clean_span(match.group("content"))
            if content:
                candidates.append((match.start(), content))
    for start, content in _boxed_spans(text):
        content = _clean_span(content)
        if content:
            candidates.append((start, content))
    return max(candidates)[1] if candidates else None


# ---------------------------------------------------------------------------------------------------------------
# Correctness against ground truth (evaluation, data calibration, the rlvr reward, the AUC labels)

_INTEGER = re.compile(r"-?\d[\d,]*(\.0+)?")


def _timeout() -> int | None:
    # math-verify's timeouts use SIGALRM, which only exists on the main thread; TRL calls reward functions from a
    # background event-loop thread, where they must be off.
    return 5 if threading.current_thread() is threading.main_thread() else None


def _parse_gold(answer: str) -> list:
    from math_verify import parse

    timeout = _timeout()
    return parse(f"\\boxed{{{answer}}}", parsing_timeout=timeout) or parse(answer, parsing_timeout=timeout)


def _readings(text: str) -> list[list]:
    """math-verify parses of a text's final answer, most trusted first.

    The span alone in \\boxed{} (exactly what was committed to), then the span as prose (math-verify's own search:
    "1/2 cup" is 1/2 that way, 1/(2*c*p*u) boxed), then what follows its last "=" ("3 \\times 4 = 12"). A closing
    remark in words is not part of the span: "42 (six times seven)" reads 42, where math-verify's prose search would
    take the remark's last number. A text without a marked answer is read whole, its closing full stop removed.
    """
    from math_verify import parse

    timeout = _timeout()
    span = final_answer_span(text)
    if span is None:
        whole = _clean_span(text)
        readings = [parse(whole, parsing_timeout=timeout)] if whole else []
        return [r for r in readings if r]
    span = _REMARK.sub("", span) or span
    readings = [parse(f"\\boxed{{{span}}}", parsing_timeout=timeout), parse(span, parsing_timeout=timeout)]
    if "=" in span:
        tail = _clean_span(span.rsplit("=", 1)[-1])
        if tail:
            readings.append(parse(f"\\boxed{{{tail}}}", parsing_timeout=timeout))
    return [r for r in readings if r]


def _math_verify(answer: str, text: str) -> bool:
    """Whether any reading of the text's final answer is math-verify-equivalent to `answer`."""
    from math_verify import verify

    gold = _parse_gold(answer)
    if not gold:
        return False
    timeout = _timeout()
    for predicted in _readings(text):
        try:
            if verify(gold, predicted, timeout_seconds=timeout):
                return True
        except Exception as exc:  # noqa: BLE001 - a comparison sympy cannot do is a wrong answer, not a crashed eval
            log.debug("math-verify could not compare %r with %r: %s", answer, text[-80:], exc)
    return False


def _integer_match(answer: str, text: str) -> bool:
    predicted = extract_final_answer(text)
    return predicted is not None and predicted == normalize_number(answer)


def is_correct(answer: str | None, text: str) -> bool:
    """Whether `text` ends up at the ground-truth `answer` (no task at hand: integers exactly, else math-verify).

    >>> is_correct("42", "6 * 7 = 42. Answer: 42")
    True
    >>> is_correct("42", "Answer: 41")
    False
    >>> is_correct("-\\\\frac{5}{3}", "So the answer is -5/3.")
    True
    """
    if answer is None:
        raise ValueError("is_correct needs a ground-truth answer; this task has none (answer=None)")
    answer = str(answer).strip()
    if _INTEGER.fullmatch(answer):
        return _integer_match(answer, text)
    return _math_verify(answer, text)


def _math_reading(text: str) -> str | None:
    # The committed span as written; without a marker, the last piece of math math-verify found in the text.
    span = final_answer_span(text)
    if span is not None:
        return span
    readings = _readings(text)
    return str(readings[0][-1]) if readings else None


def predicted_answer(answer: str | None, text: str) -> str | None:
    """What `is_correct` read as the text's final answer (for the eval table; None when nothing was found)."""
    if answer is not None and not _INTEGER.fullmatch(str(answer).strip()):
        return _math_reading(text)
    return extract_final_answer(text)


# ---------------------------------------------------------------------------------------------------------------
# Multiple choice: the option a text chooses (the rule is in the module docstring)

_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# An option letter standing alone: "B", "(B)", "B.", "B)"; lower case only inside parentheses ("a" is a word).
_LONE_LETTER = re.compile(r"(?<![A-Za-z0-9'’])(?:\(([A-Za-z])\)|([A-Z]))(?![A-Za-z0-9'’])")
_LETTER_LINE = re.compile(r"^\W{0,4}\(?([A-Z])\)?[.):]?\W{0,4}$")
_MARKUP = re.compile(r"\\text\{([^{}]*)\}|\\textbf\{([^{}]*)\}|[*`$]")


def _plain(text: str) -> str:
    return re.sub(r"\s+", " ", _MARKUP.sub(lambda m: m.group(1) or m.group(2) or "", text)).strip()


def _option_key(text: str) -> str:
    text = _plain(text).rstrip(".").strip().casefold()
    return normalize_number(text) if _NUMBER.fullmatch(text) else text


def _letters_in(content: str, choices: Sequence[str] | None, allowed: str) -> tuple[str, ...]:
    """The option letters one marker's content names, in order of first mention (see the module docstring)."""
    content = _plain(content)
    for option in sorted((str(c).strip() for c in choices or ()), key=len, reverse=True):
        if option:  # "Answer: B. A dog": the option's own words are not letters it names
            content = re.sub(re.escape(option), " ", content, flags=re.IGNORECASE)
    named: list[str] = []
    for match in _LONE_LETTER.finditer(content):
        letter = (match.group(1) or match.group(2)).upper()
        if letter in allowed and letter not in named:
            named.append(letter)
    return tuple(named)


def _option_named(content: str, choices: Sequence[str] | None, allowed: str) -> tuple[str, ...]:
    if not choices:
        return ()
    key = _option_key(content)
    hits = tuple(letter for letter, option in zip(allowed, choices) if key and _option_key(str(option)) == key)
    return hits if len(hits) == 1 else ()


def choice_reading(
    text: str | None, choices: Sequence[str] | None = None, n_choices: int | None = None
) -> tuple[str, ...]:
    """The option letters a multiple-choice answer names at its final answer, by the module docstring's rule:
    () for none, one letter for a choice, several when the answer hedges between options.

    >>> choice_reading("75% of 60 is 45.\\nAnswer: D"), choice_reading("Answer: B or C")
    (('D',), ('B', 'C'))
    >>> choice_reading("Answer: 45", choices=["450", "120", "15", "45"])
    ('D',)
    """
    if not text:
        return ()
    n = n_choices or (len(choices) if choices else len(_LETTERS))
    allowed = _LETTERS[:n]
    markers: list[tuple[int, str]] = [(m.start(), m.group("content")) for m in _MARKERS[0].finditer(text)]
    markers += _boxed_spans(text)
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    if lines and _LETTER_LINE.match(lines[-1].strip()):
        markers.append((len(text), lines[-1]))
    for _, content in sorted(markers, reverse=True):
        named = _letters_in(content, choices, allowed) or _option_named(content, choices, allowed)
        if named:
            return named
    return ()


def chosen_letter(text: str | None, choices: Sequence[str] | None = None, n_choices: int | None = None) -> str | None:
    """The one option a multiple-choice answer chooses, or None (no choice, or several named)."""
    named = choice_reading(text, choices, n_choices)
    return named[0] if len(named) == 1 else None


# ---------------------------------------------------------------------------------------------------------------
# The dispatcher: correctness of a text for a task, by the task's family

CHECKABLE_FAMILIES = ("arithmetic", "math", "multiple_choice")


def _family(task: Any) -> str:
    family = getattr(task, "family", None)
    if family is None:
        raise TypeError(f"correctness needs a Task (with a family), got {type(task).__name__}")
    return family


def checkable(task: Any) -> bool:
    """Whether the task's answers can be checked by code: a checkable family with a ground-truth answer."""
    return _family(task) in CHECKABLE_FAMILIES and getattr(task, "answer", None) is not None


def read_answer(family: str, text: str | None, choices: Sequence[str] | None = None) -> str | None:
    """The final answer `text` commits to, as the family's check reads it: the final number ("arithmetic"), the
    final expression as written ("math"), the one option letter chosen ("multiple_choice"); None when it commits
    to none. What the consensus check compares, and what it records as an answer's extracted answer.

    >>> read_answer("arithmetic", "6 * 7 = 42\\nAnswer: 42"), read_answer("math", "So \\\\boxed{(1,2)}.")
    ('42', '(1,2)')
    """
    if family not in CHECKABLE_FAMILIES:
        raise ValueError(f"family must be one of {CHECKABLE_FAMILIES}, got {family!r}")
    if not text:
        return None
    if family == "multiple_choice":
        return chosen_letter(text, choices)
    if family == "math":
        return _math_reading(text)
    return extract_final_answer(text)


def matches(family: str, answer: Any, text: str | None, choices: Sequence[str] | None = None) -> bool:
    """Whether `text` commits to `answer` by the family's own check: `correctness` without a task at hand (the
    consensus check calls it with the teacher's answer in place of the ground truth).

    >>> matches("arithmetic", "42", "Answer: 42"), matches("math", "(1,2)", "\\\\boxed{(1,5)}")
    (True, False)
    """
    if family not in CHECKABLE_FAMILIES:
        raise ValueError(f"family must be one of {CHECKABLE_FAMILIES}, got {family!r}")
    text = text or ""
    answer = str(answer).strip()
    if family == "arithmetic":
        return _integer_match(answer, text) if _INTEGER.fullmatch(answer) else _math_verify(answer, text)
    if family == "math":
        return _math_verify(answer, text)
    return choice_reading(text, choices) == (answer.upper(),)


def same_answer(family: str, a: str, b: str) -> bool:
    """Whether two final answers (as `read_answer` gives them) are the same answer by the family's check.

    >>> same_answer("arithmetic", "0.5", "1/2"), same_answer("math", "2x+1", "2x+5")
    (True, False)
    """
    if a == b:
        return True
    if family == "multiple_choice":
        return a.strip().upper() == b.strip().upper()
    # The integer rule is one-sided ("2" against "4/2" reads the text's "4/2" as written), so both ways are asked.
    return matches(family, a, f"\\boxed{{{b}}}") or matches(family, b, f"\\boxed{{{a}}}")


def correctness(task: Any, text: str | None) -> bool | None:
    """Whether `text` answers `task` correctly, by the task's family (see the module docstring).

    None when there is nothing to check against: an open-ended task (scored by its reference rubric instead) or a
    task without a ground-truth answer. A missing text (None) is a wrong answer.

    >>> from ropd_kit.data import Task
    >>> correctness(Task(id="t", prompt="2/3 + 1/12?", answer="\\\\frac{3}{4}", family="math"), "Answer: 0.75")
    True
    """
    if not checkable(task):
        return None
    return matches(_family(task), task.answer, text, getattr(task, "choices", None))


def predicted(task: Any, text: str | None) -> str | None:
    """What `correctness` read as the text's answer, for tables: a number, a math expression, an option letter
    ("B,C" when several were named), or None (nothing read, or an open-ended task)."""
    family = _family(task)
    if family == "open_ended" or not text:
        return None
    if family == "multiple_choice":
        named = choice_reading(text, getattr(task, "choices", None))
        return ",".join(named) if named else None
    if family == "math":
        return _math_reading(text)
    return predicted_answer(getattr(task, "answer", None), text)
