"""Calibrate the shipped math, multiple-choice and open-ended sets on the offline teacher and student.

The same question as `calibrate_arith.py`, per family: is there a teacher–student gap to distil? Each model
(the teacher Qwen2.5-Coder-1.5B-Instruct, the student Qwen2.5-Coder-0.5B-Instruct) answers a random sample of each
set once, greedy (temperature 0), through a local llama-server, the teacher with `teacher.teacher_messages` and the
student with `rollouts.student_messages` (each family's prompts, as the pipeline sends them). Answers are checked as
the evaluation checks them: `answers.correctness` (math-verify on the final answer for math, the chosen letter for
multiple choice), with 95% Wilson intervals. An open-ended answer is scored against its task's reference rubric by
the 1.5B model as Verifier (`train.evaluate.reference_scores`: blind, one call per task with the teacher's and the
student's answer shuffled together), and the mean score gets a 95% percentile bootstrap interval over tasks.
Prints one JSON line per (set, model). Every reply goes through the LLM disk cache, so a rerun costs nothing.

    python data/calibrate_families.py --progress                                # math + mc (40 each), open (20)
    python data/calibrate_families.py --set mc --sample 40 --role student
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from calibrate_arith import ROLES, _answer_all, wilson_interval  # noqa: E402

from ropd_kit.answers import correctness, predicted  # noqa: E402
from ropd_kit.config import DEFAULT_TEACHER, EndpointConfig, RunConfig, cache_root  # noqa: E402
from ropd_kit.data import Task, load_tasks  # noqa: E402
from ropd_kit.rollouts import student_messages  # noqa: E402
from ropd_kit.teacher import teacher_messages  # noqa: E402

# set name -> (files pooled before sampling, default sample size, answer token budget)
SETS = {
    "math": (["data/math_test.jsonl"], 40, 512),
    "mc": (["data/mc_test.jsonl"], 40, 384),
    # The open-ended test file has 13 questions; 20 are drawn from the 51 of both files.
    "open": (["data/open_test.jsonl", "data/open_train.jsonl"], 20, 512),
}


def bootstrap_interval(values: list[float], *, draws: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval of a mean, resampling the values (one per task) with replacement."""
    if not values:
        return (float("nan"), float("nan"))
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(values, k=len(values))) / len(values) for _ in range(draws))
    return (means[int(0.025 * draws)], means[int(0.975 * draws) - 1])


def sample_sets(names: list[str], sample: int | None, seed: int) -> dict[str, list[Task]]:
    chosen = {}
    for name in names:
        files, default_n, _ = SETS[name]
        pool = [t for f in files for t in load_tasks(ROOT / f)]
        chosen[name] = random.Random(seed).sample(pool, min(sample or default_n, len(pool)))
    return chosen


def answer(role: str, tasks: dict[str, list[Task]], *, base_url: str, parallel: int, progress: bool) -> dict:
    """One greedy answer per task of every set from one role's model: set -> list of row dicts, plus wall time."""
    from ropd_kit.llm import LLMCache, LLMClient, LLMError

    config = RunConfig()
    endpoint = EndpointConfig(base_url=base_url, model=ROLES[role], max_concurrency=parallel, timeout_s=3600)
    build = (lambda t: teacher_messages(t, config)) if role == "teacher" else student_messages
    out: dict[str, list[dict]] = {}
    walls: dict[str, float] = {}
    for name, set_tasks in tasks.items():
        client = LLMClient(endpoint, role, LLMCache(cache_root() / "llm"))
        started = time.perf_counter()
        replies = asyncio.run(_answer_all(client, [build(t) for t in set_tasks], SETS[name][2], progress))
        walls[name] = time.perf_counter() - started
        rows = []
        for task, reply in zip(set_tasks, replies):
            failed = isinstance(reply, LLMError)
            text = None if failed else reply.text
            rows.append({"task_id": task.id, "family": task.family, "answer": task.answer,
                         "predicted": None if failed else predicted(task, text),
                         "correct": None if failed else correctness(task, text),
                         "truncated": (not failed) and reply.finish_reason == "length",
                         "n_tokens": 0 if failed else reply.completion_tokens,
                         "error": str(reply) if failed else None, "text": text})
        out[name] = rows
    return {"rows": out, "wall_s": walls}


