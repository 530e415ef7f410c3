"""Upload a finished run to the Hugging Face Hub: a thin wrapper of `hf_experiments.core.hub`.

    python trainers/push_run.py runs_out/my_run my-name/my-run [--private]

The model repo gets `model/` (weights, configuration, modeling and tokenizer code, tokenizer, model card,
`run_config.json`) at its root and the TensorBoard logs under `runs/`. Exit status 0 pushed, 2 bad arguments,
1 the Hub could not be reached or refused (e.g. `HF_HUB_OFFLINE=1`, no network, no token): one line, nothing
written.
"""

import sys

from hf_experiments.core.hub import main

if __name__ == "__main__":
    sys.exit(main())
