"""Kubeflow component of stage 0, `pretrain_base` (embedded default: the tiny base VLM).

python -m pipelines.compile --profile quick --output build/unireward-quick.yaml
"""

from kfp import dsl
from kfp.dsl import Metrics, Model, Output

from components.images import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def pretrain_base(config: dict, base_model: Output[Model], perception: Output[Metrics]):
    """Train the tiny base VLM's perception; `base_model` is the checkpoint directory."""
    import math
    from pathlib import Path

    from unireward.config import from_dict
    from unireward.model import pretrain_base as stage

    cfg = from_dict(stage.PretrainBaseConfig, config, where="pretrain_base")
    result = stage.run(cfg, Path(base_model.path))
    for name, value in result.perception.items():
        if not math.isnan(value):
            perception.log_metric(name, value)
    base_model.metadata["global_step"] = result.train.global_step
