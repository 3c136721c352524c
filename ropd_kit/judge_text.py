"""Text handling shared by rubric induction and blind verification (ROPD stages 3 and 4).

In: raw model output, or answer texts about to be shown to a judge model. Out: the JSON value a model meant to
write (found inside prose, code fences, trailing commas), answers cleaned for judging (reasoning before
`</think>` dropped, a long one cut to its head and tail), and fences an answer cannot break out of. Pure functions, no I/O.
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
    """What a judge gets to see of an answer: reasoning stripped (optionally), whitespace trimmed, and an answer
    longer than `max_chars` cut to its head and its tail (`head_and_tail`), so that its final line — where a
    reasoning answer states its result — is judged."""
    if strip_think:
        text = strip_thinking(text)
    text = text.strip()
    return head_and_tail(text, max_chars) if len(text) > max_chars else text


def head_and_tail(text: str, max_chars: int) -> str:
    """The start and the end of `text` in `max_chars` characters in all, joined by a marker line that says how many
    characters were cut between them (so that the judge does not take the cut for part of the answer).

    The tail gets a third of the budget, or the whole last line when that line fits in half of it; both sides are
    moved to a line break when one lies in their outer half, so no half-line is shown at the cut.
    """
    tail_size = max_chars // 3
    last_line = len(text) - text.rfind("\n") - 1
    if tail_size < last_line <= max_chars // 2:
        tail_size = last_line
    tail_start = len(text) - tail_size
    brk = text.find("\n", tail_start, tail_start + tail_size // 2)
    if brk != -1:
        tail_start = brk + 1
    head_end = max_chars - (len(text) - tail_start)
    brk = text.rfind("\n", head_end // 2, head_end)
    if brk != -1:
        head_end = brk
    cut = tail_start - head_end
    return (f"{text[:head_end]}\n[... {cut} characters cut here: the answer is longer than {max_chars} characters "
            f"...]\n{text[tail_start:]}")


def make_boundary(*parts: object, length: int = 8) -> str:
    """A fence token derived from everything the prompt contains (8 hex characters of a SHA-256).

    Derived rather than random so that the same group gives the same prompt, byte for byte, and a re-run replays it
    from the LLM cache; a random token would make every re-run a fresh, paid call. Safety does not rest on the token
    being secret: `fence` passes the text through `neutralise`, which removes every copy of the token and breaks up
    every `<<<` / `>>>` run, so no text can close its fence or open another whatever it contains. The token only
    makes fences told apart from look-alike text easier for the judge. It is not guessable in advance either: it
    hashes the whole prompt (the other answers and, in verification, the group's seed), which one answer's author
    does not see.
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
