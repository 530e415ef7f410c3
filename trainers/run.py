"""Train one experiment from a flat JSON config.

    accelerate launch trainers/run.py --config configs/cmp.json [--key value ...]
    python trainers/run.py --list                       # registered experiments
    python trainers/run.py --experiment cmp --help      # every key of one experiment

Flow (`hf_experiments.core.runner.main`): parse (strict; exit 2 on a bad config, nothing written) -> data ->
model -> trainer -> train (resuming from the last complete checkpoint of the run folder) -> evaluate -> save.
A config with a `"sweep"` grid runs every job of it. Exit status 75 after a preemption checkpoint: rerun the
same command to continue.
"""

import sys

from hf_experiments.cli import main

if __name__ == "__main__":
    sys.exit(main())
