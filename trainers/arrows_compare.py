"""Compare forward and backward arrows-of-time runs (same data, opposite reading directions).

    python trainers/arrows_compare.py outputs/linear_forward outputs/linear_backward
    python trainers/arrows_compare.py FWD_RUN BWD_RUN --out docs/img/arrows_linear_compare.png
    python trainers/arrows_compare.py --forward F_s0 F_s1 ... --backward B_s0 B_s1 ... --budgets 4000 --out cmp

One pair: reads each run folder's `loss_per_position.json` (written by the final evaluation) and writes
`<out>.json` (mean losses, relative gap (backward - forward) / forward, both per-position curves) and
`<out>.png` (both curves on one plot, against the position as read). A positive gap means reading
backward is harder.

Several seeds (`--forward ... --backward ...`, run i of each list one seed): per budget (`--budgets`: steps at
which every run evaluated, plus the final evaluation) the gap backward - forward and the relative gap, mean and
95% t-interval over the paired seeds; per-position mean curves with 95% bands (`<out>.json`, `<out>.png`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hf_experiments.arrows.analysis import compare_runs, compare_seeds, plot_compare, plot_compare_seeds
from hf_experiments.core.run_folder import write_json_atomic


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("forward_run", nargs="?", help="run folder trained with direction=forward")
    parser.add_argument("backward_run", nargs="?", help="run folder trained with direction=backward (or a permutation)")
    parser.add_argument("--forward", nargs="+", default=None, metavar="RUN", help="forward runs, one per seed")
    parser.add_argument("--backward", nargs="+", default=None, metavar="RUN", help="backward runs, same seed order")
    parser.add_argument("--budgets", nargs="+", type=int, default=None, metavar="STEP", help="earlier budgets")
    parser.add_argument(
        "--out",
        default=None,
        help="output path without or with .png/.json suffix; default: "
        "<parent of forward_run>/compare_<forward>_vs_<backward>",
    )
    parser.add_argument("--title", default=None, help="plot title (default: the relative gap)")
    return parser


def _seeds(args: argparse.Namespace) -> int:
    try:
        result = compare_seeds(args.forward, args.backward, args.budgets)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    base = Path(args.out) if args.out else Path(args.forward[0]).parent / "compare_seeds"
    base = base.with_suffix("") if base.suffix in (".png", ".json") else base
    base.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(base.with_suffix(".json"), result)
    plot_compare_seeds(result, base.with_suffix(".png"), args.title)
    for b in result["budgets"]:
        gap, rel = b["gap"], b["relative_gap"]
        print(
            f"{b['step']:>7} steps  forward {b['forward']['mean']:.4f}  backward {b['backward']['mean']:.4f}  "
            f"gap {gap['mean']:+.4f} (95% CI {gap['ci95'][0]:+.4f} to {gap['ci95'][1]:+.4f})  "
            f"relative {rel['mean']:+.2%} ({rel['ci95'][0]:+.2%} to {rel['ci95'][1]:+.2%}), n={result['n_seeds']}"
        )
    print(f"wrote {base.with_suffix('.json')} and {base.with_suffix('.png')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.forward or args.backward:
        if args.forward_run or not (args.forward and args.backward):
            parser.error("give --forward and --backward runs (several seeds), or two positional runs, not both")
        return _seeds(args)
    if not (args.forward_run and args.backward_run) or args.budgets:
        parser.error("give a forward and a backward run folder (or --forward/--backward lists with --budgets)")
    fwd, bwd = Path(args.forward_run), Path(args.backward_run)
    try:
        result = compare_runs(fwd, bwd)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    base = Path(args.out) if args.out else fwd.parent / f"compare_{fwd.name}_vs_{bwd.name}"
    if base.suffix in (".png", ".json"):
        base = base.with_suffix("")
    base.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(base.with_suffix(".json"), result)
    plot_compare(result, base.with_suffix(".png"), args.title)
    print(
        f"forward  mean loss {result['forward_mean_loss']:.4f}  ({fwd})\n"
        f"backward mean loss {result['backward_mean_loss']:.4f}  ({bwd})\n"
        f"relative gap (backward - forward) / forward = {result['relative_gap']:+.2%}\n"
        f"wrote {base.with_suffix('.json')} and {base.with_suffix('.png')}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
