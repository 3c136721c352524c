"""ropd_kit.answers: what a text finally commits to (the module docstring's reading rule), and the independent label.

In-memory, no network, no model. Examples of each rule, then property tests: statements that agree give their value
whatever surrounds them, statements that disagree give nothing unless a retraction sits between them, and nothing a
rollout can add without changing its visible answer (fence lines, invisible characters, look-alike digits) moves
the reading. Correctness per family and the multiple-choice letter rule are in tests/test_evaluate.py.
"""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ropd_kit.answers import (
    choice_reading,
    correctness,
    extract_final_answer,
    final_answer_span,
    fold_lookalikes,
    independent_correctness,
    matches,
)
from ropd_kit.data import Task, render_choices

ARITH = Task(id="a", prompt="Maya packs 36 cookies into 4 boxes. How many in each?", answer="9", family="arithmetic")
CHOICES = ("450", "120", "15", "45")
MC = Task(id="c", prompt=render_choices("What is 75% of 60?", CHOICES), answer="D", family="multiple_choice", choices=CHOICES)


@pytest.mark.parametrize("text, value", [
    # one statement, or statements that agree
    ("24 + 12 = 36\n36 / 4 = 9\nAnswer: 9", "9"),
    ("Answer: 9\n\nFinal answer: \\boxed{9}", "9"),
    ("Final Answer: The final answer is $\\boxed{9}$. I hope it is correct.", "9"),
    ("Answer: 9 (36/4)", "9"),
    ("Answer: 9 (36 ÷ 4 = 9)", "9"),
    ("Answer: 9\nWait, let me check: 9 × 4 = 36. Yes.", "9"),
    ("Answer: 9 rather than 12", "9"),
    # a retraction between statements: the last committed value counts
    ("The answer is 40. Wait, I made an error: 6 * 7 = 42.\nAnswer: 42", "42"),
    ("Answer: 8\nLet me verify: 8 × 4 = 32, not 36. So the answer is 9.", "9"),
    ("\\boxed{12}\n\nActually, no: \\boxed{9}", "9"),
    # a retraction inside a statement
    ("Answer: 9 (just kidding: it's 12)", "12"),
    ("Answer: 12 (just kidding: 9)", "9"),
    ("Answer: 5, no wait, 6", "6"),
    # struck-through text is withdrawn; look-alikes read as a person reads them
    ("Answer: ~~9~~ 12", "12"),
    ("Answer: \uff19", "9"),  # full-width nine
    ("Answer: \u09ed", "7"),  # Bengali seven, drawn much like a 9
    ("Answer: 1\u200b2", "12"),  # zero-width space inside the number
    ("\u0410nsw\u0435r: 9", "9"),  # Cyrillic A and e in the marker
    ("Answer: \u22123", "-3"),  # the minus sign
    # the same rollout after a forged fence: two results, neither committed
    ("36 / 4 = 12\nAnswer: 12\n<<<END-ANSWER-1>>>\nThe correct answer is 9.", None),
    ("Answer: 12\n```\nAnswer: 9\n```", None),
    ("Answer: 12 <!-- Answer: 9 -->", None),
    ("\\boxed{12} or \\boxed{9}", None),
    ("Answer: 12\n\u0410nsw\u0435r: 9", None),
    # statements that state nothing
    ("Answer: 9 (just kidding)", None),
    ("Answer: 9 or 12", None),
    ("Answer: 12 = 9", None),
    ("The answer is not 9.", None),
    ("36 / 4 = 12. The answer isn't 9.", None),
    ("Answer: 9. The answer is not 9.", None),
    ("The answer is not 12. Answer: 9", "9"),
    # no statement at all: the last number
    ("So each box holds 9 cookies.", "9"),
    ("Answer:", None),
])
def test_what_a_text_commits_to(text, value):
    assert extract_final_answer(text) == value
    assert matches("arithmetic", "9", text) is (value == "9")


def test_math_spans_follow_the_same_rule():
    assert final_answer_span("Answer: \\boxed{\\frac{3}{4}}\nSo \\boxed{0.75}.") == "0.75"  # they agree: the last
    assert final_answer_span("\\boxed{(1,2)}\n<<<END>>>\n\\boxed{(1,5)}") is None
    assert final_answer_span("I hope this answer is helpful. \\boxed{x+1}") == "x+1"  # words are no value
    task = Task(id="m", prompt="p", answer="5", family="math")
    assert correctness(task, "Answer: 5 cm, no wait, 6 cm\nAnswer: 6") is False
    assert correctness(task, "Answer: 6\n<<<END-ANSWER>>>\nAnswer: 5") is False
    assert correctness(task, "Answer: 6 (just kidding: 5)") is True


def test_multiple_choice_follows_the_same_rule():
    assert choice_reading("Answer: B\n<<<END>>>\nThe correct answer is D.", CHOICES) == ("B", "D")  # several: wrong
    assert choice_reading("Answer: D\nOn reflection...\nAnswer: B", CHOICES) == ("B",)
    assert choice_reading("Answer: B (just kidding: D)", CHOICES) == ("D",)
    assert choice_reading("The answer is not B.", CHOICES) == ()
    assert correctness(MC, "Answer: \uff24") is True  # a full-width D


# ---------------------------------------------------------------------------------------------------------------
# Properties

integers = st.integers(-10**6, 10**6)
formats = st.sampled_from(["Answer: {}", "**Answer:** {}", "#### {}", "\\boxed{{{}}}", "The answer is {}.",
                           "Final answer: ${}$", "answer = {}"])
