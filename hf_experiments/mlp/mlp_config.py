"""The modelscape MLP experiment's arguments (seed names lower-cased): the network, where each
step's samples come from, and the training side (modelscape's defaults, loss checkpoints, grabs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from transformers import TrainingArguments
from transformers.trainer_utils import SchedulerType
from transformers.training_args import OptimizerNames

from hf_experiments.core.config import ExperimentTrainingArguments, bounded, prob

_DEFAULT_BATCH = TrainingArguments.__dataclass_fields__["per_device_train_batch_size"].default


@dataclass
class MLPModelArguments:
    """The network (seed names WIDTH, DEPTH, GAMMA lower-cased)."""

    width: int = bounded(8192, "Width of every hidden layer.", lo=1)
    depth: int = bounded(2, "Number of hidden layers (>= 1).", lo=1)
    bias: bool = field(default=True, metadata={"help": "Biases in every layer (initialised at zero)."})
    nonlinearity: Literal["relu", "tanh", "gelu", "silu", "identity"] = field(
        default="relu", metadata={"help": "Activation after every hidden layer."}
    )
    parameterization: Literal["standard", "ntk", "mup", "mupify"] = field(
        default="standard",
        metadata={
            "help": "standard, ntk (N(0,1) weights, 1/sqrt(fan_in) multipliers), mup "
            "(mup package: MuReadout + MuSGD/MuAdam, equal to standard at mup_base_width) or mupify "
            "(the original's muP, dkarkada/mupify: per-layer multipliers and learning rates, no base width)."
        },
    )
    mupify_param: Literal["mup", "ntp", "mfp", "mup-lr", "ntp-lr"] = field(
        default="mup", metadata={"help": "parameterization=mupify: mupify's `param`."}
    )
    gamma: float = field(
        default=1.0,
        metadata={"help": "Output rescale f -> f/gamma (the learning rate follows gamma_lr_rule)."},
    )
    centering: bool = field(
        default=True,
        metadata={"help": "Subtract the output of the frozen initial network (always on in the original)."},
    )
    init: Literal["pytorch", "normal"] = field(
        default="pytorch",
        metadata={
            "help": "standard parameterisation's init: pytorch (nn.Linear's U(+-1/sqrt(fan_in)), bias too, as "
            "the original) or normal (N(0, init_gain^2/fan_in), zero bias)."
        },
    )
    init_gain: float = field(
        default=1.0, metadata={"help": "Weight scale g: the init's std or bound times g (N(0, g^2) for ntk)."}
    )
    d_out: int | None = field(
        default=None,
        metadata={"help": "Output size (the number of classes for cross-entropy); null = from the labels' shape."},
    )
    model_class: str | None = field(
        default=None,
        metadata={
            "help": "Another network instead of the built-in MLP: an nn.Module class or factory, "
            "'package.module:Name' or 'file.py:Name' (the original's MODEL_CLASS / MODEL_FILE + MODEL_NAME); "
            "built with the config values, batch_fn_kwargs and model_kwargs it accepts by name."
        },
    )
    model_kwargs: dict | str | None = field(
        default=None, metadata={"help": "Extra constructor arguments for model_class (a JSON object)."}
    )
    mup_base_width: int = bounded(64, "muP base width: muP equals standard at this width.", lo=1)
    readout_zero_init: bool = field(default=False, metadata={"help": "muP: start the readout weights at zero."})


@dataclass
class MLPDataArguments:
    """Where each step's samples come from (seed names ONLINE, N_SAMPLES, N_TEST lower-cased)."""

    online: bool = field(default=True, metadata={"help": "Fresh samples every step (else one fixed training set)."})
    n_samples: int = bounded(1024, "Samples per step (online) or training-set size (offline, full batch).", lo=1)
    n_test: int = bounded(10_000, "Test-set size (drawn once from the batch function).", lo=1)
    trial: int = bounded(0, "Trial index: with seed, picks the data and the initial weights.", lo=0)
    batch_fn: str = field(
        default="powerlaw_hermite",
        metadata={
            "help": "Built-in batch function name, or an import path 'package.module:function' / 'file.py:function'."
        },
    )
    batch_fn_kwargs: dict | str | None = field(
        default=None, metadata={"help": "Extra keyword arguments for the batch function (a JSON object)."}
    )
    dim: int = bounded(500, "powerlaw_hermite: input dimension.", lo=1)
    alpha: float = bounded(1.5, "powerlaw_hermite: covariance eigenvalues ~ (i + offset)^-alpha.", lo=0.0)
    offset: float = bounded(3.0, "powerlaw_hermite: offset of the power law.", lo=0.0)
    target_monomials: list[str] = field(
        default_factory=lambda: ["0"],
        metadata={"help": "powerlaw_hermite: target = mean of Hermite monomials, each 'i^k*j' = He_k(z_i) He_1(z_j)."},
    )
    noise_std: float = bounded(0.0, "powerlaw_hermite: Gaussian label noise.", lo=0.0)
    hermite_basis: Literal["sample_pca", "population"] = field(
        default="sample_pca",
        metadata={
            "help": "powerlaw_hermite: whiten with the PCA of one reference sample of pca_samples inputs drawn "
            "with torch.Generator().manual_seed(pca_seed) (the original's basis, including its SVD's sign "
            "convention), or with the exact population spectrum."
        },
    )
    pca_samples: int = bounded(
        14_000, "powerlaw_hermite, sample_pca: size of the reference sample (the original's N_TRAIN + N_TEST).", lo=1
    )
    pca_seed: int = bounded(
        42,
        "powerlaw_hermite, sample_pca: seed of the reference sample (the original's SEED, default 42); independent "
        "of the job's seed, so every job of a sweep learns the same target function.",
        lo=0,
    )


