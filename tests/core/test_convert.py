"""The converter from the original projects' configs (`hf_experiments.core.convert`, `hfe convert`): every key the
five seed READMEs document converts (tests/core/data/seed_keys.json), every key that does not is reported at once,
evaluation intervals switch evaluation on, a converted original config of each seed runs and validates at its
interval (TensorBoard event files read back), and data that does not fit the config is a config error."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest

from hf_experiments.core.convert import convert, main
from hf_experiments.core.parsing import parse_config_strict
from tests.helpers import ROOT, assert_config_error, files_under

SEED_KEYS = json.loads((Path(__file__).parent / "data" / "seed_keys.json").read_text())
SEEDS = sorted(k for k in SEED_KEYS if not k.startswith("_"))
README_DIR = ROOT.parent / "shared" / "seeds"


def _documented(seed: str) -> dict:
    spec = SEED_KEYS[seed]
    return {**spec["keys"], **spec.get("script_parameters", {})}


# --------------------------------------------------------------------------------------------
# Every documented key converts
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
def test_every_documented_seed_key_converts(seed):
    experiment = SEED_KEYS[seed]["experiment"]
    for key, value in _documented(seed).items():
        conv = convert({key: value}, experiment)
        kind = conv.kinds[key]
        assert kind in ("kept", "renamed", "dropped", "refused"), (key, kind, [str(e) for e in conv.errors])
        if kind == "refused":
            assert len(conv.errors) == 1 and "not supported because" in str(conv.errors[0]), conv.errors
        else:
            assert not conv.errors, (key, [str(e) for e in conv.errors])
        if kind in ("renamed", "dropped"):
            assert any(key in note or key.lower() in note for note in conv.notes), (key, conv.notes)


@pytest.mark.skipif(not README_DIR.is_dir(), reason="the seed READMEs (../shared/seeds) are not here")
@pytest.mark.parametrize("seed", SEEDS)
def test_the_key_list_holds_every_key_its_readme_documents(seed):
    text = (README_DIR / SEED_KEYS[seed]["readme"]).read_text(encoding="utf-8")
    patterns = (
        r'^\s*"(\w+)":',  # "key": type / the arrows JSON example
        r"^- ([A-Z_]+):",  # modelscape's - KEY: default
        r"^- `-([\w.]+)",  # the Csordas framework's - `-key ...`
        r'add_argument\("-(\w+)"',  # and its task arguments
    )
    found = {m for p in patterns for m in re.findall(p, text, flags=re.MULTILINE)}
    found -= {"model_params", "training_params", "optim_params"}  # the arrows sections, not keys
    assert found, seed
    assert found <= set(_documented(seed)), sorted(found - set(_documented(seed)))


# --------------------------------------------------------------------------------------------
# The command: all problems at once, nothing written
# --------------------------------------------------------------------------------------------
def test_every_key_that_does_not_convert_is_reported_at_once(tmp_path, capsys):
    src = tmp_path / "hyperparameters.json"
    src.write_text(
        json.dumps(
            {
                "exp_name": "x",
                "lr": 1e-3,
                "val_batch_size": 8,  # a documented seed key: converts
                "model_type": "LSTM",  # documented, refused with the reason
                "blotch_pp": 0.1,  # a typo: did you mean
                "cmp_len": 3,  # another experiment's key
                "frobnicate": 1,  # nothing close
            }
        )
    )
    out = tmp_path / "converted.json"
    before = files_under(tmp_path)
    assert main([str(src), "--experiment", "blotch", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all(line.startswith("config error: ") for line in err), err
    by_key = {line.split(": ", 1)[1].split("=")[0]: line for line in err}
    assert "not supported because" in by_key["model_type"]
    assert "did you mean 'blotch_p'?" in by_key["blotch_pp"]
    assert "a key of cmp" in by_key["cmp_len"]
    assert "--help" in by_key["frobnicate"]
    assert files_under(tmp_path) == before


def test_seed_keys_get_their_targets_not_a_wrong_hint(tmp_path, capsys):
    src = tmp_path / "hyperparameters.json"
    src.write_text(json.dumps({"val_batch_size": 8, "model_type": "TransformerModel", "seq_len": 64, "data_root": "d"}))
    out = tmp_path / "blotch.yaml"
    assert main([str(src), "--experiment", "blotch", "-o", str(out)]) == 0
    import yaml

    cfg = yaml.safe_load(out.read_text())
    assert cfg == {"experiment": "blotch", "per_device_eval_batch_size": 8}
    notes = capsys.readouterr().err
    assert "dropped seq_len=64" in notes and "dropped data_root='d'" in notes and "model_type" in notes


def test_the_trainers_script_is_a_wrapper_of_the_command():
    import importlib.util

    from hf_experiments.core import convert as module

    spec = importlib.util.spec_from_file_location("convert_config", ROOT / "trainers" / "convert_config.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main is module.main


# --------------------------------------------------------------------------------------------
# Evaluation intervals switch evaluation on
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("key", "experiment"),
    [("valid_every", "arrows"), ("val_mod", "blotch"), ("test_interval", "gru_repeat"), ("n_train_loops", "cmp")],
)
def test_an_evaluation_interval_switches_evaluation_on(key, experiment):
    conv = convert({key: 7}, experiment)
    assert conv.config["eval_steps"] == 7 and conv.config["eval_strategy"] == "steps"
    assert convert({key: 7, "eval_strategy": "epoch"}, experiment).config["eval_strategy"] == "epoch"


def test_a_config_file_with_a_seed_interval_evaluates_too(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"experiment": "arrows", "valid_every": 5, "save_root": str(tmp_path)}))
    cfg = parse_config_strict(["--config", str(path)])
    assert cfg.training.eval_strategy == "steps" and cfg.training.eval_steps == 5


# --------------------------------------------------------------------------------------------
# A converted original config of each seed runs and validates at its interval
# --------------------------------------------------------------------------------------------
INTERVAL, STEPS = 2, 6


def _text_file(tmp: Path) -> Path:
    """A small local corpus: 80 paragraphs of 60 words each."""
    import numpy as np

    words = np.array("the a model of time data run line text word learns reads writes small large".split())
    rng = np.random.default_rng(0)
    path = tmp / "corpus.txt"
    path.write_text("\n\n".join(" ".join(rng.choice(words, 60)) for _ in range(80)))
    return path


def _originals(tmp: Path) -> dict[str, tuple[dict, list[str]]]:
    """Per seed: an original config file's contents (its own keys; short runs) and the size overrides of the run."""
    from tests.arrows.test_arrows_experiment import _linear_lines, write_original_h5

    h5 = tmp / "Matid4_2_v3k_pert0.01.h5"
    write_original_h5(h5, _linear_lines(4, 2100), {"$": 0, "0": 1, "1": 2, "_": 3})
    return {
        "arrows_of_time": (
            {  # the README's JSON example, with a short schedule
                "model_params": {
                    "vocab_size": 0,
                    "n_layers": 12,
                    "n_heads": 12,
                    "embed_dim": 768,
                    "attn_length": 0,
                    "mlp_ratio": 4.0,
                    "dropout": 0.1,
                    "embd_dropout": None,
                },
                "training_params": {
                    "dataset_folder": str(h5),
                    "batch_size": 180,
                    "aggregate": 1,
                    "backwards": False,
                    "steps_to_train": STEPS,
                    "save_every": STEPS,
                    "backup_every": 5000,
                    "step_log": 1,
                    "valid_steps": 1,
                    "valid_every": INTERVAL,
                    "state_save_loc": "runs",
                },
                "optim_params": {
                    "lr": 0.0001,
                    "warmup_steps": 0,
                    "oscil_steps": 300000,
                    "lr_shrink": 0.85,
                    "lr_init": 1e-07,
                    "lr_min": 1e-06,
                },
            },
            ["--n_layers", "1", "--n_heads", "2", "--embed_dim", "16", "--per_device_train_batch_size", "8"],
        ),
        "context_compression": (
            {
                "exp_name": "cmp_original",
                "model_string": "builtin:tiny-lm",
                "testing": "x",
                "multi_gpu": False,
                "model_parallel": False,
                "torch_dtype": "float32",
                "seed": 0,
                "max_val_loops": 1,
                "n_train_loops": INTERVAL,
                "checkpt_mod": STEPS,
                "n_epochs": 1,
                "batch_size": 4,
                "lr": 1e-3,
                "l2": 0.0,
                "cmp_len": 10,
                "seq_len": 20,
                "n_cmps": 2,
                "cmp_layer": "half",
                "rmb_rask": False,
                "rmb_only": False,
                "n_grad_loops": 1,
            },
            # local text: the embedded corpus is built from the standard library's docstrings (~15 s)
            ["--data_files", str(_text_file(tmp)), "--max_steps", str(STEPS), "--max_val_windows", "8"],
        ),
        "modelscape": (
            {
                "ONLINE": True,
                "N_SAMPLES": 32,
                "N_TRIAN": 4000,
                "N_TEST": 64,
                "ONLYTHRESHOLDS": True,
                "NUM_TRIALS": 1,
                "MAX_ITER": STEPS,
                "LR": 0.01,
                "DEPTH": 2,
                "WIDTH": 32,
                "GAMMA": 1.0,
                "DEVICES": [0],
                "SEED": 42,
                "LOSS_CHECKPOINTS": [1e-9],
                "EMA_SMOOTHER": 0.9,
                "DETERMINSITIC": True,
                "VERBOSE": False,
            },
            # modelscape documents no validation interval: the run is given one
            ["--dim", "8", "--eval_strategy", "steps", "--eval_steps", str(INTERVAL)],
        ),
        "onion_gru_framework": (
            {
                "-task": "gru_repeat",
                "-name": "gru_original",
                "-log": "tb",
                "-lr": 1e-3,
                "-batch_size": 16,
                "-wd": 0.0,
                "-stop_after": STEPS,
                "-amp": 0,
                "-grad_clip": "none",
                "-lr_sched.type": "cos",
                "-lr_warmup": 0,
                "-save_interval": STEPS,
                "-test_interval": INTERVAL,
                "-state_size": 8,
            },
            ["--n_train", "200", "--n_valid", "16", "--n_valid_extra", "8", "--max_eval_batches", "1"],
        ),
        "semantic_blotching": (
            {
                "exp_name": "blotch_original",
                "data_root": "data",
                "seed": 0,
                "max_num": 9,
                "max_ents": 2,
                "init_samples": 64,
                "val_samples": 16,
                "val_mod": INTERVAL,
                "max_val_loops": 1,
                "n_train_loops": 100,
                "checkpt_mod": None,
                "n_epochs": 1,
                "batch_size": 8,
                "lr": 1e-3,
                "l2": 0.0,
                "seq_len": 100,
                "d_model": 16,
                "n_heads": 2,
                "h_mult": 2,
                "n_layers": 1,
                "model_type": "TransformerModel",
                "val_batch_size": 8,
                "n_grad_loops": 1,
            },
            ["--max_steps", str(STEPS), "--gen_eval_samples", "4", "--ood_samples", "0"],
        ),
    }


