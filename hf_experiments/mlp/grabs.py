"""Grabs: user functions evaluated during training (modelscape's `otherreturns`), stored per job.

A grab is a built-in name (``weight_norms``, ``spectral_norms``, ``gram_diag``, ``ntk_trace``) or an import path,
optionally aliased, and is called with the keyword arguments it names (the model, the data, the optimizer, the
step and the job's config values). `GrabCallback` evaluates the grabs during and at the end of training and
keeps their values in ``<run_dir>/grabs.json``, across resumes.

Design: `docs/sweeps_and_mlp.md`, section "Grabs".
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.func import functional_call, jacrev, vmap
from transformers import TrainerCallback

from hf_experiments.core.imports import call_with_accepted, check_object, import_object
from hf_experiments.core.run_folder import write_json_atomic

GRABS_FILE = "grabs.json"


# --- built-in grabs -----------------------------------------------------------------------------------------


def _network(model: torch.nn.Module) -> torch.nn.Module:
    """The trained network of an `MLP` (not its frozen centering copy); other models as they are."""
    return getattr(model, "net", model)


def weight_norms(model: torch.nn.Module, **kwargs: Any) -> dict[str, float]:
    """Frobenius norm of every weight matrix of the trained network."""
    return {name: float(p.detach().norm()) for name, p in _network(model).named_parameters() if p.dim() >= 2}


def spectral_norms(model: torch.nn.Module, **kwargs: Any) -> dict[str, float]:
    """Largest singular value of every weight matrix (an SVD each: slower than `weight_norms`)."""
    return {
        name: float(torch.linalg.matrix_norm(p.detach().float(), ord=2))
        for name, p in _network(model).named_parameters()
        if p.dim() == 2
    }


def gram_diag(model: torch.nn.Module, **kwargs: Any) -> list[float]:
    """Diagonal of the input layer's Gram matrix W_in^T W_in, shape (d_in,): how much weight each input
    direction has gathered (modelscape's `get_W_gram` + `get_W_ii`). Raw weights, without NTK multipliers."""
    w = _network(model).input_layer.weight.detach()  # (width, d_in)
    return (w * w).sum(0).tolist()


def ntk_trace(
    model: torch.nn.Module, X_tr: torch.Tensor, max_samples: int = 128, hf_model: Any = None, **kwargs: Any
) -> float:
    """Trace of the empirical NTK on (at most `max_samples` of) the training inputs:
    sum_i ||d f(x_i)/d theta||^2 over the trainable parameters (summed over outputs when d_out > 1), of the
    whole model f (output rescale included) when a run passes it as `hf_model`.
    Per-sample Jacobians via `torch.func`, 8 samples at a time, so memory stays at 8 x parameters."""
    model = hf_model if hf_model is not None else model
    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    frozen = {k: v.detach() for k, v in model.named_parameters() if not v.requires_grad}
    frozen.update(dict(model.named_buffers()))
    device = next(iter(params.values())).device
    x = X_tr[:max_samples].to(device)

    def f(p: dict[str, torch.Tensor], xi: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, {**p, **frozen}, (xi[None],))
        return getattr(out, "predictions", out).reshape(-1)  # (d_out,)

    def sq_norm(xi: torch.Tensor) -> torch.Tensor:
        jac = jacrev(f)(params, xi)  # {name: (d_out, *param_shape)}
        return sum((j * j).sum() for j in jac.values())

    return float(vmap(sq_norm, chunk_size=8)(x).sum())


BUILTIN_GRABS: dict[str, Callable[..., Any]] = {
    "weight_norms": weight_norms,
    "spectral_norms": spectral_norms,
    "gram_diag": gram_diag,
    "ntk_trace": ntk_trace,
}


def resolve_grabs(specs: Sequence[str] | None, run: bool = True) -> dict[str, Callable[..., Any] | None]:
    """``["weight_norms", "alias=pkg.mod:fn", "pkg.mod:other"]`` -> {name: function}; names must be unique.
    With `run=False` the user functions are only checked (read, not imported) and map to None."""
    out: dict[str, Callable[..., Any] | None] = {}
    for spec in specs or ():
        alias, _, target = spec.rpartition("=") if "=" in spec else ("", "", spec)
        if target in BUILTIN_GRABS:
            fn = BUILTIN_GRABS[target]
        elif run:
            fn = import_object(target, "grabs")
        else:
            check_object(target, "grabs")
            fn = None
        if run and not callable(fn):
            raise ValueError(f"grabs: {spec!r} names a {type(fn).__name__}; expected a function")
        default = target.replace(".py:", ":").rpartition(":")[2] or target.rpartition(".")[2]
        name = alias or (target if target in BUILTIN_GRABS else getattr(fn, "__name__", default))
        if name in out:
            raise ValueError(f"grabs: name {name!r} is used twice; give one an alias ('other_name={target}')")
        out[name] = fn
    return out


def to_jsonable(value: Any) -> Any:
    """Tensors and arrays -> nested lists, numpy scalars -> Python numbers, through dicts and lists."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        return value.item() if value.dim() == 0 else value.tolist()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    return value


class GrabCallback(TrainerCallback):
    """Evaluates the grabs at step 0, every `every` steps and at the end; keeps `records` and writes them.

    `context(step)` returns the keyword arguments offered to the grabs at that step (model, data, config...).
    """

    def __init__(
        self,
        grabs: Mapping[str, Callable[..., Any]],
        every: int,
        context: Callable[[int], dict],
        out_path: str | Path,
        write: bool = True,
    ) -> None:
        if every < 0:
            raise ValueError(f"grab_every={every!r} is invalid; expected an integer >= 0 (0 = only at the end)")
        self.grabs, self.every, self.context = dict(grabs), every, context
        self.out_path, self.write = Path(out_path), write
        self.records: dict[str, list[dict[str, Any]]] = {name: [] for name in self.grabs}

    def evaluate(self, step: int) -> None:
        """Run every grab now (skipped if this step was already recorded)."""
        if not self.grabs or any(r and r[-1]["step"] == step for r in self.records.values()):
            return
        kwargs = self.context(step)
        model = kwargs.get("hf_model", kwargs["model"])
        was_training = model.training
        model.eval()
        try:
            for name, fn in self.grabs.items():
                self.records[name].append({"step": step, "value": to_jsonable(call_with_accepted(fn, kwargs))})
        finally:
            model.train(was_training)

    def final_values(self) -> dict[str, Any]:
        return {name: recs[-1]["value"] for name, recs in self.records.items() if recs}

    def _save(self) -> None:
        if self.write and self.grabs:
            write_json_atomic(self.out_path, self.records)

    def on_train_begin(self, args, state, control, **kwargs):
        if self.out_path.is_file() and state.global_step > 0:  # resumed: keep what the checkpoint had seen
            saved = json.loads(self.out_path.read_text())
            for name in self.grabs:
                self.records[name] = [r for r in saved.get(name, []) if r["step"] <= state.global_step]
        if self.every and state.global_step == 0:
            self.evaluate(0)

    def on_step_end(self, args, state, control, **kwargs):
        if self.every and state.global_step % self.every == 0:
            self.evaluate(state.global_step)

    def on_save(self, args, state, control, **kwargs):
        self._save()

    def on_train_end(self, args, state, control, **kwargs):
        self.evaluate(state.global_step)
        self._save()


__all__ = [
    "BUILTIN_GRABS",
    "GRABS_FILE",
    "GrabCallback",
    "gram_diag",
    "ntk_trace",
    "resolve_grabs",
    "spectral_norms",
    "to_jsonable",
    "weight_norms",
]
