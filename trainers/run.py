"""Train one experiment from a flat JSON config.

    accelerate launch trainers/run.py --config configs/cmp.json [--key value ...]
    python trainers/run.py --list                       # registered experiments
    python trainers/run.py --experiment cmp --help      # every key of one experiment

Flow (`hf_experiments.core.runner.main`): parse (strict; exit 2 on a bad config, nothing written) -> data ->
model -> trainer -> train (resuming from the last complete checkpoint of the run folder) -> evaluate -> save.
A config with a `"sweep"` grid runs every job of it. Exit status 0 done, 2 bad config (or the run folder is in
use), 74 disk full, 75 preempted: rerun the same command to continue. Several ranks that may be preempted:
`python trainers/launch.py <accelerate launch arguments>` (exits 75 where torchrun says 1).
"""

import signal
import sys

_received = []


def _preempted_while_importing(signum, frame):
    _received.append(signum)
    raise SystemExit(75)  # nothing was written yet: rerun the same command


# From the first line: importing torch and transformers takes seconds, and a preemption signal then must still
# mean "exit 75, rerun me"; `main` installs the full handlers (`hf_experiments.core.signals`).
for _sig in (signal.SIGTERM, signal.SIGUSR1):
    signal.signal(_sig, _preempted_while_importing)

from hf_experiments.cli import main  # noqa: E402

if __name__ == "__main__":
    if _received:  # the SystemExit was swallowed by an import (a bare `except:` in some dependency)
        sys.exit(75)
    code = main()
    for _sig in (signal.SIGTERM, signal.SIGUSR1):  # the run is over: teardown is not interrupted into a -15
        signal.signal(_sig, signal.SIG_IGN)
    sys.exit(code)
