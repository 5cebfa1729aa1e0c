"""Kubeflow component of stage 8, `evaluate`: score a judge per task and mode.

python -m pipelines.compile --profile quick --output build/unireward-quick.yaml
"""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output

from components.images import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def evaluate(
    config: dict,
    model: Input[Model],
    dataset: Input[Dataset],
    name: str,
    evaluation: Output[Artifact],
    metrics: Output[Metrics],
    report: Output[HTML],
    cot: bool = False,
    samples: Input[Dataset] = None,
):
    """`evaluation` is a directory: metrics.json, metrics.png, predictions.parquet, report.html;
    `report` is that page (accuracy per task and per attribute) for the UI. `cot` judges
    pairwise items in CoT mode (the Think judges), whatever the config says. With `samples` (a
    rejection_sample output) its hard items are scored too, as split `hard`."""
    import dataclasses
    import math
    import shutil
    from pathlib import Path

    from unireward.config import from_dict
    from unireward.eval import evaluate as stage

    cfg = from_dict(stage.EvaluateConfig, config, where="evaluate")
    if cot:
        cfg = dataclasses.replace(cfg, cot=True)
    result = stage.run(
        cfg,
        Path(model.path),
        Path(dataset.path),
        Path(evaluation.path),
        name=name,
        samples_dir=Path(samples.path) if samples is not None else None,
    )
    shutil.copyfile(Path(evaluation.path) / "report.html", report.path)
    for key, value in sorted(result.metrics.items()):
        if not math.isnan(value):  # KFP metrics are numbers; nan means "no usable verdict"
            metrics.log_metric(key, value)
    evaluation.metadata["name"] = name
