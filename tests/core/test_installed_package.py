"""The package works installed (`pip install .`, not editable) and started from another working directory: a run
through `python -m hf_experiments`, the same run through the `hfe` console script from a YAML config, `hfe list`,
and a sweep whose jobs run as subprocesses, with no source checkout on the path. Slow (it builds and installs a
wheel): `pytest -m slow tests/core/test_installed_package.py`."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _venv_with_installed_package(tmp: Path) -> Path:
    """A fresh venv holding a non-editable install of this repo; its dependencies come from the running
    interpreter's site-packages (added as a plain path, so this checkout's editable install is not seen)."""
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    deps = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (Path(purelib) / "zz_deps.pth").write_text("\n".join(deps) + "\n")
    offline = {**os.environ, "PIP_NO_INDEX": "1"}
    src = tmp / "src"  # a copy: building in the checkout would leave build/ and *.egg-info behind
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "outputs", "build", "dist", "tests", "*.egg-info", "__pycache__"
        ),
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp / "dist"),
            str(src),
        ],
        check=True,
        cwd=tmp,
        env=offline,
    )
    wheel = next((tmp / "dist").glob("hf_experiments-*.whl"))
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True, cwd=tmp, env=offline
    )
    return python


@pytest.mark.slow
def test_a_run_and_a_sweep_from_an_installed_package_and_another_folder(tmp_path):
    python = _venv_with_installed_package(tmp_path)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1")
    where = subprocess.run(
        [str(python), "-c", "import hf_experiments, pathlib; print(hf_experiments.__file__)"],
        capture_output=True,
        text=True,
        cwd=work,
        env=env,
        check=True,
    ).stdout.strip()
    assert "site-packages" in where and not where.startswith(str(ROOT))
    bleu = subprocess.run(
        [
            str(python),
            "-c",
            "from hf_experiments.compression.metrics import load_local_metric; print(load_local_metric('bleu').name)",
        ],
        capture_output=True,
        text=True,
        cwd=work,
        env=env,
    )
    assert bleu.returncode == 0, bleu.stderr[-2000:]  # package data shipped in the wheel

    base = {
        "experiment": "gru_repeat",
        "state_size": 8,
        "n_symbols": 6,
        "min_len": 2,
        "max_len": 3,
        "n_train": 100,
        "n_valid": 20,
        "n_valid_extra": 10,
        "per_device_train_batch_size": 16,
        "max_steps": 4,
        "save_steps": 4,
        "logging_steps": 2,
        "report_to": "none",
        "save_root": str(work / "runs"),
    }
    (work / "run.json").write_text(json.dumps({**base, "exp_name": "one"}))
    res = subprocess.run(
        [str(python), "-m", "hf_experiments", "--config", "run.json"],
        capture_output=True,
        text=True,
        cwd=work,
        env=env,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert (work / "runs" / "one" / "metrics.json").is_file()

    # the console script: `hfe run` with a YAML config, `hfe list`, an unknown command
    import yaml

    hfe = str(python.parent / "hfe")
    (work / "run.yaml").write_text(yaml.safe_dump({**base, "exp_name": "two"}))
    res = subprocess.run(
        [hfe, "run", "--config", "run.yaml"], capture_output=True, text=True, cwd=work, env=env, timeout=600
    )
    assert res.returncode == 0, res.stderr[-3000:]

    def metrics(name: str) -> dict:
        m = json.loads((work / "runs" / name / "metrics.json").read_text())
        return {k: v for k, v in m.items() if not k.endswith(("_per_second", "_runtime"))}

    assert metrics("two") == metrics("one")  # the same config in YAML: the same run
    res = subprocess.run([hfe, "list"], capture_output=True, text=True, cwd=work, env=env, timeout=300)
    assert res.returncode == 0 and "gru_repeat" in res.stdout, res.stderr[-2000:]
    res = subprocess.run([hfe, "trian"], capture_output=True, text=True, cwd=work, env=env, timeout=300)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr

    sweep = {**base, "exp_name": "sw", "sweep": {"state_size": [4, 8]}}
    (work / "sweep.json").write_text(json.dumps(sweep))
    res = subprocess.run(
        [str(python), "-m", "hf_experiments", "--config", "sweep.json", "--devices", "cpu,cpu"],
        capture_output=True,
        text=True,
        cwd=work,
        env=env,
        timeout=600,
    )
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    for job in ("state_size=4", "state_size=8"):  # each job ran as its own subprocess
        assert (work / "runs" / "sw" / job / "metrics.json").is_file()
    assert (work / "runs" / "sw" / "results.csv").is_file()
