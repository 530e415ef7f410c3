"""Shared test setup: never reach for the network, keep caches inside the test's tmp folders."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "2")

import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """A per-session cache for datasets/backbones so tests never write into the user's home."""
    cache = tmp_path_factory.getbasetemp() / "hfe_cache"
    monkeypatch.setenv("HF_EXPERIMENTS_CACHE", str(cache))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache / "datasets"))
