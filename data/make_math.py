"""Generator of the shipped math set (data/math_train.jsonl, data/math_test.jsonl): answers that are not integers.

Every answer is a non-integer rational number, written the way a grader meets it in the wild: a LaTeX fraction
("\\frac{7}{4}", "-\\frac{5}{6}") for exact work, a decimal ("6.3", "1.875") for measured quantities. A student who
writes 7/4, 1.75 or \\boxed{\\dfrac{7}{4}} is right, so the check must be math-verify equivalence, not string
equality. Eight kinds, drawn uniformly:

- fraction_arithmetic: a/b op c/d with op among + - × ÷ (LaTeX or plain text), answer a fraction;
- expression: three fractions and two operations, evaluated left to right with × and ÷ first, answer a fraction;
- linear_equation: a·x + b = c, answer a fraction;
- two_sided_equation: a·x + b = c·x + d, answer a fraction;
- cut_length: a length with one decimal cut into n equal pieces, answer a decimal (metres);
- percentage: p% of N, answer a decimal;
- mean: the mean of 3-5 whole numbers, a decimal when it terminates, else a fraction;
- unit_price: n items cost $T, what do k cost, answer a decimal (dollars).

Lines: `{"id", "prompt", "answer", "domain": "math"}` (family "math" is the default for answered tasks). The same seed
writes the same file byte for byte. In Python, `generate(...)` returns `MathProblem`s whose `expression` (Python over
`Fraction`, named `F`) recomputes the value independently of the answer string, for the tests.

    python data/make_math.py --n 200 --seed 0 --out data/math_train.jsonl
    python data/make_math.py --n 100 --seed 1 --exclude data/math_train.jsonl --out data/math_test.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ropd_kit.data import Task, load_tasks, task_fingerprint, write_tasks  # noqa: E402

KINDS = ("fraction_arithmetic", "expression", "linear_equation", "two_sided_equation", "cut_length", "percentage",
         "mean", "unit_price")
VARIABLES = ("x", "y", "n", "t", "k")
ITEMS = ("notebooks", "pens", "apples", "tickets", "bus passes", "bags of rice", "candles", "mugs")
LENGTHS = (("ribbon", "A ribbon"), ("rope", "A rope"), ("plank", "A wooden plank"), ("pipe", "A copper pipe"),
           ("cable", "A cable"), ("fabric", "A strip of fabric"))
NAMES = ("Maya", "Liam", "Aisha", "Tomás", "Priya", "Kenji", "Sofia", "Omar", "Grace", "Noah", "Elena", "Yusuf")


@dataclass(frozen=True)
class MathProblem:
    """A generated problem: its prompt, exact value, the answer as written in the file, and a check expression."""

    prompt: str
    value: Fraction
    answer: str
    kind: str
    expression: str

    @property
    def id(self) -> str:
        return task_fingerprint(self.prompt)

    def to_task(self) -> Task:
        return Task(id=self.id, prompt=self.prompt, answer=self.answer, domain="math")


def latex_fraction(value: Fraction) -> str:
    """-7/4 -> "-\\frac{7}{4}"."""
    sign = "-" if value < 0 else ""
    return f"{sign}\\frac{{{abs(value.numerator)}}}{{{value.denominator}}}"


def terminates(value: Fraction) -> bool:
    """Whether the value has a finite decimal expansion (its denominator has no prime factor but 2 and 5)."""
    q = value.denominator
    for p in (2, 5):
        while q % p == 0:
            q //= p
    return q == 1


def decimal_text(value: Fraction) -> str:
    """Exact decimal text of a terminating value: 63/10 -> "6.3", -15/8 -> "-1.875"."""
    if not terminates(value):
        raise ValueError(f"{value} has no finite decimal expansion")
    places = 0
    while (value * 10**places).denominator != 1:
        places += 1
    scaled = abs(value.numerator * 10**places // value.denominator)
    digits = str(scaled).rjust(places + 1, "0")
    text = digits if not places else f"{digits[:-places]}.{digits[-places:]}"
    return ("-" if value < 0 else "") + text


def _frac_text(value: Fraction, latex: bool) -> str:
    return latex_fraction(value) if latex else f"{value.numerator}/{value.denominator}"


def _f(value: Fraction) -> str:
    return f"F({value.numerator}, {value.denominator})"


def _fraction(rng: random.Random) -> Fraction:
    """A positive non-integer fraction below 2 with denominator 2..12."""
    den = rng.randint(2, 12)
    num = rng.randint(1, 2 * den - 1)
    if num % den == 0:
        num += 1
    return Fraction(num, den)


def _signed(n: int) -> str:
    return f"+ {n}" if n >= 0 else f"- {-n}"


_OPS = {"+": ("+", "+", lambda a, b: a + b), "-": ("-", "-", lambda a, b: a - b),
        "*": ("\\times", "×", lambda a, b: a * b), "/": ("\\div", "÷", lambda a, b: a / b)}


def fraction_arithmetic(rng: random.Random) -> MathProblem | None:
    a, b, op = _fraction(rng), _fraction(rng), rng.choice("+-*/")
    latex = rng.random() < 0.5
    value = _OPS[op][2](a, b)
    symbol = _OPS[op][0 if latex else 1]
    if latex:
        prompt = rng.choice(("Compute ${a} {s} {b}$.", "What is ${a} {s} {b}$? Simplify your answer."))
    else:
        prompt = rng.choice(("What is {a} {s} {b}? Give the answer as a fraction in lowest terms.",
                             "Work out {a} {s} {b}."))
    prompt = prompt.format(a=_frac_text(a, latex), s=symbol, b=_frac_text(b, latex))
    py = {"+": "+", "-": "-", "*": "*", "/": "/"}[op]
    return MathProblem(prompt, value, latex_fraction(value), "fraction_arithmetic", f"{_f(a)} {py} {_f(b)}")


def expression(rng: random.Random) -> MathProblem | None:
    a, b, c = _fraction(rng), _fraction(rng), _fraction(rng)
    first, second = rng.choice("*/"), rng.choice("+-")
    value = _OPS[second][2](_OPS[first][2](a, b), c)
    text = f"{latex_fraction(a)} {_OPS[first][0]} {latex_fraction(b)} {_OPS[second][0]} {latex_fraction(c)}"
    prompt = rng.choice(("Evaluate ${e}$.", "Simplify ${e}$ to a single fraction.")).format(e=text)
    return MathProblem(prompt, value, latex_fraction(value), "expression",
                       f"({_f(a)} {first} {_f(b)}) {second} {_f(c)}")


def linear_equation(rng: random.Random) -> MathProblem | None:
    a = rng.randint(2, 12)
    p = rng.randint(-60, 60)
    if p % a == 0:
        return None
    b = rng.choice([n for n in range(-30, 31) if n])
    c = p + b  # so that x = p / a
    v = rng.choice(VARIABLES)
    prompt = f"Solve for {v}: {a}{v} {_signed(b)} = {c}."
    if rng.random() < 0.5:
        prompt += f" Give {v} as an exact value."
    value = Fraction(p, a)
    return MathProblem(prompt, value, latex_fraction(value), "linear_equation", f"(F({c}) - F({b})) / F({a})")


def two_sided_equation(rng: random.Random) -> MathProblem | None:
    a, c = rng.sample(range(1, 13), 2)
    b, d = rng.randint(-25, 25), rng.randint(-25, 25)
    value = Fraction(d - b, a - c)
    if value.denominator == 1:
        return None
    v = rng.choice(VARIABLES)
    left = f"{a if a > 1 else ''}{v} {_signed(b)}" if b else f"{a if a > 1 else ''}{v}"
    right = f"{c if c > 1 else ''}{v} {_signed(d)}" if d else f"{c if c > 1 else ''}{v}"
    prompt = f"Find {v} if {left} = {right}."
    return MathProblem(prompt, value, latex_fraction(value), "two_sided_equation",
                       f"(F({d}) - F({b})) / (F({a}) - F({c}))")


def cut_length(rng: random.Random) -> MathProblem | None:
    tenths = rng.randint(15, 200)
    n = rng.choice((2, 4, 5, 8))
    total = Fraction(tenths, 10)
    value = total / n
    if value.denominator == 1 or total.denominator == 1:
        return None
    _, opening = rng.choice(LENGTHS)
    prompt = (f"{opening} {decimal_text(total)} metres long is cut into {n} pieces of equal length. "
              "How long is each piece, in metres?")
    return MathProblem(prompt, value, decimal_text(value), "cut_length", f"F({tenths}, 10) / {n}")


def percentage(rng: random.Random) -> MathProblem | None:
    p = rng.choice((5, 12, 15, 35, 45, 65, 12.5, 2.5, 7.5, 17.5))
    base = rng.randint(11, 480)
    pct = Fraction(str(p))
    value = pct * base / 100
    if value.denominator == 1:
        return None
    shown = decimal_text(pct)
    prompt = rng.choice((f"What is {shown}% of {base}?",
                         f"A shop takes {shown}% off a price of ${base}. How many dollars is the discount?"))
    return MathProblem(prompt, value, decimal_text(value), "percentage", f"F('{shown}') * {base} / 100")


def mean(rng: random.Random) -> MathProblem | None:
    numbers = [rng.randint(1, 40) for _ in range(rng.randint(3, 5))]
    value = Fraction(sum(numbers), len(numbers))
    if value.denominator == 1:
        return None
    listed = ", ".join(map(str, numbers[:-1])) + f" and {numbers[-1]}"
    prompt = rng.choice((f"What is the mean of {listed}?", f"Find the average of the numbers {listed}."))
    answer = decimal_text(value) if terminates(value) else latex_fraction(value)
    return MathProblem(prompt, value, answer, "mean", f"F({' + '.join(map(str, numbers))}, {len(numbers)})")


def unit_price(rng: random.Random) -> MathProblem | None:
    n = rng.choice((2, 4, 5, 8, 10, 20))
    total = rng.randint(3, 60)
    k = rng.randint(2, 15)
    if k == n:
        return None
    value = Fraction(total * k, n)
    if value.denominator == 1 or not terminates(value):
        return None
    plural = rng.choice(ITEMS)
    name = rng.choice(NAMES)
    prompt = (f"{name} pays ${total} for {n} {plural}. At the same price per item, how many dollars do {k} "
              f"{plural} cost?")
    return MathProblem(prompt, value, decimal_text(value), "unit_price", f"F({total}, {n}) * {k}")


MAKERS = {"fraction_arithmetic": fraction_arithmetic, "expression": expression, "linear_equation": linear_equation,
          "two_sided_equation": two_sided_equation, "cut_length": cut_length, "percentage": percentage, "mean": mean,
          "unit_price": unit_price}


def make_problem(rng: random.Random) -> MathProblem:
    """One problem of a uniformly drawn kind whose value is not an integer (redrawn until it is not)."""
    kind = rng.choice(KINDS)
    while True:
        problem = MAKERS[kind](rng)
        if problem is not None and problem.value.denominator != 1:
            return problem


def generate(n: int, *, seed: int = 0, exclude: set[str] = frozenset()) -> list[MathProblem]:
    """`n` distinct problems (by prompt fingerprint), none of whose ids is in `exclude`; deterministic in `seed`."""
    rng = random.Random(seed)
    seen = set(exclude)
    problems: list[MathProblem] = []
    attempts = 0
    while len(problems) < n:
        attempts += 1
        if attempts > 100 * n + 1000:
            raise RuntimeError(f"could not find {n} distinct problems")
        problem = make_problem(rng)
        if problem.id not in seen:
            seen.add(problem.id)
            problems.append(problem)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="number of problems")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--exclude", type=Path, action="append", default=[], help="task file whose ids to avoid")
    parser.add_argument("--out", type=Path, help="output JSONL (default: stdout)")
    args = parser.parse_args(argv)

    exclude = {t.id for path in args.exclude for t in load_tasks(path)}
    tasks = [p.to_task() for p in generate(args.n, seed=args.seed, exclude=exclude)]
    if args.out:
        write_tasks(args.out, tasks)
        print(f"wrote {len(tasks)} problems to {args.out}", file=sys.stderr)
    else:
        for task in tasks:
            print(json.dumps(task.to_record(), ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
