"""The `hfe` command: subcommands dispatch, an unknown one is one line and exit 2; `hfe list` gives each
experiment's description and shipped configs; `--help` is grouped by dataclass with the seed aliases; `--gpu`
picks a GPU from nvidia-smi's rows (a missing one is one line, exit 2, nothing written); the installed console
script works from another folder."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hf_experiments import cli
from hf_experiments.core.config import ConfigError
from hf_experiments.core.gpu_choice import apply_gpu, choose_gpu, parse_smi, visible_gpus
from hf_experiments.core.registry import available_experiments
from tests.helpers import ROOT, env, files_under


def test_unknown_subcommand_is_one_line_exit_2_nothing_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["trian", "--config", str(ROOT / "configs" / "cmp.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown command 'trian'" in err[0] and "run" in err[0], err
    assert files_under(tmp_path) == set()
    assert cli.main([]) == 2  # no command at all: the usage, exit 2
    assert "hfe run" in capsys.readouterr().err


def test_list_gives_a_description_and_the_shipped_configs_of_each_experiment(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # not the checkout: the configs are found through the source checkout
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    expected: dict[str, set[str]] = {}
    for path in (ROOT / "configs").glob("*.json"):
        raw = json.loads(path.read_text())
        expected.setdefault(raw["experiment"], set()).add(path.name + (" (sweep)" if "sweep" in raw else ""))
    lines = out.splitlines()
    for name in available_experiments():
        row = next(i for i, line in enumerate(lines) if line.split()[:1] == [name])
        description = lines[row][len(name) :].strip()
        assert len(description) > 20, lines[row]
        listed = {f.strip() for f in lines[row + 1].split("configs:", 1)[1].split(",")}
        assert listed == expected[name], (name, listed)
    assert "mlp_mup_sweep.json (sweep)" in out
    # the legacy spelling of trainers/run.py
    assert cli.main(["--list"]) == 0 and capsys.readouterr().out == out


def test_list_of_a_folder_without_configs_says_where_they_are(tmp_path, capsys):
    assert cli.main(["list", "--configs", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "configs: (none found)" in out and "repository's configs/" in out


def _help_sections(text: str) -> dict[str, str]:
    """Section title -> its body, for argparse's `title:` headers."""
    parts = re.split(r"^(\S[^\n]*):\n", text, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def test_help_is_grouped_by_dataclass_with_the_seed_aliases(capsys):
    assert cli.main(["run", "--experiment", "blotch", "--help"]) == 0
    text = capsys.readouterr().out
    sections = _help_sections(text)
    titles = list(sections)
    assert titles[:6] == [
        "run (RunArguments)",
        "model (BlotchModelArguments)",
        "data (BlotchDataArguments)",
        "training: blotch (BlotchTrainingArguments)",
        "training: framework (ExperimentTrainingArguments)",
        "training: transformers (TrainingArguments)",
    ], titles
    where = {
        "--exp_name": "run (RunArguments)",
        "--gpu": "run (RunArguments)",
        "--max_new_tokens": "training: blotch (BlotchTrainingArguments)",
        "--max_eval_batches": "training: framework (ExperimentTrainingArguments)",
        "--learning_rate": "training: transformers (TrainingArguments)",
    }
    for flag, title in where.items():
        holders = [t for t, body in sections.items() if re.search(rf"^\s+{re.escape(flag)}\b", body, flags=re.M)]
        assert holders == [title], (flag, holders)
    aliases = sections["seed names (the original projects' spelling; accepted in config files and here)"]
    assert re.search(r"--val_mod\s+-> eval_steps", aliases)
    assert re.search(r"--lr\s+-> learning_rate", aliases)


@pytest.mark.parametrize("name", available_experiments())
def test_help_of_every_experiment_formats(name, capsys):
    assert cli.main(["run", "--experiment", name, "--help"]) == 0
    assert "training: transformers (TrainingArguments)" in capsys.readouterr().out


def test_help_with_a_config_shows_its_values(capsys):
    cfg = ROOT / "configs" / "cmp.json"
    steps = json.loads(cfg.read_text())["max_steps"]
    assert cli.main(["run", "--config", str(cfg), "--help"]) == 0
    text = capsys.readouterr().out
    block = text.split("--max_steps MAX_STEPS", 1)[1].split("\n  --", 1)[0]
    assert f"(default: {steps})" in " ".join(block.split()), block
    assert cli.main(["run", "--help"]) == 0  # no experiment named: the general usage
    assert "hfe list" in capsys.readouterr().out


def test_gpu_choice_from_nvidia_smi_rows():
    rows = parse_smi("0, 1200\n1, 70000\n2, 30000\n")
    assert rows == [("0", 1200), ("1", 70000), ("2", 30000)]
    assert choose_gpu("auto", rows) == "1"  # the most free memory
    assert choose_gpu("2", rows) == "2"
    with pytest.raises(ConfigError, match="below 3"):
        choose_gpu("3", rows)
    assert choose_gpu("auto", []) is None  # no GPU: the CPU
    with pytest.raises(ConfigError, match="shows none"):
        choose_gpu("0", [])
    # CUDA_VISIBLE_DEVICES renumbers: index 0 is the first visible one
    visible = visible_gpus(rows, {"CUDA_VISIBLE_DEVICES": "2,0"})
    assert visible == [("2", 30000), ("0", 1200)]
    assert choose_gpu("0", visible) == "2" and choose_gpu("auto", visible) == "2"
    with pytest.raises(ConfigError, match="below 2"):
        choose_gpu("2", visible)


def test_gpu_is_refused_under_a_multi_process_launch(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="one process only"):
        apply_gpu("0")


def test_gpu_that_does_not_exist_is_one_line_exit_2_nothing_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    cfg = str(ROOT / "configs" / "gru_repeat.json")
    gpus = len(visible_gpus())
    code = cli.main(["run", "--config", cfg, "--gpu", str(gpus), "--save_root", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("config error: gpu="), err
    assert files_under(tmp_path) == set()
    code = cli.main(["run", "--config", cfg, "--gpu", "first", "--save_root", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "a GPU index (0, 1, ...) or 'auto'" in err[0], err
    assert files_under(tmp_path) == set()


def test_installed_console_script_works_from_another_folder(tmp_path):
    """The `hfe` entry point of this environment's install (`pip install -e .` in CI): dispatches from any
    folder. The non-editable `pip install .` is checked by the slow tests/core/test_installed_package.py."""
    hfe = Path(sys.executable).parent / "hfe"
    if not hfe.is_file():
        pytest.skip("hfe is not installed in this environment (pip install -e .)")
    res = subprocess.run([str(hfe), "list"], capture_output=True, text=True, cwd=tmp_path, env=env(), timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "gru_repeat" in res.stdout and "configs: " in res.stdout
    res = subprocess.run([str(hfe), "nope"], capture_output=True, text=True, cwd=tmp_path, env=env(), timeout=300)
    assert res.returncode == 2 and res.stderr.strip().count("\n") == 0, res.stderr


def test_gpu_index_counts_among_the_gpus_the_process_started_with(monkeypatch):
    """A second run in one process (a notebook) is not confined by the first run's `--gpu` choice."""
    rows = parse_smi("0, 10\n1, 20\n")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")  # what a first apply_gpu("1") leaves
    assert [g for g, _ in visible_gpus(rows)] == [g for g, _ in visible_gpus(rows, dict(_started()))]


def _started() -> dict[str, str]:
    from hf_experiments.core import gpu_choice

    return gpu_choice._STARTED_WITH


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--hub_token", "hf_SECRETsweep123"], "hub_token: not in a sweep config"),
        (["--gpu", "0"], "gpu=0: not for a sweep"),
    ],
)
def test_sweep_with_a_secret_or_a_gpu_is_one_line_exit_2_nothing_written(extra, words, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "cfgs" / "s.json"
    cfg.parent.mkdir()
    cfg.write_text(json.dumps({"experiment": "mlp", "save_root": str(tmp_path / "out"), "sweep": {"width": [8, 16]}}))
    before = files_under(tmp_path)
    assert cli.main(["run", "--config", str(cfg), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err
    assert files_under(tmp_path) == before


def test_sweep_config_help_is_the_sweep_runners(capsys):
    assert cli.main(["run", "--config", str(ROOT / "configs" / "mlp_mup_sweep.json"), "--help"]) == 0
    assert "usage: hfe sweep" in capsys.readouterr().out


def test_a_value_starting_with_a_dash_is_a_value():
    from hf_experiments.core.parsing import parse_config_strict

    cfg = ROOT / "configs" / "gru_repeat.json"
    parsed = parse_config_strict(["--config", str(cfg), "--adam_beta1", "-0.5e-1", "--run_name", "-x"])
    assert parsed.training.adam_beta1 == -0.05 and parsed.training.run_name == "-x"
