"""The shipped main job, end to end as a new user runs it (slow: a few minutes on 2 CPU cores).

`python -m pytest -m slow tests/compression/test_cmp_main_job.py`. An empty cache (nothing prepared), offline:
the context must clearly help the backbone (low - high >= 0.25 nats on the predicted tokens) and the compressed
context must keep at least half of that benefit at the lower end of its 95% interval.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.helpers import ROOT, run


@pytest.mark.slow
def test_shipped_cmp_config_shows_its_effect(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_EXPERIMENTS_CACHE", str(tmp_path / "cache"))  # inherited by the run's process
    start = time.time()
    res = run("--config", str(ROOT / "configs" / "cmp.json"), "--save_root", str(tmp_path / "out"))
    minutes = (time.time() - start) / 60
    assert res.returncode == 0, res.stderr[-4000:]
    m = json.loads((tmp_path / "out" / "cmp" / "metrics.json").read_text())
    print(
        f"cmp.json: low {m['low_loss']:.3f} pred {m['pred_loss']:.3f} high {m['high_loss']:.3f}; "
        f"low-high {m['low_minus_high']:.3f}; gap recovered {m['gap_recovered']:.1%} "
        f"[{m['gap_recovered_ci_low']:.1%}, {m['gap_recovered_ci_high']:.1%}]; {minutes:.1f} min"
    )
    assert m["first_token_scored"] == 1.0 and m["gap_degenerate"] == 0.0
    assert m["low_minus_high"] >= 0.25
    assert m["gap_recovered_ci_low"] >= 0.5
    # the compressed context helps the first predicted positions most
    low, pred = m["low_loss_by_position"], m["pred_loss_by_position"]
    assert low[0] - pred[0] > low[-1] - pred[-1]
    assert (tmp_path / "out" / "cmp" / "cmp_low_pred_high.png").is_file()
    assert (tmp_path / "out" / "cmp" / "model" / "backbone" / "model.safetensors").is_file()
