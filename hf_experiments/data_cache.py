"""The training-data cache (SPEC §1): rows that callbacks rewrite between epochs, and the Trainer that trains
on the cache as it is at the start of every epoch.

**Rows.** A row is a problem, its solution (``"s1=...=answer"``, no problem, no leading ``=``), where the
solution came from (``origin``: ``data``, ``star``, ``aug``, ``axe``, ``internalize``) and the manipulation
round that wrote it (``round``, -1 for the initial data). The cache starts with ``init_samples`` rows of the
training split and never holds more than ``max_samples``. Rows are replaced in place or appended; they are
never deleted, so the cache never shrinks (the Trainer relies on that, see below).

**At the bound** (``full_policy``): ``"drop_new"`` (default) adds rows only while there is room and drops
the rest of a round's new rows (counted as ``dropped``); ``"replace_oldest"`` lets new rows overwrite the
oldest rows (lowest round first, then row order), so the cache turns over to model-written rows.

**The view** (:class:`CacheView`) is the ``torch`` dataset the Trainer's dataloader reads: its length and
rows are read from the cache at every access, and token ids (``BOS problem=solution EOS``) are encoded once
per mutation (one vectorised ``encode_rows`` call for the changed rows), so the collator gets ``input_ids``
exactly as for the ``datasets`` training split.

**DataLoader workers** hold a copy of the dataset made when an epoch's iterator starts. Without
``persistent_workers`` every epoch starts new workers, which copy the cache as it is then; manipulations
run between epochs, so workers always see the current rows. Persistent workers would keep the first
epoch's copy for the whole run: :class:`CacheTrainerMixin` rejects them.

**The Trainer** (:class:`CacheTrainerMixin`). ``Trainer._inner_training_loop`` measures
``len(train_dataloader)`` once, before the first epoch, and derives from it the steps per epoch, the
number of epochs (``max_steps`` runs) or ``max_steps`` (epoch runs), and, on resume, which epoch and batch
to continue from (``global_step // steps_per_epoch``). With a cache that grows between epochs all of these
are wrong. The mixin keeps a *ledger* of where every epoch started and how long it was, and:

- ``_run_epoch``: measures the dataloader again at the start of every epoch (an epoch is one pass over the
  current cache, its ``state.epoch`` fractions follow that length);
- ``max_steps > 0``: the run takes exactly ``max_steps`` optimizer steps (the Trainer's flow callback stops
  it), however long epochs become; ``max_steps <= 0``: exactly ``num_train_epochs`` passes, each over the
  cache of its time; ``state.max_steps`` and the horizon of a ``transformers`` LR schedule are re-planned at
  each epoch start as if the cache stopped growing (exact when it does);
- resume: the epoch and the batches to skip come from the ledger; the cache and ledger are restored from
  the checkpoint (``data_cache/``, written into every checkpoint before its completion marker, the
  preemption checkpoint included) before the dataloader is measured, so a resumed run trains on exactly the
  rows, order and batches of an uninterrupted one.

Manipulations run at the *start* of an epoch (``on_epoch_begin``, after the previous epoch ended): a
checkpoint taken at the last step of an epoch then resumes into the next epoch's start, where the
manipulation runs, so no round is skipped or repeated by a restart.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from transformers.trainer_utils import get_last_checkpoint

from .data.arithmetic import row_text
from .tokenization_arith import encode_rows

CACHE_DIR = "data_cache"
ROW_KEY = "cache_row"
FullPolicy = Literal["drop_new", "replace_oldest"]


def solution_length(solution: str) -> int:
    """Tokens of a solution, EOS included (one token per character), as ``blotch_eval`` counts them."""
    from .manipulations import solution_length as _length

    return _length(solution)


@dataclass
class Ledger:
    """Where each epoch started (global step) and how many optimizer steps it had, the manipulation rounds
    done so far (one record per round and kind), per-epoch history rows and the time spent manipulating."""

    epoch_starts: list[int] = field(default_factory=list)
    epoch_updates: list[int] = field(default_factory=list)
    rounds: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    manip_seconds: float = 0.0

    def round_epochs(self) -> list[int]:
        """Epochs at whose start a round ran (each once, in order)."""
        return sorted({r["epoch"] for r in self.rounds})


class DataCache:
    """Rows of problem/solution with origin and round; see the module docstring."""

    def __init__(
        self,
        tokenizer: Any,
        problems: Sequence[str],
        solutions: Sequence[str],
        max_samples: int | None = None,
        full_policy: FullPolicy = "drop_new",
    ) -> None:
        if len(problems) != len(solutions):
            raise ValueError(f"problems ({len(problems)}) and solutions ({len(solutions)}) differ in length")
        if max_samples is not None and max_samples < len(problems):
            raise ValueError(f"max_samples={max_samples} is not allowed; use at least the {len(problems)} "
                             "initial rows")
        if full_policy not in ("drop_new", "replace_oldest"):
            raise ValueError(f"full_policy={full_policy!r} is not allowed; use 'drop_new' or 'replace_oldest'")
        self.tokenizer = tokenizer
        self.max_samples = max_samples
        self.full_policy: FullPolicy = full_policy
        self.problems = list(problems)
        self.solutions = list(solutions)
        self.origin = ["data"] * len(self.problems)
        self.round = [-1] * len(self.problems)
        self.ledger = Ledger()
        self.ids: list[np.ndarray] = self._encode(self.problems, self.solutions)

    @classmethod
    def from_dataset(cls, tokenizer: Any, dataset: Any, init_samples: int | None = None,
                     max_samples: int | None = None, full_policy: FullPolicy = "drop_new") -> DataCache:
        """The first ``init_samples`` rows (default: all) of a dataset with ``problem``/``solution`` columns."""
        n = len(dataset) if init_samples is None else min(init_samples, len(dataset))
        part = dataset.select(range(n)) if n < len(dataset) else dataset
        return cls(tokenizer, list(part["problem"]), list(part["solution"]), max_samples, full_policy)

    def _encode(self, problems: Sequence[str], solutions: Sequence[str]) -> list[np.ndarray]:
        return encode_rows(self.tokenizer, [row_text(p, s) for p, s in zip(problems, solutions)])

    def __len__(self) -> int:
        return len(self.problems)

    @property
    def capacity(self) -> int | None:
        return self.max_samples

    def mean_solution_length(self) -> float:
        """Mean solution tokens (EOS included) over the cache: the length the manipulations shorten."""
        return float(np.mean([solution_length(s) for s in self.solutions])) if self.solutions else 0.0

    def row_lengths(self) -> np.ndarray:
        """(N,) token count of every training row (for length-bucketed samplers)."""
        return np.fromiter((len(r) for r in self.ids), dtype=np.int64, count=len(self.ids))

    # ----- mutations (between epochs only) -----
    def replace(self, indices: Sequence[int], solutions: Sequence[str], origin: str, round_: int) -> None:
        """Overwrite the solutions of rows ``indices`` (their problems stay)."""
        if len(indices) != len(solutions):
            raise ValueError(f"indices ({len(indices)}) and solutions ({len(solutions)}) differ in length")
        for bad in (i for i in indices if not 0 <= i < len(self)):
            raise ValueError(f"row index {bad} is not allowed; the cache has {len(self)} rows")
        new_ids = self._encode([self.problems[i] for i in indices], solutions)
        for i, s, r in zip(indices, solutions, new_ids):
            self.solutions[i], self.origin[i], self.round[i], self.ids[i] = s, origin, round_, r

    def add(self, problems: Sequence[str], solutions: Sequence[str], origin: str, round_: int) -> dict[str, int]:
        """Append rows up to ``max_samples``; the rest follow ``full_policy``. Returns counts
        ``{"added", "replaced", "dropped"}``."""
        if len(problems) != len(solutions):
            raise ValueError(f"problems ({len(problems)}) and solutions ({len(solutions)}) differ in length")
        room = len(problems) if self.max_samples is None else max(0, self.max_samples - len(self))
        n_add = min(room, len(problems))
        self.problems += list(problems[:n_add])
        self.solutions += list(solutions[:n_add])
        self.origin += [origin] * n_add
        self.round += [round_] * n_add
        self.ids += self._encode(problems[:n_add], solutions[:n_add])
        rest_p, rest_s = list(problems[n_add:]), list(solutions[n_add:])
        replaced = 0
        if rest_p and self.full_policy == "replace_oldest":
            # Oldest first: lowest round, then lowest index; never a row written in this same call.
            order = np.lexsort((np.arange(len(self)), np.asarray(self.round)))
            victims = [int(i) for i in order[: len(rest_p)]]
            new_ids = self._encode(rest_p, rest_s)
            for i, p, s, r in zip(victims, rest_p, rest_s, new_ids):
                self.problems[i], self.solutions[i], self.origin[i], self.round[i], self.ids[i] = (
                    p, s, origin, round_, r)
            replaced = len(victims)
        return {"added": n_add, "replaced": replaced, "dropped": len(rest_p) - replaced}

    # ----- persistence -----
    def state_dict(self) -> dict[str, Any]:
        return {"max_samples": self.max_samples, "full_policy": self.full_policy, "ledger": asdict(self.ledger)}

    def save(self, folder: str | os.PathLike) -> None:
        """Write ``rows.parquet`` and ``state.json`` into ``folder``, atomically (a temp folder renamed)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        table = pa.table({"problem": self.problems, "solution": self.solutions, "origin": self.origin,
                          "round": pa.array(self.round, type=pa.int64())})
        pq.write_table(table, tmp / "rows.parquet")
        (tmp / "state.json").write_text(json.dumps(self.state_dict(), indent=1, sort_keys=True))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)

    def load(self, folder: str | os.PathLike) -> None:
        """Replace every row and the ledger with those saved in ``folder`` (in place: views stay valid)."""
        import pyarrow.parquet as pq

        folder = Path(folder)
        table = pq.read_table(folder / "rows.parquet").to_pydict()
        state = json.loads((folder / "state.json").read_text())
        self.problems, self.solutions = table["problem"], table["solution"]
        self.origin, self.round = table["origin"], [int(r) for r in table["round"]]
        self.max_samples, self.full_policy = state["max_samples"], state["full_policy"]
        self.ledger = Ledger(**state["ledger"])
        self.ids = self._encode(self.problems, self.solutions)

    def table(self) -> dict[str, list]:
        return {"problem": list(self.problems), "solution": list(self.solutions), "origin": list(self.origin),
                "round": list(self.round)}


