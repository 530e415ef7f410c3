"""A run's model card and its push to the Hub, on a real tiny arrows run started from the command line: the card
(a `huggingface_hub.ModelCard`) says what the model is, shows headline metrics only, both ways to load it, the
command that trained it, the framework versions, and names `run_config.json`, which is in `model/` and parses back
to the same config; `stage_run` lays out exactly what `push_run` uploads (the model at the top, TensorBoard logs
under `runs/`, the card naming the repo) without changing the run folder, and the staged folder loads; offline or
without a network `trainers/push_run.py` fails with one line, exit 1, nothing written; bad arguments exit 2."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from hf_experiments.core import hub
from hf_experiments.core.config import ConfigError
from hf_experiments.core.parsing import parse_config_strict
from hf_experiments.core.run_folder import LOAD_FROM, file_records, headline_metrics, launch_command
from tests.helpers import ROOT, TINY_ARROWS, env, free_port, write_config

PUSH = str(ROOT / "trainers" / "push_run.py")
REPO = "hfe-test/tiny-arrows"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """`python trainers/run.py --config <cfg> --max_steps 4` from the clone, TensorBoard on."""
    tmp = tmp_path_factory.mktemp("card_run")
    cfg = {**TINY_ARROWS, "save_root": str(tmp / "out"), "exp_name": "tiny", "save_steps": 4, "logging_steps": 2}
    path = write_config(tmp / "tiny.json", **{**cfg, "report_to": "tensorboard", "dropout": 0.0})
    res = subprocess.run(
        [sys.executable, "trainers/run.py", "--config", str(path), "--max_steps", "4"],
        cwd=ROOT,
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return tmp / "out" / "tiny"


def test_the_card_says_what_it_is_how_to_load_it_and_how_it_was_trained(run_dir):
    card = ModelCard.load(run_dir / "model" / "README.md")
    assert card.data.library_name == "transformers" and card.data.tags == ["hf_experiments", "arrows"]
    text = card.text
    assert "A `GPTForCausalLM`" in text and "experiment `arrows`" in text
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert "eval_runtime" in metrics and "world_size" in metrics and "epoch" in metrics  # in metrics.json only
    table = [line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| ") and "metric" not in line]
    assert table == ["eval_loss", "mean_token_loss"]
    for extra in ("", ", trust_remote_code=True"):
        assert f'AutoModelForCausalLM.from_pretrained("{LOAD_FROM}"{extra})' in text
        assert f'AutoTokenizer.from_pretrained("{LOAD_FROM}"{extra})' in text
    assert "import hf_experiments\n" in text
    config = run_dir.parent.parent / "tiny.json"
    assert f"```bash\npython trainers/run.py --config {config} --max_steps 4\n```" in text
    import torch
    import transformers

    assert f"- torch {torch.__version__}" in text and f"- transformers {transformers.__version__}" in text
    assert "- datasets " in text and "- accelerate " in text and "- hf_experiments " in text
    # the config the card names is in model/ and retrains the same run
    assert "`run_config.json` in this folder" in text
    saved = json.loads((run_dir / "model" / "run_config.json").read_text())
    assert saved == json.loads((run_dir / "run_config.json").read_text())
    assert parse_config_strict(["--config", str(run_dir / "model" / "run_config.json")]).to_dict() == saved


def test_headline_metrics_leave_out_bookkeeping():
    metrics = {
        "eval_loss": 0.5,
        "eval_runtime": 1.0,
        "eval_samples_per_second": 3.0,
        "eval_steps_per_second": 1.0,
        "train_runtime": 2.0,
        "train_mem_cpu_alloc_delta": 4,
        "total_flos": 9.0,
        "epoch": 1.0,
        "world_size": 2,
        "accuracy_level_1": 0.75,
        "bleu_signature": "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.5.1",
        "loss_per_position": [0.1, 0.2],
    }
    assert headline_metrics(metrics) == {
        "eval_loss": 0.5,
        "accuracy_level_1": 0.75,
        "bleu_signature": metrics["bleu_signature"],
    }


def test_both_metric_filters_agree():
    """The card's table and the backends' `final/` metrics leave out the same bookkeeping keys."""
    from hf_experiments.core.reporting import headline_metrics as logged

    metrics = {"eval_loss": 0.5, "total_flos": 9.0, "step": 3, "train_mem_cpu_alloc_delta": 4, "eval_runtime": 1.0}
    assert set(logged(metrics)) == set(headline_metrics(metrics)) == {"eval_loss"}


def test_a_pipe_in_a_metric_value_stays_inside_its_table_cell(run_dir, tmp_path):
    import shutil

    from hf_experiments.core.run_folder import write_model_card

    model = tmp_path / "model"
    shutil.copytree(run_dir / "model", model)
    config = json.loads((run_dir / "run_config.json").read_text())
    signature = "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.5.1"
    write_model_card(model, "arrows", config, {"eval_loss": 0.5, "rmb_bleu_signature": signature}, None)
    rows = [line for line in ModelCard.load(model / "README.md").text.splitlines() if line.startswith("| rmb_")]
    assert len(rows) == 1
    cells = [c.strip() for c in re.split(r"(?<!\\)\|", rows[0])[1:-1]]  # unescaped pipes only
    assert cells == ["rmb_bleu_signature", signature.replace("|", "\\|")]


def test_saved_tokenizer_config_has_no_load_only_keys(run_dir, tmp_path):
    """A tokenizer loaded offline records `local_files_only`; the run's saved folder must not carry it."""
    from transformers import AutoTokenizer

    from hf_experiments.core.run_folder import scrub_tokenizer_configs

    saved = json.loads((run_dir / "model" / "tokenizer_config.json").read_text())
    assert not {"local_files_only", "is_local", "token"} & set(saved)
    tok = AutoTokenizer.from_pretrained(run_dir / "model", local_files_only=True)
    assert type(tok).__name__ == "CharTokenizerFast"  # the package registers the fast class first
    tok.save_pretrained(tmp_path / "tok")
    assert json.loads((tmp_path / "tok" / "tokenizer_config.json").read_text())["local_files_only"] is True
    assert scrub_tokenizer_configs(tmp_path) == [tmp_path / "tok" / "tokenizer_config.json"]
    again = json.loads((tmp_path / "tok" / "tokenizer_config.json").read_text())
    assert "local_files_only" not in again and again["tokenizer_class"] == saved["tokenizer_class"]
    assert AutoTokenizer.from_pretrained(tmp_path / "tok")("0110").input_ids == tok("0110").input_ids


