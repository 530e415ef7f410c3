"""The sequence-to-sequence RNN: packing, teacher forcing, exact loss splitting, saving; the gru_repeat
experiment end to end (per-validation-set metrics in metrics.json and TensorBoard), its step schedule and
config checks."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModel

from hf_experiments.core.config import ConfigError
from hf_experiments.core.parsing import parse_config_strict
from hf_experiments.core.schedules import step_schedule
from hf_experiments.recurrent.configuration_recurrent import RecurrentConfig
from hf_experiments.recurrent.grid_table import collect, render
from hf_experiments.recurrent.modeling_recurrent import RecurrentSeq2Seq, exact_match, token_loss
from tests.helpers import run, write_config


def _model(**kw) -> RecurrentSeq2Seq:
    torch.manual_seed(0)
    return RecurrentSeq2Seq(RecurrentConfig(n_symbols=7, state_size=12, **kw))


def _batch():
    ids = torch.tensor([[1, 2, 3, 4], [5, 6, 0, 0], [2, 0, 0, 0]])
    length = torch.tensor([4, 2, 1])
    labels = ids.masked_fill(torch.arange(4) >= length[:, None], -100)
    return ids, length, labels


@pytest.mark.parametrize("cell,layers", [("gru", 1), ("lstm", 2)])
def test_state_is_taken_after_each_rows_own_length(cell, layers):
    model = _model(cell=cell, n_layers=layers)
    ids, length, _ = _batch()
    state = model.encode(ids, length)
    assert state.shape == (3, model.config.flat_state_size)
    for i in range(3):
        alone = model.encode(ids[i : i + 1, : length[i]], length[i : i + 1])
        torch.testing.assert_close(state[i : i + 1], alone, rtol=1e-5, atol=1e-6)
    garbage = ids.clone()
    garbage[1, 2:] = 6  # padding content must not matter
    torch.testing.assert_close(model.encode(garbage, length), state)


@pytest.mark.parametrize("cell,layers", [("gru", 1), ("lstm", 2)])
def test_unpadded_batch_skips_packing_with_bitwise_the_same_state_and_gradients(cell, layers):
    """Fixed-length rows (the shipped configs) run the RNN on the plain tensor: the packed path's exact numbers."""
    model = _model(cell=cell, n_layers=layers)
    ids = torch.randint(0, 7, (5, 6))
    length = torch.full((5,), 6)
    plain = model.encode(ids, length)
    packed_in = torch.nn.utils.rnn.pack_padded_sequence(
        model.embedding(ids), length, batch_first=True, enforce_sorted=False
    )
    packed = model._flatten_state(model.rnn(packed_in)[1])
    assert torch.equal(plain, packed)
    g_plain = torch.autograd.grad(plain.square().sum(), list(model.rnn.parameters()))
    g_packed = torch.autograd.grad(packed.square().sum(), list(model.rnn.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(g_plain, g_packed))


def test_teacher_forcing_is_causal_and_no_input_ignores_targets():
    model = _model()
    ids, length, _ = _batch()
    state = model.encode(ids, length)
    changed = ids.clone()
    changed[:, 2] = (changed[:, 2] + 1) % 7
    a, b = model.decode(state, ids), model.decode(state, changed)
    torch.testing.assert_close(a[:, :3], b[:, :3])  # position t is fed targets < t only
    assert not torch.allclose(a[:, 3], b[:, 3])
    blind = _model(no_input=True)
    torch.testing.assert_close(blind.decode(state, ids), blind.decode(state, changed))


def test_loss_split_with_num_items_sums_to_the_full_batch_loss():
    model = _model()
    ids, length, labels = _batch()
    full = model(ids, length, labels).loss
    n = labels.ne(-100).sum()
    parts = sum(model(ids[s], length[s], labels[s], num_items_in_batch=n).loss for s in (slice(0, 1), slice(1, 3)))
    torch.testing.assert_close(parts, full)
    logits = model(ids, length).logits
    torch.testing.assert_close(token_loss(logits, labels), full)


def test_exact_match_ignores_padding():
    logits = torch.nn.functional.one_hot(torch.tensor([[1, 2, 0], [1, 2, 0]]), 3).float()
    labels = torch.tensor([[1, 2, -100], [1, 1, -100]])
    assert exact_match(logits, labels).tolist() == [True, False]


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_save_load_round_trip_through_auto_model(tmp_path, cell):
    model = _model(cell=cell)
    ids, length, labels = _batch()
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path)
    assert type(loaded) is RecurrentSeq2Seq
    torch.testing.assert_close(loaded(ids, length, labels).loss, model(ids, length, labels).loss)


