"""The rubric inspector driven headlessly: a run directory written with rundir, sliders moved through `.value`.

In-memory widgets only (no kernel, no browser, no network).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ropd_kit import rundir
from ropd_kit.config import RunConfig
from ropd_kit.inspector import CORRECTNESS_COLUMNS, RubricInspector
from ropd_kit.rubrics import parse_rubric
from ropd_kit.scoring import group_advantages, weighted_pass_rate, weighted_score

CRITERIA = [
    {"id": "c1", "text": "The final answer is 42", "points": 3, "category": "correctness"},
    {"id": "c2", "text": "Shows the multiplication", "points": 2, "category": "reasoning"},
    {"id": "c3", "text": "Writes in English", "points": 1, "category": "style"},
]
# c3 is met by every answer: a dead criterion.
JUDGEMENTS = {
    ("teacher", 0): [True, True, True],
    ("teacher", 1): [True, False, True],
    ("student", 0): [False, True, True],
    ("student", 1): [True, True, True],
    ("student", 2): [False, False, True],
    ("student", 3): [True, False, True],
}
# The blind order the Verifier saw (position 1 first): teachers are not first, so the mapping is exercised.
BLIND_ORDER = [("student", 2), ("teacher", 1), ("student", 0), ("student", 3), ("teacher", 0), ("student", 1)]


def write_run(run: Path, *, pitfalls: bool = False) -> Path:
    RunConfig(run_dir=str(run), pitfalls=pitfalls).save()
    rundir.write_jsonl(
        run / rundir.TASKS,
        [
            {"id": "t1", "prompt": "What is 6 * 7?", "answer": "42", "domain": "arith"},
            {"id": "t2", "prompt": "What is 2 + 2?", "answer": "4", "domain": "arith"},
        ],
    )
    refs = [
        {"task_id": t, "ref_idx": i, "text": f"6 * 7 = 42 (ref {t}/{i}). Answer: 42", "model": "m", "usage": {}}
        for t in ("t1", "t2")
        for i in range(2)
    ]
    # A ref without text is not shown to the judge: it must not shift the numbering of the others.
    refs.insert(0, {"task_id": "t1", "ref_idx": 5, "text": None, "model": "m", "usage": {}})
    rundir.write_jsonl(run / rundir.TEACHER_REFS, refs)
    rollouts = [
        {"task_id": t, "step": s, "rollout_idx": i, "text": f"<script>x</script> try {i}: Answer: {40 + i}",
         "n_tokens": 9, "truncated": False}
        for t in ("t1", "t2")
        for s in (0, 1)
        for i in reversed(range(4))  # stored out of order on purpose
    ]
    rundir.write_jsonl(run / rundir.ROLLOUTS, rollouts)
    rubric = {"model": "m", "n_teacher": 2, "n_student": 4, "attempts": 1, "error": None}
    rundir.write_jsonl(
        run / rundir.RUBRICS,
        [
            {"task_id": "t1", "step": 0, "criteria": CRITERIA, **rubric},
            {"task_id": "t1", "step": 1, "criteria": CRITERIA, **rubric},
            {"task_id": "t2", "step": 0, "criteria": [], **{**rubric, "attempts": 3, "error": "no JSON object"}},
        ],
    )
    points = [c["points"] for c in CRITERIA]
    verdicts = []
    for step in (0, 1):
        for position, (source, idx) in enumerate(BLIND_ORDER, start=1):
            judgement = JUDGEMENTS[(source, idx)]
            verdicts.append(
                {"task_id": "t1", "step": step, "answer_key": f"{source}-{idx}", "source": source,
                 "answer_idx": idx, "position": position, "judgements": judgement,
                 "score": weighted_pass_rate(points, [judgement])[0]}
            )
    rundir.write_jsonl(run / rundir.VERDICTS, verdicts)
    return run


def student_judgements() -> list[list[bool]]:
    return [JUDGEMENTS[("student", i)] for i in range(4)]


@pytest.fixture
def inspector(tmp_path) -> RubricInspector:
    return RubricInspector(write_run(tmp_path / "run"))


def test_opens_on_the_first_group_with_the_recorded_scores(inspector):
    assert (inspector.task_id, inspector.step) == ("t1", 0)
    expected = weighted_pass_rate([3, 2, 1], student_judgements())
    assert inspector.scores == pytest.approx(expected)
    assert inspector.advantages == pytest.approx(group_advantages(expected))
    table = inspector.table()
    assert list(table["score"]) == pytest.approx(list(table["recorded_score"]))


def test_moving_a_slider_recomputes_scores_and_advantages(inspector):
    inspector.sliders["c1"].value = 0
    inspector.sliders["c2"].value = 5
    expected = weighted_pass_rate([0, 5, 1], student_judgements())
    assert inspector.points == [0, 5, 1]
    assert inspector.scores == pytest.approx(expected)
    assert inspector.advantages == pytest.approx(group_advantages(expected))
    # The bar chart shows the same numbers, in blind order.
    shown = inspector.widgets["bars"].data[1].y
    by_label = dict(zip(inspector.table()["label"], inspector.table()["score"]))
    assert list(shown) == pytest.approx([by_label[a.label] for a in inspector.answers])
    # And the scores really changed: rollout 3 meets c1 (now 0 points) and c3, so it falls from 4/6 to 1/6.
    recorded = {a.answer_idx: a.recorded_score for a in inspector.answers if a.source == "student"}
    assert recorded[3] == pytest.approx(4 / 6, abs=1e-5)
    assert inspector.scores[3] == pytest.approx(1 / 6, abs=1e-5)


def test_soft_verdicts_are_scored_and_shown_with_their_probabilities(tmp_path):
    run = write_run(tmp_path / "run")
    soft = {("student", 0): [0.2, 0.9, 0.8], ("student", 1): [0.7, 0.6, 0.9], ("student", 2): [0.1, 0.3, 0.95],
            ("student", 3): [0.55, 0.4, 0.6], ("teacher", 0): [0.9, 0.8, 0.9], ("teacher", 1): [0.8, 0.3, 0.7]}
    records = rundir.read_jsonl(run / rundir.VERDICTS)
    for r in records:
        p = soft[(r["source"], r["answer_idx"])]
        r.update(verdict_kind="soft", probabilities=p, judgements=[v >= 0.5 for v in p],
                 score=weighted_score([3, 2, 1], [p])[0])
    rundir.write_jsonl(run / rundir.VERDICTS, records)
    inspector = RubricInspector(run)
    expected = weighted_score([3, 2, 1], [soft[("student", i)] for i in range(4)])
    assert inspector.scores == pytest.approx(expected)  # the run's own scores, not those of the booleans
    assert list(inspector.table()["score"]) == pytest.approx(list(inspector.table()["recorded_score"]))
    assert inspector.advantages == pytest.approx(group_advantages(expected))
    shown = inspector.verdict_matrix()
    first = inspector.answers[0]
    assert list(shown.iloc[0]) == [round(v, 2) for v in soft[(first.source, first.answer_idx)]]
    inspector.sliders["c3"].value = 0  # a slider re-weights the probabilities
    assert inspector.scores == pytest.approx(weighted_score([3, 2, 0], [soft[("student", i)] for i in range(4)]))


@pytest.fixture(scope="module")
def shared_inspector(tmp_path_factory) -> RubricInspector:
    return RubricInspector(write_run(tmp_path_factory.mktemp("shared") / "run"))


@settings(max_examples=30, deadline=None)
@given(weights=st.lists(st.integers(min_value=0, max_value=5), min_size=3, max_size=3).filter(lambda w: sum(w) > 0))
def test_any_weights_give_weighted_pass_rate(shared_inspector, weights):
    for cid, w in zip(["c1", "c2", "c3"], weights):
        shared_inspector.set_weight(cid, w)
    expected = weighted_pass_rate(weights, student_judgements())
    assert shared_inspector.scores == pytest.approx(expected)
    assert shared_inspector.advantages == pytest.approx(group_advantages(expected))
    assert [s.value for s in shared_inspector.sliders.values()] == weights


def test_answers_are_blind_until_revealed(inspector):
    labels = [a.label for a in inspector.answers]
    assert labels == [f"Answer {i}" for i in range(1, 7)]
    assert set(inspector.table()["author"]) == {"hidden"}
    assert "teacher" not in inspector.widgets["answers"].value
    assert "teacher" not in "".join(inspector.widgets["heatmap"].data[0].y)
    # Answer 1 is what the verifier saw first: student rollout 2.
    assert inspector.answers[0].source == "student" and inspector.answers[0].answer_idx == 2
    # Only rollouts have advantages: shown, they would tell the authors.
    assert inspector.table()["advantage"].isna().all()
    assert len(inspector.widgets["bars"].data[2].y or ()) == 0
    inspector.reveal()
    assert inspector.widgets["reveal"].value is True
    table = inspector.table()
    assert list(table["author"])[:2] == ["student rollout 2", "teacher ref 1"]
    assert "teacher ref 1" in inspector.widgets["answers"].value
    students = [a for a in inspector.answers if a.source == "student"]
    assert list(table["advantage"].dropna()) == pytest.approx([inspector.advantages[a.answer_idx] for a in students])
    assert list(inspector.widgets["bars"].data[2].y) == list(table["advantage"].dropna())
    inspector.reveal(False)
    assert set(inspector.table()["author"]) == {"hidden"}


def test_untrusted_text_is_escaped(inspector):
    assert "<script>" not in inspector.widgets["answers"].value
    assert "&lt;script&gt;" in inspector.widgets["answers"].value


def test_rubric_table_has_diagnostics_and_flags_dead_criteria(inspector):
    table = inspector.rubric_table().set_index("id")
    assert table.loc["c1", "teacher_pass_rate"] == 1.0
    assert table.loc["c1", "student_pass_rate"] == 0.5
    assert table.loc["c3", "discrimination"] == 0.0
    assert inspector.dead_criteria == ["c3"]
    assert "c3" in inspector.widgets["status"].value
    html = inspector.widgets["rubric"].value
    assert "The final answer is 42" in html and "discrimination" in html


def test_heatmap_rows_follow_the_blind_order(inspector):
    z = inspector.widgets["heatmap"].data[0].z
    expected = [[int(v) for v in JUDGEMENTS[key]] for key in BLIND_ORDER]
    assert [list(row) for row in z] == expected


def test_weights_are_checked(inspector):
    with pytest.raises(ValueError, match="0..5"):
        inspector.set_weight("c1", -1)
    with pytest.raises(KeyError, match="c9"):
        inspector.set_weight("c9", 2)


def test_pitfall_runs_allow_negative_weights(tmp_path):
    inspector = RubricInspector(write_run(tmp_path / "run", pitfalls=True))
    assert (inspector.sliders["c3"].min, inspector.sliders["c3"].max) == (-2, 5)
    inspector.sliders["c3"].value = -2
    expected = weighted_pass_rate([3, 2, -2], student_judgements(), pitfalls=True)
    assert inspector.scores == pytest.approx(expected)


def test_dropping_every_criterion_gives_no_reward_and_no_advantage(inspector):
    for cid in ("c1", "c2", "c3"):
        inspector.sliders[cid].value = 0
    assert inspector.scores == [None] * 4
    assert inspector.advantages == [0.0] * 4
    assert "no reward" in inspector.problem
    with pytest.raises(ValueError, match="no criterion with positive points"):
        inspector.export_rubric(inspector.run_dir / "empty.json")


def test_export_writes_a_rubric_parse_rubric_accepts(inspector, tmp_path):
    inspector.set_weight("c2", 0)  # dropped
    inspector.set_weight("c1", 5)
    path = inspector.export_rubric(tmp_path / "edited.json")
    rubric = parse_rubric(path.read_text())
    assert rubric.ids == ["c1", "c3"]
    assert rubric.points == [5, 1]
    assert json.loads(path.read_text())["criteria"][0]["text"] == "The final answer is 42"


def test_choosing_task_and_step_from_the_dropdowns(inspector):
    inspector.set_weight("c1", 1)
    inspector.widgets["step"].value = 1
    assert (inspector.task_id, inspector.step) == ("t1", 1)
    assert inspector.points == [3, 2, 1]  # a new group starts at its induced weights
    assert inspector.sliders["c1"].value == 3
    inspector.widgets["task"].value = "t2"
    assert (inspector.task_id, inspector.step) == ("t2", 0)


def test_a_group_whose_rubric_failed_is_shown_not_crashed(inspector):
    inspector.select("t2", 0)
    assert "no JSON object" in inspector.problem
    assert inspector.scores == [None] * 4
    assert inspector.advantages == [0.0] * 4
    assert inspector.sliders == {}
    positions = sorted(a.position for a in inspector.answers)
    assert positions == list(range(1, 7))  # blind labels even without a verifier order


def test_unknown_group_and_empty_run_dir_are_named(inspector, tmp_path):
    with pytest.raises(KeyError, match="step 7"):
        inspector.select("t1", 7)
    with pytest.raises(FileNotFoundError, match="rubrics.jsonl"):
        RubricInspector(tmp_path / "nothing")


# ---------------------------------------------------------------------------------------------------------------
# Agreement with correctness (tasks.jsonl `answer` is the ground truth)


def set_final_answers(run: Path, right: set[int]) -> None:
    """Rewrite t1's rollouts so that exactly the rollouts in `right` end at the ground truth 42."""
    rollouts = rundir.read_jsonl(run / rundir.ROLLOUTS)
    for r in rollouts:
        if r["task_id"] == "t1":
            r["text"] = f"try {r['rollout_idx']}: Answer: {42 if r['rollout_idx'] in right else 40}"
    rundir.write_jsonl(run / rundir.ROLLOUTS, rollouts)


