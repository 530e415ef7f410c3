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
        return BlotchTrainer(
            model=model,
            args=self.cfg.training,
            train_dataset=data["train"],
            eval_dataset=data["validation"],
            data_collator=self.collator(model),
            processing_class=self.tokenizer,
        )

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
        if trainer.is_world_process_zero():
            blotch_eval.write_results(
                rows,
                self.cfg.run_dir / "blotch_eval.csv",
                self.cfg.run_dir / "blotch_eval.png",
                title=self.cfg.run.exp_name,
            )
        return metrics
