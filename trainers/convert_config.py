"""Convert an original project's config file into ours: a thin wrapper of `hf_experiments.core.convert`
(installed as `hfe convert`).

    python trainers/convert_config.py hyperparameters.json --experiment cmp -o configs/my_cmp.json
"""

import sys

from hf_experiments.core.convert import main

if __name__ == "__main__":
    sys.exit(main())
