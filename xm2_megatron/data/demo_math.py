"""Worked arithmetic word problems for the demo SFT data, generated from templates.

Ten kinds (``KINDS``), each drawing its numbers from ``random.Random(seed)``, so a seed gives
the same problems every time. A solution is a few steps, each ``expression = value`` worked
out exactly here, and a last line ``#### N`` (GSM8K's answer convention). The generator checks
every step gives a whole number and the last step equals the answer computed by a separate
closed formula. The problems are synthetic: no benchmark item is copied.
"""

from __future__ import annotations

import ast
import math
import operator
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction

SOURCE = "generated"
MATH_RECORDS = 2_000
MATH_SEED = 0
MAX_TRIES = 1_000  # draws per record before a kind is taken as exhausted

NAMES = ("Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Gus", "Hana", "Ivan", "Jia", "Kofi",
         "Lena", "Mateo", "Nora", "Omar", "Priya", "Quinn", "Rosa", "Sami", "Tara")
ITEMS = (("notebook", "notebooks"), ("pen", "pens"), ("apple", "apples"), ("ticket", "tickets"),
         ("candle", "candles"), ("mug", "mugs"), ("plant", "plants"), ("towel", "towels"),
         ("puzzle", "puzzles"), ("scarf", "scarves"), ("battery", "batteries"))
RELATIVES = ("aunt", "uncle", "mother", "father", "cousin", "neighbour")
VEHICLES = ("train", "bus", "car", "truck", "ferry")
GOODS = ("nuts", "rice", "coffee beans", "tea", "flour", "raisins")
GROUPS = (("a class", "boys", "girls"), ("a theatre", "adults", "children"),
          ("a shelter", "cats", "dogs"), ("a jar", "red beads", "blue beads"))
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
        ast.Div: operator.truediv}


