"""`make demo`'s summary of a run directory, and the demo spec it runs."""

from __future__ import annotations

from pathlib import Path

from ropd_kit import rundir
from ropd_kit.batch.spec import load_spec
from ropd_kit.demo import DEFAULT_SPEC, run_summary


def test_demo_spec_compares_the_three_methods_on_all_six_notebooks():
    spec = load_spec(DEFAULT_SPEC)
    assert [r.params["method"] for r in spec.expand()] == ["ropd", "lopd", "rlvr"]
    assert len(spec.notebooks) == 6
    assert spec.base["eval_steps"] <= spec.base["max_steps"]  # pass@1 is measured before and after training


def test_run_summary_reads_pass_rates_step_time_and_auc(tmp_path: Path):
    run = tmp_path / "run"
    rundir.append_jsonl(run / rundir.TRAIN_LOG, [
        {"step": 1, "wall_s": 100.0, "reward_mean": 0.4},
        {"step": 2, "wall_s": 220.0, "reward_mean": 0.6},
    ])
    rundir.append_jsonl(run / rundir.EVAL, [
        {"step": 0, "correct": False}, {"step": 0, "correct": True},
        {"step": 2, "correct": True}, {"step": 2, "correct": True},
    ])
    rundir.write_jsonl(run / "signal_auc.jsonl", [{"signal": "score", "auc": 0.8}, {"signal": "logprob", "auc": None}])
    summary = run_summary(run)
    assert summary["pass@1"] == {0: 0.5, 2: 1.0}
    assert summary["s_per_step"] == 110.0 and summary["reward_first_last"] == (0.4, 0.6)
    assert summary["auc"] == {"score": 0.8, "logprob": None}


def test_the_summary_prints_each_auc_with_its_interval_n_and_within_group_ranking():
    from ropd_kit.demo import auc_line

    row = {"auc": 0.625, "low": 0.41, "high": 0.8, "n": 16, "within_group_auc": 0.7, "wg_low": 0.5, "wg_high": 0.9,
           "n_pairs": 10}
    assert auc_line("score", row) == "score 0.625 [0.41, 0.80] n=16; within-group 0.70 [0.50, 0.90] (10 pairs)"
    # Without task ids (or where undefined) only what is known is printed.
    assert auc_line("logprob", {"auc": None, "low": float("nan"), "n": 16}) == "logprob — n=16"


def test_run_summary_of_an_unfinished_run_is_empty_not_an_error(tmp_path: Path):
    assert run_summary(tmp_path / "nothing-yet") == {}
