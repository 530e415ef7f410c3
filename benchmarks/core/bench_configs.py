"""Training steps/s of shipped configs, this tree (B) against a pinned commit (A), interleaved A B B A rounds.

Each measurement is a fresh process that parses the config, builds the experiment's data, model and trainer
exactly as `hfe run` does and trains `--steps` steps (no checkpoint, no final evaluation); the number is the
steady-state rate, steps/s after the first 10 (first calls, and the thread choice of `torch_threads: auto`, which
a run of thousands of steps pays once), and real (non-padding) input tokens/s over the same steps; the
Trainer's own `train_steps_per_second` over all steps is kept too.
Rounds alternate the order (A B, then B A) so a drift in machine load hits both sides alike; every round's ratio
B/A is kept, and the median and range are reported, with the load average before each run. `--busy N` runs N
busy-looping processes beside the measurements (a shared machine). Each side runs its own `configs/<name>.json`.

    python benchmarks/core/bench_configs.py --base 9c58c00 --configs blotch gru_repeat gru_onion cmp --rounds 3
    python benchmarks/core/bench_configs.py --base 9c58c00 --busy 1
    python benchmarks/core/bench_configs.py --base . --configs blotch \
        --a_args "--pack_rows false" --b_args "--pack_rows true"

A is a `git worktree` of `--base` under the temporary folder (made once, reused). The GRU intervention configs
read a stage-one model: a short `gru_repeat` run of this tree makes one for both sides. The last line printed
is JSON: {"base": ..., "busy": ..., "configs": {name: {"ratio_median": ..., "ratio_min": ..., ...}}}.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# One process: parse, build, train; print the Trainer's steps/s. Works on any commit with the core API.
_DRIVER = r"""
import json, sys, time
from transformers import TrainerCallback
from hf_experiments.core.parsing import parse_config_strict

class Clock(TrainerCallback):  # steady state: the steps after the first WARM (first calls, thread choice)
    def on_step_end(self, args, state, control, **kw):
        if state.global_step == WARM:
            self.t0, self.tokens0 = time.perf_counter(), state.num_input_tokens_seen

WARM = int(sys.argv[1])
cfg = parse_config_strict(sys.argv[2:])
exp = cfg.experiment_cls(cfg)
data = exp.build_data()
model = exp.build_model()
trainer = exp.build_trainer(model, data)
trainer.args.include_num_input_tokens_seen = "non_padding"  # not settable on the command line (a bool there)
clock = Clock()
trainer.add_callback(clock)
out = trainer.train()
seconds = time.perf_counter() - clock.t0
steady = (trainer.state.global_step - WARM) / seconds
tokens = (trainer.state.num_input_tokens_seen - clock.tokens0) / seconds  # real (non-padding) input tokens
import torch
print("RESULT " + json.dumps({"steps_per_second": steady, "all_steps_per_second": out.metrics["train_steps_per_second"],
                              "tokens_per_second": tokens, "threads": torch.get_num_threads()}))
