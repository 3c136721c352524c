"""`make demo`: the offline default end to end, sized to show the paper's two claims in the least time.

`python -m ropd_kit.demo` runs `experiments/demo.yaml`: ropd against lopd, one training step each, and notebook 05's
ROC AUC of each reward signal against correctness with its interval — is the rubric reward aligned with correctness,
and what does each method cost per step. `--full` runs `experiments/demo_full.yaml` instead (`make demo-full`): ropd,
lopd and rlvr for two steps each through notebooks 01–06. Both go through `batch.run_batch` (one local llama-server
per model, the Qwen2.5-Coder-1.5B teacher side and the 0.5B student, on the shipped arithmetic tasks), show which run
and notebook they are in while they run, write `reports/<name>/index.html`, and end with a short table: per run its
method, time, seconds and samples per training step, pass@1 before and after training where the run evaluated (the
short demo does not), and the AUCs where they were computed. Finished runs are skipped on
a re-run (`--force` redoes them).
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
FULL_SPEC = REPO / "experiments" / "demo_full.yaml"


def run_summary(run_dir: Path) -> dict:
    """Headline numbers of one finished run directory (missing files give missing numbers, not errors)."""
    out: dict = {}
    log = rundir.read_jsonl(run_dir / rundir.TRAIN_LOG) if (run_dir / rundir.TRAIN_LOG).exists() else []
    if log:
        out["steps"] = log[-1]["step"]
        out["wall_s"] = log[-1]["wall_s"]
        out["s_per_step"] = log[-1]["wall_s"] / max(log[-1]["step"], 1)
        if log[-1].get("samples_seen") is not None:
            out["samples_per_step"] = log[-1]["samples_seen"] / max(log[-1]["step"], 1)
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


def _number(row: dict, key: str) -> float | None:
    value = row.get(key)
    return None if value is None or value != value else float(value)  # NaN (JSON null or nan): missing


def auc_line(signal: str, row: dict) -> str:
    """'score 0.62 [0.41, 0.80] n=16; within-group 0.70 [0.50, 0.90] (10 pairs)': a number without its interval
    and its n says little at demo sizes."""
    def num(key: str) -> float | None:
        return _number(row, key)

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


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}:{secs:02d}"


def summary_rows(results: list) -> list[dict[str, str]]:
    """One row per run of a finished batch (its `RunStatus` list): run, method, time, seconds and samples per
    training step, pass@1 from the first to the last evaluated step, and each reward signal's AUC where notebook 05
    computed one ("—" where a run has none)."""
    from .analysis import SIGNAL_LABELS

    rows = []
    for status in results:
        summary = run_summary(Path(status.run_dir))
        passes = summary.get("pass@1") or {}
        first, last = (min(passes), max(passes)) if passes else (None, None)
        accuracy = "—" if first is None else (
            f"{passes[last]:.2f}" if first == last else f"{passes[first]:.2f} -> {passes[last]:.2f} (step {last})")
        detail = summary.get("auc_detail") or {}
        aucs = [f"{SIGNAL_LABELS.get(signal, signal)} {auc:.2f}"
                for signal, row in detail.items() if (auc := _number(row, "auc")) is not None]
        step = "—" if summary.get("s_per_step") is None else f"{summary['s_per_step']:.0f} s" + (
            f", {summary['samples_per_step']:.0f} samples" if summary.get("samples_per_step") is not None else "")
        state = "" if status.status == "done" else f" ({status.status})"
        rows.append({"run": status.run + state, "method": str(status.params.get("method", "—")),
                     "time": _clock(status.wall_s) + (" (earlier)" if status.skipped else ""),
                     "per step": step, "pass@1": accuracy, "AUC": ", ".join(aucs) or "—"})
    return rows


def table_text(rows: list[dict[str, str]]) -> str:
    """Rows of equal keys as a plain-text table with a header (columns as wide as their longest cell)."""
    if not rows:
        return ""
    keys = list(rows[0])
    widths = {k: max(len(k), *(len(r[k]) for r in rows)) for k in keys}
    lines = ["  ".join(k.ljust(widths[k]) for k in keys).rstrip()]
    lines += ["  ".join(r[k].ljust(widths[k]) for k in keys).rstrip() for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ropd_kit.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true",
                        help="the three-method, two-step grid (experiments/demo_full.yaml) instead of the short demo")
    parser.add_argument("--spec", default=None, help="another experiment spec (default: experiments/demo.yaml)")
    parser.add_argument("--reports", default=str(REPO / "reports"))
    parser.add_argument("--force", action="store_true", help="re-run runs that already finished")
    args = parser.parse_args(argv)
    spec_path = args.spec or (FULL_SPEC if args.full else DEFAULT_SPEC)

    started = time.perf_counter()
    results = run_batch(spec_path, args.reports, force=args.force)
    spec = load_spec(spec_path)
    batch_dir = Path(args.reports) / spec.name
    print()
    print(table_text(summary_rows(results)))
    for status in results:
        if status.error:
            print(f"\n{status.run} failed in {status.failed_notebook}: {status.error}")
        detail = run_summary(Path(status.run_dir)).get("auc_detail")
        if detail:
            print(f"\n{status.run}: ROC AUC against correctness (95% intervals resample tasks):")
            for signal, row in detail.items():
                print("  " + auc_line(signal, row))
    print(f"\n{len(results)} runs in {_clock(time.perf_counter() - started)}")
    print(f"report: {(batch_dir / INDEX).resolve()}")
    return 1 if any(s.status == "failed" for s in results) else 0


if __name__ == "__main__":
    sys.exit(main())
