"""Forward vs backward over seeds (`compare_seeds`, `trainers/arrows_compare.py --forward/--backward`): the gap's
mean and 95% t-interval per budget, earlier budgets read from the evaluation log, per-position bands."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from hf_experiments.arrows.analysis import compare_seeds, eval_loss_at


def _run(folder: Path, direction: str, final: float, at_100: float, positions: list[float]) -> Path:
    folder.mkdir(parents=True)
    (folder / "loss_per_position.json").write_text(
        json.dumps({"direction": direction, "order": list(range(len(positions))), "loss_per_position": positions,
                    "mean": final})
    )  # fmt: skip
    log = [{"step": 100, "eval_loss": at_100}, {"step": 200, "eval_loss": final}]
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": 200, "log_history": log}))
    (folder / "run_config.json").write_text(json.dumps({"seed": int(folder.name[1:]), "direction": direction}))
    return folder


def _script():
    path = Path(__file__).resolve().parents[2] / "trainers" / "arrows_compare.py"
    spec = importlib.util.spec_from_file_location("arrows_compare", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_gap_interval_over_paired_seeds_at_each_budget(tmp_path):
    fw = [_run(tmp_path / f"f{i}", "forward", 0.30 + 0.01 * i, 0.40, [0.7, 0.1 + 0.01 * i]) for i in range(3)]
    bw = [_run(tmp_path / f"b{i}", "backward", 0.36 + 0.01 * i, 0.40 + 0.02 * i, [0.7, 0.3]) for i in range(3)]
    result = compare_seeds(fw, bw, budgets=[100])
    early, final = result["budgets"]
    assert [b["step"] for b in result["budgets"]] == [100, 200] and result["n_seeds"] == 3
    assert final["gap"]["values"] == pytest.approx([0.06, 0.06, 0.06])  # paired: the seeds' common offset cancels
    assert final["gap"]["ci95"] == pytest.approx([0.06, 0.06])
    # at step 100 the gaps are 0, 0.02, 0.04: mean 0.02, sd 0.02, t(2) = 4.303
    half = 4.303 * 0.02 / math.sqrt(3)
    assert early["gap"]["mean"] == pytest.approx(0.02) and early["gap"]["ci95"] == pytest.approx(
        [0.02 - half, 0.02 + half]
    )
    assert early["relative_gap"]["values"] == pytest.approx([0.0, 0.05, 0.1])
    assert result["per_position"]["forward"]["mean"] == pytest.approx([0.7, 0.11])
    assert result["per_position"]["backward"]["ci95_half"] == pytest.approx([0.0, 0.0])


def test_a_budget_not_evaluated_and_unpaired_lists_are_errors(tmp_path):
    fw = [_run(tmp_path / f"f{i}", "forward", 0.3, 0.4, [0.7, 0.1]) for i in range(2)]
    bw = [_run(tmp_path / f"b{i}", "backward", 0.4, 0.5, [0.7, 0.2]) for i in range(2)]
    with pytest.raises(ValueError, match="no evaluation at step 150"):
        eval_loss_at(fw[0], 150)
    with pytest.raises(ValueError, match="same number, at least 2"):
        compare_seeds(fw, bw[:1])
    with pytest.raises(ValueError, match="list the runs in seed order"):
        compare_seeds(fw, bw[::-1])
    with pytest.raises(ValueError, match="not a forward run"):
        compare_seeds(bw, fw)
    state = json.loads((bw[1] / "trainer_state.json").read_text())
    (bw[1] / "trainer_state.json").write_text(json.dumps({**state, "global_step": 150}))
    with pytest.raises(ValueError, match="different steps"):
        compare_seeds(fw, bw)


def test_script_writes_json_and_plot_and_exits_2_on_bad_input(tmp_path, capsys):
    fw = [_run(tmp_path / f"f{i}", "forward", 0.3 + 0.01 * i, 0.4, [0.7, 0.1]) for i in range(2)]
    bw = [_run(tmp_path / f"b{i}", "backward", 0.4, 0.5, [0.7, 0.2]) for i in range(2)]
    script = _script()
    argv = ["--forward", *map(str, fw), "--backward", *map(str, bw), "--budgets", "100", "--out", str(tmp_path / "c")]
    assert script.main(argv) == 0
    assert json.loads((tmp_path / "c.json").read_text())["n_seeds"] == 2 and (tmp_path / "c.png").is_file()
    assert "relative" in capsys.readouterr().out
    assert script.main([*argv[:-2], "--budgets", "150", "--out", str(tmp_path / "d")]) == 2
    assert not (tmp_path / "d.json").exists()
