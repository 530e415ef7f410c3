"""Evaluation of a `CompressionModel` against its two baselines (as in grantsrb/ctx_cmp).

*low* = the LM on the text alone (after its BOS), *high* = the LM with the full uncompressed context, *pred* = the
LM with the compressed context. All three predict the same tokens (`CompressionModel.scored_targets`: every
predicted token, the first included, when the backbone has a BOS), so their losses are directly comparable and
`gap_recovered = (low - pred) / (low - high)` is the share of the context's benefit the compression keeps.
Intervals: a bootstrap over documents (a document's windows share text, so they are resampled together).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from pathlib import Path

import datasets
import torch
import torch.nn.functional as F

from hf_experiments.core.plots import figure, write_csv
from hf_experiments.core.stats import block_bootstrap_ratio

from .metrics import load_local_metric

logger = logging.getLogger(__name__)

MODES = ("low", "high", "pred")
# A context benefit below this (nats per token), or an interval of it that reaches 0, is too small to say
# what share of it the compression recovers: the ratio is then noise (e.g. "240%").
MIN_GAP = 0.01


def _batches(
    windows: torch.Tensor | datasets.Dataset, batch_size: int, max_batches: int | None, device: torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
    """(input_ids, attention_mask, doc_id or None) batches; a window without a mask is all real tokens."""
    if isinstance(windows, datasets.Dataset):
        columns = [c for c in ("input_ids", "attention_mask", "doc_id") if c in windows.column_names]
        stream = (
            (b["input_ids"], b.get("attention_mask"), b.get("doc_id"))
            for b in windows.with_format("torch", columns=columns).iter(batch_size)
        )
    else:
        stream = ((ids, None, None) for ids in windows.split(batch_size))
    for i, (ids, mask, docs) in enumerate(stream):
        if max_batches is not None and i >= max_batches:
            return
        ids = ids.to(device)
        yield ids, (torch.ones_like(ids) if mask is None else mask.to(device)), docs


def _token_stats(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-token cross-entropy and top-1 / top-5 hits (B, T) for logits (B, T, V), zero where masked."""
    m = mask.bool()
    nll = F.cross_entropy(logits.float().transpose(1, 2), targets, reduction="none")  # (B, T)
    topk = logits.topk(min(5, logits.size(-1)), dim=-1).indices  # (B, T, k)
    hits = topk == targets[..., None]
    return {"nll": nll * m, "top1": hits[..., 0] & m, "top5": hits.any(-1) & m}


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
    reconstruction vs the context; sacreBLEU on decoded text if `tokenizer` is given, else on token ids) and
    `rmb_bleu_signature`, sacreBLEU's signature of that score.
    """
    cfg = model.config
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} is invalid: it must be >= 1")
    if free_run_tokens is not None and free_run_tokens < 1:
        raise ValueError(f"free_run_tokens={free_run_tokens} is invalid: it must be None or >= 1")
    compare = cfg.seq_len + cfg.seq_overlap >= 2  # without a BOS, targets[1:] must hold at least one token
    remember = cfg.rmb_task or cfg.rmb_only
    n_free = min(free_run_tokens or 0, cfg.seq_len + cfg.seq_overlap - 1)

    sums = {mode: {"nll": 0.0, "top1": 0.0, "top5": 0.0} for mode in MODES}
    by_position: dict[str, torch.Tensor] = {}  # mode -> (T',) summed nll per predicted position
    position_count: torch.Tensor | None = None
    window_nll: dict[str, list[torch.Tensor]] = {mode: [] for mode in MODES}  # (B,) per batch
    window_tokens: list[torch.Tensor] = []
    window_docs: list[torch.Tensor] = []
    free = {mode: torch.zeros(2, dtype=torch.float64) for mode in MODES}  # [matches, tokens]
    rmb = torch.zeros(4, dtype=torch.float64)  # [token hits, tokens, exact rows, rows]
    rmb_predictions: list[str] = []
    rmb_references: list[list[str]] = []
    n_windows = 0

    was_training = model.training
    model.eval()
    try:
        for ids, mask, docs in _batches(windows, batch_size, max_batches, model.device):
            if ids.size(1) != cfg.window_len:
                raise ValueError(
                    f"windows have length {ids.size(1)}: they must be cmp_len + seq_len = {cfg.window_len}"
                )
            # Without a document id every window is its own block.
            docs = torch.arange(n_windows, n_windows + ids.size(0)) if docs is None else docs.cpu()
            n_windows += ids.size(0)
            ctx, ctx_mask, tgt, tgt_mask = model.split_window(ids, mask)
            if compare:
                targets, target_mask = model.scored_targets(ids, mask)
                window_tokens.append(target_mask.sum(-1).double().cpu())
                window_docs.append(docs)
                counts = target_mask.sum(0).double().cpu()
                position_count = counts if position_count is None else position_count + counts
                for mode in MODES:
                    stats = _token_stats(model.comparison_logits(ids, mode, mask), targets, target_mask)
                    for key in sums[mode]:
                        sums[mode][key] += stats[key].sum().item()
                    nll = stats["nll"].double().cpu()
                    by_position[mode] = by_position.get(mode, 0) + nll.sum(0)
                    window_nll[mode].append(nll.sum(-1))
            if n_free > 0:
                truth, truth_mask = tgt[:, 1 : 1 + n_free], tgt_mask[:, 1 : 1 + n_free].bool()
                for mode in MODES:
                    generated = model.generate_from_context(ctx, tgt[:, :1], n_free, mode=mode, ctx_mask=ctx_mask)
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

    metrics: dict = {"num_windows": float(n_windows)}
    if compare and n_windows:
        count = max(sum(float(t.sum()) for t in window_tokens), 1.0)
        for mode in MODES:
            metrics |= {f"{mode}_{key}": value / count for key, value in sums[mode].items()}
            metrics[f"{mode}_loss"] = metrics.pop(f"{mode}_nll")
        metrics |= gap_statistics(
            {m: torch.cat(v) for m, v in window_nll.items()}, torch.cat(window_tokens), torch.cat(window_docs)
        )
        metrics["first_token_scored"] = float(model.bos_token_id is not None)
        positions = position_count.clamp(min=1.0)
        for mode in MODES:
            metrics[f"{mode}_loss_by_position"] = [round(v, 5) for v in (by_position[mode] / positions).tolist()]
    if n_free > 0:
        metrics |= {f"{mode}_free_match": (m / max(n.item(), 1.0)).item() for mode, (m, n) in free.items()}
    if remember:
        metrics["rmb_token_acc"] = rmb[0].item() / max(rmb[1].item(), 1.0)
        metrics["rmb_exact_match"] = rmb[2].item() / max(rmb[3].item(), 1.0)
        # sacreBLEU: its 13a tokenizer on decoded text; token ids (no tokenizer) already are the tokens
        bleu = load_local_metric("bleu").compute(
            predictions=rmb_predictions, references=rmb_references, tokenize="13a" if tokenizer else "none"
        )
        metrics["rmb_bleu"] = float(bleu["bleu"])
        metrics["rmb_bleu_signature"] = bleu["signature"]
    return metrics


def gap_statistics(
    window_nll: dict[str, torch.Tensor], window_tokens: torch.Tensor, docs: torch.Tensor, n_boot: int = 2000
) -> dict[str, float]:
    """Gap recovered and the loss differences, each with a 95% interval from a bootstrap over documents.

    window_nll: mode -> summed nll per window (N,); window_tokens: scored tokens per window (N,); docs: the
    document of each window (N,). `gap_degenerate` = 1 when low - high is under MIN_GAP or its interval
    reaches 0: gap_recovered is then not a meaningful share.
    """
    low, pred, high = (window_nll[m].double() for m in ("low", "pred", "high"))
    tokens, n = window_tokens.double(), max(float(window_tokens.sum()), 1.0)
    out: dict[str, float] = {"num_documents": float(len(torch.unique(docs)))}
    for name, num in (("low_minus_pred", low - pred), ("low_minus_high", low - high)):
        out[name] = float(num.sum()) / n
        out[f"{name}_ci_low"], out[f"{name}_ci_high"] = block_bootstrap_ratio(num, tokens, docs, n_boot)
    gap = float((low - high).sum())
    out["gap_recovered"] = float((low - pred).sum()) / gap if gap != 0 else math.nan
    out["gap_recovered_ci_low"], out["gap_recovered_ci_high"] = block_bootstrap_ratio(
        low - pred, low - high, docs, n_boot
    )
    ci_low = out["low_minus_high_ci_low"]
    out["gap_degenerate"] = float(out["low_minus_high"] < MIN_GAP or not ci_low > 0)
    if out["gap_degenerate"]:
        logger.warning(
            "the full context barely helps this backbone (low - high = %.4f nats, 95%% interval from %.4f): "
            "gap_recovered (%.3f) is not a meaningful share",
            out["low_minus_high"],
            ci_low,
            out["gap_recovered"],
        )
    return out


def _ci_text(metrics: dict, key: str, percent: bool) -> str:
    lo, hi = metrics.get(f"{key}_ci_low", math.nan), metrics.get(f"{key}_ci_high", math.nan)
    if math.isnan(lo):
        return ""
    return f" [95% CI {lo:.0%}, {hi:.0%}]" if percent else f" [95% CI {lo:.3f}, {hi:.3f}]"


def plot_low_pred_high(metrics: dict, path: str | Path) -> Path:
    """Loss per predicted position for low / pred / high, and a bar summary of loss and top-1, as a PNG.

    The title gives gap recovered with its interval, or says the gap is too small to measure when it is
    degenerate. A CSV of the per-position losses is written next to it (same name, `.csv`).
    """
    modes = ("low", "pred", "high")
    missing = [f"{m}_{k}" for m in modes for k in ("loss", "top1") if f"{m}_{k}" not in metrics]
    if missing:
        raise ValueError(f"metrics lacks {missing}: pass the output of evaluate_compression with seq_len >= 2")
    colors = {"low": "tab:red", "pred": "tab:blue", "high": "tab:green"}
    labels = {"low": "low (no context)", "pred": "pred (compressed context)", "high": "high (full context)"}
    by_pos = {m: metrics.get(f"{m}_loss_by_position") for m in modes}
    first = 1 if metrics.get("first_token_scored", 0.0) else 2
    with figure(path, 1, 3, figsize=(12, 3.6), dpi=100, width_ratios=(2, 1, 1)) as (fig, axes):
        ax = axes[0]
        if all(v is not None for v in by_pos.values()):
            xs = list(range(first, first + len(by_pos["low"])))
            for m in modes:
                ax.plot(xs, by_pos[m], marker="o", ms=3, color=colors[m], label=labels[m])
            ax.set_xlabel("predicted token (1 = first after the context)")
            ax.set_ylabel("cross-entropy (nats)")
            ax.legend(fontsize=8)
            ax.set_title("loss per position")
        for ax, key, label in zip(axes[1:], ("loss", "top1"), ("mean loss (nats)", "top-1 accuracy")):
            values = [metrics[f"{m}_{key}"] for m in modes]
            ax.bar(modes, values, color=[colors[m] for m in modes])
            ax.bar_label(ax.containers[0], fmt="%.3f")
            ax.set_title(label)
        gap = metrics.get("low_minus_high", metrics["low_loss"] - metrics["high_loss"])
        if metrics.get("gap_degenerate"):
            title = (
                f"context gap too small to measure recovery: low - high = {gap:.4f} nats"
                f"{_ci_text(metrics, 'low_minus_high', False)}"
            )
        elif "gap_recovered" in metrics:
            title = (
                f"gap recovered {metrics['gap_recovered']:.0%}{_ci_text(metrics, 'gap_recovered', True)}; "
                f"low - high {gap:.3f} nats"
                + (
                    f", {int(metrics['num_windows'])} windows of {int(metrics['num_documents'])} documents"
                    if "num_documents" in metrics
                    else ""
                )
            )
        else:
            title = ""
        fig.suptitle(title, fontsize=10)
    if all(v is not None for v in by_pos.values()):
        rows = [
            {"position": first + i, **{f"{m}_loss": by_pos[m][i] for m in modes}} for i in range(len(by_pos["low"]))
        ]
        write_csv(Path(path).with_suffix(".csv"), rows)
    return Path(path)


__all__ = ["evaluate_compression", "plot_low_pred_high"]