def test_step_schedule_multiplies_at_milestones_after_warmup():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = step_schedule(opt, [5, 8], gamma=0.5, warmup_steps=2)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == [0.5, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25]


def _tiny_config(tmp_path, **over):
    cfg = dict(
        experiment="gru_repeat",
        exp_name="rep",
        save_root=str(tmp_path),
        state_size=16,
        n_symbols=6,
        min_len=2,
        max_len=3,
        n_train=120,
        n_valid=20,
        n_valid_extra=10,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=64,
        learning_rate=3e-3,
        max_steps=6,
        eval_strategy="steps",
        eval_steps=3,
        save_steps=3,
        logging_steps=2,
        lr_scheduler_type="constant",
        max_grad_norm=0,
        report_to="tensorboard",
        disable_tqdm=True,
    )
    cfg.update(over)
    return write_config(tmp_path / "rep.json", **cfg)


def test_config_checks_happen_before_anything_is_written(tmp_path):
    with pytest.raises(ConfigError, match="min_len"):
        parse_config_strict(["--config", str(_tiny_config(tmp_path, min_len=4, max_len=3))])
    with pytest.raises(ConfigError, match="lr_sched_steps"):
        parse_config_strict(["--config", str(_tiny_config(tmp_path, lr_sched_steps=[3], lr_scheduler_type="cosine"))])
    with pytest.raises(ConfigError, match="gradient_accumulation_steps"):
        parse_config_strict(
            ["--config", str(_tiny_config(tmp_path, per_device_batch_size=4, gradient_accumulation_steps=2))]
        )
    cfg = parse_config_strict(["--config", str(_tiny_config(tmp_path, per_device_batch_size=6))])
    assert cfg.training.gradient_accumulation_steps == 3  # 16 rows -> 6, 5, 5
    assert cfg.training.per_device_eval_batch_size == 6
    assert not (tmp_path / "rep").exists()


def test_gru_repeat_run_reports_every_validation_set(tmp_path):
    """A few steps through trainers/run.py: metrics.json and TensorBoard hold accuracy and loss per set."""
    res = run("--config", str(_tiny_config(tmp_path, per_device_batch_size=7, length_bucketed_sampling=True)))
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    sets = ["valid", "valid_norepeat", "valid_longer_1", "valid_longer_2", "valid_longer_1_norepeat"]
    for s in sets:
        assert 0.0 <= metrics[f"eval_{s}_accuracy"] <= 1.0 and metrics[f"eval_{s}_loss"] > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags, steps = set(), []
    for events in (tmp_path / "rep" / "runs").rglob("events.out.tfevents*"):
        acc = EventAccumulator(str(events))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
        if "eval/valid_accuracy" in acc.Tags()["scalars"]:
            steps += [e.step for e in acc.Scalars("eval/valid_accuracy")]
    assert {f"eval/{s}_accuracy" for s in sets} | {f"eval/{s}_loss" for s in sets} <= tags
    assert sorted(set(steps)) == [3, 6]  # periodic evaluations (the final one logs at step 6 again)


@pytest.mark.slow
def test_small_gru_learns_to_repeat(tmp_path):
    res = run(
        "--config",
        str(
            _tiny_config(
                tmp_path,
                n_train=900,
                max_len=4,
                max_steps=600,
                eval_steps=600,
                save_steps=600,
                state_size=32,
                report_to="none",
            )
        ),
    )
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert metrics["eval_valid_accuracy"] >= 0.9


