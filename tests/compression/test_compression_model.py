"""Properties of the context-compression model on tiny backbones (hidden 32, 2 layers, vocab 99)."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest
import torch
from safetensors import safe_open
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    BloomConfig,
    GPT2Config,
    LlamaConfig,
    Trainer,
    TrainingArguments,
)

from hf_experiments.compression.configuration_compression import CompressionConfig
from hf_experiments.compression.modeling_compression import CompressionModel

VOCAB = 99
BACKBONES = {
    "gpt2": lambda: GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=VOCAB, bos_token_id=0, eos_token_id=0),
    "llama": lambda: LlamaConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=VOCAB
    ),
    "bloom": lambda: BloomConfig(hidden_size=32, n_layer=2, n_head=2, vocab_size=VOCAB),  # ALiBi: no position ids
}
CMP_LEN, SEQ_LEN, N_CMPS = 6, 5, 2


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest single-threaded; intra-op threads only contend on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def backbone_dirs(tmp_path_factory) -> dict[str, str]:
    """Each tiny backbone saved once; models load it via `from_pretrained(model_string)` as in real use."""
    dirs = {}
    for arch, make_config in BACKBONES.items():
        torch.manual_seed(0)
        path = tmp_path_factory.mktemp(arch)
        AutoModelForCausalLM.from_config(make_config()).save_pretrained(path)
        dirs[arch] = str(path)
    return dirs


def make_model(path: str, seed: int = 0, **overrides) -> CompressionModel:
    torch.manual_seed(seed)
    kwargs = dict(model_string=path, n_cmps=N_CMPS, cmp_len=CMP_LEN, seq_len=SEQ_LEN) | overrides
    return CompressionModel(CompressionConfig(**kwargs))


def bos_first(model: CompressionModel, ids: torch.LongTensor) -> torch.LongTensor:
    """`[BOS] + ids` (what the backbone reads with prepend_bos)."""
    return torch.cat([torch.full((ids.size(0), 1), model.bos_token_id), ids], dim=1)


def windows(batch: int = 3, seed: int = 1) -> torch.LongTensor:
    return torch.randint(0, VOCAB, (batch, CMP_LEN + SEQ_LEN), generator=torch.Generator().manual_seed(seed))


# ----- the compression pass -----


@pytest.mark.parametrize("arch", list(BACKBONES))
@pytest.mark.parametrize("cmp_layer, index", [(1, 1), (-1, -1), ("half", 1), ("middle", 1), (0, 0)])
def test_compressed_states_come_from_the_requested_layer(backbone_dirs, arch, cmp_layer, index):
    model = make_model(backbone_dirs[arch], cmp_layer=cmp_layer).eval()
    ctx = windows()[:, :CMP_LEN]
    tokens = model.backbone.get_input_embeddings()(bos_first(model, ctx))  # [BOS, ctx]
    embeds = torch.cat([tokens, model.cmp_embs.expand(3, -1, -1)], dim=1)
    with torch.no_grad():
        hidden = model.backbone(inputs_embeds=embeds, output_hidden_states=True).hidden_states
        compressed = model.compress(ctx)
    assert compressed.shape == (3, N_CMPS, 32)
    torch.testing.assert_close(compressed, hidden[index][:, -N_CMPS:], rtol=0, atol=1e-6)
    other = 2 if index in (0, 1) else 1  # negative control: a different layer gives different states
    assert not torch.allclose(compressed, hidden[other][:, -N_CMPS:], atol=1e-3)


@pytest.mark.parametrize("arch", list(BACKBONES))
@pytest.mark.parametrize("pooling", ["tokens", "mean"])
def test_compression_pass_stops_at_its_layer_with_the_full_pass_numbers(backbone_dirs, arch, pooling):
    """`cmp_layer: 1` of 2 layers: the layer above is never run, yet states and gradients are the full pass's."""
    model = make_model(backbone_dirs[arch], cmp_layer=1, pooling=pooling)
    layers = model._decoder_layers()
    assert layers is not None and len(layers) == 2
    ran = []
    probe = layers[1].register_forward_hook(lambda *a: ran.append(1))
    ctx = windows()[:, :CMP_LEN]
    early = model.compress(ctx)
    assert not ran  # the second layer did not run
    probe.remove()
    assert all(not layer._forward_hooks for layer in layers)  # no hook left behind
    embeds, mask = model._with_bos(model._embed(ctx), torch.ones_like(ctx))
    if pooling == "tokens":
        embeds = torch.cat([embeds, model.cmp_embs.expand(3, -1, -1)], dim=1)
        mask = torch.cat([mask, mask.new_ones(3, N_CMPS)], dim=1)
    full = model._base(embeds, mask).hidden_states[1]
    full = full[:, -N_CMPS:] if pooling == "tokens" else None
    if full is not None:
        assert torch.equal(early, full)
        params = [model.cmp_embs]
        g_early = torch.autograd.grad(early.square().sum(), params)
        g_full = torch.autograd.grad(full.square().sum(), params)
        assert all(torch.equal(a, b) for a, b in zip(g_early, g_full))


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_mean_pooling_averages_contiguous_chunks_of_the_context(backbone_dirs, arch):
    model = make_model(backbone_dirs[arch], pooling="mean", cmp_layer=-1).eval()
    assert model.cmp_embs is None  # the baseline has no compression tokens
    ctx = windows()[:, :CMP_LEN]
    with torch.no_grad():
        hidden = model.backbone(input_ids=bos_first(model, ctx), output_hidden_states=True).hidden_states[-1]
        hidden = hidden[:, 1:]  # (B, 6, D): the context's states, after BOS
        compressed = model.compress(ctx)
    expected = torch.stack([hidden[:, :3].mean(1), hidden[:, 3:].mean(1)], dim=1)  # 6 tokens -> 2 chunks of 3
    torch.testing.assert_close(compressed, expected, rtol=0, atol=1e-6)


