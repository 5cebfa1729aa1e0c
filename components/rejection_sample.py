"""Kubeflow component of stage 5, `rejection_sample`: k sampled CoT judgements per labelled pair;
the correct ones become CoT SFT data, the pairs the judge missed become GRPO data
(UnifiedReward-Think, stage 2).

python -m pipelines.compile --profile quick --output build/unireward-quick.yaml
"""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components.images import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def rejection_sample(
    config: dict,
    judge: Input[Model],
    dataset: Input[Dataset],
    samples: Output[Dataset],
):
    """`samples` is rejection_sample's output directory: samples.jsonl, correct/ (rs_sft's
    data), hard/ (grpo's data, also as hard/grpo.jsonl) and summary.json. Media paths stay
    relative to `dataset`, which the next stages take too."""
    from pathlib import Path

    from unireward.config import from_dict
    from unireward.think import rejection_sample as stage

    cfg = from_dict(stage.RejectionSampleConfig, config, where="rejection_sample")
    result = stage.run(cfg, Path(judge.path), Path(dataset.path), Path(samples.path))
    samples.metadata.update(
        {
            "items": result.items,
            "samples": result.samples,
            "kept": result.kept,
            "hard": result.hard,
            "format_valid_rate": result.format_valid_rate,
            "sample_accuracy": result.sample_accuracy,
        }
    )
