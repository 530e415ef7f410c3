"""The blotching collator: dropped steps behave exactly as deleted, the problem and answer are never dropped,
the contig rule, per-row levels and blotch tokens, labels; and the digit tokenizer's round trip."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest
import torch

from hf_experiments.blotch.arithmetic import ProblemParams, sample_problems, solve
from hf_experiments.blotch.blotching import (
    BlotchCollator,
    blotch_levels,
    default_n_btokens,
    excise,
    pad_rows,
    sample_drops,
    step_segments,
)
from hf_experiments.blotch.configuration_blotch import BlotchConfig
from hf_experiments.blotch.modeling_blotch import BlotchModel
from hf_experiments.blotch.tokenization_arith import arith_tokenizer, encode_rows

TOK = arith_tokenizer()
EQ = TOK.convert_tokens_to_ids("=")
PAD = TOK.pad_token_id


def make_rows(n: int, seed: int = 0, **params) -> list[str]:
    problems = sample_problems(
        n, ProblemParams(**{"max_num": 99, "max_ents": 3, **params}), np.random.default_rng(seed)
    )
    return [p + "=" + "=".join(s for s, _ in solve(p)) for p in problems]


def features(texts: list[str]) -> list[dict]:
    return [{"input_ids": r.tolist()} for r in encode_rows(TOK, texts)]


def visible_text(batch: dict, i: int, skip: int = 0) -> str:
    ids = batch["input_ids"][i][batch["attention_mask"][i].bool()][skip:]
    return TOK.decode(ids, skip_special_tokens=True)


# ----- tokenizer -----
def test_tokenizer_round_trip_and_save_load(tmp_path):
    texts = [*make_rows(50, p_mult=0.3), "(1+2)*3=3*3=9"]
    rows = encode_rows(TOK, texts)
    for text, row in zip(texts, rows):
        assert row[0] == TOK.bos_token_id and row[-1] == TOK.eos_token_id
        assert row[1:-1].tolist() == TOK.encode(text, add_special_tokens=False)
        assert TOK.decode(row, skip_special_tokens=True) == text
    TOK.save_pretrained(tmp_path)
    from hf_experiments.core.tokenization_char import CharTokenizer

    loaded = CharTokenizer.from_pretrained(tmp_path)
    assert loaded.get_vocab() == TOK.get_vocab()
    assert [r.tolist() for r in encode_rows(loaded, texts)] == [r.tolist() for r in rows]
    with pytest.raises(ValueError, match="ASCII"):
        encode_rows(TOK, ["1+2=3", "é"])


# ----- segments and drops -----
def test_segments_follow_the_separators():
    ids = pad_rows(encode_rows(TOK, ["1+2=3", "27+75=7+20+75=102"]), PAD)
    seg, n_eq = step_segments(ids, EQ, PAD)
    assert n_eq.tolist() == [1, 2]
    assert seg[0].tolist()[:6] == [0, 0, 0, 0, 1, 1] and seg[0, -1] == -1  # BOS+problem, "=3", EOS, padding


@pytest.mark.parametrize("spacing", ["random", "even"])
def test_problem_and_answer_never_dropped_and_kept_steps_stay_in_order(spacing):
    texts = make_rows(200, seed=1)
    collate = BlotchCollator(
        pad_id=PAD, eq_id=EQ, blotch_p=0.6, spacing=spacing, generator=torch.Generator().manual_seed(0)
    )
    batch = collate(features(texts))
    n_dropped = 0
    for i, text in enumerate(texts):
        problem, *steps, answer = text.split("=")
        got_problem, *got_steps, got_answer = visible_text(batch, i).split("=")
        assert (got_problem, got_answer) == (problem, answer)
        it = iter(steps)
        assert all(s in it for s in got_steps), "kept steps are a subsequence of the solution"
        n_dropped += len(steps) - len(got_steps)
    total = sum(t.count("=") - 1 for t in texts)
    assert 0.5 < n_dropped / total < 0.7


def test_blotch_p_one_is_problem_to_answer_and_zero_changes_nothing():
    texts = make_rows(20, seed=2)
    direct = BlotchCollator(pad_id=PAD, eq_id=EQ, blotch_p=1.0)(features(texts))
    full = BlotchCollator(pad_id=PAD, eq_id=EQ, blotch_p=0.0)(features(texts))
    for i, text in enumerate(texts):
        parts = text.split("=")
        assert visible_text(direct, i) == f"{parts[0]}={parts[-1]}"
        assert visible_text(full, i) == text


@pytest.mark.parametrize("spacing", ["random", "even"])
def test_contig_false_never_drops_adjacent_steps(spacing):
    n_eq = torch.randint(2, 15, (4000,), generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    p = torch.full((4000,), 0.9)
    apart = sample_drops(n_eq, p, spacing, contig_blotches=False, generator=gen)
    assert not (apart[:, 1:] & apart[:, :-1]).any()
    assert apart.any(1).float().mean() > 0.9  # it still drops
    together = sample_drops(n_eq, p, spacing, contig_blotches=True, generator=gen)
    assert (together[:, 1:] & together[:, :-1]).any()  # negative control: the rule is what prevents it
    for drops in (apart, together):
        col = torch.arange(drops.shape[1])[None]
        assert not (drops & ((col == 0) | (col >= n_eq[:, None]))).any()  # problem, answer, beyond the row


def test_even_spacing_drops_p_times_the_steps_on_average():
    n_eq = torch.full((5000,), 9)  # 8 droppable steps
    drops = sample_drops(n_eq, torch.full((5000,), 0.3), "even", generator=torch.Generator().manual_seed(0))
    counts = drops.sum(1).float()
    assert counts.mean() == pytest.approx(2.4, abs=0.05) and set(counts.tolist()) <= {2.0, 3.0}


def test_per_row_p_range_and_blotch_tokens():
    texts = make_rows(300, seed=3)
    assert default_n_btokens(0.0, 0.4) == 5
    levels = blotch_levels(5, 0.0, 0.4)
    assert levels.tolist() == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    offset = len(TOK)
    collate = BlotchCollator(
        pad_id=PAD,
        eq_id=EQ,
        blotch_p_min=0.0,
        blotch_p_max=0.4,
        n_btokens=5,
        btoken_offset=offset,
        generator=torch.Generator().manual_seed(0),
    )
    batch = collate(features(texts))
    first = batch["input_ids"][:, 0]
    assert ((first >= offset) & (first < offset + 5)).all() and len(first.unique()) == 5
    assert (batch["labels"][:, 0] == -100).all() and (batch["input_ids"][:, 1] == TOK.bos_token_id).all()
    for level in (0, 4):  # level 0 (p=0) drops nothing
        rows = (first == offset + level).nonzero().flatten().tolist()
        kept = sum(visible_text(batch, i, skip=1).count("=") for i in rows)
        total = sum(texts[i].count("=") for i in rows)
        assert (kept == total) == (level == 0)
    p, level = BlotchCollator(pad_id=PAD, eq_id=EQ, blotch_p_min=0.2, blotch_p_max=0.5).sample_p(1000)
    assert level is None and 0.2 <= p.min() and p.max() <= 0.5 and p.std() > 0.05
    with pytest.raises(ValueError, match="n_btokens"):
        BlotchCollator(pad_id=PAD, eq_id=EQ, n_btokens=3)


def test_labels_cover_the_solution_only_unless_incl_intl_prob():
    texts = ["12+5=2+5+10=7+10=17"]
    batch = BlotchCollator(pad_id=PAD, eq_id=EQ)(features(texts))
    labelled = batch["labels"][0][batch["labels"][0] != -100]
    assert TOK.decode(labelled) == "2+5+10=7+10=17<eos>"  # the prompt "BOS 12+5=" is not predicted
    batch = BlotchCollator(pad_id=PAD, eq_id=EQ, incl_intl_prob=True)(features(texts))
    labelled = batch["labels"][0][batch["labels"][0] != -100]
    assert TOK.decode(labelled) == "12+5=2+5+10=7+10=17<eos>"


# ----- equivalence with physical deletion -----
@pytest.fixture(scope="module")
def model() -> BlotchModel:
    torch.manual_seed(0)
    cfg = BlotchConfig(vocab_size=len(TOK), d_model=32, n_heads=2, n_layers=2, max_posencs=256)
    return BlotchModel(cfg).eval()


def reference_rows(texts: list[str], drops: torch.Tensor) -> list[str]:
    """The same rows with the dropped steps deleted from the text."""
    out = []
    for text, drop in zip(texts, drops):
        parts = text.split("=")
        out.append("=".join(s for k, s in enumerate(parts) if not (k < len(drop) and drop[k])))
    return out


def test_blotched_batch_equals_rows_with_the_steps_physically_removed(model):
    texts = make_rows(12, seed=4, p_mult=0.3)
    ids = pad_rows(encode_rows(TOK, texts), PAD)
    _, n_eq = step_segments(ids, EQ, PAD)
    drops = sample_drops(n_eq, torch.full((len(texts),), 0.5), generator=torch.Generator().manual_seed(3))
    assert drops.any()
    batch = excise(ids, drops, EQ, PAD, pad_pos_skip=True)
    with torch.no_grad():
        out = model(**batch)
        n_items = (batch["labels"][:, 1:] != -100).sum()
        total = 0.0
        for i, ref_text in enumerate(reference_rows(texts, drops)):
            ref = BlotchCollator(pad_id=PAD, eq_id=EQ)(features([ref_text]))  # single row: no padding at all
            ref_out = model(input_ids=ref["input_ids"], labels=ref["labels"])  # default positions 0..L-1
            n = ref["input_ids"].shape[1]
            assert visible_text(batch, i) == ref_text
            torch.testing.assert_close(out.logits[i, :n], ref_out.logits[0], rtol=1e-5, atol=1e-5)
            total += float(ref_out.loss) * float((ref["labels"][:, 1:] != -100).sum())
    assert float(out.loss) == pytest.approx(total / float(n_items), rel=1e-5)


def test_without_pad_pos_skip_positions_keep_the_gap(model):
    texts = make_rows(8, seed=5)
    ids = pad_rows(encode_rows(TOK, texts), PAD)
    _, n_eq = step_segments(ids, EQ, PAD)
    drops = sample_drops(n_eq, torch.full((len(texts),), 0.5), generator=torch.Generator().manual_seed(0))
    gapped = excise(ids, drops, EQ, PAD, pad_pos_skip=False)
    skipped = excise(ids, drops, EQ, PAD, pad_pos_skip=True)
    assert torch.equal(gapped["input_ids"], skipped["input_ids"])
    for i in range(len(texts)):
        valid = gapped["attention_mask"][i].bool()
        seg, _ = step_segments(ids[i : i + 1], EQ, PAD)
        kept = (~drops[i][seg[0].clamp(min=0)] & (seg[0] >= 0)).nonzero().flatten()
        assert gapped["position_ids"][i][valid].tolist() == kept.tolist()  # original indices
    with torch.no_grad():
        if (gapped["position_ids"] != skipped["position_ids"]).any():
            a, b = model(**gapped).logits, model(**skipped).logits
            assert not torch.allclose(a, b)  # the positions reach the model
