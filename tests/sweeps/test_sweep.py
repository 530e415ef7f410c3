"""Sweeps: grid expansion (incl. generator-made axes), stable job names and seeds, the local runner for real
(in-process and one subprocess per device), skipping finished jobs, the results table and plots, and the
submitit / Ray adapters through their local executors."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest

from hf_experiments.sweeps.cli import config_has_sweep, main, run_sweep
from hf_experiments.sweeps.grid import expand_grid, expand_values
from hf_experiments.sweeps.plan import parse_overrides, plan_sweep
from tests.mlp.helpers import tiny_mlp_config, write


def squares(n: int):
    """A generator-made sweep axis, named by import path."""
    for i in range(n):
        yield i * i


def sweep_config(tmp_path, grid, **overrides):
    return tiny_mlp_config(tmp_path, exp_name="sw", sweep=grid, max_steps=10, **overrides)


def test_expand_grid_product_order_and_value_forms():
    points = expand_grid({"a": [1, 2], "b": (c for c in "xy")})  # any iterable, generators included
    assert points == [{"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 2, "b": "x"}, {"a": 2, "b": "y"}]
    assert expand_values("w", {"range": [0, 6, 2]}) == [0, 2, 4]
    assert expand_values("w", {"linspace": [0, 1, 3]}) == [0.0, 0.5, 1.0]
    assert expand_values("w", {"geomspace": [1, 100, 3]}) == pytest.approx([1.0, 10.0, 100.0])
    assert expand_values("w", {"call": "tests.sweeps.test_sweep:squares", "kwargs": {"n": 4}}) == [0, 1, 4, 9]
    for bad in (3, "abc", [], {"range": [3], "extra": 1}):
        with pytest.raises(ValueError, match=r"sweep\.w"):
            expand_values("w", bad)


def test_job_names_and_seeds_survive_grid_edits(tmp_path):
    small = plan_sweep(sweep_config(tmp_path, {"width": [8, 16], "trial": [0, 1]}))
    grown = plan_sweep(sweep_config(tmp_path, {"width": [8, 16, 32], "trial": [0, 1, 2]}))
    assert [j.name for j in small.jobs] == [
        "width=8,trial=0",
        "width=8,trial=1",
        "width=16,trial=0",
        "width=16,trial=1",
    ]
    by_name = {j.name: j for j in grown.jobs}
    for job in small.jobs:  # adding values renames nothing and reseeds nothing: finished jobs stay valid
        assert by_name[job.name].seed == job.seed
        assert by_name[job.name].run_dir == job.run_dir
    assert len({j.seed for j in grown.jobs}) == len(grown.jobs)
    cfg = small.jobs[1].config
    assert cfg["exp_name"] == "sw/width=8,trial=1" and cfg["width"] == 8 and cfg["trial"] == 1
    assert os.path.isabs(cfg["save_root"]) and "sweep" not in cfg
    fixed = plan_sweep(sweep_config(tmp_path, {"width": [8, 16]}, sweep_seed="fixed", seed=7))
    assert {j.seed for j in fixed.jobs} == {7}


def test_bad_grids_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="did you mean 'width'"):
        plan_sweep(sweep_config(tmp_path, {"widht": [8]}))
    with pytest.raises(ValueError, match="not sweepable"):
        plan_sweep(sweep_config(tmp_path, {"exp_name": ["a", "b"]}))
    with pytest.raises(ValueError, match="sweep_seed"):
        plan_sweep(sweep_config(tmp_path, {"width": [8]}, sweep_seed="sometimes"))


def test_trial_only_names_and_seeds_jobs_of_experiments_without_it(tmp_path):
    cfg = {"experiment": "arrows", "exp_name": "arr", "save_root": str(tmp_path), "sweep": {"trial": [0, 1]}}
    sweep = plan_sweep(cfg)
    assert [j.name for j in sweep.jobs] == ["trial=0", "trial=1"]
    assert all("trial" not in j.config for j in sweep.jobs)
    assert sweep.jobs[0].seed != sweep.jobs[1].seed  # the trial still changes the run
    with pytest.raises(ValueError, match="every trial would be identical"):
        plan_sweep({**cfg, "sweep_seed": "fixed"})


def test_local_sweep_collects_results_and_skips_finished_jobs(tmp_path, capsys):
    cfg = sweep_config(
        tmp_path,
        {"width": [8, 16], "trial": [0, 1]},
        sweep_seed="fixed",
        grabs=["tests.mlp.test_grabs:test_data_sum"],
    )
    sweep, df = run_sweep(cfg)
    assert len(df) == 4 and set(df["status"]) == {"finished"}
    assert set(zip(df["width"], df["trial"])) == {(8, 0), (8, 1), (16, 0), (16, 1)}
    assert df["eval_loss"].notna().all()
    from_disk = pd.read_parquet(sweep.dir / "results.parquet")
    pd.testing.assert_frame_equal(from_disk, df, check_dtype=False)
    assert list(pd.read_csv(sweep.dir / "results.csv")["job"]) == list(df["job"])
    assert (sweep.dir / "plots" / "eval_loss_vs_width.png").stat().st_size > 0

    # Different trials: different data; with sweep_seed=fixed, the same data across widths within a trial.
    def test_sum(name):
        return json.loads((sweep.dir / name / "grabs.json").read_text())["test_data_sum"][-1]["value"][0]

    assert test_sum("width=8,trial=0") != test_sum("width=8,trial=1")
    assert test_sum("width=8,trial=0") == test_sum("width=16,trial=0")

    mtimes = {j.name: (j.run_dir / "metrics.json").stat().st_mtime_ns for j in sweep.jobs}
    capsys.readouterr()
    run_sweep(cfg)
    assert "4 already finished, 0 to run" in capsys.readouterr().out
    assert {j.name: (j.run_dir / "metrics.json").stat().st_mtime_ns for j in sweep.jobs} == mtimes

    redo = sweep.jobs[2]
    (redo.run_dir / "metrics.json").unlink()
    _, df = run_sweep(cfg)
    assert "3 already finished, 1 to run" in capsys.readouterr().out
    assert set(df["status"]) == {"finished"}
    after = {j.name: (j.run_dir / "metrics.json").stat().st_mtime_ns for j in sweep.jobs}
    assert {k: v for k, v in after.items() if k != redo.name} == {k: v for k, v in mtimes.items() if k != redo.name}


def test_one_subprocess_per_device(tmp_path):
    sweep, df = run_sweep(sweep_config(tmp_path, {"trial": [0, 1]}), devices=["cpu", "cpu"])
    assert set(df["status"]) == {"finished"}
    for job in sweep.jobs:
        assert "final metrics" in (sweep.dir / "logs" / f"{job.name}.log").read_text()


def test_cli_dry_run_overrides_and_config_errors(tmp_path, capsys):
    path = write(tmp_path / "s.json", sweep_config(tmp_path, {"width": [8, 16]}))
    assert main(["--config", str(path), "--dry_run", "--max_steps", "5", "--sweep", '{"width": [4, 8, 12]}']) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "\tto run\t" in ln]
    assert [ln.split("\t")[2] for ln in lines] == ["width=4", "width=8", "width=12"]
    assert not (tmp_path / "sw").exists()  # a dry run writes nothing
    bad = write(tmp_path / "bad.json", sweep_config(tmp_path, {"width": [8, 0]}))
    assert main(["--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "width=0" in err and "sweep job width=0" in err
    assert not (tmp_path / "sw").exists()  # rejected before anything was written


def test_command_line_overrides_and_sweep_detection(tmp_path):
    assert parse_overrides(["--lr", "0.1", "--grabs", "a", "b", "--fresh_start", '--sweep={"w": [1]}']) == {
        "lr": 0.1,
        "grabs": ["a", "b"],
        "fresh_start": True,
        "sweep": {"w": [1]},
    }
    swept = write(tmp_path / "s.json", sweep_config(tmp_path, {"width": [8]}))
    plain = write(tmp_path / "p.json", tiny_mlp_config(tmp_path))
    assert config_has_sweep(["--config", str(swept)])
    assert not config_has_sweep(["--config", str(plain), "--max_steps", "3"])
    assert config_has_sweep(["--config", str(plain), "--sweep", '{"width": [8]}'])
    job = plan_sweep(json.loads(swept.read_text())).jobs[0]
    assert not config_has_sweep(["--config", str(write(tmp_path / "job.json", job.config))])  # no recursion


@pytest.mark.parametrize("engine", ["submitit_debug", pytest.param("submitit_local", marks=pytest.mark.slow)])
def test_submitit_executors_run_the_jobs(tmp_path, engine):
    pytest.importorskip("submitit")
    sweep, df = run_sweep(sweep_config(tmp_path, {"trial": [0]}), engine=engine, engine_options={"timeout_min": 10})
    assert list(df["status"]) == ["finished"]
    assert (sweep.dir / "submitit").is_dir()


@pytest.mark.slow
def test_ray_engine_runs_the_jobs(tmp_path):
    pytest.importorskip("ray")
    _, df = run_sweep(
        sweep_config(tmp_path, {"trial": [0, 1]}),
        engine="ray",
        engine_options={"num_cpus_per_job": 1, "init_kwargs": {"num_cpus": 2}},
    )
    assert set(df["status"]) == {"finished"}


def test_bad_grids_are_one_line_errors_before_anything_is_built(tmp_path):
    from hf_experiments.sweeps.grid import MAX_JOBS

    with pytest.raises(ValueError, match=r"sweep\.w=\{'range': \['a', 'b'\]\} is invalid; expected a list of integers"):
        expand_values("w", {"range": ["a", "b"]})
    with pytest.raises(ValueError, match="jobs; expected at most"):  # 10^9 jobs: refused by arithmetic, not OOM
        expand_grid({"a": {"range": [0, 1000]}, "b": {"range": [0, 1000]}, "c": {"range": [0, 1000]}})
    with pytest.raises(ValueError, match="more than"):
        expand_values("w", (i for i in range(10**12)))  # a generator is read only up to the cap
    assert len(expand_values("w", {"range": [0, MAX_JOBS]})) == MAX_JOBS


def test_dry_run_runs_no_user_code(tmp_path, capsys):
    """Config values that name code (a sweep axis's `call`, `batch_fn`, `grabs`) are only read in a dry run."""
    marker = tmp_path / "ran.txt"
    user = tmp_path / "usercode.py"
    user.write_text(
        f"open({str(marker)!r}, 'w').write('x')\n"
        "def widths():\n    return [8, 16]\n"
        "def batch(n_samples, **kw):\n    raise RuntimeError\n"
    )
    cfg = write(
        tmp_path / "s.json",
        sweep_config(
            tmp_path, {"width": {"call": f"{user}:widths"}}, batch_fn=f"{user}:batch", grabs=[f"{user}:widths"]
        ),
    )
    assert main(["--config", str(cfg), "--dry_run"]) == 0
    out = capsys.readouterr().out
    assert "values_of" in out and not marker.exists()  # listed, not called; the file never ran
    user.write_text("def widths(:\n")  # a syntax error is a config error, found by reading the file
    assert main(["--config", str(cfg), "--dry_run"]) == 2
    assert "syntax error" in capsys.readouterr().err


def test_an_in_process_sweep_stops_at_a_preempted_job(tmp_path, monkeypatch):
    """A preempted job (75) ends the sweep there: the next job must not start training into the grace period."""
    from hf_experiments.sweeps import local

    sweep = plan_sweep(sweep_config(tmp_path, {"trial": [0, 1, 2]}))
    started = []

    def fake_run(job):
        started.append(job.name)
        return 75 if len(started) == 1 else 0

    monkeypatch.setattr(local, "run_in_process", fake_run)
    assert local.run_local(sweep.jobs, devices=[]) == {"trial=0": 75}
    assert started == ["trial=0"]
