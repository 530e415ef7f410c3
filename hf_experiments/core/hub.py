"""Push a finished run to the Hugging Face Hub: its final model and its TensorBoard logs, as one model repo.

The repo holds `model/`'s files at its root (weights, configuration, modeling and tokenizer code, tokenizer,
`run_config.json` and the model card, whose loading snippet then names the repo), so
`AutoModel*.from_pretrained("<repo id>", trust_remote_code=True)` loads it, and the run's TensorBoard event
files under `runs/` (the Hub shows them in its "Training metrics" tab). `training_args.bin` is left out: a
pickle the Hub flags, not needed to load the model, and `run_config.json` holds the same settings.

`push_run` (and `trainers/push_run.py <run_dir> <repo_id> [--private]`) lays this out in a temporary folder
(hard links where possible, so large weights are not copied) and uploads it with `HfApi.create_repo` and
`HfApi.upload_folder`. Exit status of the script: 0 pushed, 2 bad arguments (not a finished run folder, not a
repo id), 1 the Hub could not be reached or refused the upload (offline, no network, no token): one line, and
nothing is written locally.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from .config import ConfigError
from .run_folder import LOAD_FROM

MODEL_DIR = "model"
LOGS_DIR = "runs"  # where the Trainer's TensorBoard writer puts them (`logging_dir`), in the run and in the repo
LEFT_OUT = ("training_args.bin",)


class HubUnavailable(RuntimeError):
    """The Hub could not be reached, or refused the upload: one line saying why; nothing was written locally."""


def hub_offline() -> bool:
    """`HF_HUB_OFFLINE` (or `TRANSFORMERS_OFFLINE`) as huggingface_hub read it at import, or as set since."""
    from huggingface_hub import constants

    now = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return constants.is_offline_mode() or now.upper() in {"1", "ON", "YES", "TRUE"}


def stage_run(run_dir: str | os.PathLike, out_dir: str | os.PathLike, repo_id: str | None = None) -> list[str]:
    """Lay out in `out_dir` what `push_run` uploads, and return its paths (relative, sorted).

    `model/`'s files at the top (less `LEFT_OUT`), the TensorBoard logs under `runs/`; the model card's loading
    snippet names `repo_id` instead of its placeholder path. Files are hard links to the run's where the
    filesystem allows (else copies); the card is always a new file, so the run folder is never changed."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    model_dir = check_run_dir(run_dir)
    sources = {p.relative_to(model_dir): p for p in model_dir.rglob("*") if p.is_file() and p.name not in LEFT_OUT}
    logs = run_dir / LOGS_DIR
    if logs.is_dir():
        sources.update({Path(LOGS_DIR) / p.relative_to(logs): p for p in logs.rglob("*") if p.is_file()})
    for rel, source in sources.items():
        target = out_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if rel == Path("README.md"):
            text = source.read_text(encoding="utf-8")
            target.write_text(text.replace(f'"{LOAD_FROM}"', f'"{repo_id}"') if repo_id else text, encoding="utf-8")
            continue
        try:
            os.link(source, target)
        except OSError:  # another filesystem, or links not allowed
            shutil.copy2(source, target)
    return sorted(rel.as_posix() for rel in sources)


def check_run_dir(run_dir: Path) -> Path:
    """`run_dir/model`, when `run_dir` is a finished run folder (its final model saved); else a `ConfigError`."""
    model_dir = run_dir / MODEL_DIR
    if not (model_dir / "config.json").is_file():
        raise ConfigError("run_dir", str(run_dir), "a finished run folder (with model/config.json)")
    return model_dir


def push_run(run_dir: str | os.PathLike, repo_id: str, *, private: bool | None = None, token: str | None = None) -> str:
    """Upload a finished run (see the module docstring) to the model repo `repo_id`, created if missing; returns
    the commit URL. Raises `ConfigError` for a bad `run_dir` / `repo_id` and `HubUnavailable` when the Hub cannot
    be reached (offline mode, no network) or refuses (no token, no permission); nothing is written locally."""
    from huggingface_hub import HfApi
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    run_dir = Path(run_dir)
    check_run_dir(run_dir)
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise ConfigError("repo_id", repo_id, "a Hub repo id: 'name' or 'namespace/name'") from None
    if hub_offline():
        raise HubUnavailable(f"cannot push {run_dir} to {repo_id}: HF_HUB_OFFLINE is set (unset it to upload)")
    api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="hfe-push-") as staging:
        stage_run(run_dir, staging, repo_id)
        try:
            repo = api.create_repo(repo_id, private=private, exist_ok=True)
            info = api.upload_folder(
                repo_id=repo.repo_id, folder_path=staging, commit_message=f"Upload run {run_dir.name}"
            )
        except _network_errors() as err:
            reason = " ".join(str(err).split())[:200]
            raise HubUnavailable(f"cannot push {run_dir} to {repo_id}: {type(err).__name__}: {reason}") from None
    return str(getattr(info, "commit_url", info))


def _network_errors() -> tuple[type[BaseException], ...]:
    """What a failed Hub call raises: huggingface_hub's own errors (HTTP status, offline, no token) are
    OSErrors; a connection that fails is its HTTP client's error (httpx, or httpx2 in huggingface_hub 2)."""
    clients = (sys.modules.get(name) for name in ("httpx2", "httpx"))
    return (OSError, *(c.HTTPError for c in clients if c is not None and hasattr(c, "HTTPError")))


def main(argv: list[str] | None = None) -> int:
    """`trainers/push_run.py <run_dir> <repo_id> [--private]`; the exit status is in the module docstring."""
    parser = argparse.ArgumentParser(
        prog="hfe push",
        description="Upload a finished run (its model/ and TensorBoard logs) to a Hugging Face Hub model repo.",
    )
    parser.add_argument("run_dir", help="the run folder, <save_root>/<exp_name>")
    parser.add_argument("repo_id", help="the model repo, 'namespace/name' (created if missing)")
    parser.add_argument("--private", action="store_true", help="create the repo private")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        url = push_run(args.run_dir, args.repo_id, private=args.private or None)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    except HubUnavailable as e:
        print(e, file=sys.stderr)
        return 1
    print(url)
    return 0