def test_each_criterion_shows_its_agreement_with_correctness_and_its_n(tmp_path):
    run = write_run(tmp_path / "run")
    set_final_answers(run, right={1, 3})  # exactly the rollouts that meet c1
    inspector = RubricInspector(run)
    assert [a.correct for a in inspector._students()] == [False, True, False, True]
    table = inspector.rubric_table().set_index("id")
    # c1 is met by rollouts 1 and 3: the right ones. c2 by 0 and 1: one right, one wrong. c3 by all.
    assert list(table["agreement"]) == pytest.approx([1.0, 0.5, 0.5])
    assert list(table["n_labelled"]) == [4, 4, 4]
    assert (list(table["n_right"]), list(table["n_wrong"])) == ([2, 2, 2], [2, 2, 2])
    assert list(table["pass_rate_right"]) == pytest.approx([1.0, 0.5, 1.0])
    assert list(table["pass_rate_wrong"]) == pytest.approx([0.0, 0.5, 1.0])
    assert list(table["correct_discrimination"]) == pytest.approx([1.0, 0.0, 0.0])
    assert list(table["is_result"]) == [True, False, False]
    # The verdict spread of rubric_diagnostics stays as it was, beside the new columns.
    assert table.loc["c3", "discrimination"] == 0.0
    assert list(inspector.criterion_agreement().columns) == ["id", "points", *CORRECTNESS_COLUMNS]
    html = inspector.widgets["rubric"].value
    assert "agreement" in html and "correct_discrimination" in html and "n_labelled" in html
    assert "#f8d7da" not in html  # no criterion favours wrong answers here


