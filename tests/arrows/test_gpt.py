"""GPTConfig / GPTForCausalLM: seed-name config, KV cache, save/load, loss semantics, causality."""

import importlib
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

import hf_experiments.arrows as gpt_pkg
from hf_experiments.arrows.configuration_gpt import GPTConfig, gpt_preset
from hf_experiments.arrows.modeling_gpt import GPTForCausalLM
from hf_experiments.core.tokenization_char import CharTokenizer

VOCAB = 18  # 4 specials + "0123456789 *=_"
SEQ = 10


def tiny_config(**overrides) -> GPTConfig:
    params = {
        "vocab_size": VOCAB,
        "n_layers": 2,
        "n_heads": 2,
        "embed_dim": 32,
        "attn_length": 32,
        "dropout": 0.0,
    }
    return GPTConfig(**{**params, **overrides})


@pytest.fixture()
def model() -> GPTForCausalLM:
    torch.manual_seed(0)
    return GPTForCausalLM(tiny_config()).eval()


@pytest.fixture()
def batch() -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(4, VOCAB, (3, SEQ), generator=generator)  # (B, T)
    ids[:, 0] = 1  # BOS
    return ids


# ----- config -----
def test_config_maps_seed_names_onto_gpt2_attributes():
    config = GPTConfig(vocab_size=VOCAB, attn_length=31, **gpt_preset("tiny"))
    assert (config.n_layers, config.n_heads, config.embed_dim, config.attn_length) == (2, 2, 64, 31)
    assert (config.n_layer, config.n_head, config.n_embd, config.n_positions) == (2, 2, 64, 31)
    assert config.n_inner == 256  # mlp_ratio 4.0
    assert config.resid_pdrop == config.attn_pdrop == 0.1
    assert config.embd_pdrop == 0.0  # embd_dropout None -> 0
    assert GPTConfig(vocab_size=VOCAB, embd_dropout=0.2, mlp_ratio=2.5, embed_dim=16, n_heads=4).n_inner == 40
    assert GPTConfig(vocab_size=VOCAB, embd_dropout=0.2).embd_pdrop == 0.2


def test_config_save_load_keeps_seed_values(tmp_path):
    config = tiny_config(mlp_ratio=3.0, embd_dropout=0.05)
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert type(loaded) is GPTConfig and loaded.model_type == "hfe_gpt"
    for name in (
        "vocab_size",
        "n_layers",
        "n_heads",
        "embed_dim",
        "attn_length",
        "mlp_ratio",
        "dropout",
        "embd_dropout",
        "n_inner",
        "embd_pdrop",
        "bos_token_id",
        "eos_token_id",
        "pad_token_id",
    ):
        assert getattr(loaded, name) == getattr(config, name), name


@pytest.mark.parametrize(
    ("overrides", "param"),
    [
        ({"embed_dim": 30, "n_heads": 4}, "embed_dim"),
        ({"vocab_size": 0}, "vocab_size"),
        ({"attn_length": 0}, "attn_length"),
        ({"n_layers": 0}, "n_layers"),
        ({"n_heads": "2"}, "n_heads"),
        ({"dropout": 1.0}, "dropout"),
        ({"embd_dropout": -0.1}, "embd_dropout"),
        ({"mlp_ratio": 0}, "mlp_ratio"),
        ({"bos_token_id": VOCAB}, "bos_token_id"),
    ],
)
def test_config_rejects_bad_values_with_value_error(overrides, param):
    with pytest.raises(ValueError, match=param):
        tiny_config(**overrides)


def test_presets():
    assert {k: gpt_preset("gpt1")[k] for k in ("n_layers", "n_heads", "embed_dim")} == {
        "n_layers": 12,
        "n_heads": 12,
        "embed_dim": 768,
    }
    sizes = {
        name: (gpt_preset(name)["n_layers"], gpt_preset(name)["embed_dim"]) for name in ("tiny", "small", "medium")
    }
    assert sizes == {"tiny": (2, 64), "small": (4, 128), "medium": (6, 256)}
    for name in ("gpt1", "tiny", "small", "medium"):
        GPTConfig(vocab_size=VOCAB, attn_length=32, **gpt_preset(name))  # every preset is a valid config
    gpt_preset("tiny")["n_layers"] = 99
    assert gpt_preset("tiny")["n_layers"] == 2  # callers get a copy
    with pytest.raises(ValueError, match="name"):
        gpt_preset("gpt5")


def test_registration_is_idempotent():
    from hf_experiments.arrows import registration

    importlib.reload(gpt_pkg)
    registration.register()
    registration.register()
    assert type(AutoConfig.for_model("hfe_gpt", vocab_size=VOCAB)) is GPTConfig
    assert isinstance(AutoModelForCausalLM.from_config(tiny_config()), GPTForCausalLM)


# ----- model -----
def test_architecture_sdpa_tied_and_pre_ln(model):
    assert model.config._attn_implementation == "sdpa"
    assert model.lm_head.weight is model.transformer.wte.weight
    assert model.transformer.wpe.num_embeddings == 32
    assert hasattr(model.transformer, "ln_f")  # pre-LN: final LayerNorm after the last block
    assert model.transformer.h[0].mlp.c_fc.nx == 32 and model.transformer.h[0].mlp.c_fc.nf == 128


