"""Write ``original_solutions.jsonl.gz``: (problem, solution, labels) pairs produced by the ORIGINAL solver.

The original (grantsrb/blotching, ``envs.py``) is run as an oracle outside this repository; nothing of it is
imported by the package or the tests, which only read the file this writes. It needs numpy only.

    git clone https://github.com/grantsrb/blotching /tmp/blotch_orig   # commit 7809678 was used
    python tests/blotch/data/make_original_golden.py /tmp/blotch_orig

Classes: every ``a+b`` with a, b in [0, 99] (10,000 problems), then 2,000 distinct problems drawn by the original's
own ``MathEnv.sample_prob`` (numpy seed 0) for each sampled class below.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

SAMPLED = {  # class -> the original's sample_prob keywords
    "sum3_p_ent_half": {"max_num": 99, "max_ents": 3, "p_ent": 0.5},
    "sum4_p_ent_one": {"max_num": 99, "max_ents": 4, "p_ent": 1.0},
    "sum_3digit": {"max_num": 999, "max_ents": 3, "p_ent": 0.5},
    "products": {"max_num": 99, "max_ents": 3, "p_ent": 0.5, "p_mult": 0.5, "max_mult_num": 9},
    "products_2digit": {"max_num": 99, "max_ents": 4, "p_ent": 0.7, "p_mult": 0.4, "max_mult_num": 20},
    "products_unspaced": {
        "max_num": 20,
        "max_ents": 3,
        "p_ent": 1.0,
        "p_mult": 0.6,
        "max_mult_num": 6,
        "space_mults": False,
    },
}
PER_CLASS = 2000


def main(original_dir: str, out: str | None = None) -> None:
    spec = importlib.util.spec_from_file_location("original_envs", Path(original_dir) / "envs.py")
    envs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(envs)
    find_soln = envs.MathEnv.find_soln
    rows = []
    for a in range(100):
        for b in range(100):
            rows.append(("sum2_below100", f"{a}+{b}"))
    np.random.seed(0)
    for name, kwargs in SAMPLED.items():
        seen: dict[str, None] = {}
        while len(seen) < PER_CLASS:
            seen.setdefault(envs.MathEnv.sample_prob(**kwargs), None)
        rows.extend((name, p) for p in seen)
    path = Path(out or Path(__file__).with_name("original_solutions.jsonl.gz"))
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for name, problem in rows:
            solution, labels = find_soln(problem, ret_labels=True)
            f.write(json.dumps({"class": name, "problem": problem, "solution": solution, "labels": labels}) + "\n")
    print(f"wrote {len(rows)} pairs to {path}")


if __name__ == "__main__":
    main(*sys.argv[1:])
