"""Strict config validation: every bad config gives one clear line, exit status 2, and writes nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hf_experiments import cli as run_script
from hf_experiments.core.parsing import parse_config_strict
from hf_experiments.core.seed_names import translate_seed_names

GOOD = {
    "experiment": "arrows",
    "task": "linear",
    "matrix_n": 4,
    "matrix_k": 2,
    "num_vectors": 64,
    "n_val": 16,
    "model_preset": "tiny",
    "max_steps": 2,
    "report_to": "none",
}

# (config overrides or None to delete, extra command-line args, key that must be named, words in the message)
BAD = [
    ({"learning_rte": 1e-3}, [], "learning_rte", "did you mean 'learning_rate'"),
    ({"per_device_train_batch_size": "abc"}, [], "per_device_train_batch_size", "integer"),
    ({"max_steps": 3.5}, [], "max_steps", "integer"),
    ({"dropout": 1.5}, [], "dropout", "probability in [0, 1]"),
    ({"perturbation_rate": -0.1}, [], "perturbation_rate", "probability"),
    ({"embed_dim": 30, "n_heads": 4}, [], "embed_dim", "multiple of n_heads=4"),
    ({"experiment": None}, [], "experiment", "required"),
    ({"experiment": "arows"}, [], "experiment", "did you mean 'arrows'"),
    ({"dataset_path": "/nonexistent/data"}, [], "dataset_path", "existing path"),
    ({"init_checkpt": "/nonexistent/ckpt"}, [], "init_checkpt", "existing path"),
    ({"direction": "sideways"}, [], "direction", "'forward', 'backward'"),
    ({}, ["--learning_rate", "abc"], "learning_rate", "invalid"),
    ({}, ["--lerning_rate", "0.1"], "lerning_rate", "did you mean 'learning_rate'"),
    ({"output_dir": "/tmp/elsewhere"}, [], "output_dir", "save_root/exp_name"),
    ({"model_parallel": True}, [], "model_parallel", "FSDP/DeepSpeed"),
    ({"lr": 0.1, "learning_rate": 0.2}, [], "config", "keep one of them"),
    ({"permutation": [0, 1, 2]}, [], "permutation", "permutation of 0..14"),
    ({"load_best_model_at_end": True, "eval_strategy": "no"}, [], "TrainingArguments", "strategy"),
    ({"fresh_start": "maybe"}, [], "fresh_start", "boolean"),
    ({"learning_rate": [0.1, 0.2]}, [], "learning_rate", "single value"),
    ({"learning_rate": None}, [], "learning_rate", "null is not allowed"),
    ({"task": "primes", "min_n_digits": 4, "max_n_digits": 2}, [], "min_n_digits", "at most max_n_digits=2"),
    ({"max_eval_batches": 0}, [], "max_eval_batches", "[1, inf]"),
    # the generic framework fields (docs/framework.md) and seed spellings of their values
    ({"per_device_batch_size": 0}, [], "per_device_batch_size", "integer >= 1"),
    ({"per_device_batch_size": 4, "gradient_accumulation_steps": 3}, [], "gradient_accumulation_steps", "derived"),
    ({"lr_sched_steps": [5]}, [], "lr_sched_steps", "constant_with_warmup"),
    ({"lr_sched_gamma": -1.0}, [], "lr_sched_gamma", "[0.0, inf]"),
    ({"lr_sched.type": "noam"}, [], "lr_scheduler_type", "one of"),
    ({"grad_clip": "sometimes"}, [], "max_grad_norm", "a number"),
    ({}, ["--grad_clip", "sometimes"], "max_grad_norm", "invalid"),
    ({"max_grad_norm": -1.0}, [], "max_grad_norm", "[0.0, inf]"),
]


def _write_config(tmp_path: Path, overrides: dict) -> Path:
    cfg = {**GOOD, "save_root": str(tmp_path / "out")}
    for k, v in overrides.items():
        if v is None and k == "experiment":
            cfg.pop(k)
        else:
            cfg[k] = v
    path = tmp_path / "cfgs" / "bad.json"
    path.parent.mkdir()
    path.write_text(json.dumps(cfg))
    return path


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize(("overrides", "cli", "key", "words"), BAD, ids=[b[2] + str(i) for i, b in enumerate(BAD)])
def test_bad_config_exits_2_with_one_clear_line_and_no_files(tmp_path, monkeypatch, capsys, overrides, cli, key, words):
    path = _write_config(tmp_path, overrides)
    monkeypatch.chdir(tmp_path)
    before = _files(tmp_path)
    code = run_script.main(["--config", str(path), *cli])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("config error: ") and key in err[0] and words in err[0], err[0]
    assert _files(tmp_path) == before  # nothing written: no run folder, no data, no logs


def test_missing_and_malformed_config_files(tmp_path, capsys):
    code = run_script.main(["--config", str(tmp_path / "nope.json")])
    assert code == 2 and "not found" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('{"experiment": "arrows",, }')
    code = run_script.main(["--config", str(bad)])
    assert code == 2 and "valid JSON" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["bad.json"]


def test_command_line_overrides_file_and_seed_names_translate(tmp_path):
    path = _write_config(tmp_path, {"lr": 0.01, "batch_size": 3, "n_grad_loops": 2})
    cfg = parse_config_strict(["--config", str(path), "--learning_rate", "0.05", "--direction", "backward"])
    assert cfg.training.learning_rate == 0.05  # command line wins over the file's `lr`
    assert cfg.training.per_device_train_batch_size == 3 and cfg.training.gradient_accumulation_steps == 2
    assert cfg.data.direction == "backward"
    assert cfg.run.exp_name == "bad"  # default: the config file's stem
    assert cfg.run_dir == tmp_path / "out" / "bad"
    cfg2 = parse_config_strict(["--config", str(path), "--lr", "0.07"])  # seed name on the command line too
    assert cfg2.training.learning_rate == 0.07


def test_resolved_config_reparses_to_the_same_values(tmp_path):
    path = _write_config(tmp_path, {"learning_rate": 3e-4, "permutation": list(range(14, -1, -1))})
    cfg = parse_config_strict(["--config", str(path)])
    resolved = tmp_path / "resolved.json"
    resolved.write_text(json.dumps(cfg.to_dict()))
    again = parse_config_strict(["--config", str(resolved)])
    assert again.to_dict() == cfg.to_dict()
    assert again.data.permutation == list(range(14, -1, -1))


def test_seed_hyperparameters_translate_including_nested_arrows_format():
    flat, notes = translate_seed_names(
        {
            "model_params": {"n_layers": 2, "embed_dim": 64},
            "training_params": {"batch_size": 180, "aggregate": 2, "backwards": True},
            "optim_params": {"lr": 1e-4},
        }
    )
    assert flat == {
        "n_layers": 2,
        "embed_dim": 64,
        "per_device_train_batch_size": 180,
        "gradient_accumulation_steps": 2,
        "direction": "backward",
        "learning_rate": 1e-4,
    }
    assert any("lr -> learning_rate" in n for n in notes)


def test_seed_framework_spellings_of_values_translate(tmp_path):
    path = _write_config(
        tmp_path,
        {
            "grad_clip": "none",
            "lr_sched.type": "step",
            "lr_sched.steps": [5, 9],
            "lr_sched.gamma": 0.5,
            "lr_warmup": 3,
            "amp": 1,
        },
    )
    t = parse_config_strict(["--config", str(path)]).training
    assert (t.max_grad_norm, t.lr_sched_steps, t.lr_sched_gamma, t.warmup_steps, t.bf16) == (0.0, [5, 9], 0.5, 3, True)
    assert str(t.lr_scheduler_type.value) == "constant_with_warmup"
    (tmp_path / "cli").mkdir()
    path = _write_config(tmp_path / "cli", {})
    cli = parse_config_strict(
        ["--config", str(path), "--lr_sched.type", "cos", "--grad_clip=0.5", "--log", "tb"]
    ).training
    assert str(cli.lr_scheduler_type.value) == "cosine" and cli.max_grad_norm == 0.5
    assert cli.report_to == ["tensorboard"]


def test_a_derived_accumulation_is_not_recorded_so_the_resolved_config_reparses(tmp_path):
    path = _write_config(tmp_path, {"per_device_train_batch_size": 10, "per_device_batch_size": 4})
    cfg = parse_config_strict(["--config", str(path)])
    assert cfg.training.gradient_accumulation_steps == 3 and "gradient_accumulation_steps" not in cfg.to_dict()
    resolved = tmp_path / "resolved.json"
    resolved.write_text(json.dumps(cfg.to_dict()))
    assert parse_config_strict(["--config", str(resolved)]).to_dict() == cfg.to_dict()


@pytest.mark.parametrize(("key", "value"), [("per_device_batch_size", 8), ("length_bucketed_sampling", True)])
def test_mlp_rejects_row_batching_before_writing(tmp_path, monkeypatch, capsys, key, value):
    """mlp's steps are whole batch-function batches: micro-batching or bucketing rows must fail up front."""
    from tests.mlp.helpers import tiny_mlp_config

    path = tmp_path / "cfgs" / "mlp.json"
    path.parent.mkdir()
    path.write_text(json.dumps({**tiny_mlp_config(tmp_path / "out"), key: value}))
    monkeypatch.chdir(tmp_path)
    before = _files(tmp_path)
    code = run_script.main(["--config", str(path)])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("config error: ") and key in err, err
    assert _files(tmp_path) == before
