"""Context compression ("Leveraging LLMs for Context Compression"): `n_cmps` trained vectors stand in for the
first `cmp_len` tokens of a window while a causal LM predicts the next `seq_len`.

The default backbone `builtin:tiny-lm` is a small GPT-2 that the package trains once on its embedded offline
corpus and caches (`hf_experiments/compression/backbones.py`), so the main job runs on a fresh machine with no network.
A hub id (`gpt2`, `bigscience/bloomz-560m`) with `dataset: openwebtext` reproduces the original setting.
Final evaluation: low / high / pred losses and accuracies, the share of the low->high gap recovered,
free-running continuations, reconstruction metrics for the remember task, and `cmp_low_pred_high.png`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from datasets import DatasetDict
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from hf_experiments.core.config import ConfigError, RunConfig
from hf_experiments.core.experiment import Experiment
from hf_experiments.core.model_helpers import load_init_weights, model_config

from .backbones import resolve_backbone
from .compression_config import (
    CompressionDataArguments,
    CompressionModelArguments,
    parse_cmp_layer,
)
from .compression_trainer import CompressionTrainer
from .configuration_compression import CompressionConfig
from .evaluation import evaluate_compression, plot_low_pred_high
from .modeling_compression import CompressionModel, bundle_backbone
from .text_data import load_text_dataset, window_dataset


def _backbone_positions(model_string: str) -> int | None:
    """The backbone's context length when it can be read without the network (builtin or local), else None."""
    from .backbones import BUILTIN_PREFIX, BUILTIN_SPECS

    if model_string.startswith(BUILTIN_PREFIX):
        spec = BUILTIN_SPECS.get(model_string[len(BUILTIN_PREFIX) :])
        return None if spec is None else spec.n_positions
    path = Path(model_string).expanduser()
    if not (path / "config.json").is_file():
        return None  # a hub id: its config is the hub's (ALiBi models such as Bloom have no limit anyway)
    try:
        config = AutoConfig.from_pretrained(path).get_text_config()
    except (OSError, ValueError):  # unreadable, or a custom architecture: the backbone's own load will say
        return None
    for key in ("n_positions", "max_position_embeddings", "n_ctx"):
        if isinstance(getattr(config, key, None), int):
            return getattr(config, key)
    return None


