"""The contract with `transformers.Trainer`'s private API that `hf_experiments/core/trainer_internals.py` relies
on, checked on the installed transformers: every private method we override or call exists with the parameters
we pass, the 7-tuple of `set_initial_training_values` has the layout we index, the training loop calls the
methods in the order we assume, rotation happens inside `_save_checkpoint` before `on_save`, and transformers'
schedules carry the `num_training_steps` keyword we stretch. If transformers renames any of them, this fails
loudly instead of a run silently training for the wrong number of epochs or losing checkpoints.

Also: no other file of the package touches a private `Trainer` attribute (the fence holds)."""

from __future__ import annotations

import ast
import inspect
import re
from functools import partial
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader
from transformers import Trainer, TrainingArguments
from transformers.optimization import get_scheduler

ROOT = Path(__file__).resolve().parents[2]
FENCE = ROOT / "hf_experiments" / "core" / "trainer_internals.py"

PRIVATE_METHODS = {
    "_save_checkpoint": ["self", "model", "trial"],
    "_get_collator_with_removed_columns": ["self", "data_collator", "description"],
    "_remove_unused_columns": ["self", "dataset", "description"],
    "_init_training_state": [
        "self",
        "max_steps",
        "num_update_steps_per_epoch",
        "num_train_epochs",
        "resume_from_checkpoint",
        "trial",
    ],
    "_run_epoch": [
        "self",
        "model",
        "epoch",
        "train_dataloader",
        "steps_in_epoch",
        "num_update_steps_per_epoch",
        "trial",
        "ignore_keys_for_eval",
        "start_time",
        "resume_from_checkpoint",
        "epochs_trained",
        "steps_trained_in_current_epoch",
    ],
    "set_initial_training_values": ["self", "args", "dataloader"],
    "_load_rng_state": ["self", "checkpoint"],
}


@pytest.mark.parametrize("name", sorted(PRIVATE_METHODS))
def test_private_methods_exist_with_the_parameters_we_use(name):
    assert hasattr(Trainer, name), f"transformers.Trainer.{name} is gone: update core/trainer_internals.py"
    params = list(inspect.signature(getattr(Trainer, name)).parameters)
    assert params == PRIVATE_METHODS[name], f"Trainer.{name}{params}: update core/trainer_internals.py"


def _source(name: str) -> str:
    return inspect.getsource(getattr(Trainer, name))


def test_the_training_loop_calls_them_in_the_order_we_assume():
    loop = _source("_inner_training_loop")
    order = [
        loop.index(s)
        for s in (
            "self.get_train_dataloader()",
            "self.set_initial_training_values(",
            "self._init_training_state(",
            "self._run_epoch(",
        )
    ]
    assert order == sorted(order)
    # `_run_epoch` gets the epoch's step counts by keyword (our override re-measures them)
    call = loop[loop.index("self._run_epoch(") :]
    for kw in ("steps_in_epoch=", "num_update_steps_per_epoch=", "epoch="):
        assert kw in call[: call.index(")\n")]
    assert re.search(r"for epoch in range\(epochs_trained, num_train_epochs\)", loop)
    assert "self.current_gradient_accumulation_steps = " in _source("_run_epoch")  # set per update


def test_rotation_happens_inside_save_checkpoint_before_on_save():
    save = _source("_save_checkpoint")
    assert "rotate_checkpoints(" in save and "save_total_limit=self.args.save_total_limit" in save
    caller = _source("_maybe_log_save_evaluate")
    assert caller.index("self._save_checkpoint(") < caller.index("self.callback_handler.on_save(")


@pytest.mark.parametrize("with_loss_func", [False, True])
def test_training_step_divides_exactly_the_losses_the_fence_calls_unscaled(tmp_path, with_loss_func):
    """Behaviour, not source text (the rule is spelled differently across releases): the Trainer divides a
    loss by `current_gradient_accumulation_steps` exactly when `loss_is_scaled_for_accumulation` says no."""
    from hf_experiments.core.trainer_internals import loss_is_scaled_for_accumulation, micro_batches_in_this_update

    class Constant(torch.nn.Module):  # forward(x, labels) takes no num_items_in_batch: a "mean" loss
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(()))

        def forward(self, x, labels=None):
            return {"loss": 6.0 * self.w}

    loss_func = (lambda outputs, labels, num_items_in_batch=None: outputs["loss"]) if with_loss_func else None
    trainer = Trainer(
        model=Constant(),
        compute_loss_func=loss_func,
        args=TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True, gradient_accumulation_steps=3),
    )
    trainer.current_gradient_accumulation_steps = 3  # what `_run_epoch` sets for an update of 3 micro-batches
    assert micro_batches_in_this_update(trainer) == 3
    loss = trainer.training_step(trainer.model, {"x": torch.zeros(2, 1), "labels": torch.zeros(2)}, 6)
    scaled = loss_is_scaled_for_accumulation(trainer, 6)
    assert scaled is with_loss_func
    assert float(loss) == pytest.approx(6.0 if scaled else 2.0)


