"""Configuration of the context-compression model (as in grantsrb/ctx_cmp)."""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

POOLINGS = ("tokens", "mean")
TRAIN_MODES = ("embeddings", "lora", "full")
CMP_LAYER_NAMES = ("half", "middle", "output")
CMP_ATTENTIONS = ("causal", "context_only")


@strict
class CompressionConfig(PreTrainedConfig):
    r"""
    Squeeze the first `cmp_len` tokens of a window into `n_cmps` vectors a causal LM reads instead of them.

    The backbone is any `AutoModelForCausalLM`; this config only names it (`model_string`) and records its
    config in `backbone_config` once a model was built, so a checkpoint that holds the backbone weights
    (`save_backbone=True` or `train_mode="full"`) can be rebuilt without reaching the original weights.

    Parameters that shape the task:
        model_string (`str`): hub id or local path of the backbone causal LM.
        n_cmps (`int`, defaults to 1): number of compressed vectors.
        cmp_layer (`int | "half" | "middle" | "output"`, defaults to `"half"`): index into the backbone's
            `hidden_states` tuple (0 = embeddings, -1 = last layer); `"half"` / `"middle"` = `(L + 1) // 2` for
            L layers, as the original; `"output"` = the original's mix of token embeddings weighted by the
            softmax of the LM's output at the compression positions, `softmax(lm_head(h_last)) @ W_emb / n_cmps`.
            Checked against the backbone when the model is built.
        cmp_len (`int`, defaults to 10): context tokens that are compressed (the first `cmp_len` of a window).
        seq_len (`int`, defaults to 20): tokens predicted after the context (the rest of a window).
        seq_overlap (`int` < `cmp_len`, defaults to 0): the original's meaning: the predicted text starts
            `seq_overlap` tokens before the end of the context, so the model also repeats them.
        cmp_attention (`"causal" | "context_only"`, defaults to `"causal"`): what a compression token attends
            to: the context and the compression tokens before it and itself (causal), or the context only (the
            original's, a side effect of its zero-padded attention mask).
        prepend_bos (`bool`, defaults to True): the backbone's BOS token starts every sequence the backbone
            reads (compression, prediction, both baselines), so the no-context baseline can predict the first
            token; ignored (the first token is then not scored) when the backbone has no BOS.

    Parameters that shape the loss:
        rmb_task (`bool`): also reconstruct the context from `[compressed, remember token]`;
            loss = `(1 - ae_ratio) * L_forward + ae_ratio * L_remember`, or with `loss_sum` the original's
            `L_forward + L_remember`.
        rmb_only (`bool`): train the reconstruction only (no forward loss). Unlike the original code, the
            context is still the first `cmp_len` tokens of the window; `seq_len` may then be 0.
        ae_ratio (`float` in [0, 1], defaults to 0.5): weight of the remember loss when `rmb_task`.
        loss_sum (`bool`): add the two losses with weight 1 each, as the original (ignores `ae_ratio`).
        kl_weight (`float` >= 0): adds `kl_weight * KL(p_full || p_pred)` on the predicted positions, where
            `p_full` is the backbone with the uncompressed context (adapters disabled, no gradient). Costs one
            extra no-grad forward pass of `cmp_len + seq_len` tokens per step.

    Parameters that choose what trains:
        proj_cmps (`bool`): a `Linear(d, d)` on the compressed states, initialised to the identity.
        pooling (`"tokens" | "mean"`): `"tokens"` = learned compression tokens; `"mean"` = the baseline that
            mean-pools the chosen layer's hidden states of the context into `n_cmps` contiguous chunks.
        train_mode (`"embeddings" | "lora" | "full"`): new embeddings (+ projection) only, frozen backbone;
            plus LoRA adapters (`lora_r`, `lora_alpha`, `lora_dropout`, `lora_target_modules`; `None` = peft's
            default modules for known architectures, else every linear layer); or the whole backbone.
        save_backbone (`bool`): also store the backbone weights in checkpoints (always done for `"full"`).

    Example:
        ```python
        >>> config = CompressionConfig(model_string="bigscience/bloomz-560m", cmp_len=10, seq_len=20)
        ```

    Raises:
        ValueError: a value outside its allowed range or set (checked here); `cmp_layer` outside the
            backbone's layers (checked when the model is built).
    """

    model_type = "hfe_compression"

    model_string: str = ""
    n_cmps: int = 1
    cmp_layer: int | str = "half"
    cmp_len: int = 10
    seq_len: int = 20
    seq_overlap: int = 0
    cmp_attention: str = "causal"
    prepend_bos: bool = True
    rmb_task: bool = False
    rmb_only: bool = False
    ae_ratio: float = 0.5
    loss_sum: bool = False
    kl_weight: float = 0.0
    proj_cmps: bool = False
    pooling: str = "tokens"
    train_mode: str = "embeddings"
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_target_modules: list[str] | str | None = None
    save_backbone: bool = False
    backbone_config: dict | None = None

    def __post_init__(self, **kwargs):
        self._check_values()
        super().__post_init__(**kwargs)

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs):
        """A config saved before `prepend_bos` existed describes a model trained without a BOS: load it so."""
        if config_dict.get("model_type") == cls.model_type and "prepend_bos" not in config_dict:
            config_dict = {**config_dict, "prepend_bos": False}
        return super().from_dict(config_dict, **kwargs)

    def _check_values(self) -> None:
        """Reject bad values up front, one line each (the `cmp_layer` range needs the backbone: later)."""
        if self.n_cmps < 1:
            raise ValueError(f"CompressionConfig: n_cmps={self.n_cmps!r} is invalid; expected an integer >= 1")
        if self.cmp_len < 1:
            raise ValueError(f"CompressionConfig: cmp_len={self.cmp_len!r} is invalid; expected an integer >= 1")
        min_seq = 0 if self.rmb_only else 1
        if self.seq_len < min_seq:
            raise ValueError(
                f"CompressionConfig: seq_len={self.seq_len!r} is invalid; expected an integer >= {min_seq}"
                + ("" if self.rmb_only else " unless rmb_only")
            )
        if isinstance(self.cmp_layer, str) and self.cmp_layer not in CMP_LAYER_NAMES:
            raise ValueError(
                f"CompressionConfig: cmp_layer={self.cmp_layer!r} is invalid; expected an integer layer index (-1 = "
                f"last) or one of {CMP_LAYER_NAMES}"
            )
        if not 0 <= self.seq_overlap < self.cmp_len:
            raise ValueError(
                f"CompressionConfig: seq_overlap={self.seq_overlap!r} is invalid; expected an integer in "
                f"[0, cmp_len={self.cmp_len})"
            )
        if self.cmp_attention not in CMP_ATTENTIONS:
            raise ValueError(
                f"CompressionConfig: cmp_attention={self.cmp_attention!r} is invalid; expected one of {CMP_ATTENTIONS}"
            )
        if self.cmp_layer == "output" and self.pooling == "mean":
            raise ValueError(
                "CompressionConfig: cmp_layer='output' is invalid with pooling='mean'; expected an integer layer "
                "index, 'half' or 'middle'"
            )
        if not 0.0 <= self.ae_ratio <= 1.0:
            raise ValueError(f"CompressionConfig: ae_ratio={self.ae_ratio!r} is invalid; expected a value in [0, 1]")
        if self.kl_weight < 0:
            raise ValueError(f"CompressionConfig: kl_weight={self.kl_weight!r} is invalid; expected >= 0")
        if self.pooling not in POOLINGS:
            raise ValueError(f"CompressionConfig: pooling={self.pooling!r} is invalid; expected one of {POOLINGS}")
        if self.pooling == "mean" and self.n_cmps > self.cmp_len:
            raise ValueError(
                f"CompressionConfig: n_cmps={self.n_cmps} is invalid; expected at most cmp_len={self.cmp_len} with "
                "pooling='mean'"
            )
        if self.train_mode not in TRAIN_MODES:
            raise ValueError(
                f"CompressionConfig: train_mode={self.train_mode!r} is invalid; expected one of {TRAIN_MODES}"
            )
        if self.lora_r < 1:
            raise ValueError(f"CompressionConfig: lora_r={self.lora_r!r} is invalid; expected an integer >= 1")

    @property
    def window_len(self) -> int:
        """Length of one training window: the context followed by the text to predict."""
        return self.cmp_len + self.seq_len

    @property
    def target_start(self) -> int:
        """Where the predicted text starts in a window: `cmp_len - seq_overlap`."""
        return self.cmp_len - self.seq_overlap

    @property
    def saves_backbone(self) -> bool:
        """Whether checkpoints hold the backbone weights (they always do when the backbone trains)."""
        return self.save_backbone or self.train_mode == "full"


__all__ = ["CompressionConfig"]