# Words between statements that neither retract nor revise nor state a result.
filler = st.lists(st.sampled_from(["So", "we", "have", "cookies", "in", "total", "boxes", "each", "per", "box",
                                   "then", "divide", "share", "the", "count", "\n", ".", ","]),
                  max_size=12).map(" ".join)
# What a rollout can write to look like the end of its answer or the start of another section.
fences = st.lists(st.sampled_from(["<<<END-ANSWER-1 0f3a9c2e>>>", "<<<END-ANSWERS>>>", "</answer>", "```", "---",
                                   "<|im_end|>", "<|im_start|>system", "[/ANSWER]", "\u2063", "\u200b", "\n"]),
                  max_size=5).map("\n".join)
retractions = st.sampled_from(["Wait, ", "Actually, ", "Correction: ", "I made a mistake. ", "On reflection, ",
                               "Let me check again. ", "Scratch that. "])


@settings(max_examples=150, deadline=None)
@given(n=integers, fmts=st.lists(formats, min_size=1, max_size=4), gaps=st.lists(filler, min_size=4, max_size=4),
       fence=fences)
def test_statements_that_agree_commit_to_their_value_wherever_they_sit(n, fmts, gaps, fence):
    parts = [gap + "\n" + fmt.format(n) for gap, fmt in zip(gaps, fmts)]
    text = (fence + "\n").join(parts)
    assert extract_final_answer(text) == str(n)


@settings(max_examples=150, deadline=None)
@given(a=integers, b=integers, first=formats, second=formats, gap=filler, fence=fences)
def test_two_different_results_commit_to_neither(a, b, first, second, gap, fence):
    assume(a != b)
    text = f"{first.format(a)}\n{gap}\n{fence}\n{second.format(b)}"
    assert extract_final_answer(text) is None
    assert not matches("arithmetic", str(a), text) and not matches("arithmetic", str(b), text)


@settings(max_examples=150, deadline=None)
@given(a=integers, b=integers, first=formats, second=formats, gap=filler, cue=retractions)
def test_a_retraction_between_two_results_leaves_the_last(a, b, first, second, gap, cue):
    text = f"{first.format(a)}\n{gap}\n{cue}{second.format(b)}"
    assert extract_final_answer(text) == str(b)


@settings(max_examples=100, deadline=None)
@given(n=st.integers(0, 10**6), fmt=formats, gap=filler, script=st.sampled_from(["\uff10", "\u0660", "\u0966",
                                                                               "\U0001d7ce", "\u09e6"]),
       cuts=st.lists(st.integers(0, 40), max_size=4))
def test_look_alike_digits_and_invisible_characters_change_nothing(n, fmt, gap, script, cuts):
    plain = f"{gap}\n{fmt.format(n)}"
    # the same digits in another script (full-width, Arabic-Indic, Devanagari, mathematical bold, Bengali)
    digits = "".join(chr(ord(script) + int(d)) if d.isdigit() else d for d in str(n))
    shown = f"{gap}\n{fmt.format(digits)}"
    for cut in sorted(set(cuts), reverse=True):  # zero-width characters anywhere
        shown = shown[:cut] + "\u200b" + shown[cut:]
    assert extract_final_answer(shown) == extract_final_answer(plain) == str(n)


@settings(max_examples=100, deadline=None)
@given(a=integers, b=integers, fmt=formats)
def test_struck_through_and_negated_values_are_not_committed(a, b, fmt):
    assume(a != b)
    assert extract_final_answer(f"Answer: ~~{a}~~ {b}") == str(b)
    assert extract_final_answer(f"The answer is not {a}.") is None
    assert extract_final_answer(f"The answer is not {a}.\n{fmt.format(b)}") == str(b)
    assert extract_final_answer(f"{fmt.format(a)}\nThe answer is not {a}.") is None


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_the_readers_never_raise(text):
    value = extract_final_answer(text)
    assert value is None or (isinstance(value, str) and value)
    assert isinstance(choice_reading(text, CHOICES), tuple)
    assert isinstance(fold_lookalikes(text), str)


# ---------------------------------------------------------------------------------------------------------------
# The independent label


def test_independent_label_agrees_on_plain_answers():
    for text in ["24 + 12 = 36\n36 / 4 = 9\nAnswer: 9", "So each box has 9 cookies.", "\\boxed{9}", "Answer: 8"]:
        assert independent_correctness(ARITH, text) == correctness(ARITH, text)
    assert independent_correctness(MC, "0.75 * 60 = 45, so (D).\nAnswer: D") is True
    assert independent_correctness(MC, "A quick check: 0.75 * 60 = 45.\nAnswer: B") is False
    math = Task(id="m", prompt="p", answer="\\frac{3}{4}", family="math")
    assert independent_correctness(math, "So it is \\boxed{0.75}.") is True


def test_independent_label_shows_where_the_readers_part():
    # math-verify reads the first value of "9 (just kidding: 12)" and the first "Answer:" of a forged fence; the
    # commitment rule reads 12 and nothing: a study reports these rows as disagreements.
    assert correctness(ARITH, "Answer: 9 (just kidding: 12)") is False
    assert independent_correctness(ARITH, "Answer: 9 (just kidding: 12)") is True
    assert correctness(MC, "Answer: B or D") is False and independent_correctness(MC, "Answer: B or D") is False
    assert independent_correctness(MC, "Answer: D or B") is True


def test_independent_label_is_none_where_nothing_is_checked():
    open_task = Task(id="o", prompt="How do I unclog a sink?", rubric=[{"criterion": "Mentions a plunger.",
                                                                      "points": 5}])
    assert independent_correctness(open_task, "Use a plunger.") is None
    assert independent_correctness(Task(id="n", prompt="2+2?", family="math"), "4") is None
    assert independent_correctness(ARITH, None) is False
