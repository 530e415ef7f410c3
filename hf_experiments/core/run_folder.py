"""The run folder `<save_root>/<exp_name>/`: completing, rotating and choosing checkpoints, atomic small writes.

Layout: `run_config.json` (resolved config), `checkpoint-<step>/` (each with `checkpoint-complete.json` once
every rank has finished writing it), `runs/` (TensorBoard), `model/` (final `save_pretrained` output with
tokenizer and model card), `metrics.json` (final evaluation) and experiment plots.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from transformers.utils import logging

logger = logging.get_logger(__name__)

COMPLETE_MARKER = "checkpoint-complete.json"
RUN_CONFIG = "run_config.json"
_CKPT_RE = re.compile(r"^checkpoint-(\d+)$")


def default_file_mode() -> int:
    """The mode `open` gives a new file: 0o666 less the umask (0644 under the usual 022). Files written through a
    temporary file (mkstemp, safetensors >= 0.8: safetensors/safetensors#782) get 0600 unless set to this."""
    return 0o666 & ~_umask()


def _umask() -> int:
    """The process umask, read without changing it where Linux tells it (`os.umask` sets it to read it: a
    file another thread creates in between would get mode 0666)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON to a temp file in the same folder, fsync, then rename over `path` (never half-written). The
    file gets the mode `open` would give it (0644 under the usual umask 022; mkstemp's own is 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, default_file_mode())
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, sort_keys=True, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def is_complete(checkpoint: str | os.PathLike) -> bool:
    return (Path(checkpoint) / COMPLETE_MARKER).is_file()


def file_records(folder: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Size and SHA-256 of every file under `folder` except the marker, by path relative to it."""
    folder = Path(folder)
    records = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != COMPLETE_MARKER):
        records[path.relative_to(folder).as_posix()] = {"size": path.stat().st_size, "sha256": sha256_of(path)}
    return records


