"""`make demo`'s time against its target, read from a finished demo batch (no new run), and the set-up before it.

In: the batch folder `make demo` wrote (`reports/demo`: one `<run>/status.json` per run, with each notebook's wall
time, and `<run>/run/train_log.jsonl`). Out: per run its wall time, per notebook, the student's dtype and how many
training judge calls the LLM cache answered (a demo replayed from a warm cache is not the first run a new user
waits for); the batch's span from the first run's start (its servers' start included) to the last one's end,
against the target for the kind of CPU it ran on; and, on a line of its own, the set-up a new user waits for first:
creating `.venv` (the Makefile's stamp holds its seconds), building llama-server (the build's stamp) and preparing
the model files: downloading and assembling each GGUF, and converting the student and teacher into transformers
folders (`make models` does both; their markers hold the seconds).

The targets, from an empty cache after the set-up on a 2-core CPU: 15 minutes where the CPU computes bf16 natively
(the student trains in bf16), 20 minutes on one without (AVX2 only: it trains in fp32, which is slower per step).
The dtype the runs' train logs recorded picks the target; without one, this machine's CPU does
(`train.student.cpu_facts`: torch's capability level names the vector width, not whether bf16 is native).
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .. import rundir
from ..batch.status import RunStatus

TARGETS_S = {"bfloat16": 15 * 60, "float32": 20 * 60}
DEMO_TARGET_S = TARGETS_S["bfloat16"]


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


def venv_seconds(prefix: str | Path | None = None) -> float | None:
    """The seconds `make venv` took, from its stamp (`<venv>/.installed`); None for a stamp without them (made
    before stamps held a time, or a venv made by hand)."""
    stamp = Path(prefix or sys.prefix) / ".installed"
    try:
        return float(stamp.read_text().strip())
    except (OSError, ValueError):
        return None


def setup_times(*, build_s: float | None, venv_s: float | None = None, models_s: float | None = None) -> dict:
    """The set-up before the demo: venv, llama-server build, models; `total_s` only when all three are known."""
    parts = {"venv_s": venv_s, "llama_server_build_s": build_s, "models_s": models_s}
    known = [v for v in parts.values() if v is not None]
    return {**parts, "total_s": round(sum(known), 1) if len(known) == len(parts) else None}


def pick_target(dtypes: list[str | None], native_bf16: bool | None = None) -> tuple[float, str]:
    """(target seconds, why) for a demo whose runs trained in `dtypes`; without any, by whether this CPU has
    native bf16 (`native_bf16`, else asked of torch)."""
    known = sorted({d for d in dtypes if d})
    if "float32" in known:
        return TARGETS_S["float32"], "the student trained in float32 (a CPU without native bf16)"
    if known == ["bfloat16"]:
        return TARGETS_S["bfloat16"], "the student trained in bfloat16 (a CPU with native bf16)"
    if native_bf16 is None:
        from ..train.student import cpu_facts

        native_bf16 = cpu_facts()["native_bf16"]
    if native_bf16:
        return TARGETS_S["bfloat16"], "no dtype recorded; this CPU has native bf16"
    return TARGETS_S["float32"], "no dtype recorded; this CPU has no native bf16"


def demo_time(batch_dir: str | Path, *, build_s: float | None, venv_s: float | None = None,
              models_s: float | None = None, target_s: float | None = None) -> dict[str, Any]:
    """The demo batch under `batch_dir` timed against its target (`target_s`, else `pick_target`), and the set-up
    (`build_s` from the llama-server stamp; `venv_s` and `models_s` read here when not given).

    Raises FileNotFoundError when no run of the batch has a status.json."""
    from ..offline.models import install_seconds

    batch_dir = Path(batch_dir)
    folders = sorted(p.parent for p in batch_dir.glob(f"*/{rundir.STATUS}"))
    if not folders:
        raise FileNotFoundError(f"{batch_dir}: no <run>/{rundir.STATUS} below it; run `make demo` first")
    runs = {f.name: run_times(f) for f in folders}
    starts = [datetime.fromisoformat(r["started"]) for r in runs.values() if r["started"]]
    ends = [datetime.fromisoformat(r["finished"]) for r in runs.values() if r["finished"]]
    span = round((max(ends) - min(starts)).total_seconds(), 1) if starts and ends else None
    done = all(r["status"] == "done" for r in runs.values())
    cached = sum(r["train_judge_cache_hits"] for r in runs.values())
    if target_s is None:
        target_s, why = pick_target([r["dtype"] for r in runs.values()])
    else:
        why = "given"
    setup = setup_times(build_s=build_s, venv_s=venv_seconds() if venv_s is None else venv_s,
                        models_s=install_seconds() if models_s is None else models_s)
    return {
        "inputs": {"from": str(batch_dir), "target_s": target_s, "target_why": why, "targets_s": TARGETS_S,
                   "not_counted": ["loading the spec before the first run", "writing the index after the last run"]},
        "runs": runs,
        "all_done": done,
        "demo_s": span,
        "runs_sum_s": round(sum(r["wall_s"] or 0 for r in runs.values()), 1),
        "setup": setup,
        # A demo whose training judging came from the cache is a re-run, not what a new user waits for. The run
        # files do not say whether the teacher refs and the step-0 judging were replayed, so this can miss a re-run
        # whose training rollouts changed (another dtype samples other rollouts): the docs' numbers say so.
        "training_judging_cold": cached == 0,
        "target_met": None if span is None or not done else span <= target_s,
    }