def test_launch_command_is_the_command_line_of_a_run_and_nothing_else(monkeypatch, tmp_path):
    for key in ("ACCELERATE_MIXED_PRECISION", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(ROOT)
    cfg = str(tmp_path / "a b.json")  # quoted as a shell needs it
    run = [str(ROOT / "trainers" / "run.py"), "--config", cfg, "--seed", "1"]
    assert launch_command(cfg, run) == f"python trainers/run.py --config '{cfg}' --seed 1"
    module = [str(ROOT / "hf_experiments" / "__main__.py"), f"--config={cfg}"]
    assert launch_command(cfg, module) == f"python -m hf_experiments '--config={cfg}'"
    assert launch_command(None, ["/venv/bin/hfe", "run", "--restore_from", "x"]) == "hfe run --restore_from x"
    secret = [*run, "--hub_token", "hf_abc", "--hub_model_id", "me/m", "--hub_token=hf_def", "--max_steps", "2"]
    assert (
        launch_command(cfg, secret)
        == f"python trainers/run.py --config '{cfg}' --seed 1 --hub_model_id me/m --max_steps 2"
    )
    assert launch_command(cfg, ["/venv/bin/pytest", "-x"]) is None  # in-process: not a run's command line
    assert launch_command(str(tmp_path / "job.json"), run) is None  # a sweep's command: not this run's
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert launch_command(cfg, run).startswith(
        "accelerate launch --multi_gpu --num_processes 2 --mixed_precision bf16 trainers/run.py --config"
    )
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert launch_command(cfg, run).startswith("torchrun --nproc_per_node 2 trainers/run.py")


def test_staging_holds_the_model_the_logs_and_a_card_naming_the_repo(run_dir, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from transformers import AutoModelForCausalLM, AutoTokenizer

    before = file_records(run_dir)
    staged = tmp_path / "staged"
    paths = hub.stage_run(run_dir, staged, REPO)
    model_files = {p.name for p in (run_dir / "model").iterdir()} - {"training_args.bin"}
    logs = {p.relative_to(run_dir).as_posix() for p in (run_dir / "runs").rglob("*") if p.is_file()}
    assert set(paths) == model_files | logs and any(".tfevents." in p for p in logs)
    assert {p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file()} == set(paths)
    assert file_records(run_dir) == before  # the run folder is untouched (the card in it keeps its placeholder)
    weights = staged / "model.safetensors"
    assert weights.stat().st_ino == (run_dir / "model" / "model.safetensors").stat().st_ino  # a link, not a copy
    card = (staged / "README.md").read_text()
    assert f'from_pretrained("{REPO}", trust_remote_code=True)' in card and LOAD_FROM not in card
    model = AutoModelForCausalLM.from_pretrained(staged)
    tok = AutoTokenizer.from_pretrained(staged)
    assert model(**tok(["0101"], return_tensors="pt")).logits.shape[-1] == model.config.vocab_size
    scalars = set()
    for folder in {p.parent for p in (staged / "runs").rglob("*.tfevents.*")}:
        acc = EventAccumulator(str(folder))
        acc.Reload()
        scalars |= set(acc.Tags()["scalars"])
    assert "train/loss" in scalars


def test_bad_arguments_are_one_line_and_exit_2(run_dir, tmp_path, capsys):
    assert hub.main([str(tmp_path), REPO]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"config error: run_dir={str(tmp_path)!r}: a finished run folder (with model/config.json)"
    ]
    assert hub.main([str(run_dir), "bad//repo"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("config error: repo_id='bad//repo'")
    with pytest.raises(ConfigError, match="run_dir"):
        hub.stage_run(tmp_path, tmp_path / "staged")
    assert not (tmp_path / "staged").exists()


def test_offline_or_unreachable_hub_is_one_line_exit_1_and_nothing_written(run_dir, tmp_path, monkeypatch, capsys):
    """Offline (in-process, the test session's `HF_HUB_OFFLINE=1`), then `trainers/push_run.py` against a Hub
    address where nothing listens: one line each, exit 1, no file anywhere (the staging folder is removed)."""
    before = file_records(run_dir)
    staging_root, home, work = tmp_path / "tmp", tmp_path / "hf_home", tmp_path / "cwd"
    for folder in (staging_root, work):
        folder.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.main([str(run_dir), REPO]) == 1
    out = capsys.readouterr()
    assert out.out == "" and out.err.strip().splitlines() == [
        f"cannot push {run_dir} to {REPO}: HF_HUB_OFFLINE is set (unset it to upload)"
    ]
    unreachable = {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": f"http://127.0.0.1:{free_port()}", "HF_TOKEN": "hf_test"}
    e = {**env(), "HF_HOME": str(home), "TMPDIR": str(staging_root), **unreachable}
    res = subprocess.run(
        [sys.executable, PUSH, str(run_dir), REPO, "--private"],
        cwd=work,
        env=e,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 1, res.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith(f"cannot push {run_dir} to {REPO}: ConnectError"), lines
    assert res.stdout == ""
    assert list(work.iterdir()) == [] and list(staging_root.iterdir()) == []  # the staging folder is gone
    assert not home.exists() or not any(p.is_file() for p in home.rglob("*"))
    assert file_records(run_dir) == before