def test_projection_starts_as_identity(backbone_dirs):
    plain = make_model(backbone_dirs["gpt2"], seed=3).eval()
    projected = make_model(backbone_dirs["gpt2"], seed=3, proj_cmps=True).eval()
    projected.cmp_embs.data.copy_(plain.cmp_embs.data)
    ctx = windows()[:, :CMP_LEN]
    with torch.no_grad():
        torch.testing.assert_close(projected.compress(ctx), plain.compress(ctx), rtol=0, atol=1e-6)


def test_new_embeddings_follow_the_backbone_embedding_statistics(backbone_dirs):
    model = make_model(backbone_dirs["gpt2"], n_cmps=64)
    emb = model.backbone.get_input_embeddings().weight
    assert (model.cmp_embs.mean(0) - emb.mean(0)).abs().max() < 0.5 * emb.std(0).max()
    assert 0.5 < model.cmp_embs.std().item() / emb.std().item() < 2.0


# ----- bad input -----


@pytest.mark.parametrize("cmp_layer", [3, -4, 17])
def test_cmp_layer_outside_the_backbone_is_rejected(backbone_dirs, cmp_layer):
    with pytest.raises(ValueError, match=rf"cmp_layer={cmp_layer}.*\[-3, 2\]"):
        make_model(backbone_dirs["gpt2"], cmp_layer=cmp_layer)


@pytest.mark.parametrize(
    "field, value",
    [
        ("cmp_layer", "top"),
        ("seq_overlap", 10),
        ("cmp_attention", "full"),
        ("n_cmps", 0),
        ("ae_ratio", 1.5),
        ("kl_weight", -1.0),
        ("pooling", "max"),
        ("train_mode", "adapters"),
        ("seq_len", 0),
    ],
)
def test_bad_config_values_raise_value_error_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        CompressionConfig(model_string="x", **{field: value})


def test_window_of_the_wrong_length_is_rejected(backbone_dirs):
    with pytest.raises(ValueError, match="cmp_len \\+ seq_len = 11"):
        make_model(backbone_dirs["gpt2"])(windows()[:, :-1])


# ----- what trains -----


