"""Analysis of runs: signal AUC, the signal frame, efficiency and mimicry curves, figures.

Run directories are written with rundir in tmp_path (no network). The white-box teacher tests load SmolLM2-135M
(`integration`).
"""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ropd_kit import analysis, rundir
from ropd_kit.config import RunConfig
from ropd_kit.answers import is_correct


# ---------------------------------------------------------------------------------------------------------------
# signal_auc


def _mann_whitney_auc(y: list[bool], s: list[float]) -> float:
    """P(score of a positive > score of a negative), ties counted half: the AUC by its definition."""
    pos = [v for v, c in zip(s, y) if c]
    neg = [v for v, c in zip(s, y) if not c]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def test_auc_of_a_perfect_a_reversed_and_a_useless_signal():
    frame = pd.DataFrame(
        {
            "correct": [True, True, False, False],
            "score": [0.9, 0.8, 0.2, 0.1],
            "logprob": [-3.0, -2.5, -0.5, -0.1],
            "judge": [0.5, 0.5, 0.5, 0.5],
        }
    )
    table = analysis.signal_auc(frame, ["score", "logprob", "judge"]).set_index("signal")
    assert table.loc["score", "auc"] == 1.0
    assert table.loc["logprob", "auc"] == 0.0
    assert table.loc["judge", "auc"] == 0.5
    assert list(table["n"]) == [4, 4, 4] and list(table["n_pos"]) == [2, 2, 2]
    assert set(table["note"]) == {""}


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.floats(min_value=-5, max_value=5, allow_nan=False).map(lambda v: round(v, 1))),
        min_size=2,
        max_size=30,
    ).filter(lambda rows: len({c for c, _ in rows}) == 2)
)
def test_auc_is_the_probability_a_correct_rollout_outscores_a_wrong_one(rows):
    y = [c for c, _ in rows]
    s = [v for _, v in rows]
    table = analysis.signal_auc(pd.DataFrame({"correct": y, "score": s}), ["score"])
    assert table.loc[0, "auc"] == pytest.approx(_mann_whitney_auc(y, s))
    flipped = analysis.signal_auc(pd.DataFrame({"correct": y, "score": [-v for v in s]}), ["score"])
    assert flipped.loc[0, "auc"] == pytest.approx(1 - table.loc[0, "auc"])


