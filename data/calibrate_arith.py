"""Calibrate the shipped arithmetic set: greedy accuracy of the offline teacher and student on a sample of problems.

Distillation needs a gap: the teacher (Qwen2.5-Coder-1.5B-Instruct) should solve most problems and the student
(Qwen2.5-Coder-0.5B-Instruct) fewer than half. Each model answers once at temperature 0 through a local llama-server,
the teacher with `teacher.teacher_messages`, the student with `rollouts.student_messages` (the prompts the pipeline
uses), and `answers.extract_final_answer` reads the answer. Prints one JSON line per (model, problem set).

    python data/calibrate_arith.py --tasks data/arith_test.jsonl --sample 60 --role teacher --role student
    python data/calibrate_arith.py --steps 3 --max-number 60 --sample 40 --role student   # a generated set
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_arith import generate  # noqa: E402

from ropd_kit.answers import extract_final_answer  # noqa: E402
from ropd_kit.config import DEFAULT_STUDENT, DEFAULT_TEACHER, RunConfig  # noqa: E402
from ropd_kit.data import Task, load_tasks  # noqa: E402
from ropd_kit.rollouts import student_messages  # noqa: E402
from ropd_kit.teacher import teacher_messages  # noqa: E402

ROLES = {"teacher": DEFAULT_TEACHER, "student": DEFAULT_STUDENT}


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion (sound near 0 and 1, unlike the normal approximation)."""
    if n == 0:
        return (math.nan, math.nan)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


async def _answer_all(client, messages: list[list[dict]], max_tokens: int, progress: bool) -> list:
    from tqdm.auto import tqdm

    from ropd_kit.llm import LLMError

    bar = tqdm(total=len(messages), desc=client.role, disable=not progress)

    async def one(msgs: list[dict]):
        try:
            return await client.chat(msgs, temperature=0.0, max_tokens=max_tokens)
        except LLMError as exc:  # counted as wrong, and reported
            return exc
        finally:
            bar.update(1)

    try:
        return await asyncio.gather(*(one(m) for m in messages))
    finally:
        bar.close()
        await client.aclose()


def measure(role: str, tasks: list[Task], *, base_url: str, max_tokens: int, parallel: int, progress: bool) -> dict:
    """Greedy accuracy of one role's model on `tasks`; answers go through the LLM disk cache, so a rerun is free."""
    from ropd_kit.config import EndpointConfig, cache_root
    from ropd_kit.llm import LLMCache, LLMClient, LLMError

    config = RunConfig()
    model = ROLES[role]
    endpoint = EndpointConfig(base_url=base_url, model=model, max_concurrency=parallel, timeout_s=3600)
    client = LLMClient(endpoint, role, LLMCache(cache_root() / "llm"))
    build = (lambda t: teacher_messages(t, config)) if role == "teacher" else student_messages
    start = time.perf_counter()
    outputs = asyncio.run(_answer_all(client, [build(t) for t in tasks], max_tokens, progress))
    wall = time.perf_counter() - start
    rows = []
    for task, out in zip(tasks, outputs):
        failed = isinstance(out, LLMError)
        text = None if failed else out.text
        predicted = extract_final_answer(text)
        rows.append({"task_id": task.id, "answer": task.answer, "predicted": predicted,
                     "correct": predicted == task.answer, "truncated": (not failed) and out.finish_reason == "length",
                     "n_tokens": 0 if failed else out.completion_tokens, "error": str(out) if failed else None,
                     "text": text})
    correct = sum(r["correct"] for r in rows)
    low, high = wilson_interval(correct, len(rows))
    return {
        "role": role, "model": model, "n": len(rows), "correct": correct, "accuracy": round(correct / len(rows), 4),
        "ci95": [round(low, 4), round(high, 4)], "truncated": sum(r["truncated"] for r in rows),
        "no_answer": sum(r["predicted"] is None for r in rows), "failed": sum(r["error"] is not None for r in rows),
        "mean_tokens": round(sum(r["n_tokens"] for r in rows) / len(rows), 1), "wall_s": round(wall, 1),
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=Path, help="a task file; otherwise problems are generated")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--max-number", type=int, default=99)
    parser.add_argument("--seed", type=int, default=1234, help="generator seed (generated sets)")
    parser.add_argument("--sample", type=int, default=40, help="problems to measure (random sample)")
    parser.add_argument("--sample-seed", type=int, default=0)
    parser.add_argument("--role", action="append", choices=sorted(ROLES), help="teacher and/or student")
    parser.add_argument("--max-tokens", type=int, default=300)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--base-url", help="an already running server serving the role's model (one role only)")
    parser.add_argument("--dump", type=Path, help="append every answer to this JSONL")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)

    if args.tasks:
        pool = load_tasks(args.tasks, require_answers=True)
        setting = {"tasks": str(args.tasks)}
    else:
        problems = generate(args.sample, steps=args.steps, max_number=args.max_number, seed=args.seed)
        pool = [p.to_task() for p in problems]
        setting = {"steps": args.steps, "max_number": args.max_number, "seed": args.seed}
    tasks = random.Random(args.sample_seed).sample(pool, min(args.sample, len(pool)))

    for role in args.role or ["teacher", "student"]:
        if args.base_url:
            result = measure(role, tasks, base_url=args.base_url, max_tokens=args.max_tokens, parallel=args.parallel,
                             progress=args.progress)
        else:
            from ropd_kit.offline.serve import LocalServer

            with LocalServer(ROLES[role], parallel=args.parallel) as server:
                result = measure(role, tasks, base_url=server.base_url, max_tokens=args.max_tokens,
                                 parallel=args.parallel, progress=args.progress)
        rows = result.pop("rows")
        if args.dump:
            with open(args.dump, "a", encoding="utf-8") as fh:
                for row in rows:
                    fh.write(json.dumps({**setting, "role": role, **row}, ensure_ascii=False) + "\n")
        print(json.dumps({**setting, "sample_seed": args.sample_seed, "max_tokens": args.max_tokens, **result}),
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
