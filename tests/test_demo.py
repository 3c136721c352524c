"""`make demo`'s summary of a run directory, and the demo spec it runs."""

from __future__ import annotations

from pathlib import Path

from ropd_kit import rundir
from ropd_kit.batch.spec import load_spec
from ropd_kit.batch.runner import needs_servers
from ropd_kit.batch.spec import notebook_path
from ropd_kit.demo import DEFAULT_SPEC, FULL_SPEC, run_summary


def test_the_demo_is_ropd_against_lopd_one_step_each_with_the_signals_notebook():
    spec = load_spec(DEFAULT_SPEC)
    runs = {r.params["method"]: r for r in spec.expand()}
    assert list(runs) == ["ropd", "lopd"]
    # One step each and no evaluation: pass@1 on a few tasks before and after one step could not show a change.
    assert spec.base["max_steps"] == 1 and spec.base["eval_steps"] is None
    assert spec.expand()[0].params["eval_steps"] is None  # passed on, so the notebook's own default does not apply
    # One group a step: one failed group must not stop the demo (it is recorded and counted instead).
    assert spec.base["prompts_per_step"] == 1 and spec.base["max_judge_failure_rate"] == 1.0
    ropd_notebooks = runs["ropd"].notebooks or spec.notebooks
    assert "05_signal_alignment_auc" in ropd_notebooks and {"score", "logprob"} <= set(spec.base["signals"])
    # lopd only trains: no judging notebook, and no llama-server beside its student and white-box teacher.
    assert runs["lopd"].notebooks == ["04_grpo_training"]
    assert not needs_servers([notebook_path(n) for n in runs["lopd"].notebooks], runs["lopd"].params)
    assert needs_servers([notebook_path(n) for n in ropd_notebooks], runs["ropd"].params)
    # ropd's signals notebook loads the white-box teacher for the log-prob signal: no server runs beside it either.
    assert not needs_servers([notebook_path("05_signal_alignment_auc")], runs["ropd"].params)


def test_the_full_demo_compares_the_three_methods_on_all_six_notebooks():
    spec = load_spec(FULL_SPEC)
    assert [r.params["method"] for r in spec.expand()] == ["ropd", "lopd", "rlvr"]
    assert len(spec.notebooks) == 6 and spec.base["max_steps"] == 2
    assert spec.base["eval_steps"] <= spec.base["max_steps"]  # pass@1 is measured before and after training
    assert spec.name != load_spec(DEFAULT_SPEC).name  # its own reports folder


def test_run_summary_reads_pass_rates_step_time_and_auc(tmp_path: Path):
    run = tmp_path / "run"
    rundir.append_jsonl(run / rundir.TRAIN_LOG, [
        {"step": 1, "wall_s": 100.0, "reward_mean": 0.4, "samples_seen": 8},
        {"step": 2, "wall_s": 220.0, "reward_mean": 0.6, "samples_seen": 16},
    ])
    rundir.append_jsonl(run / rundir.EVAL, [
        {"step": 0, "correct": False}, {"step": 0, "correct": True},
        {"step": 2, "correct": True}, {"step": 2, "correct": True},
    ])
    rundir.write_jsonl(run / "signal_auc.jsonl", [{"signal": "score", "auc": 0.8}, {"signal": "logprob", "auc": None}])
    summary = run_summary(run)
    assert summary["pass@1"] == {0: 0.5, 2: 1.0}
    assert summary["s_per_step"] == 110.0 and summary["reward_first_last"] == (0.4, 0.6)
    assert summary["samples_per_step"] == 8.0
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


def test_the_closing_table_has_one_row_per_run_with_time_step_cost_accuracy_and_auc(tmp_path: Path):
    from ropd_kit.batch.status import RunStatus
    from ropd_kit.demo import summary_rows, table_text

    ropd, lopd = tmp_path / "ropd" / "run", tmp_path / "lopd" / "run"
    for run, correct in ((ropd, [False, True, True, True]), (lopd, [False, True, False, True])):
        rundir.append_jsonl(run / rundir.EVAL,
                            [{"step": s, "correct": c} for s in (0, 1) for c in correct[2 * s:2 * s + 2]])
    rundir.append_jsonl(ropd / rundir.TRAIN_LOG, [{"step": 1, "wall_s": 232.4, "samples_seen": 4}])
    rundir.write_jsonl(ropd / "signal_auc.jsonl", [{"signal": "score", "auc": 0.9, "low": 0.8, "high": 1.0, "n": 16},
                                                   {"signal": "logprob", "auc": float("nan"), "n": 16}])
    results = [
        RunStatus(run="ropd", status="done", params={"method": "ropd"}, fingerprint="f", run_dir=str(ropd),
                  wall_s=601.4),
        RunStatus(run="lopd", status="failed", params={"method": "lopd"}, fingerprint="f", run_dir=str(lopd),
                  wall_s=59.6, failed_notebook="04_grpo_training"),
    ]
    rows = summary_rows(results)
    assert rows[0] == {"run": "ropd", "method": "ropd", "time": "10:01", "per step": "232 s, 4 samples",
                       "pass@1": "0.50 -> 1.00 (step 1)",
                       "AUC": "rubric reward 0.90"}  # an undefined AUC is left out, not printed as a number
    assert rows[1]["run"] == "lopd (failed)" and rows[1]["time"] == "1:00" and rows[1]["AUC"] == "—"
    assert rows[1]["per step"] == "—"  # it logged no step
    lines = table_text(rows).splitlines()
    assert len(lines) == 3
    assert [h.strip() for h in lines[0].split("  ") if h.strip()] == ["run", "method", "time", "per step", "pass@1",
                                                                      "AUC"]
    assert lines[1].index("ropd", 5) == lines[0].index("method")  # columns line up
