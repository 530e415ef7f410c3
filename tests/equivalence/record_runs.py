"""Record short runs of every shipped config family, to prove a refactor changes no behaviour.

    python tests/equivalence/record_runs.py --out tests/equivalence/pre_layout.json      # record
    python tests/equivalence/record_runs.py --check tests/equivalence/pre_layout.json    # compare

Each case is a real `trainers/run.py` (or `trainers/sweep.py`, or a two-rank `accelerate launch`) command on a
shipped config with overrides that make it take seconds. What is recorded per case: `metrics.json` and the
final checkpoint's `log_history` without timing keys, a SHA-256 per tensor of `model/model.safetensors`, and
hashes of the run's CSV outputs (data-cache history, manipulation rounds, sweep table). Only the command line
is used, so the same script runs on the code before and after a move. The hashes hold for one torch build on
one CPU kind: the record stores both, and `--check` says when they differ.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import hashlib
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TIMING = re.compile(r"runtime|per_second|seconds|_time|time_share")

# name -> (entry script or "two_ranks", config file, overrides); {backbone}, {gru_model} and {matrix20} are
# filled in at run time.
_BLOTCH_SMALL = [
    "--max_steps",
    "30",
    "--init_samples",
    "500",
    "--val_samples",
    "100",
    "--ood_samples",
    "40",
    "--gen_eval_samples",
    "40",
    "--eval_steps",
    "15",
    "--save_steps",
    "15",
    "--per_device_eval_batch_size",
    "40",
    "--logging_steps",
    "5",
]
_CACHE_SMALL = [
    "--init_samples",
    "600",
    "--val_samples",
    "100",
    "--ood_samples",
    "40",
    "--gen_eval_samples",
    "40",
    "--max_steps",
    "60",
    "--eval_steps",
    "30",
    "--save_steps",
    "20",
    "--logging_steps",
    "5",
    "--per_device_eval_batch_size",
    "40",
    "--manip_batch_size",
    "100",
    "--history_eval_samples",
    "20",
]
_ARROWS_SMALL = [
    "--max_steps",
    "30",
    "--n_val",
    "200",
    "--eval_steps",
    "15",
    "--save_steps",
    "15",
    "--logging_steps",
    "5",
    "--per_device_eval_batch_size",
    "100",
    "--warmup_steps",
    "5",
]
_GRU_SMALL = [
    "--state_size",
    "32",
    "--n_train",
    "5000",
    "--n_valid",
    "200",
    "--n_valid_extra",
    "100",
    "--max_steps",
    "40",
    "--eval_steps",
    "20",
    "--save_steps",
    "20",
    "--logging_steps",
    "5",
    "--per_device_eval_batch_size",
    "100",
]
_INTERVENTION_SMALL = [
    "--gru_model",
    "{gru_model}",
    "--n_train",
    "5000",
    "--n_valid",
    "200",
    "--n_valid_extra",
    "100",
    "--max_steps",
    "20",
    "--eval_steps",
    "10",
    "--save_steps",
    "10",
    "--logging_steps",
    "5",
    "--per_device_train_batch_size",
    "64",
    "--per_device_eval_batch_size",
    "100",
]
_CMP_SMALL = [
    "--model_string",
    "{backbone}",
    "--cmp_len",
    "8",
    "--seq_len",
    "8",
    "--max_steps",
    "12",
    "--per_device_train_batch_size",
    "8",
    "--save_steps",
    "6",
    "--logging_steps",
    "3",
    "--max_train_windows",
    "400",
    "--max_val_windows",
    "32",
    "--per_device_eval_batch_size",
    "16",
    "--free_run_tokens",
    "4",
    "--warmup_steps",
    "2",
]
_MLP_SMALL = [
    "--max_steps",
    "30",
    "--width",
    "64",
    "--n_test",
    "256",
    "--grab_every",
    "10",
    "--save_steps",
    "15",
    "--logging_steps",
    "5",
]

CASES: dict[str, tuple[str, str, list[str]]] = {
    "cmp": ("run", "cmp.json", _CMP_SMALL),
    "cmp_rmb": ("run", "cmp.json", [*_CMP_SMALL, "--n_cmps", "2", "--rmb_task", "true", "--proj_cmps", "true"]),
    "linear_forward": ("run", "linear_forward.json", [*_ARROWS_SMALL, "--num_vectors", "2000"]),
    "linear_backward": ("run", "linear_backward.json", [*_ARROWS_SMALL, "--num_vectors", "2000"]),
    "linear_gpt1_forward": (
        "run",
        "linear_gpt1_forward.json",
        [
            *_ARROWS_SMALL,
            "--num_vectors",
            "1000",
            "--model_preset",
            "tiny",
            "--dataloader_num_workers",
            "0",
            "--per_device_train_batch_size",
            "32",
            "--max_eval_batches",
            "2",
        ],
    ),
    "primes_forward": ("run", "primes_forward.json", [*_ARROWS_SMALL, "--n_pairs", "2000"]),
    "primes_backward": ("run", "primes_backward.json", [*_ARROWS_SMALL, "--n_pairs", "2000"]),
    "blotch_vanilla": ("run", "blotch_vanilla.json", _BLOTCH_SMALL),
    "blotch_vanilla_microbatch": (
        "run",
        "blotch_vanilla.json",
        [*_BLOTCH_SMALL, "--per_device_batch_size", "24", "--length_bucketed_sampling", "true"],
    ),
    "blotch": ("run", "blotch.json", _BLOTCH_SMALL),
    "direct": ("run", "direct.json", _BLOTCH_SMALL),
    "blotch_axe": ("run", "blotch_axe.json", [*_CACHE_SMALL, "--pre_epochs", "2", "--last_aug_epoch", "4"]),
    "blotch_axe_twin": ("run", "blotch_axe_twin.json", [*_CACHE_SMALL, "--pre_epochs", "2", "--aug_mod", "2"]),
    "blotch_star": (
        "run",
        "blotch_star.json",
        [*_CACHE_SMALL, "--max_samples", "900", "--star_loops", "1", "--pre_epochs", "1"],
    ),
    "blotch_internalize": (
        "run",
        "blotch_axe.json",
        [*_CACHE_SMALL, "--axe_loops", "0", "--internalize_steps", "1", "--pre_epochs", "1", "--last_aug_epoch", "3"],
    ),
    "blotch_axe_2ranks": (
        "two_ranks",
        "blotch_axe.json",
        [*_CACHE_SMALL, "--pre_epochs", "2", "--last_aug_epoch", "4", "--per_device_train_batch_size", "32"],
    ),
    "gru_repeat": ("run", "gru_repeat.json", _GRU_SMALL),
    "gru_repeat_microbatch_2ranks": (
        "two_ranks",
        "gru_repeat.json",
        [*_GRU_SMALL, "--per_device_batch_size", "12", "--length_bucketed_sampling", "true", "--min_len", "5"],
    ),
    "gru_onion": ("run", "gru_onion.json", _INTERVENTION_SMALL),
    "gru_linear": ("run", "gru_linear.json", _INTERVENTION_SMALL),
    "mlp": ("run", "mlp.json", _MLP_SMALL),
    "mlp_offline_ntk": (
        "run",
        "mlp.json",
        [
            *_MLP_SMALL,
            "--online",
            "false",
            "--parameterization",
            "ntk",
            "--lr_sched_steps",
            "10",
            "20",
            "--lr_scheduler_type",
            "constant",
        ],
    ),
    "mlp_mup_sweep": (
        "sweep",
        "mlp_mup_sweep.json",
        ["--sweep", '{"width": [64, 128], "trial": [0, 1]}', "--max_steps", "20", "--n_test", "256"],
    ),
}
DEPENDS = {"gru_onion": "gru_repeat", "gru_linear": "gru_repeat"}


def env(workdir: Path) -> dict[str, str]:
    e = dict(os.environ)
    e.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="1",
        HF_EXPERIMENTS_CACHE=str(workdir / "cache"),
        HF_DATASETS_CACHE=str(workdir / "cache" / "datasets"),
        PYTHONPATH=str(ROOT) + os.pathsep + e.get("PYTHONPATH", ""),
    )
    return e


def build_backbone(workdir: Path) -> Path:
    """A tiny builtin-recipe backbone, built once per workdir (the code before and after must share it)."""
    out = workdir / "backbone"
    if (out / "config.json").is_file():
        return out
    code = (
        "import sys\n"
        "try:\n    from hf_experiments.compression.backbones import build_builtin_backbone\n"
        "except ImportError:\n    from hf_experiments.backbones import build_builtin_backbone\n"
        "build_builtin_backbone(sys.argv[1], progress=False, n_layer=2, n_embd=32, n_head=2, n_positions=64,"
        " vocab_size=300, max_steps=30, batch_size=8, max_chars=200_000)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(out)], check=True, env=env(workdir), cwd=ROOT)
    return out


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _fill(text: str, fill: dict[str, str]) -> str:
    for key, value in fill.items():
        text = text.replace("{" + key + "}", value)
    return text


def command(kind: str, config: str, overrides: list[str], save_root: Path, fill: dict[str, str]) -> list[str]:
    args = [
        "--config",
        str(ROOT / "configs" / config),
        "--save_root",
        str(save_root),
        *[_fill(o, fill) for o in overrides],
    ]
    if kind == "sweep":
        return [sys.executable, str(ROOT / "trainers" / "sweep.py"), *args]
    if kind == "two_ranks":
        launcher = str(Path(sys.executable).parent / "accelerate")
        return [
            launcher,
            "launch",
            "--multi_gpu",
            "--num_processes",
            "2",
            "--main_process_port",
            str(free_port()),
            str(ROOT / "trainers" / "run.py"),
            *args,
        ]
    return [sys.executable, str(ROOT / "trainers" / "run.py"), *args]


def _clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items() if not TIMING.search(k)}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def tensor_hashes(path: Path) -> dict[str, str]:
    import torch
    from safetensors import safe_open

    out = {}
    with safe_open(str(path), framework="pt") as f:
        for key in sorted(f.keys()):
            t = f.get_tensor(key)
            raw = t.contiguous().view(-1).view(torch.uint8).numpy().tobytes()  # any dtype, bit for bit
            out[key] = f"{t.dtype}{tuple(t.shape)}:" + hashlib.sha256(raw).hexdigest()
    return out


def csv_hash(path: Path) -> str:
    """Hash of a CSV with timing columns dropped."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    kept = [{k: v for k, v in r.items() if not TIMING.search(k) and k != "status_detail"} for r in rows]
    buf = io.StringIO()
    json.dump(kept, buf, sort_keys=True)
    return hashlib.sha256(buf.getvalue().encode()).hexdigest()


