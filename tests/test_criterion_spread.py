"""Each criterion's spread over a group's answers: what score_group records in rubrics.jsonl, the weights a group
is scored with under `criterion_weighting="spread"`, and where the tables and the inspector read them back.

score_group is the step after the Verifier's replies and calls no model, so the verdicts are written here as a
Verifier would return them; the Rubricator and Verifier themselves are tested with a real server elsewhere.
"""

from __future__ import annotations

import pytest

from ropd_kit import rundir
from ropd_kit.config import RunConfig
from ropd_kit.data import Task
from ropd_kit.inspector.state import InspectorState
from ropd_kit.notebook_tools.tables import rubrics_table
from ropd_kit.pipeline import score_group, write_judgements
from ropd_kit.rubrics import Criterion, Rubric
from ropd_kit.scoring import weighted_pass_rate, weighted_score
from ropd_kit.verify import GroupVerdicts

TASK = Task(id="pan", prompt="My frying pan of oil caught fire. What do I do?", domain="safety", family="open_ended")
RUBRIC = Rubric(criteria=[
    Criterion(id="water", text="Says never to throw water on the burning oil.", points=5, category="safety"),
    Criterion(id="lid", text="Says to smother the flames with a metal lid.", points=4, category="accuracy"),
    Criterion(id="calm", text="Tells the user to stay calm.", points=1, category="communication"),
])
REFS = ["Never use water. Put a lid on it. Stay calm.", "Cover it with a lid; no water. Keep calm."]
ROLLOUTS = ["Lid on, no water, calm.", "Pour water on it. Stay calm.", "Use a lid. Stay calm.", "Stay calm."]
# Every answer is told to stay calm: "calm" separates nothing.
STUDENT = [[True, True, True], [False, False, True], [False, True, True], [False, False, True]]
TEACHER = [[True, True, True], [True, True, True]]


def _verdicts(student=STUDENT, teacher=TEACHER, soft=None) -> GroupVerdicts:
    notes = {}
    if soft is not None:
        notes = {"student_notes": [{"verdict_kind": "soft", "probabilities": p} for p in soft],
                 "teacher_notes": [{"verdict_kind": "soft", "probabilities": [float(v) for v in row]}
                                   for row in teacher]}
    order = [("student", j) for j in range(len(student))] + [("teacher", i) for i in range(len(teacher))]
    return GroupVerdicts(teacher=teacher, student=student, order=order, **notes)


def _score(config: RunConfig, verdicts: GroupVerdicts, rollouts=ROLLOUTS, truncated=None):
    record = {"task_id": TASK.id, "step": 0, "criteria": [c.model_dump() for c in RUBRIC.criteria]}
    return score_group(TASK, 0, record, RUBRIC, verdicts, REFS, rollouts, config, truncated=truncated)


def test_every_group_records_each_criterion_spread_for_rollouts_and_refs_apart(tmp_path):
    result = _score(RunConfig(run_dir=str(tmp_path)), _verdicts())
    spread = {c["id"]: c for c in result.rubric_record["criterion_spread"]}
    assert list(spread) == RUBRIC.ids
    assert spread["water"] == {"id": "water", "student_met": 0.25, "student_std": pytest.approx(0.4330127),
                               "n_student": 4, "teacher_met": 1.0, "teacher_std": 0.0, "n_teacher": 2}
    assert spread["lid"]["student_met"] == 0.5 and spread["lid"]["student_std"] == 0.5
    assert spread["calm"]["student_std"] == 0.0
    # The weights are the rubric's: nothing else is recorded, and the scores are the plain formula.
    assert "criterion_weighting" not in result.rubric_record
    assert not any("effective_weights" in r for r in result.verdict_records)
    assert result.scores == pytest.approx(weighted_pass_rate(RUBRIC.points, STUDENT))


