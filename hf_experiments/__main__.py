"""`python -m hf_experiments --config configs/cmp.json [--key value ...]`: the same as `trainers/run.py`."""

import sys

from .cli import main

sys.exit(main())
