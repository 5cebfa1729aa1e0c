#!/bin/bash
export OMP_NUM_THREADS=1
for n in "$@"; do
  s=snap_judge_frzv3k_$n
  [ -d eval_$s ] && continue
  ../../.venv/bin/unireward evaluate --params params.yaml --profile quick64 --model $s --dataset validate --output-dir eval_$s > log_eval_$s 2>&1
  grep -o '"eval_unseen/pairwise_diff_mean": [0-9.]*\|"pairwise_diff_mean": [0-9.]*\|"swap_consistency_mean": [0-9.]*' log_eval_$s | tr '\n' ' '; echo " <- $n"
done
