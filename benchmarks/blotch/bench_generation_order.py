"""Batched generation with prompts grouped by length vs in input order, measured in the same run.

`blotch_eval.continue_prompts` (used by evaluation, STaR, augmentation and axing) batches prompts of similar
length together: a batch decodes until its longest row stops, and on mixed 2-3-term sums a random batch almost
always holds a long three-term row. The baseline is the same function fed one input-order chunk at a time (the
batches it built before). Greedy results are asserted equal.

    python benchmarks/blotch/bench_generation_order.py [--model outputs/blotch_vanilla/model] [--rows 2000]

Without ``--model`` a small model is trained here for ``--train_steps`` on mixed 2-3-term sums below 100 (enough
to learn where solutions end). The last line printed is JSON: {"speedup": ..., ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_manipulations import TOK, train_model

from hf_experiments.blotch.arithmetic import ProblemParams, distinct_problems
from hf_experiments.blotch.evaluation import continue_prompts
from hf_experiments.blotch.modeling_blotch import BlotchModel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="a trained BlotchModel folder instead of training one here")
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--train_steps", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=2, help="timed repetitions of each side (best is kept)")
    a = ap.parse_args()
    params = ProblemParams(max_num=99, max_ents=3, p_ent=0.5)
    problems = list(distinct_problems(a.rows, params, np.random.default_rng(0)))
    model = BlotchModel.from_pretrained(a.model).eval() if a.model else train_model(problems, a.train_steps)
    max_new = model.config.max_posencs - max(len(p) for p in problems) - 4
    kw = dict(temperature=0.0, n=1, batch_size=a.batch, max_new_tokens=max_new, stop_ids=[TOK.eos_token_id])

    def grouped() -> list[str]:
        return continue_prompts(model, TOK, problems, None, **kw)[0]

    def input_order() -> list[str]:
        texts: list[str] = []
        for start in range(0, len(problems), a.batch):  # one call per batch: its composition is the input's
            texts += continue_prompts(model, TOK, problems[start : start + a.batch], None, **kw)[0]
        return texts

    continue_prompts(model, TOK, problems[: a.batch], None, **kw)  # warm-up (first calls are slower)
    times: dict[str, float] = {"grouped": float("inf"), "input_order": float("inf")}
    results = {}
    for _ in range(a.repeats):  # interleaved, so that machine load hits both sides alike
        for name, fn in (("input_order", input_order), ("grouped", grouped)):
            t0 = time.perf_counter()
            results[name] = fn()
            times[name] = min(times[name], time.perf_counter() - t0)
    assert results["grouped"] == results["input_order"], "grouping prompts changed greedy outputs"
    out = {
        "speedup": round(times["input_order"] / times["grouped"], 2),
        "grouped_s": round(times["grouped"], 3),
        "input_order_s": round(times["input_order"], 3),
        "rows": a.rows,
        "batch": a.batch,
        "equal_results": True,
        "torch_threads": torch.get_num_threads(),
    }
    print(
        f"generation of {a.rows} rows, batch {a.batch}: input order {out['input_order_s']} s, grouped by "
        f"prompt length {out['grouped_s']} s -> {out['speedup']}x"
    )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
