"""Generate a GF(2)^n linear-language dataset (arrows of time) as a Hugging Face dataset folder.

    python data_scripts/make_linear.py --out "data/{name}" --n 20 --k 6 --num_vectors 5000000
    python data_scripts/make_linear.py --out data/pert --matrix data/Matid20_6_15_v5000k_pert0.01/matrix.npy

Either ``--n/--k`` draw M = identity + k off-diagonal ones (seeded by ``--matrix_seed``), or ``--matrix``
loads a 0/1 ``.npy`` matrix. The dataset is named after the matrix like the original
(``Matid20_6_15_v5000k_pert0.01``); ``{name}`` in ``--out`` is replaced by that name. M and M^-1 are
stored next to the data as ``matrix.npy`` and ``matrix_inv.npy``. ``--num_flips`` applies the sparse
update of the perturbation experiment to M before generating.

Column: ``text`` = ``bits(v ^ e) + sep + bits(M v ^ e')`` (bit i of a string = coordinate i).
The validation split draws only from a fixed hash-selected ``--val_fraction`` of GF(2)^n that train never
uses as a clean input vector.
"""

from __future__ import annotations

import argparse
import io
import sys

import numpy as np

from hf_experiments.arrows.linear_language import (
    extra_ones,
    flip_entries,
    generate_linear_lines,
    gf2_inverse,
    make_sparse_invertible,
    matrix_name,
)
from hf_experiments.core.dataset_io import write_dataset

DESCRIPTION = """\
A linear language over GF(2)^n (arrows of time, as in frotaur/CrafterPerplexity): each line is
`bits(v ^ e) + sep + bits(M v ^ e')` with v uniform, M the invertible matrix stored in `matrix.npy` (its
inverse in `matrix_inv.npy`), and e, e' independent Bernoulli(perturbation_rate) bit flips. Character i of a
bit string is coordinate i. The name `Matid{n}_{k}_{k_inv}` gives the ones of M and M^-1 beyond the
identity's n. Validation inputs come from a fixed hash-selected fraction of GF(2)^n that the train split
never uses as a clean input."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="dataset folder to write; '{name}' becomes the dataset name")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--n", type=int, help="matrix size (draw M = I + k ones); needs --k")
    src.add_argument("--matrix", help="path of a 0/1 square matrix saved with numpy (.npy)")
    parser.add_argument("--k", type=int, default=None, help="extra off-diagonal ones of M (with --n)")
    parser.add_argument("--matrix_seed", type=int, default=0, help="seed for drawing M and its flips")
    parser.add_argument(
        "--num_flips",
        type=int,
        default=0,
        help="flip this many off-diagonal entries of M first (sparse-update experiment)",
    )
    parser.add_argument("--num_vectors", type=int, default=int(5e6), help="training lines (original: 5e6 / 5e5)")
    parser.add_argument("--perturbation_rate", type=float, default=0.01, help="probability that a bit is flipped")
    parser.add_argument("--sep", default="_______", help="separator between input and output bits")
    parser.add_argument("--seed", type=int, default=0, help="seed for vectors and flips")
    parser.add_argument(
        "--val_fraction",
        type=float,
        default=0.01,
        help="fraction of GF(2)^n held out as validation inputs (0: validation only reseeded)",
    )
    parser.add_argument(
        "--n_val",
        type=int,
        default=None,
        help="validation lines (default: round(val_fraction * num_vectors), at least 1; 0: no split)",
    )
    parser.add_argument("--push_to_hub", default=None, help="also upload to this Hub dataset repo (user/name)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out")
    return parser


def _load_matrix(args: argparse.Namespace) -> np.ndarray:
    if args.matrix is not None:
        if args.k is not None:
            raise ValueError("--k is only used with --n; a --matrix already fixes its ones")
        return np.load(args.matrix, allow_pickle=False)
    if args.k is None:
        raise ValueError(f"--n={args.n} needs --k (number of extra off-diagonal ones)")
    return make_sparse_invertible(args.n, args.k, np.random.default_rng(args.matrix_seed))


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def dataset_name(matrix: str, num_vectors: int, perturbation_rate: float) -> str:
    """The original's file name pattern, e.g. ``Matid20_6_15_v5000k_pert0.01``."""
    count = f"{num_vectors // 1000}k" if num_vectors % 1000 == 0 else str(num_vectors)
    return f"{matrix}_v{count}_pert{perturbation_rate:g}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.num_vectors < 1:
        raise ValueError(f"--num_vectors={args.num_vectors} is not allowed; use num_vectors >= 1")
    if not 0.0 <= args.val_fraction < 1.0:
        raise ValueError(f"--val_fraction={args.val_fraction} is not allowed; use a value in [0, 1)")
    n_val = args.n_val if args.n_val is not None else max(1, round(args.val_fraction * args.num_vectors))
    if n_val < 0:
        raise ValueError(f"--n_val={n_val} is not allowed; use n_val >= 0")

    M = _load_matrix(args)
    M_inv = gf2_inverse(M)  # also validates: square, 0/1, invertible
    M = M.astype(np.uint8)
    if args.num_flips:
        # Own stream so that flipping never changes which base matrix --matrix_seed draws.
        M = flip_entries(M, args.num_flips, np.random.default_rng([args.matrix_seed, 1]))
        M_inv = gf2_inverse(M)
    n = M.shape[0]
    mat = matrix_name(n, extra_ones(M), extra_ones(M_inv))
    name = dataset_name(mat, args.num_vectors, args.perturbation_rate)

    # Train and validation use different seeds, and (val_fraction > 0) disjoint clean inputs.
    # Train uses --seed itself, so generate_linear_lines(M, ..., seed) in Python reproduces it.
    seed_train, seed_val = args.seed, [args.seed, 1]
    fraction = args.val_fraction
    splits = {
        "train": {
            "text": generate_linear_lines(
                M,
                args.num_vectors,
                args.perturbation_rate,
                seed_train,
                args.sep,
                heldout_fraction=fraction,
                progress=True,
            )
        }
    }
    if n_val:
        splits["validation"] = {
            "text": generate_linear_lines(
                M,
                n_val,
                args.perturbation_rate,
                seed_val,
                args.sep,
                heldout_fraction=fraction,
                heldout=fraction > 0,
            )
        }
    params = {
        "generator": "linear_language",
        "name": name,
        "matrix_name": mat,
        "n": n,
        "k": extra_ones(M),
        "k_inv": extra_ones(M_inv),
        "matrix_source": args.matrix if args.matrix is not None else "make_sparse_invertible",
        "matrix_seed": args.matrix_seed,
        "num_flips": args.num_flips,
        "num_vectors": args.num_vectors,
        "n_val": n_val,
        "perturbation_rate": args.perturbation_rate,
        "sep": args.sep,
        "seed": args.seed,
        "val_fraction": fraction,
        "validation_disjoint": fraction > 0,
        "bit_order": "character i of a bit string is coordinate i of the vector",
    }
    out = write_dataset(
        args.out.replace("{name}", name),
        splits,
        params,
        DESCRIPTION,
        extra_files={"matrix.npy": _npy_bytes(M), "matrix_inv.npy": _npy_bytes(M_inv)},
        push_to_hub=args.push_to_hub,
        overwrite=args.overwrite,
        title=name,
    )
    print(f"wrote {out} ({name}: {args.num_vectors} train, {n_val} validation lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
