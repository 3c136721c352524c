"""`make demo`'s time against its target, read from a finished demo batch (no new run).

In: the batch folder `make demo` wrote (`reports/demo`: one `<run>/status.json` per run, with each notebook's wall
time, and `<run>/run/train_log.jsonl`) and the llama-server build time from the build's stamp. Out: per run its wall
time, per notebook, the student's dtype and how many training judge calls the LLM cache answered (a demo replayed
from a warm cache is not the first run a new user waits for); the batch's span from the first run's start to the
last one's end; that span plus the build against a time budget: 15 minutes on a 2-core CPU, the wait a new
user's first demo is meant to fit in.

Not counted, because nothing records them: creating `.venv`, assembling the model files, and starting the servers
before the first run. docs/benchmarks.md gives them, measured.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .. import rundir
from ..batch.status import RunStatus

DEMO_TARGET_S = 15 * 60


def run_times(folder: Path) -> dict[str, Any]:
    """One run of the batch: status, wall time per notebook, and its training steps' dtype and judge cache use."""
    path = folder / rundir.STATUS
    try:
        status = RunStatus.model_validate_json(path.read_text())
    except ValidationError as exc:
        raise ValueError(f"{path}: not a batch status file ({exc.errors()[0]['msg']})") from None
    log_path = folder / rundir.RUN_SUBDIR / rundir.TRAIN_LOG
    steps = {r["step"]: r for r in rundir.read_jsonl(log_path)} if log_path.exists() else {}  # a resumed step: last
    return {
        "status": status.status,
        "started": status.started,
        "finished": status.finished,
        "wall_s": status.wall_s,
        "notebooks": {nb.notebook: nb.wall_s for nb in status.notebooks},
        "dtype": next((r.get("dtype") for r in steps.values() if r.get("dtype")), None),
        "train_judge_calls": sum(r.get("judge_calls") or 0 for r in steps.values()),
        "train_judge_cache_hits": sum(r.get("judge_cache_hits") or 0 for r in steps.values()),
    }


def demo_time(batch_dir: str | Path, *, build_s: float | None, target_s: float = DEMO_TARGET_S) -> dict[str, Any]:
    """The demo batch under `batch_dir` timed against `target_s` (the build included when `build_s` is known).

    Raises FileNotFoundError when no run of the batch has a status.json."""
    batch_dir = Path(batch_dir)
    folders = sorted(p.parent for p in batch_dir.glob(f"*/{rundir.STATUS}"))
    if not folders:
        raise FileNotFoundError(f"{batch_dir}: no <run>/{rundir.STATUS} below it; run `make demo` first")
    runs = {f.name: run_times(f) for f in folders}
    starts = [datetime.fromisoformat(r["started"]) for r in runs.values() if r["started"]]
    ends = [datetime.fromisoformat(r["finished"]) for r in runs.values() if r["finished"]]
    span = round((max(ends) - min(starts)).total_seconds(), 1) if starts and ends else None
    done = all(r["status"] == "done" for r in runs.values())
    total = None if span is None or build_s is None else round(span + build_s, 1)
    cached = sum(r["train_judge_cache_hits"] for r in runs.values())
    return {
        "inputs": {"from": str(batch_dir), "target_s": target_s, "build_s": build_s,
                   "not_counted": ["creating .venv", "assembling the model files", "starting the servers"]},
        "runs": runs,
        "all_done": done,
        "demo_s": span,
        "runs_sum_s": round(sum(r["wall_s"] or 0 for r in runs.values()), 1),
        "demo_plus_build_s": total,
        # A demo whose training judging came from the cache is a re-run, not what a new user waits for. The run
        # files do not say whether the teacher refs and the step-0 judging were replayed, so this can miss a re-run
        # whose training rollouts changed (another dtype samples other rollouts): docs/benchmarks.md's numbers say so.
        "training_judging_cold": cached == 0,
        "target_met": None if total is None or not done else total <= target_s,
    }
