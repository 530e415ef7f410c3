"""Write generated data as a Hugging Face dataset folder (parquet splits + dataset card).

Every synthetic-data generator of this package ends with :func:`write_dataset`, so that a generated folder opens
with ``datasets.load_dataset(str(out_dir))``, records its parameters in its ``README.md`` (read them back with
:func:`read_card_params`), can be pushed to the Hub unchanged and is reproducible byte for byte.
:func:`heldout_mask` is the hash partition that keeps validation examples out of the training split.

Design: `docs/framework.md`, section "Dataset folders".
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from huggingface_hub import DatasetCard, DatasetCardData

CARD_KEY = "hf_experiments"
# Rows per parquet row group: small enough for cheap random access and streaming, large enough
# that the per-group overhead is negligible.
ROW_GROUP_SIZE = 1 << 17
_SPLIT_NAME = re.compile(r"^\w+$")

SplitData = pa.Table | Mapping[str, np.ndarray | list]


# --------------------------------------------------------------------------------------------
# Columns -> Arrow
# --------------------------------------------------------------------------------------------
def _fixed_bytes_to_arrow(values: np.ndarray) -> pa.Array:
    """Fixed-width ``S<L>`` array -> Arrow string array without a per-row Python loop.

    The numpy buffer already is the concatenation of all strings, so only the offsets are built.
    NUL bytes mean numpy's trailing-NUL stripping applies; those go through the slow exact path.
    """
    width = values.dtype.itemsize
    raw = np.ascontiguousarray(values).view(np.uint8)
    if width == 0 or not raw.all():
        return pa.array(np.char.decode(values, "utf-8"), type=pa.string())
    n = len(values)
    large = n * width >= 2**31 - 1
    offsets = np.arange(n + 1, dtype=np.int64 if large else np.int32) * width
    arr = pa.Array.from_buffers(
        pa.large_string() if large else pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(raw)]
    )
    arr.validate(full=True)  # rejects bytes that are not UTF-8
    return arr


def _column_to_arrow(split: str, name: str, values: np.ndarray | list) -> pa.Array:
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values
    if isinstance(values, list):
        return pa.array(values)
    if not isinstance(values, np.ndarray):
        raise ValueError(
            f"splits[{split!r}][{name!r}] has type {type(values).__name__}; allowed: numpy array, list, pyarrow array"
        )
    if values.dtype.kind == "S" and values.ndim == 1:
        return _fixed_bytes_to_arrow(values)
    if values.ndim == 1:
        return pa.array(values)
    if values.ndim == 2 and values.dtype.kind in "iuf":
        # (N, T) -> fixed-size lists, which datasets reads as List(length=T).
        flat = pa.array(np.ascontiguousarray(values).reshape(-1))  # (N*T,)
        return pa.FixedSizeListArray.from_arrays(flat, values.shape[1])
    raise ValueError(
        f"splits[{split!r}][{name!r}] has dtype {values.dtype} and shape {values.shape}; "
        "allowed: 1-D arrays, or 2-D numeric arrays"
    )


def _to_table(split: str, data: SplitData) -> pa.Table:
    if isinstance(data, pa.Table):
        return data
    if not isinstance(data, Mapping) or not data:
        raise ValueError(f"splits[{split!r}] must be a pyarrow.Table or a non-empty dict of columns")
    columns = {name: _column_to_arrow(split, name, values) for name, values in data.items()}
    lengths = {name: len(col) for name, col in columns.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"splits[{split!r}] has columns of different lengths: {lengths}")
    return pa.table(columns)


# --------------------------------------------------------------------------------------------
# Dataset card
# --------------------------------------------------------------------------------------------
def _plain(value: Any, where: str) -> Any:
    """Make card params YAML-safe and round-trippable (numpy scalars -> Python, tuples -> lists)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    raise ValueError(
        f"card_params{where} has type {type(value).__name__}; allowed: str, int, float, bool, None, list, dict"
    )


def _size_category(n: int) -> str:
    """The Hub's ``size_categories`` bucket for ``n`` rows."""
    bounds = [
        (10**3, "n<1K"),
        (10**4, "1K<n<10K"),
        (10**5, "10K<n<100K"),
        (10**6, "100K<n<1M"),
        (10**7, "1M<n<10M"),
        (10**8, "10M<n<100M"),
        (10**9, "100M<n<1B"),
    ]
    for bound, label in bounds:
        if n < bound:
            return label
    return "n>1B"


