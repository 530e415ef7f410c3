"""modelscape's MLP experiments (JoeyTurn/modelscape): an MLP (standard / NTK / muP) trained on a batch function, online
(a fresh batch every step) or offline (one fixed training set per trial, full-batch gradient descent), with
loss checkpoints that stop the run and grabs evaluated during training. The run folder's `loss.png` shows the
loss over the steps with the loss checkpoints' thresholds (numbers in `loss.csv` and `loss_thresholds.csv`).

Meant to be swept (``trainers/sweep.py``): every job is one run of this experiment. The batch of each step is
``n_samples`` fresh samples (online) or the whole fixed training set of ``n_samples`` (offline), as in the
original; ``per_device_train_batch_size`` is set from ``n_samples``. Seeds: the data come from the seed
sequence (seed, trial), the initial weights from (seed, trial) too, so two trials of the same config differ
in both, and rerunning a job reproduces it exactly.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset, DatasetDict

from hf_experiments.core.config import ConfigError, RunConfig
from hf_experiments.core.experiment import Experiment
from hf_experiments.core.imports import LIVE_PREFIX, accepted_keywords, check_object, import_object
from hf_experiments.core.model_helpers import check_trainable, load_init_weights, model_config
from hf_experiments.core.plots import figure, log_history_rows, write_csv

from .batch_functions import BatchSource, OnlineBatches, parse_monomial, resolve_batch_fn
from .configuration_mlp import MLPConfig
from .configuration_module import ModuleConfig
from .grabs import GRABS_FILE, GrabCallback, resolve_grabs
from .loss_checkpoints import LossCheckpointCallback, LossThresholds, threshold_key
from .mlp_config import _DEFAULT_BATCH, MLPDataArguments, MLPModelArguments, MLPTrainingArguments
from .mlp_trainer import MUP_ADAM_LIKE, MUP_SGD_LIKE, MLPTrainer
from .modeling_mlp import MLP, MUP_MISSING
from .modeling_module import LIVE_FACTORIES, ModuleModel, constructor_args
from .objectives import LOSS_BASE, check_spec, json_object

_NOT_MLP = ("model_class", "model_kwargs")  # model arguments that `MLPConfig` does not take


def derive_seed(*parts: int) -> int:
    """A 31-bit seed from integers, well mixed (neighbouring trials get unrelated streams)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0] >> 1)


def batch_fn_kwargs(data: MLPDataArguments) -> dict[str, Any]:
    return json_object("batch_fn_kwargs", data.batch_fn_kwargs)


