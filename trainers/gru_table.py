"""The paper's table from a grid of recurrent storage runs (`trainers/gru_grid.py`).

    python trainers/gru_table.py --save_root outputs/gru_grid [--out table.md] [--copy_to docs/img]

Prints the table (IID accuracy, GRU steps, linear and onion intervention accuracy: mean ± std [range] over seeds)
and writes `gru_grid_table.md`, `gru_grid_results.csv` and `gru_grid_table.png` into the save_root
(`hf_experiments/recurrent/grid_table.py`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hf_experiments.recurrent.grid_table import collect, render, write_outputs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--save_root", default="outputs/gru_grid")
    p.add_argument("--out", default=None, help="also write the table (markdown) here")
    p.add_argument("--copy_to", default=None, help="also copy the table, CSV and plot into this folder")
    args = p.parse_args(argv)
    root = Path(args.save_root)
    if not root.is_dir():
        print(f"error: save_root={str(root)!r} is not a folder", file=sys.stderr)
        return 2
    if args.copy_to is not None and Path(args.copy_to).exists() and not Path(args.copy_to).is_dir():
        print(f"error: copy_to={args.copy_to!r} is not a folder", file=sys.stderr)
        return 2
    runs, unfinished = collect(root)
    if not runs:
        print(f"error: save_root={str(root)!r} has no finished gru_s<N>_seed<k> runs", file=sys.stderr)
        return 2
    text = render(runs)
    print(text)
    if unfinished:
        print(f"\n({len(unfinished)} unfinished runs left out: {', '.join(unfinished)})")
    write_outputs(runs, root, Path(args.copy_to) if args.copy_to else None)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