def evaluate(expression: str) -> Fraction:
    """The exact value of whole numbers with ``+ - * /`` and parentheses."""
    def value(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return Fraction(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](value(node.left), value(node.right))
        raise ValueError(f"not plain arithmetic: {expression!r}")
    return value(ast.parse(expression, mode="eval").body)


class Work:
    """The steps of a worked solution; ``calc`` puts ``expression = value`` in a sentence."""

    def __init__(self) -> None:
        self.steps: list[str] = []
        self.last: int | None = None

    def calc(self, sentence: str, expression: str) -> int:
        value = evaluate(expression)
        if value.denominator != 1 or value < 0:
            raise ArithmeticError(f"step {expression!r} gives {value}, not a whole number")
        self.last = int(value)
        self.steps.append(sentence.format(f"{expression} = {self.last}"))
        return self.last


@dataclass(frozen=True)
class Problem:
    kind: str
    question: str
    steps: tuple[str, ...]
    answer: int

    @property
    def solution(self) -> str:
        return "\n".join(self.steps) + f"\n#### {self.answer}"


Drawn = tuple[str, Work, int]  # the question, its worked steps, the closed-formula answer


def _coprime(r: random.Random, tops: Iterable[int], bottoms: list[int]) -> tuple[int, int]:
    """A pair with no common factor (a fraction or ratio in lowest terms)."""
    pairs = [(a, b) for a in tops for b in bottoms if math.gcd(a, b) == 1]
    return r.choice(pairs)


def unit_price(r: random.Random) -> Drawn:
    name, (one, many) = r.choice(NAMES), r.choice(ITEMS)
    price, n, m = r.randint(2, 15), r.randint(2, 9), r.randint(2, 20)
    q = (f"{name} buys {n} {many} for {n * price} dollars. At the same price, how many "
         f"dollars do {m} {many} cost?")
    w = Work()
    each = w.calc(f"One {one} costs {{}} dollars.", f"{n * price} / {n}")
    w.calc(f"So {m} {many} cost {{}} dollars.", f"{each} * {m}")
    return q, w, price * m


def discount(r: random.Random) -> Drawn:
    name, (one, _) = r.choice(NAMES), r.choice(ITEMS)
    price, pct = 20 * r.randint(1, 20), r.choice((5, 10, 15, 20, 25, 30, 40, 50, 60, 75))
    q = (f"A {one} costs {price} dollars. The shop takes {pct}% off the price. How many dollars "
         f"does {name} pay for the {one}?")
    w = Work()
    off = w.calc("The discount is {} dollars.", f"{price} * {pct} / 100")
    w.calc(f"{name} pays {{}} dollars.", f"{price} - {off}")
    return q, w, price * (100 - pct) // 100


def ages(r: random.Random) -> Drawn:
    name, rel = r.choice(NAMES), r.choice(RELATIVES)
    age, times, more, years = r.randint(3, 15), r.randint(2, 4), r.randint(1, 10), r.randint(2, 20)
    q = (f"{name}'s {rel} is {more} years older than {times} times {name}'s age. {name} is "
         f"{age} years old. How old will the {rel} be in {years} years?")
    w = Work()
    t = w.calc(f"{times} times {name}'s age is {{}}.", f"{times} * {age}")
    now = w.calc(f"The {rel} is {{}} years old now.", f"{t} + {more}")
    w.calc(f"In {years} years the {rel} will be {{}} years old.", f"{now} + {years}")
    return q, w, times * age + more + years


def distance(r: random.Random) -> Drawn:
    vehicle = r.choice(VEHICLES)
    s1, s2 = 5 * r.randint(6, 18), 5 * r.randint(6, 18)
    t1, t2 = r.randint(1, 5), r.randint(1, 5)
    q = (f"A {vehicle} travels at {s1} km per hour for {t1} hours, then at {s2} km per hour for "
         f"{t2} hours. How many kilometres does it travel in all?")
    w = Work()
    d1 = w.calc("In the first part it travels {} km.", f"{s1} * {t1}")
    d2 = w.calc("In the second part it travels {} km.", f"{s2} * {t2}")
    w.calc("In all it travels {} km.", f"{d1} + {d2}")
    return q, w, s1 * t1 + s2 * t2


def fractions(r: random.Random) -> Drawn:
    b, d = r.randint(2, 6), r.randint(2, 5)
    (a, _), (c, _) = _coprime(r, range(1, b), [b]), _coprime(r, range(1, d), [d])
    total = b * d * r.randint(1, 8)
    q = (f"A school has {total} students. {a}/{b} of them walk to school, and {c}/{d} of the "
         f"rest come by bus. How many students come by bus?")
    w = Work()
    walk = w.calc("{} students walk.", f"{total} * {a} / {b}")
    rest = w.calc("The rest are {} students.", f"{total} - {walk}")
    w.calc("{} students come by bus.", f"{rest} * {c} / {d}")
    return q, w, total * (b - a) * c // (b * d)


def fencing(r: random.Random) -> Drawn:
    width = r.randint(3, 30)
    length, cost = r.randint(width + 1, 40), r.randint(2, 15)
    w = Work()
    if r.random() < 0.5:
        q = (f"A rectangular garden is {length} m long and {width} m wide. Fencing costs {cost} "
             f"dollars per metre. How many dollars does it cost to fence the garden all round?")
        metres = w.calc("The perimeter is {} m.", f"2 * ({length} + {width})")
        expected = 2 * (length + width) * cost
    else:
        q = (f"A rectangular floor is {length} m long and {width} m wide. Tiles cost {cost} "
             f"dollars per square metre. How many dollars do the tiles for the floor cost?")
        metres = w.calc("The area is {} square metres.", f"{length} * {width}")
        expected = length * width * cost
    w.calc("The cost is {} dollars.", f"{metres} * {cost}")
    return q, w, expected


def savings(r: random.Random) -> Drawn:
    name, first, step, weeks = r.choice(NAMES), r.randint(1, 20), r.randint(1, 10), r.randint(3, 12)
    q = (f"{name} saves {first} dollars in the first week, and each week after that saves {step} "
         f"dollars more than the week before. How many dollars has {name} saved after {weeks} "
         f"weeks?")
    w = Work()
    last = w.calc(f"In week {weeks} {name} saves {{}} dollars.",
                  f"{first} + ({weeks} - 1) * {step}")
    w.calc("The weekly amounts rise evenly, so the total is {} dollars.",
           f"{weeks} * ({first} + {last}) / 2")
    return q, w, weeks * first + step * weeks * (weeks - 1) // 2


def change(r: random.Random) -> Drawn:
    name, (_, many), (other, _) = r.choice(NAMES), r.choice(ITEMS), r.choice(ITEMS)
    n, each, price = r.randint(2, 6), r.randint(1, 9), r.randint(3, 30)
    spent = n * each + price
    bill = r.choice([b for b in (10, 20, 50, 100) if b > spent])  # spent <= 84
    q = (f"{name} buys {n} {many} at {each} dollars each and a {other} for {price} dollars, and "
         f"pays with a {bill}-dollar bill. How many dollars of change does {name} get?")
    w = Work()
    part = w.calc(f"The {many} cost {{}} dollars.", f"{n} * {each}")
    total = w.calc("Together that is {} dollars.", f"{part} + {price}")
    w.calc(f"{name} gets {{}} dollars of change.", f"{bill} - {total}")
    return q, w, bill - spent


def mixture(r: random.Random) -> Drawn:
    good, k1, k2, p1 = r.choice(GOODS), r.randint(1, 10), r.randint(1, 10), r.randint(2, 20)
    fits = [p for p in range(p1 + 1, 41) if (k1 * p1 + k2 * p) % (k1 + k2) == 0]
    p2 = r.choice(fits) if fits else p1 + k1 + k2  # k1*p1 + k2*(p1+k1+k2) = (k1+k2)*(p1+k2)
    q = (f"A shop mixes {k1} kg of {good} costing {p1} dollars per kg with {k2} kg of {good} "
         f"costing {p2} dollars per kg. How many dollars per kg is the mixture worth?")
    w = Work()
    c1 = w.calc("The first lot costs {} dollars.", f"{k1} * {p1}")
    c2 = w.calc("The second lot costs {} dollars.", f"{k2} * {p2}")
    cost = w.calc("Together they cost {} dollars.", f"{c1} + {c2}")
    kg = w.calc("The mixture weighs {} kg.", f"{k1} + {k2}")
    w.calc("So it is worth {} dollars per kg.", f"{cost} / {kg}")
    return q, w, (k1 * p1 + k2 * p2) // (k1 + k2)


def ratio(r: random.Random) -> Drawn:
    (place, x, y), (a, b) = r.choice(GROUPS), _coprime(r, range(1, 10), list(range(1, 10)))
    total = (a + b) * r.randint(2, 12)
    q = (f"In {place} the ratio of {x} to {y} is {a}:{b}. There are {total} {x} and {y} in all. "
         f"How many {y} are there?")
    w = Work()
    parts = w.calc("There are {} parts.", f"{a} + {b}")
    part = w.calc("One part is {}.", f"{total} / {parts}")
    w.calc(f"The {y} are {b} parts: {{}}.", f"{part} * {b}")
    return q, w, total * b // (a + b)


KINDS: dict[str, Callable[[random.Random], Drawn]] = {f.__name__: f for f in (
    unit_price, discount, ages, distance, fractions, fencing, savings, change, mixture, ratio)}


def make_problem(kind: str, rng: random.Random) -> Problem:
    """One problem of ``kind``; its worked steps must end at the closed-formula answer."""
    question, work, answer = KINDS[kind](rng)
    if work.last != answer:
        raise ArithmeticError(f"{kind}: the steps give {work.last}, the formula {answer}")
    return Problem(kind, question, tuple(work.steps), answer)


def math_problems(count: int = MATH_RECORDS, seed: int = MATH_SEED) -> Iterator[Problem]:
    """``count`` distinct problems, the kinds in turn, from ``random.Random(seed)``."""
    rng, seen, kinds = random.Random(seed), set(), list(KINDS)
    for i in range(count):
        kind = kinds[i % len(kinds)]
        for _ in range(MAX_TRIES):
            problem = make_problem(kind, rng)
            if problem.question not in seen:
                break
        else:
            raise ValueError(f"{kind}: no new problem in {MAX_TRIES} draws; ask for fewer")
        seen.add(problem.question)
        yield problem


def math_records(count: int = MATH_RECORDS, seed: int = MATH_SEED) -> Iterator[dict]:
    """SFT records ``{"prompt", "response", "category", "source", "id"}`` of the problems."""
    per_kind: dict[str, int] = {}
    for p in math_problems(count, seed):
        n = per_kind[p.kind] = per_kind.get(p.kind, 0) + 1
        yield {"prompt": p.question, "response": p.solution, "category": "mathematics",
               "source": SOURCE, "id": f"{SOURCE}/{p.kind}/{n}"}
