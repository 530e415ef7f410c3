"""The generic framework features (every experiment gets them; docs/framework.md), checked on non-recurrent
experiments: `per_device_batch_size` (uneven micro-batches == one big batch, through `trainers/run.py`),
length bucketing on real arithmetic rows, samplers that follow a training set growing between epochs, the step
LR schedule in the logged history, `grad_clip: none`, bf16 autocast, `restore_from` with the checkpoint's own
config, `fresh_start`, `init_checkpt`, and TensorBoard scalars per validation set."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset

from hf_experiments.arrows.configuration_gpt import GPTConfig
from hf_experiments.arrows.modeling_gpt import GPTForCausalLM
from hf_experiments.core.config import ConfigError, ExperimentTrainingArguments
from hf_experiments.core.parsing import parse_config_strict
from hf_experiments.core.trainer import ExperimentTrainer
from tests.helpers import final_weights, logged_losses, write_config


def _arrows(tmp_path: Path, name: str, **over) -> Path:
    cfg = dict(
        experiment="arrows",
        task="primes",
        max_n_digits=2,
        n_pairs=600,
        n_val=32,
        model_preset="tiny",
        dropout=0.0,
        max_steps=4,
        save_steps=2,
        logging_steps=1,
        optim="sgd",
        learning_rate=0.5,
        per_device_train_batch_size=10,
        report_to="none",
        save_root=str(tmp_path / "out"),
        dataloader_num_workers=0,
        disable_tqdm=True,
        save_total_limit=None,
    )
    cfg.update(over)
    return write_config(tmp_path / f"{name}.json", **cfg)


def _run_here(*argv: str) -> int:
    """`trainers/run.py` in this process (no interpreter start-up)."""
    from hf_experiments.cli import main

    try:
        return int(main(list(argv)) or 0)
    except SystemExit as e:
        return int(e.code)


def _assert_same_weights(a: dict, b: dict, exact: bool = False) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if exact:
            assert torch.equal(a[k], b[k]), k
        else:
            torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def _tiny_gpt(vocab: int = 20) -> GPTForCausalLM:
    torch.manual_seed(0)
    return GPTForCausalLM(GPTConfig(vocab_size=vocab, n_layers=2, n_heads=2, embed_dim=32, attn_length=64, dropout=0.0))


# --- per_device_batch_size ------------------------------------------------------------------------------


def test_uneven_micro_batches_through_run_py_equal_one_big_batch(tmp_path):
    """Batch 10 capped at 4 rows per forward (4, 3, 3) trains exactly like batch 10 in one forward pass (the
    same update batches: the cap only decides how each is split)."""
    for name, cap in (("one", 10), ("split", 4)):
        assert _run_here("--config", str(_arrows(tmp_path, name, per_device_batch_size=cap))) == 0
    one, split = tmp_path / "out" / "one", tmp_path / "out" / "split"
    _assert_same_weights(final_weights(one), final_weights(split))
    for (s1, l1), (s2, l2) in zip(logged_losses(one), logged_losses(split), strict=True):
        assert s1 == s2 and l1 == pytest.approx(l2, rel=1e-5)  # the micro-batch losses add up to the batch's
    args = torch.load(split / "checkpoint-4" / "training_args.bin", weights_only=False)
    assert args.gradient_accumulation_steps == 3 and args.per_device_eval_batch_size == 4


def test_streamed_training_set_rejects_micro_batching(tmp_path):
    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            yield {"input_ids": torch.zeros(4, 8, dtype=torch.long)}

    args = ExperimentTrainingArguments(output_dir=str(tmp_path), per_device_batch_size=2, max_steps=3, report_to="none")
    with pytest.raises(ValueError, match="per_device_batch_size=2"):
        ExperimentTrainer(model=_tiny_gpt(), args=args, train_dataset=Stream())


# --- length bucketing on real data -----------------------------------------------------------------------


def _arithmetic_rows(n: int = 768) -> tuple[Dataset, object]:
    from hf_experiments.blotch.arithmetic import ProblemParams, row_text, sample_problems, solve
    from hf_experiments.blotch.tokenization_arith import arith_tokenizer, encode_rows

    problems = sample_problems(n, ProblemParams(max_num=999, max_ents=5), np.random.default_rng(0))
    texts = [row_text(p, "=".join(s for s, _ in solve(p))) for p in problems]
    tok = arith_tokenizer()
    return Dataset.from_dict({"input_ids": [r.tolist() for r in encode_rows(tok, texts)]}), tok


def _padding_of_epoch(tmp_path: Path, data: Dataset, tok, bucketed: bool) -> float:
    from transformers import DataCollatorForLanguageModeling

    args = ExperimentTrainingArguments(
        output_dir=str(tmp_path / str(bucketed)),
        per_device_train_batch_size=32,
        length_bucketed_sampling=bucketed,
        report_to="none",
        seed=0,
    )
    trainer = ExperimentTrainer(
        model=_tiny_gpt(len(tok)),
        args=args,
        train_dataset=data,
        data_collator=DataCollatorForLanguageModeling(tok, mlm=False),
    )
    masks = [b["attention_mask"] for b in trainer.get_train_dataloader()]
    assert sum(int(m.sum()) for m in masks) == sum(len(r) for r in data["input_ids"])  # every row once
    return 1.0 - sum(int(m.sum()) for m in masks) / sum(m.numel() for m in masks)


def test_bucketing_pads_less_than_random_batching_on_arithmetic_rows(tmp_path):
    """Real rows (sums of 2..5 terms with their step-by-step solutions, 26..754 tokens), the Trainer's own
    random batches vs length-bucketed ones, through the real dataloader and collator (measured: 53% vs 4%)."""
    data, tok = _arithmetic_rows()
    lengths = np.array([len(r) for r in data["input_ids"]])
    assert lengths.max() > 2 * lengths.min()  # the lengths really vary
    random, bucketed = _padding_of_epoch(tmp_path, data, tok, False), _padding_of_epoch(tmp_path, data, tok, True)
    assert random > 0.3 and bucketed < 0.2 * random


# --- a training set that grows between epochs ------------------------------------------------------------


class _Growing(torch.utils.data.Dataset):
    """A mutable training set (like the blotch data cache): rows appended between epochs."""

    def __init__(self, n: int) -> None:
        self.rows: list[list[int]] = []
        self.grow(n)

    def grow(self, n: int) -> None:
        start = len(self.rows)
        self.rows += [[i] * (2 + i % 7) for i in range(start, start + n)]  # first token = row index

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.rows[i]}

    def row_lengths(self) -> np.ndarray:
        return np.array([len(r) for r in self.rows])


def _first_tokens(rows: list[dict]) -> dict:
    ids = torch.nn.utils.rnn.pad_sequence([torch.tensor(r["input_ids"]) for r in rows], batch_first=True)
    return {"input_ids": ids}  # (B, T)


@pytest.mark.parametrize("bucketed", [False, True])
def test_samplers_read_the_training_set_size_every_epoch(tmp_path, bucketed):
    data = _Growing(40)
    args = ExperimentTrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=8,
        per_device_batch_size=3,
        length_bucketed_sampling=bucketed,
        report_to="none",
        seed=0,
    )
    trainer = ExperimentTrainer(model=_tiny_gpt(200), args=args, train_dataset=data, data_collator=_first_tokens)
    loader = trainer.get_train_dataloader()

    def epoch(e: int) -> list[int]:
        loader.set_epoch(e)
        seen = [int(i) for b in loader for i in b["input_ids"][:, 0]]
        assert len(seen) == len(set(seen)) == len(data) // 8 * 8  # each row at most once, whole batches
        return seen

    assert len(loader) == 40 // 8 * 3 and max(epoch(0)) < 40
    data.grow(40)  # a callback added rows between epochs
    assert len(loader) == 80 // 8 * 3
    assert max(epoch(1)) >= 40


# --- LR schedule and clipping ----------------------------------------------------------------------------


def test_step_schedule_from_seed_names_gives_the_logged_learning_rates(tmp_path):
    """The seed's `lr_sched.type step` with milestones [3, 5], gamma 0.5, 2 warm-up steps: step s (1-based)
    trains with lr * min(1, s/2) * 0.5^#{m <= s-1}."""
    cfg = _arrows(
        tmp_path,
        "sched",
        max_steps=7,
        save_steps=7,
        learning_rate=0.1,
        lr_warmup=2,
        **{"lr_sched.type": "step", "lr_sched.steps": [3, 5], "lr_sched.gamma": 0.5},
    )
    assert _run_here("--config", str(cfg)) == 0
    state = json.loads((tmp_path / "out" / "sched" / "checkpoint-7" / "trainer_state.json").read_text())
    lrs = [h["learning_rate"] for h in state["log_history"] if "learning_rate" in h]
    assert lrs == pytest.approx([0.05, 0.1, 0.1, 0.05, 0.05, 0.025, 0.025])


