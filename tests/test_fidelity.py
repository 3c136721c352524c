"""ropd_kit.fidelity: the reward-fidelity study's pure machinery (in-memory, no network, no model).

Hand-made banks whose AUCs are computed by hand, the cluster bootstrap checked against an explicit resampling,
within-group pairing, per-criterion agreement, labels. The levers it measures are tested beside their
stages (tests/test_levers.py, tests/test_consensus.py).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from ropd_kit.fidelity import (
    agreement_table,
    auc_with_ci,
    criterion_verdicts,
    group_criterion_table,
    json_records,
    label_correct,
    rank_auc,
    result_value_check,
    result_value_summary,
    signal_summary,
    split_by,
    summary_frame,
    teacher_competence,
    verdict_coverage,
    within_group_auc,
)
from ropd_kit.fidelity.stats import NO_PAIRS, ONE_CLASS


def bank(rows):
    """rows: (task_id, step, score, correct)."""
    return pd.DataFrame(rows, columns=["task_id", "step", "score", "correct"])


def no_nan(value) -> bool:
    """True when no float anywhere in a (nested) result is NaN."""
    if isinstance(value, float):
        return not math.isnan(value)
    if isinstance(value, dict):
        return all(no_nan(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(no_nan(v) for v in value)
    return True


# ---------------------------------------------------------------------------------------------------------------
# Pooled AUC with a cluster bootstrap


def test_perfect_signal_gives_one_with_interval_one_to_one():
    f = bank([("a", 0, 0.9, True), ("a", 0, 0.1, False), ("b", 0, 0.8, True), ("b", 0, 0.2, False),
              ("c", 0, 0.7, True), ("c", 0, 0.3, False)])
    r = auc_with_ci(f, "score", n_boot=500)
    assert (r["auc"], r["low"], r["high"]) == (1.0, 1.0, 1.0)
    assert (r["n"], r["n_pos"], r["n_neg"], r["n_clusters"]) == (6, 3, 3, 3)
    assert r["n_boot_used"] == 500  # every task holds both classes: every draw has both
    assert r["note"] is None


def test_reversed_signal_gives_zero():
    f = bank([("a", 0, 0.1, True), ("a", 0, 0.9, False), ("b", 0, 0.2, True), ("b", 0, 0.8, False)])
    r = auc_with_ci(f, "score", n_boot=300)
    assert (r["auc"], r["low"], r["high"]) == (0.0, 0.0, 0.0)


def test_hand_computed_auc_three_quarters_and_ties_count_half():
    # right 0.9 beats both wrongs, right 0.4 beats 0.1 but not 0.5: 3 of 4 pairs.
    f = bank([("a", 0, 0.9, True), ("a", 0, 0.5, False), ("b", 0, 0.4, True), ("b", 0, 0.1, False)])
    assert auc_with_ci(f, "score", n_boot=0)["auc"] == pytest.approx(0.75)
    assert rank_auc(f["correct"], f["score"]) == pytest.approx(0.75)
    # A tie between a right and a wrong rollout is half a win: (0.5 + 1 + 1 + 1) / 4.
    g = bank([("a", 0, 0.5, True), ("a", 0, 0.5, False), ("b", 0, 0.9, True), ("b", 0, 0.1, False)])
    assert auc_with_ci(g, "score", n_boot=0)["auc"] == pytest.approx(0.875)
    assert rank_auc(g["correct"], g["score"]) == pytest.approx(0.875)


def _task_bank(rows_per_task: int) -> pd.DataFrame:
    """8 tasks; every rollout of a task shares the task's score and label (so tasks, not rows, are the units)."""
    tasks = [("t0", 0.9, True), ("t1", 0.3, True), ("t2", 0.8, True), ("t3", 0.7, True),
             ("t4", 0.2, False), ("t5", 0.6, False), ("t6", 0.1, False), ("t7", 0.4, False)]
    return bank([(t, 0, s, y) for t, s, y in tasks for _ in range(rows_per_task)])


