#!/usr/bin/env bash
# The UnifiedReward-Think chain (rejection_sample -> rs_sft -> grpo) started from the
# perception-first chain-of-thought judge (experiments/probe_cot_iu.py), with a CoT-mode evaluation
# of image understanding after each stage (profile cot_judge in experiments/params.yaml):
#
#   experiments/think_on_cot_judge.sh OUTPUT_DIR JUDGE_DIR VALIDATED_DIR
#
# JUDGE_DIR / VALIDATED_DIR: e.g. the cot_judge/judge and validate directories that
# experiments/policy_with_cot_judge.sh writes. Needs .venv and .venv-serve (make serve-venv).
# Measured figures: docs/research/think-stages.md.
set -euo pipefail
out=${1:?usage: experiments/think_on_cot_judge.sh OUTPUT_DIR JUDGE_DIR VALIDATED_DIR}
judge=${2:?judge directory}
data=${3:?validated dataset directory}
py=${PYTHON:-.venv/bin/python}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MLFLOW_DISABLE_TELEMETRY=true DVC_NO_ANALYTICS=1 \
    OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
cli() { "$py" -m unireward.cli "$@" --params experiments/params.yaml --profile cot_judge; }

cli evaluate --model "$judge" --dataset "$data" --name cot_judge --output-dir "$out/eval_judge"
cli rejection_sample --judge "$judge" --dataset "$data" --output-dir "$out/rejection_sample"
cli rs_sft --judge "$judge" --samples "$out/rejection_sample" --dataset "$data" \
    --output-dir "$out/rs_sft"
cli evaluate --model "$out/rs_sft" --dataset "$data" --name rs --output-dir "$out/eval_rs"
cli grpo --judge "$out/rs_sft" --samples "$out/rejection_sample" --dataset "$data" \
    --output-dir "$out/grpo"
cli evaluate --model "$out/grpo" --dataset "$data" --name grpo --output-dir "$out/eval_grpo"
for stage in judge rs grpo; do
    "$py" - "$out/eval_$stage/metrics.json" "$stage" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
keys = ("cot_accuracy", "format_valid", "swap_consistency", "pairwise_diff",
        *(f"by/{t}/pairwise_tau" for t in ("colour", "shape", "position", "describe")))
for split in ("eval_seen", "eval_unseen"):
    prefix = "" if split == "eval_seen" else f"{split}/"  # the primary split: no prefix
    row = "  ".join(f"{k} {m.get(f'{prefix}image_understanding/{k}', float('nan')):.3f}" for k in keys)
    print(f"{sys.argv[2]:6s} {split:11s} {row}")
PY
done
