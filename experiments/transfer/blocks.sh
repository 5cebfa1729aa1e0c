#!/bin/bash
# Task blocks: 250 pairwise steps per task, in sequence, each from the last judge; then evaluate.
set -e
U=../../.venv/bin/unireward; export OMP_NUM_THREADS=1
prev=../base31k
for t in image_generation image_understanding video_generation video_understanding; do
  $U unified_sft --params params.yaml --profile blk_$t --base-model $prev --dataset validate --output-dir blk_$t
  prev=blk_$t
done
$U evaluate --params params.yaml --profile frzv_pw --model $prev --dataset validate --output-dir eval_blocks
