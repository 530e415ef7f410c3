"""Resolve a `model_string` to a `from_pretrained` argument, building the offline default backbone if needed.

The context-compression experiment needs a frozen causal LM and must run with no network, so `"builtin:tiny-lm"`
is a small GPT-2 (with a byte-level BPE tokenizer) trained on the embedded stdlib corpus
(`hf_experiments/compression/corpus.py`). Its weights ship with the package (`weights/<name>/`, produced by
`python data_scripts/build_backbone.py`), because a backbone that clearly uses its context takes longer to train
than a first run should wait. When the shipped record's recipe differs from `BUILTIN_SPECS` (a changed recipe,
a test's tiny one) the package trains it itself, once per machine and cache dir, and then reuses it. Building is
safe under concurrent callers and leaves the caller's RNG and distributed state alone.

Design: `docs/compression.md`, section "The built-in backbone".
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from .corpus import default_cache_dir

logger = logging.getLogger(__name__)

BUILTIN_PREFIX = "builtin:"
BUILTIN_FORMAT_VERSION = 2  # the "-v2" in the cache folder name; bump when the recipe below changes
INFO_FILE = "builtin_backbone.json"  # build record saved next to the weights: spec, losses, timings
EOS_TOKEN = "<|endoftext|>"  # GPT-2's convention: one token is BOS, EOS (document separator) and default UNK
PAD_TOKEN = "<|pad|>"  # distinct from EOS, so padding masks never hide a real document boundary
# Environment variables of a distributed launch; the builder child process runs without them (single process).
_DIST_ENV = (
    "RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",
    "LOCAL_WORLD_SIZE",
    "GROUP_RANK",
    "ROLE_RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
    "TORCHELASTIC_RUN_ID",
)


@dataclass(frozen=True)
class BuiltinSpec:
    """Recipe of a builtin backbone: architecture, vocabulary size, training budget (deterministic: seed)."""

    n_layer: int = 4
    n_embd: int = 128
    n_head: int = 4
    n_positions: int = 128  # context length; training windows use all of it so every position is trained
    vocab_size: int = 4096
    max_steps: int = 4000
    batch_size: int = 16  # 4000 x 16 x 128 = 8.2M tokens, ~15 passes over the ~0.55M training tokens
    learning_rate: float = 3e-3
    # Tokens between window starts (None: n_positions - 1, no overlap). Overlapping windows start at 4x as many
    # places, so the prediction right after BOS is fit on 4x as many (distinct) first tokens and does not
    # overfit them: it stays an honest no-context (unigram-like) prediction.
    stride: int | None = 31
    max_chars: int | None = None  # corpus prefix used for tokenizer + LM training (None: all ~2 MB)
    val_fraction: float = 0.05  # held-out documents (text_data.hash_split): the compression experiment's
    seed: int = 0


# "tiny-lm": ~1.3M parameters; ~20 min on one CPU core, so its weights ship with the package (`weights/`).
BUILTIN_SPECS: dict[str, BuiltinSpec] = {"tiny-lm": BuiltinSpec()}


def _train_tokenizer(docs: list[str], vocab_size: int, max_len: int, progress: bool):
    """A byte-level BPE (GPT-2 style: lossless on any UTF-8 text) trained on `docs` with `tokenizers`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOS_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: nothing is ever unknown
        show_progress=progress,
    )
    tok.train_from_iterator(docs, trainer=trainer, length=len(docs))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        model_max_length=max_len,
        clean_up_tokenization_spaces=False,  # keep decode(encode(text)) == text
    )


def _unigram_loss(train_ids, val_ids, vocab_size: int) -> float:
    """Cross-entropy (nats/token) on validation tokens of an add-one-smoothed unigram fit on train tokens.

    The baseline a trained LM must clearly beat: it knows token frequencies but no context.
    """
    import numpy as np

    counts = np.bincount(np.asarray(train_ids).ravel(), minlength=vocab_size) + 1.0
    logp = np.log(counts / counts.sum())
    targets = np.asarray(val_ids)[:, 1:].ravel()  # every token but each row's first, as for the LM
    return float(-logp[targets].mean())


