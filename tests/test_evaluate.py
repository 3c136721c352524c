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


# ---------------------------------------------------------------------------------------------------------------
# Correctness per family (answers.correctness)

from ropd_kit.answers import choice_reading, correctness, final_answer_span, predicted  # noqa: E402
from ropd_kit.data import Task, render_choices  # noqa: E402


def math_task(answer: str) -> Task:
    return Task(id="m", prompt="Compute it.", answer=answer, family="math")


def mc_task(answer: str, choices=("450", "120", "15", "45")) -> Task:
    return Task(id="c", prompt=render_choices("Pick one.", choices), answer=answer, family="multiple_choice",
                choices=tuple(choices))


@pytest.mark.parametrize("gold, text", [
    ("3/4", "Answer: \\frac{3}{4}"), ("\\frac{3}{4}", "Answer: 3/4"), ("\\frac{3}{4}", "\\boxed{0.75}"),
    ("0.75", "So the answer is \\boxed{\\dfrac{3}{4}}."), ("1,000", "Answer: 1000"), ("1000", "Answer: 1,000"),
    ("5", "Answer: 5 cm"), ("5", "\\boxed{5\\text{ cm}}"), ("\\frac{1}{2}", "Answer: 1/2 cup."),
    ("\\frac{48}{11}", "11x = 48\n\\boxed{x = \\frac{48}{11}}"), ("12", "Answer: 3 \\times 4 = 12"),
    ("49.5", "Answer: $49.50."), ("3/4", "Answer: **3/4**"),
])
def test_math_answers_are_equal_in_any_form(gold: str, text: str):
    assert correctness(math_task(gold), text) is True


@pytest.mark.parametrize("gold, text", [
    ("\\frac{3}{4}", "\\boxed{\\frac{4}{3}}"), ("1000", "Answer: 100"), ("5", "Answer: 5 cm, no wait, 6 cm\nAnswer: 6"),
    ("\\frac{1}{2}", "I could not solve it."), ("-\\frac{5}{3}", "So the answer is 5/3."),
])
def test_math_answers_that_differ_are_wrong(gold: str, text: str):
    assert correctness(math_task(gold), text) is False


def test_a_closing_full_stop_does_not_change_a_math_answer():
    # math-verify alone reads "-5/3." as -5/3.0, another expression: the final-answer span is handed over instead.
    assert final_answer_span("So the answer is -5/3.") == "-5/3"
    assert is_correct("-\\frac{5}{3}", "So the answer is -5/3.")
    assert correctness(math_task("-\\frac{5}{3}"), "So the answer is -5/3.")
    assert predicted(math_task("-\\frac{5}{3}"), "So the answer is -5/3.") == "-5/3"


def test_a_closing_remark_in_words_is_not_read_as_the_answer():
    # As prose, math-verify takes the last number it sees: "41 (ref 42)" would read 42.
    assert correctness(math_task("42"), "6 * 7 = 42. Answer: 42 (ref 0)") is True
    assert correctness(math_task("42"), "Answer: 42 (six times seven).") is True
    assert correctness(math_task("42"), "Answer: 41 (ref 42)") is False
    assert correctness(math_task("2"), "Answer: (x+1)(x-1)") is False


def test_arithmetic_keeps_the_exact_integer_rule():
    task = Task(id="a", prompt="What is 6 * 7?", answer="42", domain="arith")
    assert task.family == "arithmetic"
    assert correctness(task, "6 * 7 = 42\nAnswer: 42") is True
    assert correctness(task, "Answer: 42.5") is False
    assert correctness(task, None) is False
    assert predicted(task, "Answer: 1,042") == "1042"


@pytest.mark.parametrize("text, letters", [
    ("75% of 60 is 45.\nAnswer: D", ("D",)), ("The answer is (d).", ("D",)), ("**Answer:** **D**", ("D",)),
    ("Answer: D. 45", ("D",)), ("\\boxed{D}", ("D",)), ("Thinking...\nD", ("D",)), ("Answer: option D", ("D",)),
    ("Answer: 45", ("D",)), ("Answer: 45.", ("D",)),
    ("Answer: B and D", ("B", "D")), ("Answer: B or D", ("B", "D")), ("Answer: B, D", ("B", "D")),
    ("Answer: D\nOn reflection...\nAnswer: B", ("B",)),
    ("Answer: D\nI hope this answer is helpful.", ("D",)),
    ("A is wrong and so is B.", ()), ("Answer: a", ()), ("Answer: E", ()),
])
def test_the_letter_rule_for_multiple_choice(text: str, letters: tuple):
    assert choice_reading(text, ["450", "120", "15", "45"]) == letters
    assert correctness(mc_task("D"), text) is (letters == ("D",))