def test_the_scheduler_flag_is_what_create_scheduler_sets():
    assert "self._created_lr_scheduler = True" in _source("create_scheduler")
    assert "if self._created_lr_scheduler:" in _source("_prepare_for_training")


def _tiny_trainer(tmp_path, **kw) -> Trainer:
    model = torch.nn.Linear(2, 1)
    args = TrainingArguments(
        output_dir=str(tmp_path), report_to="none", use_cpu=True, per_device_train_batch_size=2, **kw
    )
    return Trainer(model=model, args=args)


def test_set_initial_training_values_tuple_layout(tmp_path):
    loader = DataLoader(list(range(10)), batch_size=2)  # 5 batches
    steps = _tiny_trainer(tmp_path, max_steps=7).set_initial_training_values(
        TrainingArguments(output_dir=str(tmp_path), max_steps=7, report_to="none", use_cpu=True), loader
    )
    assert len(steps) == 7
    assert steps[0] == 2 and steps[1] == 5 and steps[5] == 5 and steps[6] == 7  # epochs, updates/epoch, max_steps
    epochs = _tiny_trainer(tmp_path).set_initial_training_values(
        TrainingArguments(output_dir=str(tmp_path), num_train_epochs=3, report_to="none", use_cpu=True), loader
    )
    assert epochs[0] == 3 and epochs[6] == 15


@pytest.mark.parametrize("kind", ["linear", "cosine", "polynomial", "cosine_with_restarts", "constant_with_warmup"])
def test_schedules_carry_the_horizon_we_stretch(kind):
    optim = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = get_scheduler(kind, optim, num_warmup_steps=2, num_training_steps=10)
    lambdas = [fn for fn in sched.lr_lambdas if isinstance(fn, partial)]
    assert lambdas, f"{kind}: transformers no longer builds its schedule from functools.partial"
    if kind != "constant_with_warmup":
        assert all("num_training_steps" in fn.keywords for fn in lambdas)


def test_the_stretched_horizon_changes_the_schedule():
    from hf_experiments.core.trainer_internals import stretch_schedule

    optim = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = get_scheduler("linear", optim, num_warmup_steps=0, num_training_steps=10)
    before = sched.lr_lambdas[0](5)
    stretch_schedule(sched, 20)
    assert before == pytest.approx(0.5) and sched.lr_lambdas[0](5) == pytest.approx(0.75)


# Trainer attributes without a leading underscore that are internals all the same (set by the training loop or
# read by its loss normalisation); the fence wraps them too.
PUBLIC_LOOKING_INTERNALS = {
    "current_gradient_accumulation_steps",
    "model_accepts_loss_kwargs",
    "compute_loss_func",
    "loss_is_scaled_for_ga",
}


def _private_trainer_names() -> set[str]:
    """Private names of `Trainer`: its class attributes, and the instance attributes a real one-step run sets."""
    import tempfile

    from datasets import Dataset

    class Toy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 1)

        def forward(self, x, labels=None):
            return {"loss": torch.nn.functional.mse_loss(self.lin(x).squeeze(-1), labels)}

    with tempfile.TemporaryDirectory() as tmp:
        data = Dataset.from_dict({"x": [[0.0, 1.0]] * 4, "labels": [1.0] * 4})
        trainer = Trainer(
            model=Toy(),
            train_dataset=data,
            args=TrainingArguments(
                output_dir=tmp,
                max_steps=1,
                report_to="none",
                use_cpu=True,
                per_device_train_batch_size=2,
                save_strategy="no",
            ),
        )
        trainer.train()
        names = set(dir(Trainer)) | set(vars(trainer))
    return {n for n in names if n.startswith("_") and not n.startswith("__")} | PUBLIC_LOOKING_INTERNALS


PRIVATE = _private_trainer_names()


def trainer_classes() -> set[str]:
    """Names of every class of the package in the MRO of one of its `Trainer` subclasses (mixins included)."""
    import importlib
    import pkgutil

    import hf_experiments

    for mod in pkgutil.walk_packages(hf_experiments.__path__, "hf_experiments."):
        if not mod.name.endswith("__main__"):
            importlib.import_module(mod.name)
    out, todo = set(), list(Trainer.__subclasses__())
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        out |= {c.__name__ for c in cls.__mro__ if c.__module__.startswith("hf_experiments")}
    return out