class CacheView(torch.utils.data.Dataset):
    """The cache as the Trainer's training dataset: ``{"input_ids": ids, "cache_row": (epoch, i)}`` rows,
    length read live. ``epoch`` is set by the Trainer before each epoch's iterator (and workers) start."""

    def __init__(self, cache: DataCache) -> None:
        self.cache = cache
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"input_ids": self.cache.ids[i], ROW_KEY: (self.epoch, int(i))}

    def row_lengths(self) -> np.ndarray:
        return self.cache.row_lengths()


@dataclass
class RowSeededCollator:
    """Runs ``inner`` (e.g. the blotch collator, which draws from torch's global RNG) under an RNG seeded by
    ``(seed, epoch, rows of the batch)`` and restored afterwards.

    Why: ``Trainer`` collates batches ahead of the step that uses them (accelerate prefetches one batch, and
    on resume the first batches are collated before the checkpoint's RNG state is loaded), so a collator
    drawing from the global stream would blotch differently after a resume, and with workers it draws from
    the workers' streams. Seeding by row makes blotching a function of the data alone: exact resumes, any
    number of workers. Features without ``cache_row`` (evaluation) go to ``inner`` unchanged.
    """

    inner: Any
    seed: int = 0

    def __call__(self, features: list[dict[str, Any]]) -> Any:
        if not features or ROW_KEY not in features[0]:
            return self.inner(features)
        keys = [f[ROW_KEY] for f in features]
        features = [{k: v for k, v in f.items() if k != ROW_KEY} for f in features]
        seed = np.random.SeedSequence([self.seed, int(keys[0][0]), *(int(k[1]) for k in keys)])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed.generate_state(1, np.uint64)[0] >> np.uint64(1)))
            return self.inner(features)


