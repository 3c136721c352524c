"""ropd_kit.scoring: the reward formula, TRL-identical advantages, rubric diagnostics (pure functions, no I/O)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ropd_kit.rubrics import Criterion, Rubric
from ropd_kit.scoring import (
    TRL_STD_EPS,
    batch_advantages,
    group_advantages,
    rubric_diagnostics,
    weighted_pass_rate,
    weighted_score,
)

points_st = st.lists(st.integers(1, 5), min_size=1, max_size=12)


@st.composite
def rubric_and_judgements(draw, pitfalls: bool = False):
    if pitfalls:
        points = draw(st.lists(st.sampled_from([-2, -1, 1, 2, 3, 4, 5]), min_size=1, max_size=12))
        assume(any(p > 0 for p in points))
    else:
        points = draw(points_st)
    n_answers = draw(st.integers(1, 8))
    row = st.lists(st.booleans(), min_size=len(points), max_size=len(points))
    judgements = draw(st.lists(row, min_size=n_answers, max_size=n_answers))
    return points, judgements


# ------------------------------------------------------------------------------------------- weighted_pass_rate


def test_known_values():
    assert weighted_pass_rate([5, 2, 1], [[True, False, True], [False, False, False]], eps=0) == [0.75, 0.0]
    # Default eps keeps an all-met answer just under 1, as in the paper's formula.
    (s,) = weighted_pass_rate([5, 2, 1], [[True, True, True]])
    assert s == pytest.approx(8 / (8 + 1e-6)) and s < 1


def test_pitfalls_subtract_and_clamp():
    points = [4, 1, -2]
    assert weighted_pass_rate(points, [[True, True, False]], pitfalls=True) == [1.0]
    assert weighted_pass_rate(points, [[True, True, True]], pitfalls=True) == [pytest.approx(3 / 5)]
    assert weighted_pass_rate(points, [[False, True, True]], pitfalls=True) == [0.0]  # -1/5 clamped


def test_a_rubric_object_gives_its_points():
    rubric = Rubric(criteria=[Criterion(id="a", text="x", points=3), Criterion(id="b", text="y", points=1)])
    assert weighted_pass_rate(rubric, [[True, False]], eps=0) == [0.75]


@pytest.mark.parametrize(
    "points, judgements, message",
    [
        ([5, 2], [[True, False, True]], "answer 1 has 3 judgements, the rubric has 2 criteria"),
        ([5, 2], [[True, False], [True]], "answer 2 has 1 judgements, the rubric has 2 criteria"),
        ([5, 2], [[True, None]], "answer 1, criterion 2: None is not a boolean"),
        ([5, 2], [None], "answer 1 has no judgement"),
        ([5, -1], [[True, False]], "criterion 2: points -1 is negative"),
        ([], [[]], "no criteria"),
    ],
)
def test_bad_input_is_named(points, judgements, message):
    with pytest.raises(ValueError, match=message):
        weighted_pass_rate(points, judgements)


def test_zero_total_weight():
    with pytest.raises(ValueError, match="rubric has zero total weight"):
        weighted_pass_rate([-1, -2], [[True, False]], pitfalls=True)


@given(rubric_and_judgements())
def test_scores_lie_in_unit_interval(data):
    points, judgements = data
    scores = weighted_pass_rate(points, judgements)
    assert len(scores) == len(judgements)
    assert all(0.0 <= s <= 1.0 for s in scores)


@given(rubric_and_judgements(pitfalls=True))
def test_pitfall_scores_lie_in_unit_interval(data):
    points, judgements = data
    assert all(0.0 <= s <= 1.0 for s in weighted_pass_rate(points, judgements, pitfalls=True))


@given(points_st)
def test_all_met_is_one_and_none_met_is_zero(points):
    n = len(points)
    high, low = weighted_pass_rate(points, [[True] * n, [False] * n])
    assert high == pytest.approx(1.0, abs=1e-6) and high < 1.0
    assert low == 0.0


@given(rubric_and_judgements(), st.data())
def test_meeting_one_more_criterion_raises_the_score(data, draw):
    points, judgements = data
    row = judgements[0]
    unmet = [k for k, v in enumerate(row) if not v]
    assume(unmet)
    k = draw.draw(st.sampled_from(unmet))
    better = list(row)
    better[k] = True
    before, after = weighted_pass_rate(points, [row, better])
    assert after > before


@given(rubric_and_judgements(), st.integers(1, 5))
def test_adding_a_met_criterion_never_lowers_the_score(data, w):
    points, judgements = data
    before = weighted_pass_rate(points, judgements)
    after = weighted_pass_rate(points + [w], [row + [True] for row in judgements])
    assert all(a >= b - 1e-12 for a, b in zip(after, before))


@given(rubric_and_judgements(pitfalls=True), st.randoms(use_true_random=False))
def test_criterion_order_does_not_matter(data, rnd):
    points, judgements = data
    perm = list(range(len(points)))
    rnd.shuffle(perm)
    shuffled = weighted_pass_rate(
        [points[k] for k in perm], [[row[k] for k in perm] for row in judgements], pitfalls=True
    )
    assert shuffled == pytest.approx(weighted_pass_rate(points, judgements, pitfalls=True))


@given(rubric_and_judgements())
def test_without_negative_points_both_formulas_agree(data):
    points, judgements = data
    plain = weighted_pass_rate(points, judgements, eps=0)
    assert weighted_pass_rate(points, judgements, pitfalls=True) == pytest.approx(plain)


# ------------------------------------------------------------------------------------------------ weighted_score

prob_st = st.floats(0, 1, allow_nan=False)


@st.composite
def rubric_and_probabilities(draw, pitfalls: bool = True):
    points, judgements = draw(rubric_and_judgements(pitfalls=pitfalls))
    row = st.lists(prob_st, min_size=len(points), max_size=len(points))
    return points, draw(st.lists(row, min_size=len(judgements), max_size=len(judgements)))


@given(rubric_and_judgements(pitfalls=True), st.booleans())
def test_soft_scores_of_booleans_are_the_boolean_formula(data, pitfalls):
    points, judgements = data
    if not pitfalls:
        points = [abs(p) for p in points]
    for values in (judgements, [[float(v) for v in row] for row in judgements]):
        assert weighted_score(points, values, pitfalls=pitfalls) == weighted_pass_rate(points, judgements,
                                                                                         pitfalls=pitfalls)


@given(rubric_and_probabilities(), st.booleans())
def test_soft_scores_lie_in_unit_interval(data, pitfalls):
    points, values = data
    if not pitfalls:
        points = [abs(p) for p in points]
    assert all(0.0 <= s <= 1.0 for s in weighted_score(points, values, pitfalls=pitfalls))


@given(rubric_and_probabilities(), st.data())
def test_soft_score_rises_with_a_positive_criterion_and_falls_with_a_pitfall(data, draw):
    points, values = data
    row = values[0]
    k = draw.draw(st.integers(0, len(points) - 1))
    lo, hi = sorted(draw.draw(st.tuples(prob_st, prob_st)))
    low, high = list(row), list(row)
    low[k], high[k] = lo, hi
    s_low, s_high = weighted_score(points, [low, high], pitfalls=True)
    if points[k] > 0:
        assert s_high >= s_low
    else:
        assert s_high <= s_low
    # Strictly, where nothing is clamped: the criterion's whole weight moves the score.
    positive = sum(p for p in points if p > 0)
    raw = [sum(w * v for w, v in zip(points, r)) / positive for r in (low, high)]
    if hi - lo > 1e-6 and all(1e-6 < x < 1 - 1e-6 for x in raw):
        assert (s_high > s_low) == (points[k] > 0)


def test_soft_score_known_values_and_pitfall():
    assert weighted_score([5, 2, 1], [[0.9, 0.5, 0.0]], eps=0) == [pytest.approx(5.5 / 8)]
    # HealthBench's form: a pitfall judged 0.5 likely takes half its points off.
    assert weighted_score([4, 2, -2], [[1.0, 0.5, 0.5]], pitfalls=True) == [pytest.approx((4 + 1 - 1) / 6)]
    assert weighted_score([4, -4], [[0.2, 0.9]], pitfalls=True) == [0.0]  # clamped at 0


@pytest.mark.parametrize(
    "values, message",
    [
        ([[0.5, 1.5]], "answer 1, criterion 2: 1.5 is not a probability"),
        ([[0.5, float("nan")]], "criterion 2: nan is not a probability"),
        ([[-0.1, 0.0]], "criterion 1: -0.1 is not a probability"),
        ([[0.5, None]], "criterion 2: None is not a probability"),
        ([[0.5]], "answer 1 has 1 verdicts, the rubric has 2 criteria"),
        ([None], "answer 1 has no verdicts"),
    ],
)
def test_soft_bad_input_is_named(values, message):
    with pytest.raises(ValueError, match=message):
        weighted_score([5, 2], values)


# ------------------------------------------------------------------------------------------------- advantages

scores_st = st.lists(st.floats(0, 1, allow_nan=False), min_size=2, max_size=16)


def test_advantage_examples():
    adv = group_advantages([1.0, 0.0])
    std = math.sqrt(0.5)  # unbiased std of [1, 0]
    assert adv == pytest.approx([0.5 / (std + TRL_STD_EPS), -0.5 / (std + TRL_STD_EPS)])
    assert group_advantages([1.0, 0.0], scale="none") == [0.5, -0.5]
    assert group_advantages([0.3, 0.3, 0.3]) == [0.0, 0.0, 0.0]
    assert group_advantages([]) == []


def test_failed_scores_get_zero_and_stay_out_of_the_baseline():
    adv = group_advantages([1.0, None, 0.0])
    assert adv[1] == 0.0
    assert adv[0] == pytest.approx(-adv[2]) and adv[0] > 0.7
    assert group_advantages([None, None]) == [0.0, 0.0]
    assert group_advantages([0.7, None]) == [0.0, 0.0]  # one valid score: no std, no signal


def test_bad_scale_and_shape():
    with pytest.raises(ValueError, match="scale"):
        group_advantages([0.1, 0.2], scale="std")
    with pytest.raises(ValueError, match="do not split into groups"):
        batch_advantages([0.1, 0.2, 0.3], 2)


@given(scores_st)
def test_advantages_are_centred_and_scaled(scores):
    arr = np.array(scores)
    adv = np.array(group_advantages(scores))
    assert abs(adv.mean()) < 1e-9
    std = arr.std(ddof=1)
    if np.all(arr == arr[0]):
        assert np.all(adv == 0)
    else:
        # TRL divides by (unbiased std + 1e-4): the advantages' own unbiased std is std / (std + eps), ~1.
        assert adv.std(ddof=1) == pytest.approx(std / (std + TRL_STD_EPS), rel=1e-9)
    assert np.array(group_advantages(scores, scale="none")) == pytest.approx(arr - arr.mean())


def _trl_advantages(rewards: list[float | None], num_generations: int, scale: str) -> list[float]:
    """TRL 1.16 grpo_trainer.py lines 2763-2810 (sum_then_normalize, one reward function), using TRL's nanstd."""
    torch = pytest.importorskip("torch")
    from trl.trainer.utils import nanstd

    r = torch.tensor([float("nan") if v is None else v for v in rewards], dtype=torch.float64)
    mean_grouped_rewards = torch.nanmean(r.view(-1, num_generations), dim=1)
    mean_grouped_rewards = mean_grouped_rewards.repeat_interleave(num_generations, dim=0)
    if scale in ("group", "none"):
        if num_generations > 1:
            std_rewards = nanstd(r.view(-1, num_generations), dim=1).repeat_interleave(num_generations, dim=0)
        else:
            std_rewards = torch.zeros_like(r)
    else:
        std_rewards = nanstd(r).expand_as(r) if r.numel() > 1 else torch.zeros_like(r)
    advantages = r - mean_grouped_rewards
    if scale != "none":
        advantages = advantages / (std_rewards + 1e-4)
    return torch.nan_to_num(advantages, nan=0.0).tolist()


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 6),
    st.integers(1, 4),
    st.sampled_from(["group", "batch", "none"]),
    st.data(),
)
def test_same_numbers_as_trl(num_generations, n_groups, scale, data):
    value = st.one_of(st.none(), st.floats(0, 1, allow_nan=False), st.sampled_from([0.0, 0.5, 1.0]))
    rewards = data.draw(st.lists(value, min_size=num_generations * n_groups, max_size=num_generations * n_groups))
    ours = batch_advantages(rewards, num_generations, scale=scale)
    # rel 1e-6, not exact: TRL's nanstd divides two int64 counts, so its Bessel factor n/(n-1) is a float32.
    assert ours == pytest.approx(_trl_advantages(rewards, num_generations, scale), rel=1e-6, abs=1e-9)


