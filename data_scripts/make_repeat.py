"""Generate the repeat-sequence dataset of the recurrent storage experiments as a Hugging Face dataset folder.

    python data_scripts/make_repeat.py --out datasets/repeat_30_2-9 --min_len 2 --max_len 9

Splits: `train` (unique sequences, never in any validation split), `valid` (same lengths, held out),
`valid_norepeat`, `valid_longer_1`, `valid_longer_2`, `valid_longer_1_norepeat` (see
`hf_experiments.recurrent.repeat_data`). Columns: `input_ids`, `length`. The experiments generate the same folder on
first use (`<save_root>/data/<name>`); point `dataset_path` at a folder made here to share one across
machines. The original used 10^6 training sequences (the default; ~5 s here).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from hf_experiments.recurrent.repeat_data import RepeatDataSpec, generate_repeat_dataset

HELP = {
    "n_symbols": "alphabet size (the paper: 30)",
    "min_len": "shortest training/validation sequence",
    "max_len": "longest training/validation sequence",
    "with_repeats": "whether train/valid sequences may repeat a symbol (true/false)",
    "n_train": "training sequences",
    "n_valid": "sequences of the main validation split",
    "n_valid_extra": "sequences of each extra validation split (longer / without repeats)",
    "heldout_fraction": "fraction of all sequences reserved for validation (never trained on)",
    "seed": "generation seed",
}


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean; use true or false")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="dataset folder to write")
    for f in fields(RepeatDataSpec):
        kind = _bool if f.type in (bool, "bool") else type(f.default)
        parser.add_argument(f"--{f.name}", type=kind, default=f.default, help=f"{HELP[f.name]} (default {f.default})")
    parser.add_argument("--push_to_hub", default=None, help="also upload to this Hub dataset repo (user/name)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    spec = RepeatDataSpec(**{f.name: getattr(args, f.name) for f in fields(RepeatDataSpec)})
    try:
        out = generate_repeat_dataset(args.out, spec, overwrite=args.overwrite, push_to_hub=args.push_to_hub)
    except (ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
