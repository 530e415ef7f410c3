"""`wandb_project`, `wandb_group` and `run_tags`: parsed and checked, handed to W&B the way its `wandb.init`
reads them (for the length of a run only), sweep jobs grouped by the sweep's name, and a real offline W&B run
(when `wandb` is installed) with them and the final metrics."""

from __future__ import annotations

import os

import pytest

from hf_experiments.core.parsing import parse_config_strict
from hf_experiments.core.reporting import log_final_metrics, tracker_settings, wandb_env
from hf_experiments.sweeps.api import run_sweep
from tests.helpers import assert_config_error
from tests.mlp.helpers import run_here, tiny_mlp_config, write

WANDB_VARS = ("WANDB_PROJECT", "WANDB_RUN_GROUP", "WANDB_TAGS")


def _cfg(tmp_path, **over):
    return parse_config_strict(["--config", str(write(tmp_path / "w.json", tiny_mlp_config(tmp_path, **over)))])


def test_keys_parse_from_config_and_command_line(tmp_path):
    cfg = _cfg(tmp_path, wandb_project="proj", run_tags=["a", "b"])
    assert (cfg.run.wandb_project, cfg.run.wandb_group, cfg.run.run_tags) == ("proj", None, ["a", "b"])
    path = write(tmp_path / "c.json", tiny_mlp_config(tmp_path))
    cfg = parse_config_strict(["--config", str(path), "--wandb_group", "g", "--run_tags", "x", "y"])
    assert (cfg.run.wandb_group, cfg.run.run_tags) == ("g", ["x", "y"])
    assert wandb_env(cfg.run) == {"WANDB_RUN_GROUP": "g", "WANDB_TAGS": "x,y"}


@pytest.mark.parametrize("tags", [["a,b"], [""], ["x" * 65]])
def test_bad_tags_are_a_config_error(tmp_path, monkeypatch, capsys, tags):
    cfg = tiny_mlp_config(tmp_path / "out", run_tags=tags)
    del cfg["save_root"]
    assert_config_error(tmp_path, monkeypatch, capsys, cfg, "run_tags", "no commas")


def test_settings_hold_for_the_run_only(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_PROJECT", "outer")
    monkeypatch.delenv("WANDB_RUN_GROUP", raising=False)
    monkeypatch.delenv("WANDB_TAGS", raising=False)
    cfg = _cfg(tmp_path, exp_name="named", wandb_project="proj", wandb_group="grp", run_tags=["a", "b"])
    with tracker_settings(cfg):
        assert [os.environ[k] for k in WANDB_VARS] == ["proj", "grp", "a,b"]
        assert cfg.training.run_name == "named"  # W&B / trackio name the run after exp_name
    assert os.environ["WANDB_PROJECT"] == "outer"
    assert "WANDB_RUN_GROUP" not in os.environ and "WANDB_TAGS" not in os.environ
    assert cfg.training.run_name is None
    cfg = _cfg(tmp_path, run_name="mine")
    with tracker_settings(cfg):
        assert os.environ["WANDB_PROJECT"] == "outer"  # unset keys leave the environment's
        assert cfg.training.run_name == "mine"


def test_sweep_jobs_are_grouped_by_the_sweep_name(tmp_path, capsys):
    base = tiny_mlp_config(tmp_path, sweep={"width": [8, 16]})
    sweep, _ = run_sweep(base, dry_run=True, name="grid")
    assert [j.config["wandb_group"] for j in sweep.jobs] == ["grid", "grid"]
    sweep, _ = run_sweep({**base, "wandb_group": "mine"}, dry_run=True, name="grid")
    assert [j.config["wandb_group"] for j in sweep.jobs] == ["mine", "mine"]
    assert not (tmp_path / "grid").exists()  # a dry run writes nothing


def test_logging_keys_do_not_make_another_run(tmp_path, capsys):
    path = write(tmp_path / "again.json", tiny_mlp_config(tmp_path, max_steps=3))
    assert run_here(path) == 0
    capsys.readouterr()
    assert run_here(path, "--wandb_group", "g", "--run_tags", "t", "--run_name", "n") == 0
    assert "is finished (same config)" in capsys.readouterr().out


def test_offline_wandb_run_has_project_group_tags_and_final_metrics(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    for key in WANDB_VARS:
        monkeypatch.delenv(key, raising=False)
    cfg = _cfg(tmp_path, exp_name="wb", report_to="wandb", wandb_project="proj", wandb_group="grp", run_tags=["a"])
    exp = cfg.experiment_cls(cfg)
    data = exp.build_data()
    model = exp.build_model()
    with tracker_settings(cfg):  # what `runner._run` does around the trainer
        trainer = exp.build_trainer(model, data)
        trainer.train()
        run = wandb.run  # started by transformers' WandbCallback from the environment
        assert (run.project, run.group, list(run.tags), run.name) == ("proj", "grp", ["a"], "wb")
        logged = log_final_metrics(trainer, exp.evaluate(trainer, data))
        assert run.summary["train/final/eval_loss"] == pytest.approx(logged["final/eval_loss"])
    assert wandb.run is None  # finished: the next run of this process starts its own
    assert not any(key in os.environ for key in WANDB_VARS)