def test_cached_and_uncached_greedy_generation_agree(model, batch):
    prompt = batch[:, :4]
    kwargs = {"max_new_tokens": 8, "do_sample": False, "output_logits": True, "return_dict_in_generate": True}
    cached = model.generate(prompt, use_cache=True, **kwargs)
    uncached = model.generate(prompt, use_cache=False, **kwargs)
    assert torch.equal(cached.sequences, uncached.sequences)
    cached_logits = torch.stack(cached.logits, dim=1)  # (B, new, V)
    torch.testing.assert_close(cached_logits, torch.stack(uncached.logits, dim=1), atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        full = model(cached.sequences, use_cache=False).logits  # (B, T, V)
    new = cached.sequences.shape[1] - prompt.shape[1]
    torch.testing.assert_close(
        cached_logits, full[:, prompt.shape[1] - 1 : prompt.shape[1] - 1 + new], atol=1e-5, rtol=1e-5
    )
    assert torch.equal(cached.sequences[:, prompt.shape[1] :], cached_logits.argmax(-1))


def test_save_load_round_trip_through_auto_classes(tmp_path, model, batch):
    tokenizer = CharTokenizer(characters="0123456789 *=_")
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    loaded_tok = AutoTokenizer.from_pretrained(tmp_path)
    assert type(loaded) is GPTForCausalLM and type(loaded_tok).__name__ == "CharTokenizerFast"  # fast preferred
    assert loaded.lm_head.weight is loaded.transformer.wte.weight
    with torch.no_grad():
        torch.testing.assert_close(loaded(batch).logits, model(batch).logits, atol=0, rtol=0)
    line = "00013 * 00101   =   3131000000"
    assert loaded_tok.encode(line) == tokenizer.encode(line)


def _manual_token_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-token CE of next-token prediction over the positions whose target is not -100."""
    targets = labels[:, 1:]  # (B, T-1)
    keep = targets != -100
    return F.cross_entropy(logits[:, :-1][keep].float(), targets[keep], reduction="none")


def test_loss_ignores_minus_100(model, batch):
    labels = batch.clone()
    labels[0, 2:6] = -100
    labels[2, 1] = -100
    out = model(batch, labels=labels)
    kept = _manual_token_losses(out.logits, labels)
    assert kept.numel() == 3 * (SEQ - 1) - 5  # the 5 masked targets are out of the average
    torch.testing.assert_close(out.loss, kept.mean())


def test_num_items_in_batch_divides_the_sum(model, batch):
    labels = batch.clone()
    labels[1, 3:] = -100
    out = model(batch, labels=labels, num_items_in_batch=torch.tensor(7))
    torch.testing.assert_close(out.loss, _manual_token_losses(out.logits, labels).sum() / 7)


def test_gradient_accumulation_matches_full_batch(model, batch):
    """Two micro-batches with the global token count give the full-batch loss and gradient exactly."""
    labels = batch.clone()
    labels[0, 4:] = -100  # unequal token counts per micro-batch: a plain mean of means would be wrong
    full = model(batch, labels=labels).loss
    full_grad = torch.autograd.grad(full, model.transformer.wpe.weight)[0]
    n_items = torch.tensor(int((labels[:, 1:] != -100).sum()))
    parts = [model(batch[s], labels=labels[s], num_items_in_batch=n_items).loss for s in (slice(0, 1), slice(1, 3))]
    accumulated = parts[0] + parts[1]
    torch.testing.assert_close(accumulated, full)
    torch.testing.assert_close(torch.autograd.grad(accumulated, model.transformer.wpe.weight)[0], full_grad)


@pytest.mark.parametrize("changed", [3, SEQ - 1])
def test_causal_masking(model, batch, changed):
    altered = batch.clone()
    altered[:, changed] = 4 + (altered[:, changed] - 4 + 1) % (VOCAB - 4)
    with torch.no_grad():
        before, after = model(batch).logits, model(altered).logits
    torch.testing.assert_close(before[:, :changed], after[:, :changed], atol=0, rtol=0)
    assert not torch.allclose(before[:, changed], after[:, changed])


@pytest.mark.parametrize("use_cache", [False, True])
def test_position_ids_only_choose_embeddings(model, batch, use_cache):
    """Permuted position ids == permuted rows of wpe: attention stays causal in sequence order."""
    perm = torch.randperm(SEQ, generator=torch.Generator().manual_seed(3))
    permuted_model = GPTForCausalLM(tiny_config()).eval()
    permuted_model.load_state_dict(model.state_dict())
    with torch.no_grad():
        permuted_model.transformer.wpe.weight[:SEQ] = model.transformer.wpe.weight[perm]
        got = model(batch, position_ids=perm.expand(batch.shape[0], -1), use_cache=use_cache).logits
        expected = permuted_model(batch, use_cache=False).logits
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-6)


def test_token_type_ids_are_refused(model, batch):
    with pytest.raises(ValueError, match="token_type_ids"):
        model(batch, token_type_ids=torch.zeros_like(batch))


def test_wrong_config_type_is_refused():
    from transformers import GPT2Config

    with pytest.raises(ValueError, match="config"):
        GPTForCausalLM(GPT2Config(n_layer=1, n_embd=8, n_head=1))
