"""`make demo`: the offline default end to end — notebooks 01–06 for ropd, lopd and rlvr through the batch runner.

Runs `experiments/demo.yaml` with `batch.run_batch` (one local llama-server per model for the whole batch; the
Qwen2.5-Coder-1.5B teacher side and the 0.5B student on the shipped arithmetic tasks), writes
`reports/demo/index.html`, and prints what a researcher looks at first: per run its status, the final pass@1,
the mean step time, and the ROC AUC of each reward signal against correctness. Finished runs are skipped on a
re-run (`--force` redoes them).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import rundir
from .batch.spec import INDEX, load_spec
from .batch.runner import run_batch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SPEC = REPO / "experiments" / "demo.yaml"


def run_summary(run_dir: Path) -> dict:
    """Headline numbers of one finished run directory (missing files give missing numbers, not errors)."""
    out: dict = {}
    log = rundir.read_jsonl(run_dir / rundir.TRAIN_LOG) if (run_dir / rundir.TRAIN_LOG).exists() else []
    if log:
        out["steps"] = log[-1]["step"]
        out["wall_s"] = log[-1]["wall_s"]
        out["s_per_step"] = log[-1]["wall_s"] / max(log[-1]["step"], 1)
        rewards = [r["reward_mean"] for r in log if r.get("reward_mean") is not None]
        out["reward_first_last"] = (rewards[0], rewards[-1]) if rewards else None
    evals = rundir.read_jsonl(run_dir / rundir.EVAL) if (run_dir / rundir.EVAL).exists() else []
    if evals:
        by_step: dict[int, list[bool]] = {}
        for r in evals:
            by_step.setdefault(int(r["step"]), []).append(bool(r["correct"]))
        out["pass@1"] = {step: sum(v) / len(v) for step, v in sorted(by_step.items())}
    auc_path = run_dir / "signal_auc.jsonl"
    if auc_path.exists():
        records = rundir.read_jsonl(auc_path)
        out["auc"] = {r["signal"]: r.get("auc") for r in records}
        out["auc_detail"] = {r["signal"]: {k: r.get(k) for k in AUC_DETAIL} for r in records}
    return out


# What the summary prints of each signal's row of signal_auc.jsonl (analysis.signal_auc).
AUC_DETAIL = ("auc", "low", "high", "n", "within_group_auc", "wg_low", "wg_high", "n_pairs")


def auc_line(signal: str, row: dict) -> str:
    """'score 0.62 [0.41, 0.80] n=16; within-group 0.70 [0.50, 0.90] (10 pairs)': a number without its interval
    and its n says little at demo sizes."""
    def num(key: str) -> float | None:
        value = row.get(key)
        return None if value is None or value != value else float(value)  # NaN (JSON null or nan): missing

    text = f"{signal} {_fmt(num('auc'))}"
    if num("low") is not None:
        text += f" [{num('low'):.2f}, {num('high'):.2f}]"
    text += f" n={row.get('n')}"
    if num("within_group_auc") is not None:
        text += f"; within-group {num('within_group_auc'):.2f}"
        if num("wg_low") is not None:
            text += f" [{num('wg_low'):.2f}, {num('wg_high'):.2f}]"
        text += f" ({int(num('n_pairs') or 0)} pairs)"
    return text


def _fmt(value) -> str:
    return "—" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ropd_kit.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", default=str(DEFAULT_SPEC), help="experiment spec (default: experiments/demo.yaml)")
    parser.add_argument("--reports", default=str(REPO / "reports"))
    parser.add_argument("--force", action="store_true", help="re-run runs that already finished")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    results = run_batch(args.spec, args.reports, force=args.force)
    spec = load_spec(args.spec)
    batch_dir = Path(args.reports) / spec.name
    print()
    for status in results:
        state = "skipped (already done)" if status.skipped else status.status
        print(f"{status.run}: {state}" + (f" in {status.failed_notebook}: {status.error}" if status.error else ""))
        summary = run_summary(Path(status.run_dir))
        if summary.get("pass@1"):
            steps = summary["pass@1"]
            first, last = min(steps), max(steps)
            print(f"  pass@1 step {first}: {_fmt(steps[first])} -> step {last}: {_fmt(steps[last])}")
        if summary.get("s_per_step") is not None:
            print(f"  {summary['steps']} steps, {summary['s_per_step']:.0f} s per step; reward mean first/last: "
                  f"{' / '.join(_fmt(x) for x in summary.get('reward_first_last') or (None, None))}")
        if summary.get("auc_detail"):
            print("  ROC AUC vs correctness (95% intervals resample tasks):")
            for signal, row in summary["auc_detail"].items():
                print("    " + auc_line(signal, row))
    print(f"\n{len(results)} runs in {time.perf_counter() - started:.0f} s")
    print(f"report: {(batch_dir / INDEX).resolve()}")
    return 1 if any(s.status == "failed" for s in results) else 0


if __name__ == "__main__":
    sys.exit(main())
