"""Arrows of time (§3 of "Arrows of Time for Large Language Models"): a GPT trained on prime-product or
GF(2) linear-language lines, read forward, backward, or in any fixed order of character positions.

The run generates its dataset on first use (`<save_root>/data/<name>/`, shared by the forward and backward
runs of the same data) unless `dataset_path` names an existing generated folder, or an original `.h5` token
file (its lines are written once into `<save_root>/data/h5_<file>_<digest>/`; `h5_tokens.original_lines`). The
final evaluation adds the per-position loss (`loss_per_position.json` and `.png`). `trainers/arrows_compare.py`
turns a forward and a backward run into the relative gap (backward - forward) / forward;
`trainers/arrows_sparsity_sweep.py` and `trainers/arrows_sparse_update.py` run the paper's two
experiments (docs/arrows_of_time.md).
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import torch
from datasets import DatasetDict, load_dataset
from transformers.utils import logging

from hf_experiments.core.config import ConfigError, RunConfig
from hf_experiments.core.dataset_io import check_dataset_folder, read_card_params
from hf_experiments.core.experiment import Experiment
from hf_experiments.core.model_helpers import check_trainable, load_init_weights, model_config
from hf_experiments.core.tokenization_char import CharTokenizer
from hf_experiments.core.trainer import ExperimentTrainer

from .arrows_config import ArrowsDataArguments, ArrowsModelArguments
from .configuration_gpt import GPTConfig, gpt_preset
from .h5_tokens import LINEAR_VOCAB, load_vocab, original_lines, stream_line_width
from .modeling_gpt import GPTForCausalLM

ALPHABETS = {"primes": "0123456789 *=", "linear": "01_"}
logger = logging.get_logger(__name__)


def model_config_of(cfg: RunConfig, tok: CharTokenizer) -> GPTConfig:
    """The GPT's config: the preset's sizes, overridden by every model argument that is set."""
    m = cfg.model
    sizes = {
        **gpt_preset(m.model_preset),
        **{k: v for k, v in dataclasses.asdict(m).items() if k != "model_preset" and v is not None},
    }
    return model_config(
        GPTConfig,
        attn_length=line_length(cfg.data) + 1,
        vocab_size=len(tok),
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        **sizes,
    )


def is_h5(path: str | Path) -> bool:
    """Whether `path` is a file meant as an original arrows-of-time `.h5` token file."""
    return Path(path).is_file() and Path(path).suffix.lower() in (".h5", ".hdf5")


def line_template(data: ArrowsDataArguments) -> list[str]:
    """The characters allowed at each position of a line of this config (its task and size)."""
    if data.task == "linear":
        bits = ["01"] * matrix_size(data)
        return [*bits, *["_"] * len("_______"), *bits]
    d, digits = data.max_n_digits, ["0123456789"]
    return [*digits * d, " ", "*", " ", *digits * d, " ", " ", " ", "=", " ", " ", " ", *digits * (2 * d)]


def layout_mask(data: ArrowsDataArguments, lines: np.ndarray) -> np.ndarray:
    """True for the lines (an `S<L>` array) that fit this config's line layout, position by position."""
    template = line_template(data)
    allowed = np.zeros((len(template), 256), dtype=bool)  # (L, byte)
    for pos, chars in enumerate(template):
        allowed[pos, np.frombuffer(chars.encode(), dtype=np.uint8)] = True
    if lines.dtype.itemsize != len(template):
        return np.zeros(len(lines), dtype=bool)
    chars = np.ascontiguousarray(lines).view(np.uint8).reshape(len(lines), len(template))  # (N, L)
    return allowed[np.arange(len(template)), chars].all(axis=1)