def _stretch_schedule(scheduler: Any, total: int) -> None:
    """Set the horizon of a ``transformers`` LambdaLR schedule (``partial(..., num_training_steps=N)``)."""
    lambdas = getattr(scheduler, "lr_lambdas", None) or []
    for i, fn in enumerate(lambdas):
        if isinstance(fn, partial) and "num_training_steps" in fn.keywords:
            lambdas[i] = partial(fn.func, *fn.args, **{**fn.keywords, "num_training_steps": total})


class CacheTrainerMixin:
    """Put before the ``Trainer`` subclass: trains every epoch on the current :class:`DataCache` (module
    docstring). Needs ``self.data_cache`` set (``attach_cache``) before ``train``."""

    data_cache: DataCache

    def attach_cache(self, cache: DataCache) -> None:
        if self.args.dataloader_persistent_workers and self.args.dataloader_num_workers > 0:
            raise ValueError("dataloader_persistent_workers=True is not allowed with a data cache: persistent "
                             "workers keep the first epoch's copy of the rows; use false")
        self.data_cache = cache
        self.train_dataset = CacheView(cache)
        if not isinstance(self.data_collator, RowSeededCollator):
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            self.data_collator = RowSeededCollator(self.data_collator, seed)

    def _get_collator_with_removed_columns(self, data_collator: Any, description: str | None = None) -> Any:
        # The column filter must run inside the seeding wrapper: it would drop ``cache_row``.
        if isinstance(data_collator, RowSeededCollator):
            inner = super()._get_collator_with_removed_columns(data_collator.inner, description)
            return RowSeededCollator(inner, data_collator.seed)
        return super()._get_collator_with_removed_columns(data_collator, description)

    # ----- checkpoints -----
    def train(self, resume_from_checkpoint: str | bool | None = None, *args: Any, **kwargs: Any):
        if resume_from_checkpoint is True:
            resume_from_checkpoint = get_last_checkpoint(self.args.output_dir)
        if resume_from_checkpoint:
            saved = Path(resume_from_checkpoint) / CACHE_DIR
            if not saved.is_dir():
                raise ValueError(f"resume_from_checkpoint={str(resume_from_checkpoint)!r} has no {CACHE_DIR}/: it "
                                 "was not written by a data-cache run, so the cache cannot be restored")
            self.data_cache.load(saved)
        return super().train(resume_from_checkpoint, *args, **kwargs)

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        # Written first: the checkpoint is complete only once ExperimentTrainer marks it, after everything.
        if self.args.should_save:
            run_dir = self._get_output_dir(trial=trial)
            self.data_cache.save(Path(run_dir) / f"checkpoint-{self.state.global_step}" / CACHE_DIR)
        super()._save_checkpoint(model, trial)

    # ----- epoch bookkeeping -----
    def set_initial_training_values(self, args: Any, dataloader: Any):
        values = list(super().set_initial_training_values(args, dataloader))
        if args.max_steps > 0:
            values[0] = sys.maxsize  # epochs end when max_steps is reached, however long each one is
        elif self.data_cache.ledger.epoch_updates:
            # Resuming: plan (and build the LR schedule) as the first epoch did; `_run_epoch` re-plans.
            values[6] = math.ceil(args.num_train_epochs * self.data_cache.ledger.epoch_updates[0])
        return tuple(values)

    def _init_training_state(self, max_steps, num_update_steps_per_epoch, num_train_epochs,
                             resume_from_checkpoint, trial):
        epochs, skip = super()._init_training_state(max_steps, num_update_steps_per_epoch, num_train_epochs,
                                                    resume_from_checkpoint, trial)
        led = self.data_cache.ledger
        if resume_from_checkpoint is not None and led.epoch_starts:
            epoch = len(led.epoch_starts) - 1
            done = self.state.global_step - led.epoch_starts[epoch]
            if done >= led.epoch_updates[epoch]:  # the epoch ended at this checkpoint: start the next one
                epochs, skip = epoch + 1, 0
            else:
                epochs = epoch
                skip = 0 if self.args.ignore_data_skip else done * self.args.gradient_accumulation_steps
        return epochs, skip

    def _run_epoch(self, model, epoch, train_dataloader, steps_in_epoch, num_update_steps_per_epoch, *args,
                   **kwargs):
        steps_in_epoch = len(train_dataloader)  # the cache as it is now (rows may have been added)
        ga = self.args.gradient_accumulation_steps
        num_update_steps_per_epoch = max(1, math.ceil(steps_in_epoch / ga))
        self.train_dataset.epoch = epoch  # before the epoch's iterator (and its workers) start
        led = self.data_cache.ledger
        if len(led.epoch_starts) <= epoch:
            led.epoch_starts.append(self.state.global_step)
            led.epoch_updates.append(num_update_steps_per_epoch)
        if self.args.max_steps <= 0:
            left = math.ceil((self.args.num_train_epochs - epoch) * num_update_steps_per_epoch)
            total = led.epoch_starts[epoch] + left
            self.state.max_steps = total
            _stretch_schedule(self.lr_scheduler, total)
        return super()._run_epoch(model, epoch, train_dataloader, steps_in_epoch, num_update_steps_per_epoch,
                                  *args, **kwargs)