def test_cluster_bootstrap_resamples_tasks_not_rows():
    f = _task_bank(10)
    by_task = auc_with_ci(f, "score", cluster="task_id", n_boot=2000, seed=3)
    by_row = auc_with_ci(f, "score", cluster=None, n_boot=2000, seed=3)
    assert by_task["auc"] == by_row["auc"] == pytest.approx(14 / 16)
    assert by_task["n_clusters"] == 8 and by_row["n_clusters"] == 80
    assert by_task["resampled"] == "clusters (task_id)" and by_row["resampled"] == "rows"
    width_task = by_task["high"] - by_task["low"]
    width_row = by_row["high"] - by_row["low"]
    assert width_task > 1.5 * width_row  # 8 independent units, not 80
    # Resampling tasks of a 10-rows-per-task bank is resampling the rows of the 1-row-per-task bank: the same draws
    # (same seed, same number of units) give the same interval, because copying every row of a draw 10 times
    # leaves its AUC unchanged.
    one_row = auc_with_ci(_task_bank(1), "score", cluster=None, n_boot=2000, seed=3)
    assert (one_row["low"], one_row["high"]) == pytest.approx((by_task["low"], by_task["high"]))


def test_bootstrap_matches_explicit_resampling_of_tasks():
    rng = np.random.default_rng(7)
    rows = []
    for t in range(12):
        for _ in range(int(rng.integers(1, 6))):
            rows.append((f"t{t}", 0, float(rng.integers(0, 5)), bool(rng.random() < 0.5)))
    f = bank(rows)
    n_boot, seed = 300, 11
    got = auc_with_ci(f, "score", n_boot=n_boot, seed=seed)
    # The same multinomial draws, applied by literally concatenating each drawn task's rows.
    tasks = sorted(f["task_id"].unique())
    draws = np.random.default_rng(seed).multinomial(len(tasks), np.full(len(tasks), 1 / len(tasks)), size=n_boot)
    # Each task's row positions, concatenated as numpy indices (pd.concat of frames per draw cost seconds).
    rows_of = {t: np.flatnonzero(f["task_id"].to_numpy() == t) for t in tasks}
    correct, score = f["correct"].to_numpy(), f["score"].to_numpy()
    values = []
    for counts in draws:
        rows = np.concatenate([rows_of[t] for t, m in zip(tasks, counts) for _ in range(m)])
        if len(set(correct[rows])) == 2:
            values.append(roc_auc_score(correct[rows], score[rows]))
    assert got["n_boot_used"] == len(values)
    assert (got["low"], got["high"]) == pytest.approx(tuple(np.quantile(values, [0.025, 0.975])))
    assert got["auc"] == pytest.approx(roc_auc_score(f["correct"], f["score"]))


def test_single_class_is_undefined_not_nan():
    f = bank([("a", 0, 0.9, True), ("b", 0, 0.1, True)])
    r = auc_with_ci(f, "score")
    assert r["auc"] is None and r["low"] is None and r["high"] is None
    assert r["note"] == ONE_CLASS == "undefined (one class)"
    assert (r["n_pos"], r["n_neg"], r["n_boot_used"]) == (2, 0, 0)
    assert no_nan(r)
    json.dumps(r, allow_nan=False)
    w = within_group_auc(f, "score")
    assert w["auc"] is None and w["note"] == ONE_CLASS and no_nan(w)


def test_missing_signal_and_label_rows_are_dropped_and_counted():
    f = bank([("a", 0, 0.9, True), ("a", 0, float("nan"), False), ("b", 0, 0.1, False), ("b", 0, 0.5, None),
              ("c", 0, float("inf"), False)])
    r = auc_with_ci(f, "score", n_boot=50)
    assert (r["n"], r["n_missing"], r["auc"]) == (2, 3, 1.0)


def test_seed_makes_the_interval_reproducible():
    f = _task_bank(3)
    a = auc_with_ci(f, "score", seed=5, n_boot=400)
    b = auc_with_ci(f, "score", seed=5, n_boot=400)
    c = auc_with_ci(f, "score", seed=6, n_boot=400)
    assert a == b
    assert (a["low"], a["high"]) != (c["low"], c["high"])


def test_draws_without_both_classes_are_not_used():
    # Each task holds one class: a draw of only right (or only wrong) tasks has no AUC and is skipped.
    f = bank([("a", 0, 0.9, True), ("b", 0, 0.1, False)])
    r = auc_with_ci(f, "score", n_boot=1000, seed=0)
    assert 350 < r["n_boot_used"] < 650  # P(both tasks drawn) = 1/2
    assert (r["low"], r["high"]) == (1.0, 1.0)


