"""Build the weights of a builtin backbone (`model_string: "builtin:<name>"`) that ship with the package.

    python data_scripts/build_backbone.py --replace            # rebuild the shipped tiny-lm (package weights/)
    python data_scripts/build_backbone.py --out /tmp/tiny-lm   # anywhere else (the folder must not exist)

Trains the tokenizer and the GPT-2 of `BUILTIN_SPECS[name]` on the embedded corpus (seeded, in one CPU thread,
about 18 minutes) and writes the folder `from_pretrained` reads, plus `builtin_backbone.json` (the recipe, the
losses, the time, this command). With `--replace` an existing shipped folder is swapped
for the new one only after the build succeeded.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package, installed or not


def main(argv: list[str] | None = None) -> int:
    from hf_experiments.compression.backbones import BUILTIN_SPECS, INFO_FILE, SHIPPED_DIR, build_builtin_backbone

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="tiny-lm", choices=sorted(BUILTIN_SPECS), help="which builtin recipe")
    parser.add_argument("--out", default=None, help="folder to create (default: the package's weights/<name>)")
    parser.add_argument("--replace", action="store_true", help="replace an existing --out after a good build")
    parser.add_argument("--corpus_cache_dir", default=None, help="where the embedded corpus is cached")
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out else SHIPPED_DIR / args.name
    if out.exists() and not args.replace:
        print(f"error: --out={str(out)!r} exists; allowed: a new folder, or pass --replace", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)  # one thread: the result does not depend on how many cores the machine has
    staging = out.with_name(f".{out.name}.new")
    shutil.rmtree(staging, ignore_errors=True)
    build_builtin_backbone(staging, corpus_cache_dir=args.corpus_cache_dir)
    record_path = staging / INFO_FILE  # the record says how to make these weights again
    record = json.loads(record_path.read_text())
    record |= {
        "command": f"python data_scripts/build_backbone.py --name {args.name} --replace",
        "torch": torch.__version__,
    }
    record_path.write_text(json.dumps(record, indent=2))
    if out.exists():
        shutil.rmtree(out)
    os.replace(staging, out)
    print(f"built {args.name} at {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