@dataclass
class MLPTrainingArguments(ExperimentTrainingArguments):
    """Training side: modelscape's defaults (SGD, lr 1e-2, constant schedule, MAX_ITER) plus loss checkpoints
    and grabs."""

    learning_rate: float = field(
        default=1e-2,
        metadata={"help": "Base learning rate (seed LR); per layer under muP / mupify, by gamma_lr_rule under gamma."},
    )
    optim: OptimizerNames | str = field(default="sgd", metadata={"help": "Optimizer (seed: SGD)."})
    optimizer: str | None = field(
        default=None,
        metadata={
            "help": "Instead of optim: a torch.optim class name (Adam, SGD, ...) or an import path to an "
            "optimizer class, built as cls(params, lr=learning_rate, **optimizer_kwargs) (the original's "
            "`optimizer`)."
        },
    )
    optimizer_kwargs: dict | str | None = field(
        default=None, metadata={"help": "Keyword arguments for `optimizer` (a JSON object)."}
    )
    loss: str = field(
        default="MSELoss",
        metadata={
            "help": "Loss: a torch.nn loss class name (MSELoss, CrossEntropyLoss, HuberLoss, ...) or an import "
            "path to a loss class or function(predictions, labels)."
        },
    )
    loss_kwargs: dict | str | None = field(
        default=None, metadata={"help": "Keyword arguments for the loss class (a JSON object)."}
    )
    gamma_lr_rule: Literal["none", "readme"] = field(
        default="none",
        metadata={
            "help": "Learning rate under gamma != 1: none (the original's code: output rescale only) or readme "
            "(the seed README's lr*gamma^2 for gamma<1, lr*gamma for gamma>1)."
        },
    )
    lr_scheduler_type: SchedulerType | str = field(default="constant", metadata={"help": "Learning-rate schedule."})
    max_steps: int = field(default=100_000, metadata={"help": "Most optimizer steps (seed MAX_ITER)."})
    per_device_eval_batch_size: int = field(default=1024, metadata={"help": "Test samples per evaluation batch."})
    loss_checkpoints: list[float] | None = field(
        default_factory=lambda: [0.15, 0.1],
        metadata={
            "help": "Loss thresholds: record the first step the EMA training loss is below each; stop when all are."
        },
    )
    loss_checkpoints_relative: bool = field(
        default=False, metadata={"help": "Read loss_checkpoints as fractions of the initial loss."}
    )
    ema_smoother: float = prob(0.9, "EMA constant of the training loss (0 = no smoothing).")
    stop_at_loss_checkpoints: bool = field(default=True, metadata={"help": "Stop once every threshold is crossed."})
    grabs: list[str] | None = field(
        default=None,
        metadata={
            "help": "Functions evaluated during training: built-in (weight_norms, spectral_norms, gram_diag, "
            "ntk_trace) "
            "or 'alias=package.module:function'."
        },
    )
    grab_every: int = bounded(0, "Evaluate the grabs every N steps (and at step 0); 0 = only at the end.", lo=0)
