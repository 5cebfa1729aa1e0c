"""Kubeflow component of stage 13, `evaluate_policy`: the policy before and after DPO on
held-out shapes-world questions.

python -m pipelines.compile --profile quick --output build/unireward-quick.yaml
"""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Metrics, Model, Output

from components.images import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def evaluate_policy(
    config: dict,
    before: Input[Model],
    after: Input[Model],
    evaluation: Output[Artifact],
    metrics: Output[Metrics],
    report: Output[HTML],
):
    """`evaluation` is a directory: metrics.json (before/after/delta per split and attribute),
    answers.parquet, report.html; `report` is that page (accuracy before/after, sample questions
    with both answers) for the UI."""
    import math
    import shutil
    from pathlib import Path

    from unireward.config import from_dict
    from unireward.policy import evaluate_policy as stage

    cfg = from_dict(stage.EvaluatePolicyConfig, config, where="evaluate_policy")
    result = stage.run(cfg, Path(before.path), Path(after.path), Path(evaluation.path))
    shutil.copyfile(Path(evaluation.path) / "report.html", report.path)
    for key, value in sorted(result.metrics.items()):
        if not math.isnan(value):
            metrics.log_metric(key, value)
