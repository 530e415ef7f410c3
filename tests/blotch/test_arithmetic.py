"""Arithmetic problems and the step-by-step solver: correctness of every step, the sampler's rules, disjoint
splits, enumeration, OOD, and the dataset folder."""

import os
import re
from collections import Counter

os.environ["HF_HUB_OFFLINE"] = "1"

import itertools

import numpy as np
import pytest

from hf_experiments.blotch import arithmetic as ar
from hf_experiments.blotch.arithmetic import ProblemParams

MIXED = ProblemParams(max_num=99, max_ents=4, p_ent=0.5, p_mult=0.3, max_mult_num=9, p_paren=0.1)


def test_every_step_of_ten_thousand_solutions_equals_the_problem_value():
    rng = np.random.default_rng(0)
    problems = np.concatenate(
        [
            ar.sample_problems(5000, MIXED, rng),
            ar.sample_problems(5000, ProblemParams(max_num=999, max_ents=3, p_ent=0.7), rng),
        ]
    )
    labels_seen = Counter()
    for problem in problems:
        value = ar.evaluate(problem)
        steps = ar.solve(problem, "sorted")  # the original solver: tests/blotch/test_original_solver.py
        assert steps, problem
        texts = [problem] + [s for s, _ in steps]
        assert all(ar.evaluate(s) == value for s in texts[1:]), problem
        assert all(a != b for a, b in itertools.pairwise(texts)), f"a step repeats its predecessor: {problem}"
        assert steps[-1][0] == str(value)
        assert "=" not in "".join(texts)
        labels_seen.update(label for _, label in steps)
    assert set(labels_seen) == set(ar.STEP_LABELS)


def test_sorted_solver_reproduces_the_documented_example_and_labels():
    def solve(problem):
        return ar.solve(problem, "sorted")

    steps = solve("27+75")
    assert "=".join(s for s, _ in steps) == "7+20+75=5+7+20+70=12+20+70=32+70=102"
    assert [label for _, label in steps] == ["decompose", "decompose", "sum", "sum", "sum"]
    assert solve("3*2+18")[:3] == [("2*3+18", "rearrange"), ("1*3+3+18", "expand"), ("3+3+18", "expand")]
    assert solve("0*7+3") == [("0+3", "expand"), ("3", "sum")]
    assert solve("(4+9)*3")[0] == ("13*3", "sum")  # parenthetical first
    assert solve("5+300")[-1] == ("305", "combine")  # no equal-length pair: across magnitudes
    assert ar.solve("(4+9)*3")[:2] == [("13*3", "sum1->2"), ("3*13", "rearrange")]  # the original's rules inside


def test_parse_round_trip_and_bad_input():
    for text in ["1+2", "3*(4+5*6)+7", "((1+2)*3+4)*2", "0*0"]:
        assert ar.to_text(ar.parse(text)) == text
    assert ar.evaluate("3*(4+5*6)+7") == 3 * (4 + 5 * 6) + 7
    for bad in ["", "1+", "(1+2", "1-2", "1++2", "12)"]:
        with pytest.raises(ValueError, match="expression"):
            ar.parse(bad)
    with pytest.raises(ValueError, match="two entities"):
        ar.solve("12")


def test_sampler_respects_every_parameter():
    params = ProblemParams(max_num=50, max_ents=5, p_ent=0.3, p_mult=0.5, max_mult_num=6, space_mults=True)
    problems = ar.sample_problems(20_000, params, np.random.default_rng(1))
    n_ents = np.array([len(re.findall(r"\d+", p)) for p in problems])
    assert n_ents.min() == 2 and n_ents.max() == 5
    assert abs((n_ents - 2).mean() - 3 * 0.3) < 0.03  # Binomial(max_ents - 2, p_ent)
    assert not any(re.search(r"\*\d+\*", p) for p in problems)  # space_mults
    for p in problems[:2000]:
        for term in p.split("+"):
            factors = [int(f) for f in term.split("*")]
            assert max(factors) <= (6 if len(factors) > 1 else 50)
    ops = "".join(re.sub(r"\d", "", p) for p in problems)
    assert 0.3 < ops.count("*") / len(ops) < 0.5  # p_mult, thinned by space_mults
    unspaced = ar.sample_problems(
        5000, ProblemParams(max_ents=4, p_ent=1.0, p_mult=1.0, space_mults=False), np.random.default_rng(2)
    )
    assert all(p.count("*") == 3 for p in unspaced)