# ------------------------------------------------------------------------------------------------ diagnostics


def test_diagnostics_table():
    rubric = Rubric(
        criteria=[
            Criterion(id="c1", text="States 48", points=5, category="correctness"),
            Criterion(id="c2", text="Shows 6*8", points=2, category="reasoning"),
            Criterion(id="c3", text="Uses a box", points=1, category="format"),
        ]
    )
    teacher = [[True, True, False], [True, False, False], None]
    student = [[True, False, False], [False, False, False], [False, True, False], None]
    df = rubric_diagnostics(rubric, teacher, student)
    assert list(df["id"]) == ["c1", "c2", "c3"]
    assert list(df.columns) == [
        "id", "text", "points", "category", "teacher_pass_rate", "student_pass_rate", "gap",
        "discrimination", "score_correlation", "dead",
    ]
    c1, c2, c3 = df.to_dict("records")
    assert c1["teacher_pass_rate"] == 1.0 and c1["student_pass_rate"] == pytest.approx(1 / 3)
    assert c1["gap"] == pytest.approx(2 / 3)
    assert c1["discrimination"] == pytest.approx(math.sqrt(1 / 3 * 2 / 3))
    assert c1["score_correlation"] > 0.5
    assert c1["dead"] is None and c2["dead"] is None
    assert c3["dead"] == "all_fail" and c3["discrimination"] == 0.0 and math.isnan(c3["score_correlation"])


