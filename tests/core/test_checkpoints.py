"""Completing and rotating checkpoints: a checkpoint is marked only after everything is in it, rewriting one
unmarks it first, and rotation counts only complete checkpoints and never removes the one just completed, so a
crash at any moment leaves a complete checkpoint to resume."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from datasets import Dataset
from transformers import TrainerCallback

from hf_experiments.core.config import ExperimentTrainingArguments
from hf_experiments.core.run_folder import (
    COMPLETE_MARKER,
    RUN_CONFIG,
    is_complete,
    last_complete_checkpoint,
    rotate_checkpoints,
)
from hf_experiments.core.trainer import ExperimentTrainer


def _folders(run_dir, steps, complete):
    for s in steps:
        (run_dir / f"checkpoint-{s}").mkdir(parents=True)
        if s in complete:
            (run_dir / f"checkpoint-{s}" / COMPLETE_MARKER).write_text("{}")


def test_rotation_counts_only_complete_checkpoints_and_keeps_the_one_just_completed(tmp_path):
    # checkpoint-7: a save cut short earlier (no marker); transformers' rotation would keep it as "the newest"
    _folders(tmp_path, [3, 4, 5, 7], complete={3, 4, 5})
    removed = rotate_checkpoints(tmp_path, 1, keep=(tmp_path / "checkpoint-5",))
    assert [p.name for p in removed] == ["checkpoint-3", "checkpoint-4"]
    assert last_complete_checkpoint(tmp_path).name == "checkpoint-5"
    assert (tmp_path / "checkpoint-7").is_dir() and not is_complete(tmp_path / "checkpoint-7")


def test_rotation_keeps_the_best_checkpoint_beyond_the_limit(tmp_path):
    _folders(tmp_path, [1, 2, 3, 4], complete={1, 2, 3, 4})
    rotate_checkpoints(tmp_path, 2, keep=(tmp_path / "checkpoint-4", str(tmp_path / "checkpoint-1")))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-1", "checkpoint-4"]
    assert rotate_checkpoints(tmp_path, None) == []  # no limit: nothing is ever deleted


class _Witness(TrainerCallback):
    """What an integration's on_save (e.g. a W&B checkpoint upload) finds in the checkpoint."""

    def __init__(self):
        self.seen = []

    def on_save(self, args, state, control, **kwargs):
        ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        self.seen.append(
            (state.global_step, is_complete(ckpt), (ckpt / RUN_CONFIG).is_file(), (ckpt / "extra.txt").is_file())
        )


class _ExtrasTrainer(ExperimentTrainer):
    def write_checkpoint_extras(self, folder):
        # a rewrite of a checkpoint is unmarked before anything is written into it again
        self.marked_while_rewriting = getattr(self, "marked_while_rewriting", False) or is_complete(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "extra.txt").write_text("x")


def _trainer(tmp_path, **over):
    (tmp_path / RUN_CONFIG).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / RUN_CONFIG).write_text(json.dumps({"experiment": "toy"}))
    data = Dataset.from_dict({"x": torch.randn(16, 2).tolist(), "labels": torch.randn(16).tolist()})

    class Toy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 1)

        def forward(self, x, labels=None):
            pred = self.lin(x).squeeze(-1)
            return {"loss": torch.nn.functional.mse_loss(pred, labels)}

    args = ExperimentTrainingArguments(
        output_dir=str(tmp_path),
        report_to="none",
        per_device_train_batch_size=4,
        max_steps=4,
        save_steps=2,
        logging_steps=1,
        **over,
    )
    return _ExtrasTrainer(model=Toy(), args=args, train_dataset=data, callbacks=[_Witness()])


def test_other_callbacks_see_only_complete_checkpoints_with_everything_in_them(tmp_path):
    trainer = _trainer(tmp_path, save_total_limit=1)
    witness = next(c for c in trainer.callback_handler.callbacks if isinstance(c, _Witness))
    trainer.train()
    assert witness.seen == [(2, True, True, True), (4, True, True, True)]
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-4"]


def test_a_checkpoint_rewritten_at_the_same_step_is_unmarked_first(tmp_path, monkeypatch):
    trainer = _trainer(tmp_path)
    trainer.train()
    assert is_complete(tmp_path / "checkpoint-4") and not trainer.marked_while_rewriting
    trainer._save_checkpoint(trainer.model, None)  # the same step saved again (e.g. preemption, then epoch end)
    assert trainer.marked_while_rewriting is False  # the hook found the folder unmarked
    assert is_complete(tmp_path / "checkpoint-4")
    # negative control: without the unmarking, the rewrite happens under a valid marker
    import hf_experiments.core.trainer_internals as internals

    monkeypatch.setattr(internals, "unmark", lambda folder: None)
    trainer._save_checkpoint(trainer.model, None)
    assert trainer.marked_while_rewriting is True
