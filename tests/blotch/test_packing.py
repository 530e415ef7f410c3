"""Padding-free packing of blotched rows: the packed forward, loss and gradient equal the padded ones."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from hf_experiments.blotch.arithmetic import ProblemParams, sample_problems, solve
from hf_experiments.blotch.blotching import BlotchCollator
from hf_experiments.blotch.configuration_blotch import BlotchConfig
from hf_experiments.blotch.modeling_blotch import BlotchModel
from hf_experiments.blotch.tokenization_arith import arith_tokenizer, encode_rows
from hf_experiments.core.packing import SEGMENTS_KEY, best_fit_decreasing, pack_batch

TOK = arith_tokenizer()
EQ = TOK.convert_tokens_to_ids("=")
PAD = TOK.pad_token_id


def features(n: int, seed: int) -> list[dict]:
    params = ProblemParams(max_num=99, max_ents=4, p_ent=0.5, p_mult=0.3)
    problems = sample_problems(n, params, np.random.default_rng(seed))
    texts = [p + "=" + "=".join(s for s, _ in solve(p)) for p in problems]
    return [{"input_ids": r.tolist()} for r in encode_rows(TOK, texts)]


def collate(pack: bool, n_btokens: int = 3, pad_pos_skip: bool = True, seed: int = 0, **kwargs) -> dict:
    collator = BlotchCollator(
        pad_id=PAD,
        eq_id=EQ,
        blotch_p_min=0.0,
        blotch_p_max=0.6,
        n_btokens=n_btokens,
        btoken_offset=len(TOK),
        pad_pos_skip=pad_pos_skip,
        pack=pack,
        generator=torch.Generator().manual_seed(seed),
        **kwargs,
    )
    return collator(features(48, seed=seed))


def rows_of(batch: dict) -> list[tuple[list[int], list[int], list[int]]]:
    """(ids, positions, labels) of every original row, read back from a padded or a packed batch."""
    out = []
    segments = batch.get(SEGMENTS_KEY)
    for r in range(len(batch["input_ids"])):
        seg = segments[r] if segments is not None else batch["attention_mask"][r].long()
        for s in sorted(set(seg.tolist()) - {0}):
            keep = seg == s
            out.append(tuple(batch[k][r][keep].tolist() for k in ("input_ids", "position_ids", "labels")))
    return sorted(out)


def test_best_fit_decreasing_places_every_row_once_within_capacity():
    rng = np.random.default_rng(0)
    for _ in range(50):
        lengths = rng.integers(1, 31, size=int(rng.integers(1, 60))).tolist()
        bins = best_fit_decreasing(lengths, 30)
        assert sorted(itertools.chain(*bins)) == list(range(len(lengths)))
        assert all(sum(lengths[i] for i in b) <= 30 for b in bins)
        assert len(bins) <= int(np.ceil(sum(lengths) / 30 * 11 / 9)) + 1  # BFD's bound (11/9 OPT + 6/9)
    assert best_fit_decreasing([6, 5, 4, 3, 2], 10) == [[0, 2], [1, 3, 4]]  # the fullest bin that fits


@pytest.mark.parametrize("pad_pos_skip", [True, False])
def test_packing_keeps_every_row_and_saves_padding(pad_pos_skip):
    padded, packed = collate(False, pad_pos_skip=pad_pos_skip), collate(True, pad_pos_skip=pad_pos_skip)
    assert rows_of(packed) == rows_of(padded)  # tokens, positions and labels travel together
    assert packed["input_ids"].shape[1] == padded["input_ids"].shape[1]
    assert len(packed["input_ids"]) < 0.8 * len(padded["input_ids"])
    assert int((packed["labels"] != -100).sum()) == int((padded["labels"] != -100).sum())
    assert torch.equal(packed["attention_mask"].bool(), packed[SEGMENTS_KEY] > 0)


def test_packing_refuses_rows_it_would_get_wrong():
    batch = collate(False, n_btokens=0)
    left = {k: v.flip(1) for k, v in batch.items()}  # left-padded
    with pytest.raises(ValueError, match="right-padded"):
        pack_batch(left, PAD)
    labelled = {**batch, "labels": batch["input_ids"].clone()}
    with pytest.raises(ValueError, match="unlabelled first tokens"):
        pack_batch(labelled, PAD)


@pytest.fixture(scope="module")
def model() -> BlotchModel:
    torch.manual_seed(0)
    config = BlotchConfig(vocab_size=len(TOK) + 3, d_model=32, n_heads=2, n_layers=2, max_posencs=512, n_btokens=3)
    return BlotchModel(config)


def per_row_logits(batch: dict, logits: torch.Tensor) -> list[torch.Tensor]:
    segments = batch.get(SEGMENTS_KEY)
    out = []
    for r in range(len(logits)):
        seg = segments[r] if segments is not None else batch["attention_mask"][r].long()
        for s in sorted(set(seg.tolist()) - {0}):
            out.append((batch["input_ids"][r][seg == s].tolist(), logits[r][seg == s]))
    return [t for _, t in sorted(out, key=lambda x: x[0])]


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_forward_loss_and_gradient_equal_the_padded(model, attn):
    model.train()  # dropout is 0: training mode only matters for the loss's label smoothing (0 here)
    padded, packed = collate(False, seed=1), collate(True, seed=1)
    grads, losses, rows = [], [], []
    model.config._attn_implementation = attn
    try:
        for batch in (padded, packed):
            model.zero_grad()
            out = model(**batch)
            out.loss.backward()
            grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
            losses.append(out.loss.detach())
            rows.append(per_row_logits(batch, out.logits.detach()))
    finally:
        model.config._attn_implementation = "sdpa"
    for a, b in zip(*rows, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-6, atol=1e-6)
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)


def test_packed_rows_need_an_attention_that_takes_the_mask(model):
    model.config._attn_implementation = "flash_attention_2"
    try:
        with pytest.raises(ValueError, match="packed_segments with attn_implementation='flash_attention_2'"):
            model(**collate(True, seed=1))
    finally:
        model.config._attn_implementation = "sdpa"


def test_without_the_segment_mask_packed_rows_see_each_other(model):
    """Negative control: the same packed rows with only a padding mask attend across row boundaries."""
    packed = collate(True, seed=2)
    with torch.no_grad():
        masked = model.eval()(**packed).logits
        leaky = model(**{k: v for k, v in packed.items() if k != SEGMENTS_KEY}).logits
    later = packed[SEGMENTS_KEY] > 1  # tokens of a packed row's second or later segment
    assert later.any()
    assert not torch.allclose(masked[later], leaky[later], atol=1e-3)
    first = packed[SEGMENTS_KEY] == 1
    torch.testing.assert_close(masked[first], leaky[first], rtol=1e-5, atol=1e-5)  # the causal prefix agrees


def test_packed_rows_train_under_bf16_autocast(model):
    """SDPA takes the boolean segment mask whatever the query dtype (a float32 additive mask would not)."""
    packed, padded = collate(True, seed=1), collate(False, seed=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss_packed, loss_padded = model.train()(**packed).loss, model(**padded).loss
    loss_packed.backward()
    a, b = loss_packed.item(), loss_padded.item()
    assert torch.isfinite(loss_packed) and abs(a - b) < 0.05 * b


TINY = {
    "experiment": "blotch", "max_num": 9, "max_ents": 3, "init_samples": 200, "val_samples": 20, "ood_samples": 10,
    "ood_max_num": 19, "d_model": 16, "n_heads": 2, "n_layers": 1, "h_mult": 2, "max_posencs": 128,
    "blotch_p_min": 0.0, "blotch_p_max": 0.4, "n_btokens": 3, "batch_size": 16, "per_device_eval_batch_size": 16,
    "max_steps": 6, "logging_steps": 1, "save_steps": 6, "eval_strategy": "steps", "eval_steps": 3,
    "report_to": "none", "lr": 0.01, "warmup_steps": 2, "gen_eval_samples": 8, "max_eval_batches": 1,
}  # fmt: skip


def test_training_through_the_trainer_is_the_same_packed_and_padded(tmp_path, micro: int = 5):
    """Real runs: the Trainer's `num_items_in_batch`, micro-batches (`per_device_batch_size`: each micro-batch is
    blotched and packed on its own) and evaluation loop see packed batches; the losses, gradient norms and
    evaluations equal the padded run's to float rounding."""
    from tests.helpers import logged_history, run, write_config

    histories = {}
    for pack in (False, True):
        extra = {"pack_rows": pack, "per_device_batch_size": micro}
        name = f"pack_{pack}"
        path = write_config(tmp_path / f"{name}.json", **{**TINY, "save_root": str(tmp_path / "out"), **extra})
        result = run("--config", str(path))
        assert result.returncode == 0, result.stderr[-3000:]
        histories[pack] = [
            {k: h[k] for k in ("loss", "eval_loss", "grad_norm") if k in h}
            for h in logged_history(tmp_path / "out" / name)
        ]
    padded, packed = histories[False], histories[True]
    assert sum("loss" in h for h in padded) == 6 and sum("eval_loss" in h for h in padded) >= 2
    assert [sorted(h) for h in packed] == [sorted(h) for h in padded]
    for a, b in zip(padded, packed):
        for k in a:
            assert b[k] == pytest.approx(a[k], rel=2e-4), k
