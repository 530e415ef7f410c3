"""What the `ExperimentTrainer` costs over a plain PyTorch loop, per shipped config (model family).

Both sides train the same model on the same batches (the trainer's own dataloader), with the same optimizer and
schedule (`create_optimizer_and_scheduler`) and the same loss (`compute_loss`), in one process, rounds interleaved
(trainer, loop, loop, trainer, ...); the number is the time of `--steps` steps after `--warm` untimed ones, the
ratio trainer / loop per round, its median and range. Threads are fixed (`--threads`, default 1) so both sides
compute alike. Configs that accumulate gradients (`per_device_batch_size`) are measured on one micro-batch per
step on both sides.

    python benchmarks/core/bench_trainer_overhead.py --configs blotch gru_repeat linear_forward cmp mlp --rounds 3

The last line printed is JSON: {"configs": {name: {"ratio_median": ..., "ratio_min": ..., "ratio_max": ...,
"trainer_s": [...], "loop_s": [...]}}, "steps": ..., "threads": ...}.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[2]


def build(name: str, save_root: str, steps: int, threads: int):
    from hf_experiments.core.parsing import parse_config_strict

    cfg = parse_config_strict(
        [
            "--config", str(ROOT / "configs" / f"{name}.json"), "--save_root", save_root, "--max_steps", str(steps),
            "--save_strategy", "no", "--eval_strategy", "no", "--report_to", "none", "--disable_tqdm", "true",
            "--torch_threads", str(threads), "--gradient_accumulation_steps", "1", "--logging_steps", "1000000",
        ]
    )  # fmt: skip
    exp = cfg.experiment_cls(cfg)
    data = exp.build_data()
    model = exp.build_model()
    return exp, data, model


class _Clock:
    """Trainer callback: the time from the end of step `warm` to the end of the last step."""

    def __init__(self, warm: int) -> None:
        self.warm, self.t0, self.t1 = warm, None, None

    def attach(self, trainer):
        from transformers import TrainerCallback

        clock = self

        class Callback(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step == clock.warm:
                    clock.t0 = time.perf_counter()
                clock.t1 = time.perf_counter()

        trainer.add_callback(Callback())


def trainer_seconds(exp, data, model, warm: int) -> float:
    trainer = exp.build_trainer(model, data)
    clock = _Clock(warm)
    clock.attach(trainer)
    trainer.train()
    return clock.t1 - clock.t0


def loop_seconds(exp, data, model, steps: int, warm: int) -> float:
    """The same steps without the Trainer's loop: batches, loss, backward, clipping, optimizer, schedule."""
    import torch

    trainer = exp.build_trainer(model, data)  # its dataloader, optimizer, scheduler and loss, not its loop
    trainer.create_optimizer_and_scheduler(num_training_steps=steps)
    opt, sched = trainer.optimizer, trainer.lr_scheduler
    clip = trainer.args.max_grad_norm
    model.train()
    batches = itertools.cycle(trainer.get_train_dataloader())
    t0 = None
    for step in range(steps):
        if step == warm:
            t0 = time.perf_counter()
        batch = trainer._prepare_inputs(next(batches))
        loss = trainer.compute_loss(model, batch)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", nargs="+", default=["blotch", "gru_repeat", "linear_forward", "cmp", "mlp"])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warm", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.configs:
            exp, data, model = build(name, tmp, args.steps, args.threads)
            times: dict[str, list[float]] = {"trainer": [], "loop": []}
            for r in range(args.rounds):
                for side in ("trainer", "loop") if r % 2 == 0 else ("loop", "trainer"):
                    if side == "trainer":
                        times[side].append(trainer_seconds(exp, data, model, args.warm))
                    else:
                        times[side].append(loop_seconds(exp, data, model, args.steps, args.warm))
            ratios = [t / p for t, p in zip(times["trainer"], times["loop"])]
            results[name] = {
                "ratio_median": round(statistics.median(ratios), 3),
                "ratio_min": round(min(ratios), 3),
                "ratio_max": round(max(ratios), 3),
                "trainer_s": [round(t, 3) for t in times["trainer"]],
                "loop_s": [round(t, 3) for t in times["loop"]],
            }
            r = results[name]
            print(f"{name:<16} trainer / loop {r['ratio_median']:.3f} ({r['ratio_min']:.3f}-{r['ratio_max']:.3f})")
    summary = {"configs": results, "steps": args.steps, "warm": args.warm, "threads": args.threads}
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