def _columns(path: Path) -> dict[str, str] | None:
    """Column name -> Arrow type of a structured data file, from its schema or first record (None: unknown)."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return {f.name: str(f.type) for f in pq.read_schema(path)}
        if suffix == ".csv":
            with pacsv.open_csv(path) as reader:
                return {f.name: str(f.type) for f in reader.schema}
        with path.open(encoding="utf-8") as f:  # JSON lines: the first record's keys
            first = json.loads(f.readline())
        return {k: "string" if isinstance(v, str) else type(v).__name__ for k, v in first.items()}
    except (OSError, ValueError, AttributeError, UnicodeDecodeError):  # a whole-file JSON: `datasets` decides
        return None


def check_data_files(data_files: list[str], text_column: str) -> None:
    """`data_files` share one readable suffix, and structured files have `text_column` as a text column."""
    from .text_data import _BUILDERS

    suffixes = {Path(f).suffix.lower() for f in data_files}
    if len({_BUILDERS.get(x) for x in suffixes}) != 1 or not suffixes <= set(_BUILDERS):
        raise ConfigError("data_files", data_files, f"files with one suffix among {sorted(_BUILDERS)}")
    if _BUILDERS[suffixes.pop()] == "text":
        return
    for f in data_files:
        columns = _columns(Path(f))
        if columns is None:
            continue
        if text_column not in columns:
            raise ConfigError(
                "text_column", text_column, f"a column of data_files ({f} has {', '.join(columns) or 'none'})"
            )
        if "string" not in columns[text_column]:
            raise ConfigError(
                "text_column", text_column, f"a text column ({f}: {text_column} holds {columns[text_column]})"
            )


class CompressionExperiment(Experiment):
    """Train compression tokens (and optionally LoRA or the backbone) over a causal LM."""

    name = "cmp"
    model_args = CompressionModelArguments
    data_args = CompressionDataArguments

    @classmethod
    def validate(cls, cfg: RunConfig) -> None:
        m, d = cfg.model, cfg.data
        if parse_cmp_layer(m.cmp_layer) == "output" and m.pooling == "mean":
            allowed = "an integer layer index, 'half' or 'middle' with pooling='mean'"
            raise ConfigError("cmp_layer", m.cmp_layer, allowed)
        model_config(CompressionConfig, m, cmp_layer=parse_cmp_layer(m.cmp_layer))  # the model's own checks
        if m.seq_overlap >= m.cmp_len:
            raise ConfigError("seq_overlap", m.seq_overlap, f"an integer in [0, cmp_len={m.cmp_len})")
        limit = _backbone_positions(m.model_string)
        if limit is not None:
            bos, n_tgt = int(m.prepend_bos), m.seq_len + m.seq_overlap
            # the longest sequence the backbone reads: high, compression, prediction or remember
            longest = max(
                bos + m.cmp_len + n_tgt - 1,
                bos + m.cmp_len + m.n_cmps,
                bos + m.n_cmps + n_tgt,
                bos + m.n_cmps + m.cmp_len,
            )
            if longest > limit:
                raise ConfigError(
                    "seq_len",
                    m.seq_len,
                    f"a length whose longest backbone input fits the backbone's {limit} positions (here "
                    f"{longest} tokens from cmp_len={m.cmp_len}, seq_len={m.seq_len}, seq_overlap={m.seq_overlap}, "
                    f"n_cmps={m.n_cmps} and the BOS)",
                )
        for f in d.data_files or []:
            if not Path(f).is_file():
                raise ConfigError("data_files", f, "existing files (not found)")
        if d.data_files:
            check_data_files(d.data_files, d.text_column)
        if d.dataset != "embedded" and not d.data_files:
            from .text_data import hub_offline

            if hub_offline():
                raise ConfigError(
                    "dataset",
                    d.dataset,
                    "needs the Hugging Face Hub, which is offline "
                    "(HF_HUB_OFFLINE=1); use dataset='embedded' or data_files=[...]",
                )
        if not m.model_string.startswith("builtin:") and not Path(m.model_string).exists():
            from .text_data import hub_offline

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
            out = DatasetDict(
                {
                    split: window_dataset(
                        ds,
                        self.tokenizer,
                        window,
                        stride=d.window_stride or window,
                        num_proc=d.num_proc,
                        cache_dir=str(cache),
                    )
                    for split, ds in raw.items()
                }
            )
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
        model_string = self.backbone_path if m.model_string.startswith("builtin:") else m.model_string
        config = model_config(CompressionConfig, m, model_string=model_string, cmp_layer=parse_cmp_layer(m.cmp_layer))
        torch.manual_seed(self.cfg.training.seed)
        model = CompressionModel(config, backbone=backbone)
        if self.cfg.run.init_checkpt:
            load_init_weights(model, self.cfg.run.init_checkpt)
        return model

    def build_trainer(self, model: CompressionModel, data: DatasetDict) -> CompressionTrainer:
        # Batches carry no labels: the model computes its own loss; never gather (B, seq_len, V) eval logits.
        self.cfg.training.prediction_loss_only = True
        return CompressionTrainer(
            model=model,
            args=self.cfg.training,
            train_dataset=data["train"],
            eval_dataset=data["validation"],
            processing_class=self.tokenizer,
        )

    def evaluate(self, trainer: CompressionTrainer, data: DatasetDict) -> dict[str, float]:
        metrics = trainer.evaluate()
        args = self.cfg.training
        extra = evaluate_compression(
            trainer.model,
            data["validation"],
            batch_size=args.per_device_eval_batch_size,
            max_batches=args.max_eval_batches,
            free_run_tokens=self.cfg.data.free_run_tokens or max(1, self.cfg.model.seq_len - 1),
            tokenizer=self.tokenizer,
        )
        metrics.update(extra)
        if trainer.is_world_process_zero() and "low_loss" in extra:
            plot_low_pred_high(extra, self.cfg.run_dir / "cmp_low_pred_high.png")  # + cmp_low_pred_high.csv
        return metrics

    def complete_model_dir(self, model_dir: Path) -> str | None:
        """Make the saved folder self-contained: a local backbone (the built-in one, a local path) is copied
        into `model/backbone/` and the config points there; a hub backbone stays a hub id."""
        config = CompressionConfig.from_pretrained(model_dir)
        if config.saves_backbone:
            return "The backbone's weights are in this folder (`save_backbone` / `train_mode: full`)."
        source = Path(self.backbone_path)
        if not source.is_dir():
            return (
                f"The backbone is the Hugging Face Hub model `{config.model_string}`: loading this folder "
                "downloads it (or reads it from the local Hub cache)."
            )
        bundle_backbone(source, model_dir)
        return (
            f"The backbone (`{self.cfg.model.model_string}`) is saved in `backbone/` inside this folder: "
            "`AutoModel.from_pretrained(<this folder>, trust_remote_code=True)` loads it offline, without "
            "`hf_experiments` (with the package imported, `trust_remote_code` is not needed)."
        )
