"""Sparsity sweep (arrows of time): final loss vs k and k' for forward and backward models.

    python trainers/arrows_sparsity_sweep.py --config configs/linear_forward.json --n 8 --ks 1 3 5 7 \\
        --out outputs/arrows_sweep
    python trainers/arrows_sparsity_sweep.py --config configs/linear_forward.json --ks 2 6 -- --max_steps 300

For each k and each of `--matrices_per_k` matrix seeds, M = identity + k off-diagonal ones is drawn
(`make_sparse_invertible`, or the seed with the densest inverse among `--densest_of` draws), saved as
`<out>/matrices/Matid{n}_{k}_{k'}_s{seed}.npy`, and two ordinary runs are trained from `--config`:
`<out>/<matrix>_forward` and `<out>/<matrix>_backward` (both read the same generated data). Arguments after
`--` are passed to every run (`trainers/run.py` keys, e.g. `-- --max_steps 300 --learning_rate 1e-3`).

Each job is a resumable run folder: rerunning the command skips jobs with a `metrics.json` and resumes
interrupted ones from their last checkpoint. The results go to `<out>/sweep.csv` (one row per run: matrix,
n, k, k', training seed, direction, final mean token loss, relative gap of its matrix and seed),
`<out>/sweep.json` and `<out>/sweep.png` (loss vs k and vs k'). With `--seeds s1 s2 ...` every matrix and
direction is trained once per seed (`<matrix>_<direction>_seed<s>`) and `<out>/sweep_summary.csv` / `.json` and
`<out>/sweep_gap.png` give, per matrix, the relative gap paired by seed with its 95% interval, against k' - k.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from hf_experiments.arrows.analysis import (
    densest_inverse,
    plot_sweep,
    plot_sweep_gap,
    read_json,
    relative_gap,
    sweep_summary,
)
from hf_experiments.arrows.linear_language import extra_ones, gf2_inverse, make_sparse_invertible, matrix_name
from hf_experiments.core.plots import write_csv
from hf_experiments.core.run_folder import write_json_atomic
from hf_experiments.core.runner import main as run_main

DIRECTIONS = ("forward", "backward")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="base config of a linear arrows run (model, training)")
    parser.add_argument("--n", type=int, default=None, help="matrix size n (default: the config's matrix_n)")
    parser.add_argument("--ks", type=int, nargs="+", required=True, help="extra ones of M to sweep over")
    parser.add_argument("--matrices_per_k", type=int, default=1, help="matrices (seeds) per k")
    parser.add_argument("--seed", type=int, default=0, help="first matrix seed")
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=None,
        help="training seeds per matrix and direction (runs <matrix>_<direction>_seed<s>); the summary gives the "
        "gap's mean and 95%% interval over them",
    )
    parser.add_argument(
        "--densest_of",
        type=int,
        default=1,
        help="draw this many matrices per seed slot and keep the densest inverse (spreads k')",
    )
    parser.add_argument("--out", default="outputs/arrows_sweep", help="sweep folder (runs, matrices, table)")
    parser.add_argument(
        "--subprocess",
        action="store_true",
        help="run each job in a fresh `python trainers/run.py` process instead of in-process",
    )
    parser.add_argument("--dry_run", action="store_true", help="write the matrices and list the jobs only")
    return parser


def split_passthrough(argv: list[str]) -> tuple[list[str], list[str]]:
    """Our arguments, and those after `--` that go to every run."""
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1 :]
    return argv, []


def sweep_matrices(n: int, ks: list[int], per_k: int, seed: int, densest_of: int, folder: Path) -> list[dict]:
    """Draw and save the sweep's matrices; returns one record per matrix (name, k, k', seed, path)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for k in ks:
        if not 0 <= k <= n * (n - 1):
            raise ValueError(f"--ks value {k} is not allowed for n={n}; use 0 <= k <= n(n-1) = {n * (n - 1)}")
        for j in range(per_k):
            slot = seed + j
            if densest_of > 1:
                chosen, m = densest_inverse(n, k, range(slot * densest_of, (slot + 1) * densest_of))
            else:
                chosen, m = slot, make_sparse_invertible(n, k, np.random.default_rng(slot))
            k_inv = extra_ones(gf2_inverse(m))
            name = f"{matrix_name(n, k, k_inv)}_s{chosen}"
            path = folder / f"{name}.npy"
            if not path.exists():
                np.save(path, m)
            out.append({"matrix": name, "n": n, "k": k, "k_inv": k_inv, "seed": chosen, "path": str(path)})
    return out


def run_job(argv: list[str], use_subprocess: bool) -> int:
    if use_subprocess:
        return subprocess.run([sys.executable, "-m", "hf_experiments", *argv]).returncode
    try:
        return run_main(argv)
    except SystemExit as e:  # parse_config exits 2 on a bad config
        return int(e.code or 0)
    except Exception:  # one failed job should not stop the others; it is reported and rerun later
        traceback.print_exc()
        return 1


