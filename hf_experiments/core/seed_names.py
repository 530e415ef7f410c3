"""The hyperparameter names the original codebases used, and where each lives in our configs.

Users arrive with `hyperparameters.json` files from the seed projects. Names that do not clash with
`TrainingArguments` keep their name in our configs (`exp_name`, `seed`, `cmp_len`, ...). The names below
are translated: inside a config file they are accepted and renamed (a config giving both the seed
name and its target is rejected), and the converter (`hf_experiments.core.convert`, `hfe convert`) rewrites a
whole file. `SEED_DROPPED` names keys with no counterpart (the converter drops them with the note; a config
file's unknown-key error shows it); `SEED_UNSUPPORTED` keys and values stop a conversion with the reason.
"""

from __future__ import annotations

from typing import Any

# seed name -> (our name, note). The note is printed by the converter and shown in the docs table.
SEED_ALIASES: dict[str, tuple[str, str]] = {
    "lr": ("learning_rate", ""),
    "batch_size": (
        "per_device_train_batch_size",
        "the original's batch on one device; with N processes the global batch is N x this",
    ),
    "n_epochs": ("num_train_epochs", ""),
    "l2": ("weight_decay", ""),
    "n_grad_loops": ("gradient_accumulation_steps", "loss averaging is exact, as in the original"),
    "aggregate": ("gradient_accumulation_steps", "arrows-of-time name"),
    "checkpt_mod": ("save_steps", ""),
    "save_every": ("save_steps", "arrows-of-time name"),
    "steps_to_train": ("max_steps", "arrows-of-time name"),
    "step_log": ("logging_steps", "arrows-of-time name"),
    "valid_every": ("eval_steps", "arrows-of-time name"),
    "max_val_loops": ("max_eval_batches", "batches per evaluation"),
    "valid_steps": ("max_eval_batches", "arrows-of-time name"),
    "rmb_rask": ("rmb_task", "the seed README's spelling"),
    "dataset_folder": ("dataset_path", "arrows-of-time name"),
    # Csordas-style framework names (recurrent storage experiments)
    "restore": ("restore_from", "resume from a checkpoint; command-line keys override"),
    "reset": ("fresh_start", "the old run folder is moved aside, not deleted"),
    "load_pretrained_model": ("init_checkpt", "weights only"),
    "stop_after": ("max_steps", ""),
    "wd": ("weight_decay", ""),
    "grad_clip": ("max_grad_norm", "none (or null, or 0) = no clipping"),
    "lr_warmup": ("warmup_steps", ""),
    "amp": ("bf16", "bfloat16 mixed precision (GPUs with bf16; on CPU torch's bf16 autocast)"),
    "lr_sched.type": ("lr_scheduler_type", "cos -> cosine; step (with lr_sched.steps) / none -> constant_with_warmup"),
    "lr_sched_type": ("lr_scheduler_type", "as lr_sched.type"),
    "lr_sched.steps": ("lr_sched_steps", "step schedule milestones"),
    "lr_sched.gamma": ("lr_sched_gamma", "step schedule factor"),
    "log": ("report_to", "tb -> tensorboard; wandb"),
    "save_interval": ("save_steps", ""),
    "test_interval": ("eval_steps", ""),
    "n_microbatch": ("gradient_accumulation_steps", ""),
    "val_mod": ("eval_steps", "semantic-blotching name"),
    "val_batch_size": (
        "per_device_eval_batch_size",
        "also the rows of each STaR / augmentation loop (blotch: manip_batch_size defaults to it)",
    ),
    "name": ("exp_name", "Csordas-framework name: the run folder is save_root/exp_name"),
    "pertub_rate": ("perturbation_rate", "arrows-of-time gendataset.py spelling"),
    "max_iter": ("max_steps", "modelscape name"),
}

# Seed names of an evaluation interval: the original validated at that interval, so the converted config must
# switch evaluation on (`eval_strategy: steps`), which `TrainingArguments` leaves off ("no") by default.
EVAL_INTERVAL_NAMES = ("valid_every", "val_mod", "test_interval")

# Values with another spelling in the seeds, by the key they are given under (seed name or ours).
_NO_CLIP = {"none": 0.0, "null": 0.0, None: 0.0}
_SCHEDULES = {"cos": "cosine", "step": "constant_with_warmup", "none": "constant_with_warmup"}
SEED_VALUES: dict[str, dict[Any, Any]] = {
    "grad_clip": _NO_CLIP,
    "max_grad_norm": _NO_CLIP,
    "lr_sched.type": _SCHEDULES,
    "lr_sched_type": _SCHEDULES,
    "log": {"tb": "tensorboard"},
}


def translate_value(key: str, value: Any) -> Any:
    """The value in our spelling (`grad_clip: none` -> 0.0, `lr_sched.type: cos` -> `cosine`); others unchanged."""
    table = SEED_VALUES.get(key)
    if table is None:
        return value
    probe = value.lower() if isinstance(value, str) else value
    try:
        return table.get(probe, value)
    except TypeError:  # unhashable (a list): not one of ours
        return value


