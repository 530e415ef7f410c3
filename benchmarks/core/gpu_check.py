"""The GPU check for a task that is lent a GPU (issue 19): one command, under 8 minutes, last line JSON.

    bash benchmarks/gpu_check.sh              # on the GPU machine
    bash benchmarks/gpu_check.sh --dry-run    # CPU, tiny sizes, seconds (the test suite runs this)

Sections (each times its own steps after warm-up; CUDA is synchronised around every timed region):

- `mfu`: training steps of the GPT-1-size arrows model (12 x 768, the `linear_gpt1_*` lines: 48 tokens) in bf16
  autocast with fused AdamW, at the config's batch (180) and a larger one; model FLOPs per step
  (6 * parameters * tokens + attention's 12 * layers * d * T^2 * B) over the time, as a share of the device's
  nominal dense bf16 peak (table below) and of a measured large bf16 matmul. Goal >= 40% of nominal.
- `generation`: the blotch write-up model (`blotch_paper.json`: d=128, 2 layers) continuing a batch of prompts
  by a fixed number of tokens with and without the KV cache (tokens/s of each; the data-cache rounds use the
  cache).
- `packing`: real (non-padding) training tokens/s of the blotch write-up model on padded vs padding-free packed
  batches of the same blotched rows (`core/packing.py`; SDPA with the segment mask), the CPU collation time of
  each beside it (`speedup_with_collation`: a step that waits for its batch). Goal >= 1.5x.
- `ddp`: with 2 GPUs, two ranks of `accelerate launch` on a short arrows run; skipped with one.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[2]
NOMINAL_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "L4": 121.0}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device, warmup: int, steps: int) -> float:
    """Seconds per call of `fn` after `warmup` calls (median of `steps` single-call timings)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def nominal_peak(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in NOMINAL_BF16_TFLOPS.items() if k in name), None)


def matmul_peak(device: torch.device, dry: bool) -> float:
    """Measured TFLOP/s of one large square bf16 matmul (float32 on a dry run)."""
    n = 256 if dry else 8192
    dtype = torch.float32 if dry else torch.bfloat16
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    sec = _timed(lambda: a @ b, device, 2, 3 if dry else 10)
    return 2 * n**3 / sec / 1e12


def mfu(device: torch.device, dry: bool) -> dict[str, Any]:
    from hf_experiments.arrows.configuration_gpt import GPTConfig, gpt_preset
    from hf_experiments.arrows.modeling_gpt import GPTForCausalLM

    preset = gpt_preset("tiny" if dry else "gpt1")
    preset["dropout"] = 0.0
    seq = 48  # BOS + 20 bits + 7 separators + 20 bits (Matid20 lines)
    config = GPTConfig(
        vocab_size=5,
        attn_length=seq,
        n_layers=preset["n_layers"],
        n_heads=preset["n_heads"],
        embed_dim=preset["embed_dim"],
        dropout=0.0,
    )
    torch.manual_seed(0)
    model = GPTForCausalLM(config).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    n_params = sum(p.numel() for p in model.parameters())
    d, layers = preset["embed_dim"], preset["n_layers"]
    out: dict[str, Any] = {"params": n_params, "seq_len": seq, "runs": []}
    peak_nominal = nominal_peak(device)
    peak_measured = matmul_peak(device, dry)
    out.update(nominal_tflops=peak_nominal, matmul_tflops=round(peak_measured, 1))
    for batch in (4,) if dry else (180, 1024):
        ids = torch.randint(0, 5, (batch, seq), device=device)

        def step(ids: torch.Tensor = ids) -> None:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=not dry):
                loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        sec = _timed(step, device, 2 if dry else 10, 3 if dry else 30)
        flops = 6 * n_params * batch * seq + 12 * layers * d * seq * seq * batch
        tflops = flops / sec / 1e12
        out["runs"].append(
            {
                "batch": batch,
                "step_s": round(sec, 5),
                "tokens_per_s": round(batch * seq / sec),
                "model_tflops": round(tflops, 2),
                "mfu_nominal": None if peak_nominal is None else round(tflops / peak_nominal, 3),
                "mfu_measured_matmul": round(tflops / peak_measured, 3),
            }
        )
    best = max((r["mfu_nominal"] or 0.0) for r in out["runs"])
    out["goal_mfu_nominal_0.40"] = None if peak_nominal is None else best >= 0.40
    return out


