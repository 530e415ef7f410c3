"""The original's step-by-step solution rules (grantsrb/blotching, ``envs.py`` ``MathEnv.find_soln``), written here.

The original works on a board of strings: products in front (factors ascending), then the numbers in *slots*, one
deque per digit length, in ascending slot order; every operation takes from and puts back at the *left* end of a
slot, so order within a slot is "newest first", not sorted by value. Each new distinct board text is one step
(a board text seen before, the problem included, is no step). The phases:

1. ``rearrange`` — the board built from the problem, if its text differs from the problem's.
2. ``decomposemult`` — the first product ``a*b*...``: ``0*...`` -> ``0``; ``1*b``/``2*b`` -> one/two copies of the
   rest; else ``(a-1)*b + b``. Copies go to the front of their slot (or of the products).
3. ``decompose{j}->{m}`` — for each magnitude ``m`` below the answer's digit count, when at least two numbers have a
   non-zero digit there (the slot-``m`` numbers count whole), every longer number gives up its digit at ``m`` to the
   front of slot ``m``.
4. ``sum{m}->{len}`` — per magnitude, the two leftmost of slot ``m`` are added, the result to the front of its length
   slot; a carry is split off again (``decompose{m+1}->{m}``) while slot ``m`` still holds numbers.
   ``combine{m}->{j}`` — a single leftover of slot ``m`` is added to the first number of the next non-empty slot
   ``j``; the result stays in slot ``j`` (even when it grows a digit, as in the original).

Golden tests compare this with the original's output on 22,000 problems (``tests/blotch/data/``).
"""

from __future__ import annotations

from collections import defaultdict, deque

MULT = "*"
PLUS = "+"


def _split_digit(number: str, mag: int) -> tuple[str, str]:
    """``("123", 1)`` -> ``("3", "120")``; ``("123", 2)`` -> ``("20", "103")``: the digit at ``mag`` and the rest."""
    if mag > len(number):
        return "0", number
    frag = number[-mag] + "0" * (mag - 1)
    return frag, number[:-mag] + "0" + number[len(number) - mag + 1 :]


def _value(text: str) -> int:
    total = 0
    for term in text.split(PLUS):
        product = 1
        for factor in term.split(MULT):
            product *= int(factor)
        total += product
    return total


class _Board:
    """Products, then the number slots; the text of a step is the board read left to right."""

    def __init__(self, problem: str) -> None:
        self.products: deque[str] = deque()
        self.slots: defaultdict[int, deque[str]] = defaultdict(deque)
        for term in problem.split(PLUS):
            if MULT in term:
                self.products.append(MULT.join(sorted(term.split(MULT), key=int)))
            else:
                self.slots[len(term)].append(term)

    def text(self) -> str:
        parts = list(self.products)
        for key in sorted(self.slots):
            parts.extend(self.slots[key])
        return PLUS.join(parts)


def solve_original(problem: str) -> list[tuple[str, str]]:
    """``"27+75"`` -> ``[("7+20+75", "decompose2->1"), ..., ("102", "sum2->3")]`` (a flat sum of products)."""
    board = _Board(problem.strip())
    seen = {problem.strip()}
    steps: list[tuple[str, str]] = []

    def record(label: str) -> None:
        text = board.text()
        if text not in seen:
            seen.add(text)
            steps.append((text, label))

    record("rearrange")
    slots = board.slots
    while board.products:
        factors = board.products.popleft().split(MULT)
        first, rest = int(factors[0]), factors[1:]
        if first == 0:
            slots[1].appendleft("0")
        else:
            for _ in range(first if first <= 2 else 1):
                if len(rest) > 1:
                    board.products.appendleft(MULT.join(rest))
                else:
                    slots[len(rest[0])].appendleft(rest[0])
            if first > 2:
                board.products.appendleft(MULT.join([str(first - 1), *rest]))
        record("decomposemult")
    current = board.text()
    if PLUS not in current and MULT not in current:
        return steps

    max_mag = len(str(_value(current)))
    for mag in range(1, max_mag):
        longer = [j for j in range(mag + 1, max_mag + 1) if j in slots]
        n_frags = len(slots[mag]) + sum(x[-mag] != "0" for j in longer for x in slots[j])
        if n_frags <= 1:
            continue
        for j in longer:
            group = slots[j]
            for k in range(len(group)):
                if group[k][-mag] != "0":
                    frag, group[k] = _split_digit(group[k], mag)
                    slots[mag].appendleft(frag)
                    record(f"decompose{j}->{mag}")

    for mag in range(1, max_mag + 1):
        if mag not in slots:
            continue
        group = slots[mag]
        while len(group) > 1:
            total = str(int(group.popleft()) + int(group.popleft()))
            slots[len(total)].appendleft(total)
            record(f"sum{mag}->{len(total)}")
            if len(total) != mag and group and total[-mag] != "0":
                slots[len(total)].popleft()
                frag, rest = _split_digit(total, mag)
                group.appendleft(frag)
                slots[mag + 1].appendleft(rest)
                record(f"decompose{len(rest)}->{mag}")
        if len(group) == 1:
            leftover = group.pop()
            for j in range(mag + 1, max_mag + 1):
                if slots.get(j):
                    slots[j][0] = str(int(leftover) + int(slots[j][0]))
                    record(f"combine{mag}->{j}")
                    break
    return steps
