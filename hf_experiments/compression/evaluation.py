"""Evaluation of a `CompressionModel` against its two baselines (as in grantsrb/ctx_cmp).

*low* = the LM on the text alone, *high* = the LM with the full uncompressed context, *pred* = the LM with the
compressed context. All three predict the same positions, seq[1:] of each window (a BOS-free LM cannot
predict seq[0] from nothing), so their losses and accuracies are directly comparable and
`gap_recovered = (low - pred) / (low - high)` is the share of the context's benefit the compression keeps.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import datasets
import torch
import torch.nn.functional as F

from hf_experiments.core.plots import figure

from .metrics import load_local_metric

MODES = ("low", "high", "pred")


def _batches(
    windows: torch.Tensor | datasets.Dataset, batch_size: int, max_batches: int | None, device: torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(input_ids, attention_mask) batches on `device`; a window without a mask is all real tokens."""
    if isinstance(windows, datasets.Dataset):
        columns = [c for c in ("input_ids", "attention_mask") if c in windows.column_names]
        stream = (
            (b["input_ids"], b.get("attention_mask"))
            for b in windows.with_format("torch", columns=columns).iter(batch_size)
        )
    else:
        stream = ((ids, None) for ids in windows.split(batch_size))
    for i, (ids, mask) in enumerate(stream):
        if max_batches is not None and i >= max_batches:
            return
        ids = ids.to(device)
        yield ids, (torch.ones_like(ids) if mask is None else mask.to(device))