def generation(device: torch.device, dry: bool) -> dict[str, Any]:
    from hf_experiments.blotch.configuration_blotch import BlotchConfig
    from hf_experiments.blotch.modeling_blotch import BlotchModel

    torch.manual_seed(0)
    config = BlotchConfig(vocab_size=19, d_model=32 if dry else 128, n_heads=4, n_layers=2, max_posencs=512)
    model = BlotchModel(config).to(device).eval()
    batch, prompt, new = (4, 8, 6) if dry else (500, 20, 64)
    ids = torch.randint(4, 19, (batch, prompt), device=device)
    mask = torch.ones_like(ids)
    out: dict[str, Any] = {"batch": batch, "prompt_tokens": prompt, "new_tokens": new}
    for cache in (True, False):

        def gen(cache: bool = cache) -> None:
            with torch.no_grad():
                model.generate(
                    input_ids=ids,
                    attention_mask=mask,
                    max_new_tokens=new,
                    min_new_tokens=new,
                    do_sample=False,
                    use_cache=cache,
                    pad_token_id=0,
                    eos_token_id=None,
                )

        sec = _timed(gen, device, 1, 3)
        out[f"tokens_per_s_cache_{'on' if cache else 'off'}"] = round(batch * new / sec)
    out["cache_speedup"] = round(out["tokens_per_s_cache_on"] / out["tokens_per_s_cache_off"], 2)
    return out


def packing(device: torch.device, dry: bool) -> dict[str, Any]:
    """Training tokens/s of the blotch write-up model on padded vs padding-free packed batches of the same
    blotched rows (`blotch_paper.json`'s problems, batch and blotch range; SDPA with the segment mask)."""
    import numpy as np

    from hf_experiments.blotch.arithmetic import ProblemParams, sample_problems, solve
    from hf_experiments.blotch.blotching import BlotchCollator
    from hf_experiments.blotch.configuration_blotch import BlotchConfig
    from hf_experiments.blotch.modeling_blotch import BlotchModel
    from hf_experiments.blotch.tokenization_arith import arith_tokenizer, encode_rows

    tok = arith_tokenizer()
    batch, n_btokens = (16, 3) if dry else (512, 6)
    problems = sample_problems(batch * 4, ProblemParams(max_num=99, max_ents=3, p_ent=0.5), np.random.default_rng(0))
    rows = encode_rows(tok, [p + "=" + "=".join(step for step, _ in solve(p)) for p in problems])
    features = [{"input_ids": r.tolist()} for r in rows]
    torch.manual_seed(0)
    config = BlotchConfig(
        vocab_size=len(tok) + n_btokens, d_model=32 if dry else 128, n_heads=4, n_layers=2, max_posencs=512,
        n_btokens=n_btokens,
    )  # fmt: skip
    out: dict[str, Any] = {"batch": batch}
    for pack in (False, True):
        collate = BlotchCollator(
            pad_id=tok.pad_token_id, eq_id=tok.convert_tokens_to_ids("="), blotch_p_min=0.0, blotch_p_max=0.5,
            n_btokens=n_btokens, btoken_offset=len(tok), pack=pack, generator=torch.Generator().manual_seed(1),
        )  # fmt: skip
        t0 = time.perf_counter()
        cpu_batches = [collate(features[i * batch : (i + 1) * batch]) for i in range(4)]
        collate_s = (time.perf_counter() - t0) / 4  # on the CPU, before each step (no dataloader workers)
        batches = [{k: v.to(device) for k, v in b.items()} for b in cpu_batches]
        model = BlotchModel(config).to(device).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=device.type == "cuda")
        it = itertools.cycle(batches)

        def step(it: Any = it, model: BlotchModel = model, opt: torch.optim.Optimizer = opt) -> None:
            b = next(it)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                loss = model(**b).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        sec = _timed(step, device, 3, 5 if dry else 30)
        real = sum(int(b["attention_mask"].sum()) for b in batches) / len(batches)
        computed = sum(b["input_ids"].numel() for b in batches) / len(batches)
        name = "packed" if pack else "padded"
        out[f"{name}_real_tokens_per_s"] = round(real / sec)
        out[f"{name}_padding_share"] = round(1 - real / computed, 3)
        out[f"{name}_collate_ms"] = round(1000 * collate_s, 2)
        out[f"{name}_step_ms"] = round(1000 * sec, 2)
    out["speedup"] = round(out["packed_real_tokens_per_s"] / out["padded_real_tokens_per_s"], 2)
    with_collation = {
        name: out[f"{name}_step_ms"] + out[f"{name}_collate_ms"] for name in ("padded", "packed")
    }  # a step that waits for its batch: the main process collates
    out["speedup_with_collation"] = round(with_collation["padded"] / with_collation["packed"], 2)
    out["goal_speedup_1.5"] = out["speedup"] >= 1.5
    return out


