"""The `multiprocess` benchmark's arithmetic on hand-made train logs (no model, no server, no launch)."""

from __future__ import annotations

import pytest

from ropd_kit.bench.multiprocess import launch_command, summarise_multiprocess


def log_record(step, step_s, generate_s, judge_s, *, processes, refs_s=0.0, rubric_s=1.0, verify_s=1.0,
               optimizer_s=0.5, samples_per_step=8):
    return {"step": step, "samples_seen": step * samples_per_step, "step_s": step_s, "generate_s": generate_s,
            "judge_s": judge_s, "refs_s": refs_s, "rubric_s": rubric_s, "verify_s": verify_s,
            "optimizer_s": optimizer_s, "processes": processes, "judge_calls": 4, "judge_failures": 0,
            "reward_mean": 0.5}


def runs():
    one = {"processes": 1, "wall_s": 60.0, "threads_per_process": 2, "log": [
        log_record(1, 20.0, 8.0, 10.0, processes=1, refs_s=2.0),
        log_record(2, 16.0, 8.0, 6.0, processes=1),
    ]}
    two = {"processes": 2, "wall_s": 75.0, "threads_per_process": 1, "log": [
        log_record(1, 14.0, 5.0, 7.0, processes=2, refs_s=1.0),
        log_record(2, 12.0, 5.0, 5.0, processes=2),
    ]}
    return [one, two]


def test_medians_per_phase_ratios_and_reading():
    summary = summarise_multiprocess(runs())
    one, two = summary["runs"]["1p"], summary["runs"]["2p"]
    # medians over the two steps: step 18 vs 13, generation 8 vs 5
    assert one["seconds_median"]["step"] == pytest.approx(18.0)
    assert two["seconds_median"]["step"] == pytest.approx(13.0)
    assert one["seconds_median"]["generation"] == 8.0 and two["seconds_median"]["generation"] == 5.0
    # judging wall minus refs, split half and half between rubric and verification (equal per-group times)
    assert one["seconds_median"]["teacher_refs"] == pytest.approx(1.0)
    assert one["seconds_median"]["rubric"] == pytest.approx((4.0 + 3.0) / 2)
    assert one["samples_per_step"] == 8 and one["samples_per_s"] == pytest.approx(8 / 18.0)
    ratios = summary["ratios"]
    assert ratios["step_s"] == pytest.approx(13 / 18)
    assert ratios["generation_s"] == pytest.approx(5 / 8)
    assert ratios["wall_s"] == pytest.approx(75 / 60)
    assert ratios["samples_per_s"] == pytest.approx(18 / 13)
    reading = summary["reading"]
    assert "13.0 s in 2 processes against 18.0 s in one (0.72x, faster)" in reading
    assert "The most time came off generation (-3.0 s)." in reading
    assert "2 processes ran 1 thread(s), the single one 2" in reading
    assert [s["step_s"] for s in two["steps_raw"]] == [14.0, 12.0]


def test_a_missing_run_gives_no_ratio_and_says_so():
    summary = summarise_multiprocess(runs()[:1])
    assert summary["ratios"] == {} and summary["reading"] == "No pair of timed runs to compare."


def test_launch_commands_one_process_plain_several_through_torchrun_on_the_cpu(tmp_path):
    cmd, env = launch_command(tmp_path / "c.json", 1)
    assert cmd[1:] == ["-m", "ropd_kit.train", str(tmp_path / "c.json")]
    cmd, env = launch_command(tmp_path / "c.json", 2)
    assert cmd[1:4] == ["-m", "accelerate.commands.launch", "--multi_gpu"]
    assert cmd[cmd.index("--num_processes") + 1] == "2" and env["CUDA_VISIBLE_DEVICES"] == ""


def test_the_index_page_shows_the_ratios_and_the_phases(tmp_path):
    from ropd_kit.bench import suite

    result = {"inputs": {"processes": 2}, **summarise_multiprocess(runs())}
    suite.write_result(tmp_path, "multiprocess", result, {"cpus": 2})
    rows = dict(suite.headline(tmp_path))
    assert rows["multiprocess: step time, 2 processes / 1"] == pytest.approx(13 / 18)
    assert rows["multiprocess: wall time, 2 processes / 1"] == pytest.approx(75 / 60)
    page = suite.write_index(tmp_path).read_text()
    assert 'id="multiprocess"' in page and "multiprocess.json" in page
    assert "multiprocess" in suite.parse_args(["--only", "multiprocess"]).only
