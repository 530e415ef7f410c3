"""Every bad value of the compression keys the original brought (seq_overlap, cmp_attention, cmp_layer, the
window stride, the loss switches) is one line `config error: <key>=<value>: ...`, exit 2, nothing written.
In-process (`hf_experiments.cli.main`): validation runs before any backbone is resolved or built."""

from __future__ import annotations

import pytest

from tests.helpers import assert_config_error

BASE = {"experiment": "cmp", "model_string": "builtin:tiny-lm", "cmp_len": 8, "seq_len": 8, "max_steps": 2}

CASES = [
    ("seq_overlap", 8, "cmp_len=8"),  # must stay inside the context
    ("seq_overlap", 20, "cmp_len=8"),
    ("seq_overlap", -1, "[0, inf]"),
    ("cmp_attention", "masked", "context_only"),
    ("cmp_layer", "quarter", "'output'"),
    ("cmp_layer", 2.5, "integer"),
    ("window_stride", 0, "[1, inf]"),
    ("prepend_bos", "maybe", "boolean"),
    ("loss_sum", "sometimes", "boolean"),
    ("cmp_layer", "output", "pooling"),
    (
        "seq_len",
        120,
        "128 positions",
    ),  # 1 + 8 + 120 - 1 = 128 fits, 129 does not  # the output mix has no hidden states to mean-pool
]


@pytest.mark.parametrize(("key", "value", "words"), CASES, ids=[f"{k}={v}" for k, v, _ in CASES])
def test_bad_compression_values_are_one_line_exit_2_nothing_written(tmp_path, monkeypatch, capsys, key, value, words):
    monkeypatch.setenv("HF_EXPERIMENTS_CACHE", str(tmp_path / "cache"))  # no backbone may be built either
    extra = {"pooling": "mean"} if (key, value) == ("cmp_layer", "output") else {}
    extra |= {"n_cmps": 2, "cmp_len": 10} if key == "seq_len" else {}
    assert_config_error(tmp_path, monkeypatch, capsys, {**BASE, key: value, **extra}, f"{key}=", words)


def test_a_local_backbone_s_length_limit_is_read_from_its_config(tmp_path, monkeypatch, capsys):
    from hf_experiments.compression.backbones import SHIPPED_DIR

    cfg = {**BASE, "model_string": str(SHIPPED_DIR / "tiny-lm"), "cmp_len": 10, "seq_len": 120}
    assert_config_error(tmp_path, monkeypatch, capsys, cfg, "seq_len=120", "128 positions")
