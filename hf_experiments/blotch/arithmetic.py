"""Arithmetic problems (sums and products of small integers) and their deterministic step-by-step solutions.

Problems such as ``27+75``, ``3*2+18``, ``(4+9)*3`` are sampled with the parameters of the original's ``MathEnv``
(grantsrb/blotching, ``envs.py``); :func:`solve` rewrites a problem one small labelled step at a time until only the
answer is left, by the original's rules (``solver="original"``, :mod:`.solver_original`, the default) or by ours
(``solver="sorted"``: numbers kept in ascending order). Train and validation problems never overlap; a small
problem space (the original's rule, :func:`small_space`) is enumerated and split. The dataset behind
``data_scripts/make_arithmetic.py`` is built here.

Design: `docs/semantic_blotching.md`, section "Problems and solutions".
"""

from __future__ import annotations

import bisect
import math
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from itertools import pairwise
from itertools import product as cartesian
from typing import Any, Union

import numpy as np

from .solver_original import solve_original

# An expression tree: a sum of products; a factor is an int or a parenthesised sum.
Factor = Union[int, "SumExpr"]
SumExpr = list[list[Factor]]

STEP_LABELS = ("rearrange", "expand", "decompose", "sum", "combine")  # the "sorted" solver's labels
SOLVERS = ("original", "sorted")
SMALL_MAX_VALUE = 400  # the original enumerates every problem when the largest possible answer is below this
SMALL_VAL_SHARE = 0.2  # ... and holds out min(20%, val_samples) of them
ENUMERATE_FACTOR = 4  # enumerate when the space holds at most this many times the problems asked for
MAX_ENUMERATE = 5_000_000  # ... and is small enough to list in memory
_TOKEN = re.compile(r"\d+|[+*()]")