def test_step_schedule_rejects_other_schedules_and_bad_milestones(tmp_path):
    with pytest.raises(ConfigError, match="lr_sched_steps"):
        parse_config_strict(["--config", str(_arrows(tmp_path, "c", lr_sched_steps=[3]))])  # linear default
    with pytest.raises(ConfigError, match="lr_sched_steps"):
        parse_config_strict(["--config", str(_arrows(tmp_path, "c", lr_sched_steps=[0], lr_scheduler_type="constant"))])
    with pytest.raises(ConfigError, match="gradient_accumulation_steps"):
        parse_config_strict(
            ["--config", str(_arrows(tmp_path, "c", per_device_batch_size=3, gradient_accumulation_steps=2))]
        )
    with pytest.raises(ConfigError, match="per_device_batch_size"):
        parse_config_strict(["--config", str(_arrows(tmp_path, "c", per_device_batch_size=0))])


@pytest.mark.parametrize(
    "spelling",
    [
        {"grad_clip": "none"},
        {"grad_clip": None},
        {"max_grad_norm": None},
        {"grad_clip": "None"},
        "--grad_clip none",
        "--grad_clip=none",
    ],
)
def test_grad_clip_none_in_every_spelling_means_no_clipping(tmp_path, spelling):
    over = spelling if isinstance(spelling, dict) else {}
    cli = spelling.split() if isinstance(spelling, str) else []
    cfg = parse_config_strict(["--config", str(_arrows(tmp_path, "clip", **over)), *cli])
    assert cfg.training.max_grad_norm == 0.0


