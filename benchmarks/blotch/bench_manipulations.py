"""Speed of the data-cache manipulation rounds (``hf_experiments.blotch.self_training``) against a straightforward
implementation measured in the same run: one row at a time, greedy decoding without the KV cache (every new
token re-reads the whole row), and for axing one forward per row and per candidate removal.

1. A STaR round (new problems, greedy so that both sides must keep exactly the same rows);
2. an augmentation round (cached rows);
3. an axing round (cached rows; generation to find the solved rows, then every single-step removal scored);
4. axing's scoring alone on every row (``removal_costs``), which does not depend on how many rows the model
   solves: all removals in padded batches vs two single-row forwards per removal.

The model is a real ``BlotchModel`` (d_model 64, 2 layers) trained briefly here on 2-term sums below 20, so that
it solves part of the rows and axing has work to do; ``--model DIR`` loads a trained one instead (a run's
``model/`` folder). Results of the two implementations are asserted equal.

    python benchmarks/blotch/bench_manipulations.py [--rows 64] [--train_steps 300] [--quick]

The last line printed is JSON: {"star_speedup": ..., "augment_speedup": ..., "axe_speedup": ..., ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
import torch.nn.functional as F

from hf_experiments.blotch.arithmetic import ProblemParams, distinct_problems, evaluate
from hf_experiments.blotch.blotching import excise, pad_rows, step_segments
from hf_experiments.blotch.configuration_blotch import BlotchConfig
from hf_experiments.blotch.evaluation import btoken_id, generate_solutions
from hf_experiments.blotch.modeling_blotch import BlotchModel
from hf_experiments.blotch.self_training.axing import REL_FLOOR, axe, removal_costs
from hf_experiments.blotch.self_training.solutions import ground_truth, is_correct, solution_length
from hf_experiments.blotch.self_training.star import augment, star
from hf_experiments.blotch.tokenization_arith import arith_tokenizer, encode_rows

TOK = arith_tokenizer()


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------
def train_model(problems: Sequence[str], steps: int, seed: int = 0) -> BlotchModel:
    """A small model trained on full solutions with a plain loop (enough to solve part of the rows)."""
    torch.manual_seed(seed)
    model = BlotchModel(BlotchConfig(vocab_size=len(TOK), d_model=64, n_heads=4, n_layers=2, max_posencs=128))
    rows = encode_rows(TOK, [f"{p}={ground_truth(p)}" for p in problems])
    eq = TOK.convert_tokens_to_ids("=")
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        ids = pad_rows([rows[i] for i in torch.randint(len(rows), (64,), generator=gen)], TOK.pad_token_id)
        _, n_eq = step_segments(ids, eq, TOK.pad_token_id)
        no_drop = torch.zeros(len(ids), int(n_eq.max()) + 1, dtype=torch.bool)
        model(**excise(ids, no_drop, eq, TOK.pad_token_id)).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return model.eval()


# --------------------------------------------------------------------------------------------
# The straightforward baseline: one row at a time, no KV cache, no padding
# --------------------------------------------------------------------------------------------
def row_ids(text: str, btok: int | None, eos: bool) -> torch.Tensor:
    ids = torch.as_tensor(encode_rows(TOK, [text], add_eos=eos)[0])
    return ids if btok is None else torch.cat([torch.tensor([btok]), ids])


@torch.no_grad()
def greedy_no_cache(model: BlotchModel, problem: str, btok: int | None, max_new: int) -> tuple[str, bool]:
    ids = row_ids(f"{problem}=", btok, eos=False)
    n_real = model.config.btoken_offset
    out = []
    for _ in range(max_new):
        nxt = int(model(input_ids=ids[None]).logits[0, -1, :n_real].argmax())
        if nxt == TOK.eos_token_id:
            return "".join(TOK.convert_ids_to_tokens(out)), True
        out.append(nxt)
        ids = torch.cat([ids, torch.tensor([nxt])])
    return "".join(TOK.convert_ids_to_tokens(out)), False


def baseline_filter(model, problems, limits, btok, max_new) -> list[tuple[str, str | None]]:
    """(generated text, kept solution or None) per row."""
    out = []
    for problem, limit in zip(problems, limits):
        text, done = greedy_no_cache(model, problem, btok, max_new)
        ok = done and is_correct(problem, text) and solution_length(text) < limit
        out.append((text, text if ok else None))
    return out


@torch.no_grad()
def window_loss(model: BlotchModel, text: str, btok: int | None, first: int, last: int) -> tuple[float, bool]:
    """Mean token loss of segments first..last of one row; and whether the argmax gets the answer right."""
    ids = row_ids(text, btok, eos=True)
    logits = model(input_ids=ids[None]).logits[0, :-1, : model.config.btoken_offset]  # (T-1, V)
    target = ids[1:]
    seg = torch.cumsum(ids == TOK.convert_tokens_to_ids("="), 0)[1:]  # segment of each target
    inside = (seg >= first) & (seg <= last)
    loss = float(F.cross_entropy(logits[inside], target[inside]))
    answer = (seg == seg.max()) & (target != TOK.convert_tokens_to_ids("="))
    return loss, bool((logits[answer].argmax(-1) == target[answer]).all())


def baseline_costs(model, problem, solution, comp_steps, btok) -> list[tuple[float, float, bool, str]]:
    """(L_with, L_without, answer_ok, shortened solution) of every single-step removal: two forwards each."""
    steps = solution.split("=")
    k = len(steps)
    out = []
    for j in range(1, k):
        last = k if comp_steps == -1 else min(j + comp_steps, k)
        with_, _ = window_loss(model, f"{problem}={solution}", btok, j + 1, last)
        short = "=".join(steps[: j - 1] + steps[j:])
        without, ok = window_loss(model, f"{problem}={short}", btok, j, last - 1)
        out.append((with_, without, ok, short))
    return out


def baseline_axe(model, problems, solutions, tol, abs_tol, comp_steps, btok, max_new) -> list[str | None]:
    kept: list[str | None] = []
    for problem, solution in zip(problems, solutions):
        text, done = greedy_no_cache(model, problem, btok, max_new)
        if not (done and text.rsplit("=", 1)[-1] == str(evaluate(problem))):
            kept.append(None)
            continue
        best = None
        for with_, without, ok, short in baseline_costs(model, problem, solution, comp_steps, btok):
            cost = without - with_ if abs_tol else (without - with_) / max(with_, REL_FLOOR)
            if ok and (best is None or cost < best[0]):
                best = (cost, short)
        kept.append(best[1] if best is not None and best[0] <= tol else None)
    return kept


# --------------------------------------------------------------------------------------------
def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=64, help="rows per round")
    ap.add_argument("--train_steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=256, help="generation / scoring batch of the batched side")
    ap.add_argument("--model", default=None, help="a trained BlotchModel folder instead of training one here")
    ap.add_argument("--max_num", type=int, default=19)
    ap.add_argument("--quick", action="store_true", help="16 rows, 100 training steps")
    a = ap.parse_args()
    if a.quick:
        a.rows, a.train_steps = 16, 100
    params = ProblemParams(max_num=a.max_num, max_ents=2)
    problems = list(distinct_problems(2 * a.rows, params, np.random.default_rng(0)))
    cached, new = problems[: a.rows], problems[a.rows :]
    t0 = time.perf_counter()
    model = BlotchModel.from_pretrained(a.model).eval() if a.model else train_model(cached, a.train_steps)
    train_s = time.perf_counter() - t0
    btok = btoken_id(model, None)
    solutions = [ground_truth(p) for p in cached]
    max_new = max(solution_length(s) for s in solutions) + 8
    axe_kw = {"tol": 1.0, "abs_tol": True, "comp_steps": 2}

    ours, base, kept = {}, {}, {}
    # The batched generation itself must write what one-at-a-time greedy decoding writes (not timed).
    batched_texts = [t[0] for t in generate_solutions(model, TOK, new, None, 0.0, 1, a.batch, max_new).texts]
    res, ours["star"] = timed(
        lambda: star(model, TOK, new, temperature=0.0, blotch_p=None, batch_size=a.batch, max_new_tokens=max_new)
    )
    ref, base["star"] = timed(
        lambda: baseline_filter(model, new, [solution_length(ground_truth(p)) for p in new], btok, max_new)
    )
    assert [t for t, _ in ref] == batched_texts, "generation: batched and one-at-a-time texts differ"
    assert res.solutions == [k for _, k in ref], "STaR: batched and one-at-a-time results differ"
    kept["star"] = res.kept
    res, ours["augment"] = timed(
        lambda: augment(
            model, TOK, cached, solutions, temperature=0.0, blotch_p=None, batch_size=a.batch, max_new_tokens=max_new
        )
    )
    ref, base["augment"] = timed(
        lambda: baseline_filter(model, cached, [solution_length(s) for s in solutions], btok, max_new)
    )
    assert res.solutions == [k for _, k in ref], "augmentation: batched and one-at-a-time results differ"
    kept["augment"] = res.kept
    res, ours["axe"] = timed(
        lambda: axe(model, TOK, cached, solutions, blotch_p=None, batch_size=a.batch, max_new_tokens=max_new, **axe_kw)
    )
    ref, base["axe"] = timed(lambda: baseline_axe(model, cached, solutions, btok=btok, max_new=max_new, **axe_kw))
    assert res.solutions == ref, "axing: batched and one-at-a-time results differ"
    kept["axe"] = res.kept
    solved = int(res.stats["solved"])
    # Axing's scoring alone on every row (solved or not): all removals in padded batches vs two forwards each.
    rc, ours["axe_scoring"] = timed(
        lambda: removal_costs(model, TOK, cached, solutions, comp_steps=2, batch_size=a.batch)
    )
    ref_c, base["axe_scoring"] = timed(
        lambda: [c for p, s in zip(cached, solutions) for c in baseline_costs(model, p, s, 2, btok)]
    )
    np.testing.assert_allclose(rc.loss_with, [c[0] for c in ref_c], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(rc.loss_without, [c[1] for c in ref_c], rtol=1e-4, atol=1e-5)
    assert rc.answer_ok.tolist() == [c[2] for c in ref_c], "axing: answer checks differ"
    kept["axe_scoring"] = len(rc.row)

    print(f"{'round':<12}{'rows':>6}{'kept':>6}{'batched s':>11}{'baseline s':>12}{'speedup':>9}")
    for name in ours:
        print(
            f"{name:<12}{a.rows:>6}{kept[name]:>6}{ours[name]:>11.2f}{base[name]:>12.2f}"
            f"{base[name] / ours[name]:>8.1f}x"
        )
    print(
        f"(axing: {solved} of {a.rows} rows solved; axe_scoring scores all {len(rc.row)} removals of all rows; "
        f"model trained {train_s:.0f} s)"
    )
    result = {
        **{f"{k}_speedup": round(base[k] / ours[k], 2) for k in ours},
        **{f"{k}_batched_s": round(ours[k], 3) for k in ours},
        **{f"{k}_baseline_s": round(base[k], 3) for k in ours},
        **{f"{k}_kept": kept[k] for k in ("star", "augment", "axe")},
        "rows": a.rows,
        "axe_solved": solved,
        "removals_scored": len(rc.row),
        "equal_results": True,
        "device": "cpu",
        "torch_threads": torch.get_num_threads(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
