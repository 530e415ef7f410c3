"""Configuration of an intervention on a frozen RNN's state (linear, onion) or
a decoding probe.
"""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

METHODS = ("linear", "onion", "probe_mlp", "probe_gru")


# ------------------------------------------------------------------------------------------------------------
# The stage-two model
# ------------------------------------------------------------------------------------------------------------
@strict
class InterventionConfig(PreTrainedConfig):
    r"""
    A frozen `RecurrentSeq2Seq` plus one intervention or probe (see the module docstring).

    Parameters:
        recurrent (`dict`): the frozen model's `RecurrentConfig` as a dict.
        method (`"linear" | "onion" | "probe_mlp" | "probe_gru"`).
        n_positions (`int`): longest sequence handled (the data's `max_len`).
        mask_reg (`float`, defaults to 0.001): linear: weight of the pull towards "no position".
        swap_prob (`float`, defaults to 0.5): linear: probability that a position is swapped.
        onion_linear_term, onion_fixed_scale (`bool`): onion: variants of the magnitude (module docstring).
        onion_linear_init (`float`): onion: the initial value of the linear term's lambda (the original: 1).
        probe_layers (`int`, defaults to 1): probe_mlp: layers.
        eval_seed (`int`): seed of the corruptions during evaluation.
    """

    model_type = "hfe_recurrent_intervention"

    recurrent: dict | None = None
    method: str = "onion"
    n_positions: int = 9
    mask_reg: float = 0.001
    swap_prob: float = 0.5
    onion_linear_term: bool = True
    onion_fixed_scale: bool = False
    onion_linear_init: float = 1.0
    probe_layers: int = 1
    eval_seed: int = 0

    def __post_init__(self, **kwargs):
        if self.method not in METHODS:
            raise ValueError(f"InterventionConfig: method={self.method!r} is invalid; expected one of {METHODS}")
        if self.n_positions < 1:
            raise ValueError(f"InterventionConfig: n_positions={self.n_positions} is invalid; expected >= 1")
        if not 0.0 <= self.swap_prob <= 1.0:
            raise ValueError(f"InterventionConfig: swap_prob={self.swap_prob} is invalid; expected a value in [0, 1]")
        if self.probe_layers < 1:
            raise ValueError(f"InterventionConfig: probe_layers={self.probe_layers} is invalid; expected >= 1")
        super().__post_init__(**kwargs)