def test_diagnostics_from_points_and_empty_sides():
    df = rubric_diagnostics([3, 1], [], [[True, True], [True, False]])
    assert list(df["id"]) == ["c1", "c2"]
    assert math.isnan(df.loc[0, "teacher_pass_rate"])
    assert df.loc[0, "dead"] == "all_pass"
    with pytest.raises(ValueError, match="student answer 1 has 1 judgements, the rubric has 2 criteria"):
        rubric_diagnostics([3, 1], [], [[True]])


@given(rubric_and_judgements(), st.randoms(use_true_random=False))
def test_diagnostic_rates_match_the_matrix(data, rnd):
    points, student = data
    teacher = [[rnd.random() < 0.5 for _ in points] for _ in range(2)]
    df = rubric_diagnostics(points, teacher, student)
    s = np.array(student, dtype=float)
    assert df["student_pass_rate"].tolist() == pytest.approx(s.mean(axis=0).tolist())
    assert all(0 <= d <= 0.5 + 1e-12 for d in df["discrimination"])
    for k, dead in enumerate(df["dead"]):
        column = [row[k] for row in teacher + student]
        assert dead == ("all_pass" if all(column) else "all_fail" if not any(column) else None)


def test_random_shuffle_sanity():
    # A fixed random batch through both code paths: group_advantages on each group == batch_advantages.
    rnd = random.Random(3)
    rewards = [rnd.random() for _ in range(12)]
    flat = batch_advantages(rewards, 4)
    per_group = [a for g in range(3) for a in group_advantages(rewards[4 * g : 4 * g + 4])]
    assert flat == pytest.approx(per_group)


