"""Semantic blotching (SPEC §1): a small transformer learns step-by-step arithmetic while whole solution steps
are dropped from its training rows ("blotched"), optionally told how much was dropped by a blotch token.

The run generates its dataset on first use (``<save_root>/data/<name>/``, shared by runs with the same problem
parameters) unless ``dataset_path`` names a folder written by ``data_scripts/make_arithmetic.py``. Training
rows are ``[btoken] BOS problem = step_1 = ... = answer EOS``; the collator (``hf_experiments.blotching``)
blotches them anew every batch. The final evaluation generates solutions for validation and
out-of-distribution problems at every blotch level and writes ``blotch_eval.csv`` / ``blotch_eval.png`` into
the run folder.

Configs: ``configs/blotch.json`` (variable blotching with blotch tokens), ``configs/blotch_vanilla.json``
(full solutions), ``configs/direct.json`` (``blotch_p=1``: every step dropped, problem -> answer).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal

from datasets import DatasetDict, load_dataset
from filelock import FileLock
from torch.optim.lr_scheduler import LambdaLR

from .. import blotch_eval
from ..blotching import BlotchCollator, default_n_btokens
from ..config import ConfigError, ExperimentTrainingArguments, RunConfig, bounded, prob
from ..data.arithmetic import ProblemParams, ood_params, problem_space_size, write_arithmetic_dataset
from ..data_cache import CacheTrainerMixin, CacheView, DataCache
from ..models.blotch import BlotchConfig, BlotchModel
from ..registry import Experiment, register
from ..runner import load_init_weights
from ..tokenization_arith import arith_tokenizer, encode_rows
from ..trainer import ExperimentTrainer


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
    digit_embs: bool = field(
        default=True, metadata={"help": "One token per digit (false is not implemented)."}
    )


@dataclass
class BlotchDataArguments:
    """Problems (seed names), the data cache sizes, and blotching."""

    max_num: int = bounded(99, "Largest number in a problem (inclusive).", lo=0)
    max_ents: int = bounded(3, "Most entities in a problem (>= 2).", lo=2)
    p_ent: float = prob(0.5, "Probability of each entity beyond the first two.")
    p_mult: float = prob(0.0, "Probability that an operator is '*'.")
    max_mult_num: int = bounded(9, "Largest multiplicand.", lo=0)
    space_mults: bool = field(default=True, metadata={"help": "Never two '*' in a row."})
    zipf_order: float = bounded(0.0, "Zipf exponent of number sampling (0: uniform).", lo=0.0)
    p_paren: float = prob(0.0, "Probability that an entity is a parenthetical.")
    init_samples: int | None = bounded(None, "Training problems (default: max_samples).", lo=1)
    max_samples: int | None = bounded(None, "Most rows of the training cache (default: init_samples).", lo=1)
    val_samples: int = bounded(1000, "Validation problems (disjoint from training).", lo=1)
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
    generation_seed: int = field(default=0, metadata={"help": "Seed of the generated problems."})
    blotch_p: float = prob(0.0, "Probability of dropping each intermediate step (1: problem -> answer).")
    blotch_p_min: float | None = prob(
        None, "Per-row blotch probability drawn from [blotch_p_min, blotch_p_max]."
    )
    blotch_p_max: float | None = prob(None, "See blotch_p_min.")
    blotch_spacing: Literal["random", "even"] = field(
        default="random", metadata={"help": "Drop steps independently, or round(p*steps) evenly spaced."}
    )
    contig_blotches: bool = field(default=True, metadata={"help": "false: never drop two adjacent steps."})
    bootstrap_blotch_p: float | None = prob(
        None,
        "Blotch level of generated solutions for the headline metric (and bootstrapping); "
        "default: blotch_p_min.",
    )
    incl_intl_prob: bool = field(default=False, metadata={"help": "Also train on predicting the problem."})
    # ----- the data cache and its manipulations (docs/data_cache.md; all off by default) -----
    star_loops: int = bounded(
        0, "STaR: per round, loops x manip_batch_size new problems solved at aug_temp; correct solutions "
        "shorter than the ground truth are added (0: off).", lo=0
    )
    star_rationalize: bool = field(
        default=False,
        metadata={"help": "STaR rationalization: a wrong answer is retried with the answer as a hint; a "
                  "rationale reaching it is kept."},
    )
    aug_loops: int = bounded(
        0, "Augmentation: per round, loops x manip_batch_size cached rows re-solved at aug_temp (-1: all); "
        "correct, strictly shorter solutions kept (0: off).", lo=-1
    )
    in_place: bool = field(
        default=True, metadata={"help": "Augmentations replace their row (true) or are added as new rows."}
    )
    axe_loops: int = bounded(
        0, "Axing: per round, loops x manip_batch_size cached rows (-1: all) lose their least-cost step when "
        "the model solves them and the cost is within axe_tol (0: off).", lo=-1
    )
    axe_tol: float = bounded(0.1, "Axing tolerance on the loss change of what follows the removed step.", lo=0.0)
    abs_axe_tol: bool = field(
        default=False, metadata={"help": "axe_tol is an absolute loss difference (else relative)."}
    )
    axe_comp_steps: int = bounded(2, "Steps after an axed step whose loss is compared.", lo=1)
    internalize_steps: int = bounded(
        0, "Stepwise-internalization baseline: every round drops this many more leading solution steps "
        "(0: off).", lo=0
    )
    pre_epochs: int = bounded(0, "Epochs trained before the first manipulation round (at least 1).", lo=0)
    aug_mod: int = field(
        default=1,
        metadata={"help": "Rounds every aug_mod epochs; negative: on a training-loss plateau (see "
                  "plateau_patience, plateau_tol, min_aug_gap); 0: never."},
    )
    last_aug_epoch: int | None = bounded(
        None, "No manipulation round after this many trained epochs (default: rounds until the end), so the "
        "last epochs fit the final data.", lo=1
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
        metadata={"help": "Train through the data cache (per-epoch cache_history) even with every "
                  "manipulation off; implied by any manipulation."},
    )
    history_eval_samples: int = bounded(
        200, "Validation problems whose greedy accuracy cache_history records every epoch (0: length only).",
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
    n_rollouts: int = bounded(
        1, "Rollouts per problem; the majority answer counts (needs val_temp > 0).", lo=1
    )
    gen_eval_samples: int = bounded(500, "Problems per split in the final generation evaluation.", lo=1)


def warmup_inverse_power(step: int, warmup: int, power: float) -> float:
    """LR multiplier: ``step / warmup`` during warm-up, then ``(warmup / step) ** power``."""
    warmup = max(1, warmup)
    return step / warmup if step < warmup else (warmup / step) ** power


class BlotchTrainer(ExperimentTrainer):
    """``ExperimentTrainer`` with the warm-up/inverse-power schedule when ``lr_decay_power`` is set, and label
    smoothing done by the model (``BlotchConfig.label_smoothing``) instead of the Trainer's smoother, which
    would not shift labels for a model type it does not know."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.label_smoother = None

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        power = getattr(self.args, "lr_decay_power", None)
        if power is None or self.lr_scheduler is not None:
            return super().create_scheduler(num_training_steps, optimizer)
        warmup = self.args.get_warmup_steps(num_training_steps)
        self.lr_scheduler = LambdaLR(
            optimizer or self.optimizer, partial(warmup_inverse_power, warmup=warmup, power=power)
        )
        self._created_lr_scheduler = True
        return self.lr_scheduler


