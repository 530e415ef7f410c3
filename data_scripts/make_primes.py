"""Generate the prime-product dataset of the arrows-of-time experiments as a Hugging Face dataset folder.

    python data_scripts/make_primes.py --out data/primes_1_5 --n_pairs 1000000

Lines look like ``00013 * 00101   =   3131000000`` (see ``hf_experiments.arrows.primes``). Columns:
``text`` (the line), ``p`` and ``q``. The validation split draws only from a fixed hash-selected
``--val_fraction`` of the unordered prime pairs, and train never uses those pairs, so validation
measures generalisation to unseen products. The original generated 10^8 lines (``--n_pairs 100000000``,
about 3 GB of text; ~30 s here).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from hf_experiments.arrows.primes import format_prime_lines, line_width, sample_prime_pairs
from hf_experiments.core.dataset_io import write_dataset

DESCRIPTION = """\
Products of two distinct primes, written `p * q = reversed(p*q)`: primes zero-padded to `max_n_digits`,
the product zero-padded to `2 * max_n_digits` digits and reversed. Forward reading multiplies; backward
reading factorises (arrows of time, as in frotaur/CrafterPerplexity). Pairs are uniform over unordered
pairs of distinct primes in the digit range, the smaller prime first as in the original (`--pair_order random`:
each pair in the drawn order). Validation pairs come from a fixed hash-selected fraction of
the *unordered* pairs that the train split never contains."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="dataset folder to write")
    parser.add_argument("--n_pairs", type=int, default=10**6, help="training lines (the original used 10^8)")
    parser.add_argument("--min_n_digits", type=int, default=1, help="fewest digits of a prime (inclusive)")
    parser.add_argument("--max_n_digits", type=int, default=5, help="most digits of a prime (inclusive, <= 9)")
    parser.add_argument("--mul_space", default=" ", help="spaces on each side of '*'")
    parser.add_argument("--eq_space", default="   ", help="spaces on each side of '='")
    parser.add_argument(
        "--pair_order",
        choices=("smaller_first", "random"),
        default="smaller_first",
        help="smaller prime first (the original's lines) or the drawn order",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--val_fraction",
        type=float,
        default=0.01,
        help="fraction of unordered prime pairs held out for validation (0: no disjointness)",
    )
    parser.add_argument(
        "--n_val",
        type=int,
        default=None,
        help="validation lines (default: round(val_fraction * n_pairs), at least 1; 0: no split)",
    )
    parser.add_argument("--push_to_hub", default=None, help="also upload to this Hub dataset repo (user/name)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.n_pairs < 1:
        raise ValueError(f"--n_pairs={args.n_pairs} is not allowed; use n_pairs >= 1")
    if not 0.0 <= args.val_fraction < 1.0:
        raise ValueError(f"--val_fraction={args.val_fraction} is not allowed; use a value in [0, 1)")
    n_val = args.n_val if args.n_val is not None else max(1, round(args.val_fraction * args.n_pairs))
    if n_val < 0:
        raise ValueError(f"--n_val={n_val} is not allowed; use n_val >= 0")

    # Independent streams: the number of validation lines never changes the training lines, and
    # sample_prime_pairs(..., np.random.default_rng(seed), heldout_fraction=f) reproduces train in Python.
    rng_train, rng_val = np.random.default_rng(args.seed), np.random.default_rng([args.seed, 1])
    fraction = args.val_fraction
    splits = {}
    p, q = sample_prime_pairs(
        args.n_pairs,
        args.min_n_digits,
        args.max_n_digits,
        rng_train,
        heldout_fraction=fraction,
        pair_order=args.pair_order,
    )
    splits["train"] = {
        "text": format_prime_lines(p, q, args.max_n_digits, args.mul_space, args.eq_space, progress=True),
        "p": p,
        "q": q,
    }
    if n_val:
        # With val_fraction == 0 there is no held-out part: validation is just another draw.
        p, q = sample_prime_pairs(
            n_val,
            args.min_n_digits,
            args.max_n_digits,
            rng_val,
            heldout_fraction=fraction,
            heldout=fraction > 0,
            pair_order=args.pair_order,
        )
        splits["validation"] = {
            "text": format_prime_lines(p, q, args.max_n_digits, args.mul_space, args.eq_space),
            "p": p,
            "q": q,
        }
    params = {
        "generator": "primes",
        "name": f"primes_{args.min_n_digits}_{args.max_n_digits}",
        "n_pairs": args.n_pairs,
        "n_val": n_val,
        "min_n_digits": args.min_n_digits,
        "max_n_digits": args.max_n_digits,
        "pair_order": args.pair_order,
        "mul_space": args.mul_space,
        "eq_space": args.eq_space,
        "product_width": 2 * args.max_n_digits,
        "line_width": line_width(args.max_n_digits, args.mul_space, args.eq_space),
        "seed": args.seed,
        "val_fraction": fraction,
        "validation_disjoint": fraction > 0,
    }
    out = write_dataset(
        args.out,
        splits,
        params,
        DESCRIPTION,
        push_to_hub=args.push_to_hub,
        overwrite=args.overwrite,
        title=params["name"],
    )
    print(f"wrote {out} ({args.n_pairs} train, {n_val} validation lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
