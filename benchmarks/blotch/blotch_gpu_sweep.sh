#!/bin/bash
# Accuracy sweep of the blotch configs on one GPU: many small runs at once (each a plain
# `trainers/run.py` job; a 0.1 M-parameter model leaves the GPU mostly idle, so ~10-16 runs share it).
# Produced the "sweep" tables of docs/semantic_blotching.md and docs/data_cache.md (one H100, 16 cores:
# ~4-7 min for 16 runs). Accuracies carry over to CPU runs of the same config (same algorithm; float sums
# differ, so expect the +-2-point run-to-run spread); times do not: CPU time per step is in the docs.
#
#   bash benchmarks/blotch/blotch_gpu_sweep.sh [out_dir]      # then: python benchmarks/blotch/blotch_sweep_table.py out_dir
set -u
G=${1:-outputs/blotch_gpu_sweep}
T=${T:-600}  # per-run limit (s)
mkdir -p "$G/logs"
export OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
run() {
  name=$1; shift
  timeout "$T" python trainers/run.py --save_root "$G" --exp_name "$name" --disable_tqdm true \
    --save_steps 100000 "$@" > "$G/logs/$name.log" 2>&1
  echo "$name rc=$?" >> "$G/logs/rc.txt"
}
# Build the two datasets first (runs that share one would wait on its lock anyway).
run _data_v --config configs/blotch_vanilla.json --max_steps 1 --eval_strategy no --gen_eval_samples 10
run _data_a --config configs/blotch_axe_twin.json --max_ents 3 --max_steps 1 --eval_strategy no --gen_eval_samples 10 \
  --history_eval_samples 0
V="--config configs/blotch_vanilla.json --max_steps 4000"
M="--d_model 48 --n_layers 3"
# The axing rows of docs/data_cache.md ran on 3-term sums (the configs' settings before they moved to 2-term sums):
OLD3="--max_ents 3 --h_mult 4 --max_steps 4000 --gen_eval_samples 500"
A="--config configs/blotch_axe.json $OLD3 --pre_epochs 6 --aug_mod 2 --last_aug_epoch 32"
W="--config configs/blotch_axe_twin.json $OLD3"
# semantic blotching (#5): shape, schedule, seed
run v_base $V & run v_seed1 $V --seed 1 & run v_lr5 $V --lr 0.005 & run v_lr10 $V --lr 0.01 &
run v_b32 $V --batch_size 32 --max_steps 8000 & run v_b128 $V --batch_size 128 --max_steps 2000 --lr 0.006 &
run v_h2 $V --h_mult 2 --max_steps 5000 & run v_bf16 $V --bf16 true &
run v48 $V $M & run v48_s1 $V $M --seed 1 & run v48_3000 $V $M --max_steps 3000 &
run bl48 --config configs/blotch.json $M & run dir48 --config configs/direct.json $M &
wait
# axing (#6): schedule, tolerance, size, blotch_p
run a_twin $W & run a_base $A & run a_last20 $A --last_aug_epoch 20 &
run a_last20_tol1 $A --last_aug_epoch 20 --axe_tol 1.0 & run a_early $A --pre_epochs 4 --aug_mod 1 --last_aug_epoch 12 &
run a_d96twin $W --d_model 96 & run a_d96 $A --d_model 96 --last_aug_epoch 20 &
run b_twin $W $M & run b_twin0 $W $M --blotch_p 0 & run b_axe16_t1 $A $M --last_aug_epoch 16 --axe_tol 1.0 &
run b_axe0_20 $A $M --blotch_p 0 --last_aug_epoch 20 --axe_tol 1.0 &
wait
cat "$G/logs/rc.txt"