def _load_script(name: str):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "trainers" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_grid_runs_each_model_before_its_interventions_and_skips_finished_runs(tmp_path, capsys):
    grid = _load_script("gru_grid")
    todo = grid.commands(str(tmp_path), [48, 64], [1, 2], ["linear", "onion"], {"max_steps": "7"}, {})
    names = [d.name for d, _ in todo]
    assert len(names) == 12 and names[:3] == ["gru_s48_seed1", "gru_s48_seed1_linear", "gru_s48_seed1_onion"]
    argv = dict(zip(todo[1][1][::2], todo[1][1][1::2]))
    assert argv["--gru_model"] == str(tmp_path / "gru_s48_seed1" / "model") and argv["--intervention"] == "linear"
    assert dict(zip(todo[0][1][::2], todo[0][1][1::2]))["--max_steps"] == "7"  # overrides beat the paper's
    (tmp_path / "gru_s48_seed1").mkdir()
    (tmp_path / "gru_s48_seed1" / "metrics.json").write_text("{}")
    assert grid.main(["--save_root", str(tmp_path), "--state_sizes", "48", "--seeds", "1", "--dry_run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("done") and all(line.startswith("run") for line in out[1:])


def test_table_gives_mean_std_range_and_steps_over_seeds_and_writes_csv_and_plot(tmp_path):
    table = _load_script("gru_table")
    for seed, (iid, lin, onion) in enumerate([(0.9, 0.1, 0.7), (0.7, 0.3, 0.9)], start=1):
        for suffix, acc in (("", iid), ("_linear", lin), ("_onion", onion)):
            run_dir = tmp_path / f"gru_s48_seed{seed}{suffix}"
            run_dir.mkdir()
            (run_dir / "metrics.json").write_text(json.dumps({"eval_valid_accuracy": acc}))
            (run_dir / "trainer_state.json").write_text(json.dumps({"global_step": 1000 * seed}))
    (tmp_path / "gru_s64_seed1").mkdir()  # unfinished: left out
    runs, unfinished = collect(tmp_path)
    assert unfinished == ["gru_s64_seed1"]
    text = render(runs)
    high, low = "80.0 ± 14.1 [70.0–90.0] (n=2)", "20.0 ± 14.1 [10.0–30.0] (n=2)"
    cells = [high, "1000–2000", low, high]
    row = "| 48 | " + " | ".join(cells) + " |"
    assert row in text
    assert table.main(["--save_root", str(tmp_path), "--copy_to", str(tmp_path / "img")]) == 0
    csv_rows = (tmp_path / "gru_grid_results.csv").read_text().splitlines()
    assert csv_rows[0] == "run,state_size,seed,column,accuracy,steps" and len(csv_rows) == 7
    assert csv_rows[1] == "gru_s48_seed1,48,1,iid,90.0,1000"
    for name in ("gru_grid_table.md", "gru_grid_results.csv", "gru_grid_table.png"):
        assert (tmp_path / "img" / name).read_bytes() == (tmp_path / name).read_bytes()
    assert table.main(["--save_root", str(tmp_path / "missing")]) == 2


def test_cpu_preset_with_jobs_trains_to_the_target_one_thread_per_chain(tmp_path, capsys):
    grid = _load_script("gru_grid")
    assert grid.main(["--save_root", str(tmp_path), "--preset", "cpu", "--jobs", "2", "--dry_run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 18  # 3 sizes x 2 seeds x (GRU + 2 interventions)
    for size, seed in ((48, 1), (128, 2), (512, 1)):
        mine = [line for line in lines if line.startswith(f"[gru_s{size}_seed{seed}] ")]
        assert [line.split("--exp_name ")[1].split()[0] for line in mine] == [
            f"gru_s{size}_seed{seed}", f"gru_s{size}_seed{seed}_linear", f"gru_s{size}_seed{seed}_onion",
        ]  # fmt: skip
        assert "--stop_when 'eval_valid_accuracy>=0.95'" in mine[0] and "--max_steps 20000" in mine[0]  # quoted
        assert all("--torch_threads 1" in line for line in mine)
        assert "--onion_linear_init 1.0" in mine[2] and "--max_steps 3000" in mine[2]
    with pytest.raises(SystemExit):
        grid.main(["--save_root", str(tmp_path), "--jobs", "0"])


def test_two_runs_started_together_share_one_generated_dataset(tmp_path):
    """A grid's parallel chains start runs on one save_root at once: one writes the repeat data, the other waits
    for the lock and reads it (before the lock the second rename could fail on the finished folder)."""
    import subprocess
    import sys

    from tests.helpers import RUN, env

    big = {"n_symbols": 30, "min_len": 6, "max_len": 6, "n_train": 200_000}  # seconds to generate
    cfg = _tiny_config(tmp_path, **big, max_steps=2, eval_steps=2, save_steps=2, report_to="none")
    procs = [
        subprocess.Popen(
            [sys.executable, RUN, "--config", str(cfg), "--exp_name", f"rep{i}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env(),
        )
        for i in range(2)
    ]  # fmt: skip
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
    data = [p for p in (tmp_path / "data").iterdir() if p.is_dir()]
    assert len(data) == 1 and (data[0] / "README.md").is_file()


def test_onion_init0_is_its_own_column_with_lambda_starting_at_0(tmp_path):
    grid = _load_script("gru_grid")
    todo = grid.commands(str(tmp_path), [48], [1], ["onion", "onion_init0"], {}, {}, grid.CPU_STAGE1, grid.CPU_STAGE2)
    (_, onion), (run_dir, variant) = todo[1], todo[2]
    assert run_dir.name == "gru_s48_seed1_onion_init0"
    args = dict(zip(variant[::2], variant[1::2]))
    assert args["--intervention"] == "onion" and args["--onion_linear_init"] == "0.0"
    assert dict(zip(onion[::2], onion[1::2]))["--onion_linear_init"] == "1.0"
