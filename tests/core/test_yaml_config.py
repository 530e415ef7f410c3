"""YAML configs are JSON configs in another spelling: every shipped config's YAML twin parses to the same resolved
config; YAML 1.1's pitfalls do not leak in (`1e-3` is a number, a repeated key is an error, `yes` is not a
string); a malformed YAML or JSON file is one line, exit 2, nothing written; seed evaluation intervals on the
command line switch evaluation on, as they do in a file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from hf_experiments import cli
from hf_experiments.core.config import ConfigError
from hf_experiments.core.config_files import dump_yaml, load_config_file
from hf_experiments.core.parsing import parse_config_strict
from tests.helpers import ROOT, files_under

CONFIGS = sorted(p for p in (ROOT / "configs").glob("*.json") if "sweep" not in json.loads(p.read_text()))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_yaml_twin_of_each_shipped_config_parses_to_the_same_run(path, tmp_path):
    raw = json.loads(path.read_text())
    twin = tmp_path / f"{path.stem}.yaml"  # same stem: the default exp_name is the file's stem
    twin.write_text(dump_yaml(raw))
    assert load_config_file(str(twin)) == load_config_file(str(path))

    def parsed(p: Path) -> dict | str:
        try:
            return parse_config_strict(["--config", str(p)]).to_dict()
        except ConfigError as e:  # e.g. gru_linear needs its stage-one run: the same error from both
            return str(e)

    assert parsed(twin) == parsed(path)


def test_yaml_reads_exponent_floats_as_numbers_like_json(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("learning_rate: 1e-3\nweight_decay: 5E-2\nmax_steps: 10\nrun_name: 1e3x\n")
    raw = load_config_file(str(path))
    assert raw == {"learning_rate": 0.001, "weight_decay": 0.05, "max_steps": 10, "run_name": "1e3x"}
    assert raw == json.loads('{"learning_rate": 1e-3, "weight_decay": 5E-2, "max_steps": 10, "run_name": "1e3x"}')
    assert yaml.safe_load("a: 1e-3")["a"] == "1e-3"  # the stock loader's reading that the custom one fixes
    assert yaml.safe_load("a: 1e-3") is not None  # and the stock loader is left unchanged by ours


def test_yaml_repeated_key_and_non_text_key_are_errors(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("max_steps: 10\nmax_steps: 20\n")
    with pytest.raises(ConfigError, match="given twice"):
        load_config_file(str(path))
    path.write_text("1: 2\n")
    with pytest.raises(ConfigError, match="a text key"):
        load_config_file(str(path))


def test_yaml_scalars_follow_the_core_schema_as_json_reads_numbers(tmp_path):
    """YAML 1.1 (PyYAML's) would read `010` as 8, `12:30` as 750 and `no` as false; JSON has none of these."""
    path = tmp_path / "c.yaml"
    path.write_text("a: 010\nb: 12:30\nc: no\nd: yes\ne: true\nf: 0x10\ng: -3\nh: .5\ni: null\n")
    assert load_config_file(str(path)) == {
        "a": 10, "b": "12:30", "c": "no", "d": "yes", "e": True, "f": 16, "g": -3, "h": 0.5, "i": None,
    }  # fmt: skip
    assert yaml.safe_load("a: 010\nb: 12:30\nc: no") == {"a": 8, "b": 750, "c": False}  # what it replaces
    # a boolean key still takes the argparse spellings: `bf16: yes` -> True, as `--bf16 yes`
    path.write_text(f"experiment: gru_repeat\nsave_root: {tmp_path}\nfresh_start: yes\nrun_name: no\n")
    parsed = parse_config_strict(["--config", str(path)])
    assert parsed.run.fresh_start is True and parsed.training.run_name == "no"


def test_yaml_merge_keys_may_be_overridden_but_written_keys_not_repeated(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("base: &b {x: 1, y: 2}\nrun:\n  <<: *b\n  y: 3\n")
    assert load_config_file(str(path))["run"] == {"x": 1, "y": 3}
    path.write_text("base: &b {x: 1}\nrun:\n  <<: *b\n  y: 3\n  y: 4\n")
    with pytest.raises(ConfigError, match="given twice"):
        load_config_file(str(path))


def test_dumped_yaml_reads_back_equal_strings_that_look_like_numbers_included(tmp_path):
    config = {"exp_name": "12e4", "a": "010", "b": "true", "c": "yes", "d": 3, "e": 1e-3, "f": None, "g": [1, "2"]}
    path = tmp_path / "c.yaml"
    path.write_text(dump_yaml(config))
    assert load_config_file(str(path)) == config


@pytest.mark.parametrize(
    "name, text, words",
    [
        ("bad.yaml", "experiment: cmp\nmax_steps: [1, 2\n", "valid YAML"),
        ("bad.yml", "experiment: cmp\n  max_steps: 3\n bad", "valid YAML"),
        ("list.yaml", "- experiment\n- cmp\n", "a YAML mapping"),
        ("bad.json", '{"experiment": "cmp", "max_steps": 3,}', "valid JSON"),
        ("list.json", '["cmp"]', "a JSON mapping"),
    ],
)
def test_malformed_config_file_is_one_line_exit_2_nothing_written(name, text, words, tmp_path, monkeypatch, capsys):
    path = tmp_path / "cfgs" / name
    path.parent.mkdir()
    path.write_text(text)
    monkeypatch.chdir(tmp_path)
    before = files_under(tmp_path)
    code = cli.main(["run", "--config", str(path), "--save_root", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("config error: config=") and words in err[0], err[0]
    assert files_under(tmp_path) == before


def test_yaml_sweep_config_is_recognised_as_a_sweep(tmp_path):
    from hf_experiments.sweeps.cli import config_has_sweep

    path = tmp_path / "s.yaml"
    path.write_text("experiment: mlp\nsweep:\n  width: [8, 16]\n")
    assert config_has_sweep(["--config", str(path)])
    path.write_text("experiment: mlp\n")
    assert not config_has_sweep(["--config", str(path)])


@pytest.mark.parametrize("seed_key", ["valid_every", "val_mod", "test_interval"])
def test_seed_eval_interval_on_the_command_line_switches_evaluation_on(seed_key, tmp_path):
    cfg = ROOT / "configs" / "mlp.json"  # sets no eval_strategy: the default is "no"
    assert parse_config_strict(["--config", str(cfg), "--save_root", str(tmp_path)]).training.eval_strategy == "no"
    parsed = parse_config_strict(["--config", str(cfg), f"--{seed_key}", "7", "--save_root", str(tmp_path)])
    assert parsed.training.eval_steps == 7
    assert parsed.training.eval_strategy == "steps"
    # an explicit eval_strategy wins
    parsed = parse_config_strict(
        ["--config", str(cfg), f"--{seed_key}", "7", "--eval_strategy", "no", "--save_root", str(tmp_path)]
    )
    assert parsed.training.eval_strategy == "no"
    assert Path(tmp_path).exists() and not any(Path(tmp_path).iterdir())  # parsing writes nothing