def _first_token_loss(model, val_ids, batch_size: int) -> float:
    """Mean cross-entropy of the token right after BOS on validation windows (the no-context prediction)."""
    import torch
    import torch.nn.functional as F

    ids = torch.as_tensor(val_ids[:, :2], dtype=torch.long)
    model.eval()
    with torch.no_grad():
        losses = [
            F.cross_entropy(model(input_ids=chunk[:, :1]).logits[:, 0].float(), chunk[:, 1], reduction="sum")
            for chunk in ids.split(max(batch_size, 64))
        ]
    return float(torch.stack(losses).sum() / len(ids))


def build_builtin_backbone(
    out_dir: str | Path,
    *,
    progress: bool = True,
    corpus_cache_dir: str | Path | None = None,
    **overrides,
) -> dict:
    """Train a builtin backbone (tokenizer + GPT-2 LM), save it atomically at `out_dir`; return its record.

    `overrides` replace `BuiltinSpec` fields (n_layer, n_embd, n_head, n_positions, vocab_size, max_steps,
    batch_size, learning_rate, stride, max_chars, val_fraction, seed), e.g. to build a tiny one in seconds for tests.
    Runs in the calling process (it seeds the global RNGs); `resolve_backbone` calls it in a child process.
    The record (also saved as `out_dir/builtin_backbone.json`) holds the spec, the logged training losses,
    the final validation loss and the unigram baseline loss. `out_dir` must not exist yet.
    """
    import numpy as np
    from datasets import Dataset
    from transformers import (
        DataCollatorForLanguageModeling,
        GPT2Config,
        GPT2LMHeadModel,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    from .corpus import embedded_corpus
    from .text_data import hash_split, window_dataset

    unknown = set(overrides) - {f.name for f in dataclasses.fields(BuiltinSpec)}
    if unknown:
        raise ValueError(
            f"overrides {sorted(unknown)} are not BuiltinSpec fields; allowed: "
            f"{[f.name for f in dataclasses.fields(BuiltinSpec)]}"
        )
    spec = dataclasses.replace(BuiltinSpec(), **overrides)
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise ValueError(f"out_dir={str(out_dir)!r} already exists; a builtin backbone is only built into a new folder")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()

    set_seed(spec.seed)
    docs = embedded_corpus(spec.max_chars, cache_dir=corpus_cache_dir)
    # The compression experiment's own document split: its validation text is never trained on here.
    split = hash_split(Dataset.from_dict({"text": docs}), spec.val_fraction)
    tokenizer = _train_tokenizer(split["train"]["text"], spec.vocab_size, spec.n_positions, progress)
    # Every window is BOS + a stretch of the document stream starting anywhere (mostly mid-document), so
    # right after a lone BOS the model learns the marginal token distribution: an honest no-context baseline.
    bos = tokenizer.bos_token_id
    stride = spec.stride or spec.n_positions - 1
    train = window_dataset(split["train"], tokenizer, spec.n_positions, stride=stride, bos_id=bos)
    val = window_dataset(split["validation"], tokenizer, spec.n_positions, stride=spec.n_positions - 1, bos_id=bos)
    if len(train) == 0 or len(val) == 0:
        raise ValueError(
            f"max_chars={spec.max_chars!r} gives {len(train)} train / {len(val)} validation windows of "
            f"{spec.n_positions} tokens; allowed: a corpus size giving at least one of each"
        )

    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=spec.n_positions,
        n_embd=spec.n_embd,
        n_layer=spec.n_layer,
        n_head=spec.n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,  # short budget: no dropout
        activation_function="gelu_pytorch_tanh",  # the fused kernel of GPT-2's tanh GELU (same function)
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = GPT2LMHeadModel(config)

    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp-"))
    try:
        args = TrainingArguments(
            output_dir=str(tmp / "trainer"),
            max_steps=spec.max_steps,
            per_device_train_batch_size=spec.batch_size,
            per_device_eval_batch_size=spec.batch_size,
            learning_rate=spec.learning_rate,
            lr_scheduler_type="cosine",
            warmup_steps=0.05,
            weight_decay=0.01,
            logging_steps=max(1, spec.max_steps // 20),
            logging_first_step=True,
            save_strategy="no",
            eval_strategy="no",
            report_to="none",
            seed=spec.seed,
            data_seed=spec.seed,
            disable_tqdm=not progress,
            dataloader_num_workers=0,
            dataloader_pin_memory=False,
        )
        train, val = train.select_columns(["input_ids"]), val.select_columns(["input_ids"])
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=train,
            eval_dataset=val,
            data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
        )
        trainer.train()
        eval_loss = trainer.evaluate()["eval_loss"]
        train_ids = np.asarray(train["input_ids"])  # (N_train, n_positions)
        val_ids = np.asarray(val["input_ids"])  # (N_val, n_positions)
        first_token_loss = _first_token_loss(model, val_ids, spec.batch_size)
        record = {
            "spec": dataclasses.asdict(spec),
            "format_version": BUILTIN_FORMAT_VERSION,
            "train_losses": [h["loss"] for h in trainer.state.log_history if "loss" in h],
            "eval_loss": eval_loss,
            "unigram_loss": _unigram_loss(train_ids, val_ids, len(tokenizer)),
            "first_token_loss": first_token_loss,  # right after BOS: should be about the unigram loss
            "uniform_loss": math.log(len(tokenizer)),
            "n_train_windows": len(train),
            "n_params": sum(p.numel() for p in model.parameters()),
            "corpus_chars": sum(map(len, docs)),
            "seconds": round(time.time() - t0, 1),
            "python": sys.version.split()[0],
        }
        shutil.rmtree(tmp / "trainer", ignore_errors=True)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / INFO_FILE).write_text(json.dumps(record, indent=2))
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache may be shared
        os.replace(tmp, out_dir)  # atomic: readers see no folder or a complete one
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info(
        "builtin backbone built in %.0fs: eval loss %.3f vs unigram %.3f; saved at %s",
        record["seconds"],
        eval_loss,
        record["unigram_loss"],
        out_dir,
    )
    return record