def h5_vocabulary(data: ArrowsDataArguments) -> dict[str, int]:
    """The dictionary an `.h5` dataset_path was tokenized with: `h5_vocab`, else the original's linear one."""
    if data.h5_vocab:
        try:
            return load_vocab(data.h5_vocab)
        except ValueError as e:
            raise ConfigError("h5_vocab", data.h5_vocab, f"the original tokenizer's saved dictionary ({e})") from None
    if data.task == "primes":
        raise ConfigError(
            "h5_vocab",
            None,
            "required with a primes .h5 dataset_path: the original learned those ids from the text and saved "
            "them as tokenizers/<name>.pt",
        )
    return dict(LINEAR_VOCAB)


def _size_of_width(task: str, width: int) -> str:
    """What a line width means for a task, for error messages."""
    if task == "linear":
        return f"matrix_n={(width - 7) // 2}" if width > 7 and (width - 7) % 2 == 0 else "no linear-language size"
    return f"max_n_digits={(width - 10) // 4}" if width > 10 and (width - 10) % 4 == 0 else "no prime-product size"


def check_h5(data: ArrowsDataArguments) -> None:
    """An `.h5` dataset_path holds lines of this config: its token stream decodes (with `h5_vocab`) to lines of
    the config's task and length, more of them than `n_val`. Reads the first 64K tokens only."""
    vocab, n, path = h5_vocabulary(data), line_length(data), data.dataset_path
    hint = (
        ""
        if data.h5_vocab
        else "; without h5_vocab the original's linear-language dictionary is assumed (a primes file needs "
        "h5_vocab=tokenizers/<name>.pt)"
    )
    try:
        width, total, _ = stream_line_width(path, vocab)
        lines, _ = original_lines(path, vocab, n, max_tokens=1 << 16)
    except (OSError, ValueError) as e:
        why = " ".join(str(e).split())[:160]
        raise ConfigError("dataset_path", path, f"an original arrows-of-time .h5 token file ({why})") from None
    if width != n:
        raise ConfigError(
            "dataset_path",
            path,
            f"lines of {n} characters for this config ({_size_of_width(data.task, n)}); the file's lines have "
            f"{width} ({_size_of_width(data.task, width)}){hint}",
        )
    ok = layout_mask(data, lines)
    if not ok.any():
        first = lines[0].decode("ascii", "replace") if len(lines) else ""
        raise ConfigError(
            "dataset_path",
            path,
            f"{data.task} lines for this config; the file's first line decodes to {first!r} (another task, or "
            f"h5_vocab is not the dictionary it was written with){hint}",
        )
    if data.n_val >= total // (n + 1):
        raise ConfigError(
            "n_val", data.n_val, f"fewer than the ~{total // (n + 1)} lines of {path} (the last n_val validate)"
        )


def check_lines(data: ArrowsDataArguments) -> None:
    """A given `dataset_path` holds `text` lines of this config's task: its length and its alphabet."""
    import pyarrow.parquet as pq

    if is_h5(data.dataset_path):
        return check_h5(data)
    if Path(data.dataset_path).is_file():
        raise ConfigError(
            "dataset_path",
            data.dataset_path,
            "a dataset folder written by data_scripts/, or an original arrows-of-time .h5 token file",
        )
    files = check_dataset_folder("dataset_path", data.dataset_path, ("train", "validation"), ("text",))
    task = read_card_params(data.dataset_path).get("task", data.task)
    if task != data.task:
        raise ConfigError("dataset_path", data.dataset_path, f"lines of task {data.task!r} (it holds {task!r})")
    n, alphabet = line_length(data), set(ALPHABETS[task])
    for split, found in files.items():
        first = pq.ParquetFile(found[0]).read_row_group(0, columns=["text"])["text"].to_pylist()[:1000]
        bad = next((line for line in first if len(line) != n or not set(line) <= alphabet), None)
        if bad is not None:
            raise ConfigError(
                "dataset_path",
                data.dataset_path,
                f"lines of {n} characters from {ALPHABETS[task]!r} for this config; its {split!r} split has {bad!r}",
            )


