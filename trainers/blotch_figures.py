"""The Chain-of-Shortcuts figures in one command: vanilla, blotched and direct runs over seeds, a layer sweep and
sampling temperatures, each figure a PNG + CSV.

    python trainers/blotch_figures.py --save_root outputs/blotch_figures --jobs 2                # CPU set (~45 min)
    python trainers/blotch_figures.py --save_root outputs/blotch_figures --copy_to docs/img      # + docs copies
    python trainers/blotch_figures.py --save_root outputs/blotch_paper --gpu                     # paper scale (GPU)
    python trainers/blotch_figures.py --save_root outputs/x --seeds 0 --layers 2 --set max_steps=200   # quick look

Runs are ordinary `trainers/run.py` folders under `--save_root` (`vanilla_seed0`, `blotched_L4_seed0`, ...): a
finished one is reused, an interrupted one resumes, so rerunning continues after a crash or adds seeds. Writes
`<save_root>/figures/{levels,temperature,baselines,layers}.{png,csv}` and `summary.json` (blotched vs vanilla,
paired by seed: length reduction and accuracy difference with 95% intervals). Design: docs/semantic_blotching.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hf_experiments.blotch.figures import FigurePlan, make_figures

GPU_CONFIGS = {
    "vanilla": "configs/blotch_paper_vanilla.json",
    "blotched": "configs/blotch_paper.json",
    "direct": "configs/blotch_paper_direct.json",
}


def main(argv: list[str] | None = None) -> int:
    defaults = FigurePlan()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--save_root", required=True, help="folder of the runs and figures")
    p.add_argument("--gpu", action="store_true", help="the paper-scale configs (configs/blotch_paper*.json)")
    for role in defaults.configs:
        p.add_argument(f"--{role}", default=None, help=f"{role} config (default {defaults.configs[role]})")
    p.add_argument("--no_direct", action="store_true", help="leave out the direct baseline")
    p.add_argument("--seeds", type=int, nargs="+", default=defaults.seeds)
    p.add_argument("--layers", type=int, nargs="+", default=defaults.layers, help="depths of the layer sweep")
    p.add_argument(
        "--layer_roles",
        nargs="+",
        choices=("vanilla", "blotched", "direct"),
        default=defaults.layer_roles,
        help="configs trained at every depth of the layer sweep",
    )
    p.add_argument("--temperatures", type=float, nargs="+", default=defaults.temperatures)
    p.add_argument("--n_eval", type=int, default=defaults.n_eval, help="validation problems per temperature")
    p.add_argument("--jobs", type=int, default=1, help="runs trained at once (the cores are split between them)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override a key in every run")
    p.add_argument("--copy_to", default=None, help="also copy the figures here as blotch_<name>.png/.csv")
    a = p.parse_args(argv)
    configs = dict(GPU_CONFIGS if a.gpu else defaults.configs)
    for role in list(configs):
        configs[role] = getattr(a, role) or configs[role]
    if a.no_direct:
        configs.pop("direct")
    for role, path in configs.items():
        if not Path(path).is_file():
            print(f"config error: --{role}={path!r} is not a file; pass a config JSON", file=sys.stderr)
            return 2
    for item in a.set:
        if "=" not in item:
            print(f"config error: --set {item!r} is not allowed; use KEY=VALUE", file=sys.stderr)
            return 2
    for name in ("seeds", "layers"):
        if not getattr(a, name) or min(getattr(a, name)) < (0 if name == "seeds" else 1):
            print(f"config error: --{name}={getattr(a, name)} is not allowed; use values >= 0 / 1", file=sys.stderr)
            return 2
    if min(a.temperatures) < 0 or a.n_eval < 1 or a.jobs < 1:
        print("config error: --temperatures >= 0, --n_eval >= 1 and --jobs >= 1 are required", file=sys.stderr)
        return 2
    plan = FigurePlan(configs, a.seeds, a.layers, a.temperatures, a.n_eval, a.layer_roles)
    summary = make_figures(plan, a.save_root, a.jobs, a.set, a.copy_to)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
