"""Generator of the shipped multiple-choice set (data/mc_train.jsonl, data/mc_test.jsonl): four options, one right.

Every question is computed by the generator, so the right option is certain and the three wrong ones are the
mistakes people make (a decimal point in the wrong place, a forgotten +32, an off-by-one weekday, a century year
taken for a leap year). Eleven kinds, drawn uniformly:

- unit_conversion (metres/centimetres, kilograms/grams, litres/millilitres, hours/minutes, days/hours, weeks/days);
- times_table; percentage; temperature (°C -> °F); speed (distance = speed × time); ohms_law (I = V / R);
- calendar (the weekday n days after a given one); leap_year; prime; largest_decimal; rectangle_area.

The options are ordered by `ropd_kit.sources.shuffle_choices` with the fixed seed `SHUFFLE_SEED` (not the
generator's seed), so a question is rendered the same way in every file and `--exclude` keeps train and test apart
by id. Lines: `{"id", "prompt" (question, blank line, "A. ..." to "D. ..."), "answer" (the letter), "domain",
"choices"}`; family "multiple_choice" follows from `choices`. In Python, `generate(...)` returns `McProblem`s that
keep the right option's text, for the tests. The same seed writes the same file byte for byte.

    python data/make_mc.py --n 200 --seed 0 --out data/mc_train.jsonl
    python data/make_mc.py --n 100 --seed 1 --exclude data/mc_train.jsonl --out data/mc_test.jsonl
"""

from __future__ import annotations

import argparse
import calendar
import json
import random
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ropd_kit.data import Task, load_tasks, write_tasks  # noqa: E402
from ropd_kit.sources import multiple_choice_task  # noqa: E402

SHUFFLE_SEED = 0
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
# (question unit, answer unit, factor, domain)
CONVERSIONS = (("metres", "centimetres", 100), ("kilometres", "metres", 1000), ("kilograms", "grams", 1000),
               ("litres", "millilitres", 1000), ("hours", "minutes", 60), ("minutes", "seconds", 60),
               ("days", "hours", 24), ("weeks", "days", 7))
AMOUNTS = tuple(Fraction(n, 4) for n in range(1, 61))  # 0.25 .. 15 in quarters


@dataclass(frozen=True)
class McProblem:
    """A generated question: its options with the right one first (before shuffling), its kind and domain."""

    question: str
    right: str
    wrong: tuple[str, str, str]
    kind: str
    domain: str

    def to_task(self) -> Task:
        return multiple_choice_task(self.question, (self.right, *self.wrong), 0, seed=SHUFFLE_SEED,
                                    domain=self.domain)


def number_text(value: Fraction | int | float) -> str:
    """3.50 -> "3.5", 350 -> "350", 1/4 -> "0.25" (values here always have a short decimal form)."""
    value = Fraction(value).limit_denominator(10**6)
    if value.denominator == 1:
        return str(value.numerator)
    text = f"{float(value):.6f}".rstrip("0")
    return text


def _shown(values, unit: str = "", *, positive: bool = True) -> list[str]:
    """Option texts of the values that read well: at most 3 decimals (no 2.666667), positive unless told."""
    texts = []
    for v in values:
        v = Fraction(v)
        if (positive and v <= 0) or (v * 1000).denominator != 1:
            continue
        texts.append(f"{number_text(v)} {unit}".strip())
    return texts


def _distinct(right: str, candidates: list[str], rng: random.Random) -> tuple[str, str, str] | None:
    """Three wrong options from `candidates` (in a seeded order), none equal to the right one or to each other."""
    pool = []
    for c in candidates:
        if c != right and c not in pool:
            pool.append(c)
    if len(pool) < 3:
        return None
    return tuple(rng.sample(pool, 3))