TRAINED = {
    "embeddings": lambda name: not name.startswith("backbone."),
    "lora": lambda name: not name.startswith("backbone.") or "lora_" in name,
    "full": lambda name: True,
}


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
@pytest.mark.parametrize("train_mode", list(TRAINED))
def test_only_the_chosen_parameters_receive_gradients_and_change(backbone_dirs, arch, train_mode):
    # kl_weight > 0 also checks that switching adapters off for the KL target leaves them trainable
    model = make_model(backbone_dirs[arch], train_mode=train_mode, rmb_task=True, kl_weight=0.5, proj_cmps=True)
    model.train()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trained = {name for name in before if TRAINED[train_mode](name)}
    assert {name for name, p in model.named_parameters() if p.requires_grad} == trained
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for step in range(3):
        optimizer.zero_grad()
        model(windows(seed=step)).loss.backward()
        with_grad = {name for name, p in model.named_parameters() if p.grad is not None}
        assert with_grad == trained
        optimizer.step()
    after = dict(model.named_parameters())
    unchanged = {name for name in before if torch.equal(before[name], after[name])}
    assert unchanged == set(before) - trained  # every trained tensor moved, every frozen one is bit-identical


# ----- losses and alignment -----


@pytest.mark.parametrize("arch", list(BACKBONES))
def test_forward_loss_is_the_cross_entropy_of_logits_at_shifted_positions(backbone_dirs, arch):
    model = make_model(backbone_dirs[arch], rmb_task=True).eval()
    ids = windows()
    with torch.no_grad():
        out = model(ids)
    ctx, seq = ids[:, :CMP_LEN], ids[:, CMP_LEN:]
    assert out.logits.shape == (3, SEQ_LEN, VOCAB) and out.rmb_logits.shape == (3, CMP_LEN, VOCAB)
    manual = -out.logits.log_softmax(-1).gather(-1, seq[..., None]).mean()  # logits[:, t] predicts seq[t]
    torch.testing.assert_close(out.fwd_loss, manual)
    manual_rmb = -out.rmb_logits.log_softmax(-1).gather(-1, ctx[..., None]).mean()
    torch.testing.assert_close(out.rmb_loss, manual_rmb)


@pytest.mark.parametrize("arch", list(BACKBONES))
def test_logits_at_t_see_exactly_the_tokens_before_t(backbone_dirs, arch):
    """Backbone-independent alignment: changing seq[j] moves the logits predicting seq[j+1], not earlier."""
    model = make_model(backbone_dirs[arch]).eval()
    ids = windows()
    j = 2
    changed = ids.clone()
    changed[:, CMP_LEN + j] = (changed[:, CMP_LEN + j] + 1) % VOCAB
    with torch.no_grad():
        a, b = model(ids).logits, model(changed).logits  # (B, T, V), position t predicts seq[t]
        torch.testing.assert_close(a[:, : j + 1], b[:, : j + 1], rtol=0, atol=1e-6)
        assert not torch.allclose(a[:, j + 1], b[:, j + 1], atol=1e-4)
        for mode in ("low", "high", "pred"):  # with BOS every seq token is scored: position t predicts seq[t]
            a, b = model.comparison_logits(ids, mode), model.comparison_logits(changed, mode)
            assert a.shape == (3, SEQ_LEN, VOCAB)
            torch.testing.assert_close(a[:, : j + 1], b[:, : j + 1], rtol=0, atol=1e-6)
            assert not torch.allclose(a[:, j + 1], b[:, j + 1], atol=1e-4)
        plain = make_model(backbone_dirs[arch], prepend_bos=False).eval()  # no BOS: seq[0] cannot be scored
        for mode in ("low", "high", "pred"):  # position t predicts seq[t + 1]
            a, b = plain.comparison_logits(ids, mode), plain.comparison_logits(changed, mode)
            assert a.shape == (3, SEQ_LEN - 1, VOCAB)
            torch.testing.assert_close(a[:, :j], b[:, :j], rtol=0, atol=1e-6)
            assert not torch.allclose(a[:, j], b[:, j], atol=1e-4)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_padded_targets_are_ignored(backbone_dirs, arch):
    model = make_model(backbone_dirs[arch]).eval()
    ids, mask = windows(), torch.ones(3, CMP_LEN + SEQ_LEN, dtype=torch.long)
    mask[:, -2:] = 0  # the last two seq tokens are padding
    other = ids.clone()
    other[:, -2:] = 7
    with torch.no_grad():
        out = model(ids, attention_mask=mask)
        torch.testing.assert_close(model(other, attention_mask=mask).fwd_loss, out.fwd_loss)
    seq = ids[:, CMP_LEN:]
    nll = -out.logits.log_softmax(-1).gather(-1, seq[..., None])[..., 0]  # (B, T)
    torch.testing.assert_close(out.fwd_loss, nll[:, :-2].mean())


