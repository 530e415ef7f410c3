"""The semantic-blotching experiment's arguments (seed names): the transformer, the problems, the
data cache and its manipulations, blotching, and the training side (the original's LR schedule, the generation
evaluation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from hf_experiments.core.config import MAX_SEED, ConfigError, ExperimentTrainingArguments, bounded, prob


@dataclass
class BlotchModelArguments:
    """The transformer (seed names)."""

    d_model: int = bounded(128, "Embedding and hidden size.", lo=1)
    n_heads: int = bounded(4, "Attention heads; must divide d_model.", lo=1)
    h_mult: int = bounded(4, "MLP hidden size = h_mult * d_model.", lo=1)
    n_layers: int = bounded(4, "Transformer layers.", lo=1)
    drop_p: float = prob(0.0, "Dropout in the blocks and on the embeddings.")
    posenc_type: Literal["SinPositionalEncoding", "RandPositionalEncoding"] = field(
        default="SinPositionalEncoding",
        metadata={
            "help": "SinPositionalEncoding, or RandPositionalEncoding (sorted random positions from "
            "[0, max_posencs) in training)."
        },
    )
    max_posencs: int = bounded(512, "Positional-encoding table size (>= the longest row).", lo=8)
    learnable_posencs: bool = field(default=False, metadata={"help": "Train the positional encodings."})
    posenc_drop_p: float = prob(0.0, "Dropout on the positional encodings only.")
    pad_pos_skip: bool = field(
        default=True,
        metadata={"help": "Positions skip blotched tokens (as if deleted); false keeps the gap."},
    )
    n_btokens: int | None = bounded(
        None,
        "Blotch tokens (levels on [blotch_p_min, blotch_p_max]); None: one per 0.1 of the range when "
        "blotch_p_min < blotch_p_max, else 0; 0: no blotch tokens.",
        lo=0,
    )
    digit_embs: bool = field(default=True, metadata={"help": "One token per digit (false is not implemented)."})


@dataclass
class BlotchDataArguments:
    """Problems (seed names), the data cache sizes, and blotching."""

    max_num: int = bounded(99, "Largest number in a problem (inclusive).", lo=0)
    max_ents: int = bounded(3, "Most entities in a problem (>= 2).", lo=2)
    p_ent: float = prob(0.5, "Probability of each entity beyond the first two.")
    p_mult: float = prob(0.0, "Probability that an operator is '*'.")
    max_mult_num: int = bounded(9, "Largest multiplicand.", lo=0)
    space_mults: bool = field(default=True, metadata={"help": "Never two '*' in a row."})
    zipf_order: float = bounded(
        0.0, "Zipf exponent of number sampling: P(k) ∝ 1/k^s on 1..max (never 0), as the original (0: uniform).", lo=0.0
    )
    p_paren: float = prob(0.0, "Probability that an entity is a parenthetical (ours; the original has none).")
    solver: Literal["original", "sorted"] = field(
        default="original",
        metadata={
            "help": "Solution steps: original (grantsrb/blotching's find_soln, exactly), or sorted (ours: "
            "numbers kept ascending, one decompose per number; docs/semantic_blotching.md)."
        },
    )
    init_samples: int | None = bounded(None, "Training problems (default: max_samples).", lo=1)
    max_samples: int | None = bounded(
        None,
        "Most rows of the training cache (default: init_samples). As the original: a space whose largest "
        "answer is below 400 and that holds fewer problems than this is enumerated and split.",
        lo=1,
    )
    val_samples: int = bounded(
        1000, "Validation problems (disjoint from training; an enumerated space holds out min(20%, this)).", lo=1
    )
    ood_samples: int = bounded(500, "Out-of-distribution problems (0: none).", lo=0)
    ood_max_num: int | None = bounded(None, "OOD largest number (default 2*max_num+1).", lo=0)
    ood_max_ents: int | None = bounded(None, "OOD most entities (default max_ents+1).", lo=2)
    dataset_path: str | None = field(
        default=None,
        metadata={
            "help": "A folder from data_scripts/make_arithmetic.py; default: generate.",
            "must_exist": True,
        },
    )
    generation_seed: int = bounded(0, "Seed of the generated problems.", lo=0, hi=MAX_SEED)
    blotch_p: float = prob(0.0, "Probability of dropping each intermediate step (1: problem -> answer).")
    blotch_p_min: float | None = prob(None, "Per-row blotch probability drawn from [blotch_p_min, blotch_p_max].")
    blotch_p_max: float | None = prob(None, "See blotch_p_min.")
    blotch_spacing: Literal["random", "even"] = field(
        default="random", metadata={"help": "Drop steps independently, or round(p*steps) evenly spaced."}
    )
    contig_blotches: bool = field(default=True, metadata={"help": "false: never drop two adjacent steps."})
    bootstrap_blotch_p: float | None = prob(
        None,
        "Blotch level of generated solutions for the headline metric (and bootstrapping); default: blotch_p_min.",
    )
    incl_intl_prob: bool = field(default=False, metadata={"help": "Also train on predicting the problem."})
    pack_rows: bool = field(
        default=True,
        metadata={
            "help": "Padding-free packing (ours): blotched rows laid end to end in fewer rows, attention kept within "
            "each row; the same loss and gradient as padding (to float rounding; with dropout, in distribution), "
            "fewer tokens computed (false: padded rows)."
        },
    )
    # ----- the data cache and its manipulations (docs/data_cache.md; all off by default) -----
    star_loops: int = bounded(
        0,
        "STaR: per round, loops x manip_batch_size new problems solved at aug_temp; correct solutions "
        "shorter than the ground truth are added (0: off).",
        lo=0,
    )
    star_rationalize: bool = field(
        default=False,
        metadata={
            "help": "STaR rationalization: a wrong answer is retried with the answer as a hint; a "
            "rationale reaching it is kept."
        },
    )
    aug_loops: int = bounded(
        0,
        "Augmentation: per round, loops x manip_batch_size cached rows re-solved at aug_temp (-1: all); "
        "correct, strictly shorter solutions kept (0: off).",
        lo=-1,
    )
    in_place: bool = field(
        default=True, metadata={"help": "Augmentations replace their row (true) or are added as new rows."}
    )
    axe_loops: int = bounded(
        0,
        "Axing: per round, loops x manip_batch_size cached rows (-1: all) lose their least-cost step when "
        "the model solves them and the cost is within axe_tol (0: off).",
        lo=-1,
    )
    axe_tol: float = bounded(0.1, "Axing tolerance on the loss change of what follows the removed step.", lo=0.0)
    abs_axe_tol: bool = field(
        default=False, metadata={"help": "axe_tol is an absolute loss difference (else relative)."}
    )
    axe_comp_steps: int = bounded(2, "Steps after an axed step whose loss is compared.", lo=1)
    axe_rule: Literal["ours", "original"] = field(
        default="ours",
        metadata={
            "help": "ours: axe_tol on the same tokens with and without the step; original: the original "
            "code's cost (everything after the cut, the baseline counting the removed step's tokens) with "
            "axe_abs_limit and axe_rel_limit applied together (docs/semantic_blotching.md)."
        },
    )
    axe_abs_limit: float | None = bounded(
        None, "axe_rule=original: keep a removal when its loss difference is below this (None: no limit)."
    )
    axe_rel_limit: float | None = bounded(
        None, "axe_rule=original: ... and its difference relative to the baseline below this (None: no limit)."
    )
    internalize_steps: int = bounded(
        0, "Stepwise-internalization baseline: every round drops this many more leading solution steps (0: off).", lo=0
    )
    pre_epochs: int = bounded(0, "Epochs trained before the first manipulation round (at least 1).", lo=0)
    aug_mod: int = field(
        default=1,
        metadata={
            "help": "Rounds every aug_mod epochs; negative: on a training-loss plateau (see "
            "plateau_patience, plateau_tol, min_aug_gap); 0: never."
        },
    )
    last_aug_epoch: int | None = bounded(
        None,
        "No manipulation round after this many trained epochs (default: rounds until the end), so the "
        "last epochs fit the final data.",
        lo=1,
    )
    min_aug_gap: int = bounded(1, "With aug_mod < 0: at least this many epochs between rounds.", lo=1)
    plateau_patience: int = bounded(
        2, "With aug_mod < 0: epochs without a plateau_tol relative improvement that make a plateau.", lo=1
    )
    plateau_tol: float = bounded(0.01, "Relative loss improvement that counts as progress.", lo=0.0, hi=0.99)
    aug_temp: float = bounded(1.0, "Sampling temperature of STaR and augmentation.", lo=0.0)
    manip_batch_size: int | None = bounded(
        None, "Rows per manipulation loop and generation batch (default per_device_eval_batch_size).", lo=1
    )
    cache_full_policy: Literal["drop_new", "replace_oldest"] = field(
        default="drop_new",
        metadata={"help": "At max_samples rows: drop a round's surplus new rows, or overwrite the oldest rows."},
    )
    data_cache: bool = field(
        default=False,
        metadata={
            "help": "Train through the data cache (per-epoch cache_history) even with every "
            "manipulation off; implied by any manipulation."
        },
    )
    history_eval_samples: int = bounded(
        200,
        "Validation problems whose greedy accuracy cache_history records every epoch (0: length only).",
        lo=0,
    )


@dataclass
class BlotchTrainingArguments(ExperimentTrainingArguments):
    """``ExperimentTrainingArguments`` plus the original's LR schedule and the generation evaluation."""

    lr_decay_power: float | None = bounded(
        None,
        "If set: linear warm-up over warmup_steps, then lr * (warmup_steps/step)^power (the original's "
        "schedule; 0.5 = inverse square root); replaces lr_scheduler_type.",
        lo=0.0,
    )
    val_temp: float = bounded(0.0, "Sampling temperature of evaluation rollouts (0: greedy).", lo=0.0)
    n_rollouts: int = bounded(1, "Rollouts per problem; the majority answer counts (needs val_temp > 0).", lo=1)
    gen_eval_samples: int = bounded(
        500,
        "Cap on the problems per split of the final generation evaluation (each is generated at every blotch "
        "level); lower it for a quick look at a long sweep of levels.",
        lo=1,
    )
    max_new_tokens: int | None = bounded(
        None,
        "Most tokens a solution may generate in the final evaluation. Default: per problem, 1.5 x the longest "
        "ground-truth solution of a problem of its length + 8, within the context (no correct solution of a "
        "trained model was ever cut).",
        lo=1,
    )

    def __post_init__(self) -> None:
        if self.lr_decay_power is not None and self.lr_sched_steps:
            raise ConfigError("lr_sched_steps", self.lr_sched_steps, "not together with lr_decay_power (two schedules)")
        super().__post_init__()
