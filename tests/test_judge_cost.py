"""Dollars of the judge roles: summed across processes, written per step into the train log (judge_usd, and per
role inside judge_usage), and shown by notebook 04, the endpoint table of 01-03 and the batch index — only where an
endpoint has a price table. Hand-made usage, train logs and configs; no model, no server."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from ropd_kit import batch, notebook_tools, rundir
from ropd_kit.batch.spec import BatchSpec, RunSpec
from ropd_kit.config import RunConfig
from ropd_kit.llm import UsageStats, sum_usage, token_cost_usd, total_usd
from ropd_kit.train.progress import TRAIN_LOG_FIELDS, _make_callback, _RunState


def row(calls: int, usd: float | None, prompt_tokens: int = 100, completion_tokens: int = 20) -> dict:
    return {"calls": calls, "http_requests": calls, "cache_hits": 0, "retries": 0, "failures": 0,
            "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "failures_by_kind": {}, "usd": usd}


def test_usd_adds_up_over_processes_and_roles_only_where_priced():
    parts = [{"teacher": row(1, None), "rubricator": row(2, 0.25), "verifier": row(1, 0.5)},
             {"teacher": row(1, None), "rubricator": row(1, None), "verifier": row(3, 0.125)}]
    total = sum_usage(parts)
    assert total["teacher"]["usd"] is None  # unpriced on every process: still unpriced, not $0
    assert total["rubricator"]["usd"] == 0.25  # one process had no price for it: the priced part
    assert total["verifier"]["usd"] == 0.625
    assert total_usd(total) == 0.875
    assert total_usd({"teacher": row(1, None)}) is None and total_usd({}) is None
    assert total_usd({"verifier": row(0, 0.0)}) == 0.0  # priced and free is a price


def log_one_step(tmp_path: Path, stats: UsageStats, spend) -> dict:
    """Drive the real train-log callback through one step in which `spend(stats)` happened; the record it wrote."""
    config = RunConfig(run_dir=str(tmp_path / "run"))
    state = _RunState(method="ropd", backend="transformers", samples_per_step=8)
    callback = _make_callback(config, state, reward=object(), clients_of=lambda: SimpleNamespace(stats=stats),
                              eval_tasks=None)
    callback.on_train_begin(None, SimpleNamespace(global_step=0), None)
    spend(stats)
    callback.on_log(None, SimpleNamespace(global_step=1), None, logs={"loss": 0.5, "reward": 0.25})
    (record,) = rundir.read_jsonl(config.path / rundir.TRAIN_LOG)
    return record


def test_the_train_log_has_the_steps_dollars_in_total_and_per_role(tmp_path):
    stats = UsageStats()
    stats.register("rubricator", priced=True)
    stats.register("verifier", priced=True)
    stats.register("teacher")
    stats.record_tokens("rubricator", 5_000, 1_000, usd=token_cost_usd(5_000, 1_000, 3.0, 15.0))  # before: not this step

    def spend(s: UsageStats) -> None:
        s.record_tokens("rubricator", 2_000, 500, usd=token_cost_usd(2_000, 500, 3.0, 15.0))
        s.record_tokens("verifier", 10_000, 100, usd=token_cost_usd(10_000, 100, 0.15, 0.6))
        s.record_tokens("teacher", 700, 300)
        s.record_tokens("student", 50, 50, usd=1.0)  # the student is not a judge role

    record = log_one_step(tmp_path, stats, spend)
    assert set(TRAIN_LOG_FIELDS) <= set(record) and "judge_usd" in TRAIN_LOG_FIELDS
    usage = record["judge_usage"]
    assert usage["rubricator"]["usd"] == pytest.approx((2_000 * 3.0 + 500 * 15.0) / 1e6)
    assert usage["verifier"]["usd"] == pytest.approx((10_000 * 0.15 + 100 * 0.6) / 1e6)
    assert usage["teacher"]["usd"] is None and "student" not in usage
    assert record["judge_usd"] == pytest.approx(0.0135 + 0.00156)


def test_an_unpriced_run_logs_no_dollars(tmp_path):
    record = log_one_step(tmp_path, UsageStats(), lambda s: s.record_tokens("verifier", 1_000, 100))
    assert record["judge_usd"] is None and record["judge_usage"]["verifier"]["usd"] is None
    assert record["judge_tokens"] == 1_100


# ---------------------------------------------------------------------------------------------------------------
# Notebooks


def write_log(run: Path, steps: list[dict]) -> Path:
    """A train log whose steps have the given judge_usage (the other fields as train() writes them)."""
    rundir.write_jsonl(run / rundir.TRAIN_LOG, [
        {"step": i, "method": "ropd", "samples_seen": 4 * i, "wall_s": 10.0 * i, "reward_mean": 0.5,
         "reward_std": 0.1, "loss": 0.2, "kl": None, "judge_calls": sum(u["calls"] for u in usage.values()),
         "judge_groups": 2, "judge_failures": 0, "judge_usage": usage, "judge_usd": total_usd(usage)}
        for i, usage in enumerate(steps, start=1)
    ])
    return run


PRICED_STEPS = [
    {"teacher": row(4, None), "rubricator": row(2, 0.01), "verifier": row(2, 0.002)},
    {"teacher": row(0, None), "rubricator": row(2, 0.03), "verifier": row(2, 0.004)},
]
UNPRICED_STEPS = [{"teacher": row(4, None), "rubricator": row(2, None), "verifier": row(2, None)}] * 2


def test_train_log_table_shows_dollars_per_role_only_when_priced(tmp_path):
    table = notebook_tools.train_log_table(write_log(tmp_path / "priced", PRICED_STEPS))
    assert list(table["judge_usd"]) == pytest.approx([0.012, 0.034])
    assert list(table["usd_rubricator"]) == pytest.approx([0.01, 0.03])
    assert list(table["usd_verifier"]) == pytest.approx([0.002, 0.004])
    assert "usd_teacher" not in table  # unpriced role: no column rather than a $0 it did not cost
    assert list(table.columns)[-3:] == ["judge_usd", "usd_rubricator", "usd_verifier"]  # after the main columns

    plain = notebook_tools.train_log_table(write_log(tmp_path / "plain", UNPRICED_STEPS))
    assert not [c for c in plain.columns if "usd" in c] and len(plain) == 2


def test_train_summary_adds_the_runs_dollars_per_role_when_priced():
    result = SimpleNamespace(method="ropd", backend="transformers", steps=2, wall_s=3.0, judge_groups=4,
                             judge_failures=0, checkpoint=None, usage=sum_usage(PRICED_STEPS))
    summary = notebook_tools.train_summary(result)
    assert summary["judge_usd"] == pytest.approx(0.046)
    assert summary["usd_rubricator"] == pytest.approx(0.04) and summary["usd_verifier"] == pytest.approx(0.006)
    assert "usd_teacher" not in summary
    plain = notebook_tools.train_summary(SimpleNamespace(**{**vars(result), "usage": sum_usage(UNPRICED_STEPS)}))
    assert not [k for k in plain if "usd" in k] and plain["steps"] == 2


def test_the_endpoint_table_shows_each_endpoints_price_and_limits():
    config = RunConfig.from_params(
        verifier_base_url="https://api.example.com/v1", verifier_model="judge-mini", verifier_api_key_env="JUDGE_KEY",
        verifier_requests_per_minute=30, verifier_tokens_per_minute=40_000, verifier_usd_per_mtok_input=0.15,
        verifier_usd_per_mtok_output=0.6, verifier_max_concurrency=4)
    table = notebook_tools.endpoint_table(config).set_index("role")
    verifier = table.loc["verifier"]
    assert (verifier["requests_per_minute"], verifier["tokens_per_minute"]) == (30, 40_000)
    assert (verifier["usd_per_mtok_input"], verifier["usd_per_mtok_output"]) == (0.15, 0.6)
    assert verifier["max_concurrency"] == 4 and verifier["api_key_env"] == "JUDGE_KEY"
    teacher = table.loc["teacher"]  # the local default: no limits, no price table
    assert [teacher[c] for c in ("requests_per_minute", "tokens_per_minute", "usd_per_mtok_input",
                                 "usd_per_mtok_output")] == ["—"] * 4
    assert teacher["max_concurrency"] == RunConfig().teacher.max_concurrency


# ---------------------------------------------------------------------------------------------------------------
# The batch index


def fake_batch_run(batch_dir: Path, name: str, steps: list[dict]) -> Path:
    run = batch_dir / name / rundir.RUN_SUBDIR
    RunConfig(run_dir=str(run), method="ropd").save()
    write_log(run, steps)
    (batch_dir / name / rundir.STATUS).write_text(batch.RunStatus(
        run=name, status="done", params={"method": "ropd", "tag": name}, fingerprint="x", run_dir=str(run)
    ).model_dump_json())
    return run


def runs_table(page: str) -> dict[str, dict[str, str]]:
    """The index's Runs table: {run: {column: cell text}}."""
    html = page.split("<h2>Runs</h2>")[1].split("</table>")[0]
    head = re.findall(r"<th>(.*?)</th>", html)
    rows = [re.findall(r"<td>(.*?)</td>", tr) for tr in html.split("<tr>")[2:]]
    return {re.sub("<.*?>", "", r[0]): dict(zip(head, r)) for r in rows}


