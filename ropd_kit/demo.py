"""`make demo`: the offline default end to end on the shipped arithmetic tasks.

Starts the local llama-server(s) (Qwen2.5-Coder-1.5B-Instruct for teacher, Rubricator and Verifier; the 0.5B
student for rollouts), runs stages 1–5 into a fresh run directory and prints where it is and what it measured.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone

from .config import RunConfig
from .pipeline import run_stages
from .serve import local_endpoints


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ropd_kit.demo", description=__doc__)
    parser.add_argument("--run-dir", default=None, help="default: runs/demo-<UTC timestamp>")
    parser.add_argument("--n-tasks", type=int, default=8)
    parser.add_argument("--n-teacher-refs", type=int, default=4)
    parser.add_argument("--n-rollouts", type=int, default=8)
    args = parser.parse_args(argv)

    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    config = RunConfig(
        run_dir=args.run_dir or f"runs/demo-{stamp}",
        n_tasks=args.n_tasks,
        n_teacher_refs=args.n_teacher_refs,
        n_rollouts=args.n_rollouts,
    )
    t0 = time.perf_counter()
    with local_endpoints(config) as resolved:
        summary = run_stages(resolved)
    summary["wall_s"] = time.perf_counter() - t0
    print(json.dumps({k: v for k, v in summary.items() if k != "failures"}, indent=2, default=str))
    print(f"\nrun directory: {config.path.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
