"""Generator of the shipped arithmetic word problems (data/arith_train.jsonl, data/arith_test.jsonl).

Each problem follows one quantity through a chain of `steps` operations among + - × ÷ (division always exact,
every intermediate value a positive integer), told as an everyday story: shopping, baking, travel, savings,
sharing, a library, a garden, a school trip. Difficulty knobs: `--steps` (chain length) and `--max-number` (the
largest starting value and added/subtracted amount; multipliers and divisors stay in 2..12 and the running value
stays at or below 10 × max-number). The same seed always writes the same file.

Output lines carry exactly the task contract fields: id (content fingerprint of the prompt), prompt, answer (the
integer as a string), domain ("arith"). In Python, `generate(...)` returns `ArithProblem`s that also expose the
start value, the operations and an expression string, so tests can recompute every answer.

    python data/make_arith.py --n 300 --steps 2 --max-number 99 --seed 0 --out data/arith_train.jsonl
    python data/make_arith.py --n 150 --steps 2 --max-number 99 --seed 1 --exclude data/arith_train.jsonl \
        --out data/arith_test.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ropd_kit.data import Task, load_tasks, task_fingerprint, write_tasks  # noqa: E402

OPS = ("+", "-", "*", "/")
SMALL_FACTORS = range(2, 13)

# name, subject pronoun, possessive pronoun
PEOPLE = [
    ("Maya", "she", "her"), ("Liam", "he", "his"), ("Aisha", "she", "her"), ("Tomás", "he", "his"),
    ("Priya", "she", "her"), ("Kenji", "he", "his"), ("Sofia", "she", "her"), ("Omar", "he", "his"),
    ("Grace", "she", "her"), ("Noah", "he", "his"), ("Elena", "she", "her"), ("Yusuf", "he", "his"),
    ("Hannah", "she", "her"), ("Mateo", "he", "his"), ("Zara", "she", "her"), ("Felix", "he", "his"),
]


@dataclass(frozen=True)
class Scenario:
    """A story about one quantity: an opening, phrasings per operation ({n} the operand), and the question."""

    name: str
    opening: tuple[str, ...]
    phrasings: dict[str, tuple[str, ...]]
    question: tuple[str, ...]


# Placeholders: {name} {he} {his} {He} {His} {x} (start value) {n} (operand).
SCENARIOS = (
    Scenario(
        "baking",
        ("{name} bakes {x} cookies for a school fair.", "A baker named {name} starts the morning with {x} muffins."),
        {
            "+": ("{He} bakes another {n}.", "A neighbour drops off {n} more."),
            "-": ("{He} eats {n} of them while they cool.", "{n} of them get burnt and go in the bin."),
            "*": (
                "Demand is high, so {he} bakes until {he} has {n} times as many as {he} had.",
                "{He} keeps baking until {he} has {n} times as many as before.",
            ),
            "/": (
                "{He} packs them equally into {n} boxes, keeps one box and gives the other boxes away.",
                "{He} splits them equally onto {n} trays, keeps one tray and sells all the other trays.",
            ),
        },
        ("How many does {name} have now?", "How many does {name} have at the end?"),
    ),
    Scenario(
        "shopping",
        ("{name} has ${x} to spend at the market.", "{name} goes shopping with ${x} in {his} wallet."),
        {
            "+": ("{His} aunt gives {him} ${n} more.", "{He} returns a jacket and gets ${n} back."),
            "-": ("{He} spends ${n} on vegetables.", "{He} buys a book for ${n}."),
            "*": (
                "{He} wins a raffle that multiplies {his} money by {n}.",
                "A lucky bet leaves {him} with {n} times as much money as before.",
            ),
            "/": (
                "{He} shares {his} money equally among {n} people, {him}self included, and keeps only {his} own share.",
            ),
        },
        ("How many dollars does {name} have now?", "How much money, in dollars, does {name} have at the end?"),
    ),
    Scenario(
        "travel",
        ("A bus leaves the depot with {x} passengers.", "A tour boat sets off with {x} people on board."),
        {
            "+": ("At the next stop, {n} people get on.", "{n} more travellers join."),
            "-": ("At one stop, {n} people get off.", "{n} passengers leave at the market square."),
            "*": (
                "At the festival stop, so many people get on that there are {n} times as many people on board "
                "as before.",
                "At the stadium, fans get on until there are {n} times as many people on board as before.",
            ),
            "/": ("The passengers form {n} equal groups; one group stays on board and all the other groups get off.",),
        },
        ("How many people are on board now?", "How many passengers are there at the end of the trip?"),
    ),
    Scenario(
        "savings",
        ("{name} has saved ${x} in a piggy bank.", "{name} opens a savings jar with ${x} in it."),
        {
            "+": ("{He} adds ${n} from {his} allowance.", "{He} earns ${n} walking dogs and saves all of it."),
            "-": ("{He} takes out ${n} for a birthday gift.", "{He} spends ${n} on a video game."),
            "*": (
                "A matching programme makes {his} savings {n} times as large.",
                "After a year of interest and gifts, {his} savings are {n} times what they were.",
            ),
            "/": ("{He} divides the savings equally into {n} jars and gives away every jar except one.",),
        },
        ("How many dollars does {name} have saved now?", "How much is in the savings, in dollars, at the end?"),
    ),
    Scenario(
        "sharing",
        ("{name} has a bag of {x} marbles.", "{name} collects {x} stickers."),
        {
            "+": ("{He} trades for {n} more.", "A friend gives {him} {n} more."),
            "-": ("{He} gives away {n}.", "{He} loses {n} on the way home."),
            "*": (
                "{He} ends up with {n} times as many after a big swap.",
                "A collector trades with {him}, leaving {him} with {n} times as many.",
            ),
            "/": ("{He} shares them equally among {n} friends, {him}self included, and keeps only {his} own share.",),
        },
        ("How many does {name} have now?", "How many does {name} end up with?"),
    ),
    Scenario(
        "library",
        ("A school library has {x} books on its new shelf.", "A small library puts {x} new books on a shelf."),
        {
            "+": ("A donation brings {n} more books.", "The librarian orders {n} more."),
            "-": ("Students borrow {n} of them.", "{n} books are sent away for repair."),
            "*": (
                "After a book drive, the shelf holds {n} times as many books as before.",
                "A grant pays for more books, so the shelf now holds {n} times as many books as before.",
            ),
            "/": (
                "The librarian splits the books into {n} equal piles, keeps one pile on the shelf and sends the "
                "other piles to classrooms.",
            ),
        },
        ("How many books are on the shelf now?", "How many books are on the shelf at the end?"),
    ),
    Scenario(
        "garden",
        ("{name} plants {x} tulip bulbs.", "{name}'s garden has {x} tomato plants."),
        {
            "+": ("{He} plants {n} more.", "{His} neighbour gives {him} {n} more to plant."),
            "-": ("Rabbits eat {n} of them.", "{n} of them do not survive the frost."),
            "*": (
                "By summer, {he} has {n} times as many as before.",
                "{He} takes cuttings until {he} has {n} times as many.",
            ),
            "/": ("{He} divides them equally into {n} beds and gives away every bed except one.",),
        },
        ("How many does {name} have now?", "How many are in {name}'s garden at the end?"),
    ),
    Scenario(
        "school trip",
        ("{x} students sign up for a school trip.", "A class trip starts with {x} students on the list."),
        {
            "+": ("{n} more students sign up.", "Another class adds {n} students."),
            "-": ("{n} students cancel.", "{n} students are sick on the day."),
            "*": (
                "The trip becomes so popular that the number of students becomes {n} times as large.",
                "The whole year group is invited, making the count {n} times as large.",
            ),
            "/": (
                "The students are divided equally into {n} buses; only one bus goes on the trip and the others "
                "stay behind.",
            ),
        },
        ("How many students are on the trip now?", "How many students are on the trip in the end?"),
    ),
)


@dataclass(frozen=True)
class ArithProblem:
    """A generated problem with its structure kept, so the answer can be recomputed."""

    prompt: str
    answer: int
    start: int
    ops: tuple[tuple[str, int], ...]
    scenario: str
    expression: str = field(default="")

    @property
    def id(self) -> str:
        return task_fingerprint(self.prompt)

    def to_task(self) -> Task:
        return Task(id=self.id, prompt=self.prompt, answer=str(self.answer), domain="arith")


def apply_op(value: int, op: str, n: int) -> int:
    """One step of the chain; division must be exact."""
    if op == "+":
        return value + n
    if op == "-":
        return value - n
    if op == "*":
        return value * n
    if op == "/":
        if value % n:
            raise ValueError(f"{value} is not divisible by {n}")
        return value // n
    raise ValueError(f"unknown operation {op!r}")


def expression_of(start: int, ops: tuple[tuple[str, int], ...]) -> str:
    """Python expression of the chain ('//' for the exact divisions), fully parenthesised."""
    expr = str(start)
    for op, n in ops:
        expr = f"({expr} {'//' if op == '/' else op} {n})"
    return expr


def _choose_op(rng: random.Random, value: int, max_number: int, previous: tuple[str, int] | None) -> tuple[str, int]:
    """A random operation that keeps the running value a positive integer at most 10 x max_number."""
    cap = 10 * max_number
    options: list[tuple[str, int]] = []
    if value + 2 <= cap:
        options.append(("+", rng.randint(2, min(max_number, cap - value))))
    if value >= 2:
        options.append(("-", rng.randint(1, min(max_number, value - 1))))
    factors = [k for k in SMALL_FACTORS if value * k <= cap]
    if factors:
        options.append(("*", rng.choice(factors)))
    divisors = [k for k in SMALL_FACTORS if value % k == 0 and value // k >= 2]
    if previous is not None and previous[0] == "*":
        # Undoing the previous multiplication would make a step vanish.
        divisors = [k for k in divisors if k != previous[1]]
    if divisors:
        options.append(("/", rng.choice(divisors)))
    return rng.choice(options)


def make_problem(rng: random.Random, steps: int, max_number: int) -> ArithProblem:
    """One problem: a start value and `steps` operations, told through a randomly chosen scenario."""
    if steps < 1 or max_number < 4:
        raise ValueError("need steps >= 1 and max_number >= 4")
    scenario = rng.choice(SCENARIOS)
    name, he, his = rng.choice(PEOPLE)
    him = {"she": "her", "he": "him"}[he]
    # Starting values with small divisors keep division in play; the rng decides.
    value = start = rng.randint(4, max_number)
    ops: list[tuple[str, int]] = []
    for _ in range(steps):
        op, n = _choose_op(rng, value, max_number, ops[-1] if ops else None)
        value = apply_op(value, op, n)
        ops.append((op, n))

    fill = dict(name=name, he=he, his=his, him=him, He=he.capitalize(), His=his.capitalize(), x=start)
    sentences = [rng.choice(scenario.opening).format(**fill)]
    used: set[str] = set()
    for i, (op, n) in enumerate(ops):
        # Prefer a phrasing not yet used in this problem, so a story does not repeat itself word for word.
        fresh = [t for t in scenario.phrasings[op] if t not in used] or list(scenario.phrasings[op])
        template = rng.choice(fresh)
        used.add(template)
        sentence = template.format(n=n, **fill)
        if i and rng.random() < 0.5:
            head = sentence if sentence.startswith(name) else sentence[0].lower() + sentence[1:]
            sentence = rng.choice(("Then ", "After that, ", "Next, ", "Later, ")) + head
        sentences.append(sentence)
    sentences.append(rng.choice(scenario.question).format(**fill))
    prompt = " ".join(sentences)
    return ArithProblem(
        prompt=prompt, answer=value, start=start, ops=tuple(ops), scenario=scenario.name,
        expression=expression_of(start, tuple(ops)),
    )


def generate(
    n: int, *, steps: int = 2, max_number: int = 99, seed: int = 0, exclude: set[str] = frozenset()
) -> list[ArithProblem]:
    """`n` distinct problems (by prompt fingerprint), none of whose ids is in `exclude`; deterministic in `seed`."""
    rng = random.Random(seed)
    seen = set(exclude)
    problems: list[ArithProblem] = []
    attempts = 0
    while len(problems) < n:
        attempts += 1
        if attempts > 100 * n + 1000:
            raise RuntimeError(f"could not find {n} distinct problems; raise --max-number or --steps")
        problem = make_problem(rng, steps, max_number)
        if problem.id not in seen:
            seen.add(problem.id)
            problems.append(problem)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=300, help="number of problems")
    parser.add_argument("--steps", type=int, default=2, help="operations per problem")
    parser.add_argument("--max-number", type=int, default=99, help="largest start value / added amount")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--exclude", type=Path, action="append", default=[], help="task file whose ids to avoid")
    parser.add_argument("--out", type=Path, help="output JSONL (default: stdout)")
    args = parser.parse_args(argv)

    exclude = {t.id for path in args.exclude for t in load_tasks(path)}
    problems = generate(args.n, steps=args.steps, max_number=args.max_number, seed=args.seed, exclude=exclude)
    tasks = [p.to_task() for p in problems]
    if args.out:
        write_tasks(args.out, tasks)
        print(f"wrote {len(tasks)} problems to {args.out}", file=sys.stderr)
    else:
        for task in tasks:
            print(json.dumps(task.model_dump(), ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