def summarize_run(run_dir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"metrics": _clean(json.loads((run_dir / "metrics.json").read_text()))}
    ckpts = sorted(run_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    if ckpts:
        state = json.loads((ckpts[-1] / "trainer_state.json").read_text())
        out["last_checkpoint"] = ckpts[-1].name
        out["log_history"] = _clean(state["log_history"])
    weights = run_dir / "model" / "model.safetensors"
    if weights.is_file():
        out["weights"] = tensor_hashes(weights)
    csvs = sorted(p for p in run_dir.rglob("*.csv") if "jobs" not in p.parts)
    out["csv"] = {str(p.relative_to(run_dir)): csv_hash(p) for p in csvs}
    return out


def summarize(kind: str, out_dir: Path) -> dict[str, Any]:
    if kind != "sweep":
        return summarize_run(out_dir)
    jobs = sorted(p.parent for p in out_dir.glob("*/metrics.json"))
    return {"jobs": {p.name: summarize_run(p) for p in jobs}, "results_csv": csv_hash(out_dir / "results.csv")}


def run_case(name: str, workdir: Path, fill: dict[str, str]) -> dict[str, Any]:
    kind, config, overrides = CASES[name]
    save_root = workdir / "runs" / name
    shutil.rmtree(save_root, ignore_errors=True)
    cmd = command(kind, config, overrides, save_root, fill)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env(workdir), cwd=ROOT, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"{name}: exit {proc.returncode}\n{' '.join(cmd)}\n{proc.stderr[-3000:]}")
    stem = Path(config).stem
    exp_name = json.loads((ROOT / "configs" / config).read_text()).get("exp_name", stem)
    return summarize(kind, save_root / exp_name)