def test_kl_loss_only_with_weight_and_positive_for_an_untrained_model(backbone_dirs):
    ids = windows()
    with torch.no_grad():
        plain = make_model(backbone_dirs["gpt2"]).eval()(ids)
        with_kl = make_model(backbone_dirs["gpt2"], kl_weight=0.5).eval()(ids)
    assert plain.kl_loss is None
    assert with_kl.kl_loss > 0
    torch.testing.assert_close(with_kl.loss, with_kl.fwd_loss + 0.5 * with_kl.kl_loss)
    torch.testing.assert_close(with_kl.fwd_loss, plain.fwd_loss)  # same seed, same model: KL only adds


def test_kl_is_zero_when_the_prediction_equals_the_full_context_model():
    logits = torch.randn(2, 4, VOCAB)
    mask = torch.ones(2, 4)
    assert CompressionModel._kl(logits, logits, mask).abs() < 1e-6
    assert CompressionModel._kl(logits, logits.flip(-1), mask) > 0.1


def test_remember_loss_only_with_rmb_task_or_rmb_only(backbone_dirs):
    ids = windows()
    with torch.no_grad():
        plain = make_model(backbone_dirs["gpt2"]).eval()(ids)
        both = make_model(backbone_dirs["gpt2"], rmb_task=True, ae_ratio=0.25).eval()(ids)
        only = make_model(backbone_dirs["gpt2"], rmb_only=True).eval()(ids)
    assert plain.rmb_loss is None and plain.rmb_logits is None
    torch.testing.assert_close(both.loss, 0.75 * both.fwd_loss + 0.25 * both.rmb_loss)
    assert only.fwd_loss is None and only.logits is None
    torch.testing.assert_close(only.loss, only.rmb_loss)


# ----- generation -----


@pytest.mark.parametrize("arch", list(BACKBONES))
def test_cached_and_uncached_generation_agree(backbone_dirs, arch):
    model = make_model(backbone_dirs[arch], rmb_task=True).eval()
    ids = windows(batch=4)
    ctx, prompt = ids[:, :CMP_LEN], ids[:, CMP_LEN : CMP_LEN + 2]
    for mode in ("pred", "high", "low"):
        cached = model.generate_from_context(ctx, prompt, 6, mode=mode, use_cache=True)
        uncached = model.generate_from_context(ctx, prompt, 6, mode=mode, use_cache=False)
        assert cached.shape == (4, 6)
        assert torch.equal(cached, uncached)
    assert torch.equal(model.reconstruct(ctx, use_cache=True), model.reconstruct(ctx, use_cache=False))


def _plain_generate(model: CompressionModel, embeds, mask, n: int, do_sample: bool, temperature: float):
    """transformers' own decoding of the same prefix, every logits processor off (top_k=0: not its 50)."""
    from transformers import GenerationConfig

    config = GenerationConfig(
        max_new_tokens=n,
        do_sample=do_sample,
        temperature=temperature if do_sample else 1.0,
        top_k=0,
        top_p=1.0,
        eos_token_id=[],
        pad_token_id=0,
    )
    with torch.no_grad():
        return model.backbone.generate(inputs_embeds=embeds, attention_mask=mask, generation_config=config)