def test_a_criterion_that_favours_wrong_rollouts_has_negative_discrimination(inspector):
    # The fixture's rollouts end at 40, 41, 42, 43: only rollout 2 is right, and it misses c1 and c2.
    assert [a.correct for a in inspector._students()] == [False, False, True, False]
    table = inspector.rubric_table().set_index("id")
    assert table.loc["c1", "agreement"] == pytest.approx(1 / 4)  # only rollout 0 (wrong, c1 missed) agrees
    assert table.loc["c1", "correct_discrimination"] == pytest.approx(0.0 - 2 / 3)
    assert table.loc["c3", "correct_discrimination"] == pytest.approx(0.0)
    assert (table.loc["c1", "n_right"], table.loc["c1", "n_wrong"]) == (1, 3)
    assert "#f8d7da" in inspector.widgets["rubric"].value  # shaded in the page
    # The answers table carries the same labels, teacher refs included (both end at 42), in blind order.
    correct = dict(zip(inspector.table()["label"], inspector.table()["correct"]))
    assert correct == {a.label: (a.source == "teacher" or a.answer_idx == 2) for a in inspector.answers}


def test_agreement_does_not_move_with_the_weights_but_the_scores_do(inspector):
    before = inspector.rubric_table()[["agreement", "correct_discrimination"]]
    inspector.sliders["c1"].value = 0
    after = inspector.rubric_table()[["agreement", "correct_discrimination"]]
    assert after.equals(before)
    assert inspector.rubric_table().set_index("id").loc["c1", "points"] == 0


