"""An English text corpus that exists on every machine: the Python standard library's own documentation.

The context-compression experiments need English text to train a small backbone LM on a machine with no
network: the standard library's docstrings (read statically with `ast`) and `pydoc_data/topics.py` give a few
MB of it, fixed per Python version, so the corpus is deterministic per interpreter. It is cached as parquet.

Design: `docs/compression.md`, section "The embedded corpus".
"""

from __future__ import annotations

import ast
import logging
import os
import re
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

logger = logging.getLogger(__name__)

CORPUS_VERSION = 1  # bump when the extraction rules below change: it names the cache file
MIN_DOC_CHARS = 80  # shorter docstrings are mostly one-line "Return x." stubs with little language in them
# Directory names (anywhere in the relative path) whose files are not documentation prose: test suites,
# IDLE/turtle demos, vendored wheels, build configuration.
_SKIP_DIRS = frozenset(
    {
        "test",
        "tests",
        "idle_test",
        "idlelib",
        "turtledemo",
        "site-packages",
        "dist-packages",
        "__pycache__",
        "ensurepip",
    }
)
_DOC_NODES = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def default_cache_dir() -> Path:
    """The package's cache root: `$HF_EXPERIMENTS_CACHE`, else `~/.cache/hf_experiments`."""
    env = os.environ.get("HF_EXPERIMENTS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "hf_experiments"


def _normalise(text: str) -> str:
    """Tabs to spaces, no trailing spaces, at most one blank line in a row, no surrounding blank lines."""
    text = text.expandtabs(4).replace("\r\n", "\n").replace("\r", "\n")
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def _stdlib_files(root: Path) -> list[Path]:
    """Sorted (-> deterministic) `.py` files of the stdlib, minus tests, demos and vendored packages."""
    files = []
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).parts[:-1]
        if any(p in _SKIP_DIRS or p.startswith("config-") for p in parts):
            continue
        files.append(path)
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def _docstrings(tree: ast.AST) -> Iterator[str]:
    """Module, class and function docstrings in source order (depth-first, like a reader meets them)."""
    if isinstance(tree, _DOC_NODES):
        doc = ast.get_docstring(tree, clean=True)  # clean=True dedents (inspect.cleandoc)
        if doc:
            yield doc
    for child in ast.iter_child_nodes(tree):
        yield from _docstrings(child)


def _topic_texts(path: Path) -> list[str]:
    """The reference-manual topics of `pydoc_data/topics.py` (a dict literal), in key order."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
            topics = ast.literal_eval(node.value)
            return [topics[k] for k in sorted(topics) if isinstance(topics[k], str)]
    return []


def build_stdlib_corpus(stdlib_dir: str | Path | None = None) -> list[str]:
    """Extract the corpus from the stdlib source (uncached): all docstrings, then the pydoc topics."""
    root = Path(stdlib_dir or sysconfig.get_paths()["stdlib"])
    docs: list[str] = []
    for path in _stdlib_files(root):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except (SyntaxError, UnicodeDecodeError, ValueError):  # e.g. deliberately broken files
            continue
        if path.relative_to(root).as_posix() == "pydoc_data/topics.py":
            continue  # handled below: its text is a dict of strings, not docstrings
        docs.extend(_docstrings(tree))
    topics = root / "pydoc_data" / "topics.py"
    if topics.exists():
        docs.extend(_topic_texts(topics))
    docs = [_normalise(d) for d in docs]
    return [d for d in docs if len(d) >= MIN_DOC_CHARS]


def _cache_path(cache_dir: str | Path | None) -> Path:
    ver = ".".join(map(str, sys.version_info[:3]))
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return root / "corpus" / f"stdlib-docs-v{CORPUS_VERSION}-py{ver}.parquet"


def _write_atomic(docs: list[str], path: Path) -> None:
    """Write to a temp file in the same folder, then rename: readers never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(pa.table({"text": docs}), tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache may be shared
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _truncate(docs: list[str], max_chars: int) -> list[str]:
    """The shortest prefix of documents holding `max_chars` characters; the last one cut to fit exactly."""
    out, total = [], 0
    for doc in docs:
        if total >= max_chars:
            break
        out.append(doc[: max_chars - total])
        total += len(out[-1])
    return out


def embedded_corpus(max_chars: int | None = None, cache_dir: str | Path | None = None) -> list[str]:
    """The embedded corpus as a list of documents (~2 MB for CPython 3.11), deterministic per Python version.

    `max_chars` keeps a prefix of the documents totalling exactly `max_chars` characters (for tiny tests).
    `cache_dir` defaults to `default_cache_dir()`; the parquet cache is keyed by Python version and
    CORPUS_VERSION. A corrupt cache file is rebuilt.
    """
    if max_chars is not None and (not isinstance(max_chars, int) or max_chars <= 0):
        raise ValueError(f"max_chars={max_chars!r} is invalid; allowed: a positive int or None")
    path = _cache_path(cache_dir)
    docs: list[str] | None = None
    if path.exists():
        try:
            docs = pq.read_table(path).column("text").to_pylist()
        except (OSError, pa.ArrowException, KeyError):
            logger.warning("embedded corpus cache %s is unreadable; rebuilding it", path)
    if docs is None:
        logger.info("extracting the embedded corpus from the Python stdlib (one-off); caching at %s", path)
        docs = build_stdlib_corpus()
        _write_atomic(docs, path)
    return docs if max_chars is None else _truncate(docs, max_chars)
