"""Kubeflow component of `policy_sft` (embedded default: the imperfect tiny policy that DPO
aligns; shipped as models/policy-tiny, not a task of the default DAG).

python -m pipelines.compile --profile quick --output build/unireward-quick.yaml
"""

from kfp import dsl
from kfp.dsl import Input, Metrics, Model, Output

from components.images import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def policy_sft(
    config: dict, base_model: Input[Model], policy: Output[Model], accuracy: Output[Metrics]
):
    """Teach the base the policy's (deliberately confused) answers; `policy` is the checkpoint."""
    from pathlib import Path

    from unireward.config import from_dict
    from unireward.policy import policy_sft as stage

    cfg = from_dict(stage.PolicySftConfig, config, where="policy_sft")
    result = stage.run(cfg, Path(base_model.path), Path(policy.path))
    for name, value in result.accuracy.items():
        accuracy.log_metric(name, value)
    policy.metadata["global_step"] = result.train.global_step