@pytest.mark.parametrize("arch", list(BACKBONES))
@pytest.mark.parametrize("do_sample", [False, True])
def test_decoding_equals_generate_with_inputs_embeds(backbone_dirs, arch, do_sample):
    """`decode` is transformers' generation of the embeddings prefix (greedy, or sampled with the same RNG
    draws), padded prefixes included; it loops itself only to ignore the backbone's generation_config."""
    model = make_model(backbone_dirs[arch]).eval()
    ids = windows(batch=4)
    mask = torch.ones_like(ids)
    mask[0, :3] = 0  # a left-padded row
    with torch.no_grad():
        embeds = model.backbone.get_input_embeddings()(ids)
    torch.manual_seed(7)
    ours = model.decode(embeds, 8, mask, do_sample=do_sample, temperature=0.7)
    torch.manual_seed(7)
    assert torch.equal(ours, _plain_generate(model, embeds, mask, 8, do_sample, 0.7))


def test_generate_would_follow_the_backbones_generation_config(backbone_dirs):
    """Why `decode` does not call generate: a backbone's generation_config (here an EOS it stops at) changes
    generate's output, and ours keeps the original's fixed-length continuation."""
    model = make_model(backbone_dirs["gpt2"]).eval()
    ids = windows(batch=4)
    mask = torch.ones_like(ids)
    with torch.no_grad():
        embeds = model.backbone.get_input_embeddings()(ids)
    ours = model.decode(embeds, 8, mask)
    model.backbone.generation_config.eos_token_id = int(ours[0, 0])
    with torch.no_grad():
        theirs = model.backbone.generate(
            inputs_embeds=embeds, attention_mask=mask, max_new_tokens=8, do_sample=False, pad_token_id=VOCAB - 1
        )
    assert not torch.equal(ours, theirs) and torch.equal(model.decode(embeds, 8, mask), ours)


def test_greedy_generation_follows_the_teacher_forced_argmax(backbone_dirs):
    model = make_model(backbone_dirs["llama"]).eval()
    ids = windows()
    ctx, seq = ids[:, :CMP_LEN], ids[:, CMP_LEN:]
    generated = model.generate_from_context(ctx, seq[:, :1], 1)
    first = model.comparison_logits(torch.cat([ctx, seq[:, :1], generated], dim=1)[:, : CMP_LEN + 2], "pred")
    assert torch.equal(first.argmax(-1)[:, 1], generated[:, 0])  # pred logits after seq[0] give the greedy token


def test_sampling_is_reproducible_and_rejects_non_positive_temperature(backbone_dirs):
    model = make_model(backbone_dirs["gpt2"]).eval()
    ids = windows()
    ctx, prompt = ids[:, :CMP_LEN], ids[:, CMP_LEN : CMP_LEN + 1]
    torch.manual_seed(5)
    a = model.generate_from_context(ctx, prompt, 5, do_sample=True, temperature=2.0)
    torch.manual_seed(5)
    b = model.generate_from_context(ctx, prompt, 5, do_sample=True, temperature=2.0)
    assert torch.equal(a, b) and ((0 <= a) & (a < VOCAB)).all()
    with pytest.raises(ValueError, match="temperature=0"):
        model.generate_from_context(ctx, prompt, 5, do_sample=True, temperature=0.0)


# ----- checkpoints -----


def _train_a_little(model: CompressionModel, steps: int = 3) -> CompressionModel:
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for step in range(steps):
        optimizer.zero_grad()
        model(windows(seed=10 + step)).loss.backward()
        optimizer.step()
    return model.eval()


def _saved_keys(path) -> set[str]:
    with safe_open(str(path / "model.safetensors"), framework="pt") as f:
        return set(f.keys())


