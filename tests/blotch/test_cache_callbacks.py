"""Cache callbacks: the plateau rule and the schedule on synthetic loss curves; every row a callback keeps
satisfies its rule, checked here independently with `arithmetic.evaluate`; in-place vs append; axing never
touches the problem or the answer; a run killed after a manipulation and resumed equals an uninterrupted one;
two ranks end every round with the same cache."""

from __future__ import annotations

import csv
import json
import shutil
import signal
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from hf_experiments.blotch.arithmetic import ProblemParams, distinct_problems, evaluate, solve
from hf_experiments.blotch.self_training.callbacks import (
    AugmentCallback,
    AxeCallback,
    InternalizeCallback,
    StarCallback,
)
from hf_experiments.blotch.self_training.data_cache import CACHE_DIR, DataCache
from hf_experiments.blotch.self_training.rounds import CacheContext
from hf_experiments.blotch.self_training.schedule import ManipulationSchedule, epoch_mean_losses, plateaued
from hf_experiments.blotch.tokenization_arith import arith_tokenizer
from hf_experiments.core.run_folder import COMPLETE_MARKER
from tests.helpers import TINY_DATA_CACHE, final_weights, launch_two_ranks, popen, run, write_config

TOK = arith_tokenizer()


def correct(problem: str, solution: str) -> bool:
    """The rule, independently: the last step is the number evaluate(problem), every step evaluates to it."""
    value = evaluate(problem)
    steps = solution.split("=")
    return steps[-1].isdigit() and int(steps[-1]) == value and all(evaluate(s) == value for s in steps)


def gt(problem: str) -> str:
    return "=".join(s for s, _ in solve(problem))


# --------------------------------------------------------------------------------------------
# Scheduling
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "losses, expected",
    [
        ([3.0, 2.5, 2.0, 1.6, 1.3], False),  # still falling fast
        ([3.0, 2.0, 1.50, 1.495, 1.497], True),  # two epochs within 1% of the best: plateau
        ([3.0, 2.0, 1.50, 1.499, 1.40], False),  # the last epoch improved by > 1%
        ([3.0, 2.0, 1.50, 1.52, 1.51], True),  # noisy, no progress
        ([3.0, 2.0], False),  # too few epochs to tell
    ],
)
def test_plateau_rule_on_synthetic_curves(losses, expected):
    assert plateaued(losses, patience=2, rel_tol=0.01) is expected


def test_plateau_rejects_bad_parameters():
    with pytest.raises(ValueError, match="patience=0"):
        plateaued([1.0, 1.0], patience=0, rel_tol=0.01)


def _schedule(rounds_at: list[int], **kw) -> ManipulationSchedule:
    cache = DataCache(TOK, ["1+2"], ["3"])
    cache.ledger.rounds = [{"epoch": e} for e in rounds_at]
    return ManipulationSchedule(cache, **kw)


def test_every_k_epochs_after_pre_epochs():
    s = _schedule([], pre_epochs=2, aug_mod=3)
    assert [c for c in range(12) if s.due_at(c, [])] == [2, 5, 8, 11]
    s = _schedule([], pre_epochs=0, aug_mod=1)
    assert [c for c in range(4) if s.due_at(c, [])] == [1, 2, 3]  # never before any training
    assert not any(_schedule([], aug_mod=0).due_at(c, []) for c in range(5))


def test_last_aug_epoch_ends_the_rounds_for_both_rules():
    s = _schedule([], pre_epochs=2, aug_mod=3, last_aug_epoch=8)
    assert [c for c in range(20) if s.due_at(c, [])] == [2, 5, 8]
    flat = [2.0, 1.0, 0.99, 0.99, 0.99, 0.99, 0.99]
    s = _schedule([], aug_mod=-1, patience=2, rel_tol=0.05, last_aug_epoch=5)
    assert [c for c in range(1, 8) if s.due_at(c, flat[:c])] == [4, 5]


