"""Sparse updates (arrows of time): how fast do trained forward and backward models adapt to a perturbed M?

    python trainers/arrows_sparse_update.py --forward_run outputs/linear_forward \\
        --backward_run outputs/linear_backward --num_flips 4 --repeats 5 --max_steps 300
    python trainers/arrows_sparse_update.py ... -- --learning_rate 3e-4  # keys for every fine-tune

Takes two finished linear runs trained on the same matrix M (their `run_config.json` and `model/`). Each
repeat r flips `--num_flips` off-diagonal entries of M, keeping it invertible (`flip_entries`, seeded by
`--seed` and r), saves M' to `<out>/matrices/`, and fine-tunes both models from their trained weights
(`init_checkpt`) on fresh lines of M' for `--max_steps` steps: ordinary run folders
`<out>/r{r}_forward` and `<out>/r{r}_backward`, configured by `<out>/configs/*.json` (the trained run's
config with the changes above). The training-loss curves (`trainer_state.json` log history; `--curve
eval_loss` with `-- --eval_strategy steps --eval_steps N` for validation curves) are averaged over the
repeats per direction: `<out>/sparse_update.json` (mean, std, every repeat) and `<out>/sparse_update.png`
(mean +- std). Rerunning skips finished fine-tunes and resumes interrupted ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from hf_experiments.arrows.analysis import loss_curve, mean_std_curves, plot_mean_std, read_json
from hf_experiments.arrows.arrows_config import ArrowsDataArguments
from hf_experiments.arrows.experiment import dataset_folder, load_matrix
from hf_experiments.arrows.linear_language import extra_ones, flip_entries, gf2_inverse, matrix_name
from hf_experiments.core.run_folder import write_json_atomic

sys.path.insert(0, str(Path(__file__).resolve().parent))
from arrows_sparsity_sweep import run_job

DIRECTIONS = ("forward", "backward")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--forward_run", required=True, help="finished forward run folder (run_config.json, model/)")
    parser.add_argument("--backward_run", required=True, help="finished backward run folder on the same matrix")
    parser.add_argument("--num_flips", type=int, default=4, help="entries of M flipped per repeat (original: 4)")
    parser.add_argument("--repeats", type=int, default=5, help="perturbations R (original: 20)")
    parser.add_argument("--max_steps", type=int, default=300, help="fine-tuning steps per run")
    parser.add_argument("--learning_rate", type=float, default=None, help="fine-tuning lr (default: the run's)")
    parser.add_argument("--logging_steps", type=int, default=10, help="training-loss log interval (curve points)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the flips and of the fine-tuning data")
    parser.add_argument("--curve", default="loss", help="log-history key to average: loss (train) or eval_loss")
    parser.add_argument("--out", default="outputs/arrows_sparse_update", help="output folder")
    parser.add_argument("--subprocess", action="store_true", help="run each fine-tune in a fresh process")
    return parser


def split_passthrough(argv: list[str]) -> tuple[list[str], list[str]]:
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1 :]
    return argv, []


def trained_matrix(run_dir: Path) -> tuple[dict[str, Any], np.ndarray]:
    """The run's resolved config and its matrix M (from the data folder, else regenerated from the config)."""
    cfg = read_json(run_dir / "run_config.json")
    if cfg.get("task") != "linear":
        raise ValueError(f"{run_dir} has task={cfg.get('task')!r}; sparse updates need task=linear runs")
    names = {f.name for f in dataclasses.fields(ArrowsDataArguments)}
    data = ArrowsDataArguments(**{k: v for k, v in cfg.items() if k in names})
    saved = dataset_folder(data, cfg.get("save_root", "outputs")) / "matrix.npy"
    return cfg, (np.load(saved).astype(np.uint8) if saved.is_file() else load_matrix(data))


def finetune_config(
    cfg: dict[str, Any],
    run_dir: Path,
    matrix_path: Path,
    exp_name: str,
    out: Path,
    args: argparse.Namespace,
    repeat: int,
) -> dict[str, Any]:
    """The trained run's config, pointed at M' and the trained weights, sized for `max_steps` fresh lines."""
    batch = cfg.get("per_device_train_batch_size", 8) * cfg.get("gradient_accumulation_steps", 1)
    new = {k: v for k, v in cfg.items() if k not in ("restore_from", "fresh_start", "num_train_epochs")}
    new.update(
        exp_name=exp_name,
        save_root=str(out),
        matrix_path=str(matrix_path),
        dataset_path=None,
        init_checkpt=str(run_dir / "model"),
        max_steps=args.max_steps,
        num_vectors=args.max_steps * batch + batch,
        generation_seed=args.seed * 1000 + repeat,
        logging_steps=args.logging_steps,
        logging_first_step=True,
        save_steps=args.max_steps,
        warmup_steps=0,
        report_to="none",
    )
    if args.learning_rate is not None:
        new["learning_rate"] = args.learning_rate
    return new


