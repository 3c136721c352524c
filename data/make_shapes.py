"""Writer of two files in other data sets' shapes, so the kit's loaders and the whole chain can be tried offline on
what a user brings: one shaped like GSM8K and one like HealthBench. Neither is those data sets; both are ours.

- `shapes/gsm8k_like_{train,test}.jsonl`: GSM8K's two columns, `question` and `answer`, where the answer is a worked
  solution with calculator annotations and the final line `#### n`. The problems are `make_arith.py`'s one-step
  stories (new seeds, none shared with the shipped arithmetic sets), so the offline student is right about half the
  time. Loaded by the question/answer shape: family "math", the answer read after "####".
- `shapes/healthbench_like_{train,test}.jsonl`: HealthBench's columns, `prompt_id`, `prompt` (a list of
  {role, content} chat messages), `rubrics` ([{criterion, points, tags}], some points negative) and
  `example_tags`, made from our hand-written open-ended sets (`open_train.jsonl` / `open_test.jsonl`): the same
  questions and reference rubrics, reshaped. Loaded by the prompt shape: family "open_ended".

The same inputs and seeds write the same files byte for byte.

    python data/make_shapes.py --out-dir data/shapes
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from make_arith import ArithProblem, apply_op, generate  # noqa: E402

from ropd_kit.data import load_tasks  # noqa: E402

SHIPPED_ARITH = ("arith_train", "arith_test", "arith_easy_train", "arith_easy_test")


def gsm8k_solution(problem: ArithProblem) -> str:
    """A worked solution in GSM8K's style: one line per operation with a <<calculation=result>> annotation, then
    '#### answer'."""
    lines, value = [], problem.start
    for op, n in problem.ops:
        result = apply_op(value, op, n)
        lines.append(f"{value} {op} {n} = <<{value}{op}{n}={result}>>{result}")
        value = result
    return "\n".join([*lines, f"#### {problem.answer}"])


def gsm8k_rows(n: int, seed: int, exclude: set[str]) -> tuple[list[dict], set[str]]:
    problems = generate(n, steps=1, max_number=50, seed=seed, exclude=exclude)
    rows = [{"question": p.prompt, "answer": gsm8k_solution(p)} for p in problems]
    return rows, {p.id for p in problems}


def healthbench_rows(path: Path) -> list[dict]:
    rows = []
    for task in load_tasks(path):
        messages = task.messages or [{"role": "user", "content": task.prompt}]
        rows.append({
            "prompt_id": task.id,
            "prompt": [m if isinstance(m, dict) else m.model_dump() for m in messages],
            "rubrics": [c.model_dump() for c in task.rubric],
            "example_tags": [f"theme:{task.domain}"],
        })
    return rows


def write_rows(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", type=Path, default=HERE / "shapes")
    parser.add_argument("--gsm8k-train", type=int, default=100, help="GSM8K-shaped training problems")
    parser.add_argument("--gsm8k-test", type=int, default=40, help="GSM8K-shaped test problems")
    parser.add_argument("--seed", type=int, default=20)
    args = parser.parse_args(argv)

    shipped = {t.id for name in SHIPPED_ARITH for t in load_tasks(HERE / f"{name}.jsonl")}
    train, train_ids = gsm8k_rows(args.gsm8k_train, args.seed, shipped)
    test, _ = gsm8k_rows(args.gsm8k_test, args.seed + 1, shipped | train_ids)
    write_rows(args.out_dir / "gsm8k_like_train.jsonl", train)
    write_rows(args.out_dir / "gsm8k_like_test.jsonl", test)
    for split in ("train", "test"):
        write_rows(args.out_dir / f"healthbench_like_{split}.jsonl", healthbench_rows(HERE / f"open_{split}.jsonl"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