def test_a_result_share_raises_only_the_result_weight_and_only_where_needed():
    from ropd_kit.scoring import result_weighted

    assert result_weighted([5, 4, 3, 2], 0, 0.75) == [27.0, 4.0, 3.0, 2.0]
    assert result_weighted([5, 1], 0, 0.75) == [5.0, 1.0]  # already more than 75% of the points
    assert result_weighted([2, 3, 5], 2, 0.5) == [2.0, 3.0, 5.0] and result_weighted([2, 3, 5], 0, 0.5) == [8.0, 3.0, 5.0]
    assert result_weighted([5, 4], None, 0.75) == [5.0, 4.0] and result_weighted([5, 4], 0, 0.0) == [5.0, 4.0]
    # Pitfall (negative) points are not part of the share: a met pitfall still costs what it did.
    assert result_weighted([5, 3, -2], 0, 0.5) == [5.0, 3.0, -2.0]
    # A wrong final result with everything else met scores 1 - share; a right one with nothing else at least share.
    w = result_weighted([5, 4, 3, 2], 0, 0.75)
    assert weighted_pass_rate(w, [[False, True, True, True], [True, False, False, False]], eps=0) == [0.25, 0.75]
    with pytest.raises(ValueError, match="share"):
        result_weighted([5, 4], 0, 1.0)


