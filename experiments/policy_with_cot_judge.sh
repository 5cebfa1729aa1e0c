#!/usr/bin/env bash
# Policy DPO with preference pairs from a learned pairwise chain-of-thought judge, one command:
#   ingest -> validate (full profile data) -> experiments/probe_cot_iu.py (the perception-first CoT
#   judge, image understanding, from the shipped base) -> build_pairs --params experiments/params.yaml --profile cot_judge (the
#   judge served by vLLM, pairs asked in CoT mode, both orders, ranked by pair wins) -> dpo ->
#   evaluate_policy (before -> after on held-out questions).
#
#   experiments/policy_with_cot_judge.sh OUTPUT_DIR [STEPS]    # STEPS default 2500 (~18 min of
#                                                          # training on 2 cores); needs .venv
#                                                          # and .venv-serve (make serve-venv)
# Measured figures: docs/research/policy-alignment.md.
set -euo pipefail
out=${1:?usage: experiments/policy_with_cot_judge.sh OUTPUT_DIR [STEPS]}
steps=${2:-2500}
py=${PYTHON:-.venv/bin/python}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MLFLOW_DISABLE_TELEMETRY=true DVC_NO_ANALYTICS=1 \
    OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
cli() { "$py" -m unireward.cli "$@"; }

# The full profile's data (3,000 training records per task and mode, 200 held out): what the
# measured probe was trained and scored on.
cli ingest --profile full --output-dir "$out/ingest"
cli validate --profile full --dataset "$out/ingest" --output-dir "$out/validate"
"$py" experiments/probe_cot_iu.py "$out/validate" "$out/cot_judge" "$steps"
cli build_pairs --params experiments/params.yaml --profile cot_judge --judge served --judge-model "$out/cot_judge/judge" \
    --output-dir "$out/pairs"
cli dpo --pairs "$out/pairs" --output-dir "$out/dpo"
cli evaluate_policy --after "$out/dpo" --output-dir "$out/evaluate_policy"
