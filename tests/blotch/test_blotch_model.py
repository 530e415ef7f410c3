"""BlotchConfig / BlotchModel: seed names, Auto-class round trip, KV-cache generation, left padding,
positional encodings, blotch tokens, the loss (label smoothing, gradient-accumulation normalisation)."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from hf_experiments.blotch.configuration_blotch import BlotchConfig
from hf_experiments.blotch.evaluation import final_answer, generate_solutions, majority_answer, prompt_batch
from hf_experiments.blotch.modeling_blotch import BlotchModel, causal_lm_loss
from hf_experiments.blotch.tokenization_arith import arith_tokenizer, encode_rows

TOK = arith_tokenizer()
N_BT = 3


def tiny(**overrides) -> BlotchModel:
    params = {
        "vocab_size": len(TOK) + N_BT,
        "n_btokens": N_BT,
        "blotch_p_min": 0.0,
        "blotch_p_max": 0.4,
        "d_model": 32,
        "n_heads": 2,
        "n_layers": 2,
        "max_posencs": 128,
    }
    torch.manual_seed(0)
    return BlotchModel(BlotchConfig(**{**params, **overrides})).eval()


def test_config_seed_names_and_errors():
    cfg = BlotchConfig(vocab_size=20, d_model=48, n_heads=3, n_layers=2, h_mult=2, max_posencs=64, drop_p=0.1)
    assert (cfg.n_embd, cfg.n_head, cfg.n_layer, cfg.n_positions, cfg.n_inner) == (48, 3, 2, 64, 96)
    assert cfg.resid_pdrop == cfg.attn_pdrop == cfg.embd_pdrop == 0.1
    with pytest.raises(ValueError, match="d_model=30"):
        BlotchConfig(d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="posenc_type"):
        BlotchConfig(posenc_type="RotaryPositionalEncoding")
    with pytest.raises(ValueError, match="n_btokens"):
        BlotchConfig(vocab_size=5, n_btokens=5)


@pytest.mark.parametrize("posenc", ["SinPositionalEncoding", "RandPositionalEncoding"])
@pytest.mark.parametrize("learnable", [False, True])
def test_save_load_round_trip_through_auto_classes(tmp_path, posenc, learnable):
    model = tiny(posenc_type=posenc, learnable_posencs=learnable)
    assert isinstance(model.transformer.wpe.pe, torch.nn.Parameter) == learnable
    model.save_pretrained(tmp_path)
    TOK.save_pretrained(tmp_path)
    assert type(AutoConfig.from_pretrained(tmp_path)) is BlotchConfig
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    tok = AutoTokenizer.from_pretrained(tmp_path)
    assert type(loaded) is BlotchModel and tok.get_vocab() == TOK.get_vocab()
    ids = torch.tensor([encode_rows(tok, ["12+34=46"])[0].tolist()])
    torch.testing.assert_close(loaded(ids).logits, model(ids).logits)


def test_generation_with_and_without_cache_agree_on_a_left_padded_batch():
    model = tiny()
    problems = ["7+5", "27+75+3", "40+1"]
    ids, mask = prompt_batch(TOK, problems, btoken=len(TOK) + 1)
    assert (mask[0, :2] == 0).all() and (ids[:, -1] == TOK.convert_tokens_to_ids("=")).all()
    kwargs = dict(attention_mask=mask, max_new_tokens=12, do_sample=False, pad_token_id=0, eos_token_id=2)
    cached = model.generate(ids, use_cache=True, **kwargs)
    uncached = model.generate(ids, use_cache=False, **kwargs)
    assert torch.equal(cached, uncached)
    for i, problem in enumerate(problems):  # each row alone (no padding) continues identically
        alone, alone_mask = prompt_batch(TOK, [problem], btoken=len(TOK) + 1)
        single = model.generate(alone, **{**kwargs, "attention_mask": alone_mask})
        assert torch.equal(single[0, alone.shape[1] :], cached[i, ids.shape[1] :])


def test_blotch_tokens_are_never_generated_nor_predicted():
    model = tiny()
    with torch.no_grad():
        model.lm_head.weight[len(TOK) :] += 100.0  # would dominate if allowed (tied to the embedding)
    ids = torch.tensor([[len(TOK), 1, 5, 14, 6, 18]])
    out = model(ids, labels=ids.masked_fill(ids >= len(TOK), -100))
    assert torch.isinf(out.logits[..., len(TOK) :]).all() and torch.isfinite(out.loss)
    gen = model.generate(ids, max_new_tokens=8, do_sample=True, temperature=5.0, pad_token_id=0)
    assert (gen[:, ids.shape[1] :] < len(TOK)).all()


def test_randomised_positions_in_training_only():
    model = tiny(posenc_type="RandPositionalEncoding", max_posencs=64)
    pe = model.transformer.wpe
    pos = torch.arange(10)[None]
    pe.train()
    encodings = pe(pos)[0]  # (10, D)
    rows = [int((pe.pe == e).all(1).nonzero()[0]) for e in encodings]  # which table row each position got
    assert rows == sorted(rows) and len(set(rows)) == 10 and max(rows) < 64  # a sorted subset of the table
    assert any(not torch.equal(pe(pos), pe(pos)) for _ in range(5))  # fresh positions per batch
    pe.eval()
    torch.testing.assert_close(pe(pos)[0], pe.pe[:10])


def test_positions_default_to_the_attention_mask_and_dropout_on_posencs():
    model = tiny()
    row = torch.tensor([encode_rows(TOK, ["3+4=7"])[0].tolist()])
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), row], 1)  # left padding
    mask = (padded != 0).long()
    with torch.no_grad():
        torch.testing.assert_close(
            model(padded, attention_mask=mask).logits[:, 3:], model(row).logits, rtol=1e-5, atol=1e-5
        )
    drop = tiny(posenc_drop_p=0.5).train()
    assert not torch.equal(drop.transformer.wpe(torch.arange(8)[None]), drop.transformer.wpe(torch.arange(8)[None]))


@torch.no_grad()
def test_loss_label_smoothing_and_token_normalisation():
    model = tiny(label_smoothing=0.1)
    ids = torch.tensor([encode_rows(TOK, ["12+5=2+5+10=17"])[0].tolist()] * 2)
    labels = ids.clone()
    labels[:, :6] = -100
    logits = model(ids).logits[..., : len(TOK)]
    plain = F.cross_entropy(logits[:, :-1].reshape(-1, len(TOK)), labels[:, 1:].reshape(-1))
    assert float(model(ids, labels=labels).loss) == pytest.approx(float(plain), rel=1e-5)  # eval: no smoothing
    model.train()
    model.transformer.drop.p = 0.0
    smoothed = model(ids, labels=labels).loss
    expected = F.cross_entropy(logits[:, :-1].reshape(-1, len(TOK)), labels[:, 1:].reshape(-1), label_smoothing=0.1)
    assert float(smoothed) == pytest.approx(float(expected), rel=1e-5)
    n = int((labels[:, 1:] != -100).sum())
    summed = causal_lm_loss(logits, labels, num_items_in_batch=torch.tensor(2 * n))
    assert float(summed) == pytest.approx(float(plain) / 2, rel=1e-5)


def test_generate_solutions_and_answers():
    model = tiny()
    rolls = generate_solutions(model, TOK, ["1+2", "30+4"], blotch_p=0.4, max_new_tokens=6, batch_size=1)
    assert len(rolls.texts) == 2 and rolls.lengths.shape == (2, 1) and (rolls.lengths <= 6).all()
    sampled = generate_solutions(model, TOK, ["1+2"], temperature=1.0, n_rollouts=4, max_new_tokens=6)
    assert len(sampled.texts[0]) == 4
    assert final_answer("3+4=7") == 7 and final_answer("12") == 12 and final_answer("3+4=") is None
    assert majority_answer(["1+2=3", "1+2=4", "3", "x"]) == 3 and majority_answer(["="]) is None


def test_generation_groups_prompts_by_length_but_returns_them_in_input_order():
    """Batches are cut from prompts sorted by length; each result must still land at its own prompt (and its
    n rollouts next to each other), equal to generating that prompt alone."""
    torch.manual_seed(1)
    model = tiny()
    with torch.no_grad():  # large random weights: continuations that depend on the prompt
        for p in model.parameters():
            p.normal_(0.0, 1.0)
    problems = ["12+34+56", "1+2", "30+4", "7+8+9", "99+1", "5+60+7"]
    # n > 1 needs sampling; at temperature 1e-4 sampling is the argmax (the logits differ by far more).
    rolls = generate_solutions(model, TOK, problems, temperature=1e-4, n_rollouts=2, max_new_tokens=8, batch_size=2)
    alone = [generate_solutions(model, TOK, [p], max_new_tokens=8, batch_size=1) for p in problems]
    assert rolls.texts == [[a.texts[0][0]] * 2 for a in alone]
    assert rolls.lengths.tolist() == [[int(a.lengths[0, 0])] * 2 for a in alone]
    assert len({t[0] for t in rolls.texts}) > 1  # the prompts do get different continuations
