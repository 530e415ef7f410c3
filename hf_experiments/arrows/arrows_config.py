"""The arrows-of-time experiment's arguments: the GPT's size (a preset, overridden field by field)
and which lines it reads in which order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from hf_experiments.core.config import MAX_SEED, bounded, prob


@dataclass
class ArrowsModelArguments:
    """GPT size: a preset, optionally overridden field by field (seed `model_params` names)."""

    model_preset: Literal["tiny", "small", "medium", "gpt1"] = field(
        default="small", metadata={"help": "tiny 2x64, small 4x128, medium 6x256, gpt1 12x768 (the paper's)."}
    )
    n_layers: int | None = bounded(None, "Transformer blocks (default: the preset's).", lo=1)
    n_heads: int | None = bounded(None, "Attention heads; must divide embed_dim.", lo=1)
    embed_dim: int | None = bounded(None, "Hidden size (default: the preset's).", lo=1)
    mlp_ratio: float = bounded(4.0, "MLP hidden size / embed_dim.", lo=0.0)
    dropout: float = prob(0.1, "Dropout inside the blocks.")
    embd_dropout: float | None = prob(None, "Dropout on token embeddings (None: 0).")


@dataclass
class ArrowsDataArguments:
    """Which lines, and in which order the model reads them."""

    task: Literal["primes", "linear"] = field(default="linear", metadata={"help": "Prime products or GF(2) lines."})
    direction: Literal["forward", "backward"] = field(
        default="forward",
        metadata={"help": "backward = each line reversed character-wise (BOS stays first)."},
    )
    permutation: list[int] | None = field(
        default=None,
        metadata={"help": "A fixed order of the line's character positions (overrides direction)."},
    )
    dataset_path: str | None = field(
        default=None,
        metadata={
            "help": "An existing generated folder (data_scripts/), or an original arrows-of-time .h5 token file "
            "(its lines: the last n_val validate, the rest train; n_pairs / num_vectors are then unused); "
            "default: generate.",
            "must_exist": True,
        },
    )
    h5_vocab: str | None = field(
        default=None,
        metadata={
            "help": "The tokenizer dictionary an .h5 dataset_path was written with (the original's "
            "tokenizers/<name>.pt, or JSON {char: id}); default: the original's fixed linear-language one "
            "(needed for primes files, whose ids the original learned from the text).",
            "must_exist": True,
        },
    )
    generation_seed: int = bounded(0, "Seed of the generated data (not of training).", lo=0, hi=MAX_SEED)
    n_val: int = bounded(2000, "Validation lines generated.", lo=1)
    n_pairs: int = bounded(100_000, "primes: training lines.", lo=1)
    pair_order: Literal["smaller_first", "random"] = field(
        default="smaller_first",
        metadata={
            "help": "primes: smaller_first = the smaller prime first, as the original wrote its lines; random = "
            "the drawn order (each unordered pair both ways)."
        },
    )
    min_n_digits: int = bounded(1, "primes: fewest digits of a prime.", lo=1)
    max_n_digits: int = bounded(5, "primes: most digits of a prime.", lo=1, hi=9)
    matrix_n: int = bounded(20, "linear: dimension n of GF(2)^n (ignored with matrix_path).", lo=2, hi=63)
    matrix_k: int = bounded(6, "linear: extra ones of M beyond the identity.", lo=0)
    matrix_path: str | None = field(
        default=None,
        metadata={
            "help": "linear: a saved (n, n) 0/1 .npy matrix instead of a random one.",
            "must_exist": True,
        },
    )
    num_vectors: int = bounded(100_000, "linear: training lines.", lo=1)
    perturbation_rate: float = prob(0.01, "linear: probability each bit is flipped.")
    val_fraction: float = bounded(
        0.0,
        "Fraction of the inputs (linear: vectors of GF(2)^n; primes: unordered prime pairs) reserved "
        "for validation, which training never sees (0: validation lines come from the same stream, as in "
        "the original).",
        lo=0.0,
        hi=0.5,
    )
