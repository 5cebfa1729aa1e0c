"""Kubeflow component of stage 12, `dpo`: TRL DPO on the policy with the preference pairs.

python -m pipelines.compile --profile quick --output build/unireward-quick.yaml
"""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Model, Output

from components.images import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def dpo(
    config: dict,
    policy: Input[Model],
    pairs: Input[Dataset],
    aligned_policy: Output[Model],
    report: Output[HTML],
):
    """`aligned_policy` is the checkpoint directory (with dpo.json: trained or not, and why).

    With UNIREWARD_CHECKPOINT_ROOT set (a PVC on a cluster) training runs in a directory there
    keyed by the artifact URI, so a retried task resumes from its last checkpoint.
    """
    from pathlib import Path

    from unireward import launch
    from unireward.config import from_dict
    from unireward.plots import checkpoint_log_history, training_report
    from unireward.policy import dpo as stage

    cfg = from_dict(stage.DpoConfig, config, where="dpo")
    out = Path(aligned_policy.path)
    with launch.work_dir(out, aligned_policy.uri) as work:
        result = stage.run(cfg, Path(policy.path), Path(pairs.path), work)
    Path(report.path).write_text(training_report(checkpoint_log_history(out), "dpo"))
    aligned_policy.metadata.update(
        {"trained": result.trained, "pairs": result.pairs, "global_step": result.global_step}
    )
