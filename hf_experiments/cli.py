"""The `hfe` command (installed by `pip install .`) and the command line of `trainers/run.py` and
`python -m hf_experiments`.

    hfe run --config configs/cmp.json [--key value ...]   one run (a config with a "sweep" grid runs the grid)
    hfe sweep --config configs/mlp_mup_sweep.json         a grid of runs (`trainers/sweep.py`)
    hfe convert hyperparameters.json -o my.json           an original project's config -> ours
    hfe list                                              experiments, what they are, their shipped configs
    hfe push <run_dir> <namespace/name> [--private]       a finished run to the Hugging Face Hub
    hfe run --experiment cmp --help                       every key of one experiment, grouped

Several processes: `accelerate launch trainers/run.py --config ...` (the same arguments as `hfe run`).
`trainers/run.py` and `python -m hf_experiments` take `hfe run`'s arguments without the word `run`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

_USAGE = __doc__.split("\n\n")[1]


def _run(argv: list[str]) -> int:
    """One run, or the grid of a config with a `"sweep"` key (job configs never contain it: no recursion)."""
    if "--list" in argv:
        return _list([])
    from hf_experiments.sweeps.cli import config_has_sweep

    if config_has_sweep(argv):  # its --help is the sweep runner's
        return _exits(_sweep)(argv)
    if "-h" in argv or "--help" in argv:
        return _help(argv)
    from hf_experiments.core.runner import main as run_main

    return run_main(argv)


def _help(argv: list[str]) -> int:
    """The keys of the experiment that `--config` / `--experiment` names, grouped by dataclass, or the usage."""
    from hf_experiments.core.config import ConfigError
    from hf_experiments.core.parsing import HelpRequested, parse_config_strict

    try:
        parse_config_strict(argv)
    except HelpRequested as h:
        print(h.text)
        return 0
    except ConfigError as e:
        if e.key == "experiment" and e.value is None:  # no experiment named: the general usage
            print(f"usage:\n{_USAGE}\n\n`hfe list` names the experiments.")
            return 0
        print(f"config error: {e}", file=sys.stderr)
        return 2
    return 0  # not reached: a help request always raises


def _sweep(argv: list[str]) -> int:
    from hf_experiments.sweeps.cli import main as sweep_main

    return sweep_main(argv, prog="hfe sweep")


def _convert(argv: list[str]) -> int:
    from hf_experiments.core.convert import main as convert_main

    return convert_main(argv)


def _push(argv: list[str]) -> int:
    from hf_experiments.core.hub import main as push_main

    return push_main(argv)


def _list(argv: list[str]) -> int:
    """Each experiment with its one-line description and the shipped configs that run it."""
    import argparse

    from hf_experiments.core.registry import available_experiments, describe_experiment

    ap = argparse.ArgumentParser(prog="hfe list", description="The registered experiments and their configs.")
    ap.add_argument(
        "--configs",
        action="append",
        help="a folder of configs to list (default: ./configs and the source checkout's configs/)",
    )
    args = ap.parse_args(argv)
    found = shipped_configs([Path(p) for p in args.configs] if args.configs else None)
    folders = sorted({str(Path(f).parent) for files in found.values() for f in files})
    width = max(len(n) for n in available_experiments())
    if folders:
        print("configs from " + ", ".join(folders) + "\n")
    for name in available_experiments():
        print(f"{name:<{width}}  {describe_experiment(name)}")
        files = [f if len(folders) > 1 else Path(f).name for f in found.get(name, [])]
        print(" " * (width + 2) + ("configs: " + ", ".join(files) if files else "configs: (none found)"))
    if not found:
        print("\nno configs/ folder here or in a source checkout: the shipped configs are in the repository's configs/")
    return 0


def shipped_configs(folders: list[Path] | None = None) -> dict[str, list[str]]:
    """experiment -> the config files (JSON / YAML) in `folders` that name it; a sweep grid is marked."""
    from hf_experiments.core.config import ConfigError
    from hf_experiments.core.config_files import YAML_SUFFIXES, load_config_file

    if folders is None:
        checkout = Path(__file__).resolve().parents[1] / "configs"
        folders = [Path("configs"), checkout]
    out: dict[str, list[str]] = {}
    seen: set[Path] = set()
    for folder in folders:
        if not folder.is_dir() or folder.resolve() in seen:
            continue
        seen.add(folder.resolve())
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in (".json", *YAML_SUFFIXES) or not path.is_file():
                continue
            try:
                raw = load_config_file(str(path))
            except ConfigError:
                continue
            name = raw.get("experiment")
            if isinstance(name, str):
                out.setdefault(name, []).append(str(path) + (" (sweep)" if "sweep" in raw else ""))
    return out


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "run": _run,
    "sweep": _sweep,
    "convert": _convert,
    "list": _list,
    "push": _push,
}


def _exits(command: Callable[[list[str]], int]) -> Callable[[list[str]], int]:
    """`command` returning argparse's exit status (its `--help`, its usage errors) instead of raising it."""

    def run(argv: list[str]) -> int:
        try:
            return command(argv)
        except SystemExit as e:
            return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)

    return run


def main(argv: list[str] | None = None) -> int:
    """`hfe <command> ...`; without a command word (`trainers/run.py`, `python -m hf_experiments`): `run`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print(f"usage:\n{_USAGE}", file=sys.stderr)
        return 2
    if argv[0] in ("-h", "--help"):
        print(f"usage:\n{_USAGE}")
        return 0
    if argv[0].startswith("-"):
        return _run(argv)
    command = COMMANDS.get(argv[0])
    if command is None:
        print(f"hfe: unknown command {argv[0]!r}: one of {', '.join(COMMANDS)} (`hfe --help`)", file=sys.stderr)
        return 2
    return _exits(command)(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
