"""Arrows of time: reading orders, per-position loss, compare / sweep / sparse-update scripts, and (slow) the
paper's qualitative finding with the shipped linear configs."""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest
from datasets import load_dataset

from hf_experiments.arrows.analysis import mean_std_curves, min_rule_weights, relative_gap
from hf_experiments.arrows.experiment import ArrowsExperiment, dataset_folder
from hf_experiments.arrows.linear_language import make_sparse_invertible, pack_bits, parse_bit_line
from hf_experiments.core.config import ConfigError
from hf_experiments.core.parsing import parse_config_strict
from tests.helpers import ROOT, popen, write_config

N = 4  # matrix size of the tiny linear runs: lines of 2 * 4 + 7 = 15 characters
TINY = {
    "model_preset": "tiny",
    "n_layers": 1,
    "n_heads": 2,
    "embed_dim": 16,
    "dropout": 0.0,
    "per_device_train_batch_size": 16,
    "per_device_eval_batch_size": 64,
    "learning_rate": 3e-3,
    "logging_steps": 1,
    "report_to": "none",
    "dataloader_num_workers": 0,
    "use_cpu": True,
}


def _script(name: str):
    """A `trainers/<name>.py` module (trainers/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"trainers_{name}", ROOT / "trainers" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _matrix(tmp: Path) -> Path:
    path = tmp / "m.npy"
    if not path.exists():
        np.save(path, make_sparse_invertible(N, 3, np.random.default_rng(1)))
    return path


def _linear_args(tmp: Path, **over) -> list[str]:
    cfg = {
        "experiment": "arrows",
        "task": "linear",
        "matrix_path": str(_matrix(tmp)),
        "num_vectors": 400,
        "n_val": 64,
        "save_root": str(tmp / "out"),
        **TINY,
        **over,
    }
    return ["--config", str(write_config(tmp / f"{cfg.get('exp_name', 'cfg')}.json", **cfg))]


def _data(argv: list[str]):
    cfg = parse_config_strict(argv)
    exp = ArrowsExperiment(cfg)
    return exp, exp.build_data()


# --------------------------------------------------------------------------------------------
# Reading orders
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("task", ["linear", "primes"])
def test_backward_rows_are_exact_reverses_with_bos_first(tmp_path, task):
    extra = {"task": "primes", "max_n_digits": 2, "n_pairs": 300} if task == "primes" else {}
    exp, fwd = _data(_linear_args(tmp_path, **extra))
    _, bwd = _data(_linear_args(tmp_path, direction="backward", **extra))
    bos = exp.tokenizer.bos_token_id
    for split in ("train", "validation"):
        f, b = np.asarray(fwd[split]["input_ids"]), np.asarray(bwd[split]["input_ids"])  # (N, 1 + L)
        assert f.shape == b.shape and len(f) > 0
        assert (f[:, 0] == bos).all() and (b[:, 0] == bos).all()
        np.testing.assert_array_equal(b[:, 1:], f[:, 1:][:, ::-1])
        np.testing.assert_array_equal(f, b[:, list(range(0, 1)) + list(range(f.shape[1] - 1, 0, -1))])
    # forward ids are the generated lines' characters, in order
    lines = load_dataset(str(dataset_folder(exp.cfg.data, exp.cfg.run.save_root)))["validation"]["text"]
    decoded = ["".join(exp.tokenizer.convert_ids_to_tokens(row[1:].tolist())) for row in f]
    assert decoded == lines


def test_primes_runs_write_the_smaller_prime_first_unless_asked(tmp_path):
    from hf_experiments.arrows.primes import parse_prime_line

    extra = {"task": "primes", "max_n_digits": 2, "n_pairs": 300}
    orders = {}
    for order in ("smaller_first", "random"):
        exp, _ = _data(_linear_args(tmp_path, pair_order=order, **extra))
        folder = dataset_folder(exp.cfg.data, exp.cfg.run.save_root)
        pairs = [parse_prime_line(x)[:2] for x in load_dataset(str(folder))["train"]["text"]]
        orders[order] = (folder, pairs)
    (first, small), (other, drawn) = orders["smaller_first"], orders["random"]
    assert first != other  # each order its own dataset folder
    assert all(p < q for p, q in small) and any(p > q for p, q in drawn)
    assert small == [(min(p, q), max(p, q)) for p, q in drawn]  # the same draws


def test_permutation_is_applied_exactly(tmp_path):
    perm = np.random.default_rng(0).permutation(2 * N + 7).tolist()
    _, fwd = _data(_linear_args(tmp_path))
    _, per = _data(_linear_args(tmp_path, permutation=perm))
    f, p = np.asarray(fwd["train"]["input_ids"]), np.asarray(per["train"]["input_ids"])
    np.testing.assert_array_equal(p[:, 0], f[:, 0])
    np.testing.assert_array_equal(p[:, 1:], f[:, 1:][:, perm])


@pytest.mark.parametrize("perm", [[0, 1, 2], [*range(2 * N + 6), 0]])
def test_bad_permutation_is_refused_before_anything_is_written(tmp_path, perm):
    with pytest.raises(ConfigError, match="permutation"):
        parse_config_strict(_linear_args(tmp_path, permutation=perm))
    assert not (tmp_path / "out").exists()


def test_val_fraction_keeps_validation_inputs_out_of_training(tmp_path):
    exp, _ = _data(_linear_args(tmp_path, perturbation_rate=0.0, val_fraction=0.25, num_vectors=300))
    raw = load_dataset(str(dataset_folder(exp.cfg.data, exp.cfg.run.save_root)))
    inputs = {}
    for split in ("train", "validation"):
        bits = np.stack([parse_bit_line(t)[0] for t in raw[split]["text"]])  # (N, n) input vectors
        inputs[split] = set(pack_bits(bits).tolist())
    assert inputs["validation"] and inputs["train"]
    assert not inputs["validation"] & inputs["train"]


# --------------------------------------------------------------------------------------------
# Rule weights (why one direction is harder)
# --------------------------------------------------------------------------------------------
def _brute_force_weights(m: np.ndarray, backward: bool) -> list[int]:
    """Fewest earlier-read bits XOR-ing to each predicted output bit, by enumerating subsets of read bits."""
    n = len(m)
    v = (np.arange(2**n)[:, None] >> np.arange(n)) & 1  # (2^n, n) every input vector
    bits = np.concatenate([v, v @ m.T % 2], axis=1)  # (2^n, 2n): x then y = M x
    order = list(range(2 * n))[::-1] if backward else list(range(2 * n))
    out = {}
    for t in range(n, 2 * n):
        pos = order.index(t) if not backward else order.index(t - n)
        target = order[pos]
        seen = order[:pos]
        for size in range(1, len(seen) + 1):
            if any((bits[:, list(s)].sum(1) % 2 == bits[:, target]).all() for s in itertools.combinations(seen, size)):
                out[target % n] = size
                break
    return [out[r] for r in range(n)]


def test_rule_weights_match_brute_force_and_known_cases():
    n = 6
    np.testing.assert_array_equal(min_rule_weights(np.eye(n, dtype=np.uint8))[0], np.ones(n))
    bidiag = np.eye(n, dtype=np.uint8)
    bidiag[np.arange(1, n), np.arange(n - 1)] = 1  # y_r = x_r + x_{r-1}: M^-1 is all ones below the diagonal
    fw, bw = min_rule_weights(bidiag)
    assert fw.tolist() == [1] + [2] * (n - 1)
    assert bw.tolist() == [1] + [2] * (n - 2) + [n]  # the first backward bit is the parity of all of y
    for seed in range(3):
        m = make_sparse_invertible(4, 3, np.random.default_rng(seed)).astype(np.int64)
        fw, bw = min_rule_weights(m)
        assert fw.tolist() == _brute_force_weights(m, backward=False)
        assert bw.tolist() == _brute_force_weights(m, backward=True)


def test_relative_gap_and_mean_std_curves():
    assert relative_gap(2.0, 3.0) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="forward"):
        relative_gap(0.0, 1.0)
    c = mean_std_curves([(np.array([1, 2, 3]), np.array([1.0, 2.0, 3.0])), (np.array([2, 3]), np.array([4.0, 5.0]))])
    assert c["step"] == [2, 3] and c["mean"] == [3.0, 4.0] and c["std"] == [1.0, 1.0]


# --------------------------------------------------------------------------------------------
# Real tiny runs: per-position loss, compare, sparse update, sweep
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("arrows")
    from hf_experiments.core.runner import main as run_main

    out = {}
    for d in ("forward", "backward"):
        assert run_main(_linear_args(tmp, exp_name=d, direction=d, max_steps=6, save_steps=6)) == 0
        out[d] = tmp / "out" / d
    return out


def test_per_position_file_has_one_entry_per_predicted_position(tiny_runs):
    for d, run_dir in tiny_runs.items():
        pos = json.loads((run_dir / "loss_per_position.json").read_text())
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert len(pos["loss_per_position"]) == 2 * N + 7 == len(pos["order"])
        assert pos["direction"] == d
        assert np.mean(pos["loss_per_position"]) == pytest.approx(pos["mean"], rel=1e-12)
        assert pos["mean"] == pytest.approx(metrics["mean_token_loss"], rel=1e-12)
        # the whole validation split fits one eval batch: the Trainer's eval_loss is the same mean
        assert metrics["eval_loss"] == pytest.approx(metrics["mean_token_loss"], rel=1e-4)
        assert (run_dir / "loss_per_position.png").stat().st_size > 0


def test_compare_script_reports_the_gap_of_two_real_runs(tiny_runs, tmp_path):
    compare = _script("arrows_compare")
    assert compare.main([str(tiny_runs["forward"]), str(tiny_runs["backward"]), "--out", str(tmp_path / "c")]) == 0
    res = json.loads((tmp_path / "c.json").read_text())
    f, b = (json.loads((tiny_runs[d] / "metrics.json").read_text())["mean_token_loss"] for d in ("forward", "backward"))
    assert res["forward_mean_loss"] == pytest.approx(f) and res["backward_mean_loss"] == pytest.approx(b)
    assert res["relative_gap"] == pytest.approx((b - f) / f)
    assert (tmp_path / "c.png").stat().st_size > 0
    assert compare.main([str(tiny_runs["forward"]), str(tmp_path)]) == 2  # not a run folder: clear error


def test_sparse_update_finetunes_both_directions_from_the_trained_weights(tiny_runs, tmp_path):
    script = _script("arrows_sparse_update")
    out = tmp_path / "su"
    argv = [
        "--forward_run",
        str(tiny_runs["forward"]),
        "--backward_run",
        str(tiny_runs["backward"]),
        "--num_flips",
        "2",
        "--repeats",
        "2",
        "--max_steps",
        "3",
        "--logging_steps",
        "1",
        "--out",
        str(out),
    ]
    assert script.main(argv) == 0
    res = json.loads((out / "sparse_update.json").read_text())
    trained = np.load(_matrix(tiny_runs["forward"].parents[1]))
    for r in range(2):
        m_new = np.load(res["perturbed"][r]["path"])
        assert (m_new != trained).sum() == 2 and (np.diag(m_new) == 1).all()
        for d in ("forward", "backward"):
            cfg = json.loads((out / "configs" / f"r{r}_{d}.json").read_text())
            assert cfg["init_checkpt"] == str(tiny_runs[d] / "model") and cfg["direction"] == d
    for d in ("forward", "backward"):
        assert res[d]["step"] == [1, 2, 3] and res[d]["n_repeats"] == 2
        curves = np.array([c["value"] for c in res[d]["curves"]])
        np.testing.assert_allclose(res[d]["mean"], curves.mean(0))
        np.testing.assert_allclose(res[d]["std"], curves.std(0))
    assert (out / "sparse_update.png").stat().st_size > 0
    # a rerun skips the finished fine-tunes and rebuilds the same summary
    before = (out / "r0_forward" / "metrics.json").stat().st_mtime_ns
    assert script.main(argv) == 0
    assert (out / "r0_forward" / "metrics.json").stat().st_mtime_ns == before


def test_sweep_trains_both_directions_per_matrix_and_skips_finished_jobs(tmp_path):
    script = _script("arrows_sparsity_sweep")
    base = write_config(
        tmp_path / "base.json",
        experiment="arrows",
        task="linear",
        matrix_n=N,
        num_vectors=200,
        n_val=32,
        max_steps=2,
        save_steps=2,
        **TINY,
    )
    argv = ["--config", str(base), "--ks", "1", "3", "--out", str(tmp_path / "sw")]
    assert script.main(argv) == 0
    rows = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    assert sorted((r["k"], r["direction"]) for r in rows) == [
        (1, "backward"),
        (1, "forward"),
        (3, "backward"),
        (3, "forward"),
    ]
    for r in rows:
        m = np.load(next((tmp_path / "sw" / "matrices").glob(f"{r['matrix']}.npy")))
        assert int(m.sum()) - N == r["k"]
        other = next(o for o in rows if o["matrix"] == r["matrix"] and o["direction"] != r["direction"])
        f, b = (r, other) if r["direction"] == "forward" else (other, r)
        assert r["relative_gap"] == pytest.approx((b["mean_token_loss"] - f["mean_token_loss"]) / f["mean_token_loss"])
    assert (tmp_path / "sw" / "sweep.csv").read_text().count("\n") == 5
    stamp = {p: p.stat().st_mtime_ns for p in (tmp_path / "sw").glob("*/metrics.json")}
    assert script.main(argv) == 0
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "sw").glob("*/metrics.json")} == stamp


# --------------------------------------------------------------------------------------------
# The original's .h5 token files as dataset_path
# --------------------------------------------------------------------------------------------
def write_original_h5(path: Path, lines: list[str], premade: dict[str, int] | None = None) -> dict[str, int]:
    """Write `lines` as the original did (gendataset.py / prime-product_generator.py -> tok_text_to_h5): the text
    with a newline per line, tokenized in 10,000-character chunks with each chunk strip()ped, ids given on first
    sight after `premade` (default {"$": 0}), as one resizable 1-D int32 dataset "tokens". Returns the dictionary."""
    import h5py

    text = "".join(line + "\n" for line in lines)
    vocab = dict(premade or {"$": 0})
    ids = []
    for start in range(0, len(text), 10_000):
        for char in text[start : start + 10_000].strip():
            ids.append(vocab.setdefault(char, len(vocab)))
    with h5py.File(path, "w") as f:
        dset = f.create_dataset("tokens", (0,), maxshape=(None,), dtype="int32")
        for piece in np.array_split(np.array(ids, dtype=np.uint8), 3):
            dset.resize((dset.shape[0] + len(piece),))
            dset[-len(piece) :] = piece
    return vocab


def _linear_lines(n: int, count: int) -> list[str]:
    from hf_experiments.arrows.linear_language import generate_linear_lines

    m = make_sparse_invertible(n, 2, np.random.default_rng(0))
    return [line.decode() for line in generate_linear_lines(m, count, 0.01, seed=[0, 0])]


def test_original_linear_h5_is_read_line_for_line(tmp_path):
    lines = _linear_lines(N, 1500)  # 16 characters a line: every 10,000-character chunk loses its last newline
    h5 = tmp_path / "Matid4_2_v1k.h5"
    write_original_h5(h5, lines, {"$": 0, "0": 1, "1": 2, "_": 3})
    exp, data = _data(_linear_args(tmp_path, matrix_path=None, matrix_n=N, dataset_path=str(h5), n_val=100))
    raw = load_dataset(str(dataset_folder(exp.cfg.data, exp.cfg.run.save_root)))
    assert (
        list(raw["train"]["text"]) + list(raw["validation"]["text"]) == lines
    )  # runs of two lines (a lost newline) split
    assert list(raw["validation"]["text"]) == lines[-100:]
    assert data["train"].num_rows == 1400 and len(data["train"][0]["input_ids"]) == 2 * N + 7 + 1


def test_original_primes_h5_with_its_saved_tokenizer(tmp_path):
    import torch

    from hf_experiments.arrows.primes import generate_prime_lines

    lines = [line.decode() for line in generate_prime_lines(1200, 1, 2, seed=0)]
    h5 = tmp_path / "primes_1_2.h5"
    torch.save(write_original_h5(h5, lines), tmp_path / "primes.pt")  # as tok_text_to_h5 saved tokenizers/<name>.pt
    argv = _linear_args(
        tmp_path, task="primes", max_n_digits=2, dataset_path=str(h5), h5_vocab=str(tmp_path / "primes.pt"), n_val=50
    )
    exp, _ = _data(argv)
    raw = load_dataset(str(dataset_folder(exp.cfg.data, exp.cfg.run.save_root)))
    kept = list(raw["train"]["text"]) + list(raw["validation"]["text"])
    # a line that lost a space at a chunk edge is skipped; every other line comes back, in order
    assert 0.95 * len(lines) < len(kept) <= len(lines)
    it = iter(lines)
    assert all(line in it for line in kept)


def test_h5_that_does_not_fit_the_config_is_a_config_error(tmp_path, monkeypatch, capsys):
    from tests.helpers import assert_config_error

    h5 = tmp_path / "lin.h5"
    write_original_h5(h5, _linear_lines(N, 300), {"$": 0, "0": 1, "1": 2, "_": 3})
    base = {"experiment": "arrows", "dataset_path": str(h5), "n_val": 20, **TINY}
    assert_config_error(tmp_path, monkeypatch, capsys, {**base, "matrix_n": 6}, "dataset_path", "(matrix_n=4)")
    assert_config_error(tmp_path, monkeypatch, capsys, {**base, "task": "primes"}, "h5_vocab", "tokenizers/")
    assert_config_error(tmp_path, monkeypatch, capsys, {**base, "matrix_n": N, "n_val": 400}, "n_val", "lines of")
    swapped = tmp_path / "swapped.json"
    swapped.write_text(json.dumps({"$": 0, "_": 1, "1": 2, "0": 3, "\n": 4}))
    cfg = {**base, "matrix_n": N, "h5_vocab": str(swapped)}
    assert_config_error(tmp_path, monkeypatch, capsys, cfg, "dataset_path", "decodes to")


# --------------------------------------------------------------------------------------------
# The paper's finding, with the shipped configs (minutes on CPU)
# --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_shipped_linear_configs_backward_is_harder(tmp_path):
    """The two shipped runs (about 11 min each on 2 busy cores; run side by side) reproduce the finding."""
    procs = {}
    for d in ("forward", "backward"):
        cfg = json.loads((ROOT / "configs" / f"linear_{d}.json").read_text())
        cfg["matrix_path"] = str(ROOT / cfg["matrix_path"])  # the shipped path is relative to the repo root
        path = write_config(tmp_path / f"linear_{d}.json", **cfg, save_root=str(tmp_path), report_to="none")
        procs[d] = popen("--config", str(path))
    for proc in procs.values():
        out, _ = proc.communicate(timeout=3600)
        assert proc.returncode == 0, out[-3000:]
    loss = {d: json.loads((tmp_path / f"linear_{d}" / "metrics.json").read_text())["mean_token_loss"] for d in procs}
    assert loss["backward"] > loss["forward"] * 1.05, loss


def test_sweep_over_training_seeds_summarises_the_paired_gap_with_an_interval(tmp_path):
    from hf_experiments.arrows.analysis import sweep_summary
    from hf_experiments.core.stats import mean_ci

    script = _script("arrows_sparsity_sweep")
    base = write_config(
        tmp_path / "base.json", experiment="arrows", task="linear", matrix_n=N, num_vectors=200, n_val=32,
        max_steps=2, save_steps=2, **TINY,
    )  # fmt: skip
    argv = ["--config", str(base), "--ks", "2", "--seeds", "3", "4", "--out", str(tmp_path / "sw")]
    assert script.main(argv) == 0
    rows = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    assert sorted((r["train_seed"], r["direction"]) for r in rows) == [
        (3, "backward"), (3, "forward"), (4, "backward"), (4, "forward"),
    ]  # fmt: skip
    for seed in (3, 4):
        run_cfg = json.loads(next((tmp_path / "sw").glob(f"*_forward_seed{seed}/run_config.json")).read_text())
        assert run_cfg["seed"] == seed
    (summary,) = json.loads((tmp_path / "sw" / "sweep_summary.json").read_text())
    gaps = sorted({r["train_seed"]: r["relative_gap"] for r in rows}.values())
    mean, half = mean_ci(gaps)
    assert summary["n_seeds"] == 2 and summary["relative_gap_mean"] == pytest.approx(mean)
    assert [summary["relative_gap_lo"], summary["relative_gap_hi"]] == pytest.approx([mean - half, mean + half])
    assert (tmp_path / "sw" / "sweep_gap.png").stat().st_size > 0
    assert sweep_summary([{**r, "train_seed": None} for r in rows]) == []  # one unseeded run per matrix: no interval