def test_option_text_stands_for_its_letter_only_when_it_names_one_option():
    choices = ("A dog", "A cat", "Birds", "Cats and dogs")
    assert correctness(mc_task("B", choices), "Answer: B. A cat") is True  # the "A" of the option is not a letter
    assert correctness(mc_task("B", choices), "Answer: a cat.") is True
    assert correctness(mc_task("B", choices), "Answer: A") is False
    twins = ("12", "12.0", "7", "9")  # two options with the same value: the text names neither
    assert choice_reading("Answer: 12", twins) == ()
    assert predicted(mc_task("B"), "Answer: B or C") == "B,C"


def test_open_ended_and_unanswered_tasks_have_nothing_to_check():
    open_task = Task(id="o", prompt="How do I unclog a sink?",
                     rubric=[{"criterion": "Mentions a plunger.", "points": 5}])
    assert open_task.family == "open_ended"
    assert correctness(open_task, "Use a plunger.") is None
    assert predicted(open_task, "Use a plunger.") is None
    assert correctness(Task(id="n", prompt="What is 2+2?", family="math"), "Answer: 4") is None


# ---------------------------------------------------------------------------------------------------------------
# Scores: pass@1 beside the mean score, per step

from ropd_kit.train.evaluate import (  # noqa: E402
    mean_score, metric_name, reference_rubric, reference_scores, rubric_score,
)


def test_mean_score_averages_open_ended_scores_and_checked_answers_alike():
    frame = pd.DataFrame({
        "task_id": ["a", "a", "o", "o", "p", "p"],
        "sample_idx": [0, 1, 0, 1, 0, 1],
        "correct": [True, False, None, None, None, None],
        "score": [1.0, 0.0, 0.5, None, None, None],  # o: one grading failed; p: both failed
    })
    assert pass_at_1(frame) == 0.5  # open-ended tasks have no pass@1 and are left out of it
    assert mean_score(frame) == pytest.approx((0.5 + 0.5) / 2)  # p has no score at all: left out, not a 0
    assert metric_name(frame) == "mean score"
    assert metric_name(frame[frame["task_id"] == "a"]) == "pass@1"
    assert pass_at_1(frame[frame["task_id"] != "a"]) != pass_at_1(frame[frame["task_id"] != "a"])  # NaN
    assert mean_score(frame.drop(columns="score")) == 0.5  # an old eval.jsonl: correct as 1/0


def test_eval_curve_reports_the_mean_score_and_its_failures(tmp_path):
    from ropd_kit import rundir
    from ropd_kit.train.evaluate import eval_curve

    rows = [{"step": 0, "task_id": "o", "sample_idx": 0, "correct": None, "score": 0.25, "grade_error": None},
            {"step": 0, "task_id": "o", "sample_idx": 1, "correct": None, "score": None, "grade_error": "no verdict"},
            {"step": 2, "task_id": "o", "sample_idx": 0, "correct": None, "score": 0.75, "grade_error": None},
            {"step": 2, "task_id": "o", "sample_idx": 1, "correct": None, "score": 0.25, "grade_error": None}]
    rundir.write_jsonl(tmp_path / rundir.EVAL, rows)
    curve = eval_curve(tmp_path).set_index("step")
    assert curve.loc[0, "score"] == 0.25 and curve.loc[0, "grade_failures"] == 1
    assert curve.loc[2, "score"] == 0.5 and curve.loc[2, "metric"] == "mean score"
    assert curve["pass@1"].isna().all()


SINK = Task(id="sink", prompt="My sink drains slowly. How do I fix it?", rubric=[
    {"criterion": "Suggests cleaning the stopper.", "points": 5, "tags": ["axis:accuracy"]},
    {"criterion": "Suggests a plunger.", "points": 10, "tags": ["axis:completeness"]},
    {"criterion": "Says when to call a plumber.", "points": 3, "tags": []},
    {"criterion": "Suggests mixing chemical drain cleaners.", "points": -7, "tags": ["axis:accuracy"]},
])


def test_the_reference_rubric_keeps_its_points_for_the_score():
    rubric, points = reference_rubric(SINK)
    assert points == [5, 10, 3, -7]
    assert rubric.ids == ["r1", "r2", "r3", "r4"]
    assert [c.category for c in rubric.criteria] == ["accuracy", "completeness", "reference", "accuracy"]
    assert rubric.points == [5, 5, 3, -2]  # only to be a valid Rubric: the Verifier is never shown points
    # HealthBench's score: met points over the positive total (18), clipped to [0, 1].
    assert rubric_score(points, [True, True, True, False]) == 1.0
    assert rubric_score(points, [True, False, False, False]) == pytest.approx(5 / 18)
    assert rubric_score(points, [True, True, False, True]) == pytest.approx(8 / 18)
    assert rubric_score(points, [True, False, False, True]) == 0.0  # 5 - 7 < 0 is clipped
    # Soft verdicts: each criterion counts with its probability; a likely pitfall subtracts in proportion.
    assert rubric_score(points, [1.0, 0.5, 0.0, 0.0]) == pytest.approx(10 / 18)
    assert rubric_score(points, [1.0, 1.0, 0.0, 0.5]) == pytest.approx((15 - 3.5) / 18)