def test_bad_arguments_raise():
    f = _task_bank(1)
    with pytest.raises(KeyError, match="nope"):
        auc_with_ci(f, "nope")
    with pytest.raises(ValueError, match="level"):
        auc_with_ci(f, "score", level=1.0)


scores_and_labels = st.lists(
    st.tuples(st.integers(0, 6).map(float), st.booleans()), min_size=2, max_size=40
).filter(lambda rows: len({y for _, y in rows}) == 2)


@settings(max_examples=60, deadline=None)
@given(scores_and_labels)
def test_auc_of_signal_and_negated_signal_sum_to_one(rows):
    f = bank([(f"t{i % 5}", 0, s, y) for i, (s, y) in enumerate(rows)])
    up = auc_with_ci(f, "score", n_boot=0)["auc"]
    down = auc_with_ci(f.assign(score=-f["score"]), "score", n_boot=0)["auc"]
    assert up + down == pytest.approx(1.0)


@settings(max_examples=60, deadline=None)
@given(scores_and_labels)
def test_pair_counting_auc_equals_sklearn(rows):
    y = [r[1] for r in rows]
    s = [r[0] for r in rows]
    assert rank_auc(y, s) == pytest.approx(roc_auc_score(y, s))


@settings(max_examples=30, deadline=None)
@given(scores_and_labels, st.integers(0, 1000))
def test_interval_is_ordered_and_inside_unit_range(rows, seed):
    f = bank([(f"t{i % 4}", 0, s, y) for i, (s, y) in enumerate(rows)])
    r = auc_with_ci(f, "score", n_boot=100, seed=seed)
    if r["n_boot_used"]:
        assert 0.0 <= r["low"] <= r["high"] <= 1.0
    assert no_nan(r)


# ---------------------------------------------------------------------------------------------------------------
# Within-group AUC


def test_within_group_ranks_perfectly_while_pooled_auc_is_below_half():
    # Task a: mostly wrong rollouts with high scores; task b: mostly right rollouts with low scores. Inside each
    # group the right rollout is on top, across groups the order is reversed.
    f = bank([("a", 0, 0.95, True), ("a", 0, 0.9, False), ("a", 0, 0.9, False), ("a", 0, 0.9, False),
              ("b", 0, 0.2, True), ("b", 0, 0.2, True), ("b", 0, 0.2, True), ("b", 0, 0.1, False)])
    pooled = auc_with_ci(f, "score", n_boot=200)
    within = within_group_auc(f, "score", n_boot=200)
    assert pooled["auc"] == pytest.approx(7 / 16) and pooled["auc"] < 0.5
    assert within["auc"] == 1.0 and (within["low"], within["high"]) == (1.0, 1.0)
    assert (within["n_pairs"], within["n_groups"], within["n_groups_mixed"]) == (3 + 3, 2, 2)


def test_within_group_pairs_only_inside_groups_and_ties_count_half():
    f = bank([
        ("a", 0, 0.5, True), ("a", 0, 0.5, False), ("a", 0, 0.1, False),  # pairs: tie (1/2) + win (1)
        ("a", 1, 0.2, True), ("a", 1, 0.8, False),                         # step 1 is its own group: loss (0)
        ("b", 0, 0.9, True), ("b", 0, 0.7, True),                          # one class: no pairs
        ("c", 0, 0.0, False),
    ])
    r = within_group_auc(f, "score", n_boot=0)
    assert r["auc"] == pytest.approx(1.5 / 3)
    assert (r["n_pairs"], r["n_groups"], r["n_groups_mixed"], r["n_clusters"]) == (3, 4, 2, 3)
    assert (r["low"], r["high"], r["n_boot_used"]) == (None, None, 0)


def test_within_group_without_mixed_groups_is_undefined():
    f = bank([("a", 0, 0.9, True), ("b", 0, 0.1, False)])
    r = within_group_auc(f, "score")
    assert r["auc"] is None and r["note"] == NO_PAIRS and r["n_pairs"] == 0
    assert no_nan(r)


def test_within_group_bootstrap_resamples_tasks():
    # Task a ranks right, task b wrong: resampling tasks gives draws of all-a (1.0), all-b (0.0) and mixes.
    f = bank([("a", 0, 0.9, True), ("a", 0, 0.1, False), ("b", 0, 0.1, True), ("b", 0, 0.9, False)])
    r = within_group_auc(f, "score", n_boot=2000, seed=1)
    assert r["auc"] == 0.5 and r["n_clusters"] == 2
    assert (r["low"], r["high"]) == (0.0, 1.0)