def private_uses(source: str, classes: set[str], where: str = "") -> list[str]:
    """Uses of `Trainer` internals: in classes named in `classes` (the package's trainers and their mixins),
    method definitions and attribute accesses on any receiver; anywhere, accesses on any receiver but `self`/`cls`
    (e.g. `trainer._x`, `kw["trainer"]._x`) and names handed to `getattr`/`setattr`/`hasattr`."""
    out = []
    tree = ast.parse(source)
    inside: set[int] = set()
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name in classes):
        for node in ast.walk(cls):
            inside.add(id(node))
            if isinstance(node, ast.FunctionDef) and node.name in PRIVATE:
                out.append(f"{where}:{node.lineno} def {cls.name}.{node.name}")
            elif isinstance(node, ast.Attribute) and node.attr in PRIVATE:
                out.append(f"{where}:{node.lineno} {cls.name} .{node.attr}")
    for node in ast.walk(tree):
        if id(node) in inside:
            continue
        if (
            isinstance(node, ast.Attribute)
            and node.attr in PRIVATE
            and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
        ):
            out.append(f"{where}:{node.lineno} .{node.attr}")
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", "") in ("getattr", "setattr", "hasattr")
            and len(node.args) > 1
            and isinstance(node.args[1], ast.Constant)
            and node.args[1].value in PRIVATE
        ):
            out.append(f"{where}:{node.lineno} {node.func.id}(..., {node.args[1].value!r})")
    return sorted(set(out))


def test_no_file_but_the_fence_touches_private_trainer_api():
    classes = trainer_classes()
    assert {"ExperimentTrainer", "BlotchCacheTrainer", "MLPTrainer", "CompressionTrainer"} <= classes
    offenders = [
        u
        for path in (ROOT / "hf_experiments").rglob("*.py")
        if path != FENCE
        for u in private_uses(path.read_text(encoding="utf-8"), classes, str(path.relative_to(ROOT)))
    ]
    assert offenders == []


def test_the_fence_check_sees_a_planted_use():
    code = (
        "class T:\n    def _run_epoch(self):\n        return self._remove_unused_columns(1)\n"
        "def f(trainer, tr, kw):\n    return trainer._created_lr_scheduler, tr._memory_tracker, "
        "kw['t']._tr_loss, getattr(tr, '_train_batch_size'), tr.current_gradient_accumulation_steps\n"
    )
    assert private_uses(code, {"T"}, "x") == [
        "x:2 def T._run_epoch",
        "x:3 T ._remove_unused_columns",
        "x:5 ._created_lr_scheduler",
        "x:5 ._memory_tracker",
        "x:5 ._tr_loss",
        "x:5 .current_gradient_accumulation_steps",
        "x:5 getattr(..., '_train_batch_size')",
    ]


def test_the_logging_accumulators_are_reset_before_on_train_begin_and_drained_as_we_assume():
    """`LoggingWindowCallback` restores `_tr_loss`, `_total_loss_scalar` and `_globalstep_last_logged` in
    `on_train_begin`: the loop must set them before that call, and the log step must divide the gathered
    `_tr_loss` by the steps since `_globalstep_last_logged` and add it to `_total_loss_scalar`."""
    loop = _source("_inner_training_loop")
    reset = [
        loop.index(s) for s in ("self._tr_loss = ", "self._total_loss_scalar = ", "self._globalstep_last_logged =")
    ]
    assert max(reset) < loop.index("self.callback_handler.on_train_begin(")
    log_step = _source("_maybe_log_save_evaluate")
    assert "(self.state.global_step - self._globalstep_last_logged)" in log_step
    assert "self._total_loss_scalar += tr_loss_scalar" in log_step
    assert "self._globalstep_last_logged = self.state.global_step" in log_step
    final = _source("_finalize_training")
    assert "self._total_loss_scalar += self._tr_loss.item()" in final
    assert final.index("self._total_loss_scalar +=") < final.index("self.log(metrics)")  # our `log` sees the sum
    assert list(inspect.signature(Trainer.log).parameters) == ["self", "logs", "start_time"]


def test_a_resume_at_max_steps_is_decided_by_the_epoch_range(tmp_path):
    """The fence returns `(num_train_epochs, 0)` from `_init_training_state` so no epoch runs: the loop must
    iterate `range(epochs_trained, num_train_epochs)`."""
    assert "for epoch in range(epochs_trained, num_train_epochs):" in _source("_inner_training_loop")


def test_the_epoch_adds_into_the_accumulator_we_restore_and_finalize_calls_on_train_end():
    """The restored `_tr_loss` is the one the epoch adds each step's loss to (not a local copy taken before
    `on_train_begin`), and `_finalize_training` calls `on_train_end` (where the preemption handlers go back)."""
    assert "self._tr_loss += tr_loss_step" in _source("_run_epoch")
    assert "self.callback_handler.on_train_end(" in _source("_finalize_training")
