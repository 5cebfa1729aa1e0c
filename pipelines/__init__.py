"""Kubeflow pipelines of unireward: the DAG, its compiler entry point and its local runner.

python -m pipelines.compile --profile quick --output build/unireward-quick.yaml
python -m pipelines.run_local --profile quick
"""
