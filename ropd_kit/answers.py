"""Final answers and correctness against ground truth, per task family.

`correctness(task, text)` is the one check every consumer uses when a task is at hand (evaluation, the rlvr reward,
the AUC labels, the fidelity labels, notebook tables, and, with the teacher's answer in place of the ground truth,
the consensus check: `matches(family, answer, text)`); it dispatches on `task.family`:
- "arithmetic": the final number the text commits to equals the integer answer exactly (`extract_final_answer`).
- "math": math-verify equivalence ("3/4" = "\\frac{3}{4}" = "0.75", "1,000" = "1000", "5 cm" = "5"), applied to the
  span the text commits to (`final_answer_span`, sentence punctuation removed) rather than the whole text, so "So
  the answer is -5/3." reads -5/3 and not a prose sentence; a text that states no result is read whole.
- "multiple_choice": the option the text commits to (`choice_reading`). The letters a statement names are the
  option letters standing alone ("B", "(B)", "B.", "**B**"; a lower-case letter only in parentheses, since "a" is a
  word), after the options' own texts are taken out ("Answer: B. A dog" names only B); with no letter, a content
  that is exactly one option's text (case, spacing and a closing full stop ignored; numbers compared as numbers:
  "Answer: 45" for "D. 45") names that option. One letter: that option. Several ("B and C", "B or D", or final
  statements naming different options): the answer names several options and is wrong. None: no answer (wrong).
- "open_ended": no answer to check (None); its score is the reference rubric's, graded by the Verifier
  (`train.evaluate.reference_scores`).
`is_correct(answer, text)` is the check without a task (integer answers exactly, anything else by math-verify on the
committed span); `predicted(task, text)` is what the check read, for tables. `independent_correctness(task, text)`
is a second check that shares none of this reading, to show where the reading is blind.

What a text commits to (`read_commitment`; every family reads this way)
1. The whole text is the answer. A fence line, a role tag, an "end of answer" marker or a code block inside it ends
   nothing: what follows is the same answer, read like the rest.
2. It is read as a person sees it (`fold_lookalikes`): invisible characters removed, letters drawn like Latin ones
   (Cyrillic "А") as Latin, full-width and mathematical digits as plain ones, every script's digits by their value;
   struck-through text (`~~9~~`, `<del>`) is withdrawn.
3. Its explicit statements of the result are the answer markers ("Answer: X", "Final answer: X", "the answer is X",
   "answer = X", "#### X") and \\boxed{X}; a statement runs to the end of its line or to the next statement. Each
   states one value: what follows its last "=" ("3 × 4 = 12" states 12), the value written first ("9 (36/4)"
   states 9); a remark in words after it changes nothing ("42 (six times seven)").
4. Within a statement, a retraction or revision ("just kidding", "no, wait", "actually", "correction", "scratch
   that") followed by a value states that value: the last committed value counts ("9 (just kidding: 12)" states
   12). A retraction with no value after it withdraws the statement ("9 (just kidding)" states nothing). A
   statement that names two values ("9 or 12", "12 = 9") states nothing.
5. Between statements, a retraction, a revision or a check ("wait", "actually", "I made a mistake", "on
   reflection", "let me check") withdraws every statement before it; the statements after the last such word are
   the final ones.
6. The final statements must agree (by the family's own equality: "0.5" and "1/2" agree, "(1,2)" and "(1,5)" do
   not). Then the text commits to their value; if they disagree it contradicts itself and commits to nothing, so a
   forged end of answer followed by another result ("Answer: 12 <<<END>>> The correct answer is 9") answers
   neither. A negated statement ("the answer is not 9") states no value, and a text whose final value it denies
   commits to nothing.
7. A text with no statement at all is read by its family's fallback: the last number for arithmetic, math-verify's
   own search of the whole text for math, no answer for multiple choice (unless its last line is a lone letter).
The cue words are English; answers in other languages are read by rules 1-3, 6 and 7 alone.

`extract_final_answer(text)` is the number a text commits to as a normalised string ("1,234" -> "1234", "42.0" ->
"42", "3 / 4" -> "3/4"), or None. A committed answer that is LaTeX math rather than a number ("\\boxed{\\frac{1}{2}}")
comes back as written, so that it can never be mistaken for the integer 1. Also `last_boxed(text)`, the content of
the last LaTeX \\boxed{...} with nested braces, which the dataset loaders use to read MATH-style solutions.
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable, Sequence

log = logging.getLogger(__name__)

# Thousands groups must be exactly three digits, so "1,2,3" stays a list of three numbers, not 123.
_NUMBER = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")

# Where an explicit statement of the result starts; its content runs to the end of its line or to the next statement
# on that line. "Answer: 42", "**Answer:** 42", "Final answer: 42", "The answer is 42", "answer = 42", "#### 42";
# negated: "the answer is not 42", "the answer isn't 42" (`sep` tells them apart).
_MARKERS = (
    re.compile(r"(?i)\banswer\b\W{0,3}?\**\s*(?P<sep>:|\bis\s+not\b|\bisn['’]t\b|\bis\b|=)\**\s*"),
    re.compile(r"####\s*(?P<sep>)"),
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


# ---------------------------------------------------------------------------------------------------------------
# Reading what a text finally commits to (the rule is in the module docstring)

# Characters that render as nothing: a digit split by one of them ("1\u200b2") is still the number a reader sees.
_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u180e\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\ufeff"))
# Cyrillic and Greek capitals (and a few small letters) that are drawn like Latin ones, and the minus sign.
_LOOKALIKE = str.maketrans(
    "АВЕКМНОРСТХаеорсухіјѕԁАΒΕΖΗΙΚΜΝΟΡΤΥΧο\u2212",
    "ABEKMHOPCTXaeopcyxijsdABEZHIKMNOPTYXo-",
)
# Superscript digits are an exponent.
_SUPERSCRIPT = re.compile("[\u207b\u00b9\u00b2\u00b3\u2070\u2074-\u2079]+")
_SUPERSCRIPT_PLAIN = str.maketrans("\u207b\u00b9\u00b2\u00b3\u2070\u2074\u2075\u2076\u2077\u2078\u2079", "-1230456789")


def fold_lookalikes(text: str) -> str:
    """`text` as a reader sees it: invisible characters removed, letters drawn like Latin ones as Latin, full-width and
    mathematical letters and digits as plain ones, every script's decimal digits as 0-9 by their value (so "\u09ed",
    a Bengali 7 drawn much like a 9, reads 7), and superscript digits as the exponent they are ("9\u00b2" is 9^{2},
    not 9). Fractions and Roman numerals stay as written.

    >>> fold_lookalikes("\u0410nsw\u0435r: \uff11\u200b2"), fold_lookalikes("9\u00b2")
    ('Answer: 12', '9^{2}')
    """
    text = text.translate(_INVISIBLE).translate(_LOOKALIKE)
    if not text.isascii():
        text = _SUPERSCRIPT.sub(lambda m: "^{" + m.group().translate(_SUPERSCRIPT_PLAIN) + "}", text)
    if text.isascii():
        return text
    out = []
    for ch in text:
        if ord(ch) < 128:
            out.append(ch)
        elif unicodedata.decomposition(ch).startswith(("<wide>", "<font>", "<narrow>")):
            out.append(unicodedata.normalize("NFKC", ch))
        elif unicodedata.category(ch) == "Nd":
            out.append(str(unicodedata.decimal(ch)))
        else:
            out.append(ch)
    return "".join(out)


# Struck-through text is withdrawn text: "Answer: ~~9~~ 12" answers 12.
_STRUCK = re.compile(r"~~[^~\n]*~~|<(s|del|strike)>.*?</\1>", re.IGNORECASE | re.DOTALL)


def _unstruck(text: str) -> str:
    # Blanked rather than cut, so that positions in the text stay where they were.
    return _STRUCK.sub(lambda m: " " * len(m.group()), text)


# A retraction withdraws what came before it: said of a stated result, it leaves nothing committed unless a new
# value follows. A revision introduces a new value. A check re-examines: between two statements it withdraws the
# earlier one (the text went back over it), inside a statement it introduces a computation, not a new value.
_RETRACTION = (
    r"just\s+kidding|kidding|joking|not\s+really|scratch\s+that|never\s*mind|disregard\s+(?:that|this|the\s+above)"
    r"|ignore\s+(?:that|this|the\s+above)|(?:that|this|it)(?:['’]s|\s+is|\s+was)\s+(?:wrong|incorrect|not\s+right)"
    r"|i\s+(?:made|make)\s+an?\s+(?:mistake|error)|my\s+(?:mistake|bad)"
)
_REVISION = (
    r"wait|actually|correction|on\s+second\s+thought|on\s+reflection|i\s+mean|oops|no\s*[,;:!\u2014\u2013-]"
    r"|make\s+that|or\s+rather"
)
_CHECK = r"let\s+me\s+(?:re-?check|double-?check|check|verify|reconsider|recalculate|recompute|redo)|re-?checking"
_IN_STATEMENT_CUE = re.compile(rf"(?i)\b(?:(?P<retraction>{_RETRACTION})|(?P<revision>{_REVISION}))")
_CUE = re.compile(rf"(?i)\b(?:{_RETRACTION}|{_REVISION}|{_CHECK})")
# "9 or 12": a statement that names two values commits to neither.
_HEDGE = re.compile(r"(?i)\bor\b|\band/or\b")
_CUE_LEAD = re.compile(r"(?i)^[\s,;:.!?)\]\u2014\u2013-]*(?:(?:it|that)(?:['’]s|\s+is|\s+was)\s+|make\s+it\s+)?")


class _Void:
    """A statement that contradicts itself or is withdrawn within itself: it commits to nothing."""


VOID = _Void()


@dataclass
class Commitment:
    """What a text commits to as its final answer (`read_commitment`).

    `value`: the committed answer, None when the text commits to none. `marked`: whether the text states its result
    explicitly at all (an answer marker or \\boxed{} with a value, or a negated one); an unmarked text is read by the
    family's fallback instead. `values`: the final statements' values, in text order (several and different when the
    text contradicts itself). `reason`: why nothing is committed ("contradicts itself", "withdrawn or contradicts
    itself" for a statement that does, "negated").
    """

    value: Any = None
    marked: bool = False
    values: list = field(default_factory=list)
    reason: str | None = None


def _after_cue(text: str) -> str:
    # "(just kidding: it's 12)" -> "12": the words that lead to the new value, and a parenthesis the cue sat in.
    text = _CUE_LEAD.sub("", text, count=1)
    if text.count(")") > text.count("("):
        text = text[: text.rfind(")")]
    return text


def _plain_number(text: str) -> Fraction | None:
    text = re.sub(r"^[\s$*`(]+|[\s$*`).,;:!?]+$", "", text)
    if _NUMBER.fullmatch(text) or _FRACTION.fullmatch(text):
        try:
            return Fraction(text.replace(",", "").replace(" ", ""))
        except (ValueError, ZeroDivisionError):
            return None
    return None


def _statement_value(content: str, read: Callable[[str], Any], same: Callable[[Any, Any], bool], *,
                     hedges: bool, equations: bool) -> Any:
    """The value one statement's content commits to: a value, VOID, or None (it states no value)."""
    cues = list(_IN_STATEMENT_CUE.finditer(content))
    if cues:
        after = read(_after_cue(content[cues[-1].end():]))
        if after is not None:  # a retraction or revision with a new value: the last committed value counts
            return after
        if any(c.group("retraction") for c in cues):
            return VOID
        content = content[: cues[0].start()]
    value = read(content)
    if value is None:
        return None
    if hedges:
        others = [read(part) for part in _HEDGE.split(content)[1:]]
        if any(o is not None and not same(o, value) for o in others):
            return VOID
    if equations and "=" in content:
        stated = _plain_number(str(value).rsplit("=", 1)[-1])
        if stated is not None and any((side := _plain_number(s)) is not None and side != stated
                                      for s in content.split("=")[:-1]):
            return VOID  # "12 = 9" states two values
    return value


def read_commitment(
    text: str | None,
    read: Callable[[str], Any],
    same: Callable[[Any, Any], bool],
    *,
    markers: Sequence[re.Pattern] = _MARKERS,
    boxed: bool = True,
    extra: Sequence[tuple[int, str]] = (),
    hedges: bool = False,
    equations: bool = False,
    folded: bool = False,
) -> Commitment:
    """The final answer `text` commits to, by the module docstring's rule, for one way of reading a value.

    `read(content)`: the value a statement's content states, or None; `same(a, b)`: whether two values are one
    answer. `markers`: where statements start (patterns with a `sep` group); `boxed`: \\boxed{} counts
    as a statement; `extra`: further (position, content) statements (a final line that is only a letter);
    `hedges`: "9 or 12" commits to nothing; `equations`: "12 = 9" commits to nothing.
    """
    if not text:
        return Commitment()
    if not folded:
        text = fold_lookalikes(text)
    text = _unstruck(text)
    found: list[tuple[int, bool, Any]] = []  # (start, negated, value)
    heads = sorted((m for pattern in markers for m in pattern.finditer(text)), key=lambda m: m.start())
    for k, match in enumerate(heads):
        end = text.find("\n", match.end())
        end = len(text) if end < 0 else end
        if k + 1 < len(heads):
            end = min(end, heads[k + 1].start())
        content = text[match.end():max(end, match.end())]
        sep = match.group("sep").lower()
        negated = "not" in sep or "n't" in sep or "n’t" in sep or bool(re.match(r"(?i)\s*not\b", content))
        if negated:
            value = read(re.sub(r"(?i)^\s*not\b", "", content))
        else:
            value = _statement_value(content, read, same, hedges=hedges, equations=equations)
        if value is not None:
            found.append((match.start(), negated, value))
    if boxed:
        for start, content in _boxed_spans(text):
            value = _statement_value(content, read, same, hedges=hedges, equations=equations)
            if value is not None:
                found.append((start, False, value))
    for start, content in extra:
        value = read(content)
        if value is not None:
            found.append((start, False, value))
    if not found:
        return Commitment()
    found.sort(key=lambda f: f[0])
    # A retraction, revision or check followed by a statement withdraws every statement before it.
    cut = max((m.start() for m in _CUE.finditer(text) if m.start() < found[-1][0]), default=-1)
    final = [f for f in found if f[0] > cut] or found[-1:]
    stated = [value for _, negated, value in final if not negated]
    denied = [value for _, negated, value in final if negated and value is not VOID]
    if not stated:
        return Commitment(marked=True, reason="negated")
    if any(v is VOID for v in stated):
        return Commitment(marked=True, values=stated, reason="withdrawn or contradicts itself")
    value = stated[-1]
    if any(not same(v, value) for v in stated):
        return Commitment(marked=True, values=stated, reason="contradicts itself")
    if any(same(d, value) for d in denied):
        return Commitment(marked=True, values=stated, reason="negated")
    return Commitment(value=value, marked=True, values=stated)


_FRACTION = re.compile(r"(?<![\w.])(-?\d+)\s*/\s*(\d+)(?![\w.])")
# Math that is not a plain number ("\frac{1}{2}", "2\sqrt{3}", "x^2"): reading its first digit would be wrong.
_NON_NUMERIC_LATEX = re.compile(r"\\(?:frac|dfrac|tfrac|sqrt|pi|infty|cdot|times|div)|\^")


def _number_in(content: str) -> str | None:
    # "Answer: 3 × 4 = 12 apples": the committed value is what follows the last '='.
    tail = content.rsplit("=", 1)[-1].strip()
    if _NON_NUMERIC_LATEX.search(tail):
        return re.sub(r"^[\s$.]+|[\s$.]+$", "", tail) or None
    # The value written first: "9 (36/4)" states 9, "3/4 cup" states 3/4.
    fraction, number = _FRACTION.search(tail), _NUMBER.search(tail)
    if fraction and (number is None or fraction.start() <= number.start()):
        return f"{int(fraction.group(1))}/{int(fraction.group(2))}"
    match = number or _NUMBER.search(content)
    return normalize_number(match.group()) if match else None


def _same_number(a: str, b: str) -> bool:
    if a == b:
        return True
    x, y = _plain_number(a), _plain_number(b)
    if x is not None and y is not None:
        return x == y
    return _same_math(a, b)


def extract_final_answer(text: str | None) -> str | None:
    """The final number a text commits to (the module docstring's rule), or None.

    >>> extract_final_answer("3 + 4 = 7 apples, then 7 * 2 = 14.\\nAnswer: 14")
    '14'
    >>> extract_final_answer("She pays $1,234 in total.")
    '1234'
    >>> extract_final_answer("Answer: 12\\nThe correct answer is 9.") is None  # two results: neither
    True
    """
    if not text:
        return None
    text = fold_lookalikes(text)
    reading = read_commitment(text, _number_in, _same_number, hedges=True, equations=True, folded=True)
    if reading.marked:
        return reading.value
    numbers = _NUMBER.findall(_unstruck(text))
    return normalize_number(numbers[-1]) if numbers else None


# ---------------------------------------------------------------------------------------------------------------
# The final-answer span (what math-verify is handed)

# "$", "**" and "`" wrap answers in markdown and LaTeX; a sentence's closing punctuation is not part of its value
# ("-5/3." reads as -5/3.0 to math-verify's parser, a different expression).
_SPAN_EDGES = re.compile(r"^(?:[\s*`$=:]|\\\$|\\\(|\\\[)+|(?:[\s*`$.,;:!?(\[]|\\\$|\\\)|\\\])+$")


# A closing remark in words after the answer ("42 (six times seven)", "12 (ref 2)").
_REMARK = re.compile(r"\s+\((?=[^()]*[A-Za-z]{2})[^()\\]*\)$")


def _clean_span(content: str) -> str:
    return _SPAN_EDGES.sub("", content.strip())


# What makes a span math rather than words: a digit, a LaTeX command, an operator or a bracket.
_MATHY = re.compile(r"[\d\\=+\-*/^()\[\]{}<>|√π∞]")


def _span_in(content: str) -> str | None:
    # "Answer: \boxed{3/4}" states 3/4 (and its \boxed{} is a statement of its own: the two agree).
    boxed = _boxed_spans(content)
    span = _clean_span(boxed[-1][1] if boxed else content)
    # Words are not a value ("Final Answer: The final answer is ...", "I hope this answer is helpful"); a short
    # symbol is ("x").
    if not span or (not _MATHY.search(span) and len(span) > 2):
        return None
    return span


def _span_commitment(text: str | None) -> Commitment:
    return read_commitment(text, _span_in, _same_math, equations=True)


def final_answer_span(text: str | None) -> str | None:
    """The span a text commits to as its final answer (the module docstring's rule: its explicit statements,
    "Answer: ...", "the answer is ...", "#### ...", \\boxed{...}), with markdown, "$" and closing punctuation
    stripped; None when the text marks no answer or commits to none.

    >>> final_answer_span("So the answer is -5/3.")
    '-5/3'
    >>> final_answer_span("x = 3, so\\n\\\\boxed{\\\\frac{3}{4}}")
    '\\\\frac{3}{4}'
    """
    return _span_commitment(text).value


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
    committed = _span_commitment(text)
    span = committed.value
    if span is None:
        if committed.marked:  # it states results, but commits to none of them
            return []
        whole = _clean_span(_unstruck(fold_lookalikes(text)))
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


def _same_math(a: str, b: str) -> bool:
    """Whether two final-answer spans are one answer: the same text, the same number, or math-verify-equivalent
    either way round."""
    if _clean_span(a) == _clean_span(b):
        return True
    x, y = _plain_number(a), _plain_number(b)
    if x is not None and y is not None:
        return x == y
    from math_verify import verify

    first, second = _parse_gold(a), _parse_gold(b)
    if not first or not second:
        return False
    timeout = _timeout()
    try:
        return bool(verify(first, second, timeout_seconds=timeout) or verify(second, first, timeout_seconds=timeout))
    except Exception as exc:  # noqa: BLE001 - a comparison sympy cannot do: two answers, not one
        log.debug("math-verify could not compare %r with %r: %s", a, b, exc)
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
    committed = _span_commitment(text)
    if committed.value is not None or committed.marked:
        return committed.value
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
    text = _unstruck(fold_lookalikes(text))
    choices = [fold_lookalikes(str(c)) for c in choices] if choices else choices
    n = n_choices or (len(choices) if choices else len(_LETTERS))
    allowed = _LETTERS[:n]

    def named(content: str) -> tuple[str, ...] | None:
        return _letters_in(content, choices, allowed) or _option_named(content, choices, allowed) or None

    last_line = text.rstrip().rsplit("\n", 1)[-1]
    extra = [(len(text.rstrip()) - len(last_line), last_line)] if _LETTER_LINE.match(last_line.strip()) else []
    reading = read_commitment(text, named, lambda a, b: a == b, markers=_MARKERS[:1], extra=extra, folded=True)
    if reading.value is not None:
        return reading.value
    # Statements that name different options: the answer names several, which is no choice.
    letters = [letter for value in reading.values if isinstance(value, tuple) for letter in value]
    return tuple(dict.fromkeys(letters))


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


# ---------------------------------------------------------------------------------------------------------------
# A second, independent correctness label

_ARTICLE = re.compile(r"(?:A|I)\s+[a-z]")


def _last_named_letter(text: str, allowed: str) -> str | None:
    # The last line that names an option letter, and the first letter it names ("A dog", "I think" are words).
    for line in reversed(text.splitlines()):
        for match in _LONE_LETTER.finditer(line):
            letter = (match.group(1) or match.group(2)).upper()
            if letter in allowed and not (match.group(2) and _ARTICLE.match(line, match.start())):
                return letter
    return None


def independent_correctness(task: Any, text: str | None) -> bool | None:
    """A second correctness label, read by a reader that shares nothing with `correctness`: where the two disagree,
    one of them has a blind spot (the consensus check reads answers as `correctness` does, so a blind spot there
    cannot show in a study labelled by it alone). None where `correctness` is None.

    - "arithmetic" and "math": math-verify on the whole text, with its own search for the final answer (the last
      \\boxed{}, a "final answer is" phrase, else the last expression), against the ground truth; none of this
      module's reading (statements, retractions, look-alike folding) is used.
    - "multiple_choice": the first option letter named on the last line that names one.

    >>> from ropd_kit.data import Task
    >>> task = Task(id="t", prompt="What is 6 * 7?", answer="42", family="arithmetic")
    >>> independent_correctness(task, "6 * 7 = 42"), independent_correctness(task, "Answer: 41")
    (True, False)
    """
    if not checkable(task):
        return None
    if not text:
        return False
    answer = str(task.answer).strip()
    if _family(task) == "multiple_choice":
        choices = getattr(task, "choices", None)
        return _last_named_letter(text, _LETTERS[: len(choices) if choices else len(_LETTERS)]) == answer.upper()
    from math_verify import parse, verify

    timeout = _timeout()
    gold = _parse_gold(answer)
    found = parse(text, parsing_timeout=timeout)
    if not gold or not found:
        return False
    try:
        return bool(verify(gold, found, timeout_seconds=timeout))
    except Exception as exc:  # noqa: BLE001 - a comparison sympy cannot do is a disagreement to show, not a crash
        log.debug("math-verify could not compare %r with %r: %s", answer, text[-80:], exc)
        return False


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
