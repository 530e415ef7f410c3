"""The original's solver (grantsrb/blotching ``MathEnv.find_soln``) reproduced exactly, and its sampling rules.

The golden file holds 22,000 (problem, solution, labels) triples written by running the original itself
(``tests/blotch/data/make_original_golden.py`` says how); the per-rule examples below come from the same oracle.
"""

import gzip
import itertools
import json
import os
from collections import Counter, defaultdict
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest

from hf_experiments.blotch import arithmetic as ar
from hf_experiments.blotch.arithmetic import ProblemParams

GOLDEN = Path(__file__).parent / "data" / "original_solutions.jsonl.gz"


def golden_rows() -> list[dict]:
    with gzip.open(GOLDEN, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_every_golden_solution_and_label_equals_the_originals():
    rows = golden_rows()
    per_class, wrong = Counter(), defaultdict(list)
    for row in rows:
        steps = ar.solve(row["problem"])
        per_class[row["class"]] += 1
        if "=".join(s for s, _ in steps) != row["solution"] or [lab for _, lab in steps] != row["labels"]:
            wrong[row["class"]].append(row["problem"])
    assert len(rows) >= 10_000 and per_class["sum2_below100"] == 10_000  # every a+b with a, b in [0, 99]
    assert {"sum_3digit", "products", "sum3_p_ent_half"} <= set(per_class)
    assert not wrong, {k: (len(v), v[:3]) for k, v in wrong.items()}


@pytest.mark.parametrize(
    "problem, solution, labels",
    [
        # decompose only where two numbers have a digit at that magnitude; sums of the two leftmost
        (
            "27+75",
            "7+20+75=5+7+20+70=12+20+70=32+70=102",
            ["decompose2->1", "decompose2->1", "sum1->2", "sum2->2", "sum2->3"],
        ),
        ("31+50", "81", ["sum2->2"]),  # one number with a ones digit: no decomposition
        # products: 0*b -> 0, 1*b and 2*b expand directly, a*b -> (a-1)*b + b, copies to the front
        ("0*7+3", "0+3=3", ["decomposemult", "sum1->1"]),
        ("1*8+20", "8+20=28", ["decomposemult", "combine1->2"]),
        ("2*9+5", "9+9+5=5+18=8+5+10=13+10=23", ["decomposemult", "sum1->2", "decompose2->1", "sum1->2", "sum2->2"]),
        ("3*4", "2*4+4=4+4+4=8+4=12", ["decomposemult", "decomposemult", "sum1->1", "sum1->2"]),
        # rearrange: products first (factors ascending), then by digit length, stable within a length
        (
            "7*3+2*5",
            "3*7+2*5=2*7+2*5+7=2*5+7+7+7=5+5+7+7+7=7+7+7+10=7+14+10=4+7+10+10=11+10+10=21+10=31",
            [
                "rearrange",
                "decomposemult",
                "decomposemult",
                "decomposemult",
                "sum1->2",
                "sum1->2",
                "decompose2->1",
                "sum1->2",
                "sum2->2",
                "sum2->2",
            ],
        ),
        (
            "12+3+45+6",
            "3+6+12+45=2+3+6+10+45=5+2+3+6+10+40=7+3+6+10+40=6+10+10+40=16+10+40=26+40=66",
            ["rearrange", "decompose2->1", "decompose2->1", "sum1->1", "sum1->2", "combine1->2", "sum2->2", "sum2->2"],
        ),
        ("3+12", "2+3+10=5+10=15", ["decompose2->1", "sum1->1", "combine1->2"]),  # ordered already: no rearrange
        # a carry is split off again while numbers of its magnitude remain
        ("9+9+9", "9+18=8+9+10=17+10=27", ["sum1->2", "decompose2->1", "sum1->2", "sum2->2"]),
        ("99+1", "1+99=9+1+90=10+90=100", ["rearrange", "decompose2->1", "sum1->2", "sum2->3"]),
        (
            "125+7+38",
            "7+38+125=8+7+30+125=5+8+7+30+120=5+8+7+20+30+100=7+13+20+30+100=3+7+10+20+30+100=10+10+20+30+100="
            "20+20+30+100=40+30+100=70+100=170",
            [
                "rearrange",
                "decompose2->1",
                "decompose3->1",
                "decompose3->2",
                "sum1->2",
                "decompose2->1",
                "sum1->2",
                "sum2->2",
                "sum2->2",
                "sum2->2",
                "combine2->3",
            ],
        ),
    ],
)
def test_each_rule_gives_the_originals_string(problem, solution, labels):
    steps = ar.solve(problem)
    assert "=".join(s for s, _ in steps) == solution
    assert [lab for _, lab in steps] == labels


@pytest.mark.parametrize("solver", ar.SOLVERS)
def test_every_step_equals_the_problem_value_for_both_solvers(solver):
    rng = np.random.default_rng(7)
    mixed = ProblemParams(max_num=99, max_ents=4, p_ent=0.5, p_mult=0.3, max_mult_num=12, p_paren=0.1)
    problems = np.concatenate(
        [ar.sample_problems(3000, mixed, rng), ar.sample_problems(2000, ProblemParams(max_num=999), rng)]
    )
    for problem in problems:
        value = ar.evaluate(problem)
        steps = ar.solve(problem, solver)
        texts = [problem] + [s for s, _ in steps]
        assert all(ar.evaluate(s) == value for s in texts[1:]), (solver, problem)
        assert all(a != b for a, b in itertools.pairwise(texts)), f"a step repeats its predecessor: {problem}"
        if solver == "original" and "(" not in problem:  # the original records new statements only
            assert len(set(texts)) == len(texts), f"a statement repeats: {problem}"
        assert steps[-1][0] == str(value)


def test_the_two_solvers_differ_and_sorted_keeps_its_labels():
    assert [s for s, _ in ar.solve("27+75", "sorted")] == [s for s, _ in ar.solve("27+75")]  # the documented one
    assert ar.solve("5+36+4+12", "sorted") != ar.solve("5+36+4+12")
    assert {lab for _, lab in ar.solve("3*2+18+7", "sorted")} <= set(ar.STEP_LABELS)
    with pytest.raises(ValueError, match="solver='fast' is not allowed"):
        ar.solve("1+2", "fast")
    with pytest.raises(ValueError, match="solver"):
        ProblemParams(solver="fast")


def test_zipf_draws_one_to_max_with_inverse_power_weights():
    """Independent reference of the original's rule: P(k) = k^-s / sum_{j=1..max} j^-s, k in 1..max."""
    s, hi, n = 1.3, 30, 300_000
    problems = ar.sample_problems(n // 2, ProblemParams(max_num=hi, max_ents=2, zipf_order=s), np.random.default_rng(1))
    values = np.array([int(x) for p in problems for x in p.split("+")])
    ref = np.array([k**-s for k in range(1, hi + 1)])
    ref /= ref.sum()
    freq = np.bincount(values, minlength=hi + 1) / len(values)
    assert freq[0] == 0  # never 0
    assert np.abs(freq[1:] - ref).max() < 4 * np.sqrt(ref[0] * (1 - ref[0]) / len(values))
    with pytest.raises(ValueError, match="max_num=0 is not allowed with zipf_order"):
        ProblemParams(max_num=0, zipf_order=1.0)


def test_small_space_is_enumerated_uniformly_and_split_as_the_original():
    """Reference: every a+b and a+b+c with values in [0, 9] (1,100 problems), 20% (at most val_samples) held out."""
    params = ProblemParams(max_num=9, max_ents=3, p_ent=0.1)  # p_ent does not matter for the enumeration
    reference = {"+".join(map(str, v)) for n in (2, 3) for v in itertools.product(range(10), repeat=n)}
    assert ar.max_value(params) == 27 < 400 and ar.all_problems_size(params) == len(reference) == 1100
    assert ar.small_space(params, max_samples=1101) and not ar.small_space(params, max_samples=1100)
    assert not ar.small_space(ProblemParams(max_num=99, max_ents=5), max_samples=10**9)  # largest answer 495
    in_val = Counter()
    for seed in range(20):
        splits = ar.build_splits(params, n_train=5000, n_val=1000, seed=seed, max_samples=20_000)
        train, val = list(splits["train"]["problem"]), list(splits["validation"]["problem"])
        assert len(val) == 220 and len(train) == 880  # min(20%, 1000) held out, the rest trained on
        assert set(train) | set(val) == reference and not set(train) & set(val)
        in_val.update(len(p.split("+")) for p in val)
    share_two = in_val[2] / sum(in_val.values())  # uniform over problems: 100 of 1100 have two entities
    assert share_two == pytest.approx(100 / 1100, abs=0.02)
    assert ar.small_space_counts(params, 500, 100) == (500, 100)
    sampled = ar.build_splits(params, n_train=50, n_val=10, seed=0)  # the cache (50) is smaller than the space
    assert len(sampled["train"]) == 50 and len(sampled["validation"]) == 10


def test_zero_one_and_sums_below_100_match_the_documented_counts():
    """The 2-term space below 100 (10,000 problems) is what the Done-when counts: its enumeration is complete."""
    params = ProblemParams(max_num=99, max_ents=2)
    everything = set(ar.all_problems(params))
    assert everything == {f"{a}+{b}" for a in range(100) for b in range(100)}
    assert ar.small_space_counts(params, 20_000, 1000) == (9000, 1000)


def test_make_arithmetic_writes_the_originals_solutions_for_every_sum_below_100(tmp_path):
    """The generator CLI: the small-space rule lists all 10,000 problems, each solution as the original's."""
    import subprocess
    import sys

    from datasets import load_dataset

    from tests.helpers import ROOT

    out = tmp_path / "sums"
    cmd = [sys.executable, "data_scripts/make_arithmetic.py", "--out", str(out), "--max_num", "99", "--max_ents", "2"]
    cmd += ["--n_train", "20000", "--n_val", "1000", "--max_samples", "20000", "--n_ood", "0", "--num_proc", "1"]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "9000 train, 1000 validation" in result.stdout
    ds = load_dataset(str(out))
    written = {p: s for split in ("train", "validation") for p, s in zip(ds[split]["problem"], ds[split]["solution"])}
    golden = {r["problem"]: r["solution"] for r in golden_rows() if r["class"] == "sum2_below100"}
    assert written == golden  # the same 10,000 problems, each with the original's solution
    bad = subprocess.run(
        [*cmd[:4], str(tmp_path / "bad"), "--solver", "fast"], cwd=ROOT, capture_output=True, text=True
    )
    assert bad.returncode == 2 and "--solver" in bad.stderr and not (tmp_path / "bad").exists()
