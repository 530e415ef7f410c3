"""The paper's grid of recurrent storage runs, as a plain loop of ordinary run folders.

    python trainers/gru_grid.py --save_root outputs/gru_grid            # the paper's grid (GPU-sized)
    python trainers/gru_grid.py --save_root outputs/gru_grid --dry_run            # print the commands only
    python trainers/gru_grid.py --save_root outputs/gru_small --state_sizes 32 --seeds 1 2 \\
        --stage1 max_steps=3000 min_len=5 max_len=5 --stage2 max_steps=1500 min_len=5 max_len=5   # CPU-sized
    python trainers/gru_grid.py --preset cpu --jobs 2 --save_root outputs/gru_grid_cpu  # the CPU grid (docs)
    python trainers/gru_table.py --save_root outputs/gru_grid                     # the table

For every state size and seed: stage one trains `configs/gru_repeat.json` into `<save_root>/gru_s<N>_seed<k>`;
stage two trains each intervention (`configs/gru_linear.json`, `configs/gru_onion.json`) on that model into
`<save_root>/gru_s<N>_seed<k>_<intervention>`. A run whose `metrics.json` exists is skipped; an interrupted
one resumes from its last complete checkpoint (that is what rerunning `trainers/run.py` does), so rerunning
this script after a crash or preemption continues the grid. Runs go one after another; `--jobs N` runs N
(state size, seed) chains at once, one thread each (on several machines, give each a disjoint
`--state_sizes`/`--seeds` share and the same `--save_root`).

The paper's protocol (the defaults here): lengths 2..9 of 30 symbols, batch 256, lr 1e-3, weight decay 0.1, no
gradient clipping; the GRU trains 40k steps, each intervention 60k steps on length-9 sequences; seeds 1..5.
Options `--stage1/--stage2 key=value ...` override config keys of every run of that stage. `--interventions` may
name `onion_init0`: the onion with λ starting at 0 (`configs/gru_onion.json`'s choice), as its own column.

`--preset cpu`: the grid of docs/recurrent_storage.md on a 2-core CPU: state sizes 48, 128, 512, seeds 1 and 2;
the GRU as `configs/gru_repeat.json` (length 9, batch 64, lr 2e-3) until 95% IID accuracy (`stop_when`, checked
every 250 steps) or 20k steps; each intervention 3000 steps (batch 256, lr 1e-3), the onion's λ starting at 1
as in the original; evaluation on 2000 sequences per validation set.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import threading
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
CPU_STATE_SIZES = [48, 128, 512]
CPU_SEEDS = [1, 2]
CPU_STAGE1 = {
    "min_len": 9,
    "max_len": 9,
    "per_device_train_batch_size": 64,
    "learning_rate": 0.002,
    "max_steps": 20000,
    "eval_steps": 250,
    "save_steps": 1000,
    "max_eval_batches": 2,
    "report_to": "tensorboard",
    "stop_when": "eval_valid_accuracy>=0.95",
}
CPU_STAGE2 = {"max_steps": 3000, "eval_steps": 500, "save_steps": 500, "max_eval_batches": 2, "onion_linear_init": 1.0}
PRESETS = {
    "paper": (PAPER_STATE_SIZES, PAPER_SEEDS, PAPER_STAGE1, PAPER_STAGE2),
    "cpu": (CPU_STATE_SIZES, CPU_SEEDS, CPU_STAGE1, CPU_STAGE2),
}
CONFIGS = {
    "linear": "configs/gru_linear.json",
    "onion": "configs/gru_onion.json",
    "onion_init0": "configs/gru_onion.json",
    "probe_mlp": "configs/gru_onion.json",
    "probe_gru": "configs/gru_onion.json",
}
# Column names that are a variant of an intervention: its keys, applied after the stage-two overrides.
VARIANTS = {"onion_init0": {"intervention": "onion", "onion_linear_init": 0.0}}


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
    base1: dict | None = None,
    base2: dict | None = None,
) -> list[tuple[Path, list[str]]]:
    """(run folder, argv of trainers/run.py) of every run, in the order they must run."""
    out = []
    for size in state_sizes:
        for seed in seeds:
            name = run_name(size, seed)
            common = ["--save_root", save_root, "--seed", str(seed)]
            s1 = {**(PAPER_STAGE1 if base1 is None else base1), **stage1, "state_size": size}
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
                    **(PAPER_STAGE2 if base2 is None else base2),
                    **stage2,
                    "intervention": method,
                    "gru_model": str(Path(save_root) / name / "model"),
                    **VARIANTS.get(method, {}),
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


_PRINT = threading.Lock()


def _say(text: str, err: bool = False) -> None:
    with _PRINT:  # whole lines from the parallel chains
        print(text, file=sys.stderr if err else sys.stdout, flush=True)


def _run_chain(chain: list[tuple[Path, list[str]]], dry_run: bool, tag: str) -> int:
    """The runs of one (state size, seed) in order: the GRU, then its interventions; stops at a failure."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    for run_dir, cmd in chain:
        if (run_dir / "metrics.json").is_file():
            _say(f"{tag}done     {run_dir}")
            continue
        _say(f"{tag}run      {shlex.join([sys.executable, 'trainers/run.py', *cmd])}")  # '>=' quoted
        if dry_run:
            continue
        rc = subprocess.run([sys.executable, str(ROOT / "trainers" / "run.py"), *cmd], cwd=ROOT, env=env).returncode
        if rc != 0:
            _say(f"error: {run_dir} exited with status {rc}; rerun this script to resume", err=True)
            return rc
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--save_root", default="outputs/gru_grid")
    p.add_argument("--preset", choices=sorted(PRESETS), default="paper", help="the paper's grid or the CPU one")
    p.add_argument("--state_sizes", type=int, nargs="+", default=None, help="default: the preset's")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="default: the preset's")
    p.add_argument("--interventions", nargs="+", default=["linear", "onion"], choices=sorted(CONFIGS))
    p.add_argument("--stage1", nargs="*", default=[], metavar="KEY=VALUE", help="overrides of every GRU run")
    p.add_argument("--stage2", nargs="*", default=[], metavar="KEY=VALUE", help="overrides of every intervention")
    p.add_argument("--jobs", type=int, default=1, help="(state size, seed) chains run at once, one thread each")
    p.add_argument("--dry_run", action="store_true", help="print the commands, run nothing")
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error(f"--jobs {args.jobs}: use 1 or more")
    sizes, seeds, base1, base2 = PRESETS[args.preset]
    stage1, stage2 = _pairs(args.stage1), _pairs(args.stage2)
    if args.jobs > 1:  # N processes on the cores: one thread each unless the user chose
        stage1.setdefault("torch_threads", "1")
        stage2.setdefault("torch_threads", "1")
    todo = commands(
        args.save_root,
        args.state_sizes or sizes,
        args.seeds or seeds,
        args.interventions,
        stage1,
        stage2,
        base1,
        base2,
    )
    per_chain = 1 + len(args.interventions)
    chains = [todo[i : i + per_chain] for i in range(0, len(todo), per_chain)]
    if args.jobs == 1:
        return next((rc for rc in (_run_chain(c, args.dry_run, "") for c in chains) if rc != 0), 0)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(args.jobs) as pool:
        codes = list(pool.map(lambda c: _run_chain(c, args.dry_run, f"[{c[0][0].name}] "), chains))
    return next((rc for rc in codes if rc != 0), 0)


if __name__ == "__main__":
    sys.exit(main())