def _one_sgd_step(tmp_path: Path, max_grad_norm: float) -> tuple[float, float]:
    """(||update|| / lr, the gradient norm Trainer logged) of one SGD step."""
    rng = np.random.default_rng(0)
    data = Dataset.from_dict({"input_ids": rng.integers(0, 20, size=(8, 12)).tolist()})
    data = data.add_column("labels", data["input_ids"])
    model = _tiny_gpt()
    before = [p.detach().clone() for p in model.parameters()]
    args = ExperimentTrainingArguments(
        output_dir=str(tmp_path / str(max_grad_norm)),
        max_steps=1,
        optim="sgd",
        learning_rate=1.0,
        lr_scheduler_type="constant",
        logging_steps=1,
        per_device_train_batch_size=8,
        max_grad_norm=max_grad_norm,
        report_to="none",
        save_strategy="no",
    )
    trainer = ExperimentTrainer(model=model, args=args, train_dataset=data)
    trainer.train()
    step = torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(model.parameters(), before)))
    logged = next(h["grad_norm"] for h in trainer.state.log_history if "grad_norm" in h)
    return float(step), float(logged)


def test_no_clipping_moves_by_the_whole_gradient_and_clipping_does_not(tmp_path):
    cfg = parse_config_strict(["--config", str(_arrows(tmp_path, "clip", grad_clip="none"))])
    step, grad = _one_sgd_step(tmp_path, cfg.training.max_grad_norm)
    assert grad > 0.01 and step == pytest.approx(grad, rel=1e-4)
    clipped, grad_c = _one_sgd_step(tmp_path, 1e-3)  # control: clipping really shortens the step
    assert grad_c == pytest.approx(grad, rel=1e-4) and clipped == pytest.approx(1e-3, rel=1e-3)


# --- mixed precision -------------------------------------------------------------------------------------


@pytest.mark.parametrize("bf16", [True, False])
def test_bf16_trains_under_bf16_autocast_with_float32_weights(tmp_path, bf16):
    """On this CPU `bf16: true` (seed: `amp`) runs the forward pass under torch's bf16 autocast (matmuls in
    bf16), the weights and optimizer staying float32; false keeps everything float32."""
    rng = np.random.default_rng(0)
    data = Dataset.from_dict({"input_ids": rng.integers(0, 20, size=(8, 12)).tolist()})
    data = data.add_column("labels", data["input_ids"])
    model = _tiny_gpt()
    seen: list[torch.dtype] = []
    linear = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
    linear.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
    args = ExperimentTrainingArguments(
        output_dir=str(tmp_path),
        max_steps=1,
        per_device_train_batch_size=8,
        bf16=bf16,
        report_to="none",
        save_strategy="no",
    )
    ExperimentTrainer(model=model, args=args, train_dataset=data).train()
    assert set(seen) == {torch.bfloat16 if bf16 else torch.float32}
    assert all(p.dtype == torch.float32 for p in model.parameters())


