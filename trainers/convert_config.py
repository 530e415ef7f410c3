"""Convert an original project's `hyperparameters.json` (or arrows-of-time `TrainParams/*.json`) into our config.

    python trainers/convert_config.py hyperparameters.json --experiment cmp -o configs/my_cmp.json

Seed names are renamed (`lr` -> `learning_rate`, ...; the table is `hf_experiments/seed_names.py` and the
README), names with no counterpart are dropped with a note saying what replaces them, and the result is
validated exactly as `trainers/run.py` would validate it (exit 2 with the one-line error otherwise).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from hf_experiments.core.config import ConfigError
from hf_experiments.core.parsing import parse_config_strict
from hf_experiments.core.seed_names import drop_seed_only_names, translate_seed_names


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", help="the original hyperparameters JSON file")
    ap.add_argument("--experiment", required=True, help="registered experiment name, e.g. cmp or arrows")
    ap.add_argument("-o", "--output", help="where to write the converted config (default: print it)")
    args = ap.parse_args(argv)
    try:
        raw = json.loads(Path(args.source).read_text(encoding="utf-8"))
        flat, notes = translate_seed_names(raw)
    except (OSError, ValueError) as e:
        print(f"config error: {args.source}: {e}", file=sys.stderr)
        return 2
    flat, dropped = drop_seed_only_names(flat)
    flat = {"experiment": args.experiment, **{k: v for k, v in flat.items() if k != "experiment"}}
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / (Path(args.output or args.source).stem + ".json")
        probe.write_text(json.dumps(flat))
        try:
            parse_config_strict(["--config", str(probe)])
        except ConfigError as e:
            print(f"config error: {e}", file=sys.stderr)
            return 2
    for note in notes + dropped:
        print(f"# {note}", file=sys.stderr)
    text = json.dumps(flat, indent=2) + "\n"
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
