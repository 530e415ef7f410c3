"""Context compression speed, each number a ratio against a baseline measured in the same run.

1. Training step time: our `ExperimentTrainer` vs a plain PyTorch loop (same model, data, optimizer, batch).
2. Free-running evaluation: `generate_from_context` with the KV cache vs without.

    python benchmarks/compression/bench_compression.py [--steps 30] [--layers 4] [--width 128] [--new_tokens 64]

The last line printed is JSON: {"trainer_over_plain_loop": ..., "kv_cache_speedup": ..., ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from datasets import Dataset
from transformers import GPT2Config, GPT2LMHeadModel

from hf_experiments.compression.configuration_compression import CompressionConfig
from hf_experiments.compression.modeling_compression import CompressionModel
from hf_experiments.core.config import ExperimentTrainingArguments
from hf_experiments.core.trainer import ExperimentTrainer


def build(backbone_dir: str, seed: int = 0) -> CompressionModel:
    torch.manual_seed(seed)
    return CompressionModel(
        CompressionConfig(model_string=backbone_dir, n_cmps=2, cmp_len=10, seq_len=20, rmb_task=True)
    )


def plain_loop(model: CompressionModel, ids: torch.Tensor, batch: int, lr: float) -> float:
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    model.train()
    t0 = time.perf_counter()
    for s in range(0, len(ids), batch):
        loss = model(input_ids=ids[s : s + batch]).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def trainer_loop(model: CompressionModel, ids: torch.Tensor, batch: int, lr: float, out: str) -> float:
    args = ExperimentTrainingArguments(
        output_dir=out,
        per_device_train_batch_size=batch,
        max_steps=len(ids) // batch,
        learning_rate=lr,
        weight_decay=0.0,
        lr_scheduler_type="constant",
        report_to="none",
        save_strategy="no",
        logging_steps=10**6,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    trainer = ExperimentTrainer(model=model, args=args, train_dataset=Dataset.from_dict({"input_ids": ids.tolist()}))
    t0 = time.perf_counter()
    trainer.train()
    return time.perf_counter() - t0


@torch.no_grad()
def generation(model: CompressionModel, ctx: torch.Tensor, prompt: torch.Tensor, new: int, cache: bool) -> float:
    model.eval()
    t0 = time.perf_counter()
    model.generate_from_context(ctx, prompt, max_new_tokens=new, use_cache=cache)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--new_tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        backbone = os.path.join(tmp, "backbone")
        GPT2LMHeadModel(
            GPT2Config(n_layer=a.layers, n_embd=a.width, n_head=4, vocab_size=4096, n_positions=256)
        ).save_pretrained(backbone)
        g = torch.Generator().manual_seed(0)
        ids = torch.randint(0, 4096, (a.steps * a.batch, 30), generator=g)
        # Alternate the two loops and keep each one's best time: robust to noise from other processes.
        plain, ours = [], []
        for r in range(a.repeats):
            plain.append(plain_loop(build(backbone), ids, a.batch, 1e-3))
            ours.append(trainer_loop(build(backbone), ids, a.batch, 1e-3, os.path.join(tmp, f"t{r}")))
        model = build(backbone)
        ctx, prompt = ids[: a.batch, :10], ids[: a.batch, 10:11]
        with_cache = min(generation(model, ctx, prompt, a.new_tokens, True) for _ in range(a.repeats))
        without = min(generation(model, ctx, prompt, a.new_tokens, False) for _ in range(a.repeats))
    result = {
        "train_steps": a.steps,
        "batch": a.batch,
        "plain_loop_s": round(min(plain), 3),
        "trainer_s": round(min(ours), 3),
        "trainer_over_plain_loop": round(min(ours) / min(plain), 3),
        "generate_cache_s": round(with_cache, 3),
        "generate_no_cache_s": round(without, 3),
        "kv_cache_speedup": round(without / with_cache, 2),
        "new_tokens": a.new_tokens,
        "device": "cpu",
        "torch_threads": torch.get_num_threads(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
