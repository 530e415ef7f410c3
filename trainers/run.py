"""Train one experiment from a flat JSON config.

    accelerate launch trainers/run.py --config configs/cmp.json [--key value ...]
    python trainers/run.py --list                       # registered experiments
    python trainers/run.py --experiment cmp --help      # every key of one experiment

Flow: parse (strict; exit 2 on a bad config, nothing written) -> data -> model -> trainer -> train (resuming
from the last complete checkpoint of the run folder) -> evaluate -> save. Exit status 75 after a preemption
checkpoint: rerun the same command to continue.
"""

from __future__ import annotations

import sys

from hf_experiments.config import parse_config
from hf_experiments.registry import available_experiments
from hf_experiments.runner import finish, on_preempted, prepare_run
from hf_experiments.sweep import config_has_sweep
from hf_experiments.sweep import main as sweep_main


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--list" in argv:
        print("\n".join(available_experiments()))
        return 0
    if config_has_sweep(argv):  # a config naming a grid runs every job of it (each an ordinary run)
        return sweep_main(argv)
    cfg = parse_config(argv)
    experiment = cfg.experiment_cls(cfg)
    resume_from = prepare_run(cfg)

    data = experiment.build_data()
    model = experiment.build_model()
    trainer = experiment.build_trainer(model, data)
    trainer.train(resume_from_checkpoint=resume_from)
    if trainer.preempted:
        return on_preempted(cfg)

    metrics = {**experiment.evaluate(trainer, data), "world_size": trainer.args.world_size}
    model_dir = finish(cfg, trainer, experiment.tokenizer, metrics)
    if trainer.is_world_process_zero():
        print(f"final metrics: {metrics}\nrun folder: {cfg.run_dir}  (model: {model_dir})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
