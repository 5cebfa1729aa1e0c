#!/bin/bash
# usage: run.sh PROFILE BASE TAG
set -e
U=../../.venv/bin/unireward; export OMP_NUM_THREADS=1
P=$1; B=$2; T=$3
[ -d validate ] || { $U ingest --params params.yaml --profile quick64 --output-dir ingest; $U validate --params params.yaml --profile quick64 --dataset ingest --output-dir validate; }
$U unified_sft --params params.yaml --profile $P --base-model $B --dataset validate --output-dir judge_$T
$U evaluate --params params.yaml --profile quick64 --model judge_$T --dataset validate --output-dir eval_$T