def _fingerprint(folder: Path) -> str:
    """sha256 over every file's relative path and bytes (README excluded): the content's identity."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "README.md"):
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _dataset_info(tables: Mapping[str, pa.Table], data_dir: Path, description: str) -> dict[str, Any]:
    """The card's `dataset_info` as `datasets` writes it on `push_to_hub`: the features of the written schema
    (the first split's: `datasets` reads every split with them), each split's rows and bytes, the sizes."""
    from datasets import DatasetInfo, Features
    from datasets.info import DatasetInfosDict
    from datasets.splits import SplitDict, SplitInfo

    splits = SplitDict()
    for name, table in tables.items():
        splits.add(SplitInfo(name=name, num_bytes=table.nbytes, num_examples=table.num_rows))
    info = DatasetInfo(
        features=Features.from_arrow_schema(next(iter(tables.values())).schema),
        splits=splits,
        download_size=sum(p.stat().st_size for p in data_dir.glob("*.parquet")),
        dataset_size=sum(t.nbytes for t in tables.values()),
    )
    card_data = DatasetCardData()
    DatasetInfosDict({"default": info}).to_dataset_card_data(card_data)
    # `datasets` keys its local cache on this YAML, not on the files, when `configs` is present: without a
    # content fingerprint here, regenerating into the same folder would load the stale cached copy.
    return {"description": description, **card_data["dataset_info"]}


def _card(
    title: str,
    description: str,
    params: dict,
    tables: Mapping[str, pa.Table],
    data_dir: Path,
    extra_files: list[str],
    fingerprint: str,
    *,
    license: str = "mit",
    task_categories: Sequence[str] = ("text-generation",),
    tags: Sequence[str] = ("synthetic", "hf_experiments"),
) -> DatasetCard:
    num_rows = {s: t.num_rows for s, t in tables.items()}
    schema = next(iter(tables.values())).schema
    data = DatasetCardData(
        pretty_name=title,
        license=license,
        task_categories=list(task_categories),
        tags=list(tags),
        size_categories=[_size_category(sum(num_rows.values()))],
        configs=[{"config_name": "default", "data_files": [{"split": s, "path": f"data/{s}-*"} for s in num_rows]}],
        dataset_info=_dataset_info(
            tables, data_dir, f"{title} (hf_experiments generated data, content sha256 {fingerprint})"
        ),
        **{CARD_KEY: {"params": params, "num_rows": dict(num_rows), "sha256": fingerprint}},
    )
    split_lines = "\n".join(f"| {s} | {n:,} |" for s, n in num_rows.items())
    column_lines = "\n".join(f"- `{f.name}`: {f.type}" for f in schema)
    param_yaml = yaml.safe_dump(params, sort_keys=False, allow_unicode=True, width=110).rstrip()
    extra = "".join(f"- `{name}`\n" for name in extra_files) or "(none)\n"
    return DatasetCard(
        f"---\n{data.to_yaml()}\n---\n\n# {title}\n\n{description.strip()}\n\n"
        f"## Splits\n\n| split | rows |\n|---|---|\n{split_lines}\n\n"
        f"## Columns\n\n{column_lines}\n\n"
        f"## Generating parameters\n\nAlso stored under `{CARD_KEY}.params` in the YAML header "
        f"(`hf_experiments.core.dataset_io.read_card_params`).\n\n```yaml\n{param_yaml}\n```\n\n"
        f"## Extra files\n\n{extra}\n"
        f"## Loading\n\n```python\nfrom datasets import load_dataset\n"
        f'ds = load_dataset("path/to/this/folder")\n```\n'
    )


def read_card_params(out_dir: str | Path) -> dict:
    """Return the generating parameters that :func:`write_dataset` stored in ``out_dir/README.md``."""
    card = Path(out_dir) / "README.md"
    if not card.is_file():
        raise ValueError(f"out_dir={str(out_dir)!r} has no README.md; expected a folder written by write_dataset")
    meta = DatasetCard.load(card).data.to_dict()
    if CARD_KEY not in meta:
        raise ValueError(f"{card} has no '{CARD_KEY}' key in its YAML front matter")
    return meta[CARD_KEY]["params"]


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------
def _check_relative(name: str) -> Path:
    rel = Path(name)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts or rel.parts[0] in ("data", "README.md"):
        raise ValueError(
            f"extra_files key {name!r} is not allowed; use a relative path inside the dataset folder, "
            "outside data/ and other than README.md"
        )
    return rel


def _default_mode() -> int:
    """Directory mode honouring the umask (mkdtemp would leave the folder at 0o700)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o777 & ~mask


def write_dataset(
    out_dir: str | Path,
    splits: Mapping[str, SplitData],
    card_params: Mapping[str, Any],
    description: str,
    extra_files: Mapping[str, bytes] | None = None,
    push_to_hub: str | None = None,
    *,
    overwrite: bool = False,
    title: str | None = None,
) -> Path:
    """Write ``splits`` as a loadable dataset folder and return its path.

    The folder is built in a temporary sibling and renamed into place, so a crash never leaves a
    half-written dataset at ``out_dir``. An existing non-empty ``out_dir`` is replaced only with
    ``overwrite=True``. With ``push_to_hub="user/name"`` the finished folder is uploaded as a dataset
    repo (the local copy is kept either way).

    Raises:
        ValueError: bad split names or columns, non-serialisable params, or an existing ``out_dir``.
        RuntimeError: ``push_to_hub`` given but the Hub is unreachable (e.g. ``HF_HUB_OFFLINE=1``).
    """
    out_dir = Path(out_dir)
    if not splits:
        raise ValueError("splits is empty; give at least one split, e.g. {'train': {...}}")
    for name in splits:
        if not _SPLIT_NAME.match(name):
            raise ValueError(f"split name {name!r} is not allowed; use letters, digits and underscores")
    if out_dir.exists():
        if not out_dir.is_dir():
            raise ValueError(f"out_dir={str(out_dir)!r} exists and is not a directory")
        if any(out_dir.iterdir()) and not overwrite:
            raise ValueError(f"out_dir={str(out_dir)!r} exists and is not empty; pass overwrite=True to replace it")
    tables = {name: _to_table(name, data) for name, data in splits.items()}
    params = _plain(dict(card_params), "")
    extras = {str(_check_relative(k)): v for k, v in (extra_files or {}).items()}

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    old: Path | None = None
    try:
        os.chmod(tmp, _default_mode())
        (tmp / "data").mkdir()
        for name, table in tables.items():
            pq.write_table(
                table,
                tmp / "data" / f"{name}-00000-of-00001.parquet",
                compression="zstd",
                row_group_size=ROW_GROUP_SIZE,
            )
        for rel, payload in extras.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_bytes(payload)
        card = _card(
            title or out_dir.name,
            description,
            params,
            tables,
            tmp / "data",
            sorted(extras),
            _fingerprint(tmp),
        )
        card.save(tmp / "README.md")
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            old.rmdir()
            out_dir.rename(old)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and old.exists() and not out_dir.exists():
            old.rename(out_dir)  # put the previous dataset back
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    if push_to_hub:
        push_dataset_folder(out_dir, push_to_hub)
    return out_dir


def push_dataset_folder(out_dir: str | Path, repo_id: str, *, private: bool | None = None) -> str:
    """Upload a dataset folder to ``repo_id`` (a dataset repo, created if missing); return the commit URL."""
    from huggingface_hub import HfApi, constants

    offline = constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").upper() in {
        "1",
        "ON",
        "YES",
        "TRUE",
    }
    if offline:
        raise RuntimeError(
            f"push_to_hub={repo_id!r} needs the Hugging Face Hub but HF_HUB_OFFLINE is set; "
            f"the dataset is saved locally at {out_dir}"
        )
    api = HfApi()
    try:
        api.create_repo(repo_id, repo_type="dataset", exist_ok=True, private=private)
        info = api.upload_folder(
            repo_id=repo_id,
            folder_path=str(out_dir),
            repo_type="dataset",
            commit_message=f"Upload {Path(out_dir).name}",
        )
    except (ConnectionError, OSError) as err:
        raise RuntimeError(
            f"push_to_hub={repo_id!r} failed ({err.__class__.__name__}: {err}); "
            f"the dataset is saved locally at {out_dir}"
        ) from err
    return str(getattr(info, "commit_url", info))


