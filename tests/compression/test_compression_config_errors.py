"""Every bad value of the compression keys the original brought (seq_overlap, cmp_attention, cmp_layer, the
window stride, the loss switches) is one line `config error: <key>=<value>: ...`, exit 2, nothing written.
In-process (`hf_experiments.cli.main`): validation runs before any backbone is resolved or built."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hf_experiments import cli

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
    ("cmp_layer", "output", "pooling"),  # the output mix has no hidden states to mean-pool
]


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize(("key", "value", "words"), CASES, ids=[f"{k}={v}" for k, v, _ in CASES])
def test_bad_compression_values_are_one_line_exit_2_nothing_written(tmp_path, monkeypatch, capsys, key, value, words):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_EXPERIMENTS_CACHE", str(tmp_path / "cache"))  # no backbone may be built either
    path = tmp_path / "bad.json"
    extra = {"pooling": "mean"} if (key, value) == ("cmp_layer", "output") else {}
    path.write_text(json.dumps({**BASE, "save_root": str(tmp_path / "out"), key: value, **extra}))
    monkeypatch.chdir(tmp_path)
    before = _files(tmp_path)
    code = cli.main(["--config", str(path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1, err
    assert err[0].startswith(f"config error: {key}=") and words in err[0], err[0]
    assert _files(tmp_path) == before