def matrix_size(data: ArrowsDataArguments) -> int:
    """n of a linear run: the saved matrix's size when `matrix_path` is set (matrix_n is then ignored)."""
    if data.matrix_path:
        return int(np.load(data.matrix_path, mmap_mode="r").shape[0])
    return data.matrix_n


def line_length(data: ArrowsDataArguments) -> int:
    from .primes import line_width

    return line_width(data.max_n_digits) if data.task == "primes" else 2 * matrix_size(data) + len("_______")


def position_order(data: ArrowsDataArguments) -> np.ndarray:
    """Order in which the line's characters are fed: identity, reversed, or the given permutation."""
    n = line_length(data)
    if data.permutation is not None:
        return np.asarray(data.permutation, dtype=np.int64)
    return np.arange(n)[::-1].copy() if data.direction == "backward" else np.arange(n)


def generate_dataset(data: ArrowsDataArguments, out_dir: Path) -> Path:
    """Generate the lines described by `data` into a dataset folder (the data scripts' library path)."""
    from hf_experiments.arrows import linear_language as ll
    from hf_experiments.core.dataset_io import write_dataset

    from .primes import format_prime_lines, sample_prime_pairs

    n_train = data.n_pairs if data.task == "primes" else data.num_vectors
    # Train and validation come from independent streams ([seed, 0] and [seed, 1]); with val_fraction > 0
    # they also draw from disjoint parts of the input space (a fixed hash partition), so validation
    # measures the rule rather than memorised lines.
    held = {"heldout_fraction": data.val_fraction}
    if data.task == "primes":

        def lines_for(count: int, seed: list[int], heldout: bool) -> np.ndarray:
            p, q = sample_prime_pairs(
                count,
                data.min_n_digits,
                data.max_n_digits,
                np.random.default_rng(seed),
                **held,
                heldout=heldout and data.val_fraction > 0,
                pair_order=data.pair_order,
            )
            return format_prime_lines(p, q, data.max_n_digits, progress=True)

        params = {
            "task": "primes",
            "pair_order": data.pair_order,
            "n_pairs": data.n_pairs,
            "min_n_digits": data.min_n_digits,
            "max_n_digits": data.max_n_digits,
        }
        extra = {}
    else:
        m = load_matrix(data)
        m_inv = ll.gf2_inverse(m)

        def lines_for(count: int, seed: list[int], heldout: bool) -> np.ndarray:
            return ll.generate_linear_lines(
                m,
                count,
                data.perturbation_rate,
                seed=seed,
                **held,
                heldout=heldout and data.val_fraction > 0,
                progress=True,
            )

        params = {
            "task": "linear",
            "matrix": ll.matrix_name(len(m), ll.extra_ones(m), ll.extra_ones(m_inv)),
            "num_vectors": data.num_vectors,
            "perturbation_rate": data.perturbation_rate,
        }
        extra = {"matrix.npy": _npy_bytes(m), "matrix_inv.npy": _npy_bytes(m_inv)}
    params.update(n_val=data.n_val, seed=data.generation_seed, val_fraction=data.val_fraction)
    splits = {
        "train": {"text": lines_for(n_train, [data.generation_seed, 0], False)},
        "validation": {"text": lines_for(data.n_val, [data.generation_seed, 1], True)},
    }
    return write_dataset(out_dir, splits, params, description=f"Arrows-of-time {data.task} lines.", extra_files=extra)


def load_matrix(data: ArrowsDataArguments) -> np.ndarray:
    """M of a linear run: the saved `matrix_path`, or I + matrix_k ones drawn from `generation_seed`."""
    from hf_experiments.arrows import linear_language as ll

    if data.matrix_path:
        try:
            m = np.load(data.matrix_path, allow_pickle=False)
        except (ValueError, OSError, EOFError):
            raise ConfigError(
                "matrix_path",
                data.matrix_path,
                "a square invertible 0/1 matrix saved with numpy (np.save: a .npy file)",
            ) from None
        if (
            not isinstance(m, np.ndarray)
            or m.ndim != 2
            or m.shape[0] != m.shape[1]
            or not np.isin(m, (0, 1)).all()
            or not ll.is_invertible(m)
        ):
            raise ConfigError("matrix_path", data.matrix_path, "a square invertible 0/1 matrix saved with numpy")
        return m.astype(np.uint8)
    return ll.make_sparse_invertible(data.matrix_n, data.matrix_k, np.random.default_rng(data.generation_seed))


