"""Ground-truth checks of evaluation (no model): integer exact match, math-verify, pass@1 over k samples.

The model-driven part of `evaluate()` (batched generation, eval.jsonl) runs in tests/integration/test_train.py on a
real SmolLM2 checkpoint.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ropd_kit.answers import is_correct, predicted_answer
from ropd_kit.train.evaluate import pass_at_1


@given(st.integers(min_value=-10**9, max_value=10**9))
def test_integer_answer_matches_its_own_final_line(n: int):
    text = f"First 3 + 4 = 7.\nThen more steps.\nAnswer: {n}"
    assert is_correct(str(n), text)
    assert not is_correct(str(n + 1), text)


@given(st.integers(min_value=1000, max_value=10**9))
def test_thousands_separators_are_the_same_number(n: int):
    assert is_correct(f"{n:,}", f"Answer: {n}")
    assert is_correct(str(n), f"The total is {n:,} dollars.")


def test_the_last_committed_answer_wins_over_earlier_numbers():
    assert is_correct("14", "I first thought 12. Checking again: 7 * 2 = 14.\nAnswer: 14")
    assert not is_correct("12", "I first thought 12. Checking again: 7 * 2 = 14.\nAnswer: 14")
    assert not is_correct("5", "I do not know.")


def test_math_answers_go_through_math_verify():
    assert is_correct("\\frac{1}{2}", "So the probability is $\\boxed{0.5}$.")
    assert is_correct("\\frac{1}{2}", "The answer is \\boxed{\\dfrac{1}{2}}")
    assert not is_correct("\\frac{1}{3}", "The answer is \\boxed{\\frac{1}{2}}")
    assert predicted_answer("\\frac{1}{2}", "The answer is \\boxed{\\frac{1}{2}}") is not None


def test_math_verify_works_off_the_main_thread():
    # TRL awaits async rewards on a background thread, where math-verify's signal-based timeouts raise.
    def check() -> tuple[bool, bool]:
        assert threading.current_thread() is not threading.main_thread()
        return is_correct("\\frac{1}{2}", "\\boxed{0.5}"), is_correct("\\sqrt{2}", "\\boxed{2}")

    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(check).result() == (True, False)


def test_a_task_without_ground_truth_is_refused():
    with pytest.raises(ValueError, match="answer"):
        is_correct(None, "Answer: 3")


def test_pass_at_1_averages_each_tasks_sample_accuracy():
    frame = pd.DataFrame(
        {
            "task_id": ["a", "a", "b", "b", "c", "c"],
            "sample_idx": [0, 1, 0, 1, 0, 1],
            "correct": [True, False, True, True, False, False],
        }
    )
    assert pass_at_1(frame) == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert pass_at_1(frame.iloc[:0]) != pass_at_1(frame.iloc[:0])  # NaN for nothing evaluated


def test_eval_curve_keeps_the_newest_evaluation_of_a_re_evaluated_step(tmp_path):
    from ropd_kit import rundir
    from ropd_kit.train.evaluate import eval_curve

    def row(step, task, idx, correct):
        return {"step": step, "checkpoint": None, "task_id": task, "sample_idx": idx, "correct": correct}

    # Step 2 was evaluated, the run was killed and resumed, and step 2 was evaluated again with other results.
    rows = [row(0, "a", 0, False), row(0, "b", 0, False),
            row(2, "a", 0, False), row(2, "b", 0, False),
            row(2, "a", 0, True), row(2, "b", 0, True)]
    (tmp_path / rundir.EVAL).write_text("".join(pd.Series(r).to_json() + "\n" for r in rows))
    curve = eval_curve(tmp_path).set_index("step")
    assert curve.loc[2, "pass@1"] == 1.0
    assert curve.loc[2, "n_tasks"] == 2
    assert curve.loc[0, "pass@1"] == 0.0