@pytest.mark.parametrize("arch", list(BACKBONES))
@pytest.mark.parametrize("train_mode", ["embeddings", "lora", "full"])
def test_save_and_load_give_identical_logits(backbone_dirs, tmp_path, arch, train_mode):
    model = _train_a_little(make_model(backbone_dirs[arch], train_mode=train_mode, proj_cmps=True, rmb_task=True))
    model.save_pretrained(tmp_path)
    loaded = CompressionModel.from_pretrained(tmp_path)
    ids = windows(seed=99)
    with torch.no_grad():
        expected, got = model(ids), loaded(ids)
    assert torch.equal(expected.logits, got.logits) and torch.equal(expected.rmb_logits, got.rmb_logits)
    assert isinstance(AutoModel.from_pretrained(tmp_path), CompressionModel)  # registered with the Auto classes
    keys = _saved_keys(tmp_path)
    backbone_weights = {k for k in keys if k.startswith("backbone.") and "lora_" not in k}
    assert bool(backbone_weights) == (train_mode == "full")
    assert any("lora_" in k for k in keys) == (train_mode == "lora")


def test_options_for_the_saved_folder_never_reach_the_backbone(backbone_dirs, tmp_path):
    """The Auto loader (transformers >= 5.25) passes `_from_auto` and this folder's resolved revision; handing them
    on to the backbone's own Auto load raised "multiple values for keyword argument '_from_auto'"."""
    model = _train_a_little(make_model(backbone_dirs["gpt2"]))
    model.save_pretrained(tmp_path / "sub")
    loaded = CompressionModel.from_pretrained(
        tmp_path, subfolder="sub", _from_auto=True, revision="0" * 40, trust_remote_code=True, adapter_kwargs={}
    )
    with torch.no_grad():
        assert torch.equal(loaded(windows()).logits, model(windows()).logits)


@pytest.mark.parametrize("arch", ["gpt2", "bloom"])
def test_frozen_checkpoint_is_small_and_save_backbone_stores_it(backbone_dirs, tmp_path, arch):
    backbone_size = os.path.getsize(os.path.join(backbone_dirs[arch], "model.safetensors"))
    frozen = _train_a_little(make_model(backbone_dirs[arch]))
    frozen.save_pretrained(tmp_path / "frozen")
    assert os.path.getsize(tmp_path / "frozen" / "model.safetensors") < backbone_size / 10
    assert _saved_keys(tmp_path / "frozen") == {"cmp_embs", "task_embs"}

    full = make_model(backbone_dirs[arch], save_backbone=True)
    with torch.no_grad():  # a backbone that differs from model_string's: loading must take the saved one
        full.backbone.get_input_embeddings().weight.mul_(1.5)
    full.eval().save_pretrained(tmp_path / "full")
    assert os.path.getsize(tmp_path / "full" / "model.safetensors") > backbone_size * 0.9
    loaded = CompressionModel.from_pretrained(tmp_path / "full")
    with torch.no_grad():
        assert torch.equal(loaded(windows()).logits, full(windows()).logits)


def test_trainer_checkpoints_hold_only_trained_weights_and_resume_exactly(backbone_dirs, tmp_path):
    """Trainer._save, _load_from_checkpoint and load_best_model_at_end work with the filtered checkpoints."""
    data = [{"input_ids": row} for row in windows(batch=16, seed=3)]

    def train(output_dir, seed, resume=None) -> CompressionModel:
        model = make_model(backbone_dirs["gpt2"], seed=seed)
        args = TrainingArguments(
            output_dir=str(output_dir),
            max_steps=4,
            per_device_train_batch_size=4,
            per_device_eval_batch_size=8,
            learning_rate=1e-2,
            save_steps=2,
            eval_strategy="steps",
            eval_steps=2,
            load_best_model_at_end=True,
            metric_for_best_model="loss",
            greater_is_better=False,
            report_to=[],
            use_cpu=True,
            seed=0,
            disable_tqdm=True,
        )
        trainer = Trainer(model=model, args=args, train_dataset=data, eval_dataset=data[:8])
        trainer.train(resume_from_checkpoint=resume)
        assert "eval_loss" in trainer.state.log_history[-2]  # labels-free batches still give an eval loss
        return model

    straight = train(tmp_path / "a", seed=0)
    assert _saved_keys(tmp_path / "a" / "checkpoint-2") == {"cmp_embs", "task_embs"}
    resumed = train(
        tmp_path / "b", seed=11, resume=str(tmp_path / "a" / "checkpoint-2")
    )  # other init: must be replaced
    for step in (2, 4):
        with safe_open(str(tmp_path / "a" / f"checkpoint-{step}" / "model.safetensors"), "pt") as f:
            saved = {k: f.get_tensor(k) for k in f.keys()}
        if step == 4:  # the resumed run continued exactly where the straight one was at step 2
            with safe_open(str(tmp_path / "b" / "checkpoint-4" / "model.safetensors"), "pt") as f:
                torch.testing.assert_close({k: f.get_tensor(k) for k in f.keys()}, saved, rtol=0, atol=1e-6)
    # both runs end on the best checkpoint, which is the same one
    torch.testing.assert_close(resumed.cmp_embs, straight.cmp_embs, rtol=0, atol=1e-6)
    torch.testing.assert_close(resumed.task_embs, straight.task_embs, rtol=0, atol=1e-6)
    original = AutoModelForCausalLM.from_pretrained(backbone_dirs["gpt2"]).state_dict()
    assert all(torch.equal(resumed.backbone.state_dict()[name], value) for name, value in original.items())


