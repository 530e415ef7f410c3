"""Compare a forward and a backward arrows-of-time run (same data, opposite reading directions).

    python trainers/arrows_compare.py outputs/linear_forward outputs/linear_backward
    python trainers/arrows_compare.py FWD_RUN BWD_RUN --out docs/img/arrows_linear_compare.png

Reads each run folder's `loss_per_position.json` (written by the final evaluation) and writes
`<out>.json` (mean losses, relative gap (backward - forward) / forward, both per-position curves) and
`<out>.png` (both curves on one plot, against the position as read). A positive gap means reading
backward is harder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hf_experiments.arrows.analysis import compare_runs, plot_compare
from hf_experiments.core.run_folder import write_json_atomic


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("forward_run", help="run folder trained with direction=forward")
    parser.add_argument("backward_run", help="run folder trained with direction=backward (or a permutation)")
    parser.add_argument(
        "--out",
        default=None,
        help="output path without or with .png/.json suffix; default: "
        "<parent of forward_run>/compare_<forward>_vs_<backward>",
    )
    parser.add_argument("--title", default=None, help="plot title (default: the relative gap)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
