"""Compression methods side by side on one backbone and data: compression tokens, mean pooling, LoRA.

    python trainers/cmp_methods.py --save_root outputs/cmp_methods                 # configs/cmp.json, seed 0
    python trainers/cmp_methods.py --save_root outputs/cmp_methods --seeds 0 1 2 --jobs 2
    python trainers/cmp_methods.py --save_root outputs/x --methods tokens mean --set max_steps=50   # quick look

Each method is a `trainers/run.py` folder `<save_root>/<method>_seed<s>` (a finished one is reused, an interrupted
one resumes). Writes `<save_root>/methods.csv`, `methods.md` (the table of low / pred / high and gap recovered
with 95% intervals) and `methods.png`. Design: docs/compression.md, section "Methods side by side".
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hf_experiments.compression.methods import METHODS, compare_methods


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--save_root", required=True, help="folder of the runs and the table")
    parser.add_argument("--config", default="configs/cmp.json", help="base config of every method")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at once (the cores are split)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override a key of every run")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    bad = [item for item in args.set if "=" not in item]
    if bad or args.jobs < 1 or not Path(args.config).is_file():
        problem = (
            f"--set {bad[0]!r}: expected KEY=VALUE"
            if bad
            else f"--jobs={args.jobs}: expected >= 1"
            if args.jobs < 1
            else f"--config={args.config!r}: no such file"
        )
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        out = compare_methods(args.config, args.save_root, args.methods, args.seeds, args.jobs, args.set)
    except (RuntimeError, ValueError, FileNotFoundError, KeyError) as e:  # a failed run, a foreign folder
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(Path(out["md"]).read_text())
    print(f"wrote {out['csv']}, {out['md']} and {out['png']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