class BlotchCacheTrainer(CacheTrainerMixin, BlotchTrainer):
    """``BlotchTrainer`` that trains every epoch on the current data cache (``data_cache.CacheTrainerMixin``)."""


def problem_params(d: BlotchDataArguments) -> ProblemParams:
    return ProblemParams(
        max_num=d.max_num,
        max_ents=d.max_ents,
        p_ent=d.p_ent,
        p_mult=d.p_mult,
        max_mult_num=d.max_mult_num,
        space_mults=d.space_mults,
        zipf_order=d.zipf_order,
        p_paren=d.p_paren,
    )


def manipulations_on(d: BlotchDataArguments) -> bool:
    return bool(d.star_loops or d.aug_loops or d.axe_loops or d.internalize_steps)


def uses_cache(d: BlotchDataArguments) -> bool:
    """Train through the data cache: any manipulation, or ``data_cache`` (history only)."""
    return manipulations_on(d) or d.data_cache


def n_train(d: BlotchDataArguments) -> int:
    return d.init_samples or d.max_samples or 20_000


def resolved_n_btokens(m: BlotchModelArguments, d: BlotchDataArguments) -> int:
    if m.n_btokens is not None:
        return m.n_btokens
    if d.blotch_p_min is not None and d.blotch_p_max is not None and d.blotch_p_max > d.blotch_p_min:
        return default_n_btokens(d.blotch_p_min, d.blotch_p_max)
    return 0


