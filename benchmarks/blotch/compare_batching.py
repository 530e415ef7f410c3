"""Padded vs padding-free packed vs length-bucketed batches on one blotch config: learning per step and per second.

    python benchmarks/blotch/compare_batching.py --save_root runs/batching --config configs/blotch.json \\
        --seeds 0 1 --jobs 2

Runs `trainers/run.py` for every (variant, seed) not yet finished in `save_root` (run names `<variant>_s<seed>`;
`--jobs` at a time, one torch thread each, in seed-major order, so runs share the machine alike), then writes
`batching_summary.json`, `batching_table.md` and `batching.png` (validation loss against training steps and
against wall-clock seconds, one line per run) into `save_root`. Wall-clock times are the TensorBoard event times
of each evaluation, from the first logged training loss (`logging_steps` in); the table has the final
validation / OOD answer accuracy (level 0), the training time and steps/s, mean over seeds with the range. The
last printed line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VARIANTS = {
    "padded": ["--pack_rows", "false"],
    "packed": ["--pack_rows", "true"],
    "bucketed": ["--pack_rows", "false", "--length_bucketed_sampling", "true"],
}


def run_one(config: Path, save_root: Path, variant: str, seed: int) -> str:
    name = f"{variant}_s{seed}"
    if (save_root / name / "metrics.json").exists():
        return f"{name}: finished before, kept"
    cmd = [
        sys.executable, str(ROOT / "trainers" / "run.py"), "--config", str(config), "--save_root", str(save_root),
        "--exp_name", name, "--seed", str(seed), "--torch_threads", "1", "--report_to", "tensorboard",
        "--disable_tqdm", "true", *VARIANTS[variant],
    ]  # fmt: skip
    log = save_root / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with log.open("w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env).returncode
    return f"{name}: exit {rc} (log {log})"


def eval_curve(run: Path) -> list[tuple[int, float, float]]:
    """(step, seconds since the first logged training step, eval_loss) of every evaluation, from TensorBoard."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folders = sorted({p.parent for p in (run / "runs").rglob("events.out.tfevents.*")})
    points: dict[int, tuple[float, float]] = {}
    start = None
    for folder in folders:
        acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
        acc.Reload()
        tags = acc.Tags()["scalars"]
        if "train/loss" in tags:
            first = acc.Scalars("train/loss")[0].wall_time
            start = first if start is None else min(start, first)
        if "eval/loss" in tags:
            for e in acc.Scalars("eval/loss"):
                points[e.step] = (e.wall_time, e.value)
    start = start if start is not None else min((t for t, _ in points.values()), default=0.0)
    return [(step, t - start, v) for step, (t, v) in sorted(points.items())]


def summarise(save_root: Path, seeds: list[int]) -> dict:
    runs: dict[str, list[dict]] = {}
    for variant in VARIANTS:
        for seed in seeds:
            run = save_root / f"{variant}_s{seed}"
            if not (run / "metrics.json").exists():
                continue
            m = json.loads((run / "metrics.json").read_text())
            state = json.loads((run / "trainer_state.json").read_text())
            train = next(e for e in reversed(state["log_history"]) if "train_runtime" in e)
            runs.setdefault(variant, []).append(
                {
                    "seed": seed,
                    "validation_answer_acc": m.get("validation_answer_acc@0.0", m.get("validation_answer_acc")),
                    "ood_answer_acc": m.get("ood_answer_acc@0.0", m.get("ood_answer_acc")),
                    "final_eval_loss": m.get("eval_loss"),
                    "train_runtime_s": train["train_runtime"],
                    "steps_per_second": train["train_steps_per_second"],
                    "curve": eval_curve(run),
                }
            )
    return runs


def _stat(values: list[float | None], digits: int) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    mean = statistics.mean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{min(values):.{digits}f}–{max(values):.{digits}f}]"


def table(runs: dict[str, list[dict]]) -> str:
    lines = [
        "| batches | seeds | validation answer acc | OOD answer acc | final eval loss | training time (s) | steps/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for variant, rs in runs.items():
        cols = [
            _stat([r["validation_answer_acc"] for r in rs], 3),
            _stat([r["ood_answer_acc"] for r in rs], 3),
            _stat([r["final_eval_loss"] for r in rs], 4),
            _stat([r["train_runtime_s"] for r in rs], 0),
            _stat([r["steps_per_second"] for r in rs], 2),
        ]
        lines.append(f"| {variant} | {len(rs)} | " + " | ".join(cols) + " |")
    return "\n".join(lines) + "\n"


def plot(runs: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    colors = {"padded": "tab:blue", "packed": "tab:orange", "bucketed": "tab:green"}
    for variant, rs in runs.items():
        for k, r in enumerate(rs):
            steps, secs, loss = zip(*r["curve"]) if r["curve"] else ((), (), ())
            label = variant if k == 0 else None
            axes[0].plot(steps, loss, marker="o", color=colors[variant], label=label, alpha=0.8)
            axes[1].plot(secs, loss, marker="o", color=colors[variant], label=label, alpha=0.8)
    axes[0].set_xlabel("training step")
    axes[1].set_xlabel("wall-clock seconds (one thread, two runs side by side)")
    axes[0].set_ylabel("validation loss")
    for ax in axes:
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--save_root", required=True)
    ap.add_argument("--config", default=str(ROOT / "configs" / "blotch.json"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--summary_only", action="store_true", help="only summarise the runs already in save_root")
    args = ap.parse_args(argv)
    save_root, config = Path(args.save_root), Path(args.config)
    if not config.is_file():
        print(f"error: --config {config}: no such file", file=sys.stderr)
        return 2
    if args.jobs < 1:
        print(f"error: --jobs {args.jobs}: use 1 or more", file=sys.stderr)
        return 2
    if not args.summary_only:
        save_root.mkdir(parents=True, exist_ok=True)
        jobs = [(v, s) for s in args.seeds for v in args.variants]  # a seed's variants side by side
        with ThreadPoolExecutor(args.jobs) as pool:
            for line in pool.map(lambda job: run_one(config, save_root, *job), jobs):
                print(line, flush=True)
    runs = summarise(save_root, args.seeds)
    if not runs:
        print(f"error: no finished runs in {save_root}", file=sys.stderr)
        return 2
    (save_root / "batching_summary.json").write_text(json.dumps(runs, indent=1) + "\n")
    (save_root / "batching_table.md").write_text(table(runs))
    plot(runs, save_root / "batching.png")
    print(table(runs))
    print(json.dumps({v: {k: [r[k] for r in rs] for k in rs[0] if k != "curve"} for v, rs in runs.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
