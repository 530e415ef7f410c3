"""What the `ExperimentTrainer` costs over a plain PyTorch loop, per shipped config (model family).

Both sides train the same model on the same batches (the trainer's own dataloader), with the same optimizer and
schedule (`create_optimizer_and_scheduler`) and the same loss (`compute_loss`), in one process, rounds interleaved
(trainer, loop, loop, trainer, ...); the number is the time of `--steps` steps after `--warm` untimed ones, the
ratio trainer / loop per round, its median and range. Threads are fixed (`--threads`, default 1) so both sides
compute alike. Configs that accumulate gradients (`per_device_batch_size`) are measured on one micro-batch per
step on both sides.

    python benchmarks/core/bench_trainer_overhead.py --configs blotch gru_repeat linear_forward cmp mlp --rounds 3

`--attribute` also says where the difference goes: one more trainer run and one more loop run per config with a
wall-clock timer around each part of a step (the batch, the loss, backward, gradient norm, optimizer, schedule,
zero_grad, callbacks, FLOP counting, logging checks), exclusive of the parts nested in it; what no timer covers
is the loop's own bookkeeping. Milliseconds per step, trainer beside loop.

The last line printed is JSON: {"configs": {name: {"ratio_median": ..., "ratio_min": ..., "ratio_max": ...,
"trainer_s": [...], "loop_s": [...], "parts_ms": {...}}}, "steps": ..., "threads": ...}.
"""

from __future__ import annotations

import argparse
import collections
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


# Keys that would end a run before its steps are done: the timed steps must all run on both sides.
NO_EARLY_STOP = {"mlp": ["--stop_at_loss_checkpoints", "false"]}


def build(name: str, save_root: str, steps: int, threads: int):
    from hf_experiments.core.parsing import parse_config_strict

    cfg = parse_config_strict(
        [
            "--config", str(ROOT / "configs" / f"{name}.json"), "--save_root", save_root, "--max_steps", str(steps),
            "--save_strategy", "no", "--eval_strategy", "no", "--report_to", "none", "--disable_tqdm", "true",
            "--torch_threads", str(threads), "--gradient_accumulation_steps", "1", "--logging_steps", "1000000",
            *NO_EARLY_STOP.get(name, []),
        ]
    )  # fmt: skip
    exp = cfg.experiment_cls(cfg)
    data = exp.build_data()
    model = exp.build_model()
    return exp, data, model