def dataset_name(d: BlotchDataArguments) -> str:
    spec = {
        **problem_params(d).to_dict(),
        "n_train": n_train(d),
        "n_val": d.val_samples,
        "n_ood": d.ood_samples,
        "ood_max_num": d.ood_max_num,
        "ood_max_ents": d.ood_max_ents,
        "seed": d.generation_seed,
    }
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]
    return f"arithmetic_n{d.max_num}_e{d.max_ents}_{digest}"


@register
class BlotchExperiment(Experiment):
    """Step-by-step arithmetic with blotched (dropped) solution steps; see the module docstring."""

    name = "blotch"
    model_args = BlotchModelArguments
    data_args = BlotchDataArguments
    training_args = BlotchTrainingArguments

    @classmethod
    def validate(cls, cfg: RunConfig) -> None:
        m, d, t = cfg.model, cfg.data, cfg.training
        if m.d_model % m.n_heads:
            raise ConfigError("d_model", m.d_model, f"a multiple of n_heads={m.n_heads}")
        if not m.digit_embs:
            raise ConfigError("digit_embs", False, "true (only digit embeddings are implemented)")
        if (d.blotch_p_min is None) != (d.blotch_p_max is None):
            raise ConfigError(
                "blotch_p_min", d.blotch_p_min, "set together with blotch_p_max (both or neither)"
            )
        if d.blotch_p_min is not None and d.blotch_p_min > d.blotch_p_max:
            raise ConfigError("blotch_p_min", d.blotch_p_min, f"at most blotch_p_max={d.blotch_p_max}")
        if m.n_btokens and d.blotch_p_min is None:
            raise ConfigError("n_btokens", m.n_btokens, "0 unless blotch_p_min and blotch_p_max are set")
        if d.init_samples and d.max_samples and d.init_samples > d.max_samples:
            raise ConfigError("init_samples", d.init_samples, f"at most max_samples={d.max_samples}")
        cls._validate_cache(cfg)
        if t.n_rollouts > 1 and t.val_temp == 0:
            raise ConfigError("n_rollouts", t.n_rollouts, "1 with greedy decoding (set val_temp > 0 to vote)")
        if not d.dataset_path:
            try:
                params = problem_params(d)
                wider = ood_params(params, d.ood_max_num, d.ood_max_ents)
            except ValueError as e:
                raise ConfigError("max_num", d.max_num, str(e)) from None
            size = problem_space_size(params)
            if size is not None and size < n_train(d) + d.val_samples:
                raise ConfigError(
                    "init_samples",
                    n_train(d),
                    f"at most {size - d.val_samples}: the problem space "
                    f"holds {size} problems and val_samples={d.val_samples} of them are held out",
                )
            if (
                d.ood_samples
                and wider.max_num <= max(d.max_num, d.max_mult_num)
                and wider.max_ents <= d.max_ents
            ):
                raise ConfigError(
                    "ood_max_num",
                    d.ood_max_num,
                    "larger than max_num (or ood_max_ents larger than max_ents), or set ood_samples=0",
                )

    @staticmethod
    def _validate_cache(cfg: RunConfig) -> None:
        d, t = cfg.data, cfg.training
        if not uses_cache(d):
            return
        if t.dataloader_persistent_workers and t.dataloader_num_workers > 0:
            raise ConfigError("dataloader_persistent_workers", True,
                              "false with the data cache (persistent workers keep a stale copy of the rows)")
        if d.star_rationalize and not d.star_loops:
            raise ConfigError("star_rationalize", True, "false unless star_loops > 0")
        grows = d.star_loops or (d.aug_loops and not d.in_place)
        cap = d.max_samples or n_train(d)
        if grows and cap <= n_train(d) and d.cache_full_policy == "drop_new":
            key, value = ("star_loops", d.star_loops) if d.star_loops else ("in_place", d.in_place)
            raise ConfigError(key, value, f"a cache with room to grow: max_samples={cap} equals init_samples; "
                              "raise max_samples or set cache_full_policy='replace_oldest'")
        if d.last_aug_epoch is not None and d.last_aug_epoch < max(1, d.pre_epochs):
            raise ConfigError("last_aug_epoch", d.last_aug_epoch,
                              f"at least max(1, pre_epochs) = {max(1, d.pre_epochs)} (else no round ever runs)")
        if manipulations_on(d) and d.aug_mod < 0 and t.logging_strategy != "steps":
            raise ConfigError("aug_mod", d.aug_mod, "non-negative unless logging_strategy='steps' (the "
                              "plateau detector reads the logged training loss)")

    # ----- data -----
    def dataset_dir(self) -> Path:
        d = self.cfg.data
        return (
            Path(d.dataset_path)
            if d.dataset_path
            else Path(self.cfg.run.save_root) / "data" / dataset_name(d)
        )

    def build_data(self) -> DatasetDict:
        d, args = self.cfg.data, self.cfg.training
        path = self.dataset_dir()
        if not d.dataset_path:
            # The lock serialises runs that share the data folder (several configs started at once).
            path.parent.mkdir(parents=True, exist_ok=True)
            with args.main_process_first(desc="generate data"), FileLock(f"{path}.lock"):
                if args.process_index == 0 and not path.exists():
                    write_arithmetic_dataset(
                        str(path),
                        problem_params(d),
                        n_train(d),
                        d.val_samples,
                        d.ood_samples,
                        d.generation_seed,
                        d.ood_max_num,
                        d.ood_max_ents,
                    )
        raw = load_dataset(str(path))
        self.tokenizer = tok = arith_tokenizer()

        def encode(batch: dict) -> dict:
            rows = encode_rows(tok, [f"{p}={s}" for p, s in zip(batch["problem"], batch["solution"])])
            return {"input_ids": [r.tolist() for r in rows]}

        with args.main_process_first(desc="tokenise"):
            data = raw.map(encode, batched=True, batch_size=10_000, desc="tokenise")
        longest = max(max(len(r) for r in data[s]["input_ids"]) for s in data) + 1  # + blotch token
        if longest > self.cfg.model.max_posencs:
            raise ValueError(
                f"max_posencs={self.cfg.model.max_posencs} is too small; the longest row has "
                f"{longest} tokens (raise max_posencs to at least {longest})"
            )
        return data

    # ----- model and trainer -----
    def build_model(self) -> BlotchModel:
        m, d, tok = self.cfg.model, self.cfg.data, self.tokenizer
        n_bt = resolved_n_btokens(m, d)
        config = BlotchConfig(
            vocab_size=len(tok) + n_bt,
            d_model=m.d_model,
            n_heads=m.n_heads,
            h_mult=m.h_mult,
            n_layers=m.n_layers,
            drop_p=m.drop_p,
            posenc_type=m.posenc_type,
            max_posencs=m.max_posencs,
            learnable_posencs=m.learnable_posencs,
            posenc_drop_p=m.posenc_drop_p,
            pad_pos_skip=m.pad_pos_skip,
            n_btokens=n_bt,
            blotch_p_min=d.blotch_p_min or 0.0,
            blotch_p_max=d.blotch_p_max or 0.0,
            label_smoothing=self.cfg.training.label_smoothing_factor,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
        import torch

        torch.manual_seed(self.cfg.training.seed)
        model = BlotchModel(config)
        if self.cfg.run.init_checkpt:
            load_init_weights(model, self.cfg.run.init_checkpt)
        return model

    def collator(self, model: BlotchModel) -> BlotchCollator:
        d, c, tok = self.cfg.data, model.config, self.tokenizer
        return BlotchCollator(
            pad_id=tok.pad_token_id,
            eq_id=tok.convert_tokens_to_ids("="),
            blotch_p=d.blotch_p,
            blotch_p_min=d.blotch_p_min,
            blotch_p_max=d.blotch_p_max,
            n_btokens=c.n_btokens,
            btoken_offset=c.btoken_offset,
            spacing=d.blotch_spacing,
            contig_blotches=d.contig_blotches,
            pad_pos_skip=c.pad_pos_skip,
            incl_intl_prob=d.incl_intl_prob,
        )

    def build_trainer(self, model: BlotchModel, data: DatasetDict) -> BlotchTrainer:
        d = self.cfg.data
        if not uses_cache(d):
            return BlotchTrainer(
                model=model,
                args=self.cfg.training,
                train_dataset=data["train"],
                eval_dataset=data["validation"],
                data_collator=self.collator(model),
                processing_class=self.tokenizer,
            )
        cache = DataCache.from_dataset(self.tokenizer, data["train"], n_train(d), d.max_samples or n_train(d),
                                       d.cache_full_policy)
        trainer = BlotchCacheTrainer(
            model=model,
            args=self.cfg.training,
            train_dataset=CacheView(cache),
            eval_dataset=data["validation"],
            data_collator=self.collator(model),
            processing_class=self.tokenizer,
        )
        trainer.attach_cache(cache)
        for callback in self.cache_callbacks(trainer, cache, model, data):
            trainer.add_callback(callback)
        return trainer

    def bootstrap_level(self, model: BlotchModel) -> float | None:
        """Blotch level of generated solutions (``bootstrap_blotch_p``, default ``blotch_p_min``); None for a
        model without blotch tokens."""
        if not model.config.n_btokens:
            return None
        p = self.cfg.data.bootstrap_blotch_p
        return self.cfg.data.blotch_p_min if p is None else p

    def cache_callbacks(self, trainer: BlotchTrainer, cache: DataCache, model: BlotchModel,
                        data: DatasetDict) -> list:
        """The schedule, the manipulations the config turns on (STaR, augmentation, axing,
        internalization, in this order) and the per-epoch history."""
        from .. import cache_callbacks as cc

        d, t = self.cfg.data, self.cfg.training
        ctx = cc.CacheContext(cache, trainer, self.tokenizer, self.cfg.run_dir, self.bootstrap_level(model),
                              d.manip_batch_size or t.per_device_eval_batch_size, model.config.max_posencs)
        schedule = cc.ManipulationSchedule(cache, d.pre_epochs, d.aug_mod, d.min_aug_gap, d.plateau_patience,
                                           d.plateau_tol, d.last_aug_epoch)
        out: list = [schedule]
        if d.star_loops:
            exclude = set(data["train"]["problem"]) | set(data["validation"]["problem"])
            out.append(cc.StarCallback(ctx, schedule, problem_params(d), exclude, d.star_loops, d.aug_temp,
                                       d.star_rationalize))
        if d.aug_loops:
            out.append(cc.AugmentCallback(ctx, schedule, d.aug_loops, d.aug_temp, d.in_place))
        if d.axe_loops:
            out.append(cc.AxeCallback(ctx, schedule, d.axe_loops, d.axe_tol, d.abs_axe_tol, d.axe_comp_steps))
        if d.internalize_steps:
            out.append(cc.InternalizeCallback(ctx, schedule, d.internalize_steps))
        val = data["validation"].select(range(min(len(data["validation"]), d.history_eval_samples)))
        out.append(cc.CacheHistoryCallback(ctx, schedule, list(val["problem"]), list(val["answer"])))
        self.history = out[-1]
        return out

    # ----- evaluation -----
    def evaluate(self, trainer: BlotchTrainer, data: DatasetDict) -> dict[str, float]:
        t = self.cfg.training
        metrics = trainer.evaluate()
        model = trainer.model
        splits = {
            name: data[name].select(range(min(len(data[name]), t.gen_eval_samples)))
            for name in ("validation", "ood")
            if name in data and len(data[name])
        }
        rows = blotch_eval.sweep(
            model, self.tokenizer, splits, t.val_temp, t.n_rollouts, t.per_device_eval_batch_size
        )
        headline = self.cfg.data.bootstrap_blotch_p
        if headline is None:
            headline = self.cfg.data.blotch_p_min if model.config.n_btokens else None
        levels = blotch_eval.eval_levels(model)
        head = levels[0] if headline is None else min(levels, key=lambda lv: abs(lv - headline))
        for row in rows:
            level = row["blotch_level"]
            tag = "" if level == "none" else f"@{level}"
            for key in ("answer_acc", "token_acc", "gen_len", "gt_len", "len_ratio", "valid_frac"):
                metrics[f"{row['split']}_{key}{tag}"] = row[key]
            if level == "none" or level == head:
                metrics[f"{row['split']}_answer_acc"] = row["answer_acc"]
                metrics[f"{row['split']}_gen_len"] = row["gen_len"]
        if isinstance(trainer, BlotchCacheTrainer):
            metrics.update(self.finish_history(trainer, metrics))
        if trainer.is_world_process_zero():
            blotch_eval.write_results(
                rows,
                self.cfg.run_dir / "blotch_eval.csv",
                self.cfg.run_dir / "blotch_eval.png",
                title=self.cfg.run.exp_name,
            )
        return metrics

    def finish_history(self, trainer: BlotchCacheTrainer, metrics: dict[str, float]) -> dict[str, float]:
        """Close ``cache_history`` with the trained model (the final evaluation's validation accuracy at the
        bootstrap level) and write ``cache_history.csv`` / ``.png``."""
        from ..cache_callbacks import write_history

        cache = trainer.data_cache
        history = list(cache.ledger.history)
        epochs = len(cache.ledger.epoch_starts)
        if not history or history[-1]["epoch"] != epochs:
            history.append({"epoch": epochs, "step": trainer.state.global_step, "rows": len(cache),
                            "mean_solution_length": cache.mean_solution_length(),
                            "val_answer_acc": self.history.answer_acc()})
        if trainer.is_world_process_zero():
            write_history(history, self.cfg.run_dir / "cache_history.csv", self.cfg.run_dir / "cache_history.png",
                          title=self.cfg.run.exp_name)
        first, last = history[0], history[-1]
        return {"cache_rows": len(cache), "cache_mean_solution_length": last["mean_solution_length"],
                "cache_length_reduction": 1 - last["mean_solution_length"] / first["mean_solution_length"],
                "manip_rounds": len(cache.ledger.round_epochs()), "manip_seconds": cache.ledger.manip_seconds}