# Seed names with no counterpart: the converter drops them and says what replaces them.
SEED_DROPPED: dict[str, str] = {
    "multi_gpu": "launch with `accelerate launch --multi_gpu --num_processes N trainers/run.py ...` instead",
    "model_parallel": "use an accelerate FSDP/DeepSpeed config (see README, 'Scaling')",
    "testing": "use model_string with a local tiny model instead",
    "n_train_loops": "use eval_steps / max_steps to validate more often",
    "state_save_loc": "use save_root",
    "backup_every": "every checkpoint is kept complete; use save_total_limit",
    "oscil_steps": "warm restarts are not used by the paper's runs",
    "lr_shrink": "warm restarts are not used by the paper's runs",
    "lr_init": "warm-up starts from 0 (lr_scheduler_type=cosine with warmup_steps)",
    "lr_min": "use lr_scheduler_type=cosine_with_min_lr and lr_scheduler_kwargs",
    "vocab_size": "taken from the tokenizer",
    "attn_length": "taken from the data (line length)",
    "data_root": "generated datasets live in <save_root>/data/<name>; give an existing folder as dataset_path",
    "device": "the device is chosen at launch: --gpu <index>|auto (or CUDA_VISIBLE_DEVICES, accelerate launch)",
    "gpu": "the device is chosen at launch, not in the config: --gpu <index>|auto on the command line",
    "devices": "sweeps take `--devices 0,1,...` (trainers/sweep.py); one run uses the device it is launched on",
    "input_file_name": "primes are computed here (a sieve), no list of primes is read",
    "onlythresholds": "metrics.json holds the thresholds' steps and trainer_state.json the whole run, always",
    "verbose": "the training loss is logged every logging_steps (and shown by the progress bar)",
    "deterministic": "runs are always seeded from seed (and trial)",
    "determinsitic": "runs are always seeded from seed (and trial) (the seed README's spelling)",
    "n_train": "modelscape's N_TRAIN only sized the data: n_samples (offline: the training set) and n_test do that",
    "n_trian": "modelscape's N_TRAIN only sized the data: n_samples (offline: the training set) and n_test do that",
}

# Seed names the converter refuses, with the reason: what they did has no counterpart a config could state.
SEED_UNSUPPORTED: dict[str, str] = {
    "matrice_name": "a pickled galois matrix (matrices/<name>.pkl) is not read: save it with numpy.save and give "
    "matrix_path, or let matrix_n / matrix_k draw one",
    "matrix": "a trainers/arrows_sparse_update.py option (the perturbed matrix comes from the runs' own), not a "
    "run config key",
    "model_f": "trainers/arrows_sparse_update.py takes the trained runs as --forward_run <run folder>",
    "model_b": "trainers/arrows_sparse_update.py takes the trained runs as --backward_run <run folder>",
    "num_flips": "a trainers/arrows_sparse_update.py option: pass --num_flips N there",
    "otherreturns": "functions cannot be written in a config file: name them in grabs (import paths) or pass "
    "run_sweep(grabs=...)",
    "x_te": "a test set given as arrays: the batch function draws it (n_test rows), or name a batch_fn that does",
    "y_te": "a test set given as arrays: the batch function draws it (n_test rows), or name a batch_fn that does",
}


def translate_seed_names(config: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Rename seed names to ours; returns the new dict and one note per renamed or dropped key.

    Nested seed configs (the arrows-of-time `model_params` / `training_params` / `optim_params`) are flattened.
    A seed evaluation interval (`valid_every`, `val_mod`, `test_interval`) also sets `eval_strategy: steps` unless
    the config sets `eval_strategy`: the original validated at that interval.
    Raises ValueError when a seed name and its target are both present with different values.
    """
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if key in ("model_params", "training_params", "optim_params") and isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    out: dict[str, Any] = {}
    notes: list[str] = []
    for key, value in flat.items():
        value = translate_value(key, value)
        if key == "backwards":
            out["direction"] = "backward" if value else "forward"
            notes.append(f"backwards={value} -> direction={out['direction']!r}")
            continue
        if key in SEED_ALIASES:
            target, _ = SEED_ALIASES[key]
            if target in flat and translate_value(target, flat[target]) != value:
                raise ValueError(
                    f"config key {key!r}={value!r} is the original's name for {target!r}, which is also given "
                    f"as {flat[target]!r}; keep one of them"
                )
            out[target] = value
            notes.append(f"{key} -> {target}")
        else:
            out[key] = value
    interval = next((k for k in EVAL_INTERVAL_NAMES if k in flat), None)
    if interval is not None and "eval_strategy" not in flat:
        out["eval_strategy"] = "steps"
        notes.append(f"{interval} is an evaluation interval -> eval_strategy='steps' (evaluation on)")
    return out, notes


def drop_seed_only_names(config: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Remove names that have no counterpart here (converter only; in a config they are errors)."""
    kept = {k: v for k, v in config.items() if k not in SEED_DROPPED}
    notes = [f"dropped {k}={config[k]!r}: {SEED_DROPPED[k]}" for k in config if k in SEED_DROPPED]
    return kept, notes