SHIPPED_DIR = Path(__file__).resolve().parent / "weights"  # package data: weights built by this module


def shipped_dir(name: str) -> Path | None:
    """The packaged folder of `builtin:<name>` when it holds exactly the current recipe, else None."""
    path = SHIPPED_DIR / name
    if not _is_built(path) or not (path / "model.safetensors").is_file():
        return None
    try:
        record = json.loads((path / INFO_FILE).read_text())
    except (OSError, ValueError):
        return None
    spec = dataclasses.asdict(BUILTIN_SPECS[name])
    if record.get("spec") != spec or record.get("format_version") != BUILTIN_FORMAT_VERSION:
        return None
    return path


def builtin_dir(name: str, cache_dir: str | Path | None = None) -> Path:
    """Where `builtin:<name>` is cached: `<cache_dir or default_cache_dir()>/backbones/<name>-v<version>`."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return root / "backbones" / f"{name}-v{BUILTIN_FORMAT_VERSION}"


def _is_built(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / INFO_FILE).is_file()


def _build_in_child(name: str, out_dir: Path, spec: BuiltinSpec, progress: bool, corpus_cache_dir: Path) -> None:
    """Run `build_builtin_backbone` in a fresh single-process Python (see the module docstring for why)."""
    env = {k: v for k, v in os.environ.items() if k not in _DIST_ENV and not k.startswith("ACCELERATE_")}
    pkg_parent = str(Path(__file__).resolve().parent.parent)  # so `-m hf_experiments...` imports this very package
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_parent, env.get("PYTHONPATH")) if p)
    payload = json.dumps(
        {
            "out_dir": str(out_dir),
            "spec": dataclasses.asdict(spec),
            "progress": progress,
            "corpus_cache_dir": str(corpus_cache_dir),
        }
    )
    proc = subprocess.run([sys.executable, "-m", "hf_experiments.compression.backbones", payload], env=env)
    if proc.returncode != 0 or not _is_built(out_dir):
        raise RuntimeError(
            f"building builtin backbone {name!r} into {out_dir} failed (exit code {proc.returncode}); "
            "see the output above"
        )


def _resolve_builtin(name: str, cache_dir: str | Path | None, progress: bool) -> str:
    if name not in BUILTIN_SPECS:
        raise ValueError(
            f"model_string={BUILTIN_PREFIX + name!r} is unknown; allowed builtins: "
            f"{[BUILTIN_PREFIX + n for n in BUILTIN_SPECS]}"
        )
    shipped = shipped_dir(name)
    if shipped is not None:
        logger.info("using builtin backbone %r shipped with the package at %s", name, shipped)
        return str(shipped)
    out_dir = builtin_dir(name, cache_dir)
    if _is_built(out_dir):
        logger.info("using builtin backbone %r cached at %s", name, out_dir)
        return str(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(out_dir) + ".lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        logger.warning("another process is building builtin backbone %r at %s; waiting for it", name, out_dir)
        lock.acquire()
    try:
        if not _is_built(out_dir):  # the process we waited for may have built it
            if out_dir.exists():  # not built but present: left by a foreign process; never ours (atomic rename)
                raise RuntimeError(f"{out_dir} exists but is not a complete builtin backbone; delete it and retry")
            for stale in out_dir.parent.glob(f".{out_dir.name}.tmp-*"):  # from a killed build (we hold the lock)
                shutil.rmtree(stale, ignore_errors=True)
            logger.warning(
                "building builtin backbone %r (first use with this cache: trains a tokenizer and a "
                "small GPT-2 on the embedded corpus, a few minutes on CPU); caching at %s",
                name,
                out_dir,
            )
            _build_in_child(name, out_dir, BUILTIN_SPECS[name], progress, out_dir.parent.parent)
    finally:
        lock.release()
    return str(out_dir)


def _in_local_hub_cache(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except ValueError:  # not a valid repo id
        return False


def resolve_backbone(model_string: str, cache_dir: str | None = None, progress: bool = True) -> str:
    """Turn `model_string` into a `from_pretrained` argument: a local folder or a Hub id.

    "builtin:<name>" (see BUILTIN_SPECS): the weights shipped with the package when they match the recipe,
    else its cached folder, built first if missing (once, under a file lock).
    An existing local path: returned as an absolute path. Anything else is a Hub id, returned unchanged;
    when the Hub is offline (HF_HUB_OFFLINE=1) and the id is not in the local HF cache: a ConnectionError.
    `cache_dir` defaults to `$HF_EXPERIMENTS_CACHE` or `~/.cache/hf_experiments`.
    """
    from .text_data import hub_offline

    if not isinstance(model_string, str) or not model_string.strip():
        raise ValueError(
            f"model_string={model_string!r} is invalid; allowed: 'builtin:<name>', a local path "
            "or a Hugging Face Hub id"
        )
    if model_string.startswith(BUILTIN_PREFIX):
        return _resolve_builtin(model_string[len(BUILTIN_PREFIX) :], cache_dir, progress)
    path = Path(model_string).expanduser()
    if path.exists():
        return str(path.resolve())
    if model_string.startswith(("/", "./", "../", "~")):
        raise ValueError(f"model_string={model_string!r} looks like a local path but does not exist")
    if hub_offline() and not _in_local_hub_cache(model_string):
        raise ConnectionError(
            f"model_string={model_string!r} is a Hugging Face Hub id but the Hub is unreachable "
            "(HF_HUB_OFFLINE=1 or no network) and it is not in the local Hugging Face cache; "
            "use model_string='builtin:tiny-lm' or a local path"
        )
    return model_string


def _main(payload: str) -> None:
    """Child-process entry of `_build_in_child`: build one backbone from a JSON payload."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    job = json.loads(payload)
    build_builtin_backbone(
        job["out_dir"], progress=job["progress"], corpus_cache_dir=job["corpus_cache_dir"], **job["spec"]
    )


if __name__ == "__main__":
    _main(sys.argv[1])
