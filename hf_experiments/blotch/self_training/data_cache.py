"""The training-data cache: problem/solution rows (with where each came from) that
manipulation rounds rewrite between epochs, bounded by `max_samples`, saved into every checkpoint, and
`CacheView`, the live dataset the Trainer reads. Design: `docs/data_cache.md`.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from hf_experiments.blotch.arithmetic import row_text
from hf_experiments.blotch.tokenization_arith import encode_rows

CACHE_DIR = "data_cache"


ROW_KEY = "cache_row"


FullPolicy = Literal["drop_new", "replace_oldest"]


def solution_length(solution: str) -> int:
    """Tokens of a solution, EOS included (one token per character), as ``blotch_eval`` counts them."""
    from .solutions import solution_length as _length

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
            raise ValueError(f"max_samples={max_samples} is not allowed; use at least the {len(problems)} initial rows")
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
    def from_dataset(
        cls,
        tokenizer: Any,
        dataset: Any,
        init_samples: int | None = None,
        max_samples: int | None = None,
        full_policy: FullPolicy = "drop_new",
    ) -> DataCache:
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
                    p,
                    s,
                    origin,
                    round_,
                    r,
                )
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
        table = pa.table(
            {
                "problem": self.problems,
                "solution": self.solutions,
                "origin": self.origin,
                "round": pa.array(self.round, type=pa.int64()),
            }
        )
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
        return {
            "problem": list(self.problems),
            "solution": list(self.solutions),
            "origin": list(self.origin),
            "round": list(self.round),
        }


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
