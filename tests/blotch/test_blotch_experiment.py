"""The `blotch` experiment end to end: config validation, a tiny run through `trainers/run.py` (data
generated, model + tokenizer saved and reloadable, evaluation CSV/plot, the warm-up/inverse-power schedule),
and the slow CPU accuracy target."""

import csv
import json
import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest

from hf_experiments.blotch.blotch_trainer import warmup_inverse_power
from hf_experiments.core.config import ConfigError
from hf_experiments.core.parsing import parse_config_strict
from tests.helpers import ROOT, logged_losses, run, write_config

TINY = {
    "experiment": "blotch",
    "max_num": 9,
    "max_ents": 3,
    "init_samples": 200,
    "val_samples": 20,
    "ood_samples": 10,
    "ood_max_num": 19,
    "d_model": 16,
    "n_heads": 2,
    "n_layers": 1,
    "h_mult": 2,
    "max_posencs": 128,
    "blotch_p_min": 0.0,
    "blotch_p_max": 0.4,
    "n_btokens": 3,
    "batch_size": 16,
    "per_device_eval_batch_size": 16,
    "max_steps": 6,
    "logging_steps": 1,
    "save_steps": 3,
    "report_to": "none",
    "lr": 0.01,
    "lr_decay_power": 0.5,
    "warmup_steps": 2,
    "gen_eval_samples": 8,
    "max_eval_batches": 1,
}


def parse(tmp_path, **cfg):
    path = write_config(tmp_path / "c.json", **{**TINY, "save_root": str(tmp_path / "out"), **cfg})
    return parse_config_strict(["--config", str(path)])


@pytest.mark.parametrize(
    "bad, key",
    [
        ({"d_model": 30, "n_heads": 4}, "d_model"),
        ({"blotch_p_min": 0.5, "blotch_p_max": 0.2}, "blotch_p_min"),
        ({"blotch_p_min": None}, "blotch_p_min"),
        ({"blotch_p_min": None, "blotch_p_max": None, "n_btokens": 2}, "n_btokens"),
        ({"max_ents": 2, "init_samples": 95}, "init_samples"),  # 100 problems, 20 held out
        ({"n_rollouts": 3}, "n_rollouts"),
        ({"digit_embs": False}, "digit_embs"),
        ({"ood_max_num": 9, "ood_max_ents": 3}, "ood_max_num"),
        ({"posenc_type": "Rotary"}, "posenc_type"),
        ({"blotch_p": 1.5}, "blotch_p"),
        ({"solver": "fast"}, "solver"),
        ({"axe_abs_limit": 1.0}, "axe_abs_limit"),  # only with axe_rule='original'
        ({"axe_rule": "strict"}, "axe_rule"),
        ({"zipf_order": 1.0, "max_num": 0, "ood_max_num": 5}, "max_num"),  # Zipf draws from 1..max_num
        ({"max_num": 0, "max_ents": 2, "ood_samples": 0}, "max_num"),  # an enumerated space of one problem
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"gen_eval_samples": 0}, "gen_eval_samples"),
    ],
)
def test_bad_configs_are_rejected_before_anything_is_written(tmp_path, bad, key):
    with pytest.raises(ConfigError) as err:
        parse(tmp_path, **bad)
    assert err.value.key == key
    assert not (tmp_path / "out").exists()


def test_seed_names_and_shipped_configs_parse(tmp_path):
    cfg = parse(tmp_path, lr=0.003, n_epochs=2, l2=0.1)
    assert (cfg.training.learning_rate, cfg.training.num_train_epochs, cfg.training.weight_decay) == (
        0.003,
        2,
        0.1,
    )
    for name in ("blotch", "blotch_vanilla", "direct"):
        cfg = parse_config_strict(
            ["--config", str(ROOT / "configs" / f"{name}.json"), "--save_root", str(tmp_path / "o")]
        )
        assert cfg.run.experiment == "blotch"


def test_schedule_is_linear_warmup_then_inverse_power():
    values = [warmup_inverse_power(s, warmup=4, power=0.5) for s in range(10)]
    assert values[:5] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert values[9] == pytest.approx((4 / 9) ** 0.5)