class _FixedBatch:
    """Offline: the same full batch at every step (a `BatchSource`-like object for `OnlineBatches`)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x, self.y


def _to_dataset(x: torch.Tensor, y: torch.Tensor) -> Dataset:
    return Dataset.from_dict({"x": x.numpy(), "labels": y.numpy()}).with_format("torch")


LOSS_CURVES = (("loss", "training loss"), ("ema_loss", "EMA of the training loss"), ("eval_loss", "test loss"))


def plot_loss(run_dir: Path, log_history: list[dict[str, Any]], tracker: LossThresholds) -> Path:
    """`loss.png` in the run folder: the logged training loss, its EMA (what the loss checkpoints watch) and the
    test loss over the steps, each loss checkpoint's threshold as a dotted line and the step it was crossed as a
    marker. The numbers: `loss.csv` (one row per logged step) and `loss_thresholds.csv`."""
    keys = [k for k, _ in LOSS_CURVES]
    rows = log_history_rows(log_history, keys)
    write_csv(run_dir / "loss.csv", rows, ["step", *keys])
    thresholds = [
        {
            "name": threshold_key(t, tracker.relative),
            "threshold": t,
            "loss": None if tracker.relative and tracker.initial_loss is None else tracker.absolute(t),
            "crossed_at_step": tracker.crossed[t],
        }
        for t in tracker.thresholds
    ]
    if thresholds:
        write_csv(run_dir / "loss_thresholds.csv", thresholds)
    curve_values = [r[k] for r in rows for k in keys if r[k] is not None]
    # a threshold far below every logged loss (e.g. 1e-9: "train to the end") would flatten the curves
    floor = min(curve_values) / 100 if curve_values and min(curve_values) > 0 else None
    off_plot = [t["name"] for t in thresholds if t["loss"] is not None and floor is not None and t["loss"] < floor]
    with figure(run_dir / "loss.png", figsize=(6.5, 3.8)) as (_, ax):
        for i, (key, label) in enumerate(LOSS_CURVES):
            points = [(r["step"], r[key]) for r in rows if r[key] is not None]
            if points:
                ax.plot(*zip(*points), marker="o" if len(points) < 30 else None, ms=3, color=f"C{i}", label=label)
        for row in thresholds:
            if row["loss"] is None or row["name"] in off_plot:
                continue
            ax.axhline(row["loss"], color="grey", ls=":", lw=1)
            crossed = row["crossed_at_step"]
            text = f"{row['name']}" + (f" (step {crossed})" if crossed is not None else " (not reached)")
            ax.annotate(text, (0, row["loss"]), xycoords=("axes fraction", "data"), fontsize=7, color="grey")
            if crossed is not None:
                ax.plot([crossed], [row["loss"]], "v", color="k", ms=5)
        if floor is not None:
            ax.set_yscale("log")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("loss")
        ax.set_title("loss and loss checkpoints" + (f" ({', '.join(off_plot)}: below the plot)" if off_plot else ""))
        ax.legend(fontsize=8)
    return run_dir / "loss.png"


class MLPExperiment(Experiment):
    """An MLP on a batch function; one job of a modelscape-style sweep."""

    name = "mlp"
    model_args = MLPModelArguments
    data_args = MLPDataArguments
    training_args = MLPTrainingArguments

    @classmethod
    def validate(cls, cfg: RunConfig) -> None:
        m, d, t = cfg.model, cfg.data, cfg.training
        if t.per_device_train_batch_size not in (_DEFAULT_BATCH, d.n_samples):
            raise ConfigError(
                "per_device_train_batch_size",
                t.per_device_train_batch_size,
                f"left unset: the batch of every step is n_samples={d.n_samples}",
            )
        if t.per_device_batch_size is not None:
            raise ConfigError(
                "per_device_batch_size",
                t.per_device_batch_size,
                "null with mlp: each step is one whole batch of n_samples from a batch function",
            )
        if t.length_bucketed_sampling:
            raise ConfigError("length_bucketed_sampling", True, "false with mlp (rows are fixed-size vectors)")
        if t.gradient_accumulation_steps != 1:
            raise ConfigError(
                "gradient_accumulation_steps",
                t.gradient_accumulation_steps,
                "1 (each step is one whole batch of n_samples)",
            )
        if t.max_steps is None or t.max_steps < 1:
            raise ConfigError("max_steps", t.max_steps, "an integer >= 1 (online data has no epochs)")
        # the model's own checks (gamma and init_gain > 0, ...); its size (the input size is the built-in batch
        # function's `dim`; a user batch function's is known only once it has run)
        if m.d_out is not None and (isinstance(m.d_out, bool) or not isinstance(m.d_out, int) or m.d_out < 1):
            raise ConfigError("d_out", m.d_out, "an integer >= 1, or null (from the labels' shape)")
        config = model_config(
            MLPConfig, m, drop=_NOT_MLP, d_in=d.dim if d.batch_fn == "powerlaw_hermite" else 1, d_out=m.d_out or 1
        )
        if d.batch_fn == "powerlaw_hermite" and m.model_class is None:
            check_trainable(MLP, config, cfg.run.init_checkpt)
        model_kwargs = json_object("model_kwargs", m.model_kwargs)
        optimizer_kwargs = json_object("optimizer_kwargs", t.optimizer_kwargs)
        check_spec("loss", t.loss, torch.nn, LOSS_BASE, json_object("loss_kwargs", t.loss_kwargs))
        if t.optimizer is not None:
            check_spec("optimizer", t.optimizer, torch.optim, torch.optim.Optimizer, optimizer_kwargs)
            if m.parameterization == "mup":
                raise ConfigError(
                    "optimizer",
                    t.optimizer,
                    "null with parameterization=mup (muP needs mup.MuSGD / mup.MuAdam: choose them with optim)",
                )
        if m.model_class is not None:
            if m.parameterization != "standard":
                raise ConfigError(
                    "parameterization",
                    m.parameterization,
                    "standard with model_class (muP, NTK and mupify apply to the built-in MLP only)",
                )
            for key, default in (("init", "pytorch"), ("init_gain", 1.0)):
                if getattr(m, key) != default:
                    raise ConfigError(
                        key, getattr(m, key), f"{default} with model_class (the network initialises itself)"
                    )
            try:
                check_object(m.model_class, "model_class")
            except ValueError as e:
                raise ConfigError("model_class", m.model_class, str(e)) from None
            accepted = accepted_keywords(m.model_class)
            unknown = sorted(set(model_kwargs) - (accepted or set()))
            if accepted is not None and unknown:
                raise ConfigError(
                    "model_kwargs",
                    m.model_kwargs,
                    f"keywords {m.model_class} takes ({', '.join(sorted(accepted))}); it takes no {', '.join(unknown)}",
                )
        elif m.model_kwargs is not None:
            raise ConfigError("model_kwargs", m.model_kwargs, "null unless model_class names a network")
        optim = str(getattr(t.optim, "value", t.optim))
        if m.parameterization == "mup" and importlib.util.find_spec("mup") is None:
            raise ConfigError("parameterization", "mup", MUP_MISSING)
        if m.parameterization == "mup" and optim not in MUP_SGD_LIKE + MUP_ADAM_LIKE:
            raise ConfigError(
                "optim", optim, "with parameterization=mup, one of " + ", ".join(MUP_SGD_LIKE + MUP_ADAM_LIKE)
            )
        checks = (
            ("batch_fn", d.batch_fn, lambda: resolve_batch_fn(d.batch_fn, run=False)),  # read, not run
            ("grabs", t.grabs, lambda: resolve_grabs(t.grabs, run=False)),
            (
                "loss_checkpoints",
                t.loss_checkpoints,
                lambda: LossCheckpointCallback(t.loss_checkpoints or [], t.loss_checkpoints_relative),
            ),
        )
        for key, value, check in checks:
            try:
                check()
            except ValueError as e:
                raise ConfigError(key, value, str(e)) from None
        batch_fn_kwargs(d)
        if d.batch_fn == "powerlaw_hermite" and d.hermite_basis == "sample_pca" and d.pca_samples < d.dim:
            raise ConfigError(
                "pca_samples", d.pca_samples, f">= dim={d.dim} (the reference sample's PCA needs dim directions)"
            )
        if d.batch_fn == "powerlaw_hermite":
            for mono in d.target_monomials:
                try:
                    idx = max(parse_monomial(mono))
                except ValueError as e:
                    raise ConfigError("target_monomials", d.target_monomials, str(e)) from None
                if idx >= d.dim:
                    raise ConfigError(
                        "target_monomials", d.target_monomials, f"input indices below dim={d.dim} (got {idx})"
                    )

    def __init__(self, cfg: RunConfig) -> None:
        super().__init__(cfg)
        # Runs before the run folder records the config, so run_config.json shows the batch actually used.
        cfg.training.per_device_train_batch_size = cfg.data.n_samples
        # Computed once, now: `RunConfig.to_dict` builds a `TrainingArguments`, which resets accelerate's
        # global state, so it must not run once a Trainer exists.
        self.config_values = cfg.to_dict()
        self.source: BatchSource | None = None
        self.fixed_train: tuple[torch.Tensor, torch.Tensor] | None = None
        self.test: tuple[torch.Tensor, torch.Tensor] | None = None

    def batch_fn_params(self) -> dict[str, Any]:
        """What the batch function may ask for by name: every config value, then `batch_fn_kwargs`."""
        values = {k: v for k, v in self.config_values.items() if k != "batch_fn_kwargs"}
        return {**values, **batch_fn_kwargs(self.cfg.data)}

    def build_data(self) -> DatasetDict:
        d, t = self.cfg.data, self.cfg.training
        self.source = BatchSource(
            resolve_batch_fn(d.batch_fn),
            self.batch_fn_params(),
            seed=derive_seed(t.seed, d.trial, 0),
            n_samples=d.n_samples,
            n_test=d.n_test,
        )
        self.test = self.source.test_set()
        splits = {"validation": _to_dataset(*self.test)}
        if not d.online:
            self.fixed_train = self.source.train_set()
            splits["train"] = _to_dataset(*self.fixed_train)
        return DatasetDict(splits)

    def _d_out(self, y: torch.Tensor) -> int:
        if self.cfg.model.d_out is not None:
            return self.cfg.model.d_out
        if not y.is_floating_point():
            raise ValueError(
                "d_out: the batch function returns integer labels (classes); set d_out to the number of classes"
            )
        return 1 if y.dim() == 1 else y.shape[1]

    def build_model(self) -> MLP | ModuleModel:
        m, d, t = self.cfg.model, self.cfg.data, self.cfg.training
        x, y = self.test
        d_in, d_out = x.shape[1], self._d_out(y)
        torch.manual_seed(derive_seed(t.seed, d.trial, 1))
        if m.model_class is not None:
            model = self._build_module(d_in, d_out)
        else:
            model = MLP(model_config(MLPConfig, m, drop=_NOT_MLP, d_in=d_in, d_out=d_out))
        if self.cfg.run.init_checkpt:
            missing = load_init_weights(model, self.cfg.run.init_checkpt)
            if model.net_init is not None and any(k.startswith("net_init.") for k in missing):
                # a folder saved without centering: centre on the loaded network, not on a random one
                model.net_init.load_state_dict(model.net.state_dict())
        return model

    def _build_module(self, d_in: int, d_out: int) -> ModuleModel:
        """`model_class` built as the original builds MODEL_CLASS: with the values its signature names (config
        values, `d_in` from the data unless the batch function's arguments or `model_kwargs` set it, batch
        function arguments, model_kwargs)."""
        m = self.cfg.model
        extra = json_object("model_kwargs", m.model_kwargs)
        offered = {**self.config_values, "d_in": d_in, "d_out": d_out, **batch_fn_kwargs(self.cfg.data), **extra}
        factory = import_object(m.model_class, "model_class")
        spec = m.model_class
        if spec.startswith(LIVE_PREFIX):  # so `from_pretrained` in this process finds it too
            LIVE_FACTORIES[spec] = factory
        path, _, attr = spec.rpartition(":")
        if path.endswith(".py"):  # a file: recorded absolute, so the saved folder finds it
            spec = f"{Path(path).resolve()}:{attr}"
        config = ModuleConfig(
            model_class=spec,
            model_args=constructor_args(factory, offered, extra),
            gamma=m.gamma,
            centering=m.centering,
        )
        return ModuleModel(config)

    def train_batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The training batch of optimizer step `step` (1-based; step 0 = the first batch)."""
        return self.fixed_train if self.fixed_train is not None else self.source.batch(max(step - 1, 0))

    def build_trainer(self, model: MLP, data: DatasetDict) -> MLPTrainer:
        t = self.cfg.training
        batches = OnlineBatches(self.source if self.fixed_train is None else _FixedBatch(*self.fixed_train))
        self.loss_cb = LossCheckpointCallback(
            t.loss_checkpoints or [],
            t.loss_checkpoints_relative,
            t.ema_smoother,
            stop=t.stop_at_loss_checkpoints,
        )
        trainer = MLPTrainer(
            model=model,
            args=t,
            train_dataset=batches,
            eval_dataset=data["validation"],
            callbacks=[self.loss_cb],
        )
        config_values = self.config_values
        extra_values = batch_fn_kwargs(self.cfg.data)  # swept batch-function arguments reach the grabs too

        def context(step: int) -> dict[str, Any]:
            model = trainer.accelerator.unwrap_model(trainer.model)
            device = next(model.parameters()).device  # grabs get the data where the model is
            x_tr, y_tr, x_te, y_te = (a.to(device) for a in (*self.train_batch(step), *self.test))
            optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)  # unwrapped from accelerate
            return {
                **config_values,
                **extra_values,
                # `model` is the trained network without the centering copy, as the original's `model.model`
                "model": getattr(model, "net", model),
                "hf_model": model,
                "X_tr": x_tr,
                "y_tr": y_tr,
                "X_te": x_te,
                "y_te": y_te,
                "optimizer": optimizer,
                "opt": optimizer,
                "step": step,
                "config": self.cfg,
            }

        self.grab_cb = GrabCallback(
            resolve_grabs(t.grabs),
            t.grab_every,
            context,
            self.cfg.run_dir / GRABS_FILE,
            write=t.process_index == 0,
        )
        trainer.add_callback(self.grab_cb)
        return trainer

    def evaluate(self, trainer: MLPTrainer, data: DatasetDict) -> dict[str, Any]:
        metrics: dict[str, Any] = dict(trainer.evaluate())
        metrics.update(self.loss_cb.tracker.metrics())
        metrics["train_steps"] = trainer.state.global_step
        for name, value in self.grab_cb.final_values().items():
            if isinstance(value, (int, float)):
                metrics[f"grab_{name}"] = value
            elif isinstance(value, dict):
                metrics.update({f"grab_{name}/{k}": v for k, v in value.items() if isinstance(v, (int, float))})
        if trainer.is_world_process_zero():
            plot_loss(self.cfg.run_dir, trainer.state.log_history, self.loss_cb.tracker)
        return metrics