def _eval_steps(run_dir: Path) -> set[int]:
    """Steps of the training-time evaluations in the run's TensorBoard event files (any `eval/...loss` tag)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    steps: set[int] = set()
    for events in run_dir.glob("runs/*/events.out.tfevents.*"):
        acc = EventAccumulator(str(events))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            if tag.startswith("eval/") and tag.endswith("loss"):
                steps |= {e.step for e in acc.Scalars(tag)}
    return steps


@pytest.mark.parametrize("seed", SEEDS)
def test_a_converted_original_config_runs_and_validates_at_its_interval(seed, tmp_path, monkeypatch, capsys):
    from hf_experiments import cli

    monkeypatch.chdir(tmp_path)
    original, sizes = _originals(tmp_path)[seed]
    src = tmp_path / "original.json"
    src.write_text(json.dumps(original))
    out = tmp_path / "converted.json"
    experiment = (
        [] if seed in ("arrows_of_time", "onion_gru_framework") else ["--experiment", SEED_KEYS[seed]["experiment"]]
    )
    assert main([str(src), *experiment, "-o", str(out)]) == 0, capsys.readouterr().err
    cfg = json.loads(out.read_text())
    assert cfg["experiment"] == SEED_KEYS[seed]["experiment"]
    save_root = tmp_path / "runs"
    code = cli.main(["--config", str(out), "--save_root", str(save_root), "--report_to", "tensorboard", *sizes])
    assert code == 0, capsys.readouterr().err[-3000:]
    (run_dir,) = [p for p in save_root.iterdir() if p.name != "data" and p.is_dir()]
    assert _eval_steps(run_dir) == set(range(INTERVAL, STEPS + 1, INTERVAL))  # at each interval, and only there


# --------------------------------------------------------------------------------------------
# Data that does not fit the config: one line, exit 2, nothing written
# --------------------------------------------------------------------------------------------
def _arithmetic_folder(tmp: Path) -> Path:
    from hf_experiments.blotch.arithmetic import ProblemParams, write_arithmetic_dataset

    path = tmp / "data_in" / "sums"
    write_arithmetic_dataset(str(path), ProblemParams(max_num=9, max_ents=2), 40, 10, 0, 0)
    return path


def test_data_that_does_not_fit_the_config_is_a_config_error(tmp_path, monkeypatch, capsys):
    folder = _arithmetic_folder(tmp_path)
    capsys.readouterr()  # the folder's progress bars
    blotch = {"experiment": "blotch", "dataset_path": str(folder), "d_model": 16, "n_heads": 2, "n_layers": 1}
    assert_config_error(tmp_path, monkeypatch, capsys, {**blotch, "max_posencs": 8}, "max_posencs", "at least")
    parquet = str(next((folder / "data").glob("train-*.parquet")))
    cmp = {"experiment": "cmp", "data_files": [parquet]}
    assert_config_error(tmp_path, monkeypatch, capsys, cmp, "text_column", "problem, solution")
    assert_config_error(tmp_path, monkeypatch, capsys, {**cmp, "text_column": "n_steps"}, "text_column", "a text")
    arrows = {"experiment": "arrows", "dataset_path": str(folder)}
    assert_config_error(tmp_path, monkeypatch, capsys, arrows, "dataset_path", "columns ['text']")


def test_the_converter_checks_the_data_too(tmp_path, capsys):
    folder = _arithmetic_folder(tmp_path)
    capsys.readouterr()
    src = tmp_path / "hyperparameters.json"
    src.write_text(json.dumps({"max_posencs": 8, "dataset_path": str(folder)}))
    before = files_under(tmp_path)
    assert main([str(src), "--experiment", "blotch", "-o", str(tmp_path / "out.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("config error: max_posencs=8"), err
    assert files_under(tmp_path) == before
