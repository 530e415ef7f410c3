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
        # By model type, not class: loaded as custom code from a local folder, the config class comes from a copy
        # of `configuration_gpt.py` other than the one this file imports (transformers hashes each entry file).
        if getattr(config, "model_type", None) != GPTConfig.model_type:
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

    def save_pretrained(self, save_directory: Any, *args: Any, **kwargs: Any) -> Any:
        """`save_pretrained`, with every class of `AUTO_CLASSES` in the saved `auto_map` (the library writes only
        the one `register_for_auto_class` named), so each of them loads the folder as custom code."""
        with_auto_map(self, AUTO_CLASSES)
        return super().save_pretrained(save_directory, *args, **kwargs)


# The Auto classes that load this model: `hf_experiments.arrows` registers it with each, and a saved folder's
# `auto_map` names each (the same class: `AutoModel` gives the whole model, logits included).
AUTO_CLASSES = ("AutoModelForCausalLM", "AutoModel")


# Copied in `blotch/modeling_blotch.py` and `compression/modeling_compression.py`, as `explicit_positions_mask`.
def with_auto_map(model: Any, auto_classes: tuple[str, ...]) -> None:
    """Point each of `auto_classes` at the model's class in `config.auto_map` (as `module.Class`, the file the
    library copies beside the weights); only for a class registered for an Auto class (custom code)."""
    if not model.is_remote_code():
        return
    cls = type(model)
    name = f"{cls.__module__.rpartition('.')[2]}.{cls.__name__}"
    auto_map = dict(getattr(model.config, "auto_map", None) or {})
    model.config.auto_map = {**auto_map, **dict.fromkeys(auto_classes, name)}


__all__ = ["AUTO_CLASSES", "GPTForCausalLM"]