"""
WARM_STEPS = 10  # the thread choice (core/threads.py) takes 9


def _busy() -> None:
    while True:
        pass


def worktree(base: str) -> Path:
    """A checkout of `base` (made once under the temporary folder; its `.venv`-free tree uses this interpreter)."""
    rev = subprocess.run(["git", "rev-parse", "--short", base], cwd=ROOT, capture_output=True, text=True, check=True)
    path = Path(tempfile.gettempdir()) / f"hfe_base_{rev.stdout.strip()}"
    if not path.is_dir():
        subprocess.run(["git", "worktree", "add", "--detach", str(path), base], cwd=ROOT, check=True)
    return path


def measure(tree: Path, config: Path, steps: int, save_root: Path, extra: list[str]) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "PYTHONPATH")}
    env.update(PYTHONPATH=str(tree), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    args = [
        "--config", str(config), "--max_steps", str(steps), "--save_strategy", "no", "--eval_strategy", "no",
        "--report_to", "none", "--save_root", str(save_root), "--fresh_start", "true", "--disable_tqdm", "true",
        *extra,
    ]  # fmt: skip
    load = os.getloadavg()[0]
    cmd = [sys.executable, "-c", _DRIVER, str(WARM_STEPS), *args]
    res = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{config.name} in {tree}: {res.stderr[-2000:]}")
    line = next(x for x in res.stdout.splitlines() if x.startswith("RESULT "))
    return {**json.loads(line[7:]), "load": load}


def stage_one_model(save_root: Path) -> Path:
    """A short gru_repeat run of this tree: the frozen model the intervention configs read."""
    model = save_root / "gru_stage_one" / "model"
    if not model.is_dir():
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
        cmd = [sys.executable, str(ROOT / "trainers" / "run.py"), "--config", str(ROOT / "configs" / "gru_repeat.json")]
        cmd += [
            "--max_steps",
            "50",
            "--save_root",
            str(save_root),
            "--exp_name",
            "gru_stage_one",
            "--report_to",
            "none",
        ]
        cmd += ["--eval_strategy", "no", "--save_steps", "50"]
        subprocess.run(cmd, env=env, check=True, capture_output=True)
    return model


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", default="9c58c00", help="the commit to compare with (A); '.': this tree on both sides")
    ap.add_argument("--configs", nargs="+", default=["blotch", "gru_repeat", "gru_onion", "cmp", "linear_forward"])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--busy", type=int, default=0, help="busy-looping processes beside the measurements")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    ap.add_argument("--a_args", default="", help="config overrides for side A only, e.g. '--pack_rows false'")
    ap.add_argument("--b_args", default="", help="config overrides for side B only, e.g. '--pack_rows true'")
    args = ap.parse_args(argv)

    base = ROOT if args.base == "." else worktree(args.base)
    side_args = {"A": shlex.split(args.a_args), "B": shlex.split(args.b_args)}
    work = Path(tempfile.mkdtemp(prefix="hfe_bench_"))
    busy = [multiprocessing.Process(target=_busy, daemon=True) for _ in range(args.busy)]
    results: dict[str, dict] = {}
    try:
        stage_one = None
        for p in busy:
            p.start()
        for name in args.configs:
            config = ROOT / "configs" / f"{name}.json"
            extra = []
            if json.loads(config.read_text())["experiment"] == "gru_intervention":
                stage_one = stage_one or stage_one_model(work)
                extra = ["--gru_model", str(stage_one)]
            runs: dict[str, list[dict]] = {"A": [], "B": []}
            for r in range(args.rounds):
                order = ("A", "B") if r % 2 == 0 else ("B", "A")
                for side in order:  # each side with its own shipped config (a key may be new in B)
                    tree = base if side == "A" else ROOT
                    config_file = tree / "configs" / config.name
                    runs[side].append(measure(tree, config_file, args.steps, work / side, extra + side_args[side]))
            ratios = [b["steps_per_second"] / a["steps_per_second"] for a, b in zip(runs["A"], runs["B"])]
            results[name] = {
                "ratio_median": round(statistics.median(ratios), 3),
                "ratio_min": round(min(ratios), 3),
                "ratio_max": round(max(ratios), 3),
                "A_steps_per_second": [round(x["steps_per_second"], 2) for x in runs["A"]],
                "B_steps_per_second": [round(x["steps_per_second"], 2) for x in runs["B"]],
                "A_tokens_per_second": [round(x["tokens_per_second"]) for x in runs["A"]],
                "B_tokens_per_second": [round(x["tokens_per_second"]) for x in runs["B"]],
                "ratio_all_steps_median": round(
                    statistics.median(
                        b["all_steps_per_second"] / a["all_steps_per_second"] for a, b in zip(runs["A"], runs["B"])
                    ),
                    3,
                ),
                "load": [round(x["load"], 2) for x in runs["A"] + runs["B"]],
                "B_threads": [x.get("threads") for x in runs["B"]],
            }
            print(
                f"{name:<16} B/A {results[name]['ratio_median']:.2f}x (range {results[name]['ratio_min']:.2f}-"
                f"{results[name]['ratio_max']:.2f}; A {results[name]['A_steps_per_second']} B "
                f"{results[name]['B_steps_per_second']} steps/s)",
                flush=True,
            )
    finally:
        for p in busy:
            p.terminate()
    summary = {"base": args.base, "a_args": args.a_args, "b_args": args.b_args, "busy": args.busy,
               "steps": args.steps, "rounds": args.rounds, "configs": results}  # fmt: skip
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