def test_tiny_run_end_to_end(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg_path = write_config(tmp_path / "tiny.json", **{**TINY, "save_root": str(tmp_path / "out")})
    result = run("--config", str(cfg_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "final generation eval" in result.stderr  # its progress bar
    run_dir = tmp_path / "out" / "tiny"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("validation_answer_acc", "ood_answer_acc", "validation_gen_len@0.4", "eval_loss"):
        assert key in metrics
    with open(run_dir / "blotch_eval.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert {(r["split"], float(r["blotch_level"])) for r in rows} == {
        (s, p) for s in ("validation", "ood") for p in (0.0, 0.2, 0.4)
    }
    assert (run_dir / "blotch_eval.png").stat().st_size > 0
    model = AutoModelForCausalLM.from_pretrained(run_dir / "model")
    tok = AutoTokenizer.from_pretrained(run_dir / "model")
    assert model.config.n_btokens == 3 and model.config.vocab_size == len(tok) + 3
    assert len([p for p in (tmp_path / "out" / "data").iterdir() if p.is_dir()]) == 1  # one dataset folder
    state = json.loads((run_dir / "checkpoint-6" / "trainer_state.json").read_text())
    lrs = [h["learning_rate"] for h in state["log_history"] if "learning_rate" in h]
    expected = [0.01 * warmup_inverse_power(s, 2, 0.5) for s in range(6)]  # the LR each step used
    assert lrs == pytest.approx(expected, rel=1e-4)
    assert len(logged_losses(run_dir)) == 6


def shipped_config_metrics(name: str, tmp_path: Path) -> dict:
    """Run configs/<name>.json end to end (as a user would) and return its metrics.json."""
    result = run(
        "--config",
        str(ROOT / "configs" / f"{name}.json"),
        "--save_root",
        str(tmp_path),
        "--report_to",
        "none",
        timeout=3600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((tmp_path / name / "metrics.json").read_text())


@pytest.mark.slow
def test_small_cpu_config_solves_sums_below_100(tmp_path):
    """The docs' claim: configs/blotch_vanilla.json reaches >= 95% final-answer accuracy on 2-3 term sums."""
    assert shipped_config_metrics("blotch_vanilla", tmp_path)["validation_answer_acc"] >= 0.95


@pytest.mark.slow
def test_axing_shortens_solutions_without_costing_accuracy(tmp_path):
    """The docs' claim: configs/blotch_axe.json cuts the mean training solution by >= 30% and ends within 2 points
    of the same run without axing (configs/blotch_axe_twin.json)."""
    axe = shipped_config_metrics("blotch_axe", tmp_path)
    twin = shipped_config_metrics("blotch_axe_twin", tmp_path)
    assert axe["cache_length_reduction"] >= 0.30 and twin["cache_length_reduction"] == 0.0
    assert axe["validation_answer_acc"] >= twin["validation_answer_acc"] - 0.02


def test_the_originals_schedule_excludes_the_step_schedule(tmp_path):
    from hf_experiments.blotch.blotch_config import BlotchTrainingArguments
    from hf_experiments.core.config import ConfigError

    with pytest.raises(ConfigError, match="lr_decay_power"):  # an experiment's own schedule: not both
        BlotchTrainingArguments(
            output_dir=str(tmp_path),
            lr_decay_power=0.5,
            lr_sched_steps=[3],
            lr_scheduler_type="constant",
            report_to="none",
        )


def test_a_dataset_folder_must_come_from_the_configured_solver(tmp_path):
    from hf_experiments.blotch.arithmetic import ProblemParams, write_arithmetic_dataset
    from hf_experiments.blotch.blotch_config import BlotchDataArguments
    from hf_experiments.blotch.experiment import dataset_name

    folder = write_arithmetic_dataset(str(tmp_path / "d"), ProblemParams(max_num=9, solver="sorted"), 50, 10)
    with pytest.raises(ConfigError, match="'sorted', the solver that wrote dataset_path") as err:
        parse(tmp_path, dataset_path=folder)
    assert err.value.key == "solver"
    assert parse(tmp_path, dataset_path=folder, solver="sorted").data.solver == "sorted"
    # the cache size is part of the data's name only where it decides the split (a small space)
    sampled = [dataset_name(BlotchDataArguments(init_samples=500, max_samples=m)) for m in (500, 900)]
    small = [dataset_name(BlotchDataArguments(max_ents=2, init_samples=500, max_samples=m)) for m in (500, 20_000)]
    assert sampled[0] == sampled[1] and small[0] != small[1]


def test_final_evaluation_respects_the_caps_and_disable_tqdm(tmp_path):
    """An untrained model never stops by itself: every solution is cut at max_new_tokens, each split holds
    gen_eval_samples problems, and with disable_tqdm the evaluation draws no bar."""
    caps = {"max_steps": 1, "save_steps": 1, "gen_eval_samples": 5, "max_new_tokens": 6, "disable_tqdm": True}
    cfg_path = write_config(tmp_path / "capped.json", **{**TINY, "save_root": str(tmp_path / "out"), **caps})
    result = run("--config", str(cfg_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "final generation eval" not in result.stderr
    with open(tmp_path / "out" / "capped" / "blotch_eval.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6 and all(int(r["n"]) == 5 for r in rows)
    assert all(0 < float(r["gen_len"]) <= 6 for r in rows)


def test_bad_max_new_tokens_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    from tests.helpers import assert_config_error

    assert_config_error(tmp_path, monkeypatch, capsys, {**TINY, "max_new_tokens": -1}, "max_new_tokens", "[1, inf]")


def test_default_budgets_cut_only_what_runs_past_each_ground_truth():
    """Per-problem budgets (1.5 x the longest ground truth of a problem of its length + 8) change nothing for a
    solution that ends within its budget; one that does not is the same text cut at its budget, never longer.
    The model memorises the short rows (it writes them and stops); budgets set below their length cut them."""
    import torch

    from hf_experiments.blotch.blotching import pad_rows
    from hf_experiments.blotch.configuration_blotch import BlotchConfig
    from hf_experiments.blotch.evaluation import generate_solutions, solution_budgets
    from hf_experiments.blotch.modeling_blotch import BlotchModel
    from hf_experiments.blotch.tokenization_arith import arith_tokenizer, encode_rows

    tok = arith_tokenizer()
    problems = ["1+2", "3+45", "12+34+5", "7+8", "60+7+8", "9+9"]
    solutions = ["3", "48", "10+2+30+4+5=51", "15", "67+8=75", "1" * 30]
    torch.manual_seed(0)
    model = BlotchModel(BlotchConfig(vocab_size=len(tok), d_model=32, n_heads=2, n_layers=1, max_posencs=96))
    ids = pad_rows(encode_rows(tok, [f"{p}={s}" for p, s in zip(problems, solutions)]), tok.pad_token_id)
    mask = (ids != tok.pad_token_id).long()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        loss = model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    budgets = solution_budgets(solutions, problems, model.config.n_positions)
    longest = {len(p): max(len(s) + 1 for q, s in zip(problems, solutions) if len(q) == len(p)) for p in problems}
    assert list(budgets) == [longest[len(p)] * 3 // 2 + 8 for p in problems]  # "1+2", "7+8", "9+9": 31 * 1.5 + 8
    free = generate_solutions(model, tok, problems, batch_size=4, max_new_tokens=80)
    # rows 0 and 2 are memorised (they finish); `tight` cuts them below their length, so both branches below run
    # whatever the thirty 1s do (the model may or may not learn to count them, depending on the thread count)
    assert free.finished[[0, 2], 0].all() and free.lengths[0, 0] > 1 and free.lengths[2, 0] > 5
    tight = budgets.copy()
    tight[[0, 2]] = [1, 5]  # finished solutions cut short by budgets set below their length
    for limits in (budgets, tight):
        cut = generate_solutions(model, tok, problems, batch_size=4, max_new_tokens=80, budgets=limits)
        for i, b in enumerate(limits):
            assert cut.lengths[i, 0] <= b
            if free.finished[i, 0] and free.lengths[i, 0] <= b:
                assert (cut.texts[i], bool(cut.finished[i, 0])) == (free.texts[i], True)
            else:
                assert not cut.finished[i, 0] and cut.lengths[i, 0] == b
                assert free.texts[i][0].startswith(cut.texts[i][0]) and len(cut.texts[i][0]) == b
