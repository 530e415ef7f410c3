"""Bad input of every kind the fault campaign found reaching a traceback (often after the run folder was written)
now gives one line `config error: <key>=<value>: <what is allowed>`, exit status 2, and writes nothing. Run
in-process (`hf_experiments.cli.main`) so the table stays fast."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hf_experiments import cli
from tests.core.test_config import GOOD

ARROWS = GOOD  # the bad-config table starts from the same good arrows config
GRU = {
    "experiment": "gru_repeat",
    "state_size": 8,
    "n_symbols": 6,
    "min_len": 2,
    "max_len": 3,
    "n_train": 50,
    "n_valid": 10,
    "n_valid_extra": 5,
    "max_steps": 2,
    "report_to": "none",
}
MLP = {"experiment": "mlp", "width": 8, "n_samples": 8, "n_test": 8, "dim": 3, "max_steps": 2, "report_to": "none"}


def _not_a_dataset(tmp: Path) -> dict:
    (tmp / "junk").mkdir()
    (tmp / "junk" / "notes.txt").write_text("hello")
    return {"dataset_path": str(tmp / "junk")}


def _dataset(tmp: Path, splits: dict) -> str:
    from hf_experiments.core.dataset_io import write_dataset

    return str(write_dataset(tmp / "ds", splits, {"n_symbols": 6}, "test rows"))


def _repeat_rows(ids: list[list[int]]) -> dict:
    return {"input_ids": ids, "length": [len(r) for r in ids]}


def _lacks_split(tmp: Path) -> dict:
    return {"dataset_path": _dataset(tmp, {"train": _repeat_rows([[1, 2]] * 4)})}


def _ids_beyond_vocab(tmp: Path) -> dict:
    rows = _repeat_rows([[1, 2], [3, 4]] * 2)
    bad = _repeat_rows([[1, 99], [3, 4]] * 2)
    return {"dataset_path": _dataset(tmp, {"train": bad, "valid": rows})}


def _matrix_not_an_array(tmp: Path) -> dict:
    (tmp / "m.npy").write_text("not numpy")
    return {"matrix_path": str(tmp / "m.npy")}


def _not_a_checkpoint(key: str):
    def make(tmp: Path) -> dict:
        (tmp / "empty_ckpt").mkdir()
        (tmp / "empty_ckpt" / "notes.txt").write_text("x")
        return {key: str(tmp / "empty_ckpt")}

    return make


def _other_shapes(tmp: Path) -> dict:
    import torch
    from safetensors.torch import save_file

    (tmp / "other").mkdir()
    save_file({"transformer.wte.weight": torch.zeros(3, 5)}, str(tmp / "other" / "model.safetensors"))
    return {"init_checkpt": str(tmp / "other")}


def _grab_with_syntax_error(tmp: Path) -> dict:
    (tmp / "mygrabs.py").write_text("def broken(:\n    pass\n")
    return {"grabs": [f"{tmp / 'mygrabs.py'}:broken"]}


# (name, base config, overrides or a function of tmp_path returning them, extra argv, key named, words)
CASES = [
    ("dict for a number", ARROWS, {"learning_rate": {"a": 1}}, [], "learning_rate", "a number"),
    ("NaN learning rate", ARROWS, {"learning_rate": float("nan")}, [], "learning_rate", "finite"),
    ("Infinity learning rate", ARROWS, {"learning_rate": float("inf")}, [], "learning_rate", "finite"),
    ("negative learning rate", ARROWS, {"learning_rate": -0.1}, [], "learning_rate", ">= 0"),
    ("batch size 0", ARROWS, {"per_device_train_batch_size": 0}, [], "per_device_train_batch_size", ">= 1"),
    ("negative batch size", ARROWS, {"per_device_train_batch_size": -3}, [], "per_device_train_batch_size", ">= 1"),
    ("eval batch size 0", ARROWS, {"per_device_eval_batch_size": 0}, [], "per_device_eval_batch_size", ">= 1"),
    ("accumulation 0", ARROWS, {"gradient_accumulation_steps": 0}, [], "gradient_accumulation_steps", ">= 1"),
    ("seed too large", ARROWS, {"seed": 2**32}, [], "seed", "4294967295"),
    ("negative generation seed", ARROWS, {"generation_seed": -1}, [], "generation_seed", "[0"),
    ("huge model", ARROWS, {"embed_dim": 2**20, "n_heads": 1, "n_layers": 64}, [], "model", "GiB"),
    ("huge data", GRU, {"n_train": 10**6}, [], "n_train", "distinct"),
    ("NUL in a name", ARROWS, {"exp_name": "a\x00b"}, [], "exp_name", "printable"),
    ("exp_name escapes", ARROWS, {"exp_name": "../../x"}, [], "exp_name", "inside save_root"),
    ("absolute exp_name", ARROWS, {"exp_name": "/tmp/elsewhere"}, [], "exp_name", "relative"),
    ("exp_name is the data folder", ARROWS, {"exp_name": "data"}, [], "exp_name", "data"),
    ("empty save_root", ARROWS, {"save_root": ""}, [], "save_root", "non-empty"),
    ("restore_from no checkpoint", ARROWS, _not_a_checkpoint("restore_from"), [], "restore_from", "checkpoint"),
    ("init_checkpt no weights", ARROWS, _not_a_checkpoint("init_checkpt"), [], "init_checkpt", "weights"),
    ("init_checkpt other shapes", ARROWS, _other_shapes, [], "init_checkpt", "shape"),
    ("report_to not installed", ARROWS, {"report_to": "comet_ml"}, [], "report_to", "not installed"),
    ("dataset_path not a dataset", GRU, _not_a_dataset, [], "dataset_path", "dataset"),
    ("dataset_path lacks a split", GRU, _lacks_split, [], "dataset_path", "valid"),
    ("dataset_path ids beyond vocab", GRU, _ids_beyond_vocab, [], "dataset_path", "n_symbols"),
    ("matrix_path not an array", ARROWS, _matrix_not_an_array, [], "matrix_path", "matrix"),
    ("grab file syntax error", MLP, _grab_with_syntax_error, [], "grabs", "syntax"),
    ("push_to_hub offline", ARROWS, {"push_to_hub": True, "hub_model_id": "me/x"}, [], "push_to_hub", "offline"),
    ("--lr with --learning_rate", ARROWS, {}, ["--lr", "0.1", "--learning_rate", "0.2"], "learning_rate", "twice"),
]


def _write(tmp_path: Path, base: dict, overrides) -> Path:
    extra = overrides(tmp_path) if callable(overrides) else overrides
    cfg = {**base, "save_root": str(tmp_path / "out"), **extra}
    path = tmp_path / "cfgs" / "bad.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(cfg))
    return path


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize(("name", "base", "overrides", "argv", "key", "words"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_nothing_written(
    tmp_path, monkeypatch, capsys, name, base, overrides, argv, key, words
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = _write(tmp_path, base, overrides)
    monkeypatch.chdir(tmp_path)
    before = _files(tmp_path)
    code = cli.main(["--config", str(path), *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1, err
    assert err[0].startswith("config error: ") and key in err[0] and words in err[0], err[0]
    assert _files(tmp_path) == before  # no run folder, no data, no logs


def test_invalid_utf8_and_duplicate_keys_in_a_config_file(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_bytes(b'{"experiment": "arrows", "exp_name": "\xff\xfe"}')
    code = cli.main(["--config", str(bad)])
    assert code == 2 and "UTF-8" in capsys.readouterr().err
    bad.write_text('{"experiment": "arrows", "learning_rate": 0.1, "learning_rate": 0.2}')
    code = cli.main(["--config", str(bad)])
    err = capsys.readouterr().err
    assert code == 2 and "learning_rate" in err and "twice" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json"]


def test_a_good_config_still_parses(tmp_path):
    """Negative control for the table: the bases themselves are fine."""
    from hf_experiments.core.parsing import parse_config_strict

    for base in (ARROWS, GRU, MLP):
        assert parse_config_strict(["--config", str(_write(tmp_path, base, {}))]).run.experiment == base["experiment"]


def test_non_finite_values_are_refused_in_every_float_field(tmp_path):
    from hf_experiments.core.config import ConfigError
    from hf_experiments.core.parsing import parse_config_strict

    for key in ("perturbation_rate", "weight_decay", "max_grad_norm"):
        with pytest.raises(ConfigError, match=key):
            parse_config_strict(["--config", str(_write(tmp_path, ARROWS, {key: float(np.nan)}))])
