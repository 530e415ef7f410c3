"""Context compression around any causal LM (`CompressionModel`), as in grantsrb/ctx_cmp.

A window `(B, cmp_len + seq_len)` is split into a context and the text to predict. The backbone compresses the
context into `n_cmps` vectors and then predicts, from them, the text (the forward task) or the context itself
(the remember task). Only generic backbone interfaces are used, so GPT-2, Llama, Bloom and GPT-J style backbones
all work. `comparison_logits` gives the low / high / pred baselines of the evaluation.

Design: `docs/compression.md`, section "The model".
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, ModelOutput

from .configuration_compression import CompressionConfig

PEFT_MISSING = "train_mode='lora' needs the peft package: pip install peft"
# The Auto classes that load this model: `hf_experiments.compression` registers it with each, and a saved
# folder's `auto_map` names each.
AUTO_CLASSES = ("AutoModel", "AutoModelForCausalLM")

Mode = Literal["low", "high", "pred"]
Task = Literal["forward", "remember"]
TASK_INDEX = {"forward": 0, "remember": 1}


@dataclass
class CompressionOutput(ModelOutput):
    """Token-mean losses (`None` if a task is off); `logits` (B, seq_len, V), `rmb_logits` (B, cmp_len, V)."""

    loss: torch.FloatTensor | None = None
    fwd_loss: torch.FloatTensor | None = None
    rmb_loss: torch.FloatTensor | None = None
    kl_loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    rmb_logits: torch.FloatTensor | None = None


def resolve_cmp_layer(cmp_layer: int | str, num_hidden_layers: int) -> int | str:
    """Map `cmp_layer` to an index into `hidden_states` (`num_hidden_layers + 1` entries, 0 = embeddings).

    "half" / "middle" is the original's `(L + 1) // 2` (for even L the same as L // 2); "output" stays a name.
    """
    if cmp_layer in ("half", "middle"):
        return (num_hidden_layers + 1) // 2
    if cmp_layer == "output":
        return cmp_layer
    low, high = -(num_hidden_layers + 1), num_hidden_layers
    if isinstance(cmp_layer, bool) or not isinstance(cmp_layer, int) or not low <= cmp_layer <= high:
        raise ValueError(
            f"cmp_layer={cmp_layer!r} is out of range for a backbone with {num_hidden_layers} layers: "
            f"allowed are integers in [{low}, {high}], 'half', 'middle' or 'output'"
        )
    return cmp_layer


def position_ids_from_mask(mask: torch.Tensor) -> torch.LongTensor:
    """Positions that skip padding, so a left-padded row still starts at 0 (the HF generation convention)."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def chunk_mean(hidden: torch.Tensor, mask: torch.Tensor, n_chunks: int) -> torch.Tensor:
    """Mean of the unmasked states in `n_chunks` contiguous near-equal chunks: (B, L, D) -> (B, n, D)."""
    length = hidden.size(1)
    chunk_of = torch.arange(length, device=hidden.device) * n_chunks // length  # (L,) chunk index per position
    weights = F.one_hot(chunk_of, n_chunks).T.to(hidden.dtype)  # (n, L)
    weights = weights[None] * mask[:, None, :].to(hidden.dtype)  # (B, n, L)
    weights = weights / weights.sum(-1, keepdim=True).clamp(min=1.0)
    return torch.einsum("bnl,bld->bnd", weights, hidden)