def _npy_bytes(a: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def dataset_name(data: ArrowsDataArguments) -> str:
    """Folder name under `<save_root>/data/`: every generating parameter, so different data never collide."""
    held = f"_h{data.val_fraction}" if data.val_fraction > 0 else ""
    if data.task == "primes":
        order = "_random" if data.pair_order == "random" else ""  # the original's order keeps the short name
        return (
            f"primes_{data.min_n_digits}_{data.max_n_digits}_n{data.n_pairs}_v{data.n_val}"
            f"_s{data.generation_seed}{held}{order}"
        )
    if data.matrix_path:  # the content hash keeps equally named matrices from different folders apart
        digest = hashlib.sha1(np.load(data.matrix_path).astype(np.uint8).tobytes()).hexdigest()[:8]
        mat = f"{Path(data.matrix_path).stem}-{digest}"
    else:
        mat = f"n{data.matrix_n}k{data.matrix_k}"
    return f"linear_{mat}_p{data.perturbation_rate}_n{data.num_vectors}_v{data.n_val}_s{data.generation_seed}{held}"


def h5_dataset_name(data: ArrowsDataArguments) -> str:
    """Folder name under `<save_root>/data/` of an `.h5` file's lines: the file (path, size, time) and how it is
    read, so an edited file or another reading gets its own folder."""
    src = Path(data.dataset_path).resolve()
    stat = src.stat()
    key = [str(src), stat.st_size, stat.st_mtime_ns, sorted(h5_vocabulary(data).items()), line_length(data), data.n_val]
    return f"h5_{src.stem}_{hashlib.sha1(repr(key).encode()).hexdigest()[:10]}"


def dataset_folder(data: ArrowsDataArguments, save_root: str | Path) -> Path:
    """Where a run's data lives: `dataset_path`, the lines of an `.h5` dataset_path, or the generated
    `<save_root>/data/<dataset_name>`."""
    if data.dataset_path and is_h5(data.dataset_path):
        return Path(save_root) / "data" / h5_dataset_name(data)
    return Path(data.dataset_path) if data.dataset_path else Path(save_root) / "data" / dataset_name(data)


def convert_h5(data: ArrowsDataArguments, out_dir: Path) -> Path:
    """Write the lines of an original `.h5` file as a dataset folder: the last `n_val` lines validate."""
    from hf_experiments.core.dataset_io import write_dataset

    lines, skipped = original_lines(data.dataset_path, h5_vocabulary(data), line_length(data))
    ok = layout_mask(data, lines)
    skipped += int((~ok).sum())
    lines = lines[ok]
    if len(lines) <= data.n_val:
        raise ValueError(f"{data.dataset_path} has {len(lines)} {data.task} lines; n_val={data.n_val} needs more")
    if skipped:
        logger.warning(
            f"{data.dataset_path}: {skipped} runs of tokens are not lines of this config and were skipped "
            f"({len(lines)} kept; the original tokenizer stripped whitespace at every 10,000-character chunk edge)"
        )
    params = {
        "task": data.task,
        "source": str(Path(data.dataset_path).resolve()),
        "h5_vocab": data.h5_vocab,
        "n_val": data.n_val,
        "skipped_runs": skipped,
    }
    splits = {"train": {"text": lines[: -data.n_val]}, "validation": {"text": lines[-data.n_val :]}}
    description = f"The {data.task} lines of the original arrows-of-time token file {Path(data.dataset_path).name}."
    return write_dataset(out_dir, splits, params, description=description)


def encode_split(lines: list[str], tokenizer: CharTokenizer, order: np.ndarray) -> np.ndarray:
    """Lines -> (N, 1 + L) token ids: BOS, then the characters in `order` (vectorised)."""
    ids = tokenizer.encode_lines(lines)  # (N, 1 + L), BOS first
    return np.concatenate([ids[:, :1], ids[:, 1:][:, order]], axis=1)


@torch.no_grad()
def loss_per_position(model: torch.nn.Module, input_ids: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Mean cross-entropy of each predicted position (position t predicts token t+1), shape (L,)."""
    model.eval()
    total = torch.zeros(input_ids.shape[1] - 1, dtype=torch.float64)
    device = next(model.parameters()).device
    for s in range(0, len(input_ids), batch_size):
        batch = input_ids[s : s + batch_size].to(device)
        logits = model(input_ids=batch).logits[:, :-1]  # (B, T-1, V)
        ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2).float(), batch[:, 1:], reduction="none")
        total += ce.sum(0).double().cpu()  # (T-1,)
    return (total / len(input_ids)).numpy()


class ArrowsExperiment(Experiment):
    """Forward vs backward (or permuted) next-character prediction on synthetic lines."""

    name = "arrows"
    model_args = ArrowsModelArguments
    data_args = ArrowsDataArguments

    @classmethod
    def complete_converted(cls, cfg: dict) -> tuple[dict, list[str]]:
        """For the converter: what the original took from an `.h5` dataset (the task, the line size), unless the
        converted config sets it."""
        path = cfg.get("dataset_path")
        if not isinstance(path, str) or not is_h5(path):
            return {}, []
        try:
            vocab = load_vocab(cfg["h5_vocab"]) if cfg.get("h5_vocab") else LINEAR_VOCAB
            width, _, top = stream_line_width(path, vocab)
        except (OSError, ValueError) as e:
            raise ConfigError("dataset_path", path, f"an original arrows-of-time .h5 token file ({e})") from None
        if not cfg.get("h5_vocab") and top > max(LINEAR_VOCAB.values()):
            raise ConfigError(
                "h5_vocab",
                None,
                f"required: {path} has ids beyond the original's linear-language dictionary (a primes file?); "
                "give the tokenizers/<name>.pt it was written with",
            )
        task = cfg.get("task") or ("primes" if "*" in vocab else "linear")
        out: dict = {} if "task" in cfg else {"task": task}
        if task == "linear" and not {"matrix_n", "matrix_path"} & set(cfg) and width > 7 and (width - 7) % 2 == 0:
            out["matrix_n"] = (width - 7) // 2
        if task == "primes" and "max_n_digits" not in cfg and width > 10 and (width - 10) % 4 == 0:
            out["max_n_digits"] = (width - 10) // 4
        return out, [f"{k}={v!r} from {path} (the original took it from the data)" for k, v in out.items()]

    @classmethod
    def validate(cls, cfg: RunConfig) -> None:
        d = cfg.data
        if d.task == "primes" and d.min_n_digits > d.max_n_digits:
            raise ConfigError("min_n_digits", d.min_n_digits, f"at most max_n_digits={d.max_n_digits}")
        if d.task == "linear" and not d.matrix_path and d.matrix_k > d.matrix_n * (d.matrix_n - 1):
            raise ConfigError("matrix_k", d.matrix_k, f"at most n(n-1)={d.matrix_n * (d.matrix_n - 1)}")
        if d.task == "linear" and d.matrix_path:
            load_matrix(d)  # raises ConfigError for a bad file before anything is written
        if d.permutation is not None and sorted(d.permutation) != list(range(line_length(d))):
            raise ConfigError(
                "permutation",
                d.permutation,
                f"a permutation of 0..{line_length(d) - 1} (one entry per character of a {d.task} line)",
            )
        if d.dataset_path:
            check_lines(d)
        # the model's own checks, its size against this machine, and init_checkpt against it
        check_trainable(
            GPTForCausalLM, model_config_of(cfg, CharTokenizer(characters=ALPHABETS[d.task])), cfg.run.init_checkpt
        )

    def build_data(self) -> DatasetDict:
        d, args = self.cfg.data, self.cfg.training
        path = dataset_folder(d, self.cfg.run.save_root)
        if not d.dataset_path or is_h5(d.dataset_path):
            with args.main_process_first(desc="generate data"):
                if args.process_index == 0 and not path.exists():
                    try:
                        convert_h5(d, path) if d.dataset_path else generate_dataset(d, path)
                    except (OSError, ValueError):
                        # The forward and backward runs of one dataset may start together: if the other
                        # run finished writing it first, use its (identical) folder.
                        if not (path / "README.md").is_file():
                            raise
        raw = load_dataset(str(path))
        task = read_card_params(path).get("task", d.task)
        self.tokenizer = CharTokenizer(characters=ALPHABETS[task])
        order = position_order(d)
        if len(raw["train"][0]["text"]) != len(order):
            raise ConfigError("dataset_path", str(path), f"lines of {len(order)} characters for this config")
        tok = self.tokenizer

        def encode(batch: dict) -> dict:
            ids = encode_split(batch["text"], tok, order)
            return {"input_ids": ids, "labels": ids}

        with args.main_process_first(desc="tokenise"):
            return raw.map(
                encode,
                batched=True,
                batch_size=10_000,
                remove_columns=raw["train"].column_names,
                desc="tokenise",
            )

    def build_model(self) -> GPTForCausalLM:
        config = model_config_of(self.cfg, self.tokenizer)
        torch.manual_seed(self.cfg.training.seed)
        model = GPTForCausalLM(config)
        if self.cfg.run.init_checkpt:
            load_init_weights(model, self.cfg.run.init_checkpt)
        return model

    def build_trainer(self, model: GPTForCausalLM, data: DatasetDict) -> ExperimentTrainer:
        return ExperimentTrainer(
            model=model,
            args=self.cfg.training,
            train_dataset=data["train"],
            eval_dataset=data["validation"],
            processing_class=self.tokenizer,
        )

    def evaluate(self, trainer: ExperimentTrainer, data: DatasetDict) -> dict[str, float]:
        metrics = trainer.evaluate()
        val = data["validation"]
        n = min(
            len(val),
            (self.cfg.training.max_eval_batches or 10**9) * self.cfg.training.per_device_eval_batch_size,
        )
        ids = torch.tensor(np.asarray(val.select(range(n))["input_ids"]), dtype=torch.long)
        per_pos = loss_per_position(trainer.model, ids, self.cfg.training.per_device_eval_batch_size)
        metrics["mean_token_loss"] = float(per_pos.mean())
        if trainer.is_world_process_zero():
            save_position_losses(self.cfg, per_pos)
        return metrics


def save_position_losses(cfg: RunConfig, per_pos: np.ndarray) -> None:
    """`loss_per_position.json` (numbers) and `.png` (curve) in the run folder."""
    from hf_experiments.core.plots import figure
    from hf_experiments.core.run_folder import write_json_atomic

    label = "permuted" if cfg.data.permutation is not None else cfg.data.direction
    write_json_atomic(
        cfg.run_dir / "loss_per_position.json",
        {
            "direction": label,
            "order": position_order(cfg.data).tolist(),
            "loss_per_position": per_pos.tolist(),
            "mean": float(per_pos.mean()),
        },
    )
    with figure(cfg.run_dir / "loss_per_position.png", figsize=(7, 3.5)) as (_, ax):
        ax.plot(np.arange(1, len(per_pos) + 1), per_pos, marker=".", label=label)
        ax.set_xlabel("position in the sequence as read (1 = first character)")
        ax.set_ylabel("cross-entropy (nats)")
        ax.set_title(f"{cfg.run.exp_name}: mean {per_pos.mean():.4f}")
        ax.legend()