def grade_open(tasks: list[Task], answers: dict[str, list[dict]], *, base_url: str, model_id: str,
               parallel: int) -> tuple[dict[str, list[float | None]], dict]:
    """Reference-rubric scores of each role's open-ended answers: role -> one score per task (None: no answer, or
    the grading failed). One blind Verifier group per task holds every role's answer."""
    from ropd_kit.llm import make_clients
    from ropd_kit.train.evaluate import reference_scores

    endpoint = EndpointConfig(base_url=base_url, model=model_id, max_concurrency=parallel, timeout_s=3600)
    config = RunConfig(**{r: endpoint for r in ("teacher", "rubricator", "verifier", "student")})
    roles = sorted(answers)
    items = [(task, [answers[role][i]["text"] or "" for role in roles]) for i, task in enumerate(tasks)]
    started = time.perf_counter()
    with make_clients(config) as clients:
        grades = reference_scores(items, config, clients=clients)
        requests = clients.stats.snapshot().get("verifier", {})
    scores = {role: [None if answers[role][i]["text"] is None else g.scores[k] for i, g in enumerate(grades)]
              for k, role in enumerate(roles)}
    info = {"grade_wall_s": round(time.perf_counter() - started, 1), "verifier_calls": sum(g.calls for g in grades),
            "grade_failures": sum(g.n_failed for g in grades),
            "http_requests": requests.get("http_requests"), "cache_hits": requests.get("cache_hits")}
    return scores, info


def summary(name: str, role: str, rows: list[dict], wall_s: float, scores: list[float | None] | None) -> dict:
    n = len(rows)
    out = {"set": name, "files": SETS[name][0], "role": role, "model": ROLES[role], "n": n,
           "max_tokens": SETS[name][2], "truncated": sum(r["truncated"] for r in rows),
           "failed": sum(r["error"] is not None for r in rows),
           "mean_tokens": round(sum(r["n_tokens"] for r in rows) / max(n, 1), 1), "wall_s": round(wall_s, 1)}
    if scores is None:
        right = sum(r["correct"] is True for r in rows)
        low, high = wilson_interval(right, n)
        out.update({"correct": right, "accuracy": round(right / n, 4), "ci95": [round(low, 4), round(high, 4)],
                    "no_answer": sum(r["predicted"] is None for r in rows)})
    else:
        graded = [s for s in scores if s is not None]
        low, high = bootstrap_interval(graded)
        out.update({"graded": len(graded), "mean_score": round(sum(graded) / len(graded), 4) if graded else None,
                    "ci95": [round(low, 4), round(high, 4)],
                    "zero_scores": sum(s == 0 for s in graded), "full_scores": sum(s == 1 for s in graded)})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", action="append", choices=sorted(SETS), help="default: all three")
    parser.add_argument("--sample", type=int, help="tasks per set (default: 40, open 20)")
    parser.add_argument("--sample-seed", type=int, default=0)
    parser.add_argument("--role", action="append", choices=sorted(ROLES), help="teacher and/or student")
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None, help="llama-server threads (default: all cores)")
    parser.add_argument("--dump", type=Path, help="append every answer (and open-ended score) to this JSONL")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)

    from ropd_kit.offline.serve import LocalServer

    names = args.set or sorted(SETS)
    tasks = sample_sets(names, args.sample, args.sample_seed)
    # The student first: the teacher's server then stays up to grade the open-ended answers (the same 1.5B model).
    roles = sorted(args.role or ROLES, key=lambda r: r != "student")
    answers: dict[str, dict] = {}
    open_scores: dict[str, list[float | None]] = {}
    grading: dict = {}
    for role in roles:
        with LocalServer(ROLES[role], parallel=args.parallel, threads=args.threads) as server:
            print(f"{role}: {ROLES[role]} served at {server.base_url}", file=sys.stderr, flush=True)
            answers[role] = answer(role, tasks, base_url=server.base_url, parallel=args.parallel,
                                   progress=args.progress)
            if "open" in tasks and ROLES[role] == DEFAULT_TEACHER:
                print("grading the open-ended answers against their reference rubrics", file=sys.stderr, flush=True)
                open_scores, grading = grade_open(tasks["open"], {r: a["rows"]["open"] for r, a in answers.items()},
                                                  base_url=server.base_url, model_id=server.model_id,
                                                  parallel=args.parallel)
    if "open" in tasks and not open_scores:  # the teacher was not asked: serve the Verifier for the grading alone
        with LocalServer(DEFAULT_TEACHER, parallel=args.parallel, threads=args.threads) as server:
            open_scores, grading = grade_open(tasks["open"], {r: a["rows"]["open"] for r, a in answers.items()},
                                              base_url=server.base_url, model_id=server.model_id,
                                              parallel=args.parallel)

    for name in names:
        for role in roles:
            rows = answers[role]["rows"][name]
            scores = open_scores.get(role) if name == "open" else None
            result = summary(name, role, rows, answers[role]["wall_s"][name], scores)
            if name == "open":
                result.update(grading)
            if args.dump:
                with open(args.dump, "a", encoding="utf-8") as fh:
                    for i, row in enumerate(rows):
                        extra = {"score": scores[i]} if scores is not None else {}
                        fh.write(json.dumps({"set": name, "role": role, **row, **extra}, ensure_ascii=False) + "\n")
            print(json.dumps({"sample_seed": args.sample_seed, **result}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
