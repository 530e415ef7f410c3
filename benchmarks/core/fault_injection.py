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
Prints one line per trial and the summary `tried N, survived N`; writes `fault_injection.json` into `--out`
(`--summarize DIR [DIR ...]` prints the summary of several campaigns, e.g. one per rank count run side by side;
a trial (setup, ranks, phase or k-th random moment) in several counts from the last one named).
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

sys.path.insert(0, str(ROOT))
from tests.helpers import TINY_ARROWS, TINY_DATA_CACHE, logged_history  # noqa: E402

# Longer than the tests' runs (more checkpoints, so rotation and every phase happen mid-run), rotating.
PLAIN = {**TINY_ARROWS, "num_vectors": 512, "max_steps": 40, "save_steps": 8, "per_device_train_batch_size": 8}
PLAIN["save_total_limit"] = 2
CACHE = {**TINY_DATA_CACHE, "logging_steps": 3, "save_total_limit": 2}
CACHE.pop("star_loops")
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
# Reached by the main process only (it alone writes markers, rotates and saves the final model).
MAIN_ONLY = {
    "save:start",
    "save:unmarked",
    "complete:before-marker",
    "complete:marker-written",
    "rotate:doomed-unmarked",
    "end:model-saved",
    "end:metrics-written",
    "end:finished",
    "end:sigterm-during-save",
    "cache:rows-saved",
}


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
        procs = []
    proc.kill()  # the command itself in any case
    for p in procs:
        try:
            p.kill()
        except psutil.Error:
            pass
    # Not the command itself: psutil would reap it, and `Popen.wait` would then report exit status 0.
    psutil.wait_procs([p for p in procs if p.pid != proc.pid], timeout=60)


def summary(run_dir: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    from tests.helpers import TIMING_KEYS

    weights = load_file(str(run_dir / "model" / "model.safetensors"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {
        "weights": {k: v.numpy().tobytes() for k, v in weights.items()},
        "log": logged_history(run_dir),
        "metrics": {k: v for k, v in metrics.items() if not any(t in k for t in TIMING_KEYS)},
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
        extra["HF_FAULT_NTH"] = "1" if fault["phase"].startswith(("end:", "cache:", "rotate:")) else "2"
        first = start(command(cfg, ranks, FAULT_RUNNER), log, extra).wait(timeout=1800)
    else:
        proc = start(command(cfg, ranks), log)
        time.sleep(fault["at"])
        if proc.poll() is not None:  # the run ended before the moment drawn: no fault happened
            shutil.rmtree(folder, ignore_errors=True)
            return {"name": name, "missed": True}
        if fault["signal"] == "SIGKILL":
            kill_tree(proc)
        else:
            proc.send_signal(getattr(signal, fault["signal"]))
        first = proc.wait(timeout=1800)
    if first == 0:  # the planted fault was never reached on that rank, or the run ended just before the signal
        shutil.rmtree(folder, ignore_errors=True)
        return {"name": name, "missed": True}
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
    ap.add_argument(
        "--summarize", nargs="+", metavar="PATH", help="only print the summary of earlier campaigns (folders or json)"
    )
    args = ap.parse_args(argv)
    if args.summarize:  # a later campaign's trial replaces an earlier one's (same setup, ranks and phase/k-th random)
        latest: dict[tuple, dict] = {}
        for d in args.summarize:
            k: dict[tuple, int] = {}
            path = Path(d) if Path(d).is_file() else Path(d) / "fault_injection.json"
            for r in json.loads(path.read_text()):
                group = (r["setup"], r["ranks"])
                if r["kind"] == "random":
                    k[group] = k.get(group, -1) + 1
                latest[(*group, r.get("phase") or f"random-{k[group]}")] = r
        return report(list(latest.values()))
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
            faults = [
                {"kind": "phase", "phase": p, "rank": 0 if p in MAIN_ONLY else i % ranks} for i, p in enumerate(phases)
            ]
            for _ in range(args.random):
                sig = rng.choice(["SIGKILL", "SIGKILL", "SIGTERM", "SIGUSR1"])
                faults.append({"kind": "random", "signal": sig})
            for i, fault in enumerate(faults):
                for _ in range(5):  # a moment after the run already ended is drawn again
                    if fault["kind"] == "random":
                        fault["at"] = round(rng.uniform(0.0, 0.95 * seconds), 2)
                    res = trial(f"{setup}-{ranks}-{i}", setup, ranks, work, ref, fault)
                    if not res.get("missed"):
                        break
                if res.get("missed"):
                    print(f"{setup} x{ranks} {fault.get('phase', 'random')}: the fault was never reached", flush=True)
                    continue
                label = fault.get("phase") or f"{fault['signal']}@{fault['at']}s"
                results.append(res)
                status = "survived" if res["survived"] else f"BROKE: {res['problem']}"
                print(
                    f"{setup} x{ranks} {label} (rank {fault.get('rank', '-')}, first exit {res['first_exit']}): "
                    f"{status}",
                    flush=True,
                )
    (work / "fault_injection.json").write_text(json.dumps(results, indent=1))
    return report(results)


def report(results: list[dict[str, Any]]) -> int:
    """The summary line. A trial whose faulted run still exited 0 had no fault (a planted phase that rank never
    reaches, a moment after the run had ended): not counted."""
    tried = [r for r in results if r.get("first_exit") != 0]
    survived = sum(r["survived"] for r in tried)
    kinds = {k: sum(r.get("kind") == k for r in tried) for k in ("random", "phase")}
    setups = sorted({f"{r['setup']} x{r['ranks']}" for r in tried})
    print(f"({kinds['random']} random moments, {kinds['phase']} planted phases; {', '.join(setups)})")
    print(f"tried {len(tried)}, survived {survived}")
    return 0 if survived == len(tried) else 1


if __name__ == "__main__":
    sys.exit(main())
