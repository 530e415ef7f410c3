"""Fault campaign: kill or preempt real runs at random moments and at every phase of the checkpoint sequence,
rerun the same command, and check the result equals an uninterrupted run bit for bit.

    python benchmarks/core/fault_injection.py                     # the full campaign (about an hour on 2 cores)
    python benchmarks/core/fault_injection.py --random 4 --phases save:unmarked,end:after-training --ranks 1

Setups: a plain run (arrows, tiny GPT) and a data-cache run (blotch with axe + internalize rounds), each with one
process and with two gloo ranks (`trainers/launch.py`, the preemption-aware launch command). Faults: SIGKILL of
every process of the run (a machine crash), SIGTERM / SIGUSR1 (preemption) at a uniformly random moment of the
reference run's wall time, and a SIGKILL (or SIGTERM) planted at each named phase (`fault_runner.py`). After
the fault the same command is rerun until it exits 0 (at most 3 times). A trial survives when the final weights,
the whole `log_history` (timing keys aside) and `metrics.json` (timing keys aside) equal the uninterrupted run's.
Prints one line per trial and the summary `tried N, survived N`; writes `fault_injection.json` into `--out`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / "trainers" / "run.py"
LAUNCH = ROOT / "trainers" / "launch.py"
FAULT_RUNNER = Path(__file__).resolve().parent / "fault_runner.py"
TIMING = ("runtime", "per_second", "time")

PLAIN = dict(
    experiment="arrows",
    task="linear",
    matrix_n=4,
    matrix_k=2,
    num_vectors=512,
    n_val=32,
    model_preset="tiny",
    dropout=0.1,
    max_steps=40,
    save_steps=8,
    logging_steps=3,
    per_device_train_batch_size=8,
    learning_rate=3e-3,
    report_to="none",
    save_total_limit=2,
    dataloader_num_workers=0,
)
CACHE = dict(
    experiment="blotch",
    max_num=9,
    max_ents=3,
    init_samples=64,
    max_samples=96,
    val_samples=16,
    ood_samples=0,
    d_model=16,
    n_heads=2,
    n_layers=1,
    h_mult=2,
    max_posencs=64,
    blotch_p_min=0.0,
    blotch_p_max=0.4,
    n_btokens=3,
    drop_p=0.1,
    batch_size=16,
    per_device_eval_batch_size=16,
    num_train_epochs=3,
    logging_steps=3,
    save_steps=4,
    save_total_limit=2,
    report_to="none",
    lr=0.01,
    gen_eval_samples=4,
    max_eval_batches=1,
    axe_loops=1,
    axe_tol=10.0,
    abs_axe_tol=True,
    internalize_steps=1,
    aug_temp=1.0,
    manip_batch_size=8,
    history_eval_samples=8,
    dataloader_num_workers=0,
)
SETUPS = {"plain": PLAIN, "cache": CACHE}
COMMON_PHASES = [
    "save:start",
    "save:unmarked",
    "save:before-trainer-files",
    "save:model-written",
    "save:optimizer-written",
    "save:trainer-files-written",
    "save:window-written",
    "complete:before-marker",
    "complete:marker-written",
    "rotate:doomed-unmarked",
    "end:after-training",
    "end:before-final-save",
    "end:model-saved",
    "end:metrics-written",
    "end:finished",
    "end:sigterm-before-eval",
    "end:sigterm-during-save",
]
CACHE_PHASES = ["cache:mid-axe-round", "cache:mid-internalize-round", "cache:rows-saved"]


def env(extra: dict[str, str] | None = None) -> dict[str, str]:
    e = dict(os.environ)
    e.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    e.update(extra or {})
    return e


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(cfg: Path, ranks: int, script: Path = RUN) -> list[str]:
    if ranks == 1:
        return [sys.executable, str(script), "--config", str(cfg)]
    return [
        sys.executable,
        str(LAUNCH),
        "--multi_gpu",
        "--num_processes",
        str(ranks),
        "--main_process_port",
        str(free_port()),
        str(script),
        "--config",
        str(cfg),
    ]


def start(cmd: list[str], log: Path, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    f = open(log, "a")
    f.write(f"\n$ {' '.join(cmd)}  {extra_env or ''}\n")
    f.flush()
    return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env(extra_env))


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL every process of the run at once (a machine crash): the command, the launcher, the ranks."""
    import psutil

    try:
        procs = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.Error:
        return
    for p in procs:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(procs, timeout=60)


