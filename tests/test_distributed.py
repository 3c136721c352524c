"""Several training processes, the parts that need no process group: batch geometry, the launch check, and how
what each process measured is reduced into one train-log record (in-memory, no model, no torch)."""

from __future__ import annotations

import pytest

from ropd_kit.llm import sum_usage
from ropd_kit.reward import StepStats
from ropd_kit.train import distributed as ddp
from ropd_kit.train.student import TrainError


@pytest.fixture
def two_processes(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")


def test_one_process_is_the_default_and_the_main_one(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert ddp.world_size() == 1 and ddp.rank() == 0 and ddp.is_main()
    assert ddp.gather({"a": 1}) == [{"a": 1}] and ddp.broadcast(3) == 3
    with ddp.main_first() as main:
        assert main
    assert ddp.per_process(8, group=4) == 8


def test_launcher_variables_say_which_process_this_is(monkeypatch, two_processes):
    assert ddp.world_size() == 2 and ddp.rank() == 1 and not ddp.is_main()
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.delenv("RANK")
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "4")  # mpirun, before accelerate copies it to WORLD_SIZE
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "0")
    assert ddp.world_size() == 4 and ddp.is_main()


def test_a_step_splits_into_whole_groups_or_is_refused(two_processes):
    assert ddp.per_process(2 * 4, group=4) == 4  # 2 prompts x 4 rollouts: one group per process
    with pytest.raises(TrainError, match="whole groups of 4.*multiple of 2"):
        ddp.per_process(3 * 4, group=4)  # 3 groups over 2 processes
    assert ddp.per_process(6) == 3  # sft/lopd: no groups, an equal share
    with pytest.raises(TrainError, match="cannot be split over 2 processes"):
        ddp.per_process(5)


def test_group_geometry_counts_what_each_process_generates_at_once():
    ddp.check_group_geometry(4, 1, 4, 2)  # one group per process
    ddp.check_group_geometry(2, 2, 4, 2)  # half a group per micro-batch, but generated together: whole
    ddp.check_group_geometry(8, 1, 4, 1)
    with pytest.raises(TrainError, match=r"2 x 1 = 2 completions.*n_rollouts=4.*split between processes"):
        ddp.check_group_geometry(2, 1, 4, 2)
    with pytest.raises(TrainError, match="steps_per_generation"):
        ddp.check_group_geometry(3, 2, 4, 2)


def test_accelerate_cpu_launch_that_started_one_process_is_refused(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    ddp.refuse_single_process_cpu_launch()  # `accelerate launch --cpu` of one process: fine
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")  # what it sets only when asked for several
    with pytest.raises(TrainError, match="started a single process.*--multi_gpu --num_processes N"):
        ddp.refuse_single_process_cpu_launch()
    monkeypatch.setenv("WORLD_SIZE", "2")  # torchrun's processes are fine
    ddp.refuse_single_process_cpu_launch()


def test_step_stats_of_two_processes_sum_counts_and_keep_the_slowest_wall_time():
    a = StepStats(groups=1, failed_groups=0, rollouts=4, failed_rollouts=0, rubric_sizes=[3], teacher_scores=[1.0],
                  wall_s=5.0, refs_s=1.0, rubric_s=2.0, verify_s=1.5)
    b = StepStats(groups=1, failed_groups=1, rollouts=4, failed_rollouts=4, rubric_sizes=[], teacher_scores=[],
                  errors=["t2: rubric: no JSON"], wall_s=7.0, refs_s=0.5, rubric_s=6.0, verify_s=0.0)
    record = StepStats.merged([a, b]).as_record()
    assert (record["judge_groups"], record["judge_failures"], record["judge_failed_rollouts"]) == (2, 1, 4)
    assert record["rubric_size"] == 3 and record["teacher_score_mean"] == 1.0
    assert record["judge_s"] == 7.0 and record["refs_s"] == 1.0  # wall times: the slowest process
    assert record["rubric_s"] == 8.0 and record["verify_s"] == 1.5  # per-group times: summed
    assert record["judge_errors"] == ["t2: rubric: no JSON"]
    assert StepStats.merged([a]).as_record() == a.as_record()


def test_usage_of_two_processes_adds_up_per_role():
    row = {"calls": 2, "http_requests": 2, "cache_hits": 0, "retries": 0, "failures": 0, "prompt_tokens": 100,
           "completion_tokens": 10, "failures_by_kind": {}, "usd": None}
    other = {**row, "calls": 3, "http_requests": 1, "cache_hits": 2, "failures": 1, "failures_by_kind": {"timeout": 1},
             "usd": 0.5}
    total = sum_usage([{"rubricator": row, "teacher": row}, {"rubricator": other}])
    assert list(total) == ["rubricator", "teacher"]
    assert total["rubricator"]["calls"] == 5 and total["rubricator"]["cache_hits"] == 2
    assert total["rubricator"]["prompt_tokens"] == 200 and total["rubricator"]["failures_by_kind"] == {"timeout": 1}
    assert total["rubricator"]["usd"] == 0.5  # the priced part; an unpriced process adds nothing
    assert total["teacher"]["calls"] == 2


def test_timings_of_two_processes_are_the_slowest_ones():
    parts = [{"step_s": 3.0, "generate_s": 1.0, "optimizer_s": 0.2}, {"step_s": 3.5, "generate_s": 0.8,
                                                                       "optimizer_s": None}]
    assert ddp.reduce_timings(parts) == {"generate_s": 1.0, "optimizer_s": 0.2, "step_s": 3.5}
