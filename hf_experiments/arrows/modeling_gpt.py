"""The Arrows-of-time GPT (`GPTForCausalLM`): pre-LN transformer, learned absolute positions, SDPA, tied embeddings.

Identical to ``GPT2LMHeadModel``, which is exactly this architecture and whose SDPA dispatch, KV cache, weight
init and ``num_items_in_batch``-aware loss we reuse, except: its own ``config_class`` / ``model_type``
(``hfe_gpt``); explicit non-contiguous ``position_ids`` (position permutations) come with an all-ones attention
mask, so attention stays causal in sequence order instead of being cut into packed sequences; and
``token_type_ids`` are refused.

Design: `docs/arrows_of_time.md`, section "The GPT: configuration and model".
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import GPT2LMHeadModel

from .configuration_gpt import GPTConfig


# Copied in `blotch/modeling_blotch.py` (model code stays self-contained, see there).
def explicit_positions_mask(
    owner: str,
    input_ids: torch.Tensor | None,
    inputs_embeds: torch.Tensor | None,
    position_ids: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    kwargs: dict[str, Any],
) -> torch.Tensor | None:
    """The attention mask GPT-2 subclasses should pass on; rejects `token_type_ids`.

    With explicit `position_ids`, no mask and no cache, transformers 5 reads non-monotonic positions as packed
    sequences and changes the causal mask; an all-ones mask keeps position ids as embedding indices only.
    """
    if kwargs.get("token_type_ids") is not None:
        raise ValueError(f"{owner}: token_type_ids is not supported; expected None (the model has no segments).")
    cache = kwargs.get("cache", kwargs.get("past_key_values"))
    if position_ids is not None and attention_mask is None and cache is None:
        reference = input_ids if input_ids is not None else inputs_embeds
        return torch.ones(reference.shape[:2], dtype=torch.long, device=reference.device)  # (B, T)
    return attention_mask


class GPTForCausalLM(GPT2LMHeadModel):
    """Causal LM over ``GPTConfig``; inputs are ``[BOS, t0, t1, ...]`` and ``labels`` may simply equal
    ``input_ids`` (the shift happens inside the loss)."""

    config: GPTConfig
    config_class = GPTConfig

    def __init__(self, config: GPTConfig) -> None:
        if not isinstance(config, GPTConfig):
            raise ValueError(f"GPTForCausalLM: config={type(config).__name__} is not supported; expected a GPTConfig.")
        super().__init__(config)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs: Any,
    ):
        """GPT-2's forward; ``kwargs`` carry the cache (``cache``/``past_key_values``) and loss kwargs such
        as ``num_items_in_batch``. The named arguments keep ``labels``/``position_ids`` visible to Trainer's
        column filtering and to ``generate``."""
        attention_mask = explicit_positions_mask(
            "GPTForCausalLM", input_ids, inputs_embeds, position_ids, attention_mask, kwargs
        )
        return super().forward(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            labels=labels,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
            **kwargs,
        )


__all__ = ["GPTForCausalLM"]
