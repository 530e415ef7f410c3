"""Generate arithmetic problems with step-by-step solutions (semantic blotching) as a dataset folder.

    python data_scripts/make_arithmetic.py --out data/arith_sums99 --max_num 99 --max_ents 3 --n_train 100000

Columns: ``problem``, ``solution`` (``step_1=...=answer``), ``step_labels``, ``answer``, ``n_steps``; splits
``train`` and ``validation`` (distinct, disjoint problems) and ``ood`` (larger numbers / more entities).
Solving
runs on all cores (``datasets.map(num_proc=...)``) with a progress bar. Train with it by setting
``dataset_path`` in a blotch config.
"""

from __future__ import annotations

import argparse
import os
import sys

from hf_experiments.blotch.arithmetic import ProblemParams, small_space, small_space_counts, write_arithmetic_dataset


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="dataset folder to write")
    defaults = ProblemParams()
    parser.add_argument("--max_num", type=int, default=defaults.max_num, help="largest number (inclusive)")
    parser.add_argument("--max_ents", type=int, default=defaults.max_ents, help="most entities (>= 2)")
    parser.add_argument("--p_ent", type=float, default=defaults.p_ent, help="P(each entity beyond two)")
    parser.add_argument("--p_mult", type=float, default=defaults.p_mult, help="P(an operator is '*')")
    parser.add_argument("--max_mult_num", type=int, default=defaults.max_mult_num, help="largest multiplicand")
    parser.add_argument(
        "--space_mults",
        type=lambda s: s.lower() in ("1", "true", "yes"),
        default=True,
        help="never two '*' in a row (true/false)",
    )
    parser.add_argument("--zipf_order", type=float, default=0.0, help="Zipf exponent of numbers (0: uniform)")
    parser.add_argument("--p_paren", type=float, default=0.0, help="P(an entity is a parenthetical)")
    parser.add_argument(
        "--solver",
        choices=("original", "sorted"),
        default="original",
        help="solution steps: the original's (grantsrb/blotching find_soln) or ours (sorted)",
    )
    parser.add_argument(
        "--max_samples",
        type=int,
        default=None,
        help="training-cache size (default n_train): a space with answers below 400 and fewer problems "
        "than this is enumerated and split as the original does",
    )
    parser.add_argument("--n_train", type=int, default=100_000, help="training problems")
    parser.add_argument("--n_val", type=int, default=1000, help="validation problems")
    parser.add_argument("--n_ood", type=int, default=1000, help="out-of-distribution problems (0: none)")
    parser.add_argument("--ood_max_num", type=int, default=None, help="OOD largest number (default 2*max_num+1)")
    parser.add_argument("--ood_max_ents", type=int, default=None, help="OOD most entities (default max_ents+1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num_proc", type=int, default=os.cpu_count(), help="processes solving problems")
    parser.add_argument("--push_to_hub", default=None, help="also upload to this Hub dataset repo (user/name)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("n_train", "n_val"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name}={getattr(args, name)} is not allowed; use a value >= 1")
    if args.max_samples is not None and args.max_samples < 1:
        raise ValueError(f"--max_samples={args.max_samples} is not allowed; use a value >= 1")
    if args.n_ood < 0:
        raise ValueError(f"--n_ood={args.n_ood} is not allowed; use a value >= 0")
    params = ProblemParams(
        max_num=args.max_num,
        max_ents=args.max_ents,
        p_ent=args.p_ent,
        p_mult=args.p_mult,
        max_mult_num=args.max_mult_num,
        space_mults=args.space_mults,
        zipf_order=args.zipf_order,
        p_paren=args.p_paren,
        solver=args.solver,
    )
    num_proc = args.num_proc if args.n_train >= 20_000 else 1
    out = write_arithmetic_dataset(
        args.out,
        params,
        args.n_train,
        args.n_val,
        args.n_ood,
        args.seed,
        args.ood_max_num,
        args.ood_max_ents,
        num_proc=num_proc,
        overwrite=args.overwrite,
        push_to_hub=args.push_to_hub,
        max_samples=args.max_samples,
    )
    n_train, n_val = args.n_train, args.n_val
    if small_space(params, args.max_samples or args.n_train):
        n_train, n_val = small_space_counts(params, n_train, n_val)
        print("small problem space: every problem enumerated and split as the original does")
    print(f"wrote {out} ({n_train} train, {n_val} validation, {args.n_ood} ood problems)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
