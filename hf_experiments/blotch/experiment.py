"""Semantic blotching (grantsrb/blotching): a small transformer learns step-by-step arithmetic while whole solution
steps are dropped from its training rows ("blotched"), optionally told how much was dropped by a blotch token.

The run generates its dataset on first use unless ``dataset_path`` names a folder written by
``data_scripts/make_arithmetic.py``; the collator (``hf_experiments.blotch.blotching``) blotches the rows anew every
batch, and the final evaluation writes ``blotch_eval.csv`` / ``blotch_eval.png``. Configs: ``configs/blotch.json``,
``configs/blotch_vanilla.json``, ``configs/direct.json``.

Design: `docs/semantic_blotching.md`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from datasets import DatasetDict, load_dataset
from filelock import FileLock
from transformers.utils import logging

from hf_experiments.blotch import evaluation as blotch_eval
from hf_experiments.blotch.self_training.cache_trainer import CacheTrainerMixin
from hf_experiments.blotch.self_training.callbacks import (
    AugmentCallback,
    AxeCallback,
    InternalizeCallback,
    StarCallback,
)
from hf_experiments.blotch.self_training.data_cache import CacheView, DataCache
from hf_experiments.blotch.self_training.history import CacheHistoryCallback
from hf_experiments.blotch.self_training.rounds import CacheContext
from hf_experiments.blotch.self_training.schedule import ManipulationSchedule
from hf_experiments.core.config import ConfigError, RunConfig
from hf_experiments.core.dataset_io import check_dataset_folder, read_card_params
from hf_experiments.core.experiment import Experiment
from hf_experiments.core.model_helpers import check_trainable, load_init_weights, model_config
from hf_experiments.core.progress import progress_bar
from hf_experiments.core.tokenization_char import CharTokenizer

from .arithmetic import (
    ProblemParams,
    ood_params,
    problem_space_size,
    small_space,
    small_space_counts,
    write_arithmetic_dataset,
)
from .blotch_config import BlotchDataArguments, BlotchModelArguments, BlotchTrainingArguments
from .blotch_trainer import BlotchTrainer
from .blotching import BlotchCollator, default_n_btokens
from .configuration_blotch import BlotchConfig
from .modeling_blotch import BlotchModel
from .tokenization_arith import arith_tokenizer, encode_rows

logger = logging.get_logger(__name__)


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
        solver=d.solver,
    )


def manipulations_on(d: BlotchDataArguments) -> bool:
    return bool(d.star_loops or d.aug_loops or d.axe_loops or d.internalize_steps)


def uses_cache(d: BlotchDataArguments) -> bool:
    """Train through the data cache: any manipulation, or ``data_cache`` (history only)."""
    return manipulations_on(d) or d.data_cache


def n_train(d: BlotchDataArguments) -> int:
    return d.init_samples or d.max_samples or 20_000


def cache_cap(d: BlotchDataArguments) -> int:
    """Most rows of the training cache; also what the original's small-space rule compares the space with."""
    return d.max_samples or n_train(d)


def resolved_n_btokens(m: BlotchModelArguments, d: BlotchDataArguments) -> int:
    if m.n_btokens is not None:
        return m.n_btokens
    if d.blotch_p_min is not None and d.blotch_p_max is not None and d.blotch_p_max > d.blotch_p_min:
        return default_n_btokens(d.blotch_p_min, d.blotch_p_max)
    return 0


def model_config_of(cfg: RunConfig, tok: CharTokenizer) -> BlotchConfig:
    """The model's config: the model arguments as they are, plus what the tokenizer and blotching decide."""
    m, d = cfg.model, cfg.data
    n_bt = resolved_n_btokens(m, d)
    return model_config(
        BlotchConfig,
        m,
        drop=("digit_embs",),
        n_btokens=n_bt,
        vocab_size=len(tok) + n_bt,
        blotch_p_min=d.blotch_p_min or 0.0,
        blotch_p_max=d.blotch_p_max or 0.0,
        label_smoothing=cfg.training.label_smoothing_factor,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )


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
    if small_space(problem_params(d), cache_cap(d)):  # the cache size then decides the split (other data: not)
        spec["max_samples"] = cache_cap(d)
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]
    return f"arithmetic_n{d.max_num}_e{d.max_ents}_{digest}"


