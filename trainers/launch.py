"""`accelerate launch` for preemptible runs: exit 75 when preempted, signals forwarded to every rank.

    python trainers/launch.py --multi_gpu --num_processes 2 trainers/run.py --config configs/x.json

Everything after `trainers/launch.py` is passed to `accelerate launch`. Details: `hf_experiments.core.launch`.
"""

import signal
import sys


def _preempted_while_importing(signum, frame):
    raise SystemExit(75)


for _sig in (signal.SIGTERM, signal.SIGUSR1):
    signal.signal(_sig, _preempted_while_importing)

from hf_experiments.core.launch import main  # noqa: E402

if __name__ == "__main__":
    code = main()
    for _sig in (signal.SIGTERM, signal.SIGUSR1):  # the launch is over: teardown is not interrupted into a -15
        signal.signal(_sig, signal.SIG_IGN)
    sys.exit(code)
