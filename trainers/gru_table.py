"""The paper's table from a grid of recurrent storage runs (`trainers/gru_grid.py`).

    python trainers/gru_table.py --save_root outputs/gru_grid [--out table.md]

One row per state size: IID accuracy of the GRU (`eval_valid_accuracy` of `gru_s<N>_seed<k>`) and intervention
accuracy of each intervention (`eval_valid_accuracy` of `gru_s<N>_seed<k>_<intervention>`), as mean ± std over
the seeds found (sample std; `n` = seeds). Runs without `metrics.json` (unfinished) are left out and counted.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

RUN_RE = re.compile(r"^gru_s(\d+)_seed(\d+)(?:_(\w+))?$")
METRIC = "eval_valid_accuracy"


def collect(save_root: Path) -> tuple[dict[int, dict[str, list[float]]], list[str]]:
    """state size -> column ("iid" or an intervention) -> accuracies over seeds; and the unfinished runs."""
    table: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    unfinished = []
    for run_dir in sorted(p for p in save_root.iterdir() if p.is_dir()):
        m = RUN_RE.match(run_dir.name)
        if not m:
            continue
        metrics = run_dir / "metrics.json"
        if not metrics.is_file():
            unfinished.append(run_dir.name)
            continue
        value = json.loads(metrics.read_text())[METRIC]
        table[int(m.group(1))][m.group(3) or "iid"].append(100.0 * value)
    return table, unfinished


def cell(values: list[float]) -> str:
    if not values:
        return "–"
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return f"{np.mean(values):.1f} ± {std:.1f} (n={len(values)})"


def render(table: dict[int, dict[str, list[float]]]) -> str:
    columns = ["iid", *sorted({c for row in table.values() for c in row} - {"iid"})]
    names = {
        "iid": "IID accuracy (%)",
        "linear": "linear intervention (%)",
        "onion": "onion intervention (%)",
    }
    head = "| state size | " + " | ".join(names.get(c, f"{c} (%)") for c in columns) + " |"
    rule = "|---:|" + "---:|" * len(columns)
    rows = [f"| {size} | " + " | ".join(cell(table[size].get(c, [])) for c in columns) + " |" for size in sorted(table)]
    return "\n".join([head, rule, *rows])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--save_root", default="outputs/gru_grid")
    p.add_argument("--out", default=None, help="also write the table (markdown) here")
    args = p.parse_args(argv)
    root = Path(args.save_root)
    if not root.is_dir():
        print(f"error: save_root={str(root)!r} is not a folder", file=sys.stderr)
        return 2
    table, unfinished = collect(root)
    text = render(table)
    print(text)
    if unfinished:
        print(f"\n({len(unfinished)} unfinished runs left out: {', '.join(unfinished)})")
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