def main(argv: list[str] | None = None) -> int:
    ours, passthrough = split_passthrough(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(ours)
    if args.repeats < 1 or args.max_steps < 1:
        print(f"error: --repeats={args.repeats} and --max_steps={args.max_steps} must be >= 1", file=sys.stderr)
        return 2
    runs = {"forward": Path(args.forward_run), "backward": Path(args.backward_run)}
    try:
        (cfg_f, m), (cfg_b, m_b) = trained_matrix(runs["forward"]), trained_matrix(runs["backward"])
        if m.shape != m_b.shape or (m != m_b).any():
            raise ValueError("--forward_run and --backward_run were trained on different matrices")
        for d, path in runs.items():
            if not (path / "model").is_dir():
                raise ValueError(f"--{d}_run {path} has no model/ folder; finish its training first")
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cfgs = {"forward": cfg_f, "backward": cfg_b}
    out = Path(args.out)
    (out / "matrices").mkdir(parents=True, exist_ok=True)
    n, base_name = len(m), matrix_name(len(m), extra_ones(m), extra_ones(gf2_inverse(m)))
    print(
        f"trained matrix {base_name}; {args.repeats} repeats x {args.num_flips} flips, {args.max_steps} steps",
        flush=True,
    )

    perturbed, failed = [], []
    for r in range(args.repeats):
        m_new = flip_entries(m, args.num_flips, np.random.default_rng([args.seed, r]))
        name = matrix_name(n, extra_ones(m_new), extra_ones(gf2_inverse(m_new)))
        mat_path = out / "matrices" / f"r{r}_{name}.npy"
        np.save(mat_path, m_new)
        perturbed.append({"repeat": r, "matrix": name, "path": str(mat_path)})
        for d in DIRECTIONS:
            exp_name = f"r{r}_{d}"
            if (out / exp_name / "metrics.json").is_file():
                print(f"[repeat {r + 1}/{args.repeats}] {d}: finished, skipped", flush=True)
                continue
            cfg_path = out / "configs" / f"{exp_name}.json"
            write_json_atomic(cfg_path, finetune_config(cfgs[d], runs[d], mat_path, exp_name, out, args, r))
            print(f"[repeat {r + 1}/{args.repeats}] {d}: fine-tuning on {name} ...", flush=True)
            start = time.time()
            code = run_job(["--config", str(cfg_path), *passthrough], args.subprocess)
            print(
                f"[repeat {r + 1}/{args.repeats}] {d}: exit {code} after {time.time() - start:.0f}s",
                flush=True,
            )
            if code != 0:
                failed.append(exp_name)
    if failed:
        print(f"failed fine-tunes (rerun the command to resume): {', '.join(failed)}", file=sys.stderr)
        return 1

    result: dict[str, Any] = {
        "trained_matrix": base_name,
        "num_flips": args.num_flips,
        "repeats": args.repeats,
        "max_steps": args.max_steps,
        "curve": args.curve,
        "perturbed": perturbed,
    }
    for d in DIRECTIONS:
        curves = [loss_curve(out / f"r{r}_{d}", args.curve) for r in range(args.repeats)]
        finals = [read_json(out / f"r{r}_{d}" / "metrics.json")["mean_token_loss"] for r in range(args.repeats)]
        result[d] = {
            **mean_std_curves(curves),
            "final_mean_token_loss": finals,
            "final_mean": float(np.mean(finals)),
            "final_std": float(np.std(finals)),
            "curves": [{"step": s.tolist(), "value": v.tolist()} for s, v in curves],
        }
    write_json_atomic(out / "sparse_update.json", result)
    plot_mean_std(
        {d: result[d] for d in DIRECTIONS},
        out / "sparse_update.png",
        ylabel=args.curve,
        title=f"{base_name}: {args.num_flips} flips, mean +- std over {args.repeats} repeats",
    )
    for d in DIRECTIONS:
        print(
            f"{d:>8}: first logged {args.curve} {result[d]['mean'][0]:.4f}, "
            f"last {result[d]['mean'][-1]:.4f}, "
            f"final mean token loss {result[d]['final_mean']:.4f} +- {result[d]['final_std']:.4f}"
        )
    print(f"wrote {out / 'sparse_update.json'} and {out / 'sparse_update.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