def unit_conversion(rng: random.Random) -> McProblem | None:
    big, small, factor = rng.choice(CONVERSIONS)
    q = rng.choice(AMOUNTS)
    right = q * factor
    if right.denominator != 1:
        return None
    slips = [right / 10, right * 10, q * 100 if factor != 100 else q * 1000, right / 100, q * (factor // 2 or 1),
             right + factor]
    wrong = _distinct(number_text(right), _shown(slips), rng)
    if wrong is None:
        return None
    question = rng.choice((f"How many {small} are in {number_text(q)} {big}?",
                           f"Convert {number_text(q)} {big} to {small}."))
    return McProblem(question, number_text(right), wrong, "unit_conversion", "units")


def times_table(rng: random.Random) -> McProblem | None:
    a, b = rng.randint(3, 12), rng.randint(3, 12)
    right = a * b
    slips = [a * (b + 1), a * (b - 1), (a + 1) * b, (a - 1) * b, a + b, right + 10, right - 10]
    wrong = _distinct(str(right), _shown(slips), rng)
    if wrong is None:
        return None
    return McProblem(f"What is {a} × {b}?", str(right), wrong, "times_table", "arithmetic")


def percentage(rng: random.Random) -> McProblem | None:
    p = rng.choice((5, 10, 15, 20, 25, 30, 40, 50, 60, 75))
    base = rng.choice(range(20, 401, 20))
    right = Fraction(p * base, 100)
    slips = [Fraction(p * base, 10), base - right, right + p, Fraction(base, p), right * 2]
    wrong = _distinct(number_text(right), _shown(slips), rng)
    if wrong is None:
        return None
    return McProblem(f"What is {p}% of {base}?", number_text(right), wrong, "percentage", "arithmetic")


def temperature(rng: random.Random) -> McProblem | None:
    c = rng.choice(range(-20, 101, 5))
    right = Fraction(c * 9, 5) + 32
    slips = [Fraction(c * 9, 5), c + 32, 2 * c + 32, Fraction((c - 32) * 5, 9), right + 10]
    wrong = _distinct(f"{number_text(right)} °F", _shown(slips, "°F", positive=False), rng)
    if wrong is None:
        return None
    question = f"Water is at {c} °C. What is that temperature in degrees Fahrenheit?"
    return McProblem(question, f"{number_text(right)} °F", wrong, "temperature", "science")


def speed(rng: random.Random) -> McProblem | None:
    v = rng.choice((4, 5, 6, 12, 15, 18, 20, 24, 30, 45, 60, 80, 90))
    t = rng.choice((Fraction(1, 2), Fraction(3, 2), 2, Fraction(5, 2), 3, 4))
    right = v * Fraction(t)
    slips = [v + Fraction(t), Fraction(v) / Fraction(t), right * 2, v * (Fraction(t) + 1), right + v]
    unit = "km"
    wrong = _distinct(f"{number_text(right)} {unit}", _shown(slips, unit), rng)
    if wrong is None:
        return None
    mover = rng.choice(("A cyclist rides", "A train travels", "A hiker walks", "A car drives", "A boat sails"))
    question = f"{mover} at a steady {v} km/h for {number_text(t)} hours. How far does it go?"
    return McProblem(question, f"{number_text(right)} {unit}", wrong, "speed", "science")


def ohms_law(rng: random.Random) -> McProblem | None:
    r = rng.choice((2, 3, 4, 5, 6, 8, 10, 12, 20))
    i = rng.choice((Fraction(1, 2), 1, Fraction(3, 2), 2, 3, 4, 5))
    v = r * Fraction(i)
    if v.denominator != 1:
        return None
    right = Fraction(i)
    slips = [v * r, v + r, Fraction(r) / v, right * 2, right + 1]
    wrong = _distinct(f"{number_text(right)} A", _shown(slips, "A"), rng)
    if wrong is None:
        return None
    question = (f"A {number_text(v)} V source is connected across a {r} Ω resistor. By Ohm's law, what current "
                "flows through the resistor?")
    return McProblem(question, f"{number_text(right)} A", wrong, "ohms_law", "science")


def weekday(rng: random.Random) -> McProblem | None:
    start = rng.randrange(7)
    n = rng.randint(2, 40)
    right = WEEKDAYS[(start + n) % 7]
    slips = [WEEKDAYS[(start + n + 1) % 7], WEEKDAYS[(start + n - 1) % 7], WEEKDAYS[(start + n + 2) % 7],
             WEEKDAYS[start]]
    wrong = _distinct(right, slips, rng)
    if wrong is None:
        return None
    return McProblem(f"Today is {WEEKDAYS[start]}. What day of the week will it be in {n} days?", right, wrong,
                     "calendar", "calendar")


def leap_year(rng: random.Random) -> McProblem | None:
    years = range(1800, 2101)
    leap = [y for y in years if calendar.isleap(y)]
    common = [y for y in years if not calendar.isleap(y)]
    right = rng.choice(leap)
    century = [y for y in common if y % 100 == 0]
    wrong = [rng.choice(century)] + rng.sample([y for y in common if y % 100 and abs(y - right) < 12], 2)
    question = "Which of these years is a leap year in the Gregorian calendar?"
    return McProblem(question, str(right), tuple(str(y) for y in wrong), "leap_year", "calendar")


def _is_prime(n: int) -> bool:
    return n > 1 and all(n % d for d in range(2, int(n**0.5) + 1))


def prime(rng: random.Random) -> McProblem | None:
    right = rng.choice([n for n in range(11, 100) if _is_prime(n)])
    odd_composites = [n for n in range(15, 100, 2) if not _is_prime(n) and n % 5]  # 21, 27, 33, 39, 49, 51, 57, ...
    wrong = rng.sample(odd_composites, 3)
    return McProblem("Which of these numbers is prime?", str(right), tuple(str(n) for n in wrong), "prime",
                     "numbers")


def largest_decimal(rng: random.Random) -> McProblem | None:
    digits = rng.sample(range(1, 10), 2)
    a, b = digits
    # The classic trap: more digits is not bigger (0.45 < 0.5; 0.405 < 0.45).
    values = {Fraction(a, 10), Fraction(10 * b + a, 100), Fraction(100 * b + a, 1000), Fraction(10 * a + b, 100)}
    if len(values) < 4:
        return None
    ordered = sorted(values)
    right = number_text(ordered[-1])
    wrong = tuple(number_text(v) for v in ordered[:-1])
    return McProblem("Which of these numbers is the largest?", right, wrong, "largest_decimal", "numbers")


def rectangle_area(rng: random.Random) -> McProblem | None:
    length, width = rng.randint(3, 20), rng.randint(2, 15)
    if length == width:
        return None
    right = length * width
    slips = [2 * (length + width), length + width, right * 2, (length + 1) * width]
    unit = "square metres"
    wrong = _distinct(f"{right} {unit}", _shown(slips, unit), rng)
    if wrong is None:
        return None
    question = f"A rectangular room is {length} m long and {width} m wide. What is its floor area?"
    return McProblem(question, f"{right} {unit}", wrong, "rectangle_area", "geometry")


MAKERS = (unit_conversion, times_table, percentage, temperature, speed, ohms_law, weekday, leap_year, prime,
          largest_decimal, rectangle_area)


def make_problem(rng: random.Random) -> McProblem:
    """One question of a uniformly drawn kind (redrawn until its four options are distinct)."""
    maker = rng.choice(MAKERS)
    while True:
        problem = maker(rng)
        if problem is not None and len({problem.right, *problem.wrong}) == 4:
            return problem


def generate(n: int, *, seed: int = 0, exclude: set[str] = frozenset()) -> list[McProblem]:
    """`n` questions with distinct task ids, none in `exclude`; deterministic in `seed`."""
    rng = random.Random(seed)
    seen = set(exclude)
    problems: list[McProblem] = []
    attempts = 0
    while len(problems) < n:
        attempts += 1
        if attempts > 100 * n + 1000:
            raise RuntimeError(f"could not find {n} distinct questions")
        problem = make_problem(rng)
        task_id = problem.to_task().id
        if task_id not in seen:
            seen.add(task_id)
            problems.append(problem)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="number of questions")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--exclude", type=Path, action="append", default=[], help="task file whose ids to avoid")
    parser.add_argument("--out", type=Path, help="output JSONL (default: stdout)")
    args = parser.parse_args(argv)

    exclude = {t.id for path in args.exclude for t in load_tasks(path)}
    tasks = [p.to_task() for p in generate(args.n, seed=args.seed, exclude=exclude)]
    if args.out:
        write_tasks(args.out, tasks)
        print(f"wrote {len(tasks)} questions to {args.out}", file=sys.stderr)
    else:
        for task in tasks:
            print(json.dumps(task.to_record(), ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