# --------------------------------------------------------------------------------- criteria weighted by spread

from ropd_kit.scoring import criterion_spread, effective_weights, one_answer_spread, spread_weighted  # noqa: E402

pitfall_points_st = st.lists(st.sampled_from([-2, -1, 1, 2, 3, 4, 5]), min_size=1, max_size=10).filter(
    lambda p: any(w > 0 for w in p))
spread_st = st.floats(0, 0.5, allow_nan=False)


@given(pitfall_points_st, st.data(), st.integers(2, 16))
def test_spread_weights_keep_signs_and_the_positive_total(points, data, n):
    spreads = data.draw(st.lists(spread_st, min_size=len(points), max_size=len(points)))
    weights = spread_weighted(points, spreads, n)
    assert all(w >= 0 for p, w in zip(points, weights) if p > 0)
    assert all(w <= 0 for p, w in zip(points, weights) if p < 0)
    assert sum(w for w in weights if w > 0) == pytest.approx(sum(p for p in points if p > 0))


@given(pitfall_points_st, spread_st, st.integers(2, 16))
def test_spread_weights_are_the_points_when_every_criterion_separates_equally(points, spread, n):
    assert spread_weighted(points, [spread] * len(points), n) == pytest.approx([float(p) for p in points])


@given(points_st, st.data(), st.integers(2, 16))
def test_a_criterion_that_separates_nothing_weighs_nothing_unless_nothing_separates(points, data, n):
    zero = data.draw(st.lists(st.booleans(), min_size=len(points), max_size=len(points)))
    spreads = [0.0 if z else data.draw(st.floats(0.01, 0.5)) for z in zero]
    weights = spread_weighted(points, spreads, n)
    if all(zero):
        assert weights == [float(p) for p in points]  # the group's scores are all equal either way
    else:
        assert all(w == 0 for w, z in zip(weights, zero) if z)
        assert all(w > 0 for w, z in zip(weights, zero) if not z)


@given(points_st, st.data(), st.integers(2, 16))
def test_less_spread_never_means_more_weight_relative_to_the_points(points, data, n):
    spreads = data.draw(st.lists(spread_st, min_size=len(points), max_size=len(points)))
    weights = spread_weighted(points, spreads, n)
    ratio = [w / p for w, p in zip(weights, points)]
    for a in range(len(points)):
        for b in range(len(points)):
            if spreads[a] <= spreads[b]:
                assert ratio[a] <= ratio[b] + 1e-9