def test_plateau_schedule_counts_only_epochs_since_the_last_round_and_keeps_the_gap():
    flat = [2.0, 1.0, 0.99, 0.99, 0.99, 0.99, 0.99]
    s = _schedule([], aug_mod=-1, min_aug_gap=1, patience=2, rel_tol=0.05)
    assert [c for c in range(1, 8) if s.due_at(c, flat[:c])] == [4, 5, 6, 7]
    # After a round at epoch 3, epochs 3.. form a new curve: a plateau needs 3 epochs of it again.
    s = _schedule([3], aug_mod=-1, min_aug_gap=1, patience=2, rel_tol=0.05)
    assert not s.due_at(5, flat[:5]) and s.due_at(6, flat[:6])
    s = _schedule([3], aug_mod=-1, min_aug_gap=4, patience=2, rel_tol=0.05)
    assert not s.due_at(6, flat[:6]) and s.due_at(7, flat[:7])


def test_epoch_means_come_from_the_logged_losses_of_each_epoch():
    history = [
        {"step": 2, "loss": 4.0},
        {"step": 4, "loss": 2.0},
        {"step": 4, "eval_loss": 9.0},
        {"step": 6, "loss": 1.0},
        {"step": 8, "loss": 3.0},
        {"step": 9, "aug/kept": 3},
    ]
    assert epoch_mean_losses(history, [0, 4, 9], [4, 5, 2]) == [3.0, 2.0, None]


def test_fresh_epoch_detection():
    s = _schedule([])
    s.cache.ledger.epoch_starts, s.cache.ledger.epoch_updates = [0, 3], [3, 4]
    assert s.epochs_done(SimpleNamespace(global_step=5)) is None  # inside epoch 2 (a resume into it)
    assert s.epochs_done(SimpleNamespace(global_step=7)) == 2


# --------------------------------------------------------------------------------------------
# Callbacks on a real trainer and model
# --------------------------------------------------------------------------------------------
PARAMS = ProblemParams(max_num=9, max_ents=3)


def _rows(n: int, seed: int) -> tuple[list[str], list[str]]:
    problems = list(distinct_problems(n, PARAMS, np.random.default_rng(seed)))
    return problems, [gt(p) for p in problems]


def _context(tmp_path: Path, model, cache: DataCache, blotch_p=None, batch=32) -> CacheContext:
    from hf_experiments.blotch.blotch_config import BlotchTrainingArguments
    from hf_experiments.blotch.experiment import BlotchCacheTrainer

    args = BlotchTrainingArguments(output_dir=str(tmp_path / "t"), report_to="none", seed=0)
    trainer = BlotchCacheTrainer(model=model, args=args, processing_class=TOK)
    trainer.attach_cache(cache)
    return CacheContext(cache, trainer, TOK, tmp_path, blotch_p, batch, model.config.max_posencs)


