"""evaluate_compression, the local BLEU module and the low/pred/high plot."""

from __future__ import annotations

import math
import os
import random

os.environ["HF_HUB_OFFLINE"] = "1"

import datasets
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

from hf_experiments.compression.configuration_compression import CompressionConfig
from hf_experiments.compression.evaluation import evaluate_compression, plot_low_pred_high
from hf_experiments.compression.metrics import load_local_metric
from hf_experiments.compression.modeling_compression import CompressionModel

VOCAB, CMP_LEN, SEQ_LEN = 99, 6, 6
RATES = (
    "low_top1",
    "low_top5",
    "high_top1",
    "high_top5",
    "pred_top1",
    "pred_top5",
    "low_free_match",
    "high_free_match",
    "pred_free_match",
    "rmb_token_acc",
    "rmb_exact_match",
    "rmb_bleu",
)


def copy_windows(n: int, seed: int = 0) -> torch.LongTensor:
    """Windows whose second half repeats the first: the context makes the text fully predictable."""
    ctx = torch.randint(1, VOCAB, (n, CMP_LEN), generator=torch.Generator().manual_seed(seed))
    return torch.cat([ctx, ctx], dim=1)


def save_backbone(config, path) -> str:
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(path)
    return str(path)


def tiny_gpt2() -> GPT2Config:
    return GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=VOCAB, bos_token_id=0, eos_token_id=0)


def tiny_llama() -> LlamaConfig:
    return LlamaConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=VOCAB
    )


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest single-threaded; intra-op threads only contend on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----- BLEU -----


@pytest.fixture(scope="module")
def bleu():
    return load_local_metric("bleu")


def test_bleu_is_one_on_identical_and_zero_on_disjoint(bleu):
    same = bleu.compute(predictions=["1 2 3 4 5", "7 8 9 10"], references=[["1 2 3 4 5"], ["7 8 9 10"]])
    assert same["bleu"] == pytest.approx(1.0)
    assert bleu.compute(predictions=["1 2 3 4 5"], references=[["6 7 8 9 10"]])["bleu"] == 0.0


