"""Kubeflow component of stage 3, `unified_sft`: SFT the base VLM into the unified judge.

python -m pipelines.compile --profile quick --output build/unireward-quick.yaml
"""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components.images import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE)
def unified_sft(
    config: dict, base_model: Input[Model], dataset: Input[Dataset], judge: Output[Model]
):
    """`judge` is the checkpoint directory (safetensors + processor + unireward.json)."""
    from pathlib import Path

    from unireward.config import from_dict
    from unireward.judge import unified_sft as stage

    cfg = from_dict(stage.UnifiedSftConfig, config, where="unified_sft")
    result = stage.run(cfg, Path(base_model.path), Path(dataset.path), Path(judge.path))
    judge.metadata.update({"global_step": result.train.global_step, "n_records": result.n_records})
