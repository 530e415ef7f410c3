"""The context-compression experiment's arguments (seed names): the backbone, the
compression and what trains; the text and how it is cut into windows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from hf_experiments.core.config import ConfigError, bounded, prob


@dataclass
class CompressionModelArguments:
    """Backbone, compression and what trains (seed names)."""

    model_string: str = field(
        default="builtin:tiny-lm",
        metadata={
            "help": "Backbone causal LM: hub id (gpt2, bigscience/bloomz-560m), local path, or builtin:tiny-lm "
            "(trained here once on the embedded corpus, ~3 min on 2 CPU cores, then cached)."
        },
    )
    n_cmps: int = bounded(1, "Compression vectors per context.", lo=1)
    cmp_layer: str = field(
        default="half",
        metadata={
            "help": "Layer of the compressed states: an index (-1 = last), 'half' / 'middle' ((L+1)//2) or "
            "'output' (softmax-weighted mix of token embeddings, as the original)."
        },
    )
    cmp_len: int = bounded(10, "Context tokens compressed.", lo=1)
    seq_len: int = bounded(20, "Tokens predicted after the context.", lo=0)
    seq_overlap: int = bounded(0, "The predicted text repeats the context's last N tokens (the original's).", lo=0)
    cmp_attention: Literal["causal", "context_only"] = field(
        default="causal",
        metadata={"help": "Compression tokens see the context and each other (causal) or the context only (original)."},
    )
    prepend_bos: bool = field(
        default=True, metadata={"help": "Start every backbone sequence with its BOS (scores the first token)."}
    )
    rmb_task: bool = field(default=False, metadata={"help": "Also reconstruct the context (autoencoding)."})
    rmb_only: bool = field(default=False, metadata={"help": "Train only the reconstruction."})
    ae_ratio: float = prob(0.5, "Weight of the remember loss when rmb_task (ICAE-style mixing).")
    loss_sum: bool = field(default=False, metadata={"help": "Forward + remember loss, weight 1 each (the original)."})
    kl_weight: float = bounded(0.0, "Weight of KL(full-context model || compressed) on predicted tokens.", lo=0.0)
    proj_cmps: bool = field(default=False, metadata={"help": "Linear projection of the compressed states."})
    pooling: Literal["tokens", "mean"] = field(
        default="tokens", metadata={"help": "tokens = learned compression tokens; mean = mean-pooling baseline."}
    )
    train_mode: Literal["embeddings", "lora", "full"] = field(
        default="embeddings", metadata={"help": "What trains: new embeddings only, plus LoRA, or the backbone."}
    )
    lora_r: int = bounded(8, "LoRA rank.", lo=1)
    lora_alpha: int = bounded(16, "LoRA alpha.", lo=1)
    lora_dropout: float = prob(0.0, "LoRA dropout.")
    lora_target_modules: list[str] | None = field(default=None, metadata={"help": "LoRA modules (None: peft's)."})
    save_backbone: bool = field(default=False, metadata={"help": "Store the frozen backbone in checkpoints too."})


@dataclass
class CompressionDataArguments:
    """Which text, and how it is cut into windows."""

    dataset: Literal["embedded", "openwebtext", "glue"] = field(
        default="embedded",
        metadata={"help": "embedded = offline corpus shipped with Python; hub datasets need the network."},
    )
    data_files: list[str] | None = field(
        default=None, metadata={"help": "Local .txt/.parquet/.json/.jsonl/.csv files (override `dataset`)."}
    )
    text_column: str = field(default="text", metadata={"help": "Text field of structured data_files."})
    window_stride: int | None = bounded(
        None, "Tokens between the starts of consecutive windows (None: cmp_len + seq_len, no overlap).", lo=1
    )
    val_fraction: float = prob(0.05, "Documents held out for validation when the data has no split.")
    max_train_windows: int | None = bounded(None, "Use at most N training windows.", lo=1)
    max_val_windows: int | None = bounded(512, "Evaluate on at most N validation windows.", lo=1)
    free_run_tokens: int | None = bounded(None, "Greedy tokens per free-running evaluation (None: seq_len - 1).", lo=1)
    num_proc: int | None = bounded(None, "Processes for tokenisation (datasets.map num_proc).", lo=1)


def parse_cmp_layer(value: str) -> int | str:
    if value in ("half", "middle", "output"):
        return value
    try:
        return int(value)
    except ValueError:
        raise ConfigError(
            "cmp_layer", value, "an integer layer index (-1 = last), 'half', 'middle' or 'output'"
        ) from None
