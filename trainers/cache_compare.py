"""Plot data-cache runs side by side: mean training-solution length and validation accuracy per epoch.

    python trainers/cache_compare.py outputs/blotch_axe outputs/blotch_axe_twin --out docs/img/blotch_axe.png

Reads each run folder's ``cache_history.csv`` (written by runs that train through the data cache, see
``docs/data_cache.md``) and prints the first and last epoch of each next to the plot.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hf_experiments.blotch.self_training.history import plot_history_runs, read_history


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run folders holding cache_history.csv")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--title", default="", help="plot title")
    args = parser.parse_args(argv)
    runs = {}
    for folder in map(Path, args.runs):
        path = folder / "cache_history.csv"
        if not path.is_file():
            parser.error(f"{path} not found: is {folder} a run folder of a data-cache run?")
        runs[folder.name] = history = read_history(path)
        first, last = history[0], history[-1]
        print(
            f"{folder.name}: epoch {first['epoch']:g} length {first['mean_solution_length']:.1f} -> epoch "
            f"{last['epoch']:g} length {last['mean_solution_length']:.1f}, accuracy {last['val_answer_acc']}"
        )
    plot_history_runs(runs, Path(args.out), args.title)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
