"""Kubeflow component of stage 2, `validate`: check a dataset, quarantine bad records.

    python -m pipelines.compile --profile quick --output build/unireward-quick.yaml

The task fails (and the pipeline stops) when `ValidationFailed` is raised past the threshold.
"""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Output

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def validate(
    config: dict,
    dataset: Input[Dataset],
    validated: Output[Dataset],
    report: Output[HTML],
    validation: Output[Artifact],
    counts: Output[Metrics],
):
    """`validated` is the checked dataset directory (also holding quarantine.parquet)."""
    import json
    import math
    import shutil
    from pathlib import Path

    from unireward.cli import summary
    from unireward.config import from_dict
    from unireward.data import validate as stage

    cfg = from_dict(stage.ValidateConfig, config, where="validate")
    out = Path(validated.path)
    result = stage.run(cfg, Path(dataset.path), out)
    shutil.copyfile(out / "report.html", report.path)
    shutil.copyfile(out / "validation.json", validation.path)
    for name, value in json.loads((out / "validation.json").read_text()).items():
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if number and not math.isnan(value):
            counts.log_metric(name, value)
    validated.metadata.update({k: v for k, v in summary(result).items() if k != "output_dir"})
