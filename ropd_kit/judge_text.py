"""Text handling shared by rubric induction and blind verification (ROPD stages 3 and 4).

In: raw model output, or answer texts about to be shown to a judge model. Out: the JSON value a model meant to
write (found inside prose, code fences, trailing commas), answers cleaned for judging (reasoning before
`</think>` dropped, length capped), and fences an answer cannot break out of. Pure functions, no I/O.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Callable, Iterator

THINK_END = "</think>"
_THINK_START = "<think>"

# Model output is scanned from every "{" / "[" it contains; degenerate output ("{{{{...") would make that quadratic,
# so the slow (repairing) path stops after this many characters scanned in all.
_SLOW_SCAN_BUDGET = 200_000

_decoder = json.JSONDecoder()


def strip_thinking(text: str) -> str:
    """The text after the last `</think>`; an answer that opens `<think>` and never closes it has no answer part."""
    if THINK_END in text:
        return text.rsplit(THINK_END, 1)[1]
    if text.lstrip().startswith(_THINK_START):
        return ""
    return text


def clean_answer(text: str, *, max_chars: int, strip_think: bool = True) -> str:
    """What a judge gets to see of an answer: reasoning stripped (optionally), whitespace trimmed, length capped."""
    if strip_think:
        text = strip_thinking(text)
    text = text.strip()
    if len(text) > max_chars:
        # Said plainly so that the judge does not take the cut for the answer's own ending.
        text = text[:max_chars].rstrip() + f"\n[... cut here: the answer is longer than {max_chars} characters]"
    return text


def make_boundary(*parts: object, length: int = 8) -> str:
    """A fence token derived from everything the prompt contains.

    Derived rather than random so that the same group gives the same prompt (and hits the LLM cache on replay);
    an answer cannot contain it on purpose because it would have to contain a hash of itself.
    """
    digest = hashlib.sha256()
    for part in parts:
        digest.update(repr(part).encode("utf-8", "surrogatepass"))
        digest.update(b"\x00")
    return digest.hexdigest()[:length]


_ANGLE_RUN = re.compile(r"<{3,}|>{3,}")


def neutralise(text: str, boundary: str) -> str:
    """Make `text` unable to open or close a fence: no `<<<` / `>>>` runs, no copy of the boundary token."""
    text = _ANGLE_RUN.sub(lambda m: " ".join(m.group()), text)
    if boundary:
        text = re.sub(re.escape(boundary), "[token removed]", text, flags=re.IGNORECASE)
    return text


def fence(label: str, text: str, boundary: str) -> str:
    """`text` between an opening and a closing marker line that carry `label` and the boundary token."""
    return f"<<<{label} {boundary}>>>\n{neutralise(text, boundary)}\n<<<END-{label} {boundary}>>>"


def _balanced_end(text: str, start: int, limit: int) -> int | None:
    """Index just past the bracket that closes `text[start]`, honouring JSON strings; None when unbalanced
    or not closed within `limit` characters."""
    closer = {"{": "}", "[": "]"}
    stack = [closer[text[start]]]
    i = start + 1
    in_string = False
    n = min(len(text), start + limit)
    while i < n:
        ch = text[i]
        if in_string:
            if ch == "\\":
                i += 2
                continue
            if ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            stack.append(closer[ch])
        elif ch in "}]":
            if ch != stack.pop():
                return None
            if not stack:
                return i + 1
        i += 1
    return None


_BARE = {"True": "true", "False": "false", "None": "null"}


def repair_json(snippet: str) -> str:
    """Fix what models commonly get wrong outside strings: trailing commas, Python's True/False/None."""
    out: list[str] = []
    i, n = 0, len(snippet)
    in_string = False
    while i < n:
        ch = snippet[i]
        if in_string:
            out.append(ch)
            if ch == "\\" and i + 1 < n:
                out.append(snippet[i + 1])
                i += 2
                continue
            if ch == '"':
                in_string = False
            i += 1
            continue
        if ch == '"':
            in_string = True
            out.append(ch)
            i += 1
            continue
        if ch == ",":
            j = i + 1
            while j < n and snippet[j].isspace():
                j += 1
            if j < n and snippet[j] in "}]":
                i += 1  # drop the trailing comma
                continue
        if ch.isalpha():
            j = i
            while j < n and (snippet[j].isalnum() or snippet[j] == "_"):
                j += 1
            word = snippet[i:j]
            out.append(_BARE.get(word, word))
            i = j
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def iter_json_values(text: str) -> Iterator[Any]:
    """Every JSON object/array found in `text`, in order of where it starts (so outer values before inner ones)."""
    budget = _SLOW_SCAN_BUDGET
    for match in re.finditer(r"[{\[]", text):
        start = match.start()
        try:
            value, _ = _decoder.raw_decode(text, start)
        except (json.JSONDecodeError, RecursionError):  # absurd nesting is not a rubric either
            pass
        else:
            yield value
            continue
        if budget <= 0:
            continue
        end = _balanced_end(text, start, budget)
        budget -= (end or len(text)) - start
        if end is None:
            continue
        try:
            yield json.loads(repair_json(text[start:end]), strict=False)
        except (json.JSONDecodeError, RecursionError):
            continue


def find_json(text: str, accept: Callable[[Any], Any | None]) -> Any | None:
    """The first JSON value in `text` for which `accept` returns something other than None (that is returned)."""
    for value in iter_json_values(text):
        shaped = accept(value)
        if shaped is not None:
            return shaped
    return None


def letter_label(i: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA: labels for reference answers."""
    label = ""
    i += 1
    while i:
        i, rem = divmod(i - 1, 26)
        label = chr(ord("A") + rem) + label
    return label