def test_internalize_removes_leading_steps_and_keeps_problem_and_answer(tmp_path):
    from hf_experiments.blotch.modeling_blotch import BlotchModel
    from tests.blotch.test_data_cache import tiny_model

    problems, solutions = _rows(40, 0)
    cache = DataCache(TOK, problems, solutions)
    ctx = _context(tmp_path, tiny_model(), cache)
    assert isinstance(ctx.model, BlotchModel)
    merged, table, counts = InternalizeCallback(ctx, ManipulationSchedule(cache), k=2).apply(0, None)
    for p, old, new in zip(problems, solutions, cache.solutions):
        steps = old.split("=")
        assert new == "=".join(steps[2:-1] + steps[-1:])  # two leading intermediate steps fewer, answer kept
        assert correct(p, new)
    assert cache.problems == problems
    assert counts["replaced"] == merged.kept == sum(o != n for o, n in zip(solutions, cache.solutions)) > 0
    assert len(table) == merged.kept


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small blotch-token model trained for a few hundred steps: it solves some problems and writes
    shorter solutions at higher blotch levels, so the callbacks have something to keep."""
    tmp = tmp_path_factory.mktemp("trained")
    cfg = write_config(
        tmp / "m.json",
        experiment="blotch",
        max_num=9,
        max_ents=3,
        init_samples=800,
        val_samples=50,
        ood_samples=0,
        d_model=32,
        n_heads=4,
        n_layers=2,
        h_mult=2,
        max_posencs=64,
        blotch_p_min=0.0,
        blotch_p_max=0.6,
        n_btokens=4,
        batch_size=32,
        max_steps=400,
        logging_steps=100,
        save_steps=1000,
        report_to="none",
        lr=0.003,
        warmup_steps=20,
        gen_eval_samples=8,
        max_eval_batches=1,
        save_root=str(tmp / "out"),
    )
    res = run("--config", str(cfg))
    assert res.returncode == 0, res.stderr[-3000:]
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tmp / "out" / "m" / "model")
    data = json.loads((tmp / "out" / "m" / "run_config.json").read_text())
    return model, data


@pytest.mark.slow
def test_star_adds_only_correct_shorter_new_rows(tmp_path, trained):
    model, _ = trained
    problems, solutions = _rows(100, 1)
    cache = DataCache(TOK, problems, solutions, max_samples=1000)
    ctx = _context(tmp_path, model, cache, blotch_p=0.6, batch=64)
    star = StarCallback(ctx, ManipulationSchedule(cache), PARAMS, exclude=set(problems), loops=4, temperature=0.7)
    merged, table, counts = star.apply(0, None)
    new = list(zip(cache.problems[100:], cache.solutions[100:]))
    assert merged.tried == 256 and len(new) == merged.kept == counts["added"] == len(table) > 0
    assert cache.problems[:100] == problems and cache.solutions[:100] == solutions  # nothing else touched
    for p, s in new:
        assert p not in problems and correct(p, s) and len(s) < len(gt(p))
    assert set(cache.origin[100:]) == {"star"} and len({p for p, _ in new}) == len(new)


@pytest.mark.slow
@pytest.mark.parametrize("in_place", [True, False])
def test_augmentation_keeps_correct_strictly_shorter_in_place_or_appended(tmp_path, trained, in_place):
    model, _ = trained
    problems, solutions = _rows(128, 2)
    cache = DataCache(TOK, problems, solutions, max_samples=1000)
    ctx = _context(tmp_path, model, cache, blotch_p=0.6, batch=64)
    aug = AugmentCallback(ctx, ManipulationSchedule(cache), loops=-1, temperature=0.7, in_place=in_place)
    merged, _, _ = aug.apply(0, None)
    assert merged.kept > 0
    if in_place:
        assert len(cache) == 128 and cache.problems == problems
        changed = [i for i in range(128) if cache.solutions[i] != solutions[i]]
        assert len(changed) == merged.kept
        for i in changed:
            assert cache.origin[i] == "aug" and correct(problems[i], cache.solutions[i])
            assert len(cache.solutions[i]) < len(solutions[i])
    else:
        assert cache.solutions[:128] == solutions and len(cache) == 128 + merged.kept
        old = dict(zip(problems, solutions))
        for p, s in zip(cache.problems[128:], cache.solutions[128:]):
            assert correct(p, s) and len(s) < len(old[p])


@pytest.mark.slow
def test_axing_removes_one_intermediate_step_never_problem_or_answer(tmp_path, trained):
    model, _ = trained
    problems, solutions = _rows(128, 3)
    cache = DataCache(TOK, problems, solutions)
    ctx = _context(tmp_path, model, cache, blotch_p=0.0, batch=64)
    axe = AxeCallback(ctx, ManipulationSchedule(cache), loops=-1, tol=10.0, abs_tol=True, comp_steps=2)
    merged, table, _ = axe.apply(0, None)
    assert merged.kept > 0 and cache.problems == problems
    for i in range(128):
        old, new = solutions[i].split("="), cache.solutions[i].split("=")
        if cache.solutions[i] == solutions[i]:
            continue
        assert new[-1] == old[-1] and correct(problems[i], cache.solutions[i])
        assert len(new) == len(old) - 1 and any(old[:j] + old[j + 1 :] == new for j in range(len(old) - 1))
    assert {r["problem"] for r in table} <= set(problems)


@pytest.mark.parametrize(
    "bad, key",
    [
        ({"star_loops": 1, "max_samples": None}, "star_loops"),  # no room to grow
        ({"star_loops": 0, "aug_loops": 1, "in_place": False, "max_samples": 64}, "in_place"),
        ({"star_rationalize": True, "star_loops": 0}, "star_rationalize"),
        ({"dataloader_num_workers": 1, "dataloader_persistent_workers": True}, "dataloader_persistent_workers"),
        ({"aug_mod": -1, "logging_strategy": "epoch"}, "aug_mod"),
        ({"aug_loops": -2}, "aug_loops"),
        ({"pre_epochs": 3, "last_aug_epoch": 2}, "last_aug_epoch"),  # no round could ever run
    ],
)
def test_bad_cache_configs_are_rejected(tmp_path, bad, key):
    from hf_experiments.core.config import ConfigError
    from hf_experiments.core.parsing import parse_config_strict

    with pytest.raises(ConfigError) as err:
        parse_config_strict(["--config", str(_run_config(tmp_path, "bad", **bad))])
    assert err.value.key == key


# --------------------------------------------------------------------------------------------
# Through trainers/run.py: resume equality and two ranks
# --------------------------------------------------------------------------------------------
def _run_config(tmp_path: Path, name: str, **extra) -> Path:
    cfg = {**TINY_DATA_CACHE, "save_root": str(tmp_path / "out")}
    return write_config(tmp_path / f"{name}.json", **{**cfg, **extra})


def _cache_of(run_dir: Path) -> dict:
    last = max(run_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    cache = DataCache(TOK, [], [])
    cache.load(last / CACHE_DIR)
    return cache.table()


@pytest.mark.slow
def test_killed_after_a_manipulation_and_resumed_equals_uninterrupted(tmp_path):
    ref = run("--config", str(_run_config(tmp_path, "ref")))
    assert ref.returncode == 0, ref.stderr[-3000:]
    ref_dir = tmp_path / "out" / "ref"
    rounds = sorted(p.name for p in (ref_dir / "manipulations").iterdir())
    assert "round_1_internalize.csv" in rounds

    cfg, run_dir = _run_config(tmp_path, "killed"), tmp_path / "out" / "killed"
    proc = popen("--config", str(cfg))
    marker = run_dir / "checkpoint-8" / COMPLETE_MARKER  # epochs of 4 steps: after the round at step 4
    t0 = time.time()
    while not marker.exists():
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.time() - t0 < 600
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "metrics.json").exists()
    res = run("--config", str(cfg))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resuming from" in res.stderr
    assert _cache_of(run_dir) == _cache_of(ref_dir)
    a, b = final_weights(ref_dir), final_weights(run_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
    with open(run_dir / "cache_history.csv") as f, open(ref_dir / "cache_history.csv") as g:
        assert list(csv.DictReader(f)) == list(csv.DictReader(g))


@pytest.mark.skipif(
    shutil.which("accelerate", path=str(Path(sys.executable).parent)) is None,
    reason="accelerate CLI not installed in this environment",
)
def test_two_ranks_end_every_round_with_the_same_cache(tmp_path):
    """Each round splits its rows over the two ranks (STaR samples with a per-rank seed); the run checks a
    digest of the cache on both ranks after every round and stops on a mismatch."""
    res = launch_two_ranks("--config", str(_run_config(tmp_path, "ddp")), timeout=900)
    assert res.returncode == 0, res.stderr[-4000:]
    run_dir = tmp_path / "out" / "ddp"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["manip_rounds"] == 2
    table = _cache_of(run_dir)
    assert len(table["problem"]) == metrics["cache_rows"]
    with open(run_dir / "manipulations" / "round_0_star.csv") as f:
        star_rows = list(csv.DictReader(f))
    for row in star_rows:  # whatever either rank kept is in the shared cache
        assert row["problem"] in table["problem"]
