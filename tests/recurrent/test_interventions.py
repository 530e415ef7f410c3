"""Interventions: the corruptions are undone by the ideal repair of a state that stores positions linearly
(linear swap) or by magnitude (onion); the RNN stays frozen; evaluation is deterministic; models round-trip;
and the gru_intervention experiment runs end to end on a saved RNN."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModel

from hf_experiments.recurrent.configuration_intervention import METHODS
from hf_experiments.recurrent.configuration_recurrent import RecurrentConfig
from hf_experiments.recurrent.modeling_intervention import (
    LinearSwapIntervention,
    OnionIntervention,
    RecurrentIntervention,
    pair_swap_corruption,
    replace_one_corruption,
)
from hf_experiments.recurrent.modeling_recurrent import RecurrentSeq2Seq
from tests.helpers import run, write_config

V, P = 5, 4  # symbols, positions


def _batch(B: int = 9, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    length = torch.randint(1, P + 1, (B,), generator=g)
    ids = torch.randint(0, V, (B, P), generator=g).masked_fill(torch.arange(P) >= length[:, None], 0)
    return ids, length


def test_pair_swap_is_symmetric_within_both_lengths_and_undone_by_swapping_back():
    ids, length = _batch(B=9)
    corrupted, partner, swap = pair_swap_corruption(ids, length, 0.5, torch.Generator().manual_seed(1))
    assert torch.equal(partner[partner], torch.arange(9))
    assert (partner == torch.arange(9)).sum() == 1  # the odd row out
    assert torch.equal(swap, swap[partner])
    assert not (swap & (torch.arange(P) >= torch.minimum(length, length[partner])[:, None])).any()
    assert torch.equal(torch.where(swap, corrupted[partner], corrupted), ids)
    assert swap.any()


def test_replace_one_changes_at_most_one_position_inside_the_sequence():
    ids, length = _batch(B=50)
    corrupted, pos, old, new = replace_one_corruption(ids, length, V, torch.Generator().manual_seed(2))
    assert (pos < length).all() and torch.equal(old, ids[torch.arange(50), pos])
    assert torch.equal(corrupted[torch.arange(50), pos], new)
    assert ((corrupted != ids).sum(1) <= 1).all()


def _linear_state(ids: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    """A state storing symbol x_p of position p in its own block of dimensions (one-hot), then rotated."""
    return F.one_hot(ids, V).float().flatten(1) @ code.T  # (B, P*V)


def test_linear_swap_repairs_a_linearly_stored_state_exactly():
    S = P * V
    code = torch.linalg.qr(torch.randn(S, S, generator=torch.Generator().manual_seed(0)))[0]  # rotated storage
    lin = LinearSwapIntervention(S, P).eval()
    with torch.no_grad():
        lin.rotation.base.copy_(code.T)  # undo the rotation...
        lin.assign_logits.fill_(-10.0)
        lin.assign_logits[torch.arange(S), torch.arange(S) // V] = 10.0  # ...and assign block p to position p
    ids, length = _batch(B=8)
    corrupted, partner, swap = pair_swap_corruption(ids, length, 0.5, torch.Generator().manual_seed(3))
    repaired = lin(_linear_state(corrupted, code), partner, swap)
    torch.testing.assert_close(repaired, _linear_state(ids, code), rtol=1e-4, atol=1e-4)
    # negative control: the same repair with a wrong assignment (blocks shifted by one position) fails
    with torch.no_grad():
        lin.assign_logits.fill_(-10.0)
        lin.assign_logits[torch.arange(S), (torch.arange(S) // V + 1) % P] = 10.0
    assert not torch.allclose(lin(_linear_state(corrupted, code), partner, swap), _linear_state(ids, code), atol=1e-3)


def test_onion_linear_term_starts_at_one_as_the_original_or_where_asked():
    assert torch.equal(OnionIntervention(4, V).lin, torch.ones(4))
    assert torch.equal(OnionIntervention(4, V, linear_init=0.0).lin, torch.zeros(4))
    assert torch.equal(OnionIntervention(4, V, linear_term=False).lin, torch.zeros(4))  # no term: a zero buffer


def test_onion_repairs_a_magnitude_stored_state_exactly():
    S = 6
    onion = OnionIntervention(S, V)
    with torch.no_grad():
        onion.gamma.fill_(0.5)
        onion.lin.fill_(0.1)
        onion.b.fill_(0.2)

    def state(ids: torch.Tensor, length: torch.Tensor) -> torch.Tensor:  # sum_p tanh(E[x_p]) * scale(p)
        B = ids.shape[0]
        terms = [
            onion.embedding(ids[:, p]).tanh() * onion.scale(torch.full((B,), p)) * (p < length)[:, None]
            for p in range(P)
        ]
        return torch.stack(terms).sum(0)

    ids, length = _batch(B=20)
    corrupted, pos, old, new = replace_one_corruption(ids, length, V, torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(onion(state(corrupted, length), pos, old, new), state(ids, length))


def test_rotation_stays_orthogonal():
    lin = LinearSwapIntervention(7, 3)
    with torch.no_grad():
        lin.rotation.skew.normal_()
    R = lin.rotation()
    torch.testing.assert_close(R @ R.T, torch.eye(7), rtol=1e-5, atol=1e-5)


def _rnn() -> RecurrentSeq2Seq:
    torch.manual_seed(0)
    return RecurrentSeq2Seq(RecurrentConfig(n_symbols=V, state_size=8))


@pytest.mark.parametrize("method", METHODS)
def test_only_the_intervention_trains_and_models_round_trip(tmp_path, method):
    rnn = _rnn()
    before = {k: v.clone() for k, v in rnn.state_dict().items()}
    model = RecurrentIntervention.around(rnn, method, P)
    assert all(torch.equal(v, rnn.state_dict()[k]) for k, v in before.items())  # wrapping keeps the weights
    ids, length = _batch(B=8)
    labels = ids.masked_fill(torch.arange(P) >= length[:, None], -100)
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model(ids, length, labels).loss.backward()
    opt.step()
    assert all(torch.equal(v, rnn.state_dict()[k]) for k, v in before.items())
    assert not any(p.requires_grad for p in model.rnn.parameters())
    model.eval()
    first = model(ids, length, labels).logits
    torch.testing.assert_close(model(ids, length, labels).logits, first)  # same corruptions every evaluation
    model.save_pretrained(tmp_path)
    loaded = RecurrentIntervention.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(loaded(ids, length, labels).logits, first)


def _stage_two_config(tmp_path, model_dir, **over):
    cfg = dict(
        experiment="gru_intervention",
        exp_name="int",
        save_root=str(tmp_path),
        gru_model=str(model_dir),
        intervention="linear",
        n_symbols=V,
        min_len=3,
        max_len=3,
        n_train=60,
        n_valid=16,
        n_valid_extra=8,
        per_device_train_batch_size=8,
        max_steps=2,
        eval_strategy="no",
        save_steps=2,
        report_to="none",
        disable_tqdm=True,
    )
    cfg.update(over)
    return write_config(tmp_path / "int.json", **cfg)


def test_gru_intervention_run_and_its_config_checks(tmp_path):
    model_dir = tmp_path / "rnn"
    _rnn().save_pretrained(model_dir)
    bad = run("--config", str(_stage_two_config(tmp_path, model_dir, n_symbols=V + 1)))
    assert bad.returncode == 2 and "n_symbols" in bad.stderr and not (tmp_path / "int").exists()
    res = run("--config", str(_stage_two_config(tmp_path, model_dir)))
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = json.loads((tmp_path / "int" / "metrics.json").read_text())
    assert {"eval_valid_accuracy", "eval_valid_norepeat_accuracy"} <= set(metrics)
    saved = AutoModel.from_pretrained(tmp_path / "int" / "model")  # registered like every other model
    assert isinstance(saved, RecurrentIntervention) and saved.config.method == "linear"
    torch.testing.assert_close(saved.rnn.readout.weight, _rnn().readout.weight)  # the frozen RNN was saved as is