def test_groups_must_nest_in_clusters():
    f = bank([("a", 0, 0.9, True), ("b", 0, 0.1, False)])
    with pytest.raises(ValueError, match="nested"):
        within_group_auc(f, "score", group="step", cluster="task_id")


@settings(max_examples=40, deadline=None)
@given(scores_and_labels)
def test_within_group_of_one_group_is_the_pooled_auc(rows):
    f = bank([("t", 0, s, y) for s, y in rows])
    assert within_group_auc(f, "score", n_boot=0)["auc"] == pytest.approx(auc_with_ci(f, "score", n_boot=0)["auc"])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 6).map(float), st.booleans()), min_size=2, max_size=40),
       st.lists(st.integers(-100, 100), min_size=4, max_size=4))
def test_within_group_ignores_per_group_offsets(rows, offsets):
    f = bank([(f"t{g}", 0, s, y) for g, s, y in rows])
    shifted = f.assign(score=[s + offsets[int(t[1:])] for t, s in zip(f["task_id"], f["score"])])
    a = within_group_auc(f, "score", n_boot=0)
    b = within_group_auc(shifted, "score", n_boot=0)
    assert a["auc"] == b["auc"] and a["n_pairs"] == b["n_pairs"]


# ---------------------------------------------------------------------------------------------------------------
# Strata and summaries


def _stratified_bank() -> pd.DataFrame:
    f = _task_bank(2)
    return f.assign(teacher_competent=f["task_id"].isin(["t0", "t1", "t4", "t5"]), judge=1.0 - f["score"])


def test_split_by_teacher_competence_computes_each_stratum():
    f = _stratified_bank()
    out = split_by(f, "teacher_competent", auc_with_ci, "score", n_boot=0)
    assert list(out) == ["all", "teacher_competent=False", "teacher_competent=True"]
    # competent tasks: right {0.9, 0.3} vs wrong {0.2, 0.6} -> 3 of 4; the others: {0.8, 0.7} vs {0.1, 0.4} -> 1.
    assert out["teacher_competent=True"]["auc"] == pytest.approx(0.75)
    assert out["teacher_competent=False"]["auc"] == pytest.approx(1.0)
    assert out["all"]["n"] == 16 and out["teacher_competent=True"]["n"] == 8
    with_missing = f.assign(teacher_competent=[None] * 2 + list(f["teacher_competent"][2:]))
    assert "teacher_competent=missing" in split_by(with_missing, "teacher_competent", len)
    assert split_by(f, None, len) == {"all": 16}


def test_signal_summary_is_json_ready_and_flattens():
    f = _stratified_bank()
    summary = signal_summary(f, ["score", "judge"], n_boot=100)
    assert set(summary) == {"score", "judge"}
    assert set(summary["score"]) == {"auc", "within_group_auc"}
    assert summary["judge"]["auc"]["all"]["auc"] == pytest.approx(1 - summary["score"]["auc"]["all"]["auc"])
    json.dumps(summary, allow_nan=False)
    table = summary_frame(summary)
    assert len(table) == 2 * 2 * 3
    assert {"signal", "measure", "stratum", "auc", "low", "high", "n_pos", "n_neg"} <= set(table.columns)
    # a stratum column that is not there gives "all" only
    assert list(signal_summary(f, ["score"], by="absent", n_boot=0)["score"]["auc"]) == ["all"]


def test_json_records_turns_nan_into_none():
    records = json_records(pd.DataFrame({"a": [1.0, float("nan")], "b": [np.int64(3), np.int64(4)]}))
    assert records == [{"a": 1.0, "b": 3}, {"a": None, "b": 4}]
    assert type(records[0]["b"]) is int


# ---------------------------------------------------------------------------------------------------------------
# Criteria: the result criterion, its named value, agreement with correctness


RUBRIC_42 = {
    "task_id": "t1",
    "step": 0,
    "criteria": [
        {"id": "c1", "text": "Multiplies 6 by 7", "points": 2, "category": "reasoning"},
        {"id": "c2", "text": "States the final answer 42", "points": 5, "category": "correctness"},
    ],
}