# --------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProblemParams:
    """Everything that defines the problem distribution (the seed's names)."""

    max_num: int = 99
    max_ents: int = 2
    p_ent: float = 0.5
    p_mult: float = 0.0
    max_mult_num: int = 9
    space_mults: bool = True
    zipf_order: float = 0.0
    p_paren: float = 0.0
    solver: str = "original"

    def __post_init__(self) -> None:
        if self.solver not in SOLVERS:
            raise ValueError(f"solver={self.solver!r} is not allowed; use one of {', '.join(SOLVERS)}")
        for name, lo in (("max_num", 0), ("max_ents", 2), ("max_mult_num", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
                raise ValueError(f"{name}={value!r} is not allowed; use an integer >= {lo}")
        for name in ("p_ent", "p_mult", "p_paren"):
            value = getattr(self, name)
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name}={value!r} is not allowed; use a probability in [0, 1]")
        if float(self.zipf_order) < 0:
            raise ValueError(f"zipf_order={self.zipf_order!r} is not allowed; use a value >= 0 (0 = uniform)")
        if float(self.zipf_order) > 0:  # Zipf draws from 1..max: a range needs at least the value 1
            for name in ("max_num", "max_mult_num") if self.p_mult > 0 else ("max_num",):
                if getattr(self, name) < 1:
                    raise ValueError(f"{name}={getattr(self, name)} is not allowed with zipf_order > 0; use >= 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def value_pmf(hi: int, zipf_order: float) -> np.ndarray:
    """P(k) for k in [0, hi]: uniform, or as the original's Zipf ``P(k) ∝ 1/k^zipf_order`` on 1..hi (never 0)."""
    if zipf_order == 0 or hi < 1:  # hi < 1 only for an unused range (checked in ProblemParams)
        return np.full(hi + 1, 1.0 / (hi + 1))
    weights = np.zeros(hi + 1)
    weights[1:] = 1.0 / np.arange(1, hi + 1, dtype=np.float64) ** float(zipf_order)
    return weights / weights.sum()


def _draw_values(rng: np.random.Generator, hi: int, zipf_order: float, shape: tuple[int, ...]) -> np.ndarray:
    if zipf_order == 0:
        return rng.integers(0, hi + 1, size=shape)
    return rng.choice(hi + 1, size=shape, p=value_pmf(hi, zipf_order))


# --------------------------------------------------------------------------------------------
# Sampling and enumeration
# --------------------------------------------------------------------------------------------
def _join(entities: np.ndarray, mult: np.ndarray, valid_op: np.ndarray) -> np.ndarray:
    """(N, E) entity strings + (N, E-1) operators -> (N,) expressions; a loop over columns, not rows."""
    out = entities[:, 0].astype(object)
    ops = np.where(mult, "*", "+").astype(object)  # (N, E-1)
    for j in range(1, entities.shape[1]):
        piece = ops[:, j - 1] + entities[:, j].astype(object)
        out = out + np.where(valid_op[:, j - 1], piece, "")
    return out


def sample_problems(n: int, params: ProblemParams, rng: np.random.Generator) -> np.ndarray:
    """``n`` problems drawn independently (duplicates possible), as an (n,) object array of str."""
    n_max = params.max_ents
    n_ents = 2 + rng.binomial(n_max - 2, params.p_ent, size=n)  # (N,)
    valid_op = np.arange(n_max - 1)[None] < (n_ents - 1)[:, None]  # (N, E-1)
    mult = (rng.random((n, n_max - 1)) < params.p_mult) & valid_op
    if params.space_mults:
        for j in range(1, n_max - 1):  # sequential over operators, vectorised over rows
            mult[:, j] &= ~mult[:, j - 1]
    multiplicand = np.zeros((n, n_max), dtype=bool)  # (N, E): next to a '*'
    multiplicand[:, :-1] |= mult
    multiplicand[:, 1:] |= mult
    values = np.where(
        multiplicand,
        _draw_values(rng, params.max_mult_num, params.zipf_order, (n, n_max)),
        _draw_values(rng, params.max_num, params.zipf_order, (n, n_max)),
    )
    entities = values.astype(str).astype(object)  # (N, E)
    if params.p_paren > 0 and n_max > 2:
        present = np.arange(n_max)[None] < n_ents[:, None]
        paren = (rng.random((n, n_max)) < params.p_paren) & present
        # A parenthetical next to '*' is a sum of multiplicand-sized numbers: products of large
        # parentheticals would take hundreds of expansion steps.
        inner_params = replace(params, max_ents=n_max - 1)
        factor_params = replace(inner_params, max_num=params.max_mult_num, p_mult=0.0)
        for where, sub in ((paren & ~multiplicand, inner_params), (paren & multiplicand, factor_params)):
            if where.any():
                entities[where] = "(" + sample_problems(int(where.sum()), sub, rng) + ")"
    return _join(entities, mult, valid_op)


def _op_patterns(n: int, params: ProblemParams) -> Iterator[tuple[tuple[bool, ...], float]]:
    """Operator patterns of an n-entity problem with their probability under the sampler."""
    for pattern in cartesian((False, True), repeat=n - 1):
        prob, prev = 1.0, False
        for is_mult in pattern:
            if params.space_mults and prev:
                prob *= 0.0 if is_mult else 1.0
            else:
                prob *= params.p_mult if is_mult else 1.0 - params.p_mult
            prev = is_mult
        if prob > 0:
            yield pattern, prob


def _n_ents_pmf(n: int, params: ProblemParams) -> float:
    k, m = n - 2, params.max_ents - 2
    return math.comb(m, k) * params.p_ent**k * (1 - params.p_ent) ** (m - k)


def _multiplicands(pattern: tuple[bool, ...]) -> list[bool]:
    n = len(pattern) + 1
    return [(i > 0 and pattern[i - 1]) or (i < n - 1 and pattern[i]) for i in range(n)]


def problem_space_size(params: ProblemParams) -> int | None:
    """How many distinct problems the sampler can produce; None with parentheticals (not enumerated)."""
    if params.p_paren > 0 and params.max_ents > 2:
        return None
    zero = 0 if params.zipf_order > 0 else 1  # Zipf never draws 0
    total = 0
    for n in range(2, params.max_ents + 1):
        if _n_ents_pmf(n, params) == 0:
            continue
        for pattern, _ in _op_patterns(n, params):
            total += math.prod((params.max_mult_num if m else params.max_num) + zero for m in _multiplicands(pattern))
    return total


# --------------------------------------------------------------------------------------------
# The original's small-space rule
# --------------------------------------------------------------------------------------------
def max_value(params: ProblemParams) -> int:
    """The largest answer by the original's estimate (``MathEnv.get_max_val``); it decides :func:`small_space`."""
    n, mmn = params.max_ents, params.max_mult_num
    if params.p_mult == 0:
        return params.max_num * n
    biggest = (n // 2) * mmn**2 + (n % 2) * params.max_num if params.space_mults else mmn**n
    return max(biggest, params.max_num * n)


def _all_patterns(n: int, params: ProblemParams) -> Iterator[tuple[bool, ...]]:
    """Operator patterns the original enumerates: sums only when p_mult == 0, else every space_mults-legal one."""
    for pattern in cartesian((False, True), repeat=n - 1) if params.p_mult > 0 else [(False,) * (n - 1)]:
        if not (params.space_mults and any(a and b for a, b in pairwise(pattern))):
            yield pattern


def all_problems_size(params: ProblemParams) -> int:
    """How many problems :func:`all_problems` lists (computed without listing them)."""
    return sum(
        math.prod((params.max_mult_num if m else params.max_num) + 1 for m in _multiplicands(pattern))
        for n in range(2, params.max_ents + 1)
        for pattern in _all_patterns(n, params)
    )


def all_problems(params: ProblemParams) -> np.ndarray:
    """Every problem of 2..max_ents entities with values from 0, as the original's ``get_all_problems`` lists
    them for a small space (whatever p_ent and zipf_order say); products keep their multiplicand range and
    ``space_mults`` (the original's list does not: docs/semantic_blotching.md)."""
    texts = []
    for n in range(2, params.max_ents + 1):
        for pattern in _all_patterns(n, params):
            his = [params.max_mult_num if m else params.max_num for m in _multiplicands(pattern)]
            grids = np.meshgrid(*[np.arange(hi + 1) for hi in his], indexing="ij")
            values = np.stack([g.reshape(-1) for g in grids], axis=1)
            mult = np.broadcast_to(np.array(pattern, dtype=bool), (len(values), n - 1))
            texts.append(_join(values.astype(str).astype(object), mult, np.ones_like(mult)))
    return np.concatenate(texts)


def small_space(params: ProblemParams, max_samples: int) -> bool:
    """The original's rule for enumerating instead of sampling: the largest answer is below 400 and every
    problem fits in the training cache (fewer problems than ``max_samples``)."""
    if params.p_paren > 0 and params.max_ents > 2:
        return False
    return max_value(params) < SMALL_MAX_VALUE and all_problems_size(params) < max_samples


def small_space_counts(params: ProblemParams, n_train: int, n_val: int) -> tuple[int, int]:
    """(train, validation) sizes of an enumerated space: min(20%, n_val) held out, the rest (at most n_train)
    trained on, as the original splits it (at least one validation problem). Raises ValueError for a space of
    one problem (nothing would be left to train on)."""
    size = all_problems_size(params)
    if size < 2:
        raise ValueError(f"the problem space holds {size} problem; raise max_num or max_ents to get two or more")
    val = max(1, min(int(SMALL_VAL_SHARE * size), n_val))
    return min(n_train, size - val), val


def enumerate_problems(params: ProblemParams) -> tuple[np.ndarray, np.ndarray]:
    """Every problem the sampler can produce (no parentheticals) and its probability; (K,) each."""
    if problem_space_size(params) is None:
        raise ValueError(f"p_paren={params.p_paren} is not allowed for enumeration; use p_paren=0")
    pmf = {hi: value_pmf(hi, params.zipf_order) for hi in {params.max_num, params.max_mult_num}}
    texts, probs = [], []
    for n in range(2, params.max_ents + 1):
        p_n = _n_ents_pmf(n, params)
        if p_n == 0:
            continue
        for pattern, p_ops in _op_patterns(n, params):
            his = [params.max_mult_num if m else params.max_num for m in _multiplicands(pattern)]
            grids = np.meshgrid(*[np.arange(hi + 1) for hi in his], indexing="ij")
            values = np.stack([g.reshape(-1) for g in grids], axis=1)  # (K, n)
            prob = p_n * p_ops * np.prod([pmf[hi][values[:, i]] for i, hi in enumerate(his)], axis=0)
            mult = np.broadcast_to(np.array(pattern, dtype=bool), (len(values), n - 1))
            texts.append(_join(values.astype(str).astype(object), mult, np.ones_like(mult)))
            probs.append(prob)
    return np.concatenate(texts), np.concatenate(probs)


def distinct_problems(
    total: int, params: ProblemParams, rng: np.random.Generator, exclude: set[str] | None = None
) -> np.ndarray:
    """``total`` distinct problems (none in ``exclude``), enumerating small spaces; (total,) object array.

    Raises ValueError when the space holds fewer distinct problems than asked for.
    """
    exclude = exclude or set()
    size = problem_space_size(params)
    if size is not None and size <= min(MAX_ENUMERATE, ENUMERATE_FACTOR * (total + len(exclude))):
        texts, probs = enumerate_problems(params)
        keep = (probs > 0) & ~np.isin(texts, np.array(sorted(exclude), dtype=object))
        texts, probs = texts[keep], probs[keep]
        if len(texts) < total:
            raise ValueError(
                f"the problem space holds {len(texts)} distinct problems but {total} were asked "
                "for; lower the sample counts or raise max_num/max_ents"
            )
        # Efraimidis-Spirakis: the `total` smallest Exp(1)/p are a weighted draw without replacement.
        keys = rng.exponential(size=len(texts)) / probs
        return texts[np.argsort(keys, kind="stable")[:total]]
    seen: dict[str, None] = {}
    for _ in range(1000):
        need = total - len(seen)
        if need <= 0:
            break
        for text in sample_problems(max(64, int(need * 1.3)), params, rng):
            if text not in exclude:
                seen.setdefault(text, None)
    if len(seen) < total:
        raise ValueError(
            f"could not draw {total} distinct problems from this distribution; lower the sample "
            "counts or raise max_num/max_ents"
        )
    return np.array(list(seen)[:total], dtype=object)


def ood_params(params: ProblemParams, ood_max_num: int | None = None, ood_max_ents: int | None = None) -> ProblemParams:
    """The out-of-distribution sampler: larger numbers (default 2*max_num+1) and one more entity."""
    return replace(
        params,
        max_num=ood_max_num if ood_max_num is not None else 2 * params.max_num + 1,
        max_ents=ood_max_ents if ood_max_ents is not None else params.max_ents + 1,
        p_ent=max(params.p_ent, 0.5),
    )


def is_out_of_distribution(problem: str, params: ProblemParams) -> bool:
    """True when ``problem`` cannot come from ``params``: a number above every bound, or too many entities."""
    biggest = max(int(x) for x in re.findall(r"\d+", problem))
    return biggest > max(params.max_num, params.max_mult_num) or sum(len(t) for t in parse(problem)) > params.max_ents


def sample_ood_problems(
    n: int,
    params: ProblemParams,
    rng: np.random.Generator,
    ood_max_num: int | None = None,
    ood_max_ents: int | None = None,
) -> np.ndarray:
    """``n`` distinct problems that the in-distribution sampler can never produce."""
    wider = ood_params(params, ood_max_num, ood_max_ents)
    if wider.max_num <= max(params.max_num, params.max_mult_num) and wider.max_ents <= params.max_ents:
        raise ValueError(
            f"ood_max_num={wider.max_num}, ood_max_ents={wider.max_ents} give no out-of-distribution "
            "problems; use larger numbers or more entities than the training problems"
        )
    seen: dict[str, None] = {}
    for _ in range(1000):
        if len(seen) >= n:
            break
        for text in sample_problems(max(64, 2 * (n - len(seen))), wider, rng):
            if is_out_of_distribution(text, params):
                seen.setdefault(text, None)
    if len(seen) < n:
        raise ValueError(f"could not draw {n} distinct out-of-distribution problems; widen the OOD ranges")
    return np.array(list(seen)[:n], dtype=object)


# --------------------------------------------------------------------------------------------
# Parsing, formatting, evaluation
# --------------------------------------------------------------------------------------------
def parse(expr: str) -> SumExpr:
    """``"3*(1+2)+4"`` -> ``[[3, [[1], [2]]], [4]]``; raises ValueError on anything else."""
    tokens = _TOKEN.findall(expr)
    if "".join(tokens) != expr or not tokens:
        raise ValueError(f"expression {expr!r} is not allowed; use digits, '+', '*' and parentheses")
    pos = 0

    def sum_expr() -> SumExpr:
        nonlocal pos
        terms = [product_expr()]
        while pos < len(tokens) and tokens[pos] == "+":
            pos += 1
            terms.append(product_expr())
        return terms

    def product_expr() -> list[Factor]:
        nonlocal pos
        factors = [factor()]
        while pos < len(tokens) and tokens[pos] == "*":
            pos += 1
            factors.append(factor())
        return factors

    def factor() -> Factor:
        nonlocal pos
        if pos >= len(tokens):
            raise ValueError(f"expression {expr!r} is not allowed; it ends early")
        tok = tokens[pos]
        pos += 1
        if tok == "(":
            inner = sum_expr()
            if pos >= len(tokens) or tokens[pos] != ")":
                raise ValueError(f"expression {expr!r} is not allowed; unbalanced parentheses")
            pos += 1
            return inner
        if not tok.isdigit():
            raise ValueError(f"expression {expr!r} is not allowed; {tok!r} where a number belongs")
        return int(tok)

    tree = sum_expr()
    if pos != len(tokens):
        raise ValueError(f"expression {expr!r} is not allowed; unexpected {tokens[pos]!r}")
    return tree


def to_text(tree: SumExpr) -> str:
    return "+".join("*".join(str(f) if isinstance(f, int) else f"({to_text(f)})" for f in term) for term in tree)


def tree_value(tree: SumExpr) -> int:
    return sum(math.prod(f if isinstance(f, int) else tree_value(f) for f in term) for term in tree)


_FLAT = re.compile(r"\d+(?:[+*]\d+)*")


def evaluate(expr: str) -> int:
    """The value of an expression of this grammar (no ``eval``)."""
    if _FLAT.fullmatch(expr):  # fast path without parentheses
        return sum(math.prod(map(int, term.split("*"))) for term in expr.split("+"))
    return tree_value(parse(expr))


# --------------------------------------------------------------------------------------------
# The step-by-step solver
# --------------------------------------------------------------------------------------------
def _n_digits(x: int) -> int:
    return len(str(x))


def _lowest_part(x: int) -> int:
    """The lowest non-zero digit times its place value: 120 -> 20, 7 -> 7."""
    place = 1
    while x % 10 == 0:
        x //= 10
        place *= 10
    return (x % 10) * place


def _is_round(x: int) -> bool:
    return x == _lowest_part(x) if x else True


def _solve_flat(tree: SumExpr) -> Iterator[tuple[SumExpr, str]]:
    """Steps of a sum without parentheses (see the module docstring for the rules)."""
    prods = sorted(sorted(t) for t in tree if len(t) > 1)
    nums = sorted(t[0] for t in tree if len(t) == 1)

    def state() -> SumExpr:
        return [*prods, *[[x] for x in nums]]

    if state() != tree:
        yield state(), "rearrange"
    while prods:
        a, *rest = prods.pop(0)
        if a == 0:
            bisect.insort(nums, 0)
        else:
            if a > 1:
                bisect.insort(prods, [a - 1, *rest])
            if len(rest) == 1:
                bisect.insort(nums, rest[0])
            else:
                bisect.insort(prods, rest)
        yield state(), "expand"
    while True:
        idx = next((i for i, x in enumerate(nums) if not _is_round(x)), None)
        if idx is None:
            break
        x = nums.pop(idx)
        low = _lowest_part(x)
        bisect.insort(nums, low)
        bisect.insort(nums, x - low)
        yield state(), "decompose"
    while len(nums) > 1:
        i = next((i for i in range(len(nums) - 1) if _n_digits(nums[i]) == _n_digits(nums[i + 1])), None)
        label = "sum" if i is not None else "combine"
        i = i or 0
        total = nums[i] + nums[i + 1]
        del nums[i : i + 2]
        bisect.insort(nums, total)
        yield state(), label


def _solve_flat_original(tree: SumExpr) -> Iterator[tuple[SumExpr, str]]:
    """The original's rules (:mod:`.solver_original`) on a sum of products, as trees for :func:`_solve_tree`."""
    for text, label in solve_original(to_text(tree)):
        yield parse(text), label


_FLAT_SOLVERS = {"original": _solve_flat_original, "sorted": _solve_flat}


def _solve_tree(tree: SumExpr, flat=_solve_flat) -> Iterator[tuple[SumExpr, str]]:
    """Steps of any expression: parentheticals first (leftmost), each replaced by its value once solved.

    ``flat`` solves a sum without parentheses. Yields the (mutated) whole tree after every step: consumers
    format it before resuming.
    """
    while True:
        where = next(
            ((i, j) for i, term in enumerate(tree) for j, f in enumerate(term) if not isinstance(f, int)),
            None,
        )
        if where is None:
            break
        i, j = where
        for inner, label in _solve_tree(tree[i][j], flat):
            tree[i][j] = inner[0][0] if len(inner) == 1 and len(inner[0]) == 1 else inner
            yield tree, label
    yield from flat(tree)


def solve(problem: str, solver: str = "original") -> list[tuple[str, str]]:
    """``"27+75"`` -> ``[("7+20+75", "decompose2->1"), ..., ("102", "sum2->3")]``; the last step is the answer.

    ``solver``: ``"original"`` (the original's rules and labels) or ``"sorted"`` (ours; labels
    :data:`STEP_LABELS`). Parentheticals (ours only) are solved first, each by the same rules.
    """
    if solver not in _FLAT_SOLVERS:
        raise ValueError(f"solver={solver!r} is not allowed; use one of {', '.join(SOLVERS)}")
    if solver == "original" and "(" not in problem:
        if "+" not in problem and "*" not in problem:
            raise ValueError(f"problem {problem!r} is not allowed; it needs at least two entities")
        if _FLAT.fullmatch(problem) is None:
            raise ValueError(f"expression {problem!r} is not allowed; use digits, '+', '*' and parentheses")
        return solve_original(problem)
    tree = parse(problem)
    if len(tree) == 1 and len(tree[0]) == 1 and isinstance(tree[0][0], int):
        raise ValueError(f"problem {problem!r} is not allowed; it needs at least two entities")
    return [(to_text(state), label) for state, label in _solve_tree(tree, _FLAT_SOLVERS[solver])]


def solve_batch(batch: dict[str, list], solver: str = "original") -> dict[str, list]:
    """``datasets.map`` function: ``problem`` -> ``solution`` ("s1=...=answer"), labels, answer, n_steps."""
    out: dict[str, list] = {"solution": [], "step_labels": [], "answer": [], "n_steps": []}
    for problem in batch["problem"]:
        steps = solve(problem, solver)
        out["solution"].append("=".join(s for s, _ in steps))
        out["step_labels"].append([label for _, label in steps])
        out["answer"].append(int(steps[-1][0]))
        out["n_steps"].append(len(steps))
    return out


def row_text(problem: str, solution: str) -> str:
    """The training row (without BOS/EOS): ``problem=step_1=...=answer``."""
    return f"{problem}={solution}"


# --------------------------------------------------------------------------------------------
# Whole datasets
# --------------------------------------------------------------------------------------------
def solve_problems(problems: Sequence[str], num_proc: int | None = None, desc: str = "solve", solver: str = "original"):
    """A ``datasets.Dataset`` of problems with their solutions, solved on all cores for large inputs."""
    from datasets import Dataset

    ds = Dataset.from_dict({"problem": list(problems)})
    if num_proc is None:
        num_proc = min(os.cpu_count() or 1, max(1, len(ds) // 50_000)) or 1
    return ds.map(
        solve_batch,
        batched=True,
        batch_size=2000,
        num_proc=num_proc if num_proc > 1 else None,
        desc=desc,
        fn_kwargs={"solver": solver},
    )


def build_splits(
    params: ProblemParams,
    n_train: int,
    n_val: int,
    n_ood: int = 0,
    seed: int = 0,
    ood_max_num: int | None = None,
    ood_max_ents: int | None = None,
    num_proc: int | None = None,
    max_samples: int | None = None,
) -> dict[str, Any]:
    """``{"train", "validation"[, "ood"]}`` datasets: distinct problems, train and validation disjoint.

    A small space (:func:`small_space` with ``max_samples``, default ``n_train``) is enumerated and split:
    fewer problems than asked for may result (:func:`small_space_counts`).
    """
    rng = np.random.default_rng(seed)
    if small_space(params, max_samples or n_train):
        problems = all_problems(params)
        problems = problems[rng.permutation(len(problems))]  # uniform, as the original shuffles its list
        train, val = small_space_counts(params, n_train, n_val)
        splits = {"validation": problems[:val], "train": problems[val : val + train]}
    else:
        problems = distinct_problems(n_train + n_val, params, rng)
        # Validation first: its problems do not depend on n_train.
        splits = {"validation": problems[:n_val], "train": problems[n_val:]}
    if n_ood:
        splits["ood"] = sample_ood_problems(n_ood, params, np.random.default_rng([seed, 1]), ood_max_num, ood_max_ents)
    return {name: solve_problems(p, num_proc, desc=f"solve {name}", solver=params.solver) for name, p in splits.items()}


DESCRIPTION = """\
Arithmetic problems (sums and products of small integers) with deterministic step-by-step solutions, for the
semantic-blotching experiments (`hf_experiments.blotch.arithmetic`; original: grantsrb/blotching). Columns: `problem`,
`solution` (`step_1=...=answer`; a training row is `problem=solution`), `step_labels` (the `solver`'s labels:
the original's rearrange, decomposemult, decompose{j}->{m}, sum{m}->{n}, combine{m}->{j}, or the `sorted`
solver's rearrange, expand, decompose, sum, combine), `answer`, `n_steps`. Train and validation problems are
distinct and disjoint (a small space is enumerated and split, as the original does: `split_rule`); the `ood`
split holds problems with larger numbers or more entities than the training distribution allows."""


def write_arithmetic_dataset(
    out_dir: str,
    params: ProblemParams,
    n_train: int,
    n_val: int,
    n_ood: int = 0,
    seed: int = 0,
    ood_max_num: int | None = None,
    ood_max_ents: int | None = None,
    num_proc: int | None = None,
    overwrite: bool = False,
    push_to_hub: str | None = None,
    max_samples: int | None = None,
) -> str:
    """Generate and write a dataset folder with a card (``datasets.load_dataset(out_dir)`` opens it)."""
    from hf_experiments.core.dataset_io import write_dataset

    splits = build_splits(params, n_train, n_val, n_ood, seed, ood_max_num, ood_max_ents, num_proc, max_samples)
    enumerated = small_space(params, max_samples or n_train)
    card = {
        "generator": "arithmetic",
        **params.to_dict(),
        "n_train": n_train,
        "n_val": n_val,
        "n_ood": n_ood,
        "seed": seed,
        "ood": asdict(ood_params(params, ood_max_num, ood_max_ents)) if n_ood else None,
        "problem_space_size": problem_space_size(params),
        "split_rule": "enumerated (the original's small-space rule)" if enumerated else "sampled",
        "split_sizes": {name: len(ds) for name, ds in splits.items()},
    }
    tables = {name: ds.data.table for name, ds in splits.items()}
    return str(
        write_dataset(
            out_dir,
            tables,
            card,
            DESCRIPTION,
            overwrite=overwrite,
            push_to_hub=push_to_hub,
            title="arithmetic",
        )
    )
