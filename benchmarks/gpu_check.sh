#!/usr/bin/env bash
# The GPU check (issue 19), one command under 8 minutes: bash benchmarks/gpu_check.sh [--dry-run] [--out FILE]
# On the lent device machine (no network, older torch / transformers): wheels carried in `wheels/` (e.g. the
# `datasets` / `accelerate` / `safetensors` this package needs beyond what is installed there) are installed
# offline first, without touching its torch. Details and the last results: benchmarks/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
if [ -d wheels ] && compgen -G "wheels/*.whl" > /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps wheels/*.whl
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec timeout 480 "$PY" benchmarks/core/gpu_check.py "$@"
