"""The paper's table from a grid of recurrent storage runs (`trainers/gru_grid.py` writes the grid,
`trainers/gru_table.py` calls this).

One row per state size: the GRU's IID accuracy (`eval_valid_accuracy` of `gru_s<N>_seed<k>`), the steps it
trained (fewer than its cap when `stop_when` ended it at a target), and each intervention's accuracy
(`eval_valid_accuracy` of `gru_s<N>_seed<k>_<intervention>`): mean ± sample std, the range over seeds in brackets
(the paper's finding is about ranges that do not overlap), n = seeds. Runs without `metrics.json` are unfinished:
left out and listed. Besides the markdown table: `gru_grid_results.csv` (one row per run) and
`gru_grid_table.png` (accuracy against state size, every seed a point).
"""

from __future__ import annotations

import json
import re
import shutil
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hf_experiments.core.plots import figure, write_csv

RUN_RE = re.compile(r"^gru_s(\d+)_seed(\d+)(?:_(\w+))?$")
METRIC = "eval_valid_accuracy"
NAMES = {
    "iid": "IID accuracy (%)",
    "linear": "linear intervention (%)",
    "onion": "onion intervention (%)",
    "onion_init0": "onion, λ from 0 (%)",
}


@dataclass
class GridRun:
    """One finished run of the grid."""

    name: str
    state_size: int
    seed: int
    column: str  # "iid" (the GRU) or the intervention
    accuracy: float  # percent
    steps: int | None  # optimizer steps trained (trainer_state.json), None if unknown


def _steps(run_dir: Path) -> int | None:
    try:
        return int(json.loads((run_dir / "trainer_state.json").read_text(encoding="utf-8"))["global_step"])
    except (OSError, ValueError, KeyError):
        return None


def collect(save_root: Path) -> tuple[list[GridRun], list[str]]:
    """The finished runs under `save_root`, and the names of the unfinished ones."""
    runs, unfinished = [], []
    for run_dir in sorted(p for p in Path(save_root).iterdir() if p.is_dir()):
        m = RUN_RE.match(run_dir.name)
        if not m:
            continue
        metrics = run_dir / "metrics.json"
        if not metrics.is_file():
            unfinished.append(run_dir.name)
            continue
        value = json.loads(metrics.read_text(encoding="utf-8"))[METRIC]
        runs.append(
            GridRun(run_dir.name, int(m.group(1)), int(m.group(2)), m.group(3) or "iid", 100.0 * value, _steps(run_dir))
        )
    return runs, unfinished


def by_cell(runs: list[GridRun]) -> dict[int, dict[str, list[GridRun]]]:
    """state size -> column -> runs (ordered by seed)."""
    out: dict[int, dict[str, list[GridRun]]] = defaultdict(lambda: defaultdict(list))
    for run in sorted(runs, key=lambda r: (r.state_size, r.column, r.seed)):
        out[run.state_size][run.column].append(run)
    return out


def columns(table: dict[int, dict[str, list[GridRun]]]) -> list[str]:
    """ "iid" first, then the interventions found, sorted."""
    return ["iid", *sorted({c for row in table.values() for c in row} - {"iid"})]


def cell(values: list[float]) -> str:
    if not values:
        return "–"
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    d = 2 if max(values) < 10 else 1  # accuracies below 10% (the linear column) need the second digit
    return f"{np.mean(values):.{d}f} ± {std:.{d}f} [{min(values):.{d}f}–{max(values):.{d}f}] (n={len(values)})"


def steps_cell(runs: list[GridRun]) -> str:
    steps = [r.steps for r in runs if r.steps is not None]
    if not steps:
        return "–"
    return f"{min(steps)}" if min(steps) == max(steps) else f"{min(steps)}–{max(steps)}"


def render(runs: list[GridRun]) -> str:
    table = by_cell(runs)
    cols = columns(table)
    head = "| state size | " + " | ".join([NAMES["iid"], "GRU steps"] + [NAMES.get(c, f"{c} (%)") for c in cols[1:]])
    rows = []
    for size in sorted(table):
        row = table[size]
        cells = [cell([r.accuracy for r in row.get("iid", [])]), steps_cell(row.get("iid", []))]
        cells += [cell([r.accuracy for r in row.get(c, [])]) for c in cols[1:]]
        rows.append(f"| {size} | " + " | ".join(cells) + " |")
    return "\n".join([head + " |", "|---:|" + "---:|" * (len(cols) + 1), *rows])


def plot(runs: list[GridRun], path: Path) -> Path:
    """Accuracy against state size (log scale): mean line per column, every seed a point."""
    table = by_cell(runs)
    cols = columns(table)
    with figure(path, figsize=(6, 3.8)) as (_, ax):
        for column in cols:
            sizes = [s for s in sorted(table) if table[s].get(column)]
            means = [np.mean([r.accuracy for r in table[s][column]]) for s in sizes]
            (line,) = ax.plot(sizes, means, marker="o", label=NAMES.get(column, column))
            for s in sizes:
                ax.scatter(
                    [s] * len(table[s][column]),
                    [r.accuracy for r in table[s][column]],
                    color=line.get_color(),
                    s=12,
                    alpha=0.6,
                )
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(table), [str(s) for s in sorted(table)])
        ax.set_xlabel("GRU state size")
        ax.set_ylabel("exact-match accuracy (%)")
        ax.set_ylim(-3, 103)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="center right")
    return path


def write_outputs(runs: list[GridRun], out_dir: Path, copy_to: Path | None = None) -> list[Path]:
    """`gru_grid_table.md`, `gru_grid_results.csv` and `gru_grid_table.png` into `out_dir` (and `copy_to`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    table = out_dir / "gru_grid_table.md"
    table.write_text(render(runs) + "\n", encoding="utf-8")
    rows = [
        {
            "run": r.name,
            "state_size": r.state_size,
            "seed": r.seed,
            "column": r.column,
            "accuracy": r.accuracy,
            "steps": r.steps,
        }
        for r in sorted(runs, key=lambda r: (r.state_size, r.column, r.seed))
    ]
    written = [
        table,
        write_csv(out_dir / "gru_grid_results.csv", rows, list(rows[0]) if rows else ["run"]),
        plot(runs, out_dir / "gru_grid_table.png"),
    ]
    if copy_to is not None:
        copy_to.mkdir(parents=True, exist_ok=True)
        for path in written:
            shutil.copyfile(path, copy_to / path.name)
    return written