def token_cross_entropy(logits: torch.Tensor, targets: torch.LongTensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the unmasked targets; computed in float32 whatever the backbone dtype."""
    labels = targets.masked_fill(mask == 0, -100)
    return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)


def _accepts(module: nn.Module, name: str) -> bool:
    return name in inspect.signature(module.forward).parameters


class CompressionModel(PreTrainedModel):
    """A causal LM that reads `n_cmps` learned vectors in place of `cmp_len` context tokens.

    Identical to the wrapped `AutoModelForCausalLM` except: new parameters `cmp_embs (n_cmps, D)` (absent with
    `pooling="mean"`), `task_embs (2, D)` (forward, remember), an optional `cmp_proj`, and LoRA adapters with
    `train_mode="lora"`. Checkpoints hold only what trains: the backbone's frozen weights are listed in
    `_keys_to_ignore_on_save`, the library's own hook, which `save_pretrained` (and so `Trainer._save`) drops
    and `Trainer._issue_warnings_after_load` treats as expected-missing when resuming with `strict=False`.
    `from_pretrained` is overridden to rebuild the backbone from `config.model_string` first.
    """

    config_class = CompressionConfig
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    # Our losses are already token means over windows of one fixed length, so the mean of per-micro-batch
    # means equals the mean over the accumulated batch. With `accepts_loss_kwargs = False` the Trainer does
    # not pass `num_items_in_batch` and divides the loss by `gradient_accumulation_steps` itself.
    accepts_loss_kwargs = False

    def __init__(self, config: CompressionConfig, backbone: PreTrainedModel | None = None):
        super().__init__(config)
        if backbone is None:
            backbone = AutoModelForCausalLM.from_pretrained(config.model_string)
        self.backbone = backbone
        config.backbone_config = backbone.config.to_dict()
        text_config = backbone.config.get_text_config()
        self.cmp_layer_index = resolve_cmp_layer(config.cmp_layer, text_config.num_hidden_layers)
        self._n_layers = text_config.num_hidden_layers
        attn = str(getattr(backbone.config, "_attn_implementation", "") or "")
        if config.cmp_attention == "context_only" and "flash" in attn:
            # context_only hides the compression tokens through a 2-D padding mask; flash attention drops masked
            # positions as queries too, so the compression tokens would silently read nothing
            raise ValueError(
                f"CompressionConfig: cmp_attention='context_only' is invalid with attn_implementation={attn!r}; "
                "expected 'sdpa' or 'eager' attention for the backbone, or cmp_attention='causal'"
            )
        bos = getattr(text_config, "bos_token_id", None)
        if isinstance(bos, list):
            bos = bos[0] if bos else None
        # The token that starts every sequence the backbone reads (None: nothing is prepended).
        self.bos_token_id: int | None = bos if config.prepend_bos else None

        embeddings = backbone.get_input_embeddings().weight
        dim, factory = embeddings.size(1), {"dtype": embeddings.dtype, "device": embeddings.device}
        self.cmp_embs = nn.Parameter(torch.empty(config.n_cmps, dim, **factory)) if config.pooling == "tokens" else None
        self.task_embs = nn.Parameter(torch.empty(2, dim, **factory))
        self.cmp_proj = nn.Linear(dim, dim, **factory) if config.proj_cmps else None

        # Bloom (ALiBi) has no position ids; passed through **kwargs they could reach layers that reject them.
        self._lm_takes_positions = _accepts(backbone, "position_ids")
        self._base_takes_positions = _accepts(backbone.base_model, "position_ids")
        # transformers 5.2x renamed `past_key_values` to `cache`; older/remote-code backbones use the old one.
        self._cache_arg = "cache" if _accepts(backbone, "cache") else "past_key_values"
        self.post_init()
        # LoRA goes in after post_init so the backbone's weight init never touches the fresh (B = 0) adapters.
        self._set_trainable()
        self._keys_to_ignore_on_save = {key for key in self.state_dict() if not self._is_saved_key(key)}

    # ----- construction helpers -----

    def _init_weights(self, module: nn.Module) -> None:
        """Initialise only our own parameters; the backbone keeps its (pretrained) weights."""
        if module is self:
            embeddings = self.backbone.get_input_embeddings().weight.detach().float()
            mean, std = embeddings.mean(0), embeddings.std(0)  # (D,) each: new tokens look like real ones
            for param in (self.cmp_embs, self.task_embs):
                if param is not None:
                    param.copy_(mean + std * torch.randn(param.shape, device=mean.device))
        elif module is self.cmp_proj:
            nn.init.eye_(module.weight)
            nn.init.zeros_(module.bias)

    def _set_trainable(self) -> None:
        """Freeze the backbone unless `train_mode="full"`; inject LoRA adapters for `train_mode="lora"`.

        peft's `inject_adapter_in_model` keeps the backbone a plain `PreTrainedModel` (no `PeftModel`
        wrapper), so `base_model`, `get_input_embeddings` and the state-dict keys stay the backbone's, plus
        `lora_*`. (transformers' own `add_adapter` would do the same but needs peft >= 0.22.)
        """
        mode = self.config.train_mode
        self.backbone.requires_grad_(mode == "full")
        if mode == "lora":
            try:  # in a `try`: the custom-code import scan skips it, so peft stays optional where this file loads
                from peft import inject_adapter_in_model
            except ImportError as e:
                raise ImportError(PEFT_MISSING) from e

            inject_adapter_in_model(self._lora_config(), self.backbone)
            for name, param in self.backbone.named_parameters():
                param.requires_grad_("lora_" in name)

    def _lora_config(self):
        try:  # see `_set_trainable`
            from peft import LoraConfig
            from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING
        except ImportError as e:
            raise ImportError(PEFT_MISSING) from e

        cfg = self.config
        targets = cfg.lora_target_modules
        if (
            targets is None
            and self.backbone.config.model_type not in TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING
        ):
            targets = "all-linear"  # peft has no default for this architecture: adapt every linear layer
        return LoraConfig(
            r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, target_modules=targets
        )

    def _is_saved_key(self, key: str) -> bool:
        """New embeddings, projection and LoRA adapters always; the backbone if it trains or is asked for."""
        return self.config.saves_backbone or not key.startswith("backbone.") or "lora_" in key

    def get_input_embeddings(self) -> nn.Module:
        return self.backbone.get_input_embeddings()

    @contextmanager
    def original_lm(self) -> Iterator[PreTrainedModel]:
        """The backbone with LoRA adapters switched off: the reference LM for baselines and the KL target."""
        try:  # see `_set_trainable`
            from peft.tuners.tuners_utils import BaseTunerLayer
        except ImportError:  # without peft there are no adapters to switch off
            BaseTunerLayer = ()

        lora_layers = [m for m in self.backbone.modules() if isinstance(m, BaseTunerLayer)]
        for layer in lora_layers:
            layer.enable_adapters(False)
        try:
            yield self.backbone
        finally:
            for layer in lora_layers:  # also restores the adapters' requires_grad
                layer.enable_adapters(True)

    # ----- backbone calls -----

    def _embed(self, ids: torch.LongTensor) -> torch.Tensor:
        return self.backbone.get_input_embeddings()(ids)

    def _lm(self, embeds: torch.Tensor, mask: torch.Tensor, **kwargs) -> ModelOutput:
        """Causal-LM call on embeddings, with positions that skip padding (if the backbone takes them)."""
        if self._lm_takes_positions:
            positions = position_ids_from_mask(mask)[:, -embeds.size(1) :]  # the new tokens' positions
            kwargs["position_ids"] = positions
        return self.backbone(inputs_embeds=embeds, attention_mask=mask, **kwargs)

    def _base(
        self,
        embeds: torch.Tensor,
        mask: torch.Tensor,
        positions: torch.Tensor | None = None,
        hidden_states: bool = True,
    ) -> ModelOutput:
        """The base model (no LM head), with all hidden states unless `hidden_states=False`; `positions` default
        to those of `mask`."""
        kwargs = {}
        if self._base_takes_positions:
            kwargs["position_ids"] = position_ids_from_mask(mask) if positions is None else positions
        return self.backbone.base_model(
            inputs_embeds=embeds, attention_mask=mask, output_hidden_states=hidden_states, use_cache=False, **kwargs
        )

    def _decoder_layers(self) -> nn.ModuleList | None:
        """The backbone's list of decoder layers (`h`, `layers`, `decoder.layers`, ...): the `ModuleList` of the
        base model with one entry per hidden layer; None when there is no single such list. Found once (kept
        outside the module tree, in a plain dict entry, so it is not registered a second time)."""
        if "_decoder_layers_found" not in self.__dict__:
            found = [
                m
                for m in self.backbone.base_model.modules()
                if isinstance(m, nn.ModuleList) and len(m) == self._n_layers
            ]
            self.__dict__["_decoder_layers_found"] = found[0] if len(found) == 1 else None
        return self.__dict__["_decoder_layers_found"]

    def _hidden_at(
        self, embeds: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor | None, index: int
    ) -> torch.Tensor:
        """`hidden_states[index]` of the base model, running only the layers below it: the compression pass reads
        one middle layer (`cmp_layer: half` by default), so the layers above it would be computed for nothing.
        Entry `index` (1 <= index < L) is layer `index - 1`'s output (the last entry has the final norm, so it
        and the embeddings, entry 0, come from the full pass). A forward hook on that layer keeps its output and
        ends the forward pass; no hook is left behind."""
        index = index % (self._n_layers + 1)
        layers = self._decoder_layers() if 0 < index < self._n_layers else None
        if layers is None:
            return self._base(embeds, mask, positions).hidden_states[index]
        kept: list[torch.Tensor] = []

        def keep_and_stop(module: nn.Module, args: Any, output: Any) -> None:
            kept.append(output[0] if isinstance(output, tuple) else output)
            raise _EnoughLayers

        handle = layers[index - 1].register_forward_hook(keep_and_stop)
        try:
            self._base(embeds, mask, positions, hidden_states=False)
        except _EnoughLayers:
            pass
        finally:
            handle.remove()
        return kept[0]

    @staticmethod
    def _ones(ids: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return torch.ones_like(ids) if mask is None else mask

    def _with_bos(self, embeds: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`[BOS] + embeds` and its mask when the backbone has a BOS token and `prepend_bos`; else unchanged."""
        if self.bos_token_id is None:
            return embeds, mask
        bos = self._embed(torch.full((embeds.size(0), 1), self.bos_token_id, device=embeds.device))
        return torch.cat([bos.to(embeds.dtype), embeds], dim=1), torch.cat(
            [mask.new_ones(mask.size(0), 1), mask], dim=1
        )

    @property
    def _n_bos(self) -> int:
        return int(self.bos_token_id is not None)

    def split_window(
        self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(context, its mask, targets, their mask): the first `cmp_len` tokens, and the predicted text from
        `cmp_len - seq_overlap` on (the original's `seq_overlap`: the targets repeat the context's end)."""
        cfg, mask = self.config, self._ones(input_ids, attention_mask)
        start = cfg.target_start
        return input_ids[:, : cfg.cmp_len], mask[:, : cfg.cmp_len], input_ids[:, start:], mask[:, start:]

    # ----- the three passes -----

    def compress(self, ctx_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Compressed context (B, n_cmps, D): `cmp_layer`'s states at the compression tokens after the context.

        With `cmp_attention="context_only"` the compression tokens are hidden as keys (the original's zero-padded
        mask): each attends to the context only, not to itself or another compression token; their positions
        still follow the context's.
        """
        ctx_mask = self._ones(ctx_ids, attention_mask)
        batch, n_cmps = ctx_ids.size(0), self.config.n_cmps
        if self.cmp_embs is None:  # pooling == "mean": the no-new-tokens baseline
            embeds, mask = self._with_bos(self._embed(ctx_ids), ctx_mask)
            hidden = self._hidden_at(embeds, mask, None, self.cmp_layer_index)[:, self._n_bos :]  # (B, L, D)
            compressed = chunk_mean(hidden, ctx_mask, n_cmps)
        else:
            embeds = torch.cat([self._embed(ctx_ids), self.cmp_embs.expand(batch, -1, -1)], dim=1)  # (B, L+n, D)
            mask = torch.cat([ctx_mask, ctx_mask.new_ones(batch, n_cmps)], dim=1)
            embeds, mask = self._with_bos(embeds, mask)
            positions = position_ids_from_mask(mask)
            if self.config.cmp_attention == "context_only":
                mask = mask.clone()
                mask[:, -n_cmps:] = 0
            if self.cmp_layer_index == "output":  # the original's softmax-weighted mix of token embeddings
                last = self._base(embeds, mask, positions, hidden_states=False).last_hidden_state[:, -n_cmps:]
                logits = self.backbone.get_output_embeddings()(last)  # (B, n, V)
                weights = self.backbone.get_input_embeddings().weight  # (V, D)
                compressed = logits.float().softmax(-1).to(weights.dtype) @ weights / n_cmps
            else:
                compressed = self._hidden_at(embeds, mask, positions, self.cmp_layer_index)[:, -n_cmps:]  # (B, n, D)
        return compressed if self.cmp_proj is None else self.cmp_proj(compressed)

    def _task_prefix(self, compressed: torch.Tensor, task: Task) -> tuple[torch.Tensor, torch.Tensor]:
        """`[BOS?, compressed, task token]` (B, n_bos + n_cmps + 1, D) and its all-ones mask."""
        token = self.task_embs[TASK_INDEX[task]].expand(compressed.size(0), 1, -1)  # (B, 1, D)
        prefix = torch.cat([compressed, token.to(compressed.dtype)], dim=1)
        mask = torch.ones(prefix.shape[:2], dtype=torch.long, device=prefix.device)
        return self._with_bos(prefix, mask)

    def task_logits(
        self,
        compressed: torch.Tensor,
        task: Task,
        target_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits (B, T, V) predicting every token of `target_ids` (B, T).

        Input: `[BOS?, compressed, task token, targets[:-1]]`; the task token predicts targets[0].
        """
        prefix, prefix_mask = self._task_prefix(compressed, task)
        target_mask = self._ones(target_ids, attention_mask)
        embeds = torch.cat([prefix, self._embed(target_ids[:, :-1])], dim=1)  # (B, P+T-1, D)
        mask = torch.cat([prefix_mask, target_mask[:, :-1]], dim=1)
        logits = self._lm(embeds, mask, use_cache=False).logits
        return logits[:, prefix.size(1) - 1 :]  # the task token's position predicts target[0]

    def full_context_logits(
        self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The original LM on `[BOS?, context, targets[:-1]]`: logits (B, T, V) predicting the targets.

        The uncompressed context in the place of the compressed one: with `seq_overlap = 0` that is the window
        itself; with an overlap the repeated tokens follow the whole context, as they do for pred (otherwise
        high would predict them from the text before them while pred copies them)."""
        ctx, ctx_mask, tgt, tgt_mask = self.split_window(input_ids, attention_mask)
        ids, mask = torch.cat([ctx, tgt], 1)[:, :-1], torch.cat([ctx_mask, tgt_mask], 1)[:, :-1]
        embeds, lm_mask = self._with_bos(self._embed(ids), mask)
        with self.original_lm():
            logits = self._lm(embeds, lm_mask, use_cache=False).logits
        return logits[:, self.config.cmp_len - 1 + self._n_bos :]

    def scored_targets(
        self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The tokens (B, T') every mode of `comparison_logits` predicts, and their mask: all targets, or all
        but the first when no BOS is prepended (nothing can predict a text's first token from nothing)."""
        _, _, tgt, tgt_mask = self.split_window(input_ids, attention_mask)
        skip = 1 - self._n_bos
        return tgt[:, skip:], tgt_mask[:, skip:]

    def comparison_logits(
        self, input_ids: torch.LongTensor, mode: Mode, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits (B, T', V) predicting `scored_targets`, the same tokens in every mode.

        low = `[BOS?] + targets` alone, high = `[BOS?, context] + targets` (`full_context_logits`), pred =
        `[BOS?, compressed context, forward task token] + targets`.
        """
        ctx, ctx_mask, tgt, tgt_mask = self.split_window(input_ids, attention_mask)
        skip = 1 - self._n_bos
        if mode == "low":
            embeds, mask = self._with_bos(self._embed(tgt[:, :-1]), tgt_mask[:, :-1])
            with self.original_lm():
                return self._lm(embeds, mask, use_cache=False).logits
        if mode == "high":
            return self.full_context_logits(input_ids, attention_mask)[:, skip:]
        if mode == "pred":
            return self.task_logits(self.compress(ctx, ctx_mask), "forward", tgt, tgt_mask)[:, skip:]
        raise ValueError(f"mode={mode!r} is invalid: allowed are 'low', 'high', 'pred'")

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        return_loss: bool = True,
        **kwargs,
    ) -> CompressionOutput:
        """Losses on a batch of windows (B, cmp_len + seq_len).

        `return_loss` exists so the Trainer computes an evaluation loss although the batch has no `labels`.
        """
        cfg = self.config
        if input_ids.size(1) != cfg.window_len:
            raise ValueError(
                f"input_ids has length {input_ids.size(1)}: it must be cmp_len + seq_len = {cfg.window_len}"
            )
        mask = self._ones(input_ids, attention_mask)
        ctx, ctx_mask, tgt, tgt_mask = self.split_window(input_ids, mask)
        compressed = self.compress(ctx, ctx_mask)

        fwd_loss = rmb_loss = kl_loss = logits = rmb_logits = None
        if not cfg.rmb_only:
            logits = self.task_logits(compressed, "forward", tgt, tgt_mask)  # (B, T, V)
            fwd_loss = token_cross_entropy(logits, tgt, tgt_mask)
            if cfg.kl_weight > 0:
                with torch.no_grad():
                    full = self.full_context_logits(input_ids, mask)
                kl_loss = self._kl(full, logits, tgt_mask)
        if cfg.rmb_task or cfg.rmb_only:
            rmb_logits = self.task_logits(compressed, "remember", ctx, ctx_mask)  # (B, L, V)
            rmb_loss = token_cross_entropy(rmb_logits, ctx, ctx_mask)

        if cfg.rmb_only:
            loss = rmb_loss
        elif rmb_loss is not None and cfg.loss_sum:
            loss = fwd_loss + rmb_loss  # the original's sum
        elif rmb_loss is not None:
            loss = (1 - cfg.ae_ratio) * fwd_loss + cfg.ae_ratio * rmb_loss
        else:
            loss = fwd_loss
        if kl_loss is not None:
            loss = loss + cfg.kl_weight * kl_loss
        return CompressionOutput(
            loss=loss if return_loss else None,
            fwd_loss=fwd_loss,
            rmb_loss=rmb_loss,
            kl_loss=kl_loss,
            logits=logits,
            rmb_logits=rmb_logits,
        )

    @staticmethod
    def _kl(full_logits: torch.Tensor, pred_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Token mean of KL(p_full || p_pred) over the unmasked predicted positions."""
        per_token = F.kl_div(
            pred_logits.float().log_softmax(-1),
            full_logits.float().log_softmax(-1),
            log_target=True,
            reduction="none",
        ).sum(-1)  # (B, T)
        mask = mask.to(per_token.dtype)
        return (per_token * mask).sum() / mask.sum().clamp(min=1.0)

    # ----- generation -----

    @torch.no_grad()
    def decode(
        self,
        embeds: torch.Tensor,
        max_new_tokens: int,
        attention_mask: torch.Tensor | None = None,
        do_sample: bool = False,
        temperature: float = 1.0,
        use_cache: bool = True,
    ) -> torch.LongTensor:
        """Continue a prefix of embeddings (B, P, D) by `max_new_tokens` tokens, greedy or sampled.

        With `use_cache` each step feeds only the new token and the backbone's `past_key_values`; without it
        the whole sequence is recomputed every step (kept for benchmarks and the equivalence test).

        Why a loop and not `backbone.generate(inputs_embeds=...)`: generate honours the backbone's own
        `generation_config` (a hub model's EOS stop and padding, repetition penalty, bad words, forced tokens,
        top-k 50 when sampling), which would change what the evaluation measures: the original's plain
        greedy / temperature continuation of a fixed length. Its list-valued processors cannot be switched off
        from a passed config (an empty list is rejected, None falls back to the model's), so matching this
        would mean swapping the backbone's config out. With a plain generation config the two give identical
        tokens (`tests/compression/test_compression_model.py`).
        """
        if do_sample and temperature <= 0:
            raise ValueError(f"temperature={temperature} is invalid when sampling: it must be > 0")
        batch = embeds.size(0)
        mask = (
            torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
            if attention_mask is None
            else attention_mask
        )
        step_embeds, past, tokens = embeds, None, []
        for _ in range(max_new_tokens):
            out = self._lm(step_embeds, mask, use_cache=use_cache, **{self._cache_arg: past})
            next_logits = out.logits[:, -1].float()  # (B, V)
            if do_sample:
                next_token = torch.multinomial((next_logits / temperature).softmax(-1), 1)  # (B, 1)
            else:
                next_token = next_logits.argmax(-1, keepdim=True)  # (B, 1)
            tokens.append(next_token)
            mask = torch.cat([mask, mask.new_ones(batch, 1)], dim=1)
            new_embeds = self._embed(next_token)  # (B, 1, D)
            if use_cache:
                step_embeds, past = new_embeds, out[self._cache_arg]
            else:
                embeds = torch.cat([embeds, new_embeds], dim=1)
                step_embeds = embeds
        if not tokens:
            return torch.empty(batch, 0, dtype=torch.long, device=embeds.device)
        return torch.cat(tokens, dim=1)

    @torch.no_grad()
    def generate_from_context(
        self,
        ctx_ids: torch.LongTensor,
        prompt_ids: torch.LongTensor,
        max_new_tokens: int,
        do_sample: bool = False,
        temperature: float = 1.0,
        use_cache: bool = True,
        mode: Mode = "pred",
        ctx_mask: torch.Tensor | None = None,
    ) -> torch.LongTensor:
        """New tokens (B, max_new_tokens) continuing `prompt_ids` (B, P) after the context.

        mode "pred" (default): from `[compressed ctx, forward task token, prompt]`; "high": from the
        uncompressed `[ctx, prompt]` and "low": from `prompt` alone, both with the original LM (adapters off).
        """
        embeds, mask = self.generation_prefix(ctx_ids, prompt_ids, mode, ctx_mask)
        if mode == "pred":
            return self.decode(embeds, max_new_tokens, mask, do_sample, temperature, use_cache)
        with self.original_lm():
            return self.decode(embeds, max_new_tokens, mask, do_sample, temperature, use_cache)

    def generation_prefix(
        self,
        ctx_ids: torch.LongTensor,
        prompt_ids: torch.LongTensor | None = None,
        mode: Mode = "pred",
        ctx_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings and mask a continuation starts from: `[BOS?, compressed, forward token, prompt]` (pred),
        `[BOS?, ctx, prompt]` (high) or `[BOS?, prompt]` (low)."""
        if prompt_ids is None:
            prompt_ids = ctx_ids.new_zeros(ctx_ids.size(0), 0)
        prompt_mask = torch.ones_like(prompt_ids)
        if mode == "pred":
            prefix, prefix_mask = self._task_prefix(self.compress(ctx_ids, ctx_mask), "forward")
            return torch.cat([prefix, self._embed(prompt_ids)], dim=1), torch.cat([prefix_mask, prompt_mask], dim=1)
        if mode not in ("low", "high"):
            raise ValueError(f"mode={mode!r} is invalid: allowed are 'low', 'high', 'pred'")
        ids, mask = prompt_ids, prompt_mask
        if mode == "high":
            ids = torch.cat([ctx_ids, prompt_ids], dim=1)
            mask = torch.cat([self._ones(ctx_ids, ctx_mask), prompt_mask], dim=1)
        if ids.size(1) == 0 and self.bos_token_id is None:
            raise ValueError(f"mode={mode!r} with no prompt needs a backbone with a BOS token to start from")
        return self._with_bos(self._embed(ids), mask)

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.LongTensor,
        prompt_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        mode: Mode = "pred",
        **generate_kwargs,
    ) -> torch.LongTensor:
        """`GenerationMixin.generate` of the backbone from a compressed context: new tokens (B, N).

        input_ids: the context (B, cmp_len); prompt_ids: text that follows it (B, P), optional. Every
        `generate` option works (`max_new_tokens`, `do_sample`, `num_beams`, `generation_config`, ...); the
        backbone's own generation config applies, so a hub model may stop at its EOS. mode "high" / "low"
        continue from the uncompressed context / the prompt alone with the original LM.
        """
        embeds, mask = self.generation_prefix(input_ids, prompt_ids, mode, attention_mask)
        generate_kwargs.setdefault("pad_token_id", self.backbone.generation_config.pad_token_id)
        if generate_kwargs["pad_token_id"] is None:
            generate_kwargs["pad_token_id"] = self.backbone.generation_config.eos_token_id
        if mode == "pred":
            return self.backbone.generate(inputs_embeds=embeds, attention_mask=mask, **generate_kwargs)
        with self.original_lm():
            return self.backbone.generate(inputs_embeds=embeds, attention_mask=mask, **generate_kwargs)

    @torch.no_grad()
    def reconstruct(
        self,
        ctx_ids: torch.LongTensor,
        max_new_tokens: int | None = None,
        ctx_mask: torch.Tensor | None = None,
        use_cache: bool = True,
    ) -> torch.LongTensor:
        """Greedy reconstruction (B, max_new_tokens or cmp_len) of the context, from [BOS?, compressed, rmb]."""
        prefix, mask = self._task_prefix(self.compress(ctx_ids, ctx_mask), "remember")
        n_new = ctx_ids.size(1) if max_new_tokens is None else max_new_tokens
        return self.decode(prefix, n_new, mask, use_cache=use_cache)

    # ----- checkpoints -----

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | Path,
        *model_args,
        config: CompressionConfig | None = None,
        backbone: PreTrainedModel | None = None,
        **backbone_kwargs,
    ) -> CompressionModel:
        """Rebuild the backbone, then load the saved (trained) weights on top; returns the model in eval mode.

        The backbone comes from `backbone` if given, from `config.backbone_config` when the checkpoint holds
        its weights (so the original weights need not be reachable), else from `config.model_string` with
        `backbone_kwargs` (e.g. `dtype`): a folder inside the saved one when it names one (a bundled local
        backbone), else a path or hub id. The library's generic loader would re-initialise every weight the
        checkpoint lacks, i.e. the whole frozen backbone, hence this override.
        """
        # The Auto loader passes options meant for the saved folder (its revision, resolved to a commit hash of
        # *this* repo since transformers 5.25, a subfolder, its private `_from_auto`); none of them may reach the
        # backbone, a different folder or repo. Trusting this repo's code does not trust the backbone's either.
        folder_kwargs = {k: backbone_kwargs.pop(k, None) for k in _FOLDER_ONLY_KWARGS}
        hub_kwargs = {**backbone_kwargs, "revision": folder_kwargs["revision"]}
        path = Path(pretrained_model_name_or_path)
        if not path.is_dir():  # a Hub repo id: its files (weights, bundled backbone) from the Hub or its cache
            path = _snapshot(str(pretrained_model_name_or_path), hub_kwargs)
        if folder_kwargs["subfolder"]:
            path = path / folder_kwargs["subfolder"]
        if config is None:
            config = CompressionConfig.from_pretrained(path)
        if backbone is None and config.saves_backbone and config.backbone_config is not None:
            backbone_config = AutoConfig.for_model(**config.backbone_config)
            backbone = AutoModelForCausalLM.from_config(backbone_config, dtype=backbone_config.dtype)
        elif backbone is None:
            bundled = path / config.model_string  # a backbone saved inside the folder (see bundle_backbone)
            source = str(bundled) if config.model_string and bundled.is_dir() else config.model_string
            backbone = AutoModelForCausalLM.from_pretrained(source, **backbone_kwargs)
        model = cls(config, backbone=backbone)
        result = model.load_state_dict(_load_weights(path), strict=False)
        unexpected_missing = set(result.missing_keys) - model._keys_to_ignore_on_save - set(model.all_tied_weights_keys)
        if result.unexpected_keys or unexpected_missing:
            raise ValueError(
                f"checkpoint {path} does not match the model: missing {sorted(unexpected_missing)}, "
                f"unexpected {sorted(result.unexpected_keys)}"
            )
        return model.eval()

    def save_pretrained(self, save_directory: str | Path, *args, **kwargs):
        """`save_pretrained`, with every class of `AUTO_CLASSES` in the saved `auto_map` (the library writes only
        the one `register_for_auto_class` named), so each of them loads the folder as custom code."""
        with_auto_map(self, AUTO_CLASSES)
        return super().save_pretrained(save_directory, *args, **kwargs)


# Copied from `arrows/modeling_gpt.py`: model code imports only torch, transformers and its own folder.
def with_auto_map(model: PreTrainedModel, auto_classes: tuple[str, ...]) -> None:
    """Point each of `auto_classes` at the model's class in `config.auto_map` (as `module.Class`, the file the
    library copies beside the weights); only for a class registered for an Auto class (custom code)."""
    if not model.is_remote_code():
        return
    cls = type(model)
    name = f"{cls.__module__.rpartition('.')[2]}.{cls.__name__}"
    auto_map = dict(getattr(model.config, "auto_map", None) or {})
    model.config.auto_map = {**auto_map, **dict.fromkeys(auto_classes, name)}


class _EnoughLayers(Exception):
    """Raised by the hook that ends a base-model pass at the layer the compression reads (`_hidden_at`)."""


BUNDLED_BACKBONE = "backbone"  # sub-folder of a saved model that holds a copy of its local backbone


def bundle_backbone(source: str | Path, model_dir: str | Path) -> Path:
    """Copy a local backbone folder into `model_dir/backbone/` and point the saved config's `model_string` at
    it (relative, so the folder can move): the saved model then loads on a machine without the original.

    Copies the backbone's own files (config, weights, tokenizer, generation config, build record), written to
    a temporary folder first and renamed, so a crash leaves the old state or the new one.
    """
    import shutil
    import tempfile

    model_dir, source = Path(model_dir), Path(source)
    target = model_dir / BUNDLED_BACKBONE
    tmp = Path(tempfile.mkdtemp(dir=model_dir, prefix=".backbone.tmp-"))
    try:
        for item in source.iterdir():
            if item.is_file() and not item.name.startswith(".") and not item.name.endswith(".lock"):
                shutil.copy2(item, tmp / item.name)
        os.chmod(tmp, 0o755)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    config = CompressionConfig.from_pretrained(model_dir)
    config.model_string = BUNDLED_BACKBONE
    config.save_pretrained(model_dir)
    return target


# `from_pretrained` options that belong to the saved compression folder alone (see there).
_FOLDER_ONLY_KWARGS = (
    "revision",
    "subfolder",
    "_from_auto",
    "_commit_hash",
    "code_revision",
    "adapter_kwargs",
    "trust_remote_code",
)


def _snapshot(repo_id: str, kwargs: dict) -> Path:
    """The local folder of a Hub repo (downloaded, or from the Hub cache), with the revision and hub options that
    `from_pretrained` was given."""
    from huggingface_hub import snapshot_download

    names = ("revision", "cache_dir", "token", "local_files_only", "force_download", "proxies")
    return Path(snapshot_download(repo_id, **{k: kwargs[k] for k in names if kwargs.get(k) is not None}))


def _load_weights(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a saved folder, sharded (`model.safetensors.index.json`) or not."""
    index = path / SAFE_WEIGHTS_INDEX_NAME
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists() else [SAFE_WEIGHTS_NAME]
    state: dict[str, torch.Tensor] = {}
    for name in files:
        state.update(load_file(path / name))
    return state


__all__ = ["AUTO_CLASSES", "CompressionModel", "CompressionOutput", "bundle_backbone", "resolve_cmp_layer"]
