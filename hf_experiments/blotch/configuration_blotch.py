"""Configuration of the blotch model (`BlotchConfig`), speaking the vocabulary of grantsrb/blotching.

Identical to ``GPT2Config`` except: the original's names (``d_model``, ``n_heads``, ``n_layers``, ``max_posencs``,
``h_mult``, ``drop_p``) are aliases of GPT-2's attributes or derive them, the positional-encoding, blotching and
label-smoothing options are fields, and ``vocab_size`` also counts the ``n_btokens`` blotch tokens (the last ids).

Design: `docs/semantic_blotching.md`, section "Model".
"""

from __future__ import annotations

from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import GPT2Config

POSENC_TYPES = ("SinPositionalEncoding", "RandPositionalEncoding")


@strict
class BlotchConfig(GPT2Config):
    """Example: ``BlotchConfig(vocab_size=19, d_model=64, n_heads=4, n_layers=2, max_posencs=256)``."""

    model_type = "blotch"
    attribute_map = {
        **GPT2Config.attribute_map,
        "d_model": "n_embd",
        "n_heads": "n_head",
        "n_layers": "n_layer",
        "max_posencs": "n_positions",
    }

    vocab_size: int = 19
    n_positions: int = 512
    n_embd: int = 128
    n_layer: int = 4
    n_head: int = 4
    h_mult: int = 4
    drop_p: float | int = 0.0
    posenc_type: str = "SinPositionalEncoding"
    learnable_posencs: bool = False
    posenc_drop_p: float | int = 0.0
    pad_pos_skip: bool = True
    n_btokens: int = 0
    blotch_p_min: float | int = 0.0
    blotch_p_max: float | int = 0.0
    label_smoothing: float | int = 0.0
    activation_function: str = "gelu"
    bos_token_id: int | None = 1
    eos_token_id: int | list[int] | None = 2
    pad_token_id: int | None = 0

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        for name in ("vocab_size", "n_embd", "n_layer", "n_head", "n_positions", "h_mult"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"BlotchConfig: {name}={value!r} is invalid; expected an integer >= 1")
        if self.n_embd % self.n_head:
            raise ValueError(
                f"BlotchConfig: d_model={self.n_embd} is invalid; expected a multiple of n_heads={self.n_head}"
            )
        if self.posenc_type not in POSENC_TYPES:
            raise ValueError(
                f"BlotchConfig: posenc_type={self.posenc_type!r} is invalid; expected one of {', '.join(POSENC_TYPES)}"
            )
        for name in ("drop_p", "posenc_drop_p", "blotch_p_min", "blotch_p_max", "label_smoothing"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise ValueError(
                    f"BlotchConfig: {name}={getattr(self, name)!r} is invalid; expected a probability in [0, 1]"
                )
        if not 0 <= self.n_btokens < self.vocab_size:
            raise ValueError(f"BlotchConfig: n_btokens={self.n_btokens} is invalid; expected 0..vocab_size-1")
        self.n_inner = self.h_mult * self.n_embd
        self.resid_pdrop = self.attn_pdrop = self.embd_pdrop = float(self.drop_p)

    @property
    def btoken_offset(self) -> int:
        """Id of blotch token 0 (the tokenizer's vocabulary size)."""
        return self.vocab_size - self.n_btokens


__all__ = ["POSENC_TYPES", "BlotchConfig"]