def test_every_boolean_criterion_that_separates_keeps_its_points():
    # 8 answers: a criterion one answer misses has the smallest spread a separating boolean can have.
    judgements = [[True, True, k == 0, k < 4] for k in range(8)]
    spread = criterion_spread(judgements, 4)
    assert [s["met"] for s in spread] == [1.0, 1.0, 0.125, 0.5]
    assert spread[2]["std"] == pytest.approx(one_answer_spread(8)) and spread[3]["std"] == 0.5
    assert spread_weighted([5, 1, 4, 2], [s["std"] for s in spread], 8) == pytest.approx([0, 0, 8, 4])


def test_spread_of_soft_verdicts_and_of_answers_without_one():
    spread = criterion_spread([[0.9, 1.0], None, [0.7, 1.0], [True, False]], 2)
    assert [s["n"] for s in spread] == [3, 3]
    assert spread[0]["met"] == pytest.approx((0.9 + 0.7 + 1.0) / 3)
    assert spread[0]["std"] == pytest.approx(np.std([0.9, 0.7, 1.0]))
    assert criterion_spread([None], 2) == [{"met": None, "std": None, "n": 0}] * 2
    with pytest.raises(ValueError, match="answer 1, criterion 2: 1.5 is not a probability"):
        criterion_spread([[0.5, 1.5]], 2)
    with pytest.raises(ValueError, match="answer 1 has 1 verdicts, the rubric has 2"):
        criterion_spread([[0.5]], 2)
    # Soft verdicts that barely move weigh little; one that separates like a boolean keeps its points.
    weights = spread_weighted([3, 3], [0.02, 0.4], 4)
    assert weights[0] < 0.1 * weights[1]
    assert spread_weighted([2, 2], [0.3, 0.3], 1) == [2.0, 2.0]  # one answer: no spread to read


@settings(max_examples=60)
@given(rubric_and_judgements())
def test_with_booleans_and_group_scaling_the_lever_changes_no_advantage(data):
    points, judgements = data
    assume(len(judgements) >= 2)
    spread = [s["std"] for s in criterion_spread(judgements, len(points))]
    weights = spread_weighted(points, spread, len(judgements))
    before, after = weighted_pass_rate(points, judgements), weighted_pass_rate(weights, judgements)
    # Up to TRL's 1e-4 beside the std, which the lever's wider scores make matter less: compare without it.
    assert group_advantages(after, eps=1e-12) == pytest.approx(group_advantages(before, eps=1e-12), abs=1e-6)
    # Dr.GRPO's unscaled advantages grow instead: criteria every answer shares no longer dilute the differences.
    for b, a in zip(group_advantages(before, scale="none"), group_advantages(after, scale="none")):
        assert abs(a) >= abs(b) - 1e-9 and a * b >= -1e-18


def test_effective_weights_apply_the_result_share_then_the_spread():
    # The code-checked result separates the answers: its share holds among what is left.
    w = effective_weights([5, 4, 3], result_index=0, result_share=0.75, spreads=[0.5, 0.0, 0.5], n_answers=4)
    assert w[1] == 0 and w[0] / (w[0] + w[2]) >= 0.75
    # Every answer got the same result: it separates nothing and is not raised to dilute the rest.
    w = effective_weights([5, 4, 3], result_index=0, result_share=0.75, spreads=[0.0, 0.5, 0.5], n_answers=4)
    assert w[0] == 0 and w[1] / w[2] == pytest.approx(4 / 3)
    assert effective_weights([5, 4, 3], result_index=0, result_share=0.75) == result_weighted_([5, 4, 3], 0, 0.75)
    assert effective_weights([5, 4]) == [5.0, 4.0]


def result_weighted_(points, index, share):
    from ropd_kit.scoring import result_weighted

    return result_weighted(points, index, share)