def checkpoint_problem(checkpoint: str | os.PathLike) -> str | None:
    """Why `checkpoint` cannot be resumed from, or None when every file it was completed with is intact.

    A marker from before file records (earlier releases) is trusted as long as `trainer_state.json` exists."""
    ckpt = Path(checkpoint)
    try:
        marker = json.loads((ckpt / COMPLETE_MARKER).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "no completion marker (interrupted while being written)"
    except (OSError, ValueError) as e:
        return f"{COMPLETE_MARKER}: unreadable ({e.__class__.__name__})"
    m = _CKPT_RE.match(ckpt.name)
    if m and marker.get("global_step") not in (None, int(m.group(1))):
        return f"{COMPLETE_MARKER}: global_step {marker.get('global_step')} is not the folder's step {m.group(1)}"
    records = marker.get("files")
    if records is None:
        return None if (ckpt / "trainer_state.json").is_file() else "trainer_state.json: missing"
    for name, want in records.items():
        path = ckpt / name
        if not path.is_file():
            return f"{name}: missing"
        size = path.stat().st_size
        if size != want["size"]:
            return f"{name}: {size} bytes, {want['size']} when completed"
        if sha256_of(path) != want["sha256"]:
            return f"{name}: contents changed since it was completed (SHA-256 differs)"
    return None


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks (`huggingface_hub`'s, the hash the Hub uses for LFS files)."""
    from huggingface_hub.utils.sha import sha_fileobj

    with open(path, "rb") as f:
        return sha_fileobj(f).hex()


def checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """All `checkpoint-<step>` folders, oldest step first (complete or not)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in run_dir.iterdir() if p.is_dir() and (m := _CKPT_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def last_complete_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The newest checkpoint whose every file was written; checkpoints cut short by a crash are skipped."""
    for ckpt in reversed(checkpoints(run_dir)):
        if is_complete(ckpt):
            return ckpt
        logger.warning(f"ignoring incomplete checkpoint {ckpt} (interrupted while being written)")
    return None


def last_good_checkpoint(run_dir: str | os.PathLike, quarantine: bool = False) -> Path | None:
    """The newest complete checkpoint whose files are all as they were completed (`checkpoint_problem`).

    A damaged one gets one warning line naming the bad file, and with `quarantine` (the main process, before
    resuming) is moved into `<run_dir>/damaged/` so that it is kept for inspection but never resumed from or
    half-overwritten by the resumed run's save at the same step."""
    for ckpt in reversed(checkpoints(run_dir)):
        if not is_complete(ckpt):
            logger.warning(f"ignoring incomplete checkpoint {ckpt} (interrupted while being written)")
            continue
        problem = checkpoint_problem(ckpt)
        if problem is None:
            return ckpt
        where = ""
        if quarantine:
            target = unique_path(Path(run_dir) / "damaged" / f"{ckpt.name}-{time.strftime('%Y%m%d-%H%M%S')}")
            target.parent.mkdir(exist_ok=True)
            shutil.move(str(ckpt), str(target))
            where = f"; moved to {target}"
        logger.warning(f"damaged checkpoint {ckpt.name}: {problem}; falling back to an older one{where}")
    return None


def unmark(checkpoint: str | os.PathLike) -> None:
    """A checkpoint about to be (re)written is not complete until marked again."""
    (Path(checkpoint) / COMPLETE_MARKER).unlink(missing_ok=True)


def complete_checkpoint(
    checkpoint: str | os.PathLike,
    global_step: int,
    should_save: bool,
    save_total_limit: int | None,
    best: str | None = None,
) -> None:
    """After every rank wrote its part of `checkpoint`: a barrier, the run's `run_config.json` copied in (so
    `--restore_from <checkpoint>` restores the config too), the completion marker, then the rotation of older
    complete checkpoints. A crash at any moment leaves at least one complete checkpoint."""
    import torch.distributed as dist

    ckpt = Path(checkpoint)
    distributed = dist.is_available() and dist.is_initialized()
    if distributed:
        dist.barrier()  # every rank's RNG file and shard is on disk
    if should_save:
        if (ckpt.parent / RUN_CONFIG).is_file():
            shutil.copy2(ckpt.parent / RUN_CONFIG, ckpt / RUN_CONFIG)
        marker = {"global_step": global_step, "time": time.time(), "files": file_records(ckpt)}
        write_json_atomic(ckpt / COMPLETE_MARKER, marker)
        rotate_checkpoints(ckpt.parent, save_total_limit, keep=(ckpt, best))
    if distributed:
        # No rank goes on (and, after a preemption, exits: torchrun then stops the others) before the marker
        # is written: hashing a large checkpoint takes a while.
        dist.barrier()


def rotate_checkpoints(run_dir: str | os.PathLike, limit: int | None, keep: tuple = ()) -> list[Path]:
    """Delete the oldest *complete* checkpoints beyond `limit`, never one in `keep` (the one just completed, the
    best one). Unlike transformers' rotation, an incomplete folder (a save cut short) neither counts nor is
    protected as "the newest", so it can never push out the last complete checkpoint. Returns what was deleted."""
    if limit is None:
        return []
    kept = {Path(k).resolve() for k in keep if k}
    complete = [c for c in checkpoints(run_dir) if is_complete(c)]
    excess = len(complete) - max(limit, len([c for c in complete if c.resolve() in kept]))
    doomed = [c for c in complete if c.resolve() not in kept][: max(excess, 0)]
    for ckpt in doomed:
        unmark(ckpt)  # an interrupted deletion leaves an incomplete folder, never a damaged "complete" one
        shutil.rmtree(ckpt, ignore_errors=True)
    return doomed


def unique_path(path: Path) -> Path:
    """`path`, or `path-1`, `path-2`, ... : the first that does not exist yet."""
    candidate, n = path, 0
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate


def move_aside(run_dir: str | os.PathLike) -> Path | None:
    """Rename an existing run folder to `<name>.old-<time>` (made unique) so a fresh start loses nothing."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        return None
    target = unique_path(run_dir.with_name(f"{run_dir.name}.old-{time.strftime('%Y%m%d-%H%M%S')}"))
    os.rename(run_dir, target)  # same folder: atomic, and never moves `run_dir` *into* an existing target
    logger.warning(f"fresh_start: moved the existing run folder to {target}")
    return target


# Metrics that say how the run went rather than how good the model is: not in the card's table.
# The Auto class a loading snippet uses, when the config's `auto_map` names several.
_PREFERRED_AUTO = ("AutoModelForCausalLM", "AutoModelForSeq2SeqLM", "AutoModel")
_VERSIONED = ("torch", "transformers", "tokenizers", "datasets", "accelerate", "huggingface_hub")
LOAD_FROM = "path/to/model"  # the loading snippet's placeholder; `core.hub` writes the repo id in its place


# Loading options transformers records in a tokenizer's init kwargs and `save_pretrained` writes back: true only of
# the machine that loaded it (an offline cache, a token), wrong or secret in a pushed folder.
_LOAD_ONLY_TOKENIZER_KEYS = (
    "is_local",
    "local_files_only",
    "cache_dir",
    "token",
    "use_auth_token",
    "_commit_hash",
    "force_download",
    "proxies",
)


def scrub_tokenizer_configs(folder: str | os.PathLike) -> list[Path]:
    """Drop the load-only keys from every `tokenizer_config.json` under `folder` (a backbone's included); returns
    the files changed."""
    changed = []
    for path in sorted(Path(folder).rglob("tokenizer_config.json")):
        config = _read_json(path)
        if any(k in config for k in _LOAD_ONLY_TOKENIZER_KEYS):
            write_json_atomic(path, {k: v for k, v in config.items() if k not in _LOAD_ONLY_TOKENIZER_KEYS})
            changed.append(path)
    return changed


# In metrics.json but not a result of the run (bookkeeping, how fast the evaluation ran): not on the card and not
# sent to the report_to backends (`core.reporting`).
NOT_HEADLINE = frozenset({"world_size", "epoch", "step", "global_step", "total_flos", "train_samples", "eval_samples"})
_NOT_HEADLINE_RE = re.compile(r"(_runtime|_samples_per_second|_steps_per_second|_flos|_jit_compilation_time|_mem_.*)$")


def is_headline(key: str) -> bool:
    """Whether a final metric is a result of the run (the backends and the model card show it)."""
    return key not in NOT_HEADLINE and not _NOT_HEADLINE_RE.search(key)


def headline_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """The metrics a model card shows: numbers and short strings, without runtimes, throughputs, epochs or the
    world size (they describe the machine and the run, not the model); lists and dicts stay in `metrics.json`."""
    return {
        k: v
        for k, v in metrics.items()
        if is_headline(k) and (isinstance(v, (int, float)) or (isinstance(v, str) and len(v) <= 200))
    }


def launch_command(config_path: str | os.PathLike | None = None, argv: list[str] | None = None) -> str | None:
    """The command line that started this process, as it would be typed (`accelerate launch trainers/run.py
    --config x.json --max_steps 6`), or None when the process is not a run started from the command line (a
    sweep, a notebook, a test calling `main` in-process) or its `--config` is not the run's `config_path`.

    The launcher's own flags are not visible to its workers; they are rebuilt from what it sets in the
    environment (the number of processes, mixed precision)."""
    argv = list(sys.argv if argv is None else argv)
    if not argv:
        return None
    script, args = Path(argv[0]), argv[1:]
    if script.name == "__main__.py" and script.parent.name == "hf_experiments":
        entry = ["-m", "hf_experiments"]
    elif script.parent.name == "trainers" and script.suffix == ".py":
        entry = [_shown_path(script)]
    elif script.name == "hfe" and args[:1] == ["run"]:
        entry = ["hfe"]
    elif script.name == "hfe" and args[:1] != [] and args[0].startswith("--"):  # `hfe --config x`: `hfe run`'s
        entry, args = ["hfe"], ["run", *args]
    else:
        return None
    given = next((args[i + 1] for i, a in enumerate(args[:-1]) if a == "--config"), None)
    given = next((a.split("=", 1)[1] for a in args if a.startswith("--config=")), given)
    if (given is None) != (config_path is None) or (
        given is not None and Path(given).resolve() != Path(config_path).resolve()
    ):
        return None  # e.g. a sweep config's command: it does not reproduce this one run
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if os.environ.get("ACCELERATE_MIXED_PRECISION") is not None:  # set by `accelerate launch` for its workers
        launcher = ["accelerate", "launch"] + (["--multi_gpu", "--num_processes", str(world)] if world > 1 else [])
        precision = os.environ["ACCELERATE_MIXED_PRECISION"]
        launcher += ["--mixed_precision", precision] if precision not in ("", "no") else []
    elif "LOCAL_RANK" in os.environ:  # torchrun
        launcher = ["torchrun", "--nproc_per_node", os.environ.get("LOCAL_WORLD_SIZE", str(world))]
    else:
        launcher = [] if entry == ["hfe"] else ["python"]
    if entry == ["hfe"] and launcher:
        entry = [shutil.which("hfe") or argv[0]]  # a launcher needs the script's path
    return shlex.join([*launcher, *entry, *_without_secrets(args)])


# Keys whose value is a secret: never written (the card's command line, sweep job files).
SECRET_KEY_RE = re.compile(r"^(hub_token|token|use_auth_token|hf_token)$|api_key$|password|secret", re.I)


def _without_secrets(args: list[str]) -> list[str]:
    """The arguments less every secret one (`--hub_token X`, `--hub_token=X`): the card and logs are shared."""
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
            if not a.startswith("--"):
                continue
        key = a[2:].split("=", 1)[0].replace("-", "_") if a.startswith("--") else None
        if key is not None and SECRET_KEY_RE.search(key):
            skip = "=" not in a
            continue
        out.append(a)
    return out


def _shown_path(script: Path) -> str:
    """`script` relative to the working directory when it lies below it (`trainers/run.py`), else absolute."""
    try:
        return script.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(script.resolve())


def write_model_card(
    model_dir: str | os.PathLike,
    experiment: str,
    config: dict,
    metrics: dict,
    note: str | None = None,
    command: str | None = None,
) -> None:
    """`model_dir/README.md`, a `huggingface_hub.ModelCard`: what the model is, its headline metrics, how to load
    it (with the package and with `trust_remote_code=True` without it), the command that trained it and the
    framework versions; and `model_dir/run_config.json`, the config it names (the run folder's, as parsed,
    when `model_dir` is a run's `model/`; else `config`), so the folder alone retrains it.

    `note` is a paragraph from the experiment (e.g. where the backbone comes from); `command` the launch command
    line (`launch_command()`), when known."""
    from huggingface_hub import ModelCard, ModelCardData

    model_dir = Path(model_dir)
    parsed = model_dir.parent / RUN_CONFIG
    if parsed.is_file():
        shutil.copyfile(parsed, model_dir / RUN_CONFIG)
    else:
        write_json_atomic(model_dir / RUN_CONFIG, config)
    model_config = _read_json(model_dir / "config.json")
    auto_map = model_config.get("auto_map") or {}
    auto_class = next((a for a in _PREFERRED_AUTO if a in auto_map), None) or next(
        (a for a in auto_map if a != "AutoConfig"), "AutoModel"
    )
    architecture = (model_config.get("architectures") or [None])[0]
    what = f"A `{architecture}` (model type `{model_config.get('model_type')}`)" if architecture else "A model"
    tokenizer = (model_dir / "tokenizer_config.json").is_file()

    scalars = headline_metrics(metrics)
    rows = "\n".join(
        f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {str(v).replace('|', chr(92) + '|')} |"
        for k, v in scalars.items()
    )  # a `|` inside a value (sacreBLEU's signature) would end its table cell
    imports = ", ".join([auto_class, *(["AutoTokenizer"] if tokenizer else [])])

    def load(extra: str) -> str:
        lines = [f'model = {auto_class}.from_pretrained("{LOAD_FROM}"{extra})']
        if tokenizer:
            lines.append(f'tokenizer = AutoTokenizer.from_pretrained("{LOAD_FROM}"{extra})')
        return "\n".join(lines)

    retrain = f"python trainers/run.py --config {RUN_CONFIG}"
    trained = (
        f"Trained with\n\n```bash\n{command}\n```\n\n" if command else f"Trained with the config in `{RUN_CONFIG}`.\n\n"
    )
    data = ModelCardData(library_name="transformers", tags=["hf_experiments", experiment])
    card = ModelCard(
        f"---\n{data.to_yaml()}\n---\n\n"
        f"# {config.get('exp_name', experiment)}\n\n"
        f"{what} trained by the `hf_experiments` experiment `{experiment}`.\n\n"
        + (f"{note}\n\n" if note else "")
        + (f"## Final evaluation\n\n| metric | value |\n|---|---|\n{rows}\n\n" if rows else "")
        + "## How to load\n\nWhere `hf_experiments` is not installed, with the code saved in this folder:\n\n"
        f"```python\nfrom transformers import {imports}\n\n{load(', trust_remote_code=True')}\n```\n\n"
        "With `hf_experiments` installed, importing it registers the classes (no `trust_remote_code`):\n\n"
        f"```python\nimport hf_experiments\nfrom transformers import {imports}\n\n{load('')}\n```\n\n"
        f"## Training\n\n{trained}"
        f"`{RUN_CONFIG}` in this folder is the resolved config; in a clone of `hf_experiments`, `{retrain}` trains "
        "the same run again.\n\n"
        f"## Framework versions\n\n{_framework_versions()}\n"
    )
    card.save(model_dir / "README.md")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _framework_versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    lines = []
    for name in (*_VERSIONED, "hf-experiments"):  # the installed distribution's version (core imports no package root)
        try:
            lines.append(f"- {name.replace('-', '_')} {version(name)}")
        except PackageNotFoundError:
            continue
    return "\n".join(lines)


def is_disk_full(exc: BaseException, folder: str | os.PathLike | None = None) -> bool:
    """ENOSPC anywhere in the exception's chain, or (torch and safetensors often lose the errno: "iostream
    error") an error while `folder`'s filesystem has under 1 MiB free, as a write that ran out leaves it."""
    seen, e = 0, exc
    while e is not None and seen < 10:
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(e) or "os error 28" in str(e):
            return True
        e, seen = e.__cause__ or e.__context__, seen + 1
    if folder is not None:
        path = Path(folder)
        while not path.exists() and path != path.parent:
            path = path.parent
        try:
            return shutil.disk_usage(path).free < 1 << 20
        except OSError:
            return False
    return False
