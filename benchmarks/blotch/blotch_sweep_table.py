"""Markdown table of a folder of blotch runs (e.g. from `benchmarks/blotch/blotch_gpu_sweep.sh`).

    python benchmarks/blotch/blotch_sweep_table.py outputs/blotch_gpu_sweep [more folders ...]

One row per run folder holding a `metrics.json`: final validation answer accuracy and generated length, and
for data-cache runs the mean training-solution length at the start and end (`cache_history.csv`). Runs without
`metrics.json` (stopped early) are listed with their last recorded epoch.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from hf_experiments.blotch.self_training.history import read_history


def row(run: Path) -> str | None:
    metrics, history = run / "metrics.json", run / "cache_history.csv"
    hist = read_history(history) if history.exists() else []
    cache = ""
    if hist:
        first, last = hist[0]["mean_solution_length"], hist[-1]["mean_solution_length"]
        cache = f"{first:.1f} → {last:.1f} ({100 * (last / first - 1):+.0f}%)"
    if not metrics.exists():
        return f"| {run.name} | (stopped at epoch {hist[-1]['epoch']:.0f}) | | {cache} |" if hist else None
    m = json.loads(metrics.read_text())
    return f"| {run.name} | {m['validation_answer_acc']:.3f} | {m['validation_gen_len']:.1f} | {cache} |"


def main(folders: list[str]) -> None:
    print("| run | validation answer acc | generated tokens | training-solution tokens (cache) |")
    print("|---|---|---|---|")
    for folder in folders:
        for run in sorted(p for p in Path(folder).iterdir() if p.is_dir() and not p.name.startswith(("_", "data"))):
            line = row(run)
            if line:
                print(line)


if __name__ == "__main__":
    main(sys.argv[1:])
