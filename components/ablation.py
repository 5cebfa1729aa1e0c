"""Kubeflow component of stage `ablation`: the UnifiedReward-Think ablation table.

python -m pipelines.compile --profile quick --output build/unireward-quick.yaml
"""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Markdown, Metrics, Output

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def ablation(
    config: dict,
    judge: Input[Artifact],
    think: Input[Artifact],
    rs: Input[Artifact],
    grpo: Input[Artifact],
    ablation: Output[Artifact],
    metrics: Output[Metrics],
    table: Output[Markdown],
    report: Output[HTML],
):
    """The four inputs are evaluate's directories (columns in this order); `ablation` is a
    directory: ablation.md, ablation.json, ablation.png, report.html. `metrics` holds the mean row
    of the primary split per stage, e.g. `grpo-mean-pairwise_diff`; `table` is ablation.md and
    `report` the plot with the tables, for the UI."""
    import shutil
    from pathlib import Path

    from unireward.config import from_dict
    from unireward.eval import ablation as stage

    cfg = from_dict(stage.AblationConfig, config, where="ablation")
    evaluations = {
        name: Path(a.path)
        for name, a in (("judge", judge), ("think", think), ("rs", rs), ("grpo", grpo))
    }
    result = stage.run(cfg, evaluations, Path(ablation.path))
    shutil.copyfile(result.table_path, table.path)
    shutil.copyfile(Path(ablation.path) / "report.html", report.path)
    for key, value in sorted(result.metrics.items()):
        name, split, row, metric = key.split("/")
        if split == cfg.primary_split and row == stage.MEAN:
            metrics.log_metric(f"{name}-mean-{metric}", value)
    ablation.metadata["stages"] = list(result.stages)
