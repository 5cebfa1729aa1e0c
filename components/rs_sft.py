"""Kubeflow component of stage 6, `rs_sft`: TRL SFT of the judge on its own correct CoT
judgements from rejection sampling (UnifiedReward-Think, stage 2).

python -m pipelines.compile --profile quick --output build/unireward-quick.yaml
"""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Model, Output

from components.images import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def rs_sft(
    config: dict,
    judge: Input[Model],
    samples: Input[Dataset],
    dataset: Input[Dataset],
    rs_judge: Output[Model],
    report: Output[HTML],
):
    """`rs_judge` is the checkpoint directory. With UNIREWARD_CHECKPOINT_ROOT set (a PVC on a
    cluster) training runs in a directory there keyed by the artifact URI, so a retried task
    resumes from its last checkpoint."""
    from pathlib import Path

    from unireward import launch
    from unireward.config import from_dict
    from unireward.plots import checkpoint_log_history, training_report
    from unireward.think import rs_sft as stage

    cfg = from_dict(stage.RsSftConfig, config, where="rs_sft")
    out = Path(rs_judge.path)
    with launch.work_dir(out, rs_judge.uri) as work:
        # One process per GPU of the task (unireward.launch: torchrun), or in-process.
        result = launch.run(
            stage.__name__,
            cfg,
            cfg.train.device,
            judge_dir=Path(judge.path),
            samples_dir=Path(samples.path),
            dataset_dir=Path(dataset.path),
            output_dir=work,
        )
    Path(report.path).write_text(training_report(checkpoint_log_history(out), "rs_sft"))
    rs_judge.metadata.update(
        {
            "global_step": result.train.global_step,
            "examples": result.examples,
            "skipped": result.skipped or "",
        }
    )