def test_zipf_and_parentheticals():
    rng = np.random.default_rng(3)
    zipf = ar.sample_problems(20_000, ProblemParams(max_num=99, zipf_order=1.5), rng)
    values = np.array([int(x) for p in zipf for x in p.split("+")])
    pmf = ar.value_pmf(99, 1.5)
    assert pmf[0] == 0 and (values == 0).sum() == 0  # the original's Zipf never draws 0
    assert abs((values == 1).mean() - pmf[1]) < 0.02 and (values == 1).mean() > 5 * (values == 50).mean()
    paren = ar.sample_problems(2000, ProblemParams(max_ents=4, p_paren=0.5, p_mult=0.5), rng)
    assert any("(" in p for p in paren)
    assert all(ar.to_text(ar.parse(p)) == p for p in paren)
    flat = ar.sample_problems(500, ProblemParams(max_ents=2, p_paren=1.0), rng)  # max_ents - 1 < 2: none
    assert not any("(" in p for p in flat)


def test_enumeration_matches_the_sampler():
    params = ProblemParams(max_num=4, max_ents=3, p_ent=0.3, p_mult=0.4, max_mult_num=2)
    texts, probs = ar.enumerate_problems(params)
    assert len(texts) == len(set(texts)) == ar.problem_space_size(params)
    assert probs.sum() == pytest.approx(1.0)
    draws = Counter(ar.sample_problems(200_000, params, np.random.default_rng(4)))
    assert set(draws) <= set(texts)
    top = np.argsort(-probs)[:20]
    for i in top:
        assert draws[texts[i]] / 200_000 == pytest.approx(probs[i], abs=0.004)


@pytest.mark.parametrize(
    "params",
    [
        ProblemParams(max_num=9, max_ents=2),  # 100 problems: enumerated
        ProblemParams(max_num=99, max_ents=3),
    ],
)  # ~1M: sampled
def test_splits_are_distinct_and_disjoint(params):
    n_val = 30
    n_train = 60 if params.max_num == 9 else 3000
    splits = ar.build_splits(params, n_train, n_val, n_ood=20, seed=5)
    train, val, ood = (list(splits[s]["problem"]) for s in ("train", "validation", "ood"))
    assert len(train) == n_train and len(val) == n_val and len(ood) == 20
    assert len(set(train)) == n_train and len(set(val)) == n_val
    assert not set(train) & set(val) and not set(ood) & (set(train) | set(val))
    assert all(ar.is_out_of_distribution(p, params) for p in ood)
    row = splits["train"][0]
    assert row["solution"].split("=")[-1] == str(row["answer"]) == str(ar.evaluate(row["problem"]))
    assert len(row["step_labels"]) == row["n_steps"] == row["solution"].count("=") + 1


def test_small_space_too_small_raises_and_bad_params_raise():
    with pytest.raises(ValueError, match="100 distinct problems"):
        ar.distinct_problems(101, ProblemParams(max_num=9, max_ents=2), np.random.default_rng(0))
    with pytest.raises(ValueError, match="max_ents"):
        ProblemParams(max_ents=1)
    with pytest.raises(ValueError, match="p_mult"):
        ProblemParams(p_mult=1.5)
    with pytest.raises(ValueError, match="zipf_order"):
        ProblemParams(zipf_order=-1)


def test_dataset_folder_round_trip(tmp_path):
    from datasets import load_dataset

    from hf_experiments.core.dataset_io import read_card_params

    params = ProblemParams(max_num=20, max_ents=3)
    out = ar.write_arithmetic_dataset(str(tmp_path / "arith"), params, n_train=50, n_val=10, n_ood=5, seed=1)
    ds = load_dataset(out)
    assert {s: len(ds[s]) for s in ds} == {"train": 50, "validation": 10, "ood": 5}
    card = read_card_params(out)
    assert card["max_num"] == 20 and card["n_train"] == 50 and card["generator"] == "arithmetic"
    again = ar.build_splits(params, 50, 10, 5, seed=1)
    assert list(again["train"]["solution"]) == list(ds["train"]["solution"])  # deterministic in the seed
