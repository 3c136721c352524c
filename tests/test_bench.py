"""The bench's arithmetic and report: step breakdown, cost per rollout, ratios, index.html (no model, no server)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ropd_kit.bench import suite as bench
from ropd_kit.bench.judge import ratio
from ropd_kit.bench.step import PHASES, breakdown, fractions, summarise_steps, teacher_tokens


def record(**fields):
    base = {"step": 1, "step_s": 10.0, "generate_s": 4.0, "judge_s": 5.0, "refs_s": 1.0, "rubric_s": 3.0,
            "verify_s": 1.0, "optimizer_s": 0.25, "judge_usage": {}}
    return {**base, **fields}


def test_breakdown_splits_judging_by_summed_group_times_and_adds_up():
    seconds = breakdown(record())
    # judging wall 5 - 1 (refs) = 4 s, split 3:1 between rubric and verification
    assert seconds["rubric"] == pytest.approx(3.0)
    assert seconds["verification"] == pytest.approx(1.0)
    assert seconds["optimizer"] == pytest.approx(0.25)
    assert seconds["other"] == pytest.approx(0.75)
    assert sum(seconds[p] for p in PHASES) == pytest.approx(seconds["step"])
    assert sum(fractions(seconds).values()) == pytest.approx(1.0)


def test_breakdown_of_a_method_without_judging_is_generation_and_other():
    seconds = breakdown(record(judge_s=None, refs_s=None, rubric_s=None, verify_s=None))
    assert seconds["teacher_refs"] == seconds["rubric"] == seconds["verification"] == 0
    assert seconds["other"] == pytest.approx(5.75)
    assert breakdown(record(step_s=None)) is None


def test_breakdown_of_an_older_log_without_optimizer_time_keeps_the_update_in_other():
    seconds = breakdown(record(optimizer_s=None))
    assert seconds["optimizer"] == 0 and seconds["other"] == pytest.approx(1.0)


def test_teacher_tokens_count_only_teacher_side_roles():
    usage = {"teacher": {"prompt_tokens": 100, "completion_tokens": 50},
             "verifier": {"prompt_tokens": 10, "completion_tokens": 5},
             "student": {"prompt_tokens": 999, "completion_tokens": 999}}
    assert teacher_tokens(record(judge_usage=usage)) == 165


def step(seconds_record, tokens=0, rollouts=8, length=None):
    s = breakdown(seconds_record)
    return {"step": seconds_record["step"], "seconds": s, "fractions": fractions(s) if s else None,
            "teacher_tokens": tokens, "rollouts": rollouts, "completion_length": length}


def test_summarise_steps_reward_vs_generation_and_cost_per_method():
    runs = [
        {"method": "ropd", "steps": [step(record(step=1), tokens=800), step(record(step=2, judge_s=2.0, refs_s=0.0),
                                                                           tokens=400)]},
        {"method": "lopd", "prompt_tokens_mean": 40.0,
         "steps": [step(record(judge_s=None, refs_s=None, rubric_s=None, verify_s=None), length=60.0)]},
        {"method": "rlvr", "steps": [step(record(judge_s=0.01, refs_s=0.0, rubric_s=0.0, verify_s=0.0))]},
    ]
    summary = summarise_steps(runs)
    ropd = summary["per_method"]["ropd"]
    # medians over the two steps: reward time (refs + rubric + verification) 5 and 2 -> 3.5; generation 4
    assert ropd["reward_s_median"] == pytest.approx(3.5)
    assert ropd["reward_over_generation"] == pytest.approx(3.5 / 4.0)
    assert summary["target"]["ropd_reward_time_below_generation"] is True
    assert "(0.88x): judging costs less" in summary["reading"]
    cost = summary["cost_per_reward"]
    assert cost["ropd"]["teacher_tokens_per_rollout"] == pytest.approx((100 + 50) / 2)
    assert cost["lopd"]["teacher_tokens_per_rollout"] == pytest.approx(100.0)
    assert cost["rlvr"]["teacher_tokens_per_rollout"] == 0.0


def test_ratio_refuses_missing_or_zero():
    assert ratio(4.0, 2.0) == 2.0
    assert ratio(None, 2.0) is None and ratio(4.0, 0) is None


def test_index_plots_what_exists_and_links_other_benchmarks(tmp_path: Path):
    facts = {"cpus": 2, "memory_gib": 24.0, "processor": "x86_64"}
    throughput = {
        "inputs": {"latency_s": 1.0},
        "local": {"1": {"groups_per_s_median": 0.1, "speedup_vs_1": 1.0},
                  "16": {"groups_per_s_median": 0.12, "speedup_vs_1": 1.2}},
        "remote_latency": {"1": {"groups_per_s_median": 0.4, "speedup_vs_1": 1.0},
                           "16": {"groups_per_s_median": 4.0, "speedup_vs_1": 10.0}},
        "ratios": {"local_16_vs_1": 1.2, "remote_16_vs_1": 10.0},
    }
    bench.write_result(tmp_path, "judge_throughput", throughput, facts)
    (tmp_path / "injection.json").write_text("{}")
    page = bench.write_index(tmp_path).read_text()
    assert "judge throughput" in page and "remote 16 vs 1" in page and ">10<" in page
    assert 'href="injection.json"' in page and "gpu_grpo.json" not in page
    assert "Plotly.newPlot" in page  # the figure is in the page, with plotly.js inlined (works offline)
    saved = json.loads((tmp_path / "judge_throughput.json").read_text())
    assert saved["machine"]["cpus"] == 2 and saved["bench"] == "judge_throughput"


def test_cli_refuses_an_unknown_benchmark(capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(["--only", "judge_throughput,nope"])
    assert "nope" in capsys.readouterr().err


def test_read_run_takes_the_breakdown_from_a_finished_run_directory(tmp_path: Path):
    from ropd_kit import rundir
    from ropd_kit.bench.step import read_run
    from ropd_kit.config import RunConfig

    config = RunConfig(run_dir=str(tmp_path / "run"), method="rlvr", prompts_per_step=2, n_rollouts=4)
    config.save()
    rundir.append_jsonl(config.path / rundir.TRAIN_LOG, [record(step=1, judge_s=0.0, refs_s=0.0, rubric_s=0.0,
                                                                verify_s=0.0)])
    run = read_run(config.path, progress=lambda _: None)
    assert run["method"] == "rlvr" and run["steps"][0]["rollouts"] == 8
    assert run["steps"][0]["seconds"]["generation"] == 4.0 and run["steps"][0]["seconds"]["other"] == 5.75


def test_local_passes_fill_the_slots_once_and_never_exceed_the_groups():
    from ropd_kit.bench.judge import local_pass_groups

    assert [local_pass_groups(level, 16) for level in (1, 4, 16)] == [4, 4, 16]
    assert local_pass_groups(16, 5) == 5
    assert local_pass_groups(2, 2) == 2


def test_quick_shrinks_every_size_and_defaults_keep_the_issue_sizes():
    full = bench.parse_args([])
    assert (full.groups, full.refs, full.rollouts, full.levels) == (16, 4, 8, [1, 4, 16])
    quick = bench.parse_args(["--quick"])
    assert quick.groups < full.groups and quick.rollouts < full.rollouts and max(quick.levels) < 16
    assert quick.step_judge_model == "smollm2-135m-instruct"


def test_throughput_reading_names_the_ceiling_from_the_numbers():
    from ropd_kit.bench.judge import _reading

    local = {"1": {"speedup_vs_1": 1.0, "tokens_per_s_median": 250.0},
             "16": {"speedup_vs_1": 1.1, "tokens_per_s_median": 270.0}}
    remote = {"1": {"speedup_vs_1": 1.0}, "16": {"speedup_vs_1": 15.0}}
    text = _reading(local, remote, "16", 1.0)
    assert "1.10x" in text and "250 tokens/s" in text and "15.0x" in text and "is the ceiling" in text
    local["16"]["speedup_vs_1"] = 9.0
    assert "still gains" in _reading(local, remote, "16", 1.0)


def test_step_reading_says_what_stands_in_the_way_when_reward_outlasts_generation():
    from ropd_kit.bench.step import step_reading

    summary = summarise_steps([{"method": "ropd", "steps": [step(record(judge_s=9.0, refs_s=1.0))]}])
    text = step_reading(summary["per_method"]["ropd"])
    # reward = refs 1 + judging 8; generation 4
    assert "9.0 s against 4.0 s of generation (2.25x)" in text and "not met" in text
    assert "judging (8.0 s)" in text and "teacher refs (1.0 s)" in text


def test_machine_facts_say_which_cpu_and_how_it_does_bf16():
    facts = bench.machine_facts(matmul_runs=1)
    cpu = facts["cpu"]
    assert set(cpu) >= {"capability", "model", "native_bf16", "bf16_features", "student_dtype_auto"}
    assert isinstance(cpu["capability"], str) and cpu["capability"]
    assert cpu["student_dtype_auto"] == ("bfloat16" if cpu["native_bf16"] else "float32")
    matmul = facts["matmul"]
    assert matmul["shape"] == "512x896 @ 896x896" and matmul["threads"] == 1 and matmul["runs"] == 1
    for dtype in ("float32", "bfloat16"):
        assert matmul[f"{dtype}_ms"] >= matmul[f"{dtype}_min_ms"] > 0
    assert matmul["bf16_vs_fp32"] == pytest.approx(matmul["bfloat16_ms"] / matmul["float32_ms"], abs=0.01)
    json.dumps(facts)  # written into every result file as it is