def test_one_class_is_undefined_without_a_warning():
    frame = pd.DataFrame({"correct": [True, True, True], "score": [0.1, 0.5, 0.9]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning leaking out fails the test
        table = analysis.signal_auc(frame, ["score"])
    assert math.isnan(table.loc[0, "auc"])
    assert table.loc[0, "note"] == "undefined (one class)"
    assert (table.loc[0, "n_pos"], table.loc[0, "n_neg"]) == (3, 0)


def test_missing_values_are_dropped_per_signal_and_counted():
    frame = pd.DataFrame(
        {
            "correct": pd.array([True, False, None, True, False], dtype="boolean"),
            "score": [0.9, 0.1, 0.5, np.nan, 0.2],
        }
    )
    row = analysis.signal_auc(frame, ["score"]).iloc[0]
    assert (row["n"], row["n_missing"], row["auc"]) == (3, 2, 1.0)


def test_unknown_columns_are_named():
    frame = pd.DataFrame({"correct": [True, False], "score": [1, 0]})
    with pytest.raises(KeyError, match="logprob"):
        analysis.signal_auc(frame, ["logprob"])
    with pytest.raises(KeyError, match="is_right"):
        analysis.signal_auc(frame, ["score"], label="is_right")


def test_roc_figure_lists_each_signal_with_its_auc(tmp_path):
    frame = pd.DataFrame({"correct": [True, False, True, False], "score": [0.9, 0.1, 0.7, 0.3], "judge": [1] * 4})
    fig = analysis.roc_figure(frame, ["score", "judge"])
    names = [t.name for t in fig.data]
    assert any(n.startswith("rubric reward: AUC 1.00") for n in names)
    assert any("teacher-as-judge: AUC 0.50" in n for n in names)
    one_class = analysis.roc_figure(frame[frame["correct"]], ["score"])
    assert any("undefined (one class)" in t.name for t in one_class.data)


def test_save_figure_writes_self_contained_html(tmp_path):
    fig = analysis.roc_figure(pd.DataFrame({"correct": [True, False], "score": [1.0, 0.0]}), ["score"])
    path = analysis.save_figure(fig, tmp_path / "figs" / "roc.html")
    text = path.read_text()
    assert not re.search(r"<script[^>]*\bsrc=", text)  # nothing fetched when opened offline
    assert len(text) > 1_000_000  # plotly.js is inlined
    with pytest.raises(ValueError, match="HTML"):
        analysis.save_figure(fig, tmp_path / "roc.png")


# ---------------------------------------------------------------------------------------------------------------
# signal_frame


def write_judged_run(run: Path) -> Path:
    rundir.write_jsonl(
        run / rundir.TASKS,
        [
            {"id": "t1", "prompt": "What is 6 * 7?", "answer": "42", "domain": "arith"},
            {"id": "t2", "prompt": "What is 2 + 2?", "answer": "4", "domain": "arith"},
            {"id": "t3", "prompt": "Write a haiku.", "answer": None, "domain": "general"},
        ],
    )
    texts = {
        "t1": ["6 * 7 = 42. Answer: 42", "Answer: 41", "I think 42.\nAnswer: 42", "no idea"],
        "t2": ["Answer: 4", "Answer: 5", "Answer: 4", "Answer: 22"],
        "t3": ["leaves fall", "snow", "moon", "sun"],
    }
    rollouts = [
        {"task_id": t, "step": 0, "rollout_idx": i, "text": texts[t][i], "n_tokens": 5, "truncated": i == 3}
        for t in texts
        for i in reversed(range(4))
    ]
    rollouts.append({"task_id": "t1", "step": 1, "rollout_idx": 0, "text": "Answer: 42", "n_tokens": 3})
    rundir.write_jsonl(run / rundir.ROLLOUTS, rollouts)
    rubric = {"criteria": [{"id": "c1", "text": "right", "points": 1, "category": "c"}], "model": "m",
              "n_teacher": 1, "n_student": 4, "attempts": 1, "error": None}
    rundir.write_jsonl(
        run / rundir.RUBRICS,
        [
            {"task_id": "t1", "step": 0, **rubric},
            {"task_id": "t3", "step": 0, **rubric},
            # t2's rubric failed: no verdicts, its rollouts count as missing scores
            {"task_id": "t2", "step": 0, **rubric, "criteria": [], "error": "no JSON", "attempts": 3},
        ],
    )
    scores = {"t1": [0.9, 0.2, 0.7, 0.1], "t3": [0.5, 0.4, 0.3, 0.2]}
    verdicts = [
        {"task_id": t, "step": 0, "answer_key": f"student-{i}", "source": "student", "answer_idx": i,
         "position": i + 2, "judgements": [s > 0.5], "score": s}
        for t, row in scores.items()
        for i, s in enumerate(row)
    ]
    verdicts.append({"task_id": "t1", "step": 0, "answer_key": "teacher-0", "source": "teacher", "answer_idx": 0,
                     "position": 1, "judgements": [True], "score": 1.0})
    rundir.write_jsonl(run / rundir.VERDICTS, verdicts)
    return run


def test_signal_frame_joins_scores_to_the_right_rollouts(tmp_path):
    frame = analysis.signal_frame(write_judged_run(tmp_path / "run"))
    # Only judged groups (a rubric record exists), student answers only; step 1 was never judged.
    assert len(frame) == 12
    t1 = frame[frame["task_id"] == "t1"].set_index("rollout_idx")
    assert list(t1["score"]) == [0.9, 0.2, 0.7, 0.1]
    assert list(t1["correct"]) == [True, False, True, False]
    assert t1.loc[0, "text"] == "6 * 7 = 42. Answer: 42"
    assert bool(t1.loc[3, "truncated"]) is True
    # The failed group keeps its rollouts with a missing score; correctness still comes from ground truth.
    t2 = frame[frame["task_id"] == "t2"].set_index("rollout_idx")
    assert t2["score"].isna().all()
    assert list(t2["correct"]) == [is_correct("4", t) for t in t2["text"]]
    # No ground truth: correctness unknown, not False.
    assert frame.loc[frame["task_id"] == "t3", "correct"].isna().all()
    table = analysis.signal_auc(frame, ["score"]).iloc[0]
    assert (table["n"], table["n_missing"], table["auc"]) == (4, 8, 1.0)


def test_signal_frame_adds_judge_and_logprob_signals(tmp_path):
    run = write_judged_run(tmp_path / "run")
    judge = [{"task_id": "t1", "step": 0, "rollout_idx": i, "score": s} for i, s in enumerate([0.1, 0.9, 0.2, 0.8])]
    logprob = pd.DataFrame({"task_id": ["t1"], "step": [0], "rollout_idx": [2], "logprob": [-1.5]})
    frame = analysis.signal_frame(run, judge=judge, logprob=logprob, step=0)
    t1 = frame[frame["task_id"] == "t1"].set_index("rollout_idx")
    assert list(t1["judge"]) == [0.1, 0.9, 0.2, 0.8]
    assert t1.loc[2, "logprob"] == -1.5 and t1["logprob"].isna().sum() == 3
    table = analysis.signal_auc(frame, ["score", "judge"]).set_index("signal")
    assert table.loc["judge", "auc"] == 0.0


def test_signal_frame_needs_judged_rollouts(tmp_path):
    with pytest.raises(FileNotFoundError, match="rollouts.jsonl"):
        analysis.signal_frame(tmp_path)


# ---------------------------------------------------------------------------------------------------------------
# efficiency and mimicry


def write_trained_run(run: Path, method: str, accuracy_at: dict[int, float], *, logged_steps=(1, 2, 4)) -> Path:
    RunConfig(run_dir=str(run), method=method).save()
    rundir.write_jsonl(
        run / rundir.TRAIN_LOG,
        [{"step": s, "samples_seen": 8 * s, "wall_s": 10.0 * s, "reward_mean": 0.5, "method": method}
         for s in logged_steps],
    )
    evals = []
    for step, acc in accuracy_at.items():
        n_right = round(acc * 4)
        evals += [{"step": step, "task_id": f"t{k}", "sample_idx": 0, "answer_text": "", "correct": k < n_right}
                  for k in range(4)]
    rundir.write_jsonl(run / rundir.EVAL, evals)
    return run


@pytest.fixture
def runs(tmp_path) -> list[Path]:
    return [
        write_trained_run(tmp_path / "ropd-s0", "ropd", {0: 0.25, 2: 0.5, 4: 0.75}),
        write_trained_run(tmp_path / "lopd-s0", "lopd", {0: 0.25, 2: 0.25, 3: 0.5, 4: 0.5}),
        write_trained_run(tmp_path / "rlvr-s0", "rlvr", {0: 0.25, 4: 0.25}),
    ]


def test_efficiency_frame_puts_accuracy_beside_cost(runs):
    frame = analysis.efficiency_frame(runs)
    ropd = frame[frame["run"] == "ropd-s0"].set_index("step")
    assert list(ropd["accuracy"]) == [0.25, 0.5, 0.75]
    assert list(ropd["samples_seen"]) == [0, 16, 32]
    assert list(ropd["wall_s"]) == [0, 20, 40]
    assert set(frame["method"]) == {"ropd", "lopd", "rlvr"}
    # lopd was evaluated at step 3, which the train log skipped: it has the progress of step 2.
    lopd = frame[frame["run"] == "lopd-s0"].set_index("step")
    assert lopd.loc[3, "samples_seen"] == 16


def test_samples_to_target_and_the_ratio_between_methods(runs):
    frame = analysis.efficiency_frame(runs)
    costs = analysis.samples_to_target(frame, 0.5).set_index("method")
    assert costs.loc["ropd", "samples_seen"] == 16 and costs.loc["ropd", "step"] == 2
    assert costs.loc["lopd", "samples_seen"] == 16 and costs.loc["lopd", "step"] == 3
    assert costs.loc["ropd", "outcome"] == "reached" and costs.loc["ropd", "start_accuracy"] == 0.25
    assert costs.loc["rlvr", "outcome"] == "not reached" and math.isnan(costs.loc["rlvr", "samples_seen"])
    assert analysis.efficiency_ratio(frame, 0.5) == 1.0
    assert analysis.efficiency_ratio(frame, 0.75) != analysis.efficiency_ratio(frame, 0.75)  # lopd never: NaN
    assert math.isnan(analysis.efficiency_ratio(frame, 0.5, "rlvr", "ropd"))
    assert math.isnan(analysis.efficiency_ratio(frame, 0.5, "sft", "ropd"))  # no such runs
    # Reached before any training (step 0): no cost to divide by.
    assert math.isnan(analysis.efficiency_ratio(frame, 0.25))


def test_a_target_the_methods_start_at_is_not_measurable_not_reached(tmp_path):
    # The one-step demo's shape: both methods evaluated at step 0 and after their one step, both already at the
    # target before training. Step 0 "reaching" it with 0 samples would be a claim the run never measured.
    runs = [
        write_trained_run(tmp_path / "ropd", "ropd", {0: 0.75, 1: 0.75}, logged_steps=(1,)),
        write_trained_run(tmp_path / "lopd", "lopd", {0: 0.75, 1: 0.5}, logged_steps=(1,)),
    ]
    frame = analysis.efficiency_frame(runs)
    costs = analysis.samples_to_target(frame, 0.75).set_index("method")
    assert set(costs["outcome"]) == {analysis.NOT_MEASURABLE}
    assert costs[["step", "samples_seen", "wall_s"]].isna().all().all()
    assert list(costs["start_accuracy"]) == [0.75, 0.75]
    assert math.isnan(analysis.efficiency_ratio(frame, 0.75))
    assert math.isnan(analysis.efficiency_ratio(frame, 0.75, x="wall_s"))
    # Below where they start the same holds; above it, one step either reached it or not, and that is measured.
    assert set(analysis.samples_to_target(frame, 0.5)["outcome"]) == {analysis.NOT_MEASURABLE}
    higher = analysis.samples_to_target(frame, 1.0).set_index("method")
    assert list(higher["outcome"]) == ["not reached", "not reached"]
    one_step = write_trained_run(tmp_path / "ropd-up", "ropd", {0: 0.5, 1: 0.75}, logged_steps=(1,))
    moved = analysis.samples_to_target(analysis.efficiency_frame([one_step, runs[1]]), 0.75).set_index("method")
    assert moved.loc["ropd", "outcome"] == "reached" and moved.loc["ropd", "samples_seen"] == 8
    assert moved.loc["lopd", "outcome"] == analysis.NOT_MEASURABLE


def test_seeds_of_a_method_are_averaged(tmp_path):
    runs = [
        write_trained_run(tmp_path / "ropd-s0", "ropd", {0: 0.0, 2: 0.5, 4: 1.0}),
        write_trained_run(tmp_path / "ropd-s1", "ropd", {0: 0.0, 2: 0.25, 4: 0.5}),
        write_trained_run(tmp_path / "lopd-s0", "lopd", {0: 0.0, 2: 0.25, 4: 0.5}),
    ]
    frame = analysis.efficiency_frame(runs)
    costs = analysis.samples_to_target(frame, 0.5).set_index("method")
    assert costs.loc["ropd", "step"] == 4 and costs.loc["ropd", "n_runs"] == 2  # mean at step 2 is 0.375
    assert costs.loc["ropd", "accuracy"] == 0.75
    assert analysis.efficiency_ratio(frame, 0.5, x="wall_s") == 1.0


def test_runs_can_be_named_by_a_mapping(tmp_path):
    # A batch writes every run into a directory called `run`: names must come from the caller then.
    a = write_trained_run(tmp_path / "grid-ropd" / "run", "ropd", {0: 0.0, 2: 0.5})
    b = write_trained_run(tmp_path / "grid-lopd" / "run", "lopd", {0: 0.0, 2: 0.25})
    frame = analysis.efficiency_frame({"ropd-s0": a, "lopd-s0": b})
    assert frame.groupby("run")["method"].first().to_dict() == {"lopd-s0": "lopd", "ropd-s0": "ropd"}
    assert len(analysis.efficiency_figure(frame).data) == 2


def test_efficiency_figure_draws_one_line_per_run(runs):
    frame = analysis.efficiency_frame(runs)
    fig = analysis.efficiency_figure(frame, x="wall_s", target=0.5)
    assert len(fig.data) == 3
    assert {t.name for t in fig.data} == {"ropd", "lopd", "rlvr"}
    assert fig.layout.xaxis.title.text == "wall time (s)"
    with pytest.raises(ValueError, match="samples_seen"):
        analysis.efficiency_figure(frame, x="tokens")


def test_mimicry_frame_from_precomputed_logprobs(runs):
    logprobs = pd.DataFrame(
        {"task_id": ["t0", "t1", "t0", "t1"], "step": [1, 1, 2, 2], "rollout_idx": [0, 0, 0, 0],
         "logprob": [-2.0, -1.0, -0.5, -0.5]}
    )
    frame = analysis.mimicry_frame(runs[:1], logprobs={"ropd-s0": logprobs}).set_index("step")
    assert list(frame["teacher_logprob"]) == [-1.5, -0.5]
    assert list(frame["n_rollouts"]) == [2, 2]
    assert math.isnan(frame.loc[1, "accuracy"]) and frame.loc[2, "accuracy"] == 0.5
    assert list(frame["samples_seen"]) == [8, 16]
    fig = analysis.mimicry_figure(frame.reset_index())
    assert [t.yaxis or "y" for t in fig.data] == ["y", "y2"]  # log-prob left, accuracy right
    with pytest.raises(ValueError, match="lopd-s0"):
        analysis.mimicry_frame(runs[1:2], logprobs={"ropd-s0": logprobs})


# ---------------------------------------------------------------------------------------------------------------
# White-box teacher (SmolLM2-135M)


@pytest.fixture(scope="module")
def smollm2():
    return analysis.load_teacher("smollm2-135m-instruct", dtype="float32")


@pytest.mark.integration
def test_teacher_logprob_prefers_fluent_text_and_ignores_padding(smollm2):
    import torch

    model, tokenizer = smollm2
    rng = np.random.default_rng(0)
    noise = tokenizer.decode(rng.integers(1000, tokenizer.vocab_size - 1, size=30).tolist())
    prompts = ["Repeat the word 'hello' ten times.", "Repeat the word 'hello' ten times.", "What is 2 + 2?", "Hi"]
    answers = [" ".join(["hello"] * 10), noise, "2 + 2 = 4.", ""]
    batched = analysis.teacher_logprob(prompts, answers, model, tokenizer, batch_size=4)
    single = analysis.teacher_logprob(prompts, answers, model, tokenizer, batch_size=1)
    assert batched[0] > batched[1] + 1.0
    assert batched[2] > batched[1]
    assert math.isnan(batched[3])  # an empty answer has no tokens to score
    # Left padding and the position ids must not change a sequence's numbers.
    assert batched[:3] == pytest.approx(single[:3], abs=1e-3)

    # Reference: the answer tokens' log-probs from one unpadded forward pass over the whole sequence.
    p_ids = analysis._prompt_ids(tokenizer, prompts[2], True)
    a_ids = tokenizer(answers[2], add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([p_ids + a_ids])).logits[0].float()
    logp = torch.log_softmax(logits[len(p_ids) - 1 : -1], -1).gather(-1, torch.tensor(a_ids)[:, None])
    assert batched[2] == pytest.approx(float(logp.mean()), abs=1e-3)


@pytest.mark.integration
def test_mimicry_of_a_run_with_the_white_box_teacher(smollm2, tmp_path):
    model, tokenizer = smollm2
    run = write_trained_run(tmp_path / "ropd-s0", "ropd", {0: 0.25, 2: 0.5})
    rundir.write_jsonl(run / rundir.TASKS, [{"id": "t0", "prompt": "What is 2 + 2?", "answer": "4"}])
    rundir.write_jsonl(
        run / rundir.ROLLOUTS,
        [{"task_id": "t0", "step": s, "rollout_idx": i, "text": text, "n_tokens": 4}
         for s, texts in ((0, ["zq xv kk pp", "2 + 2 = 4"]), (2, ["2 + 2 = 4.", "The answer is 4."]))
         for i, text in enumerate(texts)],
    )
    frame = analysis.mimicry_frame([run], model, tokenizer).set_index("step")
    assert list(frame["n_rollouts"]) == [2, 2]
    assert frame.loc[2, "teacher_logprob"] > frame.loc[0, "teacher_logprob"]  # the gibberish rollout drags step 0
    assert frame.loc[2, "accuracy"] == 0.5
    one = analysis.rollout_logprobs(run, model, tokenizer, max_per_step=1)
    assert len(one) == 2 and one["logprob"].notna().all()


# ---------------------------------------------------------------------------------------------------------------
# Open-ended runs: the reference-rubric score stands in for correctness


def test_open_ended_rollouts_are_labelled_by_their_reference_score_at_a_threshold():
    frame = pd.DataFrame({
        "reference_score": [0.9, 0.6, 0.5, 0.3, 0.1, None],
        "score": [0.8, 0.7, 0.2, 0.4, 0.1, 0.5],  # the rubric reward signal
        "judge": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
    })
    table = analysis.signal_auc(frame, ["score", "judge"]).set_index("signal")  # no `correct` column at all
    assert (table.loc["score", "n_pos"], table.loc["score", "n_neg"], table.loc["score", "n_missing"]) == (3, 2, 1)
    assert table.loc["score", "auc"] == pytest.approx(_mann_whitney_auc([True, True, True, False, False],
                                                                        [0.8, 0.7, 0.2, 0.4, 0.1]))
    assert table.loc["judge", "auc"] == 0.0
    assert set(table["label"]) == {"reference_score >= 0.5"}
    # Spearman with the score itself, no threshold: the judge ranks the five graded rollouts exactly backwards.
    assert table.loc["judge", "spearman"] == pytest.approx(-1.0) and table.loc["judge", "n_rank"] == 5
    ranks = frame.dropna()
    assert table.loc["score", "spearman"] == pytest.approx(ranks["score"].rank().corr(ranks["reference_score"].rank()))
    strict = analysis.signal_auc(frame, ["score"], score_threshold=0.8).iloc[0]
    assert (strict["n_pos"], strict["label"]) == (1, "reference_score >= 0.8")


def test_a_mixed_frame_uses_correctness_where_there_is_one_and_the_score_elsewhere():
    frame = pd.DataFrame({
        "correct": pd.array([True, False, None, None], dtype="boolean"),
        "reference_score": [None, None, 0.75, 0.25],
        "score": [0.9, 0.1, 0.8, 0.2],
    })
    row = analysis.signal_auc(frame, ["score"]).iloc[0]
    assert (row["auc"], row["n_pos"], row["n_neg"]) == (1.0, 2, 2)
    assert row["label"] == "correct | reference_score >= 0.5"
    assert row["spearman"] == pytest.approx(1.0)  # outcome 1, 0, 0.75, 0.25 in the signal's order
    only_checked = analysis.signal_auc(frame.drop(columns="reference_score"), ["score"]).iloc[0]
    assert (only_checked["n"], only_checked["label"]) == (2, "correct")
    assert math.isnan(only_checked["spearman"])  # two rows: too few to rank


def write_family_run(run: Path) -> Path:
    from ropd_kit.data import Task, render_choices

    choices = ("450", "120", "15", "45")
    tasks = [Task(id="mc", prompt=render_choices("What is 75% of 60?", choices), answer="D", choices=choices),
             Task(id="op", prompt="How do I fix a slow drain?",
                  rubric=[{"criterion": "Mentions a plunger.", "points": 5}])]
    rundir.write_jsonl(run / rundir.TASKS, [t.to_record() for t in tasks])
    texts = {"mc": ["Answer: D", "Answer: 45", "Answer: B or D"], "op": ["Use a plunger.", "Pour bleach.", "Wait."]}
    rundir.write_jsonl(run / rundir.ROLLOUTS, [{"task_id": t, "step": 0, "rollout_idx": i, "text": x}
                                               for t, xs in texts.items() for i, x in enumerate(xs)])
    rubric = {"criteria": [{"id": "c1", "text": "good", "points": 1, "category": "c"}], "error": None}
    rundir.write_jsonl(run / rundir.RUBRICS, [{"task_id": t, "step": 0, **rubric} for t in texts])
    rundir.write_jsonl(run / rundir.VERDICTS, [
        {"task_id": t, "step": 0, "answer_key": f"student-{i}", "source": "student", "answer_idx": i,
         "judgements": [True], "score": s}
        for t, row in {"mc": [0.9, 0.8, 0.3], "op": [0.9, 0.1, 0.4]}.items() for i, s in enumerate(row)])
    return run


def test_signal_frame_checks_each_family_and_joins_reference_scores(tmp_path):
    run = write_family_run(tmp_path / "run")
    reference = [{"task_id": "op", "step": 0, "rollout_idx": i, "reference_score": s}
                 for i, s in enumerate([1.0, 0.0, 0.0])]
    frame = analysis.signal_frame(run, reference=reference).set_index(["task_id", "rollout_idx"])
    assert list(frame.loc["mc", "correct"]) == [True, True, False]  # the letter rule, not a number
    assert frame.loc["op", "correct"].isna().all()
    assert list(frame.loc["op", "reference_score"]) == [1.0, 0.0, 0.0]
    assert frame.loc["mc", "reference_score"].isna().all()
    row = analysis.signal_auc(frame.reset_index(), ["score"]).iloc[0]
    assert (row["auc"], row["n"]) == (1.0, 6)


def test_efficiency_of_an_open_ended_run_is_its_mean_score(tmp_path):
    run = tmp_path / "ropd-open"
    RunConfig(run_dir=str(run), method="ropd").save()
    rundir.write_jsonl(run / rundir.TRAIN_LOG, [{"step": s, "samples_seen": 8 * s, "wall_s": 10.0 * s}
                                                for s in (1, 2)])
    rundir.write_jsonl(run / rundir.EVAL, [
        {"step": step, "task_id": t, "sample_idx": 0, "correct": None, "score": score, "grade_error": None}
        for step, scores in ((0, (0.2, 0.4)), (2, (0.6, None))) for t, score in zip(("a", "b"), scores)])
    frame = analysis.efficiency_frame([run]).set_index("step")
    assert list(frame["accuracy"]) == [pytest.approx(0.3), 0.6]  # b's failed grading is left out, not a 0
    assert set(frame["metric"]) == {"mean score"}
    fig = analysis.efficiency_figure(frame.reset_index())
    assert fig.layout.yaxis.title.text == "mean score (reference rubric)"


def test_signal_table_grades_open_ended_rollouts_against_their_reference_rubric(tmp_path):
    from ropd_kit.bench.stubjudge import STUB_MODEL, StubJudge
    from ropd_kit.config import EndpointConfig
    from ropd_kit.notebook_tools import signal_table

    run = write_family_run(tmp_path / "run")
    with StubJudge() as judge:
        endpoint = EndpointConfig(base_url=judge.base_url, model=STUB_MODEL, max_retries=0, timeout_s=30)
        config = RunConfig(run_dir=str(run), cache_dir=str(tmp_path / "cache"),
                           **{r: endpoint for r in ("teacher", "rubricator", "verifier", "student")},
                           verifier_mode="batched")  # the stub writes matrices, not log-probabilities
        frame = signal_table(config, ["score"])
        assert judge.counts() == {"verdicts": 1}  # one blind call for the open-ended group; the letters need none
    graded = frame[frame["task_id"] == "op"]
    assert graded["reference_score"].isin([0.0, 1.0]).all()  # one 5-point criterion: met or not
    assert frame.loc[frame["task_id"] == "mc", "reference_score"].isna().all()
    assert analysis.signal_auc(frame, ["score"]).iloc[0]["n"] == 6


def test_intervals_resample_tasks_and_the_within_group_auc_pairs_rollouts_of_one_task():
    # Two tasks: in t1 the right rollout outscores both wrong ones; in t2 the wrong one outscores the right one.
    frame = pd.DataFrame({
        "task_id": ["t1", "t1", "t1", "t2", "t2", "t3", "t3"],
        "step": 0,
        "correct": [True, False, False, True, False, True, True],
        "score": [0.9, 0.2, 0.3, 0.4, 0.6, 0.8, 0.1],
    })
    row = analysis.signal_auc(frame, ["score"]).iloc[0]
    assert row["within_group_auc"] == pytest.approx(2 / 3) and row["n_pairs"] == 3  # t3 has no wrong rollout
    assert row["low"] <= row["auc"] <= row["high"] and row["wg_low"] <= row["within_group_auc"] <= row["wg_high"]
    again = analysis.signal_auc(frame, ["score"]).iloc[0]
    assert (again["low"], again["high"]) == (row["low"], row["high"])  # seeded
    no_tasks = analysis.signal_auc(frame.drop(columns="task_id"), ["score"]).iloc[0]
    assert no_tasks["auc"] == row["auc"] and np.isnan(no_tasks["low"]) and np.isnan(no_tasks["within_group_auc"])
