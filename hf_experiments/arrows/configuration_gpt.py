"""Configuration of the Arrows-of-time GPT (`GPTConfig`, model type ``hfe_gpt``).

Identical to ``GPT2Config`` except: it speaks the original's ``model_params`` vocabulary (``n_layers``,
``n_heads``, ``embed_dim``, ``attn_length``, ``mlp_ratio``, ``dropout``, ``embd_dropout``), aliased to or derived
into GPT-2's attributes, and its own ``model_type`` makes the Auto classes resolve to our classes, not GPT-2's.
The original's fields are the source of truth: the derived attributes are re-derived on every load.

Design: `docs/arrows_of_time.md`, section "The GPT: configuration and model".
"""

from __future__ import annotations

import math
from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import GPT2Config

# Character-tokenizer convention (see hf_experiments.core.tokenization_char): specials come first.
DEFAULT_PAD_ID, DEFAULT_BOS_ID, DEFAULT_EOS_ID = 0, 1, 2

_SEED_INT_PARAMS = ("n_layers", "n_heads", "embed_dim", "attn_length")


def _require_positive_int(name: str, value: Any) -> None:
    """One clear line for bad sizes (the seed's 0 = 'fill in from the dataset' must not reach here)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        from_data = name in ("vocab_size", "attn_length") and value == 0
        hint = " (the seed's 0 means 'take it from the dataset/tokenizer': fill it in first)" if from_data else ""
        raise ValueError(f"GPTConfig: {name}={value!r} is invalid; expected an integer >= 1{hint}.")


def _require_probability(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) < 1.0:
        raise ValueError(f"GPTConfig: {name}={value!r} is invalid; expected a float in [0, 1).")


@strict
class GPTConfig(GPT2Config):
    """GPT-2-backed config for the Arrows-of-time GPT; accepts the seed names (see module docstring).

    Example: ``GPTConfig(vocab_size=18, n_layers=2, n_heads=2, embed_dim=32, attn_length=32)``.
    """

    model_type = "hfe_gpt"
    attribute_map = {
        **GPT2Config.attribute_map,
        "n_layers": "n_layer",
        "n_heads": "n_head",
        "embed_dim": "n_embd",
        "attn_length": "n_positions",
    }

    vocab_size: int = 256
    mlp_ratio: float | int = 4.0
    dropout: float | int = 0.1
    embd_dropout: float | int | None = None
    # GPT-1 (the paper's size) uses exact GELU, not GPT-2's tanh approximation.
    activation_function: str = "gelu"
    bos_token_id: int | None = DEFAULT_BOS_ID
    eos_token_id: int | list[int] | None = DEFAULT_EOS_ID
    pad_token_id: int | None = DEFAULT_PAD_ID

    def __post_init__(self, **kwargs: Any) -> None:
        # Seed-named sizes arrive as extra kwargs (they are aliases); check them before the strict field
        # validators turn a bad value into a less readable error.
        for name in _SEED_INT_PARAMS:
            if name in kwargs:
                _require_positive_int(name, kwargs[name])
        super().__post_init__(**kwargs)
        self._derive_gpt2_attributes()
        self._check_consistency()

    def _derive_gpt2_attributes(self) -> None:
        """Map mlp_ratio / dropout / embd_dropout onto the attributes GPT-2's modules read."""
        _require_probability("dropout", self.dropout)
        if self.embd_dropout is not None:
            _require_probability("embd_dropout", self.embd_dropout)
        if isinstance(self.mlp_ratio, bool) or not isinstance(self.mlp_ratio, (int, float)) or self.mlp_ratio <= 0:
            raise ValueError(f"GPTConfig: mlp_ratio={self.mlp_ratio!r} is invalid; expected a number > 0.")
        _require_positive_int("embed_dim", self.n_embd)
        self.n_inner = max(1, round(float(self.mlp_ratio) * self.n_embd))
        self.resid_pdrop = float(self.dropout)
        self.attn_pdrop = float(self.dropout)
        self.embd_pdrop = float(self.embd_dropout) if self.embd_dropout is not None else 0.0

    def _check_consistency(self) -> None:
        for name, value in (
            ("vocab_size", self.vocab_size),
            ("n_layers", self.n_layer),
            ("n_heads", self.n_head),
            ("attn_length", self.n_positions),
        ):
            _require_positive_int(name, value)
        if self.n_embd % self.n_head != 0:
            raise ValueError(
                f"GPTConfig: embed_dim={self.n_embd} is invalid; expected a multiple of n_heads={self.n_head} "
                f"(e.g. {self.n_head * math.ceil(self.n_embd / self.n_head)})."
            )
        for name in ("bos_token_id", "pad_token_id"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < self.vocab_size:
                raise ValueError(f"GPTConfig: {name}={value!r} is invalid; expected None or 0..{self.vocab_size - 1}.")
        eos_ids = self.eos_token_id if isinstance(self.eos_token_id, list) else [self.eos_token_id]
        for value in eos_ids:
            if value is not None and not 0 <= value < self.vocab_size:
                raise ValueError(
                    f"GPTConfig: eos_token_id={self.eos_token_id!r} is invalid; "
                    f"expected None or ids in 0..{self.vocab_size - 1}."
                )


# Seed-named ``model_params`` (without vocab_size / attn_length, which come from the data).
# Head dim is 64 for the paper's GPT-1 and 32 for the small CPU sizes.
_PRESETS: dict[str, dict[str, Any]] = {
    "gpt1": {"n_layers": 12, "n_heads": 12, "embed_dim": 768},
    "tiny": {"n_layers": 2, "n_heads": 2, "embed_dim": 64},
    "small": {"n_layers": 4, "n_heads": 4, "embed_dim": 128},
    "medium": {"n_layers": 6, "n_heads": 8, "embed_dim": 256},
}


def gpt_preset(name: str) -> dict[str, Any]:
    """Seed-style ``model_params`` for a named size; a fresh dict, so callers may update it."""
    if name not in _PRESETS:
        raise ValueError(f"gpt_preset: name={name!r} is unknown; expected one of {sorted(_PRESETS)}.")
    return {**_PRESETS[name], "mlp_ratio": 4.0, "dropout": 0.1, "embd_dropout": None}


__all__ = ["GPTConfig", "gpt_preset"]
