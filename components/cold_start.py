"""Kubeflow component of stage 4, `cold_start`: distil teacher CoT judgements, keep the correct
ones, SFT the unified judge on them (UnifiedReward-Think, stage 1).

python -m pipelines.compile --profile quick --output build/unireward-quick.yaml
"""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Model, Output

from components.images import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def cold_start(
    config: dict,
    judge: Input[Model],
    base_model: Input[Model],
    dataset: Input[Dataset],
    think_judge: Output[Model],
    distillation: Output[Dataset],
    report: Output[HTML],
):
    """SFT starts from `judge` (the unified judge) or, with `init: base` in the config, from
    `base_model`. `think_judge` is the checkpoint directory; `distillation` holds every teacher
    reply with its status and reason (teacher_outputs.jsonl), the kept CoT rows and
    summary.json.

    With UNIREWARD_CHECKPOINT_ROOT set (a PVC on a cluster) the stage works in a directory there
    keyed by the artifact URI, so a retried task reuses the distillation (no second teacher
    bill) and resumes training from its last checkpoint.
    """
    import shutil
    from pathlib import Path

    from unireward import launch
    from unireward.config import from_dict
    from unireward.plots import checkpoint_log_history, training_report
    from unireward.think import cold_start as stage

    cfg = from_dict(stage.ColdStartConfig, config, where="cold_start")
    out = Path(think_judge.path)
    with launch.work_dir(out, think_judge.uri) as work:
        result = stage.run(
            cfg, Path(judge.path), Path(dataset.path), work, base_dir=Path(base_model.path)
        )
        shutil.copytree(work / stage.DISTILL, Path(distillation.path), dirs_exist_ok=True)
    Path(report.path).write_text(training_report(checkpoint_log_history(out), "cold_start"))
    think_judge.metadata.update(
        {"global_step": result.train.global_step, "kept": result.kept, "items": result.items}
    )
    distillation.metadata.update(
        {
            "items": result.items,
            "kept": result.kept,
            "rejected_fraction": result.rejected_fraction,
            "failed_fraction": result.failed_fraction,
        }
    )
