"""The blotch model (`BlotchModel`): a GPT-2 causal LM with sinusoidal or randomised positional encodings and
blotch tokens.

Identical to ``GPT2LMHeadModel`` (the original's pre-LN transformer with absolute positional encodings is GPT-2)
except: ``transformer.wpe`` is :class:`BlotchPositionalEncoding` (sinusoidal or randomised, Ruoss et al. 2023);
``position_ids`` are explicit (the collator's) and always come with an attention mask; the last ``n_btokens`` ids
are blotch tokens, never generated and ignored by the loss; the loss does the label smoothing itself; and
``packed_segments`` (padding-free packed rows) restricts attention to each packed row's own segment.

Design: `docs/semantic_blotching.md`, section "Model".
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GPT2LMHeadModel

from .configuration_blotch import BlotchConfig


# The same helper stands in `arrows/modeling_gpt.py`: model code imports only torch, transformers and its own
# folder, so that it can be saved beside the weights as custom code; a copy costs less than a shared module.
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


def segment_attention_mask(segments: torch.Tensor, additive_dtype: torch.dtype | None = None) -> torch.Tensor:
    """(B, T) segment ids of packed rows (`core/packing.py`) -> (B, 1, T, T) mask, causal within a segment:
    boolean (True = attend; SDPA takes it whatever the query dtype, autocast included), or additive (0 / the
    dtype's minimum) in `additive_dtype` for eager attention. A padding token (segment 0) attends to itself
    only, so no softmax row is empty (an empty one gives NaN gradients)."""
    t = segments.shape[1]
    same = segments[:, :, None] == segments[:, None, :]  # (B, T, T)
    causal = torch.ones(t, t, dtype=torch.bool, device=segments.device).tril()
    pad_self = (segments == 0)[:, :, None] & torch.eye(t, dtype=torch.bool, device=segments.device)
    allowed = ((same & causal & (segments[:, :, None] > 0)) | pad_self)[:, None]
    if additive_dtype is None:
        return allowed
    zero = torch.zeros((), dtype=additive_dtype, device=segments.device)
    return torch.where(allowed, zero, torch.finfo(additive_dtype).min)


def sinusoidal_table(n_positions: int, d_model: int) -> torch.Tensor:
    """(n_positions, d_model) sin/cos encodings of Vaswani et al."""
    position = torch.arange(n_positions, dtype=torch.float32)[:, None]  # (P, 1)
    div = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    table = torch.zeros(n_positions, d_model)
    table[:, 0::2] = torch.sin(position * div)
    table[:, 1::2] = torch.cos(position * div[: d_model // 2])
    return table


class BlotchPositionalEncoding(nn.Module):
    """``position_ids`` (B, T) -> encodings (B, T, D); stands in for GPT-2's ``wpe`` embedding."""

    def __init__(self, config: BlotchConfig) -> None:
        super().__init__()
        # RMS of sin/cos is 1/sqrt(2): rescaled to the token embeddings' init scale (GPT-2's std), so that
        # neither signal drowns the other at the start of training.
        table = sinusoidal_table(config.n_positions, config.n_embd) * (config.initializer_range * math.sqrt(2))
        if config.learnable_posencs:
            self.pe = nn.Parameter(table)
        else:
            self.register_buffer("pe", table, persistent=True)
        self.randomised = config.posenc_type == "RandPositionalEncoding"
        self.dropout = nn.Dropout(config.posenc_drop_p)

    def forward(self, position_ids: torch.Tensor) -> torch.Tensor:
        idx = position_ids
        if self.randomised and self.training:
            n_pos = int(position_ids.max()) + 1
            n = int(torch.randint(n_pos, self.pe.shape[0] + 1, ()))
            table = torch.sort(torch.randperm(n, device=idx.device)[:n_pos]).values  # (n_pos,) sorted
            idx = table[position_ids]
        return self.dropout(self.pe[idx])


def causal_lm_loss(
    logits: torch.Tensor, labels: torch.Tensor, num_items_in_batch: Any = None, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Next-token cross-entropy (position t predicts label t+1), summed and divided by ``num_items_in_batch``
    when given (exact gradient accumulation), else averaged over non-ignored labels."""
    shift_logits = logits[:, :-1].float().reshape(-1, logits.shape[-1])  # (B*(T-1), V)
    shift_labels = labels[:, 1:].reshape(-1).to(shift_logits.device)  # (B*(T-1),)
    total = F.cross_entropy(
        shift_logits, shift_labels, ignore_index=-100, reduction="sum", label_smoothing=label_smoothing
    )
    denom = num_items_in_batch if num_items_in_batch is not None else (shift_labels != -100).sum().clamp(min=1)
    if torch.is_tensor(denom):
        denom = denom.to(total.device)
    return total / denom


class BlotchModel(GPT2LMHeadModel):
    """Causal LM over ``BlotchConfig``; rows ``[btoken] BOS problem = steps = answer EOS`` (see blotching)."""

    config: BlotchConfig
    config_class = BlotchConfig
    supports_packed_segments = True  # reads `packed_segments` (core/packing.py); other models would ignore it

    def __init__(self, config: BlotchConfig) -> None:
        # By model type, not class: loaded as custom code from a local folder, the config class comes from a copy
        # of `configuration_blotch.py` other than the one this file imports (transformers hashes each entry file).
        if getattr(config, "model_type", None) != BlotchConfig.model_type:
            raise ValueError(f"BlotchModel: config={type(config).__name__} is not allowed; use a BlotchConfig")
        super().__init__(config)
        self.transformer.wpe = BlotchPositionalEncoding(config)
        self.loss_type = "ForCausalLM"

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
        """GPT-2's forward with the changes of the module docstring; ``kwargs`` carry the cache and
        ``num_items_in_batch``."""
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        fresh = cache is None or cache.get_seq_length() == 0
        segments = kwargs.pop("packed_segments", None)
        if segments is not None:  # packed rows: attend within a segment only; positions come with the batch
            if position_ids is None or cache is not None:
                raise ValueError("BlotchModel: packed_segments needs position_ids and no cache (a training batch)")
            implementation = self.config._attn_implementation
            if implementation not in ("sdpa", "eager"):  # flash attention ignores a custom mask, flex wants its own
                raise ValueError(
                    f"BlotchModel: packed_segments with attn_implementation={implementation!r} is not supported; "
                    "use 'sdpa' or 'eager', or pack_rows=false"
                )
            eager = implementation == "eager"
            attention_mask = segment_attention_mask(segments, self.transformer.wte.weight.dtype if eager else None)
        if position_ids is None and attention_mask is not None and attention_mask.ndim == 2 and fresh:
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # (B, T)
        attention_mask = explicit_positions_mask(
            "BlotchModel", input_ids, inputs_embeds, position_ids, attention_mask, kwargs
        )
        num_items = kwargs.pop("num_items_in_batch", None)
        out = super().forward(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
            **kwargs,
        )
        offset = self.config.btoken_offset
        if labels is not None:
            smoothing = float(self.config.label_smoothing) if self.training else 0.0
            out.loss = causal_lm_loss(out.logits[..., :offset], labels, num_items, smoothing)
        if self.config.n_btokens:
            out.logits = out.logits.clone()
            out.logits[..., offset:] = float("-inf")
        return out

    def save_pretrained(self, save_directory: Any, *args: Any, **kwargs: Any) -> Any:
        """`save_pretrained`, with every class of `AUTO_CLASSES` in the saved `auto_map` (the library writes only
        the one `register_for_auto_class` named), so each of them loads the folder as custom code."""
        with_auto_map(self, AUTO_CLASSES)
        return super().save_pretrained(save_directory, *args, **kwargs)


# The Auto classes that load this model: `hf_experiments.blotch` registers it with each, and a saved folder's
# `auto_map` names each (the same class: `AutoModel` gives the whole model, logits included).
AUTO_CLASSES = ("AutoModelForCausalLM", "AutoModel")


# Copied from `arrows/modeling_gpt.py` (see `explicit_positions_mask`).
def with_auto_map(model: Any, auto_classes: tuple[str, ...]) -> None:
    """Point each of `auto_classes` at the model's class in `config.auto_map` (as `module.Class`, the file the
    library copies beside the weights); only for a class registered for an Auto class (custom code)."""
    if not model.is_remote_code():
        return
    cls = type(model)
    name = f"{cls.__module__.rpartition('.')[2]}.{cls.__name__}"
    auto_map = dict(getattr(model.config, "auto_map", None) or {})
    model.config.auto_map = {**auto_map, **dict.fromkeys(auto_classes, name)}


__all__ = ["AUTO_CLASSES", "BlotchModel", "BlotchPositionalEncoding", "causal_lm_loss", "sinusoidal_table"]