# --- restore_from / fresh_start / init_checkpt -----------------------------------------------------------


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """An arrows run with micro-batching (8 steps, checkpoints every 4), run to the end."""
    tmp = tmp_path_factory.mktemp("finished")
    cfg = _arrows(tmp, "a", max_steps=8, save_steps=4, per_device_batch_size=4, dropout=0.1)
    assert _run_here("--config", str(cfg)) == 0
    return tmp / "out" / "a"


def test_checkpoints_carry_the_run_config_and_rerun_it(finished):
    stored = json.loads((finished / "checkpoint-4" / "run_config.json").read_text())
    assert stored == json.loads((finished / "run_config.json").read_text())
    assert "gradient_accumulation_steps" not in stored  # derived from per_device_batch_size on every parse
    cfg = parse_config_strict(["--config", str(finished / "run_config.json")])
    assert cfg.to_dict() == stored and cfg.training.gradient_accumulation_steps == 3


def test_restore_from_a_moved_checkpoint_restores_its_config_with_overrides(tmp_path, finished):
    """The seed's `-restore`: no --config; the checkpoint's config, the command line overriding. Continuing
    from step 4 into another run folder ends exactly where the original run did."""
    moved = tmp_path / "elsewhere" / "checkpoint-4"
    shutil.copytree(finished / "checkpoint-4", moved)  # the checkpoint alone, away from its run folder
    code = _run_here(
        "--restore_from", str(moved), "--exp_name", "b", "--save_root", str(tmp_path), "--logging_steps", "2"
    )
    assert code == 0
    b = tmp_path / "b"
    _assert_same_weights(final_weights(finished), final_weights(b), exact=True)
    old, new = (json.loads((d / "run_config.json").read_text()) for d in (finished, b))
    assert new.pop("logging_steps") == 2 and new.pop("exp_name") == "b" and new.pop("restore_from") == str(moved)
    assert new.pop("save_root") == str(tmp_path)
    assert {k: v for k, v in old.items() if k not in ("logging_steps", "exp_name", "restore_from", "save_root")} == new
    state = json.loads((b / "checkpoint-8" / "trainer_state.json").read_text())
    assert [h["step"] for h in state["log_history"] if "loss" in h and h["step"] > 4] == [6, 8]
    # Rerunning the same command (after a crash, say) resumes b's own progress, not the restore point again.
    from hf_experiments.core.runner import prepare_run

    again = parse_config_strict(["--restore_from", str(moved), "--exp_name", "b", "--save_root", str(tmp_path)])
    assert prepare_run(again) == str(b / "checkpoint-8")
    with pytest.raises(ConfigError, match="fresh_start"):  # would move the checkpoint it restores away
        parse_config_strict(["--restore_from", str(b / "checkpoint-8"), "--fresh_start", "true"])


def test_restore_from_without_a_stored_config_is_a_config_error(tmp_path, finished):
    bare = tmp_path / "bare"
    shutil.copytree(finished / "checkpoint-4", bare, ignore=shutil.ignore_patterns("run_config.json"))
    with pytest.raises(ConfigError, match=r"run_config\.json"):
        parse_config_strict(["--restore_from", str(bare)])


