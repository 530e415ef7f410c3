"""`benchmarks/gpu_check.sh --dry-run`: the GPU check script runs end to end on CPU (tiny sizes) and its last line
is the JSON result with every section; without a GPU and without --dry-run it refuses in one line (exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers import ROOT, env


def _check(*args: str) -> subprocess.CompletedProcess:
    script = str(ROOT / "benchmarks" / "gpu_check.sh")
    return subprocess.run(
        ["bash", script, *args], capture_output=True, text=True, env={**env(), "PYTHON": sys.executable}, timeout=300
    )


def test_dry_run_reports_every_section_as_json(tmp_path):
    res = _check("--dry-run", "--out", str(tmp_path / "r.json"))
    assert res.returncode == 0, res.stderr[-2000:]
    result = json.loads(res.stdout.strip().splitlines()[-1])
    assert result == json.loads((tmp_path / "r.json").read_text())
    assert result["dry_run"] is True and result["device"] == "cpu"
    run = result["mfu"]["runs"][0]
    assert run["tokens_per_s"] > 0 and 0 < run["mfu_measured_matmul"]
    gen = result["generation"]
    assert gen["tokens_per_s_cache_on"] > 0 and gen["tokens_per_s_cache_off"] > 0
    pack = result["packing"]
    assert pack["packed_real_tokens_per_s"] > 0 and pack["padded_real_tokens_per_s"] > 0
    assert pack["packed_padding_share"] < pack["padded_padding_share"]
    assert "skipped" in result["ddp"]


def test_without_a_gpu_the_real_check_refuses_in_one_line():
    import torch

    if torch.cuda.is_available():
        return
    res = _check()
    assert res.returncode == 2 and res.stderr.strip() == "error: no CUDA device; use --dry-run on a CPU machine"