def test_result_value_check_and_summary():
    rubrics = [
        RUBRIC_42,
        {"task_id": "t2", "step": 0, "criteria": [{"id": "c1", "text": "States the final answer 41", "points": 5,
                                                   "category": "result"}]},
        {"task_id": "t3", "step": 0, "criteria": [{"id": "c1", "text": "The final answer is 1/2", "points": 5,
                                                   "category": "result"}]},
        {"task_id": "t4", "step": 0, "criteria": [{"id": "c1", "text": "Shows all steps", "points": 2,
                                                   "category": "reasoning"}]},
        {"task_id": "t5", "step": 0, "criteria": [{"id": "c1", "text": "States the final answer clearly",
                                                   "points": 5, "category": "result"}]},
        {"task_id": "t6", "step": 0, "criteria": [{"id": "c1", "text": "States the final answer 9", "points": 5,
                                                   "category": "result"}]},
    ]
    truth = {"t1": "42", "t2": "42", "t3": "0.5", "t4": "7", "t5": "3", "t6": None}
    table = result_value_check(rubrics, truth).set_index("task_id")
    assert table.loc["t1", "names_right_value"] is True and table.loc["t1", "result_id"] == "c2"
    assert table.loc["t2", "names_right_value"] is False
    assert table.loc["t3", "names_right_value"] is True  # 1/2 named, 0.5 the truth: equal by math-verify
    assert table.loc["t4", "result_idx"] is None and table.loc["t4", "names_right_value"] is None
    assert not table.loc["t5", "names_value"] and table.loc["t5", "names_right_value"] is False
    assert table.loc["t6", "names_right_value"] is None  # no ground truth
    summary = result_value_summary(table.reset_index())
    assert summary == {"n_rubrics": 6, "n_with_result": 5, "n_naming_value": 4, "n_checked": 4, "n_right": 2,
                       "share_right": 2 / 5, "share_right_of_named": 2 / 3}
    # a rubric appended again for the same group replaces the earlier one
    replaced = result_value_check([RUBRIC_42, {**RUBRIC_42, "criteria": rubrics[1]["criteria"]}], truth)
    assert len(replaced) == 1 and replaced.loc[0, "names_right_value"] is False


def _verdicts():
    rows = [  # answer, correct, judgements [c1 reasoning, c2 result]
        ("student-0", True, [True, True]),
        ("student-1", False, [True, True]),
        ("student-2", False, [True, False]),
        ("student-3", True, [False, True]),
    ]
    records = [{"task_id": "t1", "step": 0, "answer_key": k, "source": "student", "judgements": j, "score": 0.0,
                "correct": y, "teacher_competent": True} for k, y, j in rows]
    records.append({"task_id": "t1", "step": 0, "answer_key": "student-4", "source": "student",
                    "judgements": None, "score": None, "correct": True, "teacher_competent": True})
    records.append({"task_id": "t1", "step": 0, "answer_key": "teacher-0", "source": "teacher",
                    "judgements": [False, False], "score": 0.0, "correct": True, "teacher_competent": True})
    records.append({"task_id": "t9", "step": 0, "answer_key": "student-0", "source": "student",
                    "judgements": [True], "score": 1.0, "correct": True, "teacher_competent": False})
    return records


def test_criterion_verdicts_and_agreement_by_category():
    long = criterion_verdicts([RUBRIC_42], _verdicts())
    assert len(long) == 4 * 2  # four judged, labelled student answers x two criteria
    assert long.attrs == {"n_failed": 1, "n_unlabelled": 0, "n_no_rubric": 1}
    assert set(long["source"]) == {"student"} and "teacher_competent" in long.columns
    assert list(long.loc[long["criterion_id"] == "c2", "is_result"]) == [True] * 4
    table = agreement_table(long).set_index("category")
    # result: verdicts T,T,F,T on right,wrong,wrong,right -> agree 3/4; pass right 1.0, wrong 0.5
    assert table.loc["correctness", "agreement"] == pytest.approx(0.75)
    assert table.loc["correctness", "discrimination"] == pytest.approx(0.5)
    # reasoning: T,T,T,F -> agree 1/4; pass right 0.5, wrong 1.0: it rewards wrong answers
    assert table.loc["reasoning", "agreement"] == pytest.approx(0.25)
    assert table.loc["reasoning", "discrimination"] == pytest.approx(-0.5)
    assert table.loc["reasoning", "n_criteria"] == 1 and table.loc["reasoning", "n_right"] == 2
    by_kind = agreement_table(long, by="is_result").set_index("is_result")
    assert by_kind.loc[True, "agreement"] == pytest.approx(0.75)
    # with source=None the teacher's answer counts too
    assert len(criterion_verdicts([RUBRIC_42], _verdicts(), source=None)) == 5 * 2