def record(names: list[str], workdir: Path, jobs: int) -> dict[str, Any]:
    import torch

    fill = {"backbone": str(build_backbone(workdir)), "gru_model": ""}
    results: dict[str, Any] = {}
    first = [n for n in names if n not in DEPENDS]
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        futures = {pool.submit(run_case, n, workdir, fill): n for n in first}
        for fut in concurrent.futures.as_completed(futures):
            results[futures[fut]] = fut.result()
            print(f"done {futures[fut]}", flush=True)
        fill["gru_model"] = str(workdir / "runs" / "gru_repeat" / "gru_repeat" / "model")
        later = [n for n in names if n in DEPENDS]
        futures = {pool.submit(run_case, n, workdir, fill): n for n in later}
        for fut in concurrent.futures.as_completed(futures):
            results[futures[fut]] = fut.result()
            print(f"done {futures[fut]}", flush=True)
    backbone = tensor_hashes(Path(fill["backbone"]) / "model.safetensors")
    return {
        "platform": {
            "torch": torch.__version__,
            "machine": platform.machine(),
            "python": platform.python_version(),
            "processor": _cpu_model(),
        },
        "backbone": hashlib.sha256(json.dumps(backbone, sort_keys=True).encode()).hexdigest(),
        "cases": {n: results[n] for n in names},
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def diff(old: Any, new: Any, path: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new)):
            if k not in new:
                out.append(f"{path}/{k}: missing now")
            elif k not in old:
                out.append(f"{path}/{k}: new")
            else:
                out += diff(old[k], new[k], f"{path}/{k}")
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [d for i, (a, b) in enumerate(zip(old, new)) for d in diff(a, b, f"{path}[{i}]")]
    if isinstance(old, float) and isinstance(new, float) and old != old and new != new:
        return []  # NaN, recorded as NaN both times
    return [] if old == new else [f"{path}: {str(old)[:80]} -> {str(new)[:80]}"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", help="write the record here")
    p.add_argument("--check", help="compare with this record")
    p.add_argument("--only", nargs="*", default=None, help="case names (default: all)")
    p.add_argument("--workdir", default=None, help="runs and the backbone (default: a temporary folder)")
    p.add_argument("--jobs", type=int, default=2, help="cases run at once (each on one thread)")
    args = p.parse_args(argv)
    names = args.only or list(CASES)
    if args.check and not args.only:
        names = list(json.loads(Path(args.check).read_text())["cases"])
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="hfe_record_"))
    workdir.mkdir(parents=True, exist_ok=True)
    rec = record(names, workdir, args.jobs)
    if args.out:
        Path(args.out).write_text(json.dumps(rec, indent=1, sort_keys=True) + "\n")
        print(f"recorded {len(names)} cases into {args.out}")
    if args.check:
        old = json.loads(Path(args.check).read_text())
        if old["platform"] != rec["platform"]:
            print(f"note: recorded on {old['platform']}, checked on {rec['platform']}: hashes may differ")
        problems = diff(old["backbone"], rec["backbone"], "backbone")
        for n in names:
            problems += diff(old["cases"].get(n), rec["cases"][n], n)
        for line in problems:
            print(line)
        print(f"checked {len(names)} cases: {'identical' if not problems else f'{len(problems)} differences'}")
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
