"""Kubeflow component of stage 3, `unified_sft`: SFT the base VLM into the unified judge.

python -m pipelines.compile --profile quick --output build/unireward-quick.yaml
"""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Model, Output

from components.images import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def unified_sft(
    config: dict,
    base_model: Input[Model],
    dataset: Input[Dataset],
    judge: Output[Model],
    report: Output[HTML],
):
    """`judge` is the checkpoint directory (safetensors + processor + unireward.json).

    With UNIREWARD_CHECKPOINT_ROOT set (a PVC on a cluster, pipelines/platform.py) training runs
    in a directory there keyed by the artifact URI, so a retried task resumes from its last
    checkpoint instead of starting over; the final model is then copied into `judge`.
    """
    from pathlib import Path

    from unireward import launch
    from unireward.config import from_dict
    from unireward.judge import unified_sft as stage
    from unireward.plots import checkpoint_log_history, training_report

    cfg = from_dict(stage.UnifiedSftConfig, config, where="unified_sft")
    out = Path(judge.path)
    with launch.work_dir(out, judge.uri) as work:
        # One process per GPU of the task (unireward.launch: torchrun), or in-process.
        result = launch.run(
            stage.__name__,
            cfg,
            cfg.train.device,
            base_model_dir=Path(base_model.path),
            dataset_dir=Path(dataset.path),
            output_dir=work,
        )
    Path(report.path).write_text(training_report(checkpoint_log_history(out), "unified_sft"))
    judge.metadata.update({"global_step": result.train.global_step, "n_records": result.n_records})
