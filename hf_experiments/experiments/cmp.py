"""Context compression ("Leveraging LLMs for Context Compression"): `n_cmps` trained vectors stand in for the
first `cmp_len` tokens of a window while a causal LM predicts the next `seq_len`.

The default backbone `builtin:tiny-lm` is a small GPT-2 that the package trains once on its embedded offline
corpus and caches (`hf_experiments/backbones.py`), so the main job runs on a fresh machine with no network.
A hub id (`gpt2`, `bigscience/bloomz-560m`) with `dataset: openwebtext` reproduces the original setting.
Final evaluation: low / high / pred losses and accuracies, the share of the low->high gap recovered,
free-running continuations, reconstruction metrics for the remember task, and `cmp_low_pred_high.png`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from datasets import DatasetDict
from transformers import AutoModelForCausalLM, AutoTokenizer

from ..backbones import resolve_backbone
from ..compression_trainer import CompressionTrainer
from ..config import ConfigError, RunConfig, bounded, prob
from ..data.text import load_text_dataset, window_dataset
from ..metrics.compression_eval import evaluate_compression, plot_low_pred_high
from ..models.compression import CompressionConfig, CompressionModel
from ..registry import Experiment, register
from ..runner import load_init_weights


@dataclass
class CmpModelArguments:
    """Backbone, compression and what trains (seed names)."""

    model_string: str = field(
        default="builtin:tiny-lm",
        metadata={"help": "Backbone causal LM: hub id (gpt2, bigscience/bloomz-560m), local path, or builtin:tiny-lm "
                  "(trained here once on the embedded corpus, ~3 min on 2 CPU cores, then cached)."},
    )
    n_cmps: int = bounded(1, "Compression vectors per context.", lo=1)
    cmp_layer: str = field(default="half", metadata={"help": "Layer of the compressed states: an index "
                                                     "(-1 = last) or 'half'."})
    cmp_len: int = bounded(10, "Context tokens compressed.", lo=1)
    seq_len: int = bounded(20, "Tokens predicted after the compressed context.", lo=0)
    rmb_task: bool = field(default=False, metadata={"help": "Also reconstruct the context (autoencoding)."})
    rmb_only: bool = field(default=False, metadata={"help": "Train only the reconstruction."})
    ae_ratio: float = prob(0.5, "Weight of the remember loss when rmb_task (ICAE-style mixing).")
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
class CmpDataArguments:
    """Which text, and how it is cut into windows."""

    dataset: Literal["embedded", "openwebtext", "glue"] = field(
        default="embedded", metadata={"help": "embedded = offline corpus shipped with Python; hub datasets need "
                                      "the network."}
    )
    data_files: list[str] | None = field(
        default=None, metadata={"help": "Local .txt/.parquet/.json/.jsonl/.csv files (override `dataset`)."}
    )
    text_column: str = field(default="text", metadata={"help": "Text field of structured data_files."})
    seq_overlap: int = bounded(0, "Tokens shared by consecutive windows.", lo=0)
    val_fraction: float = prob(0.05, "Documents held out for validation when the data has no split.")
    max_train_windows: int | None = bounded(None, "Use at most N training windows.", lo=1)
    max_val_windows: int | None = bounded(512, "Evaluate on at most N validation windows.", lo=1)
    free_run_tokens: int | None = bounded(None, "Greedy tokens per free-running evaluation (None: seq_len - 1).",
                                          lo=1)
    num_proc: int | None = bounded(None, "Processes for tokenisation (datasets.map num_proc).", lo=1)


def parse_cmp_layer(value: str) -> int | str:
    if value == "half":
        return value
    try:
        return int(value)
    except ValueError:
        raise ConfigError("cmp_layer", value, "an integer layer index (-1 = last) or 'half'") from None


@register
class CompressionExperiment(Experiment):
    """Train compression tokens (and optionally LoRA or the backbone) over a causal LM."""

    name = "cmp"
    model_args = CmpModelArguments
    data_args = CmpDataArguments

    @classmethod
    def validate(cls, cfg: RunConfig) -> None:
        m, d = cfg.model, cfg.data
        parse_cmp_layer(m.cmp_layer)
        window = m.cmp_len + m.seq_len
        if d.seq_overlap >= window:
            raise ConfigError("seq_overlap", d.seq_overlap, f"less than cmp_len + seq_len = {window}")
        if m.seq_len < 1 and not m.rmb_only:
            raise ConfigError("seq_len", m.seq_len, "at least 1 unless rmb_only")
        if m.pooling == "mean" and m.n_cmps > m.cmp_len:
            raise ConfigError("n_cmps", m.n_cmps, f"at most cmp_len={m.cmp_len} with pooling='mean'")
        for f in d.data_files or []:
            if not Path(f).is_file():
                raise ConfigError("data_files", f, "existing files (not found)")
        if d.dataset != "embedded" and not d.data_files:
            from ..data.text import hub_offline

            if hub_offline():
                raise ConfigError("dataset", d.dataset, "needs the Hugging Face Hub, which is offline "
                                  "(HF_HUB_OFFLINE=1); use dataset='embedded' or data_files=[...]")
        if not m.model_string.startswith("builtin:") and not Path(m.model_string).exists():
            from ..data.text import hub_offline

            if hub_offline():
                try:
                    resolve_backbone(m.model_string, progress=False)
                except (ConnectionError, ValueError) as e:
                    raise ConfigError("model_string", m.model_string, str(e).split(";")[-1].strip()) from None

    def _backbone_path(self) -> str:
        args = self.cfg.training
        with args.main_process_first(desc="backbone"):
            return resolve_backbone(self.cfg.model.model_string)

    def build_data(self) -> DatasetDict:
        m, d, args = self.cfg.model, self.cfg.data, self.cfg.training
        self.backbone_path = self._backbone_path()
        self.tokenizer = AutoTokenizer.from_pretrained(self.backbone_path)
        window = m.cmp_len + m.seq_len
        cache = Path(self.cfg.run.save_root) / "data" / "windows"
        with args.main_process_first(desc="tokenise and window"):
            raw = load_text_dataset(d.dataset, d.data_files, d.text_column, d.val_fraction, seed=0)
            out = DatasetDict({split: window_dataset(ds, self.tokenizer, window, stride=window - d.seq_overlap,
                                                     num_proc=d.num_proc, cache_dir=str(cache))
                               for split, ds in raw.items()})
        for split, limit in (("train", d.max_train_windows), ("validation", d.max_val_windows)):
            if limit is not None and len(out[split]) > limit:
                out[split] = out[split].select(range(limit))
        if len(out["train"]) == 0 or len(out["validation"]) == 0:
            raise ValueError(f"no windows of {window} tokens: the corpus is too small for cmp_len + seq_len")
        return out

    def build_model(self) -> CompressionModel:
        m = self.cfg.model
        dtype = getattr(torch, self.cfg.run.torch_dtype)
        backbone = AutoModelForCausalLM.from_pretrained(self.backbone_path, dtype=dtype)
        config = CompressionConfig(
            model_string=self.backbone_path if m.model_string.startswith("builtin:") else m.model_string,
            n_cmps=m.n_cmps, cmp_layer=parse_cmp_layer(m.cmp_layer), cmp_len=m.cmp_len, seq_len=m.seq_len,
            rmb_task=m.rmb_task, rmb_only=m.rmb_only, ae_ratio=m.ae_ratio, kl_weight=m.kl_weight,
            proj_cmps=m.proj_cmps, pooling=m.pooling, train_mode=m.train_mode, lora_r=m.lora_r,
            lora_alpha=m.lora_alpha, lora_dropout=m.lora_dropout, lora_target_modules=m.lora_target_modules,
            save_backbone=m.save_backbone,
        )
        torch.manual_seed(self.cfg.training.seed)
        model = CompressionModel(config, backbone=backbone)
        if self.cfg.run.init_checkpt:
            load_init_weights(model, self.cfg.run.init_checkpt)
        return model

    def build_trainer(self, model: CompressionModel, data: DatasetDict) -> CompressionTrainer:
        # Batches carry no labels: the model computes its own loss; never gather (B, seq_len, V) eval logits.
        self.cfg.training.prediction_loss_only = True
        return CompressionTrainer(model=model, args=self.cfg.training, train_dataset=data["train"],
                                  eval_dataset=data["validation"], processing_class=self.tokenizer)

    def evaluate(self, trainer: CompressionTrainer, data: DatasetDict) -> dict[str, float]:
        metrics = trainer.evaluate()
        args = self.cfg.training
        extra = evaluate_compression(
            trainer.model, data["validation"], batch_size=args.per_device_eval_batch_size,
            max_batches=args.max_eval_batches,
            free_run_tokens=self.cfg.data.free_run_tokens or max(1, self.cfg.model.seq_len - 1),
            tokenizer=self.tokenizer,
        )
        metrics.update(extra)
        if trainer.is_world_process_zero() and "low_loss" in extra:
            plot_low_pred_high(extra, self.cfg.run_dir / "cmp_low_pred_high.png")
        return metrics