# --------------------------------------------------------------------------------------------
# Train / validation partition
# --------------------------------------------------------------------------------------------
def _splitmix64(x: np.ndarray) -> np.ndarray:
    """Bijective 64-bit mixer: turns structured keys (pairs, bit vectors) into uniform hashes."""
    z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def heldout_mask(keys: np.ndarray, fraction: float, salt: int = 0) -> np.ndarray:
    """True where ``keys`` belong to the held-out (validation) part of the key space.

    Membership is a fixed function of the key (a hash below ``fraction``), not of the seed, so
    every dataset built with the same ``fraction`` holds out the same examples and a validation
    example can never appear in any training split drawn with that fraction.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction={fraction} is not allowed; use a value in [0, 1]")
    z = _splitmix64(np.asarray(keys).astype(np.uint64) ^ np.uint64(salt))
    u = (z >> np.uint64(11)).astype(np.float64) * 2.0**-53  # uniform in [0, 1)
    return u < fraction


def check_dataset_folder(key: str, path: str | Path, splits: Sequence[str], columns: Sequence[str]) -> dict[str, list]:
    """`path` (the config value of `key`) is a folder written by `write_dataset` with these splits, each with these
    columns; returns each split's parquet files. Raises a one-line `ConfigError` otherwise."""
    from .config import ConfigError

    try:
        read_card_params(path)
    except ValueError:
        raise ConfigError(
            key,
            str(path),
            "a dataset folder written by data_scripts/ (README.md with its parameters, data/<split>-*.parquet)",
        ) from None
    files = {s: sorted((Path(path) / "data").glob(f"{s}-*.parquet")) for s in splits}
    missing = [s for s, found in files.items() if not found]
    if missing:
        raise ConfigError(key, str(path), f"a dataset with the splits {list(splits)} (it has no {missing})")
    for split, found in files.items():
        names = pq.read_schema(found[0]).names
        lacking = [c for c in columns if c not in names]
        if lacking:
            raise ConfigError(
                key, str(path), f"a dataset whose {split!r} split has the columns {list(columns)} (it has no {lacking})"
            )
    return files