# ----- the original's options -----


def test_context_only_attention_hides_compression_tokens_from_each_other(backbone_dirs):
    """cmp_attention='context_only' (the original's zero-padded mask): a compression token's state depends on
    the context only, so changing another compression token's embedding leaves it unchanged; with the causal
    default the later token sees the earlier one (negative control)."""
    ctx = windows()[:, :CMP_LEN]
    for attention, later_moves in (("context_only", False), ("causal", True)):
        model = make_model(backbone_dirs["gpt2"], cmp_attention=attention, cmp_layer=-1).eval()
        with torch.no_grad():
            before = model.compress(ctx)
            model.cmp_embs[0] += torch.randn(
                32, generator=torch.Generator().manual_seed(3)
            )  # not a constant: LayerNorm removes those
            after = model.compress(ctx)
        moved = not torch.allclose(after[:, 1], before[:, 1], atol=1e-5)
        assert moved == later_moves
    model = make_model(backbone_dirs["gpt2"], cmp_attention="context_only", cmp_layer=-1).eval()
    other = windows(seed=9)[:, :CMP_LEN]
    with torch.no_grad():  # ... but it still reads the context
        assert not torch.allclose(model.compress(ctx), model.compress(other), atol=1e-4)


def test_context_only_states_equal_a_hand_built_key_mask(backbone_dirs):
    """The original's formula: mask 0 on every compression position (hidden as keys, from themselves too),
    positions counting on after the context."""
    model = make_model(backbone_dirs["llama"], cmp_attention="context_only", cmp_layer=-1).eval()
    ctx = windows()[:, :CMP_LEN]
    emb = model.backbone.get_input_embeddings()
    embeds = torch.cat([emb(bos_first(model, ctx)), model.cmp_embs.expand(3, -1, -1)], dim=1)
    mask = torch.ones(embeds.shape[:2], dtype=torch.long)
    mask[:, -N_CMPS:] = 0
    positions = torch.arange(embeds.size(1)).expand(3, -1)
    with torch.no_grad():
        hidden = model.backbone.base_model(
            inputs_embeds=embeds, attention_mask=mask, position_ids=positions, output_hidden_states=True
        ).hidden_states[-1]
        torch.testing.assert_close(model.compress(ctx), hidden[:, -N_CMPS:], rtol=0, atol=1e-5)


def test_output_layer_mixes_token_embeddings_by_the_lm_softmax(backbone_dirs):
    model = make_model(backbone_dirs["gpt2"], cmp_layer="output").eval()
    ctx = windows()[:, :CMP_LEN]
    emb = model.backbone.get_input_embeddings()
    embeds = torch.cat([emb(bos_first(model, ctx)), model.cmp_embs.expand(3, -1, -1)], dim=1)
    with torch.no_grad():
        logits = model.backbone(inputs_embeds=embeds).logits[:, -N_CMPS:]  # (B, n, V)
        expected = logits.softmax(-1) @ emb.weight / N_CMPS
        torch.testing.assert_close(model.compress(ctx), expected, rtol=0, atol=1e-6)