def test_unjudged_rollouts_are_left_out_of_the_agreement_n(tmp_path):
    run = write_run(tmp_path / "run")
    set_final_answers(run, right={1, 3})
    verdicts = rundir.read_jsonl(run / rundir.VERDICTS)
    for v in verdicts:
        if v["answer_key"] == "student-3":
            v["judgements"], v["score"] = None, None
    rundir.write_jsonl(run / rundir.VERDICTS, verdicts)
    table = RubricInspector(run).rubric_table().set_index("id")
    assert list(table["n_labelled"]) == [3, 3, 3]
    assert (table.loc["c1", "n_right"], table.loc["c1", "n_wrong"]) == (1, 2)
    assert table.loc["c1", "agreement"] == pytest.approx(1.0)


def test_without_ground_truth_the_columns_are_empty_and_hidden_in_the_page(tmp_path):
    run = write_run(tmp_path / "run")
    tasks = rundir.read_jsonl(run / rundir.TASKS)
    for t in tasks:
        t.pop("answer")
    rundir.write_jsonl(run / rundir.TASKS, tasks)
    inspector = RubricInspector(run)
    table = inspector.rubric_table()
    assert list(table["n_labelled"]) == [0, 0, 0]
    assert table["agreement"].isna().all() and table["correct_discrimination"].isna().all()
    assert inspector.table()["correct"].map(lambda v: v is None).all()
    html = inspector.widgets["rubric"].value
    assert "correct_discrimination" not in html and "n_labelled" not in html and "no ground-truth answer" in html


def test_notebook_02_can_read_what_was_judged_without_a_model(tmp_path):
    from ropd_kit import notebook_tools

    run = write_run(tmp_path / "run")
    before = (run / rundir.VERDICTS).read_bytes()
    summary = notebook_tools.judge_groups(RunConfig.load(run / "config.json"), judge=False)
    # t1 step 0 is judged; t2's rubric failed. Step 1 is a later step, not counted.
    assert (summary["groups"], summary["groups_failed"], summary["rubric_failures"]) == (2, 1, 1)
    assert summary["mean_criteria"] == 3
    assert summary["student_score_mean"] == pytest.approx(sum(weighted_pass_rate([3, 2, 1], student_judgements())) / 4)
    assert summary["verifier_calls"] is None and summary["failures"] == {"t2": "no JSON object"}
    assert (run / rundir.VERDICTS).read_bytes() == before  # nothing rewritten
    with pytest.raises(FileNotFoundError, match="judge=True"):
        notebook_tools.judge_groups(RunConfig(run_dir=str(tmp_path / "empty")), judge=False)