RUNS = [RunSpec(name="paid", params={"tag": "paid"}), RunSpec(name="local", params={"tag": "local"})]


def test_the_index_has_a_dollars_column_per_run_when_any_run_is_priced(tmp_path):
    batch_dir = tmp_path / "b"
    fake_batch_run(batch_dir, "paid", PRICED_STEPS)
    fake_batch_run(batch_dir, "local", UNPRICED_STEPS)
    page = batch.write_index(batch_dir, BatchSpec(name="b"), RUNS).read_text()
    table = runs_table(page)
    assert table["paid"]["judge $"] == "0.0460" and table["local"]["judge $"] == "—"

    cost = notebook_tools.judge_cost(sorted(batch_dir.glob("*/run"))).set_index("run")
    assert cost.loc["paid", "judge_usd"] == pytest.approx(0.046)
    assert cost.loc["paid", "usd_verifier"] == pytest.approx(0.006) and pd.isna(cost.loc["local", "judge_usd"])
    assert cost.loc["local", "judge_calls"] == 16 and cost.loc["paid", "steps"] == 2
    assert "<h2>Judge cost</h2>" in page and "0.0400" in page  # the paid run's rubricator, in the section


def test_an_unpriced_batch_shows_no_dollars(tmp_path):
    batch_dir = tmp_path / "b"
    fake_batch_run(batch_dir, "local", UNPRICED_STEPS)
    page = batch.write_index(batch_dir, BatchSpec(name="b"), RUNS[1:]).read_text()
    assert "judge $" not in runs_table(page)["local"]
    assert "judge $" not in page and "usd_" not in page and "judge_usd" not in page
    assert "<h2>Judge cost</h2>" in page  # calls and tokens still shown
    assert notebook_tools.run_judge_usd(batch_dir / "local" / rundir.RUN_SUBDIR) is None