def test_criterion_verdicts_rejects_a_judgement_of_the_wrong_length():
    bad = [{"task_id": "t1", "step": 0, "answer_key": "student-0", "source": "student", "judgements": [True],
            "correct": True}]
    with pytest.raises(ValueError, match="1 judgements, the rubric has 2"):
        criterion_verdicts([RUBRIC_42], bad)


def test_verdict_coverage_counts_failures_per_source():
    coverage = verdict_coverage(_verdicts()).set_index("source")
    assert coverage.loc["student", "n"] == 6 and coverage.loc["student", "n_failed"] == 1
    assert coverage.loc["teacher", "failure_rate"] == 0.0


def test_group_criterion_table_adds_agreement_to_rubric_diagnostics():
    students = [[True, True], [True, True], [True, False], [False, True], None]
    table = group_criterion_table(RUBRIC_42, [[True, True]], students, [True, False, False, True, True])
    assert list(table["is_result"]) == [False, True]
    assert list(table["agreement"]) == pytest.approx([0.25, 0.75])
    assert list(table["correct_discrimination"]) == pytest.approx([-0.5, 0.5])
    assert "discrimination" in table.columns and "student_pass_rate" in table.columns  # scoring's own columns
    with pytest.raises(ValueError, match="correctness labels"):
        group_criterion_table(RUBRIC_42, None, students, [True])


# ---------------------------------------------------------------------------------------------------------------
# Labels


def test_label_correct_and_teacher_competence():
    refs = pd.DataFrame({
        "task_id": ["a"] * 4 + ["b"] * 4 + ["c"] * 2,
        "ref_idx": [0, 1, 2, 3] * 2 + [0, 1],
        "text": ["Answer: 5", "Answer: 5", "Answer: 5", "Answer: 4",
                 "Answer: 5", "Answer: 5", "Answer: 4", None,
                 "Answer: 1", "Answer: 1"],
    })
    truth = pd.DataFrame({"id": ["a", "b", "c"], "answer": ["5", "5", None]})
    labelled = label_correct(refs, truth)
    assert list(labelled["correct"][:4]) == [True, True, True, False]
    assert labelled["correct"][7] is None and labelled["correct"][8] is None
    competence = teacher_competence(refs, truth).set_index("task_id")
    assert competence.loc["a", "teacher_competent"] is True  # 3 of 4
    assert competence.loc["b", "teacher_competent"] is False  # 2 of 4 (a missing text counts as wrong)
    assert competence.loc["b", "n_right"] == 2 and competence.loc["b", "n_refs"] == 4
    assert competence.loc["c", "teacher_competent"] is None  # no ground truth


def test_labels_from_whole_tasks_follow_each_tasks_family():
    from ropd_kit.data import Task, render_choices

    choices = ("450", "120", "15", "45")
    tasks = pd.DataFrame([t.to_record() for t in (
        Task(id="c", prompt=render_choices("75% of 60?", choices), answer="D", choices=choices),
        Task(id="m", prompt="Solve 3x + 5 = 0.", answer="-\\frac{5}{3}", family="math"),
        Task(id="o", prompt="How do I fix a slow drain?", rubric=[{"criterion": "Mentions a plunger.", "points": 5}]),
    )])  # tasks.jsonl as pandas reads it: NaN where a task has no such field
    refs = pd.DataFrame({"task_id": ["c", "c", "c", "m", "m", "o"], "ref_idx": [0, 1, 2, 0, 1, 0],
                         "text": ["Answer: 45", "Answer: D", "Answer: B or D", "So the answer is -5/3.", "x = 5/3",
                                  "Use a plunger."]})
    assert list(label_correct(refs, tasks)["correct"]) == [True, True, False, True, False, None]
    competence = teacher_competence(refs, tasks).set_index("task_id")
    assert competence.loc["c", "teacher_competent"] is True  # 2 of 3
    assert competence.loc["o", "teacher_competent"] is None  # open-ended: no answer to be competent at
