"""Writer of the shipped open-ended set (data/open_train.jsonl, data/open_test.jsonl) from its hand-written source.

The questions and their reference rubrics are written by hand in `data/open_ended_source.yaml` (everyday how-to,
explanations, and advice with safety limits; some as a conversation so far). This script checks every item — a
prompt or a conversation ending with the user's turn, 4 to 8 criteria, points nonzero integers in -10..10, at least
one negative (pitfall) criterion and one positive — and splits the items into train and test: within each domain,
a seeded shuffle puts round(`--test-fraction` × items) into test. Each file keeps the source's order.

Lines: `{"id", "prompt", "answer": null, "domain", "messages"?, "rubric": [{criterion, points, tags}]}`; family
"open_ended" follows from the rubric. A conversation's prompt is its rendering (`data.render_messages`). The same
source and seed write the same files byte for byte.

    python data/make_open.py --seed 0 --test-fraction 0.25 \
        --train-out data/open_train.jsonl --test-out data/open_test.jsonl
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ropd_kit.data import Task, TaskError, check_unique, task_from_record, write_tasks  # noqa: E402

SOURCE = Path(__file__).resolve().parent / "open_ended_source.yaml"
DOMAINS = ("how-to", "explanation", "advice")
MIN_CRITERIA, MAX_CRITERIA, MAX_POINTS = 4, 8, 10


def load_source(path: str | Path = SOURCE) -> list[Task]:
    """Every item of the hand-written source as a Task, checked; errors name file:line of the item."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    root = yaml.compose(text)
    items = yaml.safe_load(text)
    if not isinstance(items, list) or not items:
        raise TaskError(str(path), None, "expected a list of items", show_value=False)
    tasks: list[Task] = []
    locations: list[str] = []
    for node, item in zip(root.value, items):
        location = f"{path}:{node.start_mark.line + 1}"
        if not isinstance(item, dict):
            raise TaskError(location, None, "expected a mapping", item)
        unknown = sorted(set(item) - {"domain", "prompt", "messages", "rubric"})
        if unknown:
            raise TaskError(location, unknown[0], "not a field of this file (domain, prompt, messages, rubric)",
                            item[unknown[0]])
        if item.get("domain") not in DOMAINS:
            raise TaskError(location, "domain", f"expected one of {list(DOMAINS)}", item.get("domain"))
        if ("prompt" in item) == ("messages" in item):
            raise TaskError(location, None, "give exactly one of `prompt` and `messages`", show_value=False)
        rubric = item.get("rubric")
        if not isinstance(rubric, list) or not MIN_CRITERIA <= len(rubric) <= MAX_CRITERIA:
            raise TaskError(location, "rubric", f"expected {MIN_CRITERIA} to {MAX_CRITERIA} criteria",
                            len(rubric) if isinstance(rubric, list) else rubric)
        task = task_from_record({**item, "family": "open_ended"}, location)
        points = [c.points for c in task.rubric]
        if not any(p < 0 for p in points):
            raise TaskError(location, "rubric", "needs at least one negative (pitfall) criterion", points)
        if any(abs(p) > MAX_POINTS for p in points):
            raise TaskError(location, "rubric", f"points must lie in -{MAX_POINTS}..{MAX_POINTS}", points)
        tasks.append(task)
        locations.append(location)
    check_unique(tasks, locations)
    return tasks


def split(tasks: list[Task], *, test_fraction: float = 0.25, seed: int = 0) -> tuple[list[Task], list[Task]]:
    """Train and test lists, each in source order; per domain a seeded shuffle picks round(fraction × n) for test."""
    rng = random.Random(seed)
    test_ids: set[str] = set()
    for domain in DOMAINS:
        ids = [t.id for t in tasks if t.domain == domain]
        rng.shuffle(ids)
        test_ids.update(ids[: round(test_fraction * len(ids))])
    return [t for t in tasks if t.id not in test_ids], [t for t in tasks if t.id in test_ids]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=SOURCE)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-fraction", type=float, default=0.25)
    parser.add_argument("--train-out", type=Path, required=True)
    parser.add_argument("--test-out", type=Path, required=True)
    args = parser.parse_args(argv)

    train, test = split(load_source(args.source), test_fraction=args.test_fraction, seed=args.seed)
    write_tasks(args.train_out, train)
    write_tasks(args.test_out, test)
    print(f"wrote {len(train)} tasks to {args.train_out} and {len(test)} to {args.test_out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