def ddp(device: torch.device, dry: bool, work: Path) -> dict[str, Any]:
    n_gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    if n_gpus < 2:
        return {"skipped": f"{n_gpus} GPU(s); two ranks need 2"}
    launcher = str(Path(sys.executable).parent / "accelerate")
    cmd = [
        launcher, "launch", "--multi_gpu", "--num_processes", "2", str(ROOT / "trainers" / "run.py"),
        "--config", str(ROOT / "configs" / "linear_forward.json"), "--save_root", str(work), "--max_steps", "200",
        "--eval_strategy", "no", "--report_to", "none", "--fresh_start", "true",
    ]  # fmt: skip
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=ROOT)
    out = {"rc": res.returncode, "wall_s": round(time.perf_counter() - t0, 1), "tail": res.stderr[-400:]}
    if res.returncode != 0:
        out["error"] = f"two-rank run exited {res.returncode}"
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: checks the script, measures nothing")
    p.add_argument("--out", default=None, help="also write the JSON result here")
    p.add_argument("--work", default="/tmp/hfe_gpu_check", help="scratch folder of the DDP run")
    args = p.parse_args(argv)
    dry = args.dry_run
    if not dry and not torch.cuda.is_available():
        print("error: no CUDA device; use --dry-run on a CPU machine", file=sys.stderr)
        return 2
    device = torch.device("cpu" if dry else "cuda")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result: dict[str, Any] = {
        "bench": "gpu_check",
        "dry_run": dry,
        "device": "cpu" if dry else torch.cuda.get_device_name(device),
        "torch": torch.__version__,
    }
    import transformers

    result["transformers"] = transformers.__version__
    sections = {
        "mfu": lambda: mfu(device, dry),
        "generation": lambda: generation(device, dry),
        "packing": lambda: packing(device, dry),
        "ddp": lambda: ddp(device, dry, Path(args.work)),
    }
    for name, fn in sections.items():
        t0 = time.perf_counter()
        try:
            result[name] = fn()
        except Exception as e:  # a failed section is reported, the others still run
            result[name] = {"error": f"{type(e).__name__}: {e}"}
        result[name]["section_s"] = round(time.perf_counter() - t0, 1)
        print(f"{name}: {json.dumps(result[name])}", flush=True)
    line = json.dumps(result)
    if args.out:
        Path(args.out).write_text(line + "\n", encoding="utf-8")
    print(line)
    return 0 if all("error" not in result[s] for s in sections) else 1


if __name__ == "__main__":
    sys.exit(main())