def _stub_config(judge, tmp_path, **extra):
    from ropd_kit.bench.stubjudge import STUB_MODEL
    from ropd_kit.config import EndpointConfig, RunConfig

    endpoint = EndpointConfig(base_url=judge.base_url if judge else "http://127.0.0.1:9/v1", model=STUB_MODEL,
                              max_retries=0, timeout_s=30)
    return RunConfig(run_dir=str(tmp_path / "run"), cache_dir=str(tmp_path / "llm-cache"),
                     **{r: endpoint for r in ("teacher", "rubricator", "verifier", "student")}, **extra)


def test_open_ended_answers_are_graded_blind_by_the_verifier_and_replayed_from_the_cache(tmp_path):
    from ropd_kit.bench.stubjudge import StubJudge

    answers = ["Take the stopper out and clean it, then use a plunger.", "Pour in two drain cleaners.", ""]
    with StubJudge() as judge:
        # The stub writes JSON matrices, not log-probabilities: the batched Verifier is what is graded here.
        config = _stub_config(judge, tmp_path, verifier_mode="batched")
        (grade,) = reference_scores([(SINK, answers)], config)
        asked = judge.counts()
        (again,) = reference_scores([(SINK, answers)], config)
        assert judge.counts() == asked  # the second grading came from the LLM cache
    assert asked == {"verdicts": 1}  # one blind, batched call for the two non-empty answers
    _, points = reference_rubric(SINK)
    for score, judgement in zip(grade.scores, grade.judgements):
        assert score == rubric_score(points, judgement)
    assert grade.judgements[2] == [False] * 4 and grade.scores[2] == 0.0  # empty: nothing met, no call
    assert grade.n_failed == 0 and again.scores == grade.scores


def test_a_grading_that_fails_is_counted_not_scored_zero(tmp_path):
    config = _stub_config(None, tmp_path, verify_attempts=1)  # nothing listens on port 9
    (grade,) = reference_scores([(SINK, ["Use a plunger.", "Call a plumber."])], config)
    assert grade.scores == [None, None] and grade.n_failed == 2
    assert all(e and "connection" in e for e in grade.errors)


@pytest.mark.integration
def test_evaluate_writes_a_score_beside_correct_for_every_family(tmp_path):
    """A real SmolLM2 student answers one task of each family; the open-ended one is graded by the verifier
    endpoint (the stub judge: this test is about the records, not the grader's judgement)."""
    from ropd_kit import analysis, rundir
    from ropd_kit.bench.stubjudge import StubJudge
    from ropd_kit.train.evaluate import evaluate

    model, tokenizer = analysis.load_teacher("smollm2-135m-instruct", dtype="float32")
    tasks = [Task(id="a", prompt="What is 2 + 2?", answer="4", domain="arith"), math_task("\\frac{1}{2}"),
             mc_task("D"), SINK]
    with StubJudge() as judge:
        config = _stub_config(judge, tmp_path, verifier_mode="batched")  # the stub writes matrices only
        frame = evaluate(model, tasks, k=2, tokenizer=tokenizer, config=config, temperature=1.0, max_new_tokens=12,
                         step=0, run_dir=tmp_path)
        assert judge.counts() == {"verdicts": 1}  # the open-ended task's two samples, in one blind call
    records = rundir.read_frame(tmp_path / rundir.EVAL)
    assert len(records) == 8 and list(frame.columns) == list(records.columns)
    checked = records[records["task_id"] != "sink"]
    assert checked["correct"].map(type).eq(bool).all()
    assert (checked["score"] == checked["correct"].astype(float)).all()
    graded = records[records["task_id"] == "sink"]
    assert graded["correct"].isna().all() and graded["score"].between(0, 1).all()
    assert frame.attrs["grade_failures"] == 0 and frame.attrs["grade_calls"] == 1
    assert frame.attrs["score"] == pytest.approx(mean_score(records))


def test_evaluation_prompts_follow_the_config_prompts_dir(tmp_path):
    from ropd_kit.config import RunConfig
    from ropd_kit.data import Task
    from ropd_kit.train.evaluate import prompt_messages

    (tmp_path / "student_system.txt").write_text("Our own student instructions.")
    task = Task(id="t1", prompt="What is 2 + 2?", answer="4", domain="arith")
    own = prompt_messages(task, RunConfig(prompts_dir=str(tmp_path)))
    packaged = prompt_messages(task)
    assert own[0]["content"] == "Our own student instructions." != packaged[0]["content"]
    assert own[-1] == packaged[-1] == {"role": "user", "content": "What is 2 + 2?"}
