"""The fault campaign script (`benchmarks/core/fault_injection.py`) on a small subset, so it keeps working; the
full campaign's summary line is quoted in the README."""

from __future__ import annotations

import importlib.util

import pytest

from tests.helpers import ROOT


@pytest.mark.slow
def test_a_small_fault_campaign_survives(tmp_path):
    spec = importlib.util.spec_from_file_location("fault_injection", ROOT / "benchmarks/core/fault_injection.py")
    campaign = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(campaign)
    phases = "save:model-written,complete:before-marker,end:metrics-written"
    argv = ["--setups", "plain", "--ranks", "1", "--random", "2", "--phases", phases, "--out", str(tmp_path)]
    assert campaign.main(argv) == 0