class _Clock:
    """Trainer callback: the time from the end of step `warm` to the end of the last step."""

    def __init__(self, warm: int) -> None:
        self.warm, self.t0, self.t1, self.steps, self.callback = warm, None, None, 0, None

    def attach(self, trainer):
        from transformers import TrainerCallback

        clock = self

        class Callback(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if state.global_step == clock.warm:
                    clock.t0 = time.perf_counter()
                clock.t1, clock.steps = time.perf_counter(), state.global_step - clock.warm

        clock.callback = Callback()
        trainer.add_callback(clock.callback)


class _Parts:
    """Exclusive wall-clock time per named part of a step, counted only while `on` (the timed steps)."""

    def __init__(self) -> None:
        self.on, self.total, self.stack, self.missing = False, collections.Counter(), [], []

    def wrap(self, owner: object, attr: str, name: str) -> None:
        """Time `owner.attr` (an instance attribute shadowing the method, so its own callers are timed too); a
        name this transformers / accelerate lacks is left out (its time shows as "not covered")."""
        fn = getattr(owner, attr, None)
        if fn is None:
            self.missing.append(f"{type(owner).__name__}.{attr}")
            return
        setattr(owner, attr, self.timed(fn, name))

    def timed(self, fn, name: str):
        """`fn`, its time counted under `name`."""

        def timed(*args, **kwargs):
            if not self.on:
                return fn(*args, **kwargs)
            self.stack.append(0.0)  # time spent in parts nested inside this call
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent = time.perf_counter() - t0
                nested = self.stack.pop()
                self.total[name] += spent - nested
                if self.stack:
                    self.stack[-1] += spent

        return timed

    def per_step_ms(self, seconds: float, steps: int) -> dict[str, float]:
        out = {k: round(1e3 * v / steps, 4) for k, v in sorted(self.total.items())}
        out["not covered"] = round(1e3 * (seconds - sum(self.total.values())) / steps, 4)  # < 0: counted twice
        out["step"] = round(1e3 * seconds / steps, 4)
        return out


def _attribute_trainer(trainer, parts: _Parts, clock: _Clock) -> None:
    """Timers around the parts of the Trainer's step; switched on at the end of the warm steps."""
    from transformers import TrainerCallback

    for attr, name in (
        ("get_batch_samples", "batch"),
        ("compute_loss", "loss (forward)"),
        ("training_step", "training_step wrapper"),
        ("floating_point_ops", "FLOP counting"),
        ("_track_num_input_tokens", "token counting"),
        ("_clip_grad_norm", "gradient norm / clipping"),
        ("_get_grad_norm", "gradient norm / clipping"),
        ("_get_learning_rate", "learning-rate lookup"),
        ("_maybe_log_save_evaluate", "log/save/evaluate checks"),
    ):
        parts.wrap(trainer, attr, name)
    parts.wrap(trainer.accelerator, "backward", "backward")
    parts.wrap(trainer.callback_handler, "call_event", "callback dispatch")

    class Switch(TrainerCallback):  # the clock's window: from the end of step `warm` to the end of the last
        def on_train_begin(self, args, state, control, **kwargs):  # the optimizer and schedule as the loop calls them
            parts.wrap(trainer.optimizer, "step", "optimizer step")
            parts.wrap(trainer.lr_scheduler, "step", "schedule step")

        def on_step_end(self, args, state, control, **kwargs):
            parts.on = clock.warm <= state.global_step < state.max_steps

    trainer.add_callback(Switch())
    events = [e for e in vars(TrainerCallback) if e.startswith("on_")]
    for cb in trainer.callback_handler.callbacks:
        if not isinstance(cb, (Switch, type(clock.callback))):
            for event in events:
                parts.wrap(cb, event, f"callback {type(cb).__name__}")


def trainer_seconds(exp, data, model, warm: int, parts: _Parts | None = None) -> tuple[float, int]:
    """Seconds of the timed steps and their number (fewer than asked when a callback stops training)."""
    trainer = exp.build_trainer(model, data)
    clock = _Clock(warm)
    clock.attach(trainer)
    if parts is not None:
        _attribute_trainer(trainer, parts, clock)
        parts.wrap(model, "zero_grad", "zero_grad")
    try:
        trainer.train()
    finally:
        if parts is not None:
            del model.zero_grad  # the instance attribute; the model goes on to the next measurement
    return clock.t1 - clock.t0, clock.steps


def loop_seconds(exp, data, model, steps: int, warm: int, parts: _Parts | None = None) -> float:
    """The same steps without the Trainer's loop: batches, loss, backward, clipping, optimizer, schedule."""
    import torch

    trainer = exp.build_trainer(model, data)  # its dataloader, optimizer, scheduler and loss, not its loop
    trainer.create_optimizer_and_scheduler(num_training_steps=steps)
    opt, sched = trainer.optimizer, trainer.lr_scheduler
    clip = trainer.args.max_grad_norm
    model.train()
    batches = itertools.cycle(trainer.get_train_dataloader())

    def batch():
        return trainer._prepare_inputs(next(batches))

    def backward(loss):
        loss.backward()

    def norm():
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)

    def zero_grad():
        opt.zero_grad(set_to_none=True)

    step_parts = {"batch": batch, "loss (forward)": lambda b: trainer.compute_loss(model, b), "backward": backward,
                  "gradient norm / clipping": norm, "optimizer step": opt.step, "schedule step": sched.step,
                  "zero_grad": zero_grad}  # fmt: skip
    p = step_parts if parts is None else {name: parts.timed(fn, name) for name, fn in step_parts.items()}
    t0 = None
    for step in range(steps):
        if step == warm:
            t0 = time.perf_counter()
            if parts is not None:
                parts.on = True
        loss = p["loss (forward)"](p["batch"]())
        p["backward"](loss)
        if clip:
            p["gradient norm / clipping"]()
        p["optimizer step"]()
        p["schedule step"]()
        p["zero_grad"]()
    return time.perf_counter() - t0


def _parts_table(parts_ms: dict[str, dict[str, float]]) -> str:
    """ms per step, trainer beside loop, largest trainer-over-loop difference first."""
    t, lp = parts_ms["trainer"], parts_ms["loop"]
    names = sorted((set(t) | set(lp)) - {"step"}, key=lambda k: -(t.get(k, 0.0) - lp.get(k, 0.0)))
    rows = [f"    {'part':<28} {'trainer':>9} {'loop':>9}  ms per step"]
    for k in [*names, "step"]:
        rows.append(f"    {k:<28} {t.get(k, 0.0):>9.4f} {lp.get(k, 0.0):>9.4f}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", nargs="+", default=["blotch", "gru_repeat", "linear_forward", "cmp", "mlp"])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warm", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    ap.add_argument("--attribute", action="store_true", help="also time each part of a step (see above)")
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
                        seconds, steps = trainer_seconds(exp, data, model, args.warm)
                        if steps != args.steps - args.warm:
                            raise RuntimeError(f"{name}: the trainer stopped after {steps} timed steps")
                        times[side].append(seconds)
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
            if args.attribute:
                n = args.steps - args.warm
                t_parts, l_parts = _Parts(), _Parts()
                t_s, t_steps = trainer_seconds(exp, data, model, args.warm, t_parts)
                if t_steps != n:
                    raise RuntimeError(f"{name}: the trainer stopped after {t_steps} timed steps")
                l_s = loop_seconds(exp, data, model, args.steps, args.warm, l_parts)
                r["parts_ms"] = {"trainer": t_parts.per_step_ms(t_s, n), "loop": l_parts.per_step_ms(l_s, n)}
                r["parts_not_found"] = t_parts.missing + l_parts.missing  # methods this version lacks
                print(_parts_table(r["parts_ms"]))
    summary = {"configs": results, "steps": args.steps, "warm": args.warm, "threads": args.threads}
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