def test_half_is_the_originals_middle_for_odd_depths(tmp_path):
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(GPT2Config(n_layer=3, n_embd=32, n_head=2, vocab_size=VOCAB)).save_pretrained(
        tmp_path
    )
    assert make_model(str(tmp_path), cmp_layer="half").cmp_layer_index == 2  # (3 + 1) // 2, not 3 // 2


def test_seq_overlap_predicts_the_contexts_last_tokens_too(backbone_dirs):
    """The original's seq_overlap: targets start `seq_overlap` tokens before the end of the context."""
    model = make_model(backbone_dirs["gpt2"], seq_overlap=2).eval()
    ids = windows()
    ctx, _, tgt, _ = model.split_window(ids)
    assert torch.equal(ctx, ids[:, :CMP_LEN]) and torch.equal(tgt, ids[:, CMP_LEN - 2 :])
    with torch.no_grad():
        out = model(ids)
        assert out.logits.shape == (3, SEQ_LEN + 2, VOCAB)
        nll = -out.logits.log_softmax(-1).gather(-1, tgt[..., None])[..., 0]
        torch.testing.assert_close(out.fwd_loss, nll.mean())
        for mode in ("low", "high", "pred"):  # the same scored tokens in every mode
            assert model.comparison_logits(ids, mode).shape == (3, SEQ_LEN + 2, VOCAB)
        # high reads the whole context, then the targets (the repeated tokens again), as pred does
        high = model.comparison_logits(ids, "high")
        seq = torch.cat([ctx, tgt], 1)[:, :-1]
        full = model.backbone(input_ids=bos_first(model, seq)).logits[:, CMP_LEN:]
        torch.testing.assert_close(high, full, rtol=0, atol=1e-5)
        # the negative control: the window as it is would predict the repeats from the text before them
        window = model.backbone(input_ids=bos_first(model, ids[:, :-1])).logits[:, CMP_LEN - 2 :]
        assert not torch.allclose(high, window, atol=1e-3)


def test_loss_sum_adds_forward_and_remember_as_the_original(backbone_dirs):
    ids = windows()
    with torch.no_grad():
        out = make_model(backbone_dirs["gpt2"], rmb_task=True, loss_sum=True, ae_ratio=0.9).eval()(ids)
    torch.testing.assert_close(out.loss, out.fwd_loss + out.rmb_loss)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_generate_equals_the_hand_written_decoding(backbone_dirs, arch):
    """`model.generate` (transformers' generate from the compressed prefix) == `generate_from_context`."""
    model = make_model(backbone_dirs[arch]).eval()
    model.backbone.generation_config.eos_token_id = None  # a fixed-length continuation, as decode's
    ids = windows(batch=4)
    ctx, prompt = ids[:, :CMP_LEN], ids[:, CMP_LEN : CMP_LEN + 2]
    for mode in ("pred", "high", "low"):
        ours = model.generate_from_context(ctx, prompt, 6, mode=mode)
        theirs = model.generate(ctx, prompt_ids=prompt, max_new_tokens=6, do_sample=False, mode=mode)
        assert torch.equal(theirs, ours), mode
    no_prompt = model.generate(ctx, max_new_tokens=3, do_sample=False)  # context only: starts after the task token
    assert torch.equal(no_prompt, model.generate_from_context(ctx, ctx[:, :0], 3))


def test_a_config_saved_before_prepend_bos_loads_without_bos(tmp_path):
    """Models saved by earlier versions never saw a BOS: loading them must not start adding one."""
    import json

    from transformers import AutoConfig

    CompressionConfig(model_string="x").save_pretrained(tmp_path)
    assert AutoConfig.from_pretrained(tmp_path).prepend_bos is True
    saved = json.loads((tmp_path / "config.json").read_text())
    saved.pop("prepend_bos")
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert AutoConfig.from_pretrained(tmp_path).prepend_bos is False
