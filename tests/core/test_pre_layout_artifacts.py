"""Models and run folders written before the layout move (`tests/fixtures/pre_layout/`, made by the code of the
commit before it) still load through the Auto classes and still resume: the model_type strings, tokenizer
classes, checkpoint files and the data cache's format are unchanged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
import transformers
from packaging.version import Version
from safetensors.torch import load_file
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

import hf_experiments  # noqa: F401  (registers the model classes)
from tests.helpers import final_weights, run

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "pre_layout"
# The fixtures' run_config.json records every non-default TrainingArguments field of the transformers that wrote
# them (5.24); an older release lacks some of those fields and rightly rejects them as unknown keys.
WRITTEN_BY = json.loads((FIXTURES / "gru_tiny" / "checkpoint-3" / "config.json").read_text())["transformers_version"]
needs_writer_version = pytest.mark.skipif(
    Version(transformers.__version__) < Version(WRITTEN_BY),
    reason=f"run_config.json written by transformers {WRITTEN_BY}",
)


@pytest.mark.parametrize(
    ("run_name", "auto", "cls_name", "has_tokenizer"),
    [
        ("blotch_cache_tiny", AutoModelForCausalLM, "BlotchModel", True),
        ("arrows_tiny", AutoModelForCausalLM, "GPTForCausalLM", True),
        ("gru_tiny", AutoModel, "RecurrentSeq2Seq", False),
        ("mlp_tiny", AutoModel, "MLP", False),
    ],
)
def test_old_models_load_through_the_auto_classes(run_name, auto, cls_name, has_tokenizer):
    folder = FIXTURES / run_name / "model"
    model = auto.from_pretrained(folder)
    assert type(model).__name__ == cls_name
    saved = load_file(str(folder / "model.safetensors"))
    state = model.state_dict()
    for key, tensor in saved.items():
        assert torch.equal(state[key], tensor), key
    if has_tokenizer:
        tok = AutoTokenizer.from_pretrained(folder)
        ids = tok("0=1")["input_ids"] if run_name == "blotch_cache_tiny" else tok("01_")["input_ids"]
        assert len(ids) >= 3 and tok.decode(ids, skip_special_tokens=True)


def _resume(tmp_path: Path, run_name: str, checkpoint: str) -> tuple[Path, str]:
    """An old run folder holding only its config and first checkpoint, rerun with today's code."""
    run_dir = tmp_path / "out" / run_name
    run_dir.mkdir(parents=True)
    shutil.copy(FIXTURES / run_name / "run_config.json", run_dir / "run_config.json")
    shutil.copytree(FIXTURES / run_name / checkpoint, run_dir / checkpoint)
    res = run("--config", str(run_dir / "run_config.json"), "--save_root", str(tmp_path / "out"))
    assert res.returncode == 0, res.stderr[-3000:]
    return run_dir, res.stderr


def _assert_close_to_old(run_dir: Path, run_name: str) -> None:
    """Weights equal the old code's uninterrupted run up to float reduction order (another CPU may sum in
    another order; on the machine that made the fixtures they are equal bit for bit)."""
    old = load_file(str(FIXTURES / run_name / "model" / "model.safetensors"))
    new = final_weights(run_dir)
    assert old.keys() == new.keys()
    for key in old:
        torch.testing.assert_close(new[key], old[key], rtol=1e-4, atol=1e-6)


@needs_writer_version
def test_an_old_run_folder_resumes_where_it_stopped(tmp_path):
    run_dir, log = _resume(tmp_path, "gru_tiny", "checkpoint-3")
    assert "resuming from" in log and "checkpoint-3" in log
    state = json.loads((run_dir / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["global_step"] == 6
    assert [h["step"] for h in state["log_history"] if "loss" in h] == [1, 2, 3, 4, 5, 6]  # old steps kept
    _assert_close_to_old(run_dir, "gru_tiny")
    old_metrics = json.loads((FIXTURES / "gru_tiny" / "metrics.json").read_text())
    new_metrics = json.loads((run_dir / "metrics.json").read_text())
    assert new_metrics["eval_valid_accuracy"] == pytest.approx(old_metrics["eval_valid_accuracy"], abs=0.02)


@needs_writer_version
def test_an_old_data_cache_checkpoint_resumes_with_its_rows(tmp_path):
    run_dir, log = _resume(tmp_path, "blotch_cache_tiny", "checkpoint-7")
    assert "resuming from" in log
    expected = pq.read_table(FIXTURES / "blotch_cache_tiny" / "expected_final_cache" / "rows.parquet")
    final = pq.read_table(run_dir / "checkpoint-14" / "data_cache" / "rows.parquet")
    assert final.to_pydict() == expected.to_pydict()  # the round after the resume rewrote the same rows
    ledger = json.loads((run_dir / "checkpoint-14" / "data_cache" / "state.json").read_text())["ledger"]
    old_ledger = json.loads((FIXTURES / "blotch_cache_tiny" / "expected_final_cache" / "state.json").read_text())
    assert ledger["epoch_starts"] == old_ledger["ledger"]["epoch_starts"]
    assert [r["kind"] for r in ledger["rounds"]] == [r["kind"] for r in old_ledger["ledger"]["rounds"]]
    _assert_close_to_old(run_dir, "blotch_cache_tiny")
