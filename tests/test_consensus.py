"""ropd_kit.consensus: the final-result criterion decided by code against the teacher's majority final answer
(in-memory, no network, no model). The check on whole groups through the pipeline is in tests/test_levers_path.py.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ropd_kit.answers import matches
from ropd_kit.consensus import (
    apply_consensus,
    consensus_verdict,
    find_result_criterion,
    is_result_criterion,
    named_value,
)
from ropd_kit.majority import teacher_consensus

CHOICES = ["450", "120", "15", "45"]
RUBRIC_42 = {
    "task_id": "t1",
    "step": 0,
    "criteria": [
        {"id": "c1", "text": "Multiplies 6 by 7", "points": 2, "category": "reasoning"},
        {"id": "c2", "text": "States the final answer 42", "points": 5, "category": "correctness"},
    ],
}


# ---------------------------------------------------------------------------------------------------------------
# The final-result criterion


def test_result_criterion_detection():
    assert find_result_criterion(RUBRIC_42) == 1
    assert is_result_criterion({"text": "The answer is 12", "category": "general"})
    assert is_result_criterion({"text": "Shows the sum", "category": "Final Answer"})
    assert not is_result_criterion({"text": "Explains why the sum is taken", "category": "reasoning"})
    # text about the final answer ranks above a category-only match, whatever the points
    mixed = [{"id": "a", "text": "Adds 3 and 4 correctly", "points": 5, "category": "correctness"},
             {"id": "b", "text": "Gives the final result 14", "points": 3, "category": "reasoning"}]
    assert find_result_criterion(mixed) == 1
    assert find_result_criterion([{"id": "a", "text": "Uses units", "points": 1, "category": "format"}]) is None


@pytest.mark.parametrize(
    "text,value",
    [
        ("States the final answer 42", "42"),
        ("Multiplies 6 by 7 to get the final answer 42", "42"),
        ("The final answer is 1/2 (one half)", "1/2"),
        ("Gives the final result as 1,234 dollars", "1234"),
        ("Reports the answer: \\boxed{17}", "17"),
        ("Explains the method clearly", None),
    ],
)
def test_named_value(text, value):
    assert named_value(text) == value


# ---------------------------------------------------------------------------------------------------------------
# The teacher's consensus and one answer's verdict


def test_teacher_consensus_groups_equivalent_forms():
    assert teacher_consensus(["Answer: 0.5", "so it is half. Answer: 1/2", "Answer: 3"]) in {"0.5", "1/2"}
    # the most common spelling inside the winning group is returned
    assert teacher_consensus(["Answer: 1/2", "Answer: 0.5", "Answer: 1/2", "Answer: 7"]) == "1/2"
    assert teacher_consensus(["#### 2", "Answer: 4/2", "Answer: 5"]) in {"2", "4/2"}
    assert teacher_consensus(["Total: 1,234 apples.", "Answer: 1234", "Answer: 12"]) == "1234"


def test_teacher_consensus_needs_a_strict_majority_of_all_references():
    assert teacher_consensus(["Answer: 5", "Answer: 5", "Answer: 6", "Answer: 7"]) is None  # 2 of 4
    assert teacher_consensus(["Answer: 5", "Answer: 5", "I do not know.", "No idea."]) is None  # unreadable count
    assert teacher_consensus(["Answer: 5", "Answer: 5", "No idea."]) == "5"  # 2 of 3
    assert teacher_consensus(["Answer: 1", "Answer: 2"]) is None
    assert teacher_consensus(["No numbers here.", None]) is None
    assert teacher_consensus([]) is None


def test_teacher_consensus_math_family_compares_whole_expressions():
    # Read as numbers, "(1,2)" and "(1,5)" were both "1", "2x+1" and "2x+5" both "2": math-verify tells them apart.
    assert teacher_consensus(["\\boxed{(1,2)}", "So \\boxed{(1, 2)}.", "\\boxed{(1,5)}"], family="math") in {
        "(1,2)", "(1, 2)"}
    assert teacher_consensus(["\\boxed{(1,2)}", "\\boxed{(1,5)}", "\\boxed{(1,7)}"], family="math") is None
    assert teacher_consensus(["Answer: 2x+1", "Answer: 2x+5", "Answer: 2x + 1"], family="math") in {"2x+1", "2x + 1"}
    assert teacher_consensus(["\\boxed{\\frac{3}{4}}", "Answer: 0.75", "Answer: 3/4"], family="math") is not None
    with pytest.raises(ValueError, match="family"):
        teacher_consensus(["Answer: 1"], family="code")


def test_teacher_consensus_multiple_choice_by_letter():
    refs = ["45 is 75% of 60.\nAnswer: D", "Answer: (d)", "Answer: B"]
    assert teacher_consensus(refs, family="multiple_choice", choices=CHOICES) == "D"
    assert teacher_consensus(["Answer: 45", "Answer: D", "Answer: B"], family="multiple_choice",
                             choices=CHOICES) == "D"  # the option's text names its letter


def test_consensus_verdict():
    assert consensus_verdict("Half of it. Answer: 1/2", "0.5") is True
    assert consensus_verdict("6 * 7 = 42. Answer: 42", "42") is True
    assert consensus_verdict("6 * 7 = 42. Answer: 41", "42") is False
    assert consensus_verdict("Answer: 41", None) is None  # no consensus: the Verifier's verdict stands
    # math: the family's own equivalence, as the evaluation reads it
    assert consensus_verdict("\\boxed{(1,5)}", "(1,2)", family="math") is False
    assert consensus_verdict("\\boxed{(1, 2)}", "(1,2)", family="math") is True
    assert consensus_verdict("Answer: 2x+5", "2x+1", family="math") is False
    assert consensus_verdict("Answer: 1 + 2x", "2x+1", family="math") is True
    # arithmetic keeps exact integers
    assert consensus_verdict("Answer: 42.5", "42") is False and consensus_verdict("Answer: 42.0", "42") is True


def test_apply_consensus_decides_the_result_criterion_by_code():
    v = apply_consensus([True, True], 1, "I claim the answer is right. Answer: 41", "42")
    assert v == [True, False] and v.checked == [1] and v.flipped == [1]
    same = apply_consensus([True, True], 1, "Answer: 42", "42")
    assert same == [True, True] and same.checked == [1] and same.flipped == []
    unchanged = apply_consensus([True, False], 1, "Answer: 42", None)
    assert unchanged == [True, False] and unchanged.checked == []
    assert apply_consensus([True], None, "Answer: 42", "42").checked == []
    assert apply_consensus(None, 0, "Answer: 42", "42") is None
    with pytest.raises(ValueError, match="outside"):
        apply_consensus([True], 3, "Answer: 42", "42")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-50, 50), min_size=1, max_size=7))
def test_consensus_is_the_strict_majority_and_the_verdict_is_the_evaluations_check(values):
    refs = [f"Working...\nAnswer: {v}" for v in values]
    counts = {v: values.count(v) for v in values}
    best = max(counts, key=counts.get)
    expected = str(best) if 2 * counts[best] > len(values) else None
    assert teacher_consensus(refs) == expected
    for v in set(values):
        rollout = f"Answer: {v}"
        verdict = consensus_verdict(rollout, expected)
        assert verdict is (None if expected is None else matches("arithmetic", expected, rollout))


def test_named_value_reads_by_the_family():
    # Read as a number, "(1,2)" named 1; the math family's reader keeps the expression.
    assert named_value("States the final answer (1,2)", "math") == "(1,2)"
    assert named_value("States the final answer 2x+1", "math") == "2x+1"
    assert named_value("Chooses option D (45) as the final answer", "multiple_choice", CHOICES) == "D"
    assert named_value("Explains the method clearly", "math") is None


def test_the_math_family_check_works_off_the_main_thread():
    # TRL awaits async rewards on a background thread, where math-verify's signal-based timeouts raise: the math
    # consensus, the comparison of two statements of one answer and the independent label all run there.
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from ropd_kit.answers import final_answer_span, independent_correctness
    from ropd_kit.data import Task

    def check():
        assert threading.current_thread() is not threading.main_thread()
        task = Task(id="m", prompt="p", answer="\\frac{3}{4}", family="math")
        return (teacher_consensus(["\\boxed{(1,2)}", "Answer: (1, 2)", "\\boxed{(1,5)}"], family="math"),
                consensus_verdict("\\boxed{0.75}\nAnswer: 3/4", "\\frac{3}{4}", family="math"),
                final_answer_span("Answer: \\frac{3}{4}\n\\boxed{0.75}"),
                independent_correctness(task, "so it is 0.75"))

    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(check).result() == ("(1,2)", True, "0.75", True)
