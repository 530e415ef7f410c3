"""The paper's grid of recurrent storage runs, as a plain loop of ordinary run folders.

    python trainers/gru_grid.py --save_root outputs/gru_grid            # the paper's grid (GPU-sized)
    python trainers/gru_grid.py --save_root outputs/gru_grid --dry_run            # print the commands only
    python trainers/gru_grid.py --save_root outputs/gru_small --state_sizes 32 --seeds 1 2 \\
        --stage1 max_steps=3000 min_len=5 max_len=5 --stage2 max_steps=1500 min_len=5 max_len=5   # CPU-sized
    python trainers/gru_table.py --save_root outputs/gru_grid                     # the table

For every state size and seed: stage one trains `configs/gru_repeat.json` into `<save_root>/gru_s<N>_seed<k>`;
stage two trains each intervention (`configs/gru_linear.json`, `configs/gru_onion.json`) on that model into
`<save_root>/gru_s<N>_seed<k>_<intervention>`. A run whose `metrics.json` exists is skipped; an interrupted
one resumes from its last complete checkpoint (that is what rerunning `trainers/run.py` does), so rerunning
this script after a crash or preemption continues the grid. Runs go one after another (on several machines,
give each a disjoint `--state_sizes`/`--seeds` share and the same `--save_root`).

The paper's protocol (the defaults here): lengths 2..9 of 30 symbols, batch 256, lr 1e-3, weight decay 0.1, no
gradient clipping; the GRU trains 40k steps, each intervention 60k steps on length-9 sequences; seeds 1..5.
Options `--stage1/--stage2 key=value ...` override config keys of every run of that stage.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAPER_STATE_SIZES = [48, 64, 128, 256, 512, 1024]
PAPER_SEEDS = [1, 2, 3, 4, 5]
PAPER_STAGE1 = {
    "min_len": 2,
    "max_len": 9,
    "max_steps": 40000,
    "eval_steps": 2000,
    "save_steps": 2000,
    "per_device_train_batch_size": 256,
    "learning_rate": 1e-3,
    "max_eval_batches": 5,
}
PAPER_STAGE2 = {"min_len": 9, "max_len": 9, "max_steps": 60000, "eval_steps": 2000, "save_steps": 2000}
CONFIGS = {
    "linear": "configs/gru_linear.json",
    "onion": "configs/gru_onion.json",
    "probe_mlp": "configs/gru_onion.json",
    "probe_gru": "configs/gru_onion.json",
}


def run_name(state_size: int, seed: int, intervention: str | None = None) -> str:
    base = f"gru_s{state_size}_seed{seed}"
    return base if intervention is None else f"{base}_{intervention}"


def _pairs(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"error: override {item!r} is not key=value")
        key, value = item.split("=", 1)
        out[key] = value
    return out


def commands(
    save_root: str,
    state_sizes: list[int],
    seeds: list[int],
    interventions: list[str],
    stage1: dict[str, str],
    stage2: dict[str, str],
) -> list[tuple[Path, list[str]]]:
    """(run folder, argv of trainers/run.py) of every run, in the order they must run."""
    out = []
    for size in state_sizes:
        for seed in seeds:
            name = run_name(size, seed)
            common = ["--save_root", save_root, "--seed", str(seed)]
            s1 = {**PAPER_STAGE1, **stage1, "state_size": size}
            out.append(
                (
                    Path(save_root) / name,
                    [
                        "--config",
                        "configs/gru_repeat.json",
                        "--exp_name",
                        name,
                        *common,
                        *[t for k, v in s1.items() for t in (f"--{k}", str(v))],
                    ],
                )
            )
            for method in interventions:
                s2 = {
                    **PAPER_STAGE2,
                    **stage2,
                    "intervention": method,
                    "gru_model": str(Path(save_root) / name / "model"),
                }
                out.append(
                    (
                        Path(save_root) / run_name(size, seed, method),
                        [
                            "--config",
                            CONFIGS[method],
                            "--exp_name",
                            run_name(size, seed, method),
                            *common,
                            *[t for k, v in s2.items() for t in (f"--{k}", str(v))],
                        ],
                    )
                )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--save_root", default="outputs/gru_grid")
    p.add_argument("--state_sizes", type=int, nargs="+", default=PAPER_STATE_SIZES)
    p.add_argument("--seeds", type=int, nargs="+", default=PAPER_SEEDS)
    p.add_argument("--interventions", nargs="+", default=["linear", "onion"], choices=sorted(CONFIGS))
    p.add_argument("--stage1", nargs="*", default=[], metavar="KEY=VALUE", help="overrides of every GRU run")
    p.add_argument("--stage2", nargs="*", default=[], metavar="KEY=VALUE", help="overrides of every intervention")
    p.add_argument("--dry_run", action="store_true", help="print the commands, run nothing")
    args = p.parse_args(argv)
    todo = commands(
        args.save_root,
        args.state_sizes,
        args.seeds,
        args.interventions,
        _pairs(args.stage1),
        _pairs(args.stage2),
    )
    for run_dir, cmd in todo:
        line = " ".join([sys.executable, "trainers/run.py", *cmd])
        if (run_dir / "metrics.json").is_file():
            print(f"done     {run_dir}")
            continue
        print(f"run      {line}", flush=True)
        if args.dry_run:
            continue
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        rc = subprocess.run([sys.executable, str(ROOT / "trainers" / "run.py"), *cmd], cwd=ROOT, env=env).returncode
        if rc != 0:
            print(f"error: {run_dir} exited with status {rc}; rerun this script to resume", file=sys.stderr)
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