def summary(run_dir: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    def strip(d: dict) -> dict:
        return {k: v for k, v in d.items() if not any(t in k for t in TIMING)}

    weights = load_file(str(run_dir / "model" / "model.safetensors"))
    state = json.loads((run_dir / "trainer_state.json").read_text())
    return {
        "weights": {k: v.numpy().tobytes() for k, v in weights.items()},
        "log": [strip(h) for h in state["log_history"]],
        "metrics": strip(json.loads((run_dir / "metrics.json").read_text())),
    }


def compare(ref: dict[str, Any], got: dict[str, Any]) -> str | None:
    for key in ("weights", "log", "metrics"):
        if ref[key] != got[key]:
            if key == "log":
                diff = next((i for i, (a, b) in enumerate(zip(ref["log"], got["log"])) if a != b), None)
                return f"log differs (entry {diff}; {len(ref['log'])} vs {len(got['log'])} entries)"
            return f"{key} differ"
    return None


def rerun_until_done(cmd: list[str], log: Path, attempts: int = 3) -> int:
    code = -1
    for _ in range(attempts):
        code = start(cmd, log).wait(timeout=1800)
        if code == 0:
            return 0
    return code


def trial(name: str, setup: str, ranks: int, work: Path, ref: dict[str, Any], fault: dict[str, Any]) -> dict:
    folder = work / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    cfg = folder / "cfg.json"
    cfg.write_text(json.dumps({**SETUPS[setup], "save_root": str(folder / "out"), "exp_name": "run"}))
    log = folder / "log.txt"
    t0 = time.time()
    if fault["kind"] == "phase":
        extra = {"HF_FAULT": fault["phase"], "HF_FAULT_RANK": str(fault.get("rank", 0))}
        extra["HF_FAULT_NTH"] = "1" if fault["phase"].startswith(("end:", "cache:")) else "2"
        first = start(command(cfg, ranks, FAULT_RUNNER), log, extra).wait(timeout=1800)
    else:
        proc = start(command(cfg, ranks), log)
        time.sleep(fault["at"])
        if proc.poll() is None:
            if fault["signal"] == "SIGKILL":
                kill_tree(proc)
            else:
                proc.send_signal(getattr(signal, fault["signal"]))
        first = proc.wait(timeout=1800)
    code = rerun_until_done(command(cfg, ranks), log)
    problem = f"rerun exited {code}" if code else compare(ref, summary(folder / "out" / "run"))
    result = {"name": name, "setup": setup, "ranks": ranks, **fault, "first_exit": first, "survived": not problem}
    result.update(problem=problem, seconds=round(time.time() - t0, 1))
    if not problem:
        shutil.rmtree(folder, ignore_errors=True)  # keep only the folders of failures
    return result


def reference(setup: str, ranks: int, work: Path) -> tuple[dict[str, Any], float]:
    folder = work / f"ref-{setup}-{ranks}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    cfg = folder / "cfg.json"
    cfg.write_text(json.dumps({**SETUPS[setup], "save_root": str(folder / "out"), "exp_name": "run"}))
    t0 = time.time()
    code = start(command(cfg, ranks), folder / "log.txt").wait(timeout=1800)
    if code != 0:
        raise SystemExit(f"the uninterrupted {setup} run with {ranks} rank(s) failed: see {folder / 'log.txt'}")
    return summary(folder / "out" / "run"), time.time() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--random", type=int, default=13, help="random-moment faults per setup and rank count")
    ap.add_argument("--phases", default="all", help="comma-separated phases, 'all' or 'none'")
    ap.add_argument("--ranks", default="1,2")
    ap.add_argument("--setups", default="plain,cache")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="outputs/fault_injection")
    args = ap.parse_args(argv)
    work = Path(args.out).resolve()
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    results = []
    for setup in args.setups.split(","):
        for ranks in (int(r) for r in args.ranks.split(",")):
            ref, seconds = reference(setup, ranks, work)
            print(f"reference {setup} x{ranks}: {seconds:.1f} s", flush=True)
            phases = COMMON_PHASES + (CACHE_PHASES if setup == "cache" else [])
            if args.phases == "none":
                phases = []
            elif args.phases != "all":
                phases = [p for p in args.phases.split(",") if p in phases]
            faults = [{"kind": "phase", "phase": p, "rank": (i % ranks)} for i, p in enumerate(phases)]
            for _ in range(args.random):
                sig = rng.choice(["SIGKILL", "SIGKILL", "SIGTERM", "SIGUSR1"])
                faults.append({"kind": "random", "signal": sig, "at": round(rng.uniform(0.0, seconds), 2)})
            for i, fault in enumerate(faults):
                label = fault.get("phase") or f"{fault['signal']}@{fault['at']}s"
                res = trial(f"{setup}-{ranks}-{i}", setup, ranks, work, ref, fault)
                results.append(res)
                status = "survived" if res["survived"] else f"BROKE: {res['problem']}"
                print(
                    f"{setup} x{ranks} {label} (rank {fault.get('rank', '-')}, first exit {res['first_exit']}): "
                    f"{status}",
                    flush=True,
                )
    survived = sum(r["survived"] for r in results)
    (work / "fault_injection.json").write_text(json.dumps(results, indent=1))
    print(f"tried {len(results)}, survived {survived}")
    return 0 if survived == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
