"""Model helpers every experiment shares: loading weights only (`init_checkpt`) from a checkpoint or a saved
model into a freshly built model."""

from __future__ import annotations

from pathlib import Path

from transformers import PreTrainedModel
from transformers.utils import logging

logger = logging.get_logger(__name__)


def load_init_weights(model: PreTrainedModel, path: str) -> None:
    """`init_checkpt`: copy weights (only) from a checkpoint or saved-model folder into `model`."""
    from transformers.trainer_utils import load_sharded_checkpoint

    path = Path(path)
    if (path / "model.safetensors").is_file():
        from safetensors.torch import load_file

        state = load_file(str(path / "model.safetensors"))
        missing, unexpected = model.load_state_dict(state, strict=False)
    else:
        missing, unexpected = load_sharded_checkpoint(model, str(path), strict=False)
    if unexpected:
        raise ValueError(f"init_checkpt={str(path)!r}: weights do not fit this model (unexpected: {unexpected[:5]})")
    logger.warning(f"init_checkpt: loaded weights from {path} ({len(missing)} tensors kept at initialisation)")
