"""The `cmp` experiment end to end: a real run on a tiny locally built backbone, exact gradient accumulation with
the compression model, and clear offline errors for hub ids."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from transformers import AutoModel

from hf_experiments.compression.backbones import build_builtin_backbone
from hf_experiments.compression.configuration_compression import CompressionConfig
from hf_experiments.compression.modeling_compression import CompressionModel
from hf_experiments.core.config import ExperimentTrainingArguments
from hf_experiments.core.trainer import ExperimentTrainer
from tests.helpers import run, write_config


@pytest.fixture(scope="module")
def tiny_backbone(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("backbone") / "tiny"
    build_builtin_backbone(
        out,
        progress=False,
        n_layer=2,
        n_embd=32,
        n_head=2,
        n_positions=64,
        vocab_size=300,
        max_steps=30,
        batch_size=8,
        max_chars=200_000,
    )
    return str(out)


def _cmp_config(tmp_path: Path, backbone: str, **over) -> Path:
    cfg = dict(
        experiment="cmp",
        model_string=backbone,
        n_cmps=2,
        cmp_len=8,
        seq_len=8,
        rmb_task=True,
        max_steps=12,
        per_device_train_batch_size=8,
        learning_rate=0.05,
        save_steps=6,
        logging_steps=3,
        report_to="tensorboard",
        max_train_windows=400,
        max_val_windows=32,
        per_device_eval_batch_size=16,
        free_run_tokens=4,
        save_root=str(tmp_path / "out"),
    )
    cfg.update(over)
    return write_config(tmp_path / "cmp_tiny.json", **cfg)


def test_cmp_run_writes_metrics_plot_model_and_tensorboard(tmp_path, tiny_backbone):
    res = run("--config", str(_cmp_config(tmp_path, tiny_backbone)))
    assert res.returncode == 0, res.stderr[-4000:]
    run_dir = tmp_path / "out" / "cmp_tiny"
    m = json.loads((run_dir / "metrics.json").read_text())
    for mode in ("low", "high", "pred"):
        assert {f"{mode}_loss", f"{mode}_top1", f"{mode}_top5"} <= m.keys()
        assert 0.0 <= m[f"{mode}_top1"] <= m[f"{mode}_top5"] <= 1.0
    assert m["high_loss"] < m["low_loss"]  # the backbone uses context at all
    assert {"gap_recovered", "rmb_token_acc", "rmb_exact_match", "rmb_bleu"} <= m.keys()
    assert (run_dir / "cmp_low_pred_high.png").stat().st_size > 1000
    assert list((run_dir / "runs").rglob("events.out.tfevents.*"))  # real TensorBoard event files
    # The final model reloads through the Auto classes; the frozen backbone is not duplicated into it.
    model = AutoModel.from_pretrained(run_dir / "model")
    assert isinstance(model, CompressionModel)
    saved = sum(f.stat().st_size for f in (run_dir / "model").glob("*.safetensors"))
    backbone = sum(f.stat().st_size for f in Path(tiny_backbone).glob("*.safetensors"))
    assert saved < backbone / 5
    # ... but the folder is self-contained: the local backbone travels in `model/backbone/`, the card says so.
    assert (run_dir / "model" / "backbone" / "config.json").is_file()
    assert "saved in `backbone/`" in (run_dir / "model" / "README.md").read_text()
    _loads_elsewhere(run_dir / "model", Path(tiny_backbone), tmp_path, model)


_FRESH = """
import sys, torch, hf_experiments
from transformers import AutoModel
model = AutoModel.from_pretrained(sys.argv[1]).eval()
ids = torch.tensor([list(range(3, 3 + model.config.cmp_len))])
out = model.generate(ids, prompt_ids=ids[:, :2], max_new_tokens=4, do_sample=False)
print(type(model).__name__, out.shape[-1], model.config.model_string)
print("OUT", out.tolist())
"""


def _loads_elsewhere(model_dir: Path, backbone: Path, tmp_path: Path, here: CompressionModel) -> None:
    """Copy the folder away, hide the original backbone and the caches, load it in a fresh offline process."""
    import shutil
    import subprocess
    import sys

    from tests.helpers import env

    copy = shutil.copytree(model_dir, tmp_path / "elsewhere" / "cmp_model")
    hidden = backbone.with_name(backbone.name + ".hidden")
    backbone.rename(hidden)
    try:
        e = env() | {"HF_EXPERIMENTS_CACHE": str(tmp_path / "no_cache"), "HF_HOME": str(tmp_path / "no_hf")}
        res = subprocess.run([sys.executable, "-c", _FRESH, str(copy)], capture_output=True, text=True, env=e)
    finally:
        hidden.rename(backbone)
    assert res.returncode == 0, res.stderr[-3000:]
    name, n_new, model_string = res.stdout.splitlines()[0].split()
    assert (name, n_new, model_string) == ("CompressionModel", "4", "backbone")
    # the same continuation as the model in this process
    ids = torch.tensor([list(range(3, 3 + here.config.cmp_len))])
    expect = here.eval().generate(ids, prompt_ids=ids[:, :2], max_new_tokens=4, do_sample=False)
    assert res.stdout.splitlines()[1] == f"OUT {expect.tolist()}"


def _windows(n: int = 8, t: int = 16) -> Dataset:
    g = torch.Generator().manual_seed(0)
    return Dataset.from_dict({"input_ids": torch.randint(0, 300, (n, t), generator=g).tolist()})


def _one_update(tmp_path: Path, backbone: str, batch: int, accum: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = CompressionModel(
        CompressionConfig(model_string=backbone, n_cmps=2, cmp_len=8, seq_len=8, rmb_task=True, proj_cmps=True)
    )
    args = ExperimentTrainingArguments(
        output_dir=str(tmp_path / f"b{batch}"),
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=accum,
        max_steps=1,
        optim="sgd",
        learning_rate=1.0,
        lr_scheduler_type="constant",
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
    )
    ExperimentTrainer(model=model, args=args, train_dataset=_windows()).train()
    return {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}


def test_gradient_accumulation_is_exact_for_the_compression_loss(tmp_path, tiny_backbone):
    big, small = _one_update(tmp_path, tiny_backbone, 8, 1), _one_update(tmp_path, tiny_backbone, 1, 8)
    assert big.keys() == small.keys() and len(big) >= 3
    for k in big:
        torch.testing.assert_close(big[k], small[k], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("key", "value"), [("model_string", "gpt2"), ("dataset", "openwebtext")])
def test_hub_sources_fail_clearly_when_offline(tmp_path, tiny_backbone, key, value):
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    res = run("--config", str(_cmp_config(tmp_path, tiny_backbone, **{key: value})))
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1].startswith(f"config error: {key}=")
    assert not (tmp_path / "out").exists()
