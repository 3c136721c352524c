"""Soft verdicts per answer: one request lists every criterion, the reply gives a "<number>: true|false" line per
criterion, and each line's verdict token is read as p(true). Parsing the reply's log-probabilities, the prompt."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from ropd_kit.config import RunConfig
from ropd_kit.judge_text import fence
from ropd_kit.verify import (
    sheet_max_tokens,
    sheet_probabilities,
    sheet_verifier_messages,
    soft_verifier_messages,
)

QUESTION = "A shop sells 4 boxes of 6 eggs. How many eggs is that?"
CRITERIA = ["States the final answer 24.", "Shows the multiplication 4 * 6.", "Names the unit, eggs."]


def _plain(token: str) -> dict:
    return {"token": token, "logprob": 0.0, "top": [[token, 0.0]]}


def _verdict(token: str, p_true: float) -> dict:
    """A verdict position whose top list holds the yes and no spellings with p_true : 1 - p_true."""
    return {"token": token, "logprob": math.log(max(p_true, 1 - p_true)),
            "top": [[" true", math.log(p_true * 0.9)], ["true", math.log(p_true * 0.1)],
                    [" false", math.log((1 - p_true) * 0.9)], ["False", math.log((1 - p_true) * 0.1)]]}


def _reply(lines: list[tuple[str, str, float]], *, separator: str = ":") -> list[dict]:
    """Positions of a reply "<number><sep> <word>\\n..." tokenised as a BPE tokenizer does: number, separator, word."""
    out: list[dict] = []
    for k, (number, word, p) in enumerate(lines):
        if k:
            out.append(_plain("\n"))
        out += [_plain(number), _plain(separator), _verdict(" " + word, p)]
    return out


@given(st.lists(st.floats(min_value=0.01, max_value=0.99), min_size=1, max_size=12))
def test_each_line_gives_its_criterion_the_share_of_yes(ps):
    reply = _reply([(str(k + 1), "true" if p >= 0.5 else "false", p) for k, p in enumerate(ps)])
    read = sheet_probabilities(reply, len(ps))
    assert read == pytest.approx(ps)


def test_lines_out_of_order_missing_or_repeated():
    reply = _reply([("3", "true", 0.7), ("1", "false", 0.2), ("3", "false", 0.1), ("9", "true", 0.9)])
    # 3 is read from its first line; 2 has no line; 9 is beyond the rubric.
    read = sheet_probabilities(reply, 3)
    assert read[0] == pytest.approx(0.2) and read[1] is None and read[2] == pytest.approx(0.7)


@pytest.mark.parametrize("separator", [":", ".", ")", " -", ": "])
def test_the_usual_ways_of_numbering_a_line(separator):
    read = sheet_probabilities(_reply([("1", "true", 0.8), ("2", "false", 0.3)], separator=separator), 2)
    assert read == pytest.approx([0.8, 0.3])


def test_a_line_that_names_the_criterion_counts():
    reply = [_plain("Criterion"), _plain(" 2"), _plain(":"), _verdict(" true", 0.6)]
    assert sheet_probabilities(reply, 2)[1] == pytest.approx(0.6)


def test_verdict_words_that_are_not_on_a_numbered_line_are_not_verdicts():
    # A sentence before the lines ("... is true"), a number with more text after it, words inside a line.
    reply = [_plain("The"), _plain(" claim"), _plain(" is"), _verdict(" true", 0.9), _plain("\n"),
             _plain("1"), _plain(":"), _plain(" it"), _plain(" is"), _verdict(" false", 0.1), _plain("\n"),
             _plain("2"), _plain(":"), _verdict(" false", 0.3)]
    read = sheet_probabilities(reply, 2)
    assert read[0] is None and read[1] == pytest.approx(0.3)


def test_no_log_probabilities_read_as_nothing():
    assert sheet_probabilities(None, 3) == [None, None, None]
    assert sheet_probabilities([], 2) == [None, None]


def test_room_for_every_line():
    assert sheet_max_tokens(1) >= 5 and sheet_max_tokens(12) >= 12 * 5


def test_the_prompt_lists_the_criteria_before_the_answer_and_shares_that_prefix_across_answers():
    answers = ["4 * 6 = 24.\nAnswer: 24", "Answer: 20"]
    first, second = (sheet_verifier_messages(QUESTION, CRITERIA, a, "b0und") for a in answers)
    assert first[0] == second[0]
    user1, user2 = first[1]["content"], second[1]["content"]
    prefix = user1[: user1.index("<<<ANSWER b0und>>>")]
    assert user2.startswith(prefix) and QUESTION in prefix
    assert all(f"{k}. {c}" in prefix for k, c in enumerate(CRITERIA, 1))
    assert fence("ANSWER", answers[0], "b0und") in user1


@pytest.mark.parametrize("family", [None, "math", "multiple_choice", "open_ended"])
def test_the_instructions_are_the_soft_verifiers_but_for_the_criteria_list_and_the_reply_lines(family):
    from ropd_kit.data import Task

    from ropd_kit.data import render_choices

    choices = ["20", "24", "26", "30"]
    options = {"choices": choices, "answer": "B", "prompt": render_choices(QUESTION, choices)} \
        if family == "multiple_choice" else {"answer": "24", "prompt": QUESTION}
    task = Task(id="t", family=family, **options) if family else QUESTION
    sheet = sheet_verifier_messages(task, CRITERIA, "Answer: 24", "b0und")[0]["content"].split("\n\n")
    single = soft_verifier_messages(task, CRITERIA[0], "Answer: 24", "b0und")[0]["content"].split("\n\n")
    assert sheet[1:-1] == single[1:-1]  # how to judge, and the answer as data: the same rules
    assert "numbered list of criteria" in sheet[0] and '"2: false"' in sheet[-1]
    assert "one criterion" in single[0] and "one word" in single[-1]


def test_the_mode_refuses_the_levers_that_need_written_replies():
    assert RunConfig(verifier_mode="soft_per_answer").verifier_mode == "soft_per_answer"
    with pytest.raises(ValidationError, match="verifier_mode='soft_per_answer' reads each verdict"):
        RunConfig(verifier_mode="soft_per_answer", verifier_samples=3)