def test_bleu_matches_hand_computed_values(bleu):
    # all n-grams match but the candidate is short: BLEU = brevity penalty = exp(1 - 8/5)
    short = bleu.compute(predictions=["a b c d e"], references=[["a b c d e f g h"]])
    assert short["bleu"] == pytest.approx(math.exp(1 - 8 / 5))
    # one wrong last token: p1..p4 = 4/5, 3/4, 2/3, 1/2, equal lengths
    partial = bleu.compute(predictions=["a b c d x"], references=[["a b c d e"]])
    assert partial["precisions"] == pytest.approx([4 / 5, 3 / 4, 2 / 3, 1 / 2])
    assert partial["bleu"] == pytest.approx((4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25)
    # corpus BLEU pools counts over sentences (it is not the mean of sentence scores)
    corpus = bleu.compute(predictions=["a b c d e", "a b c d x"], references=[["a b c d e f g h"], ["a b c d e"]])
    pooled = (9 / 10 * 7 / 8 * 5 / 6 * 3 / 4) ** 0.25 * math.exp(1 - 13 / 10)
    assert corpus["bleu"] == pytest.approx(pooled)
    # repeated words are clipped by their count in the reference
    assert bleu.compute(predictions=["the the the the"], references=[["the cat"]], max_order=1)["bleu"] == (
        pytest.approx(1 / 4)
    )


def test_bleu_is_sacrebleus_on_random_corpora(bleu):
    import sacrebleu

    rng = random.Random(0)
    sentence = lambda: " ".join(str(rng.randrange(6)) for _ in range(rng.randrange(2, 12)))
    for n, n_refs, kwargs in ((20, 1, {}), (5, 2, {}), (8, 3, {"tokenize": "none", "smooth_method": "none"})):
        preds = [sentence() for _ in range(n)]
        refs = [[sentence() for _ in range(n)] for _ in range(n_refs)]  # sacreBLEU's streams
        ours = bleu.compute(predictions=preds, references=[list(r) for r in zip(*refs)], **kwargs)
        theirs = sacrebleu.corpus_bleu(preds, refs, **kwargs)
        assert ours["score"] == theirs.score and ours["bleu"] == pytest.approx(theirs.score / 100)
        assert ours["brevity_penalty"] == theirs.bp and ours["translation_length"] == theirs.sys_len


def test_bleu_reproduces_sacrebleus_published_example(bleu):
    """The example of sacreBLEU's README: `BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 hyp_len = 17
    ref_len = 18)`, signature `nrefs:2|case:mixed|eff:no|tok:13a|smooth:exp`."""
    refs = [
        ["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
        ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."],
    ]
    hyps = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
    out = bleu.compute(predictions=hyps, references=[list(r) for r in zip(*refs)])
    assert round(out["score"], 2) == 48.53
    assert [round(100 * p, 1) for p in out["precisions"]] == [82.4, 50.0, 45.5, 37.5]
    assert round(out["brevity_penalty"], 3) == 0.943
    assert (out["translation_length"], out["reference_length"]) == (17, 18)
    assert out["signature"].startswith("nrefs:2|case:mixed|eff:no|tok:13a|smooth:exp|version:")


def test_bleu_takes_a_varying_number_of_references(bleu):
    import sacrebleu

    preds = ["the cat sat on the mat", "a dog ran in the park today"]
    refs = [["the cat sat on a mat", "a cat sat on the mat"], ["a dog ran in the park"]]
    out = bleu.compute(predictions=preds, references=refs)
    streams = [[refs[0][0], refs[1][0]], [refs[0][1], None]]
    assert out["score"] == sacrebleu.corpus_bleu(preds, streams).score
    assert out["signature"].startswith("nrefs:var|")


def test_unknown_local_metric_is_a_value_error():
    with pytest.raises(ValueError, match="name='rouge'"):
        load_local_metric("rouge")


# ----- evaluate_compression -----


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory) -> str:
    return save_backbone(tiny_gpt2(), tmp_path_factory.mktemp("gpt2"))


def make_model(path: str, **overrides) -> CompressionModel:
    torch.manual_seed(0)
    kwargs = dict(model_string=path, n_cmps=2, cmp_len=CMP_LEN, seq_len=SEQ_LEN) | overrides
    return CompressionModel(CompressionConfig(**kwargs))


def test_metrics_are_present_rates_and_tensor_equals_dataset_input(gpt2_dir):
    model = make_model(gpt2_dir, rmb_task=True)
    ids = copy_windows(10)
    metrics = evaluate_compression(model, ids, batch_size=4, free_run_tokens=3)
    stats = {"gap_recovered", "low_minus_pred", "low_minus_high"}
    expected = (
        set(RATES)
        | {"low_loss", "high_loss", "pred_loss", "num_windows", "num_documents", "gap_degenerate", "first_token_scored"}
        | stats
        | {f"{k}_ci_{side}" for k in stats for side in ("low", "high")}
        | {f"{m}_loss_by_position" for m in ("low", "high", "pred")}
        | {"rmb_bleu_signature"}
    )
    assert expected == set(metrics)
    assert metrics["rmb_bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:none|smooth:exp|version:")
    assert all(0.0 <= metrics[key] <= 1.0 for key in RATES)
    assert metrics["num_windows"] == 10 and metrics["num_documents"] == 10  # no doc ids: a window is a block
    assert metrics["first_token_scored"] == 1.0 and len(metrics["low_loss_by_position"]) == SEQ_LEN
    for m in ("low", "high", "pred"):  # the per-position losses average to the overall loss (equal counts)
        assert sum(metrics[f"{m}_loss_by_position"]) / SEQ_LEN == pytest.approx(metrics[f"{m}_loss"], abs=1e-4)
    assert all(metrics[f"{m}_top1"] <= metrics[f"{m}_top5"] for m in ("low", "high", "pred"))
    as_dataset = datasets.Dataset.from_dict({"input_ids": ids.tolist()})
    again = evaluate_compression(model, as_dataset, batch_size=3, free_run_tokens=3)
    scalars = [k for k, v in metrics.items() if isinstance(v, float) and "_ci_" not in k]
    assert {k: again[k] for k in scalars} == pytest.approx({k: metrics[k] for k in scalars}, rel=1e-4, nan_ok=True)
    assert evaluate_compression(model, ids, batch_size=4, max_batches=2)["num_windows"] == 8
    assert "rmb_bleu" not in evaluate_compression(make_model(gpt2_dir), ids, batch_size=4)


def test_teacher_forced_losses_equal_the_plain_backbone_when_compression_is_exact(tmp_path):
    """A model whose compression is perfect by construction, checked against the backbone called directly.

    With `pooling="mean"`, `cmp_layer=0` and one vector per context token, a Llama backbone (whose
    hidden_states[0] are the raw input embeddings) gets the context's own embeddings as "compressed" states.
    With the forward task token set to a separator's embedding, the pred input IS the token sequence
    [BOS, ctx, SEP, seq], so every pred metric must equal the backbone's on that sequence; every seq token,
    the first included, is scored in every mode.
    """
    model = make_model(
        save_backbone(tiny_llama(), tmp_path), pooling="mean", cmp_layer=0, n_cmps=CMP_LEN, rmb_task=True
    )
    sep, rmb_sep = 0, 1
    embeddings = model.backbone.get_input_embeddings().weight
    with torch.no_grad():
        model.task_embs.copy_(embeddings[[sep, rmb_sep]])
    ids = copy_windows(5, seed=2)
    ctx, seq = ids[:, :CMP_LEN], ids[:, CMP_LEN:]
    metrics = evaluate_compression(model, ids, batch_size=2, free_run_tokens=4)

    def plain(tokens: torch.Tensor, n_predicted: int) -> tuple[float, float]:
        """Loss and top-1 of the backbone on `tokens` for its last `n_predicted` next-token predictions."""
        with torch.no_grad():
            logits = model.backbone(input_ids=tokens).logits[:, -n_predicted - 1 : -1]
        targets = tokens[:, -n_predicted:]
        loss = F.cross_entropy(logits.transpose(1, 2), targets).item()
        return loss, (logits.argmax(-1) == targets).float().mean().item()

    sep_col, bos = torch.full((5, 1), sep), torch.full((5, 1), model.bos_token_id)
    expected = {
        "low": plain(torch.cat([bos, seq], dim=1), SEQ_LEN),
        "high": plain(torch.cat([bos, ids], dim=1), SEQ_LEN),
        "pred": plain(torch.cat([bos, ctx, sep_col, seq], dim=1), SEQ_LEN),
    }
    for mode, (loss, top1) in expected.items():
        assert metrics[f"{mode}_loss"] == pytest.approx(loss, abs=1e-5)
        assert metrics[f"{mode}_top1"] == pytest.approx(top1, abs=1e-6)
    low, high, pred = (expected[m][0] for m in ("low", "high", "pred"))
    assert metrics["gap_recovered"] == pytest.approx((low - pred) / (low - high), rel=1e-2)  # tiny gap: loose
    # free running from the compressed context == free running from the same tokens given as a raw context
    pred = model.generate_from_context(ctx, seq[:, :1], 4)
    high = model.generate_from_context(torch.cat([ctx, sep_col], dim=1), seq[:, :1], 4, mode="high")
    assert torch.equal(pred, high)
    assert metrics["pred_free_match"] == pytest.approx((pred == seq[:, 1:5]).float().mean().item())
    rebuilt = model.reconstruct(ctx)
    assert torch.equal(rebuilt, model.generate_from_context(ctx, torch.full((5, 1), rmb_sep), CMP_LEN, mode="high"))
    assert metrics["rmb_exact_match"] == pytest.approx((rebuilt == ctx).all(-1).float().mean().item())


def test_high_beats_low_once_the_backbone_learned_to_copy(tmp_path):
    torch.manual_seed(0)
    backbone = AutoModelForCausalLM.from_config(tiny_gpt2())
    optimizer = torch.optim.Adam(backbone.parameters(), lr=1e-2)
    for step in range(50):  # a few dozen steps on [ctx, ctx] windows: copy from 6 tokens back
        batch = copy_windows(32, seed=100 + step)
        loss = backbone(input_ids=batch, labels=batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    backbone.eval()
    model = CompressionModel(
        CompressionConfig(model_string="unused", n_cmps=2, cmp_len=CMP_LEN, seq_len=SEQ_LEN),
        backbone=backbone,
    )
    metrics = evaluate_compression(model, copy_windows(16, seed=1), batch_size=8, free_run_tokens=5)
    assert metrics["high_loss"] < metrics["low_loss"] - 0.5
    assert metrics["high_top1"] > metrics["low_top1"]
    assert metrics["high_free_match"] >= metrics["low_free_match"]


def test_bad_evaluation_input_is_rejected(gpt2_dir):
    model = make_model(gpt2_dir)
    with pytest.raises(ValueError, match="cmp_len \\+ seq_len = 12"):
        evaluate_compression(model, copy_windows(4)[:, :-1])
    with pytest.raises(ValueError, match="batch_size=0"):
        evaluate_compression(model, copy_windows(4), batch_size=0)


def test_evaluation_restores_training_mode(gpt2_dir):
    model = make_model(gpt2_dir).train()
    evaluate_compression(model, copy_windows(2), batch_size=2)
    assert model.training


# ----- plot -----


def test_plot_writes_a_png(tmp_path):
    metrics = {
        "low_loss": 3.0,
        "pred_loss": 2.8,
        "high_loss": 2.7,
        "low_top1": 0.2,
        "pred_top1": 0.25,
        "high_top1": 0.27,
        "gap_recovered": 2 / 3,
    }
    path = plot_low_pred_high(metrics, tmp_path / "plots" / "gap.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000
    by_position = {f"{m}_loss_by_position": [3.5, 2.9] for m in ("low", "pred", "high")}
    degenerate = {**metrics, **by_position, "gap_degenerate": 1.0, "low_minus_high": 0.001, "first_token_scored": 1.0}
    plot_low_pred_high(degenerate, tmp_path / "deg.png")
    assert (tmp_path / "deg.csv").read_text().splitlines()[0] == "position,low_loss,pred_loss,high_loss"
    with pytest.raises(ValueError, match="high_loss"):
        plot_low_pred_high({"low_loss": 1.0}, tmp_path / "x.png")


# ----- statistics -----


def test_gap_statistics_are_blocked_by_document_and_flag_a_degenerate_gap(caplog):
    from hf_experiments.compression.evaluation import gap_statistics

    gen = torch.Generator().manual_seed(0)
    n, docs = 400, torch.arange(400) // 8  # 50 documents of 8 windows
    tokens = torch.full((n,), 10.0)
    low = 30 + torch.rand(n, generator=gen)
    high, pred = low - 5.0, low - 4.0  # per token: gap 0.5, recovered 0.4
    stats = gap_statistics({"low": low, "high": high, "pred": pred}, tokens, docs)
    assert stats["gap_recovered"] == pytest.approx(0.8) and stats["low_minus_high"] == pytest.approx(0.5)
    assert stats["gap_recovered_ci_low"] <= 0.8 <= stats["gap_recovered_ci_high"]
    assert stats["num_documents"] == 50 and stats["gap_degenerate"] == 0.0
    # a context that does not help: the share is noise, flagged (and the log says so)
    noise = torch.randn(n, generator=gen) * 0.05
    flat = gap_statistics({"low": low, "high": low + noise, "pred": low + noise / 2}, tokens, docs)
    assert flat["gap_degenerate"] == 1.0 and "not a meaningful share" in caplog.text


def test_document_ids_reach_the_bootstrap(gpt2_dir):
    """Windows of a `datasets.Dataset` with `doc_id` are blocked by it: fewer documents than windows."""
    model = make_model(gpt2_dir)
    ids = copy_windows(12)
    ds = datasets.Dataset.from_dict({"input_ids": ids.tolist(), "doc_id": [i // 4 for i in range(12)]})
    assert evaluate_compression(model, ds, batch_size=5)["num_documents"] == 3