def test_fresh_start_moves_the_old_run_aside_and_starts_over(tmp_path, finished):
    run_dir = tmp_path / "out" / "a"
    shutil.copytree(finished, run_dir)
    old_weights = final_weights(run_dir)
    cfg = _arrows(tmp_path, "a", max_steps=2, save_steps=2, per_device_batch_size=4)
    assert _run_here("--config", str(cfg), "--fresh_start", "true") == 0
    aside = [p for p in (tmp_path / "out").iterdir() if p.name.startswith("a.old-")]
    assert len(aside) == 1
    _assert_same_weights(final_weights(aside[0]), old_weights, exact=True)  # nothing lost
    state = json.loads((run_dir / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2 and sorted(p.name for p in run_dir.glob("checkpoint-*")) == ["checkpoint-2"]


def test_init_checkpt_loads_weights_only(tmp_path, finished):
    """Weights from checkpoint-4, but step count and optimizer start fresh: with lr 0 the final weights are
    checkpoint-4's and the run still takes its own 2 steps from step 0."""
    cfg = _arrows(tmp_path, "c", max_steps=2, save_steps=2, learning_rate=0.0)
    assert _run_here("--config", str(cfg), "--init_checkpt", str(finished / "checkpoint-4")) == 0
    from safetensors.torch import load_file

    _assert_same_weights(
        final_weights(tmp_path / "out" / "c"),
        load_file(str(finished / "checkpoint-4" / "model.safetensors")),
        exact=True,
    )
    state = json.loads((tmp_path / "out" / "c" / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2


# --- TensorBoard per validation set ----------------------------------------------------------------------


def _token_accuracy(pred) -> dict[str, float]:
    preds, labels = np.asarray(pred.predictions), np.asarray(pred.label_ids)
    return {"accuracy": float((preds[:, :-1] == labels[:, 1:]).mean())}


def test_tensorboard_has_loss_and_accuracy_of_every_validation_set(tmp_path):
    """Any experiment with several evaluation sets (a dict) gets `eval/<set>_loss` and `eval/<set>_accuracy`
    scalars, equal to the evaluation's results."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rng = np.random.default_rng(0)

    def split(n: int) -> Dataset:
        ids = rng.integers(0, 20, size=(n, 12)).tolist()
        return Dataset.from_dict({"input_ids": ids, "labels": ids})

    args = ExperimentTrainingArguments(
        output_dir=str(tmp_path),
        max_steps=2,
        per_device_train_batch_size=8,
        report_to="tensorboard",
        save_strategy="no",
        eval_strategy="steps",
        eval_steps=2,
    )
    trainer = ExperimentTrainer(
        model=_tiny_gpt(),
        args=args,
        train_dataset=split(32),
        eval_dataset={"near": split(16), "far": split(8)},
        compute_metrics=_token_accuracy,
        preprocess_logits_for_metrics=lambda logits, labels: logits.argmax(-1),
    )
    trainer.train()  # evaluates at step 2, then closes (flushes) the writer
    metrics = {k: v for h in trainer.state.log_history for k, v in h.items() if k.startswith("eval_")}
    scalars: dict[str, float] = {}
    for events in (tmp_path / "runs").rglob("events.out.tfevents*"):
        acc = EventAccumulator(str(events))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            scalars[tag] = acc.Scalars(tag)[-1].value
    for s in ("near", "far"):
        for m in ("loss", "accuracy"):
            assert scalars[f"eval/{s}_{m}"] == pytest.approx(metrics[f"eval_{s}_{m}"], rel=1e-5)
    assert metrics["eval_near_loss"] != metrics["eval_far_loss"]  # two sets, really evaluated apart


def test_step_schedule_equals_its_formula_and_resumes_exactly():
    """torch's LinearLR + MultiStepLR give the seed formula lr * min(1, (s+1)/W) * gamma^#{m <= s} up to
    float rounding (relative 1e-12), milestones inside the warm-up included; a schedule restored from its
    state_dict continues bit for bit."""
    from hf_experiments.core.schedules import step_schedule

    def lrs(steps: int, resume_at: int | None = None) -> list[float]:
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=3e-3)
        sched = step_schedule(opt, [2, 40, 40, 70], 0.3, warmup_steps=25)
        out = []
        for s in range(steps):
            if s == resume_at:  # a new optimizer and schedule restored from the saved states
                state = (opt.state_dict(), sched.state_dict())
                opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=3e-3)
                sched = step_schedule(opt, [2, 40, 40, 70], 0.3, warmup_steps=25)
                opt.load_state_dict(state[0])
                sched.load_state_dict(state[1])
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return out

    formula = [3e-3 * min(1.0, (s + 1) / 25) * 0.3 ** sum(m <= s for m in (2, 40, 40, 70)) for s in range(100)]
    assert lrs(100) == pytest.approx(formula, rel=1e-12)
    assert lrs(100, resume_at=33) == lrs(100)


@pytest.mark.parametrize("warmup", [0, 1, 3, 25])
def test_step_schedule_resumes_from_the_lambdalr_state_of_earlier_releases(warmup):
    """A run started before the step schedule moved to torch's schedulers resumes on the same rates."""
    import numpy as np

    from hf_experiments.core.schedules import step_schedule

    milestones, gamma, lr = [2, 40, 40, 70], 0.3, 3e-3

    def factor(step: int) -> float:  # the earlier LambdaLR, verbatim in behaviour
        warm = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
        return warm * gamma ** int(np.searchsorted(np.sort(milestones), step, side="right"))

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    old = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    for _ in range(33):
        opt.step()
        old.step()
    states = (opt.state_dict(), old.state_dict())
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    new = step_schedule(opt, milestones, gamma, warmup)
    opt.load_state_dict(states[0])
    new.load_state_dict(states[1])
    lrs = []
    for _ in range(33, 100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        new.step()
    assert lrs == pytest.approx([lr * factor(s) for s in range(33, 100)], rel=1e-12)
