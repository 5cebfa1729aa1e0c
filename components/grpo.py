"""Kubeflow component of stage 7, `grpo`: TRL GRPO on the pairs the judge missed in rejection
sampling, reward = format + accuracy (UnifiedReward-Think, stage 3).

python -m pipelines.compile --profile quick --output build/unireward-quick.yaml
"""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Model, Output

from components.images import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def grpo(
    config: dict,
    judge: Input[Model],
    samples: Input[Dataset],
    dataset: Input[Dataset],
    think_judge: Output[Model],
    report: Output[HTML],
):
    """`think_judge` is the checkpoint directory (train_log.json and reward_curve.png with it).
    With UNIREWARD_CHECKPOINT_ROOT set (a PVC on a cluster) training runs in a directory there
    keyed by the artifact URI, so a retried task resumes from its last checkpoint."""
    import math
    from pathlib import Path

    from unireward import launch
    from unireward.config import from_dict
    from unireward.plots import checkpoint_log_history, training_report
    from unireward.think import grpo as stage

    cfg = from_dict(stage.GrpoConfig, config, where="grpo")
    out = Path(think_judge.path)
    with launch.work_dir(out, think_judge.uri) as work:
        # One process per GPU of the task (unireward.launch: torchrun), or in-process.
        result = launch.run(
            stage.__name__,
            cfg,
            cfg.device,
            judge_dir=Path(judge.path),
            samples_dir=Path(samples.path),
            dataset_dir=Path(dataset.path),
            output_dir=work,
        )
    Path(report.path).write_text(training_report(checkpoint_log_history(out), "grpo"))
    meta = {
        "global_step": result.global_step,
        "prompts": result.prompts,
        "skipped": result.skipped or "",
    }
    for name in ("reward_first", "reward_last"):
        value = getattr(result, name)
        if not math.isnan(value):
            meta[name] = value
    think_judge.metadata.update(meta)