def run_name(matrix: str, direction: str, seed: int | None) -> str:
    return f"{matrix}_{direction}" if seed is None else f"{matrix}_{direction}_seed{seed}"


def collect(records: list[dict], out: Path, seeds: list[int | None] | None = None) -> list[dict[str, Any]]:
    """One row per finished run; the gap column needs both directions of the matrix (and seed)."""
    rows = []
    for rec in records:
        for seed in seeds or [None]:
            rows += _collect_seed(rec, out, seed)
    return rows


def _collect_seed(rec: dict, out: Path, seed: int | None) -> list[dict[str, Any]]:
    rows = []
    finals: dict[str, Any] = {}
    for d in DIRECTIONS:
        metrics = out / run_name(rec["matrix"], d, seed) / "metrics.json"
        if metrics.is_file():
            finals[d] = read_json(metrics)
    gap = (
        relative_gap(finals["forward"]["mean_token_loss"], finals["backward"]["mean_token_loss"])
        if len(finals) == 2
        else float("nan")
    )
    for d, m in finals.items():
        rows.append(
            {
                "matrix": rec["matrix"],
                "n": rec["n"],
                "k": rec["k"],
                "k_inv": rec["k_inv"],
                "seed": rec["seed"],
                "train_seed": seed,
                "direction": d,
                "mean_token_loss": m["mean_token_loss"],
                "eval_loss": m.get("eval_loss"),
                "relative_gap": gap,
                "run_dir": str(out / run_name(rec["matrix"], d, seed)),
            }
        )
    return rows


def write_table(rows: list[dict[str, Any]], out: Path) -> list[dict[str, Any]]:
    """`sweep.csv` / `.json` / `.png` (one row per run) and, over training seeds, `sweep_summary.csv` / `.json` /
    `sweep_gap.png` (one row per matrix: mean loss per direction and the paired gap with 95% intervals)."""
    if not rows:
        return []
    write_csv(out / "sweep.csv", rows)
    write_json_atomic(out / "sweep.json", rows)
    plot_sweep(rows, out / "sweep.png")
    summary = sweep_summary(rows)
    if summary:
        write_csv(out / "sweep_summary.csv", summary)
        write_json_atomic(out / "sweep_summary.json", summary)
        plot_sweep_gap(summary, out / "sweep_gap.png")
    return summary


def main(argv: list[str] | None = None) -> int:
    ours, passthrough = split_passthrough(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(ours)
    base = read_json(args.config)
    if base.get("task", "linear") != "linear":
        print(
            f"error: --config {args.config} has task={base.get('task')!r}; the sweep needs task=linear",
            file=sys.stderr,
        )
        return 2
    n = args.n or int(base.get("matrix_n", 20))
    out = Path(args.out)
    try:
        records = sweep_matrices(n, args.ks, args.matrices_per_k, args.seed, args.densest_of, out / "matrices")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    seeds: list[int | None] = list(args.seeds) if args.seeds else [None]
    jobs = [(rec, seed, d) for rec in records for seed in seeds for d in DIRECTIONS]
    failed = []
    for i, (rec, seed, d) in enumerate(jobs, 1):
        exp_name = run_name(rec["matrix"], d, seed)
        label = f"[{i}/{len(jobs)}] {exp_name} (k={rec['k']}, k'={rec['k_inv']})"
        if (out / exp_name / "metrics.json").is_file():
            print(f"{label}: finished, skipped", flush=True)
            continue
        job_argv = [
            "--config",
            args.config,
            "--matrix_path",
            rec["path"],
            "--direction",
            d,
            "--save_root",
            str(out),
            "--exp_name",
            exp_name,
            *passthrough,
            *([] if seed is None else ["--seed", str(seed)]),
        ]
        if args.dry_run:
            print(f"{label}: python trainers/run.py {' '.join(job_argv)}")
            continue
        print(f"{label}: training ...", flush=True)
        start = time.time()
        code = run_job(job_argv, args.subprocess)
        print(f"{label}: exit {code} after {time.time() - start:.0f}s", flush=True)
        if code != 0:
            failed.append(exp_name)
    rows = collect(records, out, seeds)
    summary = write_table(rows, out)
    for r in rows:
        tail = "" if r["train_seed"] is None else f" seed {r['train_seed']}"
        print(
            f"{r['matrix']:>20} {r['direction']:>8}{tail}  loss {r['mean_token_loss']:.4f}  "
            f"gap {r['relative_gap']:+.2%}"
        )
    for r in summary:
        print(
            f"{r['matrix']:>20}  k'-k {r['k_inv'] - r['k']:>3}  gap {r['relative_gap_mean']:+.2%} "
            f"(95% CI {r['relative_gap_lo']:+.2%} to {r['relative_gap_hi']:+.2%}, n={r['n_seeds']})"
        )
    if rows:
        print(f"wrote {out / 'sweep.csv'}, {out / 'sweep.json'}, {out / 'sweep.png'}")
    if failed:
        print(f"failed jobs (rerun the command to resume them): {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