def test_spread_weighting_drops_what_every_rollout_shares_and_records_the_weights(tmp_path):
    config = RunConfig(run_dir=str(tmp_path), criterion_weighting="spread")
    result = _score(config, _verdicts())
    assert result.rubric_record["criterion_weighting"] == "spread"
    weights = result.verdict_records[0]["effective_weights"]
    assert all(r["effective_weights"] == weights for r in result.verdict_records)  # teacher refs' records too
    assert weights == pytest.approx([5 * 10 / 9, 4 * 10 / 9, 0.0])  # the positive total, 10, is kept
    assert [c["points"] for c in result.rubric_record["criteria"]] == [5, 4, 1]  # the Rubricator's, on record
    assert result.scores == pytest.approx(weighted_pass_rate(weights, STUDENT))
    # The rollout that only stays calm now scores 0, not 0.1; the teacher refs are scored with the same weights.
    assert result.scores[3] == pytest.approx(0.0, abs=1e-6)
    assert result.teacher_scores == pytest.approx([1.0, 1.0], abs=1e-5)


def test_soft_verdicts_spread_over_probabilities_and_near_constant_criteria_weigh_little(tmp_path):
    soft = [[0.95, 0.9, 0.97], [0.1, 0.2, 0.92], [0.2, 0.85, 0.99], [0.15, 0.1, 0.95]]
    config = RunConfig(run_dir=str(tmp_path), criterion_weighting="spread")
    result = _score(config, _verdicts(soft=soft))
    spread = {c["id"]: c for c in result.rubric_record["criterion_spread"]}
    assert spread["calm"]["student_met"] == pytest.approx(0.9575)
    assert 0 < spread["calm"]["student_std"] < 0.05
    weights = result.verdict_records[0]["effective_weights"]
    assert 0 < weights[2] < 0.15  # 1 point times about 0.03 / 0.43, then rescaled
    probabilities = [r["probabilities"] for r in result.verdict_records if r["source"] == "student"]
    assert result.scores == pytest.approx(weighted_score(weights, probabilities))


def test_a_rollout_cut_off_and_scored_zero_is_not_part_of_the_spread(tmp_path):
    config = RunConfig(run_dir=str(tmp_path), truncated_rollouts="zero")
    student = STUDENT[:3] + [None]
    result = _score(config, _verdicts(student=student), truncated=[False, False, False, True])
    spread = {c["id"]: c for c in result.rubric_record["criterion_spread"]}
    assert spread["water"]["n_student"] == 3 and spread["water"]["student_met"] == pytest.approx(1 / 3)


def _run(tmp_path, config: RunConfig, verdicts: GroupVerdicts):
    rundir.write_jsonl(config.path / rundir.TASKS, [TASK.model_dump()])
    rundir.write_jsonl(config.path / rundir.TEACHER_REFS,
                       [{"task_id": TASK.id, "ref_idx": i, "text": t, "model": "m", "usage": {}}
                        for i, t in enumerate(REFS)])
    rundir.write_jsonl(config.path / rundir.ROLLOUTS,
                       [{"task_id": TASK.id, "step": 0, "rollout_idx": j, "text": t, "n_tokens": 5}
                        for j, t in enumerate(ROLLOUTS)])
    config.save()
    result = _score(config, verdicts)
    write_judgements(config.path, [result], replace=True)
    return result


def test_the_rubrics_table_shows_spread_and_weight_and_the_inspector_scores_as_the_run_did(tmp_path):
    config = RunConfig(run_dir=str(tmp_path / "run"), criterion_weighting="spread")
    result = _run(tmp_path, config, _verdicts())
    table = rubrics_table(config)
    assert list(table["id"]) == RUBRIC.ids and list(table["points"]) == [5, 4, 1]
    assert list(table["weight"]) == pytest.approx(result.verdict_records[0]["effective_weights"])
    assert list(table["student_std"]) == pytest.approx([0.4330127, 0.5, 0.0])
    assert list(table["teacher_met"]) == [1.0, 1.0, 1.0]
    state = InspectorState(config.run_dir)
    assert state.scores == pytest.approx(result.scores, abs=1e-6)
    state.set_weight("lid", 0)  # moving a weight re-weights from the recorded spread
    assert state.scoring_points[1] == 0 and state.scoring_points[2] == 0


def test_records_written_before_spreads_read_as_missing(tmp_path):
    config = RunConfig(run_dir=str(tmp_path))
    rundir.write_jsonl(config.path / rundir.RUBRICS, [{"task_id": "old", "step": 0, "criteria": [
        {"id": "c1", "text": "x", "points": 2, "category": "general"}]}])
    table = rubrics_table(config)
    assert table["weight"].tolist() == [2] and table["student_std"].isna().all()
