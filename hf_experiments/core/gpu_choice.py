"""`--gpu <index>|auto`: the Csordás framework's `-gpu`, one run on one chosen GPU.

The choice is made by setting `CUDA_VISIBLE_DEVICES` before anything starts CUDA (`TrainingArguments` does, when
it is built), so the parser applies it between reading the command line and building the arguments. The GPUs and
their free memory come from `nvidia-smi` (asking torch would start CUDA, after which the variable is ignored).
"""

from __future__ import annotations

import os
import shutil
import subprocess

from .config import ConfigError


def _smi_rows() -> list[tuple[str, int]]:
    """(physical index, free MiB) of every GPU `nvidia-smi` lists; none without `nvidia-smi`."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=index,memory.free", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return parse_smi(out)


def parse_smi(text: str) -> list[tuple[str, int]]:
    """Rows of `nvidia-smi --query-gpu=index,memory.free --format=csv,noheader,nounits`."""
    rows = []
    for line in text.strip().splitlines():
        idx, _, free = (p.strip() for p in line.partition(","))
        if idx.isdigit():
            rows.append((idx, int(free) if free.isdigit() else 0))
    return rows


# As the process started: `apply_gpu` narrows the variable, and a second run of the same process (a notebook)
# counts its index among the GPUs the process was given, not among the one the first run chose.
_STARTED_WITH = {k: v for k, v in os.environ.items() if k == "CUDA_VISIBLE_DEVICES"}


def visible_gpus(smi: list[tuple[str, int]] | None = None, env: dict[str, str] | None = None) -> list[tuple[str, int]]:
    """The GPUs this process may use, in CUDA's order: `CUDA_VISIBLE_DEVICES` (when set; by default as the
    process started) picks from nvidia-smi's."""
    env = _STARTED_WITH if env is None else env
    smi = _smi_rows() if smi is None else smi
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return smi
    free = dict(smi)
    ids = [v.strip() for v in visible.split(",") if v.strip()]
    if any(v.startswith("-") for v in ids):  # CUDA stops at the first invalid entry
        ids = ids[: next(i for i, v in enumerate(ids) if v.startswith("-"))]
    return [(v, free.get(v, 0)) for v in ids]


def choose_gpu(value: str, gpus: list[tuple[str, int]]) -> str | None:
    """The `CUDA_VISIBLE_DEVICES` value for `--gpu value` among `gpus`; None = no GPU (auto on a CPU machine)."""
    if value == "auto":
        return max(gpus, key=lambda g: g[1])[0] if gpus else None
    index = int(value)
    if not gpus:
        raise ConfigError(
            "gpu", value, "a GPU that exists: this machine shows none (nvidia-smi); drop --gpu or use auto"
        )
    if index >= len(gpus):
        raise ConfigError("gpu", value, f"a GPU index below {len(gpus)} (the visible GPUs are 0..{len(gpus) - 1})")
    return gpus[index][0]


def apply_gpu(value: str | None) -> str | None:
    """Restrict this process to the chosen GPU; returns what `CUDA_VISIBLE_DEVICES` became (None: unchanged)."""
    if value is None:
        return None
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        raise ConfigError(
            "gpu", value, "one process only: under accelerate launch / torchrun set CUDA_VISIBLE_DEVICES instead"
        )
    chosen = choose_gpu(value, visible_gpus())
    if chosen is None:
        print("gpu=auto: no GPU on this machine, running on the CPU")
        return None
    import torch

    if torch.cuda.is_initialized() and os.environ.get("CUDA_VISIBLE_DEVICES") != chosen:
        raise ConfigError("gpu", value, "set before CUDA starts in this process (a new process per run)")
    os.environ["CUDA_VISIBLE_DEVICES"] = chosen
    return chosen
