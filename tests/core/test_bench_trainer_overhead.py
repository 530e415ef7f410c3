"""`benchmarks/core/bench_trainer_overhead.py --attribute`: every timed part of a step is found on the installed
transformers / accelerate (a renamed method is reported, not dropped silently), no time is counted twice, and the
last line is the JSON result."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers import ROOT, env


def test_attribution_times_every_part_and_adds_up(tmp_path):
    out = tmp_path / "r.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "core" / "bench_trainer_overhead.py"), "--configs", "mlp"]
    cmd += ["--steps", "16", "--warm", "4", "--rounds", "1", "--attribute", "--out", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env(), cwd=tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    result = json.loads(res.stdout.strip().splitlines()[-1])
    assert result == json.loads(out.read_text())
    assert result["configs"]["mlp"]["parts_not_found"] == []  # every wrapped method exists in this version
    parts = result["configs"]["mlp"]["parts_ms"]
    shared = {"batch", "loss (forward)", "backward", "gradient norm / clipping", "optimizer step", "schedule step"}
    shared |= {"zero_grad"}
    trainer_only = {"training_step wrapper", "FLOP counting", "callback dispatch", "callback GrabCallback"}
    trainer_only |= {"token counting", "learning-rate lookup", "log/save/evaluate checks"}
    for side, expected in (("trainer", shared | trainer_only), ("loop", shared)):
        timed = parts[side]
        missing = {k for k in expected if timed.get(k, 0.0) <= 0.0}
        assert not missing, (side, missing)
        # exclusive times: counted twice (or outside the clock's window) would leave less than nothing uncovered
        assert timed["not covered"] >= -0.01 * timed["step"], (side, timed)