def longest_row(path: str | Path) -> int:
    """Tokens of the longest row of a dataset folder as the model reads it: BOS, problem, '=', solution, EOS, and
    the blotch token (the arithmetic tokenizer has one token per character). Reads two columns, no tokenizing."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    longest = 0
    for file in sorted((Path(path) / "data").glob("*.parquet")):
        table = pq.read_table(file, columns=["problem", "solution"])
        if table.num_rows:
            size = pc.add(pc.utf8_length(table["problem"]), pc.utf8_length(table["solution"]))
            longest = max(longest, pc.max(size).as_py() + 4)  # '=', BOS, EOS, the blotch token
    return longest


class BlotchExperiment(Experiment):
    """Step-by-step arithmetic with blotched (dropped) solution steps, direct answers, or self-training.

    The module docstring has the details."""

    name = "blotch"
    model_args = BlotchModelArguments
    data_args = BlotchDataArguments
    training_args = BlotchTrainingArguments

    @classmethod
    def validate(cls, cfg: RunConfig) -> None:
        m, d, t = cfg.model, cfg.data, cfg.training
        if not m.digit_embs:
            raise ConfigError("digit_embs", False, "true (only digit embeddings are implemented)")
        if (d.blotch_p_min is None) != (d.blotch_p_max is None):
            raise ConfigError("blotch_p_min", d.blotch_p_min, "set together with blotch_p_max (both or neither)")
        if d.blotch_p_min is not None and d.blotch_p_min > d.blotch_p_max:
            raise ConfigError("blotch_p_min", d.blotch_p_min, f"at most blotch_p_max={d.blotch_p_max}")
        if m.n_btokens and d.blotch_p_min is None:
            raise ConfigError("n_btokens", m.n_btokens, "0 unless blotch_p_min and blotch_p_max are set")
        # the model's own checks (d_model a multiple of n_heads, ...), its size, init_checkpt against it
        check_trainable(BlotchModel, model_config_of(cfg, arith_tokenizer()), cfg.run.init_checkpt)
        if d.init_samples and d.max_samples and d.init_samples > d.max_samples:
            raise ConfigError("init_samples", d.init_samples, f"at most max_samples={d.max_samples}")
        for key in ("axe_abs_limit", "axe_rel_limit"):
            if getattr(d, key) is not None and d.axe_rule != "original":
                raise ConfigError(key, getattr(d, key), "unset unless axe_rule='original' (ours uses axe_tol)")
        cls._validate_cache(cfg)
        if t.n_rollouts > 1 and t.val_temp == 0:
            raise ConfigError("n_rollouts", t.n_rollouts, "1 with greedy decoding (set val_temp > 0 to vote)")
        if d.dataset_path:  # a folder of make_arithmetic.py: its splits and columns
            check_dataset_folder(
                "dataset_path", d.dataset_path, ("train", "validation"), ("problem", "solution", "answer")
            )
            try:
                written_by = read_card_params(d.dataset_path).get("solver", "sorted")  # folders before #16: sorted
            except ValueError:  # not written by make_arithmetic.py: its solutions are what they are
                written_by = d.solver
            if written_by != d.solver:
                raise ConfigError(
                    "solver", d.solver, f"'{written_by}', the solver that wrote dataset_path (or regenerate the data)"
                )
            longest = longest_row(d.dataset_path)
            if longest > cfg.model.max_posencs:
                raise ConfigError(
                    "max_posencs",
                    cfg.model.max_posencs,
                    f"at least {longest}: the longest row of dataset_path has {longest} tokens (with BOS, EOS and "
                    "the blotch token)",
                )
        else:
            try:
                params = problem_params(d)
                wider = ood_params(params, d.ood_max_num, d.ood_max_ents)
            except ValueError as e:
                raise ConfigError("max_num", d.max_num, str(e)) from None
            size = problem_space_size(params)
            if small_space(params, cache_cap(d)):  # enumerated and split as the original: counts may shrink
                try:
                    small_space_counts(params, n_train(d), d.val_samples)
                except ValueError as e:
                    raise ConfigError("max_num", d.max_num, str(e)) from None
            elif size is not None and size < n_train(d) + d.val_samples:
                raise ConfigError(
                    "init_samples",
                    n_train(d),
                    f"at most {size - d.val_samples}: the problem space "
                    f"holds {size} problems and val_samples={d.val_samples} of them are held out",
                )
            if d.ood_samples and wider.max_num <= max(d.max_num, d.max_mult_num) and wider.max_ents <= d.max_ents:
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
            raise ConfigError(
                "dataloader_persistent_workers",
                True,
                "false with the data cache (persistent workers keep a stale copy of the rows)",
            )
        if d.star_rationalize and not d.star_loops:
            raise ConfigError("star_rationalize", True, "false unless star_loops > 0")
        grows = d.star_loops or (d.aug_loops and not d.in_place)
        cap = cache_cap(d)
        if grows and cap <= n_train(d) and d.cache_full_policy == "drop_new":
            key, value = ("star_loops", d.star_loops) if d.star_loops else ("in_place", d.in_place)
            raise ConfigError(
                key,
                value,
                f"a cache with room to grow: max_samples={cap} equals init_samples; "
                "raise max_samples or set cache_full_policy='replace_oldest'",
            )
        if d.last_aug_epoch is not None and d.last_aug_epoch < max(1, d.pre_epochs):
            raise ConfigError(
                "last_aug_epoch",
                d.last_aug_epoch,
                f"at least max(1, pre_epochs) = {max(1, d.pre_epochs)} (else no round ever runs)",
            )
        if manipulations_on(d) and d.aug_mod < 0 and t.logging_strategy != "steps":
            raise ConfigError(
                "aug_mod",
                d.aug_mod,
                "non-negative unless logging_strategy='steps' (the plateau detector reads the logged training loss)",
            )

    # ----- data -----
    def dataset_dir(self) -> Path:
        d = self.cfg.data
        return Path(d.dataset_path) if d.dataset_path else Path(self.cfg.run.save_root) / "data" / dataset_name(d)

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
                        max_samples=cache_cap(d),
                    )
            if small_space(problem_params(d), cache_cap(d)):
                train, val = small_space_counts(problem_params(d), n_train(d), d.val_samples)
                logger.warning(
                    f"small problem space: every problem enumerated and split as the original does "
                    f"({train} train, {val} validation; max_samples={cache_cap(d)})"
                )
        raw = load_dataset(str(path))
        self.tokenizer = tok = arith_tokenizer()

        def encode(batch: dict) -> dict:
            rows = encode_rows(tok, [f"{p}={s}" for p, s in zip(batch["problem"], batch["solution"])])
            return {"input_ids": [r.tolist() for r in rows]}

        with args.main_process_first(desc="tokenise"):
            data = raw.map(encode, batched=True, batch_size=10_000, desc="tokenise")
        longest = max(max(len(r) for r in data[s]["input_ids"]) for s in data) + 1  # + blotch token
        if longest > self.cfg.model.max_posencs:  # generated data (a given dataset_path is checked by validate)
            raise ConfigError(
                "max_posencs",
                self.cfg.model.max_posencs,
                f"at least {longest}: the longest row of the generated data has {longest} tokens",
            )
        return data

    # ----- model and trainer -----
    def build_model(self) -> BlotchModel:
        config = model_config_of(self.cfg, self.tokenizer)
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
            pack=d.pack_rows and getattr(model, "supports_packed_segments", False),
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
        cache = DataCache.from_dataset(self.tokenizer, data["train"], n_train(d), cache_cap(d), d.cache_full_policy)
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

    def cache_callbacks(self, trainer: BlotchTrainer, cache: DataCache, model: BlotchModel, data: DatasetDict) -> list:
        """The schedule, the manipulations the config turns on (STaR, augmentation, axing,
        internalization, in this order) and the per-epoch history."""
        d, t = self.cfg.data, self.cfg.training
        ctx = CacheContext(
            cache,
            trainer,
            self.tokenizer,
            self.cfg.run_dir,
            self.bootstrap_level(model),
            d.manip_batch_size or t.per_device_eval_batch_size,
            model.config.max_posencs,
        )
        schedule = ManipulationSchedule(
            cache, d.pre_epochs, d.aug_mod, d.min_aug_gap, d.plateau_patience, d.plateau_tol, d.last_aug_epoch
        )
        out: list = [schedule]
        if d.star_loops:
            exclude = set(data["train"]["problem"]) | set(data["validation"]["problem"])
            out.append(
                StarCallback(ctx, schedule, problem_params(d), exclude, d.star_loops, d.aug_temp, d.star_rationalize)
            )
        if d.aug_loops:
            out.append(AugmentCallback(ctx, schedule, d.aug_loops, d.aug_temp, d.in_place))
        if d.axe_loops:
            out.append(
                AxeCallback(
                    ctx,
                    schedule,
                    d.axe_loops,
                    d.axe_tol,
                    d.abs_axe_tol,
                    d.axe_comp_steps,
                    rule=d.axe_rule,
                    abs_limit=d.axe_abs_limit,
                    rel_limit=d.axe_rel_limit,
                )
            )
        if d.internalize_steps:
            out.append(InternalizeCallback(ctx, schedule, d.internalize_steps))
        val = data["validation"].select(range(min(len(data["validation"]), d.history_eval_samples)))
        out.append(CacheHistoryCallback(ctx, schedule, list(val["problem"]), list(val["answer"])))
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
        total = blotch_eval.sweep_size(model, splits)
        with progress_bar(desc="final generation eval", total=total, unit="problem", args=t) as bar:
            rows = blotch_eval.sweep(
                model,
                self.tokenizer,
                splits,
                t.val_temp,
                t.n_rollouts,
                t.per_device_eval_batch_size,
                t.max_new_tokens,
                bar,
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
        from hf_experiments.blotch.self_training.history import write_history

        cache = trainer.data_cache
        history = list(cache.ledger.history)
        epochs = len(cache.ledger.epoch_starts)
        if not history or history[-1]["epoch"] != epochs:
            history.append(
                {
                    "epoch": epochs,
                    "step": trainer.state.global_step,
                    "rows": len(cache),
                    "mean_solution_length": cache.mean_solution_length(),
                    "val_answer_acc": self.history.answer_acc(),
                }
            )
        if trainer.is_world_process_zero():
            write_history(
                history,
                self.cfg.run_dir / "cache_history.csv",
                self.cfg.run_dir / "cache_history.png",
                title=self.cfg.run.exp_name,
            )
        first, last = history[0], history[-1]
        return {
            "cache_rows": len(cache),
            "cache_mean_solution_length": last["mean_solution_length"],
            "cache_length_reduction": 1 - last["mean_solution_length"] / first["mean_solution_length"],
            "manip_rounds": len(cache.ledger.round_epochs()),
            "manip_seconds": cache.ledger.manip_seconds,
        }