def _token_stats(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sums over unmasked tokens: [cross-entropy, top-1 hits, top-5 hits, tokens] for logits (B, T, V)."""
    mask = mask.bool()
    nll = F.cross_entropy(logits.float().transpose(1, 2), targets, reduction="none")  # (B, T)
    topk = logits.topk(min(5, logits.size(-1)), dim=-1).indices  # (B, T, k)
    hits = topk == targets[..., None]
    return torch.stack([nll[mask].sum(), hits[..., 0][mask].sum(), hits.any(-1)[mask].sum(), mask.sum()]).double().cpu()


def _as_strings(ids: torch.Tensor, tokenizer) -> list[str]:
    """Rows of token ids as text for BLEU: decoded when a tokenizer is given, else space-joined ids."""
    if tokenizer is not None:
        return tokenizer.batch_decode(ids, skip_special_tokens=True)
    return [" ".join(map(str, row)) for row in ids.tolist()]


@torch.no_grad()
def evaluate_compression(
    model,
    windows: torch.LongTensor | datasets.Dataset,
    batch_size: int = 8,
    max_batches: int | None = None,
    free_run_tokens: int | None = None,
    tokenizer=None,
) -> dict[str, float]:
    """Teacher-forced and free-running metrics of low / high / pred, plus the remember task when trained.

    windows: token ids (N, cmp_len + seq_len), or a `datasets.Dataset` with `input_ids` (and optionally
    `attention_mask`). Keys: `{mode}_loss`, `{mode}_top1`, `{mode}_top5`, `gap_recovered`; with
    `free_run_tokens`: `{mode}_free_match`, the share of greedy tokens (continuing from seq[0]) equal to
    seq[1:1+n]; with `rmb_task`/`rmb_only`: `rmb_token_acc`, `rmb_exact_match`, `rmb_bleu` (greedy
    reconstruction vs the context; BLEU on decoded text if `tokenizer` is given, else on token ids).
    """
    cfg = model.config
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} is invalid: it must be >= 1")
    if free_run_tokens is not None and free_run_tokens < 1:
        raise ValueError(f"free_run_tokens={free_run_tokens} is invalid: it must be None or >= 1")
    compare = cfg.seq_len >= 2  # seq[1:] must hold at least one token
    remember = cfg.rmb_task or cfg.rmb_only
    n_free = min(free_run_tokens or 0, cfg.seq_len - 1)

    teacher = {mode: torch.zeros(4, dtype=torch.float64) for mode in MODES}
    free = {mode: torch.zeros(2, dtype=torch.float64) for mode in MODES}  # [matches, tokens]
    rmb = torch.zeros(4, dtype=torch.float64)  # [token hits, tokens, exact rows, rows]
    rmb_predictions: list[str] = []
    rmb_references: list[list[str]] = []
    n_windows = 0

    was_training = model.training
    model.eval()
    try:
        for ids, mask in _batches(windows, batch_size, max_batches, model.device):
            if ids.size(1) != cfg.window_len:
                raise ValueError(
                    f"windows have length {ids.size(1)}: they must be cmp_len + seq_len = {cfg.window_len}"
                )
            n_windows += ids.size(0)
            ctx, seq = ids[:, : cfg.cmp_len], ids[:, cfg.cmp_len :]
            ctx_mask, seq_mask = mask[:, : cfg.cmp_len], mask[:, cfg.cmp_len :]
            if compare:
                for mode in MODES:
                    logits = model.comparison_logits(ids, mode, mask)  # (B, seq_len - 1, V)
                    teacher[mode] += _token_stats(logits, seq[:, 1:], seq_mask[:, 1:])
            if n_free > 0:
                truth, truth_mask = seq[:, 1 : 1 + n_free], seq_mask[:, 1 : 1 + n_free].bool()
                for mode in MODES:
                    generated = model.generate_from_context(ctx, seq[:, :1], n_free, mode=mode, ctx_mask=ctx_mask)
                    free[mode] += torch.tensor([(generated == truth)[truth_mask].sum().item(), truth_mask.sum().item()])
            if remember:
                rmb_logits = model.task_logits(model.compress(ctx, ctx_mask), "remember", ctx, ctx_mask)
                hits = rmb_logits.argmax(-1) == ctx  # (B, L)
                rebuilt = model.reconstruct(ctx, ctx_mask=ctx_mask)  # (B, L)
                exact = ((rebuilt == ctx) | ~ctx_mask.bool()).all(-1)
                rmb += torch.tensor(
                    [
                        hits[ctx_mask.bool()].sum().item(),
                        ctx_mask.sum().item(),
                        exact.sum().item(),
                        ctx.size(0),
                    ],
                    dtype=torch.float64,
                )
                rmb_predictions += _as_strings(rebuilt, tokenizer)
                rmb_references += [[ref] for ref in _as_strings(ctx, tokenizer)]
    finally:
        model.train(was_training)

    metrics: dict[str, float] = {"num_windows": float(n_windows)}
    if compare:
        for mode, (nll, top1, top5, count) in teacher.items():
            count = max(count.item(), 1.0)
            metrics |= {
                f"{mode}_loss": nll.item() / count,
                f"{mode}_top1": top1.item() / count,
                f"{mode}_top5": top5.item() / count,
            }
        gap = metrics["low_loss"] - metrics["high_loss"]
        metrics["gap_recovered"] = (metrics["low_loss"] - metrics["pred_loss"]) / gap if gap != 0 else math.nan
    if n_free > 0:
        metrics |= {f"{mode}_free_match": (m / max(n.item(), 1.0)).item() for mode, (m, n) in free.items()}
    if remember:
        metrics["rmb_token_acc"] = rmb[0].item() / max(rmb[1].item(), 1.0)
        metrics["rmb_exact_match"] = rmb[2].item() / max(rmb[3].item(), 1.0)
        bleu = load_local_metric("bleu").compute(predictions=rmb_predictions, references=rmb_references)
        metrics["rmb_bleu"] = float(bleu["bleu"])
    return metrics


def plot_low_pred_high(metrics: dict[str, float], path: str | Path) -> Path:
    """Bar chart of loss and top-1 accuracy for low / pred / high (the order of the gap) as a PNG."""
    modes = ("low", "pred", "high")
    missing = [f"{m}_{k}" for m in modes for k in ("loss", "top1") if f"{m}_{k}" not in metrics]
    if missing:
        raise ValueError(f"metrics lacks {missing}: pass the output of evaluate_compression with seq_len >= 2")
    colors = ("tab:red", "tab:blue", "tab:green")
    with figure(path, 1, 2, figsize=(7, 3), dpi=100) as (fig, axes):
        for ax, key, label in zip(axes, ("loss", "top1"), ("teacher-forced loss", "top-1 accuracy")):
            values = [metrics[f"{m}_{key}"] for m in modes]
            ax.bar(modes, values, color=colors)
            ax.bar_label(ax.containers[0], fmt="%.3f")
            ax.set_title(label)
        if "gap_recovered" in metrics:
            fig.suptitle(f"gap recovered: {metrics['gap_recovered']:.1%}")
    return Path(path)


__all__ = ["evaluate_compression", "plot_low_pred_high"]
